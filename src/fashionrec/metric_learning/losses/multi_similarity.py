"""``multi_similarity``: Multi-Similarity loss and its miner (Wang et al., CVPR 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ...configtypes import Range
from .base import MetricLoss, register_loss


@register_loss
@dataclass
class MultiSimilarity(MetricLoss):
    """Pairs mined within ``epsilon`` of the hardest; pytorch-metric-learning's defaults."""

    name = "multi_similarity"
    renamed = {"ms_alpha": "alpha", "ms_beta": "beta", "ms_base": "base", "ms_epsilon": "epsilon"}
    alpha: Annotated[float, Range(gt=0, le=1000)] = 2.0  # positive pairs' weight
    beta: Annotated[float, Range(gt=0, le=1000)] = 50.0  # negative pairs' weight
    base: Annotated[float, Range(ge=-1, le=1)] = 0.5  # lambda, the similarity margin (cosines in [-1, 1])
    epsilon: Annotated[float, Range(ge=0, le=2)] = 0.1  # the miner's margin

    def build(self, num_items, embedding_dim):
        from pytorch_metric_learning import losses, miners

        return (losses.MultiSimilarityLoss(alpha=self.alpha, beta=self.beta, base=self.base),
                miners.MultiSimilarityMiner(epsilon=self.epsilon))
