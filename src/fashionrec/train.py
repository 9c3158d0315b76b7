"""The engine-agnostic training loop: epochs, validation, history, resume.

Written once for every engine (see :mod:`fashionrec.engines.base`). Which epoch is best, when
to stop early and what ``last/`` holds for ``--resume`` is :class:`fashionrec.checkpoint.Checkpoint`'s
business: the classification stages watch the validation loss, so the best epoch's weights are
the run's result, and training stops after ``patience`` epochs without a lower validation loss
or at ``max_epochs``. An interrupted run resumes from its last completed epoch and ends with the
same epochs and history as one that was never interrupted.

Under torchrun (:mod:`fashionrec.distributed`) the same loop runs on every rank: each trains on its
share of every global batch (``train.batch_size`` and ``train.lr`` are the run's; DistributedDataParallel
averages the gradients, ``train.sync_bn`` synchronises BatchNorm), validates its share of the
validation images, and the sums (of losses and of correct answers, not means of means) are added
over the ranks. Rank 0 alone writes the run folder and decides early stopping, and tells the others;
every history row and ``model.json`` record ``world_size`` and the global ``batch_size``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import distributed
from . import label_metrics as M
from .artifacts import check_replaceable, ensure_writable, exclusive_lock, read_json_object, write_text
from .checkpoint import Checkpoint
from .config import StageConfig, dump_yaml
from .data.formats import load_manifest
from .data.loader import BatchLoader
from .distributed import SINGLE, StopSignals, World
from .engines.factory import build_classifier
from .engines.registry import check_training_precision, weights_file
from .errors import TrainingInterrupted, UserError
from .evaluate import predict_loader
from .runs import RUN_KIND, load_classifier, normalization_record, sha256_file, write_model_json
from .tensorboard_log import ScalarLog


def make_loaders(cfg: StageConfig, manifest, world: World = SINGLE):
    """(train, val) loaders; data-parallel, this rank's share of every training batch and its run of the
    validation batches (of its share of the batch size)."""
    common = dict(input_size=cfg.model.input_size, seed=cfg.train.seed, workers=cfg.train.workers,
                  max_bad_fraction=cfg.data.max_bad_fraction, max_pixels=cfg.data.max_pixels,
                  rank=world.rank, world_size=world.size)
    train = BatchLoader(manifest.subset("train"), batch_size=cfg.train.batch_size, shuffle=True, augment=cfg.augment,
                        limit_batches=cfg.train.limit_train_batches, shard_by="batch", **common)
    val = BatchLoader(manifest.subset("val"), batch_size=world.local_batch(cfg.train.batch_size), shuffle=False,
                      shard_by="range", **common)
    return train, val


def agree_on_step(world: World, stop: StopSignals, loader: BatchLoader, images: int) -> int | None:
    """Data-parallel: the ranks' one exchange before each step (a few numbers on the host). Raises
    KeyboardInterrupt on every rank when any was asked to stop, DataError on every rank when too many
    images were bad over all of them; returns the step's global batch, or None when some rank has no
    image of it (all its images undecodable, or a last batch smaller than the ranks), which every rank
    then skips."""
    stopping, total, empty, bad, seen = world.sum([stop.requested, images, images == 0, len(loader.bad), loader.seen])
    if stopping:
        raise KeyboardInterrupt
    loader.check_bad(int(bad), int(seen))
    return None if empty else int(total)


def open_checkpoint(checkpoint: Checkpoint, resume: bool, world: World) -> bool:
    """Rank 0 opens the run's checkpoint (its errors reach every rank); the others mirror its bookkeeping."""
    resumed, state = world.on_main(lambda: (checkpoint.open(resume), checkpoint.state()))
    if not world.is_main:
        checkpoint.restore(state)
    return resumed


def quiet(*_args) -> None:
    """The log of ranks other than 0: one rank speaks for the run."""


def write_results(run_dir: Path, info: dict, checkpoint: Checkpoint, plot: Callable[[list, Path], object]) -> None:
    """model.json (the best epoch so far and its validation metrics), history.jsonl and its plot
    (``plot(history, png)``); the same for every training stage."""
    best = checkpoint.best
    info.update(best_epoch=checkpoint.best_epoch, epochs=checkpoint.epoch,
                metrics={k: best[k] for k in best if k.startswith("val_")},
                weights_sha256=sha256_file(run_dir / info["weights"]))
    write_model_json(run_dir, info)
    history = checkpoint.history
    write_text(run_dir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    plot(history, run_dir / "history.png")


def check_force_target(run_dir: Path, stage: str, init=None) -> None:
    """``--force`` replaces a finished run of the command's own stage only, and never the run it starts from."""
    if not RUN_KIND.recognises(run_dir):
        return
    found = read_json_object(run_dir / "model.json", what="run").get("stage")
    if found != stage:
        raise UserError(f"{run_dir}: is a {found or 'unknown'} run, not a {stage} run; --force replaces only a run "
                        f"of its own stage: nothing was changed, pick another name with --set output.name=NAME")
    if init is not None and Path(init).resolve() == run_dir.resolve():
        raise UserError(f"{run_dir}: --init names the run --force would replace; nothing was changed: write the "
                        f"new run under another name with --set output.name=NAME")


@contextmanager
def run_folder(run_dir: Path, resume: bool, force: bool = False, world: World = SINGLE, stage: str | None = None,
               init=None):
    """Own ``run_dir`` for one training run: checked, locked, and not left half-made.

    The folder must be new, empty or a run (``--resume`` continues it; ``force`` replaces a
    finished one of ``stage``, never the ``init`` run); a folder holding anything else is refused.
    One writer at a time: a second run into the same folder fails at once naming the first. A run
    that ends before its first epoch is saved (bad data, a diverged loss) removes the folder it
    created. Yields a dict: ``epoch`` says whether an epoch was saved, ``dir`` is the folder to
    write. ``force`` trains into a temporary sibling folder, which :func:`settle_run_folder` swaps
    in for the old run once the first epoch is saved: until then (bad data, a typo, Ctrl-C, a kill)
    the old run stays as it was. Data-parallel, rank 0 owns the folder and the other ranks learn
    whether it could.
    """
    with ExitStack() as stack:
        saved = {"epoch": False, "dir": run_dir}

        def own() -> bool:
            ensure_writable(run_dir)
            check_replaceable(run_dir, RUN_KIND)
            if force and not resume and stage is not None:
                check_force_target(run_dir, stage, init)
            stack.enter_context(exclusive_lock(run_dir, wait=False, what="run folder"))
            if force and not resume and RUN_KIND.recognises(run_dir):
                # the new run is built beside the old one; nothing of the old is touched before its first epoch
                work = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", suffix=".tmp", dir=run_dir.parent))
                saved.update(dir=work, swap=lambda: _swap_in(work, run_dir, saved))
                return True
            return not run_dir.exists()

        created = world.on_main(own)
        try:
            yield saved
        except BaseException as e:
            if world.is_main and "swap" in saved:  # the new run never took the old one's place: the old stays
                shutil.rmtree(saved["dir"], ignore_errors=True)
            elif world.is_main and created and not saved["epoch"] and run_dir.is_dir():
                shutil.rmtree(run_dir, ignore_errors=True)
            if world.is_main and "swap" in saved and isinstance(e, TrainingInterrupted):
                e.args = (f"interrupted before the new run's first epoch was saved; {run_dir}, the run --force "
                          f"would have replaced, is unchanged",)
            elif world.is_main and "swap" in saved and isinstance(e, UserError):
                e.args = (f"{e}; {run_dir} was left as it was",)
            raise


def _swap_in(work: Path, run_dir: Path, saved: dict) -> Path:
    """The new run (its first epoch saved in ``work``) takes the place of the old one at ``run_dir``."""
    check_replaceable(run_dir, RUN_KIND)  # a user's file put into the old run meanwhile keeps it
    old = run_dir.parent / f".{run_dir.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    if run_dir.exists():
        os.replace(run_dir, old)
    os.replace(work, run_dir)
    saved.pop("swap", None)
    saved["dir"] = run_dir
    shutil.rmtree(old, ignore_errors=True)
    return run_dir


def settle_run_folder(saved: dict, checkpoint: Checkpoint) -> None:
    """After an epoch is saved: a ``--force`` run built beside the old one takes its place (once)."""
    swap = saved.get("swap")
    if swap is not None:
        checkpoint.run_dir = swap()


def train(cfg: StageConfig, *, resume: bool = False, init: str | Path | None = None,
          progress: bool = True, log=print, force: bool = False) -> Path:
    """Train a classifier as ``cfg`` says; return the run directory.

    ``init`` (a run directory: a pretrain run, an imported checkpoint) defaults to ``cfg.init``.
    ``force`` replaces a finished run of the same name (never a folder holding other files).
    """
    init = init if init is not None else cfg.init
    distributed.check_engine(cfg.engine)
    check_training_precision(cfg.engine, cfg.train.precision)  # before any data is read or folder made
    check_finetune_options(cfg.engine, cfg.train)
    with distributed.session(cfg.train.device) as world, run_folder(cfg.run_dir, resume, force, world,
                                                                        stage=cfg.stage, init=init) as saved:
        return _train(cfg, resume, init, progress, log, saved, world)


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


def _classifier(cfg: StageConfig, init, manifest, checkpoint: Checkpoint, resumed: bool):
    """The classifier to train: built or loaded from ``init``, its optimiser, and ``last/`` when resuming."""
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
    if resumed:
        checkpoint.load_training_state(clf)
    return clf


def _start_run_folder(cfg, run_dir: Path, write_manifest) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", dump_yaml(cfg))
    write_manifest(run_dir / "manifest.csv")


def _train(cfg: StageConfig, resume: bool, init, progress: bool, log, saved: dict, world: World) -> Path:
    run_dir, t = saved["dir"], cfg.train  # --force: a sibling folder until its first epoch replaces the old run
    if t.patience < 1:
        raise UserError("train.patience: must be >= 1")
    world.local_batch(t.batch_size)  # the ranks share every batch evenly
    if not world.is_main:
        progress, log = False, quiet
    checkpoint = Checkpoint(run_dir, weights=weights_file(cfg.engine), patience=t.patience,
                            monitor="val_loss", mode="min")
    resumed = open_checkpoint(checkpoint, resume, world)
    manifest = load_manifest(cfg.data, cfg.task)
    manifest.check_trainable()
    if t.top_k < 1:
        raise UserError("train.top_k: must be >= 1")

    clf = world.everywhere(lambda: _classifier(cfg, init, manifest, checkpoint, resumed))
    if resumed:
        log(f"resuming {run_dir} after epoch {checkpoint.epoch}")
    else:
        checkpoint.meta["init"] = str(init) if init else None  # kept in last/ for a resume's model.json
        world.on_main(lambda: _start_run_folder(cfg, run_dir, manifest.to_csv))
    if world.enabled:
        clf.distribute(sync_bn=t.sync_bn)

    info = {
        "engine": cfg.engine, "arch": cfg.model.arch, "task": cfg.task, "stage": cfg.stage,
        "classes": list(manifest.classes), "input_size": cfg.model.input_size,
        "normalization": normalization_record(clf),
        "num_features": clf.num_features, "weights": checkpoint.weights, "top_k": t.top_k,
        "init": checkpoint.meta.get("init"), "device": clf.device,
        "world_size": world.size, "batch_size": t.batch_size,  # how it was trained: ranks, global batch
    }
    title = f"{cfg.stage} {cfg.model.arch} {cfg.task}"
    scalars = ScalarLog(run_dir, cfg.log.tensorboard and world.is_main, title=title)
    train_loader, val_loader = make_loaders(cfg, manifest, world)
    log(f"{cfg.stage} {cfg.model.arch} on {cfg.task}: {len(manifest.classes)} classes, "
        f"{len(train_loader.images)} train / {len(val_loader.images)} val images, "
        f"engine {cfg.engine} on {clf.device}" + (f" x {world.size} ranks ({world.backend})" if world.enabled else "")
        + f" -> {cfg.run_dir}")
    def keep(row: dict, is_best: bool) -> None:
        from .report import plot_history

        scalars.write(row)
        write_results(checkpoint.run_dir, info, checkpoint,
                      lambda history, png: plot_history(history, png, title=title, label_smoothing=t.label_smoothing))
        log(f"epoch {row['epoch']}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
            f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} "
            f"top-{t.top_k} {row['val_top_k']:.3f}" + ("  *best" if is_best else ""))

    run_epochs(checkpoint, clf, t.max_epochs, world, saved, (train_loader, val_loader, scalars),
               lambda epoch, stop: _run_epoch(clf, train_loader, val_loader, epoch, cfg, progress, world, stop), keep)
    run_dir = cfg.run_dir  # where the run is now, whatever folder it started in
    write_bad_images(run_dir, {**train_loader.bad, **val_loader.bad}, world, log)
    if not checkpoint.history:  # e.g. max_epochs 0 set in code (a config refuses it): no run to announce
        raise UserError(f"no epoch completed (train.max_epochs {t.max_epochs}); nothing usable was written")
    log(f"best epoch {checkpoint.best_epoch}: val loss {checkpoint.best_value:.3f}; "
        f"weights in {run_dir / info['weights']}")
    return run_dir


def run_epochs(checkpoint: Checkpoint, model, max_epochs: int, world: World, saved: dict, closing,
               run_epoch: Callable[[int, StopSignals], dict], keep: Callable[[dict, bool], None]) -> None:
    """The epochs of a training stage, classification and metric learning alike: ``run_epoch(epoch, stop)``
    trains and validates one epoch on every rank and returns its history row; rank 0 puts it in the
    checkpoint and calls ``keep(row, is_best)`` to write the rest of the run folder, and decides early
    stopping for every rank. Ctrl-C or SIGTERM raises :class:`TrainingInterrupted` naming the last epoch
    kept; ``closing`` (loaders, the scalar log) is closed however it ends."""
    stop = StopSignals(world)
    try:
        with stop.installed():
            for epoch in range(checkpoint.epoch + 1, max_epochs + 1):
                if checkpoint.should_stop:  # also a resumed run that had already stopped early
                    break
                row = run_epoch(epoch, stop)

                def on_main(row=row) -> dict:  # rank 0: the epoch on disk
                    is_best = checkpoint.update(model, row)
                    saved["epoch"] = True
                    keep(row, is_best)
                    settle_run_folder(saved, checkpoint)  # --force: the new run replaces the old one now
                    return checkpoint.state()

                state = world.on_main(on_main)  # early stopping is rank 0's decision; the others take its state
                if not world.is_main:
                    checkpoint.restore(state)
    except KeyboardInterrupt:
        raise TrainingInterrupted(checkpoint.run_dir, checkpoint.epoch) from None
    finally:
        for thing in closing:
            thing.close()


def write_bad_images(run_dir: Path, bad: dict, world: World, log) -> None:
    """``bad_images.txt``: the images no rank could decode (rank 0 writes it)."""
    if world.enabled:
        bad = {p: r for part in world.all_gather_json(bad) for p, r in part.items()}
    if bad:
        world.on_main(lambda: write_text(run_dir / "bad_images.txt",
                                         "".join(f"{p}\t{r}\n" for p, r in sorted(bad.items()))))
        log(f"skipped {len(bad)} unreadable image(s); listed in {run_dir / 'bad_images.txt'}")


def scheduled_lr(t, epoch: int, step: int, steps: int) -> float:
    """The learning rate of ``step`` (from 0) of ``epoch`` (from 1) of ``steps``: a linear warm-up over
    ``t.warmup_epochs``, then ``t.lr`` (``constant``) or a cosine from ``t.lr`` to 0 at ``t.max_epochs``.

    A function of the position alone, so a resumed run steps through the same rates."""
    done = (epoch - 1) + step / max(steps, 1)  # epochs completed before this step
    if done < t.warmup_epochs:
        return t.lr * (done + 1 / max(steps, 1)) / t.warmup_epochs  # never 0: the first step moves
    if t.lr_schedule == "cosine":
        span = t.max_epochs - t.warmup_epochs
        return t.lr * 0.5 * (1 + math.cos(math.pi * min((done - t.warmup_epochs) / span, 1.0))) if span > 0 else t.lr
    return t.lr


def _run_epoch(clf, train_loader, val_loader, epoch: int, cfg: StageConfig, progress: bool, world: World = SINGLE,
               stop: StopSignals | None = None) -> dict:
    clf.set_seed(cfg.train.seed * 100_003 + epoch)  # dropout etc.: reproducible across resume
    frozen = epoch <= cfg.train.freeze_backbone_epochs
    if cfg.train.freeze_backbone_epochs:
        clf.freeze_backbone(frozen)  # set at every epoch: a resumed run freezes as the first one did
    t0 = time.perf_counter()
    loss_sum, correct, n = 0.0, 0, 0
    scheduled = cfg.train.lr_schedule != "constant" or cfg.train.warmup_epochs > 0
    lr, steps = cfg.train.lr, len(train_loader)
    bar = tqdm(train_loader.epoch(epoch), total=len(train_loader), desc=f"epoch {epoch}", leave=False,
               disable=not progress, unit="batch")
    for step, (x, y, _) in enumerate(bar):
        if scheduled:
            lr = scheduled_lr(cfg.train, epoch, step, steps)
            clf.set_lr(lr)
        if world.enabled:
            step_batch = agree_on_step(world, stop, train_loader, len(y))
            if step_batch is None:
                continue
            loss, logits = clf.train_step(x, y, global_batch=step_batch)
        else:
            loss, logits = clf.train_step(x, y)
            if not np.isfinite(loss):
                raise UserError(f"training diverged at epoch {epoch} (loss {loss}); lower train.lr")
        loss_sum += loss * len(y)
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
        bar.set_postfix(loss=f"{loss_sum / max(n, 1):.3f}", acc=f"{correct / max(n, 1):.3f}")
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
