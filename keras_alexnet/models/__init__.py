"""The network: AlexNet's layers, its variants as spec tables, the builder, class names.

- `layers`: local response normalisation and the two-tower grouped convolution.
- `head_layers`: fc6 ... fc8's Dense and Dropout, Keras' own with a TensorFlow twist.
- `variants`: the paper's, Caffe's and torchvision's networks as tables of layer specs.
- `alexnet`: the builder, the network a variant describes (architecture only: weight files
  are `keras_alexnet.weights`, which imports this package, never the reverse).
- `features`: `feature_extractor`, the outputs of named layers (fc7, conv5, ...).
- `inspection`: what a built model is (a layer by name, its variant, its cost).
- `layer_weights`: weights set layer by layer, by name, every shape checked first.
- `labels`, `imagenet_classes`: class names that travel inside a model.
"""
