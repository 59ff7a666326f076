# test_glue_exhaustion.py - the region runs out in the middle of a program's imports:
# the glue falls back to the ordinary heap and the program's output does not change.
"""Run by any Python with pytest: `python3 -m pytest tests/faults/test_glue_exhaustion.py`.

Each case runs the same program (stdlib imports, then work whose output depends
on what was imported) in a fresh CPython 3.12 and 3.13: without the glue, and
with eternal.enable() given tiers far too small for the imports (2 MiB each).
Twice each: the first run compiles the modules from source into an empty
PYTHONPYCACHEPREFIX, the second loads the .pyc files (the marshal path).
"""
import glob
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYENV = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))

PROGRAM = r'''
import os, sys
if os.environ.get("GLUE") == "1":
    import eternal
    eternal.enable(sealed_reserve=2 << 20, cow_reserve=2 << 20)
import argparse, collections, csv, dataclasses, datetime, decimal, difflib, email.message, email.parser
import fractions, hashlib, html.parser, http.client, inspect, io, ipaddress, json, logging, pathlib
import pprint, random, re, statistics, string, tarfile, textwrap, unittest, urllib.parse, uuid, zipfile
import xml.etree.ElementTree as ET
def work():
    out = []
    out.append(json.dumps({"a": [1, 2.5, None], "b": "\u00e9"}, sort_keys=True))
    out.append(str(decimal.Decimal("1") / decimal.Decimal("7")))
    out.append(str(fractions.Fraction(355, 113) ** 2))
    out.append(hashlib.sha256(b"eternal").hexdigest())
    out.append(textwrap.fill("the quick brown fox " * 8, 30))
    out.append(str(ipaddress.ip_network("10.0.0.0/29").num_addresses))
    out.append(urllib.parse.urlencode({"q": "a b", "n": 3}))
    out.append(ET.tostring(ET.fromstring("<r><x k='1'>t</x></r>")).decode())
    m = email.message.EmailMessage(); m["Subject"] = "hi"; m.set_content("body")
    out.append(email.parser.Parser().parsestr(m.as_string())["Subject"])
    out.append("".join(difflib.unified_diff(["a\n", "b\n"], ["a\n", "c\n"])))
    out.append(repr(statistics.mean([1, 2, 3, 4])))
    out.append(pprint.pformat(collections.Counter("mississippi").most_common()))
    random.seed(3); out.append(repr([random.random() for _ in range(3)]))
    p = argparse.ArgumentParser(prog="x"); p.add_argument("--n", type=int); out.append(repr(p.parse_args(["--n", "5"])))
    out.append(repr(sorted(n for n in dir(inspect) if not n.startswith("_"))[:20]))
    out.append(str(len(unittest.TestLoader().getTestCaseNames(unittest.TestCase))))
    return "\n".join(out)
print(work())
if os.environ.get("GLUE") == "1":
    st = eternal.stats()
    eternal.seal("strict")
    print(work())   # after the seal too: the fallen-back objects and the sealed ones mix
    sys.stderr.write("STATS " + json.dumps({k: st[k] for k in ("alloc_failures", "fallback", "sealed_bytes",
                     "cow_bytes", "captures", "capture_errors")}) + "\n")
else:
    print(work())
'''


def interpreters():
    out = []
    for v in ("3.12.1", "3.13.0"):
        exe = os.path.join(PYENV, "versions", v, "bin", "python" + v.rsplit(".", 1)[0])
        out.append(pytest.param(exe, id=v))
    return out


def glue_path(python):
    ver = subprocess.check_output([python, "-c", "import sys;print('%d%d' % sys.version_info[:2])"],
                                  text=True).strip()
    exts = [e for e in glob.glob(os.path.join(REPO, "build*", "cpython-glue", "py" + ver, "_eternal*.so"))
            if os.path.isfile(e)]
    if not exts:
        return None
    return os.path.join(REPO, "cpython-glue") + ":" + os.path.dirname(max(exts, key=os.path.getmtime))


def run(python, env, pycache):
    env = dict(env, PYTHONPYCACHEPREFIX=pycache, PYTHONHASHSEED="0")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.run([python, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("python", interpreters())
def test_exhaustion_mid_import(python, tmp_path):
    if not os.path.exists(python):
        pytest.skip(f"{python} not installed")
    gp = glue_path(python)
    if not gp:
        pytest.skip("the glue is not built for this interpreter (no build*/cpython-glue/pyXY/_eternal*.so)")
    base = {k: v for k, v in os.environ.items() if not k.startswith("ETERNAL")}
    ref = run(python, dict(base, GLUE="0"), str(tmp_path / "pyc-ref"))
    assert ref.returncode == 0, ref.stderr
    expect = ref.stdout.split("\n", 1)[0]
    for attempt in ("compile", "pyc"):  # same cache dir: the second run unmarshals
        got = run(python, dict(base, GLUE="1", PYTHONPATH=gp), str(tmp_path / "pyc-glue"))
        assert got.returncode == 0, f"{attempt}: exit {got.returncode}\n{got.stderr[-3000:]}"
        assert got.stdout == ref.stdout, f"{attempt}: output differs"
        stats = json.loads(got.stderr.split("STATS ", 1)[1].splitlines()[0])
        # The tiers really ran out, mid-import, and the heap took the rest.
        assert stats["alloc_failures"] > 0 and stats["fallback"] > 0, stats
        assert stats["sealed_bytes"] > 0, stats
        print(attempt, stats)
    assert expect
