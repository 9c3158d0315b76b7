"""What the dataset writers share: tree ids and seeds, the balanced label plan, and drawing a
tree's images as JPEG files.

A writer is one module of this package per dataset layout (``deepfashion.py``, ``fashion.py``),
listed in ``catalog.WRITERS``, with:

* ``FOLDER``: its tree's folder under the output folder (and its progress bar's name);
* ``TREE``: its id in the seeds below;
* ``plan(n, seed) -> rows``: one dict per image, in drawing order, with at least ``path``
  (relative to the tree), ``category`` and ``texture``;
* ``write_files(root, rows)``: the tree's text files (annotations, label tables);
* ``summary(rows) -> dict``: its extra lines in ``synthesize``'s summary;
* optionally ``draw(row, size, key) -> Image``: how image ``row`` is drawn from its seed ``key``
  (default :func:`draw_one_garment`: a garment of the row's category and texture).

Each writer spells its file formats out itself, never through the readers
(``data/deepfashion.py``, ``data/catalog.py``, ``data/manifest.py``), so the synthetic trees
keep testing the readers.

Seeds: image ``i`` of tree ``t`` is drawn from ``np.random.default_rng([seed, t, i])``, so the
files do not depend on worker scheduling; a tree's plan (labels, products, splits, attributes)
comes from ``[seed, PLAN, t]``. Tree ids: 0 DeepFashion Category and Attribute, 1 Fashion, 3
DeepFashion In-shop. 2 is ``PLAN`` and no tree may take it (its image seeds would repeat plan
seeds). A writer that needs more seeds (In-shop: one per item) appends a non-zero last entry
(``[seed, t, j, 1]``): numpy pads a seed list with zeros, so ``[seed, t, j, 0]`` would repeat
``[seed, t, j]``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ...stop import check as check_stop
from ..workers import Workers
from .garments import CATEGORIES, draw_garment
from .textures import TEXTURES

PLAN = 2  # [seed, PLAN, tree] seeds the labels, products, splits and attributes of a tree
JPEG_QUALITY = 90
CHUNK = 8  # images per job a synth worker draws: few messages, and the bar still moves


def plan_rng(seed: int, tree: int) -> np.random.Generator:
    """The generator of a tree's plan (everything but the pixels)."""
    return np.random.default_rng([seed, PLAN, tree])


def balanced_labels(n: int, rng) -> list[tuple[str, str]]:
    """``n`` (category, texture) pairs: all 45 pairs in a random order, again and again."""
    pairs = [(c, t) for c in CATEGORIES for t in TEXTURES]
    out = []
    while len(out) < n:
        out += [pairs[i] for i in rng.permutation(len(pairs))]
    return out[:n]


def draw_one_garment(row: dict, size: int, key) -> Image.Image:
    """The default drawing: one garment of the row's category and texture from its own seed."""
    return draw_garment(row["category"], row["texture"], size, np.random.default_rng(key))


def _render(job) -> None:
    """Worker: draw one image from its own seed and write it as JPEG."""
    path, row, size, key, draw = job
    draw(row, size, key).save(path, format="JPEG", quality=JPEG_QUALITY)


def draw_images(root: Path, rows: list[dict], tree: int, size: int, seed: int, workers: int,
                progress: bool, desc: str, draw=draw_one_garment) -> None:
    """Draw image ``i`` of ``rows`` into ``root / rows[i]["path"]`` with ``draw(rows[i], size,
    [seed, tree, i])``, in ``workers`` processes (the loader's, :mod:`..workers`) when more than one."""
    for r in rows:
        (root / r["path"]).parent.mkdir(parents=True, exist_ok=True)
    jobs = [(str(root / r["path"]), r, size, [seed, tree, i], draw) for i, r in enumerate(rows)]
    with tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                check_stop()  # a Ctrl-C that a __del__ swallowed still stops the drawing
                _render(job)
                bar.update()
            return
        chunks = [np.arange(i, min(i + CHUNK, len(jobs))) for i in range(0, len(jobs), CHUNK)]

        def render_chunk(job: bytes) -> int:  # forked: the jobs are inherited, only their numbers travel
            done = np.frombuffer(job, np.int64)
            for i in done:
                _render(jobs[i])
            return len(done)

        pool = Workers(workers, lambda: None, render_chunk, name="synth worker")
        try:
            ahead = iter(chunks)
            for chunk in itertools.islice(ahead, 2 * workers):
                pool.submit(chunk.tobytes())
            while pool.pending:
                check_stop()  # a Ctrl-C that a __del__ or an at-fork hook swallowed still stops the drawing
                bar.update(pool.next_result())
                chunk = next(ahead, None)
                if chunk is not None:
                    pool.submit(chunk.tobytes())
        finally:
            pool.close()
