"""The report of scripts/bench_knn.py: the issue's targets, faiss-ivfpq's memory as used, 100M items.

The RAM an IVF-PQ index takes is measured in a fresh process that loads the saved structure
(the vectors stand in as a zero-byte strided array): the process's anonymous resident memory
before and after, so allocator slack and faiss's own copies count and the build's leftovers do
not. The 100M arithmetic scales what this run measured: per-item bytes, the build's phases, the
time to scan one PQ code, the re-ranking, and this machine's memory bandwidth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 5
TARGET_ITEMS = 100_000_000
TARGET_RECALL, TARGET_MS, TARGET_BYTES = 0.95, 5.0, 100
NVME_READ_US = 100  # one synchronous random 4-8 KB read from a datacentre NVMe drive (queue depth 1)
NVME_PARALLEL_READ_US = 5  # the same at queue depth >= 32 (~200k IOPS)

_MEASURE_LOAD = r"""
import json, re, sys
import numpy as np
from pathlib import Path
def rss_anon():
    return int(re.search(r"^RssAnon:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1)) * 1024
from fashionrec.knn import KNNIndex
meta = json.loads(Path(sys.argv[1], "knn.json").read_text())
fake = np.lib.stride_tricks.as_strided(np.zeros(meta["dim"], np.float32), (meta["n_items"], meta["dim"]), (0, 4))
import faiss  # imported before the first reading: its libraries are not the index
before = rss_anon()
index = KNNIndex.load(sys.argv[1], vectors=fake)
print(json.dumps({"rss_bytes": rss_anon() - before, "nbytes": index.nbytes}))
"""


def _load_in_fresh_process(directory: Path) -> dict:
    src = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _MEASURE_LOAD, str(directory)], capture_output=True, text=True,
                         env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def pq_scan_ns_per_code(index, codes=1_000_000, repeats=5) -> float:
    """Nanoseconds to scan one PQ code (its table lookups and the running top-k), one thread.

    A flat ``IndexPQ`` with the index's codebooks over random codes: one query's lookup table is
    computed once and every code scanned, as in one IVF cell, only longer.
    """
    from fashionrec.knn._faiss import import_faiss

    faiss = import_faiss()
    ivf = index._backend._ivf()
    flat = faiss.IndexPQ(ivf.d, ivf.pq.M, ivf.pq.nbits)
    flat.pq = ivf.pq
    flat.is_trained = True
    rng = np.random.default_rng(0)
    random_codes = rng.integers(0, 256, (codes, ivf.code_size), dtype=np.uint8)
    if hasattr(flat, "add_sa_codes"):  # faiss >= 1.9
        flat.add_sa_codes(random_codes)
    else:
        faiss.copy_array_to_vector(random_codes.ravel(), flat.codes)
        flat.ntotal = codes
    query = rng.standard_normal((1, ivf.d), dtype=np.float32)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            flat.search(query, K * index.rerank_factor)
            best = min(best, time.perf_counter() - t)
    finally:
        faiss.omp_set_num_threads(before)
    return best / codes * 1e9


def ivfpq_memory(index, Q, workdir: Path, queries: int = 50) -> dict:
    """RAM as used (saved, loaded in a fresh process), build phases, and where a query's time goes."""
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".ivfpq-") as tmp:
        index.save(Path(tmp) / "knn", with_vectors=False)
        file_bytes = (Path(tmp) / "knn" / "index.faiss").stat().st_size
        loaded = _load_in_fresh_process(Path(tmp) / "knn")
    n = index.n_items
    codes_s = []
    for q in Q[:queries]:  # the codes' part of a query: coarse cells, lookup tables, scan
        t = time.perf_counter()
        index._backend.search(q[None], K)
        codes_s.append(time.perf_counter() - t)
    return {"build_phases_s": {k: round(v, 2) for k, v in index._backend.build_seconds.items()},
            "index_file_bytes": file_bytes, "rss_bytes": loaded["rss_bytes"],
            "rss_per_item": round(loaded["rss_bytes"] / n, 1), "nbytes_per_item": round(index.nbytes / n, 1),
            "codes_ms_p50": round(float(np.percentile(codes_s, 50)) * 1e3, 3),
            "scan_ns_per_code": round(pq_scan_ns_per_code(index), 2)}


def setting_label(sweep_row) -> str:
    """``nprobe=4, rerank_factor=40`` (reports written before the grid sweeps hold param and value)."""
    return sweep_row.get("setting") or f"{sweep_row['param']}={sweep_row['value']}"


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
        points = [(s["single_ms_p50"], s["recall_at_5"], s["backend"], setting_label(s))
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
    return lines + ivfpq_targets(report)


def _settings(report, n):
    """(p50 ms, recall, label) of every faiss-ivfpq setting measured at n: the default and the sweeps."""
    points = [(r["single_ms_p50"], r["recall_at_5"], "default") for r in report["results"]
              if r["n"] == n and r["backend"] == "faiss-ivfpq"]
    points += [(s["single_ms_p50"], s["recall_at_5"], setting_label(s)) for s in report["sweeps"]
               if s["n"] == n and s["backend"] == "faiss-ivfpq"]
    return points


def ivfpq_targets(report) -> list[str]:
    """The issue's target for faiss-ivfpq: recall@5 >= 0.95 at <= 5 ms p50, <= 100 B of RAM per item, at 1M."""
    rows = [r for r in report["results"] if r["backend"] == "faiss-ivfpq"]
    if not rows:
        return []
    row = max(rows, key=lambda r: r["n"])
    n = row["n"]
    per_item = max(row.get("rss_per_item", 0), row.get("nbytes_per_item", 0))
    good = sorted(p for p in _settings(report, n) if p[1] >= TARGET_RECALL)
    where = f"faiss-ivfpq at {n:,}" + ("" if n >= 1_000_000 else " (below the 1M of the target: see the arithmetic)")
    ram = f"{per_item:.0f} B of RAM per item (target <= {TARGET_BYTES})"
    if good and good[0][0] <= TARGET_MS and per_item <= TARGET_BYTES:
        ms, rec, label = good[0]
        verdict = "MET" if n >= 1_000_000 else "MET BELOW 1M"
        return [f"{verdict}: {where}: {label}: p50 {ms:.2f} ms at recall@5 {rec:.3f}, {ram}"]
    if good:
        ms, rec, label = good[0]
        return [f"MISSED: {where}: fastest at recall@5 >= {TARGET_RECALL} is {label}: p50 {ms:.2f} ms "
                f"(target <= {TARGET_MS:g} ms); {ram}"]
    return [f"MISSED: {where}: no setting reached recall@5 >= {TARGET_RECALL}; {ram}"]


def scale_section(report) -> list[str]:
    """Markdown: the faiss-ivfpq details of this run and the arithmetic for 100M items."""
    rows = [r for r in report["results"] if r["backend"] == "faiss-ivfpq"]
    if not rows:
        return []
    lines = ["", "faiss-ivfpq as used: RAM measured in a fresh process loading the saved structure (anonymous "
             "resident memory; the vectors stay on disk), beside the bytes the structure counts; 'codes' is the "
             "part of a query spent in faiss (cells, lookup tables, scan), the rest is the exact re-ranking from "
             "the vectors:", "",
             "| n | vectors | train s | assign s | encode s | RAM B/item (measured / counted) | file MB | "
             "codes ms | p50 ms | recall@5 | distance ratio | scan ns/code |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ph = r.get("build_phases_s", {})
        lines.append(f"| {r['n']:,} | {'memory-mapped file' if r.get('on_disk') else 'in RAM'} | "
                     f"{ph.get('train', 0):.0f} | {ph.get('assign', 0):.0f} | {ph.get('encode', 0):.0f} | "
                     f"{r['rss_per_item']:.0f} / {r['nbytes_per_item']:.0f} | {r['index_file_bytes'] / 2**20:,.0f} | "
                     f"{r['codes_ms_p50']:.2f} | {r['single_ms_p50']:.2f} | {r['recall_at_5']:.3f} | "
                     f"{r['distance_ratio']:.4f} | {r['scan_ns_per_code']:.1f} |")
    lines += ["", "Reading the faiss-ivfpq numbers:", "",
              "- 'memory MiB' above is the structure alone; the vectors it re-ranks from stay in the file. The "
              "query times are with that file in the page cache (it was just written, and 8 GB fits this "
              "machine's RAM); a catalog larger than RAM reads its candidates from disk: see the arithmetic.",
              "- The recall is bought with candidates: each query re-ranks rerank_factor x k rows exactly "
              "(~3 us each at 2048-d), so rerank_factor sets the time once nprobe covers the right cells.",
              "- On tiled data a query's true 5 nearest are 5 of its product's n / (base rows) near-copies, "
              "ordered by the jitter alone: 64-byte codes cannot rank those, so it takes more candidates there "
              "than on the synthetic clusters, while the distance ratio shows what is returned is as close."]
    return lines + [""] + arithmetic_100m(max(rows, key=lambda r: r["n"]), report)


def arithmetic_100m(row, report) -> list[str]:
    """What the measured row implies for 100M items on one machine like this one."""
    n, d, params = row["n"], row["dim"], row["params"]
    big = TARGET_ITEMS
    code = params["pq_m"] * params["pq_bits"] / 8
    nlist, nlist_big = params["nlist"], round(big ** 0.5)
    fixed = nlist_big * d * 4 + 2 ** params["pq_bits"] * d * 4 + (d * d * 4 if params["opq"] else 0)
    ram = big * (code + 8) + fixed
    slack = row["rss_per_item"] - row["nbytes_per_item"]  # allocator and faiss overhead per item, measured
    ph = row.get("build_phases_s", {})
    assign_h = ph.get("assign", 0) / n * big * nlist_big / nlist / 3600  # grows with the cells
    encode_h = ph.get("encode", 0) / n * big / 3600
    bandwidth = report["bandwidth_gbs"]["best"] * 1e9
    coarse_ms = nlist_big * d * 4 / bandwidth * 1e3
    scanned = params["nprobe"] * big / nlist_big
    scan_ms = scanned * row["scan_ns_per_code"] / 1e6
    lut_ms = max(row["codes_ms_p50"] - params["nprobe"] * n / nlist * row["scan_ns_per_code"] / 1e6
                 - nlist * d * 4 / bandwidth * 1e3, 0)  # per query at 1M: the tables, as measured
    rerank_ms = max(row["single_ms_p50"] - row["codes_ms_p50"], 0)
    candidates = K * params["rerank_factor"]
    disk_ms = candidates * NVME_READ_US / 1e3
    disk_par_ms = candidates * NVME_PARALLEL_READ_US / 1e3
    total_ms = coarse_ms + lut_ms + scan_ms + rerank_ms
    return [
        f"Arithmetic for {big / 1e6:.0f}M items of {d}-d with these settings (nlist = sqrt(n) = {nlist_big:,}, "
        f"nprobe {params['nprobe']}, {candidates} candidates re-ranked), from the figures above:",
        "",
        f"- RAM: {code:.0f}-byte codes + 8-byte ids = {(code + 8) * big / 1e9:.1f} GB, plus {fixed / 1e6:.0f} MB of "
        f"centroids and codebooks: {ram / 1e9:.1f} GB ({ram / big:.0f} B per item; "
        f"{slack:+.0f} B per item of allocator and faiss overhead measured at {n:,}). The features stay on disk: "
        f"{big * d * 4 / 1e12:.2f} TB of float32 ({d * 4:,} B per item), which no page cache holds.",
        f"- Build on these {report['machine']['cores']} cores: training is fixed ({ph.get('train', 0):.0f} s here); "
        f"assigning to {nlist_big:,} cells instead of {nlist:,} costs {nlist_big / nlist:.0f}x more per item: "
        f"~{assign_h:.0f} h; encoding ~{encode_h:.0f} h. A GPU (faiss-gpu), more cores, or building shards in "
        f"parallel divide that.",
        f"- One query on one core: coarse cells {coarse_ms:.1f} ms (a read of the {nlist_big:,} centroids at "
        f"{bandwidth / 1e9:.0f} GB/s; an HNSW over the centroids makes it ~0.1 ms) + lookup tables ~{lut_ms:.1f} ms "
        f"(as at {n:,}) + scanning {scanned:,.0f} codes at {row['scan_ns_per_code']:.1f} ns = {scan_ms:.1f} ms + "
        f"re-ranking {rerank_ms:.1f} ms from the page cache = ~{total_ms:.0f} ms, if the same nprobe keeps the "
        f"recall (cells {big // nlist_big:,} items each instead of {n // nlist:,}). From an NVMe drive the "
        f"{candidates} candidate rows cost {disk_ms:.0f} ms read one after another (memory-mapped page faults, "
        f"~{NVME_READ_US} us each) or ~{disk_par_ms:.0f} ms read in parallel (queue depth >= 32).",
    ]
