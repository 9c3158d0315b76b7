"""``brute``: exact search with numpy, one float32 matrix product against the stored vectors."""

from __future__ import annotations

import numpy as np

from .base import Backend, register, squared_norms

_BLOCK_BYTES = 256 << 20  # the (queries x items) float32 block
# rows gathered at a time when scanning a subset of the rows: 2 MiB at 2048-d stays in cache for the product
_GATHER_BYTES = 2 << 20
# filtered search: allowed sets up to this fraction of the items are scanned on their own rows (gathered in
# cache-sized chunks); larger ones by the full product with |x|^2 = inf for the rest (see search_allowed).
# Gathering costs ~3-4x a streaming read per row. 1M x 2048, one query, scan / masked product (2 cores, load
# ~1): 21 / 257 ms keeping 2%, 53 / 260 at 5%, 97 / 259 at 10%, 170 / 260 at 20%, 249 / 263 at 30%. 0.2
# leaves a margin: the gather suffers more than the streaming product when other jobs load the machine.
SUBSET_FRACTION = 0.2


def scan(Q, k, read, sq_norms, ids=None):
    """Brute force: the ``k`` smallest approximate squared distances per query, ``(float64, int64 ids)``,
    each row sorted by (distance, id), at least ``k`` rows scanned.

    ``read(ids)`` returns stored rows (float32); ``ids``: the rows scanned, ascending (None: all, and
    ``read`` is then the whole (n, d) array); ``sq_norms``: their |x|^2 (None: computed from the rows
    read), inf for a row that must never be returned. One float32 product per block of queries:
    |q - x|^2 = |x|^2 - 2 x.q + |q|^2.
    """
    n = len(ids) if ids is not None else len(read)
    q_sq = np.einsum("ij,ij->i", Q, Q, dtype=np.float64)
    block = max(1, _BLOCK_BYTES // (4 * n))
    out_d, out_i = np.empty((len(Q), k)), np.empty((len(Q), k), np.int64)
    for start in range(0, len(Q), block):
        q = Q[start:start + block]
        if ids is None:
            # |q - x|^2 - |q|^2 = |x|^2 - 2 x.q : one GEMV/GEMM pass over X, in place after it
            part = (read @ q[0])[None] if len(q) == 1 else q @ read.T
            part *= -2
            part += sq_norms
        else:
            part = _subset_part(q, read, sq_norms, ids)
        kth = np.partition(part, k - 1, axis=1)[:, k - 1] if k < n else part.max(axis=1)
        rows, cols = np.nonzero(part <= kth[:, None])  # at least k per row (more on ties)
        approx = part[rows, cols].astype(np.float64) + q_sq[start + rows]
        if ids is not None:
            cols = ids[cols]
        order = np.lexsort((cols, approx, rows))
        counts = np.bincount(rows, minlength=len(q))
        take = (np.cumsum(counts) - counts)[:, None] + np.arange(k)
        out_d[start:start + len(q)] = approx[order][take]
        out_i[start:start + len(q)] = cols[order][take]
    return out_d, out_i


def gathered_sq_norms(rows: np.ndarray) -> np.ndarray:
    """|x|^2 of rows just read, float32 with numpy's pairwise summation: relative error ~1e-7, far inside
    the scan's ``rounding`` (1e-5), and 3x faster than float64 accumulation (1,000 x 2048: 4.5 ms
    against 14.7 on 2 busy cores)."""
    return np.square(rows).sum(axis=1)


def _subset_part(q, read, sq_norms, ids):
    """|x|^2 - 2 x.q for the rows ``ids``, gathered a cache-sized chunk at a time (no n_ids x d copy)."""
    part = np.empty((len(q), len(ids)), np.float32)
    step = max(1, _GATHER_BYTES // (4 * q.shape[1]))
    for start in range(0, len(ids), step):
        rows = read(ids[start:start + step])
        block = q @ rows.T
        block *= -2
        block += sq_norms[start:start + step] if sq_norms is not None else gathered_sq_norms(rows)
        part[:, start:start + step] = block
    return part


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
        return scan(Q, k, self.X, self.sq_norms)

    def filter_scan_rows(self, k):
        return int(SUBSET_FRACTION * len(self.X))

    def subset_norms(self, ids):
        return self.sq_norms[ids]

    def search_allowed(self, Q, k, allowed):
        """The full product with |x|^2 = inf for the rows not allowed: they rank last at no extra cost
        (``k`` is at most the allowed count, so none is returned)."""
        return scan(Q, k, self.X, np.where(allowed.mask, self.sq_norms, np.float32(np.inf)))

    def rows(self, ids):
        return self.X[ids]

    def vectors(self):
        return self.X

    @property
    def nbytes(self):
        return self.X.nbytes + self.sq_norms.nbytes
