"""Readers: hand-written fixtures with the awkward lines of the real files, and the synthetic trees."""

import numpy as np
import pytest
from PIL import Image

from fashionrec.data.catalog import read_class_folders, read_labels_csv
from fashionrec.data.deepfashion import read_category, read_texture
from fashionrec.data.formats import read_catalog
from fashionrec.data.manifest import Manifest, stratified_split
from fashionrec.errors import DataError

CATEGORY_CLOTH = """4
category_name  category_type
Anorak                  1
Blouse                  1
Button-Down             1
Dress                   3
"""
# Names with spaces, 5 attributes of which 3 are texture (type 1).
ATTR_CLOTH = """5
attribute_name  attribute_type
a-line                        3
polka dot                     1
striped                       1
cotton blend                  2
floral print                  1
"""
IMAGES = ["img/Sheer_Pleated-Front_Blouse/img_00000001.jpg", "img/Sheer_Pleated-Front_Blouse/img_00000002.jpg",
          "img/Striped_Button-Down/img_00000001.jpg", "img/Floral_Dress/img_00000001.jpg"]


def _tree(root, category_img=None, attr_img=None, partition=None):
    (root / "Anno").mkdir(parents=True)
    (root / "Eval").mkdir()
    for p in IMAGES:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 30), (200, 10, 10)).save(root / p)
    (root / "Anno/list_category_cloth.txt").write_text(CATEGORY_CLOTH)
    (root / "Anno/list_attr_cloth.txt").write_text(ATTR_CLOTH)
    (root / "Anno/list_category_img.txt").write_text(category_img or (
        "4\nimage_name  category_label\n"
        f"{IMAGES[0]}   002\n{IMAGES[1]}   2\n{IMAGES[2]}   03\n{IMAGES[3]}                004\n"))
    (root / "Anno/list_attr_img.txt").write_text(attr_img or (
        "4\nimage_name  attribute_labels\n"
        f"{IMAGES[0]}  -1 1 -1 -1 -1\n"     # polka dot
        f"{IMAGES[1]}  1 -1 -1 1 0\n"       # no texture (0 = unknown is not positive) -> left out
        f"{IMAGES[2]}  -1 -1 1 -1 -1\n"     # striped
        f"{IMAGES[3]}  -1 1 -1 -1 1\n"))    # polka dot AND floral print -> one sampled
    (root / "Eval/list_eval_partition.txt").write_text(partition or (
        "4\nimage_name  evaluation_status\n"
        f"{IMAGES[0]}  train\n{IMAGES[1]}  val\n{IMAGES[2]}  train\n{IMAGES[3]}  train\n"))
    return root


def test_category_over_categories_that_occur(tmp_path):
    m = read_category(_tree(tmp_path))
    assert m.classes == ["Blouse", "Button-Down", "Dress"]  # Anorak never occurs
    assert m.labels.tolist() == [0, 0, 1, 2]  # zero-padded 002 / 03 / 004 parsed
    assert m.splits == ["train", "val", "train", "train"]
    assert m.abspath(0).is_file()


def test_class_without_training_images_is_left_out(tmp_path):
    part = ("4\nimage_name  evaluation_status\n"
            f"{IMAGES[0]}  train\n{IMAGES[1]}  val\n{IMAGES[2]}  train\n{IMAGES[3]}  test\n")
    m = read_category(_tree(tmp_path, partition=part))
    assert m.classes == ["Blouse", "Button-Down"] and IMAGES[3] not in m.paths
    assert m.skipped == [(IMAGES[3], "class 'Dress' has no training images")]


def test_texture_samples_one_positive_and_drops_images_without(tmp_path):
    root = _tree(tmp_path)
    m = read_texture(root, seed=0)
    assert IMAGES[1] not in m.paths and len(m) == 3
    assert m.classes[m.labels[m.paths.index(IMAGES[2])]] == "striped"
    picks = {read_texture(root, seed=s).classes[read_texture(root, seed=s).labels[-1]] for s in range(12)}
    assert picks == {"polka dot", "floral print"}  # seeded sampling among the positives
    assert read_texture(root, seed=3).labels.tolist() == read_texture(root, seed=3).labels.tolist()
    assert [p for p, _ in m.skipped] == [IMAGES[1]]


@pytest.mark.parametrize("kind,text,match", [
    ("category_img", "2\nimage_name  category_label\nimg/a.jpg 1\n", r"list_category_img\.txt:1: count line says 2"),
    ("category_img", "1\nimage_name  category_label\nimg/a.jpg one\n", r"list_category_img\.txt:3: category_label"),
    ("category_img", "1\nimage_name  category_label\nimg/a.jpg 9\n", r"list_category_img\.txt:3: .*outside 1\.\.4"),
    ("category_img", "1\nimage_name  category_label\nlonely\n", r"list_category_img\.txt:3: expected a name"),
    ("category_img", "1\nimage_name  category_label\n../etc/passwd 1\n", r"list_category_img\.txt:3: .*escapes"),
    ("category_img", "1\nimage_name  category_label\n/abs/a.jpg 1\n", r"list_category_img\.txt:3: .*relative"),
    ("category_img", "x\nimage_name  category_label\n", r"list_category_img\.txt:1: expected the number of rows"),
    ("attr_img", f"1\nimage_name  attribute_labels\n{IMAGES[0]} 1 1 1\n", r"list_attr_img\.txt:3: expected"),
    ("attr_img", f"1\nimage_name  attribute_labels\n{IMAGES[0]} 1 2 1 1 1\n", r"list_attr_img\.txt:3: .*1, -1 or 0"),
    ("partition", f"1\nimage_name  evaluation_status\n{IMAGES[0]} holdout\n", r"list_eval_partition\.txt:3:"),
])
def test_malformed_lines_name_file_and_line(tmp_path, kind, text, match):
    root = _tree(tmp_path, **{kind: text})
    with pytest.raises(DataError, match=match):
        read_texture(root) if kind == "attr_img" else read_category(root)


def test_missing_image_is_an_error_or_skipped(tmp_path):
    root = _tree(tmp_path)
    (root / IMAGES[2]).unlink()
    with pytest.raises(DataError, match="not found"):
        read_category(root)
    m = read_category(root, skip_missing=True)
    assert IMAGES[2] not in m.paths and m.skipped == [(IMAGES[2], "missing")]


def _csv_tree(tmp_path, rows, header="path,label"):
    (tmp_path / "im").mkdir(exist_ok=True)
    for p, *_ in rows:
        if p.startswith("im/") and "missing" not in p:
            Image.new("RGB", (16, 16)).save(tmp_path / p, format="JPEG")
    text = header + "\n" + "".join(",".join(r) + "\n" for r in rows)
    (tmp_path / "labels.csv").write_text(text, encoding="utf-8")
    return tmp_path / "labels.csv"


def test_labels_csv_with_stratified_split(tmp_path):
    rows = [(f"im/{c}_{i}.jpg", c) for c in ("dress", "skirt") for i in range(10)]
    m = read_labels_csv(_csv_tree(tmp_path, rows), task="category", seed=1)
    assert m.classes[:2] == ["blouse", "dress"] and len(m) == 20
    for c in (1, 6):
        assert sum(1 for y, s in zip(m.labels, m.splits) if y == c and s == "val") == 2
    m2 = read_labels_csv(tmp_path / "labels.csv", task="category", seed=1)
    assert m.splits == m2.splits  # seeded


def test_labels_csv_split_column_and_errors(tmp_path):
    rows = [("im/a b é.jpg", "dress", "train"), ("im/b.jpg", "skirt", "val")]
    m = read_labels_csv(_csv_tree(tmp_path, rows, "path,label,split"), task="category")
    assert m.splits == ["train", "val"] and m.abspath(0).is_file()
    bad = _csv_tree(tmp_path, [("im/b.jpg", "hat")])
    with pytest.raises(DataError, match=r"labels\.csv:2: label 'hat' is not in the class list"):
        read_labels_csv(bad, task="category")
    bad = _csv_tree(tmp_path, [("im/b.jpg", "dress", "x")])
    with pytest.raises(DataError, match=r"labels\.csv:2: expected 2 fields, got 3"):
        read_labels_csv(bad, task="category")
    bad = _csv_tree(tmp_path, [("../b.jpg", "dress")])
    with pytest.raises(DataError, match=r"labels\.csv:2: .*escapes"):
        read_labels_csv(bad, task="category")
    bad = _csv_tree(tmp_path, [("im/missing.jpg", "dress")])
    with pytest.raises(DataError, match=r"labels\.csv:2: image 'im/missing.jpg' not found"):
        read_labels_csv(bad, task="category")


def test_class_folders(tmp_path):
    for c in ("plain", "striped"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.new("RGB", (16, 16)).save(tmp_path / c / f"{i}.png")
    m = read_class_folders(tmp_path, task="texture")
    assert m.classes == ["graphic", "plaid", "plain", "spotted", "striped"]
    assert sorted(set(m.labels.tolist())) == [2, 4] and m.splits.count("val") == 2
    (tmp_path / "hats").mkdir()
    with pytest.raises(DataError, match="hats"):
        read_class_folders(tmp_path, task="texture")


def test_manifest_csv_round_trip(tmp_path):
    rows = [(f"im/{i}.jpg", c) for i, c in enumerate(["dress", "skirt", "dress", "top"])]
    m = read_labels_csv(_csv_tree(tmp_path, rows), task="category", val_fraction=0.0)
    out = tmp_path / "sub" / "manifest.csv"
    m.to_csv(out)
    back = Manifest.from_csv(out)
    assert back.paths == m.paths and back.labels.tolist() == m.labels.tolist()
    assert back.classes == m.classes and back.splits == m.splits and back.task == "category"
    assert back.abspath(0).resolve() == m.abspath(0).resolve()
    text = out.read_text().replace("dress,train", "gown,train", 1)
    out.write_text(text)
    with pytest.raises(DataError, match=r"manifest\.csv:\d+: label 'gown'"):
        Manifest.from_csv(out)


def test_stratified_split_keeps_every_class():
    labels = np.repeat(np.arange(5), [2, 3, 10, 50, 1])
    s = stratified_split(labels, 0.2, seed=0)
    val = np.array([x == "val" for x in s])
    assert [int(val[labels == c].sum()) for c in range(5)] == [1, 1, 2, 10, 0]


def test_synthetic_deepfashion_tree(synth_root):
    cat = read_category(synth_root / "deepfashion")
    assert len(cat.classes) == 9 and set(cat.splits) == {"train", "val", "test"}
    tex = read_texture(synth_root / "deepfashion")
    assert 0 < len(tex) < len(cat)  # images without a texture attribute are left out
    assert len(tex.classes) >= 5


def test_synthetic_fashion_tree(synth_root):
    cat = read_labels_csv(synth_root / "fashion/category.csv", task="category")
    tex = read_labels_csv(synth_root / "fashion/texture.csv", task="texture")
    assert (np.bincount(cat.labels, minlength=9) > 0).all()
    assert (np.bincount(tex.labels, minlength=5) > 0).all()
    root, paths, known = read_catalog(synth_root / "fashion/catalog.csv", "csv")
    assert set(known) == {"category", "texture", "gender", "brand", "colour", "price", "in_stock"}
    assert len(paths) == len(known["category"])


# ---------------------------------------------------------------- one path, one row

def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_labels_csv_repeated_rows_are_read_once_with_one_counted_warning(tmp_path, caplog):
    rows = [(f"im/{c}_{i}.jpg", c) for c in ("dress", "skirt") for i in range(5)]
    rows += [("im/dress_0.jpg", "dress"), ("im/./skirt_1.jpg", "skirt"), ("im/dress_0.jpg", "dress")]
    caplog.set_level("WARNING")
    m = read_labels_csv(_csv_tree(tmp_path, rows), task="category", val_fraction=0.5)
    assert len(m) == 10 and sorted(m.paths) == sorted(set(m.paths))  # never in train and val at once
    assert _warnings(caplog) == [f"{tmp_path / 'labels.csv'}: dropped 3 repeated row(s) of paths listed before "
                                 "with the same label (first: line 12 repeats line 2, 'im/dress_0.jpg')"]


def test_labels_csv_repeated_path_with_another_label_or_split_is_an_error_naming_both_lines(tmp_path):
    rows = [("im/a.jpg", "dress"), ("im/b.jpg", "top"), ("im/a.jpg", "skirt")]
    with pytest.raises(DataError, match=r"labels\.csv:4: 'im/a\.jpg' is listed again with label 'skirt', "
                                        r"but line 2 gives it label 'dress'"):
        read_labels_csv(_csv_tree(tmp_path, rows), task="category")
    rows = [("im/a.jpg", "dress", "train"), ("im/a.jpg", "dress", "val")]
    with pytest.raises(DataError, match=r"labels\.csv:3: .* with split 'val', but line 2 gives it split 'train'"):
        read_labels_csv(_csv_tree(tmp_path, rows, "path,label,split"), task="category")


def test_catalog_csv_never_holds_one_file_twice(tmp_path, caplog):
    (tmp_path / "im").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (16, 16)).save(tmp_path / "im" / f"{name}.jpg")
    cat = tmp_path / "catalog.csv"
    cat.write_text("path,category,texture\nim/a.jpg,dress,plain\nim/b.jpg,top,striped\nim/a.jpg,dress,plain\n")
    caplog.set_level("WARNING")
    root, paths, known = read_catalog(cat, "csv")
    assert paths == ["im/a.jpg", "im/b.jpg"]
    assert known == {"category": ["dress", "top"], "texture": ["plain", "striped"]}
    assert len(_warnings(caplog)) == 1 and "dropped 1 repeated row(s)" in _warnings(caplog)[0]
    cat.write_text("path,category,texture\nim/a.jpg,dress,plain\nim/b.jpg,top,striped\nim/a.jpg,dress,spotted\n")
    with pytest.raises(DataError, match=r"catalog\.csv:4: 'im/a\.jpg' is listed again with texture 'spotted', "
                                        r"but line 2 gives it texture 'plain'"):
        read_catalog(cat, "csv")


def test_manifest_csv_repeated_rows(tmp_path, caplog):
    rows = [(f"im/{i}.jpg", c) for i, c in enumerate(["dress", "skirt", "top"])]
    m = read_labels_csv(_csv_tree(tmp_path, rows), task="category", val_fraction=0.0)
    out = tmp_path / "manifest.csv"
    m.to_csv(out)
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines + [lines[-1]]) + "\n")  # the last row again
    caplog.set_level("WARNING")
    assert Manifest.from_csv(out).paths == m.paths
    assert len(_warnings(caplog)) == 1 and "manifest.csv: dropped 1 repeated row(s)" in _warnings(caplog)[0]
    out.write_text("\n".join(lines + [lines[-1].replace(",train", ",val")]) + "\n")
    with pytest.raises(DataError, match=rf"manifest\.csv:{len(lines) + 1}: 'im/2\.jpg' .* split 'val', "
                                        rf"but line {len(lines)} gives it split 'train'"):
        Manifest.from_csv(out)
    with pytest.raises(DataError, match="is listed again"):  # a catalog given as a manifest: the same check
        read_catalog(out, "manifest")


@pytest.mark.parametrize("kind,extra,match", [
    ("category_img", f"{IMAGES[0]}  2\n", None),
    ("category_img", f"{IMAGES[0]}  4\n", r"list_category_img\.txt:7: .* category 'Dress', but line 3 gives it "
                                          r"category 'Blouse'"),
    ("partition", f"{IMAGES[2]}  train\n", None),
    ("partition", f"{IMAGES[2]}  test\n", r"list_eval_partition\.txt:7: .* evaluation_status 'test', but line 5"),
    ("attr_img", f"{IMAGES[2]}  -1 -1 1 -1 -1\n", None),
    ("attr_img", f"{IMAGES[2]}  -1 1 -1 -1 -1\n", r"list_attr_img\.txt:7: .* texture attributes 'polka dot', "
                                                  r"but line 5 gives it texture attributes 'striped'"),
], ids=["category-same", "category-other", "partition-same", "partition-other", "attr-same", "attr-other"])
def test_deepfashion_lists_repeated_rows(tmp_path, caplog, kind, extra, match):
    root = _tree(tmp_path)
    name = {"category_img": "Anno/list_category_img.txt", "attr_img": "Anno/list_attr_img.txt",
            "partition": "Eval/list_eval_partition.txt"}[kind]
    lines = (root / name).read_text().splitlines()
    (root / name).write_text("\n".join(["5"] + lines[1:]) + "\n" + extra)  # one row more, counted
    read = read_texture if kind == "attr_img" else read_category
    if match:
        with pytest.raises(DataError, match=match):
            read(root)
        return
    caplog.set_level("WARNING")
    m = read(root)
    assert sorted(m.paths) == sorted(set(m.paths)) and len(m) == len(read(_tree(tmp_path / "clean")))
    assert any(f"{name.split('/')[1]}: dropped 1 repeated row(s)" in w for w in _warnings(caplog))


# ---------------------------------------------------------------- hidden files and folders

def _hidden_junk(folder):
    """What macOS, file browsers and version control leave in a photo folder."""
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (folder / ".thumbnails").mkdir()
    Image.new("RGB", (16, 16)).save(folder / ".thumbnails" / "0.png")


def test_class_folders_and_folder_catalogs_skip_hidden_entries(tmp_path):
    for c in ("plain", "striped"):
        (tmp_path / c / "sub").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16)).save(tmp_path / c / f"{i}.png")
        Image.new("RGB", (16, 16)).save(tmp_path / c / "sub" / "3.png")
        _hidden_junk(tmp_path / c)
        _hidden_junk(tmp_path / c / "sub")
    _hidden_junk(tmp_path)
    (tmp_path / ".git").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / ".git" / "x.png")
    want = sorted(f"{c}/{p}" for c in ("plain", "striped") for p in ("0.png", "1.png", "2.png", "sub/3.png"))
    m = read_class_folders(tmp_path, task="texture")
    assert sorted(m.paths) == want
    root, paths, known = read_catalog(tmp_path, "folder")
    assert sorted(paths) == want and sorted(set(known["label"])) == ["plain", "striped"]


# ---------------------------------------------------------------- messages

def test_unknown_labels_are_all_named_with_the_key_that_sets_the_class_list(tmp_path):
    rows = [("im/a.jpg", "dress"), ("im/b.jpg", "hat"), ("im/c.jpg", "hat")]
    with pytest.raises(DataError, match=r"labels\.csv:3: label 'hat' is not in the class list \(blouse, .*\); "
                                        r"data\.classes sets the class list$"):
        read_labels_csv(_csv_tree(tmp_path, rows), task="category")
    rows = [(f"im/{i}.jpg", f"hat{i}") for i in range(8)]
    with pytest.raises(DataError) as e:
        read_labels_csv(_csv_tree(tmp_path, rows), task="category")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'labels.csv'}:2: label 'hat0' is not in the class list (blouse, ")
    assert "also unknown: 'hat1' (line 3), 'hat2' (line 4), 'hat3' (line 5), 'hat4' (line 6) (+3 more)" in msg
    assert msg.endswith("data.classes sets the class list") and "\n" not in msg
    (tmp_path / "folders" / "hats").mkdir(parents=True)
    with pytest.raises(DataError, match=r"folder\(s\) hats are not in the class list .*data\.classes"):
        read_class_folders(tmp_path / "folders", task="texture")
