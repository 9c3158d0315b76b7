"""Evaluation: a trained run on a split of its manifest, and the ranking of an index.

A run is scored like the paper's Tables 3-4 (accuracy, top-K accuracy, cross-entropy,
per-class accuracy) with a confusion matrix. An index is scored by leave-one-out over the
catalog, the objective measure the paper said was missing: every item with known labels
queries all the others, and an item is relevant when it shares the query's label in one known
label column (category, texture, colour... one per extractor's task the catalog has), or in
both (two columns) or all of them (three or more). That is reported for the concatenated
feature raw (the paper), per-block L2-normalised and as the index searches it (with its block
weights), and for each extractor's block alone, so the value of concatenating and weighting is
measured rather than assumed.

The training loop validates with :func:`predict_loader`; nothing here imports the loop, and the
index (k-NN backends, feature extraction) is imported only to evaluate one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from .artifacts import write_json
from .data.loader import BatchLoader
from .data.manifest import Manifest
from .errors import UserError
from .metrics import classification_report, combine_labels, l2_normalize, leave_one_out
from .runs import load_classifier, read_model_json

if TYPE_CHECKING:
    from .index import CatalogIndex

KS = (1, 3, 5, 10, 20)


# --------------------------------------------------------------------------- a trained run


def predict_loader(clf, loader, desc: str = "eval", progress: bool = True, epoch: int = 0):
    """Run a classifier over a loader; returns (logits, labels, manifest rows)."""
    logits, labels, rows = [], [], []
    for x, y, idx in tqdm(loader.epoch(epoch), total=len(loader), desc=desc, leave=False, disable=not progress):
        logits.append(clf.predict(x))
        labels.append(y)
        rows.append(idx)
    if not logits:
        return np.zeros((0, clf.num_classes), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(rows)


def evaluate_run(run_dir, split: str = "val", device: str = "auto", progress: bool = True, workers: int = 1) -> dict:
    """Evaluate a run on a split of its manifest; writes metrics.json and a confusion matrix PNG."""
    from .report import plot_confusion

    run_dir = Path(run_dir)
    info = read_model_json(run_dir)
    manifest = Manifest.from_csv(run_dir / "manifest.csv")
    if not manifest.root.is_dir():
        raise UserError(f"{run_dir / 'manifest.csv'}: the data is not at {manifest.root} (the root relative to the "
                        f"manifest) nor at the absolute root it records; put the data back or edit '# root:'")
    part = manifest.subset(split)
    if len(part) == 0:
        have = ", ".join(sorted(set(manifest.splits)))
        raise UserError(f"{run_dir}: the manifest has no '{split}' split (it has: {have})")
    clf, _ = load_classifier(run_dir, device=device)
    loader = BatchLoader(part, info["input_size"], batch_size=32, workers=workers)
    try:
        logits, labels, _ = predict_loader(clf, loader, desc=f"evaluate {split}", progress=progress)
    finally:
        loader.close()
    k = int(info.get("top_k", 5))
    report = classification_report(logits, labels, info["classes"], k)
    report.update(split=split, run=str(run_dir), arch=info["arch"], task=info["task"], stage=info.get("stage"))
    write_json(run_dir / f"metrics-{split}.json", report)
    write_json(run_dir / "metrics.json", report)
    plot_confusion(np.asarray(report["confusion"]), info["classes"], run_dir / f"confusion-{split}.png",
                   title=f"{info['arch']} {info['task']} ({split}, acc {report['accuracy']:.2f})")
    return report


def format_report(report: dict) -> str:
    """A table shaped like the paper's Tables 3 and 4, then per-class accuracy."""
    k = report["top_k"]["k"]
    lines = [
        f"{'model':<14}{'task':<10}{'split':<7}{'n':>7}{'acc':>8}{f'top-{k}':>8}{'loss':>8}",
        f"{report['arch']:<14}{report['task']:<10}{report['split']:<7}{report['n']:>7}"
        f"{report['accuracy']:>8.3f}{report['top_k']['value']:>8.3f}{report['loss']:>8.3f}",
        "",
        "per-class accuracy:",
    ]
    for name, acc in report["per_class"].items():
        lines.append(f"  {name:<24}{'n/a' if acc is None or acc != acc else f'{acc:.3f}':>8}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the ranking of an index


def _known_labels(index: CatalogIndex) -> dict[str, np.ndarray]:
    """Integer labels per task from the catalog's known label columns (items without one: -1)."""
    out = {}
    for task in dict.fromkeys(e["task"] for e in index.meta["extractors"]):
        values = [it.get(task, "") for it in index.items]
        if not any(values):
            continue
        names = sorted({v for v in values if v})
        lookup = {v: i for i, v in enumerate(names)}
        out[task] = np.array([lookup.get(v, -1) for v in values], np.int64)
    return out


def evaluate_index(index_dir, ks=KS, progress: bool = True) -> dict:
    """Leave-one-out precision@k and mAP@k; writes retrieval.json and precision_at_k.png."""
    from .index import CatalogIndex, extractor_weights
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
    if len(labels) >= 2:  # relevant = the same label in every column
        combined = None
        for y in labels.values():
            combined = y if combined is None else combine_labels(combined, y, int(y.max()) + 1)
        labels["both" if len(labels) == 2 else "all"] = combined
    raw = np.asarray(index.features, np.float32)[keep]
    blocks = [tuple(b) for b in index.meta["blocks"]]
    variants = {"concat raw": raw, "concat l2": l2_normalize(raw, blocks=blocks)}
    weights = extractor_weights(index.meta)
    if any(w != 1 for w in weights):  # what the index itself searches
        variants["concat weighted"] = index.search_vectors(raw)
    if len(blocks) > 1:
        seen: dict[str, int] = {}
        for e, (a, b) in zip(index.meta["extractors"], blocks):
            seen[e["task"]] = seen.get(e["task"], 0) + 1
            name = e["task"] if seen[e["task"]] == 1 else f"{e['task']}#{seen[e['task']]}"
            variants[f"{name} only"] = raw[:, a:b]
    ks = tuple(k for k in ks if k < len(raw)) or (1,)
    results = {name: leave_one_out(feats, labels, ks) for name, feats in variants.items()}
    out = {"n_items": int(keep.sum()), "ks": list(ks), "relevance": list(labels), "variants": results,
           "index": str(index_dir), "backend_used": "exact (numpy)",
           "l2_normalize_of_index": index.meta["l2_normalize"], "weights_of_index": weights}
    index_dir = Path(index_dir)
    write_json(index_dir / "retrieval.json", out)
    key = next((k for k in ("both", "all") if k in labels), next(iter(labels)))
    curves = {name: {k: r[key][f"precision@{k}"] for k in ks} for name, r in results.items()}
    what = " and ".join(k for k in labels if k not in ("both", "all")) if key in ("both", "all") else key
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
