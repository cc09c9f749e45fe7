"""Features from inside an AlexNet: `feature_extractor(model, layers=("fc7",))`.

The paper's figure 4 compares images by their last hidden layer (fc7); Grad-CAM needs
conv5's maps. Any AlexNet works (built by `alexnet.AlexNet`, converted, or the `model.keras`
of an export), as its layers are named as in the paper.
"""

import keras

from keras_alexnet.paper import numbers as paper

# The layers a user usually asks for, in the network's order (a model may also have pad
# layers, dropout6, ...: every named layer can be asked for).
PAPER_LAYERS = tuple(name for name in paper.LAYER_ORDER if not name.startswith("dropout"))


def feature_extractor(model, layers=("fc7",)):
    """A model from the same inputs to the named layers' outputs.

    Args:
        model: a functional AlexNet `keras.Model` (any variant), built or loaded with
            `keras.models.load_model`.
        layers: layer names, e.g. ("conv5", "fc7"); a single name is taken as one layer.
            conv1 ... conv5 and fc6, fc7 output after their ReLU; fc8 outputs the
            class probabilities (or logits, for a model built without softmax).

    Returns:
        A `keras.Model` whose output is a dict {name: that layer's output}; it shares the
        model's weights. Call it on what the model takes (preprocessed 227x227 pixels).

    Raises:
        ValueError: no layer named, or a name the model has no layer of (the error lists
            those it has).
    """
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if not layers:
        raise ValueError(f"layers must name at least one layer. Received: layers={layers}")
    names = [layer.name for layer in model.layers]
    unknown = [name for name in layers if name not in names]
    if unknown:
        ours = [name for name in PAPER_LAYERS if name in names]
        others = [n for n in names if n not in ours and n != model.layers[0].name]
        raise ValueError(
            f"model {model.name!r} has no layer {', '.join(map(repr, unknown))}. Its layers: "
            f"{', '.join(ours)}"
            + (f" (and {', '.join(others)})" if others else "")
            + f". Received: layers={layers}"
        )
    return keras.Model(
        model_input(model),
        {name: model.get_layer(name).output for name in layers},
        name=f"{model.name}_features",
    )


def model_input(model):
    """A model's input as its calls take it: the one input, or the list of several."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs
