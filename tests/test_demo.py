"""The README's main job, end to end: the demo learns both tasks and its ranking beats chance."""

import json

import pytest

from fashionrec.demo import run_demo
from fashionrec.runs import read_model_json


@pytest.mark.slow
def test_demo_learns_both_tasks_and_ranks_alike_items(tmp_path):
    summary = run_demo(tmp_path / "demo", progress=False, log=lambda *_: None)
    runs = tmp_path / "demo" / "runs"
    chance = {"category": 1 / 9, "texture": 1 / 5}
    for stage in ("pretrain", "finetune"):
        for task in ("category", "texture"):
            info = read_model_json(runs / stage / f"bninception-{task}")
            acc = info["metrics"]["val_acc"]
            # A margin that holds run after run (seeded on CPU), not a lucky number.
            assert acc > 2.5 * chance[task], (stage, task, acc)
    assert summary["recommendations"].stat().st_size > 50_000
    retrieval = json.loads((tmp_path / "demo" / "index" / "retrieval.json").read_text())
    raw = retrieval["variants"]["concat raw"]
    # Neighbours share the query's labels far more often than a random pick would.
    assert raw["category"]["precision@5"] > 2 * chance["category"]
    assert raw["texture"]["precision@5"] > 2 * chance["texture"]
