# patched_overhead.py - CPU cost of the libeternal patch: the same CPython 3.13.5
# built stock and patched, timed on a Django request loop and a sympy computation.
"""Usage: python3 bench/patched_overhead.py [--repeats 7] [--json out.json]

Runs cpython-glue/patched/build.sh (cached) for the two interpreters. Each
sample is a fresh process that warms up (imports, a few iterations), then
times the loop with time.process_time(). Variants:
  stock           stock build
  patched-off     patched build, eternal never enabled (cost of the hooks alone)
  patched-strict  patched build, ETERNAL=1 from start-up, sealed strict after warm-up
Samples are interleaved (stock, off, strict, stock, ...) so that load from
other processes on the machine hits every variant alike. Reported: the median
of the per-round ratios variant/stock (paired), and the ratio of the medians.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCHED_DIR = os.path.join(ROOT, "cpython-glue", "patched")
DIST = "/usr/lib/python3/dist-packages"

DJANGO = r'''
import sys, time
TEMPLATE = """<html><head><title>{{ title }}</title></head><body>
<h1>{{ title|upper }}</h1><ul>{% for i in items %}<li class="{% cycle 'odd' 'even' %}">
item {{ i }} of {{ items|length }}: {{ i|stringformat:"05d" }}</li>{% endfor %}</ul>
{% if user %}{{ user }}{% else %}anonymous{% endif %}</body></html>"""
from django.conf import settings
settings.configure(
    DEBUG=False, SECRET_KEY="bench", ALLOWED_HOSTS=["*"], ROOT_URLCONF="__main__",
    USE_TZ=True, USE_I18N=True,
    MIDDLEWARE=["django.middleware.security.SecurityMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.middleware.clickjacking.XFrameOptionsMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {"loaders": [("django.template.loaders.locmem.Loader",
                                         {"page.html": TEMPLATE})]}}])
import django
django.setup()
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import path
from django.test import Client

def page(request, n):
    return render(request, "page.html", {"items": range(n), "title": "items"})

def api(request, n):
    return JsonResponse({"n": n, "squares": [i * i for i in range(n)], "q": request.GET.get("q")})

urlpatterns = [path("items/<int:n>/", page), path("api/<int:n>/", api)]
client = Client()

def work(count):
    for i in range(count):
        r = client.get(f"/items/{20 + i % 7}/")
        assert r.status_code == 200
        r = client.get(f"/api/{i % 50}/", {"q": "x"})
        assert r.status_code == 200

work(20)   # warm-up: url resolver, template compilation, lazy imports
'''

SYMPY = r'''
import sys, time
import sympy
from sympy.core.cache import clear_cache
x, y, z = sympy.symbols("x y z")

def work(count):
    for _ in range(count):
        clear_cache()   # otherwise every repetition after the first is a cache hit
        e = sympy.expand((x + y + z + 1) ** 9)
        sympy.factor(x ** 12 - y ** 12)
        sympy.integrate(x ** 3 * sympy.sin(x) * sympy.exp(x), x)
        sympy.series(sympy.cos(x) / (1 + x), x, 0, 10)
        sympy.simplify(sympy.sin(x) ** 2 + sympy.cos(x) ** 2 + e.coeff(x, 3) * 0)

work(1)
'''

TAIL = r'''
if "_eternal_patched" in sys.builtin_module_names:
    import _eternal_patched as ep
    if ep.is_enabled():
        ep.seal("strict")
t0 = time.process_time()
work(COUNT)
print(time.process_time() - t0)
'''

WORKLOADS = {"django": (DJANGO, 2000), "sympy": (SYMPY, 3)}


def build():
    out = subprocess.run([os.path.join(PATCHED_DIR, "build.sh")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
    return os.path.join(out[-2], "python3"), os.path.join(out[-1], "python3")


def sample(python, workload, eternal, pycache):
    code, count = WORKLOADS[workload]
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)   # load django/sympy from .pyc, via marshal
    env["PYTHONPYCACHEPREFIX"] = pycache
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(PATCHED_DIR, "compat"), DIST])
    for k in ("ETERNAL", "ETERNAL_SEAL", "ETERNAL_MODE", "ETERNAL_PRELOAD"):
        env.pop(k, None)
    if eternal:
        env.update(ETERNAL="1", ETERNAL_SEAL="manual")
    p = subprocess.run([python, "-c", code + TAIL.replace("COUNT", str(count))], env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{python} {workload}: rc={p.returncode}\n{p.stderr[-3000:]}")
    return float(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--workloads", default="django,sympy")
    ap.add_argument("--json", help="write the samples and medians here")
    ap.add_argument("--stock"), ap.add_argument("--patched")
    args = ap.parse_args()
    stock, patched = (args.stock, args.patched) if args.stock else build()
    variants = {"stock": (stock, False), "patched-off": (patched, False),
                "patched-strict": (patched, True)}
    result = {"stock": stock, "patched": patched, "repeats": args.repeats, "workloads": {}}
    with tempfile.TemporaryDirectory(prefix="pycache-") as pycache:
        for wl in args.workloads.split(","):
            for name, (py, et) in variants.items():   # fill the .pyc cache, untimed
                sample(py, wl, et, pycache)
            samples = {name: [] for name in variants}
            for _ in range(args.repeats):
                for name, (py, et) in variants.items():
                    samples[name].append(sample(py, wl, et, pycache))
            med = {n: statistics.median(v) for n, v in samples.items()}
            # Ratios within a round (samples taken seconds apart) cancel most of
            # the drift of the machine's load; their median is the headline figure.
            paired = {n: statistics.median(a / b for a, b in zip(samples[n], samples["stock"]))
                      for n in variants}
            result["workloads"][wl] = {
                "samples": samples, "median_s": med,
                "ratio_of_medians": {n: med[n] / med["stock"] for n in variants},
                "median_paired_ratio": paired,
            }
            print(f"{wl:8} " + "  ".join(
                f"{n} {med[n]:.3f}s (paired {100 * (paired[n] - 1):+.1f}%, "
                f"medians {100 * (med[n] / med['stock'] - 1):+.1f}%)"
                for n in variants), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
