#!/bin/bash
# Prepare what benchmarks/gpu_check.sh carries to a GPU machine that has Python 3.12, a CUDA torch, transformers and
# safetensors but no network: the wheels condense needs beyond those, and MiniLM's weights as a bf16 copy (the
# fp32 file is 87 MiB; a call carries at most 64 MiB). Run once here, in the repository root:
#
#     bash benchmarks/gpu_check_prepare.sh          # writes .gpu/ (ignored by git), about 47 MiB
#
# then carry .gpu with the working tree: run `bash benchmarks/gpu_check.sh` there with carry [".gpu"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/wheels
# Pure-Python wheels for CPython 3.12; the versions are the ones this project is tested with.
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
for package in hydra-core omegaconf datasets dill multiprocess hydra-joblib-launcher; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
        -d .gpu/wheels "$package==$(version "$package")"
done
# antlr4 4.9.3 (omegaconf's parser) is published as source only: build its pure-Python wheel here.
python3 -m pip download -q --no-deps --no-binary=:all: -d /tmp/condense-antlr "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
python3 -m pip wheel -q --no-deps -w .gpu/wheels /tmp/condense-antlr/antlr4*
# MiniLM: its tokenizer and config as they are, its weights in bf16 (restored to fp32 there).
"$PY" - <<'PYTHON'
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from condense.models.encoders import resolve_model_path

source, target = Path(resolve_model_path("minilm")), Path(".gpu/minilm")
target.mkdir(parents=True)
for path in source.iterdir():
    if path.is_file() and path.name != "model.safetensors":
        shutil.copy(path, target / path.name)
weights = load_file(source / "model.safetensors")
save_file({name: tensor.to(torch.bfloat16) for name, tensor in weights.items()}, target / "model.bf16.safetensors")
PYTHON
du -sh .gpu
