# eternal/_report.py - turns stats() and trap records into the table printed by
# `python -m eternal report`, for this process or for a trap-log directory.
import collections
import glob
import json
import os


def _mib(n):
    return f"{n / 1048576:8.2f} MiB" if n >= 1048576 else f"{n / 1024:8.1f} KiB"


def _rec_get(r, *keys, default=""):
    for k in keys:
        if k in r and r[k] not in (None, ""):
            return r[k]
        d = r.get("describe")
        if isinstance(d, dict) and d.get(k) not in (None, ""):
            return d[k]
    return default


def print_report(st, records, file, pid=None):
    w = file.write
    w(f"eternal report: pid {pid or os.getpid()}, backend {st.get('backend', 'stock')}, mode {st.get('mode')}"
      f"{' engine ' + st['engine'] if st.get('engine') else ''}\n")
    if not st.get("enabled"):
        w("  not enabled\n")
        return
    w(f"  sealed tier {_mib(st['sealed_bytes'])}   cow tier {_mib(st['cow_bytes'])}\n\n")
    w(f"  {'tier':<7} {'type':<14} {'objects':>10} {'bytes':>14}\n")
    for tier in ("sealed", "cow"):
        rows = sorted(st.get("by_tier", {}).get(tier, {}).items(), key=lambda kv: -kv[1]["bytes"])
        for name, e in rows:
            w(f"  {tier:<7} {name:<14} {e['objects']:>10,} {_mib(e['bytes']):>14}\n")
    w("\n")
    keys = ("captures", "capture_errors", "rejected", "passthrough", "code_moved", "code_moved_heap",
            "interned_swaps", "orphans", "stray_blocks", "fallback", "fallback_bytes", "freezes",
            "trap_writes_sealed", "trap_writes_cow", "trap_dropped")
    for k in keys:
        if k in st:
            w(f"  {k:<20} {st[k]:>12,}\n")
    print_records(records, file)


def print_records(records, file):
    w = file.write
    if not records:
        w("\n  no trapped writes\n")
        return
    by_tier = collections.Counter(_rec_get(r, "tier") for r in records)
    w(f"\n  trapped writes: {dict(by_tier)}\n")
    w(f"  {'pid':>7} {'tier':<6} {'type':<12} {'field':<20} {'repr / code':<48} writer\n")
    for r in records[:200]:
        what = _rec_get(r, "code") or _rec_get(r, "repr")
        w(f"  {_rec_get(r, 'pid'):>7} {_rec_get(r, 'tier'):<6} {str(_rec_get(r, 'type'))[:12]:<12} "
          f"{str(_rec_get(r, 'field'))[:20]:<20} {str(what)[:48]:<48} {_rec_get(r, 'writer', 'symbol')}\n")
    if len(records) > 200:
        w(f"  ... {len(records) - 200} more\n")
    cow = collections.Counter(_rec_get(r, "code") for r in records
                              if _rec_get(r, "tier") == "cow" and _rec_get(r, "code"))
    if cow:
        w("\n  cow-tier writes by code object:\n")
        for code, n in cow.most_common(30):
            w(f"  {n:>7}  {code}\n")


def normalize(r):
    """Library log record -> the keys stats()/trap_records() use. The glue's
    description is already spliced into the record by the library (type,
    field, repr, code); the address comes as a hex string."""
    a = r.get("address")
    if isinstance(a, str):
        r["address"] = int(a, 16)
    r.setdefault("writer", "")
    return r


def load_dir(path):
    """(stats files, trap records) found in a log directory."""
    stats, records = [], []
    for f in sorted(glob.glob(os.path.join(path, "eternal-stats-*.json"))):
        with open(f) as fh:
            stats.append(json.load(fh))
    seen = set()
    for s in stats:
        for r in s.get("records", []):
            records.append(r)
            seen.add((r.get("pid"), r.get("seq")))
    for f in sorted(glob.glob(os.path.join(path, "*.jsonl")) + glob.glob(os.path.join(path, "*.log"))):
        with open(f) as fh:
            for line in fh:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if (r.get("pid"), r.get("seq")) not in seen:
                    records.append(normalize(r))
    return stats, records


def report_dir(path, as_json=False, file=None):
    import sys
    file = file or sys.stdout
    stats, records = load_dir(path)
    if as_json:
        json.dump({"stats": stats, "records": records}, file, indent=1)
        file.write("\n")
        return 0
    for s in stats:
        file.write(f"\n== pid {s['pid']}: {' '.join(s.get('argv', []))[:100]}\n")
        st = dict(s["stats"])
        print_report(st, [], file, pid=s["pid"])
    print_records(records, file)
    return 0
