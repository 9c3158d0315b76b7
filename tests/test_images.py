"""Decoding trusts the content, not the name, and turns every mode into RGB."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fashionrec.data.images import decode_image, normalize_batch, resize
from fashionrec.errors import DataError


def _save(img, path, fmt, **kw):
    img.save(path, format=fmt, **kw)
    return path


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP", "GIF", "TIFF"])
def test_other_formats_named_jpg_decode_by_content(tmp_path, fmt):
    img = Image.new("RGB", (32, 24), (10, 200, 30))
    p = _save(img, tmp_path / "x.jpg", fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out = decode_image(p)
    assert out.mode == "RGB" and out.size == (32, 24)
    assert np.abs(np.asarray(out, int) - [10, 200, 30]).max() <= 8  # GIF palette quantises a little


def test_grey_and_cmyk(tmp_path):
    g = decode_image(_save(Image.new("L", (16, 16), 77), tmp_path / "g.png", "PNG"))
    assert g.mode == "RGB" and np.asarray(g)[0, 0].tolist() == [77, 77, 77]
    c = decode_image(_save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "c.jpg", "JPEG"))
    r, gg, b = np.asarray(c, int)[8, 8]
    assert c.mode == "RGB" and r > 200 and gg < 60 and b < 60  # CMYK red


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.full((16, 16), 65535 // 2, np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    v = np.asarray(decode_image(p))[0, 0]
    assert 120 <= v[0] <= 135 and v.tolist() == [v[0]] * 3  # mid grey, not 255


def test_transparency_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    assert np.asarray(decode_image(_save(rgba, tmp_path / "t.png", "PNG")))[0, 0].tolist() == [255, 255, 255]
    p = Image.new("P", (16, 16), 1)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.info["transparency"] = 1
    assert np.asarray(decode_image(_save(p, tmp_path / "p.png", "PNG", transparency=1)))[0, 0].tolist() == [255] * 3
    solid = Image.new("P", (16, 16), 1)
    solid.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    assert np.asarray(decode_image(_save(solid, tmp_path / "q.png", "PNG")))[0, 0].tolist() == [0, 0, 255]


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    p = tmp_path / "rot.jpg"
    img.save(p, format="JPEG", exif=exif, quality=95)
    out = decode_image(p)
    assert out.size == (20, 40)
    a = np.asarray(out, int)
    assert a[5, 10].mean() > 200 and a[35, 10].mean() < 50  # white half is now on top


@pytest.mark.parametrize("data,match", [
    (b"", "empty file"),
    (b"just some text, not an image", "not an image"),
])
def test_garbage_is_a_clear_error(tmp_path, data, match):
    p = tmp_path / "bad.jpg"
    p.write_bytes(data)
    with pytest.raises(DataError, match=rf"bad\.jpg: {match}"):
        decode_image(p)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, format="JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match="cut.jpg: cannot decode image"):
        decode_image(p)


def test_bomb_and_tiny_images_refused(tmp_path):
    p = _save(Image.new("RGB", (300, 300)), tmp_path / "big.png", "PNG")
    with pytest.raises(DataError, match="over the limit of 50000"):
        decode_image(p, max_pixels=50_000)
    with pytest.raises(DataError, match="smaller than"):
        decode_image(_save(Image.new("RGB", (1, 1)), tmp_path / "one.png", "PNG"))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.jpg: cannot read file"):
        decode_image(tmp_path / "nope.jpg")


def test_normalize_batch_layout_and_values():
    x = np.zeros((2, 4, 5, 3), np.uint8)
    x[..., 0] = 255
    out = normalize_batch(x, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert out.shape == (2, 3, 4, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], -1.0, atol=1e-6)


# ---------------------------------------------------------------- reduced-size JPEG decoding

def _photo_jpeg(w=3000, h=4000, seed=0) -> bytes:
    """A 12-megapixel JPEG with a phone photo's kinds of detail: smooth shading, fine stripes
    (a 9-px period), sensor grain, hard edges and thin lines. Not flat noise: shrinking it
    has something to keep and something to alias."""
    rng = np.random.default_rng(seed)
    x = np.arange(w, dtype=np.float32)
    y = np.arange(h, dtype=np.float32)[:, None]
    grain = np.asarray(Image.effect_noise((w, h), 12), np.float32) - 128
    r = 128 + 60 * np.sin(x / 37.0) * np.cos(y / 53.0) + grain
    g = 110 + 80 * np.cos(x / 400.0) + 30 * np.sin(y / 9.0) + grain
    b = 130 + 70 * np.sin((x + y) / 80.0) + 0 * y
    img = Image.fromarray(np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(60):
        x0, y0 = int(rng.integers(0, w - 400)), int(rng.integers(0, h - 400))
        x1, y1 = x0 + int(rng.integers(30, 400)), y0 + int(rng.integers(30, 400))
        draw.ellipse([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw.line([x0, y1, x1, y0], fill=(0, 0, 0), width=int(rng.integers(1, 6)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo_jpeg():
    return _photo_jpeg()


@pytest.mark.parametrize("size", [96, 224])
def test_reduced_size_jpeg_decoding_keeps_quality(photo_jpeg, size):
    """Decoding at 1/4 or 1/8 scale then resizing matches full decode + resize: mean absolute
    difference measured 0.62 (96 px) and 0.33 (224 px) of 255 on this photo; bound 2."""
    drafted = decode_image(photo_jpeg, target_size=size)
    assert drafted.mode == "RGB"
    assert 2 * size <= min(drafted.size) and drafted.size[0] < 3000  # decoded small, never below 2x target
    full = np.asarray(resize(decode_image(photo_jpeg), size), np.float32)
    fast = np.asarray(resize(drafted, size), np.float32)
    assert fast.shape == full.shape == (size, size, 3)
    assert np.abs(fast - full).mean() < 2.0


def test_reduced_size_decoding_only_when_far_larger(tmp_path):
    p = _save(Image.new("RGB", (300, 200), (5, 100, 200)), tmp_path / "small.jpg", "JPEG")
    assert decode_image(p, target_size=96).size == (300, 200)  # under 4x the target: full size
    q = _save(Image.new("RGB", (900, 600), (5, 100, 200)), tmp_path / "png.png", "PNG")
    assert decode_image(q, target_size=32).size == (900, 600)  # not a JPEG: full size


def test_reduced_size_decoding_keeps_exif_orientation_and_the_pixel_limit(tmp_path):
    img = Image.new("RGB", (1600, 800), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 800, 800))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    p = tmp_path / "rot.jpg"
    img.save(p, format="JPEG", exif=exif, quality=95)
    out = decode_image(p, target_size=48)
    assert out.size == (100, 200)  # 1/8 scale, then turned upright
    a = np.asarray(out, int)
    assert a[20, 50].mean() > 200 and a[180, 50].mean() < 50  # white half is now on top
    # the limit applies to the image as stored, not to the smaller one the decoder would make
    with pytest.raises(DataError, match=r"1600x800 = 1280000 pixels, over the limit of 1000000"):
        decode_image(p, max_pixels=1_000_000, target_size=48)
