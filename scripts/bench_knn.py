"""Benchmark the k-NN backends of fashionrec.knn: build time, memory, latency, throughput, recall.

    python scripts/bench_knn.py --quick                       # ~1-2 minutes
    python scripts/bench_knn.py                               # 20k, 200k, 1M x 2048 (< 10 min, 2 cores)
    python scripts/bench_knn.py --features index/features.npy # real extracted features

Synthetic data stand in for CNN features: a rank-64 latent (cluster centre + Gaussian spread,
like product types and their variations) mapped to ``--dim`` by a fixed random matrix, plus
uniform noise, through a ReLU (pooled post-ReLU activations are non-negative). Queries are fresh
draws from the same distribution, i.e. new photos of catalog-like products. Chunk i is drawn
from ``default_rng([seed, i])``: reproducible, and 1M x 2048 (8 GB) never needs a second copy.

Per size and backend: build seconds, bytes held, single-query latency p50/p95 (one query at a
time, k=5), queries per second in batches of 64, recall@5 against exact search; for the
approximate backends a sweep of nprobe / efSearch. The machine's memory bandwidth is measured in
the same run; exact single-query time is reported as a ratio to the bandwidth bound n*d*4/B.
Writes ``--out`` (JSON) and the k-NN section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

from benchlib import comma_list, cpu_model, mem_available_bytes, update_results_md
from fashionrec.artifacts import write_json
from fashionrec.knn import KNNIndex

K = 5
BATCH = 64
BACKENDS = ("brute", "faiss-flat", "balltree", "faiss-hnsw", "faiss-ivf")
IVF_NPROBES = (1, 4, 8, 16, 32, 64, 128)
HNSW_EFS = (16, 32, 64, 128, 256)
CHUNK_ROWS = 16384  # synthetic rows are drawn per chunk: chunk i from default_rng([seed, stream, i])
TRAIN_CHUNKS = 4  # IVF built from chunks trains on the first 65,536 rows (64 per cell at 1M)


# ---------------------------------------------------------------------------------- data

class SyntheticFeatures:
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


# ---------------------------------------------------------------------------------- machine

def _or_reduce(words):
    # an integer OR over the bits of float32 data: SIMD without NaN checks or pairwise sums, the
    # fastest plain read numpy has here (~30 GB/s where float32 sum / max reach ~23)
    return np.bitwise_or.reduce(words)


def memory_bandwidth(gib=1.0, repeats=8) -> dict:
    """Best read bandwidth (GB/s) of numpy reductions over a large array, 1 thread and one per core."""
    a = np.ones(int(gib * (1 << 30)) // 4, np.float32)
    out = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        parts = np.array_split(a, threads)
        with ThreadPoolExecutor(threads) as pool:
            for name, fn in (("sum", np.sum), ("max", np.max), ("or", lambda p: _or_reduce(p.view(np.uint32)))):
                best = 0.0
                for _ in range(repeats):
                    t = time.perf_counter()
                    list(pool.map(fn, parts))
                    best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
                out[f"{name}_{threads}t"] = round(best, 2)
    out["best"] = max(out.values())
    return out


# ---------------------------------------------------------------------------------- measuring

def exact_neighbours(X, Q, k=K):
    return KNNIndex("brute").fit(X).query(Q, k)[1]


def recall_at(found, truth) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth)]))


class ReadPass:
    """One read of an array's bytes, one integer-OR reduction thread per core: the bandwidth bound."""

    def __init__(self, X):
        threads = os.cpu_count() or 1
        self.parts = np.array_split(np.ascontiguousarray(X).reshape(-1).view(np.uint32), threads)
        self.pool = ThreadPoolExecutor(threads)

    def __call__(self) -> float:
        t = time.perf_counter()
        list(self.pool.map(_or_reduce, self.parts))
        return time.perf_counter() - t

    def close(self):
        self.pool.shutdown()


def single_query_latencies(index, Q, budget_s, max_queries, read_pass=None):
    """Seconds per query, one at a time, until max_queries or budget_s (at least 5 queries).

    With ``read_pass``, each query is followed by one read of the indexed vectors, so the two are
    timed under the same conditions (other jobs on a shared machine come and go); returns both.
    """
    index.query(Q[:1], K)  # warm-up (lazy imports, first-touch)
    times, reads, start = [], [], time.perf_counter()
    for i in range(min(max_queries, len(Q))):
        t = time.perf_counter()
        index.query(Q[i:i + 1], K)
        times.append(time.perf_counter() - t)
        if read_pass is not None:
            reads.append(read_pass())
        if i >= 4 and time.perf_counter() - start > budget_s:
            break
    return (np.array(times), np.array(reads)) if read_pass is not None else np.array(times)


def batch_qps(index, Q, budget_s):
    """Queries per second in batches of BATCH (at least one batch, at most budget_s)."""
    done, start = 0, time.perf_counter()
    while True:
        rows = np.arange(done, done + BATCH) % len(Q)
        index.query(Q[rows], K)
        done += BATCH
        elapsed = time.perf_counter() - start
        if elapsed > budget_s or done >= 4 * BATCH:
            return done / elapsed


def measure(index, Q, truth, budget_s, max_queries, read_pass=None):
    out = {}
    if read_pass is not None:
        lat, reads = single_query_latencies(index, Q, budget_s, max_queries, read_pass)
        read_pass.close()
        read_ms = float(np.percentile(reads, 50)) * 1e3
        out = {"read_ms_p50": round(read_ms, 3),
               "ratio_to_read": round(float(np.percentile(lat, 50)) * 1e3 / read_ms, 2)}
    else:
        lat = single_query_latencies(index, Q, budget_s, max_queries)
    found = index.query(Q, K)[1]
    return {
        "single_ms_p50": round(float(np.percentile(lat, 50)) * 1e3, 3),
        "single_ms_p95": round(float(np.percentile(lat, 95)) * 1e3, 3),
        "n_single": int(len(lat)),
        "batch64_qps": round(batch_qps(index, Q, budget_s), 1),
        "recall_at_5": round(recall_at(found, truth), 4),
        **out,
    }


def sweep(index, Q, truth, name, values, budget_s, max_queries):
    """Recall and latency over a search-time parameter (no rebuild)."""
    rows = []
    for v in values:
        setattr(index, name, v)
        lat = single_query_latencies(index, Q, budget_s, max_queries)
        rows.append({"param": name, "value": v, "recall_at_5": round(recall_at(index.query(Q, K)[1], truth), 4),
                     "single_ms_p50": round(float(np.percentile(lat, 50)) * 1e3, 3)})
        print(f"    {name}={v:<4} recall@5 {rows[-1]['recall_at_5']:.3f}  p50 {rows[-1]['single_ms_p50']:.2f} ms",
              flush=True)
    return rows


# ---------------------------------------------------------------------------------- the run

def duration(seconds) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def plan(args, n, d, results):
    """Backends to run at this size, and the ones skipped with the reason (from earlier sizes)."""
    def earlier(backend):
        rows = [r for r in results if r["backend"] == backend]
        return rows[-1] if rows else None

    run, skipped = [], []
    for backend in args.backends:
        reason, prev = None, earlier(backend)
        if backend == "balltree" and n > args.balltree_max_n:
            brute = [r for r in results if r["backend"] == "brute" and prev and r["n"] == prev["n"]]
            seen = (f" ({prev['single_ms_p50']:.0f} ms per query at n={prev['n']:,}"
                    + (f", {prev['single_ms_p50'] / brute[0]['single_ms_p50']:.0f}x brute)" if brute else ")")
                    if prev else "")
            reason = (f"at {d}-d the tree prunes almost nothing: each query is a float64 scan of all items"
                      f"{seen}; run only up to n={args.balltree_max_n:,} (--balltree-max-n)")
        elif backend == "faiss-hnsw" and n > args.hnsw_max_n:
            per_item = prev["build_s"] / prev["n"] if prev else 2.5e-3
            reason = (f"HNSW build {per_item * 1e3:.1f} ms per item at {d}-d"
                      + (f" (measured at n={prev['n']:,})" if prev else "")
                      + f": ~{duration(n * per_item)} here; run only up to n={args.hnsw_max_n:,} (--hnsw-max-n)")
        elif backend == "faiss-flat" and n > args.flat_max_n:
            reason = (f"the same exact scan as brute (faiss uses one thread for one query) and a second copy of the "
                      f"vectors; run only up to n={args.flat_max_n:,} (--flat-max-n) to keep the run short")
        elif backend == "faiss-flat" and n * d * 4 * 1.15 > mem_available_bytes():
            reason = "faiss keeps its own copy of the vectors: a second copy does not fit in memory"
        (skipped if reason else run).append((backend, reason))
    run.sort(key=lambda br: br[0] == "faiss-ivf")  # IVF last: it may free the data
    return [b for b, _ in run], [{"n": n, "backend": b, "reason": r} for b, r in skipped]


def run(args):
    started = time.perf_counter()
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": "none",
               "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
               "python": platform.python_version(), "numpy": np.__version__}
    machine.update(faiss=package_version("faiss-cpu"), sklearn=package_version("scikit-learn"),
                   loadavg_start=[round(x, 2) for x in os.getloadavg()])
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['mem_gib']} GiB", flush=True)
    bandwidth = memory_bandwidth(args.bandwidth_gib)
    gc.collect()
    print(f"memory bandwidth: {bandwidth} GB/s", flush=True)

    if args.features:
        feats = np.load(args.features, mmap_mode="r", allow_pickle=False)
        source = {"kind": "features", "path": str(args.features), "shape": list(feats.shape)}
        Q_all = np.ascontiguousarray(feats[-args.queries:], dtype=np.float32)
        pool = feats[:-args.queries]
        sizes = sorted({min(n, len(pool)) for n in args.sizes})
        dim = feats.shape[1]
    else:
        gen = SyntheticFeatures(args.dim, rank=args.rank, clusters=args.clusters, spread=args.spread, seed=args.seed)
        source = gen.describe()
        Q_all = gen.make(args.queries, stream=1)
        sizes, dim = args.sizes, args.dim

    def data_chunks(n):
        for i, start in enumerate(range(0, n, CHUNK_ROWS)):
            rows = min(CHUNK_ROWS, n - start)
            yield np.ascontiguousarray(pool[start:start + rows], np.float32) if args.features else gen.chunk(0, i, rows)

    results, sweeps, skipped = [], [], []
    for n in sizes:
        t = time.perf_counter()
        X = np.ascontiguousarray(pool[:n], dtype=np.float32) if args.features else gen.make(n)
        print(f"\n== n={n} x {dim}  (data {time.perf_counter() - t:.1f} s)", flush=True)
        t = time.perf_counter()
        truth = exact_neighbours(X, Q_all)
        print(f"  exact ground truth for {len(Q_all)} queries: {time.perf_counter() - t:.1f} s", flush=True)
        bound_ms = n * dim * 4 / (bandwidth["best"] * 1e9) * 1e3
        backends, skip = plan(args, n, dim, results)
        skipped += skip
        for s in skip:
            print(f"  skip {s['backend']}: {s['reason']}", flush=True)
        for backend in backends:
            if backend == "faiss-ivf" and n * dim * 4 * 1.15 > mem_available_bytes():
                # IVF copies the vectors into its cells; two copies do not fit: free X, build from chunks
                print("  (IVF built chunk by chunk, the data freed: two copies of the vectors do not fit)", flush=True)
                X = None
                gc.collect()
            t = time.perf_counter()
            index = build(backend, X, lambda n=n: data_chunks(n), n, args)
            build_s = time.perf_counter() - t
            row = {"n": n, "dim": dim, "backend": backend, "params": index.get_params(), "build_s": round(build_s, 2),
                   "nbytes": int(index.nbytes)}
            exact = backend in ("brute", "faiss-flat", "balltree")
            row.update(measure(index, Q_all, truth, args.budget, args.queries, ReadPass(X) if exact else None))
            if exact:
                row["bandwidth_bound_ms"] = round(bound_ms, 3)
                row["ratio_to_bound"] = round(row["single_ms_p50"] / bound_ms, 2)
            print(f"  {backend:<10} build {build_s:7.1f} s  {row['nbytes'] / 2**20:8.0f} MiB  "
                  f"p50 {row['single_ms_p50']:8.2f} ms  p95 {row['single_ms_p95']:8.2f} ms  "
                  f"batch {row['batch64_qps']:8.0f} q/s  recall@5 {row['recall_at_5']:.3f}"
                  + (f"  ({row['ratio_to_read']:.2f}x a read of the data, {row['read_ms_p50']:.1f} ms; "
                     f"{row['ratio_to_bound']:.2f}x n*d*4/bandwidth)" if exact else ""),
                  flush=True)
            results.append(row)
            if backend in ("faiss-ivf", "faiss-hnsw"):
                name, values = ("nprobe", IVF_NPROBES) if backend == "faiss-ivf" else ("ef_search", HNSW_EFS)
                for s in sweep(index, Q_all, truth, name, values, args.budget / 4, min(args.queries, 100)):
                    sweeps.append({"n": n, "backend": backend, **s})
            del index
            gc.collect()
        del X
        gc.collect()

    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine,
              "command": args.command, "k": K, "batch": BATCH,
              "queries": args.queries, "data": source, "bandwidth_gbs": bandwidth,
              "results": results, "sweeps": sweeps, "skipped": skipped}
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    report["targets"] = targets(report)
    write_json(args.out, report)
    print(f"\nwrote {args.out}")
    if args.results:
        update_results_md(Path(args.results), args.section, markdown(report, args.out))
        print(f"updated the k-NN section of {args.results}")
    for line in report["targets"]:
        print(line)
    return report


def build(backend, X, chunks, n, args):
    """Fit an index on X; when X was freed (IVF at 1M), fit on the first chunks and add the rest."""
    if X is not None:
        return KNNIndex(backend, threads=args.threads).fit(X)
    nlist = max(1, round(np.sqrt(n)))  # what fit(X) would choose for n rows
    parts = chunks()
    first = [next(parts) for _ in range(TRAIN_CHUNKS)]
    index = KNNIndex(backend, nlist=nlist, threads=args.threads).fit(np.concatenate(first))
    del first
    for part in parts:
        index.add(part)
    return index


# ---------------------------------------------------------------------------------- report

def targets(report) -> list[str]:
    """The issue's targets: exact at 20k within 1.5x of the bandwidth bound; 1M <= 10 ms at recall@5 >= 0.95."""
    lines = []
    exact20 = [r for r in report["results"] if r["n"] == 20000 and r["backend"] in ("brute", "faiss-flat")]
    for r in exact20:
        # the bound measured under the same conditions (a read of the data after each query) decides;
        # the bound from the start-of-run bandwidth is shown beside it
        ratio = r.get("ratio_to_read", r["ratio_to_bound"])
        read = (f" (a read of the same bytes, interleaved: {r['read_ms_p50']:.2f} ms; "
                f"{r['ratio_to_bound']:.2f}x n*d*4 / the start-of-run bandwidth)") if "ratio_to_read" in r else ""
        lines.append(f"{'MET' if ratio <= 1.5 else 'MISSED'}: exact search at 20k ({r['backend']}): p50 "
                     f"{r['single_ms_p50']:.2f} ms = {ratio:.2f}x the bandwidth bound{read} (target <= 1.5x)")
    big = max((r["n"] for r in report["results"]), default=0)
    if big >= 1_000_000:
        points = [(s["single_ms_p50"], s["recall_at_5"], s["backend"], f"{s['param']}={s['value']}")
                  for s in report["sweeps"] if s["n"] == big]
        points += [(r["single_ms_p50"], r["recall_at_5"], r["backend"], "default") for r in report["results"]
                   if r["n"] == big]
        good = sorted(p for p in points if p[1] >= 0.95)
        if good and good[0][0] <= 10:
            ms, rec, b, setting = good[0]
            lines.append(f"MET: {big:,} items: {b} {setting}: p50 {ms:.2f} ms at recall@5 {rec:.3f} "
                         f"(target <= 10 ms at >= 0.95)")
        elif good:
            ms, rec, b, setting = good[0]
            lines.append(f"MISSED: {big:,} items: fastest at recall@5 >= 0.95 is {b} {setting}: p50 {ms:.2f} ms")
        else:
            lines.append(f"MISSED: {big:,} items: no setting reached recall@5 >= 0.95")
    else:
        lines.append("NOT MEASURED: 1M items (the sizes of this run stop below 1M)")
    return lines


def fmt(row, key) -> str:
    return f"{row[key]:.2f}" if key in row else ""


def markdown(report, out_path) -> str:
    m = report["machine"]
    bw = report["bandwidth_gbs"]
    data = report["data"]
    data_line = (f"synthetic post-ReLU-like features: rank-{data['rank']} latent, {data['clusters']} clusters "
                 f"(spread {data['spread']}), uniform noise std {data['noise']}" if data["kind"] == "synthetic"
                 else f"features from `{data['path']}` {data['shape']}")
    lines = [
        "## k-NN search" + ("" if data["kind"] == "synthetic" else ": extracted features"),
        "",
        f"`{report['command']}` on {report['date'][:10]}; full numbers in `{out_path}`.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB RAM, GPU none; numpy {m['numpy']}, "
        f"faiss {m['faiss']}, scikit-learn {m['sklearn']}. Measured memory bandwidth (numpy sum, max, integer OR; "
        f"best of 1 thread / one per core): {bw['best']:.1f} GB/s. Load average (1 min) at start / end: "
        f"{m.get('loadavg_start', ['?'])[0]} / {m.get('loadavg_end', ['?'])[0]} (above ~0.5: other jobs shared "
        f"the cores and the memory bus, and every number here is slower than on an idle machine)."
        + (f" Run time {report['elapsed_s'] / 60:.1f} min." if "elapsed_s" in report else ""),
        "",
        f"Data: {data_line}; {report['queries']} held-out queries, k={report['k']}; single-query latency "
        f"one query at a time; throughput in batches of {report['batch']}. Recall@5 is against exact search. "
        f"For the exact backends, 'x read' is the p50 query time over the p50 time of one read of the same "
        f"n*d*4 bytes (numpy integer-OR reduction, one thread per core) measured right after each query, i.e. under "
        f"the same load; 'x bound' divides by n*d*4 / the bandwidth measured at the start instead.",
        "",
        "| n | backend | build s | memory MiB | p50 ms | p95 ms | batch q/s | recall@5 | x read | x bound |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(f"| {r['n']:,} | {r['backend']} | {r['build_s']:.1f} | {r['nbytes'] / 2**20:,.0f} | "
                     f"{r['single_ms_p50']:.2f} | {r['single_ms_p95']:.2f} | {r['batch64_qps']:,.0f} | "
                     f"{r['recall_at_5']:.3f} | {fmt(r, 'ratio_to_read')} | {fmt(r, 'ratio_to_bound')} |")
    if report["sweeps"]:
        lines += ["", "Search-time settings of the approximate backends (same build):", "",
                  "| n | backend | setting | recall@5 | p50 ms |", "|---:|---|---|---:|---:|"]
        for s in report["sweeps"]:
            lines.append(f"| {s['n']:,} | {s['backend']} | {s['param']}={s['value']} | {s['recall_at_5']:.3f} | "
                         f"{s['single_ms_p50']:.2f} |")
    if report["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- n={s['n']:,} {s['backend']}: {s['reason']}" for s in report["skipped"]]
    lines += ["", "Targets:", ""] + [f"- {t}" for t in report["targets"]]
    lines += ["", "Reading the numbers:", "",
              "- Exact search (brute, faiss-flat) reads all n*d*4 bytes per query: it is memory-bound, so "
              "'x bound' near 1 is as fast as it gets. brute is one float32 GEMV on all cores; faiss-flat "
              "scans a single query on one thread, which is slower on an idle machine and less hurt by a "
              "busy one.",
              "- BallTree, the paper's choice, prunes almost nothing at 2048-d: it is a float64 scan with "
              "tree overhead.",
              "- IVF recall depends on how the data cluster: the synthetic data have tight clusters, and IVF "
              "is easy when its cells line up with them (compare the sizes; `--clusters 0` draws one "
              "Gaussian, the hard case). Check on real features with `--features index/features.npy`.",
              ]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="sizes 5000,20000, 100 queries, HNSW only at 5000 (~2 min)")
    p.add_argument("--sizes", type=comma_list(int), default="20000,200000,1000000",
                   help="comma-separated catalog sizes")
    p.add_argument("--dim", type=int, default=2048, help="feature dimension of the synthetic data")
    p.add_argument("--rank", type=int, default=64, help="latent rank of the synthetic data")
    p.add_argument("--clusters", type=int, default=1000, help="latent clusters (0: one Gaussian, no structure)")
    p.add_argument("--spread", type=float, default=1.0, help="within-cluster spread (cluster centres have std 1)")
    p.add_argument("--features", type=Path, help="a float32 features.npy to use instead of synthetic data")
    p.add_argument("--queries", type=int, default=200, help="held-out queries")
    p.add_argument("--backends", type=comma_list(choices=BACKENDS), default=",".join(BACKENDS))
    p.add_argument("--balltree-max-n", type=int, default=50000)
    p.add_argument("--hnsw-max-n", type=int, default=20000)
    p.add_argument("--flat-max-n", type=int, default=200000)
    p.add_argument("--budget", type=float, default=8.0, help="seconds per timing loop (single / batch)")
    p.add_argument("--threads", type=int, default=None, help="threads for faiss and BLAS (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bandwidth-gib", type=float, default=1.0, help="array size for the bandwidth measurement")
    p.add_argument("--out", type=Path, default=Path("benchmarks/bench_knn.json"))
    p.add_argument("--results", default="benchmarks/RESULTS.md",
                   help="markdown file whose k-NN section is replaced ('' to skip)")
    p.add_argument("--section", default="knn",
                   help="name of that section (e.g. knn-real for a --features run beside the synthetic one)")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: rewrite the --results section from this earlier --out file")
    args = p.parse_args(argv)
    args.command = " ".join([Path(sys.argv[0]).name if argv is None else "bench_knn.py"]
                            + (sys.argv[1:] if argv is None else list(argv)))
    if args.quick:
        if args.sizes == comma_list(int)(p.get_default("sizes")):
            args.sizes = [5000, 20000]
        args.queries = min(args.queries, 100)
        args.hnsw_max_n = min(args.hnsw_max_n, 5000)
        args.budget = min(args.budget, 5.0)
    if any(n < 100 for n in args.sizes):
        p.error("--sizes must be at least 100 each")
    if args.queries < 10:
        p.error("--queries must be at least 10")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text(encoding="utf-8"))
        update_results_md(Path(args.results), args.section, markdown(report, args.render))
        print(f"updated the k-NN section of {args.results} from {args.render}")
        return report
    return run(args)


if __name__ == "__main__":
    main()
