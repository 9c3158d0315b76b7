"""The manifest: the one interchange format every reader produces and every stage reads.

A manifest is a list of (image path, label index, split) rows plus the ordered class list.
Paths are stored relative to ``root``. As CSV it is meant to be read and edited by people::

    # fashionrec manifest; classes: ["blouse", "dress", ...]
    # root: ../data/fashion
    path,label,split
    images/000001.jpg,dress,train

Labels are written as class names; the ``# classes`` line fixes their order (the model's
output order). ``root`` is written relative to the CSV's folder when possible.

One path, one row: every reader passes its rows through :func:`drop_repeated_paths`. A path
listed twice would land in train and val alike (or be indexed twice); listed twice with
different labels it is a contradiction, so an error naming both lines.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import write_text
from ..errors import DataError

SPLITS = ("train", "val", "test")
_MAGIC = "# fashionrec manifest; classes: "
# Readers' warnings: without logging configured, Python prints a WARNING as the bare message, one
# line on stderr (not a ``warnings.warn`` with a source line); callers may route it elsewhere.
log = logging.getLogger("fashionrec.data")


@dataclass
class Manifest:
    root: Path
    paths: list[str]
    labels: np.ndarray  # int64 class indices into ``classes``
    splits: list[str]
    classes: list[str]
    task: str = ""
    source: str = ""  # where the rows came from, for messages
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) left out by a reader

    def __post_init__(self):
        self.root = Path(self.root)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not (len(self.paths) == len(self.labels) == len(self.splits)):
            raise ValueError("paths, labels and splits must have the same length")

    def __len__(self) -> int:
        return len(self.paths)

    def abspath(self, i: int) -> Path:
        return self.root / self.paths[i]

    def subset(self, split: str) -> Manifest:
        keep = [i for i, s in enumerate(self.splits) if s == split]
        return self.select(keep)

    def select(self, indices) -> Manifest:
        idx = list(indices)
        return Manifest(
            root=self.root,
            paths=[self.paths[i] for i in idx],
            labels=self.labels[idx] if idx else np.zeros(0, np.int64),
            splits=[self.splits[i] for i in idx],
            classes=list(self.classes),
            task=self.task,
            source=self.source,
        )

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.labels.tolist())
        return {c: counts.get(i, 0) for i, c in enumerate(self.classes)}

    def split_counts(self) -> dict[str, int]:
        return dict(Counter(self.splits))

    def check_trainable(self, splits=("train", "val")) -> None:
        """Clear errors before training starts: empty splits, empty classes, a single class."""
        where = self.source or str(self.root)
        if len(self.classes) < 2:
            raise DataError(f"{where}: need at least 2 classes to train, got {len(self.classes)}")
        for split in splits:
            part = self.subset(split)
            if len(part) == 0:
                raise DataError(f"{where}: the '{split}' split has no images")
        empty = [c for c, n in self.subset("train").class_counts().items() if n == 0]
        if empty:
            raise DataError(f"{where}: no training images for class(es): {', '.join(empty)}")

    # ------------------------------------------------------------------ CSV form

    def to_csv_text(self, csv_dir: Path | None = None) -> str:
        root = self.root
        if csv_dir is not None:
            try:
                root = Path(os.path.relpath(self.root.resolve(), Path(csv_dir).resolve()))
            except ValueError:  # different drives on Windows
                root = self.root.resolve()
        buf = io.StringIO()
        buf.write(_MAGIC + json.dumps(self.classes, ensure_ascii=False) + "\n")
        buf.write(f"# root: {root.as_posix()}\n")
        if csv_dir is not None:  # found again when the run folder is copied or moved elsewhere
            buf.write(f"# root_absolute: {self.root.resolve().as_posix()}\n")
        if self.task:
            buf.write(f"# task: {self.task}\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "label", "split"])
        for p, y, s in zip(self.paths, self.labels.tolist(), self.splits):
            w.writerow([p, self.classes[y], s])
        return buf.getvalue()

    def to_csv(self, path) -> None:
        path = Path(path)
        write_text(path, self.to_csv_text(path.parent))

    @classmethod
    def from_csv(cls, path) -> Manifest:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: manifest not found")
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        classes, root, root_absolute, task = None, None, None, ""
        n_comment = 0
        for line in lines:
            if not line.startswith("#"):
                break
            n_comment += 1
            if line.startswith(_MAGIC):
                try:
                    classes = json.loads(line[len(_MAGIC):])
                except json.JSONDecodeError:
                    raise DataError(f"{path}:{n_comment}: bad class list") from None
            elif line.startswith("# root:"):
                root = line.split(":", 1)[1].strip()
            elif line.startswith("# root_absolute:"):
                root_absolute = line.split(":", 1)[1].strip()
            elif line.startswith("# task:"):
                task = line.split(":", 1)[1].strip()
        if classes is None:
            raise DataError(f"{path}:1: not a fashionrec manifest (missing '{_MAGIC.strip()}' line)")
        root = path.parent / (root or ".")
        if not root.is_dir() and root_absolute and Path(root_absolute).is_dir():
            root = Path(root_absolute)  # the manifest moved (a copied run folder), the data did not
        reader = csv.reader(lines[n_comment:])
        header = next(reader, None)
        if header != ["path", "label", "split"]:
            raise DataError(f"{path}:{n_comment + 1}: expected header 'path,label,split'")
        index = {c: i for i, c in enumerate(classes)}
        paths, labels, splits, linenos = [], [], [], []
        for lineno, row in enumerate(reader, start=n_comment + 2):
            if not row:
                continue
            if len(row) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 fields, got {len(row)}")
            p, label, split = row
            if label not in index:
                raise DataError(f"{path}:{lineno}: label '{label}' is not in the class list")
            if split not in SPLITS:
                raise DataError(f"{path}:{lineno}: split must be one of {', '.join(SPLITS)}; got '{split}'")
            paths.append(check_relative_path(p, path, lineno))
            labels.append(index[label])
            splits.append(split)
            linenos.append(lineno)
        keep = drop_repeated_paths(path, linenos, paths,
                                   [{"label": classes[y], "split": s} for y, s in zip(labels, splits)])
        return cls(root, [paths[i] for i in keep], np.array(labels, np.int64)[keep], [splits[i] for i in keep],
                   classes, task, source=str(path))


def check_relative_path(p: str, source, lineno) -> str:
    """A dataset path must be relative and stay inside the dataset root."""
    pp = Path(p)
    if not p or pp.is_absolute() or p.startswith(("/", "\\")):
        raise DataError(f"{source}:{lineno}: path must be relative to the dataset root; got '{p}'")
    if ".." in pp.parts:
        raise DataError(f"{source}:{lineno}: path escapes the dataset root with '..': '{p}'")
    return pp.as_posix()


def drop_repeated_paths(source, linenos, paths, values) -> list[int]:
    """Indices of the rows to keep: the first row of each path.

    ``values[i]`` is a dict of what row ``i`` says about its path (label, split, ...). A repeat
    saying the same is dropped, all of them counted in one warning; a repeat saying otherwise
    is a :class:`DataError` naming ``source``, both lines and what differs. ``paths`` must be
    normalised already (:func:`check_relative_path`), so ``a/./b.jpg`` repeats ``a/b.jpg``.
    """
    first: dict[str, int] = {}
    keep, repeats = [], []
    for i, p in enumerate(paths):
        j = first.setdefault(p, i)
        if j == i:
            keep.append(i)
            continue
        if values[i] != values[j]:
            differ = [k for k in values[i] if values[i].get(k) != values[j].get(k)]
            now, before = (", ".join(f"{k} '{values[r].get(k, '')}'" for k in differ) for r in (i, j))
            raise DataError(f"{source}:{linenos[i]}: '{p}' is listed again with {now}, but line "
                            f"{linenos[j]} gives it {before}; keep one of the two rows")
        repeats.append((linenos[j], linenos[i], p))
    if repeats:
        a, b, p = repeats[0]
        log.warning(f"{source}: dropped {len(repeats)} repeated row(s) of paths listed before with the same "
                    f"label (first: line {b} repeats line {a}, '{p}')")
    return keep


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> list[str]:
    """Seeded stratified train/val split: ``round(n_c * val_fraction)`` of each class to val
    (at least one when the class has two or more images)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
    rng = np.random.default_rng(seed)
    splits = ["train"] * len(labels)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        if val_fraction > 0 and n_val == 0 and len(idx) >= 2:
            n_val = 1
        for i in idx[:n_val]:
            splits[i] = "val"
    return splits
