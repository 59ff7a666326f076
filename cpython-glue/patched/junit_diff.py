# junit_diff.py - compare two regrtest --junit-xml files test case by test case;
# prints the differences and exits 1 if any case passes on one side only (test.sh, RESULTS.md).
import re
import sys
import xml.etree.ElementTree as ET

# Parametrised test names may embed object addresses, which differ per run.
ADDR = re.compile(r" at 0x[0-9a-f]+")


def outcomes(path):
    res = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = ADDR.sub(" at 0x?", f"{case.get('classname') or ''}.{case.get('name') or ''}")
        kind, why = "pass", ""
        for child in case:
            if child.tag in ("failure", "error"):
                kind = child.tag
            elif child.tag == "skipped":
                kind, why = "skip", (child.get("message") or child.text or "").strip()
        res[name] = (kind, why)
    return res


def main(a, b):
    ra, rb = outcomes(a), outcomes(b)
    bad, notes = [], []
    for name in sorted(set(ra) | set(rb)):
        (x, wx), (y, wy) = ra.get(name, ("absent", "")), rb.get(name, ("absent", ""))
        if x == y:
            continue
        line = f"{name}: stock={x} patched={y}"
        # A skip on one side and a pass on the other is a precondition the
        # environment met only once (e.g. fd numbers); everything else counts.
        if {x, y} == {"pass", "skip"}:
            notes.append(f"{line} (skip reason: {wx or wy})")
        else:
            bad.append(line)
    count = lambda r, k: sum(1 for v, _ in r.values() if v == k)
    print(f"stock: {len(ra)} cases, {count(ra, 'pass')} pass, {count(ra, 'skip')} skip, "
          f"{count(ra, 'failure') + count(ra, 'error')} fail; "
          f"patched: {len(rb)} cases, {count(rb, 'pass')} pass, {count(rb, 'skip')} skip, "
          f"{count(rb, 'failure') + count(rb, 'error')} fail; "
          f"{len(bad)} differences, {len(notes)} pass/skip flips")
    for d in bad:
        print(d)
    for n in notes:
        print("flip:", n)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
