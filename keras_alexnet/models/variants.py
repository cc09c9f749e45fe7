"""The network variants: the paper's, Caffe's, torchvision's, as spec tables.

  - "paper": the paper. Init: weights N(0, 0.01); biases 1 in conv2, conv4, conv5,
    fc6 and fc7, 0 elsewhere. LRN k=2, n=5, alpha=1e-4 on the plain sum, beta=0.75.
    60,965,224 parameters with 1000 classes.
  - "caffe": Caffe's bvlc_alexnet, the layout of the BVLC pretrained weights. LRN
    k=1 with alpha=1e-4 divided by n=5; biases 0.1 where the paper has 1; fc6 and fc7
    weights N(0, 0.005). Same parameters as "paper".
  - "one_weird_trick": torchvision's alexnet (Krizhevsky 2014): 64-192-384-256-256
    channels, conv1 padded by 2, no LRN, no groups, dropout before fc6 and fc7,
    PyTorch's default init. 61,100,840 parameters. torchvision's adaptive 6x6 average
    pool is the identity at this input size and is left out.

`AlexNet(variant=name)` builds the network that `VARIANTS[name]` describes. Another network
of the same shape (five convolution blocks, fc6, fc7, fc8) is one more `Variant` put in
`VARIANTS`: the builder, `model.variant_of`, `model.pool5_size`, the conformance report and
the converter look variants up there by name, when they are called.
"""

import dataclasses

from keras_alexnet.paper import numbers as paper

_PAPER_DENSE_UNITS = tuple(paper.LAYERS_BY_NAME[n].filters for n in ("fc6", "fc7"))


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One convolution block: conv (+ ReLU), then optional LRN and max-pooling."""

    name: str
    filters: int
    kernel_size: int
    strides: int = 1
    padding: int = 0
    groups: int = 1
    bias_init: float = 0.0
    stddev: float = paper.INIT_WEIGHT_STDDEV
    lrn: bool = False
    pool: bool = False


@dataclasses.dataclass(frozen=True)
class Variant:
    """A complete description of one network: its layers, constants and sources.

    Attributes:
        name: the variant's name, as passed to `AlexNet(variant=...)`.
        source: where this layout comes from.
        convs: the five convolution blocks, in order.
        lrn: LocalResponseNormalization arguments, or None for no LRN.
        dense_units: the units of fc6 and fc7 (fc8 has one per class).
        dense_bias_init: initial biases of fc6, fc7 and fc8.
        dense_stddev: weight init std of fc6, fc7 and fc8.
        dropout_before_dense: True for torchvision's order (dropout, fc, ReLU) instead of
            the paper's (fc, ReLU, dropout).
        torch_init: PyTorch's default init (uniform within 1/sqrt(fan_in) for weights
            and biases) instead of the Gaussian weights and constant biases above.
        departures: the topics of the conformance report ("layout", "lrn", "init",
            "dropout") in which this variant knowingly parts from the paper; the report
            flags any other difference as a failure.
    """

    name: str
    source: str
    convs: tuple
    lrn: dict = None
    dense_units: tuple = _PAPER_DENSE_UNITS
    dense_bias_init: tuple = (1.0, 1.0, 0.0)
    dense_stddev: tuple = (paper.INIT_WEIGHT_STDDEV,) * 3
    dropout_before_dense: bool = False
    torch_init: bool = False
    departures: tuple = ()


def get(variant):
    """The `Variant` registered under the name `variant` in `VARIANTS`.

    Raises:
        ValueError: naming the registered variants, for any other name.
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"variant must be one of {sorted(VARIANTS)}. Received: variant={variant!r}"
        )
    return VARIANTS[variant]


def _paper_convs(**overrides):
    """The paper's five convolution blocks, with per-layer field overrides."""
    convs = []
    for spec in paper.LAYERS:
        if spec.kind != "conv":
            continue
        conv = ConvSpec(
            name=spec.name,
            filters=spec.filters,
            kernel_size=spec.kernel_size,
            strides=spec.strides,
            padding=spec.padding,
            groups=spec.groups,
            bias_init=spec.bias_init,
            lrn=any(step.startswith("lrn") for step in spec.followed_by),
            pool=any(step.startswith("pool") for step in spec.followed_by),
        )
        convs.append(dataclasses.replace(conv, **overrides.get(spec.name, {})))
    return tuple(convs)


VARIANTS = {
    "paper": Variant(
        name="paper",
        source=paper.CITATION + " Sections 3.1-3.5 and 5.",
        convs=_paper_convs(),
        lrn=dict(
            depth_radius=paper.LRN_N // 2,
            bias=paper.LRN_K,
            alpha=paper.LRN_ALPHA,
            beta=paper.LRN_BETA,
        ),
        dense_bias_init=tuple(paper.LAYERS_BY_NAME[n].bias_init for n in ("fc6", "fc7", "fc8")),
    ),
    "caffe": Variant(
        name="caffe",
        source="Caffe's models/bvlc_alexnet (deploy.prototxt and train_val.prototxt), the "
        "BVLC reference weights of the grouped, LRN network.",
        convs=_paper_convs(
            conv2={"bias_init": 0.1}, conv4={"bias_init": 0.1}, conv5={"bias_init": 0.1}
        ),
        # Caffe's LRN: k=1, alpha=1e-4 divided by local_size=5 on the plain sum.
        lrn=dict(depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75),
        dense_bias_init=(0.1, 0.1, 0.0),
        dense_stddev=(0.005, 0.005, 0.01),
        departures=("lrn", "init"),
    ),
    "one_weird_trick": Variant(
        name="one_weird_trick",
        source="torchvision.models.alexnet, after A. Krizhevsky, 'One weird trick for "
        "parallelizing convolutional neural networks', arXiv:1404.5997, 2014.",
        convs=(
            ConvSpec("conv1", 64, 11, strides=4, padding=2, pool=True),
            ConvSpec("conv2", 192, 5, padding=2, pool=True),
            ConvSpec("conv3", 384, 3, padding=1),
            ConvSpec("conv4", 256, 3, padding=1),
            ConvSpec("conv5", 256, 3, padding=1, pool=True),
        ),
        dropout_before_dense=True,
        torch_init=True,
        departures=("layout", "lrn", "init", "dropout"),
    ),
}
