import numpy as np
import pytest

from fashionrec.config import AugmentConfig
from fashionrec.data.catalog import read_labels_csv
from fashionrec.data.loader import BatchLoader, ImageSource
from fashionrec.errors import DataError


@pytest.fixture(scope="module")
def manifest(synth_root):
    return read_labels_csv(synth_root / "fashion/texture.csv", task="texture")


def test_batches_shapes_and_labels(manifest):
    loader = BatchLoader(manifest, input_size=48, batch_size=16)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == -(-len(manifest) // 16)
    x, y, idx = batches[0]
    assert x.shape == (16, 48, 48, 3) and x.dtype == np.uint8  # the classifier normalises
    assert y.tolist() == manifest.labels[idx].tolist()
    assert sum(len(b[1]) for b in batches) == len(manifest)


def test_a_source_of_paths_alone_loads_the_same_images_without_labels(manifest):
    source = ImageSource(manifest.root, manifest.paths)
    kw = dict(input_size=32, batch_size=8, limit_batches=2)
    with_labels = list(BatchLoader(manifest, **kw).epoch(0))
    loader = BatchLoader(source, workers=1, **kw)
    try:
        paths_only = list(loader.epoch(0))
    finally:
        loader.close()
    assert len(paths_only) == len(with_labels) == 2
    for (xa, _, ia), (xb, yb, ib) in zip(with_labels, paths_only):
        assert yb is None and ia.tolist() == ib.tolist()
        np.testing.assert_array_equal(xa, xb)
    with pytest.raises(ValueError, match="3 paths but 2 labels"):
        ImageSource(manifest.root, manifest.paths[:3], labels=[0, 1])


def test_randomness_depends_on_seed_epoch_row_not_on_workers(manifest):
    aug = AugmentConfig(rotation=8)
    kw = dict(input_size=32, batch_size=8, shuffle=True, augment=aug, seed=3, limit_batches=3)
    a = list(BatchLoader(manifest, workers=0, **kw).epoch(1))
    loader = BatchLoader(manifest, workers=2, **kw)
    b = list(loader.epoch(1))
    loader.close()
    for (xa, _, ia), (xb, _, ib) in zip(a, b):
        assert ia.tolist() == ib.tolist()
        np.testing.assert_array_equal(xa, xb)
    c = list(BatchLoader(manifest, workers=0, **kw).epoch(2))
    assert a[0][2].tolist() != c[0][2].tolist()  # a new epoch shuffles anew


def test_workers_reuse_shared_memory_slots_without_touching_batches_already_handed_out(manifest):
    """prefetch=1: every batch goes through the same slot, so a batch kept by the consumer must be
    its own copy; stopping an epoch early and starting the next must not mix batches up."""
    kw = dict(input_size=32, batch_size=4, shuffle=True, augment=AugmentConfig(rotation=8), seed=5, limit_batches=6)
    want = [list(BatchLoader(manifest, workers=0, **kw).epoch(e)) for e in (0, 1)]
    loader = BatchLoader(manifest, workers=2, prefetch=1, **kw)
    try:
        for _ in zip(range(2), loader.epoch(0)):  # stop after two of six batches
            pass
        got = [list(loader.epoch(e)) for e in (0, 1)]
    finally:
        loader.close()
    for got_epoch, want_epoch in zip(got, want):
        assert len(got_epoch) == len(want_epoch) == 6
        for (xa, ya, ia), (xb, yb, ib) in zip(got_epoch, want_epoch):
            assert ia.tolist() == ib.tolist() and ya.tolist() == yb.tolist()
            np.testing.assert_array_equal(xa, xb)
    with pytest.raises(ValueError, match="prefetch must be >= 1"):
        BatchLoader(manifest, workers=1, prefetch=0, **kw)


def test_bad_images_are_skipped_counted_and_abort_over_the_limit(manifest, tmp_path):
    import shutil

    from fashionrec.data.manifest import Manifest

    root = tmp_path / "cat"
    shutil.copytree(manifest.root / "images", root / "images")
    (root / manifest.paths[0]).write_bytes(b"not a jpeg")
    m = Manifest(root, manifest.paths, manifest.labels, manifest.splits, manifest.classes)
    loader = BatchLoader(m, 32, 32, max_bad_fraction=0.05)
    n = sum(len(y) for _, y, _ in loader.epoch(0))
    assert n == len(m) - 1 and list(loader.bad) == [manifest.paths[0]]
    with pytest.raises(DataError, match=r"1 of \d+ images could not be decoded"):
        list(BatchLoader(m, 32, 32, max_bad_fraction=0.0).epoch(0))


def test_parameter_validation(manifest):
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(manifest, 32, 0)
    with pytest.raises(ValueError, match="workers"):
        BatchLoader(manifest, 32, 4, workers=-1)
