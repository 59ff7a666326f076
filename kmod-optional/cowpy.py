# cowpy.py - CPython workload for the VM test: the master builds str objects and dumps bench/cowmap's object map,
# then forks a worker that iterates over them; the refcount writes copy str pages, which the reader must class "str".
import os
import sys

sys.path.insert(0, sys.argv[1])  # the repo's bench/ directory
import cowmap  # noqa: E402

# ~3000 strs of ~70 bytes: a few dozen pages holding mostly str objects.
words = [("w%06d" % i) * 5 for i in range(3000)]
path = cowmap.dump_objects()
print("PYDUMP", path, flush=True)
pid = os.fork()
if pid == 0:
    n = 0
    for w in words:  # INCREF/DECREF of every str writes its header: copy-on-write of its page
        n += len(w)
    os._exit(0 if n == 3000 * 35 else 1)
_, status = os.waitpid(pid, 0)
print("PYCHILD", pid, status, flush=True)
