"""Catalog-like feature vectors for scripts/bench_knn.py, drawn chunk by chunk.

Two sources with one interface (``chunk``, ``make``, ``describe``): synthetic post-ReLU-like
clusters, and real extracted features tiled with noise. Chunk i of stream s is drawn from
``default_rng([seed, s, i])``: reproducible, and ``write_npy`` streams 1M x 2048 (8 GB) to a
``.npy`` on disk without a second copy in memory.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

CHUNK_ROWS = 16384  # rows are drawn per chunk: chunk i from default_rng([seed, stream, i])


class ChunkedSource:
    """``make`` and ``write_npy`` over a subclass's ``chunk(stream, index, rows)``."""

    dim: int

    def chunk(self, stream: int, index: int, rows: int) -> np.ndarray:
        raise NotImplementedError

    def make(self, n, stream=0, chunk_rows=None, workers=2) -> np.ndarray:
        chunk_rows = chunk_rows or CHUNK_ROWS
        out = np.empty((n, self.dim), np.float32)
        starts = range(0, n, chunk_rows)

        def fill(i_start):
            i, start = i_start
            out[start:start + chunk_rows] = self.chunk(stream, i, min(chunk_rows, n - start))

        with ThreadPoolExecutor(workers) as pool:  # numpy's generators and BLAS release the GIL
            list(pool.map(fill, enumerate(starts)))
        return out

    def write_npy(self, path: Path, n: int, stream=0) -> np.ndarray:
        """The same rows as ``make(n)``, written chunk by chunk to ``path``; returned memory-mapped."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, self.dim))
        for i, start in enumerate(range(0, n, CHUNK_ROWS)):
            out[start:start + CHUNK_ROWS] = self.chunk(stream, i, min(CHUNK_ROWS, n - start))
        out.flush()
        del out
        return np.load(path, mmap_mode="r", allow_pickle=False)


class SyntheticFeatures(ChunkedSource):
    """Post-ReLU-like features: relu(latent @ W + bias + noise), latent = centre + spread * N(0, 1)."""

    def __init__(self, dim, rank=64, clusters=1000, spread=1.0, noise=0.3, bias=0.3, seed=0):
        rng = np.random.default_rng([seed, 2**31])
        self.dim, self.rank, self.seed = dim, rank, seed
        self.spread, self.noise, self.bias = spread, noise, bias
        self.W = (rng.standard_normal((rank, dim)) / np.sqrt(rank)).astype(np.float32)
        self.centres = rng.standard_normal((max(clusters, 1), rank)).astype(np.float32)
        if clusters == 0:  # a single Gaussian: no cluster structure at all (the hard case)
            self.centres[:] = 0
            self.spread = 1.0

    def describe(self):
        return {"kind": "synthetic", "rank": self.rank, "clusters": len(self.centres), "spread": self.spread,
                "noise": self.noise, "bias": self.bias, "seed": self.seed}

    def chunk(self, stream: int, index: int, rows: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream, index])
        z = self.centres[rng.integers(0, len(self.centres), rows)]
        z += self.spread * rng.standard_normal((rows, self.rank), dtype=np.float32)
        x = z @ self.W
        noise = rng.random((rows, self.dim), dtype=np.float32)
        noise -= 0.5
        noise *= np.float32(self.noise * np.sqrt(12))  # uniform with std `noise`
        x += noise
        x += np.float32(self.bias)
        return np.maximum(x, 0, out=x)


class TiledFeatures(ChunkedSource):
    """Real extracted features tiled with noise: relu(base[random] + N(0, (jitter * std_j)^2)).

    As scripts/bench_recommend.py makes a large catalog from a small one: each row is a random
    row of ``base`` (e.g. the demo's features.npy) plus Gaussian jitter at ``jitter`` of each
    feature's spread across ``base``. With few base rows the catalog is groups of near-copies:
    a query's true 5 nearest are 5 of its group's n / len(base) copies, ordered by the jitter
    alone -- the hardest case for compressed codes (see RESULTS.md).
    """

    def __init__(self, base: np.ndarray, path: str = "", jitter=0.05, seed=0):
        self.base = np.ascontiguousarray(base, dtype=np.float32)
        self.dim, self.path, self.jitter, self.seed = self.base.shape[1], str(path), jitter, seed
        self.scale = (jitter * self.base.std(axis=0) + 1e-6).astype(np.float32)

    def describe(self):
        return {"kind": "tiled", "path": self.path, "base_rows": len(self.base), "jitter": self.jitter,
                "seed": self.seed}

    def chunk(self, stream: int, index: int, rows: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream, index])
        x = self.base[rng.integers(0, len(self.base), rows)]
        noise = rng.standard_normal((rows, self.dim), dtype=np.float32)
        noise *= self.scale
        x += noise
        return np.maximum(x, 0, out=x)
