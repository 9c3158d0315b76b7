"""Evaluate the ranking of an index: the objective measure the paper said was missing.

Leave-one-out over the catalog: every item with known labels queries all the others. An
item is relevant when it shares the query's category, its texture, or both. Reported for the
concatenated feature raw (the paper) and per-block L2-normalised, and for each extractor's block
alone, so the value of concatenating is measured rather than assumed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError
from .index import CatalogIndex
from .io import write_json
from .metrics import combine_labels, l2_normalize, leave_one_out

KS = (1, 3, 5, 10, 20)


def _known_labels(index: CatalogIndex) -> dict[str, np.ndarray]:
    """Integer labels per task from the catalog's known label columns (items without one: -1)."""
    out = {}
    for e in index.meta["extractors"]:
        task = e["task"]
        values = [it.get(task, "") for it in index.items]
        if not any(values):
            continue
        names = sorted({v for v in values if v})
        lookup = {v: i for i, v in enumerate(names)}
        out[task] = np.array([lookup.get(v, -1) for v in values], np.int64)
    return out


def evaluate_index(index_dir, ks=KS, progress: bool = True) -> dict:
    """Leave-one-out precision@k and mAP@k; writes retrieval.json and precision_at_k.png."""
    from .report import plot_precision_at_k

    index = CatalogIndex.load(index_dir)
    labels = _known_labels(index)
    if not labels:
        raise UserError(f"{index_dir}: the catalog has no known labels (columns "
                        f"{', '.join(e['task'] for e in index.meta['extractors'])} in items.csv) to evaluate against")
    keep = np.all([v >= 0 for v in labels.values()], axis=0)
    if keep.sum() < 2:
        raise UserError(f"{index_dir}: fewer than 2 items have every known label")
    labels = {k: v[keep] for k, v in labels.items()}
    if len(labels) == 2:
        a, b = labels.values()
        labels["both"] = combine_labels(a, b, int(b.max()) + 1)
    raw = np.asarray(index.features, np.float32)[keep]
    blocks = [tuple(b) for b in index.meta["blocks"]]
    variants = {"concat raw": raw, "concat l2": l2_normalize(raw, blocks=blocks)}
    if len(blocks) > 1:
        for e, (a, b) in zip(index.meta["extractors"], blocks):
            variants[f"{e['task']} only"] = raw[:, a:b]
    ks = tuple(k for k in ks if k < len(raw)) or (1,)
    results = {name: leave_one_out(feats, labels, ks) for name, feats in variants.items()}
    out = {"n_items": int(keep.sum()), "ks": list(ks), "relevance": list(labels), "variants": results,
           "index": str(index_dir), "backend_used": "exact (numpy)", "l2_normalize_of_index": index.meta["l2_normalize"]}
    index_dir = Path(index_dir)
    write_json(index_dir / "retrieval.json", out)
    key = "both" if "both" in labels else next(iter(labels))
    curves = {name: {k: r[key][f"precision@{k}"] for k in ks} for name, r in results.items()}
    what = "category and texture" if key == "both" else key
    plot_precision_at_k(curves, index_dir / "precision_at_k.png",
                        title=f"leave-one-out precision@k: relevant = same {what}")
    return out


def format_retrieval(result: dict) -> str:
    ks = result["ks"]
    head = f"{'variant':<16}{'relevant':<10}" + "".join(f"{f'P@{k}':>8}" for k in ks) + \
        "".join(f"{f'mAP@{k}':>9}" for k in ks)
    lines = [f"leave-one-out over {result['n_items']} items", head]
    for name, per_label in result["variants"].items():
        for rel, m in per_label.items():
            lines.append(f"{name:<16}{rel:<10}" + "".join(f"{m[f'precision@{k}']:>8.3f}" for k in ks)
                         + "".join(f"{m[f'map@{k}']:>9.3f}" for k in ks))
    lines.append(f"wrote {Path(result['index']) / 'retrieval.json'} and {Path(result['index']) / 'precision_at_k.png'}")
    return "\n".join(lines)
