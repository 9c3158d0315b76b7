"""Artifacts on disk: written atomically, replaced only when ours, locked, validated when read.

- **Atomic.** Every artifact the toolkit writes goes through these helpers: the bytes go to a
  temporary file in the same directory, are flushed to disk, and the temporary file is renamed
  over the target (``os.replace`` is atomic on POSIX). Directories are built under a temporary
  name and swapped in the same way. A kill leaves the old artifact or the new one.
- **Only ours is replaced.** A folder is replaced only when it is an artifact of the kind
  being written (:class:`ArtifactKind`: its marker file is there and every entry in it is one
  the toolkit writes) or empty; anything else is refused with one line, before any work.
- **One writer at a time.** :func:`exclusive_lock` takes an OS lock (``flock``) on a file beside
  the artifact, so two writers of one index or run folder never lose each other's update.
- **Checked when read.** :func:`read_json_object` and :func:`load_array` turn a malformed, truncated
  or hand-edited file into one line naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# A write the disk or its limits refused: the user's to fix (free space, a limit, a read-only mount), not a bug.
DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT}
_ERRNO_NAMES = {"StorageFull": errno.ENOSPC, "FileTooLarge": errno.EFBIG, "ReadOnlyFilesystem": errno.EROFS,
                "FilesystemQuotaExceeded": errno.EDQUOT}


def disk_error(e: BaseException) -> str | None:
    """Why a write failed, when the disk (full, a file-size limit, read-only) refused it; None for anything else.

    Knows the forms that carry no errno: numpy's short write (``OSError: 409600 requested and 190432
    written``) and safetensors' ``SafetensorError ... Os { code: 28, ... }``."""
    code = getattr(e, "errno", None)
    if isinstance(e, OSError) and code in DISK_ERRNOS:
        return os.strerror(code)
    text = str(e)
    if isinstance(e, OSError) and code is None and re.fullmatch(r"\d+ requested and \d+ written", text.strip()):
        return f"a short write ({text.strip()}): the disk is full or a file-size limit was reached"
    if type(e).__name__ == "SafetensorError":
        found = re.search(r"code: (\d+)|os error (\d+)", text)
        number = int(next(g for g in found.groups() if g)) if found else None
        named = re.search(r"kind: (\w+)", text)
        number = number or (_ERRNO_NAMES.get(named.group(1)) if named else None)
        if number in DISK_ERRNOS:
            return os.strerror(number)
    return None


class DiskFull(UserError):
    """A write the disk refused (full, a file-size limit, read-only), with what was kept: one line."""


def _refused_write(path: Path, e: BaseException, reason: str, what: str) -> DiskFull:
    if isinstance(e, DiskFull):  # a file of a folder being built: the folder's words
        reason = e.reason
    kept = f"the previous {what} there is unchanged" if path.exists() else f"no {what} was left there"
    err = DiskFull(f"{path}: cannot be written ({reason}); {kept}")
    err.reason = reason
    return err


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it over ``path`` if the block succeeds.

    A write the disk refuses (full, a file-size limit, read-only: :func:`disk_error`) is a one-line
    :class:`DiskFull` naming ``path``; the old file stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if disk_error(e):
            raise _refused_write(path, e, disk_error(e), "file") from None
        raise
    os.close(fd)
    tmp = Path(tmp)
    try:
        try:
            yield tmp
            # mkstemp makes 0600, and some writers (safetensors) recreate the file: set the usual
            # permissions last, so a service running as another user can read every artifact.
            os.chmod(tmp, 0o666 & ~_UMASK)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except Exception as e:
            reason = disk_error(e)
            if reason:
                raise _refused_write(path, e, reason, "file") from None
            raise
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "an object"}


def _is_type(value, tp) -> bool:
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def read_json_object(path, required: dict | None = None, what: str = "file") -> dict:
    """Read a JSON object and check ``required`` keys and types (``{"dim": int, "blocks": list}``).

    A type may be a tuple of types. Any problem (missing, unreadable, not JSON, not an object, a
    key missing or of the wrong type) is one UserError naming the file and the key.
    """
    path = Path(path)
    try:
        obj = read_json(path)
    except FileNotFoundError:
        raise UserError(f"{path}: missing; not a complete {what}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; not a {what}") from None
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}); the {what} is damaged") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({os_reason(e)})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(obj).__name__}; the {what} is damaged")
    for key, tp in (required or {}).items():
        if key not in obj:
            raise UserError(f"{path}: key {key!r} is missing; the {what} is damaged or from another tool")
        types_ = tp if isinstance(tp, tuple) else (tp,)
        if not any(_is_type(obj[key], t) for t in types_):
            expected = " or ".join(_TYPE_NAMES.get(t, getattr(t, "__name__", str(t))) for t in types_)
            raise UserError(f"{path}: key {key!r} must be {expected}, got {obj[key]!r:.60}")
    return obj


def load_array(path, dtype=None, ndim: int | None = None, shape: tuple | None = None, finite: bool = False,
               mmap: bool = False, what: str = "array") -> np.ndarray:
    """Load a ``.npy`` without unpickling and check it; any problem is one UserError naming the file.

    ``shape`` may hold ``None`` for a free axis. ``finite`` checks for NaN and infinity (in chunks,
    so a memory-mapped array is not read into memory at once).
    """
    path = Path(path)
    try:
        arr = load_npy(path, mmap=mmap)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except (ValueError, EOFError, OSError) as e:
        raise UserError(f"{path}: not a readable .npy {what} ({str(e).splitlines()[0][:120]})") from None
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise UserError(f"{path}: {what} is {arr.dtype}, expected {np.dtype(dtype)}")
    if ndim is not None and arr.ndim != ndim:
        raise UserError(f"{path}: {what} has shape {arr.shape}, expected {ndim} dimensions")
    fits = shape is None or (arr.ndim == len(shape) and all(s in (None, a) for s, a in zip(shape, arr.shape)))
    if not fits:
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise UserError(f"{path}: {what} has shape {arr.shape}, expected {expected}")
    if finite and arr.dtype.kind in "fc":
        flat = arr.reshape(len(arr), -1) if arr.ndim else arr.reshape(1, 1)
        for start in range(0, len(flat), 65536):
            block = flat[start:start + 65536]
            bad = ~np.isfinite(block)
            if bad.any():
                row = start + int(np.argmax(bad.any(axis=1)))
                raise UserError(f"{path}: {what} holds NaN or infinite values (first in row {row}); "
                                f"rebuild it")
    return arr


def save_npy(path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def load_npy(path, mmap: bool = False) -> np.ndarray:
    return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)


@dataclass(frozen=True)
class ArtifactKind:
    """A kind of folder the toolkit writes, and how to recognise one.

    ``marker`` is the file every folder of this kind has; ``entries`` are the glob patterns of
    the names the toolkit writes at its top level. A folder is this kind's (and may be replaced)
    only if the marker is there and every entry matches: a user's own file inside it keeps
    the whole folder from being replaced.
    """

    name: str
    marker: str
    entries: tuple[str, ...]

    def foreign_entries(self, path: Path) -> list[str]:
        """Names at the top of ``path`` that the toolkit does not write in this kind of folder."""
        # leftovers of a killed write, our locks, and what a file browser drops are not the user's data
        patterns = (self.marker, *self.entries, ".*.tmp", ".*.old-*", ".*.lock", ".DS_Store")
        return sorted(e.name for e in path.iterdir() if not any(fnmatch.fnmatchcase(e.name, p) for p in patterns))

    def recognises(self, path: Path) -> bool:
        path = Path(path)
        return path.is_dir() and (path / self.marker).is_file() and not self.foreign_entries(path)


def _listed(names: list[str], show: int = 3) -> str:
    return ", ".join(names[:show]) + (f" (+{len(names) - show} more)" if len(names) > show else "")


def check_replaceable(path, kind: ArtifactKind) -> None:
    """Raise a one-line UserError unless ``path`` is absent, an empty folder or a ``kind`` folder.

    Call it before the expensive work: a refusal then costs the user nothing.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder; refusing to replace it with a {kind.name}")
    if not any(path.iterdir()) or kind.recognises(path):
        return
    if not (path / kind.marker).is_file():
        raise UserError(f"{path}: exists and is not a fashionrec {kind.name} (holds "
                        f"{_listed(sorted(e.name for e in path.iterdir()))}); nothing was changed: "
                        f"choose a new or empty folder")
    raise UserError(f"{path}: this {kind.name} folder also holds files fashionrec did not write "
                    f"({_listed(kind.foreign_entries(path))}); nothing was changed: move them out or "
                    f"choose another folder")


def ensure_writable(path) -> None:
    """Check, before expensive work, that ``path`` (a file or folder to be written) can be created.

    Probes the nearest existing ancestor by creating and removing a file there; creates nothing
    else. Raises a one-line UserError naming the folder and the reason (read-only, no space, ...).
    """
    path = Path(path).absolute()
    probe_dir = path if path.is_dir() else path.parent
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".fashionrec-probe.", dir=probe_dir)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise UserError(f"{probe_dir}: cannot write here ({os_reason(e)}); choose another output location") from None


def os_reason(e: OSError) -> str:
    """A short reason for an OSError, without the path (the caller names it)."""
    return e.strerror or errno.errorcode.get(e.errno or 0, type(e).__name__)


def lock_path(path) -> Path:
    """The lock file of the artifact at ``path``: beside it, since the artifact itself is swapped
    by rename (a lock inside a replaced folder would guard the old folder, not the name)."""
    path = Path(path).absolute()
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def exclusive_lock(path, wait: bool = True, what: str = "artifact"):
    """Hold an OS lock on the writer of the artifact at ``path`` for the block.

    A second writer waits (``wait=True``) or fails at once with one line saying who holds the
    lock. The lock is released by the OS when the holder exits, even when it is killed, so a
    stale lock file never blocks anyone.
    """
    import fcntl

    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
                raise UserError(f"{path}: another writer holds the {what} ({holder}); wait for it to "
                                f"finish, or leave out --no-wait to queue behind it") from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {command}".encode(), 0)
        yield lock
    finally:
        os.close(fd)  # closing releases the flock


@contextlib.contextmanager
def atomic_dir(path, *, kind: ArtifactKind):
    """Yield a fresh temporary directory; swap it in for ``path`` if the block succeeds.

    An existing ``path`` is replaced only if :func:`check_replaceable` allows it for ``kind``
    (checked before and again just before the swap): never a folder holding anything else.

    The old directory (if any) is renamed aside first and removed after the new one is in
    place, so at every moment ``path`` is either the complete old or the complete new one
    (between the two renames it is briefly absent; readers treat absent as "not built").
    """
    path = Path(path)
    check_replaceable(path, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        if disk_error(e):
            raise _refused_write(path, e, disk_error(e), kind.name) from None
        raise
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        try:
            yield tmp
        except Exception as e:  # a file of the new folder did not fit: the folder is named, the old one kept
            reason = e.reason if isinstance(e, DiskFull) else disk_error(e)
            if reason:
                raise _refused_write(path, e, reason, kind.name) from None
            raise
        check_replaceable(path, kind)  # the folder may have changed while the work ran
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
