"""Writer of the DeepFashion In-shop Clothes Retrieval tree (``inshop/``): several views of each item.

Layout, as in the real benchmark: ``img/<MEN|WOMEN>/<Section>/id_00000001/01_1_front.jpg`` (the
views ``front``, ``side``, ``back``, ``full`` and ``additional``, numbered 1, 2, 3, 4, 7 as in
the real file names) and ``Eval/list_eval_partition.txt``: a count line, the header
``image_name item_id evaluation_status``, then left-justified rows ``path item_id status``.
About half the items are ``train``; each other item's views are split into ``query``
(``floor(k / 2)`` of its ``k`` views) and ``gallery`` (the rest), as the real benchmark splits
its 3,985 test items.

An item is one garment: its category, texture, proportions, colours and pattern come from the
item's own seed ``[seed, TREE, item, 1]``, so every view shows the same garment. Each view
(seed ``[seed, TREE, image]``) moves it: another background (half the views), scale, a tilt,
a shift, and by view: ``side`` squeezes it sideways, ``back`` mirrors it, ``full`` shows it
smaller (a full-figure shot), ``additional`` is a close-up crop; lighting and noise change too.
Items of the same category and texture differ only in proportions, colours and pattern: a
category or texture classifier is not trained to tell them apart, a metric network is.

The tree has ``n // 3`` images (at least ``MIN_IMAGES``, rounded up to whole items of 3-5
views), so adding it to ``synthesize`` costs a third of another tree.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from .garments import draw_garment
from .trees import balanced_labels, plan_rng

FOLDER = "inshop"
TREE = 3  # see trees.py: the tree id in the seeds
ENTRIES = ("img", "Eval")
MIN_IMAGES = 24
VIEWS_PER_ITEM = (3, 5)  # inclusive range
TRAIN_FRACTION = 0.5  # of the items; the real benchmark: 3,997 train items, 3,985 test items
VIEW_NUMBER = {"front": 1, "side": 2, "back": 3, "full": 4, "additional": 7}
# Each category's In-shop section(s): (gender, folder); two entries = either, drawn per item.
SECTIONS = {
    "blouse": (("WOMEN", "Blouses_Shirts"),), "dress": (("WOMEN", "Dresses"),),
    "pants": (("WOMEN", "Pants"), ("MEN", "Pants")), "pullover": (("WOMEN", "Sweaters"), ("MEN", "Sweaters")),
    "shirt": (("MEN", "Shirts_Polos"),), "shorts": (("WOMEN", "Shorts"), ("MEN", "Shorts")),
    "skirt": (("WOMEN", "Skirts"),), "top": (("WOMEN", "Tees_Tanks"),), "t-shirt": (("MEN", "Tees_Tanks"),),
}
BACKGROUND_THRESHOLD = 30  # a pixel further than this (any channel) from the backdrop is garment


def tree_images(n: int) -> int:
    """The tree's image budget for ``synthesize(n=...)``."""
    return max(MIN_IMAGES, n // 3)


def plan(n: int, seed: int) -> list[dict]:
    """Items of 3-5 views until ``tree_images(n)`` images, labels balanced over the 45 pairs."""
    rng = plan_rng(seed, TREE)
    counts, total = [], tree_images(n)
    while sum(counts) < total:
        counts.append(int(rng.integers(VIEWS_PER_ITEM[0], VIEWS_PER_ITEM[1] + 1)))
    labels = balanced_labels(len(counts), rng)
    n_train = int(round(len(counts) * TRAIN_FRACTION))
    trained = set(rng.permutation(len(counts))[:n_train].tolist())
    others = [v for v in VIEW_NUMBER if v != "front"]
    rows = []
    for item, (k, (category, texture)) in enumerate(zip(counts, labels)):
        gender, section = SECTIONS[category][int(rng.integers(len(SECTIONS[category])))]
        views = ["front"] + sorted(rng.choice(others, k - 1, replace=False).tolist(), key=VIEW_NUMBER.get)
        if item in trained:
            splits = ["train"] * k
        else:
            order = rng.permutation(k)
            splits = ["query" if int(np.flatnonzero(order == j)[0]) < k // 2 else "gallery" for j in range(k)]
        item_id = f"id_{item + 1:08d}"
        for view, split in zip(views, splits):
            rows.append({"path": f"img/{gender}/{section}/{item_id}/01_{VIEW_NUMBER[view]}_{view}.jpg",
                         "category": category, "texture": texture, "item": item, "item_id": item_id,
                         "view": view, "split": split})
    return rows


# --------------------------------------------------------------------------- drawing a view


def _backdrop(img: np.ndarray) -> np.ndarray:
    """The garment's backdrop, a vertical gradient from the top row's median colour to the
    bottom row's (draw_garment's background, which the garment rarely reaches)."""
    t = np.linspace(0, 1, img.shape[0], dtype=np.float32)[:, None, None]
    top, bottom = np.median(img[0], 0), np.median(img[-1], 0)
    return np.broadcast_to(top * (1 - t) + bottom * t, img.shape)


def _new_backdrop(size: int, rng) -> np.ndarray:
    """A light backdrop of another colour, flat or a gradient."""
    def colour():
        base = rng.uniform(150, 255, 3)
        return base + (255 - base) * rng.uniform(0.2, 0.7)

    top = colour()
    bottom = top * rng.uniform(0.8, 1.0) if rng.random() < 0.5 else top
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - t) + bottom * t, (size, size, 3)).astype(np.float32)


def _pose(view: str, size: int, rng) -> tuple:
    """(scale x, scale y, angle in radians, shift in px) of a view."""
    scale, squeeze, mirror = rng.uniform(0.92, 1.05), 1.0, False
    shift = rng.uniform(-0.06, 0.06, 2) * size
    tilt = rng.uniform(-5, 5)
    if view == "side":
        squeeze = rng.uniform(0.7, 0.82)
    elif view == "back":
        mirror = True
    elif view == "full":
        scale = rng.uniform(0.62, 0.75)
    elif view == "additional":  # a close-up: part of the garment fills the frame
        scale = rng.uniform(1.45, 1.8)
        shift = rng.uniform(-0.25, 0.25, 2) * size
    sx = scale * squeeze * (-1 if mirror else 1)
    return sx, scale, math.radians(tilt), shift


def _affine(size: int, sx: float, sy: float, angle: float, shift) -> tuple:
    """PIL's AFFINE data (output pixel -> input pixel) of: scale by (sx, sy) and rotate about
    the centre, then shift."""
    c = (size - 1) / 2
    cos, sin = math.cos(angle), math.sin(angle)
    forward = np.array([[cos * sx, -sin * sy], [sin * sx, cos * sy]])
    inv = np.linalg.inv(forward)
    offset = np.array([c, c]) - inv @ (np.array([c, c]) + np.asarray(shift))
    return (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])


def draw(row: dict, size: int, key) -> Image.Image:
    """One view of the row's item: the item's garment (its own seed), moved as the view's seed says."""
    item_rng = np.random.default_rng([key[0], key[1], row["item"], 1])
    garment = np.asarray(draw_garment(row["category"], row["texture"], size, item_rng), np.float32)
    rng = np.random.default_rng(key)
    backdrop = _backdrop(garment)
    mask = np.abs(garment - backdrop).max(-1) > BACKGROUND_THRESHOLD
    rgba = np.dstack([garment, mask * 255.0]).astype(np.uint8)
    moved = Image.fromarray(rgba, "RGBA").transform(
        (size, size), Image.Transform.AFFINE, _affine(size, *_pose(row["view"], size, rng)),
        resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0, 0))
    moved = np.asarray(moved, np.float32)
    alpha = moved[..., 3:] / 255
    background = _new_backdrop(size, rng) if rng.random() < 0.5 else backdrop
    light = rng.uniform(0.9, 1.1)
    out = background * (1 - alpha) + np.clip(moved[..., :3] * light, 0, 255) * alpha
    out += rng.normal(0, rng.uniform(1.5, 4.0), out.shape)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------- files


def write_files(root: Path, rows: list[dict]) -> None:
    """``Eval/list_eval_partition.txt``: count line, header, then ``path item_id status``."""
    width = max(len(r["path"]) for r in rows) + 4
    lines = [str(len(rows)), "image_name item_id evaluation_status"]
    lines += [f"{r['path']:<{width}}{r['item_id']} {r['split']}" for r in rows]
    path = root / "Eval/list_eval_partition.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def summary(rows: list[dict]) -> dict:
    """Images, items and images per split."""
    splits = {s: sum(r["split"] == s for r in rows) for s in ("train", "query", "gallery")}
    return {
        "inshop_images": len(rows),
        "inshop_items": len({r["item"] for r in rows}),
        "inshop_splits": "/".join(f"{s} {k}" for s, k in splits.items()),
    }
