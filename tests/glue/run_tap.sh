#!/bin/bash
# tests/glue/run_tap.sh - the glue's pytest suite under each pyenv interpreter, as TAP
# lines (one per test) for tests/run-all.sh. usage: run_tap.sh [-p python]... [-- pytest args]
#   ETERNAL_BUILD_DIR=DIR  build tree with cpython-glue/py31x (default build-glue, then build)
#   ETERNAL_TEST_INSTALLED=1  test the installed package instead
set -u
here=$(cd "$(dirname "$0")" && pwd)
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
pythons=()
while getopts p: o; do
	case $o in p) pythons+=("$OPTARG") ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ ${#pythons[@]} -gt 0 ] || pythons=("$pyenv_root/versions/3.12.1/bin/python3.12" "$pyenv_root/versions/3.13.0/bin/python3.13")
tmp=$(mktemp -d /tmp/eternal-glue-tap.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
rc=0
for py in "${pythons[@]}"; do
	ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
	PYTHONPATH=/usr/lib/python3/dist-packages "$py" -m pytest -q -p no:cacheprovider \
		--junitxml "$tmp/$ver.xml" "$here" "$@" >"$tmp/$ver.log" 2>&1 || rc=1
	python3 - "$tmp/$ver.xml" "$ver" <<'PY' || rc=1
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as e:
    print(f"not ok - {sys.argv[2]} pytest produced no results ({e})"); sys.exit(1)
for tc in root.iter("testcase"):
    name = f"{sys.argv[2]} {tc.get('classname', '').split('.')[-1]}::{tc.get('name')}"
    skip = tc.find("skipped")
    if tc.find("failure") is not None or tc.find("error") is not None:
        print(f"not ok - {name}")
    elif skip is not None:
        print(f"ok - {name} # SKIP {(skip.get('message') or '').splitlines()[0][:100]}")
    else:
        print(f"ok - {name}")
PY
	[ $rc = 0 ] || tail -30 "$tmp/$ver.log" | sed 's/^/# /'
done
exit $rc
