"""The synthetic catalog: :func:`synthesize` draws one tree per dataset layout into a folder.

The layouts are the writers in ``WRITERS`` (one module each, see ``trees.py`` for what a writer
provides); this module checks the arguments, plans every tree, starts the worker processes,
draws each tree in a temporary folder and swaps it in whole.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np

from ...artifacts import ArtifactKind, atomic_dir, check_replaceable, ensure_writable, write_json
from . import deepfashion, fashion, inshop
from .trees import draw_images, draw_one_garment

# One module per dataset layout, drawn in this order. A new layout is one more module in this
# package and one more entry here, with the next free tree id (trees.py).
WRITERS = (deepfashion, fashion, inshop)
# Every tree carries this file (hidden: the readers skip it), so `synth` replaces a tree it drew
# and refuses a folder of the same name that it did not.
MARKER = ".fashionrec-synth.json"


def tree_kind(writer) -> ArtifactKind:
    return ArtifactKind(f"synthetic {writer.FOLDER} tree", marker=MARKER, entries=writer.ENTRIES)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def synthesize(out_dir, n: int = 2000, size: int = 128, seed: int = 0, progress: bool = True,
               workers: int | None = None) -> dict:
    """Write a synthetic catalog of ``n`` images *per tree* at ``size`` x ``size`` px.

    Three trees, classes balanced over the 9 x 5 (category, texture) pairs; the first two
    have ``n`` images each, the In-shop tree ``n // 3`` (at least 24), so it adds little time:

    * ``out_dir/deepfashion``: DeepFashion Category and Attribute Prediction layout. Images are
      grouped into products (2-6 views each, ``img/<Product_Name>/img_00000001.jpg``), split
      about 70/15/15 by product within each category. The 9 categories map to real DeepFashion
      names (pants -> Jeans, pullover -> Sweater, shirt -> Button-Down, top -> Tank, t-shirt ->
      Tee). Each texture maps to a texture attribute (graphic, plaid, dot, striped, solid);
      about 15% of the images with a synonym also get it (``stripe``, ``polka dot``, ``print``,
      ...), about 10% get no positive texture attribute at all, some rows write the category
      label zero-padded (``018``).
    * ``out_dir/fashion``: ``images/000001.jpg`` ... with ``category.csv`` and ``texture.csv``
      (``path,label``, every image in both) and ``catalog.csv`` (``path,category,texture`` + shop columns). No
      split column: the reader draws the stratified 80/20 split.
    * ``out_dir/inshop``: DeepFashion In-shop Clothes Retrieval layout: 3-5 views of each item
      (``img/WOMEN/Dresses/id_00000001/01_1_front.jpg``; other background, scale, pose, crop),
      ``Eval/list_eval_partition.txt`` with half the items for training and the other half's
      views split into query and gallery (see ``inshop.py``).

    Same arguments, same bytes (``workers`` does not change the output). Each tree is built in
    a temporary folder and swapped in whole, replacing an older synthetic tree; a folder of that
    name that ``synth`` did not draw (no marker, or files of someone else's in it) is refused.
    ``workers`` processes draw the images (default: up to 2). Returns a summary: the tree paths
    and counts.
    """
    n = _check_int("n", n, 1)
    size = _check_int("size", size, 16)
    seed = _check_int("seed", seed, 0)
    workers = min(2, os.cpu_count() or 1) if workers is None else _check_int("workers", workers, 1)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir: {out_dir} exists and is not a folder")
    ensure_writable(out_dir)
    for writer in WRITERS:  # all refusals before any drawing
        check_replaceable(out_dir / writer.FOLDER, tree_kind(writer))
    plans = [(writer, writer.plan(n, seed)) for writer in WRITERS]

    if n < 100 or "fork" not in multiprocessing.get_all_start_methods():
        workers = 1  # below 100 images, starting processes costs more than it saves
    for writer, rows in plans:
        with atomic_dir(out_dir / writer.FOLDER, kind=tree_kind(writer)) as tmp:
            draw_images(tmp, rows, writer.TREE, size, seed, workers, progress, writer.FOLDER,
                        getattr(writer, "draw", draw_one_garment))
            writer.write_files(tmp, rows)
            write_json(tmp / MARKER, {"tree": writer.FOLDER, "images": n, "size": size, "seed": seed})
    summary = {writer.FOLDER: str(out_dir / writer.FOLDER) for writer, _ in plans}
    summary.update(images_per_tree=n, size=size)
    for writer, rows in plans:
        summary.update(writer.summary(rows))
    return summary
