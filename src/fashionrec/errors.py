"""The toolkit's own errors.

A :class:`UserError` is a mistake the user can fix (bad file, bad key, bad value). The CLI
prints its one-line message and exits with code 2, without a traceback. Anything else is a
bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration file or override is wrong."""


class DataError(UserError):
    """A dataset, annotation file or image is wrong."""


class TrainingInterrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM; ``last/`` holds the last completed epoch."""

    def __init__(self, run_dir, epoch):
        super().__init__(f"interrupted; {run_dir}/last holds epoch {epoch}; continue with --resume" if epoch else
                         "interrupted before the first epoch was saved; nothing was kept")
        self.run_dir, self.epoch = run_dir, epoch

