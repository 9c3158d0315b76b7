"""Fine-tune augmentation: parameter ranges, geometry, colour, flips, determinism, validation."""

import colorsys
import typing

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from fashionrec.config import AugmentConfig
from fashionrec.data.augment import Augmenter, shift_hsl, warp

NO_CHANGE = dict(rotation=0.0, hsl_shift=0.0, shear=0.0, aspect_ratio=(1.0, 1.0), flip="none")


def noise_image(w=48, h=40, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def garment_image(w=64, h=64, background=(230, 225, 215), fill=(30, 60, 160)):
    """A dark rectangle on a light, uniform background."""
    img = Image.new("RGB", (w, h), background)
    ImageDraw.Draw(img).rectangle([w // 4, h // 4, 3 * w // 4 - 1, 3 * h // 4 - 1], fill=fill)
    return img


def bbox_of_dark(img):
    ys, xs = np.nonzero(np.asarray(img.convert("L")) < 128)
    return xs.min(), xs.max(), ys.min(), ys.max()


def mean_hls(img):
    a = np.asarray(img, dtype=np.float64).reshape(-1, 3) / 255
    return np.mean([colorsys.rgb_to_hls(*p) for p in a], axis=0)


# --- parameter draws --------------------------------------------------------------------


def test_sampled_params_stay_in_configured_ranges():
    cfg = AugmentConfig(rotation=8.0, hsl_shift=6.0, shear=0.25, aspect_ratio=(0.875, 1.125),
                        flip="horizontal", flip_prob=0.3)
    aug = Augmenter(cfg)
    draws = [aug.sample_params(np.random.default_rng([7, i])) for i in range(2000)]
    angles = np.array([d["angle"] for d in draws])
    shears = np.array([d["shear"] for d in draws])
    aspects = np.array([d["aspect"] for d in draws])
    hsl = np.array([d["hsl"] for d in draws])
    assert np.all(np.abs(angles) <= 8.0) and angles.min() < -7 and angles.max() > 7
    assert np.all(np.abs(shears) <= 0.25) and shears.min() < -0.2 and shears.max() > 0.2
    assert np.all((aspects >= 0.875) & (aspects <= 1.125))
    assert aspects.min() < 0.9 and aspects.max() > 1.1
    assert hsl.shape == (2000, 3) and np.all(np.abs(hsl) <= 6.0)
    assert np.all(hsl.min(axis=0) < -5) and np.all(hsl.max(axis=0) > 5)
    flips = [d["flip"] for d in draws]
    assert set(flips) == {"horizontal", "none"}
    assert 0.25 < flips.count("horizontal") / len(flips) < 0.35


def test_one_range_does_not_change_the_other_draws():
    p3 = Augmenter(AugmentConfig(rotation=3.0)).sample_params(np.random.default_rng(5))
    p8 = Augmenter(AugmentConfig(rotation=8.0)).sample_params(np.random.default_rng(5))
    assert p8["angle"] == pytest.approx(p3["angle"] * 8 / 3)
    assert {k: v for k, v in p3.items() if k != "angle"} == {k: v for k, v in p8.items() if k != "angle"}


def test_disabled_augmentation_is_identity():
    aug = Augmenter(AugmentConfig(enabled=False))
    params = aug.sample_params(np.random.default_rng(0))
    assert params == {"angle": 0.0, "shear": 0.0, "aspect": 1.0, "hsl": (0.0, 0.0, 0.0), "flip": "none"}
    img = noise_image()
    assert aug(img, np.random.default_rng(0)).tobytes() == img.tobytes()


# --- identity and determinism -------------------------------------------------------------


def test_zero_ranges_give_the_input_back():
    img = noise_image()
    out = Augmenter(AugmentConfig(**NO_CHANGE))(img, np.random.default_rng(0))
    assert out.tobytes() == img.tobytes()


def test_near_identity_warp_is_not_shifted():
    # A tiny angle goes through the affine warp: a half-pixel centring error would show on noise.
    img = noise_image(51, 37)
    out = warp(img, angle=1e-7, shear=1e-9, aspect=1 + 1e-9)
    diff = np.abs(np.asarray(out, dtype=int) - np.asarray(img, dtype=int))
    assert diff.max() <= 1


def test_same_seed_same_bytes_different_seed_differs():
    img = noise_image(64, 64)
    aug = Augmenter(AugmentConfig(rotation=8.0))
    a = aug(img, np.random.default_rng([0, 1, 2])).tobytes()
    b = aug(img, np.random.default_rng([0, 1, 2])).tobytes()
    c = aug(img, np.random.default_rng([0, 2, 2])).tobytes()  # next epoch
    assert a == b
    assert a != c


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (120, 31)])
def test_size_and_mode_preserved(size):
    img = noise_image(*size)
    aug = Augmenter(AugmentConfig(rotation=8.0, shear=0.25, flip_prob=1.0))
    for seed in range(5):
        out = aug(img, np.random.default_rng(seed))
        assert out.size == size and out.mode == "RGB"


def test_non_rgb_input_is_refused():
    with pytest.raises(ValueError, match="RGB"):
        Augmenter(AugmentConfig())(Image.new("L", (8, 8)), np.random.default_rng(0))


# --- flips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("axis, expected", [("vertical", ImageOps.flip), ("horizontal", ImageOps.mirror)])
def test_flip_axis(axis, expected):
    img = noise_image(30, 20)
    aug = Augmenter(AugmentConfig(**{**NO_CHANGE, "flip": axis, "flip_prob": 1.0}))
    out = aug(img, np.random.default_rng(3))
    assert out.tobytes() == expected(img).tobytes()
    assert out.tobytes() != img.tobytes()


def test_flip_prob_zero_never_flips():
    aug = Augmenter(AugmentConfig(flip="vertical", flip_prob=0.0))
    assert all(aug.sample_params(np.random.default_rng(i))["flip"] == "none" for i in range(200))


# --- geometry ------------------------------------------------------------------------------


def test_rotation_matches_pil_rotate_inside_the_frame():
    # Same direction (counter-clockwise) and centre as Image.rotate; only the uncovered
    # corners differ (PIL fills them black, we do not).
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((64, 64), Image.Resampling.BICUBIC)  # smooth, asymmetric
    ours = np.asarray(warp(img, angle=6.0), dtype=int)
    pil = np.asarray(img.rotate(6.0, resample=Image.Resampling.BILINEAR), dtype=int)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(ours[inner] - pil[inner]).max() <= 1
    wrong_way = np.asarray(img.rotate(-6.0, resample=Image.Resampling.BILINEAR), dtype=int)
    assert np.abs(ours[inner] - wrong_way[inner]).max() > 10


def test_aspect_ratio_widens_and_flattens_about_the_centre():
    img = garment_image(96, 96)
    x0, x1, y0, y1 = bbox_of_dark(img)
    w0, h0 = x1 - x0 + 1, y1 - y0 + 1
    nx0, nx1, ny0, ny1 = bbox_of_dark(warp(img, aspect=1.44))  # x * 1.2, y / 1.2
    assert nx1 - nx0 + 1 == pytest.approx(w0 * 1.2, abs=2)
    assert ny1 - ny0 + 1 == pytest.approx(h0 / 1.2, abs=2)
    assert (nx0 + nx1) / 2 == pytest.approx((x0 + x1) / 2, abs=1)
    assert (ny0 + ny1) / 2 == pytest.approx((y0 + y1) / 2, abs=1)


def test_shear_slants_a_vertical_bar():
    img = Image.new("RGB", (80, 80), (255, 255, 255))
    ImageDraw.Draw(img).rectangle([36, 0, 43, 79], fill=(0, 0, 0))
    out = np.asarray(warp(img, shear=0.25).convert("L")) < 128
    top, bottom = np.nonzero(out[5])[0].mean(), np.nonzero(out[74])[0].mean()
    assert bottom - top == pytest.approx(0.25 * 69, abs=2)  # x += shear * y


def test_uncovered_border_continues_the_background_not_black():
    background = (230, 225, 215)
    img = garment_image(64, 48, background=background)
    out = np.asarray(warp(img, angle=8.0, shear=0.25, aspect=0.875))
    for corner in (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]):
        assert tuple(int(v) for v in corner) == background


# --- colour ---------------------------------------------------------------------------------


def test_hsl_shift_matches_colorsys():
    img = noise_image(20, 15, seed=4)
    a = np.asarray(img, dtype=np.float64).reshape(-1, 3) / 255
    for dh, ds, dl in [(3.3, -4.2, 5.1), (-200.0, 6.0, -6.0), (0.0, 0.0, -6.0)]:
        expected = []
        for p in a:
            h, l, s = colorsys.rgb_to_hls(*p)
            h = (h + dh / 255) % 1
            l = min(max(l + dl / 255, 0), 1)
            s = min(max(s + ds / 255, 0), 1)
            expected.append(colorsys.hls_to_rgb(h, l, s))
        expected = np.floor(np.array(expected) * 255 + 0.5).reshape(15, 20, 3)
        out = np.asarray(shift_hsl(img, dh, ds, dl), dtype=float)
        assert np.abs(out - expected).max() <= 1  # float32 vs float64 at a rounding edge
        assert np.mean(out == expected) > 0.98  # rounded, not truncated


@pytest.mark.parametrize("channel, index", [("lightness", 1), ("saturation", 2)])
def test_hsl_shift_moves_the_mean_in_the_expected_direction(channel, index):
    img = garment_image()  # mid-range lightness and saturation: nothing at a clip limit
    base = mean_hls(img)[index]
    up = mean_hls(shift_hsl(img, **{channel: 6.0}))[index]
    down = mean_hls(shift_hsl(img, **{channel: -6.0}))[index]
    assert up > base + 0.01 and down < base - 0.01


def test_hue_wraps_around_instead_of_clipping():
    red = Image.new("RGB", (4, 4), (255, 0, 0))  # hue 0
    toward_magenta = np.asarray(shift_hsl(red, hue=-10.0))[0, 0]
    toward_yellow = np.asarray(shift_hsl(red, hue=10.0))[0, 0]
    assert toward_magenta[0] == 255 and toward_magenta[1] == 0 and toward_magenta[2] > 0
    assert toward_yellow[0] == 255 and toward_yellow[1] > 0 and toward_yellow[2] == 0
    img = noise_image(seed=2)
    full_turn = np.asarray(shift_hsl(img, hue=255.0), dtype=int)
    assert np.abs(full_turn - np.asarray(img, dtype=int)).max() <= 1


def test_zero_hsl_shift_is_exact():
    img = noise_image()
    assert shift_hsl(img, 0.0, 0.0, 0.0).tobytes() == img.tobytes()


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, field", [
    (dict(rotation=-1.0), "rotation"),
    (dict(hsl_shift=-0.5), "hsl_shift"),
    (dict(shear=-0.25), "shear"),
    (dict(shear=float("nan")), "shear"),
    (dict(flip_prob=1.5), "flip_prob"),
    (dict(flip_prob=-0.1), "flip_prob"),
    (dict(aspect_ratio=(1.2, 0.8)), "aspect_ratio"),
    (dict(aspect_ratio=(0.0, 1.0)), "aspect_ratio"),
    (dict(aspect_ratio=(-1.0, 1.0)), "aspect_ratio"),
    (dict(aspect_ratio=(1.0,)), "aspect_ratio"),
    (dict(flip="diagonal"), "flip"),
    (dict(rotation="3"), "rotation"),
    (dict(enabled="yes"), "enabled"),
])
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}(\[\d\])? "):  # a pair's item is named by its index
        AugmentConfig(**kwargs)


def test_yaml_style_values_are_normalised():
    cfg = AugmentConfig(rotation=8, aspect_ratio=[0.875, 1.125], flip_prob=1)
    assert cfg.aspect_ratio == (0.875, 1.125) and isinstance(cfg.rotation, float)
    assert cfg == AugmentConfig(rotation=8.0, flip_prob=1.0)
    hints = typing.get_type_hints(AugmentConfig)  # what the YAML config loader reads
    assert hints["aspect_ratio"] == tuple[float, float] and hints["flip"] is str
