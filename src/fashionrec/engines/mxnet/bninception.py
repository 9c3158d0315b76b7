"""BN-Inception in Gluon: the same network as ``engines/torch/bninception.py``, layer for layer.

Children carry the torch model's names and positions (``stem.0.0`` the first convolution,
``stem.0.1`` its BatchNorm, ``blocks.3a.branch3dbl.2.0`` ...), so the structural parameter names
(``_collect_params_with_prefix``) are torch's state-dict names with BatchNorm's
``weight``/``bias`` called ``gamma``/``beta``. Pools, padding, BatchNorm epsilon and momentum
(Gluon's momentum is 1 - torch's) are torch's, so converted weights give the same outputs.

One training difference stays: Gluon updates BatchNorm's running variance with the biased batch
variance (torch: unbiased), a factor (n - 1) / n with n = batch x height x width values per
channel; it matters only for tiny maps and batches.
"""

from __future__ import annotations

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from ..arch_tables import BNINCEPTION_MODULES, check_builder_args
from ..registry import register_model

INCEPTION = BNINCEPTION_MODULES  # the widths table, shared by both engines
BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # Gluon's running = momentum * running + (1 - momentum) * batch: torch's 0.1

# kaiming normal, fan_out, ReLU gain (as the torch model's init)
_CONV_INIT = mx.init.MSRAPrelu(factor_type="out", slope=0.0)
_FC_INIT = mx.init.Normal(0.01)


class SamePadMaxPool(HybridBlock):
    """3x3 stride-2 max pool with "same" padding, as the torch model's ``SamePadMaxPool``.

    torch pads one pixel after an even side and one each side of an odd side: the windows end
    on the last pixel. Gluon cannot pad by the input's parity inside a hybridized graph, so the
    map is flipped, pooled with symmetric padding (windows then start on the first pixel of the
    flipped map, which is the last of the original) and flipped back: the same windows.
    """

    def hybrid_forward(self, F, x):
        x = F.reverse(x, axis=(2, 3))
        x = F.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
        return F.reverse(x, axis=(2, 3))


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> nn.HybridSequential:
    block = nn.HybridSequential()
    with block.name_scope():
        block.add(
            nn.Conv2D(cout, kernel, strides=stride, padding=padding, use_bias=bias, in_channels=cin,
                      weight_initializer=_CONV_INIT),
            nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPS, in_channels=cout),
            nn.Activation("relu"),
        )
    return block


def _sequential(*blocks: HybridBlock) -> nn.HybridSequential:
    seq = nn.HybridSequential()
    seq.add(*blocks)
    return seq


class Inception(HybridBlock):
    def __init__(self, cin: int, widths: tuple, bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        n1, r3, n3, rd, nd, pool, proj = widths
        stride = 2 if n1 == 0 else 1  # the stride-2 modules are the ones without a 1x1 branch
        with self.name_scope():
            self.branch1 = conv_bn_relu(cin, n1, 1, bias=bias) if n1 else None
            self.branch3 = _sequential(conv_bn_relu(cin, r3, 1, bias=bias),
                                       conv_bn_relu(r3, n3, 3, stride, 1, bias=bias))
            self.branch3dbl = _sequential(conv_bn_relu(cin, rd, 1, bias=bias),
                                          conv_bn_relu(rd, nd, 3, 1, 1, bias=bias),
                                          conv_bn_relu(nd, nd, 3, stride, 1, bias=bias))
            if stride == 2:
                self.pool = SamePadMaxPool()
            elif pool == "avg":
                self.pool = nn.AvgPool2D(3, strides=1, padding=1, ceil_mode=True, count_include_pad=True)
            else:
                self.pool = nn.MaxPool2D(3, strides=1, padding=1, ceil_mode=True)
            self.pool_proj = conv_bn_relu(cin, proj, 1, bias=bias) if proj else None
        self.out_channels = n1 + n3 + nd + (proj if proj else cin)

    def hybrid_forward(self, F, x):
        pooled = self.pool(x)
        outs = [self.branch3(x), self.branch3dbl(x), self.pool_proj(pooled) if self.pool_proj else pooled]
        if self.branch1 is not None:
            outs.insert(0, self.branch1(x))
        return F.concat(*outs, dim=1)


class BNInception(HybridBlock):
    """BN-Inception with a timm-style head split; ``pooled_features`` is the 1024-d pooled feature."""

    def __init__(self, num_classes: int = 1000, conv_bias: bool = True, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        check_builder_args(num_classes, dropout)
        self.num_classes = num_classes
        with self.name_scope():
            self.stem = _sequential(
                conv_bn_relu(3, 64, 7, 2, 3, bias=conv_bias),
                nn.MaxPool2D(3, strides=2, ceil_mode=True),
                conv_bn_relu(64, 64, 1, bias=conv_bias),
                conv_bn_relu(64, 192, 3, 1, 1, bias=conv_bias),
                nn.MaxPool2D(3, strides=2, ceil_mode=True),
            )
            # named children "3a" ... "5b", as the torch model's nn.Sequential(OrderedDict)
            self.blocks = nn.HybridSequential()
            cin = 192
            for name, widths in INCEPTION.items():
                with self.blocks.name_scope():
                    block = Inception(cin, widths, bias=conv_bias)
                self.blocks.register_child(block, name)
                cin = block.out_channels
            self.num_features = cin  # 1024
            self.global_pool = nn.GlobalAvgPool2D()
            self.flatten = nn.Flatten()
            self.drop = nn.Dropout(dropout) if dropout > 0 else None
            self.fc = nn.Dense(num_classes, in_units=self.num_features, weight_initializer=_FC_INIT)

    def reset_classifier(self, num_classes: int, ctx=None) -> None:
        """A new randomly initialised head of ``num_classes``, on ``ctx`` (default: the old head's)."""
        if ctx is None:
            try:
                ctx = self.fc.weight.list_ctx()
            except RuntimeError:  # not initialised yet: net.initialize() will do the new head too
                ctx = None
        with self.name_scope():
            fc = nn.Dense(num_classes, in_units=self.num_features, weight_initializer=_FC_INIT)
        if ctx is not None:
            fc.initialize(ctx=ctx)
        fc.hybridize(self._active, **dict(self._flags))  # hybridized like the rest of the network
        self.fc = fc
        self.num_classes = num_classes

    def forward_features(self, x):
        return self.blocks(self.stem(x))

    def forward_head(self, x, pre_logits: bool = False):
        x = self.flatten(self.global_pool(x))
        if pre_logits:
            return x
        return self.fc(self.drop(x) if self.drop is not None else x)

    def pooled_features(self, x):
        """The recommender's 1024-d feature: the network with its softmax head stripped."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def hybrid_forward(self, F, x):
        return self.forward_head(self.forward_features(x))


@register_model("bninception")
def bninception(num_classes: int = 1000, conv_bias: bool = True, dropout: float = 0.0) -> BNInception:
    return BNInception(num_classes=num_classes, conv_bias=conv_bias, dropout=dropout)
