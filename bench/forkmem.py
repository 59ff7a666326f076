#!/usr/bin/env python3
# forkmem: fork-memory benchmark driver (stdlib-server, django+gunicorn, multiprocessing pool) x modes.
# Standard library only; runs under any CPython 3.8+ and drives the interpreter given by --python.
"""Examples:
  python3 bench/forkmem.py --demo
  python3 bench/forkmem.py --python python3.12 --workload django --modes stock,gc-freeze \\
      --workers 4 --requests 2000 --repeats 3
  python3 bench/forkmem.py --workload stdlib-server --scaling 1,2,4,8,16 --requests-per-worker 500
Progress goes to stderr, the markdown table to stdout, JSON + table under --out."""
import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
import cowmap  # noqa: E402

ALL_MODES = ("stock", "gc-freeze", "immortal", "eternal", "eternal+freeze", "eternal-data")
SMAPS_KEYS = ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Clean", "Shared_Dirty",
              "Anonymous", "Swap")
DEBIAN_DIST = "/usr/lib/python3/dist-packages"
SIG_STATS = signal.SIGRTMIN + 2


def log(msg):
    sys.stderr.write("[forkmem %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---------------------------------------------------------------- /proc measurements

def smaps_rollup(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":") and parts[0][:-1] in SMAPS_KEYS:
                out[parts[0][:-1]] = int(parts[1])  # kB
    return out


def eternal_smaps(pid):
    """kB of the eternal region's mappings (VMAs named eternal[-*]:sealed / :cow, and the unnamed
    anonymous data mapping between the cow guard pages; see cowmap.vma_kinds).
    Needed because a shmem page mapped by one process only counts as Private_Dirty in smaps
    although it was never copied: it is not private in the copy-on-write sense. The cow tier's
    anonymous copies are genuinely private, so the table's "excl. eternal shmem" column
    subtracts only the shared (memfd) part: see measure()."""
    out = {"Rss": 0, "Pss": 0, "Private_Dirty": 0, "Shared_Dirty": 0, "Shared_Clean": 0}
    vmas, fields = [], []
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):   # a VMA header line
                parts = line.split(None, 5)
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                vmas.append((lo, hi, parts[1], parts[5].strip() if len(parts) > 5 else ""))
                fields.append({})
            elif first.endswith(":") and first[:-1] in out and fields:
                fields[-1][first[:-1]] = int(line.split()[1])
    order = sorted(range(len(vmas)), key=lambda i: vmas[i])
    kinds = cowmap.vma_kinds([vmas[i] for i in order])
    out["shmem_Private_Dirty"] = 0
    for i, kind in zip(order, kinds):
        if kind.startswith("eternal-"):
            for k, v in fields[i].items():
                out[k] += v
            if vmas[i][3]:   # named: the memfd (shared) mapping, not the anonymous cow data
                out["shmem_Private_Dirty"] += fields[i].get("Private_Dirty", 0)
    return out


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def measure(master, workers):
    m = smaps_rollup(master)
    m["eternal"] = eternal_smaps(master)
    ws = []
    for w in workers:
        try:
            rec = dict(smaps_rollup(w), pid=w)
            rec["eternal"] = eternal_smaps(w)
            rec["Private_Dirty_noshmem"] = rec.get("Private_Dirty", 0) - rec["eternal"]["shmem_Private_Dirty"]
            ws.append(rec)
        except OSError:
            ws.append({"pid": w, "dead": True})
    alive = [w for w in ws if not w.get("dead")]
    total_pss = m.get("Pss", 0) + sum(w.get("Pss", 0) for w in alive)

    def mean(k):
        return statistics.mean(w[k] for w in alive) if alive else 0.0
    return {"master": m, "workers": ws, "total_pss_kb": total_pss,
            "worker_mean_kb": {k: mean(k) for k in SMAPS_KEYS + ("Private_Dirty_noshmem",)
                               if alive and k in alive[0]},
            "worker_mean_eternal_kb": {k: statistics.mean(w["eternal"][k] for w in alive)
                                       for k in alive[0]["eternal"]} if alive else {},
            "workers_alive": len(alive)}


# ---------------------------------------------------------------- loopback HTTP client

def http_get(port, path, timeout=60.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: forkmem\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n" % (path, port)).encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    data = b"".join(chunks)
    status = int(data[9:12]) if data.startswith(b"HTTP/") else 0
    return status, len(data)


def run_load(port, paths, start, count, concurrency):
    """Issue requests start..start+count-1 (one connection each, as gunicorn sync workers close
    every connection) from `concurrency` threads. Returns timings."""
    lat = []
    errors = []
    lock = threading.Lock()
    nxt = [start]
    end = start + count

    def worker():
        while True:
            with lock:
                i = nxt[0]
                if i >= end:
                    return
                nxt[0] += 1
            path = paths[i % len(paths)].replace("{i}", str(i))
            t = time.perf_counter()
            try:
                st, _ = http_get(port, path)
                ok = st == 200
            except OSError as e:
                ok, st = False, repr(e)
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
                if not ok:
                    errors.append((path, st))
    t0 = time.perf_counter()
    ths = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.perf_counter() - t0
    return summarize_latency(lat, wall, errors)


def summarize_latency(lat, wall, errors):
    lat = sorted(lat)

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))] * 1000 if lat else None
    return {"requests": len(lat), "wall_s": wall, "rps": len(lat) / wall if wall else None,
            "p50_ms": pct(50), "p99_ms": pct(99), "errors": len(errors),
            "error_samples": [list(map(str, e)) for e in errors[:5]]}


# ---------------------------------------------------------------- interpreters and environment

def interp_info(python):
    out = subprocess.check_output([python, "-c",
                                   "import sys,platform;print(sys.version.split()[0]);"
                                   "print(platform.python_implementation().lower());print(sys.executable)"],
                                  text=True).split("\n")
    return {"version": out[0], "impl": out[1], "executable": out[2]}


def find_python_for_demo():
    """--demo wants a CPython with immortal refcounts (3.12+); prefer the one running us."""
    if sys.version_info >= (3, 12):
        return sys.executable
    cands = [shutil.which("python3.12"), shutil.which("python3.13")]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    cands += sorted(glob.glob(os.path.join(root, "versions", "3.1[23].*", "bin", "python3.1[23]")))
    for c in cands:
        # pyenv shims exist on PATH even when that version is not selected: try each one
        if c and os.path.exists(c) and subprocess.run([c, "-c", "pass"], capture_output=True).returncode == 0:
            return c
    return sys.executable


def find_eternal_path(explicit, info):
    """PYTHONPATH entries that let `import eternal` find the glue for this interpreter, or None
    (then the interpreter's own site-packages decides, where the eternal.pth hook lives)."""
    if explicit:
        return explicit
    if os.environ.get("ETERNAL_PYTHONPATH"):
        return os.environ["ETERNAL_PYTHONPATH"]
    pkg = os.path.join(REPO, "cpython-glue")
    if not os.path.exists(os.path.join(pkg, "eternal", "__init__.py")):
        return None
    ver = "".join(info["version"].split(".")[:2])
    # The extension as built in a build dir of the repo (newest build wins).
    exts = glob.glob(os.path.join(REPO, "build*", "cpython-glue", "py" + ver, "_eternal*.so"))
    exts = [e for e in exts if os.path.isfile(e)]
    if glob.glob(os.path.join(pkg, "eternal", "_eternal*.so")) or not exts:
        return pkg
    newest = max(exts, key=os.path.getmtime)
    return pkg + ":" + os.path.dirname(newest)


def base_env(args, info):
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)   # we want .pyc loading, as in production
    env.pop("PYTHONSTARTUP", None)
    env["PYTHONPYCACHEPREFIX"] = args.pycache
    env["PYTHONHASHSEED"] = "0"
    for k in list(env):
        if k.startswith("ETERNAL") and k != "ETERNAL_PYTHONPATH":
            del env[k]
    return env


def mode_env(env, mode, args, rundir):
    env = dict(env)
    env["FORKMEM_MODE"] = mode
    if mode.startswith("eternal"):
        env["ETERNAL"] = "1"
        env["ETERNAL_MODE"] = args.eternal_mode
        env["ETERNAL_SEAL"] = "manual"     # every workload seals explicitly right before fork
        env["ETERNAL_LOG"] = rundir
        if args.eternal_path:
            env["PYTHONPATH"] = args.eternal_path + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def check_eternal(python, env):
    """None if `import eternal` works under this interpreter/env, else the reason."""
    p = subprocess.run([python, "-c", "import eternal, json; print(json.dumps(dict(eternal.stats()), default=str))"],
                       env=env, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
        return last[:200]
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- workloads

class Workload:
    name = "?"
    has_http = True

    def __init__(self, args, info):
        self.args, self.info = args, info

    def prepare(self, env):
        pass

    def command(self, env, nworkers, port, rundir):
        raise NotImplementedError

    def paths(self, ready):
        raise NotImplementedError


class StdlibServer(Workload):
    name = "stdlib-server"

    def command(self, env, nworkers, port, rundir):
        env.update(FORKMEM_WORKERS=str(nworkers), FORKMEM_PORT=str(port))
        return [self.args.python, os.path.join(BENCH, "workloads", "stdlib_server.py")], env

    def warm(self, env):
        subprocess.run([self.args.python, os.path.join(BENCH, "workloads", "stdlib_server.py")],
                       env=dict(env, FORKMEM_WARM_ONLY="1"), check=True, stdout=subprocess.DEVNULL)

    def paths(self, ready):
        return [p + "?s={i}" for p in ready["paths"]]


class Django(Workload):
    name = "django"

    def _env(self, env):
        pp = [os.path.join(BENCH, "djangoapp")]
        if tuple(int(x) for x in self.info["version"].split(".")[:2]) >= (3, 13):
            pp.append(os.path.join(BENCH, "compat313"))   # Django 3.2 imports cgi, gone in 3.13
        pp.append(DEBIAN_DIST)
        if env.get("PYTHONPATH"):
            pp.insert(0, env["PYTHONPATH"])
        env["PYTHONPATH"] = ":".join(pp)
        env["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
        env["FORKMEM_DJANGO_DB"] = self.db
        return env

    def prepare(self, env):
        self.db = os.path.join(self.args.workdir, "django-%s.sqlite3" % self.info["version"])
        if not os.path.exists(self.db):
            subprocess.run([self.args.python, os.path.join(BENCH, "djangoapp", "seed.py")],
                           env=self._env(dict(env)), check=True)

    def command(self, env, nworkers, port, rundir):
        env = self._env(env)
        env.update(FORKMEM_WORKERS=str(nworkers), FORKMEM_PORT=str(port))
        return [self.args.python, "-m", "gunicorn", "-c", os.path.join(BENCH, "djangoapp", "gunicorn_conf.py"),
                "benchsite.wsgi:application"], env

    def paths(self, ready):
        return ["/", "/product/{i}/", "/api/products/?page={i}"]


class Pool(Workload):
    name = "pool"
    has_http = False

    def command(self, env, nworkers, port, rundir):
        env.update(FORKMEM_WORKERS=str(nworkers), FORKMEM_POOL_RECORDS=str(self.args.pool_records))
        return [self.args.python, os.path.join(BENCH, "workloads", "pool_app.py")], env


WORKLOADS = {"stdlib-server": StdlibServer, "django": Django, "pool": Pool}


# ---------------------------------------------------------------- one run

def wait_file(path, proc, timeout):
    t_end = time.time() + timeout
    while time.time() < t_end:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if proc.poll() is not None:
            raise RuntimeError("master exited with %s before it was ready" % proc.returncode)
        time.sleep(0.05)
    raise RuntimeError("master not ready after %.0f s" % timeout)


def stop(proc):
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    try:  # the master ran in its own session: clear whatever it left behind
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def collect_stats(pids, statsdir, timeout=5.0):
    for p in pids:
        try:
            os.kill(p, SIG_STATS)
        except ProcessLookupError:
            pass
    t_end = time.time() + timeout
    got = {}
    while time.time() < t_end and len(got) < len(pids):
        for p in pids:
            f = os.path.join(statsdir, "stats-%d.json" % p)
            if p not in got and os.path.exists(f):
                with open(f) as fh:
                    got[p] = json.load(fh)
        time.sleep(0.1)
    return {str(k): v for k, v in got.items()}


def one_run(wl, mode, nworkers, requests, checkpoints, repeat, args, env0):
    rundir = os.path.join(args.workdir, "run-%s-%s-%d-%d-%d" % (wl.name, mode.replace("+", "_"), nworkers,
                                                                repeat, os.getpid()))
    shutil.rmtree(rundir, ignore_errors=True)
    os.makedirs(rundir)
    env = mode_env(env0, mode, args, rundir)
    rec = {"workload": wl.name, "mode": mode, "workers": nworkers, "repeat": repeat,
           "python": wl.info["version"], "requests": requests, "status": "ok"}
    if mode.startswith("eternal"):
        reason = check_eternal(args.python, env)
        if reason:
            rec["status"] = "unavailable: " + reason
            return rec
    if mode == "immortal" and tuple(int(x) for x in wl.info["version"].split(".")[:2]) < (3, 12):
        rec["status"] = "unavailable: immortal refcounts need CPython >= 3.12"
        return rec
    ready_path = os.path.join(rundir, "ready.json")
    env.update(FORKMEM_READY=ready_path, FORKMEM_STATS_DIR=rundir)
    if args.cowmap:
        env["FORKMEM_DUMP_OBJECTS"] = "1"
    port = free_port()
    cmd, env = wl.command(env, nworkers, port, rundir)
    logf = open(os.path.join(rundir, "master.log"), "w")
    t0 = time.perf_counter()
    stdin = subprocess.PIPE if not wl.has_http else subprocess.DEVNULL
    stdout = subprocess.PIPE if not wl.has_http else logf
    proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=logf, stdin=stdin,
                            start_new_session=True, text=True)
    try:
        ready = wait_file(ready_path, proc, args.ready_timeout)
        rec["startup_s"] = time.perf_counter() - t0
        rec["ready"] = ready
        if ready.get("status", "ok") != "ok":
            rec["status"] = ready["status"]
            return rec
        master = proc.pid if not ready.get("pid") else ready["pid"]
        t_end = time.time() + 60
        while len(children(master)) < nworkers and time.time() < t_end:
            time.sleep(0.1)
        workers = sorted(children(master))
        if len(workers) != nworkers:
            rec["status"] = "failed: %d of %d workers came up" % (len(workers), nworkers)
            return rec
        time.sleep(args.settle)
        rec["checkpoints"] = [dict(measure(master, workers), after=0)]
        rec["load"] = []
        done = 0
        paths = wl.paths(ready) if wl.has_http else None
        for cp in checkpoints:
            n = cp - done
            if wl.has_http:
                lt = run_load(ready.get("port", port), paths, done, n, args.concurrency)
            else:
                proc.stdin.write("run %d %d\n" % (done, n))
                proc.stdin.flush()
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError("pool master died")
                lt = json.loads(line)
            done = cp
            lt["after"] = cp
            rec["load"].append(lt)
            time.sleep(args.settle / 2)
            rec["checkpoints"].append(dict(measure(master, workers), after=cp))
            c = rec["checkpoints"][-1]
            log("  %s %s N=%d r%d after %d: worker Private_Dirty %.1f MB, total PSS %.1f MB, %.0f req/s%s" % (
                wl.name, mode, nworkers, repeat, cp, c["worker_mean_kb"].get("Private_Dirty", 0) / 1024,
                c["total_pss_kb"] / 1024, lt.get("rps") or 0,
                ", %d errors" % lt["errors"] if lt.get("errors") else ""))
        if any(l.get("errors") for l in rec["load"]):
            rec["status"] = "errors: %d failed requests" % sum(l.get("errors", 0) for l in rec["load"])
        if rec["checkpoints"][-1]["workers_alive"] < nworkers:
            rec["status"] = "failed: workers died"
        if args.cowmap:
            try:
                rep = cowmap.analyze(master, workers)
                rec["cowmap"] = rep
                log(cowmap.format_report(rep))
            except Exception as e:
                rec["cowmap"] = {"error": "%s: %s" % (type(e).__name__, e)}
        rec["process_stats"] = collect_stats([master] + workers, rundir)
    except Exception as e:
        rec["status"] = "failed: %s: %s" % (type(e).__name__, e)
        log("  run failed: %s (log: %s)" % (e, os.path.join(rundir, "master.log")))
    finally:
        if not wl.has_http and proc.poll() is None:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            except OSError:
                pass
        stop(proc)
        logf.close()
        try:
            with open(os.path.join(rundir, "master.log")) as f:
                tail = f.read()[-3000:]
            if tail.strip():
                rec["master_log_tail"] = tail
        except OSError:
            pass
    return rec


# ---------------------------------------------------------------- aggregation and output

def _mb(kb):
    return kb / 1024.0


def run_metrics(rec, cp_index=-1):
    c = rec["checkpoints"][cp_index]
    wm = c["worker_mean_kb"]
    m = {"after": c["after"],
         "worker_rss_mb": _mb(wm.get("Rss", 0)), "worker_pss_mb": _mb(wm.get("Pss", 0)),
         "worker_private_dirty_mb": _mb(wm.get("Private_Dirty", 0)),
         "worker_shared_dirty_mb": _mb(wm.get("Shared_Dirty", 0)),
         "worker_private_dirty_noshmem_mb": _mb(wm.get("Private_Dirty_noshmem", wm.get("Private_Dirty", 0))),
         "worker_eternal_rss_mb": _mb(c.get("worker_mean_eternal_kb", {}).get("Rss", 0)),
         "worker_shared_clean_mb": _mb(wm.get("Shared_Clean", 0)),
         "master_rss_mb": _mb(c["master"].get("Rss", 0)),
         "master_private_dirty_mb": _mb(c["master"].get("Private_Dirty", 0)),
         "total_pss_mb": _mb(c["total_pss_kb"]),
         "warmup_s": rec.get("ready", {}).get("age_s"), "startup_s": rec.get("startup_s")}
    m["priv_over_rss"] = m["worker_private_dirty_mb"] / m["worker_rss_mb"] if m["worker_rss_mb"] else None
    loads = [l for l in rec.get("load", []) if l["after"] <= c["after"]]
    if loads and c["after"]:
        l = loads[-1]
        m.update(rps=l.get("rps"), p50_ms=l.get("p50_ms"), p99_ms=l.get("p99_ms"))
    et = (rec.get("ready") or {}).get("eternal") or {}
    if isinstance(et, dict) and "sealed_bytes" in et:
        m["sealed_mb"] = et["sealed_bytes"] / 1048576.0
        m["cow_mb"] = et.get("cow_bytes", 0) / 1048576.0
    return m


def aggregate(runs):
    """{(workload, mode, N): {"status", "checkpoints": {after: {metric: {median,min,max,n}}}}}"""
    groups = {}
    for r in runs:
        groups.setdefault((r["workload"], r["mode"], r["workers"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        good = [r for r in rs if r["status"] == "ok"]
        g = {"runs": len(rs), "ok_runs": len(good),
             "status": "ok" if good else (rs[0]["status"] if rs else "?"), "checkpoints": {}}
        if good:
            ncp = min(len(r["checkpoints"]) for r in good)
            for i in range(ncp):
                ms = [run_metrics(r, i) for r in good]
                after = ms[0]["after"]
                agg = {}
                for k in ms[0]:
                    vals = [m.get(k) for m in ms if isinstance(m.get(k), (int, float))]
                    if vals:
                        agg[k] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
                                  "n": len(vals)}
                g["checkpoints"][after] = agg
            sts = [s.get("eternal") for r in good for s in (r.get("process_stats") or {}).values()
                   if s.get("eternal")]
            if sts:
                g["eternal_worker_stats_sample"] = sts[:3]
        out[key] = g
    return out


def fit_line(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return a, b, (1 - ss_res / ss_tot) if ss_tot else 1.0


def fmt(agg, k, digits=1, spread=False):
    v = agg.get(k)
    if not v:
        return "-"
    s = ("%." + str(digits) + "f") % v["median"]
    if spread and v["n"] > 1:
        s += (" (%." + str(digits) + "f–%." + str(digits) + "f)") % (v["min"], v["max"])
    return s


def markdown(aggs, modes, workers_list, header):
    lines = [header, ""]
    lines.append("| workload | mode | N | after req | worker Rss | worker Shared_Dirty | worker Private_Dirty "
                 "(min–max) | w. Priv excl. eternal shmem | Priv/Rss | total PSS (min–max) | master Rss | req/s | × stock | p50 ms | "
                 "p99 ms | warm-up s | sealed / cow MB |")
    lines.append("|" + "---|" * 17)
    for (wl, mode, n), g in sorted(aggs.items(), key=lambda kv: (kv[0][0], kv[0][2],
                                                                   modes.index(kv[0][1]) if kv[0][1] in modes else 99)):
        if g["status"] != "ok":
            lines.append("| %s | %s | %d | - | %s |%s" % (wl, mode, n, g["status"].replace("|", "/"), " |" * 12))
            continue
        stock = aggs.get((wl, "stock", n))
        for after, a in sorted(g["checkpoints"].items()):
            ratio = "-"
            if stock and stock["status"] == "ok" and after in stock["checkpoints"] and a.get("rps"):
                srps = stock["checkpoints"][after].get("rps")
                if srps:
                    ratio = "%.2f" % (a["rps"]["median"] / srps["median"])
            sc = "-"
            if a.get("sealed_mb"):
                sc = "%.1f / %.1f" % (a["sealed_mb"]["median"], a.get("cow_mb", {"median": 0})["median"])
            lines.append("| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                wl, mode, n, after, fmt(a, "worker_rss_mb"), fmt(a, "worker_shared_dirty_mb"),
                fmt(a, "worker_private_dirty_mb", spread=True), fmt(a, "worker_private_dirty_noshmem_mb"),
                fmt(a, "priv_over_rss", 2),
                fmt(a, "total_pss_mb", spread=True), fmt(a, "master_rss_mb"), fmt(a, "rps", 0), ratio,
                fmt(a, "p50_ms", 2), fmt(a, "p99_ms", 2), fmt(a, "warmup_s", 2), sc))
    if workers_list and len(workers_list) > 1:
        lines += ["", "Scaling fit, total PSS after the last checkpoint = a + b·N (MB, least squares over "
                  "N = %s):" % ",".join(map(str, workers_list)), "",
                  "| workload | mode | a (MB) | b (MB per worker) | R² |", "|---|---|---|---|---|"]
        for wl in sorted({k[0] for k in aggs}):
            for mode in modes:
                pts = []
                for n in workers_list:
                    g = aggs.get((wl, mode, n))
                    if g and g["status"] == "ok":
                        last = g["checkpoints"][max(g["checkpoints"])]
                        pts.append((n, last["total_pss_mb"]["median"]))
                if len(pts) >= 2:
                    a, b, r2 = fit_line([p[0] for p in pts], [p[1] for p in pts])
                    lines.append("| %s | %s | %.1f | %.2f | %.3f |" % (wl, mode, a, b, r2))
    return "\n".join(lines) + "\n"


def fits(aggs, modes, workers_list):
    out = {}
    for wl in sorted({k[0] for k in aggs}):
        for mode in modes:
            pts = []
            for n in workers_list:
                g = aggs.get((wl, mode, n))
                if g and g["status"] == "ok":
                    last = g["checkpoints"][max(g["checkpoints"])]
                    priv = last.get("worker_private_dirty_noshmem_mb") or last["worker_private_dirty_mb"]
                    pts.append([n, last["total_pss_mb"]["median"], priv["median"]])
            if len(pts) >= 2:
                a, b, r2 = fit_line([p[0] for p in pts], [p[1] for p in pts])
                out["%s/%s" % (wl, mode)] = {"a_mb": a, "b_mb": b, "r2": r2, "points": pts}
    return out


def cowmap_markdown(runs):
    """Attribution table for runs made with --cowmap (first worker of each run; workers agree
    within 0.1 MB in our runs)."""
    rows = []
    mb = lambda b: b / 1048576.0  # noqa: E731
    for r in runs:
        cm = r.get("cowmap") or {}
        if not cm.get("workers"):
            continue
        w = next(iter(cm["workers"].values()))
        copied = statistics.mean(x["copied_bytes"] for x in cm["workers"].values())
        top = ", ".join("%s %.1f" % (c, mb(b)) for c, b in list(w["copied_by_class"].items())[:8])
        hold = ", ".join("%s %.0f%%" % (c, h["copied_pct"]) for c, h in sorted(w["pages_holding"].items()))
        rows.append("| %s | %s | %d | %.1f | %.1f | %s | %s |" % (
            r["mode"], r["workers"], r["checkpoints"][-1]["after"], mb(copied), mb(w["new_bytes"]), top, hold))
    if not rows:
        return ""
    return "\n".join([
        "", "Copied pages (cowmap: pagemap frames master vs worker, after the last checkpoint). MB per worker; "
        "class = the class with most bytes on the page; last column = share of the pages holding objects of "
        "each class that were copied.", "",
        "| mode | N | after req | copied MB | new MB | copied MB by page class | pages holding class: % copied |",
        "|---|---|---|---|---|---|---|"] + rows) + "\n"


def write_outputs(runs, args, info, modes, workers_list, wl_name, kernel, date, label, cmdline, t_start):
    aggs = aggregate(runs)
    header = ("### %s — %s, kernel %s, %s\n\nCommand: `%s`  \nMB from /proc/PID/smaps_rollup; worker = mean "
              "over workers; median of %d repeats (min–max). Throughput only as a ratio within this run "
              "(shared, noisy 2-core machine)." % (wl_name, label, kernel, date, cmdline, args.repeats))
    md = markdown(aggs, modes, workers_list, header) + cowmap_markdown(runs)
    base = "%s%s%s" % (wl_name, "-scaling" if len(workers_list) > 1 else "", ("-" + args.tag) if args.tag else "")
    summary = {"command": cmdline, "python": info, "kernel": kernel, "date": date, "workload": wl_name,
               "modes": modes, "workers": workers_list, "repeats": args.repeats,
               "groups": [dict(workload=k[0], mode=k[1], workers=k[2], **v) for k, v in aggs.items()],
               "fits": fits(aggs, modes, workers_list), "elapsed_s": time.time() - t_start,
               "eternal_path": args.eternal_path, "pycache": args.pycache}
    with open(os.path.join(args.out, base + "-runs.json"), "w") as f:
        json.dump(runs, f, indent=1, default=str)
    with open(os.path.join(args.out, base + "-summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    with open(os.path.join(args.out, base + ".md"), "w") as f:
        f.write(md)
    sys.stdout.write(md)
    log("wrote %s/%s{-runs.json,-summary.json,.md} in %.0f s" % (args.out, base, time.time() - t_start))
    if not args.no_plot:
        plotter = "/usr/bin/python3"
        p = subprocess.run([plotter, os.path.join(BENCH, "plot.py"), os.path.join(args.out, base + "-summary.json")],
                           capture_output=True, text=True)
        log("plot: " + (p.stdout.strip() or p.stderr.strip()[-300:]))


def render(path, args):
    """--render RUNS.json: rebuild the table, summary and plots of a finished invocation."""
    with open(path) as f:
        runs = json.load(f)
    old = {}
    spath = path[: -len("-runs.json")] + "-summary.json"
    if os.path.exists(spath):
        with open(spath) as f:
            old = json.load(f)
    name = os.path.basename(path)[: -len("-runs.json")]
    wl_name = runs[0]["workload"]
    args.tag = name[len(wl_name):].lstrip("-").replace("scaling", "", 1).lstrip("-")
    args.out = os.path.dirname(os.path.abspath(path))
    args.repeats = max(r["repeat"] for r in runs)
    args.eternal_path = old.get("eternal_path")
    modes = old.get("modes") or sorted({r["mode"] for r in runs}, key=ALL_MODES.index)
    workers_list = old.get("workers") or sorted({r["workers"] for r in runs})
    info = old.get("python") or {"version": runs[0]["python"], "impl": "cpython"}
    label = "cpython%s" % info["version"]
    write_outputs(runs, args, info, modes, workers_list, wl_name, old.get("kernel", platform.release()),
                  old.get("date", datetime.date.today().isoformat()), label, old.get("command", "?"), time.time())


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description="Fork memory benchmark driver.", epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="stdlib-server")
    ap.add_argument("--modes", default="stock,gc-freeze,eternal",
                    help="comma list of: " + ",".join(ALL_MODES))
    ap.add_argument("--workers", default="4", help="worker count (or a comma list)")
    ap.add_argument("--scaling", help="comma list of worker counts, e.g. 1,2,4,8,16 (fits a + b*N)")
    ap.add_argument("--requests", type=int, default=2000, help="total requests (pool: tasks) per run")
    ap.add_argument("--requests-per-worker", type=int,
                    help="requests = this * N (use with --scaling so every worker gets the same load)")
    ap.add_argument("--checkpoints", help="comma list of request counts to measure at "
                    "(default: requests/4 and requests; 0 = before load is always measured)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=4, help="client connections in flight")
    ap.add_argument("--python", default=None, help="interpreter to benchmark (default: this one)")
    ap.add_argument("--out", help="results dir (default bench/results/<date>-<interp>-<kernel>)")
    ap.add_argument("--tag", default="", help="suffix for result file names")
    ap.add_argument("--pycache", default=os.path.expanduser("~/.cache/forkmem/pycache"),
                    help="PYTHONPYCACHEPREFIX, warmed in a first pass")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-up pass")
    ap.add_argument("--workdir", default="/tmp/forkmem", help="scratch (logs, sqlite db, ready files)")
    ap.add_argument("--eternal-path", help="dir put on PYTHONPATH for eternal modes (default: auto)")
    ap.add_argument("--eternal-mode", default="strict", help="ETERNAL_MODE for eternal modes")
    ap.add_argument("--pool-records", type=int, default=400000, help="pool dataset records (~0.6 KB each)")
    ap.add_argument("--cowmap", action="store_true", help="page attribution at the end of each run (root)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait before a measurement")
    ap.add_argument("--ready-timeout", type=float, default=300)
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--demo", action="store_true",
                    help="stdlib-server, stock,gc-freeze,eternal, 4 workers, 2000 requests, 3 repeats, under a 3.12+ "
                         "interpreter (found via pyenv if this one is older); "
                         "prints the table (results in /tmp/forkmem/demo unless --out)")
    ap.add_argument("--render", metavar="RUNS_JSON", help="only rebuild table/summary/plots from a -runs.json")
    args = ap.parse_args(argv)
    if args.render:
        return render(args.render, args)

    if args.demo:
        args.workload, args.modes, args.workers, args.requests = "stdlib-server", "stock,gc-freeze,eternal", "4", 2000
        args.python = args.python or find_python_for_demo()
        args.out = args.out or os.path.join(args.workdir, "demo")
        args.no_plot = True
    args.python = args.python or sys.executable
    if os.sep not in args.python:
        args.python = shutil.which(args.python) or args.python
    info = interp_info(args.python)
    args.eternal_path = find_eternal_path(args.eternal_path, info)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ALL_MODES:
            ap.error("unknown mode %s" % m)
    workers_list = [int(x) for x in (args.scaling or args.workers).split(",")]
    kernel = platform.release()
    date = datetime.date.today().isoformat()
    label = "%s%s" % ("cpython" if info["impl"] == "cpython" else info["impl"], info["version"])
    args.out = args.out or os.path.join(BENCH, "results", "%s-%s-%s" % (date, label, kernel))
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(args.pycache, exist_ok=True)

    wl = WORKLOADS[args.workload](args, info)
    env0 = base_env(args, info)
    log("%s under %s (%s), kernel %s, modes %s, N=%s, out %s, eternal path %s" % (
        wl.name, label, args.python, kernel, ",".join(modes), workers_list, args.out, args.eternal_path))
    wl.prepare(env0)
    t_start = time.time()
    if not args.no_warm:
        log("warm pass (fills PYTHONPYCACHEPREFIX=%s)" % args.pycache)
        want_cowmap, args.cowmap = args.cowmap, False
        wr = one_run(wl, "stock", min(workers_list), min(200, args.requests), [min(200, args.requests)], 0,
                     args, env0)
        args.cowmap = want_cowmap
        if wr["status"] != "ok":
            log("warm pass status: %s" % wr["status"])
            if wr.get("master_log_tail"):
                log(wr["master_log_tail"])
    runs = []
    for n in workers_list:
        reqs = args.requests_per_worker * n if args.requests_per_worker else args.requests
        cps = sorted({int(x) for x in args.checkpoints.split(",")} | {reqs}) if args.checkpoints \
            else sorted({max(1, reqs // 4), reqs})
        cps = [c for c in cps if 0 < c <= reqs]
        for rep in range(1, args.repeats + 1):
            for mode in modes:   # modes interleaved inside each repeat: drift hits them all alike
                log("run %s mode=%s N=%d repeat %d/%d, %d requests" % (wl.name, mode, n, rep, args.repeats, reqs))
                r = one_run(wl, mode, n, reqs, cps, rep, args, env0)
                if r["status"] != "ok":
                    log("  status: %s" % r["status"])
                    if r.get("master_log_tail") and not r["status"].startswith("unavailable"):
                        log("  master log tail:\n" + r["master_log_tail"][-1500:])
                runs.append(r)
    cmdline = "python3 bench/forkmem.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_outputs(runs, args, info, modes, workers_list, wl.name, kernel, date, label, cmdline, t_start)


if __name__ == "__main__":
    main()
