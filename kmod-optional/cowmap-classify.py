# cowmap-classify.py - helper that cowtrace-read --classify runs: answers "pid addr" lines with a page class
# from bench/cowmap.py (code, str, dict, ..., eternal); first line is READY or the reason it cannot classify.
import importlib.util
import sys

# Names bench/cowmap.py may give its per-address classifier; the first that exists is used.
CANDIDATES = ("classify_address", "classify_page", "classify_addr", "classify")


def load(path):
    spec = importlib.util.spec_from_file_location("cowmap", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    try:
        mod = load(sys.argv[1])
    except Exception as e:  # cowmap is another helper's work in progress: report, do not crash the reader
        print(f"cannot import {sys.argv[1]}: {type(e).__name__}: {e}", flush=True)
        return 0
    fn = next((getattr(mod, n) for n in CANDIDATES if callable(getattr(mod, n, None))), None)
    if fn is None:
        print(f"{sys.argv[1]} has none of {', '.join(CANDIDATES)}(pid, addr)", flush=True)
        return 0
    print(f"READY {fn.__name__}", flush=True)
    for line in sys.stdin:
        try:
            pid, addr = line.split()
            cls = fn(int(pid), int(addr, 0))
        except Exception as e:
            cls = f"?({type(e).__name__})"
        print(str(cls).replace(" ", "_") if cls is not None else "-", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
