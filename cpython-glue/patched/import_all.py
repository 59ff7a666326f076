# import_all.py - the import-everything workload: warm up by importing the whole
# stdlib, seal, then use the imported objects and fork; exit 0 if nothing broke.
import argparse
import importlib
import importlib.util
import json
import os
import pkgutil
import sys

# Importing these has side effects (a browser, printing, GUI demos), or they
# exist only for tests and tools that run on import.
SKIP_TOP = {"antigravity", "this", "__hello__", "__phello__", "idlelib", "turtledemo",
            "tkinter", "turtle", "test", "ensurepip", "venv", "lib2to3", "pydoc_data",
            "xxlimited", "xxlimited_35", "xxsubtype", "_xxtestfuzz", "_testcapi",
            "_testinternalcapi", "_testbuffer", "_testimportmultiple", "_testmultiphase",
            "_testsinglephase", "_testclinic", "_testclinic_limited", "_testexternalinspection",
            "_ctypes_test", "_testlimitedcapi"}
SKIP_PART = ("test", "tests", "__main__", "idle_test")


def modules():
    for name in sorted(sys.stdlib_module_names):
        if name in SKIP_TOP:
            continue
        yield name
        try:
            spec = importlib.util.find_spec(name)
        except Exception:
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for info in pkgutil.walk_packages(spec.submodule_search_locations, name + ".",
                                          onerror=lambda n: None):
            if any(p in SKIP_PART for p in info.name.split(".")):
                continue
            yield info.name


def import_all():
    ok = failed = 0
    for name in modules():
        try:
            importlib.import_module(name)
            ok += 1
        except BaseException:   # missing optional deps, platform-only modules
            failed += 1
    return ok, failed


def exercise():
    # Touch what warm-up loaded: run code, hash strings, format numbers,
    # collect garbage; any write to the sealed tier would kill the process.
    import collections, decimal, email.message, fractions, gc, re, textwrap
    m = email.message.EmailMessage()
    m["Subject"] = "héllo wörld"
    m.set_content("body " * 50)
    text = m.as_string()
    words = collections.Counter(re.findall(r"\w+", text))
    total = sum(fractions.Fraction(i, i + 1) for i in range(1, 200))
    d = decimal.Decimal(1) / decimal.Decimal(7)
    js = json.dumps({"w": words.most_common(5), "t": str(total), "d": str(d)})
    textwrap.fill(js, 40)
    for mod in list(sys.modules.values()):
        for k in list(getattr(mod, "__dict__", {}))[:50]:
            hash(k)
            sys.intern(k)   # region strings: interned copy on the heap
    gc.collect()
    return len(js)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="strict", help="seal mode, or 'none' not to seal")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--log", default=None)
    args = ap.parse_args()

    patched = "_eternal_patched" in sys.builtin_module_names
    if patched:
        import _eternal_patched as ep
        ep.enable()
    ok, failed = import_all()
    if patched and args.mode != "none":
        ep.seal(args.mode, args.log, args.engine)
    exercise()
    pid = os.fork()
    if pid == 0:
        exercise()
        import xml.dom.minidom  # noqa: F401 - more imports after seal
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    result = {"imported": ok, "failed": failed, "child_status": status}
    if patched:
        result["stats"] = ep.stats()
        if args.mode == "trap":
            result["trap_records"] = ep.trap_read(20)
    print(json.dumps(result))
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
