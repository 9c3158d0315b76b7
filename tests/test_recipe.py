"""The small-data recipe's knobs: label smoothing, warm-up + cosine learning rate, random resized
crop; the paper's settings stay the defaults, and the committed recipe trains end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionrec.config import AugmentConfig, StageConfig, TrainConfig, from_dict, load_config
from fashionrec.data.augment import Augmenter, crop_box
from fashionrec.errors import ConfigError
from fashionrec.training import scheduled_lr

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_the_paper_settings_stay_the_defaults():
    t = TrainConfig(optimizer="adam", lr=1e-3, batch_size=32)
    assert (t.label_smoothing, t.lr_schedule, t.warmup_epochs) == (0.0, "constant", 0.0)
    assert AugmentConfig().crop_scale == (1.0, 1.0)
    for path in sorted((CONFIGS / "pretrain").glob("*.yaml")) + sorted((CONFIGS / "finetune").glob("*.yaml")):
        cfg = load_config(StageConfig, path)
        assert (cfg.train.label_smoothing, cfg.train.lr_schedule, cfg.train.warmup_epochs) == (0.0, "constant", 0.0)
        assert cfg.augment.crop_scale == (1.0, 1.0)


def test_bad_recipe_values_are_one_line_config_errors():
    base = {"stage": "pretrain", "task": "category", "data": {"format": "csv", "root": "x.csv"},
            "model": {"arch": "alexnet"}, "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 4}}
    with pytest.raises(ConfigError, match=r"train\.label_smoothing: must be in \[0, 0.99\]; got 1.5"):
        from_dict(StageConfig, dict(base, train=dict(base["train"], label_smoothing=1.5)))
    with pytest.raises(ConfigError, match="train.lr_schedule: expected 'constant' | 'cosine'"):
        from_dict(StageConfig, dict(base, train=dict(base["train"], lr_schedule="step")))
    with pytest.raises(ConfigError, match=r"augment: crop_scale must be \[lo, hi\] with lo <= hi"):
        from_dict(StageConfig, dict(base, augment={"crop_scale": [0.8, 0.5]}))


def test_warm_up_then_cosine_learning_rate():
    t = TrainConfig(optimizer="sgd", lr=0.1, batch_size=8, max_epochs=10, lr_schedule="cosine", warmup_epochs=2)
    steps = 50
    lrs = [scheduled_lr(t, e, s, steps) for e in range(1, 11) for s in range(steps)]
    assert lrs[0] == pytest.approx(0.1 / (2 * steps)) and lrs[0] > 0  # the first step already moves
    assert np.all(np.diff(lrs[: 2 * steps]) > 0) and lrs[2 * steps - 1] == pytest.approx(0.1)  # linear warm-up
    assert lrs[2 * steps] == pytest.approx(0.1)  # the cosine starts at lr ...
    assert np.all(np.diff(lrs[2 * steps:]) < 0) and lrs[-1] < 1e-4  # ... and falls to ~0 at max_epochs
    half = 2 * steps + 4 * steps  # halfway through the cosine
    assert lrs[half] == pytest.approx(0.05)
    constant = TrainConfig(optimizer="sgd", lr=0.1, batch_size=8)
    assert {scheduled_lr(constant, e, s, steps) for e in (1, 5) for s in (0, 49)} == {0.1}


def _smoothed_cross_entropy(logits: np.ndarray, y: np.ndarray, e: float) -> float:
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    k = logits.shape[1]
    target = np.full(logits.shape, e / k) + np.eye(k)[y] * (1 - e)
    return float(-(target * log_p).sum(1).mean())


@pytest.mark.parametrize("engine", ["torch", pytest.param("mxnet", marks=pytest.mark.mxnet)])
def test_label_smoothing_is_the_smoothed_cross_entropy_on_both_engines(engine):
    """Each engine's training loss is (1 - e) one-hot + e / classes against the step's own logits."""
    from fashionrec.engines.factory import build_classifier

    x = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 1])
    for e in (0.0, 0.2):
        clf = build_classifier(engine, "alexnet", 3, device="cpu", seed=0)
        weights = clf.get_weights()
        weights["fc.weight"] = weights["fc.weight"] * 300  # confident logits: smoothing then matters
        clf.set_weights(weights)
        clf.configure_optimizer("sgd", 0.01, label_smoothing=e)
        clf.set_seed(0)
        loss, logits = clf.train_step(x, y)
        assert np.ptp(logits, axis=1).min() > 1.0
        assert loss == pytest.approx(_smoothed_cross_entropy(logits, y, e), rel=1e-5)
        if e:
            assert loss != pytest.approx(_smoothed_cross_entropy(logits, y, 0.0), rel=1e-2)


def test_set_lr_changes_the_step(tmp_path):
    from fashionrec.engines.factory import build_classifier

    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    moved = []
    for lr in (0.0, 0.01):
        clf = build_classifier("torch", "alexnet", 3, device="cpu", seed=0)
        clf.configure_optimizer("sgd", 1.0)
        clf.set_lr(lr)
        before = clf.get_weights()["fc.weight"].copy()
        clf.set_seed(0)
        clf.train_step(x, np.array([0, 1]))
        moved.append(float(np.abs(clf.get_weights()["fc.weight"] - before).max()))
    assert moved[0] == 0.0 and moved[1] > 0


def test_random_resized_crop_keeps_the_paper_draws_and_stays_in_range():
    paper = AugmentConfig(rotation=8.0, flip="horizontal")
    cropping = AugmentConfig(rotation=8.0, flip="horizontal", crop_scale=(0.3, 1.0), crop_ratio=(0.75, 4 / 3))
    a = Augmenter(paper).sample_params(np.random.default_rng(3))
    b = Augmenter(cropping).sample_params(np.random.default_rng(3))
    assert "crop" not in a and {k: b[k] for k in a} == a  # the crop's draws come after the paper's
    boxes = [Augmenter(cropping).sample_params(np.random.default_rng([1, i]))["crop"] for i in range(500)]
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= 1 + 1e-9 and 0 <= top < bottom <= 1 + 1e-9
        area, ratio = (right - left) * (bottom - top), (right - left) / (bottom - top)
        assert 0.3 - 1e-9 <= area <= 1 + 1e-9 or min(right - left, bottom - top) == pytest.approx(1.0)
        assert 0.75 - 1e-9 <= ratio <= 4 / 3 + 1e-9 or max(right - left, bottom - top) == pytest.approx(1.0)
    areas = [(r - l) * (b - t) for l, t, r, b in boxes]
    assert min(areas) < 0.35 and max(areas) > 0.9
    assert crop_box(0.25, 1.0, 0.0, 1.0) == pytest.approx((0.0, 0.5, 0.5, 1.0))  # bottom-left quarter
    # applied: a crop of the left half of an image black on its left three quarters is all black
    img = Image.fromarray(np.concatenate([np.zeros((32, 24, 3), np.uint8), np.full((32, 8, 3), 255, np.uint8)], 1))
    params = dict(Augmenter(AugmentConfig(enabled=False)).sample_params(np.random.default_rng(0)),
                  crop=crop_box(0.25, 1.0, 0.0, 0.5))
    out = np.asarray(Augmenter(cropping).apply(img, params))
    assert out.shape == (32, 32, 3) and out.max() == 0


def test_the_small_data_recipe_trains_on_a_csv(synth_root, tmp_path):
    """configs/small-data/pretrain-scratch.yaml as committed (smaller and shorter), end to end."""
    from fashionrec.training import train

    cfg = load_config(StageConfig, CONFIGS / "small-data" / "pretrain-scratch.yaml", [
        f"data.root={synth_root / 'fashion' / 'category.csv'}", "data.classes=null", "model.input_size=32",
        "train.max_epochs=2", "train.limit_train_batches=2", "train.batch_size=8", "train.workers=0",
        "train.device=cpu", f"output.dir={tmp_path}"])
    assert cfg.train.label_smoothing > 0 and cfg.train.lr_schedule == "cosine" and cfg.train.warmup_epochs > 0
    assert cfg.augment.enabled and cfg.augment.crop_scale[0] < 1 and cfg.augment.flip == "horizontal"
    run = train(cfg, progress=False, log=lambda *_: None)
    import json

    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(math.isfinite(h["train_loss"]) for h in history)
    assert 0 < history[0]["lr"] < cfg.train.lr  # warming up (the epoch's last step)
    assert history[1]["lr"] != history[0]["lr"]
