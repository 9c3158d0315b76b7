"""The registry of engines and architectures: every name the rest of the toolkit may use, in one place.

Importing this module imports no framework (no torch, no mxnet) and no engine: the CLI's
choices and the config checks (``engine``, ``model.arch``, ``precision``) are derived from it
at start-up. It holds names and specs only; :mod:`fashionrec.engines.factory` imports an
engine's classifier (registered below by dotted path) and an architecture's file when one is
built, so a torch-only install never imports mxnet. Architectures register themselves in
their own files with ``@register_model``, following timm's ``_registry.py``.

**Add an architecture** ``resnet`` to the torch engine: write ``engines/torch/resnet.py`` with
its network and a builder::

    @register_model("resnet")
    def resnet(num_classes: int = 1000, dropout: float = 0.0) -> ResNet: ...

The network has ``num_classes``, ``num_features``, ``forward_features``, ``forward_head(x,
pre_logits=False)`` and ``reset_classifier(num_classes)``, as the others do. One file per network
definition: the registry lists an engine's architectures from the ``@register_model("name")`` lines
of the files in its package (``engine.py``, ``weights.py`` and ``parallel.py`` aside) without
importing them, so a family of sizes (``efficientnet_lite.py``: lite0-lite4) is one file with one
builder per size; a file with a single architecture is named after it. ``tests/test_contract.py``
then checks the new network through the Classifier interface. An architecture on one engine
only is fine: asking the other engine for it is an error naming the architectures it has.

**Add an engine**: a package ``engines/<name>/`` with ``engine.py`` (a Classifier class taking
``(arch, num_classes, device=, seed=, mean=, std=, build_network=)``) and its architecture
files, plus one :func:`register_engine` line at the bottom of this module (and its eval-mode
reference forward in ``tests/test_contract.py``).
"""

from __future__ import annotations

import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import UserError

_HERE = Path(__file__).resolve().parent
# an engine package's modules that are not architectures (names starting with "_" are not either)
SUPPORT_MODULES = frozenset({"engine", "weights", "parallel"})  # the rest of an engine, not architectures


@dataclass(frozen=True)
class EngineSpec:
    """An engine as the registry knows it, without importing it."""

    name: str
    classifier: str  # "module:Class" of its Classifier, imported when a classifier is built
    weights_file: str  # the file a run keeps its best weights in
    precisions: tuple[str, ...]  # of inference, the default first
    param_names: str  # how its get_weights() names parameters: "torch" (state dict) or "gluon" (convert.py)
    requires: str  # the top-level module it runs on
    extra: str | None = None  # the pip extra that installs ``requires``, when it is optional

    @property
    def package(self) -> str:
        return f"{__package__}.{self.name}"


_ENGINES: dict[str, EngineSpec] = {}
_BUILDERS: dict[tuple[str, str], Callable] = {}  # (engine, arch) -> builder, filled as files are imported


def register_engine(spec: EngineSpec) -> EngineSpec:
    if spec.name in _ENGINES:
        raise ValueError(f"engine {spec.name!r} is already registered")
    if not (_HERE / spec.name).is_dir():
        raise ValueError(f"engine {spec.name!r}: no package {_HERE / spec.name}")
    _ENGINES[spec.name] = spec
    return spec


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Register the decorated builder as architecture ``name`` of the engine whose package holds it."""

    def register(builder: Callable) -> Callable:
        package, _, module = builder.__module__.rpartition(".")
        engine = next((e.name for e in _ENGINES.values() if e.package == package), None)
        if engine is None:
            raise RuntimeError(f"{builder.__module__}: @register_model outside a registered engine's package")
        if _architectures(engine).get(name) != module:  # found by reading the file, before importing it
            raise RuntimeError(f"{builder.__module__}: registers {name!r}, which its source does not declare "
                               f"as @register_model({name!r}) on a line of its own")
        _BUILDERS[engine, name] = builder
        return builder

    return register


def engine_names() -> tuple[str, ...]:
    """The registered engines, in registration order (the default first)."""
    return tuple(_ENGINES)


def engine_spec(engine: str) -> EngineSpec:
    """The registered engine ``engine``, or a ValueError naming the engines there are."""
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {', '.join(_ENGINES)}; got {engine!r}")
    return _ENGINES[engine]


def list_archs(engine: str | None = None) -> tuple[str, ...]:
    """The architectures of ``engine`` (of any engine if None), sorted; nothing is imported."""
    engines = [engine_spec(engine).name] if engine is not None else _ENGINES
    return tuple(sorted({arch for name in engines for arch in _architectures(name)}))


_REGISTERS = re.compile(r"""^@register_model\(\s*["']([A-Za-z0-9_]+)["']\s*\)""", re.MULTILINE)


@cache
def _architectures(engine: str) -> dict[str, str]:
    """{architecture: the module of ``engine``'s package that registers it}, read from the sources."""
    found = {}
    for m in pkgutil.iter_modules([str(_HERE / engine)]):
        if m.ispkg or m.name.startswith("_") or m.name in SUPPORT_MODULES:
            continue
        for name in _REGISTERS.findall((_HERE / engine / f"{m.name}.py").read_text(encoding="utf-8")):
            if name in found:
                raise RuntimeError(f"architecture {name!r} of engine {engine} is registered in both "
                                   f"{found[name]}.py and {m.name}.py")
            found[name] = m.name
    return found


def architecture_module(engine: str, arch: str) -> str:
    """The dotted module that defines ``arch`` of ``engine`` (the factory imports it)."""
    check_arch(engine, arch)
    return f"{engine_spec(engine).package}.{_architectures(engine)[arch]}"


def check_arch(engine: str, arch: str) -> None:
    """A ValueError unless ``engine`` is registered and has architecture ``arch``."""
    archs = list_archs(engine)
    if arch not in archs:
        raise ValueError(f"arch must be one of {', '.join(archs)} (engine {engine}); got {arch!r}")


def precision_names() -> tuple[str, ...]:
    """Every inference precision some engine runs, fp32 first."""
    return tuple(dict.fromkeys(p for e in _ENGINES.values() for p in e.precisions))


def training_precisions(engine: str | None = None) -> tuple[str, ...]:
    """The ``train.precision`` values ``engine`` takes (of any engine if None): ``auto`` (the engine's
    best on its device) and the precisions it runs."""
    return ("auto", *(engine_spec(engine).precisions if engine is not None else precision_names()))


def check_training_precision(engine: str, precision: str) -> None:
    """A UserError unless ``engine`` trains in ``precision``; the training stages call it before reading data."""
    allowed = training_precisions(engine)
    if precision not in allowed:
        others = [e for e in _ENGINES if precision in training_precisions(e)]
        raise UserError(f"train.precision: {precision} training needs engine {' or '.join(others) or '?'}; engine "
                        f"{engine} takes {', '.join(allowed)}")


def registered_builder(engine: str, arch: str) -> Callable:
    """The builder ``arch``'s file registered for ``engine`` (the factory imports the file first)."""
    check_arch(engine, arch)
    if (engine, arch) not in _BUILDERS:
        raise RuntimeError(f"{engine_spec(engine).package}.{arch} defines no @register_model({arch!r}) builder")
    return _BUILDERS[engine, arch]


def weights_file(engine: str) -> str:
    return engine_spec(engine).weights_file


register_engine(EngineSpec(
    "torch", f"{__package__}.torch.engine:TorchClassifier", weights_file="weights.safetensors",
    precisions=("fp32", "bf16"),  # bf16 extracts ~1.8x faster on a CPU with AVX512-BF16
    param_names="torch", requires="torch"))
register_engine(EngineSpec(
    "mxnet", f"{__package__}.mxnet.engine:MXNetClassifier", weights_file="weights.params",
    precisions=("fp32",), param_names="gluon", requires="mxnet", extra="mxnet"))

# Snapshots of the registrations above, for annotations and CLI choices (``Literal[ENGINE_NAMES]``).
DEVICE_NAMES = ("auto", "cpu", "cuda")  # where a stage computes; auto: CUDA when present
# torch.compile's modes for the training step and extraction (torch engine); eager: not compiled (not 'off', which
# YAML reads as false). reduce-overhead adds CUDA
# graphs (fixed shapes: training batches with drop_last), max-autotune searches kernels (minutes of compiling)
COMPILE_MODES = ("eager", "default", "reduce-overhead", "max-autotune")
ENGINE_NAMES = engine_names()
ARCH_NAMES = list_archs()
PRECISION_NAMES = precision_names()
TRAINING_PRECISION_NAMES = training_precisions()

__all__ = ["ARCH_NAMES", "COMPILE_MODES", "ENGINE_NAMES", "EngineSpec", "PRECISION_NAMES", "TRAINING_PRECISION_NAMES",
           "architecture_module", "check_arch",
           "check_training_precision", "training_precisions",
           "engine_names", "engine_spec", "list_archs", "precision_names", "register_engine", "register_model",
           "registered_builder", "weights_file"]
