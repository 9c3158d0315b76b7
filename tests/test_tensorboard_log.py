"""TensorBoard scalars: every numeric field of an epoch record, readable by TensorBoard's own reader."""

import pytest

from fashionrec.errors import UserError
from fashionrec.tensorboard_log import ScalarLog


def test_writes_every_numeric_field_per_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = ScalarLog(tmp_path, enabled=True, title="pretrain bninception category")
    for epoch, loss in ((1, 2.0), (2, 1.5)):
        log.write({"epoch": epoch, "train_loss": loss, "val_loss": loss + 0.1, "val_acc": 0.5, "lr": 1e-3,
                   "note": "text is not a scalar", "flag": True})
    log.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags == {"train/train_loss", "val/val_loss", "val/val_acc", "other/lr"}
    assert [(e.step, e.value) for e in acc.Scalars("train/train_loss")] == [(1, 2.0), (2, 1.5)]


def test_off_writes_nothing(tmp_path):
    log = ScalarLog(tmp_path, enabled=False)
    log.write({"epoch": 1, "train_loss": 1.0})
    log.close()
    assert not (tmp_path / "tensorboard").exists()


def test_missing_package_is_one_line_before_training(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UserError, match=r"log.tensorboard: true needs the tensorboard package"):
        ScalarLog(tmp_path, enabled=True)


def test_a_training_stage_writes_its_scalars(tmp_path, synth_root):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fashionrec.training import train
    from test_train import stage_config

    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=2, limit=1)
    cfg.log.tensorboard = True
    run = train(cfg, progress=False, log=lambda *_: None)
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("val/val_loss")] == [1, 2]
    assert "train/train_loss" in acc.Tags()["scalars"]
