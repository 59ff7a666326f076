#!/usr/bin/env bash
# demo.sh - the main job: fork memory with and without libeternal, first on
# plain C objects, then on a real prefork Python server (bench/forkmem.py).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== 1. C objects: ordinary heap vs the sealed tier (build/bench/fork_demo)"
build/bench/fork_demo 64
echo
if [ -f bench/forkmem.py ]; then
	py="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/3.12.1/bin/python3.12"
	[ -x "$py" ] || py=python3
	echo "== 2. A prefork stdlib HTTP server: stock vs gc.freeze vs eternal ($py bench/forkmem.py --demo)"
	exec "$py" bench/forkmem.py --demo "$@"
fi
