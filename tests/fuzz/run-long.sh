#!/bin/bash
# run-long.sh - the documented long fuzz run: every harness in parallel for
# SECONDS each (default 2400), new inputs kept in build-fuzz/long/, logs and a summary line each.
#   tests/fuzz/run-long.sh [seconds]    then see build-fuzz/long/*.log; RESULTS.md records one run
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${FUZZ_BUILD:-$ROOT/build-fuzz}
SECS=${1:-2400}
"$ROOT/tests/fuzz/build.sh" "$OUT" || exit 1
mkdir -p "$OUT/long"
touch "$OUT/long/.start"
pids=()
for exe in "$OUT"/fuzz_*; do
	[ -x "$exe" ] || continue
	name=$(basename "$exe")
	work=$OUT/long/${name#fuzz_}
	mkdir -p "$work"
	nice -n 19 "$exe" -max_total_time="$SECS" -max_len=16384 -timeout=25 -rss_limit_mb=4096 \
		-malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/long/$name-" \
		"$work" "$ROOT/tests/fuzz/corpus/${name#fuzz_}" >"$OUT/long/$name.log" 2>&1 &
	pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
for log in "$OUT"/long/fuzz_*.log; do
	name=$(basename "$log" .log)
	echo "$name: $(grep -o '^Done [0-9]* runs in [0-9]* second(s)' "$log" || echo 'did not finish: see log') \
$(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$log") $(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1) \
crashes this run: $(find "$OUT/long" -name "$name-*" -newer "$OUT/long/.start" | wc -l)"
done
exit $fail
