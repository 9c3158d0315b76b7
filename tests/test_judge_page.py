"""The judging page: its API (FastAPI's test client) and a study run by two judges in Chromium.

Three systems over tiny indexes: ``sys-alpha`` (the session's index, k 3), ``sys-beta`` (the same
index filtered to in-stock items and re-ranked by price, k 4) and ``sys-gamma`` (a copy of the
index on another k-NN backend, k 5). Their list lengths differ, so a scripted judge can prefer a
system it cannot name, and the expected win counts follow from what the page showed.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from fashionrec.errors import UserError
from fashionrec.judgments import JudgmentStore
from fashionrec.judgments.analysis import analyze
from fashionrec.judgments.app import COOKIE, create_judge_app
from fashionrec.judgments.cli import judge, judgments_report, prepare_study
from fashionrec.judgments.systems import load_queries, load_systems

NAMES = {3: "sys-alpha", 4: "sys-beta", 5: "sys-gamma"}  # list length -> system
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def system_files(built_index, tmp_path_factory):
    from fashionrec.catalog_index import CatalogIndex
    from fashionrec.knn import KNNIndex

    out = tmp_path_factory.mktemp("systems")
    other = CatalogIndex.load(built_index)
    other.knn = KNNIndex(backend="brute").fit(other.search_vectors(other.features))
    other.save(out / "brute-index")
    return [_write(out / "alpha.yaml", f"name: sys-alpha\nindex: {built_index}\nk: 3\n"),
            _write(out / "beta.yaml", f"name: sys-beta\nindex: {built_index}\nk: 4\nwhere: [in_stock]\n"
                                      f"rerank: {{price: 1.0}}\n"),
            _write(out / "gamma.yaml", "name: sys-gamma\nindex: brute-index\nk: 5\n")]  # relative to the file


@pytest.fixture(scope="module")
def systems(system_files):
    return load_systems(system_files, device="cpu")


def _client(tmp_path, systems, mode="pairs", **kw):
    store, loaded, queries = prepare_study(systems, tmp_path / "study.db", sample=6, seed=0)
    app = create_judge_app(store, loaded, queries, limit=kw.pop("limit", 10), mode=mode, seed=1, **kw)
    return store, TestClient(app)


def _leaks(text: str, systems) -> list[str]:
    words = [s.name for s in systems] + [str(s.index_dir) for s in systems] + [str(s.source) for s in systems]
    return [w for w in words if w in text]


def test_pairs_api_hides_the_systems_and_refuses_what_it_cannot_take(tmp_path, systems):
    store, judge_a = _client(tmp_path, systems)
    with judge_a, TestClient(judge_a.app) as judge_b:
        info = judge_a.get("/api/info")
        assert COOKIE in info.cookies and "httponly" in info.headers["set-cookie"].lower()  # the first visit
        texts = [info.text, judge_a.get("/healthz").text]
        first = judge_a.get("/api/next")
        assert first.status_code == 200 and COOKIE not in first.cookies  # kept: the same judge
        pair = first.json()
        assert judge_a.get("/api/next").json()["pair"] == pair["pair"]  # unanswered: the same pair again
        assert pair["progress"] == {"answered": 0, "total": 10, "done": False}
        lengths = (len(pair["left"]), len(pair["right"]))
        assert set(lengths) <= set(NAMES) and lengths[0] != lengths[1]
        for url in [pair["query"]["image_url"], *(i["image_url"] for i in pair["left"] + pair["right"])]:
            r = judge_a.get(url)
            assert r.status_code == 200 and r.headers["content-type"].startswith("image/"), url
        pid = pair["pair"]
        other = judge_b.get("/api/next").json()["pair"]
        refused = {
            403: [judge_b.post("/api/answer", json={"pair": pid, "choice": "left"}),
                  judge_b.get(f"/api/pair/{pid}/query/image"), judge_b.get(f"/api/pair/{pid}/left/1/image")],
            404: [judge_a.post("/api/answer", json={"pair": 9999, "choice": "left"}),
                  judge_a.get("/api/pair/9999/query/image"), judge_a.get(f"/api/pair/{pid}/middle/1/image"),
                  judge_a.get(f"/api/pair/{pid}/left/99/image"), judge_a.get("/api/impression")],
            400: [judge_a.post("/api/answer", json={"pair": pid, "choice": "both"}),
                  judge_a.post("/api/answer", json={"pair": pid, "choice": "left",
                                                    "marks": [{"side": "left", "rank": 99, "relevant": True}]})],
            422: [judge_a.post("/api/answer", json={"choice": "left"})],
        }
        marks = [{"side": "left", "rank": 1, "relevant": True}, {"side": "right", "rank": 2, "relevant": False}]
        ok = judge_a.post("/api/answer", json={"pair": pid, "choice": "right", "seconds": 2.5, "marks": marks})
        assert ok.status_code == 200 and ok.json()["progress"]["answered"] == 1
        refused[409] = [judge_a.post("/api/answer", json={"pair": pid, "choice": "left"})]
        for status, responses in refused.items():
            for r in responses:
                assert r.status_code == status and r.json()["error"] and "\n" not in r.json()["error"], (status, r.text)
        nxt = judge_a.get("/api/next")
        assert nxt.json()["pair"] not in (pid, other) and nxt.json()["progress"]["answered"] == 1
        texts += [first.text, ok.text, nxt.text] + [r.text for rs in refused.values() for r in rs]
        assert not [w for t in texts for w in _leaks(t, systems)]
    (answer,) = store.answers()
    assert (answer["pair_id"], answer["choice"], answer["seconds"]) == (pid, "right", 2.5)
    by_name = {s.name: s for s in systems}
    shown = {side: by_name[answer[side]].rank(answer["query"]) for side in ("left", "right")}
    assert [(m["system"], m["item"], m["rank"], m["relevant"]) for m in store.marks()] == sorted(
        [(answer["left"], shown["left"][0]["item"], 1, 1), (answer["right"], shown["right"][1]["item"], 2, 0)],
        key=lambda m: [s.name for s in systems].index(m[0]))
    store.close()


def test_a_burst_of_answers_stores_each_pair_once(tmp_path, systems):
    """1,000 answers posted at once by 20 judges (50 for each one's pair, from 8 threads): each pair
    is answered once, the rest are 409s, and a judge answering another's pair is a 403."""
    store, client = _client(tmp_path, systems)
    judges = [f"judge-{i:02d}-" + "x" * 12 for i in range(20)]
    statuses, lock = [], threading.Lock()
    with client:
        pairs = [client.get("/api/next", headers={"cookie": f"{COOKIE}={j}"}).json()["pair"] for j in judges]
        posts = [(judges[(i // 50 + (i % 50 == 49)) % 20], pairs[i // 50], "left right same".split()[i % 3])
                 for i in range(1000)]  # one of each 50 comes from the next judge: another's pair

        def post(chunk):
            for j, pid, choice in chunk:
                r = client.post("/api/answer", json={"pair": pid, "choice": choice, "seconds": 1},
                                headers={"cookie": f"{COOKIE}={j}"})
                with lock:
                    statuses.append(r.status_code)

        threads = [threading.Thread(target=post, args=(posts[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(set(statuses)) == [200, 403, 409] and statuses.count(200) == 20 and statuses.count(403) == 20
    assert sorted(a["pair_id"] for a in store.answers()) == sorted(pairs)
    store.close()


def test_interleaved_clicks_are_credited_to_the_contributing_system(tmp_path, systems):
    three, loaded, queries = prepare_study(systems, tmp_path / "three.db", sample=2)
    with pytest.raises(UserError, match="merges two systems"):
        create_judge_app(three, loaded, queries, mode="interleave")
    three.close()
    store, user = _client(tmp_path, systems[:2], mode="interleave", k=6)
    with user, TestClient(user.app) as stranger:
        assert user.get("/api/next").status_code == 404
        shown = []
        for _ in range(3):
            body = user.get("/api/impression").json()
            assert len(body["items"]) == 6 and not _leaks(json.dumps(body), systems) and "team" not in json.dumps(body)
            assert user.get(body["items"][0]["image_url"]).status_code == 200
            assert user.get(body["query"]["image_url"]).status_code == 200
            shown.append(body)
        teams = {i["id"]: dict(i["items"]) for i in store.impressions()}
        # the first two impressions: click every item team a contributed; the third: one of team b's
        clicks = [(b["impression"], item) for b in shown[:2] for item, t in teams[b["impression"]].items() if t == "a"]
        clicks.append(next((shown[2]["impression"], item) for item, t in teams[shown[2]["impression"]].items()
                           if t == "b"))
        for imp, item in clicks:
            assert user.post("/api/click", json={"impression": imp, "item": item}).status_code == 200
        imp = shown[0]["impression"]
        assert stranger.post("/api/click", json={"impression": imp, "item": clicks[0][1]}).status_code == 403
        assert stranger.get(f"/api/impression/{imp}/1/image").status_code == 403
        assert user.post("/api/click", json={"impression": imp, "item": "not/shown.jpg"}).status_code == 400
        assert user.post("/api/click", json={"impression": 999, "item": clicks[0][1]}).status_code == 404
    (il,) = analyze(store)["interleaving"]
    assert (il["a"], il["b"], il["wins"], il["losses"], il["ties"]) == ("sys-alpha", "sys-beta", 2, 1, 0)
    store.close()


def test_system_files_queries_and_a_changed_index_are_checked_in_one_line(tmp_path, systems, built_index):
    def refused(path, *fragments):
        with pytest.raises(UserError) as e:
            load_systems([path, systems[0].source], device="cpu")  # refused before anything loads
        assert "\n" not in str(e.value) and all(f in str(e.value) for f in fragments), str(e.value)

    refused(_write(tmp_path / "typo.yaml", f"index: {built_index}\nwehre: [in_stock]\n"), "typo.yaml:2", "wehre")
    refused(_write(tmp_path / "col.yaml", f"index: {built_index}\nwhere: [size=9]\n"), "col.yaml: where:", "size")
    refused(_write(tmp_path / "k.yaml", f"index: {built_index}\nk: 0\n"), "k.yaml:2", "k")
    refused(_write(tmp_path / "none.yaml", "index: nowhere\n"), "none.yaml: index: nowhere")

    photos = tmp_path / "photos"
    photos.mkdir()
    for s in systems[0].rank(systems[0].catalog_files()[systems[0].recommender.index.items[0]["path"]])[:2]:
        shutil.copy(s["file"], photos / Path(s["file"]).name)
    csv = _write(tmp_path / "q.csv", "path\n" + "".join(f"photos/{p.name}\n" for p in sorted(photos.iterdir())))
    from_folder, from_csv = load_queries(photos, systems), load_queries(csv, systems)
    assert from_folder == from_csv and len(from_folder) == 2 and all(q.item is None for q in from_folder)
    sampled = load_queries(None, systems, sample=4, seed=3)
    assert sampled == load_queries(None, systems, sample=4, seed=3) and all(q.item for q in sampled)

    index = tmp_path / "index"  # a study begun on a copy of the index, then the index changes
    shutil.copytree(built_index, index)
    moved = _write(tmp_path / "moved.yaml", f"name: sys-alpha\nindex: {index}\nk: 3\n")
    beta = _write(tmp_path / "beta.yaml", f"name: sys-beta\nindex: {index}\nk: 4\n")  # one index: loaded once
    store, _, _ = prepare_study(f"{moved},{beta}", tmp_path / "s.db", sample=3, device="cpu")
    store.close()
    meta = json.loads((index / "index.json").read_text())
    (index / "index.json").write_text(json.dumps(meta))  # the same keys, other bytes: another index file
    r = CliRunner().invoke(judge, ["--systems", f"{moved},{beta}", "--db", str(tmp_path / "s.db"), "--device", "cpu"])
    assert r.exit_code == 2 and "changed since the study began" in r.output, r.output
    assert [line for line in r.output.splitlines() if line.startswith("error:")] == [r.output.splitlines()[-1]]
    with JudgmentStore.open(tmp_path / "s.db") as again:
        assert [s["name"] for s in again.systems()] == ["sys-alpha", "sys-beta"] and again.info()["pairs"] == 0


# ----------------------------------------------------------------------------- a study in Chromium


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], port: int, log: Path) -> subprocess.Popen:
    code = "import sys; from fashionrec.judgments.cli import judge; sys.exit(judge())"
    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, *args, "--port", str(port), "--device", "cpu"],
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"judge server exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    proc.kill()
    pytest.fail("judge server did not come up in 120 s")


class Judge:
    """One browser context: its own cookie, so its own judge. ``prefer``: "longer" or "shorter" list."""

    def __init__(self, browser, width: int, prefer: str, keys: bool, marks: bool):
        self.page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
        self.prefer, self.keys, self.marks, self.seen = prefer, keys, marks, []
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def answer(self, n: int):
        from playwright.sync_api import expect

        for _ in range(n):
            page = self.page
            expect(page.locator("#progress")).to_have_text(f"{len(self.seen)} of 10", timeout=60_000)
            expect(page.locator("#choose-left")).to_be_enabled(timeout=60_000)
            pair = page.locator("#judge").get_attribute("data-pair")
            left, right = page.locator("#left .item").count(), page.locator("#right .item").count()
            longer = "left" if left > right else "right"
            choice = longer if self.prefer == "longer" else {"left": "right", "right": "left"}[longer]
            if self.prefer == "shorter" and len(self.seen) % 3 == 2:
                choice = "same"
            if self.marks:  # left's first relevant (one click), right's first not relevant (two)
                page.locator("#left .item").first.click()
                page.locator("#right .item").first.click()
                page.locator("#right .item").first.click()
            if self.keys:
                page.keyboard.press({"left": "ArrowLeft", "same": "2", "right": "3"}[choice])
            else:
                page.click(f"#choose-{choice}")
            self.seen.append((int(pair), NAMES[left], NAMES[right], choice))


@pytest.mark.slow
def test_a_study_in_chromium_two_judges_and_a_restart(system_files, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).is_file(), "Debian's chromium is missing: `make test` installs it"
    db, port, log = tmp_path / "study.db", _free_port(), tmp_path / "server.log"
    args = ["--systems", ",".join(map(str, system_files)), "--db", str(db), "--study", "chromium",
            "--sample", "6", "--limit", "10", "--seed", "0"]
    server = _start(args, port, log)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            one = Judge(browser, 1200, "longer", keys=False, marks=True)
            two = Judge(browser, 390, "shorter", keys=True, marks=False)  # a phone-width screen
            for j in (one, two):
                j.page.goto(f"http://127.0.0.1:{port}/")
            one.answer(6)
            two.answer(4)
            expect(one.page.locator("#progress")).to_have_text("6 of 10", timeout=60_000)
            expect(two.page.locator("#progress")).to_have_text("4 of 10", timeout=60_000)
            pending = two.page.locator("#judge").get_attribute("data-pair")
            server.kill()  # the server dies with a pair on each screen; a new one takes over the same study
            server.wait(timeout=30)
            server = _start(args, port, log)
            two.page.reload()  # a reloaded page shows the pair it had
            expect(two.page.locator("#judge")).to_have_attribute("data-pair", pending, timeout=60_000)
            one.answer(4)  # the page that was open answers its pair to the new server
            two.answer(6)
            for j in (one, two):
                expect(j.page.locator("#done")).to_be_visible(timeout=60_000)
                expect(j.page.locator("#done-text")).to_contain_text("10 of 10")
                assert not j.errors, j.errors
            one.page.screenshot(path=str(tmp_path / "done.png"))
            browser.close()
    finally:
        server.kill()
        server.wait(timeout=30)

    result = analyze(db)
    assert result["counts"]["answers"] == 20 and result["counts"]["judges"] == 2 and result["counts"]["pending"] == 0
    seen = one.seen + two.seen
    answers = {a["pair_id"]: a for a in JudgmentStore.open(db, create=False).answers()}
    assert sorted(answers) == sorted(s[0] for s in seen)
    assert all((answers[p]["left"], answers[p]["right"], answers[p]["choice"]) == (lt, rt, c) for p, lt, rt, c in seen)
    order = list(NAMES.values())
    expected = {}
    for _, left, right, choice in seen:  # the expected win-loss-same of a over b, from what the page showed
        a, b = sorted((left, right), key=order.index)
        won = {"same": 2, "left": 0 if left == a else 1, "right": 0 if right == a else 1}[choice]
        counts = expected.setdefault((a, b), [0, 0, 0])
        counts[won] += 1
    assert {(r["a"], r["b"]): [r["wins"], r["losses"], r["ties"]] for r in result["pairs"]} == expected
    assert sum(m["lists"] for m in result["marks"].values()) == 20  # judge one marked both sides of 10 pairs
    report = judgments_report(db, tmp_path / "report")
    assert "20 answers by 2 judges" in report and report.splitlines()[-2:] == [
        f"wrote {tmp_path / 'report' / 'judgments.json'}", f"wrote {tmp_path / 'report' / 'judgments.png'}"]
    from click.testing import CliRunner

    from fashionrec.cli import main

    by_cli = CliRunner().invoke(main, ["evaluate", "--judgments", str(db)])  # the same report, beside the study
    assert by_cli.exit_code == 0 and "20 answers by 2 judges" in by_cli.output, by_cli.output
    assert json.loads(Path(f"{db.with_suffix('')}-report/judgments.json").read_text())["pairs"] == result["pairs"]
    if os.environ.get("FASHIONREC_SCREENSHOT_DIR"):
        shutil.copy(tmp_path / "done.png", os.environ["FASHIONREC_SCREENSHOT_DIR"])
