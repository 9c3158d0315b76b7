"""Bad input gets one clear line and loses nothing (issue: bad input, interruptions, safe artifacts)."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fashionrec.cli import main
from fashionrec.data.manifest import Manifest
from fashionrec.errors import DataError
from fashionrec.training import train
from test_train import stage_config


def _catalog(tmp_path, rows):
    (tmp_path / "im").mkdir(exist_ok=True)
    for path, _ in rows:
        Image.new("RGB", (40, 40), (30, 60, 90)).save(tmp_path / path, format="JPEG")
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(f"{p},{l}\n" for p, l in rows))
    return tmp_path / "labels.csv"


def test_empty_one_class_and_class_without_training_images(tmp_path):
    m = Manifest(tmp_path, [], np.zeros(0, np.int64), [], ["a", "b"], source="x.csv")
    with pytest.raises(DataError, match="x.csv: the 'train' split has no images"):
        m.check_trainable()
    m = Manifest(tmp_path, ["a.jpg"], np.zeros(1, np.int64), ["train"], ["a"], source="x.csv")
    with pytest.raises(DataError, match="need at least 2 classes"):
        m.check_trainable()
    m = Manifest(tmp_path, ["a.jpg", "b.jpg"], np.array([0, 0]), ["train", "val"], ["a", "b"], source="x.csv")
    with pytest.raises(DataError, match="no training images for class\\(es\\): b"):
        m.check_trainable()


def test_training_skips_bad_images_and_lists_them(tmp_path, synth_root):
    root = tmp_path / "fashion"
    shutil.copytree(synth_root / "fashion", root)
    bad = root / "images" / "000003.jpg"
    bad.write_bytes(b"")  # a zero-byte file
    cfg = stage_config(tmp_path, root / "category.csv", fmt="csv", stage="finetune", epochs=1, limit=None)
    cfg.data.max_bad_fraction = 0.05
    run = train(cfg, progress=False, log=lambda *_: None)
    listed = (run / "bad_images.txt").read_text()
    assert "images/000003.jpg\tempty file" in listed
    cfg2 = stage_config(tmp_path, root / "category.csv", fmt="csv", stage="finetune", epochs=1, limit=None,
                        name="strict")
    cfg2.data.max_bad_fraction = 0.0
    with pytest.raises(DataError, match=r"could not be decoded \(limit 0\.0%; data\.max_bad_fraction raises it"):
        train(cfg2, progress=False, log=lambda *_: None)


def test_training_on_class_folders_reads_no_hidden_files(tmp_path):
    """.DS_Store, macOS ._* forks and .thumbnails/ would each count as a bad image: with no bad
    image allowed, training goes through only when none of them is read."""
    root = tmp_path / "shop"
    for c, colour in (("plain", (200, 200, 200)), ("striped", (20, 40, 160))):
        (root / c).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (40, 40), colour).save(root / c / f"{i}.jpg", format="JPEG")
        (root / c / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        for i in range(8):
            (root / c / f"._{i}.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
        (root / c / ".thumbnails").mkdir()
        (root / c / ".thumbnails" / "0.jpg").write_bytes(b"not a jpeg")
    cfg = stage_config(tmp_path, root, task="texture", fmt="folder", epochs=1, limit=1)
    cfg.data.classes = ["plain", "striped"]
    cfg.data.max_bad_fraction = 0.0
    run = train(cfg, progress=False, log=lambda *_: None)
    rows = Manifest.from_csv(run / "manifest.csv").paths
    assert len(rows) == 16 and not any("/." in p for p in rows)
    assert not (run / "bad_images.txt").exists()


def test_conflicting_labels_stop_training_with_one_line_naming_both_lines(tmp_path):
    import yaml

    labels = _catalog(tmp_path, [("im/a.jpg", "dress"), ("im/b.jpg", "top"), ("im/a.jpg", "skirt")])
    cfg = tmp_path / "stage.yaml"
    cfg.write_text(yaml.safe_dump({
        "stage": "pretrain", "task": "category", "engine": "torch",
        "data": {"format": "csv", "root": str(labels)}, "model": {"arch": "alexnet", "input_size": 32},
        "train": {"optimizer": "adam", "lr": 0.001, "batch_size": 4, "max_epochs": 1, "workers": 0, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs")}}))
    r = CliRunner().invoke(main, ["pretrain", "-c", str(cfg), "--no-progress"])
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines() == [
        f"error: {labels}:4: 'im/a.jpg' is listed again with label 'skirt', but line 2 gives it label 'dress'; "
        "keep one of the two rows"]


def test_unicode_and_spaces_in_query_paths(built_index, tmp_path):
    from fashionrec.catalog_index import CatalogIndex

    idx = CatalogIndex.load(built_index)
    query = tmp_path / "Sommerkleid gestreift – é.jpg"
    shutil.copy(idx.root / idx.items[2]["path"], query)
    r = CliRunner().invoke(main, ["recommend", str(query), "-k", "1", "--index", str(built_index),
                                  "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    assert '"id": 2' in r.output


def test_a_precision_the_engine_cannot_train_in_is_refused_before_data_or_folders(tmp_path):
    """mxnet trains in fp32 only: bf16 is one line naming train.precision, before the (missing) data is read
    and before any run folder is made (mxnet itself need not be installed to say so)."""
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs/pretrain/bninception-category.yaml"
    r = CliRunner().invoke(main, ["pretrain", "-c", str(config), "--engine", "mxnet",
                                  "--set", "train.precision=bf16", "--set", f"data.root={tmp_path / 'missing'}",
                                  "--set", f"output.dir={tmp_path / 'runs'}"])
    assert r.exit_code == 2, r.output
    assert "train.precision: bf16 training needs engine torch; engine mxnet takes auto, fp32" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("stage, key, value, message", [
    ("pretrain", "train.workers", "-2", "train.workers: must be in [0, 256]; got -2"),
    ("pretrain", "train.batch_size", "0", "train.batch_size: must be in [1, 65536]; got 0"),
    ("index", "workers", "-1", "workers: must be in [0, 256]; got -1"),
    ("index", "batch_size", "0", "batch_size: must be in [1, 65536]; got 0"),
])
def test_worker_and_batch_counts_below_their_floor_are_one_config_line(tmp_path, stage, key, value, message):
    """The loader refused them, with a traceback, after the run's folder was locked."""
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "src/fashionrec/configs/demo"
    config = configs / ("pretrain-category.yaml" if stage == "pretrain" else "index.yaml")
    out = ["--set", f"output.dir={tmp_path / 'runs'}" if stage == "pretrain" else f"output={tmp_path / 'runs'}"]
    r = CliRunner().invoke(main, [stage, "-c", str(config), "--set", f"{key}={value}", *out])
    assert r.exit_code == 2 and r.output.strip() == f"error: {config}: {message}", r.output
    assert not (tmp_path / "runs").exists()


def test_a_run_that_completes_no_epoch_says_so_and_leaves_no_folder(tmp_path, synth_root):
    """A config refuses max_epochs 0; a config built in code may not: the run said "run directory ... (curves:
    history.png)" for a folder holding a config and a manifest, no weights and no curves."""
    from fashionrec.errors import UserError

    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=1, limit=1)
    cfg.train.max_epochs = 0
    with pytest.raises(UserError, match=r"^no epoch completed \(train\.max_epochs 0\); nothing usable was written$"):
        train(cfg, progress=False, log=lambda *_: None)
    assert not cfg.run_dir.exists()
