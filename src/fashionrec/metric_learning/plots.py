"""The metric stage's training curves: train loss, and validation Recall@1 / MAP@R with the best epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..artifacts import atomic_path
from ..report import DPI, _number


def plot_metric_history(history: Sequence[Mapping], out_png, title: str | None = None) -> Path:
    """Two panels per epoch: the training loss (frozen warm-up epochs shaded) and the validation
    Recall@1 and MAP@R, the best epoch (highest Recall@1) starred."""
    if not history:
        raise ValueError("history: expected a non-empty list of per-epoch dicts")
    epochs = [int(r["epoch"]) for r in history]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_val = fig.subplots(1, 2)
    loss = [_number(r, "train_loss") for r in history]
    ax_loss.plot(epochs, loss, "-o", color="C0", markersize=3.5, label="train")
    for e, r in zip(epochs, history):
        if r.get("frozen"):
            ax_loss.axvspan(e - 0.5, e + 0.5, color="0.85", zorder=0)
    if any(r.get("frozen") for r in history):
        ax_loss.plot([], [], "s", color="0.85", label="backbone frozen")
    ax_loss.set_ylabel("metric loss")
    for key, label, style in (("val_recall@1", "val Recall@1", "-o"), ("val_map@r", "val MAP@R", "--s")):
        pts = [(e, v) for e, r in zip(epochs, history) if (v := _number(r, key)) is not None]
        if pts:
            ax_val.plot([e for e, _ in pts], [v for _, v in pts], style, markersize=3.5, label=label)
    recall = [(_number(r, "val_recall@1") or 0.0) for r in history]
    best = max(range(len(recall)), key=lambda i: (recall[i], -i))
    ax_val.plot([epochs[best]], [recall[best]], "*", color="C3", markersize=13, zorder=5,
                label=f"best epoch {epochs[best]} (R@1 {recall[best]:.3f})")
    ax_val.set_ylim(0, 1.02)
    ax_val.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    for ax in (ax_loss, ax_val):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if max(epochs) - min(epochs) < 2:
            ax.set_xlim(min(epochs) - 1, max(epochs) + 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="best")
    if title:
        fig.suptitle(title)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out_png
