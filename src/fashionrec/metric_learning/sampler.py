"""Class-balanced batches: ``m`` images of each of ``batch_size / m`` items, from (seed, epoch).

Metric losses learn from pairs within a batch, so every batch must hold several images of each
item it shows (Proxy-Anchor's In-shop recipe: 36 items x 5 images = 180). One epoch, drawn from
``default_rng([seed, epoch])`` alone (a resumed run sees exactly the batches an uninterrupted
one would, like every other batch in the toolkit):

1. each item's images are shuffled and cut into chunks of ``m``; a last chunk with fewer than
   ``m`` images is filled up by repeating the item's images from the start of its shuffled
   order, so an item with 3 images and ``m = 5`` shows 3 + 2 repeats;
2. items are shuffled, their chunks laid out item after item, and chunk ``j`` dealt to batch
   ``j mod B`` (B = chunks // items per batch; the chunks beyond ``B x items per batch`` wait
   for another epoch). Consecutive chunks of one item land in different batches, so no batch
   holds an item twice as long as no item has more than B chunks (more are dropped);
3. the batches are shuffled.

Data-parallel (``rank``, ``world_size``), each rank takes its contiguous share of every batch
(:class:`~fashionrec.data.loader.BatchLoader`'s ``shard_by="batch"``); the embeddings are gathered
back into the whole batch for the loss, so the pairs and proxies it sees are one process's.

Rules: items with one image only have nothing to pair with and are left out (the stage counts
them); ``batch_size`` must be a multiple of ``m`` holding at least two items, and the data must
have at least as many items as a batch needs, or the stage stops with a one-line error naming
the key.
"""

from __future__ import annotations

import numpy as np

from ..data.loader import BatchLoader
from ..errors import ConfigError, DataError


def check_batch(batch_size: int, m: int, where: str = "train") -> int:
    """Items per batch, or a ConfigError naming the key."""
    if m < 2:
        raise ConfigError(f"{where}.images_per_item: must be >= 2 (a positive pair needs two images); got {m}")
    if batch_size % m or batch_size < 2 * m:
        raise ConfigError(f"{where}.batch_size: {batch_size} cannot hold {m} images (images_per_item) of each item "
                          f"for two or more items; use a multiple of {m} of at least {2 * m}")
    return batch_size // m


def balanced_batches(labels: np.ndarray, batch_size: int, m: int, seed: int, epoch: int) -> np.ndarray:
    """(B, batch_size) row indices of one epoch's batches (see the module's rules)."""
    per_batch = check_batch(batch_size, m)
    labels = np.asarray(labels)
    items, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    usable = np.flatnonzero(counts >= 2)
    if len(usable) < per_batch:
        raise DataError(f"{len(usable)} training item(s) with two or more images; a batch of {batch_size} "
                        f"needs {per_batch} (lower train.batch_size or train.images_per_item)")
    rng = np.random.default_rng([seed, epoch])
    rows_of = {int(i): np.flatnonzero(inverse == i) for i in usable}
    chunks = []
    for item in rng.permutation(usable).tolist():
        rows = rng.permutation(rows_of[item])
        n_chunks = -(-len(rows) // m)
        padded = np.resize(rows, n_chunks * m)  # repeats from the start of the shuffled order
        chunks.extend(padded.reshape(n_chunks, m))
    n_batches = len(chunks) // per_batch
    item_of = labels[[c[0] for c in chunks]]
    batches = [[] for _ in range(n_batches)]
    seen = [set() for _ in range(n_batches)]
    for j, chunk in enumerate(chunks[: n_batches * per_batch]):
        b = j % n_batches
        if item_of[j] in seen[b]:  # an item with more than n_batches chunks: drop the extra ones
            continue
        seen[b].add(item_of[j])
        batches[b].append(chunk)
    # dropping left some batches short: top them up with the chunks that waited, other items only
    spare = iter(range(n_batches * per_batch, len(chunks)))
    for b in range(n_batches):
        while len(batches[b]) < per_batch:
            j = next(spare, None)
            if j is None:
                break
            if item_of[j] not in seen[b]:
                seen[b].add(item_of[j])
                batches[b].append(chunks[j])
    full = [np.concatenate(b) for b in batches if len(b) == per_batch]
    order = rng.permutation(len(full))
    return np.stack([full[i] for i in order]) if full else np.zeros((0, batch_size), np.int64)


class BalancedLoader(BatchLoader):
    """A :class:`BatchLoader` whose epochs are :func:`balanced_batches` of the images' labels."""

    def __init__(self, images, input_size: int, batch_size: int, images_per_item: int, **kwargs):
        check_batch(batch_size, images_per_item)
        super().__init__(images, input_size, batch_size, shuffle=True, drop_last=True, **kwargs)
        self.images_per_item = images_per_item
        self._batches = {}  # epoch -> (B, batch_size) rows, for len() and order() of that epoch
        self.epoch_in_use = 0

    def batches(self, epoch: int) -> np.ndarray:
        if epoch not in self._batches:
            self._batches = {epoch: balanced_batches(self.images.labels, self.batch_size, self.images_per_item,
                                                     self.seed, epoch)}
        return self._batches[epoch]

    def order(self, epoch: int) -> np.ndarray:
        self.epoch_in_use = epoch
        return self.batches(epoch).reshape(-1)

    def _num_batches(self) -> int:
        n = len(self.batches(self.epoch_in_use))
        return min(n, self.limit_batches) if self.limit_batches else n

    def epoch(self, epoch: int = 0):
        self.epoch_in_use = epoch
        return super().epoch(epoch)
