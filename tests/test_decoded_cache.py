"""The decoded cache: built, reused, rebuilt when stale, refused when damaged, never lost to an interrupted
build; a loader reading it yields the JPEG loader's batches byte for byte; sub-batch worker jobs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fashionrec import stop
from fashionrec.artifacts import DiskFull
from fashionrec.config import AugmentConfig
from fashionrec.data import decoded_cache as dc
from fashionrec.data.catalog import read_labels_csv
from fashionrec.data.loader import BatchLoader
from fashionrec.errors import DataError, UserError

SIZE = 32
QUIET = dict(progress=False, log=lambda *_: None)


@pytest.fixture
def tree(synth_root, tmp_path):
    """A private copy of the synthetic Fashion tree (tests change its files) and its texture manifest."""
    shutil.copytree(synth_root / "fashion", tmp_path / "fashion")
    return read_labels_csv(tmp_path / "fashion" / "texture.csv", task="texture")


def leftovers(cache_dir):
    """What builds left beside the cache: anything but the cache itself and its lock."""
    return sorted(p.name for p in cache_dir.parent.iterdir()
                  if p.name.startswith(f".{cache_dir.name}.") and not p.name.endswith(".lock"))


def test_built_once_then_reused_and_holding_the_loaders_pixels(tree, tmp_path, monkeypatch):
    path = tmp_path / "cache"
    cache = dc.ensure_cache(path, tree, SIZE, shard_rows=50, **QUIET)
    assert len(cache) == len(tree) and sorted(os.listdir(path)) == ["cache.json"] + [
        f"shard-{k:05d}.npy" for k in range(-(-len(tree) // 50))]
    for row in (0, 49, 50, len(tree) - 1):
        want = np.asarray(dc.decode_resized(tree.root / tree.paths[row], SIZE))
        np.testing.assert_array_equal(cache.image(row), want)
    record = (path / "cache.json").read_text()
    monkeypatch.setattr(dc, "_decode_all", lambda *a: pytest.fail("rebuilt a cache that was up to date"))
    again = dc.ensure_cache(path, tree, SIZE, shard_rows=50, **QUIET)
    assert (path / "cache.json").read_text() == record and dc.stale_reason(path, tree, SIZE) is None
    np.testing.assert_array_equal(again.image(7), cache.image(7))
    assert dc.open_cache(path, tree, SIZE, verify=True).summary().startswith(f"{path}: {len(tree)} images at 32 px")


def test_rebuilt_when_a_source_file_or_the_input_size_changes(tree, tmp_path):
    path, logged = tmp_path / "cache", []
    dc.ensure_cache(path, tree, SIZE, **QUIET)
    changed = tree.root / tree.paths[3]
    changed.write_bytes((tree.root / tree.paths[4]).read_bytes())  # another image: other size and mtime
    assert dc.stale_reason(path, tree, SIZE) == "a source file's size or modification time changed"
    with pytest.raises(DataError, match=r"cache: the decoded cache is stale \(a source file's size"):
        dc.open_cache(path, tree, SIZE)
    cache = dc.ensure_cache(path, tree, SIZE, progress=False, log=logged.append)
    assert "building the decoded cache" in logged[-1] and "source file" in logged[-1]
    np.testing.assert_array_equal(cache.image(3), cache.image(4))
    assert dc.stale_reason(path, tree, 40) == "the input size changed: 32 then, 40 now"
    cache = dc.ensure_cache(path, tree, 40, progress=False, log=logged.append)
    assert cache.image(0).shape == (40, 40, 3) and "input size" in logged[-1]
    assert leftovers(path) == []


@pytest.mark.parametrize("damage, words", [
    ("truncate", "truncated"),
    ("ends", "CRC-32 of its ends"),
    ("middle", "sha256"),
    ("header", "not a readable .npy"),
])
def test_a_damaged_shard_is_refused_with_one_line_naming_it(tree, tmp_path, damage, words):
    path = tmp_path / "cache"
    dc.ensure_cache(path, tree, SIZE, shard_rows=50, **QUIET)  # 50 rows of 3 KiB: the middle is past both ends
    shard = path / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        data = data[:-100]
    elif damage == "header":
        data[:6] = b"NOTNPY"
    else:
        at = 200 if damage == "ends" else len(data) // 2
        data[at] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError) as refused:
        dc.open_cache(path, tree, SIZE, verify=damage == "middle")
    message = str(refused.value)
    assert "\n" not in message and str(shard) in message and words in message
    assert f"delete {path} to rebuild it" in message
    if damage != "middle":  # ensure refuses too (a damaged cache is news), unless asked to rebuild
        with pytest.raises(DataError, match="damaged"):
            dc.ensure_cache(path, tree, SIZE, **QUIET)
    dc.build_cache(path, tree, SIZE, progress=False, shard_rows=50)
    dc.open_cache(path, tree, SIZE, verify=True)


def test_an_interrupted_build_keeps_the_old_cache_and_leaves_nothing(tree, tmp_path, monkeypatch):
    path = tmp_path / "cache"
    dc.ensure_cache(path, tree, SIZE, **QUIET)
    real, calls = dc.decode_resized, []

    def ctrl_c_after_30(*args, **kw):  # as stop.scope's SIGINT handler does: record, then raise
        calls.append(1)
        if len(calls) == 30:
            stop.record(signal.SIGINT)
        return real(*args, **kw)

    monkeypatch.setattr(dc, "decode_resized", ctrl_c_after_30)
    with stop.scope(), pytest.raises(KeyboardInterrupt):
        dc.ensure_cache(path, tree, 40, **QUIET)
    assert len(calls) < len(tree)  # stopped promptly, at the next job
    assert dc.open_cache(path, tree, SIZE).image(0).shape == (SIZE, SIZE, 3) and leftovers(path) == []

    write = os.pwrite

    def full(fd, data, offset):  # the disk fills up under the shards' pixels (in the workers)
        if len(data) == 40 * 40 * 3:
            raise OSError(28, "No space left on device")
        return write(fd, data, offset)

    monkeypatch.setattr(dc, "decode_resized", real)
    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(DiskFull, match=r"cache: cannot be written \(No space left on device\); the previous"):
        dc.ensure_cache(path, tree, 40, workers=2, **QUIET)  # a worker's full disk is the parent's one line
    assert dc.open_cache(path, tree, SIZE) and leftovers(path) == []


def test_a_build_killed_outright_leaves_the_old_cache_and_the_next_build_clears_its_folder(tree, tmp_path):
    path = tmp_path / "cache"
    dc.ensure_cache(path, tree, SIZE, **QUIET)
    script = ("import sys, time\n"
              "from fashionrec.data import decoded_cache as dc\n"
              "from fashionrec.data.catalog import read_labels_csv\n"
              "real = dc.decode_resized\n"
              "dc.decode_resized = lambda *a, **k: (time.sleep(0.05), real(*a, **k))[1]\n"
              "m = read_labels_csv(sys.argv[1], task='texture')\n"
              "dc.ensure_cache(sys.argv[2], m, 40, progress=False)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(tree.root / "texture.csv"), str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while not any((p / "building.json").is_file() and (p / "shard-00000.npy").is_file()
                      for p in tmp_path.glob(".cache.*.tmp")):
            assert child.poll() is None and time.time() < deadline, child.stderr.read()
            time.sleep(0.05)
        time.sleep(0.3)  # mid-decode
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    (stray,) = leftovers(path)  # the killed build's folder: hidden, never read as the cache
    assert dc.open_cache(path, tree, SIZE).image(0).shape == (SIZE, SIZE, 3)
    assert dc.stale_reason(path, tree, 40) == "the input size changed: 32 then, 40 now"
    (tmp_path / ".cache.notours.tmp").mkdir()  # a folder no build wrote is never removed
    dc.ensure_cache(path, tree, 40, **QUIET)
    assert leftovers(path) == [".cache.notours.tmp"]
    assert dc.open_cache(path, tree, 40, verify=True).image(0).shape == (40, 40, 3)


def test_a_folder_that_is_not_a_cache_is_never_replaced(tree, tmp_path):
    path = tmp_path / "mine"
    path.mkdir()
    (path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a fashionrec decoded cache"):
        dc.ensure_cache(path, tree, SIZE, **QUIET)
    with pytest.raises(UserError, match="is not a fashionrec decoded-image cache"):
        dc.build_cache(path, tree, SIZE, progress=False)
    assert os.listdir(path) == ["notes.txt"]


def batches(loader, epochs=(0, 1)):
    try:
        return [(x.copy(), None if y is None else y.tolist(), i.tolist())
                for e in epochs for x, y, i in loader.epoch(e)]
    finally:
        loader.close()


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert ia == ib and ya == yb
        assert xa.dtype == xb.dtype == np.uint8 and xa.tobytes() == xb.tobytes()


@pytest.mark.parametrize("augment", [None, AugmentConfig(rotation=8, crop_scale=(0.5, 1.0))],
                         ids=["plain", "augmented"])
def test_loader_batches_from_the_cache_are_the_jpeg_loaders_bytes(tree, tmp_path, augment):
    (tree.root / tree.paths[5]).write_bytes(b"not a jpeg")  # skipped alike, with the same reason
    cache = dc.ensure_cache(tmp_path / "cache", tree, SIZE, workers=2, **QUIET)  # the whole set; loaders take parts
    assert list(cache.bad) == [5]
    train = tree.subset("train")
    kw = dict(input_size=SIZE, batch_size=16, shuffle=True, augment=augment, seed=3)
    want_loader = BatchLoader(train, **kw)
    want = batches(want_loader)
    for workers in (0, 2):
        got_loader = BatchLoader(train, workers=workers, cache=cache, **kw)
        assert_same(batches(got_loader), want)
        assert got_loader.bad == want_loader.bad and len(got_loader.bad) == (tree.paths[5] in train.paths)
    by_path = BatchLoader(tree, cache=tmp_path / "cache", **kw)  # a folder: opened (built when stale)
    assert_same(batches(by_path), batches(BatchLoader(tree, **kw)))
    if augment is not None:  # augmented indeed, and anew each epoch: each row's image in epoch 0 and in epoch 1
        seen = [{r: x[k].tobytes() for x, _, rows in batches(BatchLoader(train, cache=cache, **kw), (e,))
                 for k, r in enumerate(rows)} for e in (0, 1)]
        assert sum(seen[0][r] != seen[1][r] for r in seen[0]) > 0.9 * len(seen[0])
    with pytest.raises(ValueError, match="at 32 px .* wants 40 px"):
        BatchLoader(tree, 40, 8, cache=cache)


def test_worker_jobs_smaller_than_a_batch_give_the_same_batches(tree):
    (tree.root / tree.paths[2]).write_bytes(b"")  # a gap in a job's part of the slot, closed in the batch
    kw = dict(input_size=SIZE, batch_size=10, augment=AugmentConfig(rotation=8), seed=1, limit_batches=4,
              max_bad_fraction=0.1)
    want = batches(BatchLoader(tree, **kw))
    for job_rows in (None, 3, 10):
        assert_same(batches(BatchLoader(tree, workers=2, prefetch=1, job_rows=job_rows, **kw)), want)
    with pytest.raises(ValueError, match="job_rows must be >= 1"):
        BatchLoader(tree, SIZE, 4, job_rows=0)



def test_an_interrupt_between_the_parts_of_a_batch_stops_the_workers(tree):
    """Half a batch's answers taken: the other half is still owed, so the workers must go (the next epoch
    starts anew) or that epoch would read the stale answers."""
    kw = dict(input_size=SIZE, batch_size=8, limit_batches=3)
    want = batches(BatchLoader(tree, **kw))
    loader = BatchLoader(tree, workers=2, prefetch=1, **kw)
    batches_of_epoch_0 = loader.epoch(0)
    next(batches_of_epoch_0)
    answer, calls = loader._workers.next_result, []

    def interrupted_at_the_second_part():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return answer()

    loader._workers.next_result = interrupted_at_the_second_part
    with pytest.raises(KeyboardInterrupt):
        next(batches_of_epoch_0)
    assert loader._workers is None
    assert_same(batches(loader), want)

def test_bench_cache_runs_end_to_end_and_reports_identical_batches(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    out, md = tmp_path / "c.json", tmp_path / "RESULTS.md"
    args = ["--size", "32", "--source-px", "64", "--images", "48", "--batch-size", "16", "--workers", "0,1",
            "--repeats", "1", "--work", str(tmp_path / "work"), "--out", str(out), "--results", str(md)]
    proc = subprocess.run([sys.executable, str(repo / "scripts" / "bench_cache.py"), *args], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["identical"] and [r["workers"] for r in report["results"]] == [0, 1]
    assert all(r["jpeg"]["img_s"] > 0 and r["cache"]["img_s"] > 0 for r in report["results"])
    text = md.read_text()
    assert text.count("<!-- cache:start -->") == 1 and "| none | 1 |" in text and "First batch" in text


def test_training_with_data_cache_is_the_same_run_and_fashionrec_cache_builds_it_first(synth_root, tmp_path):
    """``data.cache`` in a config: `fashionrec cache` builds it, training reads it, and the run's history is
    the one training from the JPEGs gives (same seed, same batches, same losses)."""
    import yaml
    from click.testing import CliRunner

    from fashionrec.cli import main

    def config(name: str, cache=None) -> Path:
        raw = {"stage": "pretrain", "task": "category", "engine": "torch",
               "data": {"format": "csv", "root": str(synth_root / "fashion" / "category.csv"), "cache": cache},
               "model": {"arch": "alexnet", "input_size": 64},
               "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "max_epochs": 2, "workers": 0,
                         "device": "cpu", "limit_train_batches": 3, "top_k": 3},
               "output": {"dir": str(tmp_path / "runs"), "name": name}}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    cache = tmp_path / "decoded"
    built = CliRunner().invoke(main, ["cache", "-c", str(config("cached", str(cache))), "--no-progress"])
    assert built.exit_code == 0, built.output
    assert "images at 64 px" in built.output and (cache / "cache.json").is_file()
    mtime = (cache / "cache.json").stat().st_mtime_ns
    for path in (config("cached", str(cache)), config("jpegs")):
        r = CliRunner().invoke(main, ["pretrain", "-c", str(path), "--no-progress"])
        assert r.exit_code == 0, r.output
        assert "building the decoded cache" not in r.output  # built by `fashionrec cache`, reused
    assert (cache / "cache.json").stat().st_mtime_ns == mtime

    def history(name):
        rows = [json.loads(line) for line in (tmp_path / "runs" / "pretrain" / name / "history.jsonl").open()]
        return [(r["train_loss"], r["val_loss"], r["val_acc"]) for r in rows]

    assert history("cached") == history("jpegs")
    unset = CliRunner().invoke(main, ["cache", "-c", str(config("jpegs")), "--no-progress"])
    assert unset.exit_code == 2 and "data.cache: not set" in unset.output
