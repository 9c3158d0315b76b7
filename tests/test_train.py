"""Training: the loop, early stopping, resume, run directories, evaluate; learning on synthetic data."""

import json

import numpy as np
import pytest
import yaml

from fashionrec.checkpoint import Checkpoint
from fashionrec.config import StageConfig, from_dict
from fashionrec.errors import TrainingInterrupted, UserError
from fashionrec.evaluate import evaluate_run
from fashionrec.runs import load_classifier, read_model_json
from fashionrec.training import train


def stage_config(tmp_path, root, *, task="category", stage="pretrain", arch="bninception", fmt="deepfashion",
                 size=32, epochs=2, patience=5, limit=2, batch=16, augment=False, name=None):
    raw = {
        "stage": stage, "task": task, "engine": "torch",
        "data": {"format": fmt, "root": str(root)},
        "model": {"arch": arch, "input_size": size},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": batch, "max_epochs": epochs,
                  "patience": patience, "top_k": 3, "workers": 0, "device": "cpu",
                  "limit_train_batches": limit},
        "augment": {"enabled": augment},
        "output": {"dir": str(tmp_path / "runs"), "name": name},
    }
    return from_dict(StageConfig, raw)


def test_run_directory_has_every_artifact(tmp_path, synth_root):
    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=2)
    run = train(cfg, progress=False, log=lambda *_: None)
    for name in ("config.yaml", "manifest.csv", "model.json", "weights.safetensors", "history.jsonl",
                 "history.png", "last/state.json", "last/weights.safetensors", "last/optimizer.safetensors"):
        assert (run / name).is_file(), name
    info = read_model_json(run)
    assert info["arch"] == "bninception" and info["num_features"] == 1024 and len(info["classes"]) == 9
    assert 1 <= info["best_epoch"] <= 2 and len(info["weights_sha256"]) == 64
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["batch_size"] == 16
    with pytest.raises(UserError, match="already exists"):
        train(cfg, progress=False, log=lambda *_: None)


def test_interrupted_run_resumes_to_the_same_history(tmp_path, synth_root):
    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=3, name="straight")
    straight = train(cfg, progress=False, log=lambda *_: None)

    def interrupt_after_epoch_1(msg):
        if msg.startswith("epoch 1:"):
            raise KeyboardInterrupt

    cfg2 = stage_config(tmp_path, synth_root / "deepfashion", epochs=3, name="interrupted")
    with pytest.raises(TrainingInterrupted) as stopped:
        train(cfg2, progress=False, log=interrupt_after_epoch_1)
    assert json.loads((cfg2.run_dir / "last/state.json").read_text())["epoch"] == 1 == stopped.value.epoch
    resumed = train(cfg2, resume=True, progress=False, log=lambda *_: None)
    a = [json.loads(x) for x in (straight / "history.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (resumed / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2, 3]
    # Same batches, same augmentation, same dropout: the same numbers.
    np.testing.assert_allclose([r["val_loss"] for r in a], [r["val_loss"] for r in b], rtol=1e-4)
    assert read_model_json(straight)["best_epoch"] == read_model_json(resumed)["best_epoch"]


def test_early_stopping_stops_after_patience(tmp_path, synth_root):
    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=30, patience=1, limit=1)
    cfg.train.lr = 0.5  # diverging steps: the validation loss will not keep improving
    cfg.train.optimizer = "sgd"
    run = train(cfg, progress=False, log=lambda *_: None)
    info = read_model_json(run)
    assert info["epochs"] < 30 and info["epochs"] - info["best_epoch"] == 1


def test_finetune_replaces_the_head_and_evaluate_writes_metrics(tmp_path, synth_root):
    pre = train(stage_config(tmp_path, synth_root / "deepfashion", epochs=1), progress=False, log=lambda *_: None)
    cfg = stage_config(tmp_path, synth_root / "fashion/texture.csv", task="texture", stage="finetune",
                       fmt="csv", epochs=1, augment=True)
    run = train(cfg, init=pre, progress=False, log=lambda *_: None)
    clf, info = load_classifier(run, device="cpu")
    assert info["classes"] == ["graphic", "plaid", "plain", "spotted", "striped"] and clf.num_classes == 5
    report = evaluate_run(run, split="val", progress=False, workers=0)
    assert report["n"] > 0 and 0 <= report["accuracy"] <= 1 and report["top_k"]["k"] == 3
    assert (run / "metrics.json").is_file() and (run / "confusion-val.png").is_file()
    with pytest.raises(UserError, match="no 'test' split"):
        evaluate_run(run, split="test", progress=False)
    alex = stage_config(tmp_path, synth_root / "fashion/texture.csv", task="texture", stage="finetune",
                        fmt="csv", arch="alexnet", epochs=1, name="alex")
    with pytest.raises(UserError, match="run is a bninception"):
        train(alex, init=pre, progress=False, log=lambda *_: None)


def test_alexnet_feature_is_4096(tmp_path, synth_root):
    cfg = stage_config(tmp_path, synth_root / "deepfashion", arch="alexnet", size=64, epochs=1, limit=1)
    cfg.train.optimizer, cfg.train.lr = "sgd", 0.01
    run = train(cfg, progress=False, log=lambda *_: None)
    clf, info = load_classifier(run, device="cpu")
    x = np.zeros((2, 64, 64, 3), np.uint8)
    logits, feats = clf.extract(x)
    assert feats.shape == (2, 4096) and logits.shape == (2, 9) and info["num_features"] == 4096


class FakeClassifier:
    """Records what the checkpoint saves; weights are one number."""

    def __init__(self):
        self.weights, self.saved = 0.0, []

    def save_weights(self, path):
        path.write_text(str(self.weights))
        self.saved.append(self.weights)

    def save_training_state(self, folder):
        (folder / "weights").write_text(str(self.weights))

    def load_training_state(self, folder):
        self.weights = float((folder / "weights").read_text())


def test_checkpoint_watches_a_metric_to_maximise_and_resumes_its_bookkeeping(tmp_path):
    clf, kw = FakeClassifier(), dict(weights="w.txt", patience=2, monitor="val_recall@1", mode="max")
    ckpt = Checkpoint(tmp_path, **kw)
    assert ckpt.open(resume=False) is False
    ckpt.meta["init"] = "pre"
    improved = []
    for epoch, recall in zip((1, 2, 3), (0.2, 0.5, 0.5)):  # a tie is no improvement
        clf.weights = epoch
        improved.append(ckpt.update(clf, {"epoch": epoch, "val_recall@1": recall}))
    assert improved == [True, True, False] and clf.saved == [1, 2] and not ckpt.should_stop
    assert (tmp_path / "w.txt").read_text() == "2" and ckpt.best == {"epoch": 2, "val_recall@1": 0.5}
    state = json.loads((tmp_path / "last/state.json").read_text())
    assert state["best_val_recall@1"] == 0.5 and state["epoch"] == 3 and state["init"] == "pre"

    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(UserError, match="already exists"):
        Checkpoint(tmp_path, **kw).open(resume=False)
    with pytest.raises(UserError, match="watched val_recall@1 \\(max\\)"):
        Checkpoint(tmp_path, weights="w.txt", patience=2).open(resume=True)
    resumed, clf2 = Checkpoint(tmp_path, **kw), FakeClassifier()
    assert resumed.open(resume=True) is True
    resumed.load_training_state(clf2)
    assert (resumed.epoch, resumed.best_epoch, resumed.best_value, resumed.bad_epochs) == (3, 2, 0.5, 1)
    assert clf2.weights == 3 and resumed.meta == {"init": "pre"} and len(resumed.history) == 3
    resumed.update(clf2, {"epoch": 4, "val_recall@1": 0.4})
    assert resumed.should_stop and resumed.best_epoch == 2 and clf2.saved == []


def test_checkpoint_minimises_by_default_and_checks_its_arguments(tmp_path):
    ckpt, clf = Checkpoint(tmp_path, weights="w.txt", patience=1), FakeClassifier()
    with pytest.raises(UserError, match="nothing to resume"):
        ckpt.open(resume=True)
    assert ckpt.update(clf, {"epoch": 1, "val_loss": 2.0}) and not ckpt.should_stop
    assert not ckpt.update(clf, {"epoch": 2, "val_loss": float("nan")}) and ckpt.should_stop
    with pytest.raises(ValueError, match="mode"):
        Checkpoint(tmp_path, weights="w.txt", patience=1, mode="lower")
    with pytest.raises(ValueError, match="patience"):
        Checkpoint(tmp_path, weights="w.txt", patience=0)


def test_patience_below_one_is_a_config_error(tmp_path, synth_root):
    with pytest.raises(UserError, match=r"train\.patience: must be in \[1, 100000\]; got 0"):
        train(stage_config(tmp_path, synth_root / "deepfashion", patience=0), progress=False, log=lambda *_: None)
