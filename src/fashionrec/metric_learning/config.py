"""The metric stage's configuration, loaded by :func:`fashionrec.config.load_config` like every stage's.

Defaults are Proxy-Anchor's In-shop recipe (Kim et al., CVPR 2020): batch 180 = 36 items x 5
images, AdamW lr 6e-4, weight decay 1e-4, proxies at 100x the lr, alpha 32, delta 0.1, one
warm-up epoch with the backbone frozen, the lr x 0.25 every 20 epochs, 224 px, 512-d.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from ..config import (
    BATCH,
    EPOCHS,
    FRACTION,
    INPUT_SIZE,
    ITEM_FORMATS,
    LR,
    PIXELS,
    SEED,
    WEIGHT_DECAY,
    AugmentConfig,
    LogConfig,
    OutputConfig,
    Range,
    TrainingBlock,
    load_config,
    read_yaml,
)
from ..configtypes import OneOf
from ..engines.registry import ARCH_NAMES, ENGINE_NAMES
from ..errors import ConfigError
from .losses import MetricLoss, loss_choices, loss_names, upgrade_flat_keys
from .sampler import check_batch

LOSSES = loss_names()  # the losses registered by fashionrec.metric_learning.losses (one module each)
# ``loss: {name: multi_similarity, alpha: 2, ...}``: the named loss's own keys (its dataclass's fields)
LossConfig = Annotated[MetricLoss, OneOf("loss", loss_choices, upgrade=upgrade_flat_keys)]


@dataclass
class RetrievalDataConfig:
    """Photos grouped by item (:mod:`fashionrec.data.inshop`).

    format: ``inshop`` (the In-shop benchmark root) or ``csv`` (``path,item_id[,split]``).
    """

    format: Annotated[str, ITEM_FORMATS]
    root: str
    # of the training items, held out for early stopping; 0: query->gallery
    val_fraction: Annotated[float, Range(ge=0, lt=1)] = 0.1
    test_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.5  # csv without a split column: share of the items tested
    split_seed: Annotated[int, SEED] = 0
    max_bad_fraction: Annotated[float, FRACTION] = 0.01
    max_pixels: Annotated[int, PIXELS] = 40_000_000
    skip_missing: bool = False
    cache: str | None = None  # a folder for the decoded, resized images (as data.cache of the classifier stages)


@dataclass
class EmbeddingModelConfig:
    arch: Literal[ARCH_NAMES]
    input_size: Annotated[int, INPUT_SIZE] = 224
    embedding_dim: Annotated[int, Range(ge=1, le=65536)] = 512


@dataclass(kw_only=True)
class MetricTrainConfig(TrainingBlock):
    """The metric-learning objective's ``train`` block: the shared keys (with this objective's defaults:
    AdamW at 6e-4 on batches of 180) and these."""

    lr: Annotated[float, LR] = 6e-4  # AdamW, backbone and embedding
    batch_size: Annotated[int, BATCH] = 180
    weight_decay: Annotated[float, WEIGHT_DECAY] = 1e-4
    max_epochs: Annotated[int, EPOCHS] = 60
    patience: Annotated[int, EPOCHS] = 5  # early stopping: epochs without a higher validation Recall@1
    images_per_item: Annotated[int, Range(ge=2, le=1000)] = 5  # m: each batch holds batch_size / m items
    schedule: Literal["step", "cosine", "constant"] = "step"
    step_epochs: Annotated[int, EPOCHS] = 20  # step: the lr x gamma every step_epochs epochs
    gamma: Annotated[float, Range(gt=0, le=1)] = 0.25
    # first epochs with the backbone's weights frozen (embedding and proxies learn;
    # its BatchNorm statistics still adapt, as in Kim et al.'s code)
    warmup_epochs: Annotated[int, Range(ge=0, le=100_000)] = 1
    # of the network's gradients; null: no clipping
    clip_grad_norm: Annotated[float, Range(gt=0, le=1e6)] | None = 10.0
    eval_batch_size: Annotated[int, BATCH] = 64


@dataclass
class MetricConfig:
    """A metric-learning run (``fashionrec metric``)."""

    stage: Literal["metric"]
    data: RetrievalDataConfig
    model: EmbeddingModelConfig
    loss: LossConfig
    train: MetricTrainConfig = field(default_factory=MetricTrainConfig)
    engine: Literal[ENGINE_NAMES] = "torch"
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(enabled=False))
    output: OutputConfig = field(default_factory=OutputConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def run_name(self) -> str:
        return self.output.name or f"{self.model.arch}-{self.loss.name.replace('_', '')}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output.dir) / self.stage / self.run_name


TORCH_ONLY = ("metric learning is torch-only (engine: torch); `fashionrec convert RUN --to torch` "
              "brings an mxnet run over for --init")


def check_metric_config(cfg: MetricConfig, src: str) -> MetricConfig:
    """Checks across keys, each a one-line ConfigError naming the key."""
    if cfg.engine != "torch":
        raise ConfigError(f"{src}: engine: {TORCH_ONLY}")
    t = cfg.train  # each number's own range is its field's (checked as the file loads)
    try:
        check_batch(t.batch_size, t.images_per_item)
    except ConfigError as e:
        raise ConfigError(f"{src}: {e}") from None
    return cfg


def load_metric_config(path, overrides=()) -> MetricConfig:
    """Load and check a metric config; a classifier stage's config is named as such."""
    stage = read_yaml(path).get("stage")
    if stage in ("pretrain", "finetune"):
        raise ConfigError(f"{path}: stage: this is a {stage} config; use `fashionrec {stage}`")
    return check_metric_config(load_config(MetricConfig, path, overrides), str(path))
