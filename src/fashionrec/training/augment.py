"""Where a training loop's host work goes, shared by the objectives: augmentation (``augment.on``) in the loader's
workers on the host, or on the network's device (:mod:`fashionrec.engines.torch.device_augment`, torch engine),
with the same draws from (seed, epoch, row); and how batches reach a GPU (:func:`loader_feeding`). torch is
imported only when the torch engine asks."""

from __future__ import annotations


def trains_on_cuda(cfg) -> bool:
    """Whether the run's network is on a CUDA device (``train.device``; ``auto``: when there is one)."""
    if cfg.engine != "torch" or cfg.train.device == "cpu":
        return False
    import torch

    return cfg.train.device == "cuda" or torch.cuda.is_available()


def augments_on_device(cfg) -> bool:
    """Whether the training loop augments on the network's device (``augment.on``; ``auto``: on CUDA)."""
    a = cfg.augment
    if not a.enabled or a.on == "host" or cfg.engine != "torch":
        return False
    return a.on == "device" or trains_on_cuda(cfg)


def loader_feeding(cfg) -> dict:
    """The loaders' ``borrow`` and ``pin``: the training loop is done with a batch when it asks for the next (its
    step has copied it to the device), so batches are lent from the workers' slots; on CUDA the slots are
    page-locked, so the copy to the GPU needs no host copy first."""
    if not trains_on_cuda(cfg):
        return {"borrow": True}
    from ..engines.torch.transfer import pin

    return {"borrow": True, "pin": pin}


def device_augmenter(cfg, device: str):
    """``augment(x, rows, epoch)``: a loader's un-augmented uint8 batch as the augmented uint8 tensor on ``device``,
    the bytes the loader's workers would have made (the same draws from (seed, epoch, row))."""
    import torch

    from ..engines.torch.device_augment import augment_batch, augment_params
    from ..engines.torch.transfer import to_device

    def augment(x, rows, epoch: int):
        params = augment_params(cfg.augment, cfg.train.seed, epoch, rows)
        return augment_batch(to_device(torch.from_numpy(x), device), params)

    return augment
