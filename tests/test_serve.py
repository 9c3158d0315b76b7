"""The HTTP API and the web page, with the framework's test client and in a real browser."""

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fashionrec.recommend import Recommender
from fashionrec.serve import MicroBatcher, create_app


@pytest.fixture(scope="module")
def recommender(built_index):
    return Recommender.load(built_index, device="cpu")


@pytest.fixture(scope="module")
def client(recommender):
    with TestClient(create_app(recommender, max_upload_bytes=200_000)) as c:
        yield c


def catalog_image(recommender, item_id=3) -> tuple[bytes, dict]:
    item = recommender.index.items[item_id]
    return (Path(recommender.index.root) / item["path"]).read_bytes(), item


def test_upload_of_a_catalog_image_finds_itself_first(client, recommender):
    data, item = catalog_image(recommender)
    r = client.post("/recommend", files={"image": ("x.jpg", data, "image/jpeg")}, data={"k": "4"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["k"] == 4 and len(body["results"]) == 4
    first = body["results"][0]
    assert first["id"] == int(item["id"]) and first["distance"] < 1e-3
    assert [x["rank"] for x in body["results"]] == [1, 2, 3, 4]
    assert [x["distance"] for x in body["results"]] == sorted(x["distance"] for x in body["results"])
    assert set(body["predicted"]) == {"category", "texture"}
    assert 0 < body["predicted"]["category"]["probability"] <= 1
    assert first["image_url"] == f"/items/{first['id']}/image"
    # the same answer as the library gives for the file
    lib = recommender.recommend([Path(recommender.index.root) / item["path"]], k=4)[0]
    assert [x["id"] for x in body["results"]] == [x["id"] for x in lib["results"]]


def test_similar_and_image_and_health(client, recommender):
    r = client.get("/items/3/similar", params={"k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["item"]["id"] == 3 and len(body["results"]) == 5
    assert 3 not in [x["id"] for x in body["results"]]
    img = client.get(body["results"][0]["image_url"])
    assert img.status_code == 200 and img.headers["content-type"].startswith("image/")
    assert Image.open(io.BytesIO(img.content)).size[0] > 0
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["items"] == len(recommender.index.items)
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/items/{item_id}/similar", "/items/{item_id}/image", "/healthz"} <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "<input id=\"file\"" in page.text


@pytest.mark.parametrize("case", ["not-an-image", "too-large", "k-zero", "k-huge", "k-text", "no-file", "tiny"])
def test_bad_uploads_are_4xx_json_and_the_server_keeps_serving(client, recommender, case):
    data, _ = catalog_image(recommender)
    files, form = {"image": ("x.jpg", data, "image/jpeg")}, {"k": "3"}
    if case == "not-an-image":
        files = {"image": ("x.jpg", b"this is text, not a JPEG", "image/jpeg")}
    elif case == "too-large":
        files = {"image": ("x.jpg", data + os.urandom(250_000), "image/jpeg")}
    elif case == "k-zero":
        form = {"k": "0"}
    elif case == "k-huge":
        form = {"k": "100000"}
    elif case == "k-text":
        form = {"k": "five"}
    elif case == "no-file":
        files = None
    elif case == "tiny":
        buf = io.BytesIO()
        Image.new("RGB", (1, 1)).save(buf, "PNG")
        files = {"image": ("x.png", buf.getvalue(), "image/png")}
    r = client.post("/recommend", files=files, data=form)
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    if case == "too-large":
        assert r.status_code == 413
    ok = client.post("/recommend", files={"image": ("x.jpg", data, "image/jpeg")}, data={"k": "2"})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 2


@pytest.mark.parametrize("declared", [True, False])
def test_an_oversized_body_is_413_whether_or_not_it_declares_its_length(client, recommender, declared):
    """Without a Content-Length (a chunked upload) the body is counted as it arrives."""
    chunk, n = b"x" * 16384, 40  # 640 KiB against a limit of 200,000 + 65,536 bytes
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    if declared:
        r = client.post("/recommend", content=chunk * n, headers=headers)
    else:
        r = client.post("/recommend", content=(chunk for _ in range(n)), headers=headers)
        assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "the limit is 200000" in r.json()["error"]
    data, _ = catalog_image(recommender)
    ok = client.post("/recommend", files={"image": ("x.jpg", data, "image/jpeg")}, data={"k": "1"})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 1


@pytest.mark.parametrize("url", ["/items/99999/similar", "/items/-1/image", "/items/abc/image", "/items/0/similar?k=0"])
def test_bad_item_requests_are_4xx_json(client, url):
    r = client.get(url)
    assert 400 <= r.status_code < 500 and r.json()["error"]


def test_two_photos_or_a_single_valued_field_given_twice_is_400_naming_it(client, recommender):
    """The framework kept one of two ``image`` parts and answered 200 for it, dropping the other silently."""
    data, _ = catalog_image(recommender)
    other, _ = catalog_image(recommender, item_id=5)
    two = [("image", ("a.jpg", data, "image/jpeg")), ("image", ("b.jpg", other, "image/jpeg"))]
    r = client.post("/recommend", files=two, data={"k": "2"})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "image: 2 files in one request; /recommend takes one photo (send one request "
                                 "per photo)"}
    r = client.post("/recommend", files={"image": ("x.jpg", data, "image/jpeg")}, data={"k": ["2", "3"]})
    assert r.status_code == 400 and r.json()["error"] == "k: given 2 times; give it once"
    r = client.get("/items/3/similar?k=2&k=4")
    assert r.status_code == 400 and r.json()["error"] == "k: given 2 times; give it once"
    r = client.get("/items/3/similar?k=2&where=price%3C%3D60&where=in_stock")  # where repeats by design
    assert r.status_code == 200, r.text
    ok = client.post("/recommend", files={"image": ("x.jpg", data, "image/jpeg")}, data={"k": "2"})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 2


# ----------------------------------------------------------------------------- filters and re-ranking

WOMEN_UNDER_60 = ["gender=women", "price<=60"]


def satisfies(attributes: dict, where: list[str]) -> bool:
    """The two filters the tests use, checked on a result's attribute values (independent of the library)."""
    ok = True
    for w in where:
        if w == "gender=women":
            ok &= attributes["gender"] == "women"
        elif w == "price<=60":
            ok &= attributes["price"] is not None and attributes["price"] <= 60
        elif w == "in_stock":
            ok &= attributes["in_stock"] is True
        elif w == "!in_stock":
            ok &= attributes["in_stock"] is False
        else:
            raise AssertionError(w)
    return ok


def matching(recommender, where) -> set[int]:
    return {i for i in range(len(recommender.index.items)) if satisfies(recommender.item_attributes(i), where)}


def test_a_filter_keeps_every_result_inside_it_on_both_endpoints(client, recommender):
    where = [*WOMEN_UNDER_60, "in_stock"]
    allowed = matching(recommender, where)
    assert 8 <= len(allowed) < len(recommender.index.items) / 2  # the filter bites, and leaves enough for k=6
    data, item = catalog_image(recommender, item_id=4)
    r = client.post("/recommend", files={"image": ("x.jpg", data, "image/jpeg")}, data={"k": "6", "where": where})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["results"]) == 6 and {x["id"] for x in body["results"]} <= allowed
    assert all(satisfies(x["attributes"], where) for x in body["results"])
    assert body["filter"] == {"where": where, "matching": len(allowed)} and "reason" not in body
    lib = recommender.recommend([Path(recommender.index.root) / item["path"]], k=6, where=where)[0]
    assert [x["id"] for x in body["results"]] == [x["id"] for x in lib["results"]]

    r = client.get("/items/4/similar", params={"k": 6, "where": where})  # ?where=...&where=...
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["results"]) == 6 and {x["id"] for x in body["results"]} <= allowed - {4}
    assert [x["id"] for x in body["results"]] == [x["id"] for x in recommender.similar(4, 6, where=where)["results"]]
    assert body["filter"]["matching"] == len(allowed) and body["item"]["id"] == 4


@pytest.mark.parametrize("expression, words", [
    ("colour<=red", ["colour<=red", "compares numbers"]),
    ("price<=abc", ["price<=abc", "'abc' is not a number"]),
    ("size=M", ["size=M", "no attribute 'size'"]),
])
def test_a_bad_filter_is_400_with_the_one_line_message(client, recommender, expression, words):
    data, _ = catalog_image(recommender)
    upload = client.post("/recommend", files={"image": ("x.jpg", data, "image/jpeg")},
                         data={"k": "3", "where": ["in_stock", expression]})
    similar = client.get("/items/3/similar", params={"where": expression})
    for r in (upload, similar):
        assert r.status_code == 400, r.text
        message = r.json()["error"]
        assert "\n" not in message and all(w in message for w in words), message
    ok = client.get("/items/3/similar", params={"k": 2, "where": "in_stock"})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 2


@pytest.mark.parametrize("field, value, words", [
    ("rerank", "brand=lots", ["rerank brand", "number >= 0"]),
    ("rerank", "size=1", ["no attribute 'size'"]),
    ("prefer", "price=cheap", ["prefer price=cheap"]),
])
def test_bad_rerank_options_are_400(client, field, value, words):
    r = client.get("/items/3/similar", params={field: value})
    assert r.status_code == 400 and all(w in r.json()["error"] for w in words), r.text


def test_a_filter_matching_nothing_is_200_with_a_reason(client, recommender):
    where = ["price<0"]
    data, _ = catalog_image(recommender)
    upload = client.post("/recommend", files={"image": ("x.jpg", data, "image/jpeg")}, data={"k": "3", "where": where})
    similar = client.get("/items/3/similar", params={"where": where})
    for r in (upload, similar):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["results"] == [] and body["filter"] == {"where": where, "matching": 0}
        assert body["reason"].startswith("no item matches") and "price<0" in body["reason"]


def test_rerank_weights_and_explain_per_request(client, recommender):
    """A brand weight above the pool's whole image range (1) puts every same-brand item first."""
    brand = recommender.item_attributes(7)["brand"]
    plain = client.get("/items/7/similar", params={"k": 10}).json()
    r = client.get("/items/7/similar", params={"k": 10, "rerank": "brand=5", "explain": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    same = [x["attributes"]["brand"] == brand for x in body["results"]]
    assert same == sorted(same, reverse=True) and any(same)
    assert sum(same) > sum(x["attributes"]["brand"] == brand for x in plain["results"])
    for x in body["results"]:
        parts = x["explain"]
        assert parts["total"] == pytest.approx(parts["image"] + sum(parts["terms"].values()), abs=1e-5)
        assert parts["terms"]["brand"] == (0 if x["attributes"]["brand"] == brand else 5)
    assert [x["explain"]["total"] for x in body["results"]] == sorted(x["explain"]["total"] for x in body["results"])
    assert body["rerank"]["weights"]["brand"] == 5
    assert "explain" not in plain["results"][0]


def test_batched_uploads_with_different_filters_each_get_their_own(recommender, monkeypatch):
    """Uploads that share one forward pass are still ranked under their own filter and k."""
    import threading

    passes, extract = [], recommender.extractor.extract_images
    monkeypatch.setattr(recommender.extractor, "extract_images", lambda images: passes.append(len(images))
                        or extract(images))
    data, _ = catalog_image(recommender, item_id=9)
    asks = [(["in_stock"], 3), (["!in_stock"], 4), ([], 5), (["in_stock"], 2)]
    answers = {}
    with TestClient(create_app(recommender, max_wait_ms=300)) as c:
        def ask(i, where, k):
            answers[i] = c.post("/recommend", files={"image": ("x.jpg", data, "image/jpeg")},
                                data={"k": str(k), "where": where}).json()
        threads = [threading.Thread(target=ask, args=(i, w, k)) for i, (w, k) in enumerate(asks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i, (where, k) in enumerate(asks):
        results = answers[i]["results"]
        assert len(results) == k and all(satisfies(x["attributes"], where) for x in results), (where, results)
    assert [x["id"] for x in answers[3]["results"]] == [x["id"] for x in answers[0]["results"][:2]]
    assert max(passes) > 1 and sum(passes) == len(asks)  # they did share a forward pass


def test_the_attributes_route_gives_the_schema_the_page_builds_its_filters_from(client, recommender):
    r = client.get("/attributes")
    assert r.status_code == 200
    body = r.json()
    schema = body["attributes"]
    assert schema == recommender.attribute_schema()
    assert schema["gender"]["type"] == "text" and {"women", "men"} <= set(schema["gender"]["values"])
    assert schema["in_stock"]["type"] == "boolean"
    prices = [recommender.item_attributes(i)["price"] for i in range(len(recommender.index.items))]
    assert schema["price"] == {"type": "number", "min": min(prices), "max": max(prices), "missing": 0}
    assert set(body["rerank"]) == {"weights", "band"}
    assert "/attributes" in client.get("/openapi.json").json()["paths"]


def test_micro_batcher_batches_concurrent_items_and_passes_errors():
    import threading

    sizes = []

    def fn(items):
        sizes.append(len(items))
        if "boom" in items:
            raise ValueError("boom")
        time.sleep(0.05)  # the network is busy: later submissions queue up
        return [KeyError(i) if i == -1 else i * 2 for i in items]  # an exception in its place fails one item

    batcher = MicroBatcher(fn, max_batch=8, max_wait_s=0.02)
    futures = []
    threads = [threading.Thread(target=lambda i=i: futures.append((i, batcher.submit(i)))) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(f.result(timeout=5) for _, f in futures) == [i * 2 for i in range(12)]
    assert all(f.result() == i * 2 for i, f in futures)
    assert max(sizes) > 1 and sum(sizes) == 12 and max(sizes) <= 8
    with pytest.raises(ValueError, match="boom"):
        batcher.submit("boom").result(timeout=5)
    assert batcher.submit(5).result(timeout=5) == 10  # the worker survived the error
    with pytest.raises(KeyError):
        batcher.submit(-1).result(timeout=5)


# ----------------------------------------------------------------------------- a real browser

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(built_index):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fashionrec", "serve", "--index", str(built_index),
                             "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("server did not come up in 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
def test_page_in_chromium_upload_click_one_filter(server, recommender, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).is_file(), "Debian's chromium is missing: `make test` installs it"
    _, item = catalog_image(recommender, item_id=5)
    query = Path(recommender.index.root) / item["path"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                    headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/")
        page.fill("#k", "6")
        page.set_input_files("#file", str(query))
        cards = page.locator("#grid .card")
        expect(cards).to_have_count(6, timeout=60_000)
        expect(page.locator("#query-labels .chip")).to_have_count(2)
        assert cards.first.get_attribute("data-id") == item["id"]  # a catalog photo finds itself first
        expect(page.locator("#grid .card img").first).to_have_js_property("complete", True)
        page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)

        clicked = cards.nth(2).get_attribute("data-id")
        cards.nth(2).click()
        expect(page.locator("#results-title")).to_contain_text(f"similar to item {clicked}", timeout=30_000)
        expect(cards).to_have_count(6)
        assert clicked not in [cards.nth(i).get_attribute("data-id") for i in range(6)]
        expect(page.locator("#query-title")).to_have_text(f"Catalog item {clicked}")
        page.screenshot(path=str(tmp_path / "similar.png"), full_page=True)

        # filters, drawn from /attributes, on an upload and on the "similar" click
        where = [*WOMEN_UNDER_60, "in_stock"]
        allowed = matching(recommender, where)
        page.select_option('#filter-controls select[data-column="gender"]', "women")
        page.fill('#filter-controls input[data-column="price"][data-op="<="]', "60")
        page.select_option('#filter-controls select[data-column="in_stock"]', "yes")
        page.check("#explain")
        page.set_input_files("#file", str(query))
        expect(page.locator("#results-title")).to_have_text(f"6 similar items ({len(allowed)} items match the filter)",
                                                            timeout=60_000)

        def shown() -> list[dict]:
            return [json.loads(cards.nth(i).get_attribute("data-attributes")) | {"id": int(cards.nth(i).get_attribute(
                "data-id"))} for i in range(cards.count())]

        assert len(shown()) == 6 and all(satisfies(a, where) and a["id"] in allowed for a in shown())
        expect(page.locator("#grid .card .explain").first).to_contain_text("score")
        clicked = cards.nth(1).get_attribute("data-id")
        cards.nth(1).click()
        expect(page.locator("#results-title")).to_have_text(
            f"6 items similar to item {clicked} ({len(allowed)} items match the filter)", timeout=30_000)
        assert all(satisfies(a, where) and a["id"] in allowed - {int(clicked)} for a in shown())
        page.screenshot(path=str(tmp_path / "filtered.png"), full_page=True)

        price_max = page.locator('#filter-controls input[data-column="price"][data-op="<="]')
        price_max.fill("0")
        price_max.dispatch_event("change")  # what leaving the field does: the shown query runs again
        expect(page.locator("#grid #reason")).to_contain_text("no item matches", timeout=30_000)
        expect(cards).to_have_count(0)

        page.set_input_files("#file", {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not an image"})
        expect(page.locator("#status.error")).to_contain_text("not an image", timeout=30_000)
        browser.close()
    assert not errors, errors
    for png in ("upload.png", "similar.png", "filtered.png"):
        assert Image.open(tmp_path / png).size[0] >= 1200
    if os.environ.get("FASHIONREC_SCREENSHOT_DIR"):  # to look at the page: keep the pictures
        out = Path(os.environ["FASHIONREC_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        for png in ("upload.png", "similar.png", "filtered.png"):
            (out / png).write_bytes((tmp_path / png).read_bytes())
