"""``faiss-ivfpq``: a compressed index for a catalog past memory, re-ranked exactly from disk.

``faiss.IndexIVFPQ`` (optionally behind an OPQ rotation): k-means cells route a query to
``nprobe`` of ``nlist`` cells, where every vector is a ``pq_m``-byte product-quantised code of
its offset from the cell's centroid. The codes rank ``rerank_factor * k`` candidates; the façade
then recomputes their exact distances from the vectors, which this backend does not hold: it keeps
a reference to the caller's array -- in an index directory, ``features.npy`` memory-mapped -- and
reads only the candidates' rows. RAM per item is the code and its id (64 + 8 bytes at the
defaults) plus the centroids and codebooks shared by all items.

Measured at 1M x 2048 on 2 busy cores, the 8 GB of vectors memory-mapped and in the page cache
(scripts/bench_knn.py, benchmarks/RESULTS.md): 82 bytes of RAM per item, built in 4-5 min;
recall@5 0.974 at 2.9 ms p50 (nprobe 4, rerank_factor 100) on the demo's features tiled with
noise, 0.958 at 1.5 ms (nprobe 4, rerank_factor 20) on synthetic clusters; the defaults (nprobe
16, rerank_factor 100) 0.986-0.988 at 4.6-4.7 ms.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from tqdm.auto import tqdm

from ..configtypes import Choice, Range
from ..errors import UserError
from ._faiss import FAISS_FILE, FilteredIVF, import_faiss, limit_faiss_threads, nearest_centroids
from .base import CHUNK_ROWS, Backend, as_matrix, read_rows, register

DEFAULT_CODE_BYTES = 64  # pq_m None: the largest divisor of the dimension up to this
_TRAIN_SEED = 0  # the training sample is drawn with it: the same vectors build the same index
# OPQ at 2048-d: each iteration rotates the sample (a 2048 x 2048 product per row); faiss's
# defaults (50 iterations on 65,536 rows) would take over an hour on 2 cores
_OPQ_ITERATIONS = 8
_OPQ_TRAIN_ROWS = 16384


def default_pq_m(dim: int) -> int:
    """The largest divisor of ``dim`` up to ``DEFAULT_CODE_BYTES`` (faiss's PQ needs one)."""
    return max(m for m in range(1, min(dim, DEFAULT_CODE_BYTES) + 1) if dim % m == 0)


@dataclass
class IVFPQParams(Choice):
    nlist: Annotated[int, Range(ge=1)] | None = None  # k-means cells; None: sqrt(n), at most n // 39
    nprobe: Annotated[int, Range(ge=1)] = 16  # cells scanned per query
    # bytes per code (sub-vectors; must divide the dimension); None: its largest divisor up to 64
    pq_m: Annotated[int, Range(ge=1)] | None = None
    pq_bits: Annotated[int, Range(ge=1, le=16)] = 8  # bits per sub-vector code (lowered for tiny catalogs)
    opq: bool = False  # rotate the vectors (OPQ, trained) before quantising them
    train_size: Annotated[int, Range(ge=1)] = 65536  # rows sampled to train the cells and codebooks
    rerank_factor: Annotated[int, Range(ge=1)] = 100  # rerank_factor * k candidates re-ranked exactly


@register
class FaissIVFPQBackend(FilteredIVF, Backend):
    """IVF cells + product-quantised codes; the vectors stay with the caller (``external_vectors``).

    ``nlist`` None: ``sqrt(n)``, at most ``n // 39``. ``pq_m`` None: the largest divisor of the
    dimension up to 64 (64-byte codes at 8 bits). ``pq_bits`` is lowered to fit a small catalog
    (at least 4 training rows per codeword). Training uses ``train_size`` rows drawn with a fixed
    seed; the rest are encoded in chunks of 8192 (a progress bar with ``progress``). ``add``
    encodes new rows with the trained quantisers. faiss's per-cell lookup table (``nlist * pq_m *
    256`` floats: 64 MB at 1M items) is not kept: it would double the RAM per item at 1M.
    """

    name = "faiss-ivfpq"
    Params = IVFPQParams
    search_params = ("nprobe", "rerank_factor")
    data_file = FAISS_FILE
    external_vectors = True

    index = None  # IndexIVFPQ, or IndexPreTransform(OPQMatrix, IndexIVFPQ) with opq
    X = None  # the caller's vectors (array, memmap or TransformedRows), row i = id i
    build_seconds: dict = {}  # train / assign / encode (benchmark figures); replaced, never mutated

    @classmethod
    def limit_threads(cls, threads):
        return limit_faiss_threads(threads)

    # ------------------------------------------------------------------ build

    def fit(self, X):
        faiss = import_faiss()
        n, d = X.shape
        if n < 2:
            raise ValueError(f"X: faiss-ivfpq needs at least 2 vectors to train its quantisers; got {n}")
        nlist = self.nlist if self.nlist is not None else max(1, min(round(math.sqrt(n)), n // 39))
        if nlist > n:
            raise ValueError(f"nlist must be at most the number of vectors ({n}); got {nlist}")
        pq_m = self.pq_m if self.pq_m is not None else default_pq_m(d)
        if d % pq_m:
            raise ValueError(f"pq_m must divide the vectors' dimension ({d}); got {pq_m}")
        rng = np.random.default_rng(_TRAIN_SEED)
        sample_ids = np.sort(rng.choice(n, min(n, self.train_size), replace=False))
        sample = as_matrix("X", read_rows(X, sample_ids))
        pq_bits = min(self.pq_bits, max(1, int(math.log2(max(len(sample) // 4, 2)))))

        ivf = faiss.IndexIVFPQ(faiss.IndexFlatL2(d), d, nlist, pq_m, pq_bits)
        # coarse k-means as faiss-ivf's (<= 40 points per cell, 10 iterations: the cells only route
        # queries); the PQ codebooks on <= 256 points per codeword (faiss's default), 10 iterations
        ivf.cp.niter = 10
        ivf.cp.max_points_per_centroid = 40
        ivf.cp.min_points_per_centroid = 1  # no warning spam for small n; nlist is capped above
        ivf.pq.cp.niter = 10
        ivf.pq.cp.min_points_per_centroid = 1
        ivf.use_precomputed_table = -1
        if self.opq:
            opq = faiss.OPQMatrix(d, pq_m)
            opq.niter = _OPQ_ITERATIONS
            opq.max_train_points = _OPQ_TRAIN_ROWS
            index = faiss.IndexPreTransform(opq, ivf)  # faiss's wrapper keeps opq and ivf alive
        else:
            index = ivf
        # seconds per phase, for the benchmark's arithmetic: training is fixed, the cell assignment
        # grows with n * nlist, the encoding with n
        started = time.perf_counter()
        index.train(sample)
        self.build_seconds = {"train": time.perf_counter() - started}
        del sample
        self.index = index
        self._encode(X)
        self.X = X
        self.loaded()

    def add(self, X):
        """Encode ``X``; from then on the old and new vectors are held in memory, concatenated."""
        self._encode(X)
        self.X = np.concatenate([np.asarray(self.X[0:len(self.X)], dtype=np.float32), as_matrix("X", X)])

    def _ivf(self):
        """The ``IndexIVFPQ`` (inside the OPQ wrapper if any), as its concrete class."""
        faiss = import_faiss()
        return faiss.downcast_index(self.index.index) if self.opq else self.index

    def _encode(self, X):
        """Append the rows of ``X`` to the cells, chunk by chunk: read, check, rotate, assign, encode."""
        faiss = import_faiss()
        ivf = self._ivf()
        self._forget_cells()
        rotation = faiss.downcast_VectorTransform(self.index.chain.at(0)) if self.opq else None
        centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        assign_s = encode_s = 0.0
        with tqdm(total=len(X), desc="faiss-ivfpq: encode", unit="vec", unit_scale=True, leave=False,
                  disable=not self.progress) as bar:
            for start in range(0, len(X), CHUNK_ROWS):
                rows = as_matrix("X", X[start:start + CHUNK_ROWS])
                if rotation is not None:
                    rows = np.ascontiguousarray(rotation.apply(rows), dtype=np.float32)
                started = time.perf_counter()
                cells = nearest_centroids(rows, centroids)
                assigned = time.perf_counter()
                ivf.add_core(len(rows), faiss.swig_ptr(rows), None, faiss.swig_ptr(cells))
                assign_s += assigned - started
                encode_s += time.perf_counter() - assigned
                bar.update(len(rows))
        self.index.ntotal = ivf.ntotal
        self.build_seconds = dict(self.build_seconds, assign=self.build_seconds.get("assign", 0.0) + assign_s,
                                  encode=self.build_seconds.get("encode", 0.0) + encode_s)

    def loaded(self):
        """Drop faiss's per-cell lookup table (``read_index`` rebuilds it): queries compute theirs."""
        ivf = self._ivf()
        ivf.use_precomputed_table = -1
        ivf.precompute_table()

    # ------------------------------------------------------------------ query

    def search(self, Q, k):
        """The ``rerank_factor * k`` best by code distance (ids -1 where the cells held fewer)."""
        faiss = import_faiss()
        ivf = self._ivf()
        width = max(k, min(self.index.ntotal, k * self.rerank_factor))
        ivf_params = faiss.SearchParametersIVF(nprobe=min(self.nprobe, ivf.nlist))
        # (a variable of its own: the wrapper below holds only a C pointer to it)
        params = faiss.SearchParametersPreTransform(index_params=ivf_params) if self.opq else ivf_params
        # one query: split the scan over the probed cells, not over queries (faiss's default)
        ivf.parallel_mode = 1 if len(Q) < faiss.omp_get_max_threads() else 0
        return self.index.search(Q, width, params=params)

    @property
    def cell_cost_rows(self):
        """A probed cell's lookup table (``d * 2**pq_bits`` multiply-adds): ~0.08 ms at 2048-d and 8 bits
        (~80 cells in 6.7 ms at 200k), as much as ~16 rows of the exact scan (10k rows in 54 ms, memory-mapped
        rows read twice past 64 MiB; 2 busy cores, scripts/bench_knn.py --filtered)."""
        return 16.0 * 2 ** self._ivf().pq.nbits / 256

    def _filter_width(self, k):
        return max(k, min(self.index.ntotal, k * self.rerank_factor))

    def search_allowed(self, Q, k, allowed):
        """``search`` among the allowed items (``FilteredIVF``): ``rerank_factor * k`` candidates by code
        distance from the cells that hold them."""
        if self.opq:
            rotation = import_faiss().downcast_VectorTransform(self.index.chain.at(0))
            Q = np.ascontiguousarray(rotation.apply(Q), dtype=np.float32)
        return self._search_ivf_allowed(Q, self._filter_width(k), allowed)

    def rows(self, ids):
        return read_rows(self.X, ids)

    def vectors(self):
        return self.rows(np.arange(self.index.ntotal))

    def fitted_params(self):
        ivf = self._ivf()
        return {"nlist": int(ivf.nlist), "pq_m": int(ivf.pq.M), "pq_bits": int(ivf.pq.nbits)}

    @property
    def nbytes(self):
        """The structure in RAM: codes and ids, centroids, codebooks, OPQ matrix (not the vectors)."""
        ivf = self._ivf()
        n, d = ivf.ntotal, ivf.d
        total = n * (ivf.code_size + 8) + ivf.nlist * (d * 4 + 48)  # lists (codes + ids, 2 vectors each)
        total += ivf.pq.centroids.size() * 4 + ivf.precomputed_table.size() * 4
        if self.opq:
            total += d * d * 4
        return total

    # ------------------------------------------------------------------ save / load

    def save(self, directory):
        import_faiss().write_index(self.index, str(directory / FAISS_FILE))
        return FAISS_FILE

    @classmethod
    def load(cls, path, n, dim, params, vectors=None):
        """The structure at ``path``; ``vectors`` (n x dim, e.g. memory-mapped) are re-ranked from."""
        faiss = import_faiss()
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise UserError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None
        expected = "IndexPreTransform" if params["opq"] else "IndexIVFPQ"
        inner = (faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index)
        if (type(index).__name__ != expected or not isinstance(inner, faiss.IndexIVFPQ)
                or (index.ntotal, index.d) != (n, dim)):
            raise UserError(f"{path}: holds {type(index).__name__} {index.ntotal} x {index.d}; "
                            f"knn.json says {cls.name}{' with OPQ' if params['opq'] else ''} {n} x {dim}")
        backend = cls(**params)
        backend.index = index
        backend.X = vectors
        backend.loaded()
        return backend
