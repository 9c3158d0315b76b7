"""Build a :class:`~fashionrec.engines.base.Classifier` by engine and architecture name (timm's ``_factory.py``).

This is the one module that imports engines and architecture files by name, and only the ones
asked for: building a torch classifier never imports mxnet, and asking for mxnet where it is
not installed is a one-line :class:`~fashionrec.errors.UserError` saying
``pip install fashionrec[mxnet]``. The imports run one way: the factory imports the engines and
the registry, the engines import the registry and ``base``, nothing imports the factory back.
An engine's classifier receives its network builder from here (``build_network``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..data.images import CHANNEL_ORDERS, IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALES
from ..errors import UserError
from .base import Classifier
from .registry import architecture_module, check_arch, engine_spec, registered_builder


def require(engine: str) -> None:
    """Import what ``engine`` runs on, or a one-line UserError saying how to install it."""
    spec = engine_spec(engine)
    how = f"pip install fashionrec[{spec.extra}]" if spec.extra else f"pip install {spec.requires}"
    try:
        importlib.import_module(spec.requires)
    except ModuleNotFoundError as e:
        if e.name != spec.requires:  # something inside it is missing: a broken install
            raise UserError(f"engine {engine}: {spec.requires} is installed but does not import ({e}); "
                            f"reinstall it with `{how}`") from None
        raise UserError(f"engine {engine} needs {spec.requires}, which is not installed: `{how}`") from None
    except Exception as e:  # noqa: BLE001 - e.g. mxnet 1.9 under numpy >= 1.24 fails with AttributeError
        raise UserError(f"engine {engine}: {spec.requires} does not import ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:100]}); `{how}` installs it with the versions it needs") from None


def get_builder(engine: str, arch: str) -> Callable:
    """The network builder of ``arch`` on ``engine``, importing its file (and the engine's framework)."""
    check_arch(engine, arch)
    require(engine)
    importlib.import_module(architecture_module(engine, arch))
    return registered_builder(engine, arch)


def classifier_class(engine: str) -> type:
    """The engine's Classifier class, importing its module (and the engine's framework)."""
    require(engine)
    module, _, name = engine_spec(engine).classifier.partition(":")
    return getattr(importlib.import_module(module), name)


def check_normalization(mean, std, channels: str = "rgb", scale: float = 1.0) -> dict:
    """The input convention as plain values, or a ValueError saying what is allowed."""
    try:
        mean, std = tuple(map(float, mean)), tuple(map(float, std))
        valid = len(mean) == len(std) == 3 and min(std) > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"mean and std must be 3 numbers each, std > 0; got {mean!r}, {std!r}")
    if channels not in CHANNEL_ORDERS:
        raise ValueError(f"channels must be one of {', '.join(CHANNEL_ORDERS)}; got {channels!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or float(scale) not in PIXEL_SCALES:
        raise ValueError(f"scale must be one of {', '.join(f'{s:g}' for s in PIXEL_SCALES)}; got {scale!r}")
    return {"mean": mean, "std": std, "channels": channels, "scale": float(scale)}


def build_classifier(engine: str, arch: str, num_classes: int, device: str = "auto", seed: int = 0,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD, channels: str = "rgb", scale: float = 1.0) -> Classifier:
    """Build a classifier of ``arch`` with ``num_classes`` outputs on ``engine``.

    Its input convention normalises the uint8 images it is given: channel order ``channels``
    (``rgb`` or ``bgr``) and per-channel ``mean`` and ``std`` in that order, in units where a
    full pixel is ``scale`` (1: torchvision's ImageNet convention; 255: Caffe's). Unknown names
    and a bad convention are ValueErrors naming what is allowed.
    """
    check_arch(engine, arch)
    norm = check_normalization(mean, std, channels, scale)
    return classifier_class(engine)(arch, num_classes, device=device, seed=seed, **norm,
                                    build_network=get_builder(engine, arch))


__all__ = ["build_classifier", "check_normalization", "classifier_class", "get_builder", "require"]
