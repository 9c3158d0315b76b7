"""The MXNet (Gluon) engine through the shared loop, evaluate, convert, index and recommend."""

import numpy as np
import pytest

from fashionrec.catalog_index import build_index
from fashionrec.config import IndexConfig, StageConfig, from_dict
from fashionrec.engines.factory import build_classifier
from fashionrec.errors import TrainingInterrupted, UserError
from fashionrec.evaluate import evaluate_run
from fashionrec.recommend import Recommender
from fashionrec.runs import convert_run, load_classifier, read_model_json
from fashionrec.training import train

pytest.importorskip("mxnet")  # an optional extra: the environment without it skips this file


def mx_config(tmp_path, root, task="category", fmt="deepfashion", stage="pretrain", epochs=2, name=None):
    return from_dict(StageConfig, {
        "stage": stage, "task": task, "engine": "mxnet",
        "data": {"format": fmt, "root": str(root)},
        "model": {"arch": "bninception", "input_size": 32},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "max_epochs": epochs, "top_k": 3,
                  "workers": 0, "device": "cpu", "limit_train_batches": 2},
        "output": {"dir": str(tmp_path / "runs"), "name": name},
    })


@pytest.fixture(scope="module")
def mx_runs(synth_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mx")
    runs = {}
    for task in ("category", "texture"):
        cfg = mx_config(tmp, synth_root / "fashion" / f"{task}.csv", task=task, fmt="csv", stage="finetune",
                        epochs=1)
        runs[task] = train(cfg, progress=False, log=lambda *_: None)
    return runs


def test_mxnet_run_directory_and_resume(tmp_path, synth_root):
    def stop_after_epoch_1(msg):
        if msg.startswith("epoch 1:"):
            raise KeyboardInterrupt

    cfg = mx_config(tmp_path, synth_root / "deepfashion", epochs=2)
    with pytest.raises(TrainingInterrupted):
        train(cfg, progress=False, log=stop_after_epoch_1)
    assert (cfg.run_dir / "last" / "optimizer.params").is_file()
    run = train(cfg, resume=True, progress=False, log=lambda *_: None)
    info = read_model_json(run)
    assert info["engine"] == "mxnet" and info["weights"] == "weights.params" and info["epochs"] == 2
    assert (run / "weights.params").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    report = evaluate_run(run, split="val", progress=False, workers=0)
    assert report["n"] > 0 and (run / "confusion-val.png").is_file()


@pytest.mark.parametrize("target", ["torch"])
def test_convert_gives_the_same_outputs(mx_runs, tmp_path, target):
    out = convert_run(mx_runs["category"], target, tmp_path / "converted")
    a, _ = load_classifier(mx_runs["category"], device="cpu")
    b, info = load_classifier(out, device="cpu")
    assert info["engine"] == target and b.engine == target
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    (la, fa), (lb, fb) = a.extract(x), b.extract(x)
    np.testing.assert_allclose(la, lb, atol=1e-4 * max(1.0, np.abs(la).max()))
    np.testing.assert_allclose(fa, fb, atol=1e-4 * max(1.0, np.abs(fa).max()))
    back = convert_run(out, "mxnet", tmp_path / "back")
    c, _ = load_classifier(back, device="cpu")
    np.testing.assert_allclose(c.extract(x)[1], fa, atol=1e-4 * max(1.0, np.abs(fa).max()))
    with pytest.raises(UserError, match="already uses engine"):
        convert_run(out, target)


def test_index_and_recommend_with_mxnet_runs(mx_runs, synth_root, tmp_path):
    cfg = from_dict(IndexConfig, {
        "catalog": {"format": "csv", "root": str(synth_root / "fashion" / "catalog.csv")},
        "extractors": [str(mx_runs["category"]), str(mx_runs["texture"])],
        "output": str(tmp_path / "idx"), "backend": "brute", "workers": 0, "device": "cpu",
    })
    build_index(cfg, progress=False, log=lambda *_: None)
    rec = Recommender.load(tmp_path / "idx", device="cpu")
    item = rec.index.items[3]
    res = rec.recommend([rec.index.root / item["path"]], k=2)[0]
    assert res["results"][0]["id"] == 3 and res["results"][0]["distance"] < 1e-3
    assert [e["engine"] for e in rec.index.meta["extractors"]] == ["mxnet", "mxnet"]
    cfg.precision = "bf16"
    with pytest.raises(UserError, match="precision: bf16 inference needs the torch engine"):
        build_index(cfg, progress=False, log=lambda *_: None)


def test_gpu_newer_than_mxnet_supports_fails_early(monkeypatch):
    import mxnet as mx

    from fashionrec.engines.mxnet import engine

    monkeypatch.setattr(mx.context, "num_gpus", lambda: 1)
    monkeypatch.setattr(engine, "_gpu_compute_capability", lambda: (9, 0))
    with pytest.raises(UserError, match=r"compute capability 9\.0.*engine: torch"):
        build_classifier("mxnet", "bninception", 5, device="auto")
