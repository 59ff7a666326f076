#!/bin/bash
# placement_run.sh - runs placement_bench (latency and bandwidth over the sealed tier per NUMA policy, huge vs
# normal pages, replica) with the hugetlb pool sized for it, and writes bench/results/placement-<date>.md.
# Root is needed to size vm.nr_hugepages; the old value is put back on exit, whatever happens.
# Usage: bench/placement_run.sh [--size MiB] [--reps N]   (build first: ninja -C build-placement)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${PLACEMENT_BENCH:-$top/build-placement/tests/placement/placement_bench}
size=128
args=("$@")
while [ $# -gt 0 ]; do
	[ "$1" = --size ] && size=$2
	shift
done
[ -x "$bin" ] || { echo "build first: meson setup build-placement && ninja -C build-placement" >&2; exit 2; }
knob=/proc/sys/vm/nr_hugepages
if [ -w "$knob" ]; then
	orig=$(cat "$knob")
	trap 'echo "$orig" >"$knob"' EXIT
	nodes=$(ls -d /sys/devices/system/node/node[0-9]* | wc -l)
	# five policies + one replica config on huge pages, the replicas one per node, some slack
	need=$(((size / 2 + 2) * (6 + nodes) + 8))
	echo $((orig + need)) >"$knob"
else
	echo "# not root: huge page rows will say why they were not measured" >&2
fi
out=$top/bench/results/placement-$(date -u +%Y-%m-%d).md
tmp=$(mktemp)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
nice -n 10 "$bin" "${args[@]}" >"$tmp"
{
	echo "<!-- placement-$(date -u +%Y-%m-%d).md: read latency and bandwidth over the sealed tier by NUMA policy and page size."
	echo "     Regenerate: bench/placement_run.sh ${args[*]} (as root; nr_hugepages restored afterwards). -->"
	echo "# Placement benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- kernel: $(uname -r), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)),"
	echo "  NUMA nodes online: $(cat /sys/devices/system/node/online 2>/dev/null || echo '?'),"
	echo "  load average before / after: $load0 / $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- command: \`bench/placement_run.sh ${args[*]}\` (binary: ${bin#$top/},"
	echo "  meson buildtype debugoptimized, run under nice -n 10 on a 2-CPU machine shared with other jobs)"
	echo "- chase: one dependent load per 64-byte line, in a random cycle over the whole working set;"
	echo "  read: a sequential sum of 64-bit words over it. Medians over rounds that visit every configuration in turn."
	echo
	cat "$tmp"
} >"$out"
rm -f "$tmp"
cat "$out"
