"""What the faiss backends share: the import, thread limits, the flat vector storage, index files."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import UserError
from .base import CHUNK_ROWS, Backend, limit_blas_threads, squared_norms

FAISS_FILE = "index.faiss"
_ASSIGN_BLOCK_BYTES = 256 << 20  # the (rows x cells) float32 block of the cell assignment
_RECENT_FILTERS = 16  # filtered IVF search keeps the per-cell counts of this many filters
PROBE_TARGET = 0.5  # FilteredIVF: probed cells hold at least this share of what nprobe cells hold, allowed


def import_faiss():
    """Import faiss, by default with OpenMP threads that sleep rather than spin when idle.

    libgomp's default lets idle threads spin for a while after each parallel region; on a small
    machine they then starve the BLAS threads of the numpy code that runs next (re-ranking, the
    brute backend) and of other processes. Measured on 2 cores: one IVF query 40 ms -> 1.9 ms,
    faiss-flat batch of 64 at 20k x 2048: 730 ms -> 240 ms. Only a default: an OMP_WAIT_POLICY
    the user set wins, and it takes effect only if faiss's libgomp is not loaded yet.
    """
    if "faiss" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    return faiss


@contextlib.contextmanager
def limit_faiss_threads(threads):
    """Run the block with ``threads`` threads in faiss (OpenMP) and numpy's BLAS; None: defaults."""
    if threads is None:
        yield
        return
    faiss = import_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        with limit_blas_threads(threads):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def nearest_centroids(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid of each row of ``X`` (int64), with numpy's BLAS, in blocks.

    About 2x faiss's bundled BLAS on this machine; at 1M x 2048 and 1000 cells the assignment is
    the bulk of an IVF build.
    """
    sq_norms = squared_norms(centroids)
    block = max(1, min(CHUNK_ROWS, _ASSIGN_BLOCK_BYTES // (4 * len(centroids))))
    cells = np.empty(len(X), np.int64)
    for start in range(0, len(X), block):
        scores = X[start:start + block] @ centroids.T
        scores *= -2
        scores += sq_norms  # |x - c|^2 - |x|^2
        cells[start:start + block] = scores.argmin(axis=1)
    return cells


class FaissBackend(Backend):
    """A backend around one faiss index (``self.index``), which keeps its own copy of the vectors."""

    index = None

    @classmethod
    def limit_threads(cls, threads):
        return limit_faiss_threads(threads)

    def _flat(self):
        """The ``IndexFlat`` that holds the vectors."""
        return self.index

    def add(self, X):
        self.index.add(X)
        if self.exact:
            self._track_norm_max(X)

    def storage(self):
        """The vectors without a copy: a view valid only while this backend lives, until ``add``."""
        faiss = import_faiss()
        flat = self._flat()
        n, d = flat.ntotal, flat.d
        return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)

    def rows(self, ids):
        return self.storage()[ids]

    def vectors(self):
        return self.storage().copy()


class SavedFaissBackend(FaissBackend):
    """A faiss backend saved in faiss's own binary format (``index.faiss``): loading does not retrain."""

    data_file = FAISS_FILE
    faiss_class: ClassVar[str] = ""  # the class ``faiss.read_index`` must return

    def save(self, directory: Path) -> str:
        import_faiss().write_index(self.index, str(Path(directory) / FAISS_FILE))
        return FAISS_FILE

    @classmethod
    def load(cls, path: Path, n: int, dim: int, params: dict) -> SavedFaissBackend:
        faiss = import_faiss()
        try:
            index = faiss.read_index(str(path))  # already the concrete class
        except RuntimeError as e:
            raise UserError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None
        if not isinstance(index, getattr(faiss, cls.faiss_class)) or (index.ntotal, index.d) != (n, dim):
            raise UserError(f"{path}: holds {type(index).__name__} {index.ntotal} x {index.d}; "
                            f"knn.json says {cls.name} {n} x {dim}")
        backend = cls(**params)
        backend.index = index
        backend.loaded()
        return backend

    def loaded(self) -> None:
        """Restore what faiss's file does not hold (called after ``load``)."""


class FilteredIVF:
    """Filtered search inside an IVF index (faiss-ivf, faiss-ivfpq), mixed into their backends.

    Per query, the cells are probed nearest first -- at least ``nprobe`` -- until they hold half as many
    allowed items as the first ``nprobe`` cells hold items (``PROBE_TARGET``), and at least the ``width``
    candidates asked for; faiss skips the rest with an ``IDSelectorBitmap``. A filter keeping half the
    catalog probes the same cells as an unfiltered query, a sparse one more, and a filter whose items
    crowd near the query (a category) fewer than one whose items lie far from it. Measured at 200k x 2048
    (synthetic clusters, faiss-ivf, 2 busy cores), recall@5 against exact filtered search keeping 50% /
    5% / 1%: nprobe 4: 0.83 / 0.91 / 0.99 (unfiltered 0.83), nprobe 16: 0.91 / 1.00 / 1.00 (0.92), at
    0.8-1.6x the unfiltered p50. Probing until the cells hold as many allowed items as unfiltered scores
    (``PROBE_TARGET`` 1): 0.87 / 0.96 / 1.00 and 0.95 / 1.00 / 1.00 at 1.7-4.6x (3.1-3.8x at 1M); only
    the ``nprobe`` cells: 0.82 / 0.69 / 0.32 and 0.91 / 0.81 / 0.52.

    Needs the cell of every item (``_cells``: 4 bytes per item, built from the inverted lists at the first
    filtered query, again after ``add``) and each filter's allowed count per cell: one pass over the
    cells, ~1.5 ms at 1M, kept for the 16 filters used last (a filter used again skips it).
    """

    _cells = None  # the cell of each id (int32)
    _cell_sizes = None
    _recent_filters = None  # packed mask -> allowed items per cell, least recently used first (set with _cells)
    # what probing a cell costs beyond scoring its allowed vectors, in rows gathered by the exact scan
    cell_cost_rows = 0.0

    def _ivf(self):
        return self.index

    def _filter_width(self, k):
        """Candidates ``search_allowed`` asks faiss for."""
        return k

    def filter_scan_rows(self, k):
        """Scan the allowed rows when they are no more than an unfiltered query scores (``nprobe`` of
        ``nlist`` cells: it reads no more vectors, and exactly), or than the cells it would probe cost:
        with ``c`` allowed spread over the cells, at most ``max(nprobe n, width nlist) / c`` cells (the probing
        stops at ``PROBE_TARGET`` of that), each ``cell_cost_rows``; equal to ``c`` rows at
        ``c = sqrt(cell_cost_rows * max(nprobe n, width nlist))``."""
        ivf = self._ivf()
        n, nlist, nprobe = ivf.ntotal, ivf.nlist, min(self.nprobe, ivf.nlist)
        probed_rows = max(nprobe * n, self._filter_width(k) * nlist)
        return max(nprobe * n / nlist, math.sqrt(self.cell_cost_rows * probed_rows))

    def _forget_cells(self):
        self._cells = self._cell_sizes = None
        self._recent_filters = {}

    def _allowed_per_cell(self, allowed) -> np.ndarray:
        faiss = import_faiss()
        ivf = self._ivf()
        if self._cells is None or len(self._cells) != ivf.ntotal:
            cells = np.empty(ivf.ntotal, np.int32)
            for cell in range(ivf.nlist):
                size = ivf.invlists.list_size(cell)
                if size:
                    cells[faiss.rev_swig_ptr(ivf.invlists.get_ids(cell), size)] = cell
            self._forget_cells()
            self._cells, self._cell_sizes = cells, np.bincount(cells, minlength=ivf.nlist)
        key = allowed.bitmap.tobytes()  # 125 kB at 1M items: hashed and compared in ~0.05 ms
        counts = self._recent_filters.pop(key, None)
        if counts is None:
            # bincount with weights: ~1.5 ms at 1M whatever the share (indexing by the mask: 0.1-5 ms)
            counts = np.bincount(self._cells, weights=allowed.mask, minlength=ivf.nlist)
            if len(self._recent_filters) >= _RECENT_FILTERS:  # drop the least recently used (another thread may
                self._recent_filters.pop(next(iter(self._recent_filters), None), None)  # have done it already)
        self._recent_filters[key] = counts
        return counts

    def _search_ivf_allowed(self, Q, width, allowed):
        """(squared distances, ids) of the ``width`` best allowed per row of ``Q`` (already rotated for
        OPQ), -1 where the probed cells held fewer."""
        faiss = import_faiss()
        ivf = self._ivf()
        m, nlist, nprobe = len(Q), ivf.nlist, min(self.nprobe, ivf.nlist)
        counts = self._allowed_per_cell(allowed)
        centroid_sq, order = ivf.quantizer.search(Q, nlist)  # every cell, nearest first
        target = np.maximum(PROBE_TARGET * self._cell_sizes[order[:, :nprobe]].sum(axis=1), width)
        probes = np.minimum((np.cumsum(counts[order], axis=1) < target[:, None]).sum(axis=1) + 1, nlist)
        probes = np.maximum(probes, nprobe)
        wide = int(probes.max())
        order = np.ascontiguousarray(order[:, :wide])
        order[np.arange(wide)[None] >= probes[:, None]] = -1  # faiss skips cells < 0
        centroid_sq = np.ascontiguousarray(centroid_sq[:, :wide])
        selector = allowed.faiss_selector(faiss)
        params = faiss.SearchParametersIVF(nprobe=wide, sel=selector)
        dist, ids = np.empty((m, width), np.float32), np.empty((m, width), np.int64)
        ivf.parallel_mode = 1 if m < faiss.omp_get_max_threads() else 0
        # the C++ call: faiss's Python wrapper of search_preassigned takes no params (no selector)
        ivf.search_preassigned_c(m, faiss.swig_ptr(Q), width, faiss.swig_ptr(order), faiss.swig_ptr(centroid_sq),
                                 faiss.swig_ptr(dist), faiss.swig_ptr(ids), False, params)
        del selector
        return dist, ids
