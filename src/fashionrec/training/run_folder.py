"""A training run's folder: owned for the run (checked, locked, never left half-made), replaced only
by ``--force`` on a run of its own stage, and written after every epoch (``model.json``,
``history.jsonl`` + its plot, ``bad_images.txt``). The same for every objective.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..artifacts import check_replaceable, ensure_writable, exclusive_lock, read_json_object, write_text
from ..checkpoint import Checkpoint
from ..configload import dump_yaml
from ..distributed import SINGLE, World
from ..errors import TrainingInterrupted, UserError
from ..runs import RUN_KIND, sha256_file, write_model_json


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


def write_bad_images(run_dir: Path, bad: dict, world: World, log) -> None:
    """``bad_images.txt``: the images no rank could decode (rank 0 writes it)."""
    if world.enabled:
        bad = {p: r for part in world.all_gather_json(bad) for p, r in part.items()}
    if bad:
        world.on_main(lambda: write_text(run_dir / "bad_images.txt",
                                         "".join(f"{p}\t{r}\n" for p, r in sorted(bad.items()))))
        log(f"skipped {len(bad)} unreadable image(s); listed in {run_dir / 'bad_images.txt'}")




def start_run_folder(cfg, run_dir: Path, write_record: Callable[[Path], object]) -> None:
    """A new run's ``config.yaml`` and its data record ``manifest.csv`` (``write_record(path)``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", dump_yaml(cfg))
    write_record(run_dir / "manifest.csv")
