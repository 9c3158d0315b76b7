"""The engine interface: what the engine-agnostic code (loop, index, recommend) needs.

An engine supplies, for a named architecture, a :class:`Classifier`: build with a class
count; a training step and an evaluation step on numpy batches; pooled features with the head
stripped; weights saved and loaded without unpickling; CPU or GPU placement. Everything above
the engines is written once against this interface.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

ENGINES = ("torch", "mxnet")
ARCHS = ("alexnet", "bninception")
WEIGHTS_FILE = {"torch": "weights.safetensors", "mxnet": "weights.params"}


class Classifier(Protocol):
    engine: str
    arch: str
    num_classes: int
    num_features: int
    device: str

    def set_seed(self, seed: int) -> None:
        """Seed the engine's own randomness (dropout), called at the start of every epoch."""

    def configure_optimizer(self, name: str, lr: float, weight_decay: float, momentum: float) -> None: ...

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """One optimisation step; returns (mean loss, logits)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Eval-mode logits (N, num_classes)."""

    def extract(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eval-mode (logits, pooled features with the head stripped) in one forward pass."""

    def reset_head(self, num_classes: int) -> None: ...

    def get_weights(self) -> dict[str, np.ndarray]: ...

    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def save_weights(self, path) -> None: ...

    def load_weights(self, path) -> None: ...

    def save_training_state(self, directory) -> None:
        """Weights and optimiser state, for ``--resume``."""

    def load_training_state(self, directory) -> None: ...


def build_classifier(engine: str, arch: str, num_classes: int, device: str = "auto", seed: int = 0) -> Classifier:
    """Build a classifier of ``arch`` with ``num_classes`` outputs on ``engine``."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    if engine == "torch":
        from .torch.engine import TorchClassifier

        return TorchClassifier(arch, num_classes, device=device, seed=seed)
    if engine == "mxnet":
        from .mxnet.engine import MXNetClassifier

        return MXNetClassifier(arch, num_classes, device=device, seed=seed)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
