"""Colours and the 5 fabric textures drawn inside a garment: graphic, plaid, plain, spotted, striped.

Each texture fills the whole S x S canvas (S = ``SUPERSAMPLE`` x the output side); the garment
mask cuts it out later (``garments.draw_garment``). Pattern sizes are fractions of the
output side (stripe period 1/8-1/4.5, plaid period 1/6-1/3.6, dot radius 1/28-1/16, printed
shapes 1/10-1/5.5), so the patterns survive a downscale to 64 px. Colours: a light studio
background 80% of the time, a garment colour whose brightness differs from it by at least 0.2,
and three pattern colours that differ from the garment's by at least 0.3.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

TEXTURES = ("graphic", "plaid", "plain", "spotted", "striped")
SUPERSAMPLE = 2  # draw at twice the size, then downsample: smooth edges


# --------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------

def _hsv(h, s, v) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255


def _luma(c) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255


def _random_colour(rng) -> np.ndarray:
    if rng.random() < 0.15:  # greys, black, white
        return _hsv(0, 0, rng.uniform(0.08, 0.97))
    return _hsv(rng.random(), rng.uniform(0.3, 0.95), rng.uniform(0.25, 0.95))


def _contrasting(rng, other, min_diff, tries=30) -> np.ndarray:
    """A random colour whose brightness differs from ``other`` by at least ``min_diff``."""
    for _ in range(tries):
        c = _random_colour(rng)
        if abs(_luma(c) - _luma(other)) >= min_diff:
            return c
    return _hsv(0, 0, 0.05 if _luma(other) > 0.5 else 0.97)


def shade(c, f) -> np.ndarray:
    """Darker (f < 1) or lighter (f > 1, towards white) version of a colour."""
    c = np.asarray(c, np.float32)
    return c * f if f <= 1 else c + (255 - c) * (f - 1)


@dataclass
class Palette:
    background: np.ndarray
    background2: np.ndarray
    base: np.ndarray
    accents: list  # pattern colours, contrasting with the base

    @property
    def seam(self):
        return shade(self.base, 0.6) if _luma(self.base) > 0.3 else shade(self.base, 1.45)

    @property
    def trim(self):
        return shade(self.base, 0.72) if _luma(self.base) > 0.3 else shade(self.base, 1.35)


def random_palette(rng) -> Palette:
    if rng.random() < 0.8:  # light studio backdrop
        bg = _hsv(rng.random(), rng.uniform(0, 0.2), rng.uniform(0.78, 1.0))
    else:
        bg = _random_colour(rng)
    bg2 = shade(bg, rng.uniform(0.8, 1.0)) if rng.random() < 0.5 else bg
    base = _contrasting(rng, bg, 0.2)
    accents = [_contrasting(rng, base, 0.3) for _ in range(3)]
    return Palette(bg, bg2, base, accents)


# --------------------------------------------------------------------------------------------
# Textures: each returns an S x S x 3 float image of the fabric (masked later).
# ``ctx`` holds the canvas size, the image size, the garment mask, anchor, scale and angle.
# --------------------------------------------------------------------------------------------

@dataclass
class Context:
    S: int  # canvas side (supersampled)
    size: int  # output side
    mask: np.ndarray  # bool, where the garment is
    anchor: tuple  # canvas px
    garment: float  # garment long side, canvas px
    angle: float  # garment rotation, radians
    palette: Palette

    def px(self, output_px: float) -> float:
        """Output pixels -> canvas pixels."""
        return output_px * SUPERSAMPLE

    def grid(self, angle: float):
        """Canvas coordinates rotated by ``angle`` (radians): (along, across)."""
        y, x = _coords(self.S)
        c, s = math.cos(angle), math.sin(angle)
        return x * c + y * s, -x * s + y * c


@functools.lru_cache(maxsize=4)
def _coords(S: int):
    """Row and column index grids of an S x S canvas (read-only, shared between calls)."""
    y, x = np.mgrid[0:S, 0:S].astype(np.float32)
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _fill(ctx, colour) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.float32), (ctx.S, ctx.S, 3)).copy()


def _plain(ctx, rng) -> np.ndarray:
    return _fill(ctx, ctx.palette.base)


def _striped(ctx, rng) -> np.ndarray:
    if rng.random() < 0.5:  # mostly horizontal or vertical, as on real clothes
        angle = ctx.angle + math.radians(rng.choice([0.0, 90.0]) + rng.uniform(-5, 5))
    else:
        angle = rng.uniform(0, math.pi)
    period = ctx.px(ctx.size * rng.uniform(1 / 8, 1 / 4.5))
    duty = rng.uniform(0.3, 0.55)
    _, across = ctx.grid(angle)
    phase = across / period + rng.random()
    out = _fill(ctx, ctx.palette.base)
    stripe = (phase % 1.0) < duty
    if rng.random() < 0.3:  # alternate two stripe colours
        odd = (np.floor(phase) % 2).astype(bool)
        out[stripe & ~odd] = ctx.palette.accents[0]
        out[stripe & odd] = ctx.palette.accents[1]
    else:
        out[stripe] = ctx.palette.accents[0]
    return out


def _plaid(ctx, rng) -> np.ndarray:
    angle = ctx.angle + (math.pi / 4 if rng.random() < 0.15 else 0.0)
    period = ctx.px(ctx.size * rng.uniform(1 / 6, 1 / 3.6))
    width = rng.uniform(0.3, 0.5)
    u, v = ctx.grid(angle)
    pu, pv = (u / period + rng.random()) % 1.0, (v / period + rng.random()) % 1.0
    bands_u, bands_v = pu < width, pv < width
    base, accent = ctx.palette.base, ctx.palette.accents[0]
    out = _fill(ctx, base)
    one = bands_u ^ bands_v
    out[one] = 0.45 * base + 0.55 * accent  # a band: half way
    out[bands_u & bands_v] = 0.1 * base + 0.9 * accent  # crossing: full colour -> checks
    if rng.random() < 0.6:  # thin over-check lines of a third colour
        thin = max(ctx.px(1.0), 0.07 * period) / period
        centre = width + (1 - width) / 2
        lines = (np.abs(pu - centre) < thin / 2) | (np.abs(pv - centre) < thin / 2)
        out[lines] = ctx.palette.accents[1]
    return out


def _spotted(ctx, rng) -> np.ndarray:
    img = Image.fromarray(_fill(ctx, ctx.palette.base).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    r = ctx.px(ctx.size * rng.uniform(1 / 28, 1 / 16))
    spacing = r * rng.uniform(2.6, 3.6)
    colours = ctx.palette.accents[:2] if rng.random() < 0.2 else ctx.palette.accents[:1]
    if rng.random() < 0.7:  # polka dots on a staggered grid
        ox, oy = rng.uniform(0, spacing, 2)
        dy = spacing * 0.866
        centres = [(ox + (j % 2) * spacing / 2 + i * spacing, oy + j * dy)
                   for j in range(-1, int(ctx.S / dy) + 2) for i in range(-1, int(ctx.S / spacing) + 2)]
    else:  # scattered: a square grid with each dot nudged, so dots never merge into blobs
        n = int(ctx.S / spacing) + 2
        jitter = rng.uniform(-0.22, 0.22, (n * n, 2)) * spacing
        centres = [((i % n) * spacing + jx, (i // n) * spacing + jy) for i, (jx, jy) in enumerate(jitter)]
    for k, (x, y) in enumerate(centres):
        c = tuple(int(v) for v in colours[k % len(colours)])
        draw.ellipse([x - r, y - r, x + r, y + r], fill=c)
    return np.asarray(img, np.float32)


def _star(cx, cy, r, points, rot):
    out = []
    for k in range(2 * points):
        rr = r if k % 2 == 0 else r * 0.45
        a = rot + math.pi * k / points
        out.append((cx + rr * math.sin(a), cy - rr * math.cos(a)))
    return out


def _random_shape(rng, cx, cy, r):
    """A printed shape with corners (never a disc, so a print is not mistaken for dots):
    ("poly", points) or ("zigzag", points)."""
    kind = rng.choice(["star", "triangle", "square", "polygon", "zigzag"], p=[.25, .25, .15, .25, .1])
    rot = rng.uniform(0, 2 * math.pi)
    if kind == "star":
        return "poly", _star(cx, cy, r, int(rng.integers(4, 7)), rot)
    if kind == "zigzag":
        pts = [(cx + (k / 3 - 1) * r, cy + (r * 0.45 if k % 2 else -r * 0.45)) for k in range(7)]
        c, s = math.cos(rot), math.sin(rot)
        return "zigzag", [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in pts]
    n = {"triangle": 3, "square": 4}.get(kind) or int(rng.integers(5, 8))
    if kind == "polygon":  # irregular blob with corners
        radii, angles = r * rng.uniform(0.5, 1.0, n), rot + np.sort(rng.uniform(0, 2 * math.pi, n))
    else:
        radii, angles = np.full(n, r), rot + np.arange(n) * 2 * math.pi / n
    return "poly", [(cx + q * math.cos(a), cy + q * math.sin(a)) for q, a in zip(radii, angles)]


def _slogan(cx, cy, r, rng):
    """Two or three bars of different lengths, like printed lettering."""
    bars, h = [], r * 0.32
    rows = int(rng.integers(2, 4))
    for k in range(rows):
        w = r * rng.uniform(0.9, 1.6)
        y = cy + (k - (rows - 1) / 2) * h * 1.7
        bars.append([(cx - w, y - h / 2), (cx + w, y - h / 2), (cx + w, y + h / 2), (cx - w, y + h / 2)])
    return bars


def _graphic(ctx, rng) -> np.ndarray:
    """A print: a big motif on the front and large angular shapes placed at random (never on a
    grid, never round) in two or three colours."""
    img = Image.fromarray(_fill(ctx, ctx.palette.base).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    colours = [tuple(int(v) for v in c) for c in ctx.palette.accents]
    ys, xs = np.nonzero(ctx.mask)
    stroke = max(2, int(ctx.px(ctx.size / 20)))

    def paint(kind, geo, colour):
        if kind == "poly":
            draw.polygon(geo, fill=colour)
        else:
            draw.line(geo, fill=colour, width=stroke, joint="curve")

    motif = rng.random() < 0.75
    if motif:  # one big print on the chest / front
        ax, ay = ctx.anchor
        r = ctx.garment * rng.uniform(0.14, 0.22)
        if rng.random() < 0.35:
            for bar in _slogan(ax, ay, r * 0.8, rng):
                draw.polygon(bar, fill=colours[0])
        else:
            paint(*_random_shape(rng, ax, ay, r), colours[0])
            paint(*_random_shape(rng, ax, ay, r * 0.5), colours[1])
    n = int(rng.integers(2, 5) if motif else rng.integers(5, 10))
    for _ in range(n):  # scattered shapes of different sizes and colours
        k = int(rng.integers(len(xs))) if len(xs) else 0
        cx, cy = (xs[k], ys[k]) if len(xs) else (ctx.S / 2, ctx.S / 2)
        r = ctx.px(ctx.size * rng.uniform(1 / 10, 1 / 5.5))
        paint(*_random_shape(rng, float(cx), float(cy), r), colours[int(rng.integers(3))])
    return np.asarray(img, np.float32)


# Texture name -> function drawing its fabric: (ctx, rng) -> S x S x 3 float image.
PATTERNS = {"graphic": _graphic, "plaid": _plaid, "plain": _plain, "spotted": _spotted, "striped": _striped}
