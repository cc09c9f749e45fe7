#!/usr/bin/env bash
# The README's table of exported formats, in ONE run: trains the built-in demo into
# MODEL_DIR (or resumes it; a finished run trains no step), exports a new version in every
# format and quantization, and measures them on the run's validation images. The CPU may
# be shared: compare the ratios of one run, not absolute figures from different runs.
#   pip install -e ".[onnx,litert]"
#   bash scripts/benchmark_formats.sh [MODEL_DIR=runs/alexnet] [OUTPUT_DIR=saved_models]
set -euo pipefail
model_dir="${1:-runs/alexnet}"
output_dir="${2:-saved_models}"
python -m keras_alexnet.train --model_dir="$model_dir"
version="$(python -m keras_alexnet.export --model_dir="$model_dir" --output_dir="$output_dir" \
  --name=alexnet_formats --format=saved_model,litert,onnx \
  --quantize=none,float16,dynamic,int8 | sed -n 's/^Exported //p')"
python -m keras_alexnet.format_benchmark --model_dir="$model_dir" --version="$version" \
  --output="$version/format_benchmark.json"
