"""Image decoding that trusts the content, not the file name.

``decode_image`` opens any format Pillow knows by its bytes (a PNG named ``.jpg`` is a PNG),
applies the EXIF orientation, turns every mode (L, P, RGBA, CMYK, I;16, ...) into RGB
(transparency is composited on white, 16-bit is scaled, not clipped) and refuses
decompression bombs and degenerate images with a :class:`DataError` naming the file.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 8  # smaller than this cannot show a garment: refuse rather than upsample noise
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if mode == "F" and a.max(initial=0) <= 1.0:
            hi = 1.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def decode_image(source, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Decode ``source`` (a path or bytes) to an RGB ``PIL.Image``.

    Raises :class:`DataError` (one line, naming the file) for anything that is not a usable
    image: unreadable, truncated, zero bytes, not an image, over ``max_pixels``, under
    ``MIN_SIDE`` pixels on a side.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "<image bytes>")
    try:
        data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    except OSError as e:
        raise DataError(f"{label}: cannot read file ({e.strerror or e})") from None
    if not data:
        raise DataError(f"{label}: empty file")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and only errors at twice the limit); we check the limit ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise DataError(f"{label}: image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
            if min(w, h) < MIN_SIDE:
                raise DataError(f"{label}: image is {w}x{h}, smaller than {MIN_SIDE} px on a side")
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{label}: not an image (unknown format)") from None
    except Image.DecompressionBombError:
        raise DataError(f"{label}: decompression bomb refused") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DataError(f"{label}: cannot decode image ({reason})") from None


def resize(img: Image.Image, size: int) -> Image.Image:
    """Squash to ``size`` x ``size``: the whole garment stays in view (no crop)."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.BILINEAR, reducing_gap=2.0)


def to_uint8_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.uint8)


def normalize_batch(batch_uint8: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, scaled to [0, 1] then standardised."""
    x = batch_uint8.astype(np.float32).transpose(0, 3, 1, 2)
    scale = np.float32(1.0 / 255.0)
    m = (np.asarray(mean, np.float32) / scale).reshape(1, 3, 1, 1)
    s = (np.asarray(std, np.float32) / scale).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - m) / s)
