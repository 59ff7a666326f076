# tests/glue/test_workloads.py - zero writes into the sealed tier on real workloads:
# every importable stdlib module plus django, jinja2 and sympy, parent and forked child.
import json
import os

import pytest

from conftest import ROOT, run_py

WORKLOAD = os.path.join(ROOT, "tests", "glue", "workload.py")


def _records(log):
    recs = []
    for f in log.glob("*.jsonl"):
        for line in f.read_text().splitlines():
            recs.append(json.loads(line))
    return recs


def test_trap_zero_sealed_writes_parent_and_child(tmp_path):
    log = tmp_path / "log"
    p = run_py(None, [WORKLOAD, "--seal", "trap", "--log", str(log), "--fork", "--third-party",
                      "--more-imports", "--stats"], env={"ETERNAL": "1", "ETERNAL_SEAL": "manual"},
               python=None, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    # (the workload enables itself through the autostart module)
    assert "third party: ['django', 'jinja2', 'sympy']" in p.stdout, p.stdout[:2000]
    assert "child status 0" in p.stdout
    recs = _records(log)
    sealed = [r for r in recs if r["tier"] == "sealed"]
    assert not sealed, "\n".join(json.dumps(r) for r in sealed[:10])
    pids = {r["pid"] for r in recs}
    assert len(pids) == 2, pids  # parent and child both trapped (cow writes)
    # Writes into the cow tier are reported by code object.
    cow = [r for r in recs if r["tier"] == "cow"]
    assert cow and all(r.get("type") == "code" and r.get("code") for r in cow), cow[:3]
    st = json.loads(p.stdout.strip().splitlines()[-1])
    assert st["mode"] == "trap" and st["trap_writes_sealed"] == 0 and st["stray_blocks"] <= 2
    assert st["objects_by_type"]["code"] > 10000 and st["objects_by_type"]["str"] > 50000


def test_strict_workload_parent_and_child():
    p = run_py(None, [WORKLOAD, "--seal", "strict", "--fork", "--third-party", "--more-imports"],
               env={"ETERNAL": "1", "ETERNAL_SEAL": "manual"}, timeout=900)
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-3000:])
    assert "child status 0" in p.stdout
