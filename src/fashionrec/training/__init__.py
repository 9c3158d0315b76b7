"""Training: one :class:`Trainer` for every objective.

* :mod:`.trainer`: the Trainer (run folder, epochs, ranks, stop signals, checkpoint and resume, history,
  plots, TensorBoard) and :func:`train`, which picks the objective a config's ``stage`` names;
* :mod:`.objective`: what an objective supplies, and the registry of objectives;
* :mod:`.objectives`: ``classification`` (pretrain, finetune) and ``metric_learning`` (metric), one file
  each;
* :mod:`.run_folder`, :mod:`.schedule`: the run folder's rules; the learning-rate schedules.
"""

from .objective import Objective, objective_for_stage, objective_names, register_objective, training_stages
from .schedule import epoch_lr_factor, scheduled_lr
from .trainer import Trainer, agree_on_step, prepare_cache, train

__all__ = ["Objective", "Trainer", "agree_on_step", "epoch_lr_factor", "objective_for_stage", "objective_names",
           "prepare_cache", "register_objective", "scheduled_lr", "train", "training_stages"]
