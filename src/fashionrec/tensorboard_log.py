"""Epoch scalars for TensorBoard, beside the history file and PNG curves every stage writes.

``log.tensorboard: true`` in a stage's config writes ``<run>/tensorboard/`` (one event file per
process; a resumed run appends to the same folder), which ``tensorboard --logdir runs`` shows
next to other runs. TensorBoard is optional (``pip install fashionrec[tensorboard]``): asking for
it without the package is a one-line error before any training.
"""

from __future__ import annotations

import numbers
from pathlib import Path

from .errors import UserError

FOLDER = "tensorboard"
# Record fields that are not curves: the epoch is the x axis, the rest are bookkeeping.
_NOT_SCALARS = {"epoch"}


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("log.tensorboard: true needs the tensorboard package: `pip install fashionrec[tensorboard]` "
                        "(or set log.tensorboard: false)") from None
    return SummaryWriter


class ScalarLog:
    """Writes each numeric field of an epoch's record as a TensorBoard scalar (a no-op when off)."""

    def __init__(self, run_dir, enabled: bool, title: str = ""):
        self.enabled = bool(enabled)
        self.directory = Path(run_dir) / FOLDER
        self._writer = None
        self._writer_class = _summary_writer_class() if self.enabled else None  # fail before training
        self.title = title

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.directory))
            if self.title:
                self._writer.add_text("run", self.title, 0)
        step = int(record["epoch"])
        for key, value in record.items():
            if key not in _NOT_SCALARS and isinstance(value, numbers.Real) and not isinstance(value, bool):
                group = "val" if key.startswith("val_") else "train" if key.startswith("train_") else "other"
                self._writer.add_scalar(f"{group}/{key}", float(value), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
