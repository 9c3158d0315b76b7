"""The CLI's shared pieces: the error wrapper, and every option more than one command takes (spelled once)."""

from __future__ import annotations

import errno
import functools
import os
import sys
import warnings

import click

from .. import stop
from ..engines.registry import DEVICE_NAMES, ENGINE_NAMES
from ..errors import TrainingInterrupted, UserError

SETTINGS = dict(help_option_names=["-h", "--help"], max_content_width=100)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):  # no source line
    click.echo(f"warning: {message}", err=True)


_USER_OS_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def friendly_errors(fn):
    """User mistakes become one line on stderr and exit code 2; bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with stop.scope(), warnings.catch_warnings():  # Ctrl-C recorded: none is lost (fashionrec.stop)
                warnings.showwarning = _one_line_warning
                return fn(*args, **kwargs)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except TrainingInterrupted as e:
            click.echo(f"\n{e}", err=True)
            sys.exit(130)
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(130)
        except Exception as e:
            # the disk, not the code: a full, read-only or forbidden location (or a file-size limit) is the
            # user's to fix; also the forms without an errno (numpy's short write, safetensors' error)
            from ..artifacts import disk_error

            reason = e.strerror if isinstance(e, OSError) and e.errno in _USER_OS_ERRORS else disk_error(e)
            if not reason:
                raise
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            click.echo(f"error: {where}{reason}; finished artifacts were kept, the unfinished one was not written",
                       err=True)
            sys.exit(2)

    return wrapper


def echo_once(message: str) -> None:
    """A command's closing line, printed by one process of a torchrun launch (RANK 0), not by each."""
    if os.environ.get("RANK", "0").strip() in ("", "0"):
        click.echo(message)


config_option = click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
                             help="YAML config file (see configs/).")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a config value, e.g. --set train.lr=0.01 (repeatable).")
progress_option = click.option("--progress/--no-progress", default=True, show_default=True,
                               help="Show progress bars.")
where_option = click.option("--where", "where", multiple=True, metavar="EXPR",
                            help="Keep the catalog items matching a filter over their attributes: col=value, "
                                 "col=a|b, col!=value, col<=number (<, >, >=), col or !col for booleans "
                                 "(repeatable, ANDed).")


def rerank_options(fn):
    """--rerank and --rerank-band: the hybrid score's weights of a request."""
    fn = click.option("--rerank-band", "rerank_band", type=float, default=None,
                      help="Relative band in which a number column agrees (default: the index's, 0.2).")(fn)
    return click.option("--rerank", "rerank", multiple=True, metavar="COL=WEIGHT,...",
                        help="Blend attribute agreement into the score, e.g. --rerank brand=0.5,price=1 "
                             "(over the index's weights; 0 drops a term).")(fn)


engine_option = click.option("--engine", type=click.Choice(ENGINE_NAMES), default=None,
                             help="Override the config's engine.")
device_option = click.option("--device", type=click.Choice(DEVICE_NAMES), default=None,
                             help="Compute device: auto (CUDA when present), cpu or cuda; overrides the config.")


def training_options(init_help: str):
    """The option stack every training command shares (one per objective stage), with its --init's help."""

    def decorate(fn):
        for option in reversed([
            config_option,
            click.option("--init", "init", type=click.Path(file_okay=False, exists=True), default=None,
                         help=init_help),
            set_option,
            click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch."),
            click.option("--force", is_flag=True, help="Replace a finished run of the same name once the new one has "
                         "an epoch."), engine_option, device_option, progress_option]):
            fn = option(fn)
        return fn

    return decorate
