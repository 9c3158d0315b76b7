"""Writer of the Fashion tree (``fashion/``): images in one folder, labels in CSV files.

``images/000001.jpg`` ... with ``category.csv`` and ``texture.csv`` (``path,label``, every image
in both) and ``catalog.csv`` (``path,category,texture,gender,brand,colour,price,in_stock``). No
split column: the reader draws the stratified 80/20 split. Labels are balanced over the 9 x 5
(category, texture) pairs.

The shop columns of ``catalog.csv`` are drawn from the tree's plan seed after the labels (so the
labels and the images do not depend on them), shaped like a shop's: each brand makes a few
categories (a brand's own categories take 60 % of an item's draws), dresses, skirts and blouses
are mostly women's, the price follows the category and the brand's tier (two decimals), 80 % of
the items are in stock. ``colour`` is the listing's colour name, drawn independently of the
pixels (the garment's drawn colours are random too).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .garments import CATEGORIES
from .trees import balanced_labels, plan_rng

FOLDER = "fashion"
TREE = 1  # see trees.py: the tree id in the seeds
ENTRIES = ("images", "category.csv", "texture.csv", "catalog.csv")
SHOP_COLUMNS = ("gender", "brand", "colour", "price", "in_stock")
# brand -> (price tier, the categories it mostly makes)
BRANDS = {
    "Aurel": (1.6, ("dress", "blouse", "skirt")),
    "Brisk": (0.7, ("t-shirt", "top", "shorts")),
    "Corvo": (1.2, ("shirt", "pants", "pullover")),
    "Dalia": (1.0, ("dress", "skirt", "top")),
    "Estra": (0.8, ("t-shirt", "pullover", "pants")),
    "Fenn": (1.4, ("shirt", "blouse", "pullover")),
    "Gala": (0.9, ("shorts", "pants", "t-shirt")),
    "Hollis": (1.1, ("top", "dress", "shirt")),
}
BASE_PRICE = {"t-shirt": 19.0, "top": 25.0, "shorts": 29.0, "shirt": 39.0, "blouse": 45.0, "skirt": 49.0,
              "pants": 59.0, "pullover": 65.0, "dress": 79.0}
WOMENSWEAR = ("dress", "skirt", "blouse")
COLOURS = ("black", "white", "grey", "navy", "blue", "red", "green", "beige", "pink", "yellow")
OWN_BRAND_RATE = 0.6
IN_STOCK_RATE = 0.8
assert set(BASE_PRICE) == set(CATEGORIES)


def _shop_columns(category: str, rng) -> dict:
    """One item's shop columns, from the plan's generator (a fixed number of draws per item)."""
    own = [b for b, (_, cats) in BRANDS.items() if category in cats]
    u_brand, u_pick, u_gender, u_colour, u_stock = rng.random(5)
    names = own if u_brand < OWN_BRAND_RATE else list(BRANDS)
    brand = names[min(int(u_pick * len(names)), len(names) - 1)]
    if category in WOMENSWEAR:
        gender = "women" if u_gender < 0.9 else "unisex"
    else:
        gender = "women" if u_gender < 0.45 else ("men" if u_gender < 0.85 else "unisex")
    price = BASE_PRICE[category] * BRANDS[brand][0] * float(rng.lognormal(0.0, 0.25))
    return {"gender": gender, "brand": brand, "colour": COLOURS[min(int(u_colour * len(COLOURS)), len(COLOURS) - 1)],
            "price": f"{price:.2f}", "in_stock": "true" if u_stock < IN_STOCK_RATE else "false"}


def plan(n: int, seed: int) -> list[dict]:
    """The ``n`` images of the tree, numbered from 1, with their labels and shop columns."""
    rng = plan_rng(seed, TREE)
    labels = balanced_labels(n, rng)  # first: the labels do not depend on the shop columns
    return [{"path": f"images/{i + 1:06d}.jpg", "category": c, "texture": t, **_shop_columns(c, rng)}
            for i, (c, t) in enumerate(labels)]


def _write_csv(path: Path, header, rows) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def write_files(root: Path, rows: list[dict]) -> None:
    """The three label tables."""
    _write_csv(root / "category.csv", ["path", "label"], [(r["path"], r["category"]) for r in rows])
    _write_csv(root / "texture.csv", ["path", "label"], [(r["path"], r["texture"]) for r in rows])
    columns = ["path", "category", "texture", *SHOP_COLUMNS]
    _write_csv(root / "catalog.csv", columns, [[r[c] for c in columns] for r in rows])


def summary(rows: list[dict]) -> dict:
    """Nothing beyond the image count, which every tree shares."""
    return {}
