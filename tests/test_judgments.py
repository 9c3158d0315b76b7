"""Side-by-side judgments: the SQLite study store, its statistics, team-draft interleaving, the report.

Fast (no model, no index): systems are names with made-up index digests, judges are simulations.
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from fashionrec.errors import UserError
from fashionrec.judgments import JudgmentRefused, JudgmentStore, stats
from fashionrec.judgments.analysis import analyze, bradley_terry_ranking, format_summary, pairwise, write_report
from fashionrec.judgments.interleave import credit, interleaving_preference, team_draft

SRC = Path(__file__).resolve().parents[1] / "src"


def _study(path, systems="ABC", queries=10, study="demo", **kw) -> JudgmentStore:
    store = JudgmentStore.open(path, study=study, **kw)
    for s in systems:
        store.add_system(s, f"/indexes/{s}", s * 64, {"k": 5})
    store.add_queries([f"q{i}.jpg" for i in range(queries)])
    return store


def _one_line(e: BaseException, *fragments):
    text = str(e.value if hasattr(e, "value") else e)
    assert "\n" not in text, text
    for f in fragments:
        assert f in text, (f, text)


# ---------------------------------------------------------------------------------------------- store


def test_round_trip_and_a_restarted_study_continues(tmp_path):
    db = tmp_path / "study.db"
    store = _study(db)
    pair = store.next_pair("judge-1", random.Random(1))
    assert pair["new"] and {pair["left"], pair["right"]} <= set("ABC") and pair["left"] != pair["right"]
    marks = [{"side": "left", "item": 17, "rank": 1, "relevant": True},
             {"side": "right", "item": "42", "rank": 2, "relevant": False}]
    store.answer(pair["pair_id"], "judge-1", "left", 4.5, marks=marks)
    shown = store.next_pair("judge-1", random.Random(2))  # shown, then the server goes down
    store.close()

    again = JudgmentStore.open(db, study="demo")
    assert [s["name"] for s in again.systems()] == list("ABC")
    assert again.systems()[0]["options"] == {"k": 5}
    again.add_system("A", "/indexes/A", "A" * 64, {"k": 5})  # the restart registers the same systems: a no-op
    (answer,) = again.answers()
    assert (answer["pair_id"], answer["choice"], answer["seconds"], answer["judge"]) == (pair["pair_id"], "left",
                                                                                        4.5, "judge-1")
    got = [(m["system"], m["item"], m["rank"], m["relevant"]) for m in again.marks()]
    assert sorted(got) == sorted([(pair["left"], "17", 1, 1), (pair["right"], "42", 2, 0)])
    resumed = again.next_pair("judge-1", random.Random(3))
    assert resumed["pair_id"] == shown["pair_id"] and not resumed["new"]
    assert (resumed["left"], resumed["right"]) == (shown["left"], shown["right"])
    progress = again.progress("judge-1", limit=20)
    assert progress == {"judge": "judge-1", "answered": 1, "shown": 2, "pending": shown["pair_id"], "total": 20,
                        "remaining": 19, "done": False}
    assert again.info()["answers"] == 1 and again.info()["name"] == "demo"
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_each_judge_sees_each_combination_once_then_is_done(tmp_path):
    store = _study(tmp_path / "s.db", queries=2)
    seen = []
    while (p := store.next_pair("j", random.Random(len(seen)))) is not None:
        seen.append((p["query"]["id"], *sorted((p["left"], p["right"]))))
        store.answer(p["pair_id"], "j", "same")
    assert sorted(seen) == sorted({(q, a, b) for q in (1, 2) for a, b in (("A", "B"), ("A", "C"), ("B", "C"))})
    assert store.progress("j")["done"] and store.progress("j")["total"] == 6
    assert store.next_pair("k", 0, limit=0) is None
    store.close()


def test_another_study_schema_or_file_is_refused_in_one_line(tmp_path):
    db = tmp_path / "study.db"
    _study(db).close()
    with pytest.raises(UserError) as e:
        JudgmentStore.open(db, study="other")
    _one_line(e, str(db), "'demo'", "'other'")
    JudgmentStore.open(db).close()  # no study named: whatever the file holds (analysis)
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    con.commit()
    con.close()
    with pytest.raises(UserError) as e:
        JudgmentStore.open(db, study="demo")
    _one_line(e, str(db), "schema version 99")

    text = tmp_path / "notes.db"
    text.write_text("not a database at all, just words " * 100)
    with pytest.raises(UserError) as e:
        JudgmentStore.open(text, study="demo")
    _one_line(e, str(text))
    assert text.read_text().startswith("not a database")

    foreign = tmp_path / "shop.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE orders (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(UserError) as e:
        JudgmentStore.open(foreign, study="demo")
    _one_line(e, str(foreign), "not a fashionrec judgments study")
    assert sqlite3.connect(foreign).execute("SELECT name FROM sqlite_master").fetchall() == [("orders",)]
    with pytest.raises(UserError) as e:
        JudgmentStore.open(tmp_path / "missing.db", create=False)
    _one_line(e, "missing.db", "no such")


def test_a_changed_index_is_refused(tmp_path):
    store = _study(tmp_path / "s.db")
    store.check_systems({"A": "A" * 64, "B": "B" * 64})
    with pytest.raises(UserError) as e:
        store.check_systems({"A": "A" * 64, "B": "f" * 64})
    _one_line(e, "'B'", "changed since the study began", "BBBBBBBBBBBB", "ffffffffffff")
    with pytest.raises(UserError):
        store.add_system("B", "/indexes/B", "f" * 64, {"k": 5})
    with pytest.raises(UserError) as e:
        store.add_system("B", "/indexes/B", "B" * 64, {"k": 10})
    _one_line(e, "'B'", "options")
    with pytest.raises(UserError) as e:
        store.check_systems({"Z": "0" * 64})
    _one_line(e, "no system 'Z'")
    assert [(s["name"], s["index_sha256"]) for s in store.systems()] == [(s, s * 64) for s in "ABC"]
    store.close()


def test_answers_the_study_cannot_take_are_refused_and_nothing_is_lost(tmp_path):
    store = _study(tmp_path / "s.db")
    p1 = store.next_pair("j1", 1)
    store.answer(p1["pair_id"], "j1", "right", 2.0)
    p2 = store.next_pair("j2", 2)
    cases = [((999, "j1", "left"), 404, "never shown"), ((p2["pair_id"], "j1", "left"), 403, "another judge"),
             ((p1["pair_id"], "j1", "left"), 409, "already answered"), ((p2["pair_id"], "j2", "up"), 400, "choice"),
             ((p2["pair_id"], "", "left"), 400, "judge id")]
    for args, status, words in cases:
        with pytest.raises(JudgmentRefused) as e:
            store.answer(*args)
        assert e.value.status == status
        _one_line(e, words)
    for bad in ([{"side": "middle", "item": 1, "rank": 1, "relevant": True}],
                [{"side": "left", "item": 1, "rank": 0, "relevant": True}],
                [{"side": "left", "item": 1, "rank": 1, "relevant": True}] * 2):
        with pytest.raises(JudgmentRefused):
            store.answer(p2["pair_id"], "j2", "left", marks=bad)
    with pytest.raises(JudgmentRefused):
        store.answer(p2["pair_id"], "j2", "left", seconds=float("nan"))
    assert [(a["pair_id"], a["choice"]) for a in store.answers()] == [(p1["pair_id"], "right")]
    assert store.marks() == []
    con = sqlite3.connect(tmp_path / "s.db")
    for sql in ("DELETE FROM answers", "UPDATE answers SET choice = 'left'", "DELETE FROM pairs"):
        with pytest.raises(sqlite3.DatabaseError, match="stored judgments are kept"):
            con.execute(sql)
    con.close()
    store.answer(p2["pair_id"], "j2", "same")  # the refusals left the pair answerable
    assert len(store.answers()) == 2
    store.close()


def test_a_thousand_answers_from_threads_at_once(tmp_path):
    store = _study(tmp_path / "s.db", queries=25)
    pairs = [None] * 1000  # 1,000 judges load the page at once, each gets a pair

    def show(judges):
        for j in judges:
            pairs[j] = store.next_pair(f"j{j}", j)

    threads = [threading.Thread(target=show, args=(range(i, 1000, 16),)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p["pair_id"] for p in pairs}) == 1000 and len(store.pairs()) == 1000
    good = [(p["pair_id"], p["judge"], random.Random(p["pair_id"]).choice(["left", "right", "same"])) for p in pairs]
    bad = [(p["pair_id"], p["judge"], "left") for p in pairs[:100]]  # the same pair posted twice (a double click)
    bad += [(p["pair_id"], "intruder", "left") for p in pairs[100:150]] + [(10**6 + i, "j0", "left") for i in range(50)]
    jobs = good + bad
    random.Random(0).shuffle(jobs)
    accepted, refused, failed, lock = {}, [], [], threading.Lock()
    start = threading.Barrier(32)

    def post(chunk):
        start.wait()
        for pair_id, judge, choice in chunk:
            try:
                store.answer(pair_id, judge, choice, seconds=1.0)
                with lock:
                    assert pair_id not in accepted
                    accepted[pair_id] = choice
            except JudgmentRefused as e:
                refused.append(e.status)
            except Exception as e:  # noqa: BLE001 (anything else is what the test is looking for)
                failed.append(repr(e))

    threads = [threading.Thread(target=post, args=(jobs[i::32],)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    assert len(accepted) == 1000 and len(refused) == 200
    assert sorted(set(refused)) == [403, 404, 409] and refused.count(409) == 100
    stored = {a["pair_id"]: a["choice"] for a in store.answers()}
    assert stored == accepted  # every accepted answer is there, as it was accepted
    later = threading.Thread(target=store.progress, args=("j1",))  # a new worker thread's first call...
    later.start()
    later.join()
    assert len(store._all) <= 2  # ...closed the ended threads' connections: only the main's and its own are left
    store.close()


_CHILD = """
import random, sys
from fashionrec.judgments import JudgmentStore
store = JudgmentStore.open(sys.argv[1], study="demo")
for i in range(10**6):
    pair = store.next_pair("child", random.Random(i))
    if pair is None:
        break
    store.answer(pair["pair_id"], "child", random.Random(-i).choice(["left", "right", "same"]), 0.1)
    print(pair["pair_id"], flush=True)
"""


def test_a_killed_writer_loses_no_committed_answer(tmp_path):
    db = tmp_path / "s.db"
    _study(db, queries=200).close()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(db)], stdout=subprocess.PIPE, text=True, env=env)
    committed = []
    try:
        for line in child.stdout:
            committed.append(int(line))
            if len(committed) == 40:
                os.kill(child.pid, signal.SIGKILL)  # mid-study, likely inside the next transaction
                break
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL and len(committed) == 40
    store = JudgmentStore.open(db, study="demo")
    answered = {a["pair_id"] for a in store.answers()}
    assert set(committed) <= answered  # every answer the child saw committed is there
    assert {a["judge"] for a in store.answers()} == {"child"}
    assert store._con().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    pair = store.next_pair("child", 7)  # the restarted study continues: the pending pair or a new one
    store.answer(pair["pair_id"], "child", "left")
    assert len(store.answers()) == len(answered) + 1
    store.close()


# ---------------------------------------------------------------------------------------------- statistics


def test_statistics_against_published_values():
    lo, hi = stats.wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)  # Brown, Cai & DasGupta 2001's example form
    assert stats.wilson_interval(0, 0) is None
    yes_yes, yes_no, no_yes, no_no = 20, 5, 10, 15  # Cohen's kappa, the textbook 50-item example: 0.4
    a = ["y"] * (yes_yes + yes_no) + ["n"] * (no_yes + no_no)
    b = ["y"] * yes_yes + ["n"] * yes_no + ["y"] * no_yes + ["n"] * no_no
    assert stats.cohen_kappa(a, b) == pytest.approx(0.4)
    fleiss = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert stats.fleiss_kappa(fleiss) == pytest.approx(0.2099, abs=1e-4)  # Fleiss 1971's worked example
    assert stats.cohen_kappa(["y", "y"], ["y", "y"]) is None
    assert stats.precision_at_k([1, 0, 1, 0], 4) == 0.5
    assert stats.ndcg_at_k([1, 0, 1], 3, n_relevant=2) == pytest.approx(1.5 / (1 + 1 / np.log2(3)))
    assert stats.ndcg_at_k([0, 0], 2) is None
    assert stats.judgments_needed(0.6) == 93  # 1.96² 0.24 / 0.1²
    assert stats.judgments_needed(0.6, power=0.8) > 93 and stats.judgments_needed(0.5) is None


def test_bradley_terry_is_the_maximum_likelihood_fit():
    wins = np.array([[0, 7, 9], [3, 0, 6], [1, 4, 0]], float)
    bt = stats.bradley_terry(wins)
    p, n = bt.strengths, wins + wins.T
    expected = [(n[i] * p[i] / (p[i] + p)).sum() - n[i, i] / 2 for i in range(3)]
    assert np.allclose(wins.sum(axis=1), expected, atol=1e-6)  # the likelihood equations (Hunter 2004, eq. 2)
    assert bt.converged and not bt.regularised and bt.ranking == [0, 1, 2]
    never_won = stats.bradley_terry([[0, 5], [0, 0]])
    assert never_won.regularised and never_won.ranking == [0, 1] and never_won.strengths[1] > 0


PLANTED = {("A", "B"): (0.55, 0.20), ("A", "C"): (0.65, 0.20), ("B", "C"): (0.55, 0.20)}  # P(first wins), P(same)


def _simulated_answers(seed: int, n: int = 300, queries: int = 40) -> list[dict]:
    """Judges answering with the planted probabilities; left and right in random order."""
    rng = np.random.default_rng(seed)
    pairs = list(PLANTED)
    out = []
    for _ in range(n):
        a, b = pairs[rng.integers(len(pairs))]
        win, same = PLANTED[(a, b)]
        u = rng.random()
        winner = "same" if u < same else a if u < same + win else b
        left, right = (a, b) if rng.random() < 0.5 else (b, a)
        choice = "same" if winner == "same" else "left" if winner == left else "right"
        out.append({"query_id": int(rng.integers(queries)), "left": left, "right": right, "choice": choice,
                    "judge": f"j{rng.integers(5)}"})
    return out


def test_simulated_judges_recover_the_planted_ordering_inside_the_interval():
    """200 seeded studies of 300 answers among three systems: Bradley-Terry recovers A > B > C and
    the true win rate (P(win) + P(same)/2) lies inside the reported 95 % Wilson interval in at
    least 95 % of them (ties counted half make the interval somewhat conservative)."""
    truth = {p: w + s / 2 for p, (w, s) in PLANTED.items()}
    ordered, covered, boot_covered, checks, per_pair = 0, 0, 0, 0, {p: 0 for p in PLANTED}
    for seed in range(200):
        answers = _simulated_answers(seed)
        ordered += bradley_terry_ranking(answers, list("ABC"))["ranking"] == list("ABC")
        for row in pairwise(answers, list("ABC"), n_boot=500, seed=seed):
            true = truth[(row["a"], row["b"])]
            checks += 1
            inside = row["wilson"][0] <= true <= row["wilson"][1]
            covered += inside
            per_pair[(row["a"], row["b"])] += inside
            boot_covered += row["bootstrap"][0] <= true <= row["bootstrap"][1]
    assert checks == 600
    assert ordered >= 190, ordered
    assert covered >= 0.95 * checks, covered
    assert min(per_pair.values()) >= 190, per_pair  # and for each pair of systems on its own
    assert boot_covered >= 0.90 * checks, boot_covered  # the percentile bootstrap runs a little narrow


def test_a_study_through_the_store_is_analysed_as_answered(tmp_path):
    store = _study(tmp_path / "s.db", queries=30, synchronous="NORMAL")
    rng, expected = np.random.default_rng(5), {}
    for judge in ("ann", "bob", "cy"):
        for _ in range(60):
            p = store.next_pair(judge, rng, overlap=0.5)
            (a, b), left_is_a = sorted((p["left"], p["right"])), p["left"] < p["right"]
            win, same = PLANTED[(a, b)]
            u = rng.random()
            choice = "same" if u < same else ("left" if left_is_a else "right") if u < same + win else (
                "right" if left_is_a else "left")
            key = expected.setdefault((a, b), [0, 0, 0])
            key[{"same": 2}.get(choice, 0 if (choice == "left") == left_is_a else 1)] += 1
            marks = [{"side": s, "item": f"{p['query']['id']}-{s}-{r}", "rank": r, "relevant": bool(rng.random() < .6)}
                     for s in ("left", "right") for r in range(1, 6)]
            store.answer(p["pair_id"], judge, choice, float(rng.uniform(1, 9)), marks=marks)
    result = analyze(store)
    assert result["counts"]["answers"] == 180 and result["counts"]["judges"] == 3
    assert {(r["a"], r["b"]): [r["wins"], r["losses"], r["ties"]] for r in result["pairs"]} == expected
    assert result["bradley_terry"]["ranking"][0] == "A"
    assert result["agreement"]["preferences"]["units"] > 0 and result["agreement"]["preferences"]["fleiss"] is not None
    assert set(result["marks"]) == set("ABC") and 0.4 < result["marks"]["A"]["p@5"] < 0.8
    text = format_summary(result)
    ab = next(r for r in result["pairs"] if (r["a"], r["b"]) == ("A", "B"))
    assert f"[{100 * ab['wilson'][0]:.1f}%, {100 * ab['wilson'][1]:.1f}%]" in text
    paths = write_report(result, tmp_path / "report")
    saved = json.loads(paths["json"].read_text())
    assert saved["pairs"] == json.loads(json.dumps(result["pairs"]))
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    store.close()
    empty = _study(tmp_path / "empty.db")
    nothing = analyze(tmp_path / "empty.db")
    assert nothing["pairs"] == [] and nothing["bradley_terry"]["ranking"] == []
    write_report(nothing, tmp_path / "empty")
    empty.close()


# ---------------------------------------------------------------------------------------------- interleaving


class Coins:
    """A scripted coin: heads (team a first) or tails, in the order given; counts the flips."""

    def __init__(self, *heads):
        self.heads, self.flips = list(heads), 0

    def random(self):
        self.flips += 1
        return 0.0 if self.heads.pop(0) else 0.9


def test_team_draft_on_the_papers_rankings():
    a, b = list("abcdgh"), list("beafgh")  # Radlinski, Kurup & Joachims 2008, Figure 1's rankings
    assert team_draft(a, b, 6, Coins(True, True, True)) == (list("abcedf"), list("ababab"))
    assert team_draft(a, b, 6, Coins(False, False, False)) == (list("baecfd"), list("bababa"))
    coins = Coins(True, False, True)
    merged, teams = team_draft(a, b, 6, coins)
    assert coins.flips == 3  # one coin per round: only when the teams are the same size
    assert merged == list("abecdf") and teams == list("abbaab")
    # duplicates skipped: 2 and 1 are in both; once A's last item is in, A has nothing left: the merge stops
    assert team_draft([1, 2, 3, 4], [2, 1, 5, 6], 10, Coins(True, True, True)) == ([1, 2, 3, 5, 4], list("ababa"))
    assert team_draft([1, 2], [1, 2], 5, Coins(True)) == ([1, 2], ["a", "b"])  # B's 1 is shown: it takes 2
    assert team_draft([1], [], 3, 0) == ([], [])  # stops when either ranking has nothing left


def test_team_draft_keeps_its_definition_on_random_rankings():
    rng = random.Random(0)
    first_a = 0
    for case in range(500):
        pool = list(range(30))
        ra, rb = rng.sample(pool, rng.randint(0, 15)), rng.sample(pool, rng.randint(0, 15))
        k = rng.randint(0, 20)
        merged, teams = team_draft(ra, rb, k, random.Random(case))
        assert len(merged) == len(set(merged)) <= k
        counts = {"a": 0, "b": 0}
        for i, (item, team) in enumerate(zip(merged, teams)):
            assert counts[team] <= counts["a" if team == "b" else "b"]  # the team with fewer picks goes next
            own = ra if team == "a" else rb
            assert item == next(x for x in own if x not in merged[:i])  # its best item not yet shown
            counts[team] += 1
        left_a = [x for x in ra if x not in merged]
        left_b = [x for x in rb if x not in merged]
        assert len(merged) == k or not left_a or not left_b
        if ra and rb and k:
            first_a += teams[0] == "a"
        disjoint_a, disjoint_b = [f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]
        _, t = team_draft(disjoint_a, disjoint_b, 8, random.Random(case))
        assert all(sorted(t[i:i + 2]) == ["a", "b"] for i in range(0, 8, 2))  # alternation, round by round
    assert 200 < first_a < 300  # the coin is fair


def test_click_credit():
    assert credit(list("abab"), [1, 2, 3, 4], [1, 3, 2]) == "a"
    assert credit(list("abab"), [1, 2, 3, 4], [1, 2]) is None
    assert credit(list("abab"), [1, 2, 3, 4], [9]) is None
    assert credit(list("abab"), [1, 2, 3, 4], ["2", "2", 1, 4]) == "b"  # distinct items, as text


def _click_study(store, quality_b: float, n: int, seed: int):
    """Shop visitors: A ranks by true relevance with little noise, B with ``quality_b`` noise; each
    visitor clicks down the interleaved list with probability relevance x position bias."""
    rng = np.random.default_rng(seed)
    for v in range(n):
        rel = rng.beta(1, 3, size=40)
        items = [f"p{i}" for i in range(40)]
        rank_a = [items[i] for i in np.argsort(-(rel + rng.normal(0, 0.05, 40)))]
        rank_b = [items[i] for i in np.argsort(-(rel + rng.normal(0, quality_b, 40)))]
        merged, teams = team_draft(rank_a, rank_b, 10, random.Random(seed * 10**6 + v))
        imp = store.record_impression(f"q{v}", "A", "B", merged, teams, seed=v, judge_id=f"visitor{v}")
        for r, item in enumerate(merged):
            if rng.random() < rel[int(item[1:])] / (1 + r) ** 0.5:
                store.record_click(imp, item, judge_id=f"visitor{v}")


def test_interleaving_detects_the_better_system(tmp_path):
    store = _study(tmp_path / "shop.db", systems="AB", synchronous="NORMAL")
    _click_study(store, quality_b=0.6, n=400, seed=1)
    (il,) = analyze(store)["interleaving"]
    assert (il["a"], il["b"], il["impressions"]) == ("A", "B", 400)
    assert il["separated"] and il["interval"][0] > 0.5 and il["win_rate"] > 0.6
    assert il == {"a": "A", "b": "B", **interleaving_preference(store.impressions())}
    imp = store.impressions()[0]
    with pytest.raises(JudgmentRefused) as e:
        store.record_click(imp["id"], "not-shown", judge_id=imp["judge"])
    assert e.value.status == 400
    with pytest.raises(JudgmentRefused) as e:
        store.record_click(10**6, imp["items"][0][0])
    assert e.value.status == 404
    with pytest.raises(JudgmentRefused) as e:
        store.record_click(imp["id"], imp["items"][0][0], judge_id="someone-else")
    assert e.value.status == 403
    store.close()
    same = _study(tmp_path / "same.db", systems="AB", synchronous="NORMAL")
    _click_study(same, quality_b=0.05, n=200, seed=2)  # equally good: no preference claimed
    (il,) = analyze(same)["interleaving"]
    assert not il["separated"] and il["impressions_needed"]["more"] > 0
    same.close()
