"""The retrieval benchmark's scores: Recall@K of queries against a gallery, and MAP@R.

**Recall@K** (the In-shop protocol, Liu et al. 2016; the figures Proxy-Anchor and
Multi-Similarity report): each query image searches the gallery; it is a hit at K when at least
one of the K nearest gallery images shows the query's item. Recall@K is the share of hits.

**MAP@R** (Musgrave, Belongie & Lim, "A Metric Learning Reality Check", 2020): for a query
with R relevant gallery images (same item), ``MAP@R = (1 / R) * sum_{i <= R} P(i) * rel(i)``
over the first R results, ``P(i)`` the precision at i and ``rel(i)`` 1 when result i is
relevant. It rewards ranking *all* of the item's images first, so it keeps moving where
Recall@1 has saturated.

Both come from the item labels alone. The search is the toolkit's own :class:`KNNIndex`
(Euclidean; on L2-normalised embeddings that ranks as cosine does). **Ties**: results are
ordered by (distance, gallery row), so at equal distance the lower gallery row ranks first,
exactly as ``KNNIndex.query`` orders them; a tie across the K-th place is decided by gallery
order rather than averaged. The brute-force reference in the tests uses the same rule.

Leave-one-out (:func:`leave_one_out_recall`, for validation sets without a query/gallery
split): each image asks, all other images of the set are the gallery; images whose item has no
other image are not asked (they can never be found) but stay in the gallery.
"""

from __future__ import annotations

import numpy as np

from .knn import KNNIndex

KS = (1, 10, 20, 30, 40)  # the cut-offs the In-shop papers report


def _as_features(name: str, x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty (n, D) array; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return np.ascontiguousarray(x)


def _as_ks(ks) -> tuple[int, ...]:
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks: expected positive cut-offs; got {ks}")
    return ks


def scores(relevant: np.ndarray, n_relevant: np.ndarray, ks) -> dict:
    """Recall@K and MAP@R from ranked relevance.

    ``relevant`` is (m, L) booleans, result j of query i relevant; ``L`` must reach
    ``max(ks)`` or the gallery's end, and ``max(n_relevant)``. ``n_relevant`` (m,) counts each
    query's relevant gallery images (R), all >= 1.
    """
    m, width = relevant.shape
    rel = relevant.astype(np.float64)
    n_relevant = np.asarray(n_relevant, np.int64)
    if (n_relevant < 1).any():
        raise ValueError("n_relevant: every query needs at least one relevant gallery image")
    if n_relevant.max() > width:
        raise ValueError(f"relevant: {width} results per query, fewer than the largest R ({n_relevant.max()})")
    out: dict = {"n_queries": int(m)}
    first_hit = np.where(rel.any(1), rel.argmax(1), width)  # 0-based rank of the first relevant result
    for k in ks:
        out[f"recall@{k}"] = float((first_hit < k).mean())
    ranks = np.arange(1, width + 1)
    within_r = ranks[None, :] <= n_relevant[:, None]
    precision = np.cumsum(rel, 1) / ranks
    out["map@r"] = float(((precision * rel * within_r).sum(1) / n_relevant).mean())
    return out


def query_gallery(query, query_items, gallery, gallery_items, ks=KS, backend: str = "brute") -> dict:
    """Recall@K and MAP@R of ``query`` (m, D) against ``gallery`` (n, D) with their item labels.

    Every query item must have a gallery image (a ValueError otherwise: such a query could never
    be a hit). Cut-offs beyond the gallery's size are left out. Returns ``{"n_queries",
    "n_gallery", "ks", "recall@K" per K, "map@r"}``.
    """
    query, gallery = _as_features("query", query), _as_features("gallery", gallery)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query has {query.shape[1]} dimensions, gallery {gallery.shape[1]}")
    q_items, g_items = np.asarray(query_items), np.asarray(gallery_items)
    if len(q_items) != len(query) or len(g_items) != len(gallery):
        raise ValueError("query_items and gallery_items must label every row of query and gallery")
    ks = tuple(k for k in _as_ks(ks) if k <= len(gallery)) or (1,)
    labels, counts = np.unique(g_items, return_counts=True)
    pos = np.searchsorted(labels, q_items).clip(0, len(labels) - 1)
    n_relevant = np.where(labels[pos] == q_items, counts[pos], 0)
    if (n_relevant == 0).any():
        missing = q_items[n_relevant == 0][0].item()  # a Python value: numpy 2 reprs np.str_(...)
        raise ValueError(f"query item {missing!r} has no gallery image; it could never be found")
    width = min(len(gallery), max(ks[-1], int(n_relevant.max())))
    index = KNNIndex(backend).fit(gallery)
    _, neighbors = index.query(query, width)
    out = scores(g_items[neighbors] == q_items[:, None], n_relevant, ks)
    return {"n_queries": out.pop("n_queries"), "n_gallery": int(len(gallery)), "ks": list(ks), **out}


def leave_one_out_recall(features, items, ks=KS, backend: str = "brute") -> dict:
    """Recall@K and MAP@R within one set: each image (whose item has another image) queries all
    the others. Returns the same keys as :func:`query_gallery`."""
    features = _as_features("features", features)
    items = np.asarray(items)
    if len(items) != len(features):
        raise ValueError("items must label every row of features")
    _, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
    asked = np.flatnonzero(counts[inverse] >= 2)
    if len(asked) == 0:
        raise ValueError("no item has two images: nothing can be found")
    n_relevant = counts[inverse][asked] - 1
    ks = tuple(k for k in _as_ks(ks) if k <= len(features) - 1) or (1,)
    width = min(len(features) - 1, max(ks[-1], int(n_relevant.max())))
    index = KNNIndex(backend).fit(features)
    _, neighbors = index.query(features[asked], width, exclude=asked)
    out = scores(items[neighbors] == items[asked][:, None], n_relevant, ks)
    return {"n_queries": out.pop("n_queries"), "n_gallery": int(len(features) - 1), "ks": list(ks), **out}


def format_recall(results: dict, title: str = "") -> str:
    """A table like the papers': one row per method, Recall@K columns, then MAP@R."""
    rows = list(results.items())
    ks = rows[0][1]["ks"]
    width = max(12, *(len(name) + 2 for name, _ in rows))
    head = f"{'method':<{width}}" + "".join(f"{f'R@{k}':>8}" for k in ks) + f"{'MAP@R':>8}"
    lines = ([title] if title else []) + [head]
    for name, r in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{100 * r[f'recall@{k}']:>8.1f}" for k in ks)
                     + f"{100 * r['map@r']:>8.1f}")
    return "\n".join(lines)
