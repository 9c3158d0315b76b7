"""``balltree``: exact search in scikit-learn's ``BallTree`` (the paper's choice)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ..configtypes import Choice, Range
from .base import Backend, register, squared_norms


@dataclass
class BallTreeParams(Choice):
    leaf_size: Annotated[int, Range(ge=1)] = 40  # points per leaf of the tree


@register
class BallTreeBackend(Backend):
    """``sklearn.neighbors.BallTree`` over the vectors, rebuilt on ``add`` and at load.

    scikit-learn is imported on the first ``fit``: its neighbours module takes ~0.45-0.7 s to
    import cold on 2 cores (``python -X importtime``), which no other backend pays.
    Queries are single-threaded. Filtered queries never use the tree (it cannot skip items, and at
    2048-d it prunes almost nothing): they scan the allowed rows (``fashionrec.knn.filtered``).
    """

    name = "balltree"
    exact = True
    rounding = 1e-9  # BallTree computes in float64
    Params = BallTreeParams

    def fit(self, X):
        self.X = X
        self._build()
        self.sq_norms = squared_norms(X)  # for filtered queries, which scan the allowed rows
        self._track_norm_max(X, self.sq_norms)

    def add(self, X):
        norms = squared_norms(X)
        self.X = np.concatenate([self.X, X])
        self.sq_norms = np.concatenate([self.sq_norms, norms])
        self._build()
        self._track_norm_max(X, norms)

    def subset_norms(self, ids):
        return self.sq_norms[ids]

    def _build(self):
        from sklearn.neighbors import BallTree

        self.tree = BallTree(self.X, leaf_size=self.leaf_size, metric="euclidean")

    def search(self, Q, k):
        dist, ids = self.tree.query(Q, k=k)
        return dist**2, ids.astype(np.int64)

    def rows(self, ids):
        return self.X[ids]

    def vectors(self):
        return self.X

    @property
    def nbytes(self):
        return sum(np.asarray(a).nbytes for a in self.tree.get_arrays()) + self.sq_norms.nbytes
