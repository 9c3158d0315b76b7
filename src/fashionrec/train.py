"""The engine-agnostic training loop: epochs, validation, history, resume.

Written once for every engine (see :mod:`fashionrec.engines.base`). Which epoch is best, when
to stop early and what ``last/`` holds for ``--resume`` is :class:`fashionrec.checkpoint.Checkpoint`'s
business: the classification stages watch the validation loss, so the best epoch's weights are
the run's result, and training stops after ``patience`` epochs without a lower validation loss
or at ``max_epochs``. An interrupted run resumes from its last completed epoch and ends with the
same epochs and history as one that was never interrupted.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import metrics as M
from .artifacts import check_replaceable, ensure_writable, exclusive_lock, write_text
from .checkpoint import Checkpoint
from .config import StageConfig, dump_yaml
from .data.loader import BatchLoader
from .data.readers import load_manifest
from .engines.factory import build_classifier
from .engines.registry import weights_file
from .errors import TrainingInterrupted, UserError
from .evaluate import predict_loader
from .runs import RUN_KIND, load_classifier, normalization_record, sha256_file, write_model_json
from .scalars import ScalarLog


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM behaves like Ctrl-C, so a killed job still leaves its last epoch on disk."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def make_loaders(cfg: StageConfig, manifest):
    common = dict(input_size=cfg.model.input_size, batch_size=cfg.train.batch_size, seed=cfg.train.seed,
                  workers=cfg.train.workers, max_bad_fraction=cfg.data.max_bad_fraction,
                  max_pixels=cfg.data.max_pixels)
    train = BatchLoader(manifest.subset("train"), shuffle=True, augment=cfg.augment,
                        limit_batches=cfg.train.limit_train_batches, **common)
    val = BatchLoader(manifest.subset("val"), shuffle=False, **common)
    return train, val


def _write_results(run_dir: Path, info: dict, checkpoint: Checkpoint, title: str) -> None:
    """model.json (the best epoch so far and its validation metrics), history.jsonl and its plot."""
    from .report import plot_history

    best = checkpoint.best
    info.update(best_epoch=checkpoint.best_epoch, epochs=checkpoint.epoch,
                metrics={k: best[k] for k in best if k.startswith("val_")},
                weights_sha256=sha256_file(run_dir / info["weights"]))
    write_model_json(run_dir, info)
    history = checkpoint.history
    write_text(run_dir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    plot_history(history, run_dir / "history.png", title=title)


@contextmanager
def run_folder(run_dir: Path, resume: bool, force: bool = False):
    """Own ``run_dir`` for one training run: checked, locked, and not left half-made.

    The folder must be new, empty or a run (``--resume`` continues it; ``force`` replaces a
    finished one); a folder holding anything else is refused. One writer at a time: a second
    run into the same folder fails at once naming the first. A run that ends before its first
    epoch is saved (bad data, a diverged loss) removes the folder it created. Yields a callable
    that says whether an epoch was saved.
    """
    ensure_writable(run_dir)
    check_replaceable(run_dir, RUN_KIND)
    with exclusive_lock(run_dir, wait=False, what="run folder"):
        if force and not resume and RUN_KIND.recognises(run_dir):
            shutil.rmtree(run_dir)  # every entry is one a run writes (recognises checked it)
        created = not run_dir.exists()
        saved = {"epoch": False}
        try:
            yield saved
        except BaseException:
            if created and not saved["epoch"] and run_dir.is_dir():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def train(cfg: StageConfig, *, resume: bool = False, init: str | Path | None = None,
          progress: bool = True, log=print, force: bool = False) -> Path:
    """Train a classifier as ``cfg`` says; return the run directory.

    ``init`` (a run directory: a pretrain run, an imported checkpoint) defaults to ``cfg.init``.
    ``force`` replaces a finished run of the same name (never a folder holding other files).
    """
    init = init if init is not None else cfg.init
    with run_folder(cfg.run_dir, resume, force) as saved:
        return _train(cfg, resume, init, progress, log, saved)


def _train(cfg: StageConfig, resume: bool, init, progress: bool, log, saved: dict) -> Path:
    run_dir, t = cfg.run_dir, cfg.train
    if t.patience < 1:
        raise UserError("train.patience: must be >= 1")
    checkpoint = Checkpoint(run_dir, weights=weights_file(cfg.engine), patience=t.patience,
                            monitor="val_loss", mode="min")
    resumed = checkpoint.open(resume)
    manifest = load_manifest(cfg.data, cfg.task)
    manifest.check_trainable()
    if t.top_k < 1:
        raise UserError("train.top_k: must be >= 1")

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
    clf.configure_optimizer(t.optimizer, t.lr, t.weight_decay, t.momentum, label_smoothing=t.label_smoothing)

    if resumed:
        checkpoint.load_training_state(clf)
        log(f"resuming {run_dir} after epoch {checkpoint.epoch}")
    else:
        checkpoint.meta["init"] = str(init) if init else None  # kept in last/ for a resume's model.json
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", dump_yaml(cfg))
        manifest.to_csv(run_dir / "manifest.csv")

    info = {
        "engine": cfg.engine, "arch": cfg.model.arch, "task": cfg.task, "stage": cfg.stage,
        "classes": list(manifest.classes), "input_size": cfg.model.input_size,
        "normalization": normalization_record(clf),
        "num_features": clf.num_features, "weights": checkpoint.weights, "top_k": t.top_k,
        "init": checkpoint.meta.get("init"), "device": clf.device,
    }
    scalars = ScalarLog(run_dir, cfg.log.tensorboard, title=f"{cfg.stage} {cfg.model.arch} {cfg.task}")
    train_loader, val_loader = make_loaders(cfg, manifest)
    log(f"{cfg.stage} {cfg.model.arch} on {cfg.task}: {len(manifest.classes)} classes, "
        f"{len(train_loader.images)} train / {len(val_loader.images)} val images, "
        f"engine {cfg.engine} on {clf.device} -> {run_dir}")
    try:
        with sigterm_as_interrupt():
            for epoch in range(checkpoint.epoch + 1, t.max_epochs + 1):
                if checkpoint.should_stop:  # also a resumed run that had already stopped early
                    break
                row = _run_epoch(clf, train_loader, val_loader, epoch, cfg, progress)
                is_best = checkpoint.update(clf, row)
                saved["epoch"] = True
                scalars.write(row)
                _write_results(run_dir, info, checkpoint, f"{cfg.stage} {cfg.model.arch} {cfg.task}")
                log(f"epoch {epoch}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
                    f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} "
                    f"top-{t.top_k} {row['val_top_k']:.3f}" + ("  *best" if is_best else ""))
    except KeyboardInterrupt:
        raise TrainingInterrupted(run_dir, checkpoint.epoch) from None
    finally:
        train_loader.close()
        val_loader.close()
        scalars.close()
    bad = {**train_loader.bad, **val_loader.bad}
    if bad:
        write_text(run_dir / "bad_images.txt", "".join(f"{p}\t{r}\n" for p, r in sorted(bad.items())))
        log(f"skipped {len(bad)} unreadable image(s); listed in {run_dir / 'bad_images.txt'}")
    if checkpoint.history:
        log(f"best epoch {checkpoint.best_epoch}: val loss {checkpoint.best_value:.3f}; "
            f"weights in {run_dir / info['weights']}")
    return run_dir


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


def _run_epoch(clf, train_loader, val_loader, epoch: int, cfg: StageConfig, progress: bool) -> dict:
    clf.set_seed(cfg.train.seed * 100_003 + epoch)  # dropout etc.: reproducible across resume
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
        loss, logits = clf.train_step(x, y)
        if not np.isfinite(loss):
            raise UserError(f"training diverged at epoch {epoch} (loss {loss}); lower train.lr")
        loss_sum += loss * len(y)
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
        bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}")
    train_s = time.perf_counter() - t0
    logits, labels, _ = predict_loader(clf, val_loader, desc="val", progress=progress)
    if not np.isfinite(logits).all():  # the weights blew up after the last finite training loss
        raise UserError(f"training diverged at epoch {epoch} (validation outputs are NaN or infinite); "
                        f"lower train.lr")
    return {
        "epoch": epoch,
        "train_loss": loss_sum / max(n, 1),
        "train_acc": correct / max(n, 1),
        "val_loss": M.cross_entropy(logits, labels),
        "val_acc": M.accuracy(logits, labels),
        "val_top_k": M.top_k_accuracy(logits, labels, cfg.train.top_k),
        "lr": lr,  # of the epoch's last step
        "train_images_per_s": n / train_s if train_s > 0 else 0.0,
        "seconds": time.perf_counter() - t0,
    }
