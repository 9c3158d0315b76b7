"""Fine-tune augmentation of Tuinhof et al. (2018), drawn anew for every image and epoch.

The paper fine-tunes with random rotations (±3° for category, ±8° for texture), HSL channel
shifts in [-6, 6], a shear factor in [-0.25, 0.25], aspect-ratio changes in [0.875, 1.125]
and random "vertical flips". Those are the defaults of :class:`~fashionrec.config.AugmentConfig`
(with the category rotation); the flip axis is configurable because the paper's word is ambiguous.

:class:`Augmenter` separates drawing the parameters from applying them, so a run is
reproducible from ``np.random.default_rng([seed, epoch, index])`` and a preview can print
what was drawn::

    aug = Augmenter(AugmentConfig(rotation=8.0))
    out = aug(img, np.random.default_rng([seed, epoch, index]))

For small data (``configs/small-data/``) a random resized crop can come first: a box of
``crop_scale`` of the area and ``crop_ratio`` width/height, anywhere in the image, stretched back
to the input size. Its draws come after the paper's, so they leave those unchanged; it is off by
default (``crop_scale`` (1, 1)).

Geometry (rotation about the centre, horizontal shear, area-preserving aspect change) is one
bilinear affine warp to the input size; the area it uncovers repeats the nearest edge pixel
rather than going black, since garments sit on photographed backgrounds. Colour is shifted in
HLS with numpy: hue wraps around, lightness and saturation clip.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ..config import FLIP_AXES, AugmentConfig

IDENTITY_PARAMS = {"angle": 0.0, "shear": 0.0, "aspect": 1.0, "hsl": (0.0, 0.0, 0.0), "flip": "none"}


class Augmenter:
    """Draw and apply the augmentation of an :class:`AugmentConfig` to RGB ``PIL`` images."""

    def __init__(self, config: AugmentConfig):
        if not isinstance(config, AugmentConfig):
            raise TypeError(f"config must be an AugmentConfig; got {type(config).__name__}")
        self.config = config

    def __repr__(self) -> str:
        return f"Augmenter({self.config!r})"

    def sample_params(self, rng: np.random.Generator) -> dict:
        """Draw one set of parameters.

        Returns a dict with ``angle`` (degrees, counter-clockwise), ``shear``, ``aspect``
        (width/height stretch), ``hsl`` (hue, saturation, lightness shifts in 0-255 units)
        and ``flip`` (the axis flipped, or "none"), and with a random resized crop ``crop``, the
        box ``(left, top, right, bottom)`` as fractions of the image. Every draw is made even when
        its range is empty, so changing one range does not change the others' values for the same
        seed (the crop's draws come last, and only when it is on).
        """
        c = self.config
        if not c.enabled:
            return dict(IDENTITY_PARAMS)
        angle = rng.uniform(-c.rotation, c.rotation)
        shear = rng.uniform(-c.shear, c.shear)
        aspect = rng.uniform(*c.aspect_ratio)
        hsl = rng.uniform(-c.hsl_shift, c.hsl_shift, size=3)
        flipped = rng.random() < c.flip_prob
        params = {
            "angle": float(angle),
            "shear": float(shear),
            "aspect": float(aspect),
            "hsl": tuple(float(v) for v in hsl),
            "flip": c.flip if flipped else "none",
        }
        if c.crop_scale != (1.0, 1.0):
            params["crop"] = crop_box(rng.uniform(*c.crop_scale), math.exp(rng.uniform(*np.log(c.crop_ratio))),
                                      rng.random(), rng.random())
        return params

    def apply(self, img: Image.Image, params: dict) -> Image.Image:
        """Apply ``params`` (from :meth:`sample_params`) to an RGB image; same size, RGB."""
        if img.mode != "RGB":
            raise ValueError(f"img must be an RGB image; got mode {img.mode!r}")
        if params.get("crop") is not None:
            w, h = img.size
            left, top, right, bottom = params["crop"]
            img = img.resize((w, h), Image.Resampling.BILINEAR, box=(left * w, top * h, right * w, bottom * h))
        img = warp(img, params["angle"], params["shear"], params["aspect"])
        flip = params["flip"]
        if flip == "vertical":
            img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        elif flip == "horizontal":
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        elif flip != "none":
            raise ValueError(f"params['flip'] must be one of {', '.join(FLIP_AXES)}; got {flip!r}")
        return shift_hsl(img, *params["hsl"])

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return self.apply(img, self.sample_params(rng))


def crop_box(area: float, ratio: float, x: float, y: float) -> tuple[float, float, float, float]:
    """The box (fractions of the image) of a crop of ``area`` (share of the image) and width/height
    ``ratio``, placed at ``x``, ``y`` in [0, 1] of the room left; sides longer than the image are cut to it."""
    width, height = min(1.0, math.sqrt(area * ratio)), min(1.0, math.sqrt(area / ratio))
    left, top = x * (1 - width), y * (1 - height)
    return (left, top, left + width, top + height)


def warp(img: Image.Image, angle: float = 0.0, shear: float = 0.0, aspect: float = 1.0) -> Image.Image:
    """Rotate (degrees, counter-clockwise), shear and stretch ``img`` about its centre.

    One bilinear affine warp, same output size; uncovered area repeats the nearest edge.
    ``aspect`` > 1 widens and flattens (x scaled by sqrt(aspect), y by 1/sqrt(aspect)).
    """
    if angle == 0 and shear == 0 and aspect == 1:
        return img
    w, h = img.size
    t = math.radians(angle)
    cos, sin = math.cos(t), math.sin(t)
    sx = math.sqrt(aspect)
    # Forward map in image coordinates (y down), about the centre: rotate @ shear @ stretch.
    # Rotation by +angle is counter-clockwise on screen, as in Image.rotate.
    fwd = np.array([[cos, sin], [-sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, 1 / sx])
    inv = np.linalg.inv(fwd)  # PIL samples input at inv(output)
    # Input coordinates of the output corners tell how far outside the image the warp reads.
    corners = np.array([[-w, -h], [w, -h], [-w, h], [w, h]], dtype=np.float64) / 2
    reach = np.abs(corners @ inv.T).max(axis=0) - (w / 2, h / 2)
    # Pad by replicating the edge so uncovered area continues the background; past a cap
    # (only for extreme configs) PIL fills with the mean edge colour instead.
    pad_x, pad_y = (min(math.ceil(r) + 2, 2 * max(w, h)) if r > 0 else 1 for r in reach)
    a = np.asarray(img)
    padded = np.pad(a, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="edge")
    # Output (x, y) -> input (x', y') in padded pixel coordinates (PIL adds 0.5 per pixel).
    cx, cy = w / 2, h / 2
    offset = np.array([cx + pad_x, cy + pad_y]) - inv @ (cx, cy)
    coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    return Image.fromarray(padded).transform(
        (w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR,
        fillcolor=_edge_mean(a),
    )


def _edge_mean(a: np.ndarray) -> tuple[int, int, int]:
    ring = np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])
    return tuple(int(v) for v in ring.mean(axis=0).round())


def shift_hsl(img: Image.Image, hue: float = 0.0, saturation: float = 0.0,
              lightness: float = 0.0) -> Image.Image:
    """Shift hue, saturation and lightness of an RGB image by values in 0-255 units.

    Hue wraps around (255 is a full turn); saturation and lightness clip to [0, 255]. All
    shifts zero returns the image unchanged.
    """
    if hue == 0 and saturation == 0 and lightness == 0:
        return img
    a = np.asarray(img)
    planes = np.ascontiguousarray(a.reshape(-1, 3).T, dtype=np.float32)  # (3, N): fast rows
    h, l, s = _rgb_to_hls(planes)
    h += np.float32(hue * 6 / 255)
    h -= 6 * np.floor(h * np.float32(1 / 6))  # wrap to [0, 6); also folds the red sextant's [-1, 0)
    np.clip(l + np.float32(lightness), 0, 255, out=l)
    np.clip(s + np.float32(saturation / 255), 0, 1, out=s)
    rgb = _hls_to_rgb(h, l, s)
    rgb += 0.5  # round, not truncate
    np.clip(rgb, 0, 255, out=rgb)
    r, g, b = rgb.astype(np.uint8).reshape(3, *a.shape[:2])
    return Image.merge("RGB", [Image.fromarray(c) for c in (r, g, b)])


# HLS on planar float32 arrays, the formulas of colorsys without its branches. Units: RGB and
# lightness in [0, 255], saturation in [0, 1], hue in sextants (6 = a full turn).


def _rgb_to_hls(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = rgb
    maxc = np.maximum(np.maximum(r, g), b)
    minc = np.minimum(np.minimum(r, g), b)
    chroma = maxc - minc
    total = maxc + minc  # 2 * lightness
    # s = chroma / (1 - |2l - 1|), colorsys's two cases in one; greys (chroma 0) give 0.
    s = chroma / np.maximum(255 - np.abs(total - 255), 1e-6)
    h = np.where(r == maxc, g - b, np.where(g == maxc, 2 * chroma + (b - r), 4 * chroma + (r - g)))
    h /= np.maximum(chroma, 1e-6)  # in [-1, 5); greys give 0
    return h, total * 0.5, s


def _hls_to_rgb(h: np.ndarray, l: np.ndarray, s: np.ndarray) -> np.ndarray:
    # Channel n (R, G, B: n = 0, 8, 4) is l - a * clip(min(k - 3, 9 - k), -1, 1) with
    # k = (n + 2h) mod 12 and a = s * min(l, 255 - l).
    a = s * np.minimum(l, 255 - l)
    out = np.empty((3, *h.shape), np.float32)
    twice_h = 2 * h
    for channel, n in enumerate((0, 8, 4)):
        k = twice_h + np.float32(n)
        k = np.where(k >= 12, k - 12, k)
        t = np.minimum(k - 3, 9 - k)
        np.clip(t, -1, 1, out=t)
        t *= a
        np.subtract(l, t, out=out[channel])
    return out
