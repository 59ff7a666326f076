#!/bin/sh
# cpython-glue/install.sh - install the `eternal` package into each interpreter the
# build found (site-packages, as pip would), with the ETERNAL=1 start-up hook.
# usage: cpython-glue/install.sh <builddir> [--uninstall | --site DIR]
#   --site DIR  install into DIR instead of each interpreter's site-packages (tests)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: install.sh <builddir> [--uninstall | --site DIR]}
build=$(cd "$build" && pwd)
action=${2:-install}
site_override=""
if [ "$action" = "--site" ]; then
	site_override=${3:?--site needs a directory}
	mkdir -p "$site_override"
	action=install
fi
n=0
for ext in "$build"/cpython-glue/py3*/_eternal.cpython-3*-*.so; do
	[ -e "$ext" ] || continue
	ver=$(basename "$(dirname "$ext")")            # py312
	v="${ver#py}"; v="${v%??}.${v#?}"                # 3.12
	py=""
	for cand in "$(meson introspect --buildoptions "$build" 2>/dev/null | python3 -c "
import json,sys
for o in json.load(sys.stdin):
    if o['name']=='$ver': print(o['value'])" 2>/dev/null)" "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v"*/bin/python"$v"; do
		[ -n "$cand" ] && [ -x "$cand" ] && { py=$cand; break; }
	done
	[ -n "$py" ] || { echo "install.sh: no python$v for $ext" >&2; exit 1; }
	site=${site_override:-$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')}
	if [ "$action" = "--uninstall" ]; then
		rm -rf "$site/eternal" "$site/eternal.pth"
		echo "removed eternal from $site"
		continue
	fi
	[ -n "$site_override" ] && [ "$n" -gt 0 ] || { rm -rf "$site/eternal"; mkdir -p "$site/eternal"; }
	cp "$here"/eternal/*.py "$site/eternal/"
	cp "$ext" "$site/eternal/"
	# Lines of a .pth file that start with "import" are executed by site.py.
	printf '%s\n' 'import os; os.environ.get("ETERNAL") == "1" and __import__("eternal._autostart")' \
		> "$site/eternal.pth"
	"$py" -c 'import compileall, sys; compileall.compile_dir(sys.argv[1], quiet=1)' "$site/eternal" >/dev/null
	echo "installed eternal into $site ($("$py" -m eternal --version))"
	n=$((n + 1))
done
[ "$action" = "--uninstall" ] || [ "$n" -gt 0 ] || { echo "install.sh: nothing built in $build" >&2; exit 1; }
