"""What the faiss backends share: the import, thread limits, the flat vector storage, index files."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import UserError
from .base import CHUNK_ROWS, Backend, limit_blas_threads, squared_norms

FAISS_FILE = "index.faiss"
_ASSIGN_BLOCK_BYTES = 256 << 20  # the (rows x cells) float32 block of the cell assignment


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
