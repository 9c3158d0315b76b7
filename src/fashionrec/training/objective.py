"""What a training objective supplies to the :class:`~fashionrec.training.trainer.Trainer`, and their
registry.

An objective is one module in ``fashionrec/training/objectives/`` (or a plugin) with a
``@register_objective`` subclass of :class:`Objective`: the config stages it trains, the run kind it
writes, the validation metric it watches, and how to read its data, build its model, train and
validate one epoch, and describe and plot its history. The Trainer does the rest (run folder, ranks,
checkpoint and resume, stop signals, history, TensorBoard) the same for all.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ..registry import Registry

OBJECTIVES = Registry("training objective", "fashionrec.training.objectives")


class Objective:
    """One training objective for one run (``cfg`` a stage config; ``init`` a run to start from or None)."""

    name: ClassVar[str] = ""
    stages: ClassVar[tuple[str, ...]] = ()  # the config ``stage`` values it trains (a CLI command each)
    run_kind: ClassVar[str] = ""  # model.json ``kind`` of its runs (fashionrec.runs.RUN_KINDS)
    monitor: ClassVar[str] = ""  # the history key that picks the best epoch
    mode: ClassVar[str] = "min"  # min or max of ``monitor``
    # stage -> (its command's help, its --init option's help): the CLI makes ``fashionrec <stage>`` of each
    stage_help: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, cfg, init=None):
        self.cfg, self.init = cfg, init

    @property
    def engine(self) -> str:
        return self.cfg.engine

    @property
    def title(self) -> str:
        return f"{self.cfg.stage} {self.cfg.model.arch}"

    @classmethod
    def load_stage_config(cls, stage: str, path, overrides=()):
        """The config file ``path`` (with ``--set`` overrides) for ``stage``; another stage's is a one-line error."""
        raise NotImplementedError

    @classmethod
    def check_start(cls, cfg, init, resume: bool) -> None:
        """Refuse a command line that cannot start (e.g. fine-tuning without a run to start from)."""

    def check(self) -> None:
        """Refuse what cannot run, before any data is read or folder made."""

    def load_data(self, run_dir: Path, resumed: bool) -> None:
        """Read the run's data (a resumed run: the record in its folder)."""
        raise NotImplementedError

    def cache_images(self):
        """The images (all the run's rows) its decoded cache (``data.cache``) holds, after :meth:`load_data`."""
        raise NotImplementedError

    def build_model(self, checkpoint, resumed: bool):
        """The network to train, with its optimiser (and ``last/`` when ``resumed``)."""
        raise NotImplementedError

    def run_meta(self) -> dict:
        """What a resume needs beside the weights, kept in ``last/`` (e.g. the input normalisation)."""
        return {}

    def write_data_record(self, path: Path) -> None:
        """The run's ``manifest.csv``: the data it saw."""
        raise NotImplementedError

    def model_info(self, model) -> dict:
        """model.json's objective-specific keys (the Trainer adds the run kind, weights, init, device, ranks)."""
        raise NotImplementedError

    def make_loaders(self, world) -> tuple:
        """(training loader, validation loader) of this rank."""
        raise NotImplementedError

    def describe(self, model, world, loaders) -> list[str]:
        """The lines logged before the first epoch."""
        raise NotImplementedError

    def run_epoch(self, model, loaders, epoch: int, progress: bool, world, stop) -> dict:
        """Train and validate one epoch on every rank; return its history row."""
        raise NotImplementedError

    def epoch_line(self, row: dict) -> str:
        raise NotImplementedError

    def best_line(self, checkpoint) -> str:
        raise NotImplementedError

    def plot(self, history: list, png: Path) -> None:
        raise NotImplementedError


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: the :class:`Objective` subclass ``cls`` under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Objective)) or not cls.stages:
        raise ValueError(f"{cls!r}: register an Objective subclass that names its stages")
    return OBJECTIVES.register(cls, name=cls.name)


def objective_names() -> tuple[str, ...]:
    return OBJECTIVES.names()


def objective_for_stage(stage: str) -> type[Objective]:
    """The objective that trains config stage ``stage``."""
    for _, cls in OBJECTIVES.items():
        if stage in cls.stages:
            return cls
    raise ValueError(f"no training objective trains stage {stage!r}")


def training_stages() -> dict[str, type[Objective]]:
    """Every trainable stage -> its objective (the CLI makes a command of each)."""
    return {stage: cls for _, cls in OBJECTIVES.items() for stage in cls.stages}
