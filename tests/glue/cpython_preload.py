# tests/glue/cpython_preload.py - warm-up of run_cpython_tests.sh: import the test module
# as regrtest would (no -u resources), so its code and constants are in the region when sealed.
import importlib
import os

from test import support

# regrtest sets these before it imports a test module; decorators such as
# requires_resource read them at import time.
support.use_resources = []
support.verbose = 0
importlib.import_module("test." + os.environ["ETERNAL_CPYTHON_TEST"])
