"""k-nearest-neighbour search over catalog feature vectors (Euclidean distance).

One small scikit-learn-style object, :class:`KNNIndex`, in front of five backends:

============  =========  ==================================================================
backend       exact      structure
============  =========  ==================================================================
balltree      yes        ``sklearn.neighbors.BallTree`` (the paper's choice)
brute         yes        numpy: one float32 matrix product against the stored vectors
faiss-flat    yes        ``faiss.IndexFlatL2``
faiss-hnsw    no         ``faiss.IndexHNSWFlat`` (graph; slow to build at 2048-d)
faiss-ivf     no         ``faiss.IndexIVFFlat`` (k-means cells; ``nprobe`` of ``nlist`` scanned)
auto                     ``brute`` up to ``AUTO_EXACT_MAX_BYTES`` (1 GiB) of vectors, else ``faiss-ivf``
============  =========  ==================================================================

Results are the same for every backend where they are exact: each backend proposes candidates,
their distances are recomputed directly (float64 accumulation of ``x - q``, no ``|x|^2 - 2 x.q``
cancellation, so a query finds itself at distance 0), and each row is sorted by (distance, id):
ties go to the lower id. The exact backends also make sure no item left outside the k returned
is as close as the k-th, so duplicates at the boundary resolve to the lowest ids as well.

Nothing is pickled: :meth:`KNNIndex.save` writes the vectors as ``.npy`` (exact backends, whose
structures are rebuilt at load) or faiss's own binary format (HNSW / IVF, so loading does not
retrain), next to a JSON file with the parameters.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import UserError
from .io import atomic_dir, load_npy, read_json, save_npy, write_json

BACKENDS = ("auto", "balltree", "brute", "faiss-flat", "faiss-hnsw", "faiss-ivf")
EXACT_BACKENDS = ("balltree", "brute", "faiss-flat")

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
_VECTORS_FILE = "vectors.npy"
_FAISS_FILE = "index.faiss"

# The float32 expansion |x|^2 - 2 x.q (brute, and faiss-flat for batches) has a rounding error of
# order sqrt(d) * eps32 * (|q|^2 + |x|^2); candidates are taken within this relative band of the
# k-th so that the direct recomputation can fix the order. BallTree computes in float64.
_CANDIDATE_TOL = {"brute": 1e-5, "faiss-flat": 1e-5, "balltree": 1e-9}
_BLOCK_BYTES = 256 << 20  # the (queries x items) float32 block of the brute backend
_CHUNK_ROWS = 8192  # rows per chunk for passes over the stored vectors


def _check_int(name, value, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}; got {value!r}")
    return int(value)


def _as_matrix(name, X, dim=None) -> np.ndarray:
    """``X`` as a C-contiguous float32 (n, d) array (no copy if it already is one), checked."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, dim); got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric; got dtype {X.dtype}")
    if dim is not None and X.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns (the index's dim); got {X.shape[1]}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    for start in range(0, len(X), _CHUNK_ROWS):  # chunked: no n*d temporary
        if not np.isfinite(X[start:start + _CHUNK_ROWS]).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    return X


def _squared_norms(X: np.ndarray) -> np.ndarray:
    """Row-wise |x|^2, accumulated in float64 (chunked), returned as float32."""
    out = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), _CHUNK_ROWS):
        chunk = X[start:start + _CHUNK_ROWS].astype(np.float64)
        out[start:start + _CHUNK_ROWS] = np.einsum("ij,ij->i", chunk, chunk)
    return out


def _import_faiss():
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


_threadpool_controller = None


@contextlib.contextmanager
def _limit_threads(threads):
    """Run the block with ``threads`` threads in faiss (OpenMP) and numpy's BLAS; None: defaults."""
    if threads is None:
        yield
        return
    global _threadpool_controller
    faiss = _import_faiss()
    from threadpoolctl import ThreadpoolController

    if _threadpool_controller is None:  # created once: inspecting the loaded libraries is slow
        _threadpool_controller = ThreadpoolController()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        with _threadpool_controller.limit(limits=threads, user_api="blas"):
            yield
    finally:
        faiss.omp_set_num_threads(before)


class KNNIndex:
    """Euclidean k-nearest-neighbour index over float32 vectors.

    Parameters
    ----------
    backend : one of ``BACKENDS``. ``"auto"`` picks ``"brute"`` (exact) while the vectors take at
        most ``AUTO_EXACT_MAX_BYTES`` (1 GiB: 131k items at 2048-d, ~40 ms per query on 2 cores)
        and ``"faiss-ivf"`` beyond; see the comment at that constant for the measurements.
    leaf_size : BallTree leaf size.
    hnsw_m : HNSW graph degree (``M``).
    ef_search : HNSW search breadth (raised to k when smaller).
    ef_construction : HNSW build breadth.
    nlist : IVF cells; None: ``sqrt(n)``, at most ``n // 39`` (faiss's minimum points per cell).
    nprobe : IVF cells scanned per query.
    threads : threads for faiss and BLAS while this index works; None: the libraries' defaults.
        (BallTree queries are single-threaded.)

    ``fit`` keeps a reference to ``X`` when it already is C-contiguous float32 (no copy: a
    catalog of 1M x 2048 is 8 GB); do not modify it afterwards. The faiss backends copy it.
    """

    def __init__(self, backend="auto", *, leaf_size=40, hnsw_m=32, ef_search=128, ef_construction=200,
                 nlist=None, nprobe=16, threads=None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
        self.backend = backend
        self.leaf_size = _check_int("leaf_size", leaf_size, 1)
        self.hnsw_m = _check_int("hnsw_m", hnsw_m, 2)
        self.ef_search = _check_int("ef_search", ef_search, 1)
        self.ef_construction = _check_int("ef_construction", ef_construction, 1)
        self.nlist = _check_int("nlist", nlist, 1, allow_none=True)
        self.nprobe = _check_int("nprobe", nprobe, 1)
        self.threads = _check_int("threads", threads, 1, allow_none=True)
        self._reset()

    def _reset(self):
        self.backend_ = None  # the backend in use once fitted ("auto" resolved)
        self.nlist_ = None
        self._X = None  # brute / balltree: the vectors (faiss backends keep their own copy)
        self._sq_norms = None  # brute: |x|^2 per row
        self._sq_norm_max = 0.0  # exact backends: scale of the rounding tolerance
        self._tree = None
        self._faiss = None
        self._n = 0
        self._dim = None

    # ------------------------------------------------------------------ parameters

    _PARAM_NAMES = ("backend", "leaf_size", "hnsw_m", "ef_search", "ef_construction", "nlist", "nprobe", "threads")

    def get_params(self) -> dict:
        """The constructor parameters, JSON-serialisable.

        Once fitted, ``backend`` is the resolved one (never ``"auto"``) and ``nlist`` the number of
        IVF cells built, so ``from_params(get_params(), X)`` rebuilds the same structure.
        """
        params = {name: getattr(self, name) for name in self._PARAM_NAMES}
        if self.backend_ is not None:
            params["backend"] = self.backend_
            if self.backend_ == "faiss-ivf":
                params["nlist"] = self.nlist_
        return params

    @classmethod
    def from_params(cls, params: dict, X: np.ndarray) -> "KNNIndex":
        """Build an index with ``params`` (as from :meth:`get_params`) over the vectors ``X``."""
        if not isinstance(params, dict):
            raise ValueError(f"params must be a dict; got {type(params).__name__}")
        return cls._from_dict(params).fit(X)

    @classmethod
    def _from_dict(cls, params: dict) -> "KNNIndex":
        unknown = sorted(set(params) - set(cls._PARAM_NAMES))
        if unknown:
            raise ValueError(f"params has unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(cls._PARAM_NAMES)}")
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
        return self.backend_ in EXACT_BACKENDS

    @property
    def nbytes(self) -> int:
        """Memory held by the search structure (vectors included), in bytes."""
        self._check_fitted()
        b, n, d = self.backend_, self._n, self._dim
        if b == "brute":
            return self._X.nbytes + self._sq_norms.nbytes
        if b == "balltree":
            return sum(np.asarray(a).nbytes for a in self._tree.get_arrays())
        if b == "faiss-flat":
            return n * d * 4
        if b == "faiss-hnsw":
            hnsw = self._faiss.hnsw
            return n * d * 4 + 4 * (hnsw.neighbors.size() + hnsw.levels.size()) + 8 * hnsw.offsets.size()
        ivf = self._faiss
        return n * (d * 4 + 8) + ivf.nlist * d * 4 + 8 * n  # lists (vectors + ids), centroids, id map

    def vectors(self) -> np.ndarray:
        """The stored vectors, (n_items, dim) float32 (a copy for the faiss backends)."""
        self._check_fitted()
        if self.backend_ == "faiss-ivf":
            return self._rows(np.arange(self._n))
        return self._X if self._X is not None else self._storage().copy()

    def _check_fitted(self):
        if not self.is_fitted:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this KNNIndex is not fitted yet; call fit(X) first")

    # ------------------------------------------------------------------ build

    def _resolve_backend(self, n, d) -> str:
        if self.backend != "auto":
            return self.backend
        return "brute" if n * d * 4 <= AUTO_EXACT_MAX_BYTES else "faiss-ivf"

    def fit(self, X) -> "KNNIndex":
        """Index the rows of ``X`` (n, dim); row i gets id i."""
        X = _as_matrix("X", X)
        self._reset()
        n, d = X.shape
        backend = self._resolve_backend(n, d)
        with _limit_threads(self.threads):
            if backend in ("brute", "balltree"):
                self._X = X
                if backend == "brute":
                    self._sq_norms = _squared_norms(X)
                    self._sq_norm_max = float(self._sq_norms.max())
                else:
                    self._build_tree()
            else:
                self._faiss = self._new_faiss(backend, X)
                self._faiss_add(X, backend)
                if backend == "faiss-ivf":
                    self._faiss.make_direct_map()  # id -> vector, for re-ranking and save
            if backend in ("balltree", "faiss-flat"):
                self._sq_norm_max = float(_squared_norms(X).max())
        self.backend_, self._n, self._dim = backend, n, d
        return self

    def _build_tree(self):
        from sklearn.neighbors import BallTree

        self._tree = BallTree(self._X, leaf_size=self.leaf_size, metric="euclidean")

    def _new_faiss(self, backend, X):
        faiss = _import_faiss()
        d = X.shape[1]
        if backend == "faiss-flat":
            return faiss.IndexFlatL2(d)
        if backend == "faiss-hnsw":
            index = faiss.IndexHNSWFlat(d, self.hnsw_m)
            index.hnsw.efConstruction = self.ef_construction
            return index
        n = len(X)
        nlist = self.nlist if self.nlist is not None else max(1, min(round(math.sqrt(n)), n // 39))
        if nlist > n:
            raise ValueError(f"nlist must be at most the number of vectors ({n}); got {nlist}")
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        # k-means on at most 40 points per cell (faiss recommends >= 39) and 10 iterations (faiss's
        # defaults: 256 and 25): the cells only route queries, and at 1M x 2048 this keeps
        # training to about 20 s on 2 cores.
        index.cp.niter = 10
        index.cp.max_points_per_centroid = 40
        index.cp.min_points_per_centroid = 1  # no warning spam for small n; nlist is capped above
        index.train(X)
        self.nlist_ = nlist
        return index

    def _faiss_add(self, X, backend):
        if backend != "faiss-ivf":
            self._faiss.add(X)
            return
        # IVF: assign rows to cells with numpy's BLAS (about 2x faiss's bundled one here; at
        # 1M x 2048 with 1000 cells this is the bulk of the build), then add them preassigned.
        faiss = _import_faiss()
        centroids = self._faiss.quantizer.reconstruct_n(0, self._faiss.nlist)
        sq_norms = _squared_norms(centroids)
        block = max(1, min(_CHUNK_ROWS, _BLOCK_BYTES // (4 * len(centroids))))
        for start in range(0, len(X), block):
            rows = X[start:start + block]
            scores = rows @ centroids.T
            scores *= -2
            scores += sq_norms
            cells = np.ascontiguousarray(scores.argmin(axis=1), dtype=np.int64)
            self._faiss.add_core(len(rows), faiss.swig_ptr(rows), None, faiss.swig_ptr(cells))

    def add(self, X) -> np.ndarray:
        """Append rows; existing items keep ids 0..n-1, the new ones get n, n+1, ... (returned).

        BallTree and brute rebuild from the concatenated vectors; the faiss backends add in place
        (IVF assigns the new rows to its existing cells: no retraining).
        """
        self._check_fitted()
        X = _as_matrix("X", X, dim=self._dim)
        ids = np.arange(self._n, self._n + len(X), dtype=np.int64)
        with _limit_threads(self.threads):
            if self._faiss is not None:
                self._faiss_add(X, self.backend_)
            else:
                self._X = np.concatenate([self._X, X])
                if self.backend_ == "brute":
                    self._sq_norms = np.concatenate([self._sq_norms, _squared_norms(X)])
                else:
                    self._build_tree()
            if self.exact:
                self._sq_norm_max = max(self._sq_norm_max, float(_squared_norms(X).max()))
        self._n += len(X)
        return ids

    # ------------------------------------------------------------------ query

    def query(self, Q, k, exclude=None):
        """The ``k`` nearest items of each row of ``Q`` (m, dim).

        Returns ``(distances, indices)``: (m, k) float32 Euclidean distances (not squared) and
        (m, k) int64 ids, sorted by distance, ties by lower id. ``k`` larger than the index holds
        is clamped (with a warning). ``exclude``: one id per query row to leave out of its results
        (leave-one-out); ids not in the index leave nothing out, and with ``exclude`` at most
        ``n_items - 1`` neighbours are returned. Approximate backends that find fewer than ``k``
        candidates (IVF with a tiny ``nprobe``) pad with id -1 at distance inf.
        """
        self._check_fitted()
        Q = _as_matrix("Q", Q, dim=self._dim)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        k = int(k)
        m = len(Q)
        if exclude is not None:
            exclude = np.asarray(exclude)
            if exclude.shape != (m,) or not np.issubdtype(exclude.dtype, np.integer):
                raise ValueError(f"exclude must be an integer array of shape ({m},) (one id per query row); "
                                 f"got {exclude.dtype} {exclude.shape}")
        available = self._n - (exclude is not None)
        if k > available:
            warnings.warn(f"k={k} is more than the {available} items available; returning {available}",
                          stacklevel=2)
            k = available
        if k == 0:
            return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
        with _limit_threads(self.threads):
            sq_dist, ids = self._search(Q, k + (exclude is not None))
        if exclude is not None:
            # drop the excluded id where it was found, else the last column
            hit = ids == exclude[:, None]
            keep = np.ones(ids.shape, bool)
            keep[np.arange(m), np.where(hit.any(axis=1), hit.argmax(axis=1), k)] = False
            sq_dist, ids = sq_dist[keep].reshape(m, k), ids[keep].reshape(m, k)
        return np.sqrt(sq_dist).astype(np.float32), ids

    def _search(self, Q, k):
        """Squared distances and ids (m, k), sorted by (distance, id); exact backends exact."""
        if self.backend_ == "brute":
            return self._brute_search(Q, k)
        if self.backend_ in EXACT_BACKENDS:
            return self._exact_search(Q, k)
        return self._rerank(Q, self._candidates(Q, k)[1], k)

    def _candidates(self, Q, k):
        """The backend's own k best: (squared distances, ids), ascending; ids -1 where none."""
        if self.backend_ == "balltree":
            dist, ids = self._tree.query(Q, k=k)
            return dist**2, ids.astype(np.int64)
        faiss = _import_faiss()
        params = None
        if self.backend_ == "faiss-hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        elif self.backend_ == "faiss-ivf":
            params = faiss.SearchParametersIVF(nprobe=min(self.nprobe, self._faiss.nlist))
            # one query: split the scan over the probed cells, not over queries (faiss's default)
            self._faiss.parallel_mode = 1 if len(Q) < faiss.omp_get_max_threads() else 0
        return self._faiss.search(Q, k, params=params)

    def _exact_search(self, Q, k):
        """BallTree / faiss-flat: widen the candidate list until no tie can hide past the k-th."""
        m, n = len(Q), self._n
        out_d, out_i = np.empty((m, k)), np.empty((m, k), np.int64)
        tol = _CANDIDATE_TOL[self.backend_] * (np.einsum("ij,ij->i", Q, Q) + self._sq_norm_max)
        rows = np.arange(m)
        width = min(n, 2 * k + 8)
        while len(rows):
            approx, cand = self._candidates(Q[rows], width)
            sq, ids = self._rerank(Q[rows], cand, k)
            # items left out are at least as far as the last candidate (up to rounding)
            done = (approx[:, -1] - tol[rows] > sq[:, -1]) if width < n else np.ones(len(rows), bool)
            out_d[rows[done]], out_i[rows[done]] = sq[done], ids[done]
            rows, width = rows[~done], min(n, 2 * width)
        return out_d, out_i

    def _brute_search(self, Q, k):
        """One float32 product per block of queries, then a band around the k-th re-ranked."""
        n = self._n
        X, sq_norms = self._X, self._sq_norms
        q_sq = np.einsum("ij,ij->i", Q, Q)
        block = max(1, _BLOCK_BYTES // (4 * n))
        out_d, out_i = [], []
        for start in range(0, len(Q), block):
            q = Q[start:start + block]
            # |q - x|^2 - |q|^2 = |x|^2 - 2 x.q : one GEMV/GEMM pass over X, in place after it
            part = (X @ q[0])[None] if len(q) == 1 else q @ X.T
            part *= -2
            part += sq_norms
            kth = np.partition(part, k - 1, axis=1)[:, k - 1] if k < n else part.max(axis=1)
            band = 2 * _CANDIDATE_TOL["brute"] * (q_sq[start:start + block] + self._sq_norm_max)
            rows, cols = np.nonzero(part <= (kth + band)[:, None])
            sq = self._exact_sq_dist(q[rows], cols)
            order = np.lexsort((cols, sq, rows))
            counts = np.bincount(rows, minlength=len(q))
            take = (np.cumsum(counts) - counts)[:, None] + np.arange(k)
            out_d.append(sq[order][take])
            out_i.append(cols[order][take].astype(np.int64))
        return np.concatenate(out_d), np.concatenate(out_i)

    def _rerank(self, Q, cand, k):
        """Recompute the candidates' distances directly, sort each row by (distance, id), keep k."""
        valid = cand >= 0
        sq = np.full(cand.shape, np.inf)
        rows, cols = np.nonzero(valid)
        sq[rows, cols] = self._exact_sq_dist(Q[rows], cand[valid])
        order = np.lexsort((cand, sq), axis=-1)[:, :k]
        return np.take_along_axis(sq, order, 1), np.take_along_axis(cand, order, 1).astype(np.int64)

    def _exact_sq_dist(self, Q, ids):
        """|q_i - x_ids[i]|^2 for pairs, accumulated in float64 from the float32 vectors."""
        diff = self._rows(ids).astype(np.float64)
        diff -= Q
        return np.einsum("ij,ij->i", diff, diff)

    def _rows(self, ids) -> np.ndarray:
        if self.backend_ == "faiss-ivf":
            return self._faiss.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
        return self._storage()[ids]

    def _storage(self) -> np.ndarray:
        """The vectors without a copy (for faiss: a view valid only while self lives, until add)."""
        if self._X is not None:
            return self._X
        faiss = _import_faiss()
        flat = self._faiss if self.backend_ == "faiss-flat" else faiss.downcast_index(self._faiss.storage)
        return faiss.rev_swig_ptr(flat.get_xb(), self._n * self._dim).reshape(self._n, self._dim)

    # ------------------------------------------------------------------ save / load

    def save(self, directory) -> Path:
        """Write ``directory`` (atomically): ``knn.json`` and ``vectors.npy`` or ``index.faiss``."""
        self._check_fitted()
        directory = Path(directory)
        meta = {"format": KNN_FORMAT, "params": self.get_params(), "n_items": self._n, "dim": self._dim}
        with atomic_dir(directory) as tmp:
            if self.exact:
                save_npy(tmp / _VECTORS_FILE, self._storage())
                meta["data"] = _VECTORS_FILE
            else:
                faiss = _import_faiss()
                faiss.write_index(self._faiss, str(tmp / _FAISS_FILE))
                meta["data"] = _FAISS_FILE
            write_json(tmp / _PARAMS_FILE, meta)
        return directory

    @classmethod
    def load(cls, directory) -> "KNNIndex":
        """Read an index written by :meth:`save`. Nothing is unpickled."""
        directory = Path(directory)
        meta_path = directory / _PARAMS_FILE
        if not meta_path.is_file():
            raise UserError(f"{directory}: not a saved KNNIndex (no {_PARAMS_FILE})")
        try:
            meta = read_json(meta_path)
            fmt, params, n, dim, data = (meta["format"], meta["params"], meta["n_items"], meta["dim"], meta["data"])
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{meta_path}: not a KNNIndex description ({e})") from None
        if fmt != KNN_FORMAT:
            raise UserError(f"{meta_path}: format {fmt!r}, this version reads {KNN_FORMAT}")
        data_path = directory / str(data)
        if data == _VECTORS_FILE:
            try:
                X = load_npy(data_path)
            except (OSError, ValueError) as e:
                raise UserError(f"{data_path}: cannot load ({e})") from None
            if X.shape != (n, dim):
                raise UserError(f"{data_path}: shape {X.shape}, {meta_path.name} says ({n}, {dim})")
            try:
                self = cls._from_dict(params)
            except (ValueError, TypeError) as e:
                raise UserError(f"{meta_path}: params: {e}") from None
            return self.fit(X)
        if data != _FAISS_FILE:
            raise UserError(f"{meta_path}: data {data!r} is neither {_VECTORS_FILE} nor {_FAISS_FILE}")
        faiss = _import_faiss()
        try:
            self = cls._from_dict(params)
        except (ValueError, TypeError) as e:
            raise UserError(f"{meta_path}: params: {e}") from None
        expected = {"faiss-hnsw": faiss.IndexHNSWFlat, "faiss-ivf": faiss.IndexIVFFlat}.get(self.backend)
        try:
            index = faiss.read_index(str(data_path))  # already the concrete class
        except RuntimeError as e:
            raise UserError(f"{data_path}: cannot read ({str(e).splitlines()[0]})") from None
        if expected is None or not isinstance(index, expected) or (index.ntotal, index.d) != (n, dim):
            raise UserError(f"{data_path}: holds {type(index).__name__} {index.ntotal} x {index.d}; "
                            f"{meta_path.name} says {self.backend} {n} x {dim}")
        if self.backend == "faiss-ivf":
            index.make_direct_map()
            self.nlist_ = index.nlist
        self._faiss, self.backend_, self._n, self._dim = index, self.backend, n, dim
        return self
