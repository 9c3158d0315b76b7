"""The metric-learning losses, one module each (pytorch-metric-learning's loss and miner).

A loss is a small ``@register_loss`` dataclass (:class:`MetricLoss`): ``name``, its parameters as fields
with their ranges, and ``build``. The config reads ``loss: {name: multi_similarity, alpha: 2, beta: 50,
base: 0.5, epsilon: 0.1}`` against that loss's own fields; a key another loss owns is a one-line error.
Adding a loss is one new module with such a class: every module of this package is imported when the
registry is first used (a module elsewhere is a plugin, see :mod:`fashionrec.registry`). Importing this
package imports no framework: ``build`` imports pytorch-metric-learning.

============================  ==================================================================
loss                          parameters
============================  ==================================================================
``proxy_anchor``              ``alpha``, ``delta`` (the margin), ``proxy_lr_factor`` (Kim et al. 2020)
``multi_similarity``          ``alpha``, ``beta``, ``base`` (lambda), the miner's ``epsilon`` (Wang et al. 2019)
``contrastive``               ``pos_margin``, ``neg_margin`` (Hadsell et al. 2006: the paper's Siamese pairs)
``triplet``                   ``margin``; semi-hard triplets mined in the batch
============================  ==================================================================
"""

from .base import FLAT_KEYS, LOSSES, MetricLoss, loss_choices, loss_class, loss_names, register_loss, upgrade_flat_keys

__all__ = ["FLAT_KEYS", "LOSSES", "MetricLoss", "loss_choices", "loss_class", "loss_names", "register_loss",
           "upgrade_flat_keys"]
