# checks.py - behaviour checks of the patched interpreter, one TAP line each;
# run by test.sh with the patched python3 (each check in a fresh subprocess).
import json
import os
import subprocess
import sys
import textwrap

PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))


def run(code, env=None, timeout=300):
    e = dict(os.environ)
    e.pop("ETERNAL", None)
    e.update(env or {})
    return subprocess.run([PY, "-c", textwrap.dedent(code)], env=e, capture_output=True,
                          text=True, timeout=timeout)


def check(name, ok, detail=""):
    print(f"{'ok' if ok else 'not ok'} - {name}")
    if not ok and detail:
        for line in str(detail).strip().splitlines()[-15:]:
            print(f"#   {line}")


def check_code(name, code, env=None, want_rc=0):
    p = run(code, env)
    check(name, p.returncode == want_rc and "FAIL" not in p.stdout,
          f"rc={p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


check_code("builtin module _eternal_patched, off until enabled", """
    import sys, _eternal_patched as ep
    assert "_eternal_patched" in sys.builtin_module_names
    st = ep.stats()
    assert st["enabled"] is False and st["mode"] == "none", st
    assert ep.tier_of("abc") is None
""")

check_code("enable twice raises RuntimeError", """
    import _eternal_patched as ep
    ep.enable()
    try:
        ep.enable()
    except RuntimeError:
        pass
    else:
        print("FAIL: no error")
""")

check_code("interning during warm-up puts the string in the sealed tier", """
    import sys, _eternal_patched as ep
    ep.enable()
    s = sys.intern("".join(["eternal_", "probe_é"]))
    assert ep.tier_of(s) == "sealed", ep.tier_of(s)
    t = sys.intern("".join(["eternal_", "probe_é"]))
    assert t is s
    assert s.encode() == "eternal_probe_é".encode()
    ep.stats()   # interns its own keys once
    before = ep.stats()["objects_by_type"]["str"]
    sys.intern("".join(["eternal_", "probe_é"]))
    assert ep.stats()["objects_by_type"]["str"] == before, "duplicate copied"
""")

check_code("marshal: leaves and tuples sealed, code in cow, GC-untracked, values equal", """
    import gc, marshal, _eternal_patched as ep
    src = "X = (1.5, 'two words', b'bytes', 123456789012345678901234567890, 3j, ('x', 7))\\n" \\
          "def f(a):\\n    return a in {'a', 'b'}\\n"
    data = marshal.dumps(compile(src, "m", "exec"))
    ep.enable()
    c = marshal.loads(data)
    assert ep.tier_of(c) == "cow", ep.tier_of(c)
    x = [k for k in c.co_consts if isinstance(k, tuple) and len(k) == 6][0]
    assert ep.tier_of(x) == "sealed" and not gc.is_tracked(x)
    for v in x:
        assert ep.tier_of(v) == "sealed", (v, ep.tier_of(v))
    ns = {}
    exec(c, ns)
    assert ns["X"] == (1.5, 'two words', b'bytes', 123456789012345678901234567890, 3j, ('x', 7))
    fs = [k for k in ns["f"].__code__.co_consts if isinstance(k, frozenset)][0]
    assert ep.tier_of(fs) == "sealed" and ns["f"]("b") and not ns["f"]("c")
    assert ep.tier_of(ns["f"].__code__) == "cow"
    gc.collect()
    assert not gc.is_tracked(x)
""")

check_code("freeze: deep copy, lists as tuples, dicts read-only, bad types named", """
    import types, _eternal_patched as ep
    ep.enable()
    shared = [1.25, "s"]
    f = ep.freeze({"a": [shared, shared], "b": {1, 2}, "c": ("t", 10**30)})
    assert isinstance(f, types.MappingProxyType)
    assert f["a"] == ((1.25, "s"), (1.25, "s")) and f["a"][0] is f["a"][1]
    assert ep.tier_of(f["a"]) == "sealed" and ep.tier_of(f["c"][1]) == "sealed"
    assert f["b"] == frozenset({1, 2})
    try:
        ep.freeze({"a": [0, object()]})
    except TypeError as e:
        assert "root['a'][1]" in str(e), e
    else:
        print("FAIL: no TypeError")
""")

check_code("strict seal: a write into the sealed tier kills the process (SIGSEGV)", """
    import ctypes, sys, _eternal_patched as ep
    ep.enable()
    s = sys.intern("".join(["victim", "_string"]))
    assert ep.tier_of(s) == "sealed"
    ep.seal("strict")
    ctypes.memset(id(s) + 48, 0x41, 1)
    print("FAIL: write survived")
""", want_rc=-11)

check_code("trap seal: a write into the sealed tier is logged with type and field", """
    import ctypes, sys, _eternal_patched as ep
    ep.enable()
    s = sys.intern("".join(["trapped", "_string"]))
    ep.seal("trap")
    ctypes.memset(id(s) + 48, 0x41, 1)
    assert s == "trapped_Atring", s   # the write proceeds, privately
    recs = ep.trap_read()
    assert ep.stats()["trap_writes_sealed"] == 1, ep.stats()
    assert len(recs) == 1 and recs[0]["type"] == "str" and recs[0]["tier"] == "sealed", recs
    assert recs[0]["field"] == "data" and recs[0]["block_offset"] == 48, recs
""")

check_code("after seal: interning a sealed string gives a heap copy; more imports work", """
    import marshal, sys, _eternal_patched as ep
    data = marshal.dumps(("".join(["not_yet_", "interned_xyz"]), 2.5))
    ep.enable()
    t = marshal.loads(data)
    assert ep.tier_of(t[0]) == "sealed"
    ep.seal("strict")
    i = sys.intern(t[0])
    assert i == t[0] and ep.tier_of(i) is None
    class C: pass
    setattr(C, t[0], 1)
    assert getattr(C, t[0]) == 1
    import xml.dom.minidom, json, decimal
    assert ep.tier_of(json.dumps) is None
    st = ep.stats()
    assert st["mode"] == "strict" and st["sealed"] and st["sealed_bytes"] > 0, st
""")

check_code("ETERNAL=1 ETERNAL_SEAL=startup: enabled at start-up, sealed strict, clean exit", """
    import os, _eternal_patched as ep
    st = ep.stats()
    assert st["mode"] == "strict", st
    assert st["objects_by_type"].get("code", 0) > 0 and st["objects_by_type"]["str"] > 0, st
    assert ep.tier_of(os.path.join.__code__) == "cow"
""", env={"ETERNAL": "1", "ETERNAL_SEAL": "startup", "ETERNAL_MODE": "strict"})

check_code("ETERNAL=1 (first-fork): sealed in the parent right before os.fork()", """
    import os, _eternal_patched as ep
    assert ep.stats()["mode"] == "warmup"
    pid = os.fork()
    if pid == 0:
        os._exit(0 if ep.stats()["mode"] == "strict" else 3)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and ep.stats()["mode"] == "strict", (status, ep.stats())
""", env={"ETERNAL": "1"})

check_code("the eternal package routes to _eternal_patched", """
    import sys
    sys.path.insert(0, %r)
    import eternal
    assert eternal.backend == "patched", eternal.backend
    eternal.enable()
    fz = eternal.freeze(["a", 1.5])
    assert fz == ("a", 1.5) and eternal.tier_of(fz) == "sealed"
    eternal.seal("strict")
    assert eternal.stats()["mode"] == "strict"
""" % os.path.dirname(HERE))

e = dict(os.environ)
e.pop("ETERNAL", None)
p = subprocess.run([PY, os.path.join(HERE, "import_all.py"), "--mode", "strict"], env=e,
                   capture_output=True, text=True, timeout=900)
try:
    res = json.loads(p.stdout.strip().splitlines()[-1])
except (ValueError, IndexError):
    res = {}
check("import-everything, sealed strict, fork and exit: no SIGSEGV",
      p.returncode == 0 and res.get("stats", {}).get("sealed_bytes", 0) > 0
      and res.get("imported", 0) > 400, f"rc={p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
