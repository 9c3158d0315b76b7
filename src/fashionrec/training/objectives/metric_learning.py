"""``metric_learning``: the metric stage's objective: an embedding trained on photos grouped by item,
stopping early on validation Recall@1. The loss, sampler, network and scores live in
:mod:`fashionrec.metric_learning`; this module is what the :class:`~fashionrec.training.Trainer` asks of it.

The run directory is laid out like the classification runs' (``runs/metric/<name>/``):
``config.yaml``, ``manifest.csv`` (the images, items and splits the run saw, ``val`` included),
``model.json`` (``kind: embedding``, engine, arch, ``embedding_dim``, input size, normalisation,
loss, best epoch and its validation scores, weights and their sha256), ``weights.safetensors``
(the best epoch), ``history.jsonl`` + ``history.png`` and ``last/`` for ``--resume``
(:class:`fashionrec.checkpoint.Checkpoint`, watching ``val_recall@1``, higher is better).

Every epoch's randomness is a function of (seed, epoch): the balanced batches
(:mod:`fashionrec.metric_learning.sampler`), the augmentation (the loader) and dropout (the engine's
seed), and the lr is the schedule's value at that epoch (:func:`~fashionrec.training.schedule.epoch_lr_factor`),
so a resumed run ends with the same epochs and history as one that was never interrupted. Validation:
the ``val`` items scored leave-one-out, or with ``data.val_fraction: 0`` the query -> gallery test
itself (as the published code selects its epoch; say so when quoting such a figure).

Under torchrun each rank trains on its share of every balanced batch; the embeddings are gathered
back into the whole batch for the loss (the pairs, miners and proxies of a one-process run), and
DistributedDataParallel averages the gradients. Each rank embeds its run of the validation images,
rank 0 scores them all, writes the run folder and decides early stopping (as the classifier stages).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ...data.formats import load_items
from ...data.images import IMAGENET_MEAN, IMAGENET_STD, normalization_kwargs
from ...data.inshop import ItemImages, read_run_record
from ...data.loader import BatchLoader
from ...distributed import SINGLE, StopSignals, World
from ...errors import DataError, UserError
from ...metric_learning.config import TORCH_ONLY, MetricConfig, load_metric_config
from ...metric_learning.embedding_scores import embed_loader, score
from ...metric_learning.plots import plot_metric_history
from ...metric_learning.sampler import BalancedLoader
from ...runs import EMBEDDING_KIND as KIND
from ...runs import read_model_json
from ..augment import augments_on_device, device_augmenter, loader_feeding
from ..objective import Objective, register_objective
from ..schedule import epoch_lr_factor
from ..tally import EpochTally
from ..trainer import agree_on_step, decoded_cache

MONITOR = "val_recall@1"


@register_objective
class MetricLearning(Objective):
    name = "metric_learning"
    stages = ("metric",)
    run_kind = KIND
    monitor, mode = MONITOR, "max"
    stage_help = {"metric": ("""Train an embedding for retrieval end to end (metric learning), e.g. on In-shop.

    Proxy-Anchor, Multi-Similarity, contrastive or semi-hard triplet loss on class-balanced
    batches (configs/metric/<name>.yaml), early stopping on the validation Recall@1. Writes
    runs/metric/<name>/; `fashionrec evaluate RUN` prints its Recall@K. Torch engine only.
    """, "Run to start from: a pretrain/finetune/converted/imported run (its backbone) or a metric run.")}

    @classmethod
    def load_stage_config(cls, stage, path, overrides=()):
        return load_metric_config(path, overrides)

    @property
    def title(self) -> str:
        return f"metric {self.cfg.model.arch} {self.cfg.loss.name}"

    def load_data(self, run_dir, resumed):
        t = self.cfg.train
        data = read_run_record(run_dir / "manifest.csv") if resumed else load_items(self.cfg.data)
        train_set = data.subset("train")
        val_set, val_how = _split_for_validation(data)
        photos = Counter(train_set.items)
        if not photos:
            raise DataError(f"{data.source}: no training images")
        singles = sum(n == 1 for n in photos.values())
        per_batch = t.batch_size // t.images_per_item
        if len(photos) - singles < per_batch:
            raise DataError(f"{data.source}: {len(photos) - singles} training item(s) with two or more photos, but "
                            f"train.batch_size {t.batch_size} takes {per_batch} items of {t.images_per_item} images; "
                            f"lower train.batch_size")
        self.data, self.train_set, self.val_set, self.val_how = data, train_set, val_set, val_how
        self.photos, self.singles = photos, singles

    def cache_images(self):
        return self.data.image_source()

    def build_model(self, checkpoint, resumed):
        norm = checkpoint.meta["normalization"] if resumed else None
        model, self.norm = _embedder(self.cfg, self.init, norm, len(self.photos), checkpoint if resumed else None)
        return model

    def run_meta(self):
        return {"normalization": self.norm}

    def write_data_record(self, path):
        self.data.to_csv(path)

    def model_info(self, model):
        cfg = self.cfg
        return {"engine": "torch", "arch": cfg.model.arch, "task": KIND, "classes": [],
                "embedding_dim": cfg.model.embedding_dim, "num_features": cfg.model.embedding_dim,
                "input_size": cfg.model.input_size, "normalization": self.norm, "loss": cfg.loss.name}

    def make_loaders(self, world):
        cfg, t = self.cfg, self.cfg.train
        cache = decoded_cache(world, cfg.data, self.cache_images(), cfg.model.input_size, t.workers)
        common = dict(workers=t.workers, max_bad_fraction=cfg.data.max_bad_fraction, max_pixels=cfg.data.max_pixels,
                      rank=world.rank, world_size=world.size, cache=cache, **loader_feeding(cfg))
        augment = None if augments_on_device(cfg) else cfg.augment  # on the device: plain batches from the loader
        train_loader = BalancedLoader(self.train_set.image_source(), cfg.model.input_size, t.batch_size,
                                      t.images_per_item, seed=t.seed, augment=augment,
                                      limit_batches=t.limit_train_batches, **common)
        val_loader = BatchLoader(self.val_set.image_source(), cfg.model.input_size, t.eval_batch_size,
                                 shard_by="range", **common)
        return train_loader, val_loader

    def describe(self, model, world, loaders):
        cfg, t = self.cfg, self.cfg.train
        lines = [f"metric {cfg.model.arch} + {cfg.loss.name}: {self.data.describe()}; validation on {self.val_how}; "
                 f"batches of {t.batch_size // t.images_per_item} items x {t.images_per_item} images, "
                 f"engine torch on {model.device}"
                 + (f" x {world.size} ranks ({world.backend})" if world.enabled else "") + f" -> {cfg.run_dir}"]
        if self.singles:
            lines.append(f"{self.singles} training item(s) with one photo only are left out of the batches "
                         f"(nothing to pair with)")
        return lines

    def run_epoch(self, model, loaders, epoch, progress, world, stop):
        augment = device_augmenter(self.cfg, model.device) if augments_on_device(self.cfg) else None
        return _run_epoch(model, *loaders, self.val_set, epoch, self.cfg, progress, world, stop, augment)

    def epoch_line(self, row):
        return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}"
                f"{' (backbone frozen)' if row['frozen'] else ''} | val R@1 {row[MONITOR]:.3f} "
                f"MAP@R {row['val_map@r']:.3f}")

    def best_line(self, checkpoint):
        return f"best epoch {checkpoint.best_epoch}: val Recall@1 {checkpoint.best_value:.3f}"

    def plot(self, history, png):
        plot_metric_history(history, png, title=self.title)


def _init_weights(init, arch: str) -> tuple[dict, dict]:
    """(weights as numpy arrays, normalisation) of an --init run, with one-line errors."""
    from safetensors.numpy import load_file

    info = read_model_json(init)
    if info["engine"] != "torch":
        raise UserError(f"--init {init}: the run uses engine {info['engine']}; {TORCH_ONLY}")
    if info["arch"] != arch:
        raise UserError(f"--init {init}: run is a {info['arch']}, config asks for {arch}")
    path = Path(init) / info["weights"]
    try:
        weights = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad weights file
        raise UserError(f"{path}: not a safetensors weights file ({str(e).splitlines()[0][:100]})") from None
    norm = info.get("normalization") or {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return weights, norm


def _split_for_validation(data: ItemImages) -> tuple[ItemImages, str]:
    if "val" in data.splits:
        val = data.subset("val")
        if max(Counter(val.items).values()) < 2:
            raise DataError(f"{data.source}: no val item has two photos, so nothing can be found leave-one-out; "
                            f"give val items two or more photos")
        return val, "val items, leave-one-out"
    test = data.subset("query", "gallery")
    if not len(test):
        raise DataError(f"{data.source}: nothing to validate on (no val, query or gallery images); "
                        f"set data.val_fraction above 0")
    return test, "query -> gallery (data.val_fraction is 0)"


def _embedder(cfg: MetricConfig, init, norm: dict | None, num_items: int, resume_from):
    """(the network to train, its input normalisation): from ``init``'s backbone or fresh, with its loss and
    optimiser, and ``last/`` when resuming (``norm`` is then the run's)."""
    t, weights = cfg.train, None
    if norm is None and init is not None:
        weights, norm = _init_weights(init, cfg.model.arch)
    norm = norm or {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    from ...metric_learning.model import Embedder

    model = Embedder(cfg.model.arch, cfg.model.embedding_dim, cfg.model.input_size, device=t.device, seed=t.seed,
                     **normalization_kwargs(norm))
    if weights is not None:
        model.load_backbone(weights, str(init))
    model.configure_training(cfg.loss, t, num_items=num_items)
    model.set_training_precision(t.precision)
    model.set_compile(training=t.compile)
    if resume_from is not None:
        resume_from.load_training_state(model)
    return model, norm


def _embed_shards(model, loader, images: ItemImages, world: World, progress: bool) -> np.ndarray | None:
    """Data-parallel :func:`embed_loader`: each rank embeds its run of the batches; rank 0 gets every
    embedding in order (None on the others). An undecodable image fails every rank."""
    feats, rows = [np.zeros((0, model.num_features), np.float32)], [np.zeros(0, np.int64)]
    for x, _, idx in tqdm(loader.epoch(0), total=len(loader), desc="val", leave=False, disable=not progress):
        feats.append(model.extract(x)[1])
        rows.append(np.asarray(idx, np.int64))
    done = int(world.sum([sum(len(r) for r in rows)])[0])
    if done < len(images):  # an undecodable image would sit at the origin and skew the scores
        raise UserError(f"{images.source or images.root}: {len(images) - done} image(s) could not be decoded; "
                        f"retrieval scores need every image they are asked about")
    parts, places = world.gather_arrays(np.concatenate(feats)), world.gather_arrays(np.concatenate(rows))
    if not world.is_main:
        return None
    out = np.zeros((len(images), model.num_features), np.float32)
    out[np.concatenate(places)] = np.concatenate(parts)
    return out


def _check_tally(tally: EpochTally, epoch: int, bar) -> tuple[float, int, int]:
    """The tally's sums, shown on the bar; a UserError when the loss diverged (the global batch's loss on every rank,
    read at the same steps: they all stop together)."""
    loss_sum, correct, n = tally.read()
    if not np.isfinite(loss_sum):
        raise UserError(f"training diverged at epoch {epoch} (loss {loss_sum / max(n, 1)}); lower train.lr")
    if n:
        bar.set_postfix(loss=f"{loss_sum / n:.4f}")
    return loss_sum, correct, n


def _run_epoch(model, train_loader, val_loader, val_set: ItemImages, epoch: int, cfg: MetricConfig,
               progress: bool, world: World = SINGLE, stop: StopSignals | None = None, augment=None) -> dict:
    t = cfg.train
    model.set_seed(t.seed * 100_003 + epoch)
    model.set_lr_factor(epoch_lr_factor(t, epoch))
    frozen = epoch <= t.warmup_epochs
    model.freeze_backbone(frozen)
    t0 = time.perf_counter()
    tally = EpochTally()
    bar = tqdm(train_loader.epoch(epoch), total=len(train_loader), desc=f"epoch {epoch}", leave=False,
               disable=not progress, unit="batch")
    for x, y, rows in bar:
        if augment is not None and len(rows):
            x = augment(x, rows, epoch)
        images = len(y)
        if world.enabled:  # the loss is the global batch's on every rank: count it once
            images = agree_on_step(world, stop, train_loader, len(y))
            if images is None:
                continue
        loss, _ = model.train_step(x, y, sync=False)
        tally.add(loss, images)
        if tally.due():
            _check_tally(tally, epoch, bar)
    loss_sum, _, n = _check_tally(tally, epoch, bar)
    if world.enabled:
        train_loader.check_bad(*(int(v) for v in world.sum([len(train_loader.bad), train_loader.seen])), final=True)
    train_s = time.perf_counter() - t0
    model.freeze_backbone(False)
    if world.enabled:
        feats = _embed_shards(model, val_loader, val_set, world, progress)
        val = score(feats, val_set) if world.is_main else {}  # rank 0 scores; the others take its decision
    else:
        val = score(embed_loader(model, val_loader, val_set, progress, desc="val"), val_set)
    return {
        "epoch": epoch, "train_loss": loss_sum / max(n, 1),
        **{f"val_{k}": v for k, v in val.items() if k.startswith(("recall@", "map@"))},
        "lr": model.lrs()[1], "frozen": frozen, "world_size": world.size, "batch_size": t.batch_size,
        "train_images_per_s": n / train_s if train_s > 0 else 0.0, "seconds": time.perf_counter() - t0,
    }
