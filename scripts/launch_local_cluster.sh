#!/usr/bin/env bash
# Two MultiWorkerMirroredStrategy workers on this machine (free ports) training on the
# built-in shapes set: the multi-machine code path, tried on one CPU machine. The workers
# listen on every interface, unauthenticated (docs/security.md).
#   bash scripts/launch_local_cluster.sh [flags of keras_alexnet.train]
# Worker 0 is the chief and writes runs/local_cluster; rerunning the same command resumes
# from its last checkpoint. Later flags override these (e.g. --model_dir=..., --epochs=1).
# Each worker needs about 4 GB of memory.
set -euo pipefail
exec python -m keras_alexnet.launch --workers=2 --grace_period=10 -- \
  --dataset=shapes --model_dir=runs/local_cluster \
  --batch_size=32 --checkpoint_every=50 "$@"
