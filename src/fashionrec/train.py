"""The engine-agnostic training loop: epochs, early stopping, checkpoints, resume, history.

Written once for every engine (see :mod:`fashionrec.engines.base`). Early stopping watches the
validation loss: the best epoch's weights are the run's result, and training stops after
``patience`` epochs without a lower validation loss or at ``max_epochs``. After every epoch
``last/`` holds the complete state (weights, optimiser, loop state, history), swapped in
atomically, so an interrupted run resumes from its last completed epoch and ends with the same
epochs and history as one that was never interrupted.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import metrics as M
from .config import StageConfig, dump_yaml
from .data.loader import BatchLoader
from .data.readers import load_manifest
from .engines.base import WEIGHTS_FILE, build_classifier
from .errors import TrainingInterrupted, UserError
from .io import atomic_dir, read_json, write_json, write_text
from .runs import load_classifier, read_model_json, sha256_file, write_model_json


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


def predict_loader(clf, loader, desc: str = "eval", progress: bool = True, epoch: int = 0):
    """Run a classifier over a loader; returns (logits, labels, manifest rows)."""
    logits, labels, rows = [], [], []
    for x, y, idx in tqdm(loader.epoch(epoch), total=len(loader), desc=desc, leave=False, disable=not progress):
        logits.append(clf.predict(x))
        labels.append(y)
        rows.append(idx)
    if not logits:
        return np.zeros((0, clf.num_classes), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(rows)


def _write_history(run_dir: Path, history: list[dict], title: str) -> None:
    from .report import plot_history

    write_text(run_dir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    plot_history(history, run_dir / "history.png", title=title)


def _prepare_run_dir(cfg: StageConfig, run_dir: Path, resume: bool) -> dict | None:
    state_file = run_dir / "last" / "state.json"
    if resume:
        if not state_file.is_file():
            raise UserError(f"{run_dir}: nothing to resume (no last/state.json); run without --resume")
        return read_json(state_file)
    if (run_dir / "model.json").exists() or state_file.exists():
        raise UserError(f"{run_dir}: run directory already exists; use --resume to continue it, "
                        f"or pick another name with --set output.name=NAME")
    return None


def train(cfg: StageConfig, *, resume: bool = False, init: str | Path | None = None,
          progress: bool = True, log=print) -> Path:
    """Train a classifier as ``cfg`` says; return the run directory."""
    run_dir = cfg.run_dir
    state = _prepare_run_dir(cfg, run_dir, resume)
    manifest = load_manifest(cfg.data, cfg.task)
    manifest.check_trainable()
    if cfg.train.top_k < 1:
        raise UserError("train.top_k: must be >= 1")

    if init is not None and state is None:
        clf, init_info = load_classifier(init, device=cfg.train.device)
        if init_info["arch"] != cfg.model.arch:
            raise UserError(f"--init {init}: run is a {init_info['arch']}, config asks for {cfg.model.arch}")
        if init_info["engine"] != cfg.engine:
            raise UserError(f"--init {init}: run uses engine {init_info['engine']}, config asks for {cfg.engine} "
                            f"(convert it with `fashionrec convert`)")
        clf.reset_head(len(manifest.classes))
    else:
        clf = build_classifier(cfg.engine, cfg.model.arch, len(manifest.classes), device=cfg.train.device,
                               seed=cfg.train.seed)
    t = cfg.train
    clf.configure_optimizer(t.optimizer, t.lr, t.weight_decay, t.momentum)

    history: list[dict] = []
    best_loss, best_epoch, bad_epochs, start = float("inf"), 0, 0, 1
    if state is not None:
        clf.load_training_state(run_dir / "last")
        history = state["history"]
        best_loss, best_epoch = state["best_val_loss"], state["best_epoch"]
        bad_epochs, start = state["bad_epochs"], state["epoch"] + 1
        log(f"resuming {run_dir} after epoch {state['epoch']}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", dump_yaml(cfg))
        manifest.to_csv(run_dir / "manifest.csv")

    info = {
        "engine": cfg.engine, "arch": cfg.model.arch, "task": cfg.task, "stage": cfg.stage,
        "classes": list(manifest.classes), "input_size": cfg.model.input_size,
        "normalization": {"mean": list(clf.mean), "std": list(clf.std)},
        "num_features": clf.num_features, "weights": WEIGHTS_FILE[cfg.engine], "top_k": t.top_k,
        "init": str(init) if init else (state or {}).get("init"), "device": clf.device,
    }
    train_loader, val_loader = make_loaders(cfg, manifest)
    log(f"{cfg.stage} {cfg.model.arch} on {cfg.task}: {len(manifest.classes)} classes, "
        f"{len(train_loader.manifest)} train / {len(val_loader.manifest)} val images, "
        f"engine {cfg.engine} on {clf.device} -> {run_dir}")
    done = state is not None and (bad_epochs >= t.patience or start > t.max_epochs)
    epoch = start - 1
    try:
        with sigterm_as_interrupt():
            for epoch in range(start, t.max_epochs + 1):
                if done:
                    break
                row = _run_epoch(clf, train_loader, val_loader, epoch, cfg, progress)
                history.append(row)
                if row["val_loss"] < best_loss - 1e-7:
                    best_loss, best_epoch, bad_epochs = row["val_loss"], epoch, 0
                    clf.save_weights(run_dir / info["weights"])
                else:
                    bad_epochs += 1
                done = bad_epochs >= t.patience
                with atomic_dir(run_dir / "last") as tmp:
                    clf.save_training_state(tmp)
                    write_json(tmp / "state.json", {
                        "epoch": epoch, "best_epoch": best_epoch, "best_val_loss": best_loss,
                        "bad_epochs": bad_epochs, "history": history, "init": info["init"],
                    })
                best = history[best_epoch - 1]
                info.update(best_epoch=best_epoch, epochs=epoch,
                            metrics={k: best[k] for k in best if k.startswith("val_")},
                            weights_sha256=sha256_file(run_dir / info["weights"]))
                write_model_json(run_dir, info)
                _write_history(run_dir, history, f"{cfg.stage} {cfg.model.arch} {cfg.task}")
                log(f"epoch {epoch}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
                    f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} "
                    f"top-{t.top_k} {row['val_top_k']:.3f}" + ("  *best" if best_epoch == epoch else ""))
    except KeyboardInterrupt:
        train_loader.close()
        val_loader.close()
        raise TrainingInterrupted(run_dir, epoch - 1 if epoch >= start else start - 1) from None
    finally:
        train_loader.close()
        val_loader.close()
    bad = {**train_loader.bad, **val_loader.bad}
    if bad:
        write_text(run_dir / "bad_images.txt", "".join(f"{p}\t{r}\n" for p, r in sorted(bad.items())))
        log(f"skipped {len(bad)} unreadable image(s); listed in {run_dir / 'bad_images.txt'}")
    if history:
        log(f"best epoch {best_epoch}: val loss {best_loss:.3f}; weights in {run_dir / info['weights']}")
    return run_dir


def _run_epoch(clf, train_loader, val_loader, epoch: int, cfg: StageConfig, progress: bool) -> dict:
    clf.set_seed(cfg.train.seed * 100_003 + epoch)  # dropout etc.: reproducible across resume
    t0 = time.perf_counter()
    loss_sum, correct, n = 0.0, 0, 0
    bar = tqdm(train_loader.epoch(epoch), total=len(train_loader), desc=f"epoch {epoch}", leave=False,
               disable=not progress, unit="batch")
    for x, y, _ in bar:
        loss, logits = clf.train_step(x, y)
        if not np.isfinite(loss):
            raise UserError(f"training diverged at epoch {epoch} (loss {loss}); lower train.lr")
        loss_sum += loss * len(y)
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
        bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}")
    train_s = time.perf_counter() - t0
    logits, labels, _ = predict_loader(clf, val_loader, desc="val", progress=progress)
    return {
        "epoch": epoch,
        "train_loss": loss_sum / max(n, 1),
        "train_acc": correct / max(n, 1),
        "val_loss": M.cross_entropy(logits, labels),
        "val_acc": M.accuracy(logits, labels),
        "val_top_k": M.top_k_accuracy(logits, labels, cfg.train.top_k),
        "lr": cfg.train.lr,
        "train_images_per_s": n / train_s if train_s > 0 else 0.0,
        "seconds": time.perf_counter() - t0,
    }


def evaluate(run_dir, split: str = "val", device: str = "auto", progress: bool = True, workers: int = 1) -> dict:
    """Evaluate a run on a split of its manifest; writes metrics.json and a confusion matrix PNG."""
    from .data.manifest import Manifest
    from .report import plot_confusion

    run_dir = Path(run_dir)
    info = read_model_json(run_dir)
    manifest = Manifest.from_csv(run_dir / "manifest.csv")
    part = manifest.subset(split)
    if len(part) == 0:
        have = ", ".join(sorted(set(manifest.splits)))
        raise UserError(f"{run_dir}: the manifest has no '{split}' split (it has: {have})")
    clf, _ = load_classifier(run_dir, device=device)
    loader = BatchLoader(part, info["input_size"], batch_size=32, workers=workers)
    try:
        logits, labels, _ = predict_loader(clf, loader, desc=f"evaluate {split}", progress=progress)
    finally:
        loader.close()
    k = int(info.get("top_k", 5))
    report = M.classification_report(logits, labels, info["classes"], k)
    report.update(split=split, run=str(run_dir), arch=info["arch"], task=info["task"], stage=info.get("stage"))
    write_json(run_dir / f"metrics-{split}.json", report)
    write_json(run_dir / "metrics.json", report)
    plot_confusion(np.asarray(report["confusion"]), info["classes"], run_dir / f"confusion-{split}.png",
                   title=f"{info['arch']} {info['task']} ({split}, acc {report['accuracy']:.2f})")
    return report


def format_report(report: dict) -> str:
    """A table shaped like the paper's Tables 3 and 4, then per-class accuracy."""
    k = report["top_k"]["k"]
    lines = [
        f"{'model':<14}{'task':<10}{'split':<7}{'n':>7}{'acc':>8}{f'top-{k}':>8}{'loss':>8}",
        f"{report['arch']:<14}{report['task']:<10}{report['split']:<7}{report['n']:>7}"
        f"{report['accuracy']:>8.3f}{report['top_k']['value']:>8.3f}{report['loss']:>8.3f}",
        "",
        "per-class accuracy:",
    ]
    for name, acc in report["per_class"].items():
        lines.append(f"  {name:<24}{'n/a' if acc is None or acc != acc else f'{acc:.3f}':>8}")
    return "\n".join(lines)
