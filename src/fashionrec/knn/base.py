"""The backend protocol behind :class:`~fashionrec.knn.KNNIndex`, its registry, shared helpers.

A backend is one search structure with six verbs: ``fit``, ``add``, ``search`` (its own k best,
approximate or not), ``nbytes``, ``save`` and ``load``; plus ``rows`` and ``vectors``, which
hand the stored vectors to the façade for exact re-ranking. Everything else -- parameter
checks, the ``auto`` rule, re-ranking, ties, ``exclude``, the ``knn.json`` description -- is
the façade's (:mod:`fashionrec.knn.index`).

Adding a backend is one new module with a ``@register`` class, imported once in
``fashionrec/knn/__init__.py``. A backend imports its library inside its methods, never at
module level: listing the backends (``BACKENDS``) must not import scikit-learn or faiss.
"""

from __future__ import annotations

import contextlib
import numbers
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..artifacts import load_npy, save_npy
from ..errors import UserError

VECTORS_FILE = "vectors.npy"
CHUNK_ROWS = 8192  # rows per chunk for passes over the stored vectors

_REGISTRY: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make ``cls`` available to :class:`KNNIndex` under ``cls.name``."""
    if not cls.name or cls.name == "auto" or cls.name in _REGISTRY:
        raise ValueError(f"backend name {cls.name!r} is empty, reserved or already registered")
    _REGISTRY[cls.name] = cls
    return cls


def backend_names(exact_only: bool = False) -> tuple[str, ...]:
    """The registered backends' names, sorted (``"auto"`` is the façade's and not among them)."""
    return tuple(sorted(name for name, cls in _REGISTRY.items() if cls.exact or not exact_only))


def backend_class(name: str) -> type[Backend]:
    return _REGISTRY[name]


# ---------------------------------------------------------------------------- helpers


def check_int(name, value, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}; got {value!r}")
    return int(value)


def as_matrix(name, X, dim=None) -> np.ndarray:
    """``X`` as a C-contiguous float32 (n, d) array (no copy if it already is one), checked."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, dim); got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric; got dtype {X.dtype}")
    if dim is not None and X.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns (the index's dim); got {X.shape[1]}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    for start in range(0, len(X), CHUNK_ROWS):  # chunked: no n*d temporary
        if not np.isfinite(X[start:start + CHUNK_ROWS]).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    return X


def squared_norms(X: np.ndarray) -> np.ndarray:
    """Row-wise |x|^2, accumulated in float64 (chunked), returned as float32."""
    out = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), CHUNK_ROWS):
        chunk = X[start:start + CHUNK_ROWS].astype(np.float64)
        out[start:start + CHUNK_ROWS] = np.einsum("ij,ij->i", chunk, chunk)
    return out


_threadpool_controller = None


@contextlib.contextmanager
def limit_blas_threads(threads):
    """Run the block with ``threads`` threads in numpy's BLAS; None: the library's default."""
    if threads is None:
        yield
        return
    global _threadpool_controller
    from threadpoolctl import ThreadpoolController

    if _threadpool_controller is None:  # created once: inspecting the loaded libraries is slow
        _threadpool_controller = ThreadpoolController()
    with _threadpool_controller.limit(limits=threads, user_api="blas"):
        yield


# ---------------------------------------------------------------------------- the protocol


class Backend:
    """One search structure over float32 vectors; row i of what was fitted and added has id i.

    The façade hands every verb checked input: C-contiguous float32 matrices of the right width,
    ``k`` between 1 and the number of items. Subclasses set the class attributes and implement
    ``fit``, ``add``, ``search``, ``rows``, ``vectors`` and ``nbytes``; ``save`` / ``load``
    default to the vectors as ``.npy``, the structure rebuilt at load.
    """

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = False
    # Exact backends: relative rounding error of the squared distances ``search`` returns, as a
    # fraction of |q|^2 + max |x|^2 (see ``slack``). The façade re-ranks candidates by direct
    # float64 distances and widens the candidate list until no item left out can be as close.
    rounding: ClassVar[float] = 0.0
    params: ClassVar[tuple[str, ...]] = ()  # the KNNIndex parameters the constructor takes
    data_file: ClassVar[str] = VECTORS_FILE  # what ``save`` writes (``knn.json``'s "data")

    def __init__(self, **params):
        for name in self.params:
            setattr(self, name, params[name])
        self.sq_norm_max = 0.0  # exact backends: the largest |x|^2 (scale of their rounding)

    @classmethod
    def limit_threads(cls, threads):
        """A context in which the backend's libraries use ``threads`` threads (None: defaults)."""
        return limit_blas_threads(threads)

    def fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def add(self, X: np.ndarray) -> None:
        """Append rows; they get the next ids."""
        raise NotImplementedError

    def search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The backend's own ``k`` best per row: (squared distances, int64 ids), ascending.

        Approximate backends may return fewer (id -1, distance inf). Exact ones return ``k``
        whose distances are right to within ``slack``, and every item left out is at least as
        far (up to the same rounding) as the last one returned.
        """
        raise NotImplementedError

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of ``ids``, float32 (len(ids), dim)."""
        raise NotImplementedError

    def vectors(self) -> np.ndarray:
        """All the stored vectors, float32 (n, dim): the fitted array itself or a copy."""
        raise NotImplementedError

    def storage(self) -> np.ndarray:
        """The stored vectors without a copy where possible (a view valid until the next add)."""
        return self.vectors()

    @property
    def nbytes(self) -> int:
        """Memory held by the structure (vectors included), in bytes."""
        raise NotImplementedError

    def fitted_params(self) -> dict:
        """Parameters decided at fit time (e.g. IVF's cell count), recorded by ``get_params``."""
        return {}

    def slack(self, q_sq: np.ndarray) -> np.ndarray:
        """How far ``search``'s squared distances may be off, per query with |q|^2 = ``q_sq``."""
        return self.rounding * (q_sq + self.sq_norm_max)

    def _track_norm_max(self, X: np.ndarray, norms: np.ndarray | None = None) -> None:
        if len(X):
            norms = squared_norms(X) if norms is None else norms
            self.sq_norm_max = max(self.sq_norm_max, float(norms.max()))

    def save(self, directory: Path) -> str:
        """Write the backend's data into ``directory``; returns the file name written."""
        save_npy(Path(directory) / VECTORS_FILE, self.storage())
        return VECTORS_FILE

    @classmethod
    def load(cls, path: Path, n: int, dim: int, params: dict) -> Backend:
        """The backend saved at ``path`` (``data_file``), which ``knn.json`` says is n x dim."""
        try:
            X = load_npy(path)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: cannot load ({e})") from None
        if X.shape != (n, dim):
            raise UserError(f"{path}: shape {X.shape}, knn.json says ({n}, {dim})")
        try:
            X = as_matrix("X", X)
        except ValueError as e:
            raise UserError(f"{path}: {e}") from None
        backend = cls(**params)
        backend.fit(X)
        return backend
