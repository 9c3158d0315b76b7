"""Image(s) in, ranked catalog items out.

A :class:`Recommender` loads an index and the extractors it was built with, checking each
extractor's weights against the sha256 recorded in ``index.json``: features from other weights
would rank nonsense, so a mismatch is an error, not a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .data.images import DEFAULT_MAX_PIXELS
from .engines.registry import PRECISION_NAMES as PRECISIONS
from .errors import UserError
from .features import FeatureExtractor
from .index import CatalogIndex, resolve_run


class Recommender:
    def __init__(self, index: CatalogIndex, extractor: FeatureExtractor):
        self.index = index
        self.extractor = extractor
        self._path_to_id = None

    @classmethod
    def load(cls, index_dir, extractors=None, device: str = "auto") -> Recommender:
        """Load ``index_dir``; ``extractors`` (run directories) default to those it was built with."""
        index = CatalogIndex.load(index_dir)
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

    def recommend(self, images, k: int = 5, exclude_self: bool = False,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> list[dict]:
        """Rank the catalog for each image (paths or PIL images), in one batch."""
        k = self.check_k(k)
        paths = [img if isinstance(img, (str, Path)) else None for img in images]
        if all(p is not None for p in paths):
            feats, probs = self.extractor.extract_files(paths, max_pixels=max_pixels)
        else:
            feats, probs = self.extractor.extract_images(images)
        exclude = None
        if exclude_self:
            exclude = np.array([(self._catalog_id(p) if p is not None else None) or -1 for p in paths])
        names = [str(image) if p is not None else f"<image {i}>" for i, (image, p) in enumerate(zip(images, paths))]
        return self.rank(feats, probs, k, names, exclude=exclude)

    def rank(self, feats: np.ndarray, probs: list[np.ndarray], k: int, names: list[str], exclude=None) -> list[dict]:
        """Results for extracted queries: the predicted labels and the top ``k`` catalog items."""
        n = len(self.index.items)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # clamping is warned about in check_k
            dist, idx = self.index.query(feats, min(k, n - 1) if exclude is not None else min(k, n), exclude=exclude)
        results = []
        for qi, name in enumerate(names):
            predicted = {}
            for info, p in zip(self.index.meta["extractors"], probs):
                if not info["classes"]:  # an embedding run predicts no label
                    continue
                c = int(p[qi].argmax())
                predicted[info["task"]] = {"label": info["classes"][c], "probability": round(float(p[qi, c]), 4)}
            results.append({"query": name, "predicted": predicted, "results": self._ranked(dist[qi], idx[qi])})
        return results

    def similar(self, item_id: int, k: int = 5) -> dict:
        """The catalog's neighbours of one of its own items (the item itself left out)."""
        n = len(self.index.items)
        if not 0 <= item_id < n:
            raise UserError(f"item {item_id} is not in the index (ids are 0 to {n - 1})")
        k = self.check_k(k)
        item = self.index.items[item_id]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dist, idx = self.index.query(self.index.features[item_id:item_id + 1], min(k, n - 1),
                                         exclude=np.array([item_id]))
        return {"item": {"id": item_id, "path": item["path"], "labels": self.item_labels(item)},
                "results": self._ranked(dist[0], idx[0])}

    def _ranked(self, dist: np.ndarray, idx: np.ndarray) -> list[dict]:
        ranked = []
        for rank, (d, i) in enumerate(zip(dist.tolist(), idx.tolist()), start=1):
            if i < 0:
                continue
            item = self.index.items[i]
            ranked.append({"rank": rank, "id": int(item["id"]), "path": item["path"],
                           "distance": round(float(d), 6), "labels": self.item_labels(item)})
        return ranked

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
        tasks = list(r["predicted"])
        header = f"  {'rank':>4}  {'id':>6}  {'distance':>9}  " + "".join(f"{t:<14}" for t in tasks) + "path"
        lines.append(header)
        for it in r["results"]:
            labels = "".join(f"{it['labels'].get(t, ''):<14}" for t in tasks)
            lines.append(f"  {it['rank']:>4}  {it['id']:>6}  {it['distance']:>9.4f}  {labels}{it['path']}")
        lines.append("")
    return "\n".join(lines).rstrip()
