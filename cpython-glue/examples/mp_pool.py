# cpython-glue/examples/mp_pool.py - a multiprocessing pool (fork start method) whose
# workers share the parent's warm-up objects: modules, constants and a frozen table.
"""Run: python -m eternal run cpython-glue/examples/mp_pool.py   (or ETERNAL=1 python mp_pool.py)

The parent enables the glue (unless ETERNAL=1 already did), imports what the
workers need, freezes a lookup table into the sealed tier and seals; then a
fork-based Pool works on it. Each worker reports its private dirty memory and
whether the table it used is the parent's sealed copy.
"""
import multiprocessing as mp
import os
import sys

import eternal

if not eternal.is_enabled():
    eternal.enable()

import json  # noqa: E402  (imported during warm-up on purpose)
import decimal  # noqa: E402
import email.parser  # noqa: E402

# Immutable data every worker reads: deep-copied into the sealed tier.
TABLE = eternal.freeze({
    "words": [f"word{i:05d}" for i in range(20000)],
    "weights": {f"k{i}": i * 0.5 for i in range(5000)},
    "meta": {"name": "demo", "version": (1, 2, 3)},
})


def private_dirty_kb():
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Private_Dirty:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def work(i):
    words = TABLE["words"]
    total = sum(len(w) for w in words[i::7]) + int(TABLE["weights"][f"k{i}"])
    doc = json.dumps({"i": i, "d": str(decimal.Decimal(i) / 7), "meta": dict(TABLE["meta"])})
    msg = email.parser.Parser().parsestr(f"Subject: item {i}\n\nbody")
    return (os.getpid(), total + len(doc) + len(msg["Subject"]), eternal.tier_of(words), private_dirty_kb())


def main():
    mode = os.environ.get("ETERNAL_MODE", "strict")
    if not eternal.is_sealed():
        eternal.seal(mode, log=os.environ.get("ETERNAL_LOG"))
    st = eternal.stats()
    print(f"parent: sealed {st['sealed_bytes'] / 1e6:.1f} MB, cow {st['cow_bytes'] / 1e6:.1f} MB, mode {st['mode']}")
    ctx = mp.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.map(work, range(64))
    pids = {}
    for pid, _, tier, dirty in results:
        pids[pid] = (tier, dirty)
    checksum = sum(r[1] for r in results)
    for pid, (tier, dirty) in sorted(pids.items()):
        print(f"worker {pid}: table in the {tier} tier, Private_Dirty {dirty} kB")
    print(f"checksum {checksum}")
    ok = all(t == "sealed" for t, _ in pids.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
