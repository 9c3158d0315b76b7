"""``triplet``: triplet margin loss on semi-hard triplets mined in the batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ...configtypes import Range
from .base import MetricLoss, register_loss


@register_loss
@dataclass
class Triplet(MetricLoss):
    name = "triplet"
    renamed = {"triplet_margin": "margin"}
    margin: Annotated[float, Range(ge=0, le=2)] = 0.1  # on the L2 distance between unit embeddings (in [0, 2])

    def build(self, num_items, embedding_dim):
        from pytorch_metric_learning import losses, miners

        return (losses.TripletMarginLoss(margin=self.margin),
                miners.TripletMarginMiner(margin=self.margin, type_of_triplets="semihard"))
