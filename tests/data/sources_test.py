"""sources: the order of an epoch, a function of (seed, epoch)."""


def epoch_refs(source, seed, epoch):
    ds = source.examples("train", order=(seed, epoch))
    return [r.decode() for r, _ in ds.as_numpy_iterator()]


def test_order_is_a_function_of_seed_and_epoch(source):
    assert epoch_refs(source, 0, 0) == epoch_refs(source, 0, 0)
    assert epoch_refs(source, 0, 0) != epoch_refs(source, 0, 1)
    assert epoch_refs(source, 0, 0) != epoch_refs(source, 1, 0)
    assert sorted(epoch_refs(source, 0, 1)) == sorted(epoch_refs(source, 0, 0))
