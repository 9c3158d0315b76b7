"""BN-Inception (Ioffe & Szegedy, 2015), as the original Caffe model and its public ports.

Stem conv7/2(64), pool, conv1(64), conv3(192), pool; inception 3a, 3b, 3c (stride 2), 4a-4e
(4e stride 2), 5a, 5b with the published branch widths; BatchNorm + ReLU after every
convolution; global average pooling to a 1024-d feature. Pools use ceil mode as in Caffe
(the stride-2 modules' pools use "same" padding, identical to it at 224 px, so any input size works).
Convolutions carry a bias by default (as the Caffe model), giving 11,295,240 trainable
parameters with a 1000-class head (11,285,224 with ``conv_bias=False``). Global pooling lets the
network run at 64-128 px as well as 224 px.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..arch_tables import BNINCEPTION_MODULES, check_builder_args
from ..registry import register_model

INCEPTION = BNINCEPTION_MODULES  # the widths table, shared by both engines


class SamePadMaxPool(nn.Module):
    """3x3 stride-2 max pool with "same" padding: ceil(H/2) outputs, like the stride-2 conv branches.

    On even sizes (224 px and its stages) this is exactly Caffe's ceil-mode pool; on odd sizes,
    where Caffe's pool and the conv branches disagree by one pixel, it pads one pixel each side.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # "same" padding in total: 1 on an even side (after), 2 on an odd side (1 before, 1 after)
        x = F.pad(x, (w % 2, 1, h % 2, 1), value=float("-inf"))
        return F.max_pool2d(x, 3, 2)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias),
            nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1),
            nn.ReLU(inplace=True),
        )


class Inception(nn.Module):
    def __init__(self, cin: int, widths: tuple, bias: bool = True):
        super().__init__()
        n1, r3, n3, rd, nd, pool, proj = widths
        stride = 2 if n1 == 0 else 1  # the stride-2 modules are the ones without a 1x1 branch
        self.branch1 = ConvBNReLU(cin, n1, 1, bias=bias) if n1 else None
        self.branch3 = nn.Sequential(ConvBNReLU(cin, r3, 1, bias=bias),
                                     ConvBNReLU(r3, n3, 3, stride, 1, bias=bias))
        self.branch3dbl = nn.Sequential(ConvBNReLU(cin, rd, 1, bias=bias), ConvBNReLU(rd, nd, 3, 1, 1, bias=bias),
                                        ConvBNReLU(nd, nd, 3, stride, 1, bias=bias))
        if stride == 2:
            self.pool = SamePadMaxPool()
        elif pool == "avg":
            self.pool = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        else:
            self.pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.pool_proj = ConvBNReLU(cin, proj, 1, bias=bias) if proj else None
        self.out_channels = n1 + n3 + nd + (proj if proj else cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x)
        outs = [self.branch3(x), self.branch3dbl(x), self.pool_proj(pooled) if self.pool_proj else pooled]
        if self.branch1 is not None:
            outs.insert(0, self.branch1(x))
        return torch.cat(outs, 1)


class BNInception(nn.Module):
    def __init__(self, num_classes: int = 1000, conv_bias: bool = True, dropout: float = 0.0):
        super().__init__()
        check_builder_args(num_classes, dropout)
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            ConvBNReLU(3, 64, 7, 2, 3, bias=conv_bias),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            ConvBNReLU(64, 64, 1, bias=conv_bias),
            ConvBNReLU(64, 192, 3, 1, 1, bias=conv_bias),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
        )
        blocks, cin = [], 192
        for name, widths in INCEPTION.items():
            block = Inception(cin, widths, bias=conv_bias)
            blocks.append((name, block))
            cin = block.out_channels
        self.blocks = nn.Sequential(OrderedDict(blocks))
        self.num_features = cin  # 1024
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes).to(self.fc.weight.device)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        return x if pre_logits else self.fc(self.drop(x))

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """The recommender's 1024-d feature: the network with its softmax head stripped."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("bninception")
def bninception(num_classes: int = 1000, conv_bias: bool = True, dropout: float = 0.0) -> BNInception:
    return BNInception(num_classes=num_classes, conv_bias=conv_bias, dropout=dropout)
