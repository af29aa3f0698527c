#!/usr/bin/env bash
# Fuzz every parser of input we do not control for SECONDS each (default 10):
#   bash tests/fuzz/run.sh SECONDS [TARGET ...]
# Exits non-zero on any crash, hang (per-input timeout, KPROBES_FUZZ_TIMEOUT
# seconds, default 2) or exception outside the KprobesError tree.
set -uo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-}
[ -n "$py" ] || { [ -x .venv/bin/python ] && py=.venv/bin/python || py=python3; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" tests/fuzz/fuzz.py "${1:-10}" "${@:2}"
