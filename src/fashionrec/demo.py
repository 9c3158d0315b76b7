"""The whole pipeline on a synthetic catalog: synthesise, pretrain, fine-tune, index, recommend.

Sized for a 2-core CPU (a few minutes). Every stage runs through the same configs, readers,
artifacts and library calls a user runs on real data; the demo only fills in paths.
"""

from __future__ import annotations

import shutil
import time
from importlib import resources
from pathlib import Path

import numpy as np

from .artifacts import ArtifactKind, check_replaceable, ensure_writable, exclusive_lock, write_json
from .config import IndexConfig, StageConfig, load_config
from .errors import UserError

# What `demo --out DIR` writes: it replaces a folder of this kind and refuses any other (with
# `--out .` in a project, DIR/runs and DIR/index would be the user's own runs and index).
DEMO_KIND = ArtifactKind("demo folder", marker=".fashionrec-demo.json",
                         entries=("data", "runs", "index", "index-pretrained", "queries", "recommendations.png"))

# Package data (pyproject's package-data), so an installed wheel runs the demo from any folder.
CONFIG_DIR = resources.files(__package__) / "configs" / "demo"


def load_demo_config(cls, name: str, overrides=()):
    """One of the demo's configs, read from the installed package."""
    resource = CONFIG_DIR / name
    if not resource.is_file():
        raise UserError(f"{resource}: demo config missing from the installed package (reinstall fashionrec)")
    with resources.as_file(resource) as path:
        return load_config(cls, path, overrides)


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


def metric_step(data: Path, runs: Path, finetuned: dict, quick: bool, progress: bool, log) -> Path:
    """Train a small embedding on the In-shop tree from the fine-tuned category network, then print
    its query -> gallery Recall@K beside both classifiers' features on the same images."""
    from .metric_learning.config import MetricConfig, check_metric_config
    from .metric_learning.embedding_scores import evaluate_embedding_run, format_embedding_report
    from .training import train as train_metric

    overrides = [f"data.root={data / 'inshop'}", f"output.dir={runs}"]
    if quick:
        overrides += ["train.max_epochs=1", "train.batch_size=16"]
    cfg = check_metric_config(load_demo_config(MetricConfig, "metric.yaml", overrides), "metric.yaml")
    run = train_metric(cfg, init=finetuned["category"], progress=progress, log=log)
    report = evaluate_embedding_run(run, against=[finetuned["category"], finetuned["texture"]], progress=progress)
    log(format_embedding_report(report))
    return run


def pretrained_step(data: Path, runs: Path, index_dir: Path, trained: dict, progress: bool, log) -> Path | None:
    """Index the catalog with ImageNet EfficientNet-Lite0 and no training at all (where the ``pretrained`` extra
    installed its weights), and print its leave-one-out P@5 beside the trained networks'."""
    from .catalog_index import build_index
    from .config import index_config_for
    from .engines.pretrained import PRETRAINED_EXTRA, packaged_checkpoint
    from .evaluate import evaluate_index
    from .runs import import_run

    try:
        packaged_checkpoint("efficientnet_lite0")
    except UserError as e:
        log(f"[7/8] pretrained index skipped: {e}. `{PRETRAINED_EXTRA}` adds it")
        return None
    log("[7/8] ImageNet EfficientNet-Lite0, no training: index the catalog with its pooled features")
    run = import_run(None, "efficientnet_lite0", runs / "imported" / "efficientnet_lite0")
    cfg = index_config_for(data / "fashion" / "catalog.csv", [run], index_dir, ["backend=brute"])
    build_index(cfg, progress=progress, log=log)
    scores = evaluate_index(index_dir, progress=progress, labels=list(trained["relevance"])[:2])
    ours, theirs = trained["variants"]["concat raw"], scores["variants"]["concat raw"]
    log("leave-one-out P@5      " + "  ".join(f"{task:>9}" for task in theirs))
    log("  trained (paper)      " + "  ".join(f"{ours[task]['precision@5']:9.3f}" for task in theirs))
    log("  Lite0, no training   " + "  ".join(f"{theirs[task]['precision@5']:9.3f}" for task in theirs))
    return index_dir


def run_demo(out="demo", quick: bool = False, engine: str = "torch", progress: bool = True, log=print) -> dict:
    """Run the whole pipeline into ``out``: a new or empty folder, or one an earlier demo made."""
    out = Path(out)
    ensure_writable(out)
    check_replaceable(out, DEMO_KIND)
    _check_replaced_outputs(out / "runs", out / "index", out / "index-pretrained")
    with exclusive_lock(out, wait=False, what="demo folder"):
        return _run_demo(out, quick, engine, progress, log)


def _check_replaced_outputs(runs: Path, *index_dirs: Path) -> None:
    """The demo replaces DIR/runs and its indexes whole: refuse, before any work, if any holds what no
    demo writes (a run of the user's own put beside the demo's, a note in the index)."""
    from .catalog_index import INDEX_KIND
    from .runs import RUN_KIND

    for index_dir in index_dirs:
        check_replaceable(index_dir, INDEX_KIND)
    for stage in sorted(runs.iterdir()) if runs.is_dir() else ():
        if not stage.is_dir():
            raise UserError(f"{stage}: not written by a demo (runs/ holds a folder per stage); move it away "
                            f"or choose another --out")
        for run in sorted(stage.iterdir()):
            if not (run.name.startswith(".") and run.name.endswith(".lock")):  # the runs' own locks
                check_replaceable(run, RUN_KIND)


def _run_demo(out: Path, quick: bool, engine: str, progress: bool, log) -> dict:
    from .catalog_index import build_index
    from .data.synth import synthesize
    from .evaluate import evaluate_index, evaluate_run, format_report, format_retrieval
    from .recommend import Recommender, format_results
    from .training import train

    t0 = time.perf_counter()
    data, runs, index_dir, pretrained_dir = out / "data", out / "runs", out / "index", out / "index-pretrained"
    for stale in (runs, index_dir, pretrained_dir):  # a demo is a fresh run each time; run_demo checked them
        shutil.rmtree(stale, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / DEMO_KIND.marker, {"quick": quick, "engine": engine})
    n, size = (240, 64) if quick else (1000, 64)
    log(f"[1/8] synthetic catalog: {n} images per tree at {size} px -> {data}")
    synthesize(data, n=n, size=size, seed=0, progress=progress)

    common = [f"engine={engine}", f"output.dir={runs}"]
    if quick:
        common += ["train.max_epochs=1", "model.input_size=64"]
    finetuned = {}
    for step, task in enumerate(("category", "texture"), start=2):
        log(f"[{step}/8] {task}: pretrain on the DeepFashion tree, then fine-tune on the Fashion tree")
        pre = load_demo_config(StageConfig, f"pretrain-{task}.yaml",
                               common + [f"data.root={data / 'deepfashion'}"])
        pre_dir = train(pre, progress=progress, log=log)
        fine = load_demo_config(StageConfig, f"finetune-{task}.yaml",
                                common + [f"data.root={data / 'fashion' / f'{task}.csv'}"])
        fine_dir = train(fine, init=pre_dir, progress=progress, log=log)
        report = evaluate_run(fine_dir, split="val", progress=progress)
        log(format_report(report))
        finetuned[task] = fine_dir

    log("[4/8] index the catalog with both fine-tuned networks (heads stripped, features concatenated)")
    icfg = load_demo_config(IndexConfig, "index.yaml", [
        f"catalog.root={data / 'fashion' / 'catalog.csv'}", f"output={index_dir}",
        f"extractors=[{finetuned['category']}, {finetuned['texture']}]"])
    build_index(icfg, progress=progress, log=log)

    log("[5/8] recommend for held-out images")
    queries = write_queries(out / "queries", size)
    rec = Recommender.load(index_dir)
    results = rec.recommend([q for q, _, _ in queries], k=5)
    log(format_results(results))
    picture = rec.show(results, out / "recommendations.png")

    log("[6/8] evaluate the ranking (leave-one-out over the catalog)")
    retrieval = evaluate_index(index_dir, progress=progress)
    log(format_retrieval(retrieval))

    pretrained = pretrained_step(data, runs, pretrained_dir, retrieval, progress, log)

    metric_run = None
    if engine == "torch":
        log("[8/8] metric learning on the synthetic In-shop tree, beside the classifiers' features")
        metric_run = metric_step(data, runs, finetuned, quick, progress, log)
    else:
        log("[8/8] metric learning skipped: it is torch-only (--engine torch)")

    summary = {
        "recommendations": picture,
        "retrieval metrics": index_dir / "retrieval.json",
        "precision@k plot": index_dir / "precision_at_k.png",
        "runs": runs,
        "training curves": [Path(d) / "history.png" for d in finetuned.values()],
        "confusion matrices": [Path(d) / "confusion-val.png" for d in finetuned.values()],
        "index": index_dir,
    }
    if pretrained is not None:
        summary["pretrained index"] = pretrained
    if metric_run is not None:
        summary.update({"metric run": metric_run, "recall@k plot": metric_run / "recall_at_k.png"})
    log(f"\ndemo finished in {time.perf_counter() - t0:.0f} s. Where everything is:")
    for key, value in summary.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        log(f"  {key:<20} {shown}")
    return summary
