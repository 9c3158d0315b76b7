"""The Trainer: the one training loop every objective runs under (epochs, validation, history, resume).

Written once for every engine (see :mod:`fashionrec.engines.base`) and every objective
(:mod:`fashionrec.training.objective`: classification, metric learning, a plugin's). Which epoch is
best, when to stop early and what ``last/`` holds for ``--resume`` is
:class:`fashionrec.checkpoint.Checkpoint`'s business: each objective names the validation metric it
watches (classification the loss, metric learning Recall@1), the best epoch's weights are the run's
result, and training stops after ``patience`` epochs without a better value or at ``max_epochs``. An
interrupted run resumes from its last completed epoch and ends with the same epochs and history as one
that was never interrupted.

Under torchrun (:mod:`fashionrec.distributed`) the same loop runs on every rank: each trains on its
share of every global batch (``train.batch_size`` and ``train.lr`` are the run's; DistributedDataParallel
averages the gradients, ``train.sync_bn`` synchronises BatchNorm), validates its share of the
validation images, and the sums (of losses and of correct answers, not means of means) are added
over the ranks. Rank 0 alone writes the run folder and decides early stopping, and tells the others;
every history row and ``model.json`` record ``world_size`` and the global ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import distributed
from ..checkpoint import Checkpoint
from ..distributed import StopSignals, World
from ..engines.registry import check_training_precision, weights_file
from ..errors import TrainingInterrupted, UserError
from ..tensorboard_log import ScalarLog
from .objective import Objective, objective_for_stage
from .run_folder import run_folder, settle_run_folder, start_run_folder, write_bad_images, write_results


def agree_on_step(world: World, stop: StopSignals, loader, images: int) -> int | None:
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


def decoded_cache(world: World, data, images, input_size: int, workers: int):
    """``data.cache``'s decoded, resized images of ``images`` (all the run's rows; each loader finds its own):
    rank 0 builds it when it is missing or stale, every rank then opens it. None without ``data.cache``."""
    if not data.cache:
        return None
    from ..data.decoded_cache import ensure_cache, open_cache

    world.on_main(lambda: ensure_cache(data.cache, images, input_size, max_pixels=data.max_pixels,
                                       workers=workers) and None)
    return open_cache(data.cache, images, input_size, max_pixels=data.max_pixels)


def prepare_cache(cfg, *, rebuild: bool = False, verify: bool = False, progress: bool = True, log=print):
    """Build (when missing, stale or ``rebuild``) and check the decoded cache a training config's ``data.cache``
    names, before any training (``fashionrec cache``); returns it."""
    from ..data.decoded_cache import ensure_cache

    if not cfg.data.cache:
        raise UserError("data.cache: not set; name the folder to write it in (e.g. --set data.cache=cache/NAME)")
    objective = objective_for_stage(cfg.stage)(cfg)
    objective.load_data(None, resumed=False)
    return ensure_cache(cfg.data.cache, objective.cache_images(), cfg.model.input_size, max_pixels=cfg.data.max_pixels,
                        workers=cfg.train.workers, progress=progress, rebuild=rebuild, verify=verify, log=log)


def quiet(*_args) -> None:
    """The log of ranks other than 0: one rank speaks for the run."""


class Trainer:
    """Runs an :class:`Objective`: owns the run folder, the ranks, the checkpoint and the epochs.
    ``progress`` shows bars; ``log`` takes the lines a person reads (rank 0's)."""

    def __init__(self, *, progress: bool = True, log=print):
        self.progress, self.log = progress, log

    def fit(self, objective: Objective, *, resume: bool = False, force: bool = False) -> Path:
        """Train as the objective's config says; return the run directory.

        ``resume`` continues the run in its folder from its last completed epoch; ``force`` replaces a
        finished run of the same stage (never a folder holding other files, never the ``init`` run)."""
        cfg = objective.cfg
        distributed.check_engine(objective.engine)
        check_training_precision(objective.engine, cfg.train.precision)  # before any data is read or folder made
        objective.check()
        with (distributed.session(cfg.train.device) as world,
              run_folder(cfg.run_dir, resume, force, world, stage=cfg.stage, init=objective.init) as saved):
            return self._fit(objective, resume, saved, world)

    def _fit(self, obj: Objective, resume: bool, saved: dict, world: World) -> Path:
        cfg = obj.cfg
        run_dir, t = saved["dir"], cfg.train  # --force: a sibling folder until its first epoch replaces the old run
        world.local_batch(t.batch_size)  # the ranks share every batch evenly
        progress, log = (self.progress, self.log) if world.is_main else (False, quiet)
        checkpoint = Checkpoint(run_dir, weights=weights_file(obj.engine), patience=t.patience, monitor=obj.monitor,
                                mode=obj.mode)
        resumed = open_checkpoint(checkpoint, resume, world)
        obj.load_data(run_dir, resumed)
        model = world.everywhere(lambda: obj.build_model(checkpoint, resumed))
        if resumed:
            log(f"resuming {run_dir} after epoch {checkpoint.epoch}")
        else:
            checkpoint.meta.update(init=str(obj.init) if obj.init else None, **obj.run_meta())  # kept in last/
            world.on_main(lambda: start_run_folder(cfg, run_dir, obj.write_data_record))
        if world.enabled:
            model.distribute(sync_bn=t.sync_bn)

        info = {"kind": obj.run_kind, **obj.model_info(model), "stage": cfg.stage, "weights": checkpoint.weights,
                "init": checkpoint.meta.get("init"), "device": model.device,
                "world_size": world.size, "batch_size": t.batch_size}  # how it was trained: ranks, global batch
        scalars = ScalarLog(run_dir, cfg.log.tensorboard and world.is_main, title=obj.title)
        loaders = obj.make_loaders(world)
        for line in obj.describe(model, world, loaders):
            log(line)

        def keep(row: dict, is_best: bool) -> None:
            scalars.write(row)
            write_results(checkpoint.run_dir, info, checkpoint, obj.plot)
            log(obj.epoch_line(row) + ("  *best" if is_best else ""))

        run_epochs(checkpoint, model, t.max_epochs, world, saved, (*loaders, scalars),
                   lambda epoch, stop: obj.run_epoch(model, loaders, epoch, progress, world, stop), keep)
        run_dir = cfg.run_dir  # where the run is now, whatever folder it started in
        write_bad_images(run_dir, {k: v for loader in loaders for k, v in loader.bad.items()}, world, log)
        if not checkpoint.history:  # e.g. max_epochs 0 set in code (a config refuses it): no run to announce
            raise UserError(f"no epoch completed (train.max_epochs {t.max_epochs}); nothing usable was written")
        log(f"{obj.best_line(checkpoint)}; weights in {run_dir / info['weights']}")
        return run_dir


def train(cfg, *, resume: bool = False, init=None, progress: bool = True, log=print, force: bool = False) -> Path:
    """Train the stage ``cfg`` is for (pretrain, finetune, metric, a plugin's) with its objective; return the
    run directory. ``init`` (a run to start from) defaults to the config's ``init`` where it has one."""
    init = init if init is not None else getattr(cfg, "init", None)
    objective = objective_for_stage(cfg.stage)(cfg, init)
    return Trainer(progress=progress, log=log).fit(objective, resume=resume, force=force)


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
