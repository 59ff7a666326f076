#!/bin/sh
# Every figure committed under bench/results/: the exact commands, in the order they were run.
# Usage: sh bench/run_all.sh [step...]  (steps: stdlib django django-long django-long-ef django313 django313-long pool
#   scaling-stdlib scaling-django cowmap)
set -eu
cd "$(dirname "$0")/.."
PY312=${PY312:-$(pyenv root 2>/dev/null || echo ~/.pyenv)/versions/3.12.1/bin/python3.12}
PY313=${PY313:-$(pyenv root 2>/dev/null || echo ~/.pyenv)/versions/3.13.0/bin/python3.13}
ALL=stock,gc-freeze,immortal,eternal,eternal+freeze
FM="nice -n 10 python3 bench/forkmem.py"
steps=${*:-stdlib django cowmap django-long django-long-ef pool django313 django313-long scaling-stdlib scaling-django}
for s in $steps; do
  case $s in
  stdlib)   $FM --python "$PY312" --workload stdlib-server --modes $ALL --workers 4 --requests 2000 --repeats 3 ;;
  django)   $FM --python "$PY312" --workload django --modes $ALL --workers 4 --requests 2000 --checkpoints 500 --repeats 3 ;;
  django-long) $FM --python "$PY312" --workload django --modes stock,gc-freeze,immortal,eternal --workers 4 \
              --requests 4000 --checkpoints 2000 --repeats 2 --tag long ;;
  django313) $FM --python "$PY313" --workload django --modes $ALL --workers 4 --requests 2000 --checkpoints 500 --repeats 3 ;;
  django313-long) $FM --python "$PY313" --workload django --modes stock,gc-freeze --workers 4 --requests 4000 \
              --checkpoints 2000 --repeats 2 --tag long ;;
  pool)     $FM --python "$PY312" --workload pool --modes $ALL,eternal-data --workers 4 --requests 256 --checkpoints 64 \
              --pool-records 400000 --repeats 2 ;;
  scaling-stdlib) $FM --python "$PY312" --workload stdlib-server --modes stock,gc-freeze,immortal,eternal \
              --scaling 1,2,4,8,16 --requests-per-worker 500 --repeats 1 ;;
  scaling-django) $FM --python "$PY312" --workload django --modes stock,gc-freeze,eternal --scaling 1,2,4,8,16 \
              --requests-per-worker 250 --repeats 1 ;;
  django-long-ef) $FM --python "$PY312" --workload django --modes eternal+freeze --workers 4 \
              --requests 4000 --checkpoints 2000 --repeats 2 --tag long-eternal-freeze ;;
  cowmap)   $FM --python "$PY312" --workload django --modes stock,gc-freeze,immortal,eternal --workers 4 --requests 2000 \
              --repeats 1 --cowmap --tag cowmap ;;
  *) echo "unknown step $s" >&2; exit 2 ;;
  esac
done
