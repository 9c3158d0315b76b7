""":class:`KNNIndex`: the façade in front of the backends (see the package's docstring).

It owns what every backend shares: the parameters' checks (each backend states its own in its ``Params``
dataclass; the façade takes the union of them as keywords), the ``auto`` rule, exact re-ranking and
ties, ``exclude``, filters (``allowed``; the rule is :mod:`fashionrec.knn.filtered`'s), thread
limits and the saved description (``knn.json``). Backends
(:mod:`fashionrec.knn.base`) only propose candidates and hold the vectors.
"""

from __future__ import annotations

import numbers
import warnings
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactKind, atomic_dir, load_array, read_json, write_json
from ..errors import UserError
from .base import (
    VECTORS_FILE,
    as_matrix,
    as_rows,
    backend_class,
    backend_names,
    check_int,
    check_param,
    param_default,
    param_fields,
    save_rows,
)
from .filtered import SubsetScan, check_allowed

# `auto` rule, from scripts/bench_knn.py (benchmarks/RESULTS.md) on 2 cores (AMD EPYC, 23-33 GB/s
# measured, shared with other jobs), 2048-d synthetic post-ReLU-like features:
# - exact search is memory-bound: one query reads n*d*4 bytes; brute's float32 GEMV takes ~1.5x a
#   plain read of those bytes on the shared machine (~1.0x when it was idle): 20k: ~8 ms,
#   200k: ~60-80 ms, 1M: ~0.4 s per query (faiss-flat: ~1.1-1.25x, one thread). No training,
#   and the paper's exact semantics. Up to 1 GiB of vectors (131k items at 2048-d, ~40 ms per
#   query) that is fast enough for an interactive `recommend`, so `auto` stays exact there, with
#   brute: it keeps a reference to the caller's array where faiss-flat copies it.
# - beyond, IVF: at 1M it builds in ~2 min and answers in ~3 ms at recall@5 0.99 (nprobe 4) on
#   clustered data; unstructured data need a far larger nprobe (see RESULTS.md). HNSW queries fast
#   too, but builds at 2.5-8 ms per item at 2048-d on 2 cores (40 min to 2 h for 1M), so `auto` never
#   picks it; ask for it by name for a catalog built once and queried long.
AUTO_EXACT_MAX_BYTES = 1 << 30

KNN_FORMAT = 1
_PARAMS_FILE = "knn.json"
# save() replaces a saved search structure, never a folder holding anything else
KNN_KIND = ArtifactKind("k-NN structure", marker=_PARAMS_FILE, entries=("*.npy", "*.faiss"))
# the float64 (pairs x dim) difference block of the re-ranking: 1 MiB (64 rows at 2048-d) stays in
# cache. The rows are converted to float64 first and the float64 queries subtracted in place: one
# query's 500 candidates at 2048-d take 1.4 ms on 2 busy cores, where np.subtract(rows, q,
# dtype=float64) on the float32 arrays (ufunc casting) in 4 MiB blocks took 18 ms; 40k pairs of 64
# queries: 0.4 s against 0.5-0.6 s. Larger blocks are slower still (fresh pages, cache misses).
_RERANK_BYTES = 1 << 20


class KNNIndex:
    """Euclidean k-nearest-neighbour index over float32 vectors.

    Parameters
    ----------
    backend : one of ``BACKENDS``. ``"auto"`` picks ``"brute"`` (exact) while the vectors take at
        most ``AUTO_EXACT_MAX_BYTES`` (1 GiB: 131k items at 2048-d, ~40 ms per query on 2 cores)
        and ``"faiss-ivf"`` beyond; see the comment at that constant for the measurements.
    **params : the backends' own parameters, each stated (default, range, meaning) in its backend's
        ``Params`` dataclass: ``leaf_size`` (balltree); ``hnsw_m``, ``ef_search``, ``ef_construction``
        (faiss-hnsw); ``nlist``, ``nprobe`` (faiss-ivf, faiss-ivfpq); ``pq_m``, ``pq_bits``, ``opq``,
        ``train_size``, ``rerank_factor`` (faiss-ivfpq); and any registered backend's. A parameter of
        a backend other than the one used is kept (and recorded by ``get_params``) but unused.
    threads : threads for faiss and BLAS while this index works; None: the libraries' defaults.
        (BallTree queries are single-threaded.)

    ``fit`` keeps a reference to ``X`` when it already is C-contiguous float32 (no copy: a
    catalog of 1M x 2048 is 8 GB); do not modify it afterwards. The faiss backends copy it, except
    ``faiss-ivfpq`` (``external_vectors``): it holds compressed codes and reads the caller's array --
    which may be memory-mapped, or :class:`~fashionrec.knn.base.TransformedRows` over one -- row by
    row, to encode it and to re-rank.
    """

    def __init__(self, backend="auto", *, threads=None, **params):
        names = ("auto",) + backend_names()
        if backend not in names:
            raise ValueError(f"backend must be one of {', '.join(map(repr, names))}; got {backend!r}")
        self.backend = backend
        known = param_fields()
        unknown = [name for name in params if name not in known]
        if unknown:
            raise TypeError(f"KNNIndex got an unexpected keyword argument {unknown[0]!r}; the backends' parameters: "
                            f"{', '.join(known)}")
        for name, (_, f, _) in known.items():
            setattr(self, name, self._checked(name, params.get(name, param_default(f))))
        self.threads = self._checked("threads", threads)
        self._reset()

    @staticmethod
    def _checked(name, value):
        if name == "threads":
            return check_int(name, value, 1, allow_none=True)
        return check_param(name, value, param_fields()[name][2])

    def _reset(self):
        self.backend_ = None  # the backend in use once fitted ("auto" resolved)
        self._backend = None  # its object (fashionrec.knn.base.Backend)
        self._n = 0
        self._dim = None

    # ------------------------------------------------------------------ parameters

    @classmethod
    def _param_names(cls) -> tuple[str, ...]:
        """``backend``, every registered backend's parameters, ``threads``."""
        return ("backend", *param_fields(), "threads")

    def get_params(self) -> dict:
        """The constructor parameters, JSON-serialisable.

        Once fitted, ``backend`` is the resolved one (never ``"auto"``) and ``nlist`` the number of
        IVF cells built, so ``from_params(get_params(), X)`` rebuilds the same structure.
        """
        params = {name: self._param(name) for name in self._param_names()}
        if self.backend_ is not None:
            params["backend"] = self.backend_
            params.update(self._backend.fitted_params())
        return params

    def set_params(self, **params) -> KNNIndex:
        """Change parameters, checked as by the constructor. Once fitted, only ``threads`` and the
        backend's search-time ones (``nprobe``, ``ef_search``, ``rerank_factor``) may change."""
        known = self._param_names()
        for name, value in params.items():
            if name not in known or name == "backend":
                raise ValueError(f"set_params: unknown parameter {name!r}; known: {', '.join(known[1:])}")
            value = self._checked(name, value)
            if self.is_fitted and name != "threads":
                backend_type = type(self._backend)
                if name in backend_type.params and name not in backend_type.search_params:
                    raise ValueError(f"{name} shapes the {self.backend_} structure: it cannot change after fit")
                if name in backend_type.params:
                    setattr(self._backend, name, value)
            setattr(self, name, value)
        return self

    @classmethod
    def from_params(cls, params: dict, X: np.ndarray) -> KNNIndex:
        """Build an index with ``params`` (as from :meth:`get_params`) over the vectors ``X``."""
        if not isinstance(params, dict):
            raise ValueError(f"params must be a dict; got {type(params).__name__}")
        return cls._from_dict(params).fit(X)

    @classmethod
    def _from_dict(cls, params: dict) -> KNNIndex:
        known = cls._param_names()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"params has unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(known)}")
        return cls(**params)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})" + (f"  # {self._n} x {self._dim}" if self.is_fitted else "")

    # ------------------------------------------------------------------ properties

    @property
    def is_fitted(self) -> bool:
        return self.backend_ is not None

    @property
    def n_items(self) -> int:
        return self._n

    @property
    def dim(self):
        return self._dim

    @property
    def exact(self) -> bool:
        self._check_fitted()
        return self._backend.exact

    @property
    def external_vectors(self) -> bool:
        """Whether the vectors stay with the caller (``faiss-ivfpq``): ``nbytes`` leaves them out."""
        self._check_fitted()
        return self._backend.external_vectors

    @property
    def nbytes(self) -> int:
        """Memory held by the search structure, in bytes: vectors included, except for a backend with
        ``external_vectors`` (the caller's array, e.g. memory-mapped, is not counted)."""
        self._check_fitted()
        return int(self._backend.nbytes)

    def vectors(self) -> np.ndarray:
        """The stored vectors, (n_items, dim) float32 (a copy for the faiss backends)."""
        self._check_fitted()
        return self._backend.vectors()

    def _check_fitted(self):
        if not self.is_fitted:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this KNNIndex is not fitted yet; call fit(X) first")

    # ------------------------------------------------------------------ build

    def _resolve_backend(self, n, d) -> str:
        if self.backend != "auto":
            return self.backend
        return "brute" if n * d * 4 <= AUTO_EXACT_MAX_BYTES else "faiss-ivf"

    def _param(self, name):
        """A parameter's value: a backend registered after this index was made has its defaults."""
        return getattr(self, name) if hasattr(self, name) else param_default(param_fields()[name][1])

    def _backend_params(self, backend_type) -> dict:
        return {p: self._param(p) for p in backend_type.params}

    def fit(self, X, progress: bool = False) -> KNNIndex:
        """Index the rows of ``X`` (n, dim); row i gets id i. ``progress``: a bar for long builds."""
        external = self.backend != "auto" and backend_class(self.backend).external_vectors
        X = as_rows("X", X) if external else as_matrix("X", X)
        self._reset()
        n, d = X.shape
        backend_type = backend_class(self._resolve_backend(n, d))
        backend = backend_type(**self._backend_params(backend_type))
        backend.progress = progress
        with backend.limit_threads(self.threads):
            backend.fit(X)
        self._backend, self.backend_, self._n, self._dim = backend, backend.name, n, d
        return self

    def add(self, X) -> np.ndarray:
        """Append rows; existing items keep ids 0..n-1, the new ones get n, n+1, ... (returned).

        BallTree and brute rebuild from the concatenated vectors; the faiss backends add in place
        (IVF assigns the new rows to its existing cells: no retraining). ``faiss-ivfpq`` encodes the
        new rows with its trained quantisers and holds the old and new vectors in memory from then on.
        """
        self._check_fitted()
        X = as_matrix("X", X, dim=self._dim)
        ids = np.arange(self._n, self._n + len(X), dtype=np.int64)
        with self._backend.limit_threads(self.threads):
            self._backend.add(X)
        self._n += len(X)
        return ids

    # ------------------------------------------------------------------ query

    def query(self, Q, k, exclude=None, allowed=None):
        """The ``k`` nearest items of each row of ``Q`` (m, dim).

        Returns ``(distances, indices)``: (m, k) float32 Euclidean distances (not squared) and
        (m, k) int64 ids, sorted by distance, ties by lower id. ``k`` larger than the index holds
        is clamped (with a warning). ``exclude``: one id per query row to leave out of its results
        (leave-one-out); ids not in the index leave nothing out, and with ``exclude`` at most
        ``n_items - 1`` neighbours are returned. Approximate backends that find fewer than ``k``
        candidates (IVF with a tiny ``nprobe``) pad with id -1 at distance inf.

        ``allowed``: None, or a boolean array of shape (n_items,): only items marked True are
        returned. ``k`` is clamped as without it (against ``n_items``, not the allowed count); past
        the allowed items the rows are padded with id -1 at distance inf. Every backend returns
        ``min(k, allowed)`` results (minus the excluded id), exact ones exactly the filtered
        neighbours; how each backend searches is :mod:`fashionrec.knn.filtered`'s rule.
        """
        self._check_fitted()
        Q = as_matrix("Q", Q, dim=self._dim)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        k = int(k)
        m = len(Q)
        if exclude is not None:
            exclude = np.asarray(exclude)
            if exclude.shape != (m,) or not np.issubdtype(exclude.dtype, np.integer):
                raise ValueError(f"exclude must be an integer array of shape ({m},) (one id per query row); "
                                 f"got {exclude.dtype} {exclude.shape}")
        allowed = check_allowed(allowed, self._n)
        available = self._n - (exclude is not None)
        if k > available:
            warnings.warn(f"k={k} is more than the {available} items available; returning {available}",
                          stacklevel=2)
            k = available
        if k == 0:
            return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
        with self._backend.limit_threads(self.threads):
            if allowed is None or allowed.count == self._n:
                sq_dist, ids = self._search(Q, k + (exclude is not None))
            else:
                sq_dist, ids = self._search_allowed(Q, k + (exclude is not None), allowed)
        if exclude is not None:
            # drop the excluded id where it was found, else the last column
            hit = ids == exclude[:, None]
            keep = np.ones(ids.shape, bool)
            keep[np.arange(m), np.where(hit.any(axis=1), hit.argmax(axis=1), k)] = False
            sq_dist, ids = sq_dist[keep].reshape(m, k), ids[keep].reshape(m, k)
        return np.sqrt(sq_dist).astype(np.float32), ids

    def _search(self, Q, k):
        """Squared distances and ids (m, k), sorted by (distance, id); exact backends exact."""
        if not self._backend.exact:
            return self._rerank(Q, self._backend.search(Q, k)[1], k)
        return self._exact_search(Q, k, self._backend.search, self._n, self._backend.slack)

    def _exact_search(self, Q, k, search, n_candidates, slack_of):
        """Exact top ``k`` from ``search`` (a ``Backend.search``-like function over ``n_candidates``
        items whose squared distances are right to within ``slack_of(|q|^2)``): widen the candidate
        list until no tie can hide past the k-th."""
        m = len(Q)
        out_d, out_i = np.empty((m, k)), np.empty((m, k), np.int64)
        slack = slack_of(np.einsum("ij,ij->i", Q, Q, dtype=np.float64))
        rows = np.arange(m)
        width = min(n_candidates, 2 * k + 8)
        while len(rows):
            q = Q if len(rows) == m else Q[rows]
            approx, cand = search(q, width)
            sq, ids = self._rerank(q, cand, k, approx, slack[rows])
            # items left out are at least as far as the last candidate (up to rounding)
            done = (approx[:, -1] - slack[rows] > sq[:, -1]) if width < n_candidates else np.ones(len(rows), bool)
            out_d[rows[done]], out_i[rows[done]] = sq[done], ids[done]
            rows, width = rows[~done], min(n_candidates, 2 * width)
        return out_d, out_i

    def _search_allowed(self, Q, k, allowed):
        """``_search`` among the allowed items (0 < count < n_items), padded with -1 / inf past them."""
        m, backend = len(Q), self._backend
        out_d, out_i = np.full((m, k), np.inf), np.full((m, k), -1, np.int64)
        if allowed.count == 0:
            return out_d, out_i
        found = min(k, allowed.count)
        if allowed.count <= backend.filter_scan_rows(found):
            sq, ids = self._scan_subset(Q, found, allowed)
        elif backend.exact:
            sq, ids = self._exact_search(Q, found, lambda q, width: backend.search_allowed(q, width, allowed),
                                         allowed.count, backend.slack)
        else:
            cand = backend.search_allowed(Q, found, allowed)[1]
            cand = np.where(allowed.mask[cand] & (cand >= 0), cand, -1)  # only the allowed, whatever faiss did
            sq, ids = self._rerank(Q, cand, found)
            short = np.flatnonzero(ids[:, -1] < 0)  # the structure missed some: search those rows exactly
            if len(short):
                sq[short], ids[short] = self._scan_subset(Q[short], found, allowed)
        out_d[:, :found], out_i[:, :found] = sq, ids
        return out_d, out_i

    def _scan_subset(self, Q, k, allowed):
        scan = SubsetScan(self._backend, allowed.ids)
        return self._exact_search(Q, k, scan.search, allowed.count, scan.slack)

    def _rerank(self, Q, cand, k, approx=None, slack=None):
        """Recompute the candidates' distances directly, sort each row by (distance, id), keep k.

        Given the backend's ``approx`` squared distances (ascending) and their ``slack``, only
        the candidates within 2 * slack of the k-th are recomputed: any other is farther than
        all of the first k, whatever the rounding.
        """
        valid = cand >= 0
        if approx is not None:
            valid &= approx <= (approx[:, k - 1] + 2 * slack)[:, None]
        sq = np.full(cand.shape, np.inf)
        rows, cols = np.nonzero(valid)
        sq[rows, cols] = self._exact_sq_dist(Q, rows, cand[valid])
        order = np.lexsort((cand, sq), axis=-1)[:, :k]
        return np.take_along_axis(sq, order, 1), np.take_along_axis(cand, order, 1).astype(np.int64)

    def _exact_sq_dist(self, Q, rows, ids):
        """|Q[rows[i]] - x_ids[i]|^2 for pairs, in float64 from the float32 vectors (exact differences)."""
        out = np.empty(len(ids))
        queries = Q.astype(np.float64)
        step = max(1, _RERANK_BYTES // (8 * self._dim))
        for start in range(0, len(ids), step):
            diff = self._backend.rows(ids[start:start + step]).astype(np.float64)
            diff -= queries[rows[start:start + step]]
            out[start:start + step] = np.einsum("ij,ij->i", diff, diff)
        return out

    # ------------------------------------------------------------------ save / load

    def save(self, directory, with_vectors: bool = True) -> Path:
        """Write ``directory`` (atomically): ``knn.json`` and ``vectors.npy`` (exact backends, their
        structure rebuilt at load) or ``index.faiss`` (HNSW / IVF / IVF-PQ: faiss's format, no
        retraining). A backend with ``external_vectors`` writes its vectors too (``vectors.npy``,
        chunk by chunk) unless ``with_vectors`` is False: then :meth:`load` must be handed them,
        as :class:`~fashionrec.catalog_index.CatalogIndex` does from its ``features.npy``."""
        self._check_fitted()
        directory = Path(directory)
        meta = {"format": KNN_FORMAT, "params": self.get_params(), "n_items": self._n, "dim": self._dim}
        with atomic_dir(directory, kind=KNN_KIND) as tmp:
            meta["data"] = self._backend.save(tmp)
            if self._backend.external_vectors:
                meta["vectors"] = VECTORS_FILE if with_vectors else None
                if with_vectors:
                    save_rows(tmp / VECTORS_FILE, self._backend.X)
            write_json(tmp / _PARAMS_FILE, meta)
        return directory

    @classmethod
    def load(cls, directory, vectors=None) -> KNNIndex:
        """Read an index written by :meth:`save`. Nothing is unpickled.

        ``vectors``: for a backend with ``external_vectors``, the (n_items, dim) rows to re-rank
        from (an array, a memory-mapped one or ``TransformedRows``), kept by reference; None: the
        directory's ``vectors.npy``, memory-mapped. Other backends ignore it.
        """
        directory = Path(directory)
        meta_path = directory / _PARAMS_FILE
        if not meta_path.is_file():
            raise UserError(f"{directory}: not a saved KNNIndex (no {_PARAMS_FILE})")
        try:
            meta = read_json(meta_path)
            fmt, params, n, dim, data = (meta["format"], meta["params"], meta["n_items"], meta["dim"], meta["data"])
            n, dim = check_int("n_items", n, 1), check_int("dim", dim, 1)
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{meta_path}: not a KNNIndex description ({e})") from None
        if fmt != KNN_FORMAT:
            raise UserError(f"{meta_path}: format {fmt!r}, this version reads {KNN_FORMAT}")
        try:
            self = cls._from_dict(params)
        except (ValueError, TypeError) as e:
            raise UserError(f"{meta_path}: params: {e}") from None
        backend_type = backend_class(self._resolve_backend(n, dim))
        if data != backend_type.data_file:
            raise UserError(f"{meta_path}: data {data!r}, but backend {backend_type.name} saves "
                            f"{backend_type.data_file!r}")
        extra = {}
        if backend_type.external_vectors:
            extra["vectors"] = cls._external_vectors(directory, meta_path, meta, vectors, n, dim)
        with backend_type.limit_threads(self.threads):
            backend = backend_type.load(directory / data, n, dim, self._backend_params(backend_type), **extra)
        self._backend, self.backend_, self._n, self._dim = backend, backend.name, n, dim
        return self

    @staticmethod
    def _external_vectors(directory, meta_path, meta, vectors, n, dim):
        if vectors is not None:
            vectors = as_rows("vectors", vectors)
            if tuple(vectors.shape) != (n, dim):
                raise UserError(f"{meta_path}: {n} x {dim} items, but the vectors given are {tuple(vectors.shape)}")
            return vectors
        if meta.get("vectors") != VECTORS_FILE:
            raise UserError(f"{meta_path}: saved without its vectors (they are the index's features.npy); "
                            f"load it with its index directory")
        # memory-mapped, not checked for NaN here: that would read the whole file at every load
        return load_array(directory / VECTORS_FILE, dtype=np.float32, shape=(n, dim), mmap=True, what="vectors")
