# tests/glue/workload.py - the workloads of the glue tests and figures: import every
# importable stdlib module (plus django/jinja2/sympy), then exercise what was imported.
import os

if os.environ.get("ETERNAL") == "1":
    import eternal._autostart  # noqa: F401  (what eternal.pth does when installed)

import importlib
import pkgutil
import sys
import warnings

# Importing these has effects beyond the import (a browser, a GUI, output) or
# needs a display; __main__ modules run programs.
SKIP_PREFIX = ("antigravity", "this", "__hello__", "__phello__", "tkinter", "turtle", "turtledemo",
               "idlelib", "test", "lib2to3.tests", "ctypes.test", "distutils.tests", "sqlite3.test",
               "unittest.test", "tomllib.tests", "pydoc_data")
THIRD_PARTY = ("django", "jinja2", "sympy")


def _skip(name):
    return name.endswith("__main__") or any(name == p or name.startswith(p + ".") for p in SKIP_PREFIX)


def stdlib_names():
    names = []
    for top in sorted(sys.stdlib_module_names):
        if _skip(top):
            continue
        names.append(top)
        try:
            spec = importlib.util.find_spec(top)
        except Exception:
            continue
        if spec and spec.submodule_search_locations:
            for m in pkgutil.walk_packages(spec.submodule_search_locations, top + ".", onerror=lambda n: None):
                if not _skip(m.name):
                    names.append(m.name)
    return names


def import_all(names):
    ok = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in names:
            try:
                importlib.import_module(n)
                ok += 1
            except BaseException:
                pass
    return ok


def third_party():
    ok = []
    for n in THIRD_PARTY:
        try:
            importlib.import_module(n)
            ok.append(n)
        except Exception:
            pass
    if "django" in ok:
        try:
            import django
            from django.conf import settings
            if not settings.configured:
                settings.configure(INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
                                   DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                                          "NAME": ":memory:"}},
                                   TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}])
            django.setup()
            import django.contrib.auth.models  # noqa: F401
            import django.template.defaulttags  # noqa: F401
        except Exception:
            pass
    return ok


def exercise():
    """Run a little of everything that was imported; returns a checksum."""
    import json, re, collections, textwrap, decimal, datetime, difflib, ast, email, fractions, statistics
    import email.parser, string, itertools, functools, hashlib, base64, zlib, csv, io, pprint, inspect
    acc = 0
    data = {"a": [1, 2.5, "x" * 10, None], "b": {"c": "d\u00e9"}}
    for i in range(50):
        s = json.dumps(data, sort_keys=True)
        acc += len(json.loads(s)["a"])
        acc += len(re.findall(r"\w+", "hello world %d" % i))
        acc += len(textwrap.wrap("lorem ipsum dolor sit amet " * 5, 20))
        acc += int(decimal.Decimal("1.5") * i)
        acc += datetime.date(2020, 1, 1 + i % 28).toordinal() % 7
        acc += len(list(difflib.unified_diff(["a", "b"], ["a", "c"])))
        acc += len(ast.dump(ast.parse("x = %d + y" % i)))
        acc += fractions.Fraction(i, 3).denominator
        acc += int(statistics.mean([1, 2, 3, i]))
        acc += len(string.Template("$x-$y").substitute(x=i, y="z"))
        acc += len(hashlib.sha256(b"x" * i).hexdigest())
        acc += len(base64.b64encode(zlib.compress(b"abc" * i)))
        msg = email.parser.Parser().parsestr("From: a@b\nSubject: hi %d\n\nbody" % i)
        acc += len(msg["Subject"])
        out = io.StringIO()
        csv.writer(out).writerow([i, "a,b", 2.5])
        acc += len(out.getvalue())
        acc += len(pprint.pformat(data))
        acc += len(inspect.signature(json.dumps).parameters)
        acc += len(collections.Counter("abracadabra").most_common(2))
    if "jinja2" in sys.modules:
        import jinja2
        t = jinja2.Environment().from_string("{% for x in xs %}{{ x|upper }}{% endfor %}")
        acc += len(t.render(xs=["a", "b", "c"]))
    if "sympy" in sys.modules:
        import sympy
        x = sympy.Symbol("x")
        acc += len(str(sympy.simplify((x ** 2 - 1) / (x - 1))))
        acc += int(sympy.integrate(x, (x, 0, 2)))
    if "django.template" in sys.modules:
        try:
            from django.template import Engine, Context
            e = Engine()
            acc += len(e.from_string("{% if a %}{{ a|upper }}{% endif %}").render(Context({"a": "yo"})))
        except Exception:
            pass
    return acc


def main():
    """Standalone: warm up (import everything), optionally seal, exercise in parent and child."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--seal", choices=("strict", "trap", "audit", "off", "none"), default="none")
    p.add_argument("--log")
    p.add_argument("--third-party", action="store_true")
    p.add_argument("--fork", action="store_true")
    p.add_argument("--stats", action="store_true")
    p.add_argument("--more-imports", action="store_true", help="import more modules after sealing")
    a = p.parse_args()
    names = stdlib_names()
    n = import_all(names)
    tp = third_party() if a.third_party else []
    print(f"imported {n} of {len(names)} stdlib modules; third party: {tp}; modules now {len(sys.modules)}",
          flush=True)
    import eternal
    if a.seal != "none" and eternal.is_enabled():
        eternal.seal(a.seal, log=a.log)
    acc = exercise()
    if a.more_imports:
        import xml.dom.minidom, plistlib  # noqa: E401,F401
    print(f"parent exercise {acc}", flush=True)
    if a.fork:
        pid = os.fork()
        if pid == 0:
            acc2 = exercise()
            print(f"child exercise {acc2}", flush=True)
            if eternal.is_enabled():
                recs = eternal.trap_records()
                print(f"child trap records: sealed {sum(r['tier'] == 'sealed' for r in recs)} "
                      f"cow {sum(r['tier'] == 'cow' for r in recs)}", flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(f"child status {status}", flush=True)
        if status:
            sys.exit(1)
    if a.stats and eternal.is_enabled():
        import json
        st = eternal.stats()
        recs = eternal.trap_records()
        print("trap records:", len(recs), "sealed", sum(r["tier"] == "sealed" for r in recs))
        for r in [r for r in recs if r["tier"] == "sealed"][:20]:
            print("  SEALED WRITE", r["type"], r["field"], r["repr"], r["code"], r["writer"])
        print(json.dumps({k: v for k, v in st.items() if k != "by_tier"}, sort_keys=True))


if __name__ == "__main__":
    main()
