"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) as PNG files and the toolkit's CSV format.

Real photos of products, 70,000 of them, that anyone can install: Debian's package
``dataset-fashion-mnist`` puts the four IDX files in ``/usr/share/datasets/fashion-mnist/``
(``apt-get install dataset-fashion-mnist``; the same files as github.com/zalandoresearch/fashion-mnist)::

    python scripts/fashion_mnist_to_csv.py data/fashion-mnist
    python scripts/fashion_mnist_to_csv.py data/fashion-mnist --source ~/Downloads --val 5000

writes ``OUT/images/{train,test}/NNNNN.png`` (28x28 greyscale), ``OUT/labels.csv``
(``path,label,split``: the 60,000 training images split into train and a seeded, stratified
val of ``--val`` images; the 10,000 test images as ``test``) for ``pretrain``/``finetune`` with
``data.format: csv``, and ``OUT/catalog-test.csv`` (``path,category``) to index the test images
and score the ranking with ``fashionrec evaluate --index``. IDX files may be gzipped or not.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# The ten classes in label order (the dataset's README), as file-friendly names.
CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
PARTS = {"train": "train", "test": "t10k"}
IDX_TYPES = {0x08: np.uint8}  # the only element type Fashion-MNIST uses


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as an array: magic 0x0000TTDD (T type, D dimensions), sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_TYPES:
        raise SystemExit(f"error: {path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise SystemExit(f"error: {path}: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, IDX_TYPES[data[2]], offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise SystemExit(f"error: {path}: header says {shape} ({int(np.prod(shape))} values), file has {body.size}")
    return body.reshape(shape)


def find_idx(source: Path, part: str, kind: str) -> Path:
    """``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without ``.gz``."""
    stem = f"{PARTS[part]}-{'images-idx3' if kind == 'images' else 'labels-idx1'}-ubyte"
    for name in (f"{stem}.gz", stem):
        if (source / name).is_file():
            return source / name
    raise SystemExit(f"error: {source / stem}(.gz) not found; install Debian's dataset-fashion-mnist "
                     f"(files in {DEBIAN_DIR}) or give --source")


def stratified_val(labels: np.ndarray, n_val: int, seed: int) -> np.ndarray:
    """A boolean mask of ``n_val`` rows, the same share of every class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    classes = np.unique(labels)
    for i, c in enumerate(classes):
        rows = np.flatnonzero(labels == c)
        take = round(n_val * len(rows) / len(labels)) if i < len(classes) - 1 else n_val - int(mask.sum())
        mask[rng.choice(rows, size=min(max(take, 0), len(rows)), replace=False)] = True
    return mask


def convert(source: Path, out: Path, n_val: int = 5000, seed: int = 0, limit: int | None = None) -> dict:
    """Write the PNGs and CSVs; returns the number of images per split."""
    rows, catalog, counts = [], [], {}
    for part in PARTS:
        images, labels = read_idx(find_idx(source, part, "images")), read_idx(find_idx(source, part, "labels"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise SystemExit(f"error: {source}: {part} images {images.shape} and labels {labels.shape} do not pair")
        if labels.size and labels.max() >= len(CLASSES):
            raise SystemExit(f"error: {source}: {part} label {int(labels.max())} is not one of the 10 classes")
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        folder = out / "images" / part
        folder.mkdir(parents=True, exist_ok=True)
        val = stratified_val(labels, min(n_val, len(labels) // 2), seed) if part == "train" else None
        for i, (img, y) in enumerate(zip(images, labels.tolist())):
            rel = f"images/{part}/{i:05d}.png"
            Image.fromarray(img, "L").save(out / rel, optimize=False)
            split = "test" if part == "test" else ("val" if val[i] else "train")
            rows.append(f"{rel},{CLASSES[y]},{split}\n")
            counts[split] = counts.get(split, 0) + 1
            if part == "test":
                catalog.append(f"{rel},{CLASSES[y]}\n")
    (out / "labels.csv").write_text("path,label,split\n" + "".join(rows), encoding="utf-8")
    (out / "catalog-test.csv").write_text("path,category\n" + "".join(catalog), encoding="utf-8")
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (images/, labels.csv, catalog-test.csv)")
    parser.add_argument("--source", type=Path, default=DEBIAN_DIR, help="folder holding the four IDX files")
    parser.add_argument("--val", type=int, default=5000, help="training images held out for validation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    parser.add_argument("--limit", type=int, default=None, help="first N images of each part only (quick tries)")
    args = parser.parse_args(argv)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise SystemExit(f"error: {args.out}: exists and is not empty; pick another folder")
    # written under a temporary name and renamed into place: a failure or a kill leaves no half tree
    partial = args.out.parent / f".{args.out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        counts = convert(args.source, partial, args.val, args.seed, args.limit)
        if args.out.exists():
            args.out.rmdir()
        os.replace(partial, args.out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    print(f"wrote {sum(counts.values())} images to {args.out}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"train: data.format csv, data.root {args.out / 'labels.csv'} (classes: {', '.join(CLASSES)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
