#!/usr/bin/env bash
# Speed of this package's AlexNet against the same network built with
# keras.layers.Conv2D(groups=2), the GEMM peak and, if PyTorch is installed, the paper's
# network in PyTorch (keras_alexnet/benchmarks/torch_alexnet.py, in a process of its own),
# all measured in turn in ONE run: compare the ratios printed here, not absolute figures
# from different runs.
#   bash scripts/benchmark.sh [--batch_size=32 --steps=5 --per_layer ...]
set -euo pipefail
if python -c "import torch" 2>/dev/null; then
  exec python -m keras_alexnet.benchmark --torch_peer "$@"
fi
exec python -m keras_alexnet.benchmark "$@"
