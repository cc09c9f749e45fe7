"""What Krizhevsky, Sutskever and Hinton (NIPS 2012) state, in one place.

Section numbers are the paper's. The model builder, the conformance report
(`python -m keras_alexnet.verify`) and the tests all read these numbers; nothing else in
the package restates them.
"""

import dataclasses

CITATION = (
    "A. Krizhevsky, I. Sutskever, G. E. Hinton. ImageNet Classification with Deep "
    "Convolutional Neural Networks. NIPS 2012."
)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One weight layer as the paper describes it (section 3.5, figure 2).

    Attributes:
        name: the layer's name in the model (conv1 ... fc8).
        kind: "conv" or "dense".
        filters: output channels or units.
        kernel_size: square kernel side (convolutions only).
        kernel_depth: input maps each kernel sees, as the paper writes it (5x5x48 for conv2).
        strides: convolution stride.
        padding: spatial zero padding on each side ("same" padding for conv2-conv5).
        groups: towers that do not see each other's maps (1 = connected across towers).
        bias_init: the initial bias (section 5).
        stated_neurons: the neuron count the paper states for the layer's output.
        output_shape: the output shape that the kernel, stride and padding give for a
            227x227 input (the input that fits; see DISCREPANCIES).
        params: weights plus biases with 1000 classes.
        followed_by: what comes after the layer, in order.
    """

    name: str
    kind: str
    filters: int
    kernel_size: int = 0
    kernel_depth: int = 0
    strides: int = 1
    padding: int = 0
    groups: int = 1
    bias_init: float = 0.0
    stated_neurons: int = 0
    output_shape: tuple = ()
    params: int = 0
    followed_by: tuple = ()

    @property
    def kernel_as_written(self):
        if self.kind == "conv":
            return f"{self.kernel_size}x{self.kernel_size}x{self.kernel_depth}"
        return f"{self.kernel_depth}x{self.filters}"


INPUT_SIZE_STATED = 224  # "224x224x3", "150,528-dimensional" (section 3.5)
INPUT_SIZE = 227  # the size that gives the stated 55x55 conv1 maps with stride 4, no padding
INPUT_CHANNELS = 3

# fmt: off
LAYERS = (
    LayerSpec("conv1", "conv", filters=96, kernel_size=11, kernel_depth=3, strides=4,
              bias_init=0.0, stated_neurons=253_440, output_shape=(55, 55, 96), params=34_944,
              followed_by=("relu", "lrn1", "pool1")),
    LayerSpec("conv2", "conv", filters=256, kernel_size=5, kernel_depth=48, padding=2, groups=2,
              bias_init=1.0, stated_neurons=186_624, output_shape=(27, 27, 256), params=307_456,
              followed_by=("relu", "lrn2", "pool2")),
    LayerSpec("conv3", "conv", filters=384, kernel_size=3, kernel_depth=256, padding=1,
              bias_init=0.0, stated_neurons=64_896, output_shape=(13, 13, 384), params=885_120,
              followed_by=("relu",)),
    LayerSpec("conv4", "conv", filters=384, kernel_size=3, kernel_depth=192, padding=1, groups=2,
              bias_init=1.0, stated_neurons=64_896, output_shape=(13, 13, 384), params=663_936,
              followed_by=("relu",)),
    LayerSpec("conv5", "conv", filters=256, kernel_size=3, kernel_depth=192, padding=1, groups=2,
              bias_init=1.0, stated_neurons=43_264, output_shape=(13, 13, 256), params=442_624,
              followed_by=("relu", "pool5")),
    LayerSpec("fc6", "dense", filters=4096, kernel_depth=9216, bias_init=1.0,
              stated_neurons=4096, output_shape=(4096,), params=37_752_832,
              followed_by=("relu", "dropout6")),
    LayerSpec("fc7", "dense", filters=4096, kernel_depth=4096, bias_init=1.0,
              stated_neurons=4096, output_shape=(4096,), params=16_781_312,
              followed_by=("relu", "dropout7")),
    LayerSpec("fc8", "dense", filters=1000, kernel_depth=4096, bias_init=0.0,
              stated_neurons=1000, output_shape=(1000,), params=4_097_000,
              followed_by=("softmax",)),
)
# fmt: on
LAYERS_BY_NAME = {spec.name: spec for spec in LAYERS}
# Every named layer in the network's order: each weight layer, then the LRN, pool and
# dropout layers after it (the activations are parts of their layers).
LAYER_ORDER = tuple(
    name
    for spec in LAYERS
    for name in (spec.name, *spec.followed_by)
    if name not in ("relu", "softmax")
)
NUM_CLASSES = 1000
TOTAL_PARAMS = 60_965_224  # the sum of LAYERS' params; the paper says "60 million"
STATED_PARAMS = "60 million"
STATED_NEURONS = "about 650,000"

# Local response normalisation (section 3.3), after the ReLU of conv1 and conv2, as
# printed: b = a / (k + alpha * sum of n squares) ^ beta, alpha NOT divided by n.
LRN_K = 2.0
LRN_N = 5
LRN_ALPHA = 1e-4
LRN_BETA = 0.75
LRN_LAYERS = ("lrn1", "lrn2")

# Overlapping max-pooling (section 3.4): z = 3, s = 2, after lrn1, lrn2 and conv5.
POOL_SIZE = 3
POOL_STRIDE = 2
POOL_LAYERS = ("pool1", "pool2", "pool5")
POOL5_SHAPE = (6, 6, 256)

# Dropout (section 4.2) on the outputs of fc6 and fc7.
DROPOUT_RATE = 0.5
DROPOUT_LAYERS = ("dropout6", "dropout7")

# Learning (section 5).
INIT_WEIGHT_STDDEV = 0.01  # weights ~ N(0, 0.01) in every layer
BATCH_SIZE = 128
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4  # coupled into the momentum update: an L2 penalty of WEIGHT_DECAY / 2
LEARNING_RATE = 0.01
LR_DECAY_FACTOR = 0.1  # "divided by 10 when the validation error stopped improving"
LR_REDUCTIONS = 3
EPOCHS = 90

# Data (sections 2 and 4.1).
RESIZE_SIZE = 256
PCA_STDDEV = 0.1
# Widely used ImageNet values, for RGB scaled to [0, 1]; eigenvectors are the columns.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
TEST_CROPS = 10

# Results (section 6): (top-1 error, top-5 error) in percent.
RESULTS = {
    "ILSVRC-2010 test, 1 CNN": (37.5, 17.0),
    "ILSVRC-2012 val, 1 CNN": (40.7, 18.2),
    "ILSVRC-2012 val, 5 CNNs": (38.1, 16.4),
}

# Where the paper is ambiguous or contradicts itself, and where well-known
# implementations part from it. The conformance report prints these.
DISCREPANCIES = (
    (
        "input size",
        "The paper states a 224x224x3 input, but an 11x11 kernel with stride 4 and no padding "
        "gives (224-11)/4+1 = 54.25: only 227x227 (or 224 with 2 pixels of padding) yields the "
        "55x55 conv1 maps the figure shows. This package uses 227.",
    ),
    (
        "conv1 neurons",
        "The paper counts 253,440 neurons in conv1; 55x55x96 is 290,400. No kernel, stride and "
        "input size consistent with the other counts gives 253,440; every later count "
        "(186,624, 64,896, 64,896, 43,264) matches the model exactly.",
    ),
    (
        "LRN alpha",
        "The paper prints alpha = 1e-4 multiplying the plain sum over n = 5 maps. Caffe and "
        "PyTorch divide alpha by n, and Krizhevsky's own cuda-convnet divides its scale by the "
        "window size too, so the paper's 1e-4 may already have meant alpha/n. This package "
        "follows the printed formula (alpha = 1e-4 on the sum); the caffe variant uses "
        "alpha = 1e-4/5 on the sum and k = 1.",
    ),
    (
        "bias init",
        "The paper initialises the biases of conv2, conv4, conv5, fc6 and fc7 to 1. Caffe's "
        "bvlc_alexnet uses 0.1, its authors reporting that 1 gave a flat loss at first.",
    ),
    (
        "weight decay",
        "The paper's update v <- 0.9 v - 0.0005 lr w - lr dL/dw couples the decay into the "
        "momentum: an L2 penalty of 0.0005/2 on the weights, not a decoupled weight decay. "
        "The paper writes w for 'the weights'; whether biases were decayed is not stated. "
        "This package, like Caffe's bvlc_alexnet, decays kernels only.",
    ),
    (
        "torchvision layout",
        "torchvision's alexnet is the 'one weird trick' network (Krizhevsky 2014): "
        "64-192-384-256-256 channels, conv1 padding 2, no LRN, no groups, dropout before fc6 "
        "and fc7; 61,100,840 parameters. It is the one_weird_trick variant here, not the paper.",
    ),
)
