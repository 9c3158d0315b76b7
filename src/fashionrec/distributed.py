"""Data-parallel runs on torch.distributed: which process this is, and the few collectives the stages need.

``torchrun --nproc_per_node N -m fashionrec STAGE -c CONFIG`` starts N processes with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`session` joins
them into one process group, nccl when the stage runs on CUDA and gloo on the CPU (torchrun's
``--nnodes`` and ``--rdzv-endpoint`` add machines; nothing here schedules anything). Without
those variables a stage runs as one process, exactly as before: :data:`SINGLE` answers every
question locally and every collective here is the identity.

What the hosts agree on (stop requests, counts, early stopping, errors, shards to assemble)
travels on a gloo group of CPU tensors, so it never waits for a GPU; structured values travel as
JSON, not pickle. The rules the stages follow:

- the global batch (``train.batch_size``) and the lr are the run's; each rank takes an equal
  share of every batch (:meth:`World.local_batch`);
- only rank 0 touches the run folder or the index (:meth:`World.on_main`), and an error there
  reaches every rank as one line, so no rank waits forever for another;
- Ctrl-C or SIGTERM on any rank (:class:`StopSignals`) stops every rank at the next step they
  agree on; the last completed epoch is on disk already.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist

from . import stop
from .errors import UserError

BACKENDS = {"cuda": "nccl", "cpu": "gloo"}


class RankFailed(UserError):
    """Another rank failed; that rank prints its own message (a traceback when it was a bug)."""


def _env_int(name: str, default: int, low: int) -> int:
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low:
        raise UserError(f"environment variable {name}: expected an integer >= {low} (torchrun sets it); got {raw!r}")
    return value


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset: one process)."""
    return _env_int("WORLD_SIZE", 1, 1)


def env_rank() -> int:
    """``RANK`` as torchrun sets it (0 when unset)."""
    rank, size = _env_int("RANK", 0, 0), env_world_size()
    if rank >= size:
        raise UserError(f"environment variable RANK: {rank} is not below WORLD_SIZE {size}")
    return rank


def check_engine(engine: str) -> None:
    """Data-parallel training runs on the torch engine only; one line saying so otherwise."""
    if engine != "torch" and env_world_size() > 1:
        raise UserError(f"engine: {engine}: distributed training (WORLD_SIZE={env_world_size()}) is torch-only; "
                        f"use engine: torch (`fashionrec convert RUN --to torch` brings a run over) or run without "
                        f"torchrun")


def bind_local_gpu() -> None:
    """Under torchrun, make ``cuda`` mean this rank's own GPU (``LOCAL_RANK``) before anything is placed on it."""
    if env_world_size() <= 1 or not torch.cuda.is_available():
        return
    local = _env_int("LOCAL_RANK", 0, 0)
    if local >= torch.cuda.device_count():
        raise UserError(f"environment variable LOCAL_RANK: {local}, but this machine has {torch.cuda.device_count()} "
                        f"GPU(s); start at most that many processes per machine (--nproc_per_node)")
    torch.cuda.set_device(local)


class World:
    """The ranks of a run: this process's ``rank`` of ``size``, and the collectives between them."""

    def __init__(self, rank: int = 0, size: int = 1, backend: str = "none", host_group=None):
        self.rank, self.size, self.backend, self.host_group = rank, size, backend, host_group

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, backend={self.backend!r})"

    def local_batch(self, batch_size: int, key: str = "train.batch_size") -> int:
        """This rank's share of the run's global batch, or a UserError when the ranks cannot share it evenly."""
        if batch_size % self.size:
            raise UserError(f"{key}: {batch_size} is the run's global batch, split evenly over the {self.size} ranks "
                            f"(WORLD_SIZE); use a multiple of {self.size}")
        return batch_size // self.size

    # ------------------------------------------------------------------ host collectives (gloo, CPU)

    def sum(self, values) -> np.ndarray:
        """``values`` summed over the ranks (float64)."""
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if self.enabled:
            dist.all_reduce(t, group=self.host_group)
        return t.numpy()

    def _all_gather_bytes(self, data: bytes) -> list[bytes]:
        size = torch.tensor([len(data)], dtype=torch.int64)
        sizes = [torch.zeros_like(size) for _ in range(self.size)]
        dist.all_gather(sizes, size, group=self.host_group)
        longest = max(int(s) for s in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8)
        if data:
            padded[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded, group=self.host_group)
        return [bytes(p[:int(s)].numpy()) for p, s in zip(parts, sizes)]

    def all_gather_json(self, obj) -> list:
        """Every rank's ``obj`` (JSON-able), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        return [json.loads(b) for b in self._all_gather_bytes(json.dumps(obj).encode())]

    def broadcast_json(self, obj):
        """Rank 0's ``obj`` (JSON-able) on every rank; the others pass anything (None)."""
        if not self.enabled:
            return obj
        data = json.dumps(obj).encode() if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.int64)
        dist.broadcast(size, 0, group=self.host_group)
        buf = torch.zeros(int(size), dtype=torch.uint8)
        if self.is_main and data:
            buf[:] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        dist.broadcast(buf, 0, group=self.host_group)
        return json.loads(bytes(buf.numpy()))

    def gather_arrays(self, array: np.ndarray) -> list[np.ndarray] | None:
        """Every rank's ``array`` (same trailing shape and dtype, any number of rows) on rank 0, in rank
        order; None on the other ranks."""
        array = np.ascontiguousarray(array)
        if not self.enabled:
            return [array]
        rows = [int(n) for n in self.all_gather_json(len(array))]
        padded = torch.zeros((max(rows),) + array.shape[1:], dtype=torch.from_numpy(array[:0]).dtype)
        padded[:len(array)] = torch.from_numpy(array)
        parts = [torch.empty_like(padded) for _ in range(self.size)] if self.is_main else None
        dist.gather(padded, parts, dst=0, group=self.host_group)
        return [p[:n].numpy() for p, n in zip(parts, rows)] if self.is_main else None

    # ------------------------------------------------------------------ errors reach every rank

    def on_main(self, fn: Callable[[], object]):
        """Run ``fn`` on rank 0 only (what touches the run folder or the index) and return its JSON-able
        result on every rank. When it fails there, every rank fails: the same UserError, a
        KeyboardInterrupt for an interrupt, :class:`RankFailed` for anything else."""
        if not self.enabled:
            return fn()
        if self.is_main:
            try:
                result = fn()
            except BaseException as e:
                self.broadcast_json({"failed": _describe(e), "user": isinstance(e, UserError),
                                     "interrupt": isinstance(e, KeyboardInterrupt)})
                raise
            self.broadcast_json({"result": result})
            return result
        return _outcome(self.broadcast_json(None), "rank 0")

    def everywhere(self, fn: Callable[[], object]):
        """Run ``fn`` on every rank; when it fails on any, it fails on all (as :meth:`on_main` says)."""
        if not self.enabled:
            return fn()
        try:
            result = fn()
        except Exception as e:
            self.all_gather_json({"failed": _describe(e), "user": isinstance(e, UserError), "interrupt": False})
            raise
        for rank, outcome in enumerate(self.all_gather_json({})):
            if outcome:
                _outcome(outcome, f"rank {rank}")
        return result


def _describe(e: BaseException) -> str:
    if isinstance(e, UserError):
        return str(e)
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def _outcome(payload: dict, who: str):
    if "failed" not in payload:
        return payload.get("result")
    if payload["interrupt"]:
        raise KeyboardInterrupt
    if payload["user"]:
        raise UserError(payload["failed"])
    raise RankFailed(f"{who} failed ({payload['failed']}); its traceback says where")


SINGLE = World()
_current = SINGLE


def import_lazy_torch_modules() -> None:
    """Import ``torch._dynamo`` now, before a process group exists. torch imports it lazily (the first
    optimiser does), and imported while a group exists it keeps that group alive past
    ``destroy_process_group``: the group's gloo threads then outlive the interpreter, and one that frees a
    tensor while it finalises aborts the process ("terminate called without an active exception"),
    in 11 of 64 two-rank runs here. Call it before ``init_process_group``; :func:`session` does."""
    importlib.import_module("torch._dynamo")


def destroy_process_group() -> None:
    """``dist.destroy_process_group()``, after 50 ms without the GIL. A gloo worker thread that has just
    finished a collective still drops its tensors, and that takes the GIL: the thread that frees the
    group's last reference holds the GIL while it joins those threads, and that deadlocked (a two-rank
    test, once in 80 runs); at interpreter exit the same drop aborted the process."""
    time.sleep(0.05)
    dist.destroy_process_group()


def current() -> World:
    """The world of the :func:`session` in progress (:data:`SINGLE` outside one)."""
    return _current


@contextmanager
def session(device: str = "auto"):
    """Yield the :class:`World` of this process: joined to the others started by torchrun (``WORLD_SIZE``
    > 1), nccl when ``device`` is CUDA and gloo on the CPU, and left at the end; :data:`SINGLE` without
    torchrun. Re-entrant, and a process group made by the caller (``init_process_group``) is used as it is."""
    global _current
    if _current.enabled:
        yield _current
        return
    made = False
    if not dist.is_initialized():
        if env_world_size() <= 1:
            yield SINGLE
            return
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if cuda:
            bind_local_gpu()
        import_lazy_torch_modules()
        try:
            dist.init_process_group(BACKENDS["cuda" if cuda else "cpu"])
        except ValueError as e:  # a variable torchrun sets is missing
            raise UserError(f"torch.distributed: {str(e).splitlines()[0]}; start the stage with torchrun") from None
        made = True
    backend = dist.get_backend()
    host = None if backend == "gloo" else dist.new_group(backend="gloo")  # every rank makes it, in this order
    _current = World(dist.get_rank(), dist.get_world_size(), backend, host)
    world = _current
    try:
        yield _current
    except RuntimeError as e:  # gloo / nccl when a peer vanished mid-collective: one line, not their traceback
        if not _peer_lost(e):
            raise
        made = False  # the group is broken: tearing it down would wait on the dead rank
        raise RankFailed(lost_rank_message(world)) from None
    finally:
        _current = SINGLE
        if made:
            destroy_process_group()


# what gloo and nccl say when the process at the other end of a collective is gone (killed, OOM, machine down)
_PEER_LOST = re.compile(r"Connection closed by peer|Connection reset by peer|Broken pipe|Connection refused|"
                        r"ECONNRESET|EPIPE|NCCL communicator was aborted|remote process exited", re.IGNORECASE)


def _peer_lost(e: BaseException) -> bool:
    return isinstance(e, RuntimeError) and bool(_PEER_LOST.search(str(e)))


def lost_rank_message(world: World) -> str:
    """The one line of a rank whose peer died mid-collective (named when there are two ranks)."""
    who = f"rank {1 - world.rank}" if world.size == 2 else "another rank"
    return (f"{who} of {world.size} stopped without a word (killed, out of memory, or its machine went away), so "
            f"rank {world.rank} stops too; what an earlier epoch saved is on disk (continue with --resume)")


class StopSignals:
    """Ctrl-C and SIGTERM of a data-parallel run: the handler only sets :attr:`requested`, and the ranks
    stop together at the next step they agree on (a second Ctrl-C stops this rank at once). In one
    process nothing changes: SIGTERM raises KeyboardInterrupt like Ctrl-C, where it lands. Either way the
    request is recorded for the command (:mod:`fashionrec.stop`): one that a ``__del__`` swallowed still
    stops the next batch, and under torchrun :attr:`requested` includes one recorded before the epochs."""

    def __init__(self, world: World):
        self.world = world
        self._requested = False

    @property
    def requested(self) -> bool:
        return self._requested or stop.requested() is not None

    @requested.setter
    def requested(self, value: bool) -> None:
        self._requested = value

    def _handler(self, signum, frame):
        first = not self.requested
        stop.record(signum)
        if not self.world.enabled or (not first and signum == signal.SIGINT):
            raise KeyboardInterrupt
        self._requested = True

    @contextmanager
    def installed(self):
        signals = (signal.SIGTERM, signal.SIGINT) if self.world.enabled else (signal.SIGTERM,)
        previous = {}
        try:
            for sig in signals:
                previous[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: leave the handlers alone
            pass
        try:
            if self.world.enabled:
                with stop.deferred():  # the ranks decide together (agree_on_step), not each loader alone
                    yield self
            else:
                yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# ---------------------------------------------------------------------- differentiable collectives


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)  # d(sum over ranks of every rank's loss) / d(this rank's input)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the ranks, differentiably (the gradient of every rank's loss reaches each input)."""
    return _AllReduceSum.apply(x) if dist.is_initialized() and dist.get_world_size() > 1 else x


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        size = dist.get_world_size()
        rows = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
        counts = [torch.zeros_like(rows) for _ in range(size)]
        dist.all_gather(counts, rows)
        counts = [int(c) for c in counts]
        padded = x.new_zeros((max(counts),) + tuple(x.shape[1:]))
        padded[:x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded.contiguous())
        start = sum(counts[:dist.get_rank()])
        ctx.rows = (start, start + x.shape[0])
        return torch.cat([p[:n] for p, n in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss depends on every row
        return grad[ctx.rows[0]:ctx.rows[1]]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The rows of every rank's ``x`` concatenated in rank order (the global batch), differentiably."""
    return _GatherRows.apply(x) if dist.is_initialized() and dist.get_world_size() > 1 else x


__all__ = ["SINGLE", "RankFailed", "StopSignals", "World", "all_reduce_sum", "bind_local_gpu", "check_engine",
           "current", "env_rank", "env_world_size", "gather_rows", "session"]
