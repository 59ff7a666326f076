# junit_diff.py - compare two regrtest --junit-xml files test case by test case;
# prints the differences and exits 1 if there are any (used by test.sh, RESULTS.md).
import re
import sys
import xml.etree.ElementTree as ET

# Parametrised test names may embed object addresses, which differ per run.
ADDR = re.compile(r" at 0x[0-9a-f]+")


def outcomes(path):
    res = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = ADDR.sub(" at 0x?", f"{case.get('classname') or ''}.{case.get('name') or ''}")
        kind = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                kind = child.tag
            elif child.tag == "skipped":
                kind = "skip"
        res[name] = kind
    return res


def main(a, b):
    ra, rb = outcomes(a), outcomes(b)
    diff = []
    for name in sorted(set(ra) | set(rb)):
        x, y = ra.get(name, "absent"), rb.get(name, "absent")
        if x != y:
            diff.append(f"{name}: stock={x} patched={y}")
    count = lambda r, k: sum(1 for v in r.values() if v == k)
    print(f"stock: {len(ra)} cases, {count(ra, 'pass')} pass, {count(ra, 'skip')} skip, "
          f"{count(ra, 'failure') + count(ra, 'error')} fail; "
          f"patched: {len(rb)} cases, {count(rb, 'pass')} pass, {count(rb, 'skip')} skip, "
          f"{count(rb, 'failure') + count(rb, 'error')} fail; {len(diff)} differences")
    for d in diff:
        print(d)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
