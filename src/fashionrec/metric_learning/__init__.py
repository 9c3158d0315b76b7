"""Metric learning: an embedding trained end to end for retrieval (the paper's "Siamese" future work).

``fashionrec metric -c configs/metric/<name>.yaml`` trains the backbone's feature map, global
average + max pooling and a linear, L2-normalised embedding with Proxy-Anchor, Multi-Similarity,
contrastive or semi-hard triplet loss (pytorch-metric-learning) on class-balanced batches of
photos grouped by item (DeepFashion In-shop or a shop's CSV), stopping early on the validation
Recall@1. Torch engine only.

* ``config.py`` -- the stage's YAML (:class:`MetricConfig`);
* ``losses/`` -- the losses, one registered module each (its parameters and its builder);
* ``sampler.py`` -- class-balanced batches from (seed, epoch);
* ``model.py`` -- the embedding network and its trainer (torch);
* ``embedding_scores.py`` -- embedding a split, Recall@K / MAP@R of a run;
* ``plots.py`` -- the history curves.

The training loop is the shared :class:`fashionrec.training.Trainer`; what this stage asks of it is the
``metric_learning`` objective (:mod:`fashionrec.training.objectives.metric_learning`).
"""
