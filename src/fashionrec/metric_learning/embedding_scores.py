"""Scoring embeddings on photos grouped by item: a metric run, or a classifier's features beside it.

:func:`evaluate_embedding_run` is what ``fashionrec evaluate RUN`` does for a metric run: the
run's query images against its gallery (Recall@1/10/20/30/40 and MAP@R, see
:mod:`fashionrec.item_metrics`), optionally with classifier runs' pooled features scored on the
same images for comparison (raw, as the paper ranks, and L2-normalised), written to
``metrics.json`` with a Recall@K plot ``recall_at_k.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..artifacts import write_json
from ..data.inshop import ItemImages, read_run_record
from ..data.loader import BatchLoader
from ..errors import UserError
from ..item_metrics import KS, format_recall, leave_one_out_recall, query_gallery
from ..label_metrics import l2_normalize

RECALL_PLOT = "recall_at_k.png"


def embed_loader(model, loader, images: ItemImages, progress: bool = False, desc: str = "embed") -> np.ndarray:
    """``model.extract``'s features (an embedding, or a classifier's pooled features) of every
    image of ``loader`` (which loads ``images``), in order."""
    out = np.zeros((len(images), model.num_features), np.float32)
    done = np.zeros(len(images), bool)
    for x, _, rows in tqdm(loader.epoch(0), total=len(loader), desc=desc, leave=False, disable=not progress):
        out[rows] = model.extract(x)[1]
        done[rows] = True
    if not done.all():  # an undecodable image would sit at the origin and skew the scores
        first = images.paths[int(np.flatnonzero(~done)[0])]
        raise UserError(f"{images.source or images.root}: {int((~done).sum())} image(s) could not be decoded "
                        f"(first: {first}); retrieval scores need every image they are asked about")
    return out


def embed(model, images: ItemImages, input_size: int, batch_size: int = 64, workers: int = 0,
          progress: bool = False, desc: str = "embed") -> np.ndarray:
    """:func:`embed_loader` with a loader of its own."""
    loader = BatchLoader(images.image_source(), input_size, batch_size, workers=workers)
    try:
        return embed_loader(model, loader, images, progress, desc)
    finally:
        loader.close()


def score(features: np.ndarray, images: ItemImages, ks=KS) -> dict:
    """Query -> gallery scores when ``images`` has both, else leave-one-out over them."""
    items = np.asarray(images.items)
    query = np.array([s == "query" for s in images.splits])
    gallery = np.array([s == "gallery" for s in images.splits])
    if query.any() and gallery.any():
        return query_gallery(features[query], items[query], features[gallery], items[gallery], ks)
    return leave_one_out_recall(features, items, ks)


def evaluate_embedding_run(run_dir, against=(), device: str = "auto", workers: int = 1, progress: bool = True,
                           batch_size: int = 64) -> dict:
    """Score a metric run (and classifier runs ``against`` it) on its query/gallery images."""
    from ..report import plot_precision_at_k
    from ..runs import load_classifier, read_model_json
    from .model import KIND, load_embedder

    run_dir = Path(run_dir)
    info = read_model_json(run_dir)
    data = read_run_record(run_dir / "manifest.csv")
    test = data.subset("query", "gallery")
    if not len(test):
        raise UserError(f"{run_dir / 'manifest.csv'}: no query or gallery images to evaluate on")
    methods = {f"{info['arch']} {info.get('loss', 'embedding')}": load_embedder(run_dir, info, device)}
    sizes = {next(iter(methods)): int(info["input_size"])}
    for other in against:
        other_info = read_model_json(other)
        name = f"{other_info['arch']} {other_info['task']} features ({Path(other).name})"
        if other_info.get("kind") == KIND:
            methods[name] = load_embedder(other, other_info, device)
        else:
            methods[name] = load_classifier(other, device=device)[0]
        sizes[name] = int(other_info["input_size"])
    results = {}
    for name, model in methods.items():
        feats = embed(model, test, sizes[name], batch_size, workers, progress, desc=name)
        if getattr(model, "kind", None) == KIND:
            results[name] = score(feats, test)
        else:  # the paper ranks raw features; cosine (L2-normalised) is the fairer baseline
            results[f"{name} raw"] = score(feats, test)
            results[f"{name} l2"] = score(l2_normalize(feats), test)
    report = {"run": str(run_dir), "kind": KIND, "data": test.describe(), "methods": results}
    write_json(run_dir / "metrics.json", report)
    curves = {name: {k: r[f"recall@{k}"] for k in r["ks"]} for name, r in results.items()}
    counts = test.counts()
    plot_precision_at_k(curves, run_dir / RECALL_PLOT, ylabel="Recall@K",
                        title=f"Recall@K, query -> gallery\n{counts['query'][0]} queries, "
                              f"{counts['gallery'][0]} gallery images of {counts['gallery'][1]} items")
    return report


def format_embedding_report(report: dict) -> str:
    return "\n".join([format_recall(report["methods"], title=f"{report['run']}: {report['data']}"), "",
                      f"wrote {Path(report['run']) / 'metrics.json'} and {Path(report['run']) / RECALL_PLOT}"])
