"""The README's main job, end to end: the demo learns both tasks and its ranking beats chance."""

import json

import pytest

from fashionrec.config import StageConfig
from fashionrec.demo import load_demo_config, run_demo
from fashionrec.runs import read_model_json
from fashionrec.training import train

# Chance is 1/9 (category) and 1/5 (texture; pretraining sees 12 texture attribute names).
# The margins hold run after run (training is seeded on the CPU); they are not lucky numbers.
MIN_VAL_ACC = {("pretrain", "category"): 0.4, ("pretrain", "texture"): 0.25,
               ("finetune", "category"): 0.4, ("finetune", "texture"): 0.4}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    run_demo(out, progress=False, log=lambda *_: None)
    return out


@pytest.mark.slow
def test_demo_learns_both_tasks(demo_dir):
    for (stage, task), floor in MIN_VAL_ACC.items():
        info = read_model_json(demo_dir / "runs" / stage / f"bninception-{task}")
        assert info["metrics"]["val_acc"] > floor, (stage, task, info["metrics"])
    for name in ("recommendations.png", "index/retrieval.json", "index/precision_at_k.png",
                 "runs/finetune/bninception-texture/history.png",
                 "runs/finetune/bninception-category/confusion-val.png"):
        assert (demo_dir / name).stat().st_size > 1000, name


@pytest.mark.slow
def test_demo_ranking_beats_chance_and_concatenation_helps(demo_dir):
    r = json.loads((demo_dir / "index" / "retrieval.json").read_text())["variants"]
    assert r["concat raw"]["category"]["precision@5"] > 0.3  # chance 0.11
    assert r["concat raw"]["texture"]["precision@5"] > 0.3  # chance 0.2
    # Same category AND texture: the concatenated feature beats each block alone (the paper's idea).
    both = {name: v["both"]["precision@5"] for name, v in r.items()}
    assert both["concat raw"] > max(both["category only"], both["texture only"])


@pytest.mark.slow
@pytest.mark.mxnet
def test_mxnet_engine_learns_with_the_same_config(demo_dir):
    cfg = load_demo_config(StageConfig, "pretrain-category.yaml", [
        "engine=mxnet", f"data.root={demo_dir / 'data' / 'deepfashion'}", f"output.dir={demo_dir / 'runs-mx'}"])
    run = train(cfg, progress=False, log=lambda *_: None)
    info = read_model_json(run)
    assert info["engine"] == "mxnet"
    assert info["metrics"]["val_acc"] > MIN_VAL_ACC[("pretrain", "category")], info["metrics"]


@pytest.mark.slow
def test_demo_indexes_the_catalog_with_imagenet_lite0_and_no_training(demo_dir):
    """The pretrained extra is in both lock files: the demo imports Lite0 and indexes the catalog with it."""
    info = read_model_json(demo_dir / "runs" / "imported" / "efficientnet_lite0")
    assert info["arch"] == "efficientnet_lite0" and info["stage"] == "imported"
    r = json.loads((demo_dir / "index-pretrained" / "retrieval.json").read_text())["variants"]["concat raw"]
    assert r["category"]["precision@5"] > 0.5 and r["texture"]["precision@5"] > 0.3  # chance 0.11 and 0.2
