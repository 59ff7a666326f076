# Applies a fork-memory benchmark mode inside the process that forks (server master, pool parent).
# Imported by every workload and by the gunicorn config; standard library only, any CPython >= 3.8.
"""Mode hooks: early() at start-up, before_fork() just before the first fork,
after_fork_child() in each child. The mode comes from FORKMEM_MODE.

Modes:
  stock           nothing.
  gc-freeze       the CPython documentation's recipe: gc.disable() early,
                  gc.freeze() right before fork, gc.enable() in each child.
  immortal        gc-freeze plus every reachable object made immortal in place
                  (ob_refcnt set to the interpreter's own immortal value): the
                  control that shows what segregation adds over immortality.
  eternal         the `eternal` glue (enabled by ETERNAL=1 through its .pth hook),
                  sealed strict right before the fork.
  eternal+freeze  eternal plus the gc-freeze recipe.
  eternal-data    (pool only) eternal plus eternal.freeze() of the dataset.
"""
import gc
import json
import os
import signal
import sys
import time

MODE = os.environ.get("FORKMEM_MODE", "stock")
KNOWN = ("stock", "gc-freeze", "immortal", "eternal", "eternal+freeze", "eternal-data")
# Real-time signals: gunicorn owns SIGUSR1/SIGUSR2, nobody owns these.
SIG_STATS = signal.SIGRTMIN + 2

_status = {"mode": MODE, "ok": True, "detail": ""}
_eternal = None


def uses_gc_recipe(mode=MODE):
    return mode in ("gc-freeze", "immortal", "eternal+freeze")


def uses_eternal(mode=MODE):
    return mode.startswith("eternal")


def process_age():
    """Seconds since this process started (interpreter start-up included)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    start_ticks = int(fields[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _fail(detail):
    _status["ok"] = False
    _status["detail"] = detail


def early():
    """Call as early as possible in the master, before the application is imported."""
    global _eternal
    if MODE not in KNOWN:
        _fail("unknown mode %r" % MODE)
        return
    if uses_gc_recipe():
        gc.disable()
    if uses_eternal():
        try:
            import eternal  # enabled at start-up by its .pth hook when ETERNAL=1
        except Exception as e:  # report, never fake
            _fail("unavailable: import eternal: %s: %s" % (type(e).__name__, e))
            return
        _eternal = eternal
        try:
            if hasattr(eternal, "is_enabled"):
                enabled = eternal.is_enabled()
            else:
                enabled = dict(eternal.stats()).get("mode") not in (None, "off")
            _status["enabled_by"] = "already enabled at start-up (ETERNAL=1)" if enabled else "modes.early()"
            if not enabled:
                # No .pth hook ran (glue on PYTHONPATH, not installed): enable now, before the app imports.
                eternal.enable()
        except Exception as e:
            _fail("unavailable: eternal.enable: %s: %s" % (type(e).__name__, e))
    signal.signal(SIG_STATS, _dump_stats)


def immortal_value():
    """The interpreter's own immortal refcount, read from None rather than hard-coded."""
    import ctypes
    if sys.version_info < (3, 12):
        return None
    return ctypes.c_ssize_t.from_address(id(None)).value


def immortalize():
    """Set ob_refcnt of every object reachable from the GC and from modules to the immortal value."""
    import ctypes
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import cowmap
    imm = immortal_value()
    setref = ctypes.c_ssize_t.from_address

    def visit(obj):
        setref(id(obj)).value = imm
    return cowmap.walk_objects(visit)


def before_fork(data=None):
    """Call in the master right before the first fork. Returns a dict of facts for the report.
    `data` (pool) is passed to eternal.freeze() in eternal-data mode; the caller gets it back."""
    facts = {"mode": MODE, "status": status()}
    if not _status["ok"]:
        return facts, data
    t0 = time.perf_counter()
    try:
        if MODE == "immortal":
            if sys.version_info < (3, 12):
                _fail("unavailable: immortal refcounts need CPython >= 3.12")
            else:
                facts["immortalized_objects"] = immortalize()
        if uses_eternal() and _eternal is not None:
            if MODE == "eternal-data" and data is not None:
                data = _eternal.freeze(data)
            if os.environ.get("ETERNAL_SEAL", "first-fork") == "manual":
                mode = os.environ.get("ETERNAL_MODE", "strict")
                try:
                    _eternal.seal(mode=mode, log=os.environ.get("ETERNAL_LOG") or None)
                except TypeError:  # the documented minimal signature
                    _eternal.seal(mode=mode)
        if uses_gc_recipe():
            gc.freeze()
            facts["gc_frozen"] = gc.get_freeze_count()
    except Exception as e:
        _fail("failed: %s: %s" % (type(e).__name__, e))
    facts["before_fork_s"] = time.perf_counter() - t0
    facts["status"] = status()
    facts["eternal"] = eternal_stats()
    facts["eternal_enabled_by"] = _status.get("enabled_by")
    return facts, data


def after_fork_child():
    if uses_gc_recipe():
        gc.enable()


def status():
    return "ok" if _status["ok"] else _status["detail"]


def eternal_stats():
    if _eternal is None:
        return None
    try:
        return dict(_eternal.stats())
    except Exception as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}


def _dump_stats(signum, frame):
    d = os.environ.get("FORKMEM_STATS_DIR")
    if not d:
        return
    rec = {"pid": os.getpid(), "mode": MODE, "eternal": eternal_stats(),
           "gc_count": gc.get_count(), "gc_stats": gc.get_stats(),
           "gc_threshold": gc.get_threshold(), "gc_freeze_count": gc.get_freeze_count(),
           "gc_enabled": gc.isenabled()}
    tmp = os.path.join(d, ".stats-%d.tmp" % os.getpid())
    with open(tmp, "w") as f:
        json.dump(rec, f)
    os.rename(tmp, os.path.join(d, "stats-%d.json" % os.getpid()))


def write_ready(facts):
    """Tell the driver the master is ready (atomic rename, the driver polls for the file)."""
    path = os.environ.get("FORKMEM_READY")
    if not path:
        return
    facts = dict(facts, pid=os.getpid(), python=sys.version.split()[0], age_s=process_age())
    with open(path + ".tmp", "w") as f:
        json.dump(facts, f)
    os.rename(path + ".tmp", path)
