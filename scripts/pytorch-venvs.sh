#!/usr/bin/env bash
# Builds the two virtualenvs of the PyTorch upgrade experiment (experiments/pytorch_upgrade.toml):
# one per PyTorch release, each with nothing but `torch==VERSION` and what it pulls in from PyPI.
#
#   scripts/pytorch-venvs.sh                       # .venvs/torch-2.14.1 and .venvs/torch-2.15.0
#   scripts/pytorch-venvs.sh 2.13.0 2.15.0         # any two releases (edit the spec's commands too)
#   LOSSDIFF_VENVS=/scratch/venvs scripts/pytorch-venvs.sh
#
# Needs python3 (3.10+) with the venv module, and PyPI. It downloads the full Linux wheels:
# ~4.5 GB per release on disk, most of it NVIDIA CUDA libraries that a CPU run never calls. There
# is no way around them from PyPI: torch's __init__ loads libtorch_global_deps.so, which links
# libcudart, and when that fails it preloads cuBLAS, cuDNN, NCCL, ... from site-packages and raises
# if any is missing, so `pip install --no-deps torch` plus its pure-Python dependencies does not
# even import (checked with 2.15.0: "libcublasLt.so.*[0-9] not found in the system path"). The
# CPU-only wheels of download.pytorch.org would avoid this; set PIP_INDEX_URL (or PIP_EXTRA_INDEX_URL)
# to use them where that index is reachable. lossdiff records whatever gets installed: each run's
# fingerprint carries the probe's output (torch, Python, CUDA build), so a CPU wheel and a CUDA
# wheel of the same release are told apart.
#
# Idempotent: a venv whose torch already imports at the wanted version is left alone. Not part of
# `cargo test`; nothing in the test suite needs torch.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${LOSSDIFF_VENVS:-.venvs}
if [[ $# -gt 0 ]]; then versions=("$@"); else versions=(2.14.1 2.15.0); fi
python=${PYTHON:-python3}

mkdir -p "$dir"
for v in "${versions[@]}"; do
    venv="$dir/torch-$v"
    if [[ -x $venv/bin/python ]] &&
        [[ $("$venv/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null) == "$v"* ]]; then
        echo "$venv: torch $v already installed"
        continue
    fi
    echo "$venv: installing torch==$v"
    "$python" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$v"
    "$venv/bin/python" -c 'import torch, sys; print(f"{sys.argv[1]}: torch {torch.__version__} (CUDA build {torch.version.cuda}), python {sys.version.split()[0]}")' "$venv"
done
