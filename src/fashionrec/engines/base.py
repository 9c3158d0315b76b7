"""The engine interface: what the engine-agnostic code (loop, index, recommend) needs.

An engine supplies, for a named architecture, a :class:`Classifier`: build with a class
count; a training step and an evaluation step on numpy batches; pooled features with the head
stripped; weights saved and loaded without unpickling; CPU or GPU placement. Everything above
the engines is written once against this interface; :mod:`fashionrec.engines.registry` names
the engines and architectures, :func:`fashionrec.engines.factory.build_classifier` builds one.
This module imports no engine: the engines import it.

Batches go in as the loader makes them: uint8 RGB images ``(N, H, W, 3)``. The classifier
normalises them itself, with its ``mean``, ``std``, ``channels`` and ``scale``, on its own
device: a GPU then receives a quarter of the bytes and does the arithmetic that would otherwise
hold up the host's training loop (``scripts/bench_train.py`` measured the host at ~1,000-1,500
images/s at 224 px).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

_SHOW = 6  # names listed per kind of misfit in an error


class Classifier(Protocol):
    engine: str
    arch: str
    num_classes: int
    num_features: int
    device: str
    mean: tuple[float, float, float]  # per input channel, in units where a full pixel is ``scale``
    std: tuple[float, float, float]
    channels: str  # the input channels' order: "rgb", or "bgr" (Caffe-lineage weights)
    scale: float  # 1 (torchvision's convention: pixels in [0, 1]) or 255 (Caffe's)

    def set_seed(self, seed: int) -> None:
        """Seed the engine's own randomness (dropout), called at the start of every epoch."""

    def configure_optimizer(self, name: str, lr: float, weight_decay: float, momentum: float,
                            label_smoothing: float = 0.0) -> None:
        """The optimiser, and the training loss's label smoothing (0: plain cross-entropy)."""

    def set_lr(self, lr: float) -> None:
        """The learning rate of the next steps (a schedule calls it every step)."""

    def train_step(self, x: np.ndarray, y: np.ndarray, sync: bool = True) -> tuple[float, np.ndarray]:
        """One optimisation step on uint8 images (N, H, W, 3); returns (mean loss, logits). With ``sync=False``
        an engine may return them as its device's values, not yet computed (``training.tally`` reads them)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Eval-mode logits (N, num_classes) of uint8 images (N, H, W, 3)."""

    def extract(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eval-mode (logits, pooled features with the head stripped) in one forward pass."""

    def set_inference_precision(self, precision: str) -> None:
        """``fp32`` (the default) or ``bf16``: the arithmetic of ``predict`` and ``extract``."""

    def set_training_precision(self, precision: str) -> None:
        """``auto`` (the default: the engine's best on its device), ``fp32`` or ``bf16``: the arithmetic
        of ``train_step``; one the engine cannot train in is a UserError."""

    def reset_head(self, num_classes: int) -> None: ...

    def get_weights(self) -> dict[str, np.ndarray]: ...

    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def save_weights(self, path) -> None: ...

    def load_weights(self, path) -> None: ...

    def save_training_state(self, directory) -> None:
        """Weights and optimiser state, for ``--resume``."""

    def load_training_state(self, directory) -> None: ...


def check_images(x: np.ndarray) -> np.ndarray:
    """``x`` as a C-contiguous uint8 (N, H, W, 3) batch, or a ValueError saying what it is."""
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be a uint8 (N, H, W, 3) batch; got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x)


def _listed(names: list[str]) -> str:
    more = f" (+{len(names) - _SHOW} more)" if len(names) > _SHOW else ""
    return ", ".join(names[:_SHOW]) + more


def check_state(expected: Mapping[str, tuple], state: Mapping[str, np.ndarray], what: str = "weights") -> None:
    """Raise one ValueError listing the names ``state`` lacks or adds and the shapes that differ."""
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = [f"{k} {tuple(np.shape(state[k]))} (expected {tuple(expected[k])})"
             for k in sorted(expected.keys() & state.keys()) if tuple(np.shape(state[k])) != tuple(expected[k])]
    problems = [f"{label}: {_listed(names)}" for label, names in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if names]
    if problems:
        raise ValueError(f"{what} do not fit the network; " + "; ".join(problems))
