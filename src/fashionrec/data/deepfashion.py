"""Reader for DeepFashion's Category and Attribute Prediction benchmark.

Every annotation file has a count on line 1, column names on line 2, then rows split on
whitespace. Category and attribute *names* contain spaces ("polka dot"), so the number is the
last field (``rsplit(None, 1)``). Numbers may be zero-padded (``072``).

Two manifests come out of it, as in Tuinhof et al. (2018):

* category: the categories that occur in ``list_category_img.txt`` (46 of the 50 listed in the
  real benchmark), labels re-indexed to that list;
* texture: the attributes of type 1 (texture). DeepFashion's texture is multi-label; the paper
  made it single-label by sampling one positive texture attribute per image (seeded here).
  Images with no positive texture attribute are left out.

The other attribute types of ``list_attr_cloth.txt`` are tasks the same way (fabric 2, shape 3,
part 4, style 5: one positive attribute of the type sampled per image), so any of them can
train a feature extractor of its own.

Splits come from ``Eval/list_eval_partition.txt`` (train / val / test). An image listed twice
in one file is read once, or is an error naming both lines when the two rows disagree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .manifest import SPLITS, Manifest, check_relative_path, drop_repeated_paths

CATEGORY_CLOTH = "Anno/list_category_cloth.txt"
CATEGORY_IMG = "Anno/list_category_img.txt"
ATTR_CLOTH = "Anno/list_attr_cloth.txt"
ATTR_IMG = "Anno/list_attr_img.txt"
PARTITION = "Eval/list_eval_partition.txt"
# list_attr_cloth.txt's attribute types, each a task: one positive attribute of the type per image
ATTRIBUTE_TYPES = {"texture": 1, "fabric": 2, "shape": 3, "part": 4, "style": 5}
TEXTURE_TYPE = ATTRIBUTE_TYPES["texture"]
TASKS = ("category", *ATTRIBUTE_TYPES)  # what a DeepFashion tree can train


def read_table(path: Path, n_values: int = 1):
    """Yield ``(lineno, name, values)`` for each row of a DeepFashion annotation file.

    ``name`` is everything before the last ``n_values`` fields (so it may contain spaces);
    ``values`` are those fields as strings. The count line must match the number of rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    if len(lines) < 2:
        raise DataError(f"{path}:1: expected a count line and a header line")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}:1: expected the number of rows, got '{lines[0].strip()[:40]}'") from None
    rows = []
    for lineno, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        parts = line.rsplit(None, n_values)
        if len(parts) != n_values + 1:
            raise DataError(
                f"{path}:{lineno}: expected a name and {n_values} value(s), got {len(line.split())} field(s)"
            )
        rows.append((lineno, parts[0].strip(), parts[1:]))
    if len(rows) != count:
        raise DataError(f"{path}:1: count line says {count} rows but the file has {len(rows)}")
    return rows


def _int(value: str, path, lineno, what: str) -> int:
    try:
        return int(value)  # int() accepts zero padding: "072" -> 72
    except ValueError:
        raise DataError(f"{path}:{lineno}: {what} must be an integer; got '{value}'") from None


def read_names(path: Path) -> list[tuple[str, int]]:
    """``list_category_cloth.txt`` / ``list_attr_cloth.txt``: [(name, type), ...]."""
    return [(name, _int(v[0], path, ln, "type")) for ln, name, v in read_table(path)]


def read_partition(root: Path) -> dict[str, str]:
    path = root / PARTITION
    linenos, names, statuses = [], [], []
    for ln, name, (status,) in read_table(path):
        if status not in SPLITS:
            raise DataError(f"{path}:{ln}: evaluation_status must be train, val or test; got '{status}'")
        linenos.append(ln)
        names.append(check_relative_path(name, path, ln))
        statuses.append(status)
    keep = drop_repeated_paths(path, linenos, names, [{"evaluation_status": s} for s in statuses])
    return {names[i]: statuses[i] for i in keep}


def _finish(root, names, labels, classes, partition, task, source, skip_missing, part_path):
    """Attach splits, check files exist, drop classes that never occur."""
    paths, ys, splits, skipped = [], [], [], []
    for name, y in zip(names, labels):
        split = partition.get(name)
        if split is None:
            raise DataError(f"{part_path}: image '{name}' has no evaluation_status")
        if not (root / name).is_file():
            if skip_missing:
                skipped.append((name, "missing"))
                continue
            raise DataError(f"{source}: image '{name}' not found under {root} (set data.skip_missing to skip)")
        paths.append(name)
        ys.append(y)
        splits.append(split)
    # Classes are those with training images (a class seen only in val/test cannot be learned).
    used = sorted({y for y, s in zip(ys, splits) if s == "train"}) or sorted(set(ys))
    remap = {old: new for new, old in enumerate(used)}
    keep = [i for i, y in enumerate(ys) if y in remap]
    skipped += [(paths[i], f"class '{classes[ys[i]]}' has no training images")
                for i in range(len(ys)) if ys[i] not in remap]
    m = Manifest(
        root,
        [paths[i] for i in keep],
        np.array([remap[ys[i]] for i in keep], np.int64),
        [splits[i] for i in keep],
        [classes[i] for i in used],
        task,
        source=str(source),
    )
    m.skipped = skipped
    return m


def read_category(root, skip_missing: bool = False) -> Manifest:
    """The category manifest over the categories that occur."""
    root = Path(root)
    categories = [name for name, _ in read_names(root / CATEGORY_CLOTH)]
    path = root / CATEGORY_IMG
    names, labels, linenos = [], [], []
    for ln, name, (label,) in read_table(path):
        y = _int(label, path, ln, "category_label")
        if not 1 <= y <= len(categories):
            raise DataError(f"{path}:{ln}: category_label {y} is outside 1..{len(categories)}")
        names.append(check_relative_path(name, path, ln))
        labels.append(y - 1)
        linenos.append(ln)
    keep = drop_repeated_paths(path, linenos, names, [{"category": categories[y]} for y in labels])
    names, labels = [names[i] for i in keep], [labels[i] for i in keep]
    return _finish(root, names, labels, categories, read_partition(root), "category", path,
                   skip_missing, root / PARTITION)


def read_texture(root, seed: int = 0, skip_missing: bool = False) -> Manifest:
    """The texture manifest: one positive texture attribute per image, sampled with ``seed``."""
    return read_attribute(root, "texture", seed, skip_missing)


def read_attribute(root, task: str, seed: int = 0, skip_missing: bool = False) -> Manifest:
    """The manifest of an attribute type (``texture``, ``fabric``, ``shape``, ``part``, ``style``):
    one positive attribute of that type per image, sampled with ``seed``."""
    root = Path(root)
    attr_type = ATTRIBUTE_TYPES[task]
    attributes = read_names(root / ATTR_CLOTH)
    type_cols = [i for i, (_, t) in enumerate(attributes) if t == attr_type]
    if not type_cols:
        raise DataError(f"{root / ATTR_CLOTH}: no attribute of type {attr_type} ({task})")
    type_names = [attributes[i][0] for i in type_cols]
    path = root / ATTR_IMG
    rows = []  # (lineno, name, positive columns of the type)
    for ln, name, values in read_table(path, n_values=len(attributes)):
        if " " in name.strip():
            raise DataError(f"{path}:{ln}: expected {len(attributes)} attribute values after the image name")
        try:
            row = np.array(values, dtype=np.int64)[type_cols]
        except ValueError:
            raise DataError(f"{path}:{ln}: attribute values must be 1, -1 or 0") from None
        if not np.isin(row, (-1, 0, 1)).all():
            raise DataError(f"{path}:{ln}: attribute values must be 1, -1 or 0")
        positive = np.flatnonzero(row == 1)  # 0 means unknown: not positive
        rows.append((ln, check_relative_path(name, path, ln), positive))
    # compared on what is read from them (the positive attributes of the type), named in the message
    keep = drop_repeated_paths(path, [ln for ln, _, _ in rows], [n for _, n, _ in rows],
                               [{f"{task} attributes": ", ".join(type_names[c] for c in pos) or "none"}
                                for _, _, pos in rows])
    rng = np.random.default_rng(seed)
    names, labels, skipped = [], [], []
    for _, name, positive in (rows[i] for i in keep):
        if len(positive) == 0:
            skipped.append((name, f"no {task} attribute"))
            continue
        names.append(name)
        labels.append(int(positive[rng.integers(len(positive))]) if len(positive) > 1 else int(positive[0]))
    m = _finish(root, names, labels, type_names, read_partition(root), task, path,
                skip_missing, root / PARTITION)
    m.skipped = skipped + m.skipped
    return m


def read_deepfashion(root, task: str, seed: int = 0, skip_missing: bool = False) -> Manifest:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: DeepFashion root folder not found")
    if task == "category":
        return read_category(root, skip_missing)
    if task in ATTRIBUTE_TYPES:
        return read_attribute(root, task, seed, skip_missing)
    raise DataError(f"task: a DeepFashion tree has the tasks {', '.join(TASKS)}; got {task!r} "
                    f"(other labels come from a CSV: data.format csv with data.label_column)")
