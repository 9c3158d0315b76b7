"""Hybrid ranking: the image distance blended with the query's agreement on catalog attributes.

The image search finds a candidate pool (the ``max(POOL_MIN, POOL_FACTOR * k)`` nearest items
under the filter); each candidate ``i`` of query ``q`` is then scored

    score_i = image_i + sum_c  w_c * (1 - agree_c(i, q))

    image_i = (d_i - d_min) / (d_max - d_min)        (0 for the nearest, 1 for the farthest of the pool)

with ``d`` the Euclidean image distance, ``w_c`` the weight of attribute column ``c``, and
``agree_c`` 1 when the candidate agrees with the query on ``c``, else 0:

* a text or boolean column (``brand``, ``colour``, ``in_stock``): the same value (text
  case-insensitive);
* a number column (``price``): within the relative band, ``|p_i - p_q| <= band * |p_q|``.

A candidate without a value disagrees; a query without a value in ``c`` leaves the term out
(it would add the same to every candidate). So a weight of 0.5 trades half the pool's distance
range for agreeing; the pool's order decides ties (distance, then id), and re-ranking never
brings in an item outside the pool. The results are sorted by the score, lowest first.

The query's values: a catalog item's own (``similar``, or ``recommend`` of an image that is a
catalog item by its path); for a new photo, the predicted label where a column is named as an
extractor's task (``category``, ``texture``); ``prefer`` (``--prefer brand=Aurel``) sets or
overrides any of them. Weights come from ``index.json``'s ``rerank`` (the index config's
``rerank:`` and ``rerank_band:``), overridden per request column by column (weight 0 drops a term).

Measured on the demo's index (1,000 synthetic items whose brand and price follow the category,
leave-one-out P@5): image only 0.675 category / 0.476 texture; brand 0.3 + price 0.3 0.718 /
0.458 (the shop columns carry the category, not the fabric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .attributes import AttributeTable, check_columns, parse_assignments
from .errors import UserError

POOL_MIN, POOL_FACTOR = 50, 10  # candidates re-ranked per query: max(POOL_MIN, POOL_FACTOR * k)
DEFAULT_BAND = 0.2


@dataclass
class RerankSpec:
    """What the hybrid score weighs: ``{column: weight}`` (all > 0) and the number band."""

    weights: dict[str, float] = field(default_factory=dict)
    band: float = DEFAULT_BAND

    def pool(self, k: int) -> int:
        return max(POOL_MIN, POOL_FACTOR * k)

    def as_dict(self) -> dict:
        return {"weights": dict(self.weights), "band": self.band}


def parse_rerank_option(texts) -> dict[str, float]:
    """``["brand=0.5,price=1"]`` -> ``{"brand": 0.5, "price": 1.0}`` (``--rerank``)."""
    out = {}
    for column, text in parse_assignments("--rerank", texts).items():
        out[column] = check_weight(f"--rerank {column}", text)
    return out


def check_weight(what: str, value) -> float:
    return _non_negative(what, value, "the weight must be")


def check_band(value) -> float:
    return _non_negative("rerank band", value, "must be")


def _non_negative(what: str, value, must: str) -> float:
    """``value`` as a finite float >= 0 (not a bool), else one line naming ``what``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise UserError(f"{what}: {must} a number >= 0; got {value!r}")
    return number


def resolve_rerank(stored: dict | None, weights: dict | None, band, types: dict[str, str]) -> RerankSpec | None:
    """The re-ranking of a request: the index's (``stored``: index.json's ``rerank``) with the
    request's ``weights`` laid over it column by column and its ``band`` if given; None when no
    term is left (image distance alone)."""
    stored = stored or {}
    merged = dict(stored.get("weights", {}))
    for column, w in (weights or {}).items():
        merged[column] = check_weight(f"rerank {column}", w)
    check_columns("rerank", merged, types)
    merged = {c: float(w) for c, w in merged.items() if w > 0}
    if not merged:
        return None
    return RerankSpec(merged, check_band(stored.get("band", DEFAULT_BAND) if band is None else band))


def query_values(table: AttributeTable, spec: RerankSpec, item_id: int | None = None,
                 predicted: dict | None = None, prefer: dict | None = None) -> dict:
    """The query's value of each weighted column (None: unknown), in the order of precedence
    ``prefer`` > the catalog item's own > the predicted label of a same-named task."""
    out = {}
    for column in spec.weights:
        value = None
        if predicted and column in predicted and table.types[column] == "text":
            value = predicted[column]
        if item_id is not None and item_id >= 0 and table.value(column, item_id) is not None:
            value = table.value(column, item_id)
        if prefer and column in prefer:
            value = prefer[column]
        out[column] = value
    return out


def check_prefer(prefer: dict | None, table: AttributeTable) -> dict:
    """``--prefer column=value``: known columns, and numbers and booleans that parse."""
    prefer = dict(prefer or {})
    check_columns("prefer", prefer, table.types)
    for column, value in prefer.items():
        kind = table.types[column]
        code = table.code(column, value)
        if (kind == "number" and np.isnan(code)) or (kind == "boolean" and code < 0):
            raise UserError(f"prefer {column}={value}: '{column}' is a {kind} column; '{value}' is not one")
    return prefer


def score(dist: np.ndarray, cand: np.ndarray, queries: list[dict], table: AttributeTable,
          spec: RerankSpec) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The hybrid scores of candidate pools: ``dist`` and ``cand`` (m, P) as the k-NN search gave
    them (id -1 at distance inf: no candidate); ``queries`` one ``{column: value}`` per row.

    Returns ``(total, image, terms)``, each (m, P) (``terms``: one array per column), with
    ``total = image + sum(terms)``; a slot without a candidate scores inf.
    """
    valid = cand >= 0
    d = np.where(valid, dist, np.nan).astype(np.float64)
    with np.errstate(invalid="ignore"):
        d_min = np.nanmin(np.where(valid.any(1, keepdims=True), d, 0.0), axis=1, keepdims=True)
        span = np.nanmax(np.where(valid.any(1, keepdims=True), d, 0.0), axis=1, keepdims=True) - d_min
    image = np.where(span > 0, (d - d_min) / np.where(span > 0, span, 1.0), 0.0)
    safe = np.where(valid, cand, 0)
    terms = {}
    for column, w in spec.weights.items():
        values = table.values[column][safe]
        q = np.array([table.code(column, qv.get(column)) for qv in queries], np.float64)[:, None]
        known = ~np.isnan(q) if table.types[column] == "number" else q != -1
        if table.types[column] == "number":
            with np.errstate(invalid="ignore"):
                agree = np.abs(values - q) <= spec.band * np.abs(q)
        else:
            agree = values == q
        terms[column] = np.where(known & valid, w * (1.0 - agree), 0.0)
    total = image + sum(terms.values()) if terms else image.copy()
    return np.where(valid, total, np.inf), np.where(valid, image, np.nan), terms


def rerank_order(total: np.ndarray, dist: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Each row's candidate order by (score, distance, id), lowest first (empty slots last)."""
    ids = np.where(cand >= 0, cand, np.iinfo(np.int64).max)
    return np.lexsort((ids, dist, total), axis=-1)


def explain_parts(dist: float, image: float, terms: dict[str, float], total: float) -> dict:
    """One result's parts of the score: ``image + sum(terms) == total`` (to rounding)."""
    return {"image_distance": round(float(dist), 6), "image": round(float(image), 6),
            "terms": {c: round(float(t), 6) for c, t in terms.items()}, "total": round(float(total), 6)}
