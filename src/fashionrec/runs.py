"""Run directories: what a training run leaves behind, and loading it back.

``runs/<stage>/<name>/``::

    config.yaml        the resolved configuration
    manifest.csv       the data the run saw (paths, labels, splits, classes)
    model.json         engine, arch, task, classes, input size, normalisation, feature
                       dimension, best epoch, metrics, weights file and its sha256, version
    weights.*          the best epoch's weights (safetensors for torch, .params for mxnet)
    history.jsonl      one line per epoch; history.png the curves
    last/              the last completed epoch (weights, optimiser, loop state) for --resume
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import __version__
from .engines.base import WEIGHTS_FILE, build_classifier
from .errors import UserError
from .io import read_json, write_json


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_model_json(run_dir) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / "model.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no model.json)")
    try:
        info = read_json(path)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    for key in ("engine", "arch", "classes", "input_size", "weights", "task"):
        if key not in info:
            raise UserError(f"{path}: {key}: required key is missing")
    return info


def write_model_json(run_dir, info: dict) -> None:
    info = dict(info, version=__version__)
    write_json(Path(run_dir) / "model.json", info)


def weights_path(run_dir, engine: str) -> Path:
    return Path(run_dir) / WEIGHTS_FILE[engine]


def load_classifier(run_dir, device: str = "auto"):
    """Build the run's network and load its best weights. Returns (classifier, model.json)."""
    run_dir = Path(run_dir)
    info = read_model_json(run_dir)
    weights = run_dir / info["weights"]
    if not weights.is_file():
        raise UserError(f"{run_dir}: weights file {info['weights']} is missing (the run has no finished epoch?)")
    clf = build_classifier(info["engine"], info["arch"], len(info["classes"]), device=device)
    clf.load_weights(weights)
    return clf, info
