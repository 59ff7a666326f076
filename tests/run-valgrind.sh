#!/bin/bash
# run-valgrind.sh - the core C tests (and the fault and proof programs valgrind
# can host) under valgrind memcheck, one TAP line each; skips are listed with reasons.
#   tests/run-valgrind.sh [builddir [dirs...]]   (default build-valgrind, configured here if
#   missing; dirs default to "core"; "faults proofs" run the fault and proof programs too)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-valgrind}
shift || true
DIRS=${*:-core}
TIMEOUT=${VALGRIND_TIMEOUT:-300}

if ! command -v valgrind >/dev/null; then
	echo "ok - valgrind # SKIP valgrind not installed"
	exit 0
fi
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" -Dbuildtype=debug -Dglue=disabled >/dev/null || { echo "not ok - meson setup"; exit 1; }
fi
ninja -C "$BUILD" >/dev/null || { echo "not ok - build"; exit 1; }

# Programs valgrind cannot host, and why (measured with valgrind 3.19 on Linux 6.18):
declare -A SKIP=(
	[faults/fork_threads]="200 forks of a multithreaded parent under memcheck: >7 min, cut"
	[faults/memfd_fail]="installs a seccomp filter: valgrind 3.19 does not implement seccomp(2) (unhandled syscall 317, ENOSYS)"
	[faults/publish_fail]="seccomp filter (see memfd_fail)"
	[faults/uffd_refused]="seccomp filter (see memfd_fail)"
	[faults/seal_steps_fail]="seccomp filter (see memfd_fail)"
	[faults/tlog_kill]="under memcheck no trap record reached the log before the kill in 30 of 30 runs: the trap engines (userfaultfd, SIGBUS/SIGSEGV retry) do not work under valgrind"
)

fail=0
n=0
for dir in $DIRS; do
	for exe in "$BUILD"/tests/$dir/*; do
		[ -f "$exe" ] && [ -x "$exe" ] || continue
		name=$(basename "$exe")
		key=$dir/${name#fault_}
		[ "$dir" = proofs ] && key=proofs/${name#proof_}
		args=()
		case "$key" in
		faults/fork_threads) args=(cow) ;;
		esac
		if [ -n "${SKIP[$key]:-}" ]; then
			# Not a test of this suite (a valgrind limit, not the kernel's):
			# said, not counted.
			echo "# not run under valgrind: $key: ${SKIP[$key]}"
			continue
		fi
		n=$((n + 1))
		log=$BUILD/valgrind-${key//\//-}.log
		# Leaks: definite ones are errors; the library keeps closed handles
		# as tombstones on purpose (still reachable), which is not a leak.
		# valgrind may ignore SIGTERM while its children run: -k kills it.
		timeout -k 10 "$TIMEOUT" nice -n 10 valgrind -q --error-exitcode=99 --leak-check=full \
			--errors-for-leak-kinds=definite --show-leak-kinds=definite --trace-children=yes \
			--log-file="$log.%p" "$exe" "${args[@]}" >"$log" 2>&1
		rc=$?
		[ $rc -eq 137 ] && rc=124
		cat "$log".* >>"$log" 2>/dev/null; rm -f "$log".*
		if [ $rc -eq 0 ]; then
			echo "ok - valgrind $key"
		elif [ $rc -eq 77 ]; then
			echo "ok - valgrind $key # SKIP $(grep -m1 '^SKIP:' "$log" | sed 's/^SKIP: //')"
		else
			sed 's/^/# /' "$log" | tail -25
			echo "not ok - valgrind $key (exit $rc$([ $rc -eq 124 ] && echo ', timeout'); log $log)"
			fail=1
		fi
	done
done
echo "1..$n"
exit $fail
