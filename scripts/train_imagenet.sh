#!/usr/bin/env bash
# The paper's full ImageNet recipe (sections 4-5) on one machine with 1, 2 or 8 GPUs.
#   bash scripts/train_imagenet.sh GPUS MANUAL_DIR DATA_DIR MODEL_DIR [extra flags]
# MANUAL_DIR holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar; the first run
# prepares them into DATA_DIR once (hours, about 150 GB). Rerunning the same command
# resumes from the last checkpoint in MODEL_DIR.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 GPUS MANUAL_DIR DATA_DIR MODEL_DIR [flags]" >&2
  exit 2
fi
gpus=$1 manual_dir=$2 data_dir=$3 model_dir=$4
shift 4
case "$gpus" in
  1) strategy=one_device ;;
  2|8) strategy=mirrored ;;
  *) echo "GPUS must be 1, 2 or 8 (received: $gpus)" >&2; exit 2 ;;
esac
# The paper: global batch 128, SGD momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10
# when the validation error stalls (at most 3 times), 90 epochs, dropout 0.5, its own init.
exec python -m keras_alexnet.train \
  --dataset=imagenet2012 --manual_dir="$manual_dir" --data_dir="$data_dir" \
  --model_dir="$model_dir" --strategy="$strategy" \
  --variant=paper --init=paper --input_scale=1 \
  --batch_size=128 --epochs=90 --learning_rate=0.01 --momentum=0.9 --weight_decay=5e-4 \
  --dropout=0.5 --lr_schedule=plateau --lr_patience=5 --lr_max_reductions=3 \
  --checkpoint_every=1000 "$@"
