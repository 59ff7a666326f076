#!/usr/bin/env bash
# run.sh - one entry point for a fresh machine: installs what is missing,
# builds everything, then runs the fork-memory demo or every test suite.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
	cat <<USAGE
usage: ./run.sh demo    build, then show fork memory: stock vs gc.freeze vs eternal
       ./run.sh test    build, then run every test suite (last line: N passed, N failed, N skipped)
       ./run.sh build   install dependencies and build only
USAGE
}

# Debian packages the build and the tests need (the kernel-module test
# installs its own qemu and kernel packages).
PACKAGES=(meson ninja-build pkg-config gcc liburing-dev libnuma-dev libdw-dev libelf-dev
	  python3 python3-pytest python3-django gunicorn python3-jinja2 python3-sympy)

deps() {
	local missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	if ((${#missing[@]})); then
		echo "run.sh: installing ${missing[*]}" >&2
		if [ "$(id -u)" != 0 ]; then
			echo "run.sh: need root to apt-get install ${missing[*]}; run as root or install them" >&2
			exit 1
		fi
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

build() {
	deps
	[ -f build/build.ninja ] || meson setup build
	ninja -C build
	if [ -x cpython-glue/install.sh ]; then
		cpython-glue/install.sh build
	fi
}

case "${1:-}" in
demo)
	build
	shift
	exec bench/demo.sh "$@"
	;;
test)
	build
	shift
	exec /usr/bin/python3 tests/run_all.py "$@"
	;;
build)
	build
	;;
*)
	usage
	exit 2
	;;
esac
