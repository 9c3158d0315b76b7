"""Decode once: an image set's decoded, resized uint8 pixels in memory-mapped ``.npy`` shards.

The loader decodes every JPEG anew each epoch (~700 images/s per core at 224 px, benchmarks/RESULTS.md
"train"). A decoded cache holds, for each row of an image set (a :class:`~fashionrec.data.manifest.Manifest`
or an ``ImageSource``, as the loader takes them) at one input size, exactly the pixels the loader's
un-augmented path makes of the file (:func:`decode_resized`: ``decode_image`` with its JPEG draft, then the
bilinear squash to size x size). A loader reading the cache therefore yields the same batches, byte for byte.
Augmentation (``augment.py``) is drawn per (seed, epoch, row) and applied *after* that resize (the loader
augments at the network's size), so the cache is also the augmentation's exact input: augmented batches from
the cache equal those from the JPEGs too, and stay random per epoch. No larger size is stored.

A cache folder::

    cache.json        format, input size, resize rule, Pillow version, max_pixels, digests of the source rows
                      (their paths; paths + sizes + modification times), the shards (rows, bytes, CRC-32 of
                      the first and last 64 KiB, sha256) and the undecodable rows with the decoder's message
    shard-00000.npy   uint8 (rows, S, S, 3), ``shard_rows`` rows each (the last fewer); an undecodable row is zeros

- **Atomic.** Built in a temporary folder beside it (:func:`~fashionrec.artifacts.atomic_dir`), under a lock
  beside it, and swapped in: an interrupted build (Ctrl-C, a full disk, a kill) leaves the old cache or none,
  never a part. A build killed outright leaves its temporary folder (hidden, never read as the cache); the
  next build of that cache removes it, and only folders a build wrote (marked by ``building.json``).
- **Validated when opened.** Each shard's npy header and shape, its size, and the CRC-32 of its ends;
  ``verify=True`` reads it all against its sha256. A damaged shard is one :class:`DataError` naming the file.
- **Rebuilt when stale.** A change of input size, ``max_pixels``, resize rule, Pillow version or of any source
  row (path, size or modification time) makes :func:`ensure_cache` build anew, and :func:`open_cache` refuse.
- **Only ours is replaced.** An existing folder that is not a cache (:data:`CACHE_KIND`) is never replaced.

Building decodes in the loader's worker processes (:mod:`.workers`); each writes its rows straight into the
shard files (``pwrite``, so a full disk is an ``OSError``, not a SIGBUS), and only the undecodable rows travel
back. Ctrl-C stops it at the next job (:func:`fashionrec.stop.check`).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import shutil
import socket
import time
import zlib
from pathlib import Path

import numpy as np
import PIL
from tqdm.auto import tqdm

from .. import stop
from ..artifacts import (
    ArtifactKind,
    atomic_dir,
    check_replaceable,
    exclusive_lock,
    load_array,
    read_json_object,
    write_json,
)
from ..errors import DataError, UserError
from .images import DEFAULT_MAX_PIXELS, decode_image, resize
from .workers import Workers

FORMAT = 1
RECORD = "cache.json"
BUILD_MARKER = "building.json"  # in a folder being built, until its record is written
SHARD_ROWS = 2048  # 224 px: 308 MB a shard
JOB_ROWS = 16  # rows per worker job while building
_ENDS = 1 << 16  # bytes at each end of a shard whose CRC-32 is checked on every open
RESIZE_RULE = "decode_image(target_size=S) (JPEG draft >= 2 S), then resize: bilinear squash to S x S, reducing_gap 2"
CACHE_KIND = ArtifactKind("decoded-image cache", marker=RECORD, entries=("shard-*.npy",))
_BUILD_KIND = ArtifactKind("decoded-image cache build", marker=BUILD_MARKER, entries=("shard-*.npy", RECORD))
_SHARD_NAME = re.compile(r"shard-\d{5,}\.npy")
_RECORD_KEYS = {"format": int, "input_size": int, "rows": int, "shard_rows": int, "shards": list, "bad": list}
# what a cache is a function of, and how a change of each is told
_KEY = {"format": "the cache format", "input_size": "the input size", "resize": "the resize rule",
        "max_pixels": "max_pixels", "pillow": "Pillow's version", "rows": "the number of rows",
        "paths_sha256": "the source rows' paths", "source_sha256": "a source file's size or modification time"}


def decode_resized(path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS):
    """The loader's un-augmented image of one file, as a PIL image: decoded (a JPEG at reduced scale when far
    larger, never below twice ``size``), then squashed to ``size`` x ``size``. What a cache stores."""
    img = decode_image(path, max_pixels=max_pixels, target_size=size)  # JPEG draft: ~2x on photos
    return resize(img, size)  # augment at the network's size: half the cost of augmenting 300 px


def _digests(images) -> tuple[str, str]:
    """sha256 of the rows' paths, and of their paths with each file's size and mtime (-1 when unreadable)."""
    root = Path(images.root)
    paths, source = hashlib.sha256(), hashlib.sha256()
    for p in images.paths:
        try:
            st = os.stat(root / p)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = -1
        paths.update(f"{p}\0".encode())
        source.update(f"{p}\0{size}\0{mtime}\n".encode())
    return paths.hexdigest(), source.hexdigest()


def cache_key(images, input_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """What a cache of ``images`` at ``input_size`` must have been built from (stats every source file)."""
    paths, source = _digests(images)
    return {"format": FORMAT, "input_size": int(input_size), "resize": RESIZE_RULE, "max_pixels": int(max_pixels),
            "pillow": PIL.__version__, "rows": len(images.paths), "paths_sha256": paths, "source_sha256": source}


def _stale(record: dict, key: dict) -> str | None:
    for k, what in _KEY.items():
        if record.get(k) != key[k]:
            shown = f": {record.get(k)} then, {key[k]} now" if k in ("input_size", "max_pixels", "pillow", "rows") \
                else ""
            return f"{what} changed{shown}"
    return None


def _damaged(path: Path, what: str) -> DataError:
    return DataError(f"{what}; the decoded cache is damaged: delete {path} to rebuild it")


def _read_record(path: Path) -> dict | None:
    """The cache's record; None where there is no cache yet (nothing, or an empty folder)."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    if not (path / RECORD).is_file():
        raise DataError(f"{path}: not a fashionrec decoded cache (no {RECORD}); choose another folder")
    return read_json_object(path / RECORD, _RECORD_KEYS, what="decoded cache")


def _shard_rows(rows: int, per_shard: int) -> list[int]:
    return [min(per_shard, rows - start) for start in range(0, rows, per_shard)]


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.npy"


def _ends_crc(fd: int, size: int) -> int:
    return zlib.crc32(os.pread(fd, _ENDS, max(0, size - _ENDS)), zlib.crc32(os.pread(fd, _ENDS, 0)))


class DecodedCache:
    """An opened cache: ``image(row)`` is row ``row``'s (S, S, 3) uint8 pixels, a view of a memory-mapped shard
    (forked loader workers share the mapping). Get one from :func:`ensure_cache` or :func:`open_cache`."""

    def __init__(self, path: Path, record: dict, images, shards: list[np.ndarray]):
        self.path, self.record = path, record
        self.input_size, self.rows, self.shard_rows = record["input_size"], record["rows"], record["shard_rows"]
        self.max_pixels = record["max_pixels"]
        self.bad: dict[int, str] = {int(b["row"]): str(b["error"]) for b in record["bad"]}  # row -> decoder's message
        self._root, self._paths = Path(images.root).resolve(), list(images.paths)
        self._shards = shards

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        return f"DecodedCache({str(self.path)!r}, {self.rows} rows at {self.input_size} px)"

    def summary(self) -> str:
        """One line: what is cached, where, how big."""
        size = sum(s["bytes"] for s in self.record["shards"])
        return (f"{self.path}: {self.rows:,} images at {self.input_size} px in {len(self._shards)} shard(s), "
                f"{size / 2**20:,.0f} MiB; {len(self.bad)} undecodable")

    def image(self, row: int) -> np.ndarray:
        """Row ``row``'s pixels; a row the decoder refused raises its :class:`DataError` (the loader's message)."""
        error = self.bad.get(row)
        if error is not None:
            raise DataError(error)
        return self._shards[row // self.shard_rows][row % self.shard_rows]

    def rows_of(self, images, input_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """This cache's row of each row of ``images``: the set it was opened for, or a part of it (a manifest's
        ``subset("train")``). ValueError when ``images`` or the settings are not what it holds."""
        if (input_size, max_pixels) != (self.input_size, self.max_pixels):
            raise ValueError(f"{self.path}: the decoded cache is at {self.input_size} px (max_pixels "
                             f"{self.max_pixels}); the loader wants {input_size} px (max_pixels {max_pixels})")
        if Path(images.root).resolve() != self._root:
            raise ValueError(f"{self.path}: the decoded cache holds images under {self._root}, not {images.root}")
        if list(images.paths) == self._paths:
            return np.arange(self.rows, dtype=np.int64)
        index = {p: i for i, p in enumerate(self._paths)}
        missing = next((p for p in images.paths if p not in index), None)
        if missing is not None:
            raise ValueError(f"{self.path}: the decoded cache has no row for {missing}")
        return np.asarray([index[p] for p in images.paths], np.int64)

    def verify(self) -> None:
        """Read every shard against its sha256 (the whole cache); DataError naming the first that differs."""
        for entry in self.record["shards"]:
            file = self.path / entry["file"]
            with open(file, "rb") as f:
                if hashlib.file_digest(f, "sha256").hexdigest() != entry["sha256"]:
                    raise _damaged(self.path, f"{file}: its bytes differ from when it was written (sha256)")


def _open(path: Path, record: dict, images, verify: bool) -> DecodedCache:
    size, rows = record["input_size"], record["rows"]
    entries = record["shards"]
    expected = _shard_rows(rows, record["shard_rows"]) if record["shard_rows"] > 0 else None
    if expected is None or [e.get("rows") if isinstance(e, dict) else None for e in entries] != expected:
        raise _damaged(path, f"{path / RECORD}: its shard list does not cover its {rows} rows")
    shards = []
    for entry in entries:
        name = entry.get("file")
        if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
            raise _damaged(path, f"{path / RECORD}: a shard named {name!r}")
        file = path / name
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError as e:
            raise _damaged(path, f"{file}: cannot be read ({e.strerror})") from None
        try:
            got = os.fstat(fd).st_size
            if got != entry.get("bytes"):
                how = "truncated" if isinstance(entry.get("bytes"), int) and got < entry["bytes"] else "resized"
                raise _damaged(path, f"{file}: {how} ({got} bytes, {entry.get('bytes')} written)")
            try:
                arr = load_array(file, dtype=np.uint8, shape=(entry["rows"], size, size, 3), mmap=True,
                                 what="decoded-cache shard")
            except UserError as e:
                raise _damaged(path, str(e)) from None
            if _ends_crc(fd, got) != entry.get("ends_crc32"):
                raise _damaged(path, f"{file}: its bytes differ from when it was written (CRC-32 of its ends)")
        finally:
            os.close(fd)
        shards.append(arr)
    cache = DecodedCache(path, record, images, shards)
    if verify:
        cache.verify()
    return cache


def stale_reason(path, images, input_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Why the cache at ``path`` cannot serve ``images`` at ``input_size`` ("not built", "the input size
    changed: ..."), or None when it can. Reads only its record (a damaged shard shows when it is opened)."""
    record = _read_record(Path(path))
    return "not built" if record is None else _stale(record, cache_key(images, input_size, max_pixels))


def open_cache(path, images, input_size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               verify: bool = False) -> DecodedCache:
    """Open the cache at ``path`` for ``images`` at ``input_size``: a one-line DataError when it is not there,
    stale or damaged (``verify``: every byte checked against its sha256; otherwise sizes, headers and ends)."""
    path = Path(path)
    record = _read_record(path)
    if record is None:
        raise DataError(f"{path}: no decoded cache here; build it first")
    reason = _stale(record, cache_key(images, input_size, max_pixels))
    if reason:
        raise DataError(f"{path}: the decoded cache is stale ({reason}); rebuild it")
    return _open(path, record, images, verify)


def ensure_cache(path, images, input_size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 0,
                 progress: bool = True, rebuild: bool = False, shard_rows: int = SHARD_ROWS, verify: bool = False,
                 log=print) -> DecodedCache:
    """The cache at ``path`` of ``images`` at ``input_size``: opened when it is up to date, else (or with
    ``rebuild``) built, decoding in ``workers`` processes (0: this one). A damaged cache is refused, not
    rebuilt, unless ``rebuild``. Concurrent callers build it once (the others wait for the lock, then open it)."""
    path = Path(path)
    if not rebuild:
        record = _read_record(path)
        if record is not None and _stale(record, cache_key(images, input_size, max_pixels)) is None:
            return _open(path, record, images, verify)
    with exclusive_lock(path, what="decoded cache"):
        key = cache_key(images, input_size, max_pixels)  # again: another process may have built it meanwhile
        record = None if rebuild else _read_record(path)
        reason = "rebuild asked for" if rebuild else "not built" if record is None else _stale(record, key)
        if reason is None:
            return _open(path, record, images, verify)
        log(f"{path}: building the decoded cache of {len(images.paths):,} images at {input_size} px ({reason})")
        return _build(path, images, key, workers, shard_rows, progress)


def build_cache(path, images, input_size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 0,
                progress: bool = True, shard_rows: int = SHARD_ROWS) -> DecodedCache:
    """Build (or rebuild) the cache at ``path``, whatever is there now, and open it."""
    return ensure_cache(path, images, input_size, max_pixels=max_pixels, workers=workers, progress=progress,
                        rebuild=True, shard_rows=shard_rows, log=lambda *_: None)


def _remove_leftovers(path: Path) -> None:
    """Remove what killed builds of ``path`` left beside it: their temporary folders (``building.json`` in
    them) and a replaced cache not yet deleted. Called under the cache's lock: no build of it is running."""
    ours = re.compile(rf"\.{re.escape(path.name)}\.(?:[a-z0-9_]{{8}}\.tmp|old-\d+)")  # atomic_dir's names
    if not path.parent.is_dir():
        return
    for entry in path.parent.iterdir():
        if ours.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            kind = _BUILD_KIND if entry.name.endswith(".tmp") else CACHE_KIND
            if kind.recognises(entry):
                shutil.rmtree(entry, ignore_errors=True)


def _build(path: Path, images, key: dict, workers: int, shard_rows: int, progress: bool) -> DecodedCache:
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1; got {shard_rows}")
    check_replaceable(path, CACHE_KIND)  # before the work: a refusal costs nothing
    _remove_leftovers(path)
    started, size = time.time(), key["input_size"]
    with atomic_dir(path, kind=CACHE_KIND) as tmp:
        write_json(tmp / BUILD_MARKER, {"pid": os.getpid(), "host": socket.gethostname(), "started": started})
        plan = _shard_rows(key["rows"], shard_rows)
        offsets = [_create_shard(tmp / _shard_name(k), rows, size) for k, rows in enumerate(plan)]
        job = dict(root=Path(images.root), paths=list(images.paths), size=size, max_pixels=key["max_pixels"],
                   shard_rows=shard_rows, files=[tmp / _shard_name(k) for k in range(len(plan))], offsets=offsets)
        bad = _decode_all(job, workers, progress)
        shards = [_shard_entry(tmp / _shard_name(k), rows) for k, rows in enumerate(plan)]
        record = dict(key, shard_rows=shard_rows, root=str(Path(images.root).resolve()),
                      source=str(getattr(images, "source", "") or ""), shards=shards,
                      bad=[{"row": r, "path": p, "error": e} for r, p, e in sorted(bad)],
                      built=time.strftime("%Y-%m-%d %H:%M:%S"), build_seconds=round(time.time() - started, 1))
        write_json(tmp / RECORD, record)
        (tmp / BUILD_MARKER).unlink()
    return _open(path, record, images, verify=False)


def _create_shard(file: Path, rows: int, size: int) -> int:
    """An .npy of ``rows`` zero images (sparse until written); returns the offset of its first pixel."""
    with open(file, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (rows, size, size, 3)}
        np.lib.format.write_array_header_1_0(f, header)
        offset = f.tell()
        f.truncate(offset + rows * size * size * 3)
    return offset


def _shard_entry(file: Path, rows: int) -> dict:
    """A written shard's record entry, once it is on disk (fsync)."""
    with open(file, "rb") as f:
        os.fsync(f.fileno())
        size = os.fstat(f.fileno()).st_size
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        return {"file": file.name, "rows": rows, "bytes": size, "ends_crc32": _ends_crc(f.fileno(), size),
                "sha256": digest}


def _decode_rows(job: dict, rows: bytes) -> dict:
    """Decode rows [lo, hi) (one shard's) into their places in the shard file; the undecodable ones come back."""
    lo, hi = np.frombuffer(rows, np.int64).tolist()
    per, size = job["shard_rows"], job["size"]
    k, row_bytes = lo // per, size * size * 3
    bad = []
    fd = os.open(job["files"][k], os.O_WRONLY)
    try:
        for row in range(lo, hi):
            path = job["paths"][row]
            try:
                img = decode_resized(job["root"] / path, size, job["max_pixels"])
            except DataError as e:
                bad.append([row, path, str(e)])
                continue
            data = np.asarray(img, dtype=np.uint8).tobytes()
            if len(data) != row_bytes:  # decode_resized makes RGB size x size: anything else is a bug
                raise RuntimeError(f"{path}: decoded to {len(data)} bytes, not {row_bytes}")
            if os.pwrite(fd, data, job["offsets"][k] + (row - k * per) * row_bytes) != row_bytes:
                raise OSError(errno.ENOSPC, "a short write", str(job["files"][k]))
    finally:
        os.close(fd)
    return {"rows": hi - lo, "bad": bad}


def _decode_all(job: dict, workers: int, progress: bool) -> list:
    """Decode every row into the shards, in ``workers`` processes (0: here), with a progress bar; returns the
    undecodable rows as [row, path, message]."""
    per, n = job["shard_rows"], len(job["paths"])
    spans = [np.array([lo, min(lo + JOB_ROWS, start + per, n)], np.int64).tobytes()
             for start in range(0, n, per) for lo in range(start, min(start + per, n), JOB_ROWS)]
    handle = functools.partial(_decode_rows, job)
    bad = []
    with tqdm(total=n, desc="decoding the cache", unit="img", disable=not progress) as bar:
        if workers == 0:
            for span in spans:
                stop.check()  # a Ctrl-C that a __del__ swallowed still stops the build
                answer = handle(span)
                bad += answer["bad"]
                bar.update(answer["rows"])
            return bad
        pool = Workers(workers, lambda: None, handle, name="cache worker")  # forked: ``job`` is inherited
        try:
            queued = iter(spans)
            for span in queued:
                pool.submit(span)
                if pool.pending >= 2 * workers:
                    break
            while pool.pending:
                stop.check()  # a Ctrl-C that a __del__ or an at-fork hook swallowed still stops the build
                answer = pool.next_result()
                bad += answer["bad"]
                bar.update(answer["rows"])
                span = next(queued, None)
                if span is not None:
                    pool.submit(span)
        finally:
            pool.close()
    return bad
