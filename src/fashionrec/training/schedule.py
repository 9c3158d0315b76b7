"""Learning-rate schedules: each a function of the position alone (epoch, step), so a resumed run steps
through the same rates as one that was never interrupted."""

from __future__ import annotations

import math


def scheduled_lr(t, epoch: int, step: int, steps: int) -> float:
    """The learning rate of ``step`` (from 0) of ``epoch`` (from 1) of ``steps``: a linear warm-up over
    ``t.warmup_epochs``, then ``t.lr`` (``constant``) or a cosine from ``t.lr`` to 0 at ``t.max_epochs``.

    A function of the position alone, so a resumed run steps through the same rates."""
    done = (epoch - 1) + step / max(steps, 1)  # epochs completed before this step
    if done < t.warmup_epochs:
        return t.lr * (done + 1 / max(steps, 1)) / t.warmup_epochs  # never 0: the first step moves
    if t.lr_schedule == "cosine":
        span = t.max_epochs - t.warmup_epochs
        return t.lr * 0.5 * (1 + math.cos(math.pi * min((done - t.warmup_epochs) / span, 1.0))) if span > 0 else t.lr
    return t.lr


def epoch_lr_factor(t, epoch: int) -> float:
    """The metric-learning schedule's multiple of ``train.lr`` at ``epoch`` (1-based): ``step`` (``gamma``
    every ``step_epochs``), ``cosine`` (to 0 at ``max_epochs``) or ``constant``."""
    if t.schedule == "step":
        return t.gamma ** ((epoch - 1) // t.step_epochs)
    if t.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / t.max_epochs))
    return 1.0
