"""Pretrained weights: other frameworks' files read as they are, and converted to ours.

- `caffe_proto`, `weight_files`: Caffe's .caffemodel, caffe-tensorflow's .npy, torchvision's
  .pth, read without their frameworks where possible.
- `conversion`: those weights into this package's model (imports `models`, never the reverse).
- `catalog`: the named weights (bvlc_alexnet alias imagenet, torchvision_alexnet alias
  IMAGENET1K_V1) and their publishers' facts; `downloads` fetches one into the Keras cache,
  verified; `cache` converts it once and turns a name into its cached .keras file.
- `applications`: `keras_alexnet.AlexNet`, the builder with `weights=` a name, a saved or
  a public weight file, converted on the fly.
- `pretrained`: `preprocess_input`, the input normalisation each set of weights needs.
"""
