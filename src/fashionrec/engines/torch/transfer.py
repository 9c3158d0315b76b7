"""Host-to-GPU copies of batches that do not hold up the training loop.

A copy from pageable memory is staged by the driver and, on the step's own stream, waits for the step before it:
the host stood still for the GPU's whole previous step at every batch (the H200 check: the loop at 0.51 of the
bare step). Here a batch goes from page-locked memory, on a stream of its own, so it crosses while the previous
step computes; the host waits for that copy alone (~1.5 ms for 38.5 MB), after which the memory it came from may be
reused (a loader's slot, lent with ``borrow=True``). The loader's shared slots are page-locked in place
(:func:`pin`, ``cudaHostRegister``) so that no host copy is made at all; other arrays are copied into torch's
pinned pool first.

On a CPU device the batch is used where it is: nothing is copied.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

_COPY_STREAMS: dict = {}  # device -> the stream batches cross on


def pin(array: np.ndarray) -> Callable[[], None]:
    """Page-lock ``array``'s memory in place for CUDA's copies; returns the undo (call it before the memory goes).

    A no-op without CUDA; where the driver refuses (a locked-memory limit), a warning and pageable copies."""
    if not torch.cuda.is_available() or array.nbytes == 0:
        return lambda: None
    cudart = torch.cuda.cudart()
    ptr = array.ctypes.data
    err = cudart.cudaHostRegister(ptr, array.nbytes, 0)
    if err != cudart.cudaError.success:
        warnings.warn(f"could not page-lock the loader's {array.nbytes / 2**20:.0f} MiB of batch slots "
                      f"(cudaHostRegister: {err}); batches are copied to the GPU through pinned copies",
                      RuntimeWarning, stacklevel=2)
        return lambda: None
    return lambda: cudart.cudaHostUnregister(ptr)


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` (on the host) on ``device``. On CUDA the copy runs on a side stream from page-locked memory, the
    device's current stream waits for it, and the host returns once the copy (not the work queued before it) is
    done: ``t``'s memory is free to reuse then."""
    device = torch.device(device)
    if device.type != "cuda":
        return t.to(device)
    if t.device.type == "cuda":
        return t.to(device, non_blocking=True)
    src = t if t.is_pinned() else t.pin_memory()
    stream = _COPY_STREAMS.get(device)
    if stream is None:
        stream = _COPY_STREAMS[device] = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        out = src.to(device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(stream)
    compute = torch.cuda.current_stream(device)
    compute.wait_event(done)
    out.record_stream(compute)  # allocated on the copy stream, used on the compute stream
    done.synchronize()
    return out


__all__ = ["pin", "to_device"]
