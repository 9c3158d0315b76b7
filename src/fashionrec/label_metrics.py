"""Classification and retrieval metrics (numpy; leave-one-out searches with :class:`KNNIndex`).

Classification: the paper's accuracy, top-K accuracy and mean cross-entropy (Tables 3-4),
plus a confusion matrix and per-class accuracy. Retrieval: precision@k, recall@k and mAP@k of
a ranking, and a leave-one-out evaluation of a feature matrix -- the objective measure of the
recommendations that the paper left to visual inspection.

Every function checks its inputs and raises :class:`ValueError` naming the bad argument.
Scalar results are Python floats, so they go straight into JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .knn import KNNIndex

__all__ = [
    "softmax", "cross_entropy", "accuracy", "top_k_accuracy", "confusion_matrix", "per_class_accuracy",
    "classification_report", "combine_labels", "retrieval_metrics", "leave_one_out", "l2_normalize",
    "weight_blocks",
]


# --------------------------------------------------------------------------- validation


def _as_logits(logits, name: str = "logits") -> np.ndarray:
    x = np.asarray(logits)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty (n, n_classes) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"{name}: expected real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return x


def _as_labels(labels, name: str, n: int | None = None, n_classes: int | None = None) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array of class indices, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
            raise ValueError(f"{name}: expected integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if n is not None and len(y) != n:
        raise ValueError(f"{name}: has {len(y)} entries, expected {n}")
    if n_classes is not None and y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name}: class indices must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    return y


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _as_ks(ks, name: str = "ks") -> tuple[int, ...]:
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    ks = tuple(ks)
    if not ks:
        raise ValueError(f"{name}: expected at least one k")
    return tuple(sorted({_positive_int(k, name) for k in ks}))


# --------------------------------------------------------------------------- classification


def softmax(logits) -> np.ndarray:
    """Softmax over the last axis, shifted by the row maximum so large logits cannot overflow.

    Floating inputs keep their dtype; anything else becomes float64.
    """
    x = np.asarray(logits)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"logits: expected at least one class on the last axis, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise ValueError(f"logits: expected real numbers, got dtype {x.dtype}")
        x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy(logits, labels) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits)`` (natural log)."""
    x = _as_logits(logits)
    y = _as_labels(labels, "labels", n=len(x), n_classes=x.shape[1])
    return float(-_log_softmax(x)[np.arange(len(y)), y].mean())


def accuracy(logits_or_pred, labels) -> float:
    """Fraction of correct predictions; takes (n, n_classes) logits or (n,) predicted indices."""
    p = np.asarray(logits_or_pred)
    if p.ndim == 2:
        pred = _as_logits(p, "logits_or_pred").argmax(axis=1)
    elif p.ndim == 1:
        pred = _as_labels(p, "logits_or_pred")
    else:
        raise ValueError(f"logits_or_pred: expected (n, n_classes) logits or (n,) predictions, got shape {p.shape}")
    if len(pred) == 0:
        raise ValueError("logits_or_pred: is empty")
    y = _as_labels(labels, "labels", n=len(pred))
    return float(np.mean(pred == y))


def top_k_accuracy(logits, labels, k: int) -> float:
    """Fraction of samples whose label is among the ``k`` highest logits.

    ``k`` is clamped to the number of classes. Ties are broken by a stable sort on ``-logits``
    (the lower class index ranks first), so the result is deterministic.
    """
    x = _as_logits(logits)
    y = _as_labels(labels, "labels", n=len(x), n_classes=x.shape[1])
    k = min(_positive_int(k, "k"), x.shape[1])
    top = np.argsort(-x, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == y[:, None]).any(axis=1)))


def confusion_matrix(labels, preds, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts: row = true class, column = predicted class."""
    n_classes = _positive_int(n_classes, "n_classes")
    y = _as_labels(labels, "labels", n_classes=n_classes)
    p = _as_labels(preds, "preds", n=len(y), n_classes=n_classes)
    counts = np.bincount(y * n_classes + p, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def per_class_accuracy(cm) -> np.ndarray:
    """Recall of each class from a confusion matrix (rows = true); NaN for classes without samples."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"cm: expected a square (n_classes, n_classes) matrix, got shape {cm.shape}")
    if not np.issubdtype(cm.dtype, np.number) or (cm < 0).any():
        raise ValueError("cm: expected non-negative counts")
    support = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def classification_report(logits, labels, class_names: Sequence[str], k: int = 5) -> dict:
    """Everything the paper reports for a classifier, JSON-serialisable.

    Returns ``{"n", "accuracy", "top_k": {"k", "value"}, "loss", "per_class": {name: acc},
    "confusion": [[...]]}``; ``top_k["k"]`` is the k actually used (clamped to the class count),
    and a class with no samples has per-class accuracy ``None`` (JSON null).
    """
    x = _as_logits(logits)
    names = [str(c) for c in class_names]
    if len(names) != x.shape[1]:
        raise ValueError(f"class_names: has {len(names)} names but logits have {x.shape[1]} classes")
    y = _as_labels(labels, "labels", n=len(x), n_classes=x.shape[1])
    k = min(_positive_int(k, "k"), x.shape[1])
    cm = confusion_matrix(y, x.argmax(axis=1), x.shape[1])
    per_class = per_class_accuracy(cm)
    return {
        "n": int(len(y)),
        "accuracy": accuracy(x, y),
        "top_k": {"k": k, "value": top_k_accuracy(x, y, k)},
        "loss": cross_entropy(x, y),
        "per_class": {name: (None if np.isnan(a) else float(a)) for name, a in zip(names, per_class)},
        "confusion": cm.tolist(),
    }


# --------------------------------------------------------------------------- retrieval


def combine_labels(a, b, n_b: int) -> np.ndarray:
    """One label per (a, b) pair, ``a * n_b + b``: relevance "same category *and* same texture"."""
    n_b = _positive_int(n_b, "n_b")
    a = _as_labels(a, "a")
    b = _as_labels(b, "b", n=len(a), n_classes=n_b)
    if a.size and a.min() < 0:
        raise ValueError(f"a: labels must be non-negative, got {a.min()}")
    return a * n_b + b


def retrieval_metrics(neighbor_labels, query_labels, ks=(1, 5, 10), n_relevant=None,
                      ap_denominator: str = "relevant") -> dict:
    """Precision@k, mAP@k and (given ``n_relevant``) recall@k of ranked retrieval results.

    Args:
        neighbor_labels: (m, K) labels of each query's retrieved items in rank order.
            An item is relevant when its label equals the query's.
        query_labels: (m,) label of each query.
        ks: cut-offs, each at most K.
        n_relevant: (m,) number of relevant items in the whole catalog for each query
            (the query itself excluded). Needed for recall@k and the standard mAP.
        ap_denominator: how average precision at k is normalised:
            ``"relevant"`` (default, the standard definition) divides
            ``sum_{i<=k} P@i * rel_i`` by ``min(k, n_relevant)`` and requires ``n_relevant``;
            ``"retrieved"`` divides by the number of relevant items among the top k (0 when
            none), which needs no catalog counts but rewards returning a single good item.

    Returns:
        ``{"n_queries", "precision@k", "map@k", "recall@k" (with n_relevant)}`` for each k,
        as Python floats. Queries with ``n_relevant == 0`` have no defined AP or recall: they
        count towards precision (always 0) but are left out of mAP and recall;
        ``n_queries_with_relevant`` says how many remain.
    """
    nb = np.asarray(neighbor_labels)
    if nb.ndim != 2 or nb.shape[0] == 0 or nb.shape[1] == 0:
        raise ValueError(f"neighbor_labels: expected a non-empty (m, k) array, got shape {nb.shape}")
    q = _as_labels(query_labels, "query_labels", n=nb.shape[0])
    nb = _as_labels(nb.reshape(-1), "neighbor_labels").reshape(nb.shape)
    ks = _as_ks(ks)
    if ks[-1] > nb.shape[1]:
        raise ValueError(f"ks: k={ks[-1]} exceeds the {nb.shape[1]} retrieved items per query")
    if ap_denominator not in ("relevant", "retrieved"):
        raise ValueError(f"ap_denominator: expected 'relevant' or 'retrieved', got {ap_denominator!r}")
    if n_relevant is not None:
        n_rel = _as_labels(n_relevant, "n_relevant", n=len(q))
        if n_rel.size and n_rel.min() < 0:
            raise ValueError("n_relevant: counts must be non-negative")
        hits_total = (nb == q[:, None]).sum(axis=1)
        if (hits_total > n_rel).any():
            raise ValueError("n_relevant: smaller than the number of relevant items retrieved for some query")
    elif ap_denominator == "relevant":
        raise ValueError("n_relevant: required for the standard mAP (ap_denominator='relevant'); "
                         "pass the per-query counts or ap_denominator='retrieved'")

    rel = (nb[:, : ks[-1]] == q[:, None]).astype(np.float64)
    hits = np.cumsum(rel, axis=1)                           # relevant among the top i
    ranks = np.arange(1, rel.shape[1] + 1)
    ap_terms = np.cumsum(hits / ranks * rel, axis=1)        # sum_{j<=i} P@j * rel_j
    has_rel = n_rel > 0 if n_relevant is not None else np.ones(len(q), bool)

    out: dict = {"n_queries": int(len(q))}
    if n_relevant is not None:
        out["n_queries_with_relevant"] = int(has_rel.sum())
    for k in ks:
        out[f"precision@{k}"] = float(hits[:, k - 1].mean() / k)
    for k in ks:
        if ap_denominator == "relevant":
            denom = np.minimum(k, n_rel).astype(np.float64)
        else:
            denom = hits[:, k - 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = np.where(denom > 0, ap_terms[:, k - 1] / np.maximum(denom, 1), 0.0)
        out[f"map@{k}"] = float(ap[has_rel].mean()) if has_rel.any() else float("nan")
    if n_relevant is not None:
        for k in ks:
            recall = hits[has_rel, k - 1] / n_rel[has_rel]
            out[f"recall@{k}"] = float(recall.mean()) if has_rel.any() else float("nan")
    return out


def l2_normalize(x, blocks: Sequence[tuple[int, int]] | None = None, eps: float = 1e-12) -> np.ndarray:
    """Scale each row (or each row's column ``blocks``, separately) to unit Euclidean length.

    ``blocks`` is a list of ``(start, stop)`` column ranges, e.g. one per extractor of a
    concatenated feature, so each network's features weigh the same in the distance. Columns
    outside every block are left as they are; all-zero rows stay zero (norms below ``eps`` are
    not divided by). Returns a new float array (float32 input stays float32).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected an (n, D) array, got shape {x.shape}")
    out = x.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64, copy=True)
    if blocks is None:
        blocks = [(0, x.shape[1])]
    for block in blocks:
        try:
            start, stop = (int(v) for v in block)
        except (TypeError, ValueError):
            raise ValueError(f"blocks: expected (start, stop) pairs, got {block!r}") from None
        if not 0 <= start < stop <= x.shape[1]:
            raise ValueError(f"blocks: ({start}, {stop}) is not a column range within [0, {x.shape[1]}]")
        part = out[:, start:stop]
        norms = np.sqrt(np.einsum("ij,ij->i", part, part, dtype=np.float64))
        part /= np.maximum(norms, eps)[:, None].astype(out.dtype)
    return out


def weight_blocks(x, blocks: Sequence[tuple[int, int]], weights: Sequence[float]) -> np.ndarray:
    """Scale each column block by the square root of its weight, so that the squared Euclidean
    distance is the weighted sum of the blocks' squared distances (weight 2: that block counts
    twice). Returns a new float array (float32 input stays float32)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected an (n, D) array, got shape {x.shape}")
    if len(weights) != len(blocks):
        raise ValueError(f"weights: expected one per block ({len(blocks)}), got {len(weights)}")
    out = x.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64, copy=True)
    for (start, stop), w in zip(blocks, weights):
        if isinstance(w, bool) or not isinstance(w, (int, float, np.floating)) or not np.isfinite(w) or w <= 0:
            raise ValueError(f"weights: expected positive numbers, got {w!r}")
        if not 0 <= int(start) < int(stop) <= x.shape[1]:
            raise ValueError(f"blocks: ({start}, {stop}) is not a column range within [0, {x.shape[1]}]")
        if w != 1:
            out[:, int(start):int(stop)] *= out.dtype.type(np.sqrt(w))
    return out


def leave_one_out(features, labels: Mapping[str, np.ndarray], ks=(1, 5, 10), chunk_size: int = 1024) -> dict:
    """Every item queries all the others; retrieval metrics per relevance labelling.

    Args:
        features: the items, as an (n, D) float array, searched exactly by a ``brute``
            :class:`~fashionrec.knn.KNNIndex`, or as a fitted KNNIndex, searched with its own
            backend (an approximate one gives approximate neighbours). Each item's vector queries
            the index with the item itself excluded, so neighbours and their ties (lower id
            first) are exactly those ``KNNIndex.query`` gives.
        labels: ``{name: (n,) int labels}``, e.g. ``{"category": ..., "texture": ...,
            "both": combine_labels(...)}``; relevant = same label as the query.
        ks: cut-offs, each at most n - 1.
        chunk_size: queries per step (memory ~ chunk_size * n floats, so 20k x 2048 fits easily).

    Returns:
        ``{name: retrieval_metrics(...)}`` with the standard mAP, where ``n_relevant`` of an item
        is the number of *other* items with its label.
    """
    if isinstance(features, KNNIndex):
        index = features
        if not index.is_fitted or index.n_items < 2:
            raise ValueError("features: expected a fitted KNNIndex with at least 2 items")
    else:
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] == 0:
            raise ValueError(f"features: expected an (n, D) array with n >= 2, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise ValueError(f"features: expected real numbers, got dtype {x.dtype}")
        if not np.isfinite(x).all():
            raise ValueError("features: contains NaN or infinity")
        index = KNNIndex("brute").fit(x)
    n = index.n_items
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError("labels: expected a non-empty {name: (n,) labels} mapping")
    label_sets = {str(name): _as_labels(y, f"labels[{name!r}]", n=n) for name, y in labels.items()}
    ks = _as_ks(ks)
    k_max = ks[-1]
    if k_max > n - 1:
        raise ValueError(f"ks: k={k_max} exceeds the {n - 1} other items each query can retrieve")
    chunk_size = _positive_int(chunk_size, "chunk_size")

    vectors = index.vectors()
    neighbors = np.empty((n, k_max), np.int64)
    for start in range(0, n, chunk_size):
        idx = np.arange(start, min(start + chunk_size, n))
        neighbors[idx] = index.query(vectors[idx], k_max, exclude=idx)[1]
    if (neighbors < 0).any():
        raise ValueError(f"features: the index found fewer than {k_max} neighbours for some items "
                         f"(an approximate backend searching too little of the catalog?)")

    out = {}
    for name, y in label_sets.items():
        _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        n_relevant = counts[inverse] - 1
        out[name] = retrieval_metrics(y[neighbors], y, ks, n_relevant=n_relevant)
    return out
