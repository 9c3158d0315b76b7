"""Augmentation as batched tensor ops (engines/torch/device_augment.py) against the host path (data/augment.py),
on CPU tensors: the same draws, the same bytes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from fashionrec.config import AugmentConfig
from fashionrec.data.augment import IDENTITY_PARAMS, Augmenter, shift_hsl
from fashionrec.data.catalog import read_labels_csv
from fashionrec.data.loader import BatchLoader
from fashionrec.data.synth.garments import CATEGORIES, TEXTURES, draw_garment
from fashionrec.engines.torch.device_augment import AugmentParams, _plan, augment_batch, augment_params

NO_CHANGE = dict(rotation=0.0, hsl_shift=0.0, shear=0.0, aspect_ratio=(1.0, 1.0), flip="none")
PAPER = AugmentConfig(rotation=8.0, flip="horizontal")
SMALL_DATA = AugmentConfig(rotation=8.0, crop_scale=(0.35, 1.0))
EXTREME = AugmentConfig(rotation=180.0, shear=1.0, aspect_ratio=(0.1, 0.12), hsl_shift=60.0)  # past warp's padding


def garments(n=6, size=64):
    return np.stack([np.asarray(draw_garment(CATEGORIES[i % len(CATEGORIES)], TEXTURES[i % len(TEXTURES)], size,
                                             np.random.default_rng(i))) for i in range(n)])


def noise(n=4, h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def host(images: np.ndarray, params: AugmentParams) -> np.ndarray:
    aug = Augmenter(AugmentConfig())  # apply() reads only the parameters
    return np.stack([np.asarray(aug.apply(Image.fromarray(img), p)) for img, p in zip(images, params.to_dicts())])


def device(images: np.ndarray, params: AugmentParams, **kw) -> np.ndarray:
    return augment_batch(torch.from_numpy(images.copy()), params, **kw).numpy()


def params_of(**kw) -> AugmentParams:
    return AugmentParams.from_dicts([{**IDENTITY_PARAMS, **kw}])


# --- the draws -------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [PAPER, SMALL_DATA, AugmentConfig(flip_prob=0.0)])
def test_the_draws_are_the_loaders_draws_for_seed_epoch_row(cfg):
    rows = [5, 0, 17, 3]
    params = augment_params(cfg, 7, 2, np.array(rows))
    aug = Augmenter(cfg)
    assert params.to_dicts() == [aug.sample_params(np.random.default_rng([7, 2, row])) for row in rows]
    assert AugmentParams.from_dicts(params.to_dicts()).to_dicts() == params.to_dicts()
    assert params[1:3].to_dicts() == params.to_dicts()[1:3]


def test_no_augmentation_draws_the_identity():
    for cfg in (None, AugmentConfig(enabled=False)):
        assert augment_params(cfg, 0, 0, range(3)).to_dicts() == [IDENTITY_PARAMS] * 3


def test_the_draws_have_the_configured_distribution():
    cfg = AugmentConfig(rotation=8.0, flip="horizontal", flip_prob=0.3)
    p = augment_params(cfg, 1, 0, range(3000))
    assert abs(p.angle.mean()) < 0.3 and p.angle.std() == pytest.approx(8 / np.sqrt(3), rel=0.05)
    assert np.abs(p.hsl).max() <= 6 and abs(p.hsl.mean()) < 0.2
    assert np.mean(p.flip == 2) == pytest.approx(0.3, abs=0.03) and set(np.unique(p.flip)) == {0, 2}
    assert np.isnan(p.crop).all()
    crops = augment_params(SMALL_DATA, 1, 0, range(3000)).crop
    area = (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1])
    assert area.min() >= 0.35 * 0.75 and area.max() <= 1 and (crops >= 0).all() and (crops <= 1).all()


# --- the same bytes ----------------------------------------------------------------------------


def test_an_unaugmented_loader_plus_the_device_gives_the_augmented_loaders_batches(synth_root):
    manifest = read_labels_csv(synth_root / "fashion/texture.csv", task="texture")
    kw = dict(input_size=48, batch_size=8, shuffle=True, seed=3, limit_batches=2)
    for cfg in (PAPER, SMALL_DATA):
        want = list(BatchLoader(manifest, augment=cfg, **kw).epoch(1))
        got = list(BatchLoader(manifest, **kw).epoch(1))
        for (xa, _, ia), (xb, _, ib) in zip(want, got):
            assert ia.tolist() == ib.tolist()
            out = augment_batch(torch.from_numpy(xb), augment_params(cfg, 3, 1, ib))
            np.testing.assert_array_equal(out.numpy(), xa)


CROP_ALONE = AugmentConfig(**{**NO_CHANGE, "crop_scale": (0.2, 1.0)})
EXTREME_CROP = AugmentConfig(rotation=180.0, shear=1.0, aspect_ratio=(8.0, 10.0), crop_scale=(0.3, 0.5))


@pytest.mark.parametrize("cfg", [PAPER, SMALL_DATA, EXTREME, CROP_ALONE, EXTREME_CROP],
                         ids=["paper", "small-data", "extreme", "crop-alone", "extreme-crop"])
def test_every_recipe_gives_the_host_paths_bytes(cfg):
    images = np.concatenate([garments(4), noise(2, 64, 64, seed=1)])
    params = augment_params(cfg, 0, 0, range(len(images)))
    np.testing.assert_array_equal(device(images, params), host(images, params))
    rect = noise(3, 40, 56)  # not square: width and height kept apart
    params = augment_params(cfg, 1, 0, range(3))
    np.testing.assert_array_equal(device(rect, params), host(rect, params))


def test_the_extreme_recipe_reaches_the_fill_colour():
    images = noise(2, 64, 64, seed=3)  # a mean edge colour no pixel has
    params = AugmentParams.from_dicts([
        {**IDENTITY_PARAMS, "angle": 30.0, "shear": 1.0, "aspect": 0.1},
        {**IDENTITY_PARAMS, "angle": 0.0, "shear": -1.0, "aspect": 0.1, "flip": "vertical"}])
    assert _plan(params, 64, 64, False)["capped"].all()  # warp() pads by at most twice the side
    out = device(images, params)
    for img, got in zip(images, out):
        edge_mean = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]]).mean(0).round()
        assert (got == edge_mean).all(axis=-1).mean() > 0.005  # past the padding: the mean edge colour, as on the host
    np.testing.assert_array_equal(out, host(images, params))
    cropped = AugmentParams.from_dicts([{**d, "crop": (0.1, 0.2, 0.6, 0.7)} for d in params.to_dicts()])
    np.testing.assert_array_equal(device(images, cropped), host(images, cropped))  # the crop's edge colour


@pytest.mark.parametrize("axis, expected", [("vertical", ImageOps.flip), ("horizontal", ImageOps.mirror)])
def test_flips_are_exact(axis, expected):
    images = noise(3)
    out = device(images, augment_params(AugmentConfig(**{**NO_CHANGE, "flip": axis, "flip_prob": 1.0}), 0, 0, range(3)))
    for img, got in zip(images, out):
        np.testing.assert_array_equal(got, np.asarray(expected(Image.fromarray(img))))


def test_hsl_shifts_are_exact_even_far_out():
    images = noise(6, 24, 32, seed=4)
    shifts = [(3.3, -4.2, 5.1), (-200.0, 6.0, -6.0), (0.0, 0.0, -6.0), (255.0, 255.0, 0.0), (0.0, 0.0, 0.0),
              (-0.4, 0.2, 0.9)]
    out = device(images, AugmentParams.from_dicts([{**IDENTITY_PARAMS, "hsl": s} for s in shifts]))
    for img, s, got in zip(images, shifts, out):
        np.testing.assert_array_equal(got, np.asarray(shift_hsl(Image.fromarray(img), *s)))


def test_the_identity_gives_the_input_back_as_a_new_tensor():
    images = noise(3)
    x = torch.from_numpy(images.copy())
    for params in (augment_params(None, 0, 0, range(3)), augment_params(AugmentConfig(**NO_CHANGE), 0, 0, range(3))):
        out = augment_batch(x, params)
        assert out.data_ptr() != x.data_ptr()
        np.testing.assert_array_equal(out.numpy(), images)
    tiny = AugmentParams.from_dicts([{**IDENTITY_PARAMS, "angle": 1e-7}] * 3)  # through the warp, as on the host
    out = augment_batch(x, tiny).numpy()
    np.testing.assert_array_equal(out, host(images, tiny))
    assert np.abs(out.astype(int) - images).max() <= 1
    np.testing.assert_array_equal(x.numpy(), images)  # the input is not changed


def test_grid_sample_is_a_unit_off_on_few_values():
    images = np.concatenate([garments(4), noise(2, 64, 64, seed=5)])
    for cfg in (PAPER, SMALL_DATA):
        params = augment_params(cfg, 0, 0, range(len(images)))
        diff = np.abs(device(images, params, sampler="grid_sample").astype(int) - host(images, params).astype(int))
        assert diff.max() <= 8 and (diff > 0).mean() < 2e-3  # a unit the colour shift can widen, on few values
        still = AugmentParams(params.angle, params.shear, params.aspect, np.zeros((len(images), 3)), params.flip,
                              params.crop)  # the geometry alone: a unit off at a truncation's edge
        diff = np.abs(device(images, still, sampler="grid_sample").astype(int) - host(images, still).astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_chunks_do_not_change_the_result():
    images = garments(5, 48)
    params = augment_params(SMALL_DATA, 2, 0, range(5))
    whole = device(images, params, chunk=5)
    np.testing.assert_array_equal(device(images, params, chunk=2), whole)
    np.testing.assert_array_equal(device(images, params), whole)


def test_fused_crop_is_close_to_the_host_and_keeps_the_box():
    images = garments(6, 96)
    params = augment_params(SMALL_DATA, 0, 0, range(6))
    diff = np.abs(device(images, params, fuse_crop=True).astype(int) - host(images, params).astype(int))
    assert diff.mean() < 1.5  # one resampling instead of two: sharp edges differ, not the geometry
    crop_only = params_of(crop=(0.1, 0.2, 0.6, 0.9))
    img = images[:1]
    diff = np.abs(device(img, crop_only, fuse_crop=True).astype(int) - host(img, crop_only).astype(int))
    assert diff.max() <= 1


def test_bad_input_is_refused():
    x = torch.zeros((2, 8, 8, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(x.float(), augment_params(None, 0, 0, range(2)))
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(x[..., :1], augment_params(None, 0, 0, range(2)))
    with pytest.raises(ValueError, match="sampler must be one of pil, grid_sample"):
        augment_batch(x, augment_params(None, 0, 0, range(2)), sampler="bicubic")
    with pytest.raises(ValueError, match="3 sets of parameters for a batch of 2"):
        augment_batch(x, augment_params(None, 0, 0, range(3)))
    assert augment_batch(x[:0], augment_params(PAPER, 0, 0, [])).shape == (0, 8, 8, 3)


def test_training_with_augment_on_device_is_the_same_run_as_on_the_host(synth_root, tmp_path):
    """``augment.on: device`` (the training loop augments the loader's plain batches as tensors): on a CPU the
    run's history is the host-augmented run's, loss for loss; mxnet cannot, in one line."""
    from fashionrec.config import StageConfig, from_dict
    from fashionrec.errors import UserError
    from fashionrec.training import train

    def config(name: str, on: str, engine: str = "torch"):
        return from_dict(StageConfig, {
            "stage": "finetune", "task": "category", "engine": engine,
            "data": {"format": "csv", "root": str(synth_root / "fashion" / "category.csv")},
            "model": {"arch": "alexnet", "input_size": 64},
            "augment": {"on": on, "crop_scale": [0.5, 1.0]},
            "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "max_epochs": 2, "workers": 0,
                      "device": "cpu", "limit_train_batches": 3, "top_k": 3},
            "output": {"dir": str(tmp_path), "name": name}})

    def history(run):
        return [(r["train_loss"], r["train_acc"], r["val_loss"]) for r in
                (json.loads(line) for line in (run / "history.jsonl").open())]

    host = train(config("host", "host"), progress=False, log=lambda *_: None)
    device = train(config("device", "device"), progress=False, log=lambda *_: None)
    assert history(device) == history(host)
    with pytest.raises(UserError, match="^augment.on: device needs engine torch"):
        train(config("mx", "device", engine="mxnet"), progress=False, log=lambda *_: None)


def test_metric_learning_with_augment_on_device_is_the_same_run_as_on_the_host(synth_root, tmp_path):
    from fashionrec.config import from_dict
    from fashionrec.metric_learning.config import MetricConfig
    from fashionrec.training import train

    def config(name: str, on: str, enabled: bool = True):
        return from_dict(MetricConfig, {
            "stage": "metric", "data": {"format": "inshop", "root": str(synth_root / "inshop"), "val_fraction": 0.25},
            "model": {"arch": "bninception", "input_size": 32, "embedding_dim": 16}, "loss": {"name": "triplet"},
            "augment": {"on": on, "enabled": enabled, "flip": "horizontal", "crop_scale": [0.6, 1.0]},
            "output": {"dir": str(tmp_path), "name": name},
            "train": {"lr": 1e-3, "batch_size": 8, "images_per_item": 4, "max_epochs": 2, "warmup_epochs": 0,
                      "workers": 0, "device": "cpu", "limit_train_batches": 2}})

    def history(run):
        rows = (json.loads(line) for line in (run / "history.jsonl").open())
        return [(r["train_loss"], r["val_recall@1"]) for r in rows]

    host = train(config("host", "host"), progress=False, log=lambda *_: None)
    device = train(config("device", "device"), progress=False, log=lambda *_: None)
    assert history(device) == history(host)
    plain = train(config("plain", "device", enabled=False), progress=False, log=lambda *_: None)
    assert history(plain) != history(host)  # the augmentation did change the batches
