"""Readers for the Fashion dataset (Manfredi et al. 2014) and any user catalog.

The crowd-sourced labels of the paper are not public, so the user supplies them:

* a labels CSV with a header ``path,label`` and an optional ``split`` column (train / val /
  test); paths are relative to the CSV's folder;
* or a folder with one sub-folder per class.

Without a split, a stratified, seeded 80/20 train/val split is drawn. A path listed twice
is read once (see :func:`~.manifest.drop_repeated_paths`); hidden files and folders
(``.DS_Store``, ``._*``, ``.thumbnails/``) are not read from folders.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..config import DEFAULT_CLASSES
from ..errors import DataError
from .images import find_images, is_hidden
from .manifest import SPLITS, Manifest, check_relative_path, drop_repeated_paths, stratified_split

CLASSES_KEY = "data.classes"  # the config key that sets the class list, named in errors
MAX_NAMED = 5  # unknown labels named in one error message; the rest are counted


def _resolve_classes(classes, task):
    if classes is not None:
        if len(set(classes)) != len(classes):
            raise DataError(f"data.classes: duplicate class names in {classes}")
        return list(classes)
    if task in DEFAULT_CLASSES:
        return list(DEFAULT_CLASSES[task])
    raise DataError("data.classes: give the class list (no default for this task)")


def _delimiter(header_line: str) -> str:
    """``,`` unless the header is a spreadsheet's ``;`` or tab export with a ``path`` column."""
    for sep in ("\t", ";"):
        if "path" not in next(csv.reader([header_line]), []) and "path" in (h.strip() for h in header_line.split(sep)):
            return sep
    return ","


def read_csv_rows(csv_path) -> tuple[list[str], list[tuple[int, dict]]]:
    """Read a CSV with a header; return (columns, [(lineno, row dict)]). Errors name file:line."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: labels file not found")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{csv_path}: not a UTF-8 text file ({e.reason})") from None
    lines = text.splitlines()
    reader = csv.reader(lines, delimiter=_delimiter(lines[0] if lines else ""))
    header = next(reader, None)
    if not header:
        raise DataError(f"{csv_path}:1: empty file (expected a header such as 'path,label')")
    header = [h.strip() for h in header]
    if "path" not in header:
        raise DataError(f"{csv_path}:1: header must have a 'path' column; got {','.join(header)}")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"{csv_path}:1: column {', '.join(repr(h) for h in repeated)} appears more than once in the "
                        f"header; give each column its own name")
    rows = []
    for lineno, fields in enumerate(reader, start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise DataError(f"{csv_path}:{lineno}: expected {len(header)} fields, got {len(fields)}")
        row = {h: f.strip() for h, f in zip(header, fields)}
        row["path"] = check_relative_path(row["path"], csv_path, lineno)
        rows.append((lineno, row))
    return header, rows


def _check_files(root: Path, paths, source, skip_missing, linenos):
    keep, skipped = [], []
    for i, (p, ln) in enumerate(zip(paths, linenos)):
        if (root / p).is_file():
            keep.append(i)
        elif skip_missing:
            skipped.append((p, "missing"))
        else:
            raise DataError(f"{source}:{ln}: image '{p}' not found")
    return keep, skipped


def _unknown_labels_message(source, unknown: dict, classes) -> str:
    """One line: every distinct unknown label (the first few, with their first line), the class
    list, and the key that sets it."""
    (first, ln), *others = unknown.items()
    msg = f"{source}:{ln}: label '{first}' is not in the class list ({', '.join(classes)})"
    if others:
        named = ", ".join(f"'{label}' (line {n})" for label, n in others[:MAX_NAMED - 1])
        more = len(others) - (MAX_NAMED - 1)
        msg += f"; also unknown: {named}" + (f" (+{more} more)" if more > 0 else "")
    return msg + f"; {CLASSES_KEY} sets the class list"


def read_labels_csv(csv_path, task: str = "", classes=None, val_fraction: float = 0.2,
                    seed: int = 0, label_column: str = "label", skip_missing: bool = False) -> Manifest:
    """A ``path,label[,split]`` CSV -> Manifest; ``label_column`` names the column holding the labels.

    The classes are ``classes``, else the paper's list for ``category`` and ``texture``, else the
    column's distinct values, sorted (a ``color`` or ``gender`` column needs no list).
    """
    csv_path = Path(csv_path)
    header, rows = read_csv_rows(csv_path)
    if label_column not in header:
        raise DataError(f"{csv_path}:1: header must have a '{label_column}' column (data.label_column); "
                        f"got {','.join(header)}")
    if classes is None and task not in DEFAULT_CLASSES:
        classes = sorted({row[label_column] for _, row in rows if row[label_column]})
    classes = _resolve_classes(classes, task)
    index = {c: i for i, c in enumerate(classes)}
    has_split = "split" in header
    unknown = {}  # label -> first line, in the order met
    for ln, row in rows:
        if row[label_column] not in index:
            unknown.setdefault(row[label_column], ln)
        if has_split and row["split"] not in SPLITS:
            raise DataError(f"{csv_path}:{ln}: split must be one of {', '.join(SPLITS)}; got '{row['split']}'")
    if unknown:
        raise DataError(_unknown_labels_message(csv_path, unknown, classes))
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    linenos = [ln for ln, _ in rows]
    keep = drop_repeated_paths(csv_path, linenos, [r["path"] for _, r in rows],
                               [{"label": r[label_column], "split": r.get("split", "")} for _, r in rows])
    rows = [rows[i] for i in keep]
    paths = [r["path"] for _, r in rows]
    labels = [index[r[label_column]] for _, r in rows]
    splits = [r["split"] if has_split else "" for _, r in rows]
    linenos = [ln for ln, _ in rows]
    keep, skipped = _check_files(csv_path.parent, paths, csv_path, skip_missing, linenos)
    labels = np.array(labels, np.int64)[keep]
    paths = [paths[i] for i in keep]
    splits = [splits[i] for i in keep] if has_split else stratified_split(labels, val_fraction, seed)
    m = Manifest(csv_path.parent, paths, labels, splits, classes, task, source=str(csv_path))
    m.skipped = skipped
    return m


def read_class_folders(root, task: str = "", classes=None, val_fraction: float = 0.2,
                       seed: int = 0) -> Manifest:
    """``root/<class>/*.jpg`` -> Manifest. Without ``classes``, the sub-folders present (sorted)
    must all be classes of the task's default list."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    present = sorted(d.name for d in root.iterdir() if d.is_dir() and not is_hidden(d.name))
    classes = _resolve_classes(classes, task) if (classes is not None or task in DEFAULT_CLASSES) else present
    unknown = [d for d in present if d not in classes]
    if unknown:
        more = f" (+{len(unknown) - MAX_NAMED} more)" if len(unknown) > MAX_NAMED else ""
        named = ", ".join(unknown[:MAX_NAMED]) + more
        raise DataError(f"{root}: folder(s) {named} are not in the class list ({', '.join(classes)}); "
                        f"{CLASSES_KEY} sets the class list")
    paths, labels = [], []
    for y, c in enumerate(classes):
        folder = root / c
        if not folder.is_dir():
            continue
        for f in find_images(folder):
            paths.append(f.relative_to(root).as_posix())
            labels.append(y)
    if not paths:
        raise DataError(f"{root}: no images found in class folders")
    labels = np.array(labels, np.int64)
    return Manifest(root, paths, labels, stratified_split(labels, val_fraction, seed), classes, task,
                    source=str(root))


def read_catalog_csv(root) -> tuple[Path, list[str], dict[str, list[str]]]:
    """A catalog CSV to index: a ``path`` column plus any label columns (e.g. ``category``, ``texture``).
    Returns (root, relative paths, known label columns)."""
    root = Path(root)
    header, rows = read_csv_rows(root)
    if not rows:
        raise DataError(f"{root}: no rows under the header; nothing to index")
    columns = [h for h in header if h not in ("path", "split")]
    keep = drop_repeated_paths(root, [ln for ln, _ in rows], [r["path"] for _, r in rows],
                               [{c: r[c] for c in columns} for _, r in rows])
    rows = [rows[i] for i in keep]
    paths = [r["path"] for _, r in rows]
    keep, _ = _check_files(root.parent, paths, root, False, [ln for ln, _ in rows])
    return (root.parent, [paths[i] for i in keep],
            {c: [rows[i][1][c] for i in keep] for c in columns})


def read_catalog_folder(root) -> tuple[Path, list[str], dict[str, list[str]]]:
    """Every image under a folder, to index (sub-folder names are kept as ``label``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    files = find_images(root)
    if not files:
        raise DataError(f"{root}: no images found")
    rel = [f.relative_to(root).as_posix() for f in files]
    labels = {"label": [p.split("/")[0] if "/" in p else "" for p in rel]}
    return root, rel, labels


def read_catalog_manifest(root) -> tuple[Path, list[str], dict[str, list[str]]]:
    """A manifest CSV's images, to index (its labels are kept under the manifest's task name)."""
    m = Manifest.from_csv(root)
    return m.root, list(m.paths), {m.task or "label": [m.classes[y] for y in m.labels.tolist()]}
