"""Recommendations over HTTP: the shop page where a customer uploads a photo and sees similar items.

:func:`create_app` wraps a loaded :class:`~fashionrec.recommend.Recommender` in a FastAPI app::

    POST /recommend            multipart upload ``image`` (+ ``k`` and the query options) -> predicted labels, top-k
    GET  /items/{id}/similar   neighbours of a catalog item (``k`` and the query options as query parameters)
    GET  /items/{id}/image     the catalog image
    GET  /attributes           the catalog's attributes (type, range or values) and the index's re-rank weights
    GET  /healthz              liveness and what is loaded
    GET  /                     the web page; /docs and /openapi.json describe the API

The query options, form fields of ``/recommend`` and query parameters of ``/similar``, are those of
:meth:`Recommender.recommend <fashionrec.recommend.Recommender.recommend>`: ``where`` (repeated, ANDed:
``?where=gender%3Dwomen&where=price%3C%3D50``), ``rerank`` (``column=weight``, repeated or
comma-separated), ``band``, ``prefer`` (``column=value``, repeated) and ``explain``. Every result
carries the item's ``attributes``. A bad expression is a 400 with the library's one-line message;
a filter that matches nothing is a 200 with no results and the library's ``reason``.

Uploads that arrive together share one forward pass (:class:`MicroBatcher`): on a CPU a batch
of 8 costs much less than 8 single passes, so concurrent customers wait less. The network runs
in one worker thread, never on the event loop. Every client mistake is a 4xx with
``{"error": "..."}`` and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .attributes import parse_assignments
from .data.images import DEFAULT_MAX_PIXELS, decode_image
from .errors import UserError
from .hybrid import DEFAULT_BAND, check_weight
from .recommend import Recommender, prepare_query

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_K = 100
WHERE_HELP = ("filter expressions, ANDed (repeat the field): gender=women, colour=red|blue, price<=50, "
              "brand!=Aurel, in_stock, !in_stock")
RERANK_HELP = "re-rank weights over the index's, column=weight (repeat or comma-separate; 0 drops a term)"
BAND_HELP = "relative band within which a number column agrees (0.2: within 20 %)"
PREFER_HELP = "the query's value of a re-ranked column, column=value (repeat the field)"
EXPLAIN_HELP = "add each result's parts of the hybrid score"
SINGLE_FIELDS = ("image", "k", "band", "explain")  # one value each; where, rerank and prefer repeat


def check_single(fields) -> None:
    """A request giving a single-valued field more than once is a 400 naming it: the framework would keep one
    value and drop the others without a word (two photos, one answer)."""
    counts: dict[str, int] = {}
    for name, _ in fields:
        counts[name] = counts.get(name, 0) + 1
    for name in SINGLE_FIELDS:
        n = counts.get(name, 0)
        if n > 1 and name == "image":
            raise HTTPException(400, f"image: {n} files in one request; /recommend takes one photo (send one "
                                     "request per photo)")
        if n > 1:
            raise HTTPException(400, f"{name}: given {n} times; give it once")


class MicroBatcher:
    """Run ``fn(items) -> results`` on batches of items submitted from any thread.

    One worker thread takes the first waiting item, then whatever else arrives within
    ``max_wait_s`` (up to ``max_batch``), and calls ``fn`` once for all of them. An exception
    ``fn`` raises fails every item of the batch; one it returns in an item's place fails that item.
    """

    def __init__(self, fn, max_batch: int = 16, max_wait_s: float = 0.005):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1; got {max_batch}")
        self.fn, self.max_batch, self.max_wait_s = fn, max_batch, max_wait_s
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fashionrec-batcher", daemon=True)
        self._thread.start()

    def submit(self, item) -> Future:
        future: Future = Future()
        self._queue.put((item, future))
        return future

    def _run(self):
        while True:
            batch = [self._queue.get()]
            try:
                while len(batch) < self.max_batch:
                    batch.append(self._queue.get(timeout=self.max_wait_s))
            except queue.Empty:
                pass
            try:
                results = self.fn([item for item, _ in batch])
            except Exception as e:  # noqa: BLE001 - handed to every waiting request
                for _, future in batch:
                    future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def json_errors(app: FastAPI) -> None:
    """Every error of ``app`` as ``{"error": "one line"}``: HTTP errors with their status, a request that fails
    validation as a 422 naming its first bad field, a :class:`UserError` as a 400 (or the status it carries,
    e.g. a judging study's refusals)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return _error(getattr(exc, "status", 400), str(exc))


@dataclass(frozen=True)
class RequestOptions:
    """A request's filter and re-ranking as sent, hashable so that batched uploads asking the same are ranked
    together."""

    where: tuple[str, ...] = ()
    rerank: tuple[tuple[str, float], ...] = ()
    band: float | None = None
    prefer: tuple[tuple[str, str], ...] = ()
    explain: bool = False

    @classmethod
    def parse(cls, where=(), rerank=(), band=None, prefer=(), explain=False) -> RequestOptions:
        """From the HTTP fields; ``rerank`` and ``prefer`` are ``column=value`` texts (the library checks the
        columns and the filter expressions)."""
        weights = {c: check_weight(f"rerank {c}", w) for c, w in parse_assignments("rerank", rerank).items()}
        preferred = parse_assignments("prefer", prefer, split_commas=False)
        return cls(tuple(where), tuple(weights.items()), band, tuple(preferred.items()), bool(explain))

    def query_kwargs(self) -> dict:
        """The keyword arguments of :func:`~fashionrec.recommend.prepare_query`."""
        return {"where": list(self.where) or None, "rerank": dict(self.rerank) or None, "band": self.band,
                "prefer": dict(self.prefer) or None}


class _BodyTooLarge(Exception):
    pass


class UploadLimit:
    """ASGI middleware: a request body over ``max_bytes`` (plus ``envelope`` for the multipart
    headers and form fields) is answered 413 and read no further.

    A declared Content-Length over the limit is refused before anything is read; a body sent
    without one (chunked) is counted as it arrives. Without this, the multipart parser would
    spool a chunked upload of any size to disk before the endpoint could check it.
    """

    def __init__(self, app, max_bytes: int, envelope: int = 65536):
        self.app, self.max_bytes, self.cap = app, max_bytes, max_bytes + envelope

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.cap:
            return await self._refuse(scope, receive, send, f"upload is {int(length)} bytes")
        received, over, started = 0, False, False

        async def counting_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.cap:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if over:  # the app turned the interrupted read into an answer of its own: ours replaces it
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if over and not started:
            await self._refuse(scope, receive, send, f"upload is over {self.cap} bytes")

    async def _refuse(self, scope, receive, send, what: str):
        await _error(413, f"{what}; the limit is {self.max_bytes}")(scope, receive, send)


def create_app(recommender: Recommender, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_batch: int = 16, max_wait_ms: float = 5.0) -> FastAPI:
    """A FastAPI app serving ``recommender``; run it with any ASGI server (``fashionrec serve`` uses uvicorn)."""
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be >= 1; got {max_upload_bytes}")
    n_items = len(recommender.index.items)
    max_k = min(MAX_K, n_items)
    tasks = [e["task"] for e in recommender.index.meta["extractors"]]
    root = Path(recommender.index.root).resolve()

    def recommend_batch(requests):  # [(image, k, options, prepared)] -> [result or UserError], in the batcher's thread
        images, ks, options, prepared = zip(*requests)
        feats, probs = recommender.extractor.extract_images(list(images))
        # one forward pass for all; ranked per (k, options): the hybrid pool depends on k, so a shorter
        # list cut from a longer one could differ from what the library answers for that k
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(zip(ks, options)):
            groups.setdefault(key, []).append(i)
        out: list = [None] * len(requests)
        for (k, opts), rows in groups.items():
            try:
                results = recommender.rank(feats[rows], [p[rows] for p in probs], k, [f"upload {i}" for i in rows],
                                           options=prepared[rows[0]], explain=opts.explain)
            except UserError as e:  # this request's options, not the batch's fault
                results = [e] * len(rows)
            for i, r in zip(rows, results):
                if isinstance(r, dict):
                    r.pop("query", None)
                out[i] = r
        return out

    batcher = MicroBatcher(recommend_batch, max_batch=max_batch, max_wait_s=max_wait_ms / 1000)
    app = FastAPI(title="fashionrec", version=__version__,
                  description="Upload a fashion photo; get similar catalog items ranked by CNN features, one "
                              "block per labelled attribute (category, texture, ...; Tuinhof, Pirker & "
                              "Haltmeier, 2018).")

    json_errors(app)
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)

    def check_item(item_id: int) -> None:
        if not 0 <= item_id < n_items:
            raise HTTPException(404, f"item {item_id} is not in the index (ids are 0 to {n_items - 1})")

    def item_path(item_id: int) -> Path:
        check_item(item_id)
        path = (root / recommender.index.items[item_id]["path"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise HTTPException(404, f"item {item_id}: image file is missing")
        return path

    def with_urls(results: list[dict]) -> list[dict]:
        """Each result with its image URL and its attribute values (the page shows them and checks filters)."""
        return [dict({"attributes": recommender.item_attributes(r["id"])}, **r, image_url=f"/items/{r['id']}/image")
                for r in results]

    def answer(k: int, result: dict, **extra) -> dict:
        """The library's answer (``filter``, ``reason``, ``rerank``... as it gives them) with image URLs."""
        return {"k": k, **extra, **{key: v for key, v in result.items() if key not in ("item", "results")},
                "results": with_urls(result["results"])}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return resources.files("fashionrec").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/attributes")
    def attributes():
        """The catalog's attributes, for building filters: per column ``{"type": "number", "min", "max"}``,
        ``{"type": "boolean"}`` or ``{"type": "text", "values", "n_values"}``; and the index's re-rank weights."""
        return {"attributes": recommender.attribute_schema(),
                "rerank": recommender.index.meta.get("rerank") or {"weights": {}, "band": DEFAULT_BAND}}

    @app.get("/healthz")
    def healthz():
        """Liveness, and what the server has loaded."""
        return {"status": "ok", "version": __version__, "items": n_items, "dim": recommender.index.meta["dim"],
                "tasks": tasks, "max_k": max_k, "max_upload_bytes": max_upload_bytes, "runtime": recommender.runtime}

    @app.post("/recommend")
    async def recommend(request: Request,
                        image: UploadFile = File(..., description="a photo (JPEG, PNG, WebP, ...); one per request"),
                        k: int = Form(5, ge=1, le=max_k, description="how many items"),
                        where: list[str] = Form([], description=WHERE_HELP),
                        rerank: list[str] = Form([], description=RERANK_HELP),
                        band: float | None = Form(None, ge=0, description=BAND_HELP),
                        prefer: list[str] = Form([], description=PREFER_HELP),
                        explain: bool = Form(False, description=EXPLAIN_HELP)):
        """Each extractor's predicted label of the uploaded photo (category, texture, ...), and the ``k``
        most similar items that pass the filter."""
        check_single((await request.form()).multi_items())
        options = RequestOptions.parse(where, rerank, band, prefer, explain)
        # checked (and the filter's mask drawn) before the upload is decoded: a bad expression costs no forward pass
        prepared = await run_in_threadpool(prepare_query, recommender.index, **options.query_kwargs())
        data = await image.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload is over the limit of {max_upload_bytes} bytes")
        name = image.filename or "upload"
        img = await run_in_threadpool(decode_image, data, max_pixels, name, recommender.extractor.input_size)
        result = await asyncio.wrap_future(batcher.submit((img, k, options, prepared)))
        return answer(k, result)

    @app.get("/items/{item_id}/similar")
    async def similar(request: Request, item_id: int, k: int = Query(5, ge=1, le=max_k),
                      where: list[str] = Query([], description=WHERE_HELP),
                      rerank: list[str] = Query([], description=RERANK_HELP),
                      band: float | None = Query(None, ge=0, description=BAND_HELP),
                      prefer: list[str] = Query([], description=PREFER_HELP),
                      explain: bool = Query(False, description=EXPLAIN_HELP)):
        """The ``k`` catalog items most similar to item ``item_id`` (itself left out) that pass the filter."""
        check_single(request.query_params.multi_items())
        check_item(item_id)
        options = RequestOptions.parse(where, rerank, band, prefer, explain)
        result = await run_in_threadpool(recommender.similar, item_id, min(k, n_items - 1) or 1,
                                         explain=options.explain, **options.query_kwargs())
        return answer(k, result, item=dict(result["item"], image_url=f"/items/{item_id}/image"))

    @app.get("/items/{item_id}/image", response_class=FileResponse)
    def item_image(item_id: int):
        """The catalog image of item ``item_id``."""
        return FileResponse(item_path(item_id))

    return app


def serve(index_dir, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, log=print, runtime: str = "auto",
          onnx_precision: str = "auto") -> None:
    """Load the index and its extractors once (``runtime``/``onnx_precision``: see
    :meth:`Recommender.from_index <fashionrec.recommend.Recommender.from_index>`), then serve until interrupted."""
    import uvicorn

    recommender = Recommender.load(index_dir, device=device, runtime=runtime, onnx_precision=onnx_precision)
    app = create_app(recommender, max_upload_bytes=max_upload_bytes)
    log(f"serving {len(recommender.index.items)} items from {index_dir} on http://{host}:{port}/ "
        f"(runtime {recommender.runtime}; API docs at /docs; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
