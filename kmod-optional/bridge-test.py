# bridge-test.py - host-side check of cowmap-classify.py (the bridge cowtrace-read --classify runs) with real
# CPython objects: pages full of strs must come back "str", the stack "stack". Prints TAP lines, exits 0.
import os
import subprocess
import sys

here, cowmap_path = os.path.dirname(os.path.abspath(__file__)), sys.argv[1]
sys.path.insert(0, os.path.dirname(cowmap_path))
import cowmap  # noqa: E402

words = [("w%06d" % i) * 5 for i in range(3000)]  # ~70-byte strs, allocated back to back
dump = cowmap.dump_objects()  # /tmp/cowmap-objects-<our pid>.bin: what the master of a server provides
try:
    pages = sorted({id(w) & ~4095 for w in words})
    strpages = pages[len(pages) // 4: len(pages) // 4 + 10]  # middle pages: nothing but our strs
    with open("/proc/self/maps") as f:
        stack = next(int(l.split("-")[0], 16) for l in f if l.rstrip().endswith("[stack]"))
    me = os.getpid()
    query = "".join(f"{me} {me} {a:#x}\n" for a in strpages + [stack])
    out = subprocess.run([sys.executable, os.path.join(here, "cowmap-classify.py"), cowmap_path],
                         input=query, capture_output=True, text=True, timeout=120).stdout.split("\n")
finally:
    os.unlink(dump)
ready = out[0] == "READY"
answers = out[1:1 + len(strpages) + 1]
print(("ok" if ready else "not ok") + " - cowmap bridge: bench/cowmap.py imports and has classify()")
print(("ok" if ready and answers[:-1] == ["str"] * len(strpages) else "not ok")
      + " - cowmap bridge: pages of a live CPython's strs classed str")
print(("ok" if ready and answers[-1:] == ["stack"] else "not ok") + " - cowmap bridge: its stack page classed stack")
if not ready or answers != ["str"] * len(strpages) + ["stack"]:
    print("# bridge answered: " + " ".join(out))
