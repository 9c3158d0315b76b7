"""``contrastive``: contrastive pairs (Hadsell et al. 2006, the paper's "Siamese" baseline), pair-margin mined."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ...configtypes import Range
from .base import MetricLoss, register_loss


@register_loss
@dataclass
class Contrastive(MetricLoss):
    """Margins on the L2 distance between unit embeddings (in [0, 2]); the miner keeps the pairs violating them."""

    name = "contrastive"
    pos_margin: Annotated[float, Range(ge=0, le=2)] = 0.0
    neg_margin: Annotated[float, Range(ge=0, le=2)] = 0.5

    def build(self, num_items, embedding_dim):
        from pytorch_metric_learning import losses, miners

        return (losses.ContrastiveLoss(pos_margin=self.pos_margin, neg_margin=self.neg_margin),
                miners.PairMarginMiner(pos_margin=self.pos_margin, neg_margin=self.neg_margin))
