"""Weights from one engine to the other: torch state dicts <-> Gluon parameter dicts, as numpy arrays.

Both engines build the same networks with children at the same names and positions, so a
parameter's structural name is the same in both (``features.0.weight``, ``blocks.3a.branch1.0.bias``)
except for BatchNorm, whose scale and shift are ``weight``/``bias`` in torch and ``gamma``/``beta``
in Gluon. The mapping is structural: a BatchNorm is any prefix that owns a ``running_mean``; its
``weight``/``bias`` are renamed, every other name is kept. Array layouts are the same in both
engines (convolution ``(out, in, kh, kw)``, fully connected ``(out, in)``), so values pass unchanged
(the arrays are not copied).

Every conversion is checked against the architecture: the torch model is built on the meta
device (no memory, no arithmetic) with the class count (from ``fc.weight``) and convolution bias
(from the first convolution) the weights have, and missing or unexpected names and wrong shapes
are reported together in one ``ValueError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from .base import check_state
from .factory import get_builder
from .registry import engine_names, engine_spec, list_archs

TORCH_TO_GLUON_BN = {"weight": "gamma", "bias": "beta"}
GLUON_TO_TORCH_BN = {v: k for k, v in TORCH_TO_GLUON_BN.items()}
_RUNNING_MEAN = ".running_mean"
_STEP_COUNTER = ".num_batches_tracked"  # torch's BatchNorm step counter: not a weight, Gluon has none


def _rename_batchnorm(state: Mapping[str, object], leaves: Mapping[str, str]) -> dict[str, object]:
    """Rename the ``leaves`` of every BatchNorm (a prefix owning a ``running_mean``); keep other names."""
    batchnorms = {k[: -len(_RUNNING_MEAN)] for k in state if k.endswith(_RUNNING_MEAN)}
    out = {}
    for name, value in state.items():
        prefix, _, leaf = name.rpartition(".")
        if prefix in batchnorms and leaf in leaves:
            name = f"{prefix}.{leaves[leaf]}"
        out[name] = value
    return out


def _check_arch(arch: str) -> None:
    """The shapes come from the torch network: an architecture torch lacks cannot be checked."""
    if arch not in list_archs("torch"):
        raise ValueError(f"arch must be one of {', '.join(list_archs('torch'))}; got {arch!r}")


def torch_shapes(arch: str, num_classes: int, conv_bias: bool = True) -> dict[str, tuple]:
    """Parameter and buffer shapes of the torch ``arch`` (state-dict names, no step counters)."""
    _check_arch(arch)
    return dict(_torch_shapes(arch, num_classes, conv_bias))


@lru_cache(maxsize=16)
def _torch_shapes(arch: str, num_classes: int, conv_bias: bool) -> tuple[tuple[str, tuple], ...]:
    import torch

    build = get_builder("torch", arch)
    # conv_bias only for the builders that have the option (BN-Inception; AlexNet's convs always have one)
    options = {"conv_bias": conv_bias} if "conv_bias" in inspect.signature(build).parameters else {}
    with torch.device("meta"):  # shapes only: nothing allocated, no initialisation arithmetic
        model = build(num_classes, **options)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items() if not k.endswith(_STEP_COUNTER))


def _expected_torch_shapes(arch: str, state: Mapping[str, np.ndarray], what: str) -> dict[str, tuple]:
    """The torch shapes for ``arch`` with the class count and conv bias that ``state`` has."""
    _check_arch(arch)  # before looking into the weights: the arch is the caller's mistake
    if "fc.weight" not in state or len(np.shape(state["fc.weight"])) != 2:
        raise ValueError(f"{what} have no 2-d 'fc.weight' (the classifier): not {arch} weights")
    num_classes = int(np.shape(state["fc.weight"])[0])
    return torch_shapes(arch, num_classes, conv_bias="stem.0.0.bias" in state)


def _checked_torch_state(arch: str, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A torch state dict of ``arch`` without step counters, checked against the network."""
    state = {k: v for k, v in state.items() if not k.endswith(_STEP_COUNTER)}
    check_state(_expected_torch_shapes(arch, state, "torch weights"), state, f"torch {arch} weights")
    return state


def torch_to_gluon(arch: str, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A torch state dict of ``arch`` (numpy arrays) as Gluon parameters (structural names)."""
    return _rename_batchnorm(_checked_torch_state(arch, state), TORCH_TO_GLUON_BN)


def gluon_to_torch(arch: str, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Gluon parameters of ``arch`` (structural names, numpy arrays) as a torch state dict.

    BatchNorm's ``num_batches_tracked`` is left out: load with ``strict=False`` or
    :func:`fashionrec.engines.torch.weights.set_weights`.
    """
    expected = _rename_batchnorm(_expected_torch_shapes(arch, params, "Gluon weights"), TORCH_TO_GLUON_BN)
    check_state(expected, params, f"Gluon {arch} weights")
    return _rename_batchnorm(params, GLUON_TO_TORCH_BN)


def convert_weights(arch: str, weights: Mapping[str, np.ndarray], source: str, target: str) -> dict[str, np.ndarray]:
    """Weights of ``arch`` from engine ``source`` to engine ``target`` (registered engines), checked.

    The weights pass through torch's names (each engine's ``param_names`` in the registry says
    which names its ``get_weights`` uses); same-engine weights are checked and come back unchanged.
    """
    naming = {}
    for label, engine in (("source", source), ("target", target)):
        if engine not in engine_names():
            raise ValueError(f"{label} must be one of {', '.join(engine_names())}; got {engine!r}")
        naming[label] = engine_spec(engine).param_names
    state = _checked_torch_state(arch, weights) if naming["source"] == "torch" else gluon_to_torch(arch, weights)
    return state if naming["target"] == "torch" else _rename_batchnorm(state, TORCH_TO_GLUON_BN)
