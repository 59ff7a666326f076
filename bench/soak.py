#!/usr/bin/env python3
# soak.py - long run of the Django/gunicorn benchmark app sealed strict by the eternal glue,
# under loopback load, workers recycled by max_requests; reports crashes, errors, memory slope.
"""Standard library only. Example (what bench/results/soak-*.md records):

    nice -n 10 python3 bench/soak.py --minutes 12

Starts gunicorn with bench/soak_gunicorn.py (eternal.gunicorn_conf: enable at
config load, seal strict in when_ready), issues requests in bounded batches
from a few threads for --minutes, samples /proc/PID/smaps_rollup of the master
and every worker every --sample seconds, then stops the server and writes a
markdown report (bench/results/soak-<date>.md unless --out) and a JSON file
next to it. Exit status 1 if any worker crashed or any response was not 200.
"""
import argparse
import datetime
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
DEBIAN_DIST = "/usr/lib/python3/dist-packages"
PATHS = ["/", "/product/{i}/", "/api/products/?page={i}"]


def log(msg):
    sys.stderr.write("[soak %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def default_python():
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    p = os.path.join(root, "versions", "3.12.1", "bin", "python3.12")
    return p if os.path.exists(p) else sys.executable


def glue_path(python):
    """cpython-glue plus the newest build dir's extension for this interpreter."""
    ver = subprocess.check_output([python, "-c", "import sys;print('%d%d' % sys.version_info[:2])"],
                                  text=True).strip()
    exts = [e for e in glob.glob(os.path.join(REPO, "build*", "cpython-glue", "py" + ver, "_eternal*.so"))
            if os.path.isfile(e)]
    if not exts or not os.path.exists(os.path.join(REPO, "cpython-glue", "eternal", "__init__.py")):
        return None
    return os.path.join(REPO, "cpython-glue") + ":" + os.path.dirname(max(exts, key=os.path.getmtime))


def smaps_rollup(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and p[0].endswith(":"):
                out[p[0][:-1]] = int(p[1])
    return out


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def http_get(port, path, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    data = b"".join(chunks)
    return int(data[9:12]) if data.startswith(b"HTTP/") else 0


def least_squares(points):
    """Slope and intercept of y over x; None if fewer than 3 points."""
    if len(points) < 3:
        return None, None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None, None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


class Load:
    """Bounded batches of requests from `threads` threads until stop()."""

    def __init__(self, port, threads, batch):
        self.port, self.threads, self.batch = port, threads, batch
        self.lock = threading.Lock()
        self.next = 0
        self.status = {}
        self.errors = []
        self.batches = 0

    def run_batches(self, until):
        """One batch = `batch` requests per thread, then a pause: the request count is bounded."""
        while time.time() < until:
            start = self.next
            ths = [threading.Thread(target=self._bounded, args=(start,)) for _ in range(self.threads)]
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            self.batches += 1
            time.sleep(0.2)

    def _bounded(self, start):
        end = start + self.batch * self.threads
        while True:
            with self.lock:
                i = self.next
                if i >= end:
                    return
                self.next += 1
            path = PATHS[i % len(PATHS)].replace("{i}", str(i % 500 + 1))
            try:
                st = http_get(self.port, path)
            except OSError as e:
                st = "error:" + type(e).__name__
            with self.lock:
                self.status[st] = self.status.get(st, 0) + 1
                if st != 200 and len(self.errors) < 20:
                    self.errors.append((time.time(), path, st))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=default_python())
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--max-requests", type=int, default=400)
    ap.add_argument("--jitter", type=int, default=40)
    ap.add_argument("--threads", type=int, default=3, help="client threads")
    ap.add_argument("--batch", type=int, default=100, help="requests per thread per batch")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between memory samples")
    ap.add_argument("--mode", default="strict", help="ETERNAL_MODE for the seal")
    ap.add_argument("--settle", type=float, default=120.0,
                    help="seconds at the start left out of the 'settled' slopes (first workers warming up)")
    ap.add_argument("--no-glue", action="store_true", help="stock control run")
    ap.add_argument("--workdir", default="/tmp/eternal-soak")
    ap.add_argument("--out", help="markdown report path (default bench/results/soak-<date>.md)")
    args = ap.parse_args()

    os.makedirs(args.workdir, exist_ok=True)
    logdir = os.path.join(args.workdir, "eternal-log-%d" % os.getpid())
    os.makedirs(logdir)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)   # load from .pyc, as in production
    env["PYTHONPYCACHEPREFIX"] = os.path.join(args.workdir, "pycache")
    for k in [k for k in env if k.startswith("ETERNAL")]:
        del env[k]
    pp = [os.path.join(BENCH, "djangoapp")]
    ver = subprocess.check_output([args.python, "-c", "import sys;print(sys.version.split()[0])"], text=True).strip()
    if tuple(int(x) for x in ver.split(".")[:2]) >= (3, 13):
        pp.append(os.path.join(BENCH, "compat313"))
    pp.append(DEBIAN_DIST)
    gp = None if args.no_glue else glue_path(args.python)
    if gp:
        pp.insert(0, gp)
        env["ETERNAL_MODE"] = args.mode
        env["ETERNAL_LOG"] = logdir
    env["PYTHONPATH"] = ":".join(pp)
    env["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
    env["FORKMEM_DJANGO_DB"] = os.path.join(args.workdir, "django-%s.sqlite3" % ver)
    if not os.path.exists(env["FORKMEM_DJANGO_DB"]):
        log("seeding %s" % env["FORKMEM_DJANGO_DB"])
        subprocess.run([args.python, os.path.join(BENCH, "djangoapp", "seed.py")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    # Warm the .pyc cache so the master's imports unmarshal, as in production.
    subprocess.run([args.python, "-c", "import django; django.setup(); import benchsite.wsgi, benchsite.urls"],
                   env=dict(env, PYTHONPATH=":".join(pp[1:] if gp else pp)), check=True)

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env.update(SOAK_PORT=str(port), SOAK_WORKERS=str(args.workers),
               SOAK_MAX_REQUESTS=str(args.max_requests), SOAK_MAX_REQUESTS_JITTER=str(args.jitter))
    glog = os.path.join(args.workdir, "gunicorn-%d.log" % os.getpid())
    cmd = [args.python, "-m", "gunicorn", "-c", os.path.join(BENCH, "soak_gunicorn.py"), "benchsite.wsgi:application"]
    log("starting: %s (glue: %s)" % (" ".join(cmd), gp or "none"))
    with open(glog, "w") as lf:
        master = subprocess.Popen(cmd, env=env, stdout=lf, stderr=subprocess.STDOUT, cwd=args.workdir)
    t_end = time.time() + 120
    while time.time() < t_end:
        try:
            if http_get(port, "/", timeout=5) == 200:
                break
        except OSError:
            time.sleep(0.5)
        if master.poll() is not None:
            sys.exit("gunicorn exited with %s; see %s" % (master.returncode, glog))
    else:
        sys.exit("gunicorn not answering after 120 s; see %s" % glog)

    load = Load(port, args.threads, args.batch)
    samples = []   # (t, pid, kind, smaps)
    seen_workers = set()
    t0 = time.time()
    until = t0 + args.minutes * 60
    loader = threading.Thread(target=load.run_batches, args=(until,))
    loader.start()
    log("load for %.1f minutes on port %d" % (args.minutes, port))
    while loader.is_alive():
        t = time.time() - t0
        try:
            samples.append((t, master.pid, "master", smaps_rollup(master.pid)))
        except OSError:
            pass
        for w in children(master.pid):
            seen_workers.add(w)
            try:
                samples.append((t, w, "worker", smaps_rollup(w)))
            except OSError:
                pass
        if int(t) // 60 != int(t - args.sample) // 60:
            log("t=%4.0fs requests=%d status=%s workers seen=%d" % (t, sum(load.status.values()),
                                                                   load.status, len(seen_workers)))
        loader.join(args.sample)
    elapsed = time.time() - t0
    master_alive_at_end = master.poll() is None
    master.send_signal(signal.SIGTERM)
    try:
        master.wait(60)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait()
    time.sleep(1)

    with open(glog) as f:
        glog_text = f.read()
    booted = len(re.findall(r"Booting worker with pid", glog_text))
    crash_lines = [l for l in glog_text.splitlines()
                   if re.search(r"terminated due to signal|was sent SIG(?!TERM)|WORKER TIMEOUT|exited with code [^0]|"
                                r"Segmentation|Traceback|eternal: .*(fail|error)", l)]
    stats_files = sorted(glob.glob(os.path.join(logdir, "eternal-stats-*.json")))
    trap_files = sorted(glob.glob(os.path.join(logdir, "*.jsonl")))
    trap_records = 0
    for tf in trap_files:
        with open(tf) as f:
            trap_records += sum(1 for line in f if line.strip())
    counters = {"trap_writes_sealed": 0, "trap_writes_cow": 0, "trap_dropped": 0, "records": 0}
    modes, sealed_bytes = set(), set()
    for sf in stats_files:
        with open(sf) as f:
            d = json.load(f)
        st = d.get("stats", {})
        modes.add(st.get("mode"))
        sealed_bytes.add(st.get("sealed_bytes"))
        for k in ("trap_writes_sealed", "trap_writes_cow", "trap_dropped"):
            counters[k] += int(st.get(k) or 0)
        counters["records"] += len(d.get("records") or [])

    def series(kind, field, t_min=0.0):
        return [(t / 3600.0, sm[field] / 1024.0) for t, _, k, sm in samples
                if k == kind and field in sm and t >= t_min]

    slopes = {}
    for kind in ("worker", "master"):
        for field in ("Private_Dirty", "Rss", "Pss"):
            slopes["%s %s, all samples" % (kind, field)] = least_squares(series(kind, field))[0]
            slopes["%s %s, after the first %.0f s" % (kind, field, args.settle)] = \
                least_squares(series(kind, field, args.settle))[0]
    # Per worker lifetime: each worker's own slope, for those sampled often enough.
    per_worker = {}
    for t, pid, k, sm in samples:
        if k == "worker":
            per_worker.setdefault(pid, []).append((t / 3600.0, sm["Private_Dirty"] / 1024.0))
    pw = sorted(s for s in (least_squares(v)[0] for v in per_worker.values()) if s is not None)
    total = sum(load.status.values())
    non200 = total - load.status.get(200, 0)
    recycled = max(0, booted - args.workers)
    wpd = [sm["Private_Dirty"] / 1024.0 for _, _, k, sm in samples if k == "worker"]
    res = {
        "date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
        "python": args.python, "python_version": ver, "glue": bool(gp), "mode": args.mode if gp else "stock",
        "workers": args.workers, "max_requests": args.max_requests, "jitter": args.jitter,
        "client_threads": args.threads, "batch": args.batch, "elapsed_s": round(elapsed, 1),
        "requests": total, "status": {str(k): v for k, v in load.status.items()}, "non_200": non200,
        "error_samples": load.errors, "batches": load.batches,
        "workers_booted": booted, "workers_recycled": recycled, "distinct_worker_pids_sampled": len(seen_workers),
        "crash_lines": crash_lines[:20], "crashes": len(crash_lines), "master_alive_at_end": master_alive_at_end,
        "samples": len(samples), "slopes_mb_per_hour": slopes,
        "per_worker_slope_mb_per_hour": {"n": len(pw), "median": pw[len(pw) // 2] if pw else None,
                                         "min": pw[0] if pw else None, "max": pw[-1] if pw else None},
        "worker_private_dirty_mb": {"min": min(wpd) if wpd else None, "max": max(wpd) if wpd else None,
                                    "mean": sum(wpd) / len(wpd) if wpd else None},
        "eternal": {"stats_files": len(stats_files), "modes": sorted(str(m) for m in modes),
                    "sealed_bytes": sorted(b for b in sealed_bytes if b is not None), **counters,
                    "trap_log_files": len(trap_files), "trap_log_records": trap_records},
        "gunicorn_log": glog, "command": " ".join(sys.argv),
    }
    out = args.out or os.path.join(BENCH, "results", "soak-%s.md" % datetime.date.today().isoformat())
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(dict(res, raw_samples=[(round(t, 1), pid, k, {x: sm.get(x) for x in ("Rss", "Pss", "Private_Dirty")})
                                         for t, pid, k, sm in samples]), f, indent=1)
    with open(out, "w") as f:
        f.write(report(res))
    sys.stdout.write(report(res))
    bad = res["crashes"] or non200 or not master_alive_at_end
    return 1 if bad else 0


def fmt(v, nd=2):
    return "n/a" if v is None else ("%.*f" % (nd, v) if isinstance(v, float) else str(v))


def report(r):
    e = r["eternal"]
    lines = [
        "# Soak: Django 3.2 + gunicorn sync workers, %s, %s" % (
            "sealed %s by the eternal glue" % r["mode"] if r["glue"] else "stock (no glue)", r["date"]),
        "",
        "Command: `%s` (CPython %s; %d workers, max_requests %d ± %d; %d client threads, batches of %d "
        "requests per thread)." % (r["command"], r["python_version"], r["workers"], r["max_requests"],
                                  r["jitter"], r["client_threads"], r["batch"]),
        "",
        "| what | result |",
        "|---|---|",
        "| duration under load | %.1f min |" % (r["elapsed_s"] / 60),
        "| requests | %d (%d batches) |" % (r["requests"], r["batches"]),
        "| non-200 responses | %d %s |" % (r["non_200"], "" if not r["non_200"] else r["status"]),
        "| worker crashes (signals, timeouts, non-zero exits, tracebacks in the gunicorn log) | %d |" % r["crashes"],
        "| master alive at the end | %s |" % r["master_alive_at_end"],
        "| workers booted / recycled by max_requests | %d / %d |" % (r["workers_booted"], r["workers_recycled"]),
        "| memory samples (master + workers) | %d |" % r["samples"],
        "| worker Private_Dirty, min / mean / max | %s / %s / %s MB |" % (
            fmt(r["worker_private_dirty_mb"]["min"]), fmt(r["worker_private_dirty_mb"]["mean"]),
            fmt(r["worker_private_dirty_mb"]["max"])),
    ]
    for k, v in r["slopes_mb_per_hour"].items():
        lines.append("| slope of %s (least squares) | %s MB/hour |" % (k, fmt(v)))
    p = r["per_worker_slope_mb_per_hour"]
    lines.append("| per-worker Private_Dirty slope over each worker's life, median (min..max), %d workers | "
                 "%s (%s .. %s) MB/hour |" % (p["n"], fmt(p["median"]), fmt(p["min"]), fmt(p["max"])))
    if r["glue"]:
        lines += [
            "| eternal stats files written at exit (master + workers) | %d |" % e["stats_files"],
            "| mode reported by those processes | %s |" % ", ".join(e["modes"]),
            "| sealed bytes reported | %s |" % ", ".join(map(str, e["sealed_bytes"])),
            "| trap writes sealed / cow, dropped (sum over processes) | %d / %d, %d |" % (
                e["trap_writes_sealed"], e["trap_writes_cow"], e["trap_dropped"]),
            "| trap log records (JSON lines) | %d in %d files |" % (e["trap_log_records"], e["trap_log_files"]),
        ]
    if r["crash_lines"]:
        lines += ["", "Crash lines from the gunicorn log:", "```"] + r["crash_lines"] + ["```"]
    if r["error_samples"]:
        lines += ["", "First non-200 responses: %s" % r["error_samples"][:5]]
    lines += ["", "Expected: 0 crashes, 0 non-200, flat worker memory, trap counters 0 in strict mode "
              "(a stray write into the sealed tier kills the worker, which would show as a crash).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
