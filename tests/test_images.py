"""Decoding trusts the content, not the name, and turns every mode into RGB."""

import io

import numpy as np
import pytest
from PIL import Image

from fashionrec.data.images import decode_image, normalize_batch
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
