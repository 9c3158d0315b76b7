"""Filtered k-NN search for scripts/bench_knn.py --filtered: the cost and recall of ``allowed=``.

    python scripts/bench_knn.py --filtered                     # 20k, 200k, 1M; brute, faiss-ivf, faiss-ivfpq
    python scripts/bench_knn.py --filtered --sizes 20000,200000 --shares 0.5,0.05,0.001

Per size: filters keeping each ``--shares`` of the catalog (drawn at random, the exact count, seeded),
and per backend and setting the p50 time of one query unfiltered and with each filter, measured
interleaved (query i unfiltered, then with each filter, then query i+1...: a busy machine slows them
alike), recall@5 against exact filtered search, and the share of rows that came back with all
min(k, allowed) results. The exact reference is computed independently of the filtered code path:
ordinary unfiltered brute search over the allowed rows, chunk by chunk, merged. Writes the JSON
(``benchmarks/bench_knn_filtered.json``) and the ``knn-filtered`` section of RESULTS.md.
"""

from __future__ import annotations

import datetime
import gc
import os
import time
from pathlib import Path

import numpy as np

from benchlib import comma_list, mem_available_bytes, update_results_md
from fashionrec.artifacts import write_json
from fashionrec.knn import KNNIndex

K = 5
SHARES = (0.5, 0.05, 0.001)
SETTINGS = {"brute": [{}], "faiss-ivf": [{"nprobe": 4}, {"nprobe": 16}],
            "faiss-ivfpq": [{"nprobe": 4, "rerank_factor": 20}, {"nprobe": 16, "rerank_factor": 100}]}
_REFERENCE_ROWS = 65536  # allowed rows per chunk of the reference search


def add_filtered_arguments(p, backends) -> None:
    """bench_knn.py's options for this mode (``--backends`` with a default that depends on it)."""
    p.add_argument("--backends", type=comma_list(choices=backends), default=None,
                   help=f"default: all ({','.join(backends)}); with --filtered: {','.join(SETTINGS)}")
    p.add_argument("--filtered", action="store_true",
                   help="measure filtered search (allowed=) against unfiltered instead (scripts/knn_filtered.py)")
    p.add_argument("--shares", type=comma_list(float), default="0.5,0.05,0.001",
                   help="--filtered: the shares of the catalog the filters keep")
    p.add_argument("--ivfpq-max-n", type=int, default=200000, help="--filtered: faiss-ivfpq only up to this n")


def resolve_filtered_arguments(p, args, backends) -> None:
    """The defaults that depend on ``--filtered`` (backends, JSON file, RESULTS.md section), checked."""
    if args.backends is None:
        args.backends = list(SETTINGS) if args.filtered else list(backends)
    if args.out is None:
        args.out = Path("benchmarks/bench_knn_filtered.json" if args.filtered else "benchmarks/bench_knn.json")
    if args.section is None:
        args.section = "knn-filtered" if args.filtered else "knn"
    if args.filtered and not set(args.backends) <= set(SETTINGS):
        p.error(f"--filtered measures {', '.join(SETTINGS)}; got --backends {','.join(args.backends)}")
    if any(not 0 < share <= 1 for share in args.shares):
        p.error("--shares must each be in (0, 1]")


def saver(args):
    """``save(report)``: the JSON and the RESULTS.md section, rewritten after each size."""
    def save(report):
        write_json(args.out, report)
        print(f"wrote {args.out}", flush=True)
        if args.results:
            update_results_md(Path(args.results), args.section, markdown_filtered(report, args.out))
            print(f"updated the {args.section} section of {args.results}", flush=True)

    return save


def filter_masks(n, shares, seed) -> dict:
    """share -> a boolean mask keeping round(share * n) items (at least 1), drawn at random."""
    rng = np.random.default_rng([seed, 7, n])
    masks = {}
    for share in shares:
        mask = np.zeros(n, bool)
        mask[rng.choice(n, max(1, round(share * n)), replace=False)] = True
        masks[share] = mask
    return masks


def exact_filtered(X, Q, mask, k=K):
    """Exact filtered neighbours without the filtered code path: unfiltered brute over the allowed rows."""
    ids = np.flatnonzero(mask)
    dist, found = [], []
    for start in range(0, len(ids), _REFERENCE_ROWS):
        chunk = ids[start:start + _REFERENCE_ROWS]
        d, i = KNNIndex("brute").fit(np.ascontiguousarray(X[chunk])).query(Q, min(k, len(chunk)))
        dist.append(d)
        found.append(chunk[i])
    dist, found = np.concatenate(dist, axis=1), np.concatenate(found, axis=1)
    order = np.lexsort((found, dist), axis=-1)[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(found, order, 1)


def recall_at(found, truth) -> float:
    """Mean over queries of |found & truth| / |truth| (truth holds min(k, allowed) ids)."""
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth)]))


def route(index, mask) -> str:
    """Which way the façade takes for this filter (fashionrec.knn.filtered's rule)."""
    return "scan" if mask.sum() <= index._backend.filter_scan_rows(K) else "structure"


def interleaved_p50(index, Q, masks, budget_s, max_queries) -> dict:
    """p50 ms of one query per variant (None: unfiltered), the variants interleaved query by query."""
    variants = [None, *masks]
    for share in variants:  # warm-up: lazy imports, the IVF cell table, first touch
        index.query(Q[:1], K, allowed=masks.get(share))
    times = {share: [] for share in variants}
    start = time.perf_counter()
    for i in range(min(max_queries, len(Q))):
        for share in variants:
            t = time.perf_counter()
            index.query(Q[i:i + 1], K, allowed=masks.get(share))
            times[share].append(time.perf_counter() - t)
        if i >= 4 and time.perf_counter() - start > budget_s * len(variants):
            break
    return {share: (round(float(np.percentile(t, 50)) * 1e3, 3), len(t)) for share, t in times.items()}


def new_filter_p50(index, Q, n, share, seed, count=7) -> float:
    """p50 ms of one query with a filter the index has not seen (each a fresh draw keeping ``share``):
    what a first query pays where a backend keeps something per filter (IVF's allowed count per cell)."""
    times = []
    rng = np.random.default_rng([seed, 8, n])
    for i in range(count):
        mask = np.zeros(n, bool)
        mask[rng.choice(n, max(1, round(share * n)), replace=False)] = True
        t = time.perf_counter()
        index.query(Q[i:i + 1], K, allowed=mask)
        times.append(time.perf_counter() - t)
    return round(float(np.percentile(times, 50)) * 1e3, 3)


def measure_index(index, backend, setting, n, Q, masks, truths, args) -> list[dict]:
    rows = []
    before = index.get_params()
    if setting:
        index.set_params(**setting)
    label = ", ".join(f"{k}={v}" for k, v in setting.items()) or "exact"
    p50 = interleaved_p50(index, Q, masks, args.budget, args.queries)
    fresh = {share: new_filter_p50(index, Q, n, share, args.seed) for share in masks}
    for share in [None, *masks]:
        mask = masks.get(share)
        dist, found = index.query(Q, K, allowed=mask)
        truth = truths[share]
        expected = truth.shape[1]
        row = {"n": n, "backend": backend, "setting": label, "share": share,
               "allowed": int(mask.sum()) if mask is not None else n,
               "route": route(index, mask) if mask is not None else "-",
               "single_ms_p50": p50[share][0], "n_single": p50[share][1],
               "unfiltered_ms_p50": p50[None][0], "ratio_to_unfiltered": round(p50[share][0] / p50[None][0], 2),
               "recall_at_5": round(recall_at(found, truth), 4),
               "full_rows": round(float(np.mean((found[:, :expected] >= 0).all(axis=1))), 4)}
        if mask is not None:
            assert mask[found[found >= 0]].all(), "a filtered query returned an item the filter left out"
            row["new_filter_ms_p50"] = fresh[share]
        rows.append(row)
        print(f"  {backend:<11} {label:<28} {'none' if share is None else f'{share:g}':>6} "
              f"({row['allowed']:>9,} allowed, {row['route']:<9}) p50 {row['single_ms_p50']:8.2f} ms "
              f"({row['ratio_to_unfiltered']:.2f}x)  recall@5 {row['recall_at_5']:.3f}  full {row['full_rows']:.2f}",
              flush=True)
    index.set_params(**{k: before[k] for k in setting})
    return rows


def run_filtered(args, machine, source, Q, catalog, chunks, build, save) -> dict:
    """The --filtered run over the queries ``Q``: ``catalog(n)`` gives the (n, dim) vectors, ``chunks(n)`` the
    same chunk by chunk, ``build(backend, X, chunks, n, args)`` an index (bench_knn's: from chunks when X is
    None). ``source`` describes the data. ``save(report)`` is called after each size (a long run that is
    stopped keeps the sizes done)."""
    started = time.perf_counter()
    results, skipped = [], []

    def report():
        machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine,
                "command": args.command, "mode": "filtered", "k": K, "queries": len(Q),
                "shares": list(args.shares), "data": source, "results": results, "skipped": skipped,
                "elapsed_s": round(time.perf_counter() - started, 1)}

    for n in args.sizes:
        t = time.perf_counter()
        X = catalog(n)
        masks = filter_masks(n, args.shares, args.seed)
        print(f"\n== n={n} x {X.shape[1]}  (data {time.perf_counter() - t:.1f} s)", flush=True)
        t = time.perf_counter()
        truths = {None: KNNIndex("brute").fit(X).query(Q, K)[1]}
        truths.update({share: exact_filtered(X, Q, mask)[1] for share, mask in masks.items()})
        print(f"  exact references for {len(Q)} queries: {time.perf_counter() - t:.1f} s", flush=True)
        backends = [b for b in args.backends if b in SETTINGS]
        if "faiss-ivfpq" in backends and n > args.ivfpq_max_n:
            backends.remove("faiss-ivfpq")
            skipped.append({"n": n, "backend": "faiss-ivfpq", "reason": f"its build takes ~5 min at 1M x 2048 on 2 "
                            f"cores; run only up to n={args.ivfpq_max_n:,} (--ivfpq-max-n)"})
        backends.sort(key=lambda b: b == "faiss-ivf")  # IVF last: it may free the data
        for backend in backends:
            if backend == "faiss-ivf" and n * X.shape[1] * 4 * 1.15 > mem_available_bytes():
                print("  (IVF built chunk by chunk, the data freed: two copies of the vectors do not fit)", flush=True)
                X = None
                gc.collect()
            t = time.perf_counter()
            index = build(backend, X, lambda n=n: chunks(n), n, args)
            print(f"  {backend}: built in {time.perf_counter() - t:.1f} s", flush=True)
            for setting in SETTINGS[backend]:
                results += measure_index(index, backend, setting, n, Q, masks, truths, args)
            del index
            gc.collect()
        del X
        gc.collect()
        save(report())
    return report()


def filtered_targets(report) -> list[str]:
    """The issue's targets: exact filtered no slower than unfiltered; approximate at 1M within 2x at recall >= 0.95."""
    lines = []
    for r in report["results"]:
        if r["backend"] == "brute" and r["share"] is not None:
            # 10% over the unfiltered p50 is within what two interleaved p50s on a shared machine differ by
            ok = r["single_ms_p50"] <= 1.1 * r["unfiltered_ms_p50"] and r["recall_at_5"] == 1.0
            lines.append(f"{'MET' if ok else 'MISSED'}: exact (brute) at {r['n']:,}, keeping {r['share']:g}: p50 "
                         f"{r['single_ms_p50']:.2f} ms vs {r['unfiltered_ms_p50']:.2f} ms unfiltered "
                         f"({r['ratio_to_unfiltered']:.2f}x; target: no slower, read as <= 1.1x, the spread of two "
                         f"interleaved p50s here), recall@5 {r['recall_at_5']:.3f}")
    big = max((r["n"] for r in report["results"]), default=0)
    approx = [r for r in report["results"] if r["n"] == big and r["backend"] != "brute" and r["share"] is not None]
    if big < 1_000_000:
        lines.append(f"NOT MEASURED AT 1M: approximate filtered search (largest size here: {big:,}); at {big:,}:")
    for share in report["shares"]:
        rows = sorted((r for r in approx if r["share"] == share and r["recall_at_5"] >= 0.95),
                      key=lambda r: r["ratio_to_unfiltered"])
        if rows:
            r = rows[0]
            ok = r["ratio_to_unfiltered"] <= 2 and big >= 1_000_000
            lines.append(f"{'MET' if ok else ('WITHIN' if r['ratio_to_unfiltered'] <= 2 else 'MISSED')}: approximate "
                         f"at {big:,}, keeping {share:g}: {r['backend']} {r['setting']}: p50 {r['single_ms_p50']:.2f} "
                         f"ms = {r['ratio_to_unfiltered']:.2f}x unfiltered ({r['unfiltered_ms_p50']:.2f} ms) at "
                         f"recall@5 {r['recall_at_5']:.3f} (target <= 2x at >= 0.95)")
        else:
            lines.append(f"MISSED: approximate at {big:,}, keeping {share:g}: no setting reached recall@5 >= 0.95")
    return lines


def markdown_filtered(report, out_path) -> str:
    m, data = report["machine"], report["data"]
    lines = [
        "## k-NN filtered search",
        "",
        f"`{report['command']}` on {report['date'][:10]}; full numbers in `{out_path}`.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB RAM, GPU none; numpy {m['numpy']}, "
        f"faiss {m['faiss']}. Load average (1 min) at start / end: {m['loadavg_start'][0]} / "
        f"{m['loadavg_end'][0]} (other jobs shared the cores: absolute times are slower than on an idle machine; "
        f"the ratios compare queries timed interleaved). Run time {report['elapsed_s'] / 60:.1f} min.",
        "",
        f"Data: synthetic post-ReLU-like features, {data.get('rank')}-rank latent, {data.get('clusters')} clusters; "
        f"{report['queries']} held-out queries, k={report['k']}. Filters keep the share of the catalog shown, "
        f"drawn at random (uncorrelated with the clusters). p50 of one query at a time, filtered and unfiltered "
        f"interleaved (the same filters again and again, as a catalog's few common filters would be); 'new "
        f"filter': p50 of one query with a filter never seen before (7 fresh draws: IVF counts the allowed items "
        f"per cell once per filter, and keeps the counts of the last 16). recall@5 against exact search over the "
        f"allowed items (unfiltered rows: against exact unfiltered search); 'full' is the share of queries that "
        f"got all min(5, allowed) results. 'route': the allowed rows scanned exactly ('scan') or the search "
        f"inside the structure ('structure'), by the rule of `fashionrec.knn.filtered`.",
        "",
        "| n | backend | setting | keeps | allowed | route | p50 ms | x unfiltered | new filter ms | recall@5 | full |",
        "|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        keeps = "none" if r["share"] is None else f"{r['share'] * 100:g}%"
        ratio = "" if r["share"] is None else f"{r['ratio_to_unfiltered']:.2f}"
        fresh = f"{r['new_filter_ms_p50']:.2f}" if "new_filter_ms_p50" in r else ""
        lines.append(f"| {r['n']:,} | {r['backend']} | {r['setting']} | {keeps} | {r['allowed']:,} | {r['route']} | "
                     f"{r['single_ms_p50']:.2f} | {ratio} | {fresh} | {r['recall_at_5']:.3f} | {r['full_rows']:.2f} |")
    if report["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- n={s['n']:,} {s['backend']}: {s['reason']}" for s in report["skipped"]]
    lines += ["", "Targets:", ""] + [f"- {t}" for t in filtered_targets(report)]
    lines += ["", "Reading the numbers:", "",
              "- brute: a filter keeping half the catalog runs the same product (|x|^2 = inf for the rest), "
              "so it costs what an unfiltered query does; smaller sets (up to 20%) are gathered and scanned "
              "alone, which costs 3-10x a streaming read per row (more when other jobs load the machine) but "
              "reads only those rows.",
              "- faiss-ivf probes the cells nearest first until they hold half as many allowed items as the "
              "nprobe cells hold items: a filter keeping 50% probes the same cells (half the candidates: recall "
              "a little below the unfiltered recall of the same setting), a sparse one more (recall above it). "
              "Sets no larger than what an unfiltered query scores are scanned exactly.",
              "- faiss-ivfpq pays a lookup table per probed cell, so sparse filters that need many cells cost "
              "more than with faiss-ivf (the 5% rows); the exact scan takes over where it is cheaper.",
              "- Random filters are the hard case for IVF: a filter that follows the clusters (a category) "
              "finds its items in fewer cells."]
    return "\n".join(lines) + "\n"
