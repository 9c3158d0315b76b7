"""Writer of the Fashion tree (``fashion/``): images in one folder, labels in CSV files.

``images/000001.jpg`` ... with ``category.csv`` and ``texture.csv`` (``path,label``, every image
in both) and ``catalog.csv`` (``path,category,texture``). No split column: the reader draws the
stratified 80/20 split. Labels are balanced over the 9 x 5 (category, texture) pairs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .trees import balanced_labels, plan_rng

FOLDER = "fashion"
TREE = 1  # see trees.py: the tree id in the seeds
ENTRIES = ("images", "category.csv", "texture.csv", "catalog.csv")


def plan(n: int, seed: int) -> list[dict]:
    """The ``n`` images of the tree, numbered from 1, with their labels."""
    labels = balanced_labels(n, plan_rng(seed, TREE))
    return [{"path": f"images/{i + 1:06d}.jpg", "category": c, "texture": t}
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
    _write_csv(root / "catalog.csv", ["path", "category", "texture"],
               [(r["path"], r["category"], r["texture"]) for r in rows])


def summary(rows: list[dict]) -> dict:
    """Nothing beyond the image count, which every tree shares."""
    return {}
