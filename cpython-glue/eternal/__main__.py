# eternal/__main__.py - `python -m eternal`: --version, run, report.
# All the work is in eternal._cli.
import sys

from eternal._cli import main

sys.exit(main())
