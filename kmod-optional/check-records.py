# check-records.py - host-side checks of one "cowtrace-read -- cowtest cow N" block from the VM console:
# each child's chosen pages give exactly one record with its pid, the page and an ip inside cow_write_page.
"""usage: check-records.py BLOCK_FILE BINARY LABEL   (prints TAP lines, exits 0)
       check-records.py BLOCK_FILE - cpython      (the cowpy.py block: classification checks)

BINARY is the cowtest that ran in the VM; `nm -S` gives cow_write_page's link address and size.
For a static non-PIE binary the runtime address must equal the link address; for a PIE the
program prints its runtime address (SYM line) and the ip is checked against that + size."""
import re
import subprocess
import sys


def tap(ok, name):
    print(("ok - " if ok else "not ok - ") + name)


def parse_recs(text):
    return [dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
            for m in re.finditer(r"^REC (.*)$", text, re.M)]


def check_cpython(text, label):
    """cowpy.py under cowtrace-read --classify: the worker's copied pages are classed by bench/cowmap.py."""
    rc = re.search(r"^READER-RC (\d+)", text, re.M)
    child = re.search(r"^PYCHILD (\d+) (\d+)", text, re.M)
    recs = parse_recs(text)
    tap(rc is not None and rc.group(1) == "0" and child is not None and child.group(2) == "0",
        f"{label}: reader ran python3 and exited 0")
    skipped = re.search(r"classification skipped.*", text)
    tap(not skipped and bool(recs) and all("class" in r for r in recs), f"{label}: classification ran")
    mine = [r for r in recs if child and r["pid"] == child.group(1)]
    hist = {}
    for r in mine:
        hist[r.get("class", "-")] = hist.get(r.get("class", "-"), 0) + 1
    tap(hist.get("str", 0) >= 10, f"{label}: worker's str pages classed str")
    if skipped:
        print("# " + skipped.group(0))
    print(f"# {label}: {len(recs)} records, worker {len(mine)}: " +
          ", ".join(f"{k}={v}" for k, v in sorted(hist.items(), key=lambda kv: -kv[1])))
    return 0


def main():
    block, binary, label = sys.argv[1:4]
    text = open(block, errors="replace").read()
    if label.startswith("cpython"):
        return check_cpython(text, label)
    nm = subprocess.run(["nm", "-S", binary], capture_output=True, text=True).stdout
    link = size = None
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == "cow_write_page":
            link, size = int(parts[0], 16), int(parts[1], 16)
    recs = parse_recs(text)
    exp = [(int(p), int(a, 16)) for p, a in re.findall(r"^EXPECT pid=(\d+) addr=(0x[0-9a-f]+)", text, re.M)]
    ro = {int(a, 16) for a in re.findall(r"^READONLY addr=(0x[0-9a-f]+)", text, re.M)}
    sym = re.search(r"^SYM cow_write_page (0x[0-9a-f]+)", text, re.M)
    rc = re.search(r"^READER-RC (\d+)", text, re.M)
    failed = re.search(r"^CHILDREN-FAILED (\d+)", text, re.M)
    nchild = re.search(r"^NCHILD (\d+)", text, re.M)
    pie = "pie" in label
    lo = int(sym.group(1), 16) if sym and pie else link

    tap(rc is not None and rc.group(1) == "0", f"{label}: reader ran the forking command and exited 0")
    tap(failed is not None and failed.group(1) == "0" and nchild is not None
        and len(exp) == 2 * int(nchild.group(1)), f"{label}: every child wrote its 2 chosen pages")
    if not pie:
        tap(link is not None and sym is not None and int(sym.group(1), 16) == link,
            f"{label}: cow_write_page runs at its nm address (static, no PIE)")
    else:
        tap(link is not None and sym is not None and (int(sym.group(1), 16) - link) % 4096 == 0
            and int(sym.group(1), 16) != link, f"{label}: cow_write_page relocated by a page-aligned load bias")
    by = {}
    for r in recs:
        by.setdefault((int(r["pid"]), int(r["addr"], 16)), []).append(r)
    tap(bool(exp) and all(len(by.get(e, [])) == 1 for e in exp),
        f"{label}: one record per written page, with the writer's pid and page")
    hit = [by[e][0] for e in exp if e in by]
    tap(bool(hit) and lo is not None and all(lo <= int(r["ip"], 16) < lo + size for r in hit),
        f"{label}: record ip lies inside cow_write_page (nm -S)")
    tap(bool(hit) and all(r.get("sym", "").startswith("cow_write_page+") for r in hit),
        f"{label}: reader symbolizes ip as cow_write_page+off")
    tap(bool(hit) and all(r.get("src", "").startswith("cowtest.c:") for r in hit),
        f"{label}: reader gives the source line (DWARF)")
    tap(bool(hit) and all("user" in r["flags"].split(",") and "zero" not in r["flags"] for r in hit),
        f"{label}: records flagged user-mode, not zero page")
    tap(bool(hit) and all(r["off"] == "8" for r in hit), f"{label}: in-page offset of the write (8) recorded")
    tap(bool(ro) and not any(int(r["addr"], 16) in ro for r in recs), f"{label}: pages only read produce no record")
    tap(bool(hit) and all(r["pid"] == r["tid"] for r in hit), f"{label}: tid recorded (single-threaded: tid == pid)")
    summ = re.search(r"^SUMMARY read=(\d+) recorded=(\d+) dropped=(\d+)", text, re.M)
    tap(summ is not None and summ.group(1) == summ.group(2) and summ.group(3) == "0",
        f"{label}: reader read every record, none dropped")
    print(f"# {label}: {len(recs)} records in all, {len(exp)} expected writes, {len(hit)} found")
    if hit:
        r = hit[0]
        print(f"# {label}: e.g. pid={r['pid']} addr={r['addr']} ip={r['ip']} sym={r.get('sym')} "
              f"src={r.get('src')} region={r.get('region')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
