"""k-NN backends against a numpy reference; ties, exclude, clamping, save/load without pickle."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from fashionrec.errors import UserError
from fashionrec.knn import BACKENDS, EXACT_BACKENDS, KNNIndex
from fashionrec.knn.base import Backend

APPROX_BACKENDS = ("faiss-hnsw", "faiss-ivf", "faiss-ivfpq")
ALL_BACKENDS = EXACT_BACKENDS + APPROX_BACKENDS


def reference(X, Q, k):
    """Full float64 distance matrix, stable argsort: ties go to the lower index."""
    d2 = ((Q[:, None, :].astype(np.float64) - X[None, :, :].astype(np.float64)) ** 2).sum(-1)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.take_along_axis(d2, idx, 1)), idx


@pytest.fixture(scope="module")
def gaussian():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2000, 64)).astype(np.float32), rng.standard_normal((40, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def clustered():
    """Post-ReLU-like features: 20 clusters, non-negative, large common offset (big norms)."""
    rng = np.random.default_rng(1)
    centers = rng.uniform(0, 4, (20, 64))
    labels = rng.integers(0, 20, 2100)
    X = np.maximum(centers[labels] + 0.3 * rng.standard_normal((2100, 64)), 0) + 20.0
    return X[:2000].astype(np.float32), X[2000:].astype(np.float32)


@pytest.fixture(scope="module")
def duplicated():
    """300 distinct vectors, each at 3 scattered positions: ties everywhere."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((300, 16)).astype(np.float32)
    X = base[rng.permutation(np.repeat(np.arange(300), 3))]
    return X, np.concatenate([base[:10], rng.standard_normal((10, 16)).astype(np.float32)])


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("batch", [True, False])
def test_exact_backends_match_reference(backend, batch, gaussian):
    X, Q = gaussian
    index = KNNIndex(backend).fit(X)
    if batch:  # >= 20 queries: faiss-flat takes its BLAS path
        dist, idx = index.query(Q, 10)
    else:
        pairs = [index.query(q[None], 10) for q in Q]
        dist, idx = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    ref_dist, ref_idx = reference(X, Q, 10)
    assert dist.dtype == np.float32 and idx.dtype == np.int64 and dist.shape == (len(Q), 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("k", [1, 4, 8])
def test_ties_go_to_the_lower_index(backend, k, duplicated):
    X, Q = duplicated
    dist, idx = KNNIndex(backend).fit(X).query(Q, k)  # k=4, 8 cut through a group of 3 equal ones
    ref_dist, ref_idx = reference(X, Q, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_many_equal_vectors_resolve_to_the_lowest_ids(backend, clustered):
    # 40 copies at scattered positions: more ties than any first candidate list holds
    X = clustered[0].copy()
    copies = np.sort(np.random.default_rng(4).choice(len(X), 40, replace=False))
    X[copies] = X[0]
    _, idx = KNNIndex(backend).fit(X).query(np.repeat(X[:1], 25, axis=0), 5)
    np.testing.assert_array_equal(idx, np.tile(np.union1d(copies, [0])[:5], (25, 1)))


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_near_duplicates_far_from_the_origin_are_ranked_exactly(backend, clustered):
    # |x|^2 ~ 3e4, so |x|^2 - 2x.q + |q|^2 in float32 is off by ~1e-3, more than these
    # near-duplicates differ (d^2 ~ 1e-6..1e-4): the candidates must be re-ranked directly, and
    # 30 of them per query are more than the first candidate list holds.
    rng = np.random.default_rng(5)
    X, _ = clustered
    bases = X[:32]
    step = rng.standard_normal((32, 30, 64))
    step *= rng.uniform(1e-3, 1e-2, (32, 30, 1)) / np.linalg.norm(step, axis=2, keepdims=True)
    near = (bases[:, None, :] + step).reshape(-1, 64).astype(np.float32)
    data = np.concatenate([X, near])[rng.permutation(len(X) + len(near))]
    Q = (bases + 1e-4 * rng.standard_normal(bases.shape)).astype(np.float32)
    dist, idx = KNNIndex(backend).fit(data).query(Q, 5)  # 32 queries: faiss's BLAS path
    ref_dist, ref_idx = reference(data, Q, 5)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4)


@pytest.mark.parametrize("backend", APPROX_BACKENDS)
def test_approximate_recall_on_clustered_data(backend, clustered):
    X, Q = clustered
    _, idx = KNNIndex(backend).fit(X).query(Q, 5)
    _, ref_idx = reference(X, Q, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, ref_idx)])
    assert recall >= 0.9


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_rows_sorted_by_distance_then_id(backend, clustered):
    X, Q = clustered
    dist, idx = KNNIndex(backend).fit(X).query(Q, 10)
    order = np.lexsort((idx, dist), axis=-1)
    np.testing.assert_array_equal(order, np.broadcast_to(np.arange(10), order.shape))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_self_query_finds_self_at_zero(backend, clustered):
    # |x| ~ 170 here: the float32 |x|^2 - 2x.q + |q|^2 expansion alone would be off by ~0.1
    X, _ = clustered
    dist, idx = KNNIndex(backend).fit(X).query(X[:50], 3)
    np.testing.assert_array_equal(idx[:, 0], np.arange(50))
    assert dist[:, 0].max() < 1e-3


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_exclude_drops_the_given_id(backend, clustered):
    X, _ = clustered
    index = KNNIndex(backend).fit(X)
    ids = np.arange(30)
    dist, idx = index.query(X[ids], 5, exclude=ids)
    assert idx.shape == (30, 5) and not (idx == ids[:, None]).any()
    full_dist, full_idx = index.query(X[ids], 6)
    np.testing.assert_array_equal(idx, full_idx[:, 1:])  # self was first; the rest shift up
    np.testing.assert_allclose(dist, full_dist[:, 1:])
    # an id not among the results (or not in the index) removes nothing but the surplus
    _, kept = index.query(X[ids], 5, exclude=np.full(30, -1))
    np.testing.assert_array_equal(kept, full_idx[:, :5])


def test_exclude_matches_reference_leave_one_out(gaussian):
    X, _ = gaussian
    _, idx = KNNIndex("brute").fit(X).query(X[:20], 4, exclude=np.arange(20))
    _, ref = reference(X, X[:20], 5)
    np.testing.assert_array_equal(idx, ref[:, 1:])


@pytest.mark.parametrize("backend", ["brute", "faiss-flat"])
def test_k_larger_than_the_index_is_clamped_with_a_warning(backend):
    X = np.random.default_rng(3).standard_normal((7, 8)).astype(np.float32)
    index = KNNIndex(backend).fit(X)
    with pytest.warns(UserWarning, match="k=10"):
        dist, idx = index.query(X[:2], 10)
    assert dist.shape == idx.shape == (2, 7)
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.tile(np.arange(7), (2, 1)))
    with pytest.warns(UserWarning, match="6 items"):
        _, idx = index.query(X[:2], 7, exclude=np.array([0, 1]))
    assert idx.shape == (2, 6) and 0 not in idx[0] and 1 not in idx[1]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_save_load_round_trip_without_pickle(backend, clustered, tmp_path, monkeypatch):
    X, Q = clustered
    index = KNNIndex(backend, nprobe=4).fit(X)
    before = index.query(Q, 7)
    index.save(tmp_path / "knn")

    def no_pickle(*args, **kwargs):
        raise AssertionError("unpickling during load")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    loaded = KNNIndex.load(tmp_path / "knn")
    assert (loaded.backend_, loaded.n_items, loaded.dim) == (backend, 2000, 64)
    assert loaded.get_params() == index.get_params()
    after = loaded.query(Q, 7)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(loaded.vectors(), X)
    files = sorted(p.name for p in (tmp_path / "knn").iterdir())
    expected = {"faiss-ivfpq": ["index.faiss", "vectors.npy"]}.get(  # its codes, and the vectors it re-ranks from
        backend, ["vectors.npy" if backend in EXACT_BACKENDS else "index.faiss"])
    assert files == sorted(["knn.json", *expected])


def test_load_reports_a_damaged_directory(tmp_path, clustered):
    X, _ = clustered
    KNNIndex("faiss-hnsw").fit(X[:200]).save(tmp_path / "h")
    (tmp_path / "h" / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(UserError, match="index.faiss"):
        KNNIndex.load(tmp_path / "h")
    with pytest.raises(UserError, match="knn.json"):
        KNNIndex.load(tmp_path / "missing")
    KNNIndex("brute").fit(X[:200]).save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "knn.json").read_text())
    meta["n_items"] = 201
    (tmp_path / "b" / "knn.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="shape"):
        KNNIndex.load(tmp_path / "b")
    meta.update(n_items=200, data="index.faiss")
    (tmp_path / "b" / "knn.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="backend brute saves 'vectors.npy'"):
        KNNIndex.load(tmp_path / "b")


def test_a_directory_in_format_1_loads(tmp_path):
    # knn.json as KNNIndex.save has written it since format 1 (before the backends were classes)
    X = np.random.default_rng(6).standard_normal((50, 4)).astype(np.float32)
    params = {"backend": "balltree", "leaf_size": 40, "hnsw_m": 32, "ef_search": 128, "ef_construction": 200,
              "nlist": None, "nprobe": 16, "threads": None}
    (tmp_path / "old").mkdir()
    np.save(tmp_path / "old" / "vectors.npy", X)
    (tmp_path / "old" / "knn.json").write_text(json.dumps(
        {"format": 1, "params": params, "n_items": 50, "dim": 4, "data": "vectors.npy"}))
    loaded = KNNIndex.load(tmp_path / "old")
    assert {k: v for k, v in loaded.get_params().items() if k in params} == params
    assert loaded.get_params()["pq_bits"] == 8  # parameters added since: their defaults
    np.testing.assert_array_equal(loaded.query(X[:5], 3)[1], reference(X, X[:5], 3)[1])


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_add_keeps_old_ids_and_finds_new_points(backend, clustered):
    X, _ = clustered
    index = KNNIndex(backend).fit(X[:1500])
    ids = index.add(X[1500:])
    np.testing.assert_array_equal(ids, np.arange(1500, 2000))
    assert index.n_items == 2000
    _, idx = index.query(X[1500:1550], 1)
    np.testing.assert_array_equal(idx[:, 0], np.arange(1500, 1550))
    _, idx = index.query(X[:50], 1)
    np.testing.assert_array_equal(idx[:, 0], np.arange(50))
    if backend in EXACT_BACKENDS:  # same as indexing everything at once
        probe = X[::97] + 0.5
        np.testing.assert_array_equal(index.query(probe, 8)[1], KNNIndex(backend).fit(X).query(probe, 8)[1])


def test_params_round_trip_and_auto_is_resolved(clustered):
    X, Q = clustered
    index = KNNIndex("auto", ef_search=64, threads=1).fit(X)
    params = json.loads(json.dumps(index.get_params()))  # JSON-serialisable
    assert params["backend"] == "brute" and params["ef_search"] == 64 and params["threads"] == 1
    rebuilt = KNNIndex.from_params(params, X)
    np.testing.assert_array_equal(rebuilt.query(Q, 5)[1], index.query(Q, 5)[1])
    ivf = KNNIndex("faiss-ivf").fit(X)
    assert ivf.get_params()["nlist"] == 45  # round(sqrt(2000)), recorded so a rebuild makes the same cells
    assert KNNIndex.from_params(ivf.get_params(), X[:1000]).get_params()["nlist"] == 45
    assert KNNIndex().get_params()["backend"] == "auto"  # unfitted: as constructed


def test_threads_setting_gives_the_same_results(clustered):
    X, Q = clustered
    for backend in ("brute", "faiss-flat", "faiss-hnsw"):
        a = KNNIndex(backend, threads=1).fit(X).query(Q, 5)
        b = KNNIndex(backend).fit(X).query(Q, 5)
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("kwargs, name", [
    ({"backend": "kdtree"}, "backend"),
    ({"leaf_size": 0}, "leaf_size"),
    ({"hnsw_m": 1}, "hnsw_m"),
    ({"ef_search": 2.5}, "ef_search"),
    ({"ef_construction": True}, "ef_construction"),
    ({"nlist": 0}, "nlist"),
    ({"nprobe": -3}, "nprobe"),
    ({"threads": 0}, "threads"),
])
def test_bad_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        KNNIndex(**kwargs)


def test_bad_calls_are_value_errors(gaussian):
    X, Q = gaussian
    with pytest.raises(ValueError, match="one of 'auto', 'balltree'"):
        KNNIndex("x")
    index = KNNIndex("brute")
    with pytest.raises(NotFittedError):
        index.query(Q, 3)
    index.fit(X)
    for k in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="^k must be"):
            index.query(Q, k)
    with pytest.raises(ValueError, match="^Q must have 64 columns"):
        index.query(Q[:, :10], 3)
    with pytest.raises(ValueError, match="^Q must be a non-empty 2-D"):
        index.query(Q[0], 3)
    with pytest.raises(ValueError, match="^exclude must be"):
        index.query(Q, 3, exclude=np.arange(3))
    with pytest.raises(ValueError, match="^X must have 64 columns"):
        index.add(X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        KNNIndex("brute").fit(np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="unknown key.*'leafsize'"):
        KNNIndex.from_params({"backend": "brute", "leafsize": 3}, X)
    with pytest.raises(ValueError, match="^nlist must be at most"):
        KNNIndex("faiss-ivf", nlist=50).fit(X[:10])
    assert set(BACKENDS) == {"auto", *ALL_BACKENDS}


def test_listing_backends_and_brute_search_import_neither_sklearn_nor_faiss():
    # scikit-learn's neighbours module alone takes ~0.5 s to import; brute needs none of it
    code = ("import sys, numpy as np, fashionrec.knn as knn\n"
            "X = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)\n"
            "knn.KNNIndex('brute', threads=1).fit(X).query(X[:3], 5, exclude=np.arange(3))\n"
            "print(knn.BACKENDS, sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'faiss')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{BACKENDS} []"


class _RoundedBackend(Backend):
    """A toy backend for the contract: distances rounded to 0.5, ties to the *higher* id."""

    name = "rounded"
    exact = True
    rounding = 0.01  # |q|^2 + max |x|^2 >= 50 here: slack >= 0.5 covers the rounding (<= 0.25)

    def fit(self, X):
        self.X = X
        self._track_norm_max(X)

    def add(self, X):
        self.X = np.concatenate([self.X, X])
        self._track_norm_max(X)

    def search(self, Q, k):
        rounded = np.round(2 * ((Q[:, None, :].astype(np.float64) - self.X[None]) ** 2).sum(-1)) / 2
        ids = np.lexsort((-np.arange(len(self.X))[None].repeat(len(Q), 0), rounded), axis=-1)[:, :k]
        return np.take_along_axis(rounded, ids, 1), ids

    def rows(self, ids):
        return self.X[ids]

    def vectors(self):
        return self.X

    @property
    def nbytes(self):
        return self.X.nbytes


def test_a_registered_backend_gets_the_facade(gaussian, tmp_path, monkeypatch):
    """One class and one registration: parameters, exact re-ranking, exclude, save and load."""
    from fashionrec.knn import base

    monkeypatch.setattr(base.BACKEND_REGISTRY, "_things", base.BACKEND_REGISTRY.registered())
    base.register(_RoundedBackend)
    with pytest.raises(ValueError, match="already registered"):
        base.register(_RoundedBackend)
    X, Q = gaussian
    index = KNNIndex("rounded").fit(X[:1500])
    index.add(X[1500:])
    assert index.exact and index.nbytes == X.nbytes and index.get_params()["backend"] == "rounded"
    dist, idx = index.query(Q, 10)
    ref_dist, ref_idx = reference(X, Q, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-5)
    np.testing.assert_array_equal(index.query(X[:20], 4, exclude=np.arange(20))[1], reference(X, X[:20], 5)[1][:, 1:])
    index.save(tmp_path / "r")
    np.testing.assert_array_equal(KNNIndex.load(tmp_path / "r").query(Q, 10)[1], idx)


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_knn.py"
    if str(path.parent) not in sys.path:  # as when run: the script's folder (benchlib) is importable
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("bench_knn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_script_writes_json_and_only_its_own_section(tmp_path):
    bench = _bench_module()
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    out = tmp_path / "bench.json"
    argv = ["--sizes", "300,600", "--dim", "16", "--queries", "20", "--budget", "0.05", "--bandwidth-gib", "0.01",
            "--hnsw-max-n", "300", "--balltree-max-n", "300", "--out", str(out), "--results", str(results)]
    report = bench.main(argv)
    saved = json.loads(out.read_text())
    assert saved["results"] == report["results"]
    rows = {(r["n"], r["backend"]) for r in saved["results"]}
    assert (300, "faiss-hnsw") in rows and (600, "faiss-hnsw") not in rows
    assert {s["backend"] for s in saved["skipped"]} == {"faiss-hnsw", "balltree"}
    assert all(r["recall_at_5"] == 1.0 for r in saved["results"] if r["backend"] in EXACT_BACKENDS)
    text = results.read_text()
    assert "keep me" in text and text.count("<!-- knn:start -->") == 1 and "| 600 | brute |" in text
    bench.main(argv[:-2] + ["--results", str(results), "--render", str(out)])  # re-render: replaced, not added
    assert results.read_text().count("<!-- knn:start -->") == 1 and "keep me" in results.read_text()


# ---------------------------------------------------------------------------- faiss-ivfpq


def test_ivfpq_reranks_exactly_from_a_memory_mapped_store(clustered, tmp_path):
    """Codes propose, the vectors on disk decide: true distances, high recall, the file never copied."""
    from fashionrec.knn.base import TransformedRows

    X, Q = clustered
    rng = np.random.default_rng(7)
    big = np.concatenate([X, X + rng.normal(0, 0.3, X.shape)]).astype(np.float32)  # 4000 x 64
    np.save(tmp_path / "features.npy", big)
    mapped = np.load(tmp_path / "features.npy", mmap_mode="r")
    index = KNNIndex("faiss-ivfpq", pq_m=16, nprobe=8).fit(mapped)
    assert index.external_vectors and np.shares_memory(index._backend.X, mapped)  # a reference, not a copy
    # RAM: 16-byte codes + 8-byte ids per item, plus centroids and codebooks (not the 1 MB of vectors)
    assert index.nbytes < big.nbytes / 2 and index.get_params()["pq_m"] == 16
    queries = np.concatenate([Q, big[:20] + 0.01]).astype(np.float32)
    dist, idx = index.query(queries, 5)
    ref_dist, ref_idx = reference(big, queries, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, ref_idx)])
    assert recall >= 0.95
    exact = np.sqrt(((queries[:, None, :].astype(np.float64) - big[idx]) ** 2).sum(-1))
    np.testing.assert_allclose(dist, exact, rtol=1e-5)  # true distances of what it returns
    # the same search over rows transformed as they are read (e.g. L2-normalised blocks)
    halve = TransformedRows(mapped, lambda block: block * 0.5)
    _, idx_half = KNNIndex("faiss-ivfpq", pq_m=16, nprobe=8).fit(halve).query(queries * 0.5, 5)
    assert np.mean(idx_half == idx) > 0.95


def test_ivfpq_save_without_vectors_loads_with_them(clustered, tmp_path):
    X, Q = clustered
    index = KNNIndex("faiss-ivfpq").fit(X)
    before = index.query(Q, 5)
    index.save(tmp_path / "k", with_vectors=False)
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["index.faiss", "knn.json"]
    with pytest.raises(UserError, match="saved without its vectors"):
        KNNIndex.load(tmp_path / "k")
    with pytest.raises(UserError, match=r"knn.json: 2000 x 64 items, but the vectors given are \(10, 64\)"):
        KNNIndex.load(tmp_path / "k", vectors=X[:10])
    np.save(tmp_path / "X.npy", X)
    loaded = KNNIndex.load(tmp_path / "k", vectors=np.load(tmp_path / "X.npy", mmap_mode="r"))
    for a, b in zip(loaded.query(Q, 5), before):
        np.testing.assert_array_equal(a, b)
    # search-time parameters change after fit; the structure's do not
    loaded.set_params(nprobe=1, rerank_factor=2)
    assert loaded._backend.nprobe == 1 and loaded.get_params()["rerank_factor"] == 2
    with pytest.raises(ValueError, match="^pq_m shapes the faiss-ivfpq structure"):
        loaded.set_params(pq_m=8)


def test_ivfpq_with_opq_and_small_catalogs(clustered):
    X, Q = clustered
    opq = KNNIndex("faiss-ivfpq", opq=True, pq_m=16).fit(X)
    _, idx = opq.query(Q, 5)
    ref = reference(X, Q, 5)[1]
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, ref)]) >= 0.95
    tiny = KNNIndex("faiss-ivfpq").fit(X[:30])  # too few rows for 256 codewords: fewer bits
    assert tiny.get_params()["pq_bits"] < 8 and tiny.get_params()["nlist"] == 1
    np.testing.assert_array_equal(tiny.query(X[:30], 1)[1][:, 0], np.arange(30))


@pytest.mark.parametrize("kwargs, name", [
    ({"pq_m": 0}, "pq_m"),
    ({"pq_bits": 17}, "pq_bits"),
    ({"pq_bits": 8.0}, "pq_bits"),
    ({"opq": "yes"}, "opq"),
    ({"train_size": 0}, "train_size"),
    ({"rerank_factor": 0}, "rerank_factor"),
])
def test_ivfpq_bad_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        KNNIndex("faiss-ivfpq", **kwargs)


def test_ivfpq_pq_m_must_divide_the_dimension(gaussian):
    with pytest.raises(ValueError, match=r"^pq_m must divide the vectors' dimension \(64\); got 60"):
        KNNIndex("faiss-ivfpq", pq_m=60).fit(gaussian[0])


def test_index_built_with_ivfpq_maps_its_features_and_recommends(synth_root, extractor_runs, tmp_path):
    """`fashionrec index` with faiss-ivfpq: knn/ holds only the codes; features.npy is memory-mapped."""
    from click.testing import CliRunner

    from fashionrec.catalog_index import CatalogIndex
    from fashionrec.cli import main

    out = tmp_path / "index"
    config = tmp_path / "index.yaml"
    config.write_text(f"""
catalog: {{format: csv, root: {synth_root / 'fashion' / 'catalog.csv'}}}
extractors: [{extractor_runs['category']}, {extractor_runs['texture']}]
output: {out}
backend: faiss-ivfpq
l2_normalize: true
workers: 0
device: cpu
""")
    r = CliRunner().invoke(main, ["index", "-c", str(config), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "knn").iterdir()) == ["index.faiss", "knn.json"]
    index = CatalogIndex.load(out)
    assert isinstance(index.features, np.memmap) and index.knn.backend_ == "faiss-ivfpq"
    vectors = index.search_vectors(np.asarray(index.features))  # per-block L2, as the catalog was searched
    ref_dist, ref_idx = reference(vectors, vectors[:10], 4)
    dist, idx = index.query(index.features[:10], 4)
    np.testing.assert_array_equal(idx, ref_idx)  # a catalog this small: every item is a candidate
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-6)
    image = str(index.root / index.items[5]["path"])
    r = CliRunner().invoke(main, ["recommend", image, "-k", "3", "--index", str(out), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    results = json.loads(r.output)[0]["results"]
    assert results[0]["id"] == 5 and results[0]["distance"] < 1e-3 and len(results) == 3


def test_set_params_reaches_the_fitted_backend(clustered):
    # the benchmark's sweeps change nprobe / ef_search on a built index: the search must follow
    X, Q = clustered
    ref = reference(X, Q, 5)[1]
    index = KNNIndex("faiss-ivf", nprobe=1, nlist=45).fit(X)
    narrow = index.query(Q, 5)[1]
    np.testing.assert_array_equal(index.set_params(nprobe=45).query(Q, 5)[1], ref)  # every cell: exact
    assert not np.array_equal(narrow, ref) and index.get_params()["nprobe"] == 45
    with pytest.raises(ValueError, match="^nlist shapes the faiss-ivf structure"):
        index.set_params(nlist=10)
    with pytest.raises(ValueError, match="unknown parameter 'nprobes'"):
        index.set_params(nprobes=3)
    with pytest.raises(ValueError, match="^ef_search must be"):
        KNNIndex("faiss-hnsw").fit(X[:100]).set_params(ef_search=0)


_BLOCKED_MODULE = '''
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from fashionrec.configtypes import Choice, Range
from fashionrec.knn.base import Backend, register


@dataclass
class BlockedParams(Choice):
    block_rows: Annotated[int, Range(ge=1, le=1_000_000)] = 4096  # rows whose distances are computed at once


@register
class BlockedBackend(Backend):
    """Exact numpy search in blocks of rows, float64."""

    name = "numpy-blocked"
    exact = True
    rounding = 1e-9
    Params = BlockedParams

    def fit(self, X):
        self.X = X
        self._track_norm_max(X)

    def add(self, X):
        self.X = np.concatenate([self.X, X])
        self._track_norm_max(X)

    def search(self, Q, k):
        self.blocks_searched = 0
        parts = []
        for start in range(0, len(self.X), self.block_rows):
            block = self.X[None, start:start + self.block_rows]
            parts.append(((Q[:, None, :].astype(np.float64) - block) ** 2).sum(-1))
            self.blocks_searched += 1
        d = np.concatenate(parts, axis=1)
        ids = np.argsort(d, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(d, ids, 1), ids

    def rows(self, ids):
        return self.X[ids]

    def vectors(self):
        return self.X

    @property
    def nbytes(self):
        return self.X.nbytes
'''


def test_a_new_backend_is_one_module_with_its_parameters_reached_from_an_index_config(
        synth_root, extractor_runs, tmp_path, monkeypatch):
    import importlib

    from click.testing import CliRunner

    from fashionrec.catalog_index import CatalogIndex
    from fashionrec.cli import main
    from fashionrec.config_ranges import ranges_table
    from fashionrec.knn import base

    # the registration ends with the test
    monkeypatch.setattr(base.BACKEND_REGISTRY, "_things", base.BACKEND_REGISTRY.registered())
    package = tmp_path / "shop_backends"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "blocked.py").write_text(_BLOCKED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("shop_backends.blocked")

    X = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    index = KNNIndex("numpy-blocked", block_rows=64).fit(X)
    np.testing.assert_array_equal(index.query(X[:5], 3)[1], reference(X, X[:5], 3)[1])
    assert index._backend.blocks_searched == 5 and index.get_params()["block_rows"] == 64
    with pytest.raises(ValueError, match=r"^block_rows must be an integer in \[1, 1000000\]; got 0$"):
        KNNIndex("numpy-blocked", block_rows=0)
    assert "| `backend.block_rows` (numpy-blocked) | index | int | [1, 1000000] |" in ranges_table()

    out = tmp_path / "index"
    config = tmp_path / "index.yaml"
    text = f"""catalog: {{format: csv, root: {synth_root / 'fashion' / 'catalog.csv'}}}
extractors: [{extractor_runs['category']}, {extractor_runs['texture']}]
output: {out}
backend: {{name: numpy-blocked, block_rows: 50}}
workers: 0
device: cpu
"""
    config.write_text(text)
    r = CliRunner().invoke(main, ["index", "-c", str(config), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "index.json").read_text())["backend_params"]["block_rows"] == 50
    loaded = CatalogIndex.load(out)
    assert loaded.knn.backend_ == "numpy-blocked" and loaded.knn._backend.block_rows == 50
    assert loaded.query(loaded.features[7:8], 1)[1][0, 0] == 7
    config.write_text(text.replace("block_rows: 50", "nprobe: 4"))
    r = CliRunner().invoke(main, ["index", "-c", str(config), "--no-progress"])
    assert r.exit_code == 2 and r.output.strip() == (
        f"error: {config}:4: backend.nprobe: not a key of backend numpy-blocked (it is faiss-ivf and faiss-ivfpq's); "
        "numpy-blocked's keys: block_rows"), r.output
