# tests/glue/test_api.py - every API of the `eternal` package and its error cases,
# each in a fresh interpreter (enable and seal are once per process).
import json
import os
import subprocess
import sys

import pytest

from conftest import GLUE, run_py, glue_env

DEMO = '''\
GREETING = "h\\u00e9llo w\\u00f6rld, not an identifier"
DATA = (1, 2.5, 3j, b"raw bytes here", ("nested", 4242))
def member(x):
    return x in {"alpha", "beta"}
BIG = 1267650600228229401496703205376
def func(x):
    return x + "suffix_literal"
class Klass:
    attr_name_unique_xyz = "value"
    def method(self):
        return DATA[4][1]
'''

CHECK = '''
import sys, gc, ctypes, eternal
eternal.enable()
sys.path.insert(0, sys.argv[1])
import mod_demo as m
T = eternal.tier_of
def hashed(o):
    return ctypes.c_ssize_t.from_address(id(o) + 24).value != -1
def utf8(o):
    return ctypes.c_void_p.from_address(id(o) + 48).value is not None
assert T(m.GREETING) == "sealed", T(m.GREETING)
assert hashed(m.GREETING) and utf8(m.GREETING)
assert sys.getrefcount(m.GREETING) >= 2 ** 31
for o in m.DATA:
    assert T(o) in ("sealed", None), (o, T(o))
assert T(m.DATA) == "sealed" and not gc.is_tracked(m.DATA)
assert T(m.DATA[3]) == "sealed" and hashed(m.DATA[3])
fs = [c for c in m.member.__code__.co_consts if isinstance(c, frozenset)][0]
assert T(fs) == "sealed" and not gc.is_tracked(fs) and m.member("beta")
assert T(m.BIG) == "sealed" and m.BIG == 2 ** 100
assert T(m.func.__code__) == "cow", T(m.func.__code__)
assert T(m.Klass.method.__code__) == "cow"
assert T(m.func.__code__.co_consts[1]) == "sealed"
# identifier-like names are interned, and the interned copy is the region's
# (spelled at run time: a literal here would be interned before enable())
want = "".join(["attr_name_", "unique_xyz"])
name = [k for k in vars(m.Klass) if k == want][0]
assert T(name) == "sealed", T(name)
assert sys.intern(want) is name
assert m.func("a") == "asuffix_literal" and m.Klass().method() == 4242
st = eternal.stats()
assert st["sealed_bytes"] > 0 and st["cow_bytes"] > 0 and st["objects_by_type"]["code"] >= 3
print("OK", st["captures"])
'''


@pytest.mark.parametrize("how", ["source", "pyc"])
def test_module_constants_and_code(tmp_path, how):
    (tmp_path / "mod_demo.py").write_text(DEMO)
    env = {}
    if how == "pyc":
        run_py("import py_compile, sys; py_compile.compile(sys.argv[1])", [str(tmp_path / "mod_demo.py")], check=0)
        assert list((tmp_path / "__pycache__").glob("mod_demo.*.pyc"))
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    p = run_py(CHECK, [str(tmp_path)], env=env, check=0)
    assert p.stdout.startswith("OK")


def test_version_cli():
    p = run_py(None, ["-m", "eternal", "--version"], check=0)
    v = sys.version_info
    assert f"CPython {v.major}.{v.minor}.{v.micro}" in p.stdout and "libeternal" in p.stdout


def test_enable_twice():
    p = run_py('''
        import eternal
        eternal.enable()
        try:
            eternal.enable()
        except RuntimeError as e:
            print("ERR", e)
        ''', check=0)
    assert "ERR" in p.stdout and "already enabled" in p.stdout


def test_errors_before_enable():
    p = run_py('''
        import eternal
        for f in (lambda: eternal.seal(), lambda: eternal.freeze([1])):
            try:
                f()
            except RuntimeError as e:
                print("ERR", e)
        print(eternal.stats()["enabled"], eternal.is_enabled(), eternal.is_sealed())
        ''', check=0)
    assert p.stdout.count("ERR") == 2 and "enable() first" in p.stdout
    assert "False False False" in p.stdout


def test_seal_errors():
    p = run_py('''
        import eternal
        eternal.enable()
        for bad in (dict(mode="bogus"), dict(mode="strict", engine="nope")):
            try:
                eternal.seal(**bad)
            except ValueError as e:
                print("VALERR", e)
        eternal.seal("off")
        try:
            eternal.seal("off")
        except RuntimeError as e:
            print("TWICE", e)
        ''', check=0)
    assert p.stdout.count("VALERR") == 2 and "TWICE" in p.stdout and "already sealed" in p.stdout


@pytest.mark.parametrize("mode", ["strict", "off", "trap", "audit"])
def test_seal_modes_and_later_imports(mode, tmp_path):
    p = run_py(f'''
        import eternal, sys
        eternal.enable()
        import json, email.parser
        eternal.seal({mode!r}, log={str(tmp_path)!r})
        st = eternal.stats()
        assert st["mode"] == {mode!r}, st["mode"]
        assert st["sealed"]
        import xml.dom.minidom, csv, decimal   # imports after sealing keep working
        assert eternal.tier_of(xml.dom.minidom.parseString.__code__) is None
        print(json.dumps({{"a": decimal.Decimal("1.5").as_integer_ratio()}}))
        recs = eternal.trap_records()
        print("SEALED", sum(r["tier"] == "sealed" for r in recs))
        ''', check=0)
    assert '{"a": [3, 2]}' in p.stdout
    assert "SEALED 0" in p.stdout


def test_stats_keys():
    p = run_py('''
        import eternal, json
        eternal.enable()
        import decimal
        st = eternal.stats()
        print(json.dumps(st))
        ''', check=0)
    st = json.loads(p.stdout)
    for k in ("sealed_bytes", "cow_bytes", "objects_by_type", "bytes_by_type", "mode",
              "trap_writes_sealed", "trap_writes_cow", "fallback", "by_tier"):
        assert k in st, k
    assert st["mode"] == "warmup"
    assert st["objects_by_type"]["str"] > 0 and st["bytes_by_type"]["code"] > 0
    assert sum(e["bytes"] for e in st["by_tier"]["sealed"].values()) == st["sealed_bytes"]
    assert st["stray_blocks"] == 0


def test_region_full_falls_back(tmp_path):
    p = run_py('''
        import eternal
        eternal.enable(sealed_reserve=1 << 20, cow_reserve=1 << 20, grow_step=1 << 16)
        import json, email.parser, decimal, argparse, logging, asyncio, http.client, xml.dom.minidom
        st = eternal.stats()
        print("FALLBACK", st["fallback"], st["sealed_bytes"], st["alloc_failures"])
        eternal.seal("strict")
        import unittest
        print(json.loads(json.dumps({"x": [1, 2]})), decimal.Decimal(2) ** 10)
        ''', check=0)
    words = p.stdout.split()
    assert int(words[1]) > 0, p.stdout
    assert "{'x': [1, 2]} 1024" in p.stdout


def test_unsupported_interpreter_old():
    import glob
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    olds = sorted(glob.glob(os.path.join(root, "versions", "3.11*", "bin", "python3.11")))
    if not olds:
        pytest.skip("no CPython 3.11 here")
    env = dict(os.environ, PYTHONPATH=GLUE)
    p = subprocess.run([olds[0], "-c", "import eternal\ntry:\n eternal.enable()\nexcept eternal.UnsupportedInterpreter as e:\n print('ERR', e)"],
                       env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "ERR CPython 3.11 is not supported" in p.stdout and "PEP 683" in p.stdout


def test_unsupported_interpreter_free_threaded():
    p = run_py('''
        import sysconfig
        real = sysconfig.get_config_var
        sysconfig.get_config_var = lambda k: 1 if k == "Py_GIL_DISABLED" else real(k)
        import eternal
        print("WHY", eternal._why_unsupported())
        ''', check=0)
    assert "free-threaded" in p.stdout


def test_freeze_values():
    p = run_py('''
        import eternal, types, sys, gc
        eternal.enable()
        shared = [1, 2, "shared"]
        src = {"s": "text \\u20ac", "b": b"by", "i": 12345678901234567890, "f": 1.25, "c": 2 + 3j,
               "t": True, "n": None, "tu": (1, (2, 3)), "fs": frozenset({1, "x"}), "l": [1, [2, 3]],
               "d": {"k": "v"}, "sh1": shared, "sh2": shared, "small": 7}
        cyc = [1]
        cyc.append(cyc)
        src["cyc"] = cyc
        fr = eternal.freeze(src)
        assert isinstance(fr, types.MappingProxyType)
        assert fr["s"] == src["s"] and fr["b"] == b"by" and fr["i"] == src["i"] and fr["f"] == 1.25
        assert fr["c"] == 2 + 3j and fr["t"] is True and fr["n"] is None and fr["small"] == 7
        assert fr["tu"] == (1, (2, 3)) and fr["fs"] == frozenset({1, "x"})
        assert fr["l"] == (1, (2, 3)) and isinstance(fr["l"], tuple)
        assert isinstance(fr["d"], types.MappingProxyType) and dict(fr["d"]) == {"k": "v"}
        assert fr["sh1"] is fr["sh2"]
        assert fr["cyc"][1] is fr["cyc"]
        for k in ("s", "b", "i", "f", "c", "tu", "fs", "l", "d"):
            assert eternal.tier_of(fr[k]) == "sealed", (k, eternal.tier_of(fr[k]))
            assert sys.getrefcount(fr[k]) >= 2 ** 31
        assert not gc.is_tracked(fr["tu"])
        assert eternal.tier_of(fr) == "sealed"
        try:
            fr["new"] = 1
        except TypeError:
            print("READONLY")
        assert eternal.freeze(fr) is fr          # already eternal
        assert eternal.freeze("x" * 50) == "x" * 50
        eternal.seal("strict")
        assert fr["d"]["k"] == "v" and hash(fr["fs"]) == hash(frozenset({1, "x"}))
        print(sorted(fr.keys())[:3], len(str(fr)) > 10)
        try:
            eternal.freeze([1])
        except RuntimeError as e:
            print("AFTERSEAL", e)
        print("STRAYS", eternal.stats()["stray_blocks"])
        ''', check=0)
    assert "READONLY" in p.stdout and "AFTERSEAL" in p.stdout and "STRAYS 0" in p.stdout


def test_freeze_type_errors():
    p = run_py('''
        import eternal
        eternal.enable()
        class Foo: pass
        for bad in ({"a": [1, 2, 3, Foo()]}, [set([1])], (1, {"k": {"z": [bytearray(b"x")]}}),
                    {Foo(): 1}, frozenset({Foo()})):
            try:
                eternal.freeze(bad)
                print("NOERROR")
            except TypeError as e:
                print("TE", e)
        deep = []
        for _ in range(6000):
            deep = [deep]
        try:
            eternal.freeze(deep)
        except ValueError as e:
            print("DEEP", str(e)[:60])
        print("STRAYS", eternal.stats()["stray_blocks"])
        ''', check=0)
    out = p.stdout
    assert "NOERROR" not in out
    assert "type 'Foo' at root['a'][3]" in out
    assert "type 'set' at root[0]" in out
    assert "type 'bytearray' at root[1]['k']['z'][0]" in out
    assert "type 'Foo' at root.keys()<" in out
    assert "type 'Foo' at root.<element" in out
    assert "DEEP" in out and "STRAYS 0" in out


def test_old_abi_refcount_write_trap(tmp_path):
    p = run_py(f'''
        import eternal
        eternal.enable()
        s = eternal.freeze("a string an old extension increfs")
        eternal.seal("trap", log={str(tmp_path)!r})
        eternal._C._old_abi_incref(s)
        recs = [r for r in eternal.trap_records() if r["tier"] == "sealed"]
        for r in recs:
            print("REC", r["type"], r["field"], r["repr"], r["writer"])
        ''', check=0)
    rec = [l for l in p.stdout.splitlines() if l.startswith("REC")]
    assert len(rec) == 1, p.stdout
    assert "REC str ob_refcnt 'a string an old extension increfs'" in rec[0]
    assert "eternal_glue_old_abi_incref" in rec[0]
    logs = list(tmp_path.glob("*.jsonl"))
    lines = [json.loads(l) for f in logs for l in f.read_text().splitlines()]
    sealed = [l for l in lines if l["tier"] == "sealed"]
    assert len(sealed) == 1 and sealed[0]["field"] == "ob_refcnt" and sealed[0]["type"] == "str"
    assert "eternal_glue_old_abi_incref" in sealed[0]["writer"]


def test_old_abi_refcount_write_strict():
    p = run_py('''
        import eternal
        eternal.enable()
        s = eternal.freeze("sealed text")
        eternal.seal("strict")
        eternal._C._old_abi_incref(s)
        print("SURVIVED")
        ''')
    assert p.returncode == -11, (p.returncode, p.stderr)
    assert "SURVIVED" not in p.stdout
    assert "str object 'sealed text'" in p.stderr and "field ob_refcnt" in p.stderr
    assert "eternal_glue_old_abi_incref" in p.stderr


def test_describe_fields():
    p = run_py('''
        import eternal
        eternal.enable()
        import json
        fr = eternal.freeze({"k": ("t\\u00e9xt", b"bb", 1.5, 10 ** 30)})
        t = fr["k"]
        D = eternal._C.describe
        print(D(id(t[0]) + 24)["field"], D(id(t[0]) + 48)["field"], D(id(t[1]) + 24)["field"],
              D(id(t) - 16)["field"], D(id(t) + 24 + 8)["field"], D(id(t[2]) + 16)["field"])
        co = json.dumps.__code__
        d = D(id(co) + 200)
        print(d["type"], d["code"].split(" ")[0], d["code"].endswith(":%d)" % co.co_firstlineno))
        ''', check=0)
    lines = p.stdout.splitlines()
    assert lines[0] == "hash utf8 ob_shash gc_next ob_item[1] ob_fval", lines[0]
    assert lines[1] == "code dumps True", lines[1]


def test_audit_scan():
    p = run_py('''
        import eternal
        eternal.enable()
        s = eternal.freeze("audited " * 3)
        import json
        eternal.seal("audit")
        before = eternal.audit_scan(reprotect=True)
        eternal._C._old_abi_incref(s)
        after = eternal.audit_scan(reprotect=True)
        print("PAGES", len(after), [p["tier"] for p in after][:3])
        ok = any(p["address"] <= id(s) < p["address"] + 4096 for p in after)
        print("HIT", ok)
        ''', check=0)
    assert "HIT True" in p.stdout, p.stdout
