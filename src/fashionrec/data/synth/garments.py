"""The 9 garment silhouettes and :func:`draw_garment`, which draws one garment as an RGB image.

Each category has its own silhouette and details, in shape units (y down, torso width about 1):
blouse (bell sleeves, V neck, pleats, tie bow), dress (bodice, flared skirt, belt or waist seam),
pants and shorts (waistband, two legs, fly, pockets, belt loops), pullover (ribbed neck, cuffs
and waistband), shirt (collar, placket with 5-7 buttons, cuffs), skirt, top (straps, scoop
neck) and t-shirt. :func:`draw_garment` scales a silhouette so its long side fills 60-90% of the
image, tilts it by up to 4 degrees, fills it with a texture from :mod:`.textures`, outlines it,
draws seams, trims and buttons, and adds pixel noise. It draws at ``SUPERSAMPLE`` times the size
and downsamples, for smooth edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .textures import PATTERNS, SUPERSAMPLE, TEXTURES, Context, random_palette, shade

CATEGORIES = ("blouse", "dress", "pants", "pullover", "shirt", "shorts", "skirt", "top", "t-shirt")


# --------------------------------------------------------------------------------------------
# Silhouettes. Each builder returns a _Shape in its own units (y down, torso width about 1);
# draw_garment scales it so its long side fills 60-90% of the image.
# --------------------------------------------------------------------------------------------

@dataclass
class _Shape:
    body: list = field(default_factory=list)  # polygons filled with the texture
    holes: list = field(default_factory=list)  # inside of the garment seen through the neck
    over: list = field(default_factory=list)  # textured polygons on top of holes (collar leaves)
    bands: list = field(default_factory=list)  # plain trim polygons (ribbing, belt)
    lines: list = field(default_factory=list)  # (points, width in strokes, role)
    buttons: list = field(default_factory=list)  # (centre, radius in units)
    anchor: tuple = (0.0, 0.5)  # where a graphic motif goes (chest, skirt front, ...)

    def mirrored(self, pts):
        return [(-x, y) for x, y in pts]

    def both(self, kind: str, pts, *rest):
        """Add ``pts`` (right side) and its mirror image to the list ``kind``."""
        target = getattr(self, kind)
        for p in (pts, self.mirrored(pts)):
            target.append((p, *rest) if rest else p)


def _arc(cx, cy, rx, ry, a0, a1, n=14):
    """Points on an ellipse from angle a0 to a1 (degrees; 0 = right, 90 = down)."""
    t = np.radians(np.linspace(a0, a1, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in t]


def _lerp(p, q, t):
    return (p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)


def _sleeve(top, bottom, angle, length, end_width):
    """A right sleeve from the armhole (``top`` shoulder, ``bottom`` armpit), ``angle`` degrees
    below horizontal. Returns the polygon and its end (outer point, inner point)."""
    a = math.radians(angle)
    v, n = (math.cos(a), math.sin(a)), (math.sin(a), -math.cos(a))  # along, outward normal
    mid = _lerp(top, bottom, 0.5)
    c = (mid[0] + length * v[0], mid[1] + length * v[1])
    end_out = (c[0] + n[0] * end_width / 2, c[1] + n[1] * end_width / 2)
    end_in = (c[0] - n[0] * end_width / 2, c[1] - n[1] * end_width / 2)
    return [top, end_out, end_in, bottom], end_out, end_in


def _sleeve_band(top, bottom, end_out, end_in, t):
    """The last fraction ``t`` of a sleeve (cuff / hem band) as a polygon."""
    return [_lerp(end_out, top, t), end_out, end_in, _lerp(end_in, bottom, t)]


def _crew_neck(s: _Shape, nw, depth, back=0.035):
    """Round neck: the back neckline above y=0, the front one below; the gap shows the inside."""
    back_arc = _arc(0, 0, nw / 2, back, 180, 360)
    front_arc = _arc(0, 0, nw / 2, depth, 180, 0)
    s.holes.append(back_arc + front_arc[::-1])
    return back_arc, front_arc


def _t_shirt(rng) -> _Shape:
    s = _Shape()
    W, H = rng.uniform(0.9, 1.05), rng.uniform(1.0, 1.2)
    nw, d, ah = rng.uniform(0.32, 0.4), 0.07, rng.uniform(0.36, 0.42)
    back, front = _crew_neck(s, nw, rng.uniform(0.08, 0.13))
    taper = rng.uniform(0.0, 0.04)
    s.body.append(back + [(W / 2, d), (W / 2, ah), (W / 2 - taper, H), (-W / 2 + taper, H),
                          (-W / 2, ah), (-W / 2, d)])
    sleeve, end_out, end_in = _sleeve((W / 2, d), (W / 2, ah), rng.uniform(25, 40),
                                      rng.uniform(0.28, 0.36), rng.uniform(0.27, 0.33))
    s.both("body", sleeve)
    s.both("lines", [_lerp(end_out, sleeve[0], 0.2), _lerp(end_in, sleeve[3], 0.2)], 1, "seam")
    s.both("lines", [(W / 2, d), (W / 2 - 0.015, (d + ah) / 2), (W / 2, ah)], 1, "seam")
    s.lines.append((front, 3, "trim"))  # ribbed neck band
    s.lines.append(([(-W / 2 + taper, H - 0.06), (W / 2 - taper, H - 0.06)], 1, "seam"))
    if rng.random() < 0.3:  # chest pocket
        x0, y0 = -W / 2 + 0.17, 0.25
        s.lines.append(([(x0, y0), (x0, y0 + 0.15), (x0 + 0.13, y0 + 0.15), (x0 + 0.13, y0)], 1, "seam"))
    s.anchor = (0.0, 0.45 * H)
    return s


def _top(rng) -> _Shape:
    s = _Shape()
    W, H = rng.uniform(0.72, 0.88), rng.uniform(1.05, 1.25)
    si, sw = rng.uniform(0.12, 0.18), rng.uniform(0.06, 0.12)  # strap inner x, strap width
    nd, ah = rng.uniform(0.25, 0.4), rng.uniform(0.3, 0.4)
    flare = rng.uniform(0.0, 0.05)
    scoop = _arc(0, 0, si, nd, 180, 0)
    armhole = _arc(W / 2, 0, W / 2 - si - sw, ah, 180, 90)
    left_armhole = [(-x, y) for x, y in armhole[::-1]]
    s.body.append([(-si - sw, 0)] + scoop + [(si + sw, 0)] + armhole +
                  [(W / 2 + flare, H), (-W / 2 - flare, H)] + left_armhole)
    s.holes.append(_arc(0, 0, si, nd * 0.3, 180, 0) + scoop[::-1])  # inside of the back
    s.lines.append((scoop, 2, "trim"))
    s.both("lines", armhole, 2, "trim")
    s.lines.append(([(-W / 2 - flare, H - 0.06), (W / 2 + flare, H - 0.06)], 1, "seam"))
    s.anchor = (0.0, 0.6 * H)
    return s


def _blouse(rng) -> _Shape:
    s = _Shape()
    W, H = rng.uniform(0.85, 1.0), rng.uniform(1.1, 1.3)
    nw, d, ah = rng.uniform(0.3, 0.38), 0.07, rng.uniform(0.33, 0.4)
    vd = rng.uniform(0.2, 0.3)
    back = _arc(0, 0, nw / 2, 0.035, 180, 360)
    vee = [(-nw / 2, 0), (0, vd), (nw / 2, 0)]
    s.holes.append(back + vee[::-1])
    flare = rng.uniform(0.05, 0.12)
    hem = _arc(0, H - 0.05, W / 2 + flare, 0.06, 0, 180, 9)  # softly rounded hem
    s.body.append(back + [(W / 2, d), (W / 2, ah)] + hem + [(-W / 2, ah), (-W / 2, d)])
    sleeve, end_out, end_in = _sleeve((W / 2, d), (W / 2, ah), rng.uniform(50, 62),
                                      rng.uniform(0.58, 0.68) * H, rng.uniform(0.36, 0.46))  # bell
    s.both("body", sleeve)
    s.both("lines", [_lerp(end_out, sleeve[0], 0.07), _lerp(end_in, sleeve[3], 0.07)], 1, "seam")
    s.both("lines", [(W / 2, d), (W / 2, ah)], 1, "seam")
    s.lines.append((vee, 2, "trim"))
    for k in range(int(rng.integers(2, 4))):  # pleats falling from the yoke
        x = nw / 2 + 0.05 + 0.06 * k
        s.both("lines", [(x, 0.1 + 0.02 * k), (x + 0.01, 0.1 + rng.uniform(0.25, 0.35))], 1, "seam")
    if rng.random() < 0.6:  # tie bow at the bottom of the V
        b = (0, vd)
        s.both("bands", [b, (0.09, vd - 0.05), (0.09, vd + 0.05)], "trim")
        s.both("bands", [b, (0.025, vd + 0.2), (0.06, vd + 0.19)], "trim")
    s.anchor = (0.0, 0.55 * H)
    return s


def _shirt(rng) -> _Shape:
    s = _Shape()
    W, H = rng.uniform(0.88, 1.0), rng.uniform(1.05, 1.2)
    nw, d, ah = rng.uniform(0.26, 0.32), 0.06, rng.uniform(0.34, 0.4)
    tail = rng.uniform(0.06, 0.12)  # curved shirt-tail hem: sides shorter than the centre
    hem = _arc(0, H - tail, W / 2 - 0.02, tail, 0, 180, 11)
    s.body.append([(-nw / 2, -0.04), (nw / 2, -0.04), (W / 2, d), (W / 2, ah)] + hem +
                  [(-W / 2, ah), (-W / 2, d)])
    s.holes.append([(-nw / 2 + 0.02, -0.01), (nw / 2 - 0.02, -0.01), (0, 0.09)])
    tip_y, tip_x = rng.uniform(0.16, 0.22), rng.uniform(0.06, 0.12)  # collar point
    leaf = [(0.015, 0.09), (nw / 2 + 0.025, -0.04), (nw / 2 + 0.04, 0.02), (tip_x, tip_y)]
    s.both("over", leaf)
    s.both("lines", leaf + [leaf[0]], 1, "seam")
    s.lines.append(([(-nw / 2 + 0.03, -0.035), (nw / 2 - 0.03, -0.035)], 1, "seam"))  # collar band
    sleeve, end_out, end_in = _sleeve((W / 2, d), (W / 2, ah), rng.uniform(62, 75),
                                      rng.uniform(0.85, 1.0) * H, rng.uniform(0.16, 0.2))
    s.both("body", sleeve)
    cuff = _sleeve_band(*sleeve[::3], end_out, end_in, 0.13)
    s.both("lines", cuff + [cuff[0]], 1, "seam")
    s.both("lines", [(W / 2, d), (W / 2, ah)], 1, "seam")
    s.bands.append(([(-0.035, 0.09), (0.035, 0.09), (0.035, H), (-0.035, H)], "trim"))  # placket
    n_buttons = int(rng.integers(5, 8))
    for y in np.linspace(0.14, H - 0.12, n_buttons):
        s.buttons.append(((0.0, float(y)), 0.022))
    if rng.random() < 0.5:  # chest pocket
        x0, y0 = -W / 2 + 0.14, 0.28
        s.lines.append(([(x0, y0), (x0, y0 + 0.16), (x0 + 0.07, y0 + 0.19), (x0 + 0.14, y0 + 0.16),
                         (x0 + 0.14, y0), (x0, y0)], 1, "seam"))
    s.anchor = (0.22, 0.5 * H)
    return s


def _pullover(rng) -> _Shape:
    s = _Shape()
    W, H = rng.uniform(1.0, 1.15), rng.uniform(1.05, 1.2)
    nw, d, ah = rng.uniform(0.3, 0.36), 0.1, rng.uniform(0.42, 0.5)
    rib = rng.uniform(0.09, 0.12)
    depth = rng.uniform(0.07, 0.1)
    back, front = _crew_neck(s, nw, depth)
    bw = W / 2 - rng.uniform(0.03, 0.06)  # waistband narrower: the body blouses over it
    s.body.append(back + [(W / 2, d), (W / 2, ah), (W / 2 + 0.02, H - rib), (-W / 2 - 0.02, H - rib),
                          (-W / 2, ah), (-W / 2, d)])
    s.bands.append(([(-bw, H - rib), (bw, H - rib), (bw, H), (-bw, H)], "trim"))
    for x in np.arange(-bw + 0.045, bw - 0.02, 0.055):
        s.lines.append(([(x, H - rib + 0.015), (x, H - 0.015)], 1, "seam"))
    sleeve, end_out, end_in = _sleeve((W / 2, d), (W / 2, ah), rng.uniform(35, 52),
                                      rng.uniform(0.75, 0.9) * H, rng.uniform(0.21, 0.26))
    s.both("body", sleeve)
    cuff = _sleeve_band(*sleeve[::3], end_out, end_in, 0.16)
    s.both("bands", cuff, "trim")
    for t in (0.25, 0.5, 0.75):  # cuff ribs run along the sleeve
        rib_line = [_lerp(cuff[0], cuff[3], t), _lerp(cuff[1], cuff[2], t)]
        s.both("lines", rib_line, 1, "seam")
    s.both("lines", [(W / 2, d), (W / 2 - 0.02, (d + ah) / 2), (W / 2, ah)], 1, "seam")
    outer = _arc(0, 0, nw / 2 + 0.055, depth + 0.055, 180, 0)  # ribbed neck band
    s.bands.append((outer + front[::-1], "trim"))
    s.anchor = (0.0, 0.5 * H)
    return s


def _dress(rng) -> _Shape:
    s = _Shape()
    bw, wy = rng.uniform(0.2, 0.25), rng.uniform(0.36, 0.44)  # bodice half width, waist height
    ww, L = bw * rng.uniform(0.78, 0.88), rng.uniform(1.15, 1.55)
    hw = rng.uniform(0.45, 0.68)
    si, sw, ay = rng.uniform(0.07, 0.1), rng.uniform(0.05, 0.08), rng.uniform(0.17, 0.22)
    nd = rng.uniform(0.12, 0.2)
    neck = _arc(0, 0, si, nd, 180, 0) if rng.random() < 0.6 else [(-si, 0), (0, nd), (si, 0)]
    armhole = _arc(bw, 0, bw - si - sw, ay, 180, 90, 8)
    skirt = [(ww + (hw - ww) * t ** 1.3, wy + (L - wy) * t) for t in np.linspace(0, 1, 8)]
    hem = _arc(0, L, hw, rng.uniform(0.02, 0.06), 0, 180, 11)
    right = armhole + skirt
    left = [(-x, y) for x, y in right[::-1]]
    s.body.append([(-si - sw, 0)] + neck + [(si + sw, 0)] + right + hem[1:-1] + left)
    s.holes.append(_arc(0, 0, si, nd * 0.3, 180, 0) + neck[::-1])
    if rng.random() < 0.35:  # cap sleeves
        s.both("body", [(si + sw - 0.01, 0.0), (bw + 0.1, 0.09), (bw + 0.06, 0.15), (bw, ay * 0.8)])
    s.lines.append((neck, 2, "trim"))
    if rng.random() < 0.4:  # belt
        s.bands.append(([(-ww - 0.005, wy - 0.03), (ww + 0.005, wy - 0.03), (ww + 0.01, wy + 0.03),
                         (-ww - 0.01, wy + 0.03)], "trim"))
    else:
        s.lines.append(([(-ww, wy), (ww, wy)], 1, "seam"))
    for k in range(int(rng.integers(1, 4))):  # pleats fanning out to the hem
        x = ww * (k + 1) / 4
        s.both("lines", [(x, wy + 0.05), (hw * (k + 1) / 4 * 1.1, L - 0.03)], 1, "seam")
    s.anchor = (0.0, (wy + L) / 2)
    return s


def _skirt(rng) -> _Shape:
    s = _Shape()
    wb, bh = rng.uniform(0.26, 0.32), rng.uniform(0.05, 0.07)
    L, hw = rng.uniform(0.5, 0.8), rng.uniform(0.4, 0.6)
    side = [(wb + (hw - wb) * t ** 1.2, bh + L * t) for t in np.linspace(0, 1, 7)]
    hem = _arc(0, bh + L, hw, rng.uniform(0.03, 0.07), 0, 180, 11)
    s.body.append([(-wb, 0), (wb, 0)] + side + hem[1:-1] + [(-x, y) for x, y in side[::-1]])
    s.lines.append(([(-wb, bh), (wb, bh)], 1, "seam"))
    s.buttons.append(((wb * 0.6, bh / 2), 0.018))
    if rng.random() < 0.7:  # pleats
        n = int(rng.integers(3, 6))
        for k in range(1, n):
            f = k / n * 2 - 1
            s.lines.append(([(wb * f * 0.9, bh + 0.02), (hw * f * 0.95, bh + L)], 1, "seam"))
    s.anchor = (0.0, bh + 0.55 * L)
    return s


def _legwear(rng, long: bool) -> _Shape:
    """Pants (long) and shorts: waistband, two legs, fly, pockets."""
    s = _Shape()
    wb, bh = rng.uniform(0.26, 0.31), 0.06
    hip = wb + rng.uniform(0.02, 0.05)
    if long:
        L, cy = rng.uniform(1.5, 1.75), bh + rng.uniform(0.28, 0.34)
        ho = rng.uniform(0.24, 0.34)  # outer x of the hem
        lw = min(rng.uniform(0.18, 0.26), ho - 0.035)  # hem width: keep a gap between the legs
    else:
        L, cy = rng.uniform(0.52, 0.68), bh + rng.uniform(0.22, 0.28)
        ho = rng.uniform(0.36, 0.44)
        lw = min(rng.uniform(0.25, 0.31), ho - 0.06)
    right = [(wb, 0), (wb, bh), (hip, 0.24), (ho, L), (ho - lw, L), (0.0, cy)]
    s.body.append([(-x, y) for x, y in right[:-1]][::-1] + right)
    s.lines.append(([(-wb, bh), (wb, bh)], 1, "seam"))
    s.lines.append(([(0.035, bh), (0.035, cy - 0.07), (0.0, cy - 0.02)], 1, "seam"))  # fly
    s.buttons.append(((0.0, bh / 2), 0.017))
    s.both("lines", _arc(wb, bh, wb * 0.45, 0.13, 180, 90, 7), 1, "seam")  # front pockets
    for x in (wb * 0.35, wb * 0.85):  # belt loops
        s.both("lines", [(x, -0.005), (x, bh + 0.01)], 2, "seam")
    cuff = 0.1 if long else rng.choice([0.0, 0.07])
    if cuff:
        s.both("lines", [(ho - lw, L - cuff), (ho - (ho - hip) * cuff / (L - 0.24), L - cuff)], 1, "seam")
    if not long:
        s.anchor = (0.0, bh + 0.12)
    else:
        s.anchor = ((ho - lw / 2) * 0.8, 0.5 * L)
    return s


_BUILDERS = {
    "blouse": _blouse, "dress": _dress, "pants": lambda rng: _legwear(rng, True), "pullover": _pullover,
    "shirt": _shirt, "shorts": lambda rng: _legwear(rng, False), "skirt": _skirt, "top": _top,
    "t-shirt": _t_shirt,
}


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------

class _Placement:
    """Shape units -> canvas pixels: long side = ``scale`` * S, rotated, shifted."""

    def __init__(self, shape: _Shape, S: int, scale: float, angle: float, shift):
        pts = np.array([p for poly in shape.body + shape.over for p in poly], np.float64)
        lo, hi = pts.min(0), pts.max(0)
        self.centre = (lo + hi) / 2
        self.k = scale * S / float((hi - lo).max())  # px per unit
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.origin = np.array([S / 2 + shift[0], S / 2 + shift[1]])

    def __call__(self, pts):
        p = (np.asarray(pts, np.float64).reshape(-1, 2) - self.centre) * self.k
        x, y = p[:, 0] * self.cos - p[:, 1] * self.sin, p[:, 0] * self.sin + p[:, 1] * self.cos
        return [(float(a), float(b)) for a, b in zip(x + self.origin[0], y + self.origin[1])]


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion by a (2r+1)-square, separably (much faster than PIL's MinFilter)."""
    out = mask
    for axis in (0, 1):
        src, res = out, out.copy()
        for k in range(1, r + 1):
            a, b = [slice(None)] * 2, [slice(None)] * 2
            a[axis], b[axis] = slice(k, None), slice(None, -k)
            res[tuple(a)] &= src[tuple(b)]
            res[tuple(b)] &= src[tuple(a)]
        out = res
    return out


def _polygon_mask(S, polys, place) -> np.ndarray:
    m = Image.new("L", (S, S), 0)
    d = ImageDraw.Draw(m)
    for poly in polys:
        d.polygon(place(poly), fill=255)
    return np.asarray(m) > 127


def _check(category, texture, size):
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}; got {category!r}")
    if texture not in TEXTURES:
        raise ValueError(f"texture must be one of {', '.join(TEXTURES)}; got {texture!r}")
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer >= 16; got {size!r}")


def draw_garment(category: str, texture: str, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw one garment of ``category`` with ``texture`` as a ``size`` x ``size`` RGB image.

    Everything random (shape proportions, colours, pattern scale and angle, placement, noise)
    comes from ``rng``, so the same generator state gives the same image.
    """
    _check(category, texture, size)
    S = int(size) * SUPERSAMPLE
    palette = random_palette(rng)
    shape = _BUILDERS[category](rng)
    scale = rng.uniform(0.6, 0.9)
    angle = math.radians(rng.uniform(-4, 4))
    room = (1 - scale) / 2 * S * 0.8
    place = _Placement(shape, S, scale, angle, rng.uniform(-room, room, 2))
    stroke = SUPERSAMPLE * max(1.0, size / 96)  # one line unit in canvas px

    body = _polygon_mask(S, shape.body, place)
    holes = _polygon_mask(S, shape.holes, place) & body
    over = _polygon_mask(S, shape.over, place)
    garment = body | over
    ctx = Context(S, int(size), garment, place([shape.anchor])[0], scale * S, angle, palette)

    # Background: flat or a gentle gradient, with a soft drop shadow behind the garment.
    t = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
    canvas = palette.background * (1 - t) + palette.background2 * t
    canvas = np.broadcast_to(canvas, (S, S, 3)).copy()
    if rng.random() < 0.5:
        shadow = Image.fromarray((garment * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(S / 40))
        dx, dy = (int(v) for v in rng.integers(1, max(2, S // 40), 2))
        shadow = np.roll(np.asarray(shadow, np.float32) / 255, (dy, dx), (0, 1))
        canvas *= 1 - 0.25 * shadow[..., None]

    fabric = PATTERNS[texture](ctx, rng)
    # Soft light from one side, so even a plain garment is not one flat colour.
    light_angle = rng.uniform(0, 2 * math.pi)
    along, _ = ctx.grid(light_angle)
    fabric *= (1 + rng.uniform(0.04, 0.1) * (along / S - 0.5))[..., None]
    inside = np.asarray(shade(palette.base, 0.55), np.float32)
    canvas[body] = fabric[body]
    canvas[holes] = inside
    canvas[over] = fabric[over]

    # Outline: the rim of the garment mask in a dark shade of the garment colour.
    edge = garment & ~_erode(garment, round(stroke))
    canvas[edge] = 0.35 * canvas[edge] + 0.65 * shade(palette.base, 0.45)

    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    colour = {"seam": palette.seam, "trim": palette.trim}
    colour = {k: tuple(int(x) for x in v) for k, v in colour.items()}
    for poly, role in shape.bands:
        draw.polygon(place(poly), fill=colour[role], outline=colour["seam"])
    for pts, width, role in shape.lines:
        draw.line(place(pts), fill=colour[role], width=max(1, round(width * stroke)), joint="curve")
    button = tuple(int(x) for x in (palette.accents[2] if rng.random() < 0.5 else palette.seam))
    for centre, r in shape.buttons:
        (x, y), = place([centre])
        r = max(r * place.k, 1.2 * SUPERSAMPLE)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=button)

    img = img.reduce(SUPERSAMPLE)
    noise = rng.normal(0, rng.uniform(1.5, 5.0), (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))
