"""The training loop's feeding (issue 30, part 3), on the CPU: batches lent from the workers' slots (no copy), the
slots page-locked through a hook, and the epoch's sums kept where the steps leave them (read once per epoch) giving
the very losses the host's own sums gave."""

import shutil

import numpy as np
import pytest

from fashionrec.config import AugmentConfig
from fashionrec.data.catalog import read_labels_csv
from fashionrec.data.loader import BatchLoader
from fashionrec.data.manifest import Manifest
from fashionrec.training.tally import EpochTally


@pytest.fixture(scope="module")
def manifest(synth_root):
    return read_labels_csv(synth_root / "fashion/texture.csv", task="texture")


def _epochs(loader, epochs=(0, 1)):
    """Every batch of ``epochs`` as copies (a lent batch is only valid until the next is asked for)."""
    out = []
    try:
        for e in epochs:
            out += [(x.copy(), None if y is None else y.copy(), i.copy()) for x, y, i in loader.epoch(e)]
    finally:
        loader.close()
    return out


def _same(a, b):
    assert len(a) == len(b)
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert ia.tolist() == ib.tolist() and ya.tolist() == yb.tolist()
        np.testing.assert_array_equal(xa, xb)


def test_lent_batches_are_views_of_the_slots_with_the_same_bytes(manifest):
    kw = dict(input_size=32, batch_size=8, shuffle=True, augment=AugmentConfig(rotation=8), seed=2, limit_batches=5,
              workers=2, prefetch=2)
    copied = _epochs(BatchLoader(manifest, **kw))
    loader = BatchLoader(manifest, borrow=True, **kw)
    views = []
    try:
        for x, _, _ in loader.epoch(0):
            views.append(np.shares_memory(x, loader._slots))
    finally:
        loader.close()
    assert views and all(views)  # no copy out of the slot
    # only two slots for five batches: a slot is refilled only once the consumer asked for the next batch
    _same(_epochs(BatchLoader(manifest, borrow=True, **kw)), copied)


def test_a_lent_batch_with_a_gap_inside_is_copied_closed(manifest, tmp_path):
    """An undecodable image in the first worker's share leaves a gap in the slot: that batch is a copy with the
    gap closed, the rest are lent, and all of them hold what the copying loader gives."""
    root = tmp_path / "cat"
    shutil.copytree(manifest.root / "images", root / "images")
    (root / manifest.paths[1]).write_bytes(b"not a jpeg")
    m = Manifest(root, manifest.paths, manifest.labels, manifest.splits, manifest.classes)
    kw = dict(input_size=32, batch_size=8, limit_batches=3, workers=2, max_bad_fraction=0.5)
    want = _epochs(BatchLoader(m, **kw), (0,))
    assert len(want[0][2]) == 7 and 1 not in want[0][2].tolist()
    loader = BatchLoader(m, borrow=True, **kw)
    shared = []
    try:
        got = []
        for x, y, i in loader.epoch(0):
            shared.append(np.shares_memory(x, loader._slots))
            got.append((x.copy(), y.copy(), i.copy()))
    finally:
        loader.close()
    _same(got, want)
    assert shared == [False, True, True]


def test_the_pin_hook_page_locks_the_slots_once_and_is_undone_on_close(manifest):
    calls = []

    def pin(slots):
        calls.append(("pin", slots.shape, slots.dtype))
        return lambda: calls.append(("unpin",))

    loader = BatchLoader(manifest, 32, 8, workers=1, prefetch=3, limit_batches=2, pin=pin, borrow=True)
    try:
        for e in (0, 1):
            assert len(list(loader.epoch(e))) == 2
        assert calls == [("pin", (3, 8, 32, 32, 3), np.uint8)]  # the same slots for every epoch
    finally:
        loader.close()
    assert calls[-1] == ("unpin",)
    loader.close()
    assert len(calls) == 2  # undone once


def test_the_tally_of_device_values_gives_the_host_sums_exactly(manifest):
    """Two identical classifiers over the same batches: one read every step on the host (the loop before), the other
    tallied on its device (``sync=False``) and read once: the same loss sum, correct answers and weights, bit for
    bit."""
    import torch

    from fashionrec.engines.factory import build_classifier

    def classifier():
        clf = build_classifier("torch", "alexnet", len(manifest.classes), device="cpu", seed=4)
        clf.configure_optimizer("sgd", 0.01, 0.0, 0.9)
        return clf

    batches = _epochs(BatchLoader(manifest, 64, 8, shuffle=True, seed=1, limit_batches=4), (0,))
    host, device = classifier(), classifier()
    loss_sum, correct, n = 0.0, 0, 0
    tally = EpochTally(read_every=3)
    reads = []
    for step, (x, y, _) in enumerate(batches):
        host.set_seed(step)  # dropout's draws: the same for both
        loss, logits = host.train_step(x, y)
        loss_sum += loss * len(y)
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
        device.set_seed(step)
        t_loss, t_logits = device.train_step(x, y, sync=False)
        assert isinstance(t_loss, torch.Tensor) and isinstance(t_logits, torch.Tensor)
        tally.add(t_loss, len(y), t_logits, y)
        if tally.due():
            reads.append(tally.read()[2])
    assert reads == [24]  # every third step
    assert tally.read() == (loss_sum, correct, n)
    for k, v in host.get_weights().items():
        np.testing.assert_array_equal(v, device.get_weights()[k])


def test_the_tally_sums_host_values_on_the_host():
    tally = EpochTally()
    tally.add(0.5, 4, np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]), np.array([0, 1, 1, 1]))
    tally.add(np.float32(0.25), 2)
    assert tally.read() == (2.5, 3, 6)


def test_a_compiled_step_and_extraction_give_the_eager_numbers(monkeypatch):
    """``set_compile`` routes the training step and extraction through ``torch.compile`` (here its ``aot_eager``
    backend: the same graph capture and autograd split as inductor, minutes less compiling on a CPU): the losses,
    weights and features are eager's."""
    import torch

    from fashionrec.engines.factory import build_classifier

    real, modes = torch.compile, []

    def compile_eagerly(target, mode=None):
        modes.append(mode)
        return real(target, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_eagerly)

    def classifier():
        clf = build_classifier("torch", "alexnet", 3, device="cpu", seed=4)
        clf.configure_optimizer("sgd", 0.01, 0.0, 0.9)
        return clf

    x = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 0])
    eager, compiled = classifier(), classifier()
    compiled.set_compile(training="reduce-overhead", inference="default")
    for step in range(2):
        eager.set_seed(step)  # dropout's draws (one generator): the same for both
        want = eager.train_step(x, y)[0]
        compiled.set_seed(step)
        assert compiled.train_step(x, y)[0] == want
    np.testing.assert_array_equal(eager.extract(x)[1], compiled.extract(x)[1])
    assert modes == ["reduce-overhead", "default"]  # each compiled once
    assert set(compiled.get_weights()) == set(eager.get_weights())  # the eager network's names: the same files
    with pytest.raises(ValueError, match="compile mode must be one of eager, default"):
        compiled.set_compile(training="fast")


def test_compile_is_a_checked_config_key(tmp_path):
    from fashionrec.config import StageConfig, load_config
    from fashionrec.errors import ConfigError, UserError
    from fashionrec.training.objectives.classification import Classification

    path = tmp_path / "c.yaml"
    path.write_text("stage: pretrain\ntask: category\ndata: {format: csv, root: x}\nmodel: {arch: alexnet}\n"
                    "train: {optimizer: sgd, lr: 0.1, batch_size: 8, compile: off}\n")
    with pytest.raises(ConfigError, match=r"c.yaml:5: train\.compile: expected 'eager' \| 'default'"):
        load_config(StageConfig, path)
    cfg = load_config(StageConfig, path, ["train.compile=default", "engine=mxnet"])
    with pytest.raises(UserError, match="train.compile: default needs engine torch"):
        Classification(cfg).check()
