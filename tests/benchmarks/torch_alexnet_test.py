"""The PyTorch peer is the package's AlexNet: the same parameters, shapes and LRN."""

import numpy as np
import pytest

import keras_alexnet

torch = pytest.importorskip("torch", reason="PyTorch is optional (the test extra installs it)")

from keras_alexnet.benchmarks import torch_alexnet  # noqa: E402

COMPARED = ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8")


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    return keras_alexnet.AlexNet(), torch_alexnet.paper_alexnet(1000)


def test_the_same_parameters_as_the_keras_model(networks):
    keras_model, torch_model = networks
    count = sum(p.numel() for p in torch_model.parameters())
    assert count == keras_model.count_params() == 60_965_224


def test_the_same_output_shape_at_every_layer(networks):
    keras_model, torch_model = networks
    shapes = {}
    for name in COMPARED:
        module = getattr(torch_model, name)
        module.register_forward_hook(
            lambda _, __, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
    torch_model.eval()
    with torch.no_grad():
        logits = torch_model(torch.zeros(1, 3, 227, 227))
    assert tuple(logits.shape) == (1, 1000)
    for name in COMPARED:
        want = tuple(keras_model.get_layer(name).output.shape[1:])
        # Channels first in PyTorch, last in Keras.
        got = shapes[name] if len(shapes[name]) == 1 else (*shapes[name][1:], shapes[name][0])
        assert got == want, name
    assert torch_alexnet.pool5_size() == 6


def test_the_groups_and_the_paper_init(networks):
    _, torch_model = networks
    groups = {name: getattr(torch_model, name).groups for name in COMPARED[:5]}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    for name in COMPARED:
        if name == "pool5":
            continue
        layer = getattr(torch_model, name)
        bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == bias), name
        assert abs(float(layer.weight.detach().std()) - 0.01) < 0.001, name
    dropouts = [m for m in torch_model if isinstance(m, torch.nn.Dropout)]
    assert [d.p for d in dropouts] == [0.5, 0.5]


def test_the_lrn_is_the_papers(networks):
    """PyTorch divides alpha by n; the peer's LRN computes the paper's formula anyway."""
    _, torch_model = networks
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 40, size=(2, 96, 5, 5)).astype(np.float32)
    with torch.no_grad():
        got = torch_model.lrn1(torch.from_numpy(x)).numpy()
    # The paper, section 3.3: k=2, n=5, alpha=1e-4 on the plain sum of squares, beta=0.75.
    squares = np.pad(x**2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(squares[:, i : i + 96] for i in range(5))
    np.testing.assert_allclose(got, x / (2 + 1e-4 * window) ** 0.75, rtol=1e-5)
    keras_lrn = keras_alexnet.LocalResponseNormalization()
    from_keras = np.asarray(keras_lrn(np.transpose(x, (0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, from_keras, rtol=1e-5)


def test_num_classes_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="num_classes=0"):
        torch_alexnet.paper_alexnet(0)
