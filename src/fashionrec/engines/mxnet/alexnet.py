"""AlexNet in Gluon: the same network as ``engines/torch/alexnet.py``, layer for layer.

Children sit at the same positions as in the torch model (``features.0`` is the first
convolution, ``pre_logits.4`` the second fully connected layer, ``fc`` the classifier), so
the structural parameter names (``_collect_params_with_prefix``) match torch's state-dict
names and :mod:`fashionrec.engines.convert` only renames BatchNorm leaves (AlexNet has none).
Adaptive average pooling uses torch's bins (start ``floor(i*H/6)``, end ``ceil((i+1)*H/6)``),
so the network runs at inputs other than 224 px and gives the same numbers as torch there.
"""

from __future__ import annotations

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from ..arch_tables import check_builder_args
from ..registry import register_model

# torch's default Linear/Conv init draws U(+-1/sqrt(fan_in)); Xavier 'in' with magnitude 1 is that.
_TORCH_LIKE_INIT = mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1)


class AdaptiveAvgPool2D(HybridBlock):
    """torch's ``AdaptiveAvgPool2d``: MXNet's contrib operator computes the same bins."""

    def __init__(self, output_size: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self._output_size = tuple(output_size)

    def hybrid_forward(self, F, x):
        return F.contrib.AdaptiveAvgPooling2D(x, output_size=self._output_size)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Conv2D:
    return nn.Conv2D(cout, kernel, strides=stride, padding=padding, in_channels=cin,
                     weight_initializer=_TORCH_LIKE_INIT)


def _dense(cin: int, cout: int) -> nn.Dense:
    return nn.Dense(cout, in_units=cin, weight_initializer=_TORCH_LIKE_INIT)


class AlexNet(HybridBlock):
    """AlexNet with a timm-style head split; ``pooled_features`` is the 4096-d penultimate feature."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        check_builder_args(num_classes, dropout)
        self.num_classes = num_classes
        self.num_features = 4096
        with self.name_scope():
            self.features = nn.HybridSequential()
            self.features.add(
                _conv(3, 64, 11, 4, 2), nn.Activation("relu"), nn.MaxPool2D(3, 2),
                _conv(64, 192, 5, 1, 2), nn.Activation("relu"), nn.MaxPool2D(3, 2),
                _conv(192, 384, 3, 1, 1), nn.Activation("relu"),
                _conv(384, 256, 3, 1, 1), nn.Activation("relu"),
                _conv(256, 256, 3, 1, 1), nn.Activation("relu"), nn.MaxPool2D(3, 2),
            )
            self.avgpool = AdaptiveAvgPool2D((6, 6))
            self.flatten = nn.Flatten()
            self.pre_logits = nn.HybridSequential()
            self.pre_logits.add(
                nn.Dropout(dropout), _dense(256 * 6 * 6, 4096), nn.Activation("relu"),
                nn.Dropout(dropout), _dense(4096, 4096), nn.Activation("relu"),
            )
            self.fc = _dense(4096, num_classes)

    def reset_classifier(self, num_classes: int, ctx=None) -> None:
        """A new randomly initialised head of ``num_classes``, on ``ctx`` (default: the old head's)."""
        if ctx is None:
            try:
                ctx = self.fc.weight.list_ctx()
            except RuntimeError:  # not initialised yet: net.initialize() will do the new head too
                ctx = None
        with self.name_scope():
            fc = _dense(self.num_features, num_classes)
        if ctx is not None:
            fc.initialize(ctx=ctx)
        fc.hybridize(self._active, **dict(self._flags))  # hybridized like the rest of the network
        self.fc = fc
        self.num_classes = num_classes

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = self.pre_logits(self.flatten(self.avgpool(x)))
        return x if pre_logits else self.fc(x)

    def pooled_features(self, x):
        """The recommender's feature: the network with its softmax head stripped."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def hybrid_forward(self, F, x):
        return self.forward_head(self.forward_features(x))


@register_model("alexnet")
def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    return AlexNet(num_classes=num_classes, dropout=dropout)
