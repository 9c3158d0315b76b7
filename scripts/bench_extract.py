"""Benchmark feature extraction: `fashionrec index` on JPEG files against the bare forward pass.

    python scripts/bench_extract.py --quick     # ~2 minutes
    python scripts/bench_extract.py             # 224 px, torch fp32 and bf16, mxnet (< 10 min on 2 cores)

Per engine, with the two BN-Inception extractors an index uses (category + texture, freshly
initialised: speed does not depend on what the weights learned):

- **forward**: ``FeatureExtractor.extract_batch`` on ready uint8 batches (each network
  normalises on its device): the networks alone, the upper bound for the pipeline;
- **pipeline**: ``FeatureExtractor.extract_catalog`` on the JPEG files, the code path of
  ``fashionrec index``: read, decode, resize (in loader workers), normalise and forward,
  for 0, 1 and 2 loader workers.

``torch-bf16`` is the torch engine with ``precision: bf16`` (inference in bfloat16).

The ratio pipeline / forward says whether the loader starves the network (target >= 0.9). Both
are measured in the same run, back to back, alternating, best of ``--repeats``.

Writes ``--out`` (JSON) and the extraction section of ``benchmarks/RESULTS.md``.

    python scripts/bench_extract.py --photo-size 3000x4000   # ~1 minute, no networks

measures instead what large photos cost the loader per image: decode + resize of ``--photos``
12-megapixel JPEGs to each of ``--targets`` px, full-size decoding against the JPEG decoder's
reduced-size decoding (``decode_image(..., target_size=)``), alternating on each photo in the
same run, with the mean absolute difference of the two results. It writes
``bench_extract_photos.json`` and the ``extract-photos`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchlib import (
    add_output_options,
    comma_list,
    extractor_runs,
    finish_report,
    machine_line,
    start_report,
    synthetic_catalog,
)

TARGET_RATIO = 0.9
PHOTOS_SECTION = "extract-photos"
ENGINES = ("torch", "mxnet", "torch-bf16")  # torch-bf16: `precision: bf16` in the index config


def catalog_paths(work: Path, n: int, size: int) -> tuple[Path, list[str]]:
    csv_path = synthetic_catalog(work / f"catalog-{size}px-{n}", n=n, size=size)
    lines = csv_path.read_text(encoding="utf-8").splitlines()[1:]
    return csv_path.parent, [line.split(",")[0] for line in lines][:n]


def photo_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A JPEG with a phone photo's kinds of detail (the same kind tests/test_images.py checks the
    quality on): smooth shading, fine stripes, sensor grain, hard edges, thin lines. Flat noise
    would be the wrong test: it costs the entropy decoder the most and has no structure to keep."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)[:, None]
    grain = np.asarray(Image.effect_noise((width, height), 12), np.float32) - 128
    phase = float(rng.uniform(0, 6.28))
    r = 128 + 60 * np.sin(x / 37.0 + phase) * np.cos(y / 53.0) + grain
    g = 110 + 80 * np.cos(x / 400.0) + 30 * np.sin(y / 9.0 + phase) + grain
    b = 130 + 70 * np.sin((x + y) / 80.0) + 0 * y
    img = Image.fromarray(np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    side = max(8, min(width, height) // 8)
    for _ in range(60):
        x0, y0 = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        x1, y1 = x0 + int(rng.integers(side // 10, side)), y0 + int(rng.integers(side // 10, side))
        draw.ellipse([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw.line([x0, y1, x1, y0], fill=(0, 0, 0), width=int(rng.integers(1, 6)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def photo_paths(work: Path, n: int, width: int, height: int) -> list[Path]:
    """``n`` photos, drawn once into ``work`` and kept."""
    from fashionrec.artifacts import write_bytes

    folder = work / f"photos-{width}x{height}"
    paths = [folder / f"{i:03d}.jpg" for i in range(n)]
    for i, path in enumerate(paths):
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            write_bytes(path, photo_jpeg(width, height, seed=i))
    return paths


def bench_photos(paths: list[Path], targets: list[int], repeats: int) -> dict:
    """Per target size: ms per photo for decode + resize, full-size decoding against reduced-size
    decoding, alternating on each photo (best of ``repeats`` per photo, then the median over
    photos), and the mean absolute difference of the two results (0-255)."""
    import numpy as np

    from fashionrec.data.images import decode_image, resize

    out = {}
    for size in targets:
        best = {"full": [float("inf")] * len(paths), "draft": [float("inf")] * len(paths)}
        mad = []
        for r in range(repeats):
            for i, path in enumerate(paths):
                order = ("full", "draft") if (i + r) % 2 == 0 else ("draft", "full")  # neither always goes first
                result = {}
                for way in order:
                    t = time.perf_counter()
                    img = decode_image(path, target_size=size if way == "draft" else None)
                    result[way] = np.asarray(resize(img, size), np.float32)
                    best[way][i] = min(best[way][i], time.perf_counter() - t)
                if r == 0:
                    mad.append(float(np.abs(result["full"] - result["draft"]).mean()))
        full_ms, draft_ms = (float(np.median(best[w])) * 1e3 for w in ("full", "draft"))
        drafted = decode_image(paths[0], target_size=size).size
        out[str(size)] = {"full_ms_per_img": round(full_ms, 1), "draft_ms_per_img": round(draft_ms, 1),
                          "speedup": round(full_ms / draft_ms, 2), "decoded_size": list(drafted),
                          "mad_mean": round(float(np.mean(mad)), 3), "mad_max": round(float(np.max(mad)), 3)}
        print(f"{size} px: full decode + resize {full_ms:.1f} ms, reduced-size decode + resize {draft_ms:.1f} ms "
              f"({full_ms / draft_ms:.2f}x; decoded at {drafted[0]}x{drafted[1]}), "
              f"mean abs difference {np.mean(mad):.2f}", flush=True)
    return out


def photos_markdown(report: dict, out_path) -> str:
    a = report["args"]
    lines = ["## Decoding large photos", "",
             f"`{report['command']}` on {report['date'][:10]}; full numbers in `{out_path}`.", "",
             machine_line(report["machine"]) + f" Pillow {report['machine']['pillow']}.", "",
             f"The loader's work per image before the networks: `decode_image` + `resize` of {a['photos']} "
             f"synthetic {a['photo_size']} JPEGs (quality 90; shading, stripes, grain, edges) to the input size, "
             "with full-size decoding ('before') and with the JPEG decoder's reduced-size decoding "
             "(`decode_image(..., target_size=)`, 'after': 1/2, 1/4 or 1/8 scale, never under twice the "
             f"target), alternating on each photo in one run; best of {a['repeats']} per photo, median over "
             "photos. 'Difference' is the mean absolute difference of the two resized images (0-255).", "",
             "| input px | before: full decode ms/img | after: reduced decode ms/img | speedup | decoded at | "
             "difference mean / max |",
             "|---:|---:|---:|---:|---|---:|"]
    for size, r in report["photos"].items():
        lines.append(f"| {size} | {r['full_ms_per_img']:.1f} | {r['draft_ms_per_img']:.1f} | {r['speedup']:.2f}x | "
                     f"{r['decoded_size'][0]}x{r['decoded_size'][1]} | {r['mad_mean']:.2f} / {r['mad_max']:.2f} |")
    lines += ["", f"The photos average {report['photo_mb_mean']:.1f} MB, as a 12-megapixel phone photo does. At any "
              "scale the decoder still reads every coefficient of the file (only the inverse transform shrinks), "
              "so the gain is smallest for large, grainy files like these."]
    return "\n".join(lines)


def photo_size(text: str) -> tuple[int, int]:
    """``"3000x4000"`` -> (3000, 4000)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 3000x4000; got {text!r}") from None
    if min(w, h) < 64:
        raise argparse.ArgumentTypeError(f"photos must be at least 64 px on a side; got {text!r}")
    return w, h


def bench_engine(engine: str, work: Path, root: Path, paths: list[str], args) -> dict:
    from fashionrec.data.images import decode_image
    from fashionrec.features import FeatureExtractor

    base_engine, _, precision = engine.partition("-")  # "torch-bf16": the torch engine extracting in bfloat16
    extractor = FeatureExtractor(extractor_runs(work, base_engine, args.size), device=args.device,
                                 precision=precision or "fp32")
    batch = args.batch_size
    ready = extractor.preprocess([decode_image(root / p) for p in paths[:batch]])
    for _ in range(2):  # warm-up: kernels, folded copies, hybridized graphs
        extractor.extract_batch(ready)

    def forward_rate() -> float:
        n_batches = -(-len(paths) // batch)
        t = time.perf_counter()
        for _ in range(n_batches):
            extractor.extract_batch(ready)
        return n_batches * batch / (time.perf_counter() - t)

    def pipeline_rate(workers: int, decode: str = "host") -> float:
        t = time.perf_counter()
        feats, _, rows, bad = extractor.extract_catalog(root, paths, batch_size=batch, workers=workers,
                                                        progress=False, decode=decode)
        assert not bad and len(rows) == len(paths)
        return len(paths) / (time.perf_counter() - t)

    out = {"forward_img_s": 0.0, "pipeline_img_s": {str(w): 0.0 for w in args.workers}}
    for r in range(args.repeats):  # alternate, so a busy moment hurts both alike
        out["forward_img_s"] = max(out["forward_img_s"], forward_rate())
        for w in args.workers:
            out["pipeline_img_s"][str(w)] = max(out["pipeline_img_s"][str(w)], pipeline_rate(w))
        if args.decode_device:  # nvJPEG on the GPU: the main process only reads the files
            out["device_decode_img_s"] = max(out.get("device_decode_img_s", 0.0), pipeline_rate(0, "device"))
        print(f"{engine} repeat {r + 1}: forward {out['forward_img_s']:.1f} img/s, pipeline "
              + ", ".join(f"{w} workers {v:.1f}" for w, v in out["pipeline_img_s"].items()), flush=True)
    best_w = max(out["pipeline_img_s"], key=out["pipeline_img_s"].get)
    out.update(best_workers=int(best_w), ratio=round(out["pipeline_img_s"][best_w] / out["forward_img_s"], 3))
    # what the loader costs per image, measured alone: decode + resize
    t = time.perf_counter()
    for p in paths[:64]:
        extractor.preprocess([decode_image(root / p)])
    out["decode_resize_ms_per_img"] = round((time.perf_counter() - t) / min(64, len(paths)) * 1e3, 2)
    return out


def markdown(report: dict, out_path) -> str:
    a = report["args"]
    lines = ["## Feature extraction", "",
             f"`{report['command']}` on {report['date'][:10]}; full numbers in `{out_path}`.", "",
             machine_line(report["machine"])
             + f" torch {report['machine']['torch']}, mxnet {report['machine']['mxnet']}; "
             f"device {a.get('device', 'cpu')}.",
             "",
             f"Two BN-Inception extractors (category + texture, 2048-d together) at {a['size']} px on "
             f"{a['images']} synthetic JPEGs, batch {a['batch_size']}. "
             "'forward' is the networks on ready uint8 batches; "
             f"'index pipeline' is `FeatureExtractor.extract_catalog` (what `fashionrec index` runs) on the files, "
             f"best over {', '.join(str(w) for w in a['workers'])} loader workers. Images/s count images through "
             f"both networks. Best of {a['repeats']} alternating repeats.", "",
             "| engine | forward img/s | index pipeline img/s (workers) | ratio | target | decode+resize ms/img |",
             "|---|---:|---:|---:|---:|---:|"]
    for engine, r in report["engines"].items():
        best = r["pipeline_img_s"][str(r["best_workers"])]
        lines.append(f"| {engine} | {r['forward_img_s']:.1f} | {best:.1f} ({r['best_workers']}) | {r['ratio']:.2f} | "
                     f"≥ {TARGET_RATIO} | {r['decode_resize_ms_per_img']:.1f} |")
    lines += ["", "Pipeline img/s by loader workers:", "", "| engine | " + " | ".join(
        f"{w} workers" for w in a["workers"]) + " |", "|---|" + "---:|" * len(a["workers"])]
    for engine, r in report["engines"].items():
        lines.append(f"| {engine} | " + " | ".join(f"{r['pipeline_img_s'][str(w)]:.1f}" for w in a["workers"]) + " |")
    decoded = {e: r["device_decode_img_s"] for e, r in report["engines"].items() if "device_decode_img_s" in r}
    if decoded:
        lines += ["", "With `decode: device` (nvJPEG on the GPU, the resize there; no loader workers):", "",
                  "| engine | index pipeline img/s | / bare forward |", "|---|---:|---:|"]
        lines += [f"| {e} | {v:.1f} | {v / report['engines'][e]['forward_img_s']:.2f} |" for e, v in decoded.items()]
    lines += [""] + [f"- {v}" for v in report["verdict"]]
    return "\n".join(lines)


def verdict(report) -> list[str]:
    out = []
    for engine, r in report["engines"].items():
        met = r["ratio"] >= TARGET_RATIO
        out.append(f"{engine}: the index pipeline runs at {r['ratio']:.2f} of the bare forward pass "
                   + ("(target met)" if met else f"(target {TARGET_RATIO} missed by {TARGET_RATIO - r['ratio']:.2f})")
                   + f"; decoding and resizing cost {r['decode_resize_ms_per_img']:.1f} ms per image against "
                   f"{1e3 / r['forward_img_s']:.0f} ms of network time.")
    fp32, bf16 = report["engines"].get("torch"), report["engines"].get("torch-bf16")
    if fp32 and bf16:
        best = lambda r: r["pipeline_img_s"][str(r["best_workers"])]  # noqa: E731
        out.append(f"torch with `precision: bf16` indexes {best(bf16) / best(fp32):.2f}x as fast as fp32 "
                   f"(forward {bf16['forward_img_s'] / fp32['forward_img_s']:.2f}x); its features differ from fp32 "
                   "in the third significant digit (tests/test_index.py).")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="128 px, 96 images, torch fp32 and bf16 (~2 min)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=320, help="JPEGs to extract per measurement")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--engines", type=comma_list(choices=ENGINES), default="torch,torch-bf16,mxnet",
                   help="comma-separated: torch, torch-bf16, mxnet")
    p.add_argument("--workers", type=comma_list(int), default="0,1,2", help="loader workers to try (comma-separated)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--photo-size", type=photo_size, default=None, metavar="WxH",
                   help="instead: decode + resize of large JPEGs of this size, full against reduced-size decoding")
    p.add_argument("--photos", type=int, default=8, help="with --photo-size: how many photos")
    p.add_argument("--targets", type=comma_list(int), default="96,224",
                   help="with --photo-size: input sizes to resize to (comma-separated)")
    p.add_argument("--decode-device", action="store_true",
                   help="also the pipeline with decode: device (nvJPEG through torchvision; CUDA only)")
    add_output_options(p, "extract")
    args = p.parse_args(argv)
    if args.decode_device and args.device != "cuda":
        p.error("--decode-device needs --device cuda")
    if args.photo_size and args.out == p.get_default("out"):
        args.out = args.out.with_name("bench_extract_photos.json")  # the extraction numbers stay
    if args.photo_size and args.section == p.get_default("section"):
        args.section = PHOTOS_SECTION
    if args.quick:
        args.size, args.images, args.engines = 128, 96, ["torch", "torch-bf16"]
    if args.images < args.batch_size or args.images < 45:
        p.error("--images must be at least --batch-size and at least 45")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.photo_size:
        report = start_report("bench_extract.py", args, argv, "pillow")
        report["args"]["photo_size"] = "x".join(map(str, args.photo_size))
        photos = photo_paths(args.work, args.photos, *args.photo_size)
        report["photo_mb_mean"] = round(sum(p.stat().st_size for p in photos) / len(photos) / 1e6, 2)
        report["photos"] = bench_photos(photos, args.targets, args.repeats)
        finish_report(report, args, args.section, photos_markdown)
        return report
    report = start_report("bench_extract.py", args, argv, "torch", "mxnet")
    root, paths = catalog_paths(args.work, args.images, args.size)
    report["engines"] = {e: bench_engine(e, args.work, root, paths, args) for e in args.engines}
    report["verdict"] = verdict(report)
    print("\n".join(report["verdict"]))
    finish_report(report, args, "extract", markdown)
    return report


if __name__ == "__main__":
    main()
