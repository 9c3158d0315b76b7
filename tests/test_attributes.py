"""Any labelled attribute as a feature extractor: a task from any CSV column or DeepFashion
attribute type, and an index of several extractors with block weights, through the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fashionrec.cli import main
from fashionrec.config import IndexConfig, StageConfig, from_dict
from fashionrec.data.deepfashion import ATTR_CLOTH, ATTR_IMG, read_deepfashion, read_names, read_table
from fashionrec.errors import ConfigError, DataError
from fashionrec.label_metrics import weight_blocks

COLOURS = ("red", "green", "blue")


def _colour(path) -> str:
    """The garment's dominant channel in the middle of the picture: a label anyone can check."""
    a = np.asarray(Image.open(path).convert("RGB"), np.float32)
    h, w, _ = a.shape
    return COLOURS[int(a[h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(-1, 3).mean(0).argmax())]


@pytest.fixture(scope="module")
def colour_catalog(synth_root, tmp_path_factory):
    """The synthetic Fashion catalog (category, texture columns) plus a color column of its own."""
    folder = tmp_path_factory.mktemp("colour")
    (folder / "images").symlink_to(synth_root / "fashion" / "images", target_is_directory=True)
    with open(synth_root / "fashion" / "catalog.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(folder / "catalog.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], "color"])
        w.writeheader()
        for row in rows:
            w.writerow(dict(row, color=_colour(folder / row["path"])))
    return folder / "catalog.csv"


@pytest.fixture(scope="module")
def colour_run(colour_catalog, tmp_path_factory):
    """A `color` classifier trained from the CSV's colour column, through the CLI."""
    out = tmp_path_factory.mktemp("runs")
    config = out / "color.yaml"
    config.write_text(f"""
stage: pretrain
task: color
engine: torch
data: {{format: csv, root: {colour_catalog}, label_column: color}}
model: {{arch: bninception, input_size: 32}}
train: {{optimizer: adam, lr: 0.001, batch_size: 16, max_epochs: 1, top_k: 1, workers: 0, device: cpu,
        limit_train_batches: 2}}
output: {{dir: {out}}}
""")
    r = CliRunner().invoke(main, ["pretrain", "-c", str(config), "--no-progress"])
    assert r.exit_code == 0, r.output
    return out / "pretrain" / "bninception-color"


def test_a_color_task_from_a_csv_column(colour_run, colour_catalog):
    info = json.loads((colour_run / "model.json").read_text())
    with open(colour_catalog, encoding="utf-8") as f:
        colours = {row["path"]: row["color"] for row in csv.DictReader(f)}
    assert info["task"] == "color"
    assert info["classes"] == sorted(set(colours.values()))  # the column's values: no class list needed
    lines = (colour_run / "manifest.csv").read_text().splitlines()
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert len(rows) == len(colours) and all(colours[r["path"]] == r["label"] for r in rows)


def test_label_column_and_task_names_are_checked(colour_catalog, tmp_path):
    base = {"stage": "pretrain", "model": {"arch": "alexnet"},
            "train": {"optimizer": "sgd", "lr": 0.01, "batch_size": 4}}
    with pytest.raises(ConfigError, match="task: must be a name of letters"):
        from_dict(StageConfig, dict(base, task="sleeve length", data={"format": "csv", "root": "x.csv"}))
    from fashionrec.data.formats import load_manifest

    cfg = from_dict(StageConfig, dict(base, task="sleeve", data={"format": "csv", "root": str(colour_catalog),
                                                                 "label_column": "sleeve"}))
    with pytest.raises(DataError, match=r"catalog.csv:1: header must have a 'sleeve' column \(data.label_column\)"):
        load_manifest(cfg.data, cfg.task)
    cfg = from_dict(StageConfig, dict(base, task="colour", data={"format": "csv", "root": str(colour_catalog),
                                                                 "label_column": "color", "classes": ["red"]}))
    with pytest.raises(DataError, match="label '(green|blue)' is not in the class list"):
        load_manifest(cfg.data, cfg.task)


@pytest.mark.parametrize("task", ["fabric", "shape", "part", "style"])
def test_deepfashion_attribute_types_are_tasks(synth_root, task):
    root = synth_root / "deepfashion"
    types = {"fabric": 2, "shape": 3, "part": 4, "style": 5}
    names = read_names(root / ATTR_CLOTH)
    of_type = [n for n, t in names if t == types[task]]
    m = read_deepfashion(root, task, seed=0)
    assert m.task == task and len(m) > 0 and set(m.classes) <= set(of_type)
    # every image's label is one of its positive attributes of that type
    positive = {name: {names[i][0] for i, v in enumerate(values) if v == "1"}
                for _, name, values in read_table(root / ATTR_IMG, n_values=len(names))}
    assert all(m.classes[y] in positive[p] for p, y in zip(m.paths, m.labels.tolist()))
    assert {r for _, r in m.skipped} <= {f"no {task} attribute"} | {r for _, r in m.skipped if "class" in r}
    with pytest.raises(DataError, match="a DeepFashion tree has the tasks category, texture, fabric, shape"):
        read_deepfashion(root, "color")


def test_block_weights_scale_squared_distances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6)).astype(np.float32)
    blocks, weights = [(0, 2), (2, 6)], [4.0, 0.25]
    y = weight_blocks(x, blocks, weights)
    d2 = lambda a, i, j, s: float(((a[i, s] - a[j, s]) ** 2).sum())  # noqa: E731
    for i, j in ((0, 1), (2, 4)):
        want = 4.0 * d2(x, i, j, slice(0, 2)) + 0.25 * d2(x, i, j, slice(2, 6))
        assert d2(y, i, j, slice(0, 6)) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="positive"):
        weight_blocks(x, blocks, [1.0, 0.0])
    with pytest.raises(ConfigError, match=r"extractors\[1\]\.weight: must be > 0; got 0"):
        from_dict(IndexConfig, {"catalog": {"format": "csv", "root": "c.csv"},
                                "extractors": ["a", {"run": "b", "weight": 0}]})


def test_an_index_of_three_weighted_extractors(extractor_runs, colour_run, colour_catalog, tmp_path):
    runner = CliRunner()
    out = tmp_path / "index"
    config = tmp_path / "index.yaml"
    config.write_text(f"""
catalog: {{format: csv, root: {colour_catalog}}}
extractors:
  - {extractor_runs['category']}
  - {{run: {extractor_runs['texture']}, weight: 2.0}}
  - {{run: {colour_run}, weight: 10000.0}}
output: {out}
backend: brute
workers: 0
device: cpu
""")
    r = runner.invoke(main, ["index", "-c", str(config), "--no-progress"])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "index.json").read_text())
    assert [e["task"] for e in meta["extractors"]] == ["category", "texture", "color"]
    assert [e["weight"] for e in meta["extractors"]] == [1.0, 2.0, 10000.0]
    assert meta["blocks"] == [[0, 1024], [1024, 2048], [2048, 3072]]
    with open(out / "items.csv", encoding="utf-8") as f:
        items = list(csv.DictReader(f))
    assert {"pred_category", "pred_texture", "pred_color", "color"} <= set(items[0])

    from fashionrec.catalog_index import CatalogIndex

    index = CatalogIndex.load(out)
    raw = index.features[:4]
    manual = raw.copy()
    manual[:, 1024:2048] *= np.sqrt(2.0)
    manual[:, 2048:] *= 100.0
    np.testing.assert_allclose(index.search_vectors(raw), manual, rtol=1e-6)

    r = runner.invoke(main, ["evaluate", "--index", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    result = json.loads((out / "retrieval.json").read_text())
    assert result["relevance"] == ["category", "texture", "color", "all"]
    assert result["weights_of_index"] == [1.0, 2.0, 10000.0]
    variants = result["variants"]
    assert set(variants) == {"concat raw", "concat l2", "concat weighted", "category only", "texture only",
                             "color only"}
    for line in ("concat weighted ", "color only ", "all "):
        assert line in r.output
    # a colour block weighted 10,000 times ranks as the colour block alone does
    for k in result["ks"]:
        assert variants["concat weighted"]["color"][f"precision@{k}"] == pytest.approx(
            variants["color only"]["color"][f"precision@{k}"], abs=0.02)

    # recommend and serve show every extractor's predicted label
    r = runner.invoke(main, ["recommend", str(colour_catalog.parent / items[0]["path"]), "--index", str(out),
                             "--json", "-k", "3"])
    assert r.exit_code == 0, r.output
    answer = json.loads(r.output)[0]
    assert set(answer["predicted"]) == {"category", "texture", "color"}
    assert answer["predicted"]["color"]["label"] in COLOURS
    from fastapi.testclient import TestClient

    from fashionrec.recommend import Recommender
    from fashionrec.serve import create_app

    with TestClient(create_app(Recommender.load(out, device="cpu"))) as client:
        assert client.get("/healthz").json()["tasks"] == ["category", "texture", "color"]
        with open(colour_catalog.parent / items[0]["path"], "rb") as f:
            body = client.post("/recommend", files={"image": ("q.jpg", f, "image/jpeg")}, data={"k": "2"}).json()
        assert set(body["predicted"]) == {"category", "texture", "color"}
