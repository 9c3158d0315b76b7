"""The metric stage's configuration, loaded by :func:`fashionrec.config.load_config` like every stage's.

Defaults are Proxy-Anchor's In-shop recipe (Kim et al., CVPR 2020): batch 180 = 36 items x 5
images, AdamW lr 6e-4, weight decay 1e-4, proxies at 100x the lr, alpha 32, delta 0.1, one
warm-up epoch with the backbone frozen, the lr x 0.25 every 20 epochs, 224 px, 512-d.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import AugmentConfig, LogConfig, OutputConfig, load_config, read_yaml
from ..engines.registry import ARCH_NAMES, ENGINE_NAMES, TRAINING_PRECISION_NAMES
from ..errors import ConfigError
from .sampler import check_batch

LOSSES = ("proxy_anchor", "multi_similarity", "contrastive", "triplet")


@dataclass
class RetrievalDataConfig:
    """Photos grouped by item (:mod:`fashionrec.data.inshop`).

    format: ``inshop`` (the In-shop benchmark root) or ``csv`` (``path,item_id[,split]``).
    """

    format: Literal["inshop", "csv"]
    root: str
    val_fraction: float = 0.1  # of the training items, held out for early stopping; 0: query->gallery
    test_fraction: float = 0.5  # csv without a split column: share of the items tested
    split_seed: int = 0
    max_bad_fraction: float = 0.01
    max_pixels: int = 40_000_000
    skip_missing: bool = False


@dataclass
class EmbeddingModelConfig:
    arch: Literal[ARCH_NAMES]
    input_size: int = 224
    embedding_dim: int = 512


@dataclass
class LossConfig:
    """The loss, with each one's own parameters (only the chosen loss's are read).

    * ``proxy_anchor`` (Kim et al. 2020): ``alpha``, ``delta`` (the margin), ``proxy_lr_factor``
      (the proxies' lr as a multiple of ``train.lr``);
    * ``multi_similarity`` (Wang et al. 2019): ``ms_alpha``, ``ms_beta``, ``ms_base`` (lambda),
      and the miner's ``ms_epsilon``;
    * ``contrastive`` (Hadsell et al. 2006, the paper's "Siamese" pairs): ``pos_margin``,
      ``neg_margin`` on the L2 distance, pairs mined by the same margins;
    * ``triplet``: ``triplet_margin``, semi-hard triplets mined in the batch.
    """

    name: Literal[LOSSES]
    alpha: float = 32.0
    delta: float = 0.1
    proxy_lr_factor: float = 100.0
    ms_alpha: float = 2.0
    ms_beta: float = 50.0
    ms_base: float = 0.5
    ms_epsilon: float = 0.1
    pos_margin: float = 0.0
    neg_margin: float = 0.5
    triplet_margin: float = 0.1


@dataclass
class MetricTrainConfig:
    lr: float = 6e-4  # AdamW, backbone and embedding
    batch_size: int = 180  # the run's global batch: under torchrun each of N ranks takes batch_size / N
    images_per_item: int = 5  # m: each batch holds batch_size / m items
    weight_decay: float = 1e-4
    schedule: Literal["step", "cosine", "constant"] = "step"
    step_epochs: int = 20  # step: the lr x gamma every step_epochs epochs
    gamma: float = 0.25
    warmup_epochs: int = 1  # first epochs with the backbone's weights frozen (embedding and proxies learn;
    # its BatchNorm statistics still adapt, as in Kim et al.'s code)
    clip_grad_norm: float | None = 10.0  # of the network's gradients; null: no clipping
    max_epochs: int = 60
    patience: int = 5  # early stopping: epochs without a higher validation Recall@1
    eval_batch_size: int = 64
    seed: int = 0
    workers: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    limit_train_batches: int | None = None
    sync_bn: bool = False  # torchrun: BatchNorm normalises with the global batch's statistics (SyncBatchNorm)
    precision: Literal[TRAINING_PRECISION_NAMES] = "auto"  # auto: bf16 autocast on CUDA, fp32 on a CPU


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
    t = cfg.train
    positive = {"train.lr": t.lr, "train.eval_batch_size": t.eval_batch_size, "train.max_epochs": t.max_epochs,
                "train.patience": t.patience, "train.step_epochs": t.step_epochs,
                "model.embedding_dim": cfg.model.embedding_dim, "loss.proxy_lr_factor": cfg.loss.proxy_lr_factor}
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{src}: {key}: must be > 0; got {value}")
    if not 0 < t.gamma <= 1:
        raise ConfigError(f"{src}: train.gamma: must be in (0, 1]; got {t.gamma}")
    if t.warmup_epochs < 0 or t.workers < 0 or t.weight_decay < 0:
        raise ConfigError(f"{src}: train.warmup_epochs, train.workers and train.weight_decay must be >= 0")
    if t.clip_grad_norm is not None and not t.clip_grad_norm > 0:
        raise ConfigError(f"{src}: train.clip_grad_norm: must be > 0 or null; got {t.clip_grad_norm}")
    try:
        check_batch(t.batch_size, t.images_per_item)
    except ConfigError as e:
        raise ConfigError(f"{src}: {e}") from None
    if cfg.model.input_size < 32:
        raise ConfigError(f"{src}: model.input_size: must be >= 32; got {cfg.model.input_size}")
    if not 0 <= cfg.data.val_fraction < 1:
        raise ConfigError(f"{src}: data.val_fraction: must be in [0, 1); got {cfg.data.val_fraction}")
    return cfg


def load_metric_config(path, overrides=()) -> MetricConfig:
    """Load and check a metric config; a classifier stage's config is named as such."""
    stage = read_yaml(path).get("stage")
    if stage in ("pretrain", "finetune"):
        raise ConfigError(f"{path}: stage: this is a {stage} config; use `fashionrec {stage}`")
    return check_metric_config(load_config(MetricConfig, path, overrides), str(path))
