"""The network: AlexNet's layers, its variants as spec tables, the builder, class names.

- `layers`: local response normalisation, the two-tower grouped convolution, and the
  dense and dropout layers the paper's variants need.
- `variants`: the paper's, Caffe's and torchvision's networks as tables of layer specs.
- `alexnet`: the builder, the network a variant describes (architecture only: weight files
  are `keras_alexnet.weights`).
- `labels`, `imagenet_classes`: class names that travel inside a model.
"""
