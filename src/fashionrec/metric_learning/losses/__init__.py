"""The metric-learning losses, one module each (pytorch-metric-learning's loss and miner).

A loss is a small ``@register_loss`` dataclass (:class:`MetricLoss`): ``name``, its parameters as fields
with their ranges, and ``build``. The config reads ``loss: {name: multi_similarity, alpha: 2, beta: 50,
base: 0.5, epsilon: 0.1}`` against that loss's own fields; a key another loss owns is a one-line error.
Adding a loss is one new module with such a class, imported once (here, or anywhere before its config is
read). Importing this package imports no framework: ``build`` imports pytorch-metric-learning.

============================  ==================================================================
loss                          parameters
============================  ==================================================================
``proxy_anchor``              ``alpha``, ``delta`` (the margin), ``proxy_lr_factor`` (Kim et al. 2020)
``multi_similarity``          ``alpha``, ``beta``, ``base`` (lambda), the miner's ``epsilon`` (Wang et al. 2019)
``contrastive``               ``pos_margin``, ``neg_margin`` (Hadsell et al. 2006: the paper's Siamese pairs)
``triplet``                   ``margin``; semi-hard triplets mined in the batch
============================  ==================================================================
"""

from . import contrastive, multi_similarity, proxy_anchor, triplet  # noqa: F401  (each registers its loss)
from .base import FLAT_KEYS, MetricLoss, loss_choices, loss_class, loss_names, register_loss, upgrade_flat_keys

__all__ = ["FLAT_KEYS", "MetricLoss", "loss_choices", "loss_class", "loss_names", "register_loss",
           "upgrade_flat_keys"]
