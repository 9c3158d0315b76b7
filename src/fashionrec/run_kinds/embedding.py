"""``embedding``: a metric-learning run (:mod:`fashionrec.training.objectives.metric_learning`): an
embedding network with no classes; torch only, so ``convert`` declines it."""

from __future__ import annotations

from pathlib import Path

from ..runs import EMBEDDING_KIND as KIND
from ..runs import RunKind, register_run_kind


def _load_embedding_run(run_dir: Path, info: dict, device: str):
    from ..metric_learning.model import load_embedder  # torch: only when a network is wanted

    return load_embedder(run_dir, info, device=device)


def _evaluate_embedding_run(run_dir, *, device="auto", progress=True, split="val", against=()) -> str:
    """The run's query -> gallery Recall@K and MAP@R (``against``: classifier runs' features on the same photos)."""
    from ..metric_learning.embedding_scores import evaluate_embedding_run, format_embedding_report

    return format_embedding_report(evaluate_embedding_run(run_dir, against=against, device=device,
                                                          progress=progress))


register_run_kind(RunKind(KIND, _load_embedding_run, _evaluate_embedding_run, classes=False, converts=False,
                          what="a metric-learning run (an embedding)"))
