"""The index directory: catalog features, items and how they were made.

::

    index/
      features.npy   float32 (n, D): the extractors' pooled features, concatenated, raw
      items.csv      id, path, the catalog's attribute columns as written, predicted labels (pred_<task>)
      index.json     extractors (run, task, arch, engine, weights sha256, block), dimension,
                     normalisation, backend and its parameters, catalog root, toolkit version,
                     attribute types ({"price": "number", ...}) and the hybrid re-ranking weights
      bad_images.txt images of the catalog that could not be decoded (if any)

``features.npy`` always holds the raw features; ``l2_normalize`` (per extractor block) and each
extractor's ``weight`` (its block scaled by sqrt(weight), so that the block's squared distance
counts ``weight`` times) are applied when the search structure is built, so evaluation can
compare the variants from one index.
The search structure is rebuilt from the arrays when loading: nothing is unpickled. The whole
directory is written under a temporary name and swapped in, so a kill leaves the old index or
the new one. With ``faiss-ivfpq`` (a catalog past memory) ``features.npy`` is memory-mapped, not
read: the compressed structure in ``knn/`` re-ranks from it, transforming the candidates' rows
as they are read (``TransformedRows``), so no normalised copy is stored.

Attributes (:mod:`fashionrec.attributes`) are typed and checked when indexing and ``--append``;
:func:`update_index` changes their values without extracting anything (``features.npy`` and the
search structure are hard-linked into the new folder, byte for byte the same) and
:func:`remove_items` takes items out (ids renumbered, search structure rebuilt).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .artifacts import (
    ArtifactKind,
    atomic_dir,
    check_replaceable,
    ensure_writable,
    exclusive_lock,
    load_array,
    read_json_object,
    save_npy,
    write_json,
    write_text,
)
from .attributes import (
    AttributeTable,
    attribute_types,
    bad_value,
    check_columns,
    keep_catalog_columns,
    parses_as,
)
from .attributes import type_columns as type_attribute_columns
from .config import IndexConfig
from .data.catalog import read_csv_rows
from .data.formats import dataset_format, read_catalog
from .errors import UserError
from .knn import EXTERNAL_VECTOR_BACKENDS, KNNIndex, TransformedRows
from .label_metrics import l2_normalize, weight_blocks

INDEX_FORMAT = 1
APPROX_DIR = "knn"  # the saved faiss structure of an approximate backend
ONNX_DIR = "onnx"  # the extractors as ONNX graphs (fashionrec.onnx_export), recorded under index.json's "onnx"
# What `index` writes and `evaluate --index` adds: a folder holding anything else is not replaced.
INDEX_KIND = ArtifactKind("index", marker="index.json",
                          entries=("features.npy", "items.csv", "bad_images.txt", APPROX_DIR, "retrieval.json",
                                   "*.png", ONNX_DIR))
# index.json's keys that the toolkit reads, and their types (a hand-edited file is checked, not trusted)
INDEX_KEYS = {"format": int, "dim": int, "blocks": list, "extractors": list, "l2_normalize": bool,
              "backend_params": dict, "catalog": dict, "label_columns": list}


@dataclass
class CatalogIndex:
    """A loaded index directory: features, items, metadata and the search structure."""

    directory: Path
    features: np.ndarray  # raw, (n, D)
    items: list[dict]  # one dict per row of items.csv, in id order
    meta: dict
    knn: KNNIndex
    _attributes: AttributeTable | None = field(default=None, repr=False, compare=False)

    def attributes(self) -> AttributeTable:
        """The items' attributes as typed numpy columns (built once per loaded index)."""
        if self._attributes is None:
            self._attributes = AttributeTable(self.items, attribute_types(self.meta, self.items),
                                              source=self.directory / "items.csv")
        return self._attributes

    @property
    def root(self) -> Path:
        return resolve_catalog_root(self.directory, self.meta)

    def search_vectors(self, features: np.ndarray) -> np.ndarray:
        """Apply the index's feature transform (optional per-block L2, then block weights) to raw features."""
        return search_transform(features, self.meta["blocks"], self.meta.get("l2_normalize", False),
                                extractor_weights(self.meta))

    def query(self, raw_features: np.ndarray, k: int, exclude=None, allowed=None):
        """``k`` nearest items of raw query features; ``allowed`` (bool, (n_items,)) keeps only those
        items (fewer matches: padded with id -1 at distance inf)."""
        extra = {} if allowed is None else {"allowed": allowed}  # the plain call of any KNNIndex
        return self.knn.query(self.search_vectors(raw_features), k, exclude=exclude, **extra)

    @classmethod
    def load(cls, directory) -> CatalogIndex:
        directory = Path(directory)
        meta_path = directory / "index.json"
        if not meta_path.is_file():
            raise UserError(f"{directory}: not an index (no index.json); build one with `fashionrec index`")
        meta = read_json_object(meta_path, {"format": int}, what="index")
        if meta.get("format") != INDEX_FORMAT:
            raise UserError(f"{meta_path}: index format {meta.get('format')!r} from fashionrec "
                            f"{meta.get('version', '?')}; this is fashionrec {__version__} (format {INDEX_FORMAT}): "
                            f"rebuild the index")
        meta = read_json_object(meta_path, INDEX_KEYS, what="index")
        _check_meta(meta_path, meta)
        # faiss-ivfpq re-ranks from features.npy on disk: memory-mapped, and not checked for NaN
        # here (that would read the whole file at every load; the build checked every row)
        mapped = meta["backend_params"]["backend"] in EXTERNAL_VECTOR_BACKENDS
        features = load_array(directory / "features.npy", dtype=np.float32, shape=(None, meta["dim"]),
                              finite=not mapped, mmap=mapped, what="features")
        items = read_items(directory / "items.csv")
        if features.shape != (len(items), meta["dim"]):
            raise UserError(f"{directory}: features.npy is {features.shape}, expected ({len(items)}, {meta['dim']})")
        index = cls(directory, features, items, meta, knn=None)
        if (directory / APPROX_DIR).is_dir():  # HNSW / IVF: faiss's own file, no retraining
            index.knn = KNNIndex.load(directory / APPROX_DIR,
                                      vectors=TransformedRows(features, index.search_vectors) if mapped else None)
        else:  # exact backends rebuild from features.npy
            index.knn = KNNIndex.from_params(meta["backend_params"], index.search_vectors(features))
        return index

    def save(self, directory, bad: dict | None = None) -> Path:
        """Write the index directory atomically: the old one stays until the new one is complete."""
        directory = Path(directory)
        columns = ["id", "path"] + list(self.meta["label_columns"])
        with atomic_dir(directory, kind=INDEX_KIND) as tmp:
            save_npy(tmp / "features.npy", self.features.astype(np.float32, copy=False))
            write_text(tmp / "items.csv", items_csv_text(self.items, columns))
            if bad:
                write_text(tmp / "bad_images.txt", "".join(f"{p}\t{r}\n" for p, r in sorted(bad.items())))
            if not self.knn.exact:
                self.knn.save(tmp / APPROX_DIR, with_vectors=not self.knn.external_vectors)  # those: features.npy
            if "onnx" in self.meta and (self.directory / ONNX_DIR).is_dir():  # same extractors: the graphs hold
                shutil.copytree(self.directory / ONNX_DIR, tmp / ONNX_DIR, copy_function=_link_or_copy)
            write_json(tmp / "index.json", dict(self.meta, n_items=len(self.items),
                                                backend_params=self.knn.get_params()))
        self.directory = directory
        return directory


def extractor_weights(meta: dict) -> list[float]:
    """Each extractor's block weight (1 where index.json records none: an index from before weights)."""
    return [float(e.get("weight", 1.0)) for e in meta["extractors"]]


def search_transform(features: np.ndarray, blocks, l2: bool, weights) -> np.ndarray:
    """Raw features -> the vectors the search structure holds: per-block L2 (``l2``), then block weights."""
    blocks = [tuple(b) for b in blocks]
    x = l2_normalize(features, blocks=blocks) if l2 else np.ascontiguousarray(features, dtype=np.float32)
    return weight_blocks(x, blocks, weights) if any(w != 1 for w in weights) else x


def _check_meta(path: Path, meta: dict) -> None:
    """The nested parts of index.json that loading relies on, each error naming the key."""
    blocks = meta["blocks"]
    if not (all(isinstance(b, list) and len(b) == 2 and all(isinstance(v, int) for v in b) for b in blocks)
            and blocks and blocks[0][0] == 0 and blocks[-1][1] == meta["dim"]
            and all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))):
        raise UserError(f"{path}: key 'blocks' must be consecutive [start, end] pairs covering 0..dim; "
                        f"got {blocks!r:.80}")
    for i, e in enumerate(meta["extractors"]):
        missing = [k for k in ("run", "task", "arch", "engine", "weights_sha256")
                   if not isinstance(e, dict) or k not in e]
        if missing:
            raise UserError(f"{path}: key 'extractors[{i}]' lacks {', '.join(missing)}")
        w = e.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0 or w == float("inf"):
            raise UserError(f"{path}: key 'extractors[{i}].weight' must be a positive number; got {w!r}")
    for key in ("root", "root_relative"):
        if not isinstance(meta["catalog"].get(key), str):
            raise UserError(f"{path}: key 'catalog.{key}' must be a string")
    if not isinstance(meta["backend_params"].get("backend"), str):
        raise UserError(f"{path}: key 'backend_params.backend' must be a string")
    attributes = meta.get("attributes", {})
    if not isinstance(attributes, dict) or any(t not in ("number", "boolean", "text") for t in attributes.values()):
        raise UserError(f"{path}: key 'attributes' must map columns to number, boolean or text; got {attributes!r:.80}")
    rerank = meta.get("rerank", {"weights": {}})
    weights = rerank.get("weights") if isinstance(rerank, dict) else None
    if not (isinstance(weights, dict) and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                                              for w in weights.values())
            and isinstance(rerank.get("band", 0.2), (int, float)) and rerank.get("band", 0.2) >= 0):
        raise UserError(f"{path}: key 'rerank' must be {{'weights': {{column: number >= 0}}, 'band': number >= 0}}; "
                        f"got {rerank!r:.80}")


def resolve_run(directory: Path, extractor: dict) -> Path:
    """An extractor's run directory: relative to the index if it is there, else the recorded path."""
    rel = directory / extractor.get("run_relative", "")
    return rel if "run_relative" in extractor and (rel / "model.json").is_file() else Path(extractor["run"])


def resolve_catalog_root(directory: Path, meta: dict) -> Path:
    rel = directory / meta["catalog"]["root_relative"]
    return rel if rel.exists() else Path(meta["catalog"]["root"])


def read_items(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        if row.get("id") != str(i):
            raise UserError(f"{path}:{i + 2}: expected id {i}, got {row.get('id')!r}")
    return rows


def items_csv_text(items: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(items)
    return buf.getvalue()


def _same_extractors(old: list[dict], new: list[dict]) -> bool:
    key = lambda es: [(e["task"], e["arch"], e["engine"], e["weights_sha256"], e.get("weight", 1.0))  # noqa: E731
                      for e in es]
    return key(old) == key(new)


def build_index(cfg: IndexConfig, append: bool = False, progress: bool = True, log=print, wait: bool = True,
                types: dict[str, str] | None = None) -> Path:
    """Extract the catalog with the configured runs and write the index directory.

    The catalog's attribute columns are typed (guessed, then ``<catalog>.types.json``, then
    ``cfg.catalog.types``, then ``types``, e.g. ``--types``) and every value is checked before any
    image is read; ``--append`` checks its new rows against the index's types.

    One writer at a time: the index's lock is held from reading the old index to swapping in
    the new one, so concurrent ``--append`` runs queue (``wait=False``: fail at once instead)
    and none of their items is lost. A folder at ``cfg.output`` that is not an index is refused
    before any image is read.
    """
    from .distributed import env_rank  # torch: imported by a build, not by recommend

    out = Path(cfg.output)
    if env_rank() != 0:  # another rank of a torchrun build: it extracts its shard, rank 0 locks and writes
        return _build_index(cfg, out, append, False, lambda *_: None, types or {})
    ensure_writable(out)
    check_replaceable(out, INDEX_KIND)
    with exclusive_lock(out, wait=wait, what="index"):
        return _build_index(cfg, out, append, progress, log, types or {})


def _declared_types(cfg: IndexConfig, types: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Each declared column type with where it was declared (the later source wins)."""
    sidecar, where = dataset_format(cfg.catalog.format).declared_types(cfg.catalog.root)
    declared = {c: (t, where) for c, t in sidecar.items()}
    declared.update({c: (t, "catalog.types") for c, t in cfg.catalog.types.items()})
    declared.update({c: (t, "--types") for c, t in types.items()})
    return declared


def _rerank_meta(cfg: IndexConfig, types: dict[str, str]) -> dict:
    """index.json's ``rerank``: the config's weights (columns checked), recorded at every write."""
    check_columns("index config rerank", cfg.rerank, types)
    return {"weights": {c: w for c, w in cfg.rerank.items() if w > 0}, "band": cfg.rerank_band}


def _build_index(cfg: IndexConfig, out: Path, append: bool, progress: bool, log, types: dict[str, str]) -> Path:
    from .features import FeatureExtractor  # torch: imported by a build, not by recommend

    root, paths, known = read_catalog(cfg.catalog.root, cfg.catalog.format)
    known = keep_catalog_columns(cfg.catalog.root, known, log)
    old = None
    if append:
        if not (out / "index.json").is_file():
            raise UserError(f"{out}: --append needs an existing index")
        old = CatalogIndex.load(out)
    # appended items are extracted as the index's first ones were
    precision = old.meta.get("precision", "fp32") if old else cfg.precision
    extractor = FeatureExtractor(cfg.extractor_runs, device=cfg.device, precision=precision,
                                 compile=cfg.compile)
    described = [dict(e, weight=w) for e, w in zip(extractor.describe(), cfg.extractor_weights)]
    if old:
        if not _same_extractors(old.meta["extractors"], described):
            raise UserError(f"{out}: --append with other extractors (or weights) than the index was built with; "
                            f"rebuild it")
        if Path(old.root).resolve() != Path(root).resolve():
            raise UserError(f"{out}: --append from catalog {root}, but the index holds {old.root}")
        have = {it["path"] for it in old.items}
        new_rows = [i for i, p in enumerate(paths) if p not in have]
        if not new_rows:
            log(f"{out}: nothing to append ({len(paths)} catalog images are all indexed)")
            return out
        paths = [paths[i] for i in new_rows]
        known = {c: [v[i] for i in new_rows] for c, v in known.items()}
    # every value checked before any image is read; --append keeps the index's types
    old_types = attribute_types(old.meta, old.items) if old else {}
    new_types = type_attribute_columns(cfg.catalog.root, known, paths, _declared_types(cfg, types), fixed=old_types)
    attributes = dict(old_types, **new_types)
    rerank = _rerank_meta(cfg, attributes)

    log(f"extracting {len(paths)} images from {root} with {len(extractor.runs)} extractor(s) "
        f"({' + '.join(str(b - a) for a, b in extractor.blocks)} = {extractor.dim}-d)")
    feats, probs, rows, bad = extractor.extract_catalog(
        root, paths, batch_size=cfg.batch_size, workers=cfg.workers, progress=progress,
        max_bad_fraction=cfg.catalog.max_bad_fraction, max_pixels=cfg.catalog.max_pixels, decode=cfg.decode)
    if feats is None:  # not rank 0 of a torchrun build: its shard went to rank 0
        return out
    if not np.isfinite(feats).all():  # e.g. weights that diverged: an index of NaNs would answer nothing
        raise UserError(f"{', '.join(str(r) for r in cfg.extractor_runs)}: the extractors produced NaN or infinite "
                        f"features; check their training (history.png) before indexing with them")

    start = len(old.items) if old else 0
    items = list(old.items) if old else []
    for j, r in enumerate(rows.tolist()):
        item = {"id": str(start + j), "path": paths[r]}
        item.update({c: v[r] for c, v in known.items()})
        for info, p in zip(described, probs):
            if info["classes"]:  # an embedding run predicts no label
                item[f"pred_{info['task']}"] = info["classes"][int(p[j].argmax())]
        items.append(item)
    features = np.concatenate([old.features, feats]) if old else feats
    columns = ["id", "path"] + list(known) + [f"pred_{e['task']}" for e in described if e["classes"]]
    if old:
        columns = list(dict.fromkeys(list(old.items[0].keys()) + columns))

    l2 = old.meta["l2_normalize"] if old else cfg.l2_normalize
    vectors = search_transform(features, extractor.blocks, l2, [e["weight"] for e in described])
    if old is None:  # the backend named, with its own parameters (index.yaml's backend: {name: ..., ...})
        knn = KNNIndex(backend=cfg.backend.name, **asdict(cfg.backend)).fit(vectors, progress=progress)
    elif old.knn.exact:
        knn = KNNIndex.from_params(old.meta["backend_params"], vectors)
    else:  # keep the trained IVF cells / HNSW graph; new items get the next ids
        knn = old.knn
        knn.add(vectors[len(old.items):])
    root_abs = Path(root).resolve()
    for e in described:  # found again from the index even when the whole tree moves
        e["run_relative"] = os.path.relpath(e["run"], out.resolve())
    meta = {
        "format": INDEX_FORMAT,
        "version": __version__,
        "n_items": len(items),
        "dim": extractor.dim,
        "blocks": extractor.blocks,
        "extractors": described,
        "l2_normalize": l2,
        "precision": precision,
        **({"decode": cfg.decode} if cfg.decode != "host" else {}),  # where the catalog's JPEGs were decoded
        "backend_params": knn.get_params(),
        "catalog": {"root": str(root_abs), "root_relative": os.path.relpath(root_abs, out.resolve()),
                    "format": cfg.catalog.format, "source": str(cfg.catalog.root)},
        "label_columns": [c for c in columns if c not in ("id", "path")],
        "attributes": attributes,
        "rerank": rerank,
        **({"onnx": old.meta["onnx"]} if old and "onnx" in old.meta else {}),  # the same extractors' graphs
    }
    CatalogIndex(out, features, items, meta, knn).save(out, bad=bad)
    if bad:
        log(f"skipped {len(bad)} unreadable image(s); listed in {out / 'bad_images.txt'}")
    log(f"{'appended' if old else 'indexed'} {len(rows)} images: {len(items)} items x {extractor.dim}-d, "
        f"backend {meta['backend_params']['backend']}")
    return out


# --------------------------------------------------------------------------- editing without extracting


def _existing(out: Path, option: str) -> CatalogIndex:
    if not (out / "index.json").is_file():
        raise UserError(f"{out}: {option} needs an existing index")
    return CatalogIndex.load(out)


def _link_or_copy(src, dst) -> None:
    """Hard-link (the same bytes, no copy); copy where the file system cannot link."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def update_index(cfg: IndexConfig, csv_path, wait: bool = True, log=print) -> Path:
    """Change attribute values of indexed items, e.g. stock and price, without extracting anything.

    ``csv_path`` has a ``path`` column (as in the catalog, relative to its folder) and any of the
    index's attribute columns; each value replaces the item's (an empty cell makes it missing).
    A path that is not in the index, a column that is not an attribute or a value that does not
    parse as its column's type is one error naming the file and line, and nothing is changed. The
    new index folder hard-links ``features.npy`` and the saved search structure (byte for byte the
    old ones); ``index.json`` records the config's ``rerank`` again. ``retrieval.json`` is not carried
    over (its filtered numbers may be stale): run ``evaluate --index`` again.
    """
    out = Path(cfg.output)
    with exclusive_lock(out, wait=wait, what="index"):
        index = _existing(out, "--update")
        header, rows = read_csv_rows(csv_path)
        types = attribute_types(index.meta, index.items)
        columns = [h for h in header if h != "path"]
        for c in columns:
            if c not in types:
                raise UserError(f"{csv_path}:1: column '{c}' is not an attribute of the index {out} (its attributes: "
                                f"{', '.join(types) or 'none'}); --update changes values, a new column needs a rebuild")
        by_path = {it["path"]: i for i, it in enumerate(index.items)}
        unknown = [(ln, r["path"]) for ln, r in rows if r["path"] not in by_path]
        if unknown:
            more = f" (+{len(unknown) - 1} more unknown paths)" if len(unknown) > 1 else ""
            raise UserError(f"{csv_path}:{unknown[0][0]}: '{unknown[0][1]}' is not in the index {out}{more}; "
                            f"nothing was changed")
        for ln, r in rows:
            for c in columns:
                if r[c] and not parses_as(r[c], types[c]):
                    raise bad_value(f"{csv_path}:{ln}", c, r[c], types[c], "in the index")
        items = [dict(it) for it in index.items]
        changed = 0
        for _, r in rows:  # a path listed twice: the later row wins
            item = items[by_path[r["path"]]]
            for c in columns:
                changed += (item.get(c) or "") != r[c]
                item[c] = r[c]
        meta = dict(index.meta, attributes=types, rerank=_rerank_meta(cfg, types))
        columns_out = ["id", "path"] + list(meta["label_columns"])
        with atomic_dir(out, kind=INDEX_KIND) as tmp:
            for name in ("features.npy", "bad_images.txt"):
                if (out / name).is_file():
                    _link_or_copy(out / name, tmp / name)
            for name in (APPROX_DIR, ONNX_DIR):
                if (out / name).is_dir():
                    shutil.copytree(out / name, tmp / name, copy_function=_link_or_copy)
            write_text(tmp / "items.csv", items_csv_text(items, columns_out))
            write_json(tmp / "index.json", dict(meta, n_items=len(items)))
    log(f"updated {changed} value(s) of {len(rows)} item(s) from {csv_path}; features and the search structure "
        f"are unchanged (linked, nothing extracted)")
    return out


def remove_items(cfg: IndexConfig, targets, wait: bool = True, progress: bool = True, log=print) -> Path:
    """Take items out of the index: ``targets`` are CSV files with a ``path`` column, or item paths.

    Their rows leave ``features.npy`` and ``items.csv``, the others are renumbered 0..n-1 in their
    order, and the search structure is rebuilt over what is left (an approximate one is trained
    again). A path that is not in the index is one error, and nothing is changed.
    """
    out = Path(cfg.output)
    with exclusive_lock(out, wait=wait, what="index"):
        index = _existing(out, "--remove")
        by_path = {it["path"]: i for i, it in enumerate(index.items)}
        drop = set()
        for target in targets:
            if str(target).lower().endswith(".csv") and Path(target).is_file():
                listed = [(f"{target}:{ln}", r["path"]) for ln, r in read_csv_rows(target)[1]]
            else:
                listed = [(f"--remove {target}", Path(target).as_posix())]
            for where, p in listed:
                if p not in by_path:
                    raise UserError(f"{where}: '{p}' is not in the index {out}; nothing was changed")
                drop.add(by_path[p])
        keep = np.ones(len(index.items), bool)
        keep[sorted(drop)] = False
        if not keep.any():
            raise UserError(f"{out}: --remove would remove every item; delete the index folder instead")
        features = np.asarray(index.features[keep], np.float32)
        items = [dict(it, id=str(j)) for j, it in enumerate(it for it, k in zip(index.items, keep) if k)]
        types = attribute_types(index.meta, index.items)
        meta = dict(index.meta, attributes=types, rerank=_rerank_meta(cfg, types))
        backend = index.meta["backend_params"]["backend"]
        vectors = search_transform(features, index.meta["blocks"], index.meta["l2_normalize"],
                                   extractor_weights(index.meta))
        knn = KNNIndex(backend=backend).fit(vectors, progress=progress)
        bad = {}
        if (out / "bad_images.txt").is_file():
            bad = dict(line.split("\t", 1) for line in (out / "bad_images.txt").read_text().splitlines() if line)
        CatalogIndex(out, features, items, meta, knn).save(out, bad=bad)
    log(f"removed {len(drop)} item(s): {len(items)} left, ids renumbered 0..{len(items) - 1}; search structure "
        f"({knn.get_params()['backend']}) rebuilt")
    return out
