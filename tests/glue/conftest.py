# tests/glue/conftest.py - runs each glue test in fresh interpreters (enable() and
# seal() are once per process), against the build dir or the installed package.
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GLUE = os.path.join(ROOT, "cpython-glue")
TAG = f"py{sys.version_info.major}{sys.version_info.minor}"


def _build_dir():
    for cand in (os.environ.get("ETERNAL_BUILD_DIR"), os.path.join(ROOT, "build-glue"),
                 os.path.join(ROOT, "build")):
        if cand and os.path.isdir(os.path.join(cand, "cpython-glue", TAG)):
            return os.path.abspath(cand)
    return None


def glue_env(extra=None, installed=None):
    """Environment for a child interpreter that finds the package: the source
    tree plus the built extension, unless ETERNAL_TEST_INSTALLED=1."""
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("ETERNAL"):
            del env[k]
    installed = os.environ.get("ETERNAL_TEST_INSTALLED") == "1" if installed is None else installed
    paths = []
    if not installed:
        b = _build_dir()
        if b is None:
            pytest.fail(f"no build dir with cpython-glue/{TAG}: run ./run.sh build or set ETERNAL_BUILD_DIR")
        paths = [GLUE, os.path.join(b, "cpython-glue", TAG)]
    paths.append("/usr/lib/python3/dist-packages")
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONSTARTUP", None)
    if extra:
        env.update(extra)
    return env


def run_py(code=None, args=(), env=None, timeout=600, cwd=None, check=None, python=None):
    """Run `python -c code` (or args) in a fresh interpreter; returns CompletedProcess."""
    cmd = [python or sys.executable]
    if code is not None:
        cmd += ["-c", textwrap.dedent(code)]
    cmd += list(args)
    p = subprocess.run(cmd, env=glue_env(env) if not isinstance(env, _Raw) else env.env,
                       capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check is not None and p.returncode != check:
        raise AssertionError(f"exit {p.returncode} (wanted {check})\n--- stdout\n{p.stdout[-4000:]}\n"
                             f"--- stderr\n{p.stderr[-4000:]}")
    return p


class _Raw:
    def __init__(self, env):
        self.env = env


def raw_env(env):
    return _Raw(env)


@pytest.fixture
def py():
    return run_py
