"""The HTTP API and the web page, with the framework's test client and in a real browser."""

import io
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


def test_micro_batcher_batches_concurrent_items_and_passes_errors():
    import threading

    sizes = []

    def fn(items):
        sizes.append(len(items))
        if "boom" in items:
            raise ValueError("boom")
        time.sleep(0.05)  # the network is busy: later submissions queue up
        return [i * 2 for i in items]

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
def test_page_in_chromium_upload_see_results_click_one(server, recommender, tmp_path):
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

        page.set_input_files("#file", {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not an image"})
        expect(page.locator("#status.error")).to_contain_text("not an image", timeout=30_000)
        browser.close()
    assert not errors, errors
    for png in ("upload.png", "similar.png"):
        assert Image.open(tmp_path / png).size[0] >= 1200
    if os.environ.get("FASHIONREC_SCREENSHOT_DIR"):  # to look at the page: keep the pictures
        out = Path(os.environ["FASHIONREC_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        for png in ("upload.png", "similar.png"):
            (out / png).write_bytes((tmp_path / png).read_bytes())
