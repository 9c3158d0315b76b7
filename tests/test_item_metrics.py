"""The retrieval benchmark's scores (Recall@K, MAP@R) against a brute-force reference written here."""

import numpy as np
import pytest

from fashionrec.item_metrics import KS, format_recall, leave_one_out_recall, query_gallery


def ranked(q: np.ndarray, gallery: np.ndarray) -> list[int]:
    """Gallery rows by (distance, row): the documented tie rule, by plain sorting."""
    d = np.sqrt(((gallery.astype(np.float64) - q.astype(np.float64)) ** 2).sum(1))
    return sorted(range(len(gallery)), key=lambda j: (d[j], j))


def reference(query, q_items, gallery, g_items, ks, exclude_self=False):
    """Recall@K and MAP@R by the definitions, one query at a time."""
    recalls = {k: [] for k in ks}
    aps = []
    for i, (q, item) in enumerate(zip(query, q_items)):
        order = [j for j in ranked(q, gallery) if not (exclude_self and j == i)]
        rel = [g_items[j] == item for j in order]
        r = sum(g_items[j] == item for j in range(len(gallery)) if not (exclude_self and j == i))
        if r == 0:
            continue
        for k in ks:
            recalls[k].append(any(rel[:k]))
        hits, ap = 0, 0.0
        for pos in range(r):
            if rel[pos]:
                hits += 1
                ap += hits / (pos + 1)
        aps.append(ap / r)
    return {**{f"recall@{k}": sum(v) / len(v) for k, v in recalls.items()}, "map@r": float(np.mean(aps))}


def test_a_worked_example_on_a_line():
    # gallery on a line: items a, b, a, c at 0, 1, 2, 5; queries of a at 1.2 and c at 0
    gallery = np.array([[0.0], [1.0], [2.0], [5.0]])
    g_items = np.array(["a", "b", "a", "c"])
    query = np.array([[1.2], [0.0]])
    out = query_gallery(query, np.array(["a", "c"]), gallery, g_items, ks=(1, 2, 3, 4))
    # query a: order 1 (b), 2 (a), 0 (a), 3 -> first hit at rank 2; R = 2: P(2) * 1 = 1/2 -> AP 1/4
    # query c: order 0, 1, 2, 3 (c) -> first hit at rank 4; R = 1: nothing relevant in the first 1 -> 0
    assert out["recall@1"] == 0.0 and out["recall@2"] == 0.5 and out["recall@3"] == 0.5 and out["recall@4"] == 1.0
    assert out["map@r"] == pytest.approx((0.25 + 0.0) / 2, abs=1e-15)
    assert out["n_queries"] == 2 and out["n_gallery"] == 4 and out["ks"] == [1, 2, 3, 4]


def test_ties_go_to_the_lower_gallery_row():
    # rows 0 and 1 are the same point, of different items: the lower row ranks first
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    query = np.zeros((1, 2))
    assert query_gallery(query, ["y"], gallery, ["x", "y", "y"], ks=(1, 2))["recall@1"] == 0.0
    assert query_gallery(query, ["x"], gallery, ["x", "y", "y"], ks=(1, 2))["recall@1"] == 1.0
    assert query_gallery(query, ["y"], gallery, ["x", "y", "y"], ks=(1, 2))["recall@2"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_query_gallery_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_items, dim = 15, 6
    g_items = rng.integers(0, n_items, 80)
    g_items[:n_items] = np.arange(n_items)  # every item in the gallery
    gallery = rng.normal(size=(80, dim)).astype(np.float32) + g_items[:, None] * 0.15
    gallery[40] = gallery[3]  # an exact tie between rows of (maybe) different items
    q_items = rng.integers(0, n_items, 50)
    query = rng.normal(size=(50, dim)).astype(np.float32) + q_items[:, None] * 0.15
    query[7] = gallery[3]
    ks = (1, 5, 10, 20)
    got = query_gallery(query, q_items, gallery, g_items, ks)
    want = reference(query, q_items, gallery, g_items, ks)
    for k in ks:
        assert got[f"recall@{k}"] == want[f"recall@{k}"]  # exact: hits over queries
    assert got["map@r"] == pytest.approx(want["map@r"], rel=1e-12)
    assert 0 < got["recall@1"] < got["recall@20"] <= 1


def test_other_backends_give_the_same_scores():
    rng = np.random.default_rng(5)
    items = rng.integers(0, 10, 60)
    feats = rng.normal(size=(60, 8)) + items[:, None] * 0.3
    query, gallery = feats[:20], feats[20:]
    brute = query_gallery(query, items[:20], gallery, items[20:], (1, 10))
    assert query_gallery(query, items[:20], gallery, items[20:], (1, 10), backend="balltree") == brute


def test_leave_one_out_matches_brute_force():
    rng = np.random.default_rng(3)
    items = rng.integers(0, 12, 70)
    items[-1] = 99  # an item with one image: not asked, but still in the gallery
    feats = (rng.normal(size=(70, 5)) + items[:, None] * 0.2).astype(np.float32)
    ks = (1, 3, 10)
    got = leave_one_out_recall(feats, items, ks)
    asked = [i for i in range(70) if (items == items[i]).sum() >= 2]
    want = {k: [] for k in ks}
    for i in asked:
        order = [j for j in ranked(feats[i], feats) if j != i]
        for k in ks:
            want[k].append(any(items[j] == items[i] for j in order[:k]))
    assert got["n_queries"] == len(asked) == 69 and got["n_gallery"] == 69
    for k in ks:
        assert got[f"recall@{k}"] == sum(want[k]) / len(asked)
    assert got["map@r"] == pytest.approx(_loo_map(feats, items, asked), rel=1e-12)


def _loo_map(feats, items, asked):
    aps = []
    for i in asked:
        order = [j for j in ranked(feats[i], feats) if j != i]
        r = int((items == items[i]).sum()) - 1
        hits, ap = 0, 0.0
        for pos in range(r):
            if items[order[pos]] == items[i]:
                hits += 1
                ap += hits / (pos + 1)
        aps.append(ap / r)
    return float(np.mean(aps))


def test_a_query_item_missing_from_the_gallery_is_an_error():
    with pytest.raises(ValueError, match="'z' has no gallery image"):
        query_gallery(np.zeros((2, 3)), ["a", "z"], np.ones((2, 3)), ["a", "b"])


def test_cut_offs_beyond_the_gallery_are_left_out():
    out = query_gallery(np.zeros((1, 2)), [0], np.eye(2)[:2] * [1, 2], [0, 1])
    assert out["ks"] == [1] and KS[0] == 1 and "recall@10" not in out


def test_the_table_prints_percentages():
    out = {"metric": {"ks": [1, 10], "recall@1": 0.5, "recall@10": 0.975, "map@r": 0.25}}
    text = format_recall(out)
    assert "R@1" in text and "50.0" in text and "97.5" in text and "25.0" in text
