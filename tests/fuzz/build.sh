#!/bin/bash
# build.sh - build the libFuzzer harnesses with clang (ASan + UBSan) into
# build-fuzz/ (or $1); our main build uses gcc, so this one stands apart.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/build-fuzz}
CC=${FUZZ_CC:-clang}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
# The library as committed (HEAD), so that another helper's half-edited file
# does not break the fuzz build; FUZZ_TREE=worktree takes the working tree.
LIB=$OUT/libeternal
if [ "${FUZZ_TREE:-head}" = worktree ]; then
	rm -rf "$LIB" "$OUT/obj/.stamp" && cp -r "$ROOT/libeternal" "$LIB"
else
	rev=$(git -C "$ROOT" rev-parse HEAD:libeternal)
	if [ "$(cat "$OUT/libeternal.rev" 2>/dev/null)" != "$rev" ]; then
		rm -rf "$LIB" "$OUT/obj/.stamp" && mkdir -p "$OUT/obj" && git -C "$ROOT" archive HEAD libeternal | tar -x -C "$OUT"
		echo "$rev" >"$OUT/libeternal.rev"
	fi
fi
CFLAGS="-g -O1 -std=gnu11 -Wall -Wextra -fno-omit-frame-pointer $SAN -I$LIB/include -I$LIB/src"

mkdir -p "$OUT/obj"
# Does this clang link libFuzzer? (Debian: clang-14 + libclang-rt-14-dev)
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}\n' >"$OUT/probe.c"
if ! "$CC" -fsanitize=fuzzer "$OUT/probe.c" -o "$OUT/probe" 2>"$OUT/probe.log"; then
	echo "no libFuzzer: $CC -fsanitize=fuzzer does not link (see $OUT/probe.log)" >&2
	exit 77
fi

# The library, instrumented for coverage: every source the meson build has
# (other helpers add files), region.c through region_reclaim.c, which adds the
# tombstone hook. Any change under libeternal/ rebuilds all of it.
srcs=("$ROOT"/tests/fuzz/region_reclaim.c)
for s in "$LIB"/src/*.c; do
	[ "$(basename "$s")" = region.c ] || srcs+=("$s")
done
stamp="$OUT/obj/.stamp"
if [ ! -e "$stamp" ] || [ -n "$(find "$LIB" "$ROOT/tests/fuzz/region_reclaim.c" -newer "$stamp" -type f | head -1)" ]; then
	rm -f "$OUT"/obj/*.o
	for src in "${srcs[@]}"; do
		$CC $CFLAGS -fsanitize=fuzzer-no-link -c "$src" -o "$OUT/obj/$(basename "$src" .c).o"
	done
	touch "$stamp"
fi
objs=("$OUT"/obj/*.o)
libs="-lpthread"
for pc in libdw numa liburing; do
	if pkg-config --exists "$pc"; then libs="$libs $(pkg-config --libs "$pc")"; fi
done
[ -e /usr/include/numa.h ] && ! echo "$libs" | grep -q lnuma && libs="$libs -lnuma"

for h in "$ROOT"/tests/fuzz/fuzz_*.c; do
	name=$(basename "$h" .c)
	if [ ! -e "$OUT/$name" ] || [ "$h" -nt "$OUT/$name" ] || [ "$ROOT/tests/fuzz/fuzz-model.h" -nt "$OUT/$name" ] ||
		[ "$stamp" -nt "$OUT/$name" ]; then
		# Warnings are errors in our own harnesses; the library's own
		# -Werror build is the gcc one.
		$CC $CFLAGS -Werror -fsanitize=fuzzer "$h" "${objs[@]}" $libs -o "$OUT/$name"
	fi
done
echo "fuzzers in $OUT: $(cd "$OUT" && ls fuzz_* | tr '\n' ' ')"
