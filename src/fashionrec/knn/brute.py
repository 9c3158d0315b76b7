"""``brute``: exact search with numpy, one float32 matrix product against the stored vectors."""

from __future__ import annotations

import numpy as np

from .base import Backend, register, squared_norms

_BLOCK_BYTES = 256 << 20  # the (queries x items) float32 block


@register
class BruteBackend(Backend):
    """numpy only: nothing to build but |x|^2 per row, nothing imported.

    Exact search is memory-bound: one query reads n*d*4 bytes. The float32 GEMV takes ~1.5x a
    plain read of those bytes on 2 shared cores (AMD EPYC, 23-33 GB/s; ~1.0x when the machine
    was idle): 20k x 2048: ~8 ms, 200k: ~60-80 ms, 1M: ~0.4 s per query (scripts/bench_knn.py,
    benchmarks/RESULTS.md). ``fit`` keeps a reference to the caller's array, no copy.
    """

    name = "brute"
    exact = True
    # The float32 expansion |x|^2 - 2 x.q has a rounding error of order
    # sqrt(d) * eps32 * (|q|^2 + |x|^2): 1e-5 of that scale covers d up to ~25000.
    rounding = 1e-5

    def fit(self, X):
        self.X = X
        self.sq_norms = squared_norms(X)
        self._track_norm_max(X, self.sq_norms)

    def add(self, X):
        norms = squared_norms(X)
        self.X = np.concatenate([self.X, X])
        self.sq_norms = np.concatenate([self.sq_norms, norms])
        self._track_norm_max(X, norms)

    def search(self, Q, k):
        """One float32 product per block of queries; the k smallest of each row, by (distance, id)."""
        X, sq_norms, n = self.X, self.sq_norms, len(self.X)
        q_sq = np.einsum("ij,ij->i", Q, Q, dtype=np.float64)
        block = max(1, _BLOCK_BYTES // (4 * n))
        out_d, out_i = np.empty((len(Q), k)), np.empty((len(Q), k), np.int64)
        for start in range(0, len(Q), block):
            q = Q[start:start + block]
            # |q - x|^2 - |q|^2 = |x|^2 - 2 x.q : one GEMV/GEMM pass over X, in place after it
            part = (X @ q[0])[None] if len(q) == 1 else q @ X.T
            part *= -2
            part += sq_norms
            kth = np.partition(part, k - 1, axis=1)[:, k - 1] if k < n else part.max(axis=1)
            rows, cols = np.nonzero(part <= kth[:, None])  # at least k per row (more on ties)
            approx = part[rows, cols].astype(np.float64) + q_sq[start + rows]
            order = np.lexsort((cols, approx, rows))
            counts = np.bincount(rows, minlength=len(q))
            take = (np.cumsum(counts) - counts)[:, None] + np.arange(k)
            out_d[start:start + len(q)] = approx[order][take]
            out_i[start:start + len(q)] = cols[order][take]
        return out_d, out_i

    def rows(self, ids):
        return self.X[ids]

    def vectors(self):
        return self.X

    @property
    def nbytes(self):
        return self.X.nbytes + self.sq_norms.nbytes
