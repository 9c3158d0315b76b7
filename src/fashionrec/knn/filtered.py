"""Filtered search: ``KNNIndex.query(Q, k, allowed=mask)`` returns only the items ``mask`` allows.

The façade (:meth:`KNNIndex.query <fashionrec.knn.KNNIndex.query>`) applies one rule on every
backend; backends differ only inside ``search_allowed`` and ``filter_scan_rows``:

1. No item allowed: every result is id -1 at distance inf. Every item allowed: an ordinary query.
   Results keep shape (m, k), ``k`` clamped against ``n_items`` as without a filter; past the
   allowed count they are padded with id -1 at distance inf.
2. An allowed set of at most ``backend.filter_scan_rows(k)`` items is searched exactly on its own
   rows (:class:`SubsetScan`): gathered in cache-sized chunks into one float32 product, candidates
   re-ranked from the vectors. It reads only those rows, so a small set is cheaper than an unfiltered
   query, and it is exact on every backend. Up to: ``brute`` 20% of the items (``SUBSET_FRACTION``,
   below the measured crossover with its masked product), ``faiss-flat`` never (its selector skips the
   rest before computing anything, faster than gathering at any share), ``balltree`` always (a tree
   cannot filter, and at 2048-d it prunes almost nothing), ``faiss-ivf`` the rows an unfiltered query
   scores (``nprobe`` cells of ``n / nlist``: no more vectors read, and exact), ``faiss-ivfpq`` that or
   more where its probed cells' lookup tables would cost more (``FilteredIVF.filter_scan_rows``),
   ``faiss-hnsw`` ``sqrt(2 * ef_search * hnsw_m * n)`` (where its scaled search would score as many).
3. Larger sets go through the structure, masked before ranking: ``brute`` adds |x|^2 = inf for the
   items left out in its one product (no extra cost); the faiss backends pass a
   ``faiss.IDSelectorBitmap`` in their search parameters (``sel=``). IVF probes, per query, the nearest
   cells until they hold enough allowed items (``FilteredIVF``: whatever the filter's share, and whether
   its items crowd near the query or lie far from it); HNSW scales ``efSearch`` by ``n / allowed``.
4. Approximate candidates are re-ranked exactly, like unfiltered ones; a row with fewer than
   ``min(k, allowed)`` results (the structure missed them) is searched again as in 2, so a filter
   never returns fewer results while enough matching items exist.

Measured (scripts/bench_knn.py --filtered; benchmarks/RESULTS.md, "k-NN filtered search"): 1M x 2048
synthetic clusters, random filters, one query, p50 against unfiltered timed interleaved, 2 shared cores:
``brute`` keeping 50% / 5% / 0.1%: 1.02x / 0.54x / 0.01x the unfiltered 230 ms; ``faiss-ivf`` nprobe 4:
1.15x / 1.39x / 1.17x the unfiltered 2.6 ms at recall@5 0.987 / 0.987 / 1.000 against exact filtered
search (unfiltered: 0.988), nprobe 16: 0.89x / 1.24x / 0.38x of 8.9 ms at 0.991 / 1.000 / 1.000 (0.996).
``faiss-ivfpq`` at 200k (nprobe 16, rerank_factor 100): 1.05x / 3.95x / 0.25x at 0.906 / 0.995 / 1.000
(0.917): its per-cell lookup tables make sparse filters that need many cells dear.
"""

from __future__ import annotations

import numpy as np

from .brute import BruteBackend, gathered_sq_norms, scan

# an approximate backend's allowed rows are copied into memory for the scan up to this size; past it
# they are read twice (|x|^2 first, for the rounding bound), never held whole
_MATERIALIZE_BYTES = 64 << 20


class AllowedSet:
    """A boolean mask over the items (True: may be returned) and what the backends derive from it."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self.n = len(mask)
        self.count = int(np.count_nonzero(mask))
        self._ids = self._bitmap = None

    @property
    def ids(self) -> np.ndarray:
        """The allowed ids, ascending (int64)."""
        if self._ids is None:
            self._ids = np.flatnonzero(self.mask).astype(np.int64, copy=False)
        return self._ids

    @property
    def bitmap(self) -> np.ndarray:
        """The mask packed as faiss's ``IDSelectorBitmap`` reads it: bit ``i % 8`` of byte ``i // 8``."""
        if self._bitmap is None:
            self._bitmap = np.packbits(self.mask, bitorder="little")
        return self._bitmap

    def faiss_selector(self, faiss):
        """A ``faiss.IDSelectorBitmap`` over :attr:`bitmap` (which this object keeps alive)."""
        return faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(self.bitmap))


def check_allowed(allowed, n: int) -> AllowedSet | None:
    """``allowed`` (None or a boolean array of shape (n,)) checked; None when it is None."""
    if allowed is None:
        return None
    mask = np.asarray(allowed)
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise ValueError(f"allowed must be a boolean array of shape ({n},) (True: the item may be returned); "
                         f"got {mask.dtype} {mask.shape}")
    return AllowedSet(mask)


class SubsetScan:
    """Exact candidate search among the stored rows ``ids`` of ``backend``: brute force over them.

    Exact backends hold their vectors in memory: the rows are gathered chunk by chunk in the scan,
    their |x|^2 from the backend where it keeps them, the rounding bounded by its largest |x|^2.
    Approximate backends (whose vectors may be memory-mapped) have their rows copied once when small,
    else read twice (|x|^2 first).
    """

    rounding = BruteBackend.rounding  # the same float32 expansion as brute's

    def __init__(self, backend, ids: np.ndarray):
        self.ids = ids
        self.rows = None  # the rows themselves when copied
        if backend.exact:
            self.read, self.norms, self.norm_max = backend.rows, backend.subset_norms(ids), backend.sq_norm_max
            return
        dim = backend.rows(ids[:1]).shape[1]
        if len(ids) * dim * 4 <= _MATERIALIZE_BYTES:
            self.rows = backend.rows(ids)
            self.norms = gathered_sq_norms(self.rows)
        else:
            self.read = backend.rows
            step = max(1, _MATERIALIZE_BYTES // (4 * dim))
            self.norms = np.concatenate([gathered_sq_norms(backend.rows(ids[start:start + step]))
                                         for start in range(0, len(ids), step)])
        self.norm_max = float(self.norms.max())

    def search(self, Q, k):
        """Like ``Backend.search``: (approximate squared distances, ids), at least as far for the rest."""
        if self.rows is not None:
            sq, local = scan(Q, k, self.rows, self.norms)
            return sq, self.ids[local]
        return scan(Q, k, self.read, self.norms, ids=self.ids)

    def slack(self, q_sq):
        return self.rounding * (q_sq + self.norm_max)
