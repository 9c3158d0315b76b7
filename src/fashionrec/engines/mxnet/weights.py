"""A Gluon network's weights as a dict of numpy arrays, under structural names.

Names come from ``_collect_params_with_prefix`` (``features.0.weight``, ``stem.0.1.gamma``),
which follow the attribute and position of each child, not Gluon's global prefix counters
(``bninception3_conv7_weight``): they are the same for every instance and match the torch
state-dict names up to BatchNorm's leaf names (see :mod:`fashionrec.engines.convert`).
BatchNorm running statistics are included.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet.gluon import Block

from ..base import check_state


def get_weights(net: Block) -> dict[str, np.ndarray]:
    """Every parameter of ``net`` (running statistics included) as float arrays on the CPU."""
    return {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}


def set_weights(net: Block, weights: dict[str, np.ndarray], ctx=None) -> None:
    """Load ``weights`` into ``net``: names and shapes must match exactly (ValueError listing the misfits).

    Parameters already initialised keep their contexts; others are initialised on ``ctx``
    (default CPU).
    """
    params = net._collect_params_with_prefix()
    check_state({name: p.shape for name, p in params.items()}, weights, "weights")
    for name, p in params.items():
        data = mx.nd.array(np.asarray(weights[name]), dtype=p.dtype)
        try:
            p.list_ctx()
        except RuntimeError:  # not initialised yet
            p._load_init(data, ctx or mx.cpu())
        else:
            p.set_data(data)
