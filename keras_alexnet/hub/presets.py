"""An AlexNet Keras model as a KerasHub classifier and back, and its preset folder.

`from_keras_model` takes the model an export saves as model.keras (raw RGB pixels in: the
mean image inside as its `SubtractMean` layer, or converted weights' mean pixel in its
"input_rescaling"; the class names inside), and gives the `AlexNetImageClassifier` with the
same weights, layer by layer: conv1 ... conv5 (and the mean image) in the backbone, fc6 ...
fc8 in the head. Converted weights' mean pixel goes to the image converter (its `scale` and
`offset`); a mean image stays in the backbone, since a preset folder keeps the weights of
the backbone and the head only. `to_keras_model` is the way back.

`save_preset` writes the preset folder (`classifier.save_to_preset`):

    config.json          the backbone's config (AlexNetBackbone: variant, input shape, ...)
    model.weights.h5     the backbone's weights (conv1 ... conv5, the mean image)
    task.json            the classifier's config: backbone, preprocessor, class names
    task.weights.h5      the head's weights (fc6, fc7, fc8)
    preprocessor.json    the preprocessor's config (AlexNetImageClassifierPreprocessor)
    image_converter.json the image converter's config (patch size, mean pixel)
    metadata.json        Keras and KerasHub versions, the parameter count, the date
"""

import numpy as np

from keras_alexnet import errors
from keras_alexnet import hub
from keras_alexnet.hub import models as hub_models
from keras_alexnet.models import alexnet
from keras_alexnet.models import inspection
from keras_alexnet.models import labels
from keras_alexnet.models import mean_image

FOLDER = hub.PRESET_FOLDER  # the preset's folder in an exported version
RESCALING = "input_rescaling"


def from_keras_model(model):
    """The `AlexNetImageClassifier` of an AlexNet Keras model, with its weights.

    Args:
        model: an AlexNet with its classifier (fc8), from 227x227 pixels: raw ones when it
            subtracts its mean image or normalises its input itself, as an exported
            model.keras and converted weights do.

    Returns:
        The classifier, with the preprocessor that takes raw images, float32.

    Raises:
        ValueError: the model is not an AlexNet of a known variant with its classifier.
    """
    inner, mean = mean_image.split(model)
    variant = inspection.variant_of(inner)
    if variant is None or inspection.layer_or_none(inner, "fc8") is None:
        raise ValueError(
            "A KerasHub preset needs an AlexNet of a known variant with its classifier "
            f"(fc8). Received: model {model.name!r}"
        )
    fc8 = inner.get_layer("fc8")
    scale, offset = _rescaling(inner)
    converter_scale = converter_offset = None
    if mean is None and (scale, offset) != (1.0, 0.0):
        converter_scale, converter_offset, scale, offset = scale, offset, 1.0, 0.0
    weight_decay = _weight_decay(inner)
    backbone = hub_models.AlexNetBackbone(
        variant=variant,
        image_shape=inner.input_shape[1:],
        mean_image_size=None if mean is None else int(mean.shape[0]),
        input_scale=scale,
        input_offset=offset,
        weight_decay=weight_decay,
        dtype="float32",
    )
    converter = hub_models.AlexNetImageConverter(
        image_size=inner.input_shape[1:3],
        scale=converter_scale,
        offset=converter_offset,
    )
    classifier = hub_models.AlexNetImageClassifier(
        backbone,
        fc8.units,
        preprocessor=hub_models.AlexNetImageClassifierPreprocessor(converter),
        activation=fc8.get_config()["activation"],
        dropout=_dropout(inner),
        class_names=labels.class_names_of(inner),
        weight_decay=weight_decay,
    )
    _copy_weights(model, weighted_layers(classifier))
    return classifier


def to_keras_model(classifier):
    """The `keras_alexnet.AlexNet` of an `AlexNetImageClassifier`, with its weights.

    Raw pixels in, as an exported model.keras: the mean image inside (when the backbone
    has one) and the converter's normalisation in "input_rescaling"; the class names
    inside when the classifier carries them.
    """
    backbone = classifier.backbone
    converter = classifier.preprocessor.image_converter if classifier.preprocessor else None
    scale, offset = backbone.input_scale, backbone.input_offset
    if converter is not None and (converter.scale is not None or converter.offset is not None):
        scale = converter.scale if converter.scale is not None else 1.0
        offset = converter.offset if converter.offset is not None else 0.0
    model = alexnet.AlexNet(
        classifier.num_classes,
        variant=backbone.variant,
        input_shape=backbone.image_shape,
        dropout=classifier.dropout,
        weight_decay=classifier.weight_decay,
        classifier_activation=classifier.activation,
        implementation=backbone.implementation,
        input_scale=tuple(scale) if isinstance(scale, (list, tuple)) else scale,
        input_offset=tuple(offset) if isinstance(offset, (list, tuple)) else offset,
        class_names=classifier.class_names,
    )
    if backbone.mean_image_size:
        size = backbone.mean_image_size
        model = mean_image.with_mean(model, np.zeros((size, size, 3), np.float32))
    _copy_weights(classifier, weighted_layers(model))
    return model


def save_preset(model, folder):
    """Writes the preset folder of an AlexNet Keras model (see `from_keras_model`).

    Returns:
        The classifier written.
    """
    classifier = from_keras_model(model)
    classifier.save_to_preset(folder)
    return classifier


def weighted_layers(model):
    """{name: layer} of the layers with weights of a model or classifier, its backbone's
    included: the names are the paper's (conv1 ... fc8, subtract_mean)."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, hub_models.AlexNetBackbone):
            found.update(weighted_layers(layer))
        elif layer.weights:
            found[layer.name] = layer
    return found


def _copy_weights(source, targets):
    """Copies each weighted layer of `source` into the layer of that name in `targets`;
    raises unless they pair one-to-one, with the same shapes."""
    sources = weighted_layers(source)
    if set(sources) != set(targets):
        raise ValueError(
            "The layers with weights differ: "
            f"{sorted(set(sources) ^ set(targets))}. Received: model {source.name!r}"
        )
    for name, layer in sources.items():
        targets[name].set_weights(layer.get_weights())


def _rescaling(model):
    """The model's input_rescaling (scale, offset), numbers or lists; (1.0, 0.0) without."""
    layer = inspection.layer_or_none(model, RESCALING)
    if layer is None:
        return 1.0, 0.0
    config = layer.get_config()
    return _number_or_list(config["scale"]), _number_or_list(config["offset"])


def _number_or_list(value):
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value)


def _weight_decay(model):
    """The weight decay of the model's kernels (their L2 is half of it), 0 without."""
    regularizer = model.get_layer("conv1").kernel_regularizer
    return 2 * float(regularizer.get_config()["l2"]) if regularizer is not None else 0.0


def _dropout(model):
    layer = inspection.layer_or_none(model, "dropout6")
    return float(layer.rate) if layer is not None else 0.0


def load_keras_model(folder):
    """The AlexNet Keras model (`to_keras_model`) of a preset folder, as KerasHub loads it.

    Raises:
        errors.InputError: the folder is not a preset of an AlexNet classifier.
    """
    import keras_hub

    try:
        classifier = keras_hub.models.ImageClassifier.from_preset(folder)
    except (ValueError, KeyError, TypeError, OSError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise errors.InputError(f"{folder}: not a readable KerasHub preset ({message})") from error
    if not isinstance(classifier, hub_models.AlexNetImageClassifier):
        raise errors.InputError(
            f"{folder}: a KerasHub preset of {type(classifier).__name__}, not of AlexNet"
        )
    return to_keras_model(classifier)
