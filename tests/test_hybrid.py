"""Hybrid recommendations: typed catalog attributes, filters, --update/--remove without
re-extraction, attribute re-ranking with --explain, and filtered / hybrid evaluation."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from fashionrec.attributes import AttributeTable, guess_type, parse_where
from fashionrec.catalog_index import CatalogIndex, build_index
from fashionrec.cli import main
from fashionrec.config import IndexConfig, from_dict
from fashionrec.errors import UserError
from fashionrec.recommend import Recommender

SHOP_TYPES = {"category": "text", "texture": "text", "gender": "text", "brand": "text", "colour": "text",
              "price": "number", "in_stock": "boolean"}


def _config(runs, catalog, out, **kw) -> IndexConfig:
    return from_dict(IndexConfig, {
        "catalog": {"format": "csv", "root": str(catalog)},
        "extractors": [str(runs["category"]), str(runs["texture"])],
        "output": str(out), "backend": "brute", "workers": 0, "device": "cpu", **kw})


def _write_config(tmp_path, runs, catalog, out, extra: str = "") -> str:
    path = tmp_path / "index.yaml"
    path.write_text(f"catalog: {{format: csv, root: {catalog}}}\n"
                    f"extractors: [{runs['category']}, {runs['texture']}]\n"
                    f"output: {out}\nbackend: brute\nworkers: 0\ndevice: cpu\n{extra}")
    return str(path)


def _one_line_error(result, *fragments) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def index_copy(built_index, tmp_path):
    """A private copy of the session's index (balltree over the synthetic shop catalog)."""
    out = tmp_path / "index"
    shutil.copytree(built_index, out)
    return out


@pytest.fixture(scope="module")
def small_catalog(synth_root, tmp_path_factory):
    """The first 12 rows of the synthetic shop catalog, beside (a link to) its images."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "images").symlink_to(synth_root / "fashion" / "images", target_is_directory=True)
    lines = (synth_root / "fashion" / "catalog.csv").read_text().splitlines()
    (folder / "catalog.csv").write_text("\n".join(lines[:13]) + "\n")
    return folder / "catalog.csv"


# --------------------------------------------------------------------------- typing


def test_types_are_guessed_from_the_values():
    assert guess_type(["12", "3.50", "", "1e3"]) == "number"
    assert guess_type(["true", "False", "YES", "no", ""]) == "boolean"
    assert guess_type(["1", "0", "1"]) == "boolean"  # documented: declare number where it counts
    assert guess_type(["12", "twelve"]) == "text" and guess_type(["", ""]) == "text"
    assert guess_type(["nan", "inf"]) == "text"  # not catalog numbers
    assert guess_type([f"{i}.5" for i in range(19)] + ["cheap"]) == "number"  # a typo is a bad value, not text


def test_built_index_records_the_types_and_the_schema(built_index):
    meta = json.loads((built_index / "index.json").read_text())
    assert meta["attributes"] == SHOP_TYPES
    assert meta["rerank"] == {"weights": {}, "band": 0.2}
    index = CatalogIndex.load(built_index)
    schema = index.attributes().schema()
    prices = [float(it["price"]) for it in index.items]
    assert schema["price"] == {"type": "number", "min": min(prices), "max": max(prices), "missing": 0}
    assert schema["in_stock"] == {"type": "boolean", "missing": 0}
    brands = sorted({it["brand"] for it in index.items})
    assert schema["brand"]["values"] == brands and schema["brand"]["n_values"] == len(brands)


def test_declared_types_and_a_bad_value_name_file_line_and_column(small_catalog, extractor_runs, tmp_path):
    # a sidecar declares in_stock as text; --types declares price as text: both win over the guess
    sidecar = small_catalog.with_name("catalog.types.json")
    sidecar.write_text('{"in_stock": "text"}')
    try:
        out = tmp_path / "idx"
        build_index(_config(extractor_runs, small_catalog, out), progress=False, log=lambda *_: None,
                    types={"price": "text"})
        meta = json.loads((out / "index.json").read_text())
        assert meta["attributes"]["in_stock"] == "text" and meta["attributes"]["price"] == "text"
        assert meta["attributes"]["gender"] == "text"
    finally:
        sidecar.unlink()

    # a value that does not parse as its declared type: one line with file, line and column, before extraction
    bad = tmp_path / "bad" / "catalog.csv"
    bad.parent.mkdir()
    (bad.parent / "images").symlink_to(small_catalog.parent / "images", target_is_directory=True)
    rows = small_catalog.read_text().splitlines()
    rows[4] = rows[4].rsplit(",", 2)[0] + ",cheap,true"  # line 5: price
    bad.write_text("\n".join(rows) + "\n")
    config = _write_config(tmp_path, extractor_runs, bad, tmp_path / "idx2")
    r = CliRunner().invoke(main, ["index", "-c", config, "--types", "price=number", "--no-progress"])
    _one_line_error(r, "catalog.csv:5: column 'price': 'cheap' is not a number", "--types")
    assert not (tmp_path / "idx2").exists()
    r = CliRunner().invoke(main, ["index", "-c", config, "--types", "price=float", "--no-progress"])
    _one_line_error(r, "--types price=float", "number, boolean, text")
    r = CliRunner().invoke(main, ["index", "-c", config, "--types", "size=number", "--no-progress"])
    _one_line_error(r, "--types: size=number", "has no column 'size'")


def test_append_checks_new_rows_against_the_index_types(small_catalog, extractor_runs, tmp_path):
    out = tmp_path / "idx"
    build_index(_config(extractor_runs, small_catalog, out), progress=False, log=lambda *_: None)
    grown = small_catalog.parent / "grown.csv"
    rows = small_catalog.read_text().splitlines()
    new = rows[1].replace("images/000001.jpg", "images/000013.jpg").rsplit(",", 1)[0] + ",maybe"
    grown.write_text("\n".join(rows + [new]) + "\n")
    try:
        with pytest.raises(UserError, match=r"grown.csv:14: column 'in_stock': 'maybe' is not true/false.*the index"):
            build_index(_config(extractor_runs, grown, out), append=True, progress=False, log=lambda *_: None)
    finally:
        grown.unlink()


# --------------------------------------------------------------------------- filters


def test_filter_expressions_parse_against_the_types():
    table = AttributeTable([{"price": "10", "brand": "Aurel", "in_stock": "true"},
                            {"price": "60.5", "brand": "brisk", "in_stock": "no"},
                            {"price": "", "brand": "", "in_stock": ""}], {"price": "number", "brand": "text",
                                                                          "in_stock": "boolean"})
    mask = lambda *w: table.mask(parse_where(list(w), table.types)).tolist()  # noqa: E731
    assert mask("price<=50") == [True, False, False]
    assert mask("price!=10") == [False, True, False]  # missing never matches
    assert mask("brand=BRISK|aurel") == [True, True, False]
    assert mask("brand!=Aurel") == [False, True, False]
    assert mask("in_stock") == [True, False, False] and mask("!in_stock") == [False, True, False]
    assert mask("in_stock=yes", "price>5") == [True, False, False]
    for bad, fragment in [("size=M", "no attribute 'size'"), ("price<=abc", "'abc' is not a number"),
                          ("brand<5", "'<' compares numbers; 'brand' is a text column"),
                          ("price", "'price' is a number column"), ("in_stock=maybe", "'maybe' is not true/false"),
                          ("brand=", "no value after '='"), ("", "empty")]:
        with pytest.raises(UserError, match="filter") as e:
            parse_where([bad], table.types)
        assert fragment in str(e.value) and "\n" not in str(e.value)


def _exactly_three(index: CatalogIndex) -> tuple[list[str], np.ndarray]:
    """Filters that keep exactly 3 items (a price window), and those items."""
    prices = np.array([float(it["price"]) for it in index.items])
    order = np.sort(np.unique(prices))
    lo, hi = order[40], order[42]
    keep = np.flatnonzero((prices >= lo) & (prices <= hi))
    assert len(keep) == 3
    return [f"price>={lo}", f"price<={hi}"], keep


def test_filter_keeping_three_items_returns_exactly_those_ranked_by_distance(built_index):
    rec = Recommender.load(built_index, device="cpu")
    where, keep = _exactly_three(rec.index)
    query = int(np.setdiff1d(np.arange(len(rec.index.items)), keep)[5])
    res = rec.similar(query, k=5, where=where)
    assert res["filter"] == {"where": where, "matching": 3} and "reason" not in res
    vectors = rec.index.search_vectors(np.asarray(rec.index.features))
    dist = np.linalg.norm(vectors[keep] - vectors[query], axis=1)
    assert [r["id"] for r in res["results"]] == keep[np.argsort(dist, kind="stable")].tolist()
    np.testing.assert_allclose([r["distance"] for r in res["results"]], np.sort(dist), rtol=1e-4)
    # with more matching items than k, a filter never returns fewer than k
    women = rec.similar(query, k=7, where=["gender=women"])
    assert len(women["results"]) == 7 and women["filter"]["matching"] > 7
    assert all(rec.index.items[r["id"]]["gender"] == "women" for r in women["results"])
    # nothing matches: an empty answer with a reason, not an error
    none = rec.similar(query, k=5, where=["price<=1", "gender=men"])
    assert none["results"] == [] and none["reason"] == "no item matches price<=1 and gender=men"
    assert rec.attribute_schema()["price"]["type"] == "number"


def test_recommend_cli_where_and_bad_expressions(built_index):
    index = CatalogIndex.load(built_index)
    image = str(index.root / index.items[3]["path"])
    args = ["recommend", image, "-k", "6", "--index", str(built_index), "--device", "cpu"]
    r = CliRunner().invoke(main, [*args, "--where", "gender=women", "--where", "price<=50", "--where", "in_stock",
                                  "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)[0]
    matching = [it for it in index.items if it["gender"] == "women" and float(it["price"]) <= 50
                and it["in_stock"] == "true"]
    assert out["filter"] == {"where": ["gender=women", "price<=50", "in_stock"], "matching": len(matching)}
    assert len(out["results"]) == 6 and {r["path"] for r in out["results"]} <= {it["path"] for it in matching}
    r = CliRunner().invoke(main, [*args, "--where", "price<=1"])
    assert r.exit_code == 0 and "no item matches price<=1" in r.output
    for bad, fragment in [("size=M", "no attribute 'size'"), ("brand>3", "'brand' is a text column"),
                          ("price<=abc", "filter 'price<=abc': 'abc' is not a number")]:
        _one_line_error(CliRunner().invoke(main, [*args, "--where", bad]), fragment)


# --------------------------------------------------------------------------- --update / --remove


def test_update_changes_stock_without_touching_the_features(index_copy, extractor_runs, synth_root, tmp_path):
    before = CatalogIndex.load(index_copy)
    features_sha = _sha256(index_copy / "features.npy")
    sold = [it["path"] for it in before.items if it["in_stock"] == "true"][:6]
    update = tmp_path / "stock.csv"
    update.write_text("path,in_stock,price\n" + "".join(f"{p},false,9.99\n" for p in sold))
    config = _write_config(tmp_path, extractor_runs, synth_root / "fashion" / "catalog.csv", index_copy)
    r = CliRunner().invoke(main, ["index", "-c", config, "--update", str(update)])
    assert r.exit_code == 0, r.output
    assert "updated 12 value(s) of 6 item(s)" in r.output and "extracting" not in r.output
    assert _sha256(index_copy / "features.npy") == features_sha
    after = CatalogIndex.load(index_copy)
    assert [it["path"] for it in after.items] == [it["path"] for it in before.items]
    changed = {it["path"]: it for it in after.items if it["path"] in sold}
    assert all(it["in_stock"] == "false" and it["price"] == "9.99" for it in changed.values())
    rec = Recommender.load(index_copy, device="cpu")
    in_stock = rec.similar(0, k=len(after.items), where=["in_stock"])
    assert not {r["path"] for r in in_stock["results"]} & set(sold)
    assert in_stock["filter"]["matching"] == sum(it["in_stock"] == "true" for it in before.items) - len(sold)

    # an unknown path or a bad value is one line, and the index stays as it was
    items_sha = _sha256(index_copy / "items.csv")
    update.write_text("path,in_stock\nimages/999999.jpg,true\n")
    _one_line_error(CliRunner().invoke(main, ["index", "-c", config, "--update", str(update)]),
                    "stock.csv:2: 'images/999999.jpg' is not in the index", "nothing was changed")
    update.write_text(f"path,in_stock\n{sold[0]},maybe\n")
    _one_line_error(CliRunner().invoke(main, ["index", "-c", config, "--update", str(update)]),
                    "stock.csv:2: column 'in_stock': 'maybe' is not true/false")
    update.write_text(f"path,size\n{sold[0]},M\n")
    _one_line_error(CliRunner().invoke(main, ["index", "-c", config, "--update", str(update)]),
                    "stock.csv:1: column 'size' is not an attribute")
    assert _sha256(index_copy / "items.csv") == items_sha


def test_remove_renumbers_and_removed_items_never_come_back(index_copy, extractor_runs, synth_root, tmp_path):
    before = CatalogIndex.load(index_copy)
    gone = [it["path"] for it in before.items[10:15]]
    listed = tmp_path / "gone.csv"
    listed.write_text("path\n" + "".join(f"{p}\n" for p in gone[:4]))
    config = _write_config(tmp_path, extractor_runs, synth_root / "fashion" / "catalog.csv", index_copy)
    r = CliRunner().invoke(main, ["index", "-c", config, "--remove", str(listed), "--remove", gone[4]])
    assert r.exit_code == 0, r.output
    assert "removed 5 item(s)" in r.output and "renumbered" in r.output and "rebuilt" in r.output
    after = CatalogIndex.load(index_copy)
    kept = [i for i, it in enumerate(before.items) if it["path"] not in gone]
    assert [int(it["id"]) for it in after.items] == list(range(len(kept)))
    assert [it["path"] for it in after.items] == [before.items[i]["path"] for i in kept]
    np.testing.assert_array_equal(after.features, before.features[kept])
    rec = Recommender.load(index_copy, device="cpu")
    for path in gone:
        res = rec.recommend([before.root / path], k=len(after.items))[0]["results"]
        assert len(res) == len(after.items) and not {r["path"] for r in res} & set(gone)
    _one_line_error(CliRunner().invoke(main, ["index", "-c", config, "--remove", gone[0]]),
                    f"'{gone[0]}' is not in the index", "nothing was changed")


# --------------------------------------------------------------------------- re-ranking


def test_brand_weight_moves_same_brand_items_up_and_explain_sums(built_index):
    rec = Recommender.load(built_index, device="cpu")
    brands = [it["brand"] for it in rec.index.items]
    gains = []
    for query in range(0, 60, 6):
        plain = rec.similar(query, k=5)
        hybrid = rec.similar(query, k=5, rerank={"brand": 0.5}, explain=True)
        gains.append(sum(brands[r["id"]] == brands[query] for r in hybrid["results"])
                     - sum(brands[r["id"]] == brands[query] for r in plain["results"]))
        assert hybrid["rerank"]["query"] == {"brand": brands[query]} and hybrid["rerank"]["pool"] == 50
        scores = [r["score"] for r in hybrid["results"]]
        assert scores == sorted(scores)
        for r in hybrid["results"]:
            e = r["explain"]
            assert e["total"] == r["score"] and e["image_distance"] == r["distance"]
            assert abs(e["image"] + sum(e["terms"].values()) - e["total"]) < 1e-5
            assert e["terms"]["brand"] == (0.0 if brands[r["id"]] == brands[query] else 0.5)
            assert r["attributes"]["brand"] == brands[r["id"]]
    assert min(gains) >= 0 and sum(gains) > 0, gains
    # a heavy weight puts every same-brand item of the pool first
    heavy = rec.similar(7, k=5, rerank={"brand": 5.0})
    assert all(brands[r["id"]] == brands[7] for r in heavy["results"])
    # a new photo: the predicted category is the query's value; --prefer sets one outright
    image = rec.index.root / rec.index.items[7]["path"]
    from PIL import Image

    with Image.open(image) as img:
        photo = img.convert("RGB")
    res = rec.recommend([photo], k=3, rerank={"category": 1.0, "brand": 1.0}, prefer={"brand": "Aurel"})[0]
    assert res["rerank"]["query"] == {"category": res["predicted"]["category"]["label"], "brand": "Aurel"}
    with pytest.raises(UserError, match="rerank: no attribute 'size'"):
        rec.similar(7, k=3, rerank={"size": 1.0})
    with pytest.raises(UserError, match="prefer price=cheap"):
        rec.similar(7, k=3, rerank={"price": 1.0}, prefer={"price": "cheap"})


def test_recommend_cli_explain_prints_the_parts(built_index):
    index = CatalogIndex.load(built_index)
    image = str(index.root / index.items[2]["path"])
    r = CliRunner().invoke(main, ["recommend", image, "-k", "3", "--index", str(built_index), "--device", "cpu",
                                  "--rerank", "brand=0.5,price=1", "--explain", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)[0]
    assert out["rerank"]["weights"] == {"brand": 0.5, "price": 1.0}
    assert out["rerank"]["query"]["brand"] == index.items[2]["brand"]  # the catalog item's own attributes
    assert out["results"][0]["id"] == 2  # itself: distance 0, same brand, same price
    assert set(out["results"][0]["explain"]["terms"]) == {"brand", "price"}
    r = CliRunner().invoke(main, ["recommend", image, "-k", "3", "--index", str(built_index), "--device", "cpu",
                                  "--rerank", "brand=0.5", "--explain"])
    assert r.exit_code == 0 and "image 0.000 + brand 0.000 = 0.000" in r.output


# --------------------------------------------------------------------------- evaluation


def test_evaluate_with_a_filter_and_the_hybrid_score(index_copy):
    plain = CliRunner().invoke(main, ["evaluate", "--index", str(index_copy), "--no-progress"])
    assert plain.exit_code == 0, plain.output
    unfiltered = json.loads((index_copy / "retrieval.json").read_text())
    r = CliRunner().invoke(main, ["evaluate", "--index", str(index_copy), "--where", "gender=women",
                                  "--rerank", "brand=0.5", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "filtered by gender=women" in r.output and "hybrid: concat raw re-ranked by brand 0.5" in r.output
    result = json.loads((index_copy / "retrieval.json").read_text())
    women = sum(it["gender"] == "women" for it in CatalogIndex.load(index_copy).items)
    assert result["filtered"]["filter"] == {"where": ["gender=women"], "matching": women}
    assert result["filtered"]["n_items"] == women and "hybrid" in result["filtered"]["variants"]
    # the image-only numbers do not change; the hybrid ones sit beside them
    assert {k: v for k, v in result["variants"].items() if k != "hybrid"} == unfiltered["variants"]
    assert set(result["variants"]["hybrid"]) == set(unfiltered["relevance"])
    assert result["hybrid"]["image_only"] == "concat raw" and result["hybrid"]["weights"] == {"brand": 0.5}
    _one_line_error(CliRunner().invoke(main, ["evaluate", "--index", str(index_copy), "--where", "price<=abc"]),
                    "'abc' is not a number")


def test_update_keeps_a_saved_search_structure_and_remove_rebuilds_it(small_catalog, extractor_runs, tmp_path):
    from fashionrec.catalog_index import remove_items, update_index

    out = tmp_path / "idx"
    cfg = _config(extractor_runs, small_catalog, out, backend="faiss-hnsw", rerank={"brand": 0.5})
    build_index(cfg, progress=False, log=lambda *_: None)
    saved = {p.relative_to(out): _sha256(p) for p in [out / "features.npy", *(out / "knn").rglob("*")] if p.is_file()}
    assert len(saved) > 1 and json.loads((out / "index.json").read_text())["rerank"]["weights"] == {"brand": 0.5}
    update = tmp_path / "stock.csv"
    update.write_text("path,in_stock\nimages/000001.jpg,false\nimages/000002.jpg,\n")
    update_index(cfg, update, log=lambda *_: None)
    assert {p.relative_to(out): _sha256(p) for p in [out / "features.npy", *(out / "knn").rglob("*")]
            if p.is_file()} == saved
    index = CatalogIndex.load(out)
    assert index.items[0]["in_stock"] == "false" and index.items[1]["in_stock"] == ""  # empty: missing
    assert index.attributes().schema()["in_stock"]["missing"] == 1
    logs = []
    remove_items(cfg, ["images/000003.jpg"], progress=False, log=logs.append)
    assert "search structure (faiss-hnsw) rebuilt" in logs[0]
    rec = Recommender.load(out, device="cpu")
    assert len(rec.index.items) == 11 and "images/000003.jpg" not in {it["path"] for it in rec.index.items}
    res = rec.similar(4, k=10, where=["in_stock"])
    # in stock, not the query, not removed: every such item, padded slots dropped
    expected = {it["path"] for i, it in enumerate(rec.index.items) if it["in_stock"] == "true" and i != 4}
    assert {r["path"] for r in res["results"]} == expected and res["rerank"]["weights"] == {"brand": 0.5}
