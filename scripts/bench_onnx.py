"""Benchmark recommend and serve on ONNX Runtime (fp32 and int8 graphs) against torch, and int8's quality.

    python scripts/bench_onnx.py --quick                      # 64 px, 2,000 items (~3 min)
    python scripts/bench_onnx.py                              # 224 px, two BN-Inceptions, 20k catalog
    python scripts/bench_onnx.py --quality-index demo/index   # int8 vs fp32 P@5 / mAP@5 on a trained index

Set-up as ``bench_recommend.py`` makes it (two freshly initialised BN-Inceptions, a catalog of
``--images`` synthetic JPEGs grown to ``--catalog`` rows), copied and exported with ``--int8``
(``fashionrec.onnx_export``, calibrated on ``--calibration-images`` catalog images).

- Cold: a new process that does what ``fashionrec recommend QUERY --index DIR -k 5`` does (imports the CLI,
  loads the index, builds the extractor with ``runtime``/``onnx_precision``, recommends, prints, exits without
  the interpreter's teardown), wall time to exit, for torch, onnx fp32 and onnx int8; and one process timing
  the onnx path phase by phase. Each child checks whether torch was imported.
- Warm: one Recommender per runtime in its own process, one image per call, p50/p95; and the forward pass alone.
- Serve: ``fashionrec.serve.serve`` per runtime as its own process, uploads from ``--concurrency`` clients.
- Quality (``--quality-index``, e.g. the demo's trained index): every catalog image re-extracted as a query with
  the fp32 and int8 graphs, searched against the index's (torch fp32) features with itself left out:
  P@5 and mAP@5 per label column and the share of queries whose top-5 set differs from fp32's.

Writes ``--out`` (JSON) and the onnx section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchlib import REPO, add_output_options, finish_report, machine_line, percentiles_ms, start_report

RUNTIMES = (("torch", "torch", "auto"), ("onnx fp32", "onnx", "fp32"), ("onnx int8", "onnx", "int8"))
TARGET_COLD_S, TARGET_WARM_MS, TARGET_SERVE_GAIN = 0.6, 25.0, 3.0

# `fashionrec recommend QUERY --index DIR -k 5` as the command runs it, with the runtime given
COLD_CHILD = r"""
import os, sys
import fashionrec.cli  # noqa: F401  (what the command imports before it does anything)
from fashionrec.catalog_index import CatalogIndex
from fashionrec.recommend import Recommender, format_results, prepare_query
index_dir, query, runtime, precision = sys.argv[1:5]
catalog = CatalogIndex.load(index_dir)
prepare_query(catalog)
rec = Recommender.from_index(catalog, device="cpu", runtime=runtime, onnx_precision=precision)
print(format_results(rec.recommend([query], k=5)))
sys.stdout.flush()
os._exit(0 if ("torch" in sys.modules) == (runtime == "torch") else 3)  # 3: torch imported by runtime onnx
"""

PHASES_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import fashionrec.cli  # noqa: F401
t1 = time.perf_counter()
from fashionrec.catalog_index import CatalogIndex
from fashionrec.data.images import decode_image
from fashionrec.recommend import Recommender
import onnxruntime  # noqa: F401
t2 = time.perf_counter()
index_dir, query, precision = sys.argv[1:4]
out = {"import_cli_s": t1 - t0, "import_library_s": t2 - t1}
t = time.perf_counter(); index = CatalogIndex.load(index_dir); out["index_load_s"] = time.perf_counter() - t
t = time.perf_counter(); rec = Recommender.from_index(index, runtime="onnx", onnx_precision=precision)
out["sessions_s"] = time.perf_counter() - t
t = time.perf_counter(); x = rec.extractor.preprocess([decode_image(query)]); out["decode_s"] = time.perf_counter() - t
t = time.perf_counter(); feats, _ = rec.extractor.extract_batch(x); out["forward_first_s"] = time.perf_counter() - t
t = time.perf_counter(); index.query(feats, 5); out["search_s"] = time.perf_counter() - t
out["torch_imported"] = "torch" in sys.modules
print(json.dumps(out))
"""

WARM_CHILD = r"""
import json, sys, time
from fashionrec.data.images import decode_image
from fashionrec.recommend import Recommender
index_dir, runtime, precision = sys.argv[1:4]
queries = sys.argv[4:]
rec = Recommender.load(index_dir, device="cpu", runtime=runtime, onnx_precision=precision)
rec.recommend(queries[:1], k=5)
single, forward = [], []
for q in queries:
    t = time.perf_counter(); rec.recommend([q], k=5); single.append(time.perf_counter() - t)
for q in queries:
    x = rec.extractor.preprocess([decode_image(q)])
    t = time.perf_counter(); rec.extractor.extract_batch(x); forward.append(time.perf_counter() - t)
# the forward passes of a batch as serve's micro-batcher makes them from 8 clients: per image, the bound on serve
x8 = rec.extractor.preprocess([decode_image(q) for q in (queries * 8)[:8]])
rec.extractor.extract_batch(x8)
batch8 = []
for _ in range(4):
    t = time.perf_counter(); rec.extractor.extract_batch(x8); batch8.append((time.perf_counter() - t) / 8)
print(json.dumps({"single": single, "forward": forward, "batch8": batch8, "runtime": rec.runtime}))
"""

SERVE_CHILD = r"""
import sys
from fashionrec.serve import serve
serve(sys.argv[1], port=int(sys.argv[2]), device="cpu", runtime=sys.argv[3], onnx_precision=sys.argv[4],
      log=lambda *_: None)
"""


def exported_index(work: Path, args) -> tuple[Path, float | None]:
    """bench_recommend's index, copied beside it and exported with --int8 (kept between runs); the export's
    seconds (None: exported by an earlier run)."""
    from bench_recommend import build_catalog_index
    from fashionrec.onnx_export import export_onnx

    made = SimpleNamespace(images=args.images, size=args.size, engine="torch", catalog=args.catalog,
                           backend="auto", device="cpu")
    source = build_catalog_index(work, made)
    out, seconds = source.with_name(source.name + "-onnx"), None
    if not (out / "index.json").is_file() or "onnx" not in json.loads((out / "index.json").read_text()):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(source, out)
        t = time.perf_counter()
        export_onnx(out, int8=True, calibration_images=args.calibration_images)
        seconds = round(time.perf_counter() - t, 1)
        print(f"exported in {seconds} s", flush=True)
    return out, seconds


def cold(index_dir: Path, query: Path, runs: int) -> dict:
    """The runtimes' new processes interleaved (torch, fp32, int8, torch, ...): a machine whose load changes
    during the run slows each alike."""
    walls: dict[str, list[float]] = {name: [] for name, *_ in RUNTIMES}
    for _ in range(runs + 1):  # the first start pulls the libraries into the file cache: not counted
        for name, runtime, precision in RUNTIMES:
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", COLD_CHILD, str(index_dir), str(query), runtime, precision],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            walls[name].append(time.perf_counter() - t)
            if done.returncode:
                raise SystemExit(f"cold {name}: exit {done.returncode} (3: torch imported) {done.stderr[-500:]}")
    out = {}
    for name, w in walls.items():
        out[name] = {"first_start_s": round(w[0], 3), "wall_s": [round(v, 3) for v in w[1:]],
                     "p50_s": round(float(np.median(w[1:])), 3)}
        print(f"cold {name}: {out[name]}", flush=True)
    for precision in ("fp32", "int8"):
        phases = json.loads(subprocess.run([sys.executable, "-c", PHASES_CHILD, str(index_dir), str(query), precision],
                                           check=True, capture_output=True, text=True).stdout)
        out[f"phases onnx {precision}"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in phases.items()}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    out["python_start_s"] = round(time.perf_counter() - t, 3)
    return out


def warm(index_dir: Path, queries: list[Path], rounds: int = 2) -> dict:
    """One process per runtime and round, the runtimes interleaved; each round asks every query once."""
    times: dict[str, dict[str, list[float]]] = {name: {"single": [], "forward": [], "batch8": []}
                                                for name, *_ in RUNTIMES}
    loaded = {}
    for _ in range(rounds):
        for name, runtime, precision in RUNTIMES:
            done = subprocess.run([sys.executable, "-c", WARM_CHILD, str(index_dir), runtime, precision,
                                   *map(str, queries)], check=True, capture_output=True, text=True)
            r = json.loads(done.stdout)
            times[name]["single"] += r["single"]
            times[name]["forward"] += r["forward"]
            times[name]["batch8"] += r["batch8"]
            loaded[name] = r["runtime"]
    out = {}
    for name, t in times.items():
        out[name] = {"single": percentiles_ms(t["single"]), "forward": percentiles_ms(t["forward"]),
                     "batch8_per_image": percentiles_ms(t["batch8"]), "runtime": loaded[name]}
        print(f"warm {name}: p50 {out[name]['single']['p50_ms']:.1f} ms, forward {out[name]['forward']['p50_ms']:.1f}",
              flush=True)
    return out


def serve_rounds(index_dir: Path, queries: list[Path], uploads: int, concurrency: int) -> dict:
    from bench_serve import free_port, multipart, run_round

    data = [q.read_bytes() for q in queries]
    out = {}
    for name, runtime, precision in RUNTIMES:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", SERVE_CHILD, str(index_dir), str(port), runtime, precision])
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while True:
                try:
                    with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                        health = json.loads(r.read())
                    break
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        raise SystemExit(f"serve {name} did not come up") from None
                    time.sleep(0.2)

            def upload(i, base=base):
                body, ctype = multipart({"k": 5}, "image", f"q{i}.jpg", data[i % len(data)])
                return urllib.request.Request(base + "/recommend", data=body, headers={"Content-Type": ctype})

            run_round("warm-up", [upload(i) for i in range(concurrency)], concurrency)
            out[name] = dict(run_round(f"{name}, {concurrency} clients", [upload(i) for i in range(uploads)],
                                       concurrency), runtime=health.get("runtime"))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return out


def quality(index_dir: Path, work: Path, calibration_images: int) -> dict:
    """int8 and fp32 graphs as query extractors over every catalog image, searched against the index's features."""
    from fashionrec.catalog_index import CatalogIndex
    from fashionrec.label_metrics import retrieval_metrics
    from fashionrec.onnx_export import export_onnx
    from fashionrec.recommend import Recommender

    copy = work / f"quality-{index_dir.parent.name}-{index_dir.name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index_dir, copy, ignore=shutil.ignore_patterns("onnx", "*.png", "retrieval.json"))
    meta = json.loads((copy / "index.json").read_text())
    meta.pop("onnx", None)
    (copy / "index.json").write_text(json.dumps(meta))
    export_onnx(copy, int8=True, calibration_images=calibration_images)
    index = CatalogIndex.load(copy)
    columns = [c for c in ("category", "texture") if c in index.items[0]]
    ids = np.arange(len(index.items))
    paths = [index.root / it["path"] for it in index.items]
    feats = {"torch fp32 (the index)": np.asarray(index.features)}
    for precision in ("fp32", "int8"):
        rec = Recommender.from_index(index, runtime="onnx", onnx_precision=precision)
        feats[f"onnx {precision}"] = np.concatenate([rec.extractor.extract_files(paths[i:i + 64])[0]
                                                     for i in range(0, len(paths), 64)])
    base = feats["torch fp32 (the index)"]
    out = {"index": str(index_dir), "items": len(ids), "columns": columns, "rows": {},
           "describe": describe_extractors(index.meta)}
    top = {}
    for name, f in feats.items():
        _, idx = index.query(f, 5, exclude=ids)
        top[name] = idx
        row = {"max_rel_diff_vs_index": float(np.abs(f - base).max() / np.abs(base).max())}
        for c in columns:
            y = np.unique([it[c] for it in index.items], return_inverse=True)[1]
            n_rel = np.bincount(y)[y] - 1
            m = retrieval_metrics(y[idx], y, ks=(5,), n_relevant=n_rel)
            row[f"P@5 {c}"], row[f"mAP@5 {c}"] = round(m["precision@5"], 4), round(m["map@5"], 4)
        row["top5_changed_vs_fp32"] = float(np.mean([set(a) != set(b) for a, b in zip(idx, top["onnx fp32"])])) \
            if "onnx fp32" in top else 0.0
        out["rows"][name] = row
        print(f"quality {name}: {row}", flush=True)
    return out


def describe_extractors(meta: dict) -> str:
    """``2 x bninception (category, texture) at 64 px``: what an index's extractors are."""
    archs = sorted({e["arch"] for e in meta["extractors"]})
    tasks = ", ".join(e["task"] for e in meta["extractors"])
    return (f"{len(meta['extractors'])} x {'/'.join(archs)} ({tasks}) at {meta['extractors'][0]['input_size']} px, "
            f"{meta['dim']}-d, backend {meta['backend_params']['backend']}")


def markdown(report: dict, out_path) -> str:
    a, c, w = report["args"], report["cold"], report["warm"]
    lines = ["## Recommend and serve on ONNX Runtime (fp32, int8) against torch", "",
             f"`{report['command']}` on {report['date'][:10]}; full numbers in `{out_path}`.", "",
             machine_line(report["machine"]) + f" torch {report['machine']['torch']}, onnxruntime "
             f"{report['machine']['onnxruntime']}; both on the CPU with their default threads.", "",
             f"Set-up: two BN-Inception extractors at {a['size']} px (freshly initialised), {report['dim']}-d, "
             f"catalog of {a['catalog']:,} items (`{report['backend']}`); graphs by `fashionrec export --int8` "
             f"({a['calibration_images']} calibration images; "
             + (f"the export took {report['export_s']} s" if report["export_s"] is not None else
                "exported by an earlier run") + "). Queries are held-out synthetic JPEGs.", "",
             "| measure | torch | onnx fp32 | onnx int8 | int8 vs torch | target |", "|---|---:|---:|---:|---:|---:|"]
    names = [n for n, *_ in RUNTIMES]
    cold_p50 = [c[n]["p50_s"] for n in names]
    lines.append(f"| cold `recommend`, new process, p50 of {len(c['torch']['wall_s'])} (s) | "
                 + " | ".join(f"{v:.2f}" for v in cold_p50) + f" | {cold_p50[0] / cold_p50[2]:.1f}x faster "
                 f"| <= {TARGET_COLD_S} s |")
    warm_p50 = [w[n]["single"]["p50_ms"] for n in names]
    lines.append("| warm, one image per call, p50 (ms) | " + " | ".join(f"{v:.1f}" for v in warm_p50)
                 + f" | {warm_p50[0] / warm_p50[2]:.1f}x faster | <= {TARGET_WARM_MS:.0f} ms (int8) |")
    fwd = [w[n]["forward"]["p50_ms"] for n in names]
    lines.append("| warm, the two forward passes alone, p50 (ms) | " + " | ".join(f"{v:.1f}" for v in fwd)
                 + f" | {fwd[0] / fwd[2]:.1f}x faster | |")
    b8 = [w[n]["batch8_per_image"]["p50_ms"] for n in names]
    lines.append("| the two forward passes of a batch of 8, per image, p50 (ms) | " + " | ".join(f"{v:.1f}" for v in b8)
                 + f" | {b8[0] / b8[2]:.1f}x faster | |")
    if report.get("serve"):
        s = report["serve"]
        rps = [s[n]["requests_per_s"] for n in names]
        lines.append(f"| serve, uploads from {a['concurrency']} clients (req/s) | "
                     + " | ".join(f"{v:.1f}" for v in rps)
                     + f" | {rps[2] / rps[0]:.1f}x | >= {TARGET_SERVE_GAIN:.0f}x torch |")
    for precision in ("fp32", "int8"):
        ph = c[f"phases onnx {precision}"]
        lines += ["", f"Where a cold onnx {precision} start goes (one new process; Python itself "
                  f"{c['python_start_s']:.2f} s; torch imported: {ph['torch_imported']}):", "",
                  "| import CLI | import library + onnxruntime | load index | graphs: sha256 + sessions | decode | "
                  "first forward | search |", "|---:|---:|---:|---:|---:|---:|---:|",
                  "| " + " | ".join(f"{ph[k]:.3f}" for k in ("import_cli_s", "import_library_s", "index_load_s",
                                                              "sessions_s", "decode_s", "forward_first_s",
                                                              "search_s")) + " |"]
    for q in report["quality"]:
        cols = [f"{m} {c}" for c in q["columns"] for m in ("P@5", "mAP@5")]
        lines += ["", f"Quality on `{q['index']}` ({q['items']:,} items; {q.get('describe', '')}): every catalog "
                  "image re-extracted as a query by each graph, searched against the index's torch fp32 features, "
                  "itself left out:", "",
                  "| queries by | " + " | ".join(cols) + " | max rel. diff of features vs the index | top-5 set "
                  "changed vs fp32 |", "|---|" + "---:|" * (len(cols) + 2)]
        for name, row in q["rows"].items():
            lines.append(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in cols)
                         + f" | {row['max_rel_diff_vs_index']:.1e} | {row['top5_changed_vs_fp32']:.1%} |")
    lines += [""] + [f"- {t}" for t in report["verdict"]]
    return "\n".join(lines)


def verdict(report) -> list[str]:
    c, w = report["cold"], report["warm"]
    out = []
    load = max(report["machine"].get("loadavg_start", 0), report["machine"].get("loadavg_end", 0))
    idle = REPO / "benchmarks" / "bench_recommend.json"  # the recommend section's torch numbers, for scale
    r = json.loads(idle.read_text()) if idle.is_file() else {}
    same = all(r.get("args", {}).get(k) == report["args"][k] for k in ("size", "catalog", "images"))
    if load > 1 and same:
        out.append(f"The cores were shared (load average up to {load:.1f} on {report['machine']['cores']} cores). The "
                   f"recommend section measured torch on the same set-up with the load at "
                   f"{r['machine'].get('loadavg_start', '?')}: cold p50 {r['cold']['p50_s']:.2f} s, warm p50 "
                   f"{r['warm']['single']['p50_ms']:.0f} ms, against {c['torch']['p50_s']:.2f} s and "
                   f"{w['torch']['single']['p50_ms']:.0f} ms here: the load slows the torch column most, so the "
                   f"ratios here overstate the graphs' lead.")
    cold_int8, warm_int8 = c["onnx int8"]["p50_s"], w["onnx int8"]["single"]["p50_ms"]
    out.append(f"cold int8 p50 {cold_int8:.2f} s vs target {TARGET_COLD_S} s: "
               + ("met" if cold_int8 <= TARGET_COLD_S else f"missed by {cold_int8 / TARGET_COLD_S:.2f}x")
               + f"; torch {c['torch']['p50_s']:.2f} s. No onnx start imported torch (each child checks).")
    out.append(f"warm int8 p50 {warm_int8:.1f} ms vs target {TARGET_WARM_MS:.0f} ms: "
               + ("met" if warm_int8 <= TARGET_WARM_MS else f"missed by {warm_int8 / TARGET_WARM_MS:.2f}x")
               + f"; fp32 graphs {w['onnx fp32']['single']['p50_ms']:.1f} ms, torch "
               f"{w['torch']['single']['p50_ms']:.1f} ms.")
    if report.get("serve"):
        s = report["serve"]
        gain = s["onnx int8"]["requests_per_s"] / s["torch"]["requests_per_s"]
        bound = w["torch"]["batch8_per_image"]["p50_ms"] / w["onnx int8"]["batch8_per_image"]["p50_ms"]
        out.append(f"serve int8 at {gain:.1f}x torch's requests/s vs target {TARGET_SERVE_GAIN:.0f}x: "
                   + ("met" if gain >= TARGET_SERVE_GAIN else "missed")
                   + f". The bound: 8 clients' uploads are batched, and int8's forward passes of a batch of 8 run "
                   f"{bound:.2f}x as fast as torch's per image, so serve can gain at most about that much; it "
                   f"reaches {gain / bound:.0%} of it.")
    for q in report["quality"]:
        fp, i8 = q["rows"]["onnx fp32"], q["rows"]["onnx int8"]
        gaps = {k: round(i8[k] - fp[k], 4) for k in fp if k.startswith(("P@5", "mAP@5"))}
        worst = max(abs(v) for v in gaps.values())
        out.append(f"`{q['index']}`: int8 minus fp32 {gaps}; the largest gap {worst:.3f} "
                   + ("is within" if worst <= 0.005 else "is outside") + " the 0.005 band; "
                   f"{i8['top5_changed_vs_fp32']:.1%} of the queries' top-5 sets changed.")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64 px, 2,000 items, fewer repeats (~3 min)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--catalog", type=int, default=20000)
    p.add_argument("--images", type=int, default=180, help="real JPEGs extracted into the index")
    p.add_argument("--queries", type=int, default=40)
    p.add_argument("--cold-runs", type=int, default=5)
    p.add_argument("--calibration-images", type=int, default=64)
    p.add_argument("--uploads", type=int, default=96, help="serve: uploads per runtime (0: no serve round)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--quality-index", type=Path, nargs="*", default=[REPO / "demo" / "index"],
                   help="trained indexes for int8's P@5 / mAP@5, e.g. the demo's index and index-pretrained "
                        "(those absent are skipped)")
    add_output_options(p, "onnx")
    args = p.parse_args(argv)
    args.quality_index = [str(q) for q in args.quality_index]  # as the report records them
    if args.quick:
        args.size, args.catalog, args.images, args.queries, args.cold_runs = 64, 2000, 90, 16, 3
        args.uploads, args.calibration_images = min(args.uploads, 48), 32
    return args


def main(argv=None):
    args = parse_args(argv)
    report = start_report("bench_onnx.py", args, argv, "torch", "onnxruntime", "onnx", "faiss-cpu")
    from bench_recommend import query_images

    index_dir, report["export_s"] = exported_index(args.work, args)
    meta = json.loads((index_dir / "index.json").read_text())
    report["dim"], report["backend"] = meta["dim"], meta["backend_params"]["backend"]
    queries = query_images(args.work, args.queries, args.size)
    report["cold"] = cold(index_dir, queries[0], args.cold_runs)
    report["warm"] = warm(index_dir, queries)
    if args.uploads:
        report["serve"] = serve_rounds(index_dir, queries, args.uploads, args.concurrency)
    report["quality"] = [quality(Path(q), args.work, args.calibration_images) for q in args.quality_index
                         if (Path(q) / "index.json").is_file()]
    report["verdict"] = verdict(report)
    print("\n".join(report["verdict"]))
    finish_report(report, args, "onnx", markdown)
    return report


if __name__ == "__main__":
    main()
