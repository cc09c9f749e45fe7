"""Class names that travel inside a model, and `decode_predictions`.

A model carries its class names in a `ClassNames` layer after fc8: it passes the
probabilities through unchanged and keeps the names in its config, so they survive
`model.save` and `keras.models.load_model` (after `import keras_alexnet`), with no file
beside the model. A training run's names are its class folders (or TFDS label names);
converted ImageNet weights carry the 1000 ILSVRC-2012 classes as "<synset id> <name>"
(`imagenet_classes`).
"""

import keras
import numpy as np

from keras_alexnet.models import imagenet_classes

LAYER_NAME = "class_names"


@keras.saving.register_keras_serializable(package="keras_alexnet")
class ClassNames(keras.layers.Layer):
    """The identity, holding the names of the classes of the probabilities it passes on.

    Args:
        class_names: one name per class, in label order (non-empty strings).
        **kwargs: base layer arguments (name, dtype, ...).
    """

    def __init__(self, class_names, **kwargs):
        super().__init__(**kwargs)
        class_names = list(class_names)
        if not class_names or not all(isinstance(n, str) and n for n in class_names):
            raise ValueError(
                "class_names must be a non-empty list of non-empty strings. "
                f"Received: class_names={class_names[:5]!r}"
            )
        self.class_names = class_names

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(class_names=list(self.class_names))
        return config


def class_names_of(model):
    """The class names a model carries (its `ClassNames` layer), or None."""
    for layer in model.layers:
        if isinstance(layer, ClassNames):
            return list(layer.class_names)
    return None


def with_class_names(model, class_names):
    """The model with its class names inside: a `ClassNames` layer after its output.

    The layers are shared with `model`. A model that already carries these names is
    returned as it is.

    Raises:
        ValueError: if the number of names is not the model's number of classes, or the
            model carries other names.
    """
    class_names = list(class_names)
    if model.output_shape[-1] != len(class_names):
        raise ValueError(
            f"The model has {model.output_shape[-1]} classes but {len(class_names)} class "
            f"names were given. Received: class_names={class_names[:3]!r}..."
        )
    carried = class_names_of(model)
    if carried == class_names:
        return model
    if carried is not None:
        raise ValueError(
            f"The model already carries other class names ({carried[:3]!r}...). "
            f"Received: class_names={class_names[:3]!r}..."
        )
    outputs = ClassNames(class_names, dtype=model.output.dtype, name=LAYER_NAME)(model.output)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=model.name)


def decode_predictions(probs, top=5, model=None, class_names=None):
    """The `top` most probable classes of each image, as keras.applications returns them.

    Classes are ranked as `tf.math.top_k` ranks them (the lower index first among equal
    probabilities), as evaluation and the serving signature do.

    Args:
        probs: class probabilities, [batch, classes] (NumPy or a tensor).
        top: how many classes per image.
        model: the model that computed them: its class names are used.
        class_names: the names, when no model is given; default: the 1000 ILSVRC-2012
            classes when there are 1000 columns.

    Returns:
        One list per image of (class id, readable name, probability), most probable first:
        ("n02123045", "tabby, tabby cat", 0.83) for ImageNet classes; a training run's
        class names are their own id.

    Raises:
        ValueError: for probabilities that are not [batch, classes], top < 1, or no names
            for that many classes.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(
            f"probs must be a batch of predictions, [batch, classes]. Received: shape {probs.shape}"
        )
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an integer >= 1. Received: top={top!r}")
    if class_names is None and model is not None:
        class_names = class_names_of(model)
    if class_names is None and probs.shape[1] == imagenet_classes.NUM_CLASSES:
        class_names = imagenet_classes.class_names()
    if class_names is None or len(class_names) != probs.shape[1]:
        raise ValueError(
            f"No class names for {probs.shape[1]} classes: pass the model that made the "
            "predictions (carrying its class names) or class_names. Received: "
            f"{'no class names' if class_names is None else f'{len(class_names)} class names'}"
        )
    # Stable sort of the negated probabilities: ties keep the lower index first, as top_k.
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    return [
        [(*imagenet_classes.split_label(class_names[i]), float(row[i])) for i in indices]
        for row, indices in zip(probs, order)
    ]
