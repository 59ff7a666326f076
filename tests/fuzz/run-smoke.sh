#!/bin/bash
# run-smoke.sh - CI fuzz smoke: build the libFuzzer harnesses with clang into
# build-fuzz/ and run each for a fixed number of runs over its committed corpus; TAP lines.
#   tests/fuzz/run-smoke.sh [runs]     (default FUZZ_RUNS or 1000 per fuzzer; the capture path a fifth)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${FUZZ_BUILD:-$ROOT/build-fuzz}
RUNS=${1:-${FUZZ_RUNS:-1000}}
HERE=$ROOT/tests/fuzz

"$HERE/build.sh" "$OUT" >"$OUT.build.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
	echo "ok - fuzz build # SKIP $(tail -1 "$OUT.build.log")"
	echo "1..1"
	exit 0
elif [ $rc -ne 0 ]; then
	sed 's/^/# /' "$OUT.build.log"
	echo "not ok - fuzz build"
	echo "1..1"
	exit 1
fi
echo "ok - fuzz build"
ntap=1

fail=0
for exe in "$OUT"/fuzz_*; do
	[ -x "$exe" ] || continue
	name=$(basename "$exe")
	corpus=$HERE/corpus/${name#fuzz_}
	# New inputs go to a scratch directory: the committed corpus stays as is.
	scratch=$(mktemp -d)
	mkdir -p "$OUT/logs"
	log=$OUT/logs/$name.smoke.log
	runs=$RUNS
	# The capture path runs an embedded interpreter and forks per input: ~10x slower.
	[ "$name" = fuzz_marshal ] && runs=$((RUNS / 5))
	args=(-runs="$runs" -max_len=16384 -malloc_limit_mb=2048 -timeout=25 -rss_limit_mb=2048 -seed=1 -artifact_prefix="$OUT/$name-")
	[ -f "$HERE/$name.dict" ] && args+=(-dict="$HERE/$name.dict")
	start=$(date +%s)
	timeout 120 nice -n 10 "$exe" "${args[@]}" "$scratch" "$corpus" >"$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	rm -rf "$scratch"
	ntap=$((ntap + 1))
	execs=$(grep -o '^Done [0-9]* runs' "$log" | awk '{print $2}')
	if [ $rc -eq 0 ] && [ -n "$execs" ]; then
		echo "ok - $name ($execs runs in ${secs}s)"
	else
		tail -30 "$log" | sed 's/^/# /'
		echo "not ok - $name (exit $rc after ${secs}s; log $log)"
		fail=1
	fi
done

echo "1..$ntap"
exit $fail
