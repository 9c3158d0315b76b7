import importlib.util
import os

import pytest

# Keep the suite within 2 cores and quiet.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

# mxnet is an extra (`pip install fashionrec[mxnet]`): without it, tests marked `mxnet` skip.
# Installed but broken (e.g. under numpy >= 1.24) is not "missing": those tests then fail.
HAS_MXNET = importlib.util.find_spec("mxnet") is not None


def pytest_collection_modifyitems(config, items):
    if HAS_MXNET:
        return
    skip = pytest.mark.skip(reason="mxnet is not installed (pip install fashionrec[mxnet])")
    for item in items:
        if item.get_closest_marker("mxnet"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small synthetic catalog in both layouts, shared by the whole session (read-only)."""
    from fashionrec.data.synth import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(out, n=180, size=64, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def extractor_runs(synth_root, tmp_path_factory):
    """Two small trained BN-Inception runs (category, texture) on the synthetic Fashion tree."""
    from fashionrec.config import StageConfig, from_dict
    from fashionrec.training import train

    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for task in ("category", "texture"):
        cfg = from_dict(StageConfig, {
            "stage": "finetune", "task": task, "engine": "torch",
            "data": {"format": "csv", "root": str(synth_root / "fashion" / f"{task}.csv")},
            "model": {"arch": "bninception", "input_size": 32},
            "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "max_epochs": 1, "top_k": 3,
                      "workers": 0, "device": "cpu", "limit_train_batches": 2},
            "output": {"dir": str(out)},
        })
        runs[task] = train(cfg, progress=False, log=lambda *_: None)
    return runs


@pytest.fixture(scope="session")
def built_index(synth_root, extractor_runs, tmp_path_factory):
    from fashionrec.catalog_index import build_index
    from fashionrec.config import IndexConfig, from_dict

    out = tmp_path_factory.mktemp("index") / "index"
    cfg = from_dict(IndexConfig, {
        "catalog": {"format": "csv", "root": str(synth_root / "fashion" / "catalog.csv")},
        "extractors": [str(extractor_runs["category"]), str(extractor_runs["texture"])],
        "output": str(out), "backend": "balltree", "workers": 0, "device": "cpu",
    })
    build_index(cfg, progress=False, log=lambda *_: None)
    return out
