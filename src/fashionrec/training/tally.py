"""An epoch's training sums kept where the steps leave them.

Reading a step's loss and logits on the host (``float(loss)``, ``logits.cpu()``) makes the host wait for that step
before it can queue the next: on a GPU the loop then runs at the speed of step + host work, not of the step. The
tally adds each step's loss (weighted by its images) and correct answers as device tensors, which only queues
kernels, and the host reads the sums when it needs them: at the end of the epoch, and every ``read_every`` steps for the
progress bar and to stop a diverged run early (steps, not seconds: data-parallel ranks then read, and stop, at the
same step). The sums are float64 in the steps' order, so they are the very
numbers the host's own sums of ``float(loss) * n`` were.

Host values (an engine that returns floats and numpy, as the mxnet one does) are summed on the host.
"""

from __future__ import annotations

import numpy as np


class EpochTally:
    """``add(loss, n, logits=None, y=None)`` per step; ``read()`` -> (loss sum, correct, images)."""

    def __init__(self, read_every: int = 20):
        self.read_every = read_every
        self._loss, self._correct, self._n, self._steps = 0.0, 0, 0, 0

    def add(self, loss, n: int, logits=None, y=None) -> None:
        """One step: its mean ``loss`` over ``n`` images and, for a classifier, its ``logits`` against labels ``y``."""
        self._n += n
        self._steps += 1
        if isinstance(loss, (float, int, np.floating)):
            self._loss += float(loss) * n
            if logits is not None:
                self._correct += int((np.asarray(logits).argmax(1) == y).sum())
            return
        import torch

        self._loss = self._loss + loss.double() * n  # a device tensor from the first tensor step on
        if logits is not None:
            labels = torch.as_tensor(np.asarray(y, np.int64)).to(logits.device, non_blocking=True)
            self._correct = self._correct + (logits.argmax(1) == labels).sum()

    def due(self) -> bool:
        """Whether the last step was a ``read_every``-th (the progress bar's and the divergence check's reads)."""
        return self._steps % self.read_every == 0

    def read(self) -> tuple[float, int, int]:
        """(sum of loss x images, correct answers, images) so far: the one wait for the device."""
        loss = self._loss if isinstance(self._loss, float) else float(self._loss)
        correct = self._correct if isinstance(self._correct, int) else int(self._correct)
        return loss, correct, self._n


__all__ = ["EpochTally"]
