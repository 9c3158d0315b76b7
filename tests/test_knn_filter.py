"""Filtered k-NN search (``KNNIndex.query(..., allowed=mask)``) on every backend, against numpy on the subset.

Each backend is tried on both routes of the rule in ``fashionrec.knn.filtered``: the allowed rows scanned
exactly ("scan") and the search inside the structure ("structure": brute's masked product, faiss's ID
selectors), the latter forced by setting the backend's ``filter_scan_rows`` to 0.
"""

import numpy as np
import pytest

from fashionrec.knn import BACKENDS, EXACT_BACKENDS, KNNIndex
from fashionrec.knn.base import Backend, backend_class

ALL = BACKENDS[1:]  # every registered backend ("auto" resolves to one of them)
# with the structure's own filtered search (balltree has none: it always scans the allowed rows)
STRUCTURED = tuple(b for b in ALL if backend_class(b).search_allowed is not Backend.search_allowed)
ROUTES = [(b, "scan") for b in ALL] + [(b, "structure") for b in STRUCTURED]
# on 1,000 items these make the approximate backends (nearly) exact: every cell probed, wide graph search
EXACTISH = {"faiss-ivf": {"nprobe": 1000}, "faiss-ivfpq": {"nprobe": 1000, "rerank_factor": 100},
            "faiss-hnsw": {"ef_search": 256}}


@pytest.fixture(scope="module")
def data():
    """1,000 post-ReLU-like vectors in 12 clusters, and 25 fresh queries from the same clusters."""
    rng = np.random.default_rng(11)
    centres = rng.uniform(0, 3, (12, 32))
    labels = rng.integers(0, 12, 1025)
    X = np.maximum(centres[labels] + 0.4 * rng.standard_normal((1025, 32)), 0).astype(np.float32)
    return X[:1000], X[1000:], labels[:1000]


@pytest.fixture(scope="module")
def indexes(data):
    X = data[0]
    return {b: KNNIndex(b, **EXACTISH.get(b, {})).fit(X) for b in ALL}


def filtered_reference(X, Q, mask, k, exclude=None):
    """float64 distances to the allowed rows, stable sort (ties: lower id), padded with inf / -1 to k."""
    ids = np.flatnonzero(mask)
    d2 = ((Q[:, None, :].astype(np.float64) - X[ids][None].astype(np.float64)) ** 2).sum(-1)
    if exclude is not None:
        d2[ids[None, :] == exclude[:, None]] = np.inf
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    dist, found = np.sqrt(np.take_along_axis(d2, order, 1)), ids[order]
    found[~np.isfinite(dist)] = -1
    pad = k - dist.shape[1]
    return (np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf),
            np.pad(found, ((0, 0), (0, pad)), constant_values=-1))


def route(monkeypatch, index, how):
    if how == "structure":
        monkeypatch.setattr(type(index._backend), "filter_scan_rows", lambda self, k: 0)


def recall(found, truth):
    return np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum()) for f, t in zip(found, truth)])


@pytest.mark.parametrize("backend, how", ROUTES)
def test_three_allowed_items_come_back_ranked_and_padded(backend, how, data, indexes, monkeypatch):
    X, Q, _ = data
    mask = np.zeros(len(X), bool)
    mask[[17, 503, 998]] = True
    index = indexes[backend]
    route(monkeypatch, index, how)
    dist, idx = index.query(Q, 5, allowed=mask)
    ref_dist, ref_idx = filtered_reference(X, Q, mask, 5)
    assert dist.shape == idx.shape == (len(Q), 5) and dist.dtype == np.float32 and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, ref_idx)  # all three, in the reference's order, then -1
    np.testing.assert_allclose(dist[:, :3], ref_dist[:, :3], rtol=1e-5)
    assert np.isinf(dist[:, 3:]).all() and (idx[:, 3:] == -1).all()


@pytest.mark.parametrize("backend, how", ROUTES)
def test_half_filter_returns_k_results_as_brute_force_on_the_subset(backend, how, data, indexes, monkeypatch):
    X, Q, _ = data
    mask = np.random.default_rng(5).random(len(X)) < 0.5
    index = indexes[backend]
    route(monkeypatch, index, how)
    dist, idx = index.query(Q, 10, allowed=mask)
    ref_dist, ref_idx = filtered_reference(X, Q, mask, 10)
    assert idx.shape == (len(Q), 10) and (idx >= 0).all() and mask[idx].all()
    if backend in EXACT_BACKENDS:
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(dist, ref_dist, rtol=1e-5)
    else:
        assert recall(idx, ref_idx) >= 0.95
        # whatever they found, at its true distance, sorted
        true = np.sqrt(((Q[:, None, :].astype(np.float64) - X[idx].astype(np.float64)) ** 2).sum(-1))
        np.testing.assert_allclose(dist, true, rtol=1e-5)
        assert (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.parametrize("backend, how", ROUTES)
def test_allowed_and_exclude_together(backend, how, data, indexes, monkeypatch):
    X, _, _ = data
    index = indexes[backend]
    route(monkeypatch, index, how)
    queries = np.arange(40)
    mask = np.zeros(len(X), bool)
    mask[::2] = True  # the even queries are allowed themselves (excluded: dropped), the odd ones are not
    dist, idx = index.query(X[queries], 6, exclude=queries, allowed=mask)
    ref_dist, ref_idx = filtered_reference(X, X[queries], mask, 6, exclude=queries)
    assert idx.shape == (40, 6) and (idx >= 0).all() and mask[idx].all() and not (idx == queries[:, None]).any()
    if backend in EXACT_BACKENDS:
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(dist, ref_dist, rtol=1e-5, atol=1e-6)
    else:
        assert recall(idx, ref_idx) >= 0.95
    # a tiny allowed set holding the query itself: it is left out, the others come, then padding
    few = np.zeros(len(X), bool)
    few[[3, 4, 500]] = True
    dist, idx = index.query(X[[3, 4, 7]], 5, exclude=np.array([3, 4, 7]), allowed=few)
    _, ref_idx = filtered_reference(X, X[[3, 4, 7]], few, 5, exclude=np.array([3, 4, 7]))
    np.testing.assert_array_equal(idx, ref_idx)
    assert [int((row >= 0).sum()) for row in idx] == [2, 2, 3]
    assert np.isinf(dist[idx < 0]).all() and np.isfinite(dist[idx >= 0]).all()


@pytest.mark.parametrize("backend", ALL)
def test_all_false_mask_returns_only_padding_and_all_true_changes_nothing(backend, data, indexes):
    X, Q, _ = data
    index = indexes[backend]
    dist, idx = index.query(Q, 4, allowed=np.zeros(len(X), bool))
    assert idx.shape == (len(Q), 4) and (idx == -1).all() and np.isinf(dist).all()
    dist, idx = index.query(Q[:3], 4, exclude=np.array([0, 1, 2]), allowed=np.zeros(len(X), bool))
    assert (idx == -1).all() and np.isinf(dist).all()
    plain = index.query(Q, 4)
    every = index.query(Q, 4, allowed=np.ones(len(X), bool))
    np.testing.assert_array_equal(every[1], plain[1])
    np.testing.assert_array_equal(every[0], plain[0])


@pytest.mark.parametrize("bad", [np.ones(999, bool), np.ones(1000, np.int64), np.ones((1000, 1), bool),
                                 np.ones(1000, np.float32), [1, 0, 1], "all", 5])
def test_bad_mask_is_a_value_error_naming_allowed(bad, indexes, data):
    with pytest.raises(ValueError, match=r"^allowed must be a boolean array of shape \(1000,\)"):
        indexes["brute"].query(data[1], 3, allowed=bad)


def test_a_list_of_booleans_is_a_mask(indexes, data):
    X, Q, _ = data
    mask = [i % 3 == 0 for i in range(len(X))]
    np.testing.assert_array_equal(indexes["brute"].query(Q, 3, allowed=mask)[1],
                                  indexes["brute"].query(Q, 3, allowed=np.array(mask))[1])


def test_k_is_clamped_against_the_items_not_the_allowed_count(indexes, data):
    X, Q, _ = data
    mask = np.zeros(len(X), bool)
    mask[:7] = True
    with pytest.warns(UserWarning, match="k=1200"):
        dist, idx = indexes["brute"].query(Q[:2], 1200, allowed=mask)
    assert idx.shape == (2, 1000)
    np.testing.assert_array_equal(np.sort(idx[:, :7], axis=1), np.tile(np.arange(7), (2, 1)))
    assert (idx[:, 7:] == -1).all() and np.isinf(dist[:, 7:]).all()


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("share", [0.01, 0.5])
def test_ties_among_the_allowed_go_to_the_lower_id(backend, share, monkeypatch):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((300, 16)).astype(np.float32)
    X = base[rng.permutation(np.repeat(np.arange(300), 4))]  # each vector 4 times, scattered
    mask = rng.random(len(X)) < share
    mask[np.flatnonzero((X == X[0]).all(axis=1))] = True  # every copy of X[0] allowed
    Q = np.concatenate([X[:1], base[:9]])
    index = KNNIndex(backend).fit(X)
    for how in (("scan", "structure") if backend in STRUCTURED else ("scan",)):
        with monkeypatch.context() as patch:
            route(patch, index, how)
            dist, idx = index.query(Q, 6, allowed=mask)
        ref_dist, ref_idx = filtered_reference(X, Q, mask, 6)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(dist, ref_dist, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", STRUCTURED)
def test_small_sets_scan_their_rows_and_large_ones_use_the_structure(backend, data, monkeypatch):
    X, Q, _ = data
    index = KNNIndex(backend, nprobe=4).fit(X)  # IVF: 4 of 32 cells, ~125 rows, scored unfiltered
    calls = []
    original = type(index._backend).search_allowed

    def spy(self, *args):
        calls.append(args[1])
        return original(self, *args)

    monkeypatch.setattr(type(index._backend), "search_allowed", spy)
    few = np.zeros(len(X), bool)
    few[[1, 2, 3]] = True
    index.query(Q, 5, allowed=few)
    # 3 rows: read them, never the structure -- except faiss-flat, whose selector skips the rest as cheaply
    assert (calls == []) == (backend != "faiss-flat")
    calls.clear()
    half = np.arange(len(X)) % 2 == 0
    index.query(Q, 5, allowed=half)
    assert (len(calls) > 0) == (index._backend.filter_scan_rows(5) < half.sum())
    if backend in ("brute", "faiss-flat", "faiss-ivf"):
        assert calls  # half the catalog goes through the structure (IVF: more than nprobe of nlist cells hold)


@pytest.mark.parametrize("backend", [b for b in STRUCTURED if b not in EXACT_BACKENDS])
def test_rows_the_structure_misses_are_searched_exactly(backend, data, indexes, monkeypatch):
    X, Q, _ = data
    index = indexes[backend]
    route(monkeypatch, index, "structure")
    original = type(index._backend).search_allowed

    def misses_every_other_row(self, q, k, allowed):
        dist, ids = original(self, q, k, allowed)
        dist[::2, 1:], ids[::2, 1:] = np.inf, -1  # only one found for the even rows
        return dist, ids

    monkeypatch.setattr(type(index._backend), "search_allowed", misses_every_other_row)
    mask = np.arange(len(X)) % 3 == 0
    dist, idx = index.query(Q, 8, allowed=mask)
    ref_dist, ref_idx = filtered_reference(X, Q, mask, 8)
    np.testing.assert_array_equal(idx[::2], ref_idx[::2])  # searched again, exactly
    assert (idx >= 0).all() and mask[idx].all()


@pytest.mark.parametrize("backend", ["faiss-ivf", "faiss-ivfpq"])
def test_ivf_probes_past_nprobe_to_reach_a_far_filter(backend, data, monkeypatch):
    # queries from one cluster, only another cluster allowed: with nprobe=1 the query's own cell holds
    # none of them (faiss's selector alone finds nothing); the cells are probed nearest first until they
    # hold enough allowed items -- found by the structure itself, not by the exact fallback
    X, Q, labels = data
    index = KNNIndex(backend, nlist=12, nprobe=1, rerank_factor=50).fit(X)
    route(monkeypatch, index, "structure")
    monkeypatch.setattr(index, "_scan_subset", lambda *args: pytest.fail("fell back to scanning the rows"))
    mask = labels == labels[0]
    far = np.flatnonzero(labels != labels[0])[:10]
    dist, idx = index.query(X[far], 5, allowed=mask)
    _, ref_idx = filtered_reference(X, X[far], mask, 5)
    assert mask[idx].all() and (idx >= 0).all()
    assert recall(idx, ref_idx) >= 0.9


def test_ivfpq_with_opq_filters(data):
    X, Q, _ = data
    index = KNNIndex("faiss-ivfpq", opq=True, pq_m=8, nprobe=1000).fit(X)
    mask = np.random.default_rng(8).random(len(X)) < 0.3
    _, idx = index.query(Q, 5, allowed=mask)
    assert mask[idx].all() and recall(idx, filtered_reference(X, Q, mask, 5)[1]) >= 0.9


def test_ivf_filter_counts_follow_added_items(data):
    X, Q, _ = data
    index = KNNIndex("faiss-ivf", nprobe=1000).fit(X[:600])
    mask = np.arange(600) % 2 == 0
    index.query(Q, 5, allowed=mask)  # the cells of 600 items are known now
    index.add(X[600:])
    mask = np.arange(1000) >= 600  # only new items
    _, idx = index.query(Q, 5, allowed=mask)
    np.testing.assert_array_equal(idx, filtered_reference(X, Q, mask, 5)[1])


@pytest.mark.parametrize("backend", ALL)
def test_save_load_round_trip_keeps_filtered_queries(backend, data, indexes, tmp_path):
    X, Q, _ = data
    mask = np.random.default_rng(9).random(len(X)) < 0.2
    before = indexes[backend].query(Q, 6, allowed=mask)
    indexes[backend].save(tmp_path / "knn")
    loaded = KNNIndex.load(tmp_path / "knn")
    after = loaded.query(Q, 6, allowed=mask)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    assert mask[after[1]].all()
