# eternal: keep the objects a program creates while warming up (module code,
# constants, interned names, frozen data) in a sealed region shared by forked workers.
"""Keep warm-up objects in a sealed, fork-shared region.

    import eternal
    eternal.enable()              # as early as possible (or ETERNAL=1 in the environment)
    import myapp                  # module constants go to the sealed tier, code to the cow tier
    CONFIG = eternal.freeze(cfg)  # immutable deep copy in the sealed tier
    eternal.seal("strict")        # end of warm-up, right before forking workers

On a patched interpreter (builtin module ``_eternal_patched``) the same calls
go to the interpreter's own implementation.
"""
import os
import sys

__version__ = "0.1.0"
__all__ = ["enable", "seal", "freeze", "stats", "is_enabled", "is_sealed", "trap_records", "audit_scan",
           "report", "tier_of", "UnsupportedInterpreter", "MODES", "ENGINES", "backend"]

MODES = ("strict", "trap", "audit", "off")
ENGINES = ("auto", "precise", "thread", "mprotect")


class UnsupportedInterpreter(RuntimeError):
    """This interpreter cannot host the glue (see the message for why)."""


def _free_threaded_config():
    # sysconfig imports threading; only look if something already loaded it.
    sc = sys.modules.get("sysconfig")
    return bool(sc and sc.get_config_var("Py_GIL_DISABLED"))


def _why_unsupported():
    """A sentence saying why this interpreter is not supported, or None."""
    if sys.implementation.name != "cpython":
        return f"eternal supports CPython only, not {sys.implementation.name}"
    v = sys.version_info
    if v < (3, 12):
        return (f"CPython {v.major}.{v.minor} is not supported: stock interpreters need immortal "
                "objects (PEP 683, CPython 3.12+); use the patched interpreter for older versions")
    if v >= (3, 14):
        return (f"CPython {v.major}.{v.minor} is not supported yet: the glue knows the internals "
                "of 3.12 and 3.13 only")
    if "t" in getattr(sys, "abiflags", "") or _free_threaded_config():
        return ("free-threaded CPython (3.13t) is not supported: objects live in per-thread "
                "mimalloc heaps that bypass the object allocator hook")
    return None


def _load_backend():
    if "_eternal_patched" in sys.builtin_module_names:
        import _eternal_patched
        return _eternal_patched, "patched"
    why = _why_unsupported()
    if why:
        return None, why
    try:
        from . import _eternal
    except ImportError:
        try:
            import _eternal  # tests run against the build directory
        except ImportError as e:
            return None, f"the _eternal extension is not built for this interpreter ({e})"
    return _eternal, "stock"


_C, backend = _load_backend()
_state = {"mode": None, "log": None, "first_fork": False, "exit_hook": False}


def _need(name):
    if _C is None:
        raise UnsupportedInterpreter(backend)
    fn = getattr(_C, name, None)
    if fn is None:
        raise NotImplementedError(f"eternal.{name}() is not provided by the {backend} backend")
    return fn


def is_enabled():
    """True once enable() has run in this process."""
    return bool(_C is not None and _need("is_enabled")())


def is_sealed():
    return bool(_C is not None and _need("is_sealed")())


def enable(*, sealed_reserve=0, cow_reserve=0, grow_step=0):
    """Create the region, hook the object allocator and shim the import system.

    Raises RuntimeError if already enabled, UnsupportedInterpreter on
    interpreters the glue cannot serve.
    """
    kw = {k: v for k, v in (("sealed_reserve", sealed_reserve), ("cow_reserve", cow_reserve),
                            ("grow_step", grow_step)) if v}
    _need("enable")(**kw)
    if backend == "stock":
        from . import _shim
        _shim.install(_C)


def seal(mode="strict", *, log=None, engine="auto", trap_cow=True):
    """End warm-up: the sealed tier stops allocating and is protected as `mode` says.

    mode: "strict" (read-only; a stray write kills the process with a
    diagnostic), "trap" (writes are logged, then allowed privately), "audit"
    (written pages found by scanning), "off" (segregation only).
    log: directory for trap records (JSON lines, one file per pid).
    Later imports keep working; their objects go to the ordinary heap.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    if log is not None:
        log = os.fspath(log)
        os.makedirs(log, exist_ok=True)
    fn = _need("seal")
    if backend == "stock":
        fn(mode, log, engine, trap_cow)
    else:
        fn(mode=mode, log=log, engine=engine)
    _state["mode"], _state["log"] = mode, log
    if not _state["exit_hook"]:
        import atexit
        atexit.register(_at_exit)
        _state["exit_hook"] = True


def _at_exit():
    # Runs before the interpreter's finalization, which on 3.13 rewrites the
    # state bits of every interned string: let those writes land privately.
    log = _state.get("log")
    if log:
        try:
            _write_stats(log)
        except OSError:
            pass
    fn = getattr(_C, "exit_remap", None)
    if fn is not None:
        fn()


def _write_stats(log):
    # The trap records themselves are in the library's log next to this
    # (symbolizing them again here would slow every worker's exit).
    import json
    st = stats()
    path = os.path.join(log, f"eternal-stats-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump({"pid": os.getpid(), "argv": sys.argv, "stats": st}, f)


def freeze(obj):
    """Deep-copy immutable data into the sealed tier and return the copy.

    str, bytes, int, float, complex, bool, None, tuple and frozenset are
    copied as themselves, lists become tuples, dicts read-only mappings
    (types.MappingProxyType). Shared substructure stays shared; cycles are
    kept. Any other type raises TypeError naming the path, e.g. root['a'][3].
    """
    return _need("freeze")(obj)


def stats():
    """A dict: sealed_bytes, cow_bytes, objects_by_type, bytes_by_type,
    by_tier, mode, trap_writes_sealed, trap_writes_cow, fallback, ..."""
    if _C is None:
        return {"enabled": False, "mode": "none", "backend": backend}
    st = dict(_need("stats")())
    st["backend"] = backend
    return st


def trap_records(max=4096):
    """Trapped writes of this process so far, in Python terms (drains the ring)."""
    fn = getattr(_C, "trap_read", None) if _C is not None else None
    return fn(max) if fn is not None else []


def audit_scan(reprotect=False):
    """Audit mode: the region pages written since the last scan, as dicts
    (address, tier, blocks); reprotect=True starts a new interval."""
    return _need("audit_scan")(reprotect)


def tier_of(obj):
    """'sealed', 'cow' or None: where obj lives."""
    fn = getattr(_C, "tier_of", None) if _C is not None else None
    return fn(obj) if fn is not None else None


def report(file=None, records=None):
    """Print stats() and trap records as a table."""
    from ._report import print_report
    print_report(stats(), trap_records() if records is None else records, file=file or sys.stdout)


def _env_mode():
    mode = os.environ.get("ETERNAL_MODE", "strict") or "strict"
    if mode not in MODES:
        raise ValueError(f"ETERNAL_MODE={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def _seal_from_env():
    if is_enabled() and not is_sealed():
        seal(_env_mode(), log=os.environ.get("ETERNAL_LOG") or None,
             engine=os.environ.get("ETERNAL_ENGINE", "auto") or "auto")


def _seal_before_fork():
    try:
        _seal_from_env()
    except Exception as e:  # never break the fork itself
        sys.stderr.write(f"eternal: sealing before fork failed: {e}\n")


def start_from_env():
    """What ETERNAL=1 does at start-up: enable(), then seal per ETERNAL_SEAL
    (first-fork: right before the first os.fork(); manual: the program calls seal())."""
    policy = os.environ.get("ETERNAL_SEAL", "first-fork") or "first-fork"
    if policy not in ("first-fork", "manual"):
        raise ValueError(f"ETERNAL_SEAL={policy!r}: expected first-fork or manual")
    _env_mode()
    if not is_enabled():
        enable()
    if policy == "first-fork" and not _state["first_fork"]:
        os.register_at_fork(before=_seal_before_fork)
        _state["first_fork"] = True
