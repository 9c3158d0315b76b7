"""scripts/fashion_mnist_to_csv.py on tiny IDX files written here (one part gzipped, one not),
then its CSV through the toolkit's own reader."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionrec.data.catalog import read_labels_csv
from fashionrec.data.formats import read_catalog

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fashion_mnist_to_csv.py"
CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: zero, zero, type 0x08 (unsigned byte), dimensions, big-endian sizes, data."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_pair(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        name = folder / f"{prefix}-{kind}-ubyte"
        if gz:
            with gzip.open(f"{name}.gz", "wb") as f:
                f.write(idx_bytes(array))
        else:
            name.write_bytes(idx_bytes(array))


@pytest.fixture
def idx_source(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "idx"
    src.mkdir()
    train_y = np.tile(np.arange(10, dtype=np.uint8), 4)  # 40 images, 4 per class
    train_x = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    test_y = np.arange(10, dtype=np.uint8)
    test_x = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    write_idx_pair(src, "train", train_x, train_y, gz=True)
    write_idx_pair(src, "t10k", test_x, test_y, gz=False)
    return src, (train_x, train_y, test_x, test_y)


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_converts_idx_files_to_pngs_and_csvs(idx_source, tmp_path):
    src, (train_x, train_y, test_x, test_y) = idx_source
    out = tmp_path / "fm"
    proc = run(out, "--source", src, "--val", 10, "--seed", 1)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 50 images" in proc.stdout and "test 10, train 30, val 10" in proc.stdout
    # pixels and labels survive exactly
    np.testing.assert_array_equal(np.asarray(Image.open(out / "images/train/00007.png")), train_x[7])
    np.testing.assert_array_equal(np.asarray(Image.open(out / "images/test/00003.png")), test_x[3])
    m = read_labels_csv(out / "labels.csv", "category", classes=CLASSES)
    assert len(m) == 50 and m.classes == CLASSES
    by_path = {p: (m.classes[y], s) for p, y, s in zip(m.paths, m.labels.tolist(), m.splits)}
    assert by_path["images/train/00013.png"][0] == CLASSES[train_y[13]]
    assert by_path["images/test/00004.png"] == (CLASSES[test_y[4]], "test")
    val = [p for p, (_, s) in by_path.items() if s == "val"]
    assert len(val) == 10 and sorted(by_path[p][0] for p in val) == sorted(CLASSES)  # stratified: one per class
    root, paths, known = read_catalog(out / "catalog-test.csv", "csv")
    assert len(paths) == 10 and known["category"] == [CLASSES[y] for y in test_y]
    # the same seed draws the same split
    again = tmp_path / "fm2"
    assert run(again, "--source", src, "--val", 10, "--seed", 1).returncode == 0
    assert (again / "labels.csv").read_text() == (out / "labels.csv").read_text()


def test_bad_input_is_one_line(idx_source, tmp_path):
    src, _ = idx_source
    proc = run(tmp_path / "a", "--source", tmp_path / "nowhere")
    assert proc.returncode != 0 and "train-images-idx3-ubyte(.gz) not found" in proc.stderr
    (src / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))  # 3 labels for 10 images
    proc = run(tmp_path / "b", "--source", src)
    assert proc.returncode != 0 and "do not pair" in proc.stderr and "Traceback" not in proc.stderr
    (src / "t10k-labels-idx1-ubyte").write_bytes(b"\x08\x03junk")
    proc = run(tmp_path / "c", "--source", src)
    assert proc.returncode != 0 and "not an IDX file" in proc.stderr
    assert not any((tmp_path / n).exists() for n in "abc")  # no half-written tree
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
