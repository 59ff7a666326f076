#!/bin/bash
# huge-pages.sh - runs huge_pages once per case with the hugetlb pool sized for it (root only), one TAP
# line per case; vm.nr_hugepages is put back on exit, whatever happens.
set -u
bin=${1:?usage: huge-pages.sh path/to/huge_pages}
knob=/proc/sys/vm/nr_hugepages
if [ "$(id -u)" != 0 ] || [ ! -w "$knob" ]; then
	echo "1..0 # SKIP needs root to size the huge page pool"
	exit 0
fi
orig=$(cat "$knob")
trap 'echo "$orig" >"$knob"' EXIT
n=0
nfail=0
mi() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
# Pages someone else holds stay theirs: the pool is sized above them.
set_free() { echo $(($(mi HugePages_Total) - $(mi HugePages_Free) + $1)) >"$knob"; }
run() { # run CASE [TODO-REASON]: one TAP line from the program's exit status
	local out rc todo=${2:+ # TODO $2}
	n=$((n + 1))
	# A trap engine that cannot un-protect a huge page would hang or loop: bound each case.
	out=$(timeout -s KILL 10 "$bin" "$1" 2>&1)
	rc=$?
	case $rc in
	0) echo "ok $n - huge_pages $1$todo" ;;
	77) echo "ok $n - huge_pages $1 # SKIP $(grep -m1 '^SKIP' <<<"$out" | sed 's/^SKIP: //')" ;;
	*)
		echo "not ok $n - huge_pages $1 (exit $rc)$todo"
		[ -n "$todo" ] || nfail=$((nfail + 1))
		;;
	esac
	sed 's/^# //; s/^/# /' <<<"$out"
}
set_free 0
run fallback
set_free 16
if [ "$(mi HugePages_Free)" -lt 16 ]; then
	echo "# could not get 16 free huge pages (have $(mi HugePages_Free))"
fi
run active
run replica
run fork-warmup
for c in trap-precise trap-thread trap-mprotect; do run "$c"; done
set_free 4
run exhaust
echo "1..$n"
[ "$nfail" -eq 0 ]
