"""Retrieval data: photos grouped by item, from DeepFashion In-shop or a shop's own CSV.

Two sources give the same :class:`ItemImages` (image paths under a root, the item id of each
image and its split):

* ``inshop``: the DeepFashion In-shop Clothes Retrieval benchmark root. ``Eval/
  list_eval_partition.txt`` has the count on line 1, the header ``image_name item_id
  evaluation_status`` on line 2, then rows ``img/WOMEN/Dresses/id_00000002/02_1_front.jpg
  id_00000002 train``; the split is ``train``, ``query`` or ``gallery`` (the real file: 3,997
  training items / 25,882 images; 14,218 queries and 12,612 gallery images of 3,985 other items).
* ``csv``: a shop's photos, ``path,item_id[,split]`` with paths relative to the CSV's folder
  and ``split`` one of ``train``, ``val``, ``query``, ``gallery``.

Rules, so a metric is never silently wrong:

* An item is either learned (``train``, ``val``) or tested (``query``, ``gallery``), never
  both: an item on both sides would be found by having been trained on. That is an error
  naming both lines.
* Every query item has at least one gallery photo, or the query could never be a hit: an
  error naming the line of its first query. Gallery items without queries are allowed (they
  are distractors, as in a real catalog).
* An unknown split value is an error naming the file and line.
* A training item with one photo only has no second view to pair with; it stays in the data
  but the class-balanced sampler leaves it out of the batches (and the stage says how many).
* A CSV without a ``split`` column is split by item, seeded: ``test_fraction`` of the items
  with two or more photos go to the test, and each test item's photos are split in half
  (``floor(k / 2)`` queries, the rest gallery). Items with one photo only cannot be both
  asked and found, so they join the gallery as distractors.
* ``val`` (for early stopping) is ``val_fraction`` of the training items with two or more
  photos, seeded; it is scored leave-one-out within itself.

A path listed twice is read once, or is an error naming both lines when the rows disagree
(:func:`~.manifest.drop_repeated_paths`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import write_text
from ..errors import DataError
from .catalog import read_csv_rows
from .deepfashion import read_table
from .loader import ImageSource
from .manifest import check_relative_path, drop_repeated_paths

PARTITION = "Eval/list_eval_partition.txt"
INSHOP_SPLITS = ("train", "query", "gallery")
SPLITS = ("train", "val", "query", "gallery")
TEST_SPLITS = ("query", "gallery")
RECORD_HEADER = "# fashionrec retrieval manifest; root: "  # first line of a run's manifest.csv
log = logging.getLogger("fashionrec.data")


@dataclass
class ItemImages:
    """Images grouped by item: ``paths`` relative to ``root``, ``items[i]`` the item id of image
    ``i``, ``splits[i]`` one of :data:`SPLITS`."""

    root: Path
    paths: list[str]
    items: list[str]
    splits: list[str]
    source: str = ""

    def __post_init__(self):
        self.root = Path(self.root)
        if not (len(self.paths) == len(self.items) == len(self.splits)):
            raise ValueError("paths, items and splits must have the same length")

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices) -> ItemImages:
        idx = list(indices)
        return ItemImages(self.root, [self.paths[i] for i in idx], [self.items[i] for i in idx],
                          [self.splits[i] for i in idx], self.source)

    def subset(self, *splits: str) -> ItemImages:
        return self.select(i for i, s in enumerate(self.splits) if s in splits)

    def labels(self) -> np.ndarray:
        """Item ids as integers (in order of first appearance): equal ids, equal labels."""
        codes: dict[str, int] = {}
        return np.array([codes.setdefault(item, len(codes)) for item in self.items], np.int64)

    def image_source(self) -> ImageSource:
        """The loader's view: paths with the integer item labels."""
        return ImageSource(self.root, self.paths, self.labels(), source=self.source)

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{split: (images, items)}`` for the splits present."""
        out = {}
        for split in SPLITS:
            items = [it for it, s in zip(self.items, self.splits) if s == split]
            if items:
                out[split] = (len(items), len(set(items)))
        return out

    def describe(self) -> str:
        return ", ".join(f"{s} {n} images / {k} items" for s, (n, k) in self.counts().items())

    def with_val(self, fraction: float, seed: int) -> ItemImages:
        """A copy with ``fraction`` of the training items (those with two or more photos) moved
        to ``val``, drawn from ``seed``; unchanged when ``fraction`` is 0 or a val split exists."""
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1); got {fraction}")
        if fraction == 0 or "val" in self.splits:
            return self
        photos = Counter(it for it, s in zip(self.items, self.splits) if s == "train")
        candidates = sorted(it for it, n in photos.items() if n >= 2)
        n_val = int(round(len(candidates) * fraction))
        if n_val < 2 and len(candidates) >= 4:
            n_val = 2  # leave-one-out needs two items to tell apart
        chosen = set(np.random.default_rng(seed).permutation(candidates)[:n_val].tolist())
        splits = ["val" if s == "train" and it in chosen else s for it, s in zip(self.items, self.splits)]
        return ItemImages(self.root, self.paths, self.items, splits, self.source)

    def to_csv(self, path) -> None:
        """The run's record of its data: a root line, then ``path,item_id,split``."""
        path = Path(path)
        try:
            root = Path(os.path.relpath(self.root.resolve(), path.parent.resolve()))
        except ValueError:  # another drive (Windows)
            root = self.root.resolve()
        buf = io.StringIO()
        buf.write(RECORD_HEADER + root.as_posix() + "\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "item_id", "split"])
        w.writerows(zip(self.paths, self.items, self.splits))
        write_text(path, buf.getvalue())


# --------------------------------------------------------------------------- checks


def _check_sides(source, linenos, items, splits) -> None:
    """An item on both sides (learned and tested) or a query without gallery: one-line errors."""
    first: dict[tuple[str, bool], int] = {}  # (item, tested?) -> first line
    gallery = set()
    for ln, it, s in zip(linenos, items, splits):
        tested = s in TEST_SPLITS
        first.setdefault((it, tested), ln)
        if (it, not tested) in first:
            a, b = sorted((first[(it, False)], first[(it, True)]))
            raise DataError(f"{source}:{b}: item '{it}' is both learned (train/val) and tested (query/gallery), "
                            f"see line {a}; an item's photos belong to one side only")
        if s == "gallery":
            gallery.add(it)
    for ln, it, s in zip(linenos, items, splits):
        if s == "query" and it not in gallery:
            raise DataError(f"{source}:{ln}: item '{it}' has query photos but no gallery photo, so it can never "
                            f"be found; give it a gallery photo or leave it out")


def _check_files(root: Path, paths, source, linenos, skip_missing: bool) -> list[int]:
    keep, missing = [], 0
    for i, (p, ln) in enumerate(zip(paths, linenos)):
        if (root / p).is_file():
            keep.append(i)
        elif skip_missing:
            missing += 1
        else:
            raise DataError(f"{source}:{ln}: image '{p}' not found under {root} (data.skip_missing skips it)")
    if missing:
        log.warning(f"{source}: skipped {missing} listed image(s) whose file is missing")
    return keep


def _finish(root, source, linenos, paths, items, splits, skip_missing) -> ItemImages:
    keep = drop_repeated_paths(source, linenos, paths, [{"item_id": it, "split": s} for it, s in zip(items, splits)])
    keep = [keep[j] for j in _check_files(root, [paths[i] for i in keep], source,
                                           [linenos[i] for i in keep], skip_missing)]
    linenos, paths = [linenos[i] for i in keep], [paths[i] for i in keep]
    items, splits = [items[i] for i in keep], [splits[i] for i in keep]
    if not paths:
        raise DataError(f"{source}: no images")
    _check_sides(source, linenos, items, splits)
    return ItemImages(root, paths, items, splits, source=str(source))


# --------------------------------------------------------------------------- readers


def read_inshop(root, skip_missing: bool = False) -> ItemImages:
    """The In-shop benchmark under ``root`` (``Eval/list_eval_partition.txt``, images under ``img/``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: In-shop root folder not found")
    path = root / PARTITION
    linenos, paths, items, splits = [], [], [], []
    for ln, name, (item, status) in read_table(path, n_values=2):
        if status not in INSHOP_SPLITS:
            raise DataError(f"{path}:{ln}: evaluation_status must be {', '.join(INSHOP_SPLITS)}; got '{status}'")
        linenos.append(ln)
        paths.append(check_relative_path(name, path, ln))
        items.append(item)
        splits.append(status)
    return _finish(root, path, linenos, paths, items, splits, skip_missing)


def split_by_item(items: list[str], test_fraction: float, seed: int) -> list[str]:
    """Splits for photos without one (see the module's rules): seeded, by item."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    rng = np.random.default_rng(seed)
    photos: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        photos.setdefault(it, []).append(i)
    several = [it for it, rows in photos.items() if len(rows) >= 2]
    n_test = int(round(len(several) * test_fraction))
    tested = set(rng.permutation(several)[:n_test].tolist()) if several else set()
    splits = ["train"] * len(items)
    for it, rows in photos.items():
        if len(rows) == 1:
            splits[rows[0]] = "gallery"  # a distractor: it cannot be both asked and found
        elif it in tested:
            order = rng.permutation(rows)
            for j, i in enumerate(order):
                splits[i] = "query" if j < len(rows) // 2 else "gallery"
    return splits


def read_items_csv(csv_path, test_fraction: float = 0.5, seed: int = 0, skip_missing: bool = False,
                   root=None) -> ItemImages:
    """A ``path,item_id[,split]`` CSV; paths relative to ``root`` (default: the CSV's folder)."""
    csv_path = Path(csv_path)
    header, rows = read_csv_rows(csv_path)
    if "item_id" not in header:
        raise DataError(f"{csv_path}:1: header must have an 'item_id' column (path,item_id[,split]); "
                        f"got {','.join(header)}")
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    has_split = "split" in header
    for ln, row in rows:
        if not row["item_id"]:
            raise DataError(f"{csv_path}:{ln}: item_id is empty")
        if has_split and row["split"] not in SPLITS:
            raise DataError(f"{csv_path}:{ln}: split must be one of {', '.join(SPLITS)}; got '{row['split']}'")
    linenos = [ln for ln, _ in rows]
    paths = [r["path"] for _, r in rows]
    items = [r["item_id"] for _, r in rows]
    if has_split:
        splits = [r["split"] for _, r in rows]
    else:
        try:
            splits = split_by_item(items, test_fraction, seed)
        except ValueError as e:
            raise DataError(f"data.test_fraction: {e}") from None
    root = csv_path.parent if root is None else Path(root)
    return _finish(root, csv_path, linenos, paths, items, splits, skip_missing)


def read_run_record(path) -> ItemImages:
    """A run's ``manifest.csv`` as :meth:`ItemImages.to_csv` wrote it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: the run's data record is missing")
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    if not first.startswith(RECORD_HEADER):
        raise DataError(f"{path}:1: not a fashionrec retrieval manifest (expected '{RECORD_HEADER.strip()}')")
    root = path.parent / first[len(RECORD_HEADER):].strip()
    text = path.read_text(encoding="utf-8").split("\n", 1)[1]
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header != ["path", "item_id", "split"]:
        raise DataError(f"{path}:2: expected header 'path,item_id,split'")
    paths, items, splits = [], [], []
    for lineno, row in enumerate(reader, start=3):
        if len(row) != 3 or row[2] not in SPLITS:
            raise DataError(f"{path}:{lineno}: expected path,item_id,split with split one of {', '.join(SPLITS)}")
        paths.append(check_relative_path(row[0], path, lineno))
        items.append(row[1])
        splits.append(row[2])
    return ItemImages(root, paths, items, splits, source=str(path))
