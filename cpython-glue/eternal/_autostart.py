# eternal/_autostart.py - imported from eternal.pth at interpreter start-up when
# ETERNAL=1: enables the glue so that an unmodified program runs with it.
import os

if os.environ.get("ETERNAL") == "1":
    try:
        import eternal
        eternal.start_from_env()
    except Exception as e:
        import sys
        sys.stderr.write(f"eternal: ETERNAL=1 but the glue did not start: {e}\n")
