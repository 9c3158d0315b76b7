"""A batch loader that yields numpy batches any engine can take.

Decoding, augmentation and resizing run in worker processes (``workers`` > 0) or in the
main process (``workers=0``). The images come from a :class:`~fashionrec.data.manifest.Manifest`
(training, evaluation) or an :class:`ImageSource`, just paths under a root (feature extraction of a
catalog, whose labels are not the loader's business). Batches come out in order as
``(x, y, index)``: ``x`` uint8 (N, H, W, 3) RGB, ``y`` int64 labels (None for a source without
labels), ``index`` the source's rows in the batch. Normalising is
the classifier's job, on its own device: uint8 is a quarter of the bytes to pass between
processes and to a GPU, and the main process has no arithmetic left to hold up a GPU step.

Randomness is a pure function of (seed, epoch, row): shuffling uses
``default_rng([seed, epoch])`` and each image's augmentation ``default_rng([seed, epoch,
row])``. A resumed run therefore sees exactly the batches the uninterrupted one would, and
the result does not depend on the number of workers.

Worker processes (:mod:`.workers`: forked, sharing no lock with this process, so stopping them
never waits on one) write each batch into a slot of a shared-memory buffer and send back only
its row numbers: a pipe carried at most ~2,000-3,000 images/s of 224-px batches on this
2-core machine (``scripts/bench_train.py``), below the 4,000 a GPU can train on. The slots also
bound read-ahead to ``prefetch`` batches: an unbounded queue would decode a whole epoch ahead of a
slow network and hold it in memory.

With a decoded cache (``cache=``, :mod:`.decoded_cache`) the pixels come from its memory-mapped shards
instead of the JPEGs: the same bytes the decoder and the resize make, so the same batches, augmented or not
(augmentation applies after the resize, to exactly what the cache holds), and the rows it recorded as
undecodable are skipped with the decoder's message.

With ``borrow=True`` a batch from the workers is handed over as a view of its slot, not a copy (38.5 MB at 224 px,
batch 256): the consumer must be done with it when it asks for the next batch (a training step is: its images
are on the network's device by then), and the slot goes back to the workers only then. ``pin`` page-locks the
slots (``pin(slots) -> undo``; the torch engine's :func:`~fashionrec.engines.torch.transfer.pin`), so that a
GPU copies a batch straight out of its slot while the host goes on.

A batch goes to the workers as ``job_rows``-row jobs (by default its rows shared among the workers), each
written into its part of the batch's slot: the first batch of an epoch is ready when every worker has done its
share, not when one worker has done it all.

Images that cannot be decoded are skipped and recorded in ``bad`` (path -> reason); when more
than ``max_bad_fraction`` of the images seen are bad the loader raises a :class:`DataError`.

Data-parallel runs (``world_size`` > 1, one loader per rank) share the epoch's order, still a
function of (seed, epoch) alone, in one of two ways:

- ``shard_by="batch"`` (training): every rank goes through every batch of ``batch_size`` (the
  global batch) and takes its ``rank``-th contiguous share of it, so the ranks together see the
  batches one process would, in the same order; every batch is yielded, empty ones too (all its
  images on this rank undecodable), since the ranks step together;
- ``shard_by="range"`` (evaluation, extraction): each rank takes a contiguous run of whole
  batches, the very batches of a one-process run, so its outputs are the same bytes.

A sharded loader counts its bad images but leaves the limit to its caller, who sums the counts
over the ranks (:meth:`BatchLoader.check_bad`): every rank then stops on the same step.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import stop
from ..config import AugmentConfig
from ..errors import DataError
from .augment import Augmenter
from .decoded_cache import DecodedCache, decode_resized, ensure_cache
from .images import DEFAULT_MAX_PIXELS
from .manifest import Manifest
from .workers import Workers

SHARDINGS = ("batch", "range")  # how a data-parallel run's ranks share an epoch (see the module's docstring)
_STATE: dict = {}  # per-worker copy of what every batch needs (set once as the worker starts)


@dataclass
class ImageSource:
    """Images for the loader: paths relative to ``root``, with int labels or without (None).

    A :class:`Manifest` serves as one as it is (it has the same fields, and splits and classes
    besides); this is for images that have no labels or splits, such as a catalog to index.
    """

    root: Path
    paths: list[str]
    labels: np.ndarray | None = None
    source: str = ""  # where the paths came from, for messages

    def __post_init__(self):
        self.root = Path(self.root)
        self.paths = list(self.paths)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if len(self.labels) != len(self.paths):
                raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)


def _init_worker(state):
    _STATE.clear()
    _STATE.update(state)


def _load_batch(job, out=None):
    """Decode a batch into ``out`` (a new array when None); returns (images, kept rows, bad)."""
    epoch, rows = job
    st = _STATE
    size, aug, seed, cache = st["size"], st["augmenter"], st["seed"], st["cache"]
    if out is None:
        out = np.empty((len(rows), size, size, 3), np.uint8)
    ok, bad = [], []
    for row in rows:
        try:
            img = (cache.image(st["cache_rows"][row]) if cache is not None else
                   decode_resized(st["root"] / st["paths"][row], size, st["max_pixels"]))
        except DataError as e:
            bad.append((st["paths"][row], str(e).split(": ", 1)[-1]))
            continue
        if aug is not None:  # a PIL image, as from the decoder: the same pixels, the same augmentation
            img = aug(img if cache is None else Image.fromarray(np.asarray(img)),
                      np.random.default_rng([seed, epoch, row]))
        out[len(ok)] = np.asarray(img, dtype=np.uint8)
        ok.append(row)
    return out[: len(ok)], np.asarray(ok, np.int64), bad


def _fill_slot(job: bytes) -> dict:
    """In a worker: decode the rows of ``job`` (int64 epoch, slot, start, rows...) into its shared-memory slot
    from row ``start`` on; only the kept row numbers and the bad images travel back."""
    epoch, slot, start, *rows = np.frombuffer(job, np.int64).tolist()
    _, ok, bad = _load_batch((epoch, rows), _STATE["slots"][slot, start:start + len(rows)])
    return {"ok": ok.tolist(), "bad": bad}


class BatchLoader:
    """Iterate images in batches: ``for x, y, idx in loader.epoch(e): ...``."""

    def __init__(self, images: Manifest | ImageSource, input_size: int, batch_size: int, *, shuffle: bool = False,
                 augment: AugmentConfig | None = None, seed: int = 0, workers: int = 0,
                 drop_last: bool = False, max_bad_fraction: float = 0.01,
                 max_pixels: int = DEFAULT_MAX_PIXELS, limit_batches: int | None = None,
                 prefetch: int | None = None, rank: int = 0, world_size: int = 1, shard_by: str = "batch",
                 cache: DecodedCache | str | Path | None = None, job_rows: int | None = None,
                 borrow: bool = False, pin: Callable[[np.ndarray], Callable[[], None]] | None = None):
        """``cache``: a :class:`DecodedCache` of ``images`` (or of a set they are part of) at ``input_size``, or its
        folder (built there first when missing or stale); ``job_rows``: rows per worker job (default: a batch
        shared among the workers); ``borrow``: batches as views of the workers' slots, valid until the next
        batch is asked for; ``pin``: page-locks the slots, returning the undo."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if input_size < 16:
            raise ValueError(f"input_size must be >= 16; got {input_size}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0; got {workers}")
        prefetch = 2 * workers + 1 if prefetch is None else prefetch
        if workers and prefetch < 1:
            raise ValueError(f"prefetch must be >= 1; got {prefetch}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) and world_size >= 1; got rank {rank} of {world_size}")
        if shard_by not in SHARDINGS:
            raise ValueError(f"shard_by must be one of {', '.join(SHARDINGS)}; got {shard_by!r}")
        if job_rows is not None and job_rows < 1:
            raise ValueError(f"job_rows must be >= 1; got {job_rows}")
        if cache is not None and not isinstance(cache, DecodedCache):
            cache = ensure_cache(cache, images, input_size, max_pixels=max_pixels, workers=workers, progress=False,
                                 log=lambda *_: None)
        self.images = images
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.workers = workers
        self.drop_last = drop_last
        self.max_bad_fraction = max_bad_fraction
        self.limit_batches = limit_batches
        self.prefetch = prefetch  # batches decoded ahead of the consumer (shared-memory slots)
        self.job_rows = job_rows
        self.cache = cache
        self.borrow, self.pin = borrow, pin
        self._unpin = None
        self.rank, self.world_size, self.shard_by = rank, world_size, shard_by
        self.sharded = world_size > 1
        self.bad: dict[str, str] = {}
        self._seen = 0
        augmenter = Augmenter(augment) if augment is not None and augment.enabled else None
        self._state = dict(root=images.root, paths=list(images.paths), size=input_size,
                           augmenter=augmenter, seed=seed, max_pixels=max_pixels, cache=cache,
                           cache_rows=None if cache is None else cache.rows_of(images, input_size, max_pixels))
        self._workers = None
        self._slots = None

    def _num_batches(self) -> int:
        """Batches of ``batch_size`` in an epoch, over all ranks."""
        n = len(self.images)
        batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return min(batches, self.limit_batches) if self.limit_batches else batches

    def _batch_range(self) -> tuple[int, int]:
        """The batches this rank loads: all of them (its share of each), or its contiguous run of them."""
        total = self._num_batches()
        if self.shard_by == "batch":
            return 0, total
        return total * self.rank // self.world_size, total * (self.rank + 1) // self.world_size

    def __len__(self) -> int:
        lo, hi = self._batch_range()
        return hi - lo

    @property
    def seen(self) -> int:
        """Images this loader has tried to decode (good and bad), over all its epochs."""
        return self._seen

    def order(self, epoch: int) -> np.ndarray:
        idx = np.arange(len(self.images))
        if self.shuffle:
            np.random.default_rng([self.seed, epoch]).shuffle(idx)
        return idx

    def _jobs(self, epoch: int):
        idx = self.order(epoch)
        lo, hi = self._batch_range()
        r, w = self.rank, self.world_size
        for b in range(lo, hi):
            rows = idx[b * self.batch_size:(b + 1) * self.batch_size]
            if self.shard_by == "batch" and w > 1:
                rows = rows[len(rows) * r // w:len(rows) * (r + 1) // w]
            yield epoch, rows.tolist()

    def _results(self, epoch):
        if self.workers == 0:
            _init_worker(self._state)
            for job in self._jobs(epoch):
                stop.check()  # a Ctrl-C that a __del__ swallowed still stops the next batch
                yield _load_batch(job)
            return
        if self._workers is None:
            size = self._state["size"]
            rows = -(-self.batch_size // self.world_size) if self.shard_by == "batch" else self.batch_size
            shape = (self.prefetch, rows, size, size, 3)
            buffer = mp.get_context("fork").RawArray("B", int(np.prod(shape)))
            self._slots = np.frombuffer(buffer, np.uint8).reshape(shape)
            if self.pin is not None:
                self._unpin = self.pin(self._slots)
            state = dict(self._state, slots=self._slots)
            self._workers = Workers(self.workers, functools.partial(_init_worker, state), _fill_slot,
                                    name="loader worker")
        jobs, slots, free = self._jobs(epoch), deque(), list(range(self.prefetch))
        collecting = False  # between a batch's first answer and its last

        def submit():
            job = next(jobs, None)
            if job is not None:
                slot, rows = free.pop(), job[1]
                step = self.job_rows or max(1, -(-len(rows) // self.workers))
                starts = range(0, max(len(rows), 1), step)  # one job for a batch with no rows on this rank
                for start in starts:
                    self._workers.submit(np.array([job[0], slot, start, *rows[start:start + step]], np.int64).tobytes())
                slots.append((slot, starts))

        try:
            for _ in range(self.prefetch):
                submit()
            while slots:
                stop.check()  # a Ctrl-C that a __del__ or an at-fork hook swallowed still stops the next batch
                slot, starts = slots.popleft()
                collecting = True
                answers = [self._workers.next_result() for _ in starts]
                collecting = False
                kept = [len(a["ok"]) for a in answers]
                whole = all(k == b - a for k, a, b in zip(kept, starts, starts[1:]))  # gaps only after the last job
                lent = self.borrow and whole
                if lent:  # the slot itself: it goes back to the workers when the consumer asks for the next batch
                    x = self._slots[slot, :sum(kept)]
                else:  # the consumer may keep x, so a copy: the slot is reused now (each job's kept rows, gaps closed)
                    x = np.concatenate([self._slots[slot, start:start + k] for start, k in zip(starts, kept)])
                    free.append(slot)
                    submit()
                rows = np.asarray([r for a in answers for r in a["ok"]], np.int64)
                yield x, rows, [tuple(b) for a in answers for b in a["bad"]]
                if lent:
                    free.append(slot)
                    submit()
        except BaseException:  # GeneratorExit too: the consumer stopped early
            if slots or collecting:  # workers may still be writing into slots: stop them; the next epoch starts anew
                self.close()
            raise

    def epoch(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        labels = self.images.labels
        lockstep = self.sharded and self.shard_by == "batch"  # the ranks step together: empty batches too
        for x, rows, bad in self._results(epoch):
            self._seen += len(rows) + len(bad)
            for path, reason in bad:
                self.bad[path] = reason
            if not self.sharded:
                self.check_bad()
            if len(rows) or lockstep:
                yield x, None if labels is None else labels[rows], rows
        if not self.sharded:
            self.check_bad(final=True)

    def check_bad(self, bad: int | None = None, seen: int | None = None, final: bool = False) -> None:
        """Raise a DataError when more than ``max_bad_fraction`` of the images seen were bad: once 100 were
        seen, or at the end of an epoch (``final``). A sharded loader's caller passes the counts summed over
        the ranks; by default they are this loader's."""
        bad = len(self.bad) if bad is None else bad
        seen = self._seen if seen is None else seen
        if bad and bad > self.max_bad_fraction * max(seen, 1) and (final or seen >= 100):
            self._abort(bad, seen)

    def _abort(self, bad: int, seen: int):
        first = next(iter(self.bad.items()), None)  # a sharded loader may hold none of the bad ones
        self.close()
        raise DataError(
            f"{self.images.source or self.images.root}: {bad} of {seen} images could not be "
            f"decoded (limit {self.max_bad_fraction:.1%}; data.max_bad_fraction raises it for training, "
            f"catalog.max_bad_fraction for an index)" + (f"; first: {first[0]}: {first[1]}" if first else "")
        )

    def close(self):
        if getattr(self, "_workers", None) is not None:
            self._workers.close()
            self._workers = None
        if getattr(self, "_unpin", None) is not None:  # after the workers: none writes into the slots any more
            self._unpin()
            self._unpin = None

    def __del__(self):
        self.close()
