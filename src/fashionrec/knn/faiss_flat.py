"""``faiss-flat``: exact search in ``faiss.IndexFlatL2``."""

from __future__ import annotations

from ._faiss import FaissBackend, import_faiss
from .base import register


@register
class FaissFlatBackend(FaissBackend):
    """``faiss.IndexFlatL2``: a scan like ``brute``, in faiss's kernels (BLAS for batches of 20+).

    One query takes ~1.1-1.25x a plain read of the vectors, one thread (scripts/bench_knn.py).
    It copies the vectors on ``fit``; saved as ``vectors.npy`` and rebuilt at load (no training).
    """

    name = "faiss-flat"
    exact = True
    rounding = 1e-5  # float32 |x|^2 - 2 x.q for batches: see brute.BruteBackend.rounding

    def fit(self, X):
        self.index = import_faiss().IndexFlatL2(X.shape[1])
        self.add(X)

    def search(self, Q, k):
        return self.index.search(Q, k)

    @property
    def nbytes(self):
        return self.index.ntotal * self.index.d * 4
