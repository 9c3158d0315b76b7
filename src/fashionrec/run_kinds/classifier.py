"""``classifier`` (a pretrain or finetune run, and a run written before kinds were recorded) and
``imported`` (a published ImageNet checkpoint, ``import-weights``): a network with a head of classes,
on either engine."""

from __future__ import annotations

from pathlib import Path

from ..data.images import normalization_kwargs
from ..engines.factory import build_classifier
from ..engines.registry import check_arch
from ..errors import UserError
from ..runs import CLASSIFIER_KIND, IMPORTED_KIND, RunKind, register_run_kind


def load_classifier_run(run_dir: Path, info: dict, device: str):
    weights = run_dir / info["weights"]
    if not weights.is_file():
        raise UserError(f"{run_dir}: weights file {info['weights']} is missing (the run has no finished epoch?)")
    try:
        check_arch(info["engine"], info["arch"])
    except ValueError as e:
        raise UserError(f"{run_dir / 'model.json'}: {e}") from None
    try:
        clf = build_classifier(info["engine"], info["arch"], len(info["classes"]), device=device,
                               **normalization_kwargs(info.get("normalization")))
    except ValueError as e:
        raise UserError(f"{run_dir / 'model.json'}: normalization: {e}") from None
    clf.load_weights(weights)
    return clf


def evaluate_classifier_run(run_dir, *, device="auto", progress=True, split="val", against=()) -> str:
    """Accuracy, top-k accuracy, cross-entropy and the confusion matrix on a split of the run's manifest."""
    from ..evaluate import evaluate_run, format_report

    if against:
        raise UserError("--against compares with a metric run; RUN_DIR is a classifier run")
    return format_report(evaluate_run(run_dir, split=split, device=device, progress=progress))


register_run_kind(RunKind(CLASSIFIER_KIND, load_classifier_run, evaluate_classifier_run))
register_run_kind(RunKind(IMPORTED_KIND, load_classifier_run, evaluate_classifier_run))
