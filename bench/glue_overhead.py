# bench/glue_overhead.py - what the CPython glue costs at import time and where its
# bytes go: stdlib-import and Django workloads, glue vs none, per pyenv interpreter.
"""usage: python3 bench/glue_overhead.py [--python P]... [--repeats N] [--build-dir DIR] [--json OUT]

For each interpreter and workload, runs fresh child processes alternately
without the glue and with it (enable() first thing, ETERNAL_SEAL=manual), from
a warm PYTHONPYCACHEPREFIX (PYTHONDONTWRITEBYTECODE unset, so .pyc files are
loaded, as in production), and reports the median import time of each (CPU
time of the importing process, which a loaded machine disturbs less than
wall time; wall time is printed too), their
ratio, and the glue's bytes per tier by type. --source measures the
no-.pyc path (every module compiled from source) instead.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYENV = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
DEFAULT_PYTHONS = [os.path.join(PYENV, "versions/3.12.1/bin/python3.12"),
                   os.path.join(PYENV, "versions/3.13.0/bin/python3.13")]
SKIP = ("antigravity", "this", "__hello__", "__phello__", "tkinter", "turtle", "turtledemo", "idlelib",
        "test", "lib2to3.tests", "ctypes.test", "distutils.tests", "sqlite3.test", "unittest.test",
        "tomllib.tests", "pydoc_data")

CHILD = r'''
import os, sys, time, json
t0 = time.perf_counter()
c0 = time.process_time()
glue = os.environ.get("BENCH_GLUE") == "1"
if glue:
    import eternal
    eternal.enable()
t1 = time.perf_counter()
work = sys.argv[1]
if work == "stdlib":
    import importlib, warnings
    names = json.load(open(sys.argv[2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in names:
            try:
                importlib.import_module(n)
            except BaseException:
                pass
else:
    sys.path.insert(0, sys.argv[2])
    if sys.version_info >= (3, 13):
        sys.path.append(sys.argv[3])
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
    import benchsite.wsgi
    from django.urls import get_resolver
    get_resolver().url_patterns
    import shop.views, django.contrib.admin.sites
t2 = time.perf_counter()
c2 = time.process_time()
out = {"enable_s": t1 - t0, "import_s": t2 - t0, "cpu_s": c2 - c0, "modules": len(sys.modules)}
if glue:
    st = eternal.stats()
    out["stats"] = {k: st[k] for k in ("sealed_bytes", "cow_bytes", "by_tier", "captures", "fallback",
                                         "stray_blocks", "capture_errors")}
print(json.dumps(out))
'''

LIST = r'''
import sys, json, importlib.util, pkgutil
skip = tuple(sys.argv[1].split(","))
def bad(n):
    return n.endswith("__main__") or any(n == p or n.startswith(p + ".") for p in skip)
names = []
for top in sorted(sys.stdlib_module_names):
    if bad(top):
        continue
    names.append(top)
    try:
        spec = importlib.util.find_spec(top)
    except Exception:
        continue
    if spec and spec.submodule_search_locations:
        for m in pkgutil.walk_packages(spec.submodule_search_locations, top + ".", onerror=lambda n: None):
            if not bad(m.name):
                names.append(m.name)
print(json.dumps(names))
'''


def child_env(args, py, glue, pycache):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETERNAL")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    paths = ["/usr/lib/python3/dist-packages"]
    if args.build_dir:
        tag = "py" + subprocess.check_output([py, "-c", "import sys; print('%d%d' % sys.version_info[:2])"],
                                             text=True).strip()
        paths = [os.path.join(ROOT, "cpython-glue"), os.path.join(args.build_dir, "cpython-glue", tag)] + paths
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if args.source:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = pycache
    if glue:
        env["BENCH_GLUE"] = "1"
        env["ETERNAL_SEAL"] = "manual"
    return env


def run_child(args, py, work, glue, pycache, listfile):
    extra = [listfile] if work == "stdlib" else [os.path.join(HERE, "djangoapp"), os.path.join(HERE, "compat313")]
    t = time.perf_counter()
    p = subprocess.run([py, "-c", CHILD, work] + extra, env=child_env(args, py, glue, pycache),
                       capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{py} {work} glue={glue}: exit {p.returncode}\n{p.stderr[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


def fmt_bytes(n):
    return f"{n / 1048576:.2f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", action="append", help="interpreter (repeatable); default pyenv 3.12.1 and 3.13.0")
    ap.add_argument("--workload", action="append", choices=("stdlib", "django"))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--build-dir", help="use the glue from this build tree instead of the installed package")
    ap.add_argument("--source", action="store_true", help="no .pyc: every module compiled from source")
    ap.add_argument("--json", help="write the raw results here")
    args = ap.parse_args()
    if args.build_dir:
        args.build_dir = os.path.abspath(args.build_dir)
    pythons = args.python or [p for p in DEFAULT_PYTHONS if os.path.exists(p)]
    works = args.workload or ["stdlib", "django"]
    results = []
    with tempfile.TemporaryDirectory(prefix="eternal-bench-") as tmp:
        for py in pythons:
            ver = subprocess.check_output([py, "-c", "import sys; print(sys.version.split()[0])"], text=True).strip()
            listfile = os.path.join(tmp, f"names-{ver}.json")
            with open(listfile, "w") as f:
                f.write(subprocess.check_output([py, "-c", LIST, ",".join(SKIP)], text=True,
                                                env=child_env(args, py, False, tmp)))
            pycache = os.path.join(tmp, f"pycache-{ver}")
            for work in works:
                # Warm the .pyc cache (and the page cache) with both variants.
                run_child(args, py, work, False, pycache, listfile)
                run_child(args, py, work, True, pycache, listfile)
                runs = {False: [], True: []}
                for r in range(args.repeats):
                    for glue in ((False, True) if r % 2 == 0 else (True, False)):
                        runs[glue].append(run_child(args, py, work, glue, pycache, listfile))
                med = {g: statistics.median(x["import_s"] for x in runs[g]) for g in runs}
                cpu = {g: statistics.median(x["cpu_s"] for x in runs[g]) for g in runs}
                wall = {g: statistics.median(x["wall_s"] for x in runs[g]) for g in runs}
                st = runs[True][0]["stats"]
                res = {"python": ver, "workload": work, "source": args.source, "repeats": args.repeats,
                       "modules": runs[True][0]["modules"],
                       "cpu_s_none": cpu[False], "cpu_s_glue": cpu[True], "cpu_ratio": cpu[True] / cpu[False],
                       "import_s_none": med[False], "import_s_glue": med[True], "ratio": med[True] / med[False],
                       "wall_s_none": wall[False], "wall_s_glue": wall[True],
                       "wall_ratio": wall[True] / wall[False],
                       "enable_s": statistics.median(x["enable_s"] for x in runs[True]), "stats": st}
                results.append(res)
                print(f"\n== CPython {ver}, {work} ({res['modules']} modules, "
                      f"{'source' if args.source else 'warm .pyc'}, median of {args.repeats})")
                print(f"  import CPU time: none {cpu[False]:.3f} s, glue {cpu[True]:.3f} s, "
                      f"ratio {res['cpu_ratio']:.3f}x (enable() included, {res['enable_s'] * 1000:.1f} ms wall)")
                print(f"  import wall time: none {med[False]:.3f} s, glue {med[True]:.3f} s, ratio {res['ratio']:.3f}x;"
                      f" process wall ratio {res['wall_ratio']:.3f}x (wall depends on machine load)")
                print(f"  sealed {fmt_bytes(st['sealed_bytes'])}, cow {fmt_bytes(st['cow_bytes'])}, "
                      f"captures {st['captures']}, fallback {st['fallback']}, strays {st['stray_blocks']}")
                print(f"  {'tier':<7} {'type':<10} {'objects':>9} {'bytes':>12}")
                for tier in ("sealed", "cow"):
                    for name, e in sorted(st["by_tier"].get(tier, {}).items(), key=lambda kv: -kv[1]["bytes"]):
                        print(f"  {tier:<7} {name:<10} {e['objects']:>9,} {fmt_bytes(e['bytes']):>12}")
                sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
