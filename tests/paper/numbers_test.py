"""paper: the stated numbers agree with the paper's own and with their own arithmetic.

Parameter counts and output shapes are recomputed here from each spec's kernel, depth,
stride and padding, so a spec whose fields disagree with each other fails; the literals
below are the paper's own numbers, written out again here (each with the section, figure
or table that gives it), so a spec that drifts from the paper fails too.
"""

import math

from keras_alexnet.paper import numbers as paper

# Per weight layer, as the paper gives it: filters, kernel side and depth, stride and towers
# from section 3.5 and figure 2; the padding that keeps figure 2's map sizes (13x13 from
# conv3 to conv5, 27x27 for conv2); the bias init from section 5; the neurons section 3.5
# states ("253,440-186,624-64,896-64,896-43,264-4096-4096-1000"); the parameters with 1000
# classes, kernel arithmetic that sums to section 4's "60 million". Columns: (name, filters,
# kernel side, kernel depth, stride, padding, towers, bias init, stated neurons, parameters).
# fc layers have no kernel side, stride or padding; their depth is the flattened input.
REFERENCE = (
    ("conv1", 96, 11, 3, 4, 0, 1, 0.0, 253_440, 34_944),
    ("conv2", 256, 5, 48, 1, 2, 2, 1.0, 186_624, 307_456),
    ("conv3", 384, 3, 256, 1, 1, 1, 0.0, 64_896, 885_120),
    ("conv4", 384, 3, 192, 1, 1, 2, 1.0, 64_896, 663_936),
    ("conv5", 256, 3, 192, 1, 1, 2, 1.0, 43_264, 442_624),
    ("fc6", 4096, 0, 9216, 1, 0, 1, 1.0, 4096, 37_752_832),
    ("fc7", 4096, 0, 4096, 1, 0, 1, 1.0, 4096, 16_781_312),
    ("fc8", 1000, 0, 4096, 1, 0, 1, 0.0, 1000, 4_097_000),
)


def conv_output_size(size, kernel, stride, padding):
    """The output side of a convolution or pooling; refuses a kernel that does not fit."""
    span = size + 2 * padding - kernel
    assert span % stride == 0, f"{kernel}/{stride} does not tile {size} + 2*{padding}"
    return span // stride + 1


def test_layers_match_the_papers_numbers():
    got = tuple(
        (
            s.name,
            s.filters,
            s.kernel_size,
            s.kernel_depth,
            s.strides,
            s.padding,
            s.groups,
            s.bias_init,
            s.stated_neurons,
            s.params,
        )
        for s in paper.LAYERS
    )
    assert got == REFERENCE
    assert paper.LAYERS_BY_NAME == {s.name: s for s in paper.LAYERS}
    assert paper.NUM_CLASSES == paper.LAYERS[-1].filters == 1000


def test_parameter_counts_are_kernel_arithmetic_and_sum_to_the_total():
    for spec in paper.LAYERS:
        if spec.kind == "conv":
            weights = spec.kernel_size * spec.kernel_size * spec.kernel_depth * spec.filters
        else:
            weights = spec.kernel_depth * spec.filters
        assert spec.params == weights + spec.filters, spec.name
    assert sum(spec.params for spec in paper.LAYERS) == paper.TOTAL_PARAMS == 60_965_224


def test_each_kernel_sees_the_maps_of_its_tower():
    # A kernel's depth is the previous layer's maps divided among the towers; fc6 sees pool5
    # flattened.
    channels = paper.INPUT_CHANNELS
    for spec in paper.LAYERS:
        if spec.kind == "conv":
            assert spec.kernel_depth * spec.groups == channels, spec.name
            assert spec.filters % spec.groups == 0, spec.name
        elif spec.name == "fc6":
            assert spec.kernel_depth == math.prod(paper.POOL5_SHAPE) == 6 * 6 * 256
        else:
            assert spec.kernel_depth == channels, spec.name
        channels = spec.filters


def test_output_shapes_follow_from_a_227_input():
    assert paper.INPUT_SIZE == 227
    assert (paper.POOL_SIZE, paper.POOL_STRIDE) == (3, 2)
    size = 227
    for spec in paper.LAYERS:
        if spec.kind == "conv":
            size = conv_output_size(size, spec.kernel_size, spec.strides, spec.padding)
            assert spec.output_shape == (size, size, spec.filters), spec.name
            if any(step.startswith("pool") for step in spec.followed_by):
                size = conv_output_size(size, 3, 2, 0)  # pools are unpadded
        else:
            assert spec.output_shape == (spec.filters,), spec.name
        if spec.name == "conv5":
            assert paper.POOL5_SHAPE == (size, size, spec.filters) == (6, 6, 256)
    shapes = [spec.output_shape for spec in paper.LAYERS[:5]]
    assert shapes == [(55, 55, 96), (27, 27, 256), (13, 13, 384), (13, 13, 384), (13, 13, 256)]


def test_the_stated_224_input_does_not_fit_conv1():
    # (224 - 11) / 4 + 1 = 54.25: the paper's input size and its 55x55 maps disagree.
    assert paper.INPUT_SIZE_STATED == 224
    conv1 = paper.LAYERS_BY_NAME["conv1"]
    assert (224 - conv1.kernel_size + 2 * conv1.padding) / conv1.strides + 1 == 54.25


def test_stated_neurons_are_the_output_sizes_except_conv1():
    for spec in paper.LAYERS[1:]:
        assert spec.stated_neurons == math.prod(spec.output_shape), spec.name
    conv1 = paper.LAYERS_BY_NAME["conv1"]
    assert conv1.stated_neurons == 253_440
    assert math.prod(conv1.output_shape) == 55 * 55 * 96 == 290_400
    assert "253,440" in dict(paper.DISCREPANCIES)["conv1 neurons"]


def test_lrn_pooling_dropout_and_learning_as_stated():
    # LRN: section 3.3; pooling: section 3.4; dropout: section 4.2; learning: section 5;
    # results: tables 1 (ILSVRC-2010) and 2 (ILSVRC-2012).
    assert (paper.LRN_K, paper.LRN_N, paper.LRN_ALPHA, paper.LRN_BETA) == (2, 5, 1e-4, 0.75)
    assert paper.LRN_LAYERS == ("lrn1", "lrn2")
    assert paper.POOL_LAYERS == ("pool1", "pool2", "pool5")
    assert paper.DROPOUT_RATE == 0.5 and paper.DROPOUT_LAYERS == ("dropout6", "dropout7")
    followed_by = {spec.name: spec.followed_by for spec in paper.LAYERS}
    assert followed_by["conv1"] == ("relu", "lrn1", "pool1")
    assert followed_by["conv2"] == ("relu", "lrn2", "pool2")
    assert followed_by["conv5"] == ("relu", "pool5")
    learning = (
        paper.BATCH_SIZE,
        paper.MOMENTUM,
        paper.WEIGHT_DECAY,
        paper.LEARNING_RATE,
        paper.INIT_WEIGHT_STDDEV,
    )
    assert learning == (128, 0.9, 0.0005, 0.01, 0.01)
    assert paper.RESULTS == {
        "ILSVRC-2010 test, 1 CNN": (37.5, 17.0),
        "ILSVRC-2012 val, 1 CNN": (40.7, 18.2),
        "ILSVRC-2012 val, 5 CNNs": (38.1, 16.4),
    }
