# pool workload: a multiprocessing Pool (fork) computing over a large read-only dataset built in the parent.
# Driven by bench/forkmem.py over stdin/stdout: "run START COUNT" -> one JSON line of timings; "quit".
"""Environment: FORKMEM_MODE, FORKMEM_WORKERS (4), FORKMEM_POOL_RECORDS (400000, ~0.6 KB each),
FORKMEM_READY, FORKMEM_DUMP_OBJECTS. In mode eternal-data the dataset goes through eternal.freeze()
(lists become tuples, dicts read-only mappings) before the pool forks."""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import modes  # noqa: E402

modes.early()

import multiprocessing  # noqa: E402

CITIES = ["Amsterdam", "Berlin", "Cairo", "Dakar", "Edinburgh", "Florence", "Geneva", "Hanoi", "Istanbul",
          "Jakarta", "Kyoto", "Lima", "Madrid", "Nairobi", "Oslo", "Porto", "Quito", "Riga", "Seoul", "Tunis"]
TAGS = ["new", "vip", "churn", "trial", "annual", "monthly", "edu", "gov", "beta", "legacy", "api", "mobile"]
SLICES = 64
DATA = ()


def build(n):
    """Records of the kind a reporting job loads: dicts of str/int/float/tuple, many unique strings."""
    data = []
    for i in range(n):
        data.append({
            "id": i,
            "user": "user-%07d" % i,
            "email": "u%07d@example%d.org" % (i, i % 97),
            "city": CITIES[i % len(CITIES)],
            "score": (i * 7919 % 10007) / 100.0,
            "tags": tuple(TAGS[(i + k * 5) % len(TAGS)] for k in range(i % 4 + 1)),
            "history": tuple((i * (k + 3)) % 1000 for k in range(8)),
            "note": "customer %d since %d, plan %s" % (i, 2000 + i % 25, TAGS[i % len(TAGS)]),
        })
    return data


def task(i):
    """Aggregate one slice of the dataset: read-only access to every field of every record."""
    t = time.perf_counter()
    n = len(DATA)
    lo, hi = (i % SLICES) * n // SLICES, ((i % SLICES) + 1) * n // SLICES
    by_city, tags, total, hist = {}, {}, 0.0, 0
    for k in range(lo, hi):
        r = DATA[k]
        c = r["city"]
        by_city[c] = by_city.get(c, 0.0) + r["score"]
        for tg in r["tags"]:
            tags[tg] = tags.get(tg, 0) + 1
        total += r["score"]
        hist += sum(r["history"]) + len(r["user"]) + len(r["email"]) + len(r["note"])
    return time.perf_counter() - t, len(by_city), len(tags), total, hist


def main():
    global DATA
    nworkers = int(os.environ.get("FORKMEM_WORKERS", "4"))
    t0 = time.perf_counter()
    data = build(int(os.environ.get("FORKMEM_POOL_RECORDS", "400000")))
    build_s = time.perf_counter() - t0
    if os.environ.get("FORKMEM_DUMP_OBJECTS"):
        import cowmap
        cowmap.install_dump_handler()
    facts, data = modes.before_fork(data)
    DATA = data
    del data
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(nworkers, initializer=modes.after_fork_child)
    # Make sure every worker exists before the driver's "before load" measurement.
    pool.map(time.sleep, [0.2] * nworkers, chunksize=1)
    modes.write_ready(dict(facts, build_s=build_s, records=len(DATA), modules=len(sys.modules)))
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        start, count = int(cmd[1]), int(cmd[2])
        t = time.perf_counter()
        res = pool.map(task, range(start, start + count), chunksize=1)
        wall = time.perf_counter() - t
        lat = sorted(r[0] for r in res)
        out = {"requests": count, "wall_s": wall, "rps": count / wall,
               "p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
               "errors": 0}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    pool.terminate()
    pool.join()


if __name__ == "__main__":
    main()
