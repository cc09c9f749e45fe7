"""Weights set layer by layer, by name, with every shape checked before any is set."""

import numpy as np

from keras_alexnet.models import inspection


def copy_weights(source, target, skip=()):
    """Copies weights from one AlexNet to another, layer by layer, by name.

    Args:
        source: the model to copy from.
        target: the model to copy into; every one of its layers with weights, except those
            in `skip`, must exist in `source` with the same weight shapes.
        skip: names of target layers to leave as they are (e.g. a new fc8).

    Raises:
        ValueError: naming the layer and both shapes, before any weight is changed.
    """

    def source_weights():
        # A generator, so that a missing layer and a shape mismatch are found in the
        # target's layer order, as `set_weights_checked` walks it.
        for layer in target.layers:
            if not layer.weights or layer.name in skip:
                continue
            other = inspection.layer_or_none(source, layer.name)
            if other is None:
                raise ValueError(
                    f"The weights have no layer {layer.name!r}; they hold "
                    f"{[other.name for other in source.layers if other.weights]}."
                )
            yield layer.name, other.weights

    set_weights_checked(
        target,
        source_weights(),
        lambda name, want, have: (
            f"Layer {name!r}: the model needs weights of shapes {list(want)}, the file "
            f"holds {list(have)}."
        ),
    )


def set_weights_checked(model, weights, mismatch_message):
    """Sets layers' weights by name, once every shape is checked.

    A mismatch raises before any weight is set, so it leaves the model as it was.

    Args:
        model: the model whose layers are set.
        weights: (layer name, arrays) pairs, e.g. a dict's items(); the arrays (NumPy
            arrays or Keras variables) in the order of the layer's `weights`.
        mismatch_message: (layer name, the model's shapes, the given shapes) -> the message
            of the error; the shapes are tuples of tuples.

    Raises:
        ValueError: with mismatch_message's message, for the first layer whose shapes differ.
    """
    checked = []
    for name, arrays in weights:
        layer = model.get_layer(name)
        want = tuple(tuple(w.shape) for w in layer.weights)
        have = tuple(tuple(a.shape) for a in arrays)
        if have != want:
            raise ValueError(mismatch_message(name, want, have))
        checked.append((layer, arrays))
    for layer, arrays in checked:
        layer.set_weights([np.asarray(a) for a in arrays])
