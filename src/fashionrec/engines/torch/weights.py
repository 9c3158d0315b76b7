"""A torch model's weights as a dict of numpy arrays (its state dict, BatchNorm buffers included)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..base import check_state

_SKIP = ".num_batches_tracked"  # a step counter, not a weight; momentum-based BN never reads it


def get_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """The state dict as numpy arrays on the CPU, without BatchNorm's ``num_batches_tracked``."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items() if not k.endswith(_SKIP)}


def set_weights(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Load ``weights`` into ``model``: names and shapes must match exactly (ValueError listing the misfits)."""
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(_SKIP)}
    check_state({k: tuple(v.shape) for k, v in state.items()},
                {k: v for k, v in weights.items() if not k.endswith(_SKIP)}, "weights")
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(weights[name])))
