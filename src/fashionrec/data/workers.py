"""Worker processes for the loader and for ``synth``: forked, each with its own task pipe and result pipe,
and no lock shared with the parent.

Why not ``multiprocessing.Pool``: its workers share the task queue's lock with the parent. Stopping a
pool takes that lock and SIGTERMs the workers, and a worker waiting for the lock leaves only by running
a Python signal handler; a SIGTERM that lands while that handler is already running (the process
group's own SIGTERM, a moment earlier) is noticed only when the wait ends, and it never did: ``join()``
hung twice in CI and once at the end of a training. Here a worker shares nothing with the parent but
the batch slots, so SIGTERM's default action and SIGKILL are always safe, and a worker that dies (the
OOM killer) is reported at once instead of waited for forever.

Jobs go round-robin, and each worker answers its jobs in order, so results come back in the order
the jobs went out without any reordering. Jobs and answers are bytes and JSON: nothing is unpickled.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait

from ..artifacts import DISK_ERRNOS as _DISK_ERRNOS
from ..errors import UserError

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PARENT_CHECK_S = 1.0  # how often an idle worker checks that its parent is alive


class WorkerDied(UserError):
    """A worker process ended while it owed an answer: the OOM killer, or a crash in a decoder."""


def _serve(tasks, results, parent_side, parent_pid: int, init: Callable[[], None],
           handle: Callable[[bytes], object]) -> None:
    """A worker's life: answer each job on ``tasks`` with ``handle(job)`` on ``results``, until the task pipe
    closes or the parent is gone."""
    # Ctrl-C reaches the whole process group: the parent alone handles it and then kills the workers.
    # SIGTERM (`timeout`, the parent's atexit) ends a worker at once: it holds nothing the parent needs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    for conn in parent_side:  # the parent's ends of every pipe made so far: EOF must mean the parent closed them
        conn.close()
    init()
    while True:
        while not tasks.poll(_PARENT_CHECK_S):
            if os.getppid() != parent_pid:  # the parent was killed; a later sibling may hold our task pipe open
                return
        try:
            job = tasks.recv_bytes()
        except EOFError:
            return
        try:
            answer = {"result": handle(job)}
        except OSError as e:  # a full disk or a file-size limit is the parent's OSError, not a worker's bug
            answer = ({"oserror": [e.errno, e.strerror, e.filename and str(e.filename)]} if e.errno in _DISK_ERRNOS
                      else {"error": "".join(traceback.format_exception(e)).rstrip()})
        except Exception as e:  # noqa: BLE001 - a bug: its traceback goes to the parent, which raises it
            answer = {"error": "".join(traceback.format_exception(e)).rstrip()}
        results.send_bytes(json.dumps(answer).encode())


class Workers:
    """``n`` forked processes that run ``handle(job: bytes) -> JSON-able`` after ``init()``;
    :meth:`submit` a job, :meth:`next_result` takes the answers in submission order, :meth:`close` kills them.

    A job whose handler raised comes back as a RuntimeError with the worker's traceback; a worker that
    died raises :class:`WorkerDied`, or KeyboardInterrupt when a stop signal (SIGINT, SIGTERM, SIGHUP)
    killed it: the process group is being stopped, and the caller's interrupt handling applies.
    """

    def __init__(self, n: int, init: Callable[[], None], handle: Callable[[bytes], object], name: str = "worker"):
        if n < 1:
            raise ValueError(f"n must be >= 1; got {n}")
        ctx = mp.get_context("fork")  # the workers inherit the state and the shared slots without pickling
        self.name = name
        self._procs, self._tasks, self._results = [], [], []
        self._pending: deque[int] = deque()  # the worker owing each answer, oldest first
        self._next = 0
        parent_side = []
        try:
            for _ in range(n):
                task_r, task_w = ctx.Pipe(duplex=False)
                result_r, result_w = ctx.Pipe(duplex=False)
                parent_side += [task_w, result_r]
                proc = ctx.Process(target=_serve, args=(task_r, result_w, list(parent_side), os.getpid(), init, handle),
                                   daemon=True)
                # Blocked across fork: a stop signal in the child before _serve resets its handlers would run the
                # parent's handler there (a KeyboardInterrupt traceback from a worker). The parent gets it on unblock.
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
                try:
                    proc.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                task_r.close()  # the child's ends: a dead child then reads as EOF here
                result_w.close()
                self._procs.append(proc)
                self._tasks.append(task_w)
                self._results.append(result_r)
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self._procs)

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet answered."""
        return len(self._pending)

    def submit(self, job: bytes) -> None:
        k = self._next
        self._next = (k + 1) % len(self._procs)
        try:
            self._tasks[k].send_bytes(job)
        except (BrokenPipeError, ConnectionResetError):
            self._raise_died(k)
        self._pending.append(k)

    def next_result(self):
        """The answer to the oldest job not yet answered (blocks until it is there)."""
        k = self._pending.popleft()
        conn, proc = self._results[k], self._procs[k]
        wait([conn, proc.sentinel])
        try:
            if conn.poll():
                answer = json.loads(conn.recv_bytes())
                if "oserror" in answer:  # the disk refused a worker's write: the caller reports it as its own
                    raise OSError(*answer["oserror"])
                if "error" in answer:
                    raise RuntimeError(f"{self.name} {k} (pid {proc.pid}) failed:\n{answer['error']}")
                return answer["result"]
        except EOFError:
            pass
        self._raise_died(k)

    def _raise_died(self, k: int):
        proc = self._procs[k]
        proc.join(5.0)
        code = proc.exitcode
        if code is not None and code < 0 and -code in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            raise KeyboardInterrupt
        how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited ({code})"
        hint = "; out of memory? fewer workers or smaller batches use less" if code == -signal.SIGKILL else ""
        raise WorkerDied(f"{self.name} {k} (pid {proc.pid}) {how} while a batch was due{hint}")

    def close(self) -> None:
        """Kill the workers and reap them; safe at any moment, and more than once."""
        for proc in self._procs:
            if proc.exitcode is None:
                proc.kill()
        for proc in self._procs:
            proc.join()
        for conn in self._tasks + self._results:
            conn.close()
        self._procs, self._tasks, self._results = [], [], []
        self._pending.clear()
