"""Synthetic garment catalog: the stand-in for DeepFashion and the Fashion dataset.

Real data is not on these machines, so tests and the demo run on garments drawn here with PIL:
9 categories, each with its own silhouette and details (sleeves, collar and buttons, ribbed
cuffs, flare, two legs, ...), and 5 textures drawn inside the silhouette (graphic, plaid,
plain, spotted, striped), with random colours, scale, position, background and pixel noise.
Patterns are sized relative to the image, so they survive a downscale to 64 px.

:func:`synthesize` writes the images as JPEG files in the two layouts the readers expect:

* ``deepfashion/`` -- the Category and Attribute Prediction benchmark (``img/<Product>/...``,
  ``Anno/*.txt``, ``Eval/list_eval_partition.txt``), with the real category and attribute
  names and the awkward details of the real files (names with spaces, zero-padded labels,
  multi-label textures, images without any texture attribute);
* ``fashion/`` -- ``images/<id>.jpg`` with ``category.csv``, ``texture.csv`` (``path,label``)
  and ``catalog.csv`` (``path,category,texture``).

Same seed, same bytes: image ``i`` of a tree is drawn from its own generator
``np.random.default_rng([seed, tree, i])``, so the files do not depend on worker scheduling.
"""

from __future__ import annotations

import colorsys
import csv
import functools
import io
import math
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from ..io import atomic_dir

CATEGORIES = ("blouse", "dress", "pants", "pullover", "shirt", "shorts", "skirt", "top", "t-shirt")
TEXTURES = ("graphic", "plaid", "plain", "spotted", "striped")

# The 50 categories of DeepFashion's list_category_cloth.txt, in the real order, with their type
# (1 upper body, 2 lower body, 3 full body).
DEEPFASHION_CATEGORIES = (
    *((name, 1) for name in (
        "Anorak", "Blazer", "Blouse", "Bomber", "Button-Down", "Cardigan", "Flannel", "Halter",
        "Henley", "Hoodie", "Jacket", "Jersey", "Parka", "Peacoat", "Poncho", "Sweater", "Tank",
        "Tee", "Top", "Turtleneck")),
    *((name, 2) for name in (
        "Capris", "Chinos", "Culottes", "Cutoffs", "Gauchos", "Jeans", "Jeggings", "Jodhpurs",
        "Joggers", "Leggings", "Sarong", "Shorts", "Skirt", "Sweatpants", "Sweatshorts", "Trunks")),
    *((name, 3) for name in (
        "Caftan", "Cape", "Coat", "Coverup", "Dress", "Jumpsuit", "Kaftan", "Kimono", "Nightdress",
        "Onesie", "Robe", "Romper", "Shirtdress", "Sundress")),
)
DEEPFASHION_CATEGORY = {
    "blouse": "Blouse", "dress": "Dress", "pants": "Jeans", "pullover": "Sweater",
    "shirt": "Button-Down", "shorts": "Shorts", "skirt": "Skirt", "top": "Tank", "t-shirt": "Tee",
}

# A subset of DeepFashion's 1000 attribute names (alphabetical, as in list_attr_cloth.txt), all
# five types: 1 texture, 2 fabric, 3 shape, 4 part, 5 style.
DEEPFASHION_ATTRIBUTES = tuple(sorted((
    *((name, 1) for name in (
        "abstract", "abstract print", "checked", "dot", "dots", "floral", "floral print", "graphic",
        "paisley", "plaid", "polka dot", "print", "printed", "solid", "stripe", "striped", "stripes",
        "tribal")),
    *((name, 2) for name in (
        "chambray", "chiffon", "cotton", "crochet", "denim", "faux leather", "knit", "lace", "woven")),
    *((name, 3) for name in (
        "a-line", "bodycon", "boxy", "flare", "maxi", "midi", "mini", "oversized", "peasant", "shift",
        "skinny", "wide-leg")),
    *((name, 4) for name in (
        "bell-sleeve", "button", "collar", "cuffed", "drawstring", "hem", "long-sleeve", "pocket",
        "racerback", "scoop-neck", "sleeveless", "v-neck")),
    *((name, 5) for name in ("americana", "beach", "boho", "classic", "party", "retro", "sporty", "summer")),
)))
# Each synthetic texture's main DeepFashion attribute, and the synonyms that sometimes join it.
TEXTURE_ATTRIBUTE = {"graphic": "graphic", "plaid": "plaid", "plain": "solid", "spotted": "dot",
                     "striped": "striped"}
TEXTURE_SYNONYMS = {"graphic": ("print", "abstract print"), "plaid": ("checked",), "plain": (),
                    "spotted": ("polka dot", "dots"), "striped": ("stripe", "stripes")}
# Non-texture attributes that fit a category (each switched on at random).
CATEGORY_ATTRIBUTES = {
    "blouse": ("v-neck", "bell-sleeve", "chiffon", "peasant"),
    "dress": ("a-line", "midi", "maxi", "flare"),
    "pants": ("denim", "skinny", "pocket", "wide-leg"),
    "pullover": ("knit", "cuffed", "oversized", "long-sleeve"),
    "shirt": ("button", "collar", "chambray", "long-sleeve"),
    "shorts": ("denim", "cuffed", "pocket", "drawstring"),
    "skirt": ("a-line", "mini", "flare", "midi"),
    "top": ("sleeveless", "racerback", "scoop-neck"),
    "t-shirt": ("cotton", "boxy", "hem"),
}
SECOND_TEXTURE_RATE = 0.15  # images with a synonym as a second positive texture attribute
NO_TEXTURE_RATE = 0.10  # images with no positive texture attribute (readers leave them out)
ZERO_PADDED_RATE = 0.2  # list_category_img.txt rows whose label is written "003"
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
JPEG_QUALITY = 90
SUPERSAMPLE = 2  # draw at twice the size, then downsample: smooth edges

# Words for product folder names: texture word, detail word, then the DeepFashion category.
_TEXTURE_WORDS = {
    "graphic": ("Graphic", "Abstract_Print", "Geo_Print", "Printed", "Graphic_Print"),
    "plaid": ("Plaid", "Checked", "Tartan_Plaid", "Classic_Plaid"),
    "plain": ("Classic", "Solid", "Basic", "Everyday", "Essential"),
    "spotted": ("Polka_Dot", "Dotted", "Dot_Print", "Spotted"),
    "striped": ("Striped", "Stripe", "Breton_Stripe", "Nautical_Striped", "Multi-Stripe"),
}
_DETAIL_WORDS = {
    "blouse": ("Sheer", "Pleated-Front", "Chiffon", "Peasant", "Tie-Neck", "Woven", "Ruffled"),
    "dress": ("A-Line", "Skater", "Midi", "Maxi", "Sleeveless", "Swing", "Flared"),
    "pants": ("Skinny", "Slim", "High-Rise", "Straight-Leg", "Distressed", "Mid-Rise"),
    "pullover": ("Knit", "Cable_Knit", "Crew_Neck", "Ribbed", "Oversized", "Marled"),
    "shirt": ("Classic", "Oxford", "Chambray", "Slim_Fit", "Pocket", "Woven"),
    "shorts": ("Denim", "Cuffed", "Drawstring", "Linen", "Chino", "Woven"),
    "skirt": ("A-Line", "Pleated", "Skater", "Mini", "Midi", "Flared"),
    "top": ("Racerback", "Knit", "Scoop_Neck", "Ribbed", "Muscle", "Cotton"),
    "t-shirt": ("Knit", "Crew_Neck", "Pocket", "Boxy", "Cotton", "Slub"),
}


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


def _shade(c, f) -> np.ndarray:
    """Darker (f < 1) or lighter (f > 1, towards white) version of a colour."""
    c = np.asarray(c, np.float32)
    return c * f if f <= 1 else c + (255 - c) * (f - 1)


@dataclass
class _Palette:
    background: np.ndarray
    background2: np.ndarray
    base: np.ndarray
    accents: list  # pattern colours, contrasting with the base

    @property
    def seam(self):
        return _shade(self.base, 0.6) if _luma(self.base) > 0.3 else _shade(self.base, 1.45)

    @property
    def trim(self):
        return _shade(self.base, 0.72) if _luma(self.base) > 0.3 else _shade(self.base, 1.35)


def _palette(rng) -> _Palette:
    if rng.random() < 0.8:  # light studio backdrop
        bg = _hsv(rng.random(), rng.uniform(0, 0.2), rng.uniform(0.78, 1.0))
    else:
        bg = _random_colour(rng)
    bg2 = _shade(bg, rng.uniform(0.8, 1.0)) if rng.random() < 0.5 else bg
    base = _contrasting(rng, bg, 0.2)
    accents = [_contrasting(rng, base, 0.3) for _ in range(3)]
    return _Palette(bg, bg2, base, accents)


# --------------------------------------------------------------------------------------------
# Textures: each returns an S x S x 3 float image of the fabric (masked later).
# ``ctx`` holds the canvas size, the image size, the garment mask, anchor, scale and angle.
# --------------------------------------------------------------------------------------------

@dataclass
class _Context:
    S: int  # canvas side (supersampled)
    size: int  # output side
    mask: np.ndarray  # bool, where the garment is
    anchor: tuple  # canvas px
    garment: float  # garment long side, canvas px
    angle: float  # garment rotation, radians
    palette: _Palette

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


_TEXTURE_FUNCS = {"graphic": _graphic, "plaid": _plaid, "plain": _plain, "spotted": _spotted,
                  "striped": _striped}


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
    palette = _palette(rng)
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
    ctx = _Context(S, int(size), garment, place([shape.anchor])[0], scale * S, angle, palette)

    # Background: flat or a gentle gradient, with a soft drop shadow behind the garment.
    t = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
    canvas = palette.background * (1 - t) + palette.background2 * t
    canvas = np.broadcast_to(canvas, (S, S, 3)).copy()
    if rng.random() < 0.5:
        shadow = Image.fromarray((garment * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(S / 40))
        dx, dy = (int(v) for v in rng.integers(1, max(2, S // 40), 2))
        shadow = np.roll(np.asarray(shadow, np.float32) / 255, (dy, dx), (0, 1))
        canvas *= 1 - 0.25 * shadow[..., None]

    fabric = _TEXTURE_FUNCS[texture](ctx, rng)
    # Soft light from one side, so even a plain garment is not one flat colour.
    light_angle = rng.uniform(0, 2 * math.pi)
    along, _ = ctx.grid(light_angle)
    fabric *= (1 + rng.uniform(0.04, 0.1) * (along / S - 0.5))[..., None]
    inside = np.asarray(_shade(palette.base, 0.55), np.float32)
    canvas[body] = fabric[body]
    canvas[holes] = inside
    canvas[over] = fabric[over]

    # Outline: the rim of the garment mask in a dark shade of the garment colour.
    edge = garment & ~_erode(garment, int(round(stroke)))
    canvas[edge] = 0.35 * canvas[edge] + 0.65 * _shade(palette.base, 0.45)

    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    colour = {"seam": palette.seam, "trim": palette.trim}
    colour = {k: tuple(int(x) for x in v) for k, v in colour.items()}
    for poly, role in shape.bands:
        draw.polygon(place(poly), fill=colour[role], outline=colour["seam"])
    for pts, width, role in shape.lines:
        draw.line(place(pts), fill=colour[role], width=max(1, int(round(width * stroke))), joint="curve")
    button = tuple(int(x) for x in (palette.accents[2] if rng.random() < 0.5 else palette.seam))
    for centre, r in shape.buttons:
        (x, y), = place([centre])
        r = max(r * place.k, 1.2 * SUPERSAMPLE)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=button)

    img = img.reduce(SUPERSAMPLE)
    noise = rng.normal(0, rng.uniform(1.5, 5.0), (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------
# The two dataset trees
# --------------------------------------------------------------------------------------------

DEEPFASHION, FASHION = 0, 1  # tree ids in the per-image seeds [seed, tree, i]
_PLAN = 2  # [seed, _PLAN, tree] seeds the labels, products, splits and attributes of a tree


def _balanced_labels(n: int, rng) -> list[tuple[str, str]]:
    """``n`` (category, texture) pairs: all 45 pairs in a random order, again and again."""
    pairs = [(c, t) for c in CATEGORIES for t in TEXTURES]
    out = []
    while len(out) < n:
        out += [pairs[i] for i in rng.permutation(len(pairs))]
    return out[:n]


def _product_name(category, texture, rng, used: set) -> str:
    noun = DEEPFASHION_CATEGORY[category]
    for _ in range(20):
        name = f"{rng.choice(_TEXTURE_WORDS[texture])}_{rng.choice(_DETAIL_WORDS[category])}_{noun}"
        if name not in used:
            break
    base, k = name, 2
    while name in used:  # every short name taken: number it
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name


def _partition(products: list[dict], rng) -> None:
    """Set each product's split, about 70/15/15 of the images within each category (the real
    benchmark splits by product, so the views of one product never straddle train and test)."""
    for category in CATEGORIES:
        items = [p for p in products if p["category"] == category]
        total = sum(p["count"] for p in items)
        done = dict.fromkeys(SPLIT_FRACTIONS, 0)
        for i in rng.permutation(len(items)):  # each product to the split furthest below target
            split = max(SPLIT_FRACTIONS, key=lambda s: SPLIT_FRACTIONS[s] * total - done[s])
            items[i]["split"] = split
            done[split] += items[i]["count"]
    if len(products) >= len(SPLIT_FRACTIONS):  # tiny catalogs: still no empty split
        for split in SPLIT_FRACTIONS:
            if not any(p["split"] == split for p in products):
                donor = max(SPLIT_FRACTIONS, key=lambda s: sum(p["split"] == s for p in products))
                min((p for p in products if p["split"] == donor), key=lambda p: p["count"])["split"] = split


def _attribute_row(category, texture, rng) -> list[int]:
    """One image's attribute values: 1 positive, -1 negative, 0 unknown."""
    index = {name: i for i, (name, _) in enumerate(DEEPFASHION_ATTRIBUTES)}
    values = np.where(rng.random(len(index)) < 0.01, 0, -1)  # a few unknowns
    r = rng.random()
    if r < NO_TEXTURE_RATE:
        values[index[TEXTURE_ATTRIBUTE[texture]]] = rng.choice([0, -1])  # no positive texture
    else:
        values[index[TEXTURE_ATTRIBUTE[texture]]] = 1
        if r < NO_TEXTURE_RATE + SECOND_TEXTURE_RATE and TEXTURE_SYNONYMS[texture]:
            values[index[rng.choice(TEXTURE_SYNONYMS[texture])]] = 1
    for name in CATEGORY_ATTRIBUTES[category]:
        if rng.random() < 0.35:
            values[index[name]] = 1
    if rng.random() < 0.5:  # and something unrelated
        others = [i for i, (_, kind) in enumerate(DEEPFASHION_ATTRIBUTES) if kind != 1]
        values[rng.choice(others)] = 1
    return [int(v) for v in values]


def _deepfashion_rows(n: int, seed: int) -> tuple[list[dict], int]:
    """The images of the DeepFashion tree, grouped into products, with splits and attributes."""
    rng = np.random.default_rng([seed, _PLAN, DEEPFASHION])
    by_pair: dict = {}
    for pair in _balanced_labels(n, rng):
        by_pair[pair] = by_pair.get(pair, 0) + 1
    products = []
    for (category, texture), count in by_pair.items():
        while count > 0:  # several views per product, as in the real benchmark
            k = min(count, int(rng.integers(2, 7)))
            products.append({"category": category, "texture": texture, "count": k})
            count -= k
    products = [products[i] for i in rng.permutation(len(products))]
    used: set = set()
    for p in products:
        p["name"] = _product_name(p["category"], p["texture"], rng, used)
    _partition(products, rng)
    rows = []
    for p in products:
        for j in range(1, p["count"] + 1):
            rows.append({"path": f"img/{p['name']}/img_{j:08d}.jpg", "category": p["category"],
                         "texture": p["texture"], "split": p["split"],
                         "attributes": _attribute_row(p["category"], p["texture"], rng),
                         "zero_padded": not rows or rng.random() < ZERO_PADDED_RATE})
    return rows, len(products)


def _table(path: Path, header: str, rows, width: int) -> None:
    """A DeepFashion annotation file: count line, header line, left-justified names, values."""
    lines = [str(len(rows)), header] + [f"{name:<{width}}{value}" for name, value in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_deepfashion_annotations(root: Path, rows: list[dict]) -> None:
    category_index = {name: i + 1 for i, (name, _) in enumerate(DEEPFASHION_CATEGORIES)}
    _table(root / "Anno/list_category_cloth.txt", "category_name  category_type",
           [(name, kind) for name, kind in DEEPFASHION_CATEGORIES], 29)
    _table(root / "Anno/list_attr_cloth.txt", "attribute_name  attribute_type",
           [(name, kind) for name, kind in DEEPFASHION_ATTRIBUTES], 29)
    width = max(len(r["path"]) for r in rows) + 4
    labels = []
    for r in rows:
        label = category_index[DEEPFASHION_CATEGORY[r["category"]]]
        labels.append((r["path"], f"{label:03d}" if r["zero_padded"] else f"{label:>3d}"))
    _table(root / "Anno/list_category_img.txt", "image_name  category_label", labels, width)
    _table(root / "Anno/list_attr_img.txt", "image_name  attribute_labels",
           [(r["path"], " ".join(f"{v:>2d}" for v in r["attributes"])) for r in rows], width)
    _table(root / "Eval/list_eval_partition.txt", "image_name  evaluation_status",
           [(r["path"], r["split"]) for r in rows], width)


def _write_csv(path: Path, header, rows) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _render(job) -> None:
    """Worker: draw one image from its own seed and write it as JPEG."""
    path, category, texture, size, key = job
    draw_garment(category, texture, size, np.random.default_rng(key)).save(
        path, format="JPEG", quality=JPEG_QUALITY)


def _render_all(jobs, pool, progress: bool, desc: str) -> None:
    with tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress) as bar:
        results = pool.imap_unordered(_render, jobs, chunksize=8) if pool else map(_render, jobs)
        for _ in results:
            bar.update()


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def synthesize(out_dir, n: int = 2000, size: int = 128, seed: int = 0, progress: bool = True,
               workers: int | None = None) -> dict:
    """Write a synthetic catalog of ``n`` images *per tree* at ``size`` x ``size`` px.

    Two trees, each with its own ``n`` images, classes balanced over the 9 x 5 (category,
    texture) pairs:

    * ``out_dir/deepfashion``: DeepFashion Category and Attribute Prediction layout. Images are
      grouped into products (2-6 views each, ``img/<Product_Name>/img_00000001.jpg``), split
      about 70/15/15 by product within each category. The 9 categories map to real DeepFashion
      names (pants -> Jeans, pullover -> Sweater, shirt -> Button-Down, top -> Tank, t-shirt ->
      Tee). Each texture maps to a texture attribute (graphic, plaid, dot, striped, solid);
      about 15% of the images with a synonym also get it (``stripe``, ``polka dot``, ``print``,
      ...), about 10% get no positive texture attribute at all, some rows write the category
      label zero-padded (``018``).
    * ``out_dir/fashion``: ``images/000001.jpg`` ... with ``category.csv`` and ``texture.csv``
      (``path,label``, every image in both) and ``catalog.csv`` (``path,category,texture``). No
      split column: the reader draws the stratified 80/20 split.

    Same arguments, same bytes (``workers`` does not change the output). Each tree is built in
    a temporary folder and swapped in whole, replacing an older one. ``workers`` processes draw
    the images (default: up to 2). Returns a summary: the two tree paths and counts.
    """
    n = _check_int("n", n, 1)
    size = _check_int("size", size, 16)
    seed = _check_int("seed", seed, 0)
    workers = min(2, os.cpu_count() or 1) if workers is None else _check_int("workers", workers, 1)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir: {out_dir} exists and is not a folder")
    rows, n_products = _deepfashion_rows(n, seed)
    fashion = _balanced_labels(n, np.random.default_rng([seed, _PLAN, FASHION]))

    pool = None
    if workers > 1 and n >= 100:  # below that, starting processes costs more than it saves
        methods = multiprocessing.get_all_start_methods()
        pool = multiprocessing.get_context("fork" if "fork" in methods else "spawn").Pool(workers)
    try:
        with atomic_dir(out_dir / "deepfashion") as tmp:
            for r in rows:
                (tmp / r["path"]).parent.mkdir(parents=True, exist_ok=True)
            jobs = [(str(tmp / r["path"]), r["category"], r["texture"], size, [seed, DEEPFASHION, i])
                    for i, r in enumerate(rows)]
            _render_all(jobs, pool, progress, "deepfashion")
            _write_deepfashion_annotations(tmp, rows)
        with atomic_dir(out_dir / "fashion") as tmp:
            (tmp / "images").mkdir()
            paths = [f"images/{i + 1:06d}.jpg" for i in range(n)]
            jobs = [(str(tmp / p), c, t, size, [seed, FASHION, i])
                    for i, (p, (c, t)) in enumerate(zip(paths, fashion))]
            _render_all(jobs, pool, progress, "fashion")
            _write_csv(tmp / "category.csv", ["path", "label"], [(p, c) for p, (c, _) in zip(paths, fashion)])
            _write_csv(tmp / "texture.csv", ["path", "label"], [(p, t) for p, (_, t) in zip(paths, fashion)])
            _write_csv(tmp / "catalog.csv", ["path", "category", "texture"],
                       [(p, c, t) for p, (c, t) in zip(paths, fashion)])
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    splits = {s: sum(r["split"] == s for r in rows) for s in SPLIT_FRACTIONS}
    return {
        "deepfashion": str(out_dir / "deepfashion"),
        "fashion": str(out_dir / "fashion"),
        "images_per_tree": n,
        "size": size,
        "products": n_products,
        "deepfashion_splits": "/".join(f"{s} {k}" for s, k in splits.items()),
    }
