"""``classification``: the paper's objective (pretrain, finetune): softmax cross-entropy on one task's
labels, validated on the ``val`` split's loss (the best epoch has the lowest), accuracy and top-k
accuracy beside it. The run is a classifier (``kind: classifier``): its pooled features are an
extractor for the index, its head predicts the task's labels.

Fine-tuning a pretrained backbone (``--init``) the field's way: ``train.backbone_lr_factor``
(two parameter groups), ``train.freeze_backbone_epochs`` (head-only epochs, recorded as
``backbone_frozen``), ``train.freeze_batchnorm`` and ``optimizer: adamw``; the lr follows
:func:`~fashionrec.training.schedule.scheduled_lr` step by step.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from ... import label_metrics as M
from ...config import StageConfig, load_config
from ...data.formats import load_manifest
from ...data.loader import BatchLoader
from ...distributed import SINGLE, StopSignals, World
from ...engines.factory import build_classifier
from ...errors import UserError
from ...evaluate import predict_loader
from ...runs import CLASSIFIER_KIND, load_classifier, normalization_record
from ..augment import augments_on_device, device_augmenter, loader_feeding
from ..objective import Objective, register_objective
from ..schedule import scheduled_lr
from ..tally import EpochTally
from ..trainer import agree_on_step, decoded_cache

FINETUNE_DEFAULTS = {"optimizer": ("sgd", "adam"), "backbone_lr_factor": (1.0,), "freeze_backbone_epochs": (0,),
                     "freeze_batchnorm": (False,)}  # what every engine does; the rest is the torch engine's


def check_finetune_options(engine: str, t) -> None:
    """A UserError naming the key when ``engine`` lacks a fine-tuning option the config asks for."""
    if engine == "torch":
        return
    for key, plain in FINETUNE_DEFAULTS.items():
        if getattr(t, key) not in plain:
            raise UserError(f"train.{key}: {getattr(t, key)} needs engine torch (engine {engine} takes "
                            f"{' or '.join(map(str, plain))})")


@register_objective
class Classification(Objective):
    name = "classification"
    stages = ("pretrain", "finetune")
    run_kind = CLASSIFIER_KIND
    monitor, mode = "val_loss", "min"
    stage_help = {
        "pretrain": ("""Pretrain a classifier (e.g. on DeepFashion).

    The paper's settings are the defaults in configs/pretrain/<arch>-<task>.yaml. Writes a run
    directory runs/pretrain/<name>/ with model.json, weights, history.jsonl and history.png.
    Ctrl-C saves the last completed epoch; --resume continues it.
    """, "Run to start from instead of random weights, e.g. an imported ImageNet checkpoint "
             "(fashionrec import-weights); overrides init: in the config."),
        "finetune": ("""Fine-tune a pretrained classifier (the Fashion dataset, your photos from ImageNet Lite0...).

    Loads the run given by --init, replaces its head for the new class list and trains with the
    paper's fine-tune settings and augmentation (configs/finetune/<task>.yaml), or the pretrained
    recipe (configs/small-data/finetune-pretrained.yaml).
    """, "Pretrained run directory to start from (its head is replaced), e.g. an imported "
             "runs/imported/efficientnet_lite0; overrides init: in the config."),
    }

    @classmethod
    def load_stage_config(cls, stage, path, overrides=()):
        cfg = load_config(StageConfig, path, overrides)
        if cfg.stage != stage:
            raise UserError(f"{path}: stage: this is a {cfg.stage} config; use `fashionrec {cfg.stage}`")
        return cfg

    @classmethod
    def check_start(cls, cfg, init, resume):
        if cfg.stage == "finetune" and init is None and cfg.init is None and not resume:
            raise UserError("--init RUN_DIR (or init: in the config) is required: the pretrained run to fine-tune")

    @property
    def title(self) -> str:
        return f"{self.cfg.stage} {self.cfg.model.arch} {self.cfg.task}"

    def check(self) -> None:
        t = self.cfg.train
        check_finetune_options(self.cfg.engine, t)
        if t.compile != "eager" and self.cfg.engine != "torch":
            raise UserError(f"train.compile: {t.compile} needs engine torch (engine {self.cfg.engine} runs eagerly)")
        if self.cfg.augment.on == "device" and self.cfg.engine != "torch":
            raise UserError(f"augment.on: device needs engine torch (engine {self.cfg.engine} augments on the host)")
        if t.patience < 1:
            raise UserError("train.patience: must be >= 1")
        if t.top_k < 1:
            raise UserError("train.top_k: must be >= 1")

    def load_data(self, run_dir, resumed):
        self.manifest = load_manifest(self.cfg.data, self.cfg.task)
        self.manifest.check_trainable()

    def cache_images(self):
        return self.manifest

    def build_model(self, checkpoint, resumed):
        """The classifier to train: built or loaded from ``init``, its optimiser, and ``last/`` when resuming."""
        cfg, init, manifest = self.cfg, self.init, self.manifest
        t = cfg.train
        if init is not None and not resumed:
            clf, init_info = load_classifier(init, device=t.device)
            if init_info["arch"] != cfg.model.arch:
                raise UserError(f"--init {init}: run is a {init_info['arch']}, config asks for {cfg.model.arch}")
            if init_info["engine"] != cfg.engine:
                raise UserError(f"--init {init}: run uses engine {init_info['engine']}, config asks for {cfg.engine} "
                                f"(convert it with `fashionrec convert`)")
            clf.reset_head(len(manifest.classes))
        else:
            clf = build_classifier(cfg.engine, cfg.model.arch, len(manifest.classes), device=t.device, seed=t.seed)
        finetune = {"backbone_lr_factor": t.backbone_lr_factor} if t.backbone_lr_factor != 1 else {}
        clf.configure_optimizer(t.optimizer, t.lr, t.weight_decay, t.momentum, label_smoothing=t.label_smoothing,
                                **finetune)
        if t.freeze_batchnorm:
            clf.freeze_batchnorm(True)
        clf.set_training_precision(t.precision)
        if t.compile != "eager":
            clf.set_compile(training=t.compile)
        if resumed:
            checkpoint.load_training_state(clf)
        return clf

    def write_data_record(self, path):
        self.manifest.to_csv(path)

    def model_info(self, clf):
        cfg = self.cfg
        return {"engine": cfg.engine, "arch": cfg.model.arch, "task": cfg.task,
                "classes": list(self.manifest.classes), "input_size": cfg.model.input_size,
                "normalization": normalization_record(clf), "num_features": clf.num_features,
                "top_k": cfg.train.top_k}

    def make_loaders(self, world):
        return make_loaders(self.cfg, self.manifest, world)

    def describe(self, clf, world, loaders):
        cfg = self.cfg
        train_loader, val_loader = loaders
        return [f"{cfg.stage} {cfg.model.arch} on {cfg.task}: {len(self.manifest.classes)} classes, "
                f"{len(train_loader.images)} train / {len(val_loader.images)} val images, "
                f"engine {cfg.engine} on {clf.device}"
                + (f" x {world.size} ranks ({world.backend})" if world.enabled else "") + f" -> {cfg.run_dir}"]

    def run_epoch(self, clf, loaders, epoch, progress, world, stop):
        augment = device_augmenter(self.cfg, clf.device) if augments_on_device(self.cfg) else None
        return _run_epoch(clf, *loaders, epoch, self.cfg, progress, world, stop, augment)

    def epoch_line(self, row):
        return (f"epoch {row['epoch']}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
                f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} top-{self.cfg.train.top_k} "
                f"{row['val_top_k']:.3f}")

    def best_line(self, checkpoint):
        return f"best epoch {checkpoint.best_epoch}: val loss {checkpoint.best_value:.3f}"

    def plot(self, history, png):
        from ...report import plot_history

        plot_history(history, png, title=self.title, label_smoothing=self.cfg.train.label_smoothing)


def make_loaders(cfg: StageConfig, manifest, world: World = SINGLE):
    """(train, val) loaders; data-parallel, this rank's share of every training batch and its run of the
    validation batches (of its share of the batch size). With augmentation on the device the training
    loader hands over the batches un-augmented."""
    common = dict(input_size=cfg.model.input_size, seed=cfg.train.seed, workers=cfg.train.workers,
                  max_bad_fraction=cfg.data.max_bad_fraction, max_pixels=cfg.data.max_pixels,
                  rank=world.rank, world_size=world.size,
                  cache=decoded_cache(world, cfg.data, manifest, cfg.model.input_size, cfg.train.workers),
                  **loader_feeding(cfg))
    augment = None if augments_on_device(cfg) else cfg.augment
    train = BatchLoader(manifest.subset("train"), batch_size=cfg.train.batch_size, shuffle=True, augment=augment,
                        limit_batches=cfg.train.limit_train_batches, shard_by="batch", **common)
    val = BatchLoader(manifest.subset("val"), batch_size=world.local_batch(cfg.train.batch_size), shuffle=False,
                      shard_by="range", **common)
    return train, val


def _run_epoch(clf, train_loader, val_loader, epoch: int, cfg: StageConfig, progress: bool, world: World = SINGLE,
               stop: StopSignals | None = None, augment=None) -> dict:
    clf.set_seed(cfg.train.seed * 100_003 + epoch)  # dropout etc.: reproducible across resume
    frozen = epoch <= cfg.train.freeze_backbone_epochs
    if cfg.train.freeze_backbone_epochs:
        clf.freeze_backbone(frozen)  # set at every epoch: a resumed run freezes as the first one did
    t0 = time.perf_counter()
    tally = EpochTally()
    scheduled = cfg.train.lr_schedule != "constant" or cfg.train.warmup_epochs > 0
    lr, steps = cfg.train.lr, len(train_loader)
    bar = tqdm(train_loader.epoch(epoch), total=len(train_loader), desc=f"epoch {epoch}", leave=False,
               disable=not progress, unit="batch")
    for step, (x, y, rows) in enumerate(bar):
        if augment is not None and len(rows):
            x = augment(x, rows, epoch)
        if scheduled:
            lr = scheduled_lr(cfg.train, epoch, step, steps)
            clf.set_lr(lr)
        if world.enabled:
            step_batch = agree_on_step(world, stop, train_loader, len(y))
            if step_batch is None:
                continue
            loss, logits = clf.train_step(x, y, global_batch=step_batch, sync=False)
        else:
            loss, logits = clf.train_step(x, y, sync=False)
        tally.add(loss, len(y), logits, y)
        if tally.due():
            _check_tally(tally, epoch, world, bar)
    loss_sum, correct, n = _check_tally(tally, epoch, world, bar)
    if world.enabled:  # the epoch's sums over the ranks; a NaN on any rank shows in the sum
        loss_sum, correct, n = world.sum([loss_sum, correct, n])
        correct, n = int(correct), int(n)
        if not np.isfinite(loss_sum):
            raise UserError(f"training diverged at epoch {epoch} (loss {loss_sum}); lower train.lr")
        train_loader.check_bad(*(int(v) for v in world.sum([len(train_loader.bad), train_loader.seen])), final=True)
    train_s = time.perf_counter() - t0
    val = _validate(clf, val_loader, cfg.train.top_k, epoch, world, progress)
    return {
        "epoch": epoch,
        "train_loss": loss_sum / max(n, 1),
        "train_acc": correct / max(n, 1),
        **val,
        "lr": lr,  # of the epoch's last step (the head's; the backbone's is backbone_lr_factor x lr)
        "backbone_frozen": frozen,
        "world_size": world.size, "batch_size": cfg.train.batch_size,  # ranks; the global batch
        "train_images_per_s": n / train_s if train_s > 0 else 0.0,
        "seconds": time.perf_counter() - t0,
    }


def _check_tally(tally: EpochTally, epoch: int, world: World, bar) -> tuple[float, int, int]:
    """The tally's sums, shown on the bar; a UserError when the loss diverged (one process: the ranks' own sums are
    checked once summed, at the end of the epoch)."""
    loss_sum, correct, n = tally.read()
    if not world.enabled and not np.isfinite(loss_sum):
        raise UserError(f"training diverged at epoch {epoch} (loss {loss_sum / max(n, 1)}); lower train.lr")
    bar.set_postfix(loss=f"{loss_sum / max(n, 1):.3f}", acc=f"{correct / max(n, 1):.3f}")
    return loss_sum, correct, n


def _validate(clf, loader, top_k: int, epoch: int, world: World, progress: bool) -> dict:
    """Validation loss, accuracy and top-k accuracy; data-parallel, of every rank's share, from the sums of
    the losses and of the correct answers over the ranks."""
    logits, labels, _ = predict_loader(clf, loader, desc="val", progress=progress)
    broken = not np.isfinite(logits).all()
    m = len(labels)
    if world.enabled:
        parts = [M.cross_entropy(logits, labels) * m, (logits.argmax(1) == labels).sum(),
                 M.top_k_accuracy(logits, labels, top_k) * m] if m and not broken else [0.0, 0, 0.0]
        *sums, m, broken, bad, seen = world.sum(parts + [m, broken, len(loader.bad), loader.seen])
        loader.check_bad(int(bad), int(seen), final=True)
    if broken:  # the weights blew up after the last finite training loss
        raise UserError(f"training diverged at epoch {epoch} (validation outputs are NaN or infinite); "
                        f"lower train.lr")
    if world.enabled:
        loss, correct, top = (float(v) / max(m, 1) for v in sums)
        return {"val_loss": loss, "val_acc": correct, "val_top_k": top}
    return {"val_loss": M.cross_entropy(logits, labels), "val_acc": M.accuracy(logits, labels),
            "val_top_k": M.top_k_accuracy(logits, labels, top_k)}
