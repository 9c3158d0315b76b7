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
from .label_metrics import classification_report, combine_labels, l2_normalize, leave_one_out
from .runs import load_classifier, read_model_json

if TYPE_CHECKING:
    from .catalog_index import CatalogIndex

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


def _known_labels(index: CatalogIndex, columns=None) -> dict[str, np.ndarray]:
    """Integer labels per column (items without one: -1): ``columns``, by default the extractors' tasks; an
    index of extractors whose task the catalog lacks (an imported ImageNet network) is scored against the
    paper's label columns (category, texture) where the catalog has them."""
    from .config import TASKS

    if columns is None:
        columns = list(dict.fromkeys(e["task"] for e in index.meta["extractors"]))
        if not any(it.get(c) for it in index.items for c in columns):
            columns = list(TASKS)
    out = {}
    for task in dict.fromkeys(columns):
        values = [it.get(task, "") for it in index.items]
        if not any(values):
            continue
        names = sorted({v for v in values if v})
        lookup = {v: i for i, v in enumerate(names)}
        out[task] = np.array([lookup.get(v, -1) for v in values], np.int64)
    return out


def evaluate_index(index_dir, ks=KS, progress: bool = True, where=None, rerank: dict | None = None,
                   band: float | None = None, labels=None) -> dict:
    """Leave-one-out precision@k and mAP@k; writes retrieval.json and precision_at_k.png.

    ``where`` (filter expressions) adds ``"filtered"``: the same numbers over the items that match,
    each querying the other matching ones, as a filtered ``recommend`` ranks them. With
    re-ranking weights (the index's ``rerank``, with ``rerank``/``band`` over them) each block also
    gets a ``"hybrid"`` variant: the pool of the index's own search re-ranked by the hybrid
    score (:mod:`fashionrec.hybrid`), beside the image-only variant it re-ranks.
    """
    from .attributes import parse_where
    from .catalog_index import CatalogIndex
    from .hybrid import resolve_rerank
    from .report import plot_precision_at_k

    index = CatalogIndex.load(index_dir)
    table = index.attributes()
    conditions = parse_where(where, table.types)
    spec = resolve_rerank(index.meta.get("rerank"), rerank, band, table.types)
    columns = labels
    labels = _known_labels(index, columns)
    if not labels:
        asked = columns or list(dict.fromkeys(e["task"] for e in index.meta["extractors"]))
        raise UserError(f"{index_dir}: the catalog has no known labels (columns {', '.join(asked)} in items.csv) "
                        f"to evaluate against; --labels names the catalog's label columns")
    keep = np.all([v >= 0 for v in labels.values()], axis=0)
    out = _score_items(index, labels, keep, ks, spec, str(index_dir))
    out.update(index=str(index_dir), backend_used="exact (numpy)", l2_normalize_of_index=index.meta["l2_normalize"],
               weights_of_index=out.pop("weights"))
    if conditions:
        matching = table.mask(conditions)
        filtered = _score_items(index, labels, keep & matching, ks, spec,
                                f"{index_dir} with --where {' --where '.join(c.expression for c in conditions)}")
        filtered.pop("weights")
        out["filtered"] = {"filter": {"where": [c.expression for c in conditions], "matching": int(matching.sum())},
                           **filtered}
    index_dir = Path(index_dir)
    write_json(index_dir / "retrieval.json", out)
    relevance = out["relevance"]
    key = next((k for k in ("both", "all") if k in relevance), relevance[0])
    curves = {name: {k: r[key][f"precision@{k}"] for k in out["ks"]} for name, r in out["variants"].items()}
    what = " and ".join(k for k in relevance if k not in ("both", "all")) if key in ("both", "all") else key
    plot_precision_at_k(curves, index_dir / "precision_at_k.png",
                        title=f"leave-one-out precision@k: relevant = same {what}")
    return out


def _score_items(index: CatalogIndex, all_labels: dict, rows: np.ndarray, ks, spec, what: str) -> dict:
    """Leave-one-out over the items ``rows`` (bool mask): every variant, and the hybrid one."""
    from .catalog_index import extractor_weights

    if rows.sum() < 2:
        raise UserError(f"{what}: fewer than 2 items have every known label")
    labels = {k: v[rows] for k, v in all_labels.items()}
    if len(labels) >= 2:  # relevant = the same label in every column
        combined = None
        for y in labels.values():
            combined = y if combined is None else combine_labels(combined, y, int(y.max()) + 1)
        labels["both" if len(labels) == 2 else "all"] = combined
    raw = np.asarray(index.features[rows], np.float32)
    blocks = [tuple(b) for b in index.meta["blocks"]]
    variants = {"concat raw": raw, "concat l2": l2_normalize(raw, blocks=blocks)}
    weights = extractor_weights(index.meta)
    searched = "concat raw" if not index.meta["l2_normalize"] else "concat l2"
    if any(w != 1 for w in weights):  # what the index itself searches
        variants["concat weighted"] = index.search_vectors(raw)
        searched = "concat weighted"
    if len(blocks) > 1:
        seen: dict[str, int] = {}
        for e, (a, b) in zip(index.meta["extractors"], blocks):
            seen[e["task"]] = seen.get(e["task"], 0) + 1
            name = e["task"] if seen[e["task"]] == 1 else f"{e['task']}#{seen[e['task']]}"
            variants[f"{name} only"] = raw[:, a:b]
    ks = tuple(k for k in ks if k < len(raw)) or (1,)
    results = {name: leave_one_out(feats, labels, ks) for name, feats in variants.items()}
    out = {"n_items": int(rows.sum()), "ks": list(ks), "relevance": list(labels), "variants": results,
           "weights": weights}
    if spec is not None:
        results["hybrid"] = _hybrid_leave_one_out(index, variants[searched], np.flatnonzero(rows), labels, ks, spec)
        out["hybrid"] = dict(spec.as_dict(), pool={k: min(spec.pool(k), len(raw) - 1) for k in ks}, image_only=searched,
                             circular=[c for c in spec.weights if c in all_labels])  # re-ranks by what it scores
    return out


def _hybrid_leave_one_out(index: CatalogIndex, vectors: np.ndarray, ids: np.ndarray, labels: dict, ks, spec,
                          chunk_size: int = 512) -> dict:
    """Every item queries the others with its own attributes: its image pool re-ranked by the
    hybrid score, the pool sized for each cut-off k as ``recommend -k K`` sizes it."""
    from . import hybrid
    from .knn import KNNIndex
    from .label_metrics import retrieval_metrics

    table = index.attributes()
    n = len(vectors)
    knn = KNNIndex("brute").fit(vectors)
    widths = {k: min(spec.pool(k), n - 1) for k in ks}
    ranked = {k: np.empty((n, k), np.int64) for k in ks}
    for start in range(0, n, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n))
        dist, nb = knn.query(vectors[rows], max(widths.values()), exclude=rows)
        cand = ids[nb]  # the catalog's ids, for the attribute columns
        queries = [hybrid.query_values(table, spec, int(ids[r])) for r in rows]
        for k, width in widths.items():
            total, _, _ = hybrid.score(dist[:, :width], cand[:, :width], queries, table, spec)
            order = hybrid.rerank_order(total, dist[:, :width], cand[:, :width])[:, :k]
            ranked[k][rows] = np.take_along_axis(nb[:, :width], order, axis=1)
    out = {}
    for name, y in labels.items():
        _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        per_k = {k: retrieval_metrics(y[ranked[k]], y, (k,), n_relevant=counts[inverse] - 1) for k in ks}
        metrics = {key: per_k[ks[0]][key] for key in ("n_queries", "n_queries_with_relevant")}
        metrics.update({f"{m}@{k}": per_k[k][f"{m}@{k}"] for m in ("precision", "map", "recall") for k in ks})
        out[name] = metrics
    return out


def format_retrieval(result: dict) -> str:
    lines = _retrieval_table(result, f"leave-one-out over {result['n_items']} items")
    if "filtered" in result:
        f = result["filtered"]
        lines += [""] + _retrieval_table(f, f"filtered by {' and '.join(f['filter']['where'])}: "
                                            f"{f['filter']['matching']} items match, {f['n_items']} with every label")
    lines.append(f"wrote {Path(result['index']) / 'retrieval.json'} and {Path(result['index']) / 'precision_at_k.png'}")
    return "\n".join(lines)


def _retrieval_table(result: dict, title: str) -> list[str]:
    ks = result["ks"]
    head = f"{'variant':<16}{'relevant':<10}" + "".join(f"{f'P@{k}':>8}" for k in ks) + \
        "".join(f"{f'mAP@{k}':>9}" for k in ks)
    lines = [title, head]
    for name, per_label in result["variants"].items():
        for rel, m in per_label.items():
            lines.append(f"{name:<16}{rel:<10}" + "".join(f"{m[f'precision@{k}']:>8.3f}" for k in ks)
                         + "".join(f"{m[f'map@{k}']:>9.3f}" for k in ks))
    if "hybrid" in result:
        h = result["hybrid"]
        terms = ", ".join(f"{c} {w:g}" for c, w in h["weights"].items())
        pools = ", ".join(f"{p} at k={k}" for k, p in h["pool"].items())
        lines.append(f"hybrid: {h['image_only']} re-ranked by {terms} (band {h['band']:g}; pool {pools})")
        if h["circular"]:
            lines.append(f"  note: {', '.join(h['circular'])} is also a relevance column: those numbers are circular")
    return lines
