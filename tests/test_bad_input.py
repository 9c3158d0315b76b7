"""Bad input gets one clear line and loses nothing (issue: bad input, interruptions, safe artifacts)."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fashionrec.cli import main
from fashionrec.data.manifest import Manifest
from fashionrec.errors import DataError
from fashionrec.train import train
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
    with pytest.raises(DataError, match="could not be decoded"):
        train(cfg2, progress=False, log=lambda *_: None)


def test_unicode_and_spaces_in_query_paths(built_index, tmp_path):
    from fashionrec.index import CatalogIndex

    idx = CatalogIndex.load(built_index)
    query = tmp_path / "Sommerkleid gestreift – é.jpg"
    shutil.copy(idx.root / idx.items[2]["path"], query)
    r = CliRunner().invoke(main, ["recommend", str(query), "-k", "1", "--index", str(built_index),
                                  "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    assert '"id": 2' in r.output
