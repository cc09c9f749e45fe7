"""`keras_alexnet.AlexNet`: the builder with weights, the keras.applications way.

`AlexNet(weights="imagenet")` takes a name of `catalog` (bvlc_alexnet, alias imagenet;
torchvision_alexnet, alias IMAGENET1K_V1), fetched, verified, converted and cached once
(`cache`). `AlexNet(weights=PATH)` takes a .keras file, or one of the public weight files that
`python -m keras_alexnet.convert` reads (bvlc_alexnet.caffemodel, the caffe-tensorflow
bvlc_alexnet.npy, torchvision's alexnet-owt-*.pth), converted here on the fly with the same
rules: a pickled .npy only with allow_pickle=True, a .pth with `torch.load(weights_only=True)`.
The network itself is `models.alexnet.AlexNet`'s, which knows nothing of weight files.
"""

import os

from keras_alexnet.models import alexnet
from keras_alexnet.models import inspection
from keras_alexnet.models import labels
from keras_alexnet.models import layer_weights
from keras_alexnet.models import model_archive
from keras_alexnet.paper import numbers as paper
from keras_alexnet.weights import cache
from keras_alexnet.weights import catalog
from keras_alexnet.weights import conversion
from keras_alexnet.weights import weight_files


def AlexNet(
    num_classes=1000,
    *,
    variant=None,
    input_shape=(227, 227, 3),
    input_tensor=None,
    dropout=paper.DROPOUT_RATE,
    weight_decay=paper.WEIGHT_DECAY,
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    implementation="towers",
    init="paper",
    input_scale=1.0,
    input_offset=0.0,
    weights=None,
    allow_pickle=False,
    class_names=None,
    dtype_policy=None,
    name="alexnet",
):
    """Builds AlexNet (`models.alexnet.AlexNet`), with weights from a file if given.

    Args:
        num_classes, input_shape, input_tensor, dropout, weight_decay, include_top,
            pooling, classifier_activation, implementation, init, dtype_policy, name:
            as in `models.alexnet.AlexNet`, the builder.
        variant: as in the builder; default: the weights' variant, or "paper".
        input_scale, input_offset: as in the builder; default: the weights' own.
        weights: None; a name of pretrained weights ("imagenet" or "bvlc_alexnet",
            "torchvision_alexnet" or "IMAGENET1K_V1"), downloaded into the Keras cache
            on first use, its hash checked, converted and cached; or the path of a
            .keras file saved from an AlexNet (a converted
            pretrained model from `python -m keras_alexnet.convert`, or an exported one),
            or a public weight file that `convert` reads (.caffemodel, caffe-tensorflow
            .npy, torchvision .pth), converted on the fly: its weights are loaded layer by
            layer, by name; with include_top=False only up to pool5. The file's input
            normalisation (input_scale, input_offset) is kept unless other values are
            passed, and so are its class names. With a name and include_top=True,
            num_classes must be the weights' 1000, as in keras.applications: to
            fine-tune for other classes, build include_top=False and add a head, or
            train with --init_from=NAME (fc8 replaced).
        allow_pickle: allow unpickling a .npy weights file; a pickle can run code: only
            for files from sources you trust (as `convert --allow_pickle`).
        class_names: as in the builder; default: the weights file's (ILSVRC-2012's for
            converted weights) when it has num_classes of them.

    Returns:
        The builder's `keras.Model`, holding the file's weights if any.

    Raises:
        ValueError: the builder's errors; a weights file that is missing or does not fit;
            a named file that cannot be fetched or verified (`downloads.DownloadError`,
            whose message says what to do), or PyTorch missing for torchvision's.
        ImportError: for a torch file path when PyTorch is not installed.
    """
    # The cheap checks first: a file may take a while to download, read and convert.
    alexnet.check_top(pooling, class_names, include_top)
    _check_named(weights, num_classes, include_top, variant)
    source = None
    if weights is not None:
        source = _load_weights_file(weights, allow_pickle, variant)
        input_scale, input_offset = _file_normalization(source, input_scale, input_offset)
        variant = variant or inspection.variant_of(source)
        if class_names is None and include_top:
            class_names = _file_class_names(source, num_classes)
    model = alexnet.AlexNet(
        num_classes,
        variant=variant,
        input_shape=input_shape,
        input_tensor=input_tensor,
        dropout=dropout,
        weight_decay=weight_decay,
        include_top=include_top,
        pooling=pooling,
        classifier_activation=classifier_activation,
        implementation=implementation,
        init=init,
        input_scale=input_scale,
        input_offset=input_offset,
        dtype_policy=dtype_policy,
        name=name,
    )
    if source is not None:
        layer_weights.copy_weights(source, model)
    if class_names is not None:
        model = labels.with_class_names(model, class_names)
    return model


def _check_named(weights, num_classes, include_top, variant):
    """keras.applications' rules for named weights, before anything is downloaded."""
    entry = catalog.find(weights)
    if entry is None:
        return
    if include_top and num_classes != 1000:
        raise ValueError(
            f"weights={weights!r} with include_top=True holds fc8 for the 1000 ILSVRC-2012 "
            "classes (as keras.applications, num_classes must be 1000). For other classes, "
            "build include_top=False and add your own head, or fine-tune with "
            f"`python -m keras_alexnet.train --init_from={entry.name}` (fc8 replaced). "
            f"Received: num_classes={num_classes!r}"
        )
    if variant not in (None, entry.variant):
        raise ValueError(
            f"weights={weights!r} are a {entry.variant!r} AlexNet; variant must be that or "
            f"left out. Received: variant={variant!r}"
        )


def _load_weights_file(path, allow_pickle, variant):
    """The model a weights file holds: a named one, a .keras file, or a public weight file
    converted."""
    path = cache.resolve(path)
    if is_weight_file(path):
        return converted_model(path, allow_pickle=allow_pickle, variant=variant)
    if not str(path).endswith(".keras"):
        raise ValueError(
            "weights must be the path of a .keras file or of a weight file convert reads "
            f"(.caffemodel, .npy, .pth), or one of the names {catalog.names()}. "
            f"Received: weights={path!r}"
        )
    if not os.path.exists(path):
        raise ValueError(f"weights file does not exist. Received: weights={path!r}")
    return model_archive.load_model(path, compile=False)


def _file_class_names(source, num_classes):
    """The weights file's class names, when the model keeps its number of classes."""
    names = labels.class_names_of(source)
    return names if names is not None and len(names) == num_classes else None


def _file_normalization(source, input_scale, input_offset):
    """The weights file's input_scale and input_offset, unless others were passed."""
    rescaling = inspection.layer_or_none(source, "input_rescaling")
    if rescaling is not None and input_scale == 1.0 and input_offset == 0.0:
        return rescaling.get_config()["scale"], rescaling.get_config()["offset"]
    return input_scale, input_offset


def is_weight_file(path):
    """Whether a path names a weight file `convert` reads (by its extension)."""
    return os.path.splitext(os.fspath(path))[1].lower() in weight_files.EXTENSIONS


def converted_model(path, allow_pickle=False, variant=None):
    """The AlexNet a public weight file holds, converted as `convert` converts it.

    Args:
        path: a .caffemodel, .npy or .pth/.pt file.
        allow_pickle: allow unpickling a .npy dict (only for files you trust).
        variant: the variant the weights belong to; default: the format's.

    Returns:
        A `keras.Model` taking raw 0-255 RGB pixels, carrying the ILSVRC-2012 class names
        when fc8 has 1000 classes.

    Raises:
        ValueError: from the reader (a pickle without allow_pickle, a foreign file).
        ImportError: for a torch file when PyTorch is not installed.
    """
    if not os.path.exists(path):
        raise ValueError(f"weights file does not exist. Received: weights={path!r}")
    pretrained = weight_files.read_weights(path, allow_pickle=allow_pickle)
    return conversion.build_model(pretrained, variant=variant)
