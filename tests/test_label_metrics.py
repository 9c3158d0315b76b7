"""Metric values against small examples worked out by hand."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fashionrec import label_metrics as M
from fashionrec.knn import KNNIndex

# --------------------------------------------------------------------------- classification


def test_softmax_is_stable_and_sums_to_one():
    p = M.softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), 0.0]]))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(p[1], [0.2, 0.6, 0.2])          # exp(log 3) = 3 -> 3 / 5
    assert M.softmax(np.zeros((2, 4), np.float32)).dtype == np.float32


def test_cross_entropy_matches_direct_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4))
    labels = np.array([0, 1, 2, 3, 1, 0])
    direct = -np.mean([np.log(np.exp(z[y]) / np.exp(z).sum()) for z, y in zip(logits, labels)])
    assert M.cross_entropy(logits, labels) == pytest.approx(direct, rel=1e-12)
    # Uniform logits: loss = log(n_classes).
    assert M.cross_entropy(np.zeros((3, 5)), [0, 1, 4]) == pytest.approx(math.log(5))


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0], [1000.0, 0.0]])
    # label 0: -log(1 / (1 + e^-1000)) ~ 0; label 1: -log(e^-1000 / (1 + e^-1000)) ~ 1000.
    assert M.cross_entropy(logits, [0, 1]) == pytest.approx(500.0)


def test_accuracy_takes_logits_or_predictions():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert M.accuracy(logits, [1, 0, 0]) == pytest.approx(2 / 3)
    assert M.accuracy(np.array([1, 0, 0]), [1, 0, 0]) == 1.0
    assert isinstance(M.accuracy(logits, [1, 0, 0]), float)


def test_top_k_ties_break_towards_the_lower_class_index():
    logits = np.array([[1.0, 1.0, 1.0, 0.0]])
    # stable argsort on -logits ranks classes 0, 1, 2, 3: top-2 is {0, 1}.
    assert M.top_k_accuracy(logits, [1], k=2) == 1.0
    assert M.top_k_accuracy(logits, [2], k=2) == 0.0
    assert M.top_k_accuracy(logits, [2], k=3) == 1.0
    # Many ties (an untrained network): numpy's default quicksort would not keep 0..9 in front.
    flat = np.zeros((2, 50))
    assert M.top_k_accuracy(flat, [9, 10], k=10) == 0.5


def test_top_k_values_and_clamping():
    logits = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    labels = [1, 0, 2]
    assert M.top_k_accuracy(logits, labels, 1) == 0.0
    assert M.top_k_accuracy(logits, labels, 2) == pytest.approx(1 / 3)   # only the first: 1 in {0, 1}
    assert M.top_k_accuracy(logits, labels, 3) == 1.0
    assert M.top_k_accuracy(logits, labels, 50) == 1.0                   # clamped to 3 classes


def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = M.confusion_matrix(labels=[0, 0, 1, 2], preds=[1, 1, 1, 0], n_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[0, 2, 0], [0, 1, 0], [1, 0, 0]])


def test_per_class_accuracy_is_nan_for_classes_without_samples():
    acc = M.per_class_accuracy(np.array([[3, 1, 0], [0, 0, 0], [1, 1, 2]]))
    np.testing.assert_allclose(acc[[0, 2]], [0.75, 0.5])
    assert np.isnan(acc[1])


def test_classification_report_is_json_ready():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 1.0]])
    labels = np.array([0, 1, 0, 0])
    r = M.classification_report(logits, labels, ["a", "b", "c"], k=5)
    text = json.dumps(r, allow_nan=False)                      # floats and None only, no numpy
    assert json.loads(text) == r
    assert r["n"] == 4
    assert r["accuracy"] == pytest.approx(0.75)
    assert r["top_k"] == {"k": 3, "value": 1.0}                # k clamped to the class count
    assert r["per_class"] == {"a": pytest.approx(2 / 3), "b": 1.0, "c": None}
    assert r["confusion"] == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert r["loss"] == pytest.approx(M.cross_entropy(logits, labels))


@pytest.mark.parametrize("call, name", [
    (lambda: M.cross_entropy(np.zeros((2, 3)), [0, 3]), "labels"),
    (lambda: M.cross_entropy(np.zeros((2, 3)), [0]), "labels"),
    (lambda: M.cross_entropy(np.zeros(3), [0]), "logits"),
    (lambda: M.cross_entropy(np.array([[np.nan, 0.0]]), [0]), "logits"),
    (lambda: M.top_k_accuracy(np.zeros((1, 3)), [0], 0), "k"),
    (lambda: M.accuracy(np.zeros((0,)), []), "logits_or_pred"),
    (lambda: M.confusion_matrix([0, 1], [0, 2], 2), "preds"),
    (lambda: M.confusion_matrix([0, 1], [0, 1], 0), "n_classes"),
    (lambda: M.per_class_accuracy(np.zeros((2, 3))), "cm"),
    (lambda: M.classification_report(np.zeros((1, 3)), [0], ["a", "b"]), "class_names"),
    (lambda: M.softmax(np.zeros((2, 0))), "logits"),
])
def test_bad_arguments_are_named(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# --------------------------------------------------------------------------- retrieval


def test_retrieval_metrics_by_hand():
    # Query A (label 1): retrieved labels 1 0 1 1 0, 4 relevant items in the catalog.
    #   rel = 1 0 1 1 0; P@1 = 1, P@3 = 2/3, P@4 = 3/4.
    #   AP@1 = 1 / min(1, 4) = 1;  AP@5 = (1 + 2/3 + 3/4) / min(5, 4) = (29/12) / 4 = 29/48.
    #   P@5 = 3/5; recall@1 = 1/4; recall@5 = 3/4.
    # Query B (label 0): retrieved labels 1 1 0 1 1, 1 relevant item.
    #   rel = 0 0 1 0 0; AP@1 = 0;  AP@5 = (1/3) / min(5, 1) = 1/3.
    #   P@1 = 0, P@5 = 1/5; recall@1 = 0; recall@5 = 1.
    neighbors = np.array([[1, 0, 1, 1, 0], [1, 1, 0, 1, 1]])
    out = M.retrieval_metrics(neighbors, [1, 0], ks=(1, 5), n_relevant=[4, 1])
    assert out["n_queries"] == 2
    assert out["precision@1"] == pytest.approx(0.5)
    assert out["precision@5"] == pytest.approx((3 / 5 + 1 / 5) / 2)
    assert out["map@1"] == pytest.approx(0.5)
    assert out["map@5"] == pytest.approx((29 / 48 + 1 / 3) / 2)      # = 15/32
    assert out["recall@1"] == pytest.approx(1 / 8)
    assert out["recall@5"] == pytest.approx(0.875)


def test_retrieval_metrics_retrieved_denominator_by_hand():
    # Query A of the test above: AP@5 = (1 + 2/3 + 3/4) / 3 relevant retrieved = 29/36.
    # A query with nothing relevant in its top 5 has AP 0.
    neighbors = np.array([[1, 0, 1, 1, 0], [2, 2, 2, 2, 2]])
    out = M.retrieval_metrics(neighbors, [1, 0], ks=(5,), ap_denominator="retrieved")
    assert out["map@5"] == pytest.approx((29 / 36 + 0) / 2)
    assert "recall@5" not in out


def test_retrieval_metrics_skips_queries_without_relevant_items_in_map():
    neighbors = np.array([[1, 1], [0, 1]])
    out = M.retrieval_metrics(neighbors, [1, 2], ks=(1, 2), n_relevant=[3, 0])
    assert out["n_queries_with_relevant"] == 1
    assert out["precision@1"] == pytest.approx(0.5)      # the second query counts here (0)
    assert out["map@2"] == pytest.approx(1.0)            # ... but not here
    assert out["recall@2"] == pytest.approx(2 / 3)


def test_retrieval_metrics_validates():
    with pytest.raises(ValueError, match="n_relevant"):
        M.retrieval_metrics(np.zeros((2, 3), int), [0, 0], ks=(1,))           # standard mAP needs counts
    with pytest.raises(ValueError, match="ks"):
        M.retrieval_metrics(np.zeros((2, 3), int), [0, 0], ks=(5,), n_relevant=[3, 3])
    with pytest.raises(ValueError, match="n_relevant"):
        M.retrieval_metrics(np.zeros((1, 3), int), [0], ks=(3,), n_relevant=[2])  # 3 retrieved > 2
    with pytest.raises(ValueError, match="query_labels"):
        M.retrieval_metrics(np.zeros((2, 3), int), [0], ks=(1,), n_relevant=[1, 1])
    with pytest.raises(ValueError, match="ap_denominator"):
        M.retrieval_metrics(np.zeros((1, 3), int), [0], ks=(1,), ap_denominator="both")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_retrieval_metrics_properties(seed):
    rng = np.random.default_rng(seed)
    m, k = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    q = rng.integers(0, 3, m)
    nb = rng.integers(0, 3, (m, k))
    n_rel = (nb == q[:, None]).sum(1) + rng.integers(0, 4, m)
    ks = tuple(range(1, k + 1))
    std = M.retrieval_metrics(nb, q, ks, n_relevant=n_rel)
    loose = M.retrieval_metrics(nb, q, ks, n_relevant=n_rel, ap_denominator="retrieved")
    for kk in ks:
        for key in ("precision", "map", "recall"):
            v = std[f"{key}@{kk}"]
            assert math.isnan(v) or 0.0 <= v <= 1.0 + 1e-12
        # Fewer relevant retrieved than min(k, n_relevant): the "retrieved" AP is never lower.
        if not math.isnan(std[f"map@{kk}"]):
            assert loose[f"map@{kk}"] >= std[f"map@{kk}"] - 1e-12
    recalls = [std[f"recall@{kk}"] for kk in ks]
    assert all(np.isnan(recalls)) or np.all(np.diff(recalls) >= -1e-12)   # recall grows with k


def test_combine_labels_gives_one_label_per_pair():
    a, b = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 1])
    both = M.combine_labels(a, b, n_b=2)
    np.testing.assert_array_equal(both, [0, 1, 2, 3, 5])
    with pytest.raises(ValueError, match="b"):
        M.combine_labels(a, b + 1, n_b=2)


def test_l2_normalize_blocks_separately():
    x = np.array([[3.0, 4.0, 0.0, 2.0, 7.0], [0.0, 0.0, 1.0, 0.0, 7.0]], np.float32)
    out = M.l2_normalize(x, blocks=[(0, 2), (2, 4)])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.6, 0.8, 0.0, 1.0, 7.0], rtol=1e-6)   # column 4 is in no block
    np.testing.assert_allclose(out[1], [0.0, 0.0, 1.0, 0.0, 7.0])              # zero block stays zero
    whole = M.l2_normalize(x)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(x[0], [3.0, 4.0, 0.0, 2.0, 7.0])             # input untouched
    with pytest.raises(ValueError, match="blocks"):
        M.l2_normalize(x, blocks=[(0, 6)])


def test_leave_one_out_known_answer():
    # Pairs of points on a line, each pair one class: every item's nearest other item is its
    # partner (relevant), the second nearest is from another pair (not relevant).
    x = np.array([[0.0], [1.0], [10.0], [11.0], [20.0], [21.0]], np.float32)
    labels = {"pair": np.array([0, 0, 1, 1, 2, 2]), "all": np.zeros(6, int)}
    out = M.leave_one_out(x, labels, ks=(1, 2))
    pair = out["pair"]
    assert pair["precision@1"] == 1.0 and pair["precision@2"] == 0.5
    assert pair["map@1"] == 1.0 and pair["map@2"] == 1.0     # 1 relevant item, found at rank 1
    assert pair["recall@1"] == 1.0
    assert out["all"]["precision@2"] == 1.0 and out["all"]["recall@2"] == pytest.approx(2 / 5)


def _reference_loo(x, y, ks):
    """Full float64 distance matrix, stable sort, self removed: the slow obvious way."""
    d = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1, kind="stable")[:, : max(ks)]
    n_rel = np.array([(y == v).sum() - 1 for v in y])
    return M.retrieval_metrics(y[nn], y, ks, n_relevant=n_rel)


def test_leave_one_out_matches_reference_and_chunking_does_not_matter():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(57, 8)).astype(np.float32)
    y = rng.integers(0, 4, 57)
    ks = (1, 3, 10)
    whole = M.leave_one_out(x, {"y": y}, ks, chunk_size=1024)
    assert whole["y"] == _reference_loo(x, y, ks)
    for chunk in (1, 7, 56):
        assert M.leave_one_out(x, {"y": y}, ks, chunk_size=chunk) == whole


@pytest.mark.parametrize("backend", ["brute", "balltree", "faiss-flat"])
def test_leave_one_out_takes_its_neighbours_from_the_index(backend, monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    x[7] = x[3]                      # a duplicate: self and its twin tie at distance 0
    y = rng.integers(0, 3, 40)
    index = KNNIndex(backend).fit(x)
    asked = []
    query = KNNIndex.query

    def spy(self, Q, k, exclude=None):
        asked.append((len(Q), k, None if exclude is None else exclude.tolist()))
        return query(self, Q, k, exclude=exclude)

    monkeypatch.setattr(KNNIndex, "query", spy)
    out = M.leave_one_out(index, {"y": y}, (1, 5), chunk_size=16)
    assert asked == [(16, 5, list(range(16))), (16, 5, list(range(16, 32))), (8, 5, list(range(32, 40)))]
    assert out == M.leave_one_out(x, {"y": y}, (1, 5)) == {"y": _reference_loo(x, y, (1, 5))}


def test_leave_one_out_with_an_approximate_index():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    hnsw = M.leave_one_out(KNNIndex("faiss-hnsw").fit(x), {"y": y}, (1, 5))
    assert hnsw == M.leave_one_out(x, {"y": y}, (1, 5))   # HNSW finds all at this size
    # 20 cells of ~10 items, 1 probed: some items see fewer than 5 + 1 candidates (id -1)
    starved = KNNIndex("faiss-ivf", nlist=20, nprobe=1).fit(x)
    with pytest.raises(ValueError, match="fewer than 9 neighbours"):
        M.leave_one_out(starved, {"y": y}, (9,))


def test_leave_one_out_handles_duplicates_and_validates():
    x = np.ones((4, 3), np.float32)                        # all identical: distance ties everywhere
    out = M.leave_one_out(x, {"y": np.array([0, 0, 1, 1])}, ks=(3,))
    assert out["y"]["precision@3"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="ks"):
        M.leave_one_out(x, {"y": np.zeros(4, int)}, ks=(4,))
    with pytest.raises(ValueError, match="labels"):
        M.leave_one_out(x, {"y": np.zeros(3, int)}, ks=(1,))
    with pytest.raises(ValueError, match="features"):
        M.leave_one_out(np.ones(4), {"y": np.zeros(4, int)}, ks=(1,))
    with pytest.raises(ValueError, match="features: contains NaN"):
        M.leave_one_out(np.full((4, 3), np.nan), {"y": np.zeros(4, int)}, ks=(1,))
    with pytest.raises(ValueError, match="features: expected a fitted KNNIndex"):
        M.leave_one_out(KNNIndex("brute"), {"y": np.zeros(4, int)}, ks=(1,))
