"""The backend protocol behind :class:`~fashionrec.knn.KNNIndex`, its registry, shared helpers.

A backend is one search structure with six verbs: ``fit``, ``add``, ``search`` (its own k best,
approximate or not), ``nbytes``, ``save`` and ``load``; plus ``rows`` and ``vectors``, which
hand the stored vectors to the façade for exact re-ranking, and optionally ``search_allowed``
with ``filter_scan_rows`` (filtered search inside the structure; without them a filtered query
scans the allowed rows). Everything else -- parameter checks, the ``auto`` rule, re-ranking,
ties, ``exclude``, filters, the ``knn.json`` description -- is the façade's
(:mod:`fashionrec.knn.knn_index`, :mod:`fashionrec.knn.filtered`).

A backend with ``external_vectors`` (``faiss-ivfpq``) holds only a compressed structure and a
reference to the caller's vectors, which may be a memory-mapped ``.npy`` or
:class:`TransformedRows` over one: it reads only the rows it re-ranks, never the whole array.

Each backend owns its parameters: a small dataclass, its ``Params`` (fields with their defaults and
:class:`~fashionrec.configtypes.Range`), which ``index.yaml``'s ``backend: {name: ..., <its keys>}``
fills and the façade's keywords reach. A parameter several backends share (``nlist``, ``nprobe``) has
one default and range in all of them.

Adding a backend is one new module with a ``@register`` class, imported once in
``fashionrec/knn/__init__.py`` (or anywhere before it is used). A backend imports its library inside
its methods, never at module level: listing the backends (``BACKENDS``) must not import scikit-learn or faiss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np

from ..artifacts import atomic_path, load_npy, save_npy
from ..configtypes import Choice, Range, range_words
from ..errors import UserError
from ..registry import Registry

VECTORS_FILE = "vectors.npy"
CHUNK_ROWS = 8192  # rows per chunk for passes over the stored vectors
_NORM_BLOCK_BYTES = 1 << 20  # float64 rows per block of squared_norms

# Every module of the knn package is imported on first use, and plugins (fashionrec.registry)
BACKEND_REGISTRY = Registry("k-NN backend", "fashionrec.knn")


@dataclass
class NoParams(Choice):
    """A backend without parameters of its own."""


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make ``cls`` available to :class:`KNNIndex` under ``cls.name``, with its ``Params``
    (a dataclass; a backend without one gets its own empty one) named after it for the configs."""
    if not cls.name or cls.name == "auto" or cls.name in BACKEND_REGISTRY.registered():
        raise ValueError(f"backend name {cls.name!r} is empty, reserved or already registered")
    params = cls.__dict__.get("Params")
    if params is None or params.__dict__.get("name", cls.name) != cls.name:  # inherited or shared: its own
        params = dataclasses.make_dataclass(f"{cls.__name__}Params", [], bases=(params or cls.Params,))
        params.__module__ = cls.__module__
    if not (isinstance(params, type) and issubclass(params, Choice) and dataclasses.is_dataclass(params)):
        raise ValueError(f"backend {cls.name}: Params must be a dataclass subclassing fashionrec.configtypes.Choice")
    shared, hints = param_fields(), typing.get_type_hints(params, include_extras=True)
    for f in dataclasses.fields(params):
        if f.name in shared and (param_default(shared[f.name][1]), shared[f.name][2]) != (param_default(f),
                                                                                          hints[f.name]):
            raise ValueError(f"backend {cls.name}: parameter {f.name} has another default or type than "
                             f"{shared[f.name][0]}'s")
        if f.name in ("backend", "threads"):
            raise ValueError(f"backend {cls.name}: parameter name {f.name!r} is the façade's")
    params.name = cls.name
    cls.Params = params
    cls.params = tuple(f.name for f in dataclasses.fields(params))
    return BACKEND_REGISTRY.register(cls, name=cls.name)


def param_fields() -> dict[str, tuple[str, dataclasses.Field, object]]:
    """Every registered backend's parameters, in registration order: name -> (the first backend with it, its
    dataclass field, its annotation). The keywords :class:`~fashionrec.knn.KNNIndex` takes."""
    out: dict[str, tuple[str, dataclasses.Field, object]] = {}
    for backend in BACKEND_REGISTRY.registered().values():
        hints = typing.get_type_hints(backend.Params, include_extras=True)
        for f in dataclasses.fields(backend.Params):
            out.setdefault(f.name, (backend.name, f, hints[f.name]))
    return out


def param_default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default




def backend_names(exact_only: bool = False, external_only: bool = False) -> tuple[str, ...]:
    """The registered backends' names, sorted (``"auto"`` is the façade's and not among them)."""
    return tuple(sorted(name for name, cls in BACKEND_REGISTRY.items()
                        if (cls.exact or not exact_only) and (cls.external_vectors or not external_only)))


def backend_class(name: str) -> type[Backend]:
    return BACKEND_REGISTRY.get(name)


# ---------------------------------------------------------------------------- helpers


def check_int(name, value, minimum, allow_none=False, maximum=None):
    if value is None and allow_none:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum
            or (maximum is not None and value > maximum)):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer {bounds}{extra}; got {value!r}")
    return int(value)


def check_param(name, value, tp):
    """``value`` checked against a backend parameter's annotation (``int``, ``float`` or ``bool``, optionally
    ``| None``, with its :class:`Range`): a ValueError naming ``name`` and what it must be."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = len(args) < len(typing.get_args(tp)), args[0]
    if value is None and optional:
        return None
    allowed = next((a for a in getattr(tp, "__metadata__", ()) if isinstance(a, Range)), Range())
    kind = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp
    if kind is bool:
        return check_bool(name, value)
    words = "" if str(allowed) == "any" else " " + range_words(allowed)
    extra = " or None" if optional else ""
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value not in allowed:
            raise ValueError(f"{name} must be an integer{words}{extra}; got {value!r}")
        return int(value)
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or value not in allowed):
        raise ValueError(f"{name} must be a finite number{words}{extra}; got {value!r}")
    return float(value)


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false; got {value!r}")
    return bool(value)


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


class TransformedRows:
    """The rows of an (n, D) array -- typically a memory-mapped ``features.npy`` -- passed through
    ``transform`` (a function of a float32 block of rows) as they are read.

    What a backend with ``external_vectors`` re-ranks from when the search vectors are a function
    of stored ones (per-block L2 normalisation, block weights): the raw features stay on disk,
    and only the candidates' rows are read and transformed, a few hundred per query. ``transform``
    must work row by row (a row's result may not depend on the other rows read with it).
    """

    def __init__(self, raw, transform=None):
        self.raw = raw
        self.transform = transform
        self.shape = tuple(raw.shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        """Rows (a slice or an array of ids), read, transformed, as C-contiguous float32 (m, D)."""
        block = np.asarray(self.raw[rows], dtype=np.float32)
        if block.ndim != 2:
            raise IndexError("TransformedRows takes a slice or an array of row ids")
        if self.transform is not None:
            block = self.transform(block)
        return np.ascontiguousarray(block, dtype=np.float32)


def as_rows(name, X):
    """``X`` (an array, a memory-mapped one, or :class:`TransformedRows`) checked, never copied.

    For the backends with ``external_vectors``: they read rows in chunks, converting and checking
    each (``as_matrix``) as they go, so an 8 GB memory-mapped catalog is never loaded whole.
    """
    if not isinstance(X, TransformedRows):
        X = np.asarray(X)  # a memmap stays a view of the file
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise ValueError(f"{name} must be numeric; got dtype {X.dtype}")
    if len(X.shape) != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, dim); got shape {X.shape}")
    return X


def read_rows(X, ids) -> np.ndarray:
    """``X[ids]`` as float32, reading each distinct row once and in file order (memory-mapped ``X``)."""
    ids = np.asarray(ids)
    if len(ids) < 2 or (ids[1:] > ids[:-1]).all():  # already distinct and in order (a filter's ids): one copy
        return np.asarray(X[ids], dtype=np.float32)
    unique, inverse = np.unique(ids, return_inverse=True)
    return np.asarray(X[unique], dtype=np.float32)[inverse]


def save_rows(path, X) -> None:
    """Write ``X`` (any of ``as_rows``'s kinds) as a float32 ``.npy``, atomically, chunk by chunk."""
    n, d = X.shape
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                 "fortran_order": False, "shape": (n, d)})
        for start in range(0, n, CHUNK_ROWS):
            f.write(np.ascontiguousarray(X[start:start + CHUNK_ROWS], dtype=np.float32).tobytes())


def squared_norms(X: np.ndarray) -> np.ndarray:
    """Row-wise |x|^2, accumulated in float64, returned as float32.

    In float64 blocks of 1 MiB, which stay in cache: 200k x 2048 in 0.56 s against 1.2 s in blocks of
    8192 rows (fresh pages at every block); 1,000 gathered rows 2.8 ms against 4.3.
    """
    out = np.empty(len(X), dtype=np.float32)
    step = max(1, _NORM_BLOCK_BYTES // (8 * X.shape[1])) if len(X) else 1
    for start in range(0, len(X), step):
        chunk = X[start:start + step].astype(np.float64)
        out[start:start + step] = np.einsum("ij,ij->i", chunk, chunk)
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
    Params: ClassVar[type] = NoParams  # its parameters: a dataclass (fields with defaults and Ranges)
    params: ClassVar[tuple[str, ...]] = ()  # their names (set by ``register``): what the constructor takes
    # the ones that may change after ``fit`` (they only steer ``search``)
    search_params: ClassVar[tuple[str, ...]] = ()
    data_file: ClassVar[str] = VECTORS_FILE  # what ``save`` writes (``knn.json``'s "data")
    # True: the structure is compressed and ``rows`` reads the caller's array, kept by reference as
    # ``self.X`` (e.g. memory-mapped); ``fit`` gets what ``as_rows`` accepts, ``save`` writes only
    # the structure (the façade writes ``X`` beside it if asked) and ``load`` takes ``vectors=``.
    external_vectors: ClassVar[bool] = False

    def __init__(self, **params):
        for name in self.params:
            setattr(self, name, params[name])
        self.sq_norm_max = 0.0  # exact backends: the largest |x|^2 (scale of their rounding)
        self.progress = False  # show a progress bar while building (set by the façade)

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

    def search_allowed(self, Q: np.ndarray, k: int, allowed) -> tuple[np.ndarray, np.ndarray]:
        """``search`` among the ``allowed`` items only (a :class:`~fashionrec.knn.filtered.AllowedSet`).

        ``k`` is at most the allowed count. Exact backends: ``search``'s guarantees over the allowed
        items. Approximate ones: ids -1 where they found fewer (the façade then searches those rows
        exactly). Called only for allowed sets larger than ``filter_scan_rows(k)``.
        """
        raise NotImplementedError

    def filter_scan_rows(self, k: int) -> float:
        """Allowed sets up to this many items are searched exactly on their own rows (gathered), not
        through the structure. The default, always, suits a backend without ``search_allowed``."""
        return math.inf

    def subset_norms(self, ids: np.ndarray) -> np.ndarray | None:
        """|x|^2 (float32) of the rows ``ids`` where the backend keeps them; None: computed as read."""
        return None

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
