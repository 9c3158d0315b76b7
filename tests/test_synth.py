"""The synthetic catalog: drawing, determinism, and the two trees' files read as plain text."""

import ast
import csv
import os
import re
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fashionrec.data.synth as synth_package
from fashionrec.data.synth import (
    CATEGORIES,
    DEEPFASHION_CATEGORY,
    TEXTURE_ATTRIBUTE,
    TEXTURE_SYNONYMS,
    TEXTURES,
    draw_garment,
    synthesize,
)
from fashionrec.data.synth.catalog import WRITERS
from fashionrec.data.synth.textures import PATTERNS, Context, random_palette
from fashionrec.errors import UserError

N, SIZE = 100, 64


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """The same catalog drawn twice (2 workers, then 1), and once with another seed."""
    root = tmp_path_factory.mktemp("synth")
    summary = synthesize(root / "a", n=N, size=SIZE, seed=0, progress=False, workers=2)
    synthesize(root / "b", n=N, size=SIZE, seed=0, progress=False, workers=1)
    synthesize(root / "c", n=N, size=SIZE, seed=1, progress=False, workers=1)
    return root, summary


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def table(path: Path, header: str) -> list[tuple[str, list[str]]]:
    """A DeepFashion annotation file: check count and header lines, return (name, values) rows."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1] == header
    rows = [line for line in lines[2:] if line.strip()]
    assert int(lines[0]) == len(rows) and len(lines) == len(rows) + 2
    return rows


def split_names(rows, n_values=1):
    out = []
    for row in rows:
        parts = row.rsplit(None, n_values)
        out.append((parts[0].strip(), parts[1:]))
    return out


# -------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_whatever_the_workers(trees):
    root, summary = trees
    a, b = files(root / "a"), files(root / "b")
    assert len(a) > 2 * N and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert summary["deepfashion"] == str(root / "a/deepfashion") and summary["images_per_tree"] == N


def test_another_seed_draws_other_images(trees):
    root, _ = trees
    for name in ("000001.jpg", "000002.jpg", "000050.jpg"):
        one = (root / "a/fashion/images" / name).read_bytes()
        assert one != (root / "c/fashion/images" / name).read_bytes()
    assert (root / "a/fashion/catalog.csv").read_bytes() != (root / "c/fashion/catalog.csv").read_bytes()


def test_draw_garment_is_a_function_of_the_generator_state():
    one = draw_garment("dress", "plaid", 48, np.random.default_rng(3))
    two = draw_garment("dress", "plaid", 48, np.random.default_rng(3))
    other = draw_garment("dress", "plaid", 48, np.random.default_rng(4))
    assert one.mode == "RGB" and one.size == (48, 48)
    assert np.array_equal(np.asarray(one), np.asarray(two))
    assert not np.array_equal(np.asarray(one), np.asarray(other))


# -------------------------------------------------------------------------- drawing


def _garment_box(category, seed, size=96):
    """Bounding box of the pixels where a striped and a plain draw (same shape, same colours)
    differ: the inside of the garment. Returns (box, fraction of the image that differs)."""
    plain = np.asarray(draw_garment(category, "plain", size, np.random.default_rng(seed)), np.float32)
    striped = np.asarray(draw_garment(category, "striped", size, np.random.default_rng(seed)), np.float32)
    changed = np.abs(plain - striped).max(-1) > 40
    ys, xs = np.nonzero(changed)
    return (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), changed.mean()


def test_silhouettes_have_their_category_proportions():
    aspect, extent = {}, {}
    for category in CATEGORIES:
        boxes = [_garment_box(category, seed)[0] for seed in range(6)]
        aspect[category] = np.median([(y1 - y0) / (x1 - x0) for x0, y0, x1, y1 in boxes])
        extent[category] = np.median([max(x1 - x0, y1 - y0) / 96 for x0, y0, x1, y1 in boxes])
    assert aspect["pants"] > 1.6 and aspect["dress"] > 1.2  # long garments
    assert aspect["shorts"] < 1.0 and aspect["skirt"] < 1.0  # wide ones
    assert aspect["pants"] > 1.5 * aspect["shorts"]
    assert all(0.45 < e < 0.95 for e in extent.values()), extent  # the garment fills most of the image


@pytest.mark.parametrize("texture", [t for t in TEXTURES if t != "plain"])
def test_textures_are_visible_at_64_px(texture):
    """Drawn over the same garment, every pattern changes a good part of it at 64 px."""
    fractions = []
    for i, category in enumerate(CATEGORIES):
        rng = np.random.default_rng([7, i])
        plain = np.asarray(draw_garment(category, "plain", 64, np.random.default_rng([7, i])), np.float32)
        patterned = np.asarray(draw_garment(category, texture, 64, rng), np.float32)
        fractions.append((np.abs(plain - patterned).max(-1) > 40).mean())
    assert np.median(fractions) > 0.04, fractions


@pytest.mark.parametrize("texture", [t for t in TEXTURES if t != "plain"])
def test_patterns_are_coarse_enough_to_survive_a_downscale(texture):
    """Fabric drawn for a 64 px image keeps most of its contrast when halved again to 32 px:
    stripes, checks and dots are several pixels wide, not a fine hatch that averages away."""
    kept = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        ctx = Context(128, 64, np.ones((128, 128), bool), (64.0, 64.0), 96.0, 0.0, random_palette(rng))
        fabric = Image.fromarray(PATTERNS[texture](ctx, rng).mean(-1), "F")
        at64, at32 = (np.asarray(fabric.resize((s, s), Image.BOX)) for s in (64, 32))
        kept.append(at32.std() / at64.std())
    assert np.median(kept) > 0.7, kept


@pytest.mark.parametrize("args, word", [
    (("gown", "plain", 64), "category"), (("dress", "tartan", 64), "texture"), (("dress", "plain", 8), "size"),
])
def test_draw_garment_rejects_bad_arguments(args, word):
    with pytest.raises(ValueError, match=word):
        draw_garment(*args, np.random.default_rng(0))


@pytest.mark.parametrize("kwargs, word", [({"n": 0}, "n must"), ({"size": 8}, "size"), ({"seed": -1}, "seed")])
def test_synthesize_rejects_bad_arguments(tmp_path, kwargs, word):
    with pytest.raises(ValueError, match=word):
        synthesize(tmp_path, **{"n": 5, "size": 32, "progress": False, **kwargs})
    assert not (tmp_path / "deepfashion").exists()


def test_writers_spell_the_formats_out_without_the_readers():
    """The synthetic trees test the readers only if the writers do not borrow the readers' code:
    no module of the synth package imports from outside it but ``artifacts`` (atomic folders),
    ``data.workers`` (the processes that draw) and ``stop`` (a Ctrl-C is never lost)."""
    folder = Path(synth_package.__file__).parent
    outside = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                outside.add((node.level, node.module))
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and "fashionrec" in ast.unparse(node):
                outside.add((0, ast.unparse(node)))
    assert outside == {(3, "artifacts"), (2, "workers"), (3, "stop")}


def test_tree_ids_are_distinct_and_never_the_plan_seed():
    """Image i of tree t is drawn from [seed, t, i] and a plan from [seed, PLAN, t]: a tree id
    equal to PLAN, or shared by two trees, would repeat seeds between them."""
    from fashionrec.data.synth.trees import PLAN

    ids = [writer.TREE for writer in WRITERS]
    assert len(set(ids)) == len(ids) and PLAN not in ids
    assert len({writer.FOLDER for writer in WRITERS}) == len(WRITERS)


def test_a_new_catalog_replaces_the_old_one_whole(tmp_path):
    synthesize(tmp_path, n=30, size=32, progress=False)
    synthesize(tmp_path, n=12, size=32, progress=False)
    assert len(list((tmp_path / "fashion/images").iterdir())) == 12
    assert len(list((tmp_path / "deepfashion/img").rglob("*.jpg"))) == 12
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


# -------------------------------------------------------------------------- DeepFashion tree


def test_category_list_is_the_real_one(trees):
    root, _ = trees
    rows = split_names(table(root / "a/deepfashion/Anno/list_category_cloth.txt", "category_name  category_type"))
    names = [name for name, _ in rows]
    types = Counter(int(v[0]) for _, v in rows)
    assert len(names) == 50 and names[:3] == ["Anorak", "Blazer", "Blouse"] and names[-1] == "Sundress"
    assert names.index("Tee") == 17 and names.index("Jeans") == 25 and names.index("Dress") == 40
    assert types == {1: 20, 2: 16, 3: 14}
    assert all(re.fullmatch(r"\S+ +[123]", line) for line in
               (root / "a/deepfashion/Anno/list_category_cloth.txt").read_text().splitlines()[2:])


def test_attribute_list_has_all_types_and_names_with_spaces(trees):
    root, _ = trees
    rows = split_names(table(root / "a/deepfashion/Anno/list_attr_cloth.txt", "attribute_name  attribute_type"))
    kinds = {name: int(v[0]) for name, v in rows}
    assert len(kinds) == len(rows) >= 30 and set(kinds.values()) == {1, 2, 3, 4, 5}
    assert "polka dot" in kinds and "abstract print" in kinds  # names with a space
    for texture in TEXTURES:
        assert kinds[TEXTURE_ATTRIBUTE[texture]] == 1
        assert all(kinds[s] == 1 for s in TEXTURE_SYNONYMS[texture])


def deepfashion_rows(root):
    """image -> (category label as written, attribute values, split), checking the 3 files agree."""
    anno = root / "deepfashion/Anno"
    cats = split_names(table(anno / "list_category_img.txt", "image_name  category_label"))
    n_attr = len(table(anno / "list_attr_cloth.txt", "attribute_name  attribute_type"))
    attrs = split_names(table(anno / "list_attr_img.txt", "image_name  attribute_labels"), n_attr)
    parts = split_names(table(root / "deepfashion/Eval/list_eval_partition.txt", "image_name  evaluation_status"))
    assert [c[0] for c in cats] == [a[0] for a in attrs] == [p[0] for p in parts]
    return {name: (c[0], a, p[0]) for (name, c), (_, a), (_, p) in zip(cats, attrs, parts)}


def test_every_image_is_listed_exists_and_decodes(trees):
    root, _ = trees
    rows = deepfashion_rows(root / "a")
    assert len(rows) == N
    on_disk = {str(p.relative_to(root / "a/deepfashion")) for p in (root / "a/deepfashion/img").rglob("*")
               if p.is_file()}
    assert on_disk == set(rows)
    for name in rows:
        assert re.fullmatch(r"img/[A-Za-z][A-Za-z0-9_-]*/img_\d{8}\.jpg", name), name
        with Image.open(root / "a/deepfashion" / name) as img:
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (SIZE, SIZE)


def test_products_hold_several_numbered_views_of_one_category(trees):
    root, _ = trees
    rows = deepfashion_rows(root / "a")
    by_product = defaultdict(list)
    for name, (label, _, split) in rows.items():
        folder, file = name.split("/")[1:]
        by_product[folder].append((int(file[4:12]), int(label), split))
    for _folder, views in by_product.items():
        assert sorted(v[0] for v in views) == list(range(1, len(views) + 1))  # numbering restarts
        assert len({v[1] for v in views}) == 1 and len({v[2] for v in views}) == 1  # one category, one split
    assert max(len(v) for v in by_product.values()) >= 3 and len(by_product) < N / 2


def test_category_labels_cover_the_nine_mapped_names_some_zero_padded(trees):
    root, _ = trees
    names = [n for n, _ in split_names(table(root / "a/deepfashion/Anno/list_category_cloth.txt",
                                             "category_name  category_type"))]
    labels = [label for label, _, _ in deepfashion_rows(root / "a").values()]
    assert {names[int(x) - 1] for x in labels} == set(DEEPFASHION_CATEGORY.values())
    padded = [x for x in labels if x.startswith("0")]
    assert padded and len(padded) < len(labels)
    lines = (root / "a/deepfashion/Anno/list_category_img.txt").read_text().splitlines()[2:]
    assert any(re.search(r"jpg {2,}\d+$", line) for line in lines)  # labels padded with spaces


def test_texture_attributes_one_two_or_none(trees):
    root, _ = trees
    attrs = split_names(table(root / "a/deepfashion/Anno/list_attr_cloth.txt", "attribute_name  attribute_type"))
    texture_cols = [i for i, (_, v) in enumerate(attrs) if v[0] == "1"]
    group = {}  # attribute column -> synthetic texture
    for texture in TEXTURES:
        for name in (TEXTURE_ATTRIBUTE[texture], *TEXTURE_SYNONYMS[texture]):
            group[[a for a, _ in attrs].index(name)] = texture
    positives, values_seen = Counter(), set()
    for name, (_, values, _) in deepfashion_rows(root / "a").items():
        assert " " not in name
        values = [int(v) for v in values]
        values_seen |= set(values)
        on = [i for i in texture_cols if values[i] == 1]
        positives[len(on)] += 1
        assert len({group[i] for i in on}) <= 1  # a second positive is a synonym of the first
    assert values_seen == {-1, 0, 1}
    assert positives[0] > 0 and positives[2] > 0 and positives[1] > N / 2
    assert positives[0] < N / 4 and positives[2] < N / 3


def test_partition_is_about_70_15_15(trees):
    root, _ = trees
    splits = Counter(split for _, _, split in deepfashion_rows(root / "a").values())
    assert set(splits) == {"train", "val", "test"}
    assert 0.55 < splits["train"] / N < 0.85 and splits["val"] >= 5 and splits["test"] >= 5


# -------------------------------------------------------------------------- Fashion tree


def read_csv(path: Path, header: list[str]) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        assert next(reader) == header
        return [dict(zip(header, row)) for row in reader]


def test_fashion_tree(trees):
    root, _ = trees
    base = root / "a/fashion"
    catalog = read_csv(base / "catalog.csv", ["path", "category", "texture", "gender", "brand", "colour", "price",
                                              "in_stock"])
    category = read_csv(base / "category.csv", ["path", "label"])
    texture = read_csv(base / "texture.csv", ["path", "label"])
    assert len(catalog) == N
    assert [(r["path"], r["category"]) for r in catalog] == [(r["path"], r["label"]) for r in category]
    assert [(r["path"], r["texture"]) for r in catalog] == [(r["path"], r["label"]) for r in texture]
    cats, texs = Counter(r["category"] for r in catalog), Counter(r["texture"] for r in catalog)
    assert set(cats) == set(CATEGORIES) and set(texs) == set(TEXTURES)
    assert max(cats.values()) - min(cats.values()) <= 5 and max(texs.values()) - min(texs.values()) <= 9
    assert sorted(p.name for p in (base / "images").iterdir()) == sorted(r["path"][7:] for r in catalog)
    for r in catalog:
        assert re.fullmatch(r"images/\d{6}\.jpg", r["path"])
        with Image.open(base / r["path"]) as img:
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (SIZE, SIZE)


def test_synth_refuses_a_folder_it_did_not_draw(tmp_path):
    (tmp_path / "fashion").mkdir()
    (tmp_path / "fashion" / "my-photos.csv").write_text("path,label\n")
    with pytest.raises(UserError, match="fashion: exists and is not a fashionrec synthetic fashion tree"):
        synthesize(tmp_path, n=6, size=32, progress=False)
    assert (tmp_path / "fashion" / "my-photos.csv").read_text() == "path,label\n"
    assert not (tmp_path / "deepfashion").exists()  # refused before drawing anything


def test_synth_keeps_a_tree_holding_a_users_file(tmp_path):
    synthesize(tmp_path, n=6, size=32, progress=False)
    (tmp_path / "deepfashion" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt"):
        synthesize(tmp_path, n=6, size=32, progress=False)
    assert (tmp_path / "deepfashion" / "notes.txt").read_text() == "mine"


def foreground_job():
    """In the child: SIGINT as a terminal's foreground job has it, however pytest was started (a background job of
    a shell without job control starts with SIGINT ignored, and `synth` keeps ignoring it: issue 26)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_the_drawing_workers_quietly_and_leaves_no_tree(tmp_path):
    """Ctrl-C reaches the whole process group: the workers leave it to `synth`, which stops them, discards the
    half-drawn tree and says one word; no traceback from any process, and no process left."""
    proc = subprocess.Popen([sys.executable, "-m", "fashionrec", "synth", str(tmp_path / "out"), "--n", "5000",
                             "--size", "64"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=foreground_job)
    for line in iter(proc.stderr.readline, ""):
        if "deepfashion:" in line and "/5000" in line and not line.startswith("deepfashion:   0%"):
            break  # drawing, in the workers
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and err.rstrip().endswith("interrupted"), err
    assert not any((tmp_path / "out").iterdir())  # the half-drawn tree went with its temporary name
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nobody of the group is left
