"""Pretrained weights: other frameworks' files read as they are, and converted to ours.

- `caffe_proto`, `weight_files`: Caffe's .caffemodel, caffe-tensorflow's .npy, torchvision's
  .pth, read without their frameworks where possible.
- `conversion`: those weights into this package's model (imports `models`, never the reverse).
- `applications`: `keras_alexnet.AlexNet`, the builder with `weights=` a saved or a public
  weight file, converted on the fly.
- `pretrained`: `preprocess_input`, the input normalisation each set of weights needs.
"""
