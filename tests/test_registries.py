"""One contract over every registry: each registered training objective, dataset format (for each use it
serves), metric-learning loss, k-NN backend and engine x architecture runs through the CLI on the
synthetic trees (one tiny epoch or one index each), enumerated from the registries, so a new entry is
picked up without editing this file. Plus: a dataset format added by a plugin module in a temporary
package, used from a config through the installed ``fashionrec`` command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fashionrec.cli import main
from fashionrec.data.formats import USES, dataset_format, format_names
from fashionrec.engines.registry import engine_names, list_archs
from fashionrec.knn import BACKENDS
from fashionrec.metric_learning.losses import loss_names
from fashionrec.training import training_stages
from test_contract import SAME_DEFINITION

pytestmark = pytest.mark.slow

TRAIN = {"lr": 1e-3, "batch_size": 8, "max_epochs": 1, "workers": 0, "device": "cpu", "limit_train_batches": 1}


def _classification_config(root, fmt: str, out: Path, stage: str = "pretrain", arch: str = "bninception",
                           engine: str = "torch", size: int = 32) -> dict:
    return {"stage": stage, "task": "category", "engine": engine, "data": {"format": fmt, "root": str(root)},
            "model": {"arch": arch, "input_size": size},
            "train": {"optimizer": "adam", "top_k": 3, **TRAIN}, "output": {"dir": str(out)}}


def _metric_config(root, fmt: str, out: Path, loss: str = "proxy_anchor") -> dict:
    return {"stage": "metric", "data": {"format": fmt, "root": str(root), "val_fraction": 0.25},
            "model": {"arch": "bninception", "input_size": 32, "embedding_dim": 16}, "loss": {"name": loss},
            "train": {**TRAIN, "images_per_item": 4, "warmup_epochs": 0}, "output": {"dir": str(out)}}


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(main, [*args, "--no-progress"] if args[0] != "recommend" else args)
    assert result.exit_code == 0, result.output
    return result.output


def _train(tmp_path: Path, stage: str, cfg: dict, *extra: str) -> Path:
    path = tmp_path / f"{stage}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = _run([stage, "-c", str(path), *extra])
    run = Path(out.strip().splitlines()[-1].split("run directory: ")[1].split("  (")[0])
    info = json.loads((run / "model.json").read_text())
    assert info["epochs"] == 1 and info["stage"] == stage
    return run


def test_every_training_stage_is_a_command_with_the_shared_options():
    stages = training_stages()
    assert {"pretrain", "finetune", "metric"} <= set(stages)
    for stage, objective in stages.items():
        help_text = CliRunner().invoke(main, [stage, "--help"]).output
        for option in ("--config", "--init", "--set", "--resume", "--force", "--engine", "--device", "--progress"):
            assert option in help_text, (stage, option)
        assert objective.run_kind and objective.monitor and objective.mode in ("min", "max")


@pytest.mark.parametrize("stage", sorted(training_stages()))
def test_every_objective_trains_through_the_cli(stage, synth_root, extractor_runs, tmp_path):
    objective = training_stages()[stage]
    if objective.name == "metric_learning":
        cfg = _metric_config(synth_root / "inshop", "inshop", tmp_path)
        run = _train(tmp_path, stage, cfg)
    else:
        cfg = _classification_config(synth_root / "fashion" / "category.csv", "csv", tmp_path, stage=stage)
        run = _train(tmp_path, stage, cfg, *(["--init", str(extractor_runs["category"])] * (stage == "finetune")))
    assert json.loads((run / "model.json").read_text())["kind"] == objective.run_kind
    assert "val_" in (run / "history.jsonl").read_text() and (run / "history.png").is_file()


FORMAT_USES = [(name, use) for name in format_names() for use in USES if type(dataset_format(name)).serves(use)]


@pytest.mark.parametrize(("name", "use"), FORMAT_USES, ids=[f"{n}-{u}" for n, u in FORMAT_USES])
def test_every_dataset_format_serves_its_uses_through_the_cli(name, use, synth_root, extractor_runs, tmp_path):
    root = dataset_format(name).sample(synth_root, tmp_path / "sample", use=use)
    if use == "labelled":
        _train(tmp_path, "pretrain", _classification_config(root, name, tmp_path))
    elif use == "items":
        _train(tmp_path, "metric", _metric_config(root, name, tmp_path))
    else:
        index = _index(tmp_path, {"format": name, "root": str(root)}, extractor_runs, "brute")
        assert json.loads((index / "index.json").read_text())["catalog"]["format"] == name


def test_every_format_has_a_use_and_the_paper_formats_are_there():
    assert {"deepfashion", "csv", "folder", "manifest", "inshop"} <= set(format_names())
    assert all(any(type(dataset_format(n)).serves(u) for u in USES) for n in format_names())


@pytest.mark.parametrize("loss", loss_names())
def test_every_loss_trains_through_the_cli(loss, synth_root, tmp_path):
    run = _train(tmp_path, "metric", _metric_config(synth_root / "inshop", "inshop", tmp_path, loss=loss))
    assert json.loads((run / "model.json").read_text())["loss"] == loss


def _index(tmp_path: Path, catalog: dict, extractor_runs, backend: str) -> Path:
    out = tmp_path / f"index-{backend}"
    path = tmp_path / f"index-{backend}.yaml"
    path.write_text(yaml.safe_dump({"catalog": catalog, "output": str(out), "backend": backend, "workers": 0,
                                    "device": "cpu",
                                    "extractors": [str(extractor_runs["category"]), str(extractor_runs["texture"])]}))
    _run(["index", "-c", str(path)])
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_knn_backend_indexes_and_recommends_through_the_cli(backend, synth_root, extractor_runs, tmp_path):
    catalog = {"format": "csv", "root": str(synth_root / "fashion" / "catalog.csv")}
    index = _index(tmp_path, catalog, extractor_runs, backend)
    query = synth_root / "fashion" / "images" / "000007.jpg"
    found = json.loads(_run(["recommend", str(query), "--index", str(index), "-k", "3", "--json"]))
    assert len(found[0]["results"]) == 3 and found[0]["results"][0]["path"].endswith("000007.jpg")


# lite1-4 are lite0's definition at other sizes (tests/test_contract.py's SAME_DEFINITION): lite0 stands for them
CASES = [(engine, arch) for engine in engine_names() for arch in list_archs(engine) if arch not in SAME_DEFINITION]


@pytest.mark.parametrize(("engine", "arch"), CASES, ids=[f"{e}-{a}" for e, a in CASES])
def test_every_engine_and_architecture_trains_through_the_cli(engine, arch, synth_root, tmp_path):
    if engine == "mxnet":
        pytest.importorskip("mxnet")
    size = 64 if arch == "alexnet" else 32
    cfg = _classification_config(synth_root / "fashion" / "category.csv", "csv", tmp_path, arch=arch, engine=engine,
                                 size=size)
    run = _train(tmp_path, "pretrain", cfg)
    assert json.loads((run / "model.json").read_text())["engine"] == engine


JSONL_FORMAT = '''
"""``jsonl``: one JSON object per line, {"path": ..., "label": ...}: a shop's own format, as a plugin."""

import json
from pathlib import Path

from fashionrec.data.formats import DatasetFormat, register_format
from fashionrec.data.manifest import Manifest
from fashionrec.errors import DataError


@register_format
class JsonLines(DatasetFormat):
    name = "jsonl"

    def _rows(self, root):
        root = Path(root)
        rows = []
        for n, line in enumerate(root.read_text().splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise DataError(f"{root}:{n}: not a JSON object") from None
        return root, rows

    def read_labelled(self, data, task):
        root, rows = self._rows(data.root)
        classes = sorted({r["label"] for r in rows})
        splits = ["val" if i % 5 == 0 else "train" for i in range(len(rows))]
        return Manifest(root=root.parent, paths=[r["path"] for r in rows],
                        labels=[classes.index(r["label"]) for r in rows], splits=splits, classes=classes, task=task)

    def read_catalog(self, root):
        root, rows = self._rows(root)
        return root.parent, [r["path"] for r in rows], {"category": [r["label"] for r in rows]}
'''


def test_a_dataset_format_is_one_plugin_module_used_from_a_config(synth_root, extractor_runs, tmp_path):
    package = tmp_path / "shop_formats"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jsonl.py").write_text(JSONL_FORMAT)
    fashion = synth_root / "fashion"
    lines = [json.dumps({"path": f"images/{p.name}", "label": label})
             for p, label in ((fashion / row.split(",")[0], row.split(",")[1])
                              for row in (fashion / "category.csv").read_text().splitlines()[1:])]
    data = tmp_path / "shop"
    (data / "images").mkdir(parents=True)
    for p in (fashion / "images").iterdir():
        os.link(p, data / "images" / p.name)
    (data / "products.jsonl").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "FASHIONREC_PLUGINS": "shop_formats.jsonl"}
    cfg = tmp_path / "pretrain.yaml"
    cfg.write_text(yaml.safe_dump(_classification_config(data / "products.jsonl", "jsonl", tmp_path / "runs")))
    cli = [sys.executable, "-m", "fashionrec"]
    done = subprocess.run([*cli, "pretrain", "-c", str(cfg), "--no-progress"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "pretrain" / "bninception-category"
    assert json.loads((run / "model.json").read_text())["classes"] == sorted(
        {json.loads(line)["label"] for line in lines})
    index_cfg = tmp_path / "index.yaml"
    index_cfg.write_text(yaml.safe_dump({
        "catalog": {"format": "jsonl", "root": str(data / "products.jsonl")}, "output": str(tmp_path / "index"),
        "extractors": [str(run)], "workers": 0, "device": "cpu"}))
    done = subprocess.run([*cli, "index", "-c", str(index_cfg), "--no-progress"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "index" / "index.json").read_text())["catalog"]["format"] == "jsonl"
    # without the plugin the name is not a format: one line listing the ones there are
    env.pop("FASHIONREC_PLUGINS")
    done = subprocess.run([*cli, "pretrain", "-c", str(cfg), "--no-progress"], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    expected = done.stderr.split("data.format: expected ")[1].split(", got")[0]
    assert "'csv'" in expected and "'jsonl'" not in expected and done.stderr.endswith("got 'jsonl'\n")
    # a plugin that cannot be imported is one line naming it
    env["FASHIONREC_PLUGINS"] = "shop_formats.missing"
    done = subprocess.run([*cli, "pretrain", "-c", str(cfg), "--no-progress"], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "cannot import plugin module 'shop_formats.missing'" in done.stderr
