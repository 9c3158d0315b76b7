"""``faiss-hnsw``: approximate search in a navigable small-world graph (``faiss.IndexHNSWFlat``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from ..configtypes import Choice, Range
from ._faiss import SavedFaissBackend, import_faiss
from .base import register


@dataclass
class HNSWParams(Choice):
    hnsw_m: Annotated[int, Range(ge=2)] = 32  # the graph's degree (M)
    ef_search: Annotated[int, Range(ge=1)] = 128  # search breadth (raised to k when smaller)
    ef_construction: Annotated[int, Range(ge=1)] = 200  # build breadth


@register
class FaissHNSWBackend(SavedFaissBackend):
    """``faiss.IndexHNSWFlat``: fast queries, slow to build at 2048-d.

    It builds at 2.5-8 ms per item at 2048-d on 2 cores (40 min to 2 h for 1M), so ``auto``
    never picks it; ask for it by name for a catalog built once and queried long. ``ef_search``
    is raised to k when smaller. Saved in faiss's format: loading does not rebuild the graph.
    """

    name = "faiss-hnsw"
    Params = HNSWParams
    search_params = ("ef_search",)
    faiss_class = "IndexHNSWFlat"

    def fit(self, X):
        self.index = import_faiss().IndexHNSWFlat(X.shape[1], self.hnsw_m)
        self.index.hnsw.efConstruction = self.ef_construction
        self.add(X)

    def _flat(self):
        return import_faiss().downcast_index(self.index.storage)

    def search(self, Q, k):
        params = import_faiss().SearchParametersHNSW(efSearch=max(self.ef_search, k))
        return self.index.search(Q, k, params=params)

    def filter_scan_rows(self, k):
        """``sqrt(2 * ef * M * n)``: the scaled search below visits ~2 ef M n / allowed nodes, which is more
        than the allowed rows themselves below that (a cost model; HNSW's filtered search is not benchmarked)."""
        return math.sqrt(2 * max(self.ef_search, k) * self.hnsw_m * self.index.ntotal)

    def search_allowed(self, Q, k, allowed):
        """faiss's HNSW search with an ``IDSelectorBitmap``: the graph is walked through every item, only the
        allowed ones are kept, so ``efSearch`` is scaled by ``n / allowed`` to keep as many."""
        faiss = import_faiss()
        ef = min(self.index.ntotal, math.ceil(max(self.ef_search, k) * self.index.ntotal / allowed.count))
        selector = allowed.faiss_selector(faiss)
        params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
        return self.index.search(Q, k, params=params)

    @property
    def nbytes(self):
        hnsw, n, d = self.index.hnsw, self.index.ntotal, self.index.d
        return n * d * 4 + 4 * (hnsw.neighbors.size() + hnsw.levels.size()) + 8 * hnsw.offsets.size()
