"""Image(s) in, ranked catalog items out.

A :class:`Recommender` loads an index and the extractors it was built with, checking each
extractor's weights against the sha256 recorded in ``index.json``: features from other weights
would rank nonsense, so a mismatch is an error, not a warning.

Every query takes ``where`` (filter expressions over the catalog's attributes, ANDed; see
:mod:`fashionrec.attributes`): only matching items are searched, so a filter never returns fewer
results while enough items match, and one that matches nothing answers an empty list with a
``reason``. ``rerank``/``band``/``prefer`` blend attribute agreement into the score
(:mod:`fashionrec.hybrid`) and ``explain`` adds each result's parts of the score.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import hybrid
from .attributes import describe, parse_where
from .catalog_index import CatalogIndex, resolve_run
from .data.images import DEFAULT_MAX_PIXELS
from .engines.registry import PRECISION_NAMES as PRECISIONS
from .errors import UserError
from .onnx_runtime import OnnxExtractor, choose_runtime


@dataclass
class QueryOptions:
    """A request's filter and re-ranking, checked against the index (:func:`prepare_query`)."""

    conditions: list
    allowed: np.ndarray | None  # bool (n_items,), None: every item
    matching: int
    spec: hybrid.RerankSpec | None
    prefer: dict


def prepare_query(index: CatalogIndex, where=None, rerank: dict | None = None, band: float | None = None,
                  prefer: dict | None = None) -> QueryOptions:
    """Parse ``where``, ``rerank``, ``band`` and ``prefer`` against the index's attributes; any
    mistake (unknown column, wrong type, ``price<=abc``) is one UserError naming it."""
    table = index.attributes()
    conditions = parse_where(where, table.types)
    allowed = table.mask(conditions) if conditions else None
    spec = hybrid.resolve_rerank(index.meta.get("rerank"), rerank, band, table.types)
    prefer = hybrid.check_prefer(prefer, table)
    return QueryOptions(conditions, allowed, len(index.items) if allowed is None else int(allowed.sum()), spec, prefer)


class Recommender:
    def __init__(self, index: CatalogIndex, extractor):
        self.index = index
        self.extractor = extractor  # a FeatureExtractor (torch, mxnet) or an OnnxExtractor
        self.runtime = getattr(extractor, "runtime", "torch")  # onnx-fp32, onnx-int8 or torch
        self._path_to_id = None

    @classmethod
    def load(cls, index_dir, extractors=None, device: str = "auto", runtime: str = "auto",
             onnx_precision: str = "auto") -> Recommender:
        """Load ``index_dir``; ``extractors`` (run directories) default to those it was built with."""
        return cls.from_index(CatalogIndex.load(index_dir), extractors, device, runtime, onnx_precision)

    @classmethod
    def from_index(cls, index: CatalogIndex, extractors=None, device: str = "auto", runtime: str = "auto",
                   onnx_precision: str = "auto") -> Recommender:
        """A loaded index with its extractors (checked by weight hash), e.g. after checking a request on it.

        ``runtime``: ``onnx`` runs the index's exported graphs on ONNX Runtime without importing torch
        (``onnx_precision`` ``fp32``, ``int8`` or ``auto``: int8 when exported), ``torch`` the runs' networks,
        ``auto`` ONNX when the index has graphs (:func:`fashionrec.onnx_runtime.choose_runtime`)."""
        if choose_runtime(index, runtime, extractors, device) == "onnx":
            return cls(index, OnnxExtractor(index, onnx_precision))
        from .features import FeatureExtractor  # torch (or mxnet): imported only when they run the queries

        index_dir = index.directory
        recorded = index.meta["extractors"]
        runs = list(extractors) if extractors else [resolve_run(index.directory, e) for e in recorded]
        if len(runs) != len(recorded):
            raise UserError(f"{index_dir}: index was built with {len(recorded)} extractor(s), got {len(runs)}")
        for run in runs:
            if not (Path(run) / "model.json").is_file():
                raise UserError(f"{run}: extractor run not found (the index was built with "
                                f"{', '.join(e['run'] for e in recorded)})")
        precision = index.meta.get("precision", "fp32")  # queries are extracted as the catalog was
        if precision not in PRECISIONS:
            raise UserError(f"{index.directory / 'index.json'}: precision: must be one of {', '.join(PRECISIONS)}; "
                            f"got {precision!r}")
        extractor = FeatureExtractor(runs, device=device, precision=precision)
        for want, have in zip(recorded, extractor.describe()):
            if want["weights_sha256"] != have["weights_sha256"] or want["task"] != have["task"]:
                raise UserError(
                    f"{index_dir}: built with extractor {want['run']} ({want['task']}, weights sha256 "
                    f"{want['weights_sha256'][:12]}), but {have['run']} has {have['task']} weights "
                    f"{have['weights_sha256'][:12]}: rebuild the index with `fashionrec index`")
        return cls(index, extractor)

    def _catalog_id(self, path: Path):
        if self._path_to_id is None:
            root = self.index.root
            self._path_to_id = {str((root / it["path"]).resolve()): int(it["id"]) for it in self.index.items}
        return self._path_to_id.get(str(Path(path).resolve()))

    def item_labels(self, item: dict) -> dict:
        """Known label where the catalog has one, else the predicted one."""
        out = {}
        for e in self.index.meta["extractors"]:
            task = e["task"]
            out[task] = item.get(task) or item.get(f"pred_{task}", "")
        return out

    def check_k(self, k: int) -> int:
        """``k`` clamped to the catalog (with a warning); below 1 is an error."""
        if k < 1:
            raise UserError(f"-k must be >= 1; got {k}")
        n = len(self.index.items)
        if k > n:
            warnings.warn(f"k={k} is larger than the catalog ({n} items); returning all {n}", stacklevel=3)
        return min(k, n)

    def attribute_schema(self) -> dict:
        """Per attribute: ``{"type": "number", "min", "max"}``, ``{"type": "boolean"}`` or
        ``{"type": "text", "values": [sorted distinct values, at most 50], "n_values"}``, each with
        ``"missing"`` (items without a value): what a page needs to draw filter controls."""
        return self.index.attributes().schema()

    def item_attributes(self, item_id: int) -> dict:
        """One item's attributes as typed values (None: missing)."""
        table = self.index.attributes()
        return {c: table.value(c, item_id) for c in table.types}

    def recommend(self, images, k: int = 5, exclude_self: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                  where=None, rerank: dict | None = None, band: float | None = None, prefer: dict | None = None,
                  explain: bool = False) -> list[dict]:
        """Rank the catalog for each image (paths or PIL images), in one batch.

        ``where``: filter expressions (``["gender=women", "price<=50", "in_stock"]``), ANDed;
        ``rerank``: ``{column: weight}`` over the index's re-ranking weights (0 drops a term),
        ``band`` the relative band of number columns, ``prefer`` ``{column: value}`` the query's
        values where the image does not give them; ``explain``: each result's parts of the score.
        An image that is a catalog item (by its path) is re-ranked with that item's attributes.
        """
        options = prepare_query(self.index, where, rerank, band, prefer)  # before extraction: fail fast
        k = self.check_k(k)
        paths = [img if isinstance(img, (str, Path)) else None for img in images]
        if all(p is not None for p in paths):
            feats, probs = self.extractor.extract_files(paths, max_pixels=max_pixels)
        else:
            feats, probs = self.extractor.extract_images(images)
        ids = None  # which queries are catalog items: for exclusion and for their attributes
        if exclude_self or options.spec is not None:
            ids = [(self._catalog_id(p) if p is not None else None) for p in paths]
        exclude = np.array([-1 if i is None else i for i in ids]) if exclude_self else None
        names = [str(image) if p is not None else f"<image {i}>" for i, (image, p) in enumerate(zip(images, paths))]
        return self.rank(feats, probs, k, names, exclude=exclude, options=options, explain=explain, query_items=ids)

    def rank(self, feats: np.ndarray, probs: list[np.ndarray], k: int, names: list[str], exclude=None,
             where=None, rerank: dict | None = None, band: float | None = None, prefer: dict | None = None,
             explain: bool = False, query_items=None, options: QueryOptions | None = None) -> list[dict]:
        """Results for extracted queries: the predicted labels and the top ``k`` catalog items.

        ``query_items``: per query, the catalog id it is (its attributes are the query's for
        re-ranking) or None; ``options``: a :func:`prepare_query` result instead of ``where``...
        """
        options = options or prepare_query(self.index, where, rerank, band, prefer)
        predicted = []
        for qi in range(len(names)):
            labels = {}
            for info, p in zip(self.index.meta["extractors"], probs):
                if not info["classes"]:  # an embedding run predicts no label
                    continue
                c = int(p[qi].argmax())
                labels[info["task"]] = {"label": info["classes"][c], "probability": round(float(p[qi, c]), 4)}
            predicted.append(labels)
        found = self._search(feats, k, options, exclude, query_items,
                             [{t: v["label"] for t, v in labels.items()} for labels in predicted], explain)
        return [{"query": name, "predicted": labels, **res} for name, labels, res in zip(names, predicted, found)]

    def similar(self, item_id: int, k: int = 5, where=None, rerank: dict | None = None, band: float | None = None,
                prefer: dict | None = None, explain: bool = False) -> dict:
        """The catalog's neighbours of one of its own items (the item itself left out), filtered by
        ``where`` and re-ranked with the item's own attributes (see :meth:`recommend`)."""
        n = len(self.index.items)
        if not 0 <= item_id < n:
            raise UserError(f"item {item_id} is not in the index (ids are 0 to {n - 1})")
        options = prepare_query(self.index, where, rerank, band, prefer)
        k = self.check_k(k)
        item = self.index.items[item_id]
        found = self._search(self.index.features[item_id:item_id + 1], k, options, np.array([item_id]), [item_id],
                             None, explain)
        return {"item": {"id": item_id, "path": item["path"], "labels": self.item_labels(item)}, **found[0]}

    def _search(self, feats, k: int, options: QueryOptions, exclude, query_items, predicted, explain) -> list[dict]:
        """Filtered k-NN, then the hybrid re-ranking of the pool when there is one."""
        n, m = len(self.index.items), len(feats)
        spec = options.spec
        width = min(k if spec is None else spec.pool(k), options.matching, n - (exclude is not None))
        if width > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # clamping is warned about in check_k
                dist, idx = self.index.query(feats, width, exclude=exclude, allowed=options.allowed)
        else:
            dist, idx = np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
        table = self.index.attributes()
        if spec is not None:
            queries = [hybrid.query_values(table, spec, query_items[qi] if query_items else None,
                                           predicted[qi] if predicted else None, options.prefer) for qi in range(m)]
            total, image, terms = hybrid.score(dist, idx, queries, table, spec)
            order = hybrid.rerank_order(total, dist, idx)
        out = []
        for qi in range(m):
            ranked = []
            for j in (order[qi] if spec is not None else range(idx.shape[1])):
                i, d = int(idx[qi, j]), float(dist[qi, j])
                if i < 0 or len(ranked) == k:
                    continue
                item = self.index.items[i]
                entry = {"rank": len(ranked) + 1, "id": i, "path": item["path"], "distance": round(d, 6),
                         "labels": self.item_labels(item)}
                if spec is not None:
                    entry["score"] = round(float(total[qi, j]), 6)
                if explain:
                    entry["explain"] = (hybrid.explain_parts(d, image[qi, j], {c: t[qi, j] for c, t in terms.items()},
                                                             total[qi, j]) if spec is not None
                                        else hybrid.explain_parts(d, d, {}, d))
                    entry["attributes"] = self.item_attributes(i)
                ranked.append(entry)
            res: dict = {"results": ranked}
            if options.conditions:
                res["filter"] = {"where": [c.expression for c in options.conditions], "matching": options.matching}
                if not ranked:
                    res["reason"] = (f"no item matches {describe(options.conditions)}" if options.matching == 0 else
                                     f"no item but the query itself matches {describe(options.conditions)}")
            if spec is not None:
                res["rerank"] = dict(spec.as_dict(), pool=width, query=queries[qi])
            out.append(res)
        return out

    def show(self, results: list[dict], out_png, thumb: int = 128) -> Path:
        """The paper's Figure 2: each query, then its top-k with distance and labels."""
        from .report import plot_recommendations

        root = self.index.root
        rows = []
        for r in results:
            pred = ", ".join(v["label"] for v in r["predicted"].values())
            rows.append({
                "image": r["query"], "title": f"query (predicted)\n{pred}",
                "results": [{"image": root / it["path"],
                             "title": f"#{it['rank']}  d={it['distance']:.2f}\n" + ", ".join(it["labels"].values())}
                            for it in r["results"]],
            })
        return Path(plot_recommendations(rows, out_png, thumb=thumb))


def format_results(results: list[dict]) -> str:
    lines = []
    for r in results:
        pred = ", ".join(f"{t} {v['label']} ({v['probability']:.2f})" for t, v in r["predicted"].items())
        lines.append(f"{r['query']}: predicted {pred}")
        if "filter" in r:
            lines.append(f"  filter: {' and '.join(r['filter']['where'])} ({r['filter']['matching']} items match)")
        if "rerank" in r:
            terms = ", ".join(f"{c} {w:g}" for c, w in r["rerank"]["weights"].items())
            lines.append(f"  re-ranked by image distance + {terms} (number band {r['rerank']['band']:g}, "
                         f"pool {r['rerank']['pool']})")
        if "reason" in r:
            lines.append(f"  {r['reason']}")
            lines.append("")
            continue
        tasks = list(r["predicted"])
        scored = "rerank" in r
        header = (f"  {'rank':>4}  {'id':>6}  {'distance':>9}  " + (f"{'score':>7}  " if scored else "")
                  + "".join(f"{t:<14}" for t in tasks) + "path")
        lines.append(header)
        for it in r["results"]:
            labels = "".join(f"{it['labels'].get(t, ''):<14}" for t in tasks)
            score = f"{it['score']:>7.3f}  " if scored else ""
            lines.append(f"  {it['rank']:>4}  {it['id']:>6}  {it['distance']:>9.4f}  {score}{labels}{it['path']}")
            if "explain" in it:
                e = it["explain"]
                parts = " + ".join([f"image {e['image']:.3f}"] + [f"{c} {t:.3f}" for c, t in e["terms"].items()])
                lines.append(f"{'':>8}{parts} = {e['total']:.3f}; " +
                             ", ".join(f"{c}={v}" for c, v in it["attributes"].items()))
        lines.append("")
    return "\n".join(lines).rstrip()
