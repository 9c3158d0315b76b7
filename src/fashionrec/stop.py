"""A stop request (Ctrl-C, SIGTERM) that no moment of a command can lose.

Python runs a signal's handler in the main thread at the next bytecode, wherever that is: inside a
``__del__``, a weakref or GC callback, or an ``os.register_at_fork`` hook (logging's, while a worker
is forked: the signals are blocked in the main thread then, so one of torch's threads takes it and the
handler runs in the hook after the fork). A KeyboardInterrupt raised there is printed as "Exception
ignored in ..." and dropped, and the command would go on as if nobody had asked.

So the handler :func:`scope` installs for SIGINT and SIGTERM records the request before it raises (SIGTERM
too: its default would kill the command mid-write, e.g. between a run folder's creation and the first
epoch, before the training loop's own handler is in place), and the long
loops (each loader batch, each synth job) call :func:`check`, which raises KeyboardInterrupt again
while a request is recorded: nothing resets the record within a command. The dropped one is not
printed either (``sys.unraisablehook``): the user asked to stop and the command stops, with its own
one line, not a traceback of a weakref callback. A data-parallel run's
:class:`~fashionrec.distributed.StopSignals` records too, but there the ranks stop together at a step
they agree on, so :func:`check` leaves the decision to them while it is :func:`deferred`.

A command started with SIGINT ignored keeps ignoring it, as every program does: a shell starts a
background job (``cmd &`` without job control) that way so that the terminal's Ctrl-C stops only the
foreground. A stop signal *blocked* in the mask the command was started with is unblocked: exec keeps
the mask of whichever thread started it, and nobody means that.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested: int | None = None  # the first stop signal of the command in progress
_depth = 0  # scopes entered (commands in progress: nested ones share the outermost's record)
_deferred = 0  # data-parallel epochs in progress: the ranks decide together


def record(signum: int) -> None:
    """Note a stop request; the first one is kept."""
    global _requested
    if _requested is None:
        _requested = signum


def requested() -> int | None:
    """The stop signal recorded in the command in progress, or None."""
    return _requested if _depth else None


def check() -> None:
    """Raise KeyboardInterrupt when a stop was requested in the command in progress (and the ranks of a
    data-parallel run are not the ones deciding it)."""
    if _depth and _requested is not None and not _deferred:
        raise KeyboardInterrupt


def _quiet_recorded_stop(unraisable, _previous=None) -> None:
    """``sys.unraisablehook`` in a command: a KeyboardInterrupt of a recorded stop that landed where Python drops
    exceptions (a ``__del__``, a weakref callback) is left to :func:`check`; anything else is printed as before."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _requested is not None:
        return
    (_previous or sys.__unraisablehook__)(unraisable)


def _interrupt(signum, frame):
    record(signum)
    raise KeyboardInterrupt


@contextmanager
def deferred():
    """While in it, :func:`check` leaves a recorded request to the caller (data-parallel epochs)."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1


@contextmanager
def scope():
    """A command: a fresh record, SIGINT and SIGTERM recorded before they raise, and stop signals unblocked. Nested
    scopes are part of the outermost one."""
    global _depth, _requested
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    _requested = None
    previous = {}
    main = threading.current_thread() is threading.main_thread()  # signals are the main thread's business
    if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored, nobody else's
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    if main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # as SIGINT: before the epochs' handler too
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)
    _depth = 1
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _quiet_recorded_stop(unraisable, hook)
    try:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a pending one is raised here, recorded
        yield
    finally:
        _depth = 0
        sys.unraisablehook = hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)
