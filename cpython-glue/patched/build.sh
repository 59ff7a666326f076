#!/bin/bash
# build.sh - fetch Debian's python3.13 3.13.5 source, build a stock and a patched
# (libeternal-linked) interpreter with identical flags; prints stock dir, then patched dir.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${ETERNAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/libeternal}
VERSION=3.13.5
TARBALL=python3.13_${VERSION}.orig.tar.xz
# sha256 of Debian's orig tarball; it equals python.org's Python-3.13.5.tar.xz.
TARBALL_SHA=93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640
PATCH=$HERE/eternal-$VERSION.patch
# Same flags for both builds, so the comparison measures the patch only.
# Shared libpython like the pyenv/Debian interpreters; -O2 is CPython's default.
# Shared libpython like the pyenv/Debian interpreters; CPython's default OPT (-O3)
# for both; no PGO/LTO, whose profile runs would differ between the two builds.
CONFIGURE_FLAGS="--enable-shared --with-pymalloc --without-ensurepip"
JOBS=${JOBS:-2}
# libeternal's sources (include/ and src/) compiled into the interpreter.
LIBETERNAL_DIR=${LIBETERNAL_DIR:-$ROOT/libeternal}

log() { echo "build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$CACHE"

fetch_source() {
	# Fetch once through apt (signed Release -> Sources -> .dsc checksums).
	local dl=$CACHE/src-dl
	if [ -f "$CACHE/$TARBALL" ]; then
		return
	fi
	[ "$(id -u)" = 0 ] || die "fetching the source needs root (apt-get); or put $TARBALL in $CACHE"
	local mirror
	mirror=$(grep -hoE 'https?://deb\.debian\.org/debian/?' /etc/apt/sources.list.d/*.sources \
		/etc/apt/sources.list 2>/dev/null | head -1 || true)
	mirror=${mirror:-http://deb.debian.org/debian}
	local src=/etc/apt/sources.list.d/libeternal-trixie-src.sources
	log "adding deb-src entry $src ($mirror trixie)"
	cat > "$src" <<SRC
Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	# Remove the entry whatever happens, and refresh the lists without it.
	trap 'rm -f "'"$src"'"; apt-get update -qq >&2 || true' EXIT
	apt-get update -qq >&2
	local ver
	ver=$(apt-cache showsrc python3.13 | awk '/^Version: '"${VERSION//./\\.}"'-/ {print $2}' | sort -V | tail -1)
	[ -n "$ver" ] || die "no python3.13 $VERSION source in trixie"
	log "downloading python3.13=$ver"
	rm -rf "$dl" && mkdir -p "$dl"
	(cd "$dl" && apt-get source -qq --download-only "python3.13=$ver" >&2)
	rm -f "$src"
	trap - EXIT
	apt-get update -qq >&2 || true
	[ -f "$dl/$TARBALL" ] || die "apt-get source did not produce $TARBALL"
	# Cross-check with the .dsc (apt checked it against the signed index).
	local dsc_sha
	dsc_sha=$(awk '/^Checksums-Sha256:/ {f=1; next} /^[^ ]/ {f=0} f && $3 == "'"$TARBALL"'" {print $1}' "$dl"/*.dsc)
	[ "$(sha256sum < "$dl/$TARBALL" | cut -d' ' -f1)" = "$dsc_sha" ] || die "tarball does not match its .dsc"
	mv "$dl/$TARBALL" "$CACHE/$TARBALL"
	cp "$dl"/*.dsc "$CACHE/"
	rm -rf "$dl"
}


verify_source() {
	local got
	got=$(sha256sum < "$CACHE/$TARBALL" | cut -d' ' -f1)
	[ "$got" = "$TARBALL_SHA" ] || die "$TARBALL: sha256 $got, expected $TARBALL_SHA"
}

# Everything that goes into the patched interpreter: our patch, our files copied
# into the tree, and libeternal's sources.
patched_inputs() {
	ls "$PATCH" "$HERE"/src/* "$LIBETERNAL_DIR"/include/*.h "$LIBETERNAL_DIR"/src/*.[ch] \
		2>/dev/null | LC_ALL=C sort
}

key_of() { # key_of stock|patched
	{
		echo "$TARBALL_SHA $CONFIGURE_FLAGS $(gcc -dumpfullversion)"
		if [ "$1" = patched ]; then
			patched_inputs | while read -r f; do echo "${f##*/} $(sha256sum < "$f")"; done
		fi
	} | sha256sum | cut -c1-16
}

# Copy libeternal and our module into the tree and register them as a built-in
# module linked into libpython (Setup.local *static*), next to the core objects.
add_eternal() {
	local tree=$1 libs="" f
	patch -d "$tree" -p1 --forward --quiet < "$PATCH" >&2
	ls "$LIBETERNAL_DIR"/src/*.c >/dev/null 2>&1 || die "no libeternal sources in $LIBETERNAL_DIR/src"
	mkdir -p "$tree/Modules/eternal"
	cp -r "$LIBETERNAL_DIR/include" "$LIBETERNAL_DIR/src" "$tree/Modules/eternal/"
	cp "$HERE"/src/*.c "$tree/Modules/"
	cp "$HERE"/src/pycore_eternal.h "$tree/Include/internal/"
	# Link what libeternal's sources ask for, nothing more.
	if grep -qs '<liburing.h>' "$LIBETERNAL_DIR"/src/*.[ch]; then libs="$libs -luring"; fi
	if grep -qs '<numa.h>\|<numaif.h>' "$LIBETERNAL_DIR"/src/*.[ch]; then libs="$libs -lnuma"; fi
	if grep -qs '<elfutils/\|<libdw' "$LIBETERNAL_DIR"/src/*.[ch]; then libs="$libs -ldw -lelf"; fi
	{
		echo "*static*"
		printf '_eternal_patched _eternal_patched.c'
		for f in "$tree"/Modules/eternal/src/*.c; do printf ' eternal/src/%s' "$(basename "$f")"; done
		echo " -I\$(srcdir)/Modules/eternal/include -I\$(srcdir)/Modules/eternal/src$libs"
	} > "$tree/Modules/Setup.local"
}

build_one() { # build_one stock|patched -> prints the bin dir
	local kind=$1 key dir tmp
	key=$(key_of "$kind")
	dir=$CACHE/builds/$kind-$VERSION-$key
	if [ -x "$dir/prefix/bin/python3" ]; then
		log "$kind: cached in $dir"
		echo "$dir/prefix/bin"
		return
	fi
	# Leftovers of interrupted builds (the lock says none is running).
	rm -rf "$CACHE/builds/$kind-$VERSION-"*.tmp.*
	tmp=$dir.tmp.$$
	mkdir -p "$tmp"
	log "$kind: extracting into $tmp"
	tar -C "$tmp" -xf "$CACHE/$TARBALL"
	mv "$tmp/Python-$VERSION" "$tmp/src"
	[ "$kind" = patched ] && add_eternal "$tmp/src"
	log "$kind: configure $CONFIGURE_FLAGS"
	# The prefix is the final directory, so the build is relocated by a rename.
	(cd "$tmp/src" && nice -n 10 ./configure -q --prefix="$dir/prefix" $CONFIGURE_FLAGS \
		LDFLAGS="-Wl,-rpath,$dir/prefix/lib" >"$tmp/configure.log" 2>&1) ||
		{ tail -30 "$tmp/configure.log" >&2; die "$kind: configure failed ($tmp/configure.log)"; }
	log "$kind: make -j$JOBS (log $tmp/make.log)"
	(cd "$tmp/src" && nice -n 10 make -j"$JOBS" >"$tmp/make.log" 2>&1) ||
		{ grep -E 'error|Error' "$tmp/make.log" | head -30 >&2; die "$kind: make failed ($tmp/make.log)"; }
	log "$kind: make install"
	(cd "$tmp/src" && nice -n 10 make install DESTDIR="$tmp/destdir" >"$tmp/install.log" 2>&1) ||
		{ tail -30 "$tmp/install.log" >&2; die "$kind: make install failed ($tmp/install.log)"; }
	mv "$tmp/destdir$dir/prefix" "$tmp/prefix"
	rm -rf "$tmp/destdir"
	# The build tree is 450 MB; KEEP_TREE=1 keeps it for incremental work.
	[ "${KEEP_TREE:-0}" = 1 ] || rm -rf "$tmp/src"
	rm -rf "$dir" && mv "$tmp" "$dir"
	# Keep this build and the one before it of the same kind, drop older ones.
	ls -dt "$CACHE/builds/$kind-$VERSION-"* | grep -v '\.tmp\.' | tail -n +3 |
		while read -r old; do log "$kind: removing old build $old"; rm -rf "$old"; done
	echo "$dir/prefix/bin"
}

fetch_source
verify_source
exec 9>"$CACHE/build.lock"
flock 9
what=${1:-both}
case $what in
stock) build_one stock ;;
patched) build_one patched ;;
both)
	stock_dir=$(build_one stock)
	patched_dir=$(build_one patched)
	echo "$stock_dir"
	echo "$patched_dir"
	;;
*) die "usage: build.sh [stock|patched|both]" ;;
esac
