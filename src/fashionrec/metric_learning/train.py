"""The metric stage: train an embedding on photos grouped by item, stop early on validation Recall@1.

The run directory is laid out like the classifier stages' (``runs/metric/<name>/``):
``config.yaml``, ``manifest.csv`` (the images, items and splits the run saw, ``val`` included),
``model.json`` (``kind: embedding``, engine, arch, ``embedding_dim``, input size, normalisation,
loss, best epoch and its validation scores, weights and their sha256), ``weights.safetensors``
(the best epoch), ``history.jsonl`` + ``history.png`` and ``last/`` for ``--resume``
(:class:`fashionrec.checkpoint.Checkpoint`, watching ``val_recall@1``, higher is better).

Every epoch's randomness is a function of (seed, epoch): the balanced batches
(:mod:`.sampler`), the augmentation (the loader) and dropout (the engine's seed), and the lr is
the schedule's value at that epoch, so a resumed run ends with the same epochs and history as
one that was never interrupted. Validation: the ``val`` items scored leave-one-out, or with
``data.val_fraction: 0`` the query -> gallery test itself (as the published code selects its
epoch; say so when quoting such a figure).

Under torchrun each rank trains on its share of every balanced batch; the embeddings are gathered
back into the whole batch for the loss (the pairs, miners and proxies of a one-process run), and
DistributedDataParallel averages the gradients. Each rank embeds its run of the validation images,
rank 0 scores them all, writes the run folder and decides early stopping (as the classifier stages).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import distributed
from ..artifacts import write_text
from ..checkpoint import Checkpoint
from ..config import dump_yaml
from ..data.formats import load_items
from ..data.images import IMAGENET_MEAN, IMAGENET_STD, normalization_kwargs
from ..data.inshop import ItemImages, read_run_record
from ..data.loader import BatchLoader
from ..distributed import SINGLE, StopSignals, World
from ..engines.registry import check_training_precision, weights_file
from ..errors import DataError, UserError
from ..runs import read_model_json
from ..tensorboard_log import ScalarLog
from ..train import agree_on_step, open_checkpoint, quiet, run_epochs, run_folder, write_bad_images, write_results
from .config import TORCH_ONLY, MetricConfig
from .embedding_scores import embed_loader, score
from .model import KIND, Embedder
from .plots import plot_metric_history
from .sampler import BalancedLoader

MONITOR = "val_recall@1"


def lr_factor(t, epoch: int) -> float:
    """The schedule's multiple of ``train.lr`` at ``epoch`` (1-based)."""
    if t.schedule == "step":
        return t.gamma ** ((epoch - 1) // t.step_epochs)
    if t.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / t.max_epochs))
    return 1.0


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


def train_metric(cfg: MetricConfig, *, resume: bool = False, init=None, progress: bool = True, log=print,
                 force: bool = False) -> Path:
    """Train an embedding as ``cfg`` says; return the run directory.

    The run folder is owned as the classifier stages own theirs (:func:`fashionrec.train.run_folder`):
    ``force`` replaces a finished run of the same name, never a folder holding other files.
    """
    distributed.check_engine(cfg.engine)
    check_training_precision(cfg.engine, cfg.train.precision)  # before any data is read or folder made
    with distributed.session(cfg.train.device) as world, run_folder(cfg.run_dir, resume, force, world,
                                                                        stage="metric", init=init) as saved:
        return _train_metric(cfg, resume, init, progress, log, saved, world)


def _train_metric(cfg: MetricConfig, resume: bool, init, progress: bool, log, saved: dict, world: World) -> Path:
    run_dir, t = saved["dir"], cfg.train  # --force: a sibling folder until its first epoch replaces the old run
    world.local_batch(t.batch_size)  # the ranks share every batch evenly
    if not world.is_main:
        progress, log = False, quiet
    checkpoint = Checkpoint(run_dir, weights=weights_file("torch"), patience=t.patience, monitor=MONITOR, mode="max")
    resumed = open_checkpoint(checkpoint, resume, world)
    data = read_run_record(run_dir / "manifest.csv") if resumed else load_items(cfg.data)
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

    norm = checkpoint.meta["normalization"] if resumed else None
    model, norm = world.everywhere(lambda: _embedder(cfg, init, norm, len(photos), checkpoint if resumed else None))
    if resumed:
        log(f"resuming {run_dir} after epoch {checkpoint.epoch}")
    else:
        checkpoint.meta.update(init=str(init) if init else None, normalization=norm)
        world.on_main(lambda: _start_run_folder(cfg, run_dir, data))
    if world.enabled:
        model.distribute(sync_bn=t.sync_bn)

    info = {
        "kind": KIND, "engine": "torch", "arch": cfg.model.arch, "task": KIND, "stage": "metric", "classes": [],
        "embedding_dim": cfg.model.embedding_dim, "num_features": cfg.model.embedding_dim,
        "input_size": cfg.model.input_size, "normalization": norm, "loss": cfg.loss.name,
        "weights": checkpoint.weights, "init": checkpoint.meta.get("init"), "device": model.device,
        "world_size": world.size, "batch_size": t.batch_size,  # how it was trained: ranks, global batch
    }
    common = dict(workers=t.workers, max_bad_fraction=cfg.data.max_bad_fraction, max_pixels=cfg.data.max_pixels,
                  rank=world.rank, world_size=world.size)
    title = f"metric {cfg.model.arch} {cfg.loss.name}"
    scalars = ScalarLog(run_dir, cfg.log.tensorboard and world.is_main, title=title)
    train_loader = BalancedLoader(train_set.image_source(), cfg.model.input_size, t.batch_size, t.images_per_item,
                                  seed=t.seed, augment=cfg.augment, limit_batches=t.limit_train_batches, **common)
    val_loader = BatchLoader(val_set.image_source(), cfg.model.input_size, t.eval_batch_size, shard_by="range",
                             **common)
    log(f"metric {cfg.model.arch} + {cfg.loss.name}: {data.describe()}; validation on {val_how}; "
        f"batches of {t.batch_size // t.images_per_item} items x {t.images_per_item} images, "
        f"engine torch on {model.device}" + (f" x {world.size} ranks ({world.backend})" if world.enabled else "")
        + f" -> {cfg.run_dir}")
    if singles:
        log(f"{singles} training item(s) with one photo only are left out of the batches (nothing to pair with)")
    def keep(row: dict, is_best: bool) -> None:
        scalars.write(row)
        write_results(checkpoint.run_dir, info, checkpoint,
                      lambda history, png: plot_metric_history(history, png, title=title))
        log(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}"
            f"{' (backbone frozen)' if row['frozen'] else ''} | val R@1 {row[MONITOR]:.3f} "
            f"MAP@R {row['val_map@r']:.3f}" + ("  *best" if is_best else ""))

    run_epochs(checkpoint, model, t.max_epochs, world, saved, (train_loader, val_loader, scalars),
               lambda epoch, stop: _run_epoch(model, train_loader, val_loader, val_set, epoch, cfg, progress, world,
                                              stop), keep)
    run_dir = cfg.run_dir  # where the run is now, whatever folder it started in
    write_bad_images(run_dir, {**train_loader.bad, **val_loader.bad}, world, log)
    if not checkpoint.history:  # e.g. max_epochs 0 set in code (a config refuses it): no run to announce
        raise UserError(f"no epoch completed (train.max_epochs {t.max_epochs}); nothing usable was written")
    log(f"best epoch {checkpoint.best_epoch}: val Recall@1 {checkpoint.best_value:.3f}; "
        f"weights in {run_dir / info['weights']}")
    return run_dir


def _embedder(cfg: MetricConfig, init, norm: dict | None, num_items: int, resume_from: Checkpoint | None):
    """(the network to train, its input normalisation): from ``init``'s backbone or fresh, with its loss and
    optimiser, and ``last/`` when resuming (``norm`` is then the run's)."""
    t, weights = cfg.train, None
    if norm is None and init is not None:
        weights, norm = _init_weights(init, cfg.model.arch)
    norm = norm or {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    model = Embedder(cfg.model.arch, cfg.model.embedding_dim, cfg.model.input_size, device=t.device, seed=t.seed,
                     **normalization_kwargs(norm))
    if weights is not None:
        model.load_backbone(weights, str(init))
    model.configure_training(cfg.loss, t, num_items=num_items)
    model.set_training_precision(t.precision)
    if resume_from is not None:
        resume_from.load_training_state(model)
    return model, norm


def _start_run_folder(cfg: MetricConfig, run_dir: Path, data: ItemImages) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", dump_yaml(cfg))
    data.to_csv(run_dir / "manifest.csv")


def _embed_shards(model: Embedder, loader, images: ItemImages, world: World, progress: bool) -> np.ndarray | None:
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


def _run_epoch(model: Embedder, train_loader, val_loader, val_set: ItemImages, epoch: int, cfg: MetricConfig,
               progress: bool, world: World = SINGLE, stop: StopSignals | None = None) -> dict:
    t = cfg.train
    model.set_seed(t.seed * 100_003 + epoch)
    model.set_lr_factor(lr_factor(t, epoch))
    frozen = epoch <= t.warmup_epochs
    model.freeze_backbone(frozen)
    t0 = time.perf_counter()
    loss_sum, n = 0.0, 0
    bar = tqdm(train_loader.epoch(epoch), total=len(train_loader), desc=f"epoch {epoch}", leave=False,
               disable=not progress, unit="batch")
    for x, y, _ in bar:
        images = len(y)
        if world.enabled:  # the loss is the global batch's on every rank: count it once
            images = agree_on_step(world, stop, train_loader, len(y))
            if images is None:
                continue
        loss, _ = model.train_step(x, y)
        if not np.isfinite(loss):  # the same global loss on every rank: they all stop here
            raise UserError(f"training diverged at epoch {epoch} (loss {loss}); lower train.lr")
        loss_sum += loss * images
        n += images
        bar.set_postfix(loss=f"{loss_sum / n:.4f}")
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
