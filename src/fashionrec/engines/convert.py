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

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

ARCHS = ("alexnet", "bninception")
ENGINES = ("torch", "mxnet")
TORCH_TO_GLUON_BN = {"weight": "gamma", "bias": "beta"}
GLUON_TO_TORCH_BN = {v: k for k, v in TORCH_TO_GLUON_BN.items()}
_RUNNING_MEAN = ".running_mean"
_STEP_COUNTER = ".num_batches_tracked"  # torch's BatchNorm step counter: not a weight, Gluon has none
_SHOW = 6  # names listed per kind of misfit in an error


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


def torch_shapes(arch: str, num_classes: int, conv_bias: bool = True) -> dict[str, tuple]:
    """Parameter and buffer shapes of the torch ``arch`` (state-dict names, no step counters)."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    return dict(_torch_shapes(arch, num_classes, conv_bias))


@lru_cache(maxsize=16)
def _torch_shapes(arch: str, num_classes: int, conv_bias: bool) -> tuple[tuple[str, tuple], ...]:
    import torch

    from .torch import alexnet, bninception

    with torch.device("meta"):  # shapes only: nothing allocated, no initialisation arithmetic
        model = alexnet(num_classes) if arch == "alexnet" else bninception(num_classes, conv_bias=conv_bias)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items() if not k.endswith(_STEP_COUNTER))


def _expected_torch_shapes(arch: str, state: Mapping[str, np.ndarray], what: str) -> dict[str, tuple]:
    """The torch shapes for ``arch`` with the class count and conv bias that ``state`` has."""
    if arch not in ARCHS:  # before looking into the weights: the arch is the caller's mistake
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    if "fc.weight" not in state or len(np.shape(state["fc.weight"])) != 2:
        raise ValueError(f"{what} have no 2-d 'fc.weight' (the classifier): not {arch} weights")
    num_classes = int(np.shape(state["fc.weight"])[0])
    return torch_shapes(arch, num_classes, conv_bias="stem.0.0.bias" in state)


def torch_to_gluon(arch: str, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A torch state dict of ``arch`` (numpy arrays) as Gluon parameters (structural names)."""
    state = {k: v for k, v in state.items() if not k.endswith(_STEP_COUNTER)}
    check_state(_expected_torch_shapes(arch, state, "torch weights"), state, f"torch {arch} weights")
    return _rename_batchnorm(state, TORCH_TO_GLUON_BN)


def gluon_to_torch(arch: str, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Gluon parameters of ``arch`` (structural names, numpy arrays) as a torch state dict.

    BatchNorm's ``num_batches_tracked`` is left out: load with ``strict=False`` or
    :func:`fashionrec.engines.torch.set_weights`.
    """
    expected = _rename_batchnorm(_expected_torch_shapes(arch, params, "Gluon weights"), TORCH_TO_GLUON_BN)
    check_state(expected, params, f"Gluon {arch} weights")
    return _rename_batchnorm(params, GLUON_TO_TORCH_BN)


def convert_weights(arch: str, weights: Mapping[str, np.ndarray], source: str, target: str) -> dict[str, np.ndarray]:
    """Weights of ``arch`` from engine ``source`` to engine ``target`` (``torch`` or ``mxnet``), checked."""
    for label, engine in (("source", source), ("target", target)):
        if engine not in ENGINES:
            raise ValueError(f"{label} must be one of {', '.join(ENGINES)}; got {engine!r}")
    if source == target:  # nothing to rename, but the weights are still checked
        there, back = (torch_to_gluon, gluon_to_torch) if source == "torch" else (gluon_to_torch, torch_to_gluon)
        return back(arch, there(arch, weights))
    return torch_to_gluon(arch, weights) if source == "torch" else gluon_to_torch(arch, weights)
