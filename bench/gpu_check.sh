#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): one command, one CUDA GPU, synthetic data, a few minutes. Prints a
# Markdown block for docs/benchmarks.md and writes it to $OUT/gpu_check.md (OUT unset: runs/gpu_check/).
#
#   bash bench/gpu_check.sh                       # CUDA: loss overhead, AMP throughput, peak memory
#   bash bench/gpu_check.sh --device cpu --tiny   # the same block at toy sizes on the CPU (tests/test_bench_gpu_check.py)
#   bash bench/gpu_check.sh --wheels .whl         # first install the wheels in .whl (no index; e.g. ultralytics on a
#                                                 # machine that has torch but not Ultralytics) into a temporary folder
#   bash bench/gpu_check.sh --out FILE.md         # write the block (and FILE.json) there
#
# Runs from a checkout without installing it: the repo root goes on PYTHONPATH. PYTHON picks the interpreter
# (default: python3, else python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
printf -v quoted ' %q' "$@"
export GPU_CHECK_COMMAND="bash bench/gpu_check.sh${*:+$quoted}"
PY=${PYTHON:-$(command -v python3 || command -v python || true)}
[[ -n "$PY" ]] || { echo "gpu_check: no python3 or python on PATH (set PYTHON=...)" >&2; exit 1; }

args=()
while (($#)); do
  if [[ "$1" == --wheels ]]; then
    [[ $# -ge 2 && -d "$2" ]] || { echo "gpu_check: --wheels needs a folder of .whl files" >&2; exit 1; }
    site=$(mktemp -d)/site
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$2"/*.whl ||
      { echo "gpu_check: could not install the wheels in $2 (pip install --no-index --target $site)" >&2; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    shift 2
  else
    args+=("$1")
    shift
  fi
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_check.py ${args[@]+"${args[@]}"}
