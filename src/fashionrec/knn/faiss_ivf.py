"""``faiss-ivf``: approximate search in k-means cells (``faiss.IndexIVFFlat``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ..configtypes import Choice, Range
from ._faiss import FilteredIVF, SavedFaissBackend, import_faiss
from .base import CHUNK_ROWS, register, squared_norms

_BLOCK_BYTES = 256 << 20  # the (rows x cells) float32 block of the cell assignment


@dataclass
class IVFParams(Choice):
    # k-means cells; None: sqrt(n), at most n // 39 (faiss's minimum points per cell)
    nlist: Annotated[int, Range(ge=1)] | None = None
    nprobe: Annotated[int, Range(ge=1)] = 16  # cells scanned per query


@register
class FaissIVFBackend(FilteredIVF, SavedFaissBackend):
    """``faiss.IndexIVFFlat``: ``nprobe`` of ``nlist`` cells scanned per query.

    ``auto`` picks it beyond 1 GiB of vectors: at 1M x 2048 it builds in ~2 min and answers in
    ~3 ms at recall@5 0.99 (nprobe 4) on clustered data on 2 cores; unstructured data need a
    far larger nprobe (benchmarks/RESULTS.md). ``nlist`` None: ``sqrt(n)``, at most ``n // 39``
    (faiss's minimum points per cell). ``add`` assigns new rows to the existing cells: no
    retraining. Saved in faiss's format: loading does not retrain. Filtered queries: see
    ``FilteredIVF`` (probes cells until they hold enough allowed items).
    """

    name = "faiss-ivf"
    Params = IVFParams
    search_params = ("nprobe",)
    faiss_class = "IndexIVFFlat"

    def fit(self, X):
        faiss = import_faiss()
        n, d = X.shape
        nlist = self.nlist if self.nlist is not None else max(1, min(round(math.sqrt(n)), n // 39))
        if nlist > n:
            raise ValueError(f"nlist must be at most the number of vectors ({n}); got {nlist}")
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        # k-means on at most 40 points per cell (faiss recommends >= 39) and 10 iterations (faiss's
        # defaults: 256 and 25): the cells only route queries, and at 1M x 2048 this keeps
        # training to about 20 s on 2 cores.
        index.cp.niter = 10
        index.cp.max_points_per_centroid = 40
        index.cp.min_points_per_centroid = 1  # no warning spam for small n; nlist is capped above
        index.train(X)
        self.index = index
        self.add(X)
        self.loaded()

    def loaded(self):
        self.index.make_direct_map()  # id -> vector, for re-ranking and save

    def add(self, X):
        # Assign rows to cells with numpy's BLAS (about 2x faiss's bundled one here; at
        # 1M x 2048 with 1000 cells this is the bulk of the build), then add them preassigned.
        faiss = import_faiss()
        self._forget_cells()
        centroids = self.index.quantizer.reconstruct_n(0, self.index.nlist)
        sq_norms = squared_norms(centroids)
        block = max(1, min(CHUNK_ROWS, _BLOCK_BYTES // (4 * len(centroids))))
        for start in range(0, len(X), block):
            rows = X[start:start + block]
            scores = rows @ centroids.T
            scores *= -2
            scores += sq_norms
            cells = np.ascontiguousarray(scores.argmin(axis=1), dtype=np.int64)
            self.index.add_core(len(rows), faiss.swig_ptr(rows), None, faiss.swig_ptr(cells))

    def search(self, Q, k):
        faiss = import_faiss()
        params = faiss.SearchParametersIVF(nprobe=min(self.nprobe, self.index.nlist))
        # one query: split the scan over the probed cells, not over queries (faiss's default)
        self.index.parallel_mode = 1 if len(Q) < faiss.omp_get_max_threads() else 0
        return self.index.search(Q, k, params=params)

    def search_allowed(self, Q, k, allowed):
        return self._search_ivf_allowed(Q, k, allowed)

    def rows(self, ids):
        return self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def vectors(self):
        return self.rows(np.arange(self.index.ntotal))

    def storage(self):
        return self.vectors()

    def fitted_params(self):
        return {"nlist": int(self.index.nlist)}

    @property
    def nbytes(self):
        n, d, nlist = self.index.ntotal, self.index.d, self.index.nlist
        return n * (d * 4 + 8) + nlist * d * 4 + 8 * n  # lists (vectors + ids), centroids, id map
