"""Data-parallel training pieces of the torch engine: SyncBatchNorm on the CPU too, and the DDP wrapper.

torch's :class:`~torch.nn.SyncBatchNorm` runs on GPUs only (its kernels have no CPU version, and
DistributedDataParallel refuses it on CPU modules), so on the CPU (gloo) ``sync_bn`` converts each
BatchNorm2d into :class:`HostSyncBatchNorm`: the per-channel sums of the whole global batch from
one differentiable all-reduce, so every rank normalises with the statistics a one-process run of
the same global batch would use. It is a BatchNorm2d, so saving, loading and the folded inference
copy treat it as one.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ...distributed import all_reduce_sum


class HostSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are the global batch's, over every rank (CPU tensors, gloo)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        wide = x.double()  # E[x^2] - E[x]^2 in float64: no cancellation at float32's 7 digits
        count = x.new_full((1,), x.numel() // max(channels, 1), dtype=torch.float64)
        totals = all_reduce_sum(torch.cat([wide.sum(dims), (wide * wide).sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = (totals[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        shape = (1, channels) + (1,) * (x.dim() - 2)
        y = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var + self.eps).to(x.dtype).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def _host_sync(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, HostSyncBatchNorm):
        out = HostSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias  # the same Parameters: the optimiser keeps them
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _host_sync(child))
    return out


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm of ``model`` synchronised across the ranks (torch's SyncBatchNorm on CUDA), with
    the same parameters and buffers (so the optimiser, the weights file and its names stay as they are)."""
    if any(p.is_cuda for p in model.parameters()):
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _host_sync(model)


def data_parallel(model: nn.Module) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel: gradients averaged over the ranks in backward,
    parameters and buffers broadcast from rank 0 when wrapped (so every rank starts from rank 0's)."""
    device_ids = [torch.cuda.current_device()] if any(p.is_cuda for p in model.parameters()) else None
    return DistributedDataParallel(model, device_ids=device_ids)


def average_gradients(params) -> None:
    """Average the gradients of parameters DDP does not hold (e.g. a loss's proxies) over the ranks."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(dist.get_world_size())


__all__ = ["HostSyncBatchNorm", "average_gradients", "convert_sync_batchnorm", "data_parallel"]
