"""Where a training loop augments (``augment.on``): the loader's workers on the host, or the network's device
(:mod:`fashionrec.engines.torch.device_augment`, torch engine), with the same draws from (seed, epoch, row).
Shared by the objectives; torch is imported only when the device does the work."""

from __future__ import annotations


def augments_on_device(cfg) -> bool:
    """Whether the training loop augments on the network's device (``augment.on``; ``auto``: on CUDA)."""
    a = cfg.augment
    if not a.enabled or a.on == "host" or cfg.engine != "torch":
        return False
    if a.on == "device":
        return True
    import torch

    return cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())


def device_augmenter(cfg, device: str):
    """``augment(x, rows, epoch)``: a loader's un-augmented uint8 batch as the augmented uint8 tensor on ``device``,
    the bytes the loader's workers would have made (the same draws from (seed, epoch, row))."""
    import torch

    from ..engines.torch.device_augment import augment_batch, augment_params

    def augment(x, rows, epoch: int):
        params = augment_params(cfg.augment, cfg.train.seed, epoch, rows)
        return augment_batch(torch.from_numpy(x).to(device, non_blocking=True), params)

    return augment
