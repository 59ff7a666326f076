# cowmap-classify.py - helper that cowtrace-read --classify runs: answers "root pid addr" lines with the page
# class from bench/cowmap.py (code, str, dict, ..., eternal-cow); first line is READY or why it cannot classify.
import importlib.util
import sys


def load(path):
    spec = importlib.util.spec_from_file_location("cowmap", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    try:
        cowmap = load(sys.argv[1])
    except Exception as e:  # another component's code: report why, never take the reader down
        print(f"cannot import {sys.argv[1]}: {type(e).__name__}: {e}", flush=True)
        return 0
    classify = getattr(cowmap, "classify", None)
    if not callable(classify):
        print(f"{sys.argv[1]} has no classify(pid, page_addrs, dump_path=None, maps=None)", flush=True)
        return 0
    print("READY", flush=True)
    maps_cache = {}
    for line in sys.stdin:
        try:
            root, pid, addr = (int(x, 0) for x in line.split())
            # The object dump is the master's (root's); the VMA names are the worker's own while it
            # lives, the root's afterwards (a prefork worker inherits the master's layout).
            maps = maps_cache.get(pid)
            if maps is None:
                for who in (pid, root):
                    try:
                        maps = maps_cache[pid] = cowmap.read_maps(who)
                        break
                    except OSError:
                        continue
            cls = classify(root, [addr], maps=maps).get(addr, "-")
        except Exception as e:
            cls = f"?({type(e).__name__})"
        print(str(cls).replace(" ", "_"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
