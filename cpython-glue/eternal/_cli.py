# eternal/_cli.py - the command line: `python -m eternal --version | run | report`.
# `run` runs an unmodified program (script or -m module) with the glue on.
import argparse
import os
import sys

import eternal


def _version():
    lib = getattr(eternal._C, "library_version", "?") if eternal._C is not None else "-"
    v = sys.version_info
    print(f"eternal {eternal.__version__} (libeternal {lib}, backend {eternal.backend}, "
          f"CPython {v.major}.{v.minor}.{v.micro})")
    return 0


def _run(argv):
    p = argparse.ArgumentParser(prog="python -m eternal run",
                                description="Run a program with the eternal glue on.")
    p.add_argument("--mode", choices=eternal.MODES, default=os.environ.get("ETERNAL_MODE") or "strict")
    p.add_argument("--log", default=os.environ.get("ETERNAL_LOG") or None,
                   help="directory for trap records (one JSON-lines file per pid)")
    p.add_argument("--engine", choices=eternal.ENGINES, default=os.environ.get("ETERNAL_ENGINE") or "auto")
    p.add_argument("--seal", choices=("first-fork", "manual"),
                   default=os.environ.get("ETERNAL_SEAL") or "first-fork",
                   help="when to seal if not --seal-now (default first-fork)")
    p.add_argument("--preload", default="", help="modules to import during warm-up: MOD,MOD,...")
    p.add_argument("--seal-now", action="store_true", help="seal after --preload, before the program")
    p.add_argument("-m", dest="module", help="run a library module as a script (the rest are its args)")
    p.add_argument("target", nargs="?", help="script.py (the rest are its args)")
    # Our options end at `-m MODULE` or at the script: everything after
    # belongs to the program, even if it looks like an option.
    valued = {"--mode", "--log", "--engine", "--seal", "--preload"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            i += 2
            break
        if arg.startswith("-m") and len(arg) > 2 and not arg.startswith("--"):
            i += 1
            break
        if not arg.startswith("-"):
            i += 1
            break
        i += 2 if arg in valued else 1
    a = p.parse_args(argv[:i])
    rest = argv[i:]
    if not a.module and not a.target:
        p.error("give a script or -m module")
    a.target = ([a.target] if a.target else []) + rest
    env = os.environ
    env["ETERNAL"] = "1"
    env["ETERNAL_MODE"] = a.mode
    env["ETERNAL_SEAL"] = a.seal
    env["ETERNAL_ENGINE"] = a.engine
    if a.log:
        env["ETERNAL_LOG"] = os.path.abspath(a.log)
    if eternal.backend not in ("stock", "patched"):
        print(f"eternal: {eternal.backend}", file=sys.stderr)
        return 2
    eternal.start_from_env()  # enables (unless ETERNAL=1 already did) + first-fork hook
    import importlib
    for mod in filter(None, (m.strip() for m in a.preload.split(","))):
        importlib.import_module(mod)
    if a.seal_now:
        eternal.seal(a.mode, log=env.get("ETERNAL_LOG"), engine=a.engine)
    # Like `python -m mod` / `python script.py`: the program runs in the
    # namespace of the real __main__ module (code that sets attributes on
    # __main__ while warming up, as pickle tests do, must find them there).
    import runpy
    if a.module:
        sys.argv = [a.module] + a.target
        runpy._run_module_as_main(a.module, alter_argv=True)
    else:
        import __main__
        script, args = a.target[0], a.target[1:]
        sys.argv = [script] + args
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        with open(script, "rb") as f:
            source = f.read()
        code = compile(source, script, "exec")
        g = __main__.__dict__
        g.update(__name__="__main__", __file__=script, __cached__=None, __doc__=None,
                 __loader__=None, __spec__=None, __package__=None)
        exec(code, g)
    return 0


def _report(argv):
    p = argparse.ArgumentParser(prog="python -m eternal report",
                                description="Print region stats and trap records as a table.")
    p.add_argument("--log", help="a trap-log directory written by seal(log=...) / ETERNAL_LOG / run --log")
    p.add_argument("--preload", default="", help="warm up with these modules first (this process)")
    p.add_argument("--seal", choices=eternal.MODES, help="seal in this mode after --preload")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = p.parse_args(argv)
    from . import _report
    if a.log:
        return _report.report_dir(a.log, as_json=a.json)
    if eternal.backend not in ("stock", "patched"):
        print(f"eternal: {eternal.backend}", file=sys.stderr)
        return 2
    if not eternal.is_enabled():
        eternal.enable()
    import importlib
    for mod in filter(None, (m.strip() for m in a.preload.split(","))):
        importlib.import_module(mod)
    if a.seal:
        eternal.seal(a.seal)
    if a.json:
        import json
        print(json.dumps(eternal.stats(), indent=1, sort_keys=True))
    else:
        eternal.report()
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m eternal (--version | run [options] (script.py | -m module) [args] | "
              "report [--log DIR] [--preload MODS] [--json])")
        return 0 if argv else 2
    if argv[0] in ("--version", "-V", "version"):
        return _version()
    if argv[0] == "run":
        return _run(argv[1:])
    if argv[0] == "report":
        return _report(argv[1:])
    print(f"python -m eternal: unknown command {argv[0]!r}", file=sys.stderr)
    return 2
