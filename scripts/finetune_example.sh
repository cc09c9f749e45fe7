#!/usr/bin/env bash
# Fine-tuning end to end on the built-in set, on a CPU in about 15 minutes:
#   1. a base model (a stand-in for converted ImageNet weights: see the README to convert
#      bvlc_alexnet.caffemodel with `python -m keras_alexnet.convert`),
#   2. a new image folder with other classes,
#   3. fine-tuning with the convolutions frozen and a new fc8, then export.
set -euo pipefail
python -m keras_alexnet.train --model_dir=runs/base --epochs=2
python -m keras_alexnet.export --model_dir=runs/base --name=base
base=$(ls -d saved_models/base/* | sort -t/ -k3 -n | tail -1)
python -c "from keras_alexnet.data import shapes; shapes.ensure_shapes_dataset('data/shapes6', num_classes=6, seed=1)"
python -m keras_alexnet.train --model_dir=runs/finetuned --init_from="$base/model.keras" \
  --dataset=folder --data_dir=data/shapes6 --freeze=conv1,conv2,conv3,conv4,conv5 \
  --epochs=2 --batch_size=32 --learning_rate=0.01
python -m keras_alexnet.evaluate --model_dir=runs/finetuned
python -m keras_alexnet.export --model_dir=runs/finetuned --name=finetuned
