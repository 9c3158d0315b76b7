"""The training commands, one per stage of the registered objectives (:mod:`fashionrec.training`): each
built from the objective's help texts over the one shared option stack, when it is asked for (so
``recommend`` never imports the training machinery)."""

from __future__ import annotations

import click

from .options import SETTINGS, config_option, echo_once, friendly_errors, progress_option, set_option, training_options


def training_command(stage: str, objective) -> click.Command:
    """The ``fashionrec <stage>`` command of ``objective`` (an :class:`~fashionrec.training.Objective` class)."""
    help_text, init_help = objective.stage_help[stage]

    @training_options(init_help)
    def command(config_path, init, overrides, resume, force, engine, device, progress):
        from ..training import train

        overrides = list(overrides) + [f"engine={engine}"] * bool(engine) + [f"train.device={device}"] * bool(device)
        cfg = objective.load_stage_config(stage, config_path, overrides)
        objective.check_start(cfg, init, resume)
        run_dir = train(cfg, resume=resume, init=init, progress=progress, log=click.echo, force=force)
        echo_once(f"run directory: {run_dir}  (curves: {run_dir / 'history.png'}; scores: fashionrec evaluate "
                  f"{run_dir})")

    return click.command(stage, help=help_text, context_settings=SETTINGS)(friendly_errors(command))


@click.command("cache", context_settings=SETTINGS)
@config_option
@set_option
@click.option("--rebuild", is_flag=True, help="Build it again even when it is up to date (e.g. after a damaged shard).")
@click.option("--verify", is_flag=True, help="Check every shard's sha256 (reads the whole cache).")
@progress_option
@friendly_errors
def cache(config_path, overrides, rebuild, verify, progress):
    """Decode and resize a training config's images once, into the folder its data.cache names.

    Training with data.cache set reads the pixels from this cache (memory-mapped shards): epochs after
    the first never decode a JPEG, augmentation stays random per epoch, the batches are the same. It is
    built on first use anyway; this builds it up front (with a progress bar) and checks it.
    """
    from ..configload import read_yaml
    from ..errors import UserError
    from ..training import objective_for_stage, prepare_cache

    stage = read_yaml(config_path).get("stage")
    try:
        objective = objective_for_stage(stage)
    except ValueError:
        raise UserError(f"{config_path}: stage: {stage!r} is not a training stage") from None
    cfg = objective.load_stage_config(stage, config_path, overrides)
    built = prepare_cache(cfg, rebuild=rebuild, verify=verify, progress=progress, log=click.echo)
    click.echo(built.summary())
