#!/bin/bash
# The GPU check: one script, under 10 minutes on one H100 or H200, from a copy of the working tree plus .gpu/
# (benchmarks/gpu_check_prepare.sh makes it here). On the machine, in the repository root:
#
#     bash benchmarks/gpu_check.sh            # writes $OUT/gpu_check.json and $OUT/gpu_check.log
#
# It installs the carried wheels, restores MiniLM, runs the CUDA tests, then benchmarks/gpu_check.py: outer-step
# times per mode and T, BERT-base-shaped peak memory at 512 tokens with and without micro-batches, CPU-vs-GPU
# agreement of the hypergradients, bf16 and TF32 errors, and resume identity on CUDA. Copy the JSON to
# benchmarks/results/gpu_check.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/condense-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD CONDENSE_CACHE=/tmp/condense-cache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl || exit 1
# The package maps condense.configs to configs/ when installed; from the tree it needs the link.
[ -e condense/configs ] || ln -s ../configs condense/configs
python3 benchmarks/gpu_check.py --restore-minilm .gpu/minilm --site /tmp/site --out "$OUT/gpu_check.json" \
    --tests-log "$OUT/cuda_tests.log" "$@" 2>&1 | tee "$OUT/gpu_check.log"
