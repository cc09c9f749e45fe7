#!/usr/bin/env bash
# Speed of this package's AlexNet against the same network built with
# keras.layers.Conv2D(groups=2), the GEMM peak and, if PyTorch is installed, the PyTorch
# build of the same network, all measured in turn in ONE run: compare the ratios printed
# here, not absolute figures from different runs.
#   bash scripts/benchmark.sh [--batch_size=32 --steps=5 --per_layer ...]
set -euo pipefail
peer="$(dirname "$0")/../../shared/bench/torch_peer.py"
if [ -f "$peer" ] && python -c "import torch" 2>/dev/null; then
  exec python -m keras_alexnet.benchmark --torch --torch_peer="$peer" "$@"
fi
exec python -m keras_alexnet.benchmark "$@"
