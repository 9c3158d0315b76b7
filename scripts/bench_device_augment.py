"""Benchmark augmentation on the device (engines/torch/device_augment.py) against the loader's, on the host.

    python scripts/bench_device_augment.py --quick          # ~15 s
    python scripts/bench_device_augment.py                  # 224 px, batch 64, one core each (~30 s)
    python scripts/bench_device_augment.py --device cuda --batch-size 64,256 --section device-augment-cuda

On ``--images`` synthetic garments (``fashionrec.data.synth.draw_garment``) at ``--size`` px, already resized (as
the loader's un-augmented batches and the decoded cache hold them), for two recipes: the paper's fine-tune
augmentation (``AugmentConfig()``) and the small-data one (``configs/small-data/pretrain-scratch.yaml``: a random
resized crop of 0.35-1 of the area, then the paper's, rotation 8, horizontal flips):

- **agreement**: the device path's batch against the host path's (``Augmenter.apply`` per image), in 0-255 units:
  max and mean absolute difference and the share of identical values, on CPU tensors and on ``--device``, with
  each sampler (``pil``, ``grid_sample``); also the crop fused into the warp's one pass (``fuse_crop``) and, for
  the paper's warp alone, ``grid_sample``'s bilinear (truncated and rounded) and bicubic (rounded);
- **speed**: images/s of the host path as the loader's workers run it (``workers`` 0: per image
  ``Image.fromarray``, the augmenter with ``default_rng([seed, epoch, row])``, ``np.asarray`` into the batch)
  against the device path (``augment_params`` on the host + ``augment_batch`` on ``--device``, synchronised, with
  each sampler; on CUDA with batches over 64 also in one chunk),
  best of ``--repeats`` alternating runs of ``--batches`` batches; the parameter draws alone are timed too
  (host CPU the trainer spends per batch). On CUDA the uint8 batch is on the GPU already (its copy is the
  loader's business).

Writes ``--out`` (JSON) and the device-augment section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchlib import REPO, add_output_options, comma_list, finish_report, machine_line, start_report

RECIPES = {
    "paper": {},
    "small-data": dict(crop_scale=(0.35, 1.0), crop_ratio=(0.75, 1.3333), flip="horizontal", rotation=8.0),
}


def garments(n: int, size: int) -> np.ndarray:
    from fashionrec.data.synth.garments import CATEGORIES, TEXTURES, draw_garment

    return np.stack([np.asarray(draw_garment(CATEGORIES[i % len(CATEGORIES)], TEXTURES[i % len(TEXTURES)], size,
                                             np.random.default_rng(i))) for i in range(n)])


def host_batch(images: np.ndarray, augmenter, seed: int, epoch: int, rows) -> np.ndarray:
    """What the loader's worker does with each cached image of a batch (``loader._load_batch``)."""
    from PIL import Image

    out = np.empty_like(images)
    for i, row in enumerate(rows):
        img = augmenter(Image.fromarray(images[i]), np.random.default_rng([seed, epoch, row]))
        out[i] = np.asarray(img, dtype=np.uint8)
    return out


def difference(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max": int(d.max()), "mean": round(float(d.mean()), 4), "identical": round(float((d == 0).mean()), 6)}


def grid_sample_warp(x, params, mode: str, rounding: str):
    """The paper's warp alone (no flip, no colour) through ``affine_grid``/``grid_sample`` (edge repeated)."""
    import torch
    import torch.nn.functional as F

    from fashionrec.engines.torch.device_augment import warp_coefficients

    n, h, w, _ = x.shape
    theta = np.zeros((n, 2, 3))
    for i in range(n):
        (a0, a1, a2, a3, a4, a5), px, py = warp_coefficients(w, h, params.angle[i], params.shear[i], params.aspect[i])
        # output position p (pixel units) -> input q = A p + t (unpadded), both as [-1, 1] (align_corners=False)
        theta[i] = [[a0, a1 * h / w, a0 + a1 * h / w + 2 * (a2 - px) / w - 1],
                    [a3 * w / h, a4, a3 * w / h + a4 + 2 * (a5 - py) / h - 1]]
    theta = torch.from_numpy(theta).float().to(x.device)
    grid = F.affine_grid(theta, (n, 3, h, w), align_corners=False)
    out = F.grid_sample(x.permute(0, 3, 1, 2).float(), grid, mode=mode, padding_mode="border", align_corners=False)
    out = torch.floor(out) if rounding == "truncated" else torch.round(out)
    return out.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def agreement(images: np.ndarray, args) -> dict:
    import torch
    from PIL import Image

    from fashionrec.config import AugmentConfig
    from fashionrec.data.augment import Augmenter
    from fashionrec.engines.torch.device_augment import SAMPLERS, AugmentParams, augment_batch, augment_params

    rows = np.arange(len(images))
    devices = ["cpu"] + ([args.device] if args.device != "cpu" else [])
    out = {}
    for name, recipe in RECIPES.items():
        cfg = AugmentConfig(**recipe)
        params = augment_params(cfg, 0, 1, rows)
        host = host_batch(images, Augmenter(cfg), 0, 1, rows)
        r = {}
        for dev in devices:
            x = torch.from_numpy(images).to(dev)
            for sampler in SAMPLERS:
                r[f"{dev}, {sampler}"] = difference(augment_batch(x, params, sampler=sampler).cpu().numpy(), host)
        if name == "small-data":
            fused = augment_batch(torch.from_numpy(images), params, fuse_crop=True).numpy()
            r["cpu, pil, crop fused into the warp"] = difference(fused, host)
        if name == "paper":  # the warp alone: PIL's sampler against grid_sample's interpolations and roundings
            warp_only = AugmentParams(params.angle, params.shear, params.aspect, np.zeros((len(rows), 3)),
                                      np.zeros(len(rows), np.int8), params.crop)
            want = np.stack([np.asarray(Augmenter(cfg).apply(Image.fromarray(img), p))
                             for img, p in zip(images, warp_only.to_dicts())])
            x = torch.from_numpy(images)
            r["warp alone: pil"] = difference(augment_batch(x, warp_only).numpy(), want)
            for mode, rounding in (("bilinear", "truncated"), ("bilinear", "rounded"), ("bicubic", "rounded")):
                got = grid_sample_warp(x, warp_only, mode, rounding)
                r[f"warp alone: grid_sample {mode}, {rounding}"] = difference(got, want)
        print(name, r, flush=True)
        out[name] = r
    return out


def speed(images: np.ndarray, args, batch_size: int) -> dict:
    import torch

    from fashionrec.config import AugmentConfig
    from fashionrec.data.augment import Augmenter
    from fashionrec.engines.torch.device_augment import SAMPLERS, augment_batch, augment_params

    reps = -(-batch_size // len(images))
    batch = np.concatenate([images] * reps)[:batch_size]
    x = torch.from_numpy(batch).to(args.device)
    cuda = args.device == "cuda"
    variants = {sampler: {"sampler": sampler} for sampler in SAMPLERS}
    if cuda and batch_size > 64:  # also in one chunk (a GPU's default is 64 images at a time)
        variants.update({f"{sampler}, one chunk": {"sampler": sampler, "chunk": batch_size} for sampler in SAMPLERS})

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def rows(b):
        return range(b * batch_size, (b + 1) * batch_size)

    out = {}
    for name, recipe in RECIPES.items():
        cfg = AugmentConfig(**recipe)
        aug = Augmenter(cfg)
        runs = {"host": [], "params_ms": [], **{v: [] for v in variants}}
        for kw in variants.values():  # warm-up (on CUDA, the kernels' first use)
            augment_batch(x, augment_params(cfg, 0, 0, rows(0)), **kw)
        sync()
        for _ in range(args.repeats):
            start = time.perf_counter()
            for b in range(args.batches):
                host_batch(batch, aug, 0, 1, rows(b))
            runs["host"].append(args.batches * batch_size / (time.perf_counter() - start))
            for variant, kw in variants.items():
                start, drawing = time.perf_counter(), 0.0
                for b in range(args.batches):
                    t = time.perf_counter()
                    params = augment_params(cfg, 0, 1, rows(b))
                    drawing += time.perf_counter() - t
                    augment_batch(x, params, **kw)
                sync()
                runs[variant].append(args.batches * batch_size / (time.perf_counter() - start))
                runs["params_ms"].append(drawing / args.batches * 1e3)
        r = {"recipe": name, "batch_size": batch_size, "host_img_s": round(max(runs["host"]), 1),
             "device_img_s": {v: round(max(runs[v]), 1) for v in variants},
             "params_ms_per_batch": round(min(runs["params_ms"]), 2),
             "runs": {k: [round(v, 2) for v in vs] for k, vs in runs.items()}}
        if cuda:
            r["max_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        print(r, flush=True)
        out[name] = r
    return out


def markdown(report: dict, out_path) -> str:
    a, dev = report["args"], report["args"]["device"]
    lines = ["## Augmentation on the device against the loader's on the host", "",
             f"`{report['command']}` on {report['date'][:10]}; full numbers in `{out_path}`.", "",
             machine_line(report["machine"]) + f" torch {report['machine']['torch']}, "
             f"Pillow {report['machine']['pillow']}, {report['threads']} torch thread(s).", "",
             f"{a['images']} synthetic garments at {a['size']} px. Recipes: the paper's fine-tune augmentation "
             "(`AugmentConfig()`), and the small-data one (a random resized crop of 0.35-1 of the area, then the "
             "paper's with rotation 8 and horizontal flips). Agreement: `augment_batch` (device, sampler) against "
             "the host path (`Augmenter.apply` per image), in 0-255 units.", "",
             "| recipe | compared | max | mean | identical |", "|---|---|---:|---:|---:|"]
    for name, r in report["agreement"].items():
        for what, d in r.items():
            lines.append(f"| {name} | {what} | {d['max']} | {d['mean']:.4f} | {d['identical']:.4%} |")
    variants = list(report["speed"][0]["device_img_s"])
    lines += ["", f"Speed: the host path as a loader worker runs it (one core, `workers` 0) against "
              f"`augment_params` + `augment_batch` on {dev} (synchronised), per sampler; best of {a['repeats']} "
              f"runs of {a['batches']} batches. 'draws': the host's time in `augment_params` a batch.", "",
              "| recipe | batch | host img/s | " + " | ".join(f"{dev} {v} img/s" for v in variants)
              + " | draws ms/batch |", "|---|---:|---:|" + "---:|" * len(variants) + "---:|"]
    for r in report["speed"]:
        cells = " | ".join(f"{r['device_img_s'].get(v, float('nan')):,.0f}" for v in variants)
        lines.append(f"| {r['recipe']} | {r['batch_size']} | {r['host_img_s']:,.0f} | {cells} | "
                     f"{r['params_ms_per_batch']:.1f} |")
    lines += [""] + [f"- {v}" for v in report["verdict"]]
    return "\n".join(lines)


def verdict(report: dict) -> list[str]:
    out = []
    for name, r in report["agreement"].items():
        exact = [k for k in r if k.endswith(", pil") and r[k]["max"] == 0]
        wrong = [k for k in r if k.endswith(", pil") and r[k]["max"] != 0]
        if exact and not wrong:
            out.append(f"{name}: the pil sampler gives the host path's bytes ({'; '.join(exact)}).")
        if wrong:
            out.append(f"{name}: **the pil sampler differs from the host path** on {'; '.join(wrong)}.")
        for k in (k for k in r if k.endswith(", grid_sample")):
            out.append(f"{name}, {k}: max {r[k]['max']}, {1 - r[k]['identical']:.3%} of the values differ.")
    dev = report["args"]["device"]
    for r in report["speed"]:
        best = max(r["device_img_s"], key=r["device_img_s"].get)
        out.append(f"{r['recipe']}, batch {r['batch_size']}: on {dev} {r['device_img_s']['pil']:,.0f} img/s with the "
                   f"pil sampler, {r['device_img_s']['grid_sample']:,.0f} with grid_sample (best: {best}), against "
                   f"{r['host_img_s']:,.0f} on one host core; drawing the parameters costs the host "
                   f"{r['params_ms_per_batch']:.1f} ms a batch ({r['params_ms_per_batch'] / r['batch_size'] * 1e3:.0f} "
                   "us an image).")
    if dev == "cpu":
        ratios = [max(r["device_img_s"].values()) / r["host_img_s"] for r in report["speed"]]
        out.append(f"On a CPU ({report['threads']} torch thread(s) against PIL's one core) the faster sampler runs at "
                   f"{min(ratios):.2f}-{max(ratios):.2f}x the host path's rate: the device path is there for the GPU, "
                   "where the host then only decodes (or reads the cache) and copies uint8.")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="16 images, 2 batches, 2 repeats")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=64, help="distinct garments (a batch repeats them)")
    p.add_argument("--batch-size", type=comma_list(int), default="64")
    p.add_argument("--batches", type=int, default=4, help="timed batches a run")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs; the best counts")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 1 on a CPU, one core like PIL's; torch's default with CUDA)")
    add_output_options(p, "device-augment")
    p.set_defaults(out=REPO / "benchmarks" / "bench_device_augment.json")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.batches, args.repeats = 16, 2, 2
    if min(args.batches, args.repeats, args.images, *args.batch_size) < 1:
        p.error("--images, --batch-size, --batches and --repeats must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU")
    threads = args.threads or (1 if args.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    report = start_report("bench_device_augment.py", args, argv, "torch", "pillow")
    report["threads"] = torch.get_num_threads()
    images = garments(args.images, args.size)
    report["agreement"] = agreement(images, args)
    report["speed"] = [r for b in args.batch_size for r in speed(images, args, b).values()]
    report["verdict"] = verdict(report)
    print("\n".join(report["verdict"]))
    finish_report(report, args, "device-augment", markdown)
    return report


if __name__ == "__main__":
    main()
