"""The paper's AlexNet in PyTorch: the peer the speed benchmark measures Keras against.

`paper_alexnet(num_classes)` builds the network of `AlexNet(variant="paper")` (the paper,
sections 3.1-3.5) as a PyTorch user would write it: 227x227x3 images, channels first;
conv1 96 11x11 stride 4, conv2 256 5x5, conv3 384, conv4 384 and conv5 256 3x3, with conv2,
conv4 and conv5 in two groups (the two GPUs); a ReLU after each convolution and each of fc6
and fc7; local response normalisation after the ReLUs of conv1 and conv2; overlapping 3x3
max pools of stride 2 after the LRNs and after conv5; fc6 and fc7 of 4096 units, each
followed by dropout 0.5; fc8 of one unit per class. It returns the logits: PyTorch's
cross-entropy takes them (the Keras model ends in a softmax). Initialisation as in the
paper, section 5: weights N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6 and fc7.

The modules are named as the Keras layers (conv1, lrn1, pool1, ..., fc8), so that the two
networks compare layer by layer. The paper's constants are written here again rather than
read from `keras_alexnet.paper.numbers`: the benchmark loads this file on its own in a
process without TensorFlow, which importing the package would load. The tests check that
the two networks have the same parameters and the same output shape at every layer.

PyTorch is an optional dependency: only the benchmark's PyTorch process and the tests
import this module.
"""

import collections

import torch
from torch import nn

# The paper's convolutions: (name, in channels, filters, kernel, stride, padding, groups,
# followed by LRN and max-pooling, initial bias).
CONVS = (
    ("conv1", 3, 96, 11, 4, 0, 1, True, 0.0),
    ("conv2", 96, 256, 5, 1, 2, 2, True, 1.0),
    ("conv3", 256, 384, 3, 1, 1, 1, False, 0.0),
    ("conv4", 384, 384, 3, 1, 1, 2, False, 1.0),
    ("conv5", 384, 256, 3, 1, 1, 2, False, 1.0),
)
# (name, units or None for one per class, followed by ReLU and dropout, initial bias).
DENSES = (("fc6", 4096, True, 1.0), ("fc7", 4096, True, 1.0), ("fc8", None, False, 0.0))
INPUT_SIZE = 227
LRN_N, LRN_K, LRN_ALPHA, LRN_BETA = 5, 2.0, 1e-4, 0.75
POOL_SIZE, POOL_STRIDE = 3, 2
DROPOUT = 0.5
INIT_STDDEV = 0.01


def paper_alexnet(num_classes=1000):
    """The paper's AlexNet as a `torch.nn.Sequential` of named modules.

    Args:
        num_classes: units of fc8.

    Returns:
        The network, from float32 images [batch, 3, 227, 227] to logits
        [batch, num_classes], initialised as in the paper.

    Raises:
        ValueError: num_classes is not a positive integer.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive integer. Received: num_classes={num_classes!r}"
        )
    modules = []
    for name, channels, filters, kernel, stride, padding, groups, lrn, bias in CONVS:
        index = name[len("conv") :]
        conv = nn.Conv2d(channels, filters, kernel, stride, padding, groups=groups)
        modules += [(name, _initialised(conv, bias)), (f"relu{index}", nn.ReLU())]
        if lrn:
            # PyTorch divides alpha by the window size; the paper's alpha is not divided.
            modules.append(
                (f"lrn{index}", nn.LocalResponseNorm(LRN_N, LRN_ALPHA * LRN_N, LRN_BETA, LRN_K))
            )
        if lrn or name == "conv5":
            modules.append((f"pool{index}", nn.MaxPool2d(POOL_SIZE, POOL_STRIDE)))
    modules.append(("flatten", nn.Flatten()))
    features = CONVS[-1][2] * pool5_size() ** 2
    for name, units, hidden, bias in DENSES:
        index = name[len("fc") :]
        units = units or num_classes
        modules.append((name, _initialised(nn.Linear(features, units), bias)))
        if hidden:
            modules += [(f"relu{index}", nn.ReLU()), (f"dropout{index}", nn.Dropout(DROPOUT))]
        features = units
    return nn.Sequential(collections.OrderedDict(modules))


def pool5_size(input_size=INPUT_SIZE):
    """The side of pool5's output: 6 for the paper's 227x227 input."""
    size = input_size
    for name, _, _, kernel, stride, padding, _, lrn, _ in CONVS:
        size = (size + 2 * padding - kernel) // stride + 1
        if lrn or name == "conv5":
            size = (size - POOL_SIZE) // POOL_STRIDE + 1
    return size


def _initialised(layer, bias):
    with torch.no_grad():
        layer.weight.normal_(0.0, INIT_STDDEV)
        layer.bias.fill_(bias)
    return layer
