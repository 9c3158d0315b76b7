"""Best / last / patience bookkeeping of a training run, so the loop only trains.

One metric of each epoch's record is watched (``val_loss`` to minimise for the classification
stages; a retrieval stage would watch e.g. ``val_recall@1`` to maximise). An epoch that improves
on the best by more than ``min_delta`` saves the weights as the run's result; ``patience`` epochs
without one stop training. After every epoch ``last/`` holds the complete state (weights,
optimiser, this bookkeeping, the history) and is swapped in atomically, so an interrupted run
resumes from its last completed epoch and ends with the same epochs and history as one that
was never interrupted.

``last/state.json``::

    {"epoch": 3, "monitor": "val_loss", "mode": "min", "best_epoch": 2, "best_val_loss": 0.81,
     "bad_epochs": 1, "history": [{"epoch": 1, ...}, ...], "init": "runs/pretrain/..."}

Keys other than the bookkeeping ones (``init`` above) are the run's own ``meta``, kept across
a resume.

In a data-parallel run only rank 0 opens and updates the checkpoint; the other ranks mirror its
bookkeeping (:meth:`Checkpoint.state`, :meth:`Checkpoint.restore`) so that they stop with it, and
read the weights and optimiser of ``last/`` themselves to resume (so across machines the run folder
must be on a filesystem they all see, like the data).
"""

from __future__ import annotations

import math
from pathlib import Path

from .artifacts import ArtifactKind, atomic_dir, read_json, write_json
from .errors import UserError

LAST_KIND = ArtifactKind("last-epoch checkpoint", marker="state.json", entries=("weights*", "optimizer*", "loss*"))
_BOOKKEEPING = ("epoch", "monitor", "mode", "best_epoch", "bad_epochs", "history")


class Checkpoint:
    """Decides which epoch is best and when to stop, and keeps ``best`` and ``last/`` on disk.

    Usage::

        ckpt = Checkpoint(run_dir, weights="weights.safetensors", patience=3)
        if ckpt.open(resume):                 # a resumed run: bookkeeping restored
            ckpt.load_training_state(clf)
        for epoch in range(ckpt.epoch + 1, max_epochs + 1):
            if ckpt.should_stop:
                break
            ckpt.update(clf, run_one_epoch(epoch))
    """

    def __init__(self, run_dir, *, weights: str, patience: int, monitor: str = "val_loss",
                 mode: str = "min", min_delta: float = 1e-7):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1; got {patience}")
        self.run_dir = Path(run_dir)
        self.weights = weights  # the best epoch's weights, under run_dir
        self.patience = patience
        self.monitor = monitor
        self.mode = mode
        self.min_delta = min_delta
        self.epoch = 0  # the last epoch recorded in last/
        self.best_epoch = 0
        self.best_value = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.meta: dict = {}

    @property
    def state_file(self) -> Path:
        return self.run_dir / "last" / "state.json"

    @property
    def last_dir(self) -> Path:
        return self.run_dir / "last"

    def open(self, resume: bool) -> bool:
        """Check the run directory suits a fresh run (or a resume) and, to resume, restore the
        bookkeeping from ``last/state.json``. Returns whether this is a resumed run."""
        if not resume:
            if (self.run_dir / "model.json").exists() or self.state_file.exists():
                raise UserError(f"{self.run_dir}: run directory already exists; use --resume to continue it, "
                                f"--force to replace it, or pick another name with --set output.name=NAME")
            return False
        if not self.state_file.is_file():
            raise UserError(f"{self.run_dir}: nothing to resume (no last/state.json); run without --resume")
        state = read_json(self.state_file)
        watched = (state.get("monitor", "val_loss"), state.get("mode", "min"))  # runs from before these keys
        if watched != (self.monitor, self.mode):
            raise UserError(f"{self.state_file}: the run watched {watched[0]} ({watched[1]}), "
                            f"this stage watches {self.monitor} ({self.mode}); it cannot be resumed as this stage")
        self.epoch, self.best_epoch = state["epoch"], state["best_epoch"]
        self.best_value, self.bad_epochs = state[self._best_key], state["bad_epochs"]
        self.history = state["history"]
        self.meta = {k: v for k, v in state.items() if k not in _BOOKKEEPING and k != self._best_key}
        return True

    def load_training_state(self, clf) -> None:
        """Weights and optimiser of the last completed epoch (after ``open`` returned True)."""
        if not self.state_file.is_file():  # rank 0 found it: this rank runs on a machine that does not see it
            raise UserError(f"{self.last_dir}: not found on this machine; to --resume a run on several machines, "
                            f"its run folder must be on a filesystem they all share")
        clf.load_training_state(self.last_dir)

    def state(self) -> dict:
        """The bookkeeping as JSON-able values (what rank 0 sends the other ranks)."""
        return {"epoch": self.epoch, "best_epoch": self.best_epoch, "best_value": self.best_value,
                "bad_epochs": self.bad_epochs, "history": self.history, "meta": self.meta}

    def restore(self, state: dict) -> None:
        """Take over another rank's :meth:`state` (nothing is read or written)."""
        self.epoch, self.best_epoch, self.best_value = state["epoch"], state["best_epoch"], state["best_value"]
        self.bad_epochs, self.history, self.meta = state["bad_epochs"], state["history"], state["meta"]

    @property
    def _best_key(self) -> str:
        return f"best_{self.monitor}"

    def improves(self, value: float) -> bool:
        # NaN never improves: comparisons with it are False
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    @property
    def should_stop(self) -> bool:
        """``patience`` epochs in a row without an improvement."""
        return self.bad_epochs >= self.patience

    @property
    def best(self) -> dict | None:
        """The best epoch's record from the history (None before any epoch improved)."""
        return next((r for r in self.history if r["epoch"] == self.best_epoch), None)

    def update(self, clf, record: dict) -> bool:
        """Record a completed epoch: save the weights when it is the best so far, then write
        ``last/`` atomically. Returns whether this epoch is the new best."""
        value = float(record[self.monitor])
        improved = self.improves(value)
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, record["epoch"], 0
            clf.save_weights(self.run_dir / self.weights)
        else:
            self.bad_epochs += 1
        self.history.append(record)
        with atomic_dir(self.last_dir, kind=LAST_KIND) as tmp:
            clf.save_training_state(tmp)
            write_json(tmp / "state.json", {
                "epoch": record["epoch"], "monitor": self.monitor, "mode": self.mode,
                "best_epoch": self.best_epoch, self._best_key: self.best_value,
                "bad_epochs": self.bad_epochs, "history": self.history, **self.meta,
            })
        self.epoch = record["epoch"]
        return improved
