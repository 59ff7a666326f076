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

# The capture path needs CPython 3.12 (shared libpython) and the glue's
# sources, compiled here with the same instrumentation and registered as a
# built-in module of the embedded interpreter.
PYCFG=${FUZZ_PYTHON_CONFIG:-$(pyenv root 2>/dev/null)/versions/3.12.1/bin/python3.12-config}
glue_objs=()
GLUE=$OUT/cpython-glue/src
if [ "${FUZZ_TREE:-head}" = worktree ]; then
	rm -rf "$GLUE" && mkdir -p "$OUT/cpython-glue" && cp -r "$ROOT/cpython-glue/src" "$GLUE"
elif grev=$(git -C "$ROOT" rev-parse -q --verify HEAD:cpython-glue/src 2>/dev/null); then
	if [ "$(cat "$OUT/glue.rev" 2>/dev/null)" != "$grev" ]; then
		rm -rf "$GLUE" "$OUT/obj-glue" && git -C "$ROOT" archive HEAD cpython-glue/src | tar -x -C "$OUT"
		echo "$grev" >"$OUT/glue.rev"
	fi
fi
if [ -x "$PYCFG" ] && [ -f "$GLUE/_eternal.c" ]; then
	mkdir -p "$OUT/obj-glue"
	for src in "$GLUE"/*.c; do
		o="$OUT/obj-glue/$(basename "$src" .c).o"
		if [ ! -e "$o" ] || [ -n "$(find "$GLUE" "$stamp" -newer "$o" -type f | head -1)" ]; then
			$CC $CFLAGS -fsanitize=fuzzer-no-link $($PYCFG --includes) -Wno-missing-field-initializers \
				-Wno-unused-parameter -Wno-cast-function-type -Wno-deprecated-declarations -c "$src" -o "$o"
		fi
		glue_objs+=("$o")
	done
fi

for h in "$ROOT"/tests/fuzz/fuzz_*.c; do
	name=$(basename "$h" .c)
	extra=()
	if [ "$name" = fuzz_marshal ]; then
		if [ ${#glue_objs[@]} -eq 0 ]; then
			echo "skipping $name: no CPython 3.12 python3.12-config or no glue sources" >&2
			rm -f "$OUT/$name"
			continue
		fi
		extra=($($PYCFG --includes) "${glue_objs[@]}" $($PYCFG --ldflags --embed))
	fi
	if [ ! -e "$OUT/$name" ] || [ "$h" -nt "$OUT/$name" ] || [ "$ROOT/tests/fuzz/fuzz-model.h" -nt "$OUT/$name" ] ||
		[ "$stamp" -nt "$OUT/$name" ] || [ -n "$(find "$OUT/obj-glue" -newer "$OUT/$name" -name '*.o' 2>/dev/null | head -1)" ]; then
		# Warnings are errors in our own harnesses; the library's own
		# -Werror build is the gcc one.
		$CC $CFLAGS -Werror -fsanitize=fuzzer "$h" "${objs[@]}" "${extra[@]}" $libs -o "$OUT/$name"
	fi
done
echo "fuzzers in $OUT: $(cd "$OUT" && ls fuzz_* | grep -v "\." | tr '\n' ' ')"
