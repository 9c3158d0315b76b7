"""Retrieval data: the In-shop partition file, a shop's CSV, their rules, and the synthetic In-shop tree."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from fashionrec.data.inshop import (
    ItemImages,
    read_inshop,
    read_items_csv,
    read_run_record,
    split_by_item,
)
from fashionrec.data.synth import inshop as synth_inshop
from fashionrec.errors import DataError


def write_partition(root, rows, count=None, header="image_name item_id evaluation_status"):
    """An In-shop tree: the images (tiny JPEGs) and Eval/list_eval_partition.txt."""
    for path, _, _ in rows:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (200, 100, 50)).save(root / path)
    lines = [str(len(rows) if count is None else count), header]
    lines += [f"{p:<50}{item} {split}" for p, item, split in rows]
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    (root / "Eval/list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root / "Eval/list_eval_partition.txt"


def views(item, splits, section="WOMEN/Dresses"):
    return [(f"img/{section}/{item}/01_{k + 1}_front.jpg", item, s) for k, s in enumerate(splits)]


GOOD = views("id_1", ["train"] * 3) + views("id_2", ["train"] * 2) + views("id_3", ["query", "gallery", "gallery"]) \
    + views("id_4", ["query", "gallery"]) + views("id_5", ["gallery"])


def test_reads_the_partition_file(tmp_path):
    write_partition(tmp_path, GOOD)
    data = read_inshop(tmp_path)
    assert data.counts() == {"train": (5, 2), "query": (2, 2), "gallery": (4, 3)}
    assert data.items[0] == "id_1" and data.paths[0] == "img/WOMEN/Dresses/id_1/01_1_front.jpg"
    labels = data.labels()
    assert labels[0] == labels[1] == labels[2] != labels[3]


@pytest.mark.parametrize("rows, count, match", [
    (GOOD[:-1] + [("img/x/id_5/01_1_front.jpg", "id_5", "test")], None,
     r":13: evaluation_status must be train, query, gallery; got 'test'"),
    (GOOD + views("id_1", ["gallery"], section="MEN/Pants"), None, r":14: item 'id_1' is both learned .* see line 3"),
    (GOOD + [("img/x/id_9/01_1_front.jpg", "id_9", "query")], None,
     r":14: item 'id_9' has query photos but no gallery photo"),
    (GOOD, 99, r":1: count line says 99 rows but the file has 11"),
])
def test_partition_mistakes_are_one_line_errors_naming_the_line(tmp_path, rows, count, match):
    write_partition(tmp_path, rows, count)
    with pytest.raises(DataError, match=match) as e:
        read_inshop(tmp_path)
    assert "\n" not in str(e.value) and "list_eval_partition.txt" in str(e.value)


def test_a_missing_image_is_named_or_skipped(tmp_path):
    write_partition(tmp_path, GOOD)
    (tmp_path / GOOD[1][0]).unlink()
    with pytest.raises(DataError, match=r":4: image 'img/WOMEN/Dresses/id_1/01_2_front.jpg' not found"):
        read_inshop(tmp_path)
    assert len(read_inshop(tmp_path, skip_missing=True)) == len(GOOD) - 1


def write_csv(tmp_path, text, images):
    for p in images:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / p)
    (tmp_path / "photos.csv").write_text(text)
    return tmp_path / "photos.csv"


def test_a_shop_csv_without_splits_is_split_by_item(tmp_path):
    rows = [(f"p/{i}_{k}.jpg", f"sku{i}") for i in range(20) for k in range(2 + i % 3)] + [("p/solo.jpg", "solo")]
    path = write_csv(tmp_path, "path,item_id\n" + "".join(f"{p},{it}\n" for p, it in rows), [p for p, _ in rows])
    data = read_items_csv(path, test_fraction=0.5, seed=3)
    sides = {}
    for it, s in zip(data.items, data.splits):
        sides.setdefault(it, set()).add("test" if s in ("query", "gallery") else s)
    assert all(len(v) == 1 for v in sides.values())  # no item on both sides
    assert sum(v == {"test"} for v in sides.values()) == 11  # 10 of the 20 items with two photos, + solo
    assert data.splits[data.items.index("solo")] == "gallery"  # one photo: a distractor
    for it in sides:
        splits = Counter(s for i, s in zip(data.items, data.splits) if i == it)
        if "query" in splits:
            assert splits["gallery"] >= splits["query"] >= 1
    assert read_items_csv(path, test_fraction=0.5, seed=3).splits == data.splits  # seeded
    assert split_by_item(data.items, 0.5, seed=4) != data.splits


@pytest.mark.parametrize("text, match", [
    ("path,sku\np/a.jpg,1\n", r"photos.csv:1: header must have an 'item_id' column"),
    ("path,item_id,split\np/a.jpg,1,train\np/b.jpg,1,test\n",
     r"photos.csv:3: split must be one of train, val, query, gallery; got 'test'"),
    ("path,item_id,split\np/a.jpg,1,train\np/b.jpg,1,gallery\n", r"photos.csv:3: item '1' is both learned"),
    ("path,item_id,split\np/a.jpg,1,query\np/b.jpg,2,gallery\n",
     r"photos.csv:2: item '1' has query photos but no gallery"),
    ("path,item_id,split\np/a.jpg,1,query\np/a.jpg,1,gallery\n", r"photos.csv:3: 'p/a.jpg' is listed again"),
])
def test_shop_csv_mistakes_are_one_line_errors(tmp_path, text, match):
    path = write_csv(tmp_path, text, ["p/a.jpg", "p/b.jpg"])
    with pytest.raises(DataError, match=match) as e:
        read_items_csv(path)
    assert "\n" not in str(e.value)


def test_val_items_come_from_training_items_with_two_photos(tmp_path):
    items = [f"i{i // 2}" if i < 36 else f"s{i}" for i in range(40)]
    data = ItemImages(tmp_path, [f"{i}.jpg" for i in range(40)], items, ["train"] * 30 + ["query", "gallery"] * 5)
    val = data.with_val(0.25, seed=0)
    moved = {it for it, s in zip(val.items, val.splits) if s == "val"}
    assert len(moved) == 4 and all(it.startswith("i") and int(it[1:]) < 15 for it in moved)
    assert val.with_val(0.25, seed=1) is val  # a val split already there stays
    assert data.with_val(0.0, seed=0) is data


def test_the_run_record_round_trips(tmp_path):
    write_partition(tmp_path / "shop", GOOD)
    data = read_inshop(tmp_path / "shop").with_val(0.5, 0)
    (tmp_path / "run").mkdir()
    data.to_csv(tmp_path / "run/manifest.csv")
    back = read_run_record(tmp_path / "run/manifest.csv")
    assert (back.paths, back.items, back.splits) == (data.paths, data.items, data.splits)
    assert back.root.resolve() == (tmp_path / "shop").resolve()


# --------------------------------------------------------------------------- the synthetic tree


def test_the_synthetic_tree_reads_as_in_shop(synth_root):
    data = read_inshop(synth_root / "inshop")
    counts = data.counts()
    assert synth_inshop.tree_images(180) <= len(data) <= synth_inshop.tree_images(180) + 4
    assert set(counts) == {"train", "query", "gallery"} and counts["query"][1] == counts["gallery"][1]
    per_item = Counter(data.items)
    assert 3 <= min(per_item.values()) and max(per_item.values()) <= 5
    for path, item in zip(data.paths, data.items):  # the real layout: img/<gender>/<section>/<item>/01_<n>_<view>.jpg
        parts = path.split("/")
        assert parts[0] == "img" and parts[1] in ("MEN", "WOMEN") and parts[3] == item and parts[4].startswith("01_")


def test_views_show_the_same_garment_moved(synth_root):
    """Views of one item are other images (background, pose, crop), but closer in colour to each
    other than to items of the same category and texture."""
    data = read_inshop(synth_root / "inshop")
    rows = synth_inshop.plan(180, 0)
    assert [r["path"] for r in rows] == data.paths
    pixels = {p: np.asarray(Image.open(synth_root / "inshop" / p), np.float32) for p in data.paths}
    assert len({pixels[p].tobytes() for p in data.paths}) == len(data.paths)

    def colours(p):  # the garment's colours: the pixels far from the image's border colour
        img = pixels[p]
        border = np.median(np.concatenate([img[0], img[-1]]), 0)
        far = np.abs(img - border).max(-1) > 40
        return np.sort(img[far].mean(0)) if far.any() else border

    by_item = {}
    for p, it in zip(data.paths, data.items):
        by_item.setdefault(it, []).append(colours(p))
    within = np.mean([np.abs(v[0] - w).mean() for v in by_item.values() for w in v[1:]])
    between = np.mean([np.abs(a[0] - b[0]).mean() for a in by_item.values() for b in by_item.values() if a is not b])
    assert within < 0.5 * between, (within, between)


def test_the_in_shop_tree_is_a_third_of_the_others():
    assert synth_inshop.tree_images(2000) == 666 and synth_inshop.tree_images(5) == synth_inshop.MIN_IMAGES
    rows = synth_inshop.plan(300, 1)
    assert 100 <= len(rows) <= 104 and rows == synth_inshop.plan(300, 1)
    assert synth_inshop.TREE == 3
