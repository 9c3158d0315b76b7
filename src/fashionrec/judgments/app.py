"""The judging page's server: side-by-side pairs, or a team-draft interleaved shop list.

:func:`create_judge_app` wraps a :class:`~.store.JudgmentStore` and the loaded systems
(:mod:`.systems`) in a FastAPI app::

    GET  /                                      the page (static/judge.html)
    GET  /api/info                              the mode, pairs per judge and items per list
    GET  /api/next                              pairs: the judge's next pair (or done) and progress
    POST /api/answer                            pairs: {pair, choice, seconds, marks: [{side, rank, relevant}]}
    GET  /api/pair/{pair}/query/image           the pair's query image
    GET  /api/pair/{pair}/{side}/{rank}/image   an item of one side
    GET  /api/impression                        interleave: a new merged list for a drawn query (recorded)
    POST /api/click                             interleave: {impression, item}
    GET  /api/impression/{id}/query/image, /api/impression/{id}/{rank}/image
    GET  /healthz

What the browser never gets: a system's name, its options, which side is which system, the team
of an interleaved item, or a path on the server's disk. Items are addressed by pair, side and
rank; marks are sent as side and rank and the server looks up the item. A judge is a random
cookie set on the first request (no personal data); a pair or impression belongs to the judge it
was shown to (another judge's is a 403). Every refusal is a 4xx ``{"error": "..."}`` with the
store's status (:class:`~.schema.JudgmentRefused`: 404 never shown, 403 another judge's, 409
answered already, 503 busy) and nothing is stored.

Rankings are computed on first use per (system, query), in the request's worker thread, and kept
in a bounded cache; no lock is held while a system ranks. The store serialises the writes.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
from collections import OrderedDict
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from .. import __version__
from ..errors import UserError
from ..serve import json_errors
from .interleave import team_draft
from .schema import JudgmentRefused
from .store import JudgmentStore
from .systems import Query, System

__all__ = ["create_judge_app", "COOKIE", "MODES"]

COOKIE = "fashionrec_judge"
COOKIE_MAX_AGE = 180 * 24 * 3600
MODES = ("pairs", "interleave")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SIDES = ("left", "right")


class Mark(BaseModel):
    side: str
    rank: int
    relevant: bool


class Answer(BaseModel):
    pair: int
    choice: str
    seconds: float | None = None
    marks: list[Mark] = []


class Click(BaseModel):
    impression: int
    item: str


class _Cache:
    """A bounded map, safe between threads; values are computed outside its lock."""

    def __init__(self, size: int):
        self.size, self._data, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()  # two threads may both compute it: deterministic, and no one waits on a lock
        self.put(key, value)
        return value

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


def create_judge_app(store: JudgmentStore, systems: list[System], queries: list[Query], *, limit: int = 50,
                     k: int = 5, mode: str = "pairs", seed: int | None = None, overlap: float = 0.1,
                     cache_size: int = 4096) -> FastAPI:
    """The judging app over an open study whose systems and queries are registered
    (:func:`fashionrec.judgments.cli.prepare_study` does that).

    ``limit``: pairs per judge; ``k``: interleave's merged list length (each system's ranking is
    asked for ``k`` items; in pairs mode each system shows its own ``k``); ``seed``: the server's
    draws (each pair's and impression's seed is stored), None for the OS's randomness."""
    if mode not in MODES:
        raise UserError(f"mode {mode!r}: expected pairs or interleave")
    if limit < 1 or k < 1:
        raise UserError(f"limit {limit} and k {k}: expected at least 1 each")
    if mode == "interleave" and len(systems) != 2:
        raise UserError(f"interleaving merges two systems' rankings; got {len(systems)} "
                        f"({', '.join(s.name for s in systems)})")
    if not queries:
        raise UserError("the study has no query images")
    by_name = {s.name: s for s in systems}
    rankings = _Cache(cache_size)
    impressions = _Cache(cache_size * 4)  # id -> {"judge", "query", "files"}: what its images are
    files_of: dict[str, str] = {}  # catalog path -> image file, over both interleaved systems
    draw_lock = threading.Lock()
    draws = random.Random(seed)

    def draw() -> int:
        with draw_lock:
            return draws.getrandbits(62)

    def ranking(system: str, image: str) -> list[dict]:
        if system not in by_name:  # a study started with other systems (the store keeps them all)
            raise HTTPException(409, "this pair is of a system this server does not run; ask for the next pair")
        return rankings.get((system, image), lambda: by_name[system].rank(image))

    app = FastAPI(title="fashionrec judgments", version=__version__, docs_url=None, redoc_url=None)

    json_errors(app)  # the store's refusals carry their 4xx status

    @app.middleware("http")
    async def judge_cookie(request: Request, call_next):
        """The anonymous judge: a random token in a cookie, made on the first request."""
        judge = request.cookies.get(COOKIE, "")
        new = not _TOKEN.match(judge)
        if new:
            judge = secrets.token_urlsafe(18)
        request.state.judge = judge
        response = await call_next(request)
        if new:
            response.set_cookie(COOKIE, judge, max_age=COOKIE_MAX_AGE, httponly=True, samesite="lax")
        return response

    def need(wanted: str) -> None:
        if mode != wanted:
            raise HTTPException(404, f"this server runs a {mode} study" +
                                (": GET /api/impression" if mode == "interleave" else ": GET /api/next"))

    def progress(judge: str) -> dict:
        p = store.progress(judge, limit=limit)
        return {"answered": p["answered"], "total": p["total"], "done": p["done"]}

    def own_pair(pair_id: int, judge: str) -> dict:
        pair = store.pair(pair_id)  # 404 when never shown
        if pair["judge"] != judge:
            raise JudgmentRefused(f"pair {pair_id} was shown to another judge", 403)
        return pair

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return resources.files("fashionrec").joinpath("static/judge.html").read_text(encoding="utf-8")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "version": __version__, "mode": mode}

    @app.get("/api/info")
    def info():
        """What the page needs before the first pair: the mode, pairs per judge, list length."""
        return {"mode": mode, "limit": limit, "k": k, "systems": len(systems), "queries": len(queries)}

    @app.get("/api/next")
    def next_pair(request: Request):
        """The judge's next pair (the same one again while it is unanswered), or ``done``."""
        need("pairs")
        judge = request.state.judge
        pair = store.next_pair(judge, draw(), limit=limit, systems=list(by_name), overlap=overlap)
        if pair is None:
            return {"done": True, "progress": progress(judge)}
        pid, image = pair["pair_id"], pair["query"]["image"]
        sides = {side: [{"rank": r["rank"], "image_url": f"/api/pair/{pid}/{side}/{r['rank']}/image"}
                        for r in ranking(pair[side], image)] for side in SIDES}
        return {"done": False, "pair": pid, "query": {"image_url": f"/api/pair/{pid}/query/image"}, **sides,
                "progress": progress(judge)}

    @app.post("/api/answer")
    def answer(request: Request, body: Answer):
        """Store the judge's answer: ``choice`` left, right or same; ``seconds`` taken; ``marks``
        the items the judge marked (side, rank, relevant), the unmarked ones being not judged."""
        need("pairs")
        judge = request.state.judge
        pair = own_pair(body.pair, judge)
        marks = []
        for m in body.marks:
            if m.side not in SIDES:
                raise JudgmentRefused(f"mark side {m.side[:20]!r}: expected left or right", 400)
            shown = ranking(pair[m.side], pair["query"]["image"])
            if not 1 <= m.rank <= len(shown):
                raise JudgmentRefused(f"mark of {m.side} rank {m.rank}: the {m.side} list has {len(shown)} items", 400)
            marks.append({"side": m.side, "item": shown[m.rank - 1]["item"], "rank": m.rank, "relevant": m.relevant})
        store.answer(body.pair, judge, body.choice, body.seconds, marks=marks)
        return {"ok": True, "progress": progress(judge)}

    @app.get("/api/pair/{pair_id}/query/image", response_class=FileResponse)
    def pair_query_image(request: Request, pair_id: int):
        return _file(own_pair(pair_id, request.state.judge)["query"]["image"])

    @app.get("/api/pair/{pair_id}/{side}/{rank}/image", response_class=FileResponse)
    def pair_item_image(request: Request, pair_id: int, side: str, rank: int):
        if side not in SIDES:
            raise HTTPException(404, f"side {side[:20]!r}: expected left or right")
        pair = own_pair(pair_id, request.state.judge)
        shown = ranking(pair[side], pair["query"]["image"])
        if not 1 <= rank <= len(shown):
            raise HTTPException(404, f"pair {pair_id} shows {len(shown)} items on the {side}")
        return _file(shown[rank - 1]["file"])

    # ------------------------------------------------------------------ interleaving

    def impression_record(imp: int, judge: str) -> dict:
        def from_store():  # a server restarted since it was shown: the study has it
            found = next((i for i in store.impressions() if i["id"] == imp), None)
            if found is None:
                raise JudgmentRefused(f"impression {imp} was never shown", 404)
            if not files_of:
                for s in systems:
                    files_of.update(s.catalog_files())
            return {"judge": found["judge"], "query": found["query"],
                    "files": [files_of.get(item) for item, _ in found["items"]]}

        rec = impressions.get(imp, from_store)
        if rec["judge"] is not None and rec["judge"] != judge:
            raise JudgmentRefused(f"impression {imp} was shown to another user", 403)
        return rec

    @app.get("/api/impression")
    def impression(request: Request):
        """A query drawn from the query set and one list merged from both systems' rankings by
        team-draft interleaving; recorded (with its seed) before it is sent."""
        need("interleave")
        judge = request.state.judge
        seed = draw()
        rng = random.Random(seed)
        query = queries[rng.randrange(len(queries))]
        a, b = (rankings.get((s.name, query.image, k), lambda s=s: s.rank(query.image, k)) for s in systems)
        files = {r["item"]: r["file"] for r in (*a, *b)}
        merged, teams = team_draft([r["item"] for r in a], [r["item"] for r in b], k, rng)
        imp = store.record_impression(query.image, systems[0].name, systems[1].name, merged, teams, seed=seed,
                                      judge_id=judge)
        impressions.put(imp, {"judge": judge, "query": query.image, "files": [files[i] for i in merged]})
        return {"impression": imp, "query": {"image_url": f"/api/impression/{imp}/query/image"},
                "items": [{"rank": r, "item": item, "image_url": f"/api/impression/{imp}/{r}/image"}
                          for r, item in enumerate(merged, 1)]}

    @app.post("/api/click")
    def click(request: Request, body: Click):
        """A click on an item of an impression, credited (in the analysis) to the system that contributed it."""
        need("interleave")
        click_id = store.record_click(body.impression, body.item, judge_id=request.state.judge)
        return {"ok": True, "click": click_id}

    @app.get("/api/impression/{imp}/query/image", response_class=FileResponse)
    def impression_query_image(request: Request, imp: int):
        return _file(impression_record(imp, request.state.judge)["query"])

    @app.get("/api/impression/{imp}/{rank}/image", response_class=FileResponse)
    def impression_item_image(request: Request, imp: int, rank: int):
        files = impression_record(imp, request.state.judge)["files"]
        if not 1 <= rank <= len(files) or files[rank - 1] is None:
            raise HTTPException(404, f"impression {imp} shows {len(files)} items")
        return _file(files[rank - 1])

    return app


def _file(path: str) -> FileResponse:
    if not Path(path).is_file():
        raise HTTPException(404, "the image file is missing on the server")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
