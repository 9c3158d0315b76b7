"""The whole pipeline on a synthetic catalog: synthesise, pretrain, fine-tune, index, recommend.

Sized for a 2-core CPU (a few minutes). Every stage runs through the same configs, readers,
artifacts and library calls a user runs on real data; the demo only fills in paths.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from .config import IndexConfig, StageConfig, load_config
from .errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "demo"


def _config(name: str) -> Path:
    path = CONFIG_DIR / name
    if not path.is_file():
        raise UserError(f"{path}: demo config not found (run the demo from a checkout of the repository)")
    return path


def write_queries(out: Path, size: int, seed: int = 12345) -> list[tuple[Path, str, str]]:
    """Held-out query images: new draws, not in the catalog."""
    from .data.synth import CATEGORIES, TEXTURES, draw_garment

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    picks = [("dress", "striped"), ("pants", "plaid"), ("t-shirt", "spotted"), ("skirt", "graphic"),
             ("pullover", "plain")]
    assert all(c in CATEGORIES and t in TEXTURES for c, t in picks)
    queries = []
    for c, t in picks:
        path = out / f"{c}-{t}.jpg"
        draw_garment(c, t, size, rng).save(path, format="JPEG", quality=92)
        queries.append((path, c, t))
    return queries


def run_demo(out="demo", quick: bool = False, engine: str = "torch", progress: bool = True, log=print) -> dict:
    from .data.synth import synthesize
    from .evaluate_index import evaluate_index, format_retrieval
    from .index import build_index
    from .recommend import Recommender, format_results
    from .train import evaluate, format_report, train

    t0 = time.perf_counter()
    out = Path(out)
    data, runs, index_dir = out / "data", out / "runs", out / "index"
    for stale in (runs, index_dir):  # a demo is a fresh run each time
        shutil.rmtree(stale, ignore_errors=True)
    n, size = (240, 64) if quick else (1000, 64)
    log(f"[1/6] synthetic catalog: {n} images per tree at {size} px -> {data}")
    synthesize(data, n=n, size=size, seed=0, progress=progress)

    common = [f"engine={engine}", f"output.dir={runs}"]
    if quick:
        common += ["train.max_epochs=1", "model.input_size=64"]
    finetuned = {}
    for step, task in enumerate(("category", "texture"), start=2):
        log(f"[{step}/6] {task}: pretrain on the DeepFashion tree, then fine-tune on the Fashion tree")
        pre = load_config(StageConfig, _config(f"pretrain-{task}.yaml"),
                          common + [f"data.root={data / 'deepfashion'}"])
        pre_dir = train(pre, progress=progress, log=log)
        fine = load_config(StageConfig, _config(f"finetune-{task}.yaml"),
                           common + [f"data.root={data / 'fashion' / f'{task}.csv'}"])
        fine_dir = train(fine, init=pre_dir, progress=progress, log=log)
        report = evaluate(fine_dir, split="val", progress=progress)
        log(format_report(report))
        finetuned[task] = fine_dir

    log("[4/6] index the catalog with both fine-tuned networks (heads stripped, features concatenated)")
    icfg = load_config(IndexConfig, _config("index.yaml"), [
        f"catalog.root={data / 'fashion' / 'catalog.csv'}", f"output={index_dir}",
        f"extractors=[{finetuned['category']}, {finetuned['texture']}]"])
    build_index(icfg, progress=progress, log=log)

    log("[5/6] recommend for held-out images")
    queries = write_queries(out / "queries", size)
    rec = Recommender.load(index_dir)
    results = rec.recommend([q for q, _, _ in queries], k=5)
    log(format_results(results))
    picture = rec.show(results, out / "recommendations.png")

    log("[6/6] evaluate the ranking (leave-one-out over the catalog)")
    retrieval = evaluate_index(index_dir, progress=progress)
    log(format_retrieval(retrieval))

    summary = {
        "recommendations": picture,
        "retrieval metrics": index_dir / "retrieval.json",
        "precision@k plot": index_dir / "precision_at_k.png",
        "runs": runs,
        "training curves": [Path(d) / "history.png" for d in finetuned.values()],
        "confusion matrices": [Path(d) / "confusion-val.png" for d in finetuned.values()],
        "index": index_dir,
    }
    log(f"\ndemo finished in {time.perf_counter() - t0:.0f} s. Where everything is:")
    for key, value in summary.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        log(f"  {key:<20} {shown}")
    return summary
