"""Benchmark the k-NN backends of fashionrec.knn: build time, memory, latency, throughput, recall.

    python scripts/bench_knn.py --quick                       # ~1-2 minutes
    python scripts/bench_knn.py                               # 20k, 200k, 1M x 2048 (< 10 min, 2 cores)
    python scripts/bench_knn.py --features index/features.npy # real extracted features
    # a catalog past memory: faiss-ivfpq over 1M x 2048 written to disk and memory-mapped,
    # the demo's features tiled with noise (or, without --tile, the synthetic clusters)
    python scripts/bench_knn.py --sizes 1000000 --backends faiss-ivfpq --on-disk benchmarks/work \
        --tile demo/index/features.npy --section knn-ivfpq-tiled --out benchmarks/bench_knn_ivfpq_tiled.json
    python scripts/bench_knn.py --filtered   # filtered search (allowed=) vs unfiltered: scripts/knn_filtered.py

Synthetic data stand in for CNN features: a rank-64 latent (cluster centre + Gaussian spread,
like product types and their variations) mapped to ``--dim`` by a fixed random matrix, plus
uniform noise, through a ReLU (pooled post-ReLU activations are non-negative). Queries are fresh
draws from the same distribution, i.e. new photos of catalog-like products. Chunk i is drawn
from ``default_rng([seed, i])``: reproducible, and 1M x 2048 (8 GB) never needs a second copy
(scripts/knn_data.py, also for ``--tile``).

faiss-ivfpq keeps only codes in memory and re-ranks from the caller's vectors: with
``--on-disk`` they are a memory-mapped ``.npy`` (deleted after each size unless ``--keep-data``).
Its RAM is measured (the process's anonymous resident memory, before and after loading the saved
structure) besides the bytes the structure counts, and its sweep covers ``nprobe`` and
``rerank_factor``. The report ends with the arithmetic for 100M items (scripts/knn_report.py).

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
from knn_data import CHUNK_ROWS, SyntheticFeatures, TiledFeatures
from knn_filtered import add_filtered_arguments, markdown_filtered, resolve_filtered_arguments, run_filtered, saver
from knn_report import ivfpq_memory, scale_section, setting_label, targets

K = 5
BATCH = 64
BACKENDS = ("brute", "faiss-flat", "balltree", "faiss-hnsw", "faiss-ivf", "faiss-ivfpq")
IVF_NPROBES = (1, 4, 8, 16, 32, 64, 128)
HNSW_EFS = (16, 32, 64, 128, 256)
IVFPQ_NPROBES = (4, 8, 16, 32)  # a grid with IVFPQ_RERANK: both decide recall and time
IVFPQ_RERANK = (10, 20, 40, 100, 200)
TRAIN_CHUNKS = 4  # IVF built from chunks trains on the first 65,536 rows (64 per cell at 1M)


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
    """(distances, ids) of exact search: the ground truth."""
    return KNNIndex("brute").fit(X).query(Q, k)


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


def distance_ratio(dist, truth_dist) -> float:
    """Mean over queries of (sum of the k distances returned) / (sum of the true k): 1 = exact."""
    return float(np.mean(dist.sum(axis=1) / np.maximum(truth_dist.sum(axis=1), 1e-12)))


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
    dist, found = index.query(Q, K)
    return {
        "single_ms_p50": round(float(np.percentile(lat, 50)) * 1e3, 3),
        "single_ms_p95": round(float(np.percentile(lat, 95)) * 1e3, 3),
        "n_single": int(len(lat)),
        "batch64_qps": round(batch_qps(index, Q, budget_s), 1),
        "recall_at_5": round(recall_at(found, truth[1]), 4),
        "distance_ratio": round(distance_ratio(dist, truth[0]), 5),
        **out,
    }


def sweep(index, Q, truth, settings, budget_s, max_queries):
    """Recall and latency over search-time settings (dicts of parameters; no rebuild), then restored."""
    rows, before = [], index.get_params()
    for setting in settings:
        index.set_params(**setting)
        lat = single_query_latencies(index, Q, budget_s, max_queries)
        dist, found = index.query(Q, K)
        rows.append({"param": ", ".join(setting), "value": ", ".join(map(str, setting.values())),
                     "setting": ", ".join(f"{k}={v}" for k, v in setting.items()),
                     "recall_at_5": round(recall_at(found, truth[1]), 4),
                     "distance_ratio": round(distance_ratio(dist, truth[0]), 5),
                     "single_ms_p50": round(float(np.percentile(lat, 50)) * 1e3, 3)})
        print(f"    {rows[-1]['param']}={rows[-1]['value']:<8} recall@5 {rows[-1]['recall_at_5']:.3f}  "
              f"p50 {rows[-1]['single_ms_p50']:.2f} ms", flush=True)
    index.set_params(**{name: before[name] for name in settings[0]})
    return rows


SWEEPS = {"faiss-ivf": [{"nprobe": v} for v in IVF_NPROBES], "faiss-hnsw": [{"ef_search": v} for v in HNSW_EFS],
          "faiss-ivfpq": [{"nprobe": p, "rerank_factor": r} for p in IVFPQ_NPROBES for r in IVFPQ_RERANK]}


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
    run.sort(key=lambda br: br[0] == "faiss-ivf")  # IVF last: it may free the data (IVF-PQ keeps a reference)
    return [b for b, _ in run], [{"n": n, "backend": b, "reason": r} for b, r in skipped]


def run(args):
    started = time.perf_counter()
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": "none",
               "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
               "python": platform.python_version(), "numpy": np.__version__}
    machine.update(faiss=package_version("faiss-cpu"), sklearn=package_version("scikit-learn"),
                   loadavg_start=[round(x, 2) for x in os.getloadavg()])
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['mem_gib']} GiB", flush=True)
    if not args.filtered:  # filtered search is timed against unfiltered queries
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
        if args.tile:
            gen = TiledFeatures(np.load(args.tile, allow_pickle=False), path=args.tile, jitter=args.jitter,
                                seed=args.seed)
        else:
            gen = SyntheticFeatures(args.dim, rank=args.rank, clusters=args.clusters, spread=args.spread,
                                    seed=args.seed)
        source = gen.describe()
        Q_all = gen.make(args.queries, stream=1)
        sizes, dim = args.sizes, gen.dim

    def data_chunks(n):
        for i, start in enumerate(range(0, n, CHUNK_ROWS)):
            rows = min(CHUNK_ROWS, n - start)
            yield np.ascontiguousarray(pool[start:start + rows], np.float32) if args.features else gen.chunk(0, i, rows)

    if args.filtered:  # scripts/knn_filtered.py
        args.sizes = sizes
        catalog = (lambda n: np.ascontiguousarray(pool[:n], dtype=np.float32)) if args.features else gen.make
        return run_filtered(args, machine, source, Q_all, catalog, data_chunks, build, saver(args))

    results, sweeps, skipped = [], [], []
    for n in sizes:
        t = time.perf_counter()
        data_path = None
        if args.features:
            X = np.ascontiguousarray(pool[:n], dtype=np.float32)
        elif args.on_disk:  # written chunk by chunk and memory-mapped: never a second copy in RAM
            data_path = Path(args.on_disk) / f"bench-knn-{source['kind']}-{n}x{dim}.npy"
            X = gen.write_npy(data_path, n)
        else:
            X = gen.make(n)
        print(f"\n== n={n} x {dim}  (data {time.perf_counter() - t:.1f} s"
              + (f", on disk: {data_path}" if data_path else "") + ")", flush=True)
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
            if backend == "faiss-ivfpq":  # RAM as used (saved, loaded in a fresh process), build phases
                row.update(ivfpq_memory(index, Q_all, Path(args.on_disk or Path(args.out).parent)),
                           on_disk=data_path is not None)
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
            if backend in SWEEPS:
                for s in sweep(index, Q_all, truth, SWEEPS[backend], args.budget / 4, min(args.queries, 100)):
                    sweeps.append({"n": n, "backend": backend, **s})
            del index
            gc.collect()
        del X
        gc.collect()
        if data_path is not None and not args.keep_data:
            data_path.unlink()

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

def fmt(row, key) -> str:
    return f"{row[key]:.2f}" if key in row else ""


def markdown(report, out_path) -> str:
    m = report["machine"]
    bw = report["bandwidth_gbs"]
    data = report["data"]
    data_line = {
        "synthetic": lambda: (f"synthetic post-ReLU-like features: rank-{data['rank']} latent, {data['clusters']} "
                              f"clusters (spread {data['spread']}), uniform noise std {data['noise']}"),
        "tiled": lambda: (f"the {data['base_rows']} extracted features of `{data['path']}` tiled with Gaussian jitter "
                          f"({data['jitter']:g} of each feature's spread), through a ReLU"),
        "features": lambda: f"features from `{data['path']}` {data['shape']}",
    }[data["kind"]]()
    title = {"synthetic": "", "tiled": ": extracted features tiled with noise", "features": ": extracted features"}
    if {r["backend"] for r in report["results"]} == {"faiss-ivfpq"}:
        title = dict(title, synthetic=": synthetic clusters")
        title = {k: " past memory (faiss-ivfpq)" + v for k, v in title.items()}
    lines = [
        "## k-NN search" + title[data["kind"]],
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
            lines.append(f"| {s['n']:,} | {s['backend']} | {setting_label(s)} | {s['recall_at_5']:.3f} | "
                         f"{s['single_ms_p50']:.2f} |")
    if report["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- n={s['n']:,} {s['backend']}: {s['reason']}" for s in report["skipped"]]
    lines += scale_section(report)
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
    p.add_argument("--tile", type=Path, metavar="FEATURES",
                   help="real-like data: this features.npy's rows tiled with Gaussian jitter (any --sizes)")
    p.add_argument("--jitter", type=float, default=0.05, help="--tile: jitter as a fraction of each feature's spread")
    p.add_argument("--on-disk", type=Path, metavar="DIR",
                   help="write each size's data to a .npy in DIR and memory-map it (faiss-ivfpq: a catalog past RAM)")
    p.add_argument("--keep-data", action="store_true", help="keep the --on-disk files (8 GB at 1M x 2048)")
    p.add_argument("--queries", type=int, default=200, help="held-out queries")
    add_filtered_arguments(p, BACKENDS)
    p.add_argument("--balltree-max-n", type=int, default=50000)
    p.add_argument("--hnsw-max-n", type=int, default=20000)
    p.add_argument("--flat-max-n", type=int, default=200000)
    p.add_argument("--budget", type=float, default=8.0, help="seconds per timing loop (single / batch)")
    p.add_argument("--threads", type=int, default=None, help="threads for faiss and BLAS (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bandwidth-gib", type=float, default=1.0, help="array size for the bandwidth measurement")
    p.add_argument("--out", type=Path, help="default benchmarks/bench_knn.json (--filtered: bench_knn_filtered.json)")
    p.add_argument("--results", default="benchmarks/RESULTS.md",
                   help="markdown file whose k-NN section is replaced ('' to skip)")
    p.add_argument("--section", help="name of that section (default knn, --filtered: knn-filtered; e.g. knn-real "
                                     "for a --features run beside the synthetic one)")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: rewrite the --results section from this earlier --out file")
    args = p.parse_args(argv)
    args.command = " ".join([Path(sys.argv[0]).name if argv is None else "bench_knn.py"]
                            + (sys.argv[1:] if argv is None else list(argv)))
    resolve_filtered_arguments(p, args, BACKENDS)
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
        filtered = report.get("mode") == "filtered"  # its own section unless one was named
        section, render = ("knn-filtered", markdown_filtered) if filtered else (args.section, markdown)
        update_results_md(Path(args.results), section if args.section == "knn" else args.section,
                          render(report, args.render))
        print(f"updated the k-NN section of {args.results} from {args.render}")
        return report
    return run(args)


if __name__ == "__main__":
    main()
