"""Writer of the DeepFashion Category and Attribute Prediction tree (``deepfashion/``).

Layout, as in the real benchmark: ``img/<Product_Name>/img_00000001.jpg`` (2-6 views per
product), ``Anno/list_category_cloth.txt`` (the real 50 categories), ``Anno/list_attr_cloth.txt``
(a subset of the real 1000 attribute names, all five types), ``Anno/list_category_img.txt``,
``Anno/list_attr_img.txt`` (1 / -1 / 0 per attribute) and ``Eval/list_eval_partition.txt``
(train / val / test, about 70/15/15 of the images within each category, split by product).
Every file is a count line, a header line, then left-justified names and values.

The awkward details of the real files are kept, so the readers meet them here first: names with
spaces (``abstract print``, ``polka dot``), category labels zero-padded in about 20% of the rows
(``018``), about 15% of the images with a synonym as a second positive texture attribute
(``stripe``, ``polka dot``, ``print``, ...), about 10% with no positive texture attribute at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .garments import CATEGORIES
from .trees import balanced_labels, plan_rng

FOLDER = "deepfashion"
TREE = 0  # see trees.py: the tree id in the seeds
ENTRIES = ("img", "Anno", "Eval")  # what write_files and the images put at the top of the tree

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


def plan(n: int, seed: int) -> list[dict]:
    """The ``n`` images of the tree, grouped into products, with splits and attributes."""
    rng = plan_rng(seed, TREE)
    by_pair: dict = {}
    for pair in balanced_labels(n, rng):
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
    return rows


def _table(path: Path, header: str, rows, width: int) -> None:
    """A DeepFashion annotation file: count line, header line, left-justified names, values."""
    lines = [str(len(rows)), header] + [f"{name:<{width}}{value}" for name, value in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_files(root: Path, rows: list[dict]) -> None:
    """The annotation files under ``Anno/`` and the split file under ``Eval/``."""
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


def summary(rows: list[dict]) -> dict:
    """Products (one folder each) and images per split."""
    splits = {s: sum(r["split"] == s for r in rows) for s in SPLIT_FRACTIONS}
    return {
        "products": len({r["path"].rsplit("/", 1)[0] for r in rows}),
        "deepfashion_splits": "/".join(f"{s} {k}" for s, k in splits.items()),
    }
