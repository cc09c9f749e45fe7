"""The variant tables, against each source's own numbers written out here."""

import dataclasses

import pytest

from keras_alexnet.models import variants

# Topics of the conformance report in which a variant may declare a departure.
TOPICS = {"layout", "lrn", "init", "dropout", "decay"}


def column(variant, field):
    return tuple(getattr(conv, field) for conv in variants.VARIANTS[variant].convs)


def test_paper_table_is_the_papers_network():
    # Section 3.5 and figure 2: 96-256-384-384-256 kernels of 11, 5, 3, 3, 3; conv1 at
    # stride 4; conv2, conv4 and conv5 see only their own tower; LRN after conv1 and conv2;
    # overlapping pooling after conv1, conv2 and conv5; biases 1 in conv2, conv4 and conv5.
    assert column("paper", "name") == ("conv1", "conv2", "conv3", "conv4", "conv5")
    assert column("paper", "filters") == (96, 256, 384, 384, 256)
    assert column("paper", "kernel_size") == (11, 5, 3, 3, 3)
    assert column("paper", "strides") == (4, 1, 1, 1, 1)
    assert column("paper", "groups") == (1, 2, 1, 2, 2)
    assert column("paper", "lrn") == (True, True, False, False, False)
    assert column("paper", "pool") == (True, True, False, False, True)
    assert column("paper", "bias_init") == (0.0, 1.0, 0.0, 1.0, 1.0)
    assert column("paper", "stddev") == (0.01,) * 5
    paper = variants.VARIANTS["paper"]
    assert paper.lrn == dict(depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75)
    assert paper.dense_units == (4096, 4096)
    assert paper.dense_bias_init == (1.0, 1.0, 0.0)
    assert paper.dense_stddev == (0.01, 0.01, 0.01)
    assert not paper.dropout_before_dense and not paper.torch_init
    assert paper.departures == ()


def test_caffe_table_parts_from_the_paper_only_in_init_and_lrn():
    paper, caffe = variants.VARIANTS["paper"], variants.VARIANTS["caffe"]
    # bvlc_alexnet's train_val.prototxt: bias_filler 0.1 where the paper has 1, fc6 and fc7
    # weights std 0.005; LRN local_size 5, alpha 1e-4 (Caffe divides it by local_size), k 1.
    assert column("caffe", "bias_init") == (0.0, 0.1, 0.0, 0.1, 0.1)
    unchanged = ("name", "filters", "kernel_size", "strides", "padding", "groups", "lrn", "pool")
    for field in unchanged:
        assert column("caffe", field) == column("paper", field), field
    assert caffe.lrn["depth_radius"] == 2 and caffe.lrn["bias"] == 1.0
    assert caffe.lrn["alpha"] == pytest.approx(1e-4 / 5) and caffe.lrn["beta"] == 0.75
    assert caffe.dense_bias_init == (0.1, 0.1, 0.0)
    assert caffe.dense_stddev == (0.005, 0.005, 0.01)
    assert caffe.dense_units == paper.dense_units
    assert set(caffe.departures) == {"lrn", "init"}


def test_one_weird_trick_table_is_torchvisions_alexnet():
    # torchvision.models.AlexNet: Conv2d(3, 64, 11, 4, 2), Conv2d(64, 192, 5, padding=2),
    # Conv2d(192, 384, 3, padding=1), Conv2d(384, 256, 3, padding=1),
    # Conv2d(256, 256, 3, padding=1); MaxPool2d(3, 2) after the 1st, 2nd and 5th.
    owt = variants.VARIANTS["one_weird_trick"]
    assert column("one_weird_trick", "filters") == (64, 192, 384, 256, 256)
    assert column("one_weird_trick", "kernel_size") == (11, 5, 3, 3, 3)
    assert column("one_weird_trick", "strides") == (4, 1, 1, 1, 1)
    assert column("one_weird_trick", "padding") == (2, 2, 1, 1, 1)
    assert column("one_weird_trick", "groups") == (1,) * 5
    assert column("one_weird_trick", "pool") == (True, True, False, False, True)
    assert owt.lrn is None
    assert owt.dense_units == (4096, 4096)
    assert owt.dropout_before_dense and owt.torch_init
    assert set(owt.departures) == {"layout", "lrn", "init", "dropout"}


@pytest.mark.parametrize("name", sorted(variants.VARIANTS))
def test_every_variant_is_complete(name):
    variant = variants.VARIANTS[name]
    assert variant.name == name
    assert [conv.name for conv in variant.convs] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert len(variant.dense_units) == 2
    assert len(variant.dense_bias_init) == len(variant.dense_stddev) == 3
    assert set(variant.departures) <= TOPICS
    assert variant.source


def test_get_finds_registered_variants_and_names_them_all_otherwise(monkeypatch):
    assert variants.get("caffe") is variants.VARIANTS["caffe"]
    small = dataclasses.replace(variants.VARIANTS["paper"], name="small", dense_units=(8, 8))
    monkeypatch.setitem(variants.VARIANTS, "small", small)
    assert variants.get("small").dense_units == (8, 8)
    with pytest.raises(
        ValueError, match=r"variant must be one of \[.*'small'.*\]. Received: variant='vgg'"
    ):
        variants.get("vgg")
