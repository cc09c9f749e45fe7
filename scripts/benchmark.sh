#!/usr/bin/env bash
# Speed of this package's AlexNet against the same network built with
# keras.layers.Conv2D(groups=2) and, if PyTorch is installed, against PyTorch, in ONE run:
# compare the ratios printed here, not absolute figures from different runs.
#   bash scripts/benchmark.sh [--batch_size=32 --steps=5 ...]
set -euo pipefail
python -m keras_alexnet.benchmark "$@"
peer="$(dirname "$0")/../../shared/bench/torch_peer.py"
if [ -f "$peer" ] && python -c "import torch" 2>/dev/null; then
  python "$peer" --batch 32 --steps 5
fi
