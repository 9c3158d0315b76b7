"""``proxy_anchor``: Proxy-Anchor loss (Kim et al., CVPR 2020), one learned proxy per training item."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ...configtypes import Range
from .base import MetricLoss, register_loss


@register_loss
@dataclass
class ProxyAnchor(MetricLoss):
    """Similarities are cosines of unit embeddings (in [-1, 1]). No miner: every proxy is an anchor."""

    name = "proxy_anchor"
    alpha: Annotated[float, Range(gt=0, le=1000)] = 32.0  # the scale
    delta: Annotated[float, Range(ge=0, le=1)] = 0.1  # the margin
    proxy_lr_factor: Annotated[float, Range(gt=0, le=10_000)] = 100.0  # the proxies' lr as a multiple of train.lr

    def build(self, num_items, embedding_dim):
        from pytorch_metric_learning import losses

        return losses.ProxyAnchorLoss(num_items, embedding_dim, margin=self.delta, alpha=self.alpha), None

    @property
    def parameter_lr_factor(self):
        return self.proxy_lr_factor
