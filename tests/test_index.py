"""Index and recommend: the index directory, backends, self-match, hash check, JSON, append."""

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from fashionrec.catalog_index import CatalogIndex, build_index
from fashionrec.cli import main
from fashionrec.config import IndexConfig, from_dict
from fashionrec.errors import UserError
from fashionrec.evaluate import evaluate_index
from fashionrec.knn import KNNIndex
from fashionrec.recommend import Recommender
from fashionrec.runs import load_classifier


def index_config(synth_root, runs, out, catalog=None, **kw):
    return from_dict(IndexConfig, {
        "catalog": {"format": "csv", "root": str(catalog or synth_root / "fashion" / "catalog.csv")},
        "extractors": [str(runs["category"]), str(runs["texture"])],
        "output": str(out), "workers": 0, "device": "cpu", **kw,
    })


def test_index_directory(built_index, synth_root):
    idx = CatalogIndex.load(built_index)
    n = sum(1 for _ in open(synth_root / "fashion" / "catalog.csv")) - 1
    assert idx.features.shape == (n, 2048) and idx.features.dtype == np.float32
    assert idx.meta["blocks"] == [[0, 1024], [1024, 2048]] and idx.meta["backend_params"]["backend"] == "balltree"
    assert [e["task"] for e in idx.meta["extractors"]] == ["category", "texture"]
    assert all(len(e["weights_sha256"]) == 64 for e in idx.meta["extractors"])
    row = idx.items[0]
    assert set(row) >= {"id", "path", "category", "texture", "pred_category", "pred_texture"}
    # no temporary directory left behind (the writers' lock file stays: the OS releases the lock)
    assert [p.name for p in built_index.parent.glob(".index.*")] == [".index.lock"]


def test_catalog_image_is_its_own_first_neighbour(built_index):
    rec = Recommender.load(built_index, device="cpu")
    item = rec.index.items[7]
    query = rec.index.root / item["path"]
    res = rec.recommend([query], k=3)[0]
    assert res["results"][0]["id"] == 7 and res["results"][0]["distance"] < 1e-3
    assert set(res["predicted"]) == {"category", "texture"}
    excluded = rec.recommend([query], k=3, exclude_self=True)[0]
    assert 7 not in [r["id"] for r in excluded["results"]] and len(excluded["results"]) == 3


@pytest.mark.parametrize("backend", ["brute", "faiss-flat"])
def test_exact_backends_agree_with_numpy(built_index, backend):
    idx = CatalogIndex.load(built_index)
    x = idx.features
    q = x[:5] + 0.01
    d_ref = np.sqrt(((q[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1))
    ref = np.argsort(d_ref, axis=1, kind="stable")[:, :4]
    for knn in (idx.knn, KNNIndex(backend=backend).fit(x)):
        d, i = knn.query(q, 4)
        np.testing.assert_array_equal(i, ref)
        np.testing.assert_allclose(d, np.take_along_axis(d_ref, ref, 1), rtol=1e-4, atol=1e-3)


def test_extractor_hash_mismatch_is_refused(built_index, extractor_runs, tmp_path):
    run = tmp_path / "texture-run"
    shutil.copytree(extractor_runs["texture"], run)
    clf, _ = load_classifier(run, device="cpu")
    w = clf.get_weights()
    w["fc.bias"] = w["fc.bias"] + 1.0
    clf.set_weights(w)
    clf.save_weights(run / "weights.safetensors")
    with pytest.raises(UserError, match="rebuild the index"):
        Recommender.load(built_index, extractors=[extractor_runs["category"], run], device="cpu")


def test_recommend_cli_json_and_errors(built_index, synth_root, tmp_path):
    idx = CatalogIndex.load(built_index)
    a, b = (str(idx.root / idx.items[i]["path"]) for i in (0, 1))
    r = CliRunner().invoke(main, ["recommend", a, b, "-k", "4", "--index", str(built_index), "--json",
                                  "--device", "cpu", "--show", str(tmp_path / "fig.png")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert len(out) == 2 and [len(x["results"]) for x in out] == [4, 4]
    assert set(out[0]["results"][0]) == {"rank", "id", "path", "distance", "labels"}
    assert out[0]["results"][0]["id"] == 0 and (tmp_path / "fig.png").stat().st_size > 10_000
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    r = CliRunner().invoke(main, ["recommend", str(bad), "--index", str(built_index), "--device", "cpu"])
    assert r.exit_code == 2 and "bad.jpg: not an image" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["recommend", a, "-k", "0", "--index", str(built_index), "--device", "cpu"])
    assert r.exit_code == 2 and "-k must be >= 1" in r.output
    with pytest.warns(UserWarning, match="larger than the catalog"):
        res = Recommender.load(built_index, device="cpu").recommend([a], k=10_000)
    assert len(res[0]["results"]) == len(idx.items)


def test_append_keeps_ids(synth_root, extractor_runs, tmp_path):
    full = synth_root / "fashion" / "catalog.csv"
    rows = list(csv.reader(open(full)))
    half = synth_root / "fashion" / "catalog_half_for_test.csv"
    with open(half, "w", newline="") as f:
        csv.writer(f).writerows(rows[: 1 + (len(rows) - 1) // 2])
    try:
        out = tmp_path / "idx"
        build_index(index_config(synth_root, extractor_runs, out, catalog=half), progress=False, log=lambda *_: None)
        before = CatalogIndex.load(out)
        build_index(index_config(synth_root, extractor_runs, out, catalog=full), append=True, progress=False,
                    log=lambda *_: None)
        after = CatalogIndex.load(out)
    finally:
        half.unlink()
    n0 = len(before.items)
    assert len(after.items) == len(rows) - 1 > n0
    assert [it["path"] for it in after.items[:n0]] == [it["path"] for it in before.items]
    np.testing.assert_array_equal(after.features[:n0], before.features)
    assert [int(it["id"]) for it in after.items] == list(range(len(after.items)))
    new = after.items[n0 + 3]
    rec = Recommender.load(out, device="cpu")
    assert rec.recommend([rec.index.root / new["path"]], k=1)[0]["results"][0]["id"] == n0 + 3


def test_evaluate_index_writes_metrics(built_index):
    result = evaluate_index(built_index, progress=False)
    assert set(result["variants"]) == {"concat raw", "concat l2", "category only", "texture only"}
    m = result["variants"]["concat raw"]["category"]
    assert 0 <= m["precision@5"] <= 1 and 0 <= m["map@5"] <= 1
    saved = json.loads((built_index / "retrieval.json").read_text())
    assert saved["n_items"] == result["n_items"] and (built_index / "precision_at_k.png").is_file()


def test_index_from_another_version_is_refused(built_index, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(built_index, copy)
    meta = json.loads((copy / "index.json").read_text())
    meta["format"] = 0
    (copy / "index.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="rebuild the index"):
        CatalogIndex.load(copy)


def test_approximate_backend_is_saved_not_retrained(synth_root, extractor_runs, tmp_path, monkeypatch):
    out = tmp_path / "hnsw"
    build_index(index_config(synth_root, extractor_runs, out, backend="faiss-hnsw"), progress=False,
                log=lambda *_: None)
    assert (out / "knn" / "index.faiss").is_file()
    monkeypatch.setattr(KNNIndex, "fit", lambda *a, **k: pytest.fail("loading must not rebuild HNSW"))
    idx = CatalogIndex.load(out)
    d, i = idx.query(idx.features[:3], 1)
    assert i[:, 0].tolist() == [0, 1, 2] and (d[:, 0] < 1e-3).all()


def test_index_is_found_again_from_another_folder_and_after_moving_the_tree(
        synth_root, extractor_runs, tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    shutil.copytree(extractor_runs["category"], proj / "runs" / "cat")
    shutil.copytree(extractor_runs["texture"], proj / "runs" / "tex")
    shutil.copytree(synth_root / "fashion", proj / "data")
    monkeypatch.chdir(proj)
    cfg = from_dict(IndexConfig, {"catalog": {"format": "csv", "root": "data/catalog.csv"},
                                  "extractors": ["runs/cat", "runs/tex"], "output": "index",
                                  "workers": 0, "device": "cpu"})
    build_index(cfg, progress=False, log=lambda *_: None)
    moved = tmp_path / "moved"
    shutil.move(str(proj), str(moved))
    monkeypatch.chdir(tmp_path)
    rec = Recommender.load(moved / "index", device="cpu")
    res = rec.recommend([moved / "data" / rec.index.items[4]["path"]], k=1)[0]
    assert res["results"][0]["id"] == 4


def test_bf16_index_is_close_to_fp32_and_recommend_follows_it(built_index, synth_root, extractor_runs, tmp_path):
    """precision: bf16 extracts in bfloat16 (torch); index.json records it, so queries are
    extracted the same way, and appended items too."""
    out = tmp_path / "bf16"
    build_index(index_config(synth_root, extractor_runs, out, precision="bf16", backend="brute"),
                progress=False, log=lambda *_: None)
    bf16, fp32 = CatalogIndex.load(out), CatalogIndex.load(built_index)
    assert bf16.meta["precision"] == "bf16" and fp32.meta["precision"] == "fp32"
    a, b = fp32.features, bf16.features
    assert not np.array_equal(a, b)  # it really ran in bfloat16
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    assert cosine.min() > 0.995 and cosine.mean() > 0.999  # bfloat16 keeps ~3 significant digits
    rec = Recommender.load(out, device="cpu")
    assert rec.extractor.precision == "bf16"
    item = rec.index.items[5]
    assert rec.recommend([rec.index.root / item["path"]], k=1)[0]["results"][0]["id"] == 5

    meta = json.loads((out / "index.json").read_text())
    meta["precision"] = "fp8"
    (out / "index.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"index.json: precision: must be one of fp32, bf16; got 'fp8'"):
        Recommender.load(out, device="cpu")


# --------------------------------------------------------------------------- each backend's own parameters (issue 27)


def _index_yaml(tmp_path, synth_root, runs, backend: str) -> tuple:
    out = tmp_path / "index"
    config = tmp_path / "cfg.yaml"
    config.write_text(f"""catalog: {{format: csv, root: {synth_root / 'fashion' / 'catalog.csv'}}}
extractors: [{runs['category']}, {runs['texture']}]
output: {out}
backend: {backend}
workers: 0
device: cpu
""")
    return config, out


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "fashionrec", *args], capture_output=True, text=True, timeout=600)


def test_index_yaml_reaches_the_backends_parameters_and_index_json_records_them(synth_root, extractor_runs,
                                                                               tmp_path):
    config, out = _index_yaml(tmp_path, synth_root, extractor_runs, "{name: faiss-ivf, nlist: 16, nprobe: 4}")
    r = _cli("index", "-c", str(config), "--no-progress")
    assert r.returncode == 0, r.stderr
    params = json.loads((out / "index.json").read_text())["backend_params"]
    assert (params["backend"], params["nlist"], params["nprobe"]) == ("faiss-ivf", 16, 4)
    index = CatalogIndex.load(out)
    assert index.knn.backend_ == "faiss-ivf" and index.knn._backend.nprobe == 4 and index.knn._backend.index.nlist == 16
    assert index.query(index.features[3:4], 1)[1][0, 0] == 3


@pytest.mark.parametrize("backend, words", [
    ("{name: brute, nlist: 16}", "backend.nlist: not a key of backend brute (it is faiss-ivf and faiss-ivfpq's); "
                                 "brute takes none"),
    ("{name: faiss-ivf, nprobes: 4}", "backend.nprobes: not a key of backend faiss-ivf (did you mean 'nprobe'?); "
                                      "faiss-ivf's keys: nlist, nprobe"),
    ("{name: faiss-ivf, nprobe: 0}", "backend.nprobe: must be >= 1; got 0"),
    ("{name: kdtree}", "backend.name: expected 'auto' | 'balltree' | 'brute' | 'faiss-flat' | 'faiss-hnsw' | "
                       "'faiss-ivf' | 'faiss-ivfpq', got 'kdtree'"),
])
def test_a_key_the_backend_does_not_have_is_one_line_naming_the_ones_it_has(tmp_path, backend, words):
    config, out = _index_yaml(tmp_path, tmp_path, {"category": "a", "texture": "b"}, backend)
    r = _cli("index", "-c", str(config))
    assert r.returncode == 2 and r.stderr.strip() == f"error: {config}:4: {words}", r.stderr
    assert not out.exists()


def test_a_bare_backend_name_keeps_its_defaults(synth_root, tmp_path):
    cfg = index_config(synth_root, {"category": "a", "texture": "b"}, tmp_path, backend="faiss-ivfpq")
    assert cfg.backend.name == "faiss-ivfpq" and cfg.backend.nprobe == 16 and cfg.backend.pq_m is None
    cfg = index_config(synth_root, {"category": "a", "texture": "b"}, tmp_path,
                       backend={"name": "faiss-ivfpq", "nlist": 1024, "pq_m": 64, "nprobe": 16})
    assert (cfg.backend.nlist, cfg.backend.pq_m) == (1024, 64)
