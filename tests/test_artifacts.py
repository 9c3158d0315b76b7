"""artifacts.py: folders replaced only when ours, one writer at a time, reads validated."""

import multiprocessing
import time

import numpy as np
import pytest

from fashionrec.artifacts import (
    ArtifactKind,
    atomic_dir,
    check_replaceable,
    ensure_writable,
    exclusive_lock,
    load_array,
    read_json_object,
    save_npy,
    write_json,
    write_text,
)
from fashionrec.errors import UserError

KIND = ArtifactKind("thing", marker="thing.json", entries=("data.npy", "*.png"))


def _make_thing(path, extra=()):
    path.mkdir(parents=True)
    write_json(path / "thing.json", {"format": 1})
    save_npy(path / "data.npy", np.zeros(3, np.float32))
    for name in extra:
        (path / name).write_text("user data")


def test_atomic_dir_replaces_a_folder_of_its_kind(tmp_path):
    out = tmp_path / "out"
    _make_thing(out)
    with atomic_dir(out, kind=KIND) as tmp:
        write_json(tmp / "thing.json", {"format": 2})
    assert read_json_object(out / "thing.json")["format"] == 2


@pytest.mark.parametrize("setup", ["stranger", "foreign_file_inside", "plain_file"])
def test_atomic_dir_refuses_what_it_did_not_write(tmp_path, setup):
    out = tmp_path / "out"
    if setup == "stranger":
        out.mkdir()
        (out / "photo.jpg").write_bytes(b"precious")
    elif setup == "foreign_file_inside":
        _make_thing(out, extra=["notes.txt"])
    else:
        out.write_text("precious")
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()
    with pytest.raises(UserError, match="out") as e:
        with atomic_dir(out, kind=KIND) as tmp:
            write_json(tmp / "thing.json", {})
    assert "\n" not in str(e.value)
    after = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind


def test_check_replaceable_accepts_absent_and_empty(tmp_path):
    check_replaceable(tmp_path / "absent", KIND)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", KIND)


def test_written_files_are_readable_by_others(tmp_path):
    write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o044 == 0o044


def test_ensure_writable_read_only_location():
    # /proc refuses new files even to root (CI runs as root, where chmod 0555 would not stop it)
    with pytest.raises(UserError, match=r"^/proc/self: cannot write here") as e:
        ensure_writable("/proc/self/index")
    assert "\n" not in str(e.value)


def test_ensure_writable_creates_nothing(tmp_path):
    ensure_writable(tmp_path / "a" / "b" / "index")
    assert list(tmp_path.iterdir()) == []


def _hold(path, ready, release):
    with exclusive_lock(path, what="index"):
        ready.set()
        release.wait(20)


def test_exclusive_lock_refuses_a_second_writer_and_names_the_holder(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(tmp_path / "index", ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            with exclusive_lock(tmp_path / "index", wait=False, what="index"):
                pass
    finally:
        release.set()
        holder.join(20)
    t0 = time.monotonic()
    with exclusive_lock(tmp_path / "index", wait=False):  # released when the holder ended
        pass
    assert time.monotonic() - t0 < 5


def test_read_json_object_names_file_and_key(tmp_path):
    p = tmp_path / "index.json"
    write_json(p, {"dim": "12"})
    with pytest.raises(UserError, match=r"index.json: key 'dim' must be an integer"):
        read_json_object(p, {"dim": int})
    with pytest.raises(UserError, match=r"key 'blocks' is missing"):
        read_json_object(p, {"blocks": list})
    p.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_json_object(p)
    p.write_text("[1, 2]")
    with pytest.raises(UserError, match="expected a JSON object"):
        read_json_object(p)


def test_load_array_checks_shape_dtype_and_finite(tmp_path):
    p = tmp_path / "features.npy"
    x = np.ones((5, 4), np.float32)
    x[3, 1] = np.nan
    save_npy(p, x)
    with pytest.raises(UserError, match="NaN or infinite values .*row 3"):
        load_array(p, finite=True)
    with pytest.raises(UserError, match=r"expected \(5, 8\)"):
        load_array(p, shape=(5, 8))
    with pytest.raises(UserError, match="expected float64"):
        load_array(p, dtype=np.float64)
    p.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UserError, match="not a readable .npy"):
        load_array(p)
