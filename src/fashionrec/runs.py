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
    norm = info.get("normalization") or {}
    try:
        clf = build_classifier(info["engine"], info["arch"], len(info["classes"]), device=device,
                               **{k: norm[k] for k in ("mean", "std") if k in norm})
    except ValueError as e:
        raise UserError(f"{run_dir / 'model.json'}: normalization: {e}") from None
    clf.load_weights(weights)
    return clf, info


def convert_run(run_dir, target: str, out=None, device: str = "cpu") -> Path:
    """Write a copy of a run with its weights converted to the ``target`` engine.

    This is what lets a model trained with mxnet-cu112 be served on a GPU mxnet cannot use.
    The outputs agree to float rounding (the parity tests pin it).
    """
    import shutil

    import yaml

    from .engines.convert import convert_weights
    from .io import atomic_dir, write_text

    run_dir = Path(run_dir)
    info = read_model_json(run_dir)
    if target == info["engine"]:
        raise UserError(f"{run_dir}: the run already uses engine {target}")
    out = Path(out) if out else run_dir.with_name(f"{run_dir.name}-{target}")
    if out.exists():
        raise UserError(f"{out}: already exists; pick another --out")
    source, _ = load_classifier(run_dir, device=device)
    weights = convert_weights(info["arch"], source.get_weights(), info["engine"], target)
    dest = build_classifier(target, info["arch"], len(info["classes"]), device=device)
    dest.set_weights(weights)
    with atomic_dir(out) as tmp:
        for name in ("manifest.csv", "history.jsonl", "history.png"):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, tmp / name)
        if (run_dir / "config.yaml").is_file():
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
            cfg["engine"] = target
            write_text(tmp / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        dest.save_weights(tmp / WEIGHTS_FILE[target])
        new = dict(info, engine=target, weights=WEIGHTS_FILE[target], converted_from=str(run_dir),
                   weights_sha256=sha256_file(tmp / WEIGHTS_FILE[target]))
        write_model_json(tmp, new)
    return out
