"""The engine interface: what the engine-agnostic code (loop, index, recommend) needs.

An engine supplies, for a named architecture, a :class:`Classifier`: build with a class
count; a training step and an evaluation step on numpy batches; pooled features with the head
stripped; weights saved and loaded without unpickling; CPU or GPU placement. Everything above
the engines is written once against this interface.

Batches go in as the loader makes them: uint8 RGB images ``(N, H, W, 3)``. The classifier
normalises them itself, with its ``mean`` and ``std``, on its own device: a GPU then receives a
quarter of the bytes and does the arithmetic that would otherwise hold up the host's training
loop (``scripts/bench_train.py`` measured the host at ~1,000-1,500 images/s at 224 px).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..data.images import IMAGENET_MEAN, IMAGENET_STD

ENGINES = ("torch", "mxnet")
PRECISIONS = ("fp32", "bf16")  # of inference: bf16 extracts ~1.8x faster on a CPU with AVX512-BF16
ARCHS = ("alexnet", "bninception")
WEIGHTS_FILE = {"torch": "weights.safetensors", "mxnet": "weights.params"}


class Classifier(Protocol):
    engine: str
    arch: str
    num_classes: int
    num_features: int
    device: str
    mean: tuple[float, float, float]  # of the RGB channels scaled to [0, 1]
    std: tuple[float, float, float]

    def set_seed(self, seed: int) -> None:
        """Seed the engine's own randomness (dropout), called at the start of every epoch."""

    def configure_optimizer(self, name: str, lr: float, weight_decay: float, momentum: float) -> None: ...

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """One optimisation step on uint8 images (N, H, W, 3); returns (mean loss, logits)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Eval-mode logits (N, num_classes) of uint8 images (N, H, W, 3)."""

    def extract(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eval-mode (logits, pooled features with the head stripped) in one forward pass."""

    def set_inference_precision(self, precision: str) -> None:
        """``fp32`` (the default) or ``bf16``: the arithmetic of ``predict`` and ``extract``."""

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


def build_classifier(engine: str, arch: str, num_classes: int, device: str = "auto", seed: int = 0,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Classifier:
    """Build a classifier of ``arch`` with ``num_classes`` outputs on ``engine``.

    ``mean`` and ``std`` (per RGB channel, of pixels scaled to [0, 1]) normalise its input.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    try:
        mean, std = tuple(map(float, mean)), tuple(map(float, std))
        valid = len(mean) == len(std) == 3 and min(std) > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"mean and std must be 3 numbers each, std > 0; got {mean!r}, {std!r}")
    if engine == "torch":
        from .torch.engine import TorchClassifier

        return TorchClassifier(arch, num_classes, device=device, seed=seed, mean=mean, std=std)
    if engine == "mxnet":
        from .mxnet.engine import MXNetClassifier

        return MXNetClassifier(arch, num_classes, device=device, seed=seed, mean=mean, std=std)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
