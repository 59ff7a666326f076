# eternal/_autostart.py - imported from eternal.pth at interpreter start-up when
# ETERNAL=1: enables the glue so that an unmodified program runs with it.
import os
import sys


def _main_interpreter():
    # site runs in subinterpreters too; the region belongs to the main one.
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            mod = __import__(name)
        except ImportError:
            continue
        try:
            return mod.get_current() == mod.get_main()
        except Exception:
            return True
    return True


# -E / -I (ignore PYTHON* variables) ignore ETERNAL* too, as the patched
# interpreter does.
if os.environ.get("ETERNAL") == "1" and not sys.flags.ignore_environment and _main_interpreter():
    try:
        import eternal
        eternal.start_from_env()
    except Exception as e:
        sys.stderr.write(f"eternal: ETERNAL=1 but the glue did not start: {e}\n")
