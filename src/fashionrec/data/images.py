"""Image decoding that trusts the content, not the file name.

``decode_image`` opens any format Pillow knows by its bytes (a PNG named ``.jpg`` is a PNG),
applies the EXIF orientation, turns every mode (L, P, RGBA, CMYK, I;16, ...) into RGB
(transparency is composited on white, 16-bit is scaled, not clipped) and refuses
decompression bombs and degenerate images with a :class:`DataError` naming the file.

Given the size the caller will shrink to (``target_size``), a JPEG far larger than that is
decoded at 1/2, 1/4 or 1/8 scale by the decoder itself (``Image.draft``), never below twice the
target, as ``Image.thumbnail`` does. On 3000x4000 photos of 4.4 MB this decodes and resizes to
96-224 px 1.9-2.3x as fast (``scripts/bench_extract.py --photo-size 3000x4000``; the entropy
decoder still reads the whole file), and the result differs from full decode + resize by a mean
of 0.33-0.62 of 255 (tests/test_images.py).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 8  # smaller than this cannot show a garment: refuse rather than upsample noise
DRAFT_GAP = 2  # a reduced-scale decode keeps at least this many pixels per output pixel (as Image.thumbnail)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def is_hidden(name: str) -> bool:
    """A hidden entry: ``.DS_Store``, macOS ``._*`` resource forks, ``.thumbnails/``, ``.git/``."""
    return name.startswith(".")


def find_images(root) -> list[Path]:
    """Every image file under ``root`` (by suffix), sorted. Hidden files and folders are skipped
    at every level below ``root``: a ``._photo.jpg`` is no photo, and reading one costs a slot
    of the bad-image limit. Symlinked folders are not followed (a loop would never end)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not is_hidden(d)]  # pruned: never descended into
        for f in files:
            path = Path(folder) / f
            if not is_hidden(f) and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.append(path)
    return sorted(found)


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


def decode_image(source, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None,
                 target_size: int | None = None) -> Image.Image:
    """Decode ``source`` (a path or bytes) to an RGB ``PIL.Image``.

    ``target_size``: the side the caller will resize to; a JPEG at least ``2 * DRAFT_GAP`` times
    larger on both sides is decoded at a reduced scale (still >= ``DRAFT_GAP * target_size``).
    Without it the image comes back at full size.

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
            if target_size:
                # after the header checks: the limits apply to the image as stored, not as drafted;
                # a no-op for formats other than JPEG. EXIF orientation is applied after it, on the
                # smaller image (a square target needs no swap of the sides).
                img.draft("RGB", (DRAFT_GAP * target_size, DRAFT_GAP * target_size))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # not in place, it copies every upright image
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


CHANNEL_ORDERS = ("rgb", "bgr")  # the order a network takes its input channels in
PIXEL_SCALES = (1.0, 255.0)  # the value a full-intensity pixel has before mean and std apply


def normalization_terms(mean=IMAGENET_MEAN, std=IMAGENET_STD, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(shift, divisor) per input channel on uint8's 0-255 scale: the network sees ``(x - shift) / divisor``.

    ``mean`` and ``std`` are in units where a full pixel is ``scale``: torchvision's ImageNet
    convention is scale 1 (``(x / 255 - mean) / std``), Caffe's is scale 255 (``x - mean``, std 1).
    Both engines use these float32 terms, so they see the same input to the last bit.
    """
    unit = np.float32(float(scale) / 255.0)  # scale 1: float32(1/255); scale 255: exactly 1
    return np.asarray(mean, np.float32) / unit, np.asarray(std, np.float32) / unit


def normalization_kwargs(norm: dict | None) -> dict:
    """model.json's ``normalization`` as keyword arguments of ``build_classifier`` (absent keys: defaults)."""
    return {k: norm[k] for k in ("mean", "std", "channels", "scale") if k in (norm or {})}


def normalize_batch(batch_uint8: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD, channels: str = "rgb",
                    scale: float = 1.0) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in ``channels`` order, standardised (see normalization_terms)."""
    x = batch_uint8.astype(np.float32).transpose(0, 3, 1, 2)
    if channels == "bgr":
        x = x[:, ::-1]
    shift, divisor = normalization_terms(mean, std, scale)
    return np.ascontiguousarray((x - shift.reshape(1, 3, 1, 1)) / divisor.reshape(1, 3, 1, 1))
