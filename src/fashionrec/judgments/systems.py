"""The systems a study compares, and the query images it shows.

A **system** is an index plus the options its rankings are asked with, one YAML file each::

    name: hybrid-price        # optional: the file's stem
    index: ../indexes/shop    # an index folder, relative to this file's folder (or absolute)
    k: 5                      # items shown (default: the judge command's --k)
    where: [in_stock]         # filter expressions, ANDed
    rerank: {price: 1.0}      # re-rank weights over the index's
    band: 0.2                 # relative band of number columns
    prefer: {gender: women}   # the query's value of a re-ranked column

Each file is loaded strictly (:func:`fashionrec.configload.load_config`: an unknown key, a wrong
type or a value out of range is one line naming ``file:line: key``) and its options are checked
against its index (an unknown column is one line naming ``file: key``). Each index and its
extractors are loaded once, however many systems share it; the index's identity is a sha256 over
its ``index.json`` and ``features.npy`` (computed at each start, cached nowhere), which the study
stores so that a changed index is refused.

A **query set** is a folder of images, a CSV with a ``path`` column (relative to the CSV), or a
seeded sample of the first system's catalog. Every query is searched with ``exclude_self``: a
catalog photo does not find itself.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from ..configload import load_config
from ..configtypes import Range
from ..data.catalog import read_csv_rows
from ..data.images import find_images
from ..errors import UserError
from ..runs import sha256_file

__all__ = ["SystemConfig", "System", "Query", "index_sha256", "load_systems", "load_queries", "parse_system_list"]

MAX_K = 100


@dataclass
class SystemConfig:
    """One system's YAML file (see the module's docstring)."""

    index: str
    name: str | None = None
    k: Annotated[int, Range(ge=1, le=MAX_K)] | None = None
    where: list[str] = field(default_factory=list)
    rerank: dict[str, Annotated[float, Range(ge=0)]] = field(default_factory=dict)
    band: Annotated[float, Range(ge=0)] | None = None
    prefer: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Query:
    """A query image (an absolute path) and, when it is a catalog photo, its catalog path (``item``)."""

    image: str
    item: str | None = None


@dataclass
class System:
    """A loaded system: its name, its file, its index (digest and loaded recommender) and its options."""

    name: str
    source: Path
    index_dir: Path
    sha256: str
    k: int
    where: list[str]
    rerank: dict[str, float]
    band: float | None
    prefer: dict[str, str]
    recommender: object  # fashionrec.recommend.Recommender

    @property
    def options(self) -> dict:
        """What the study stores beside the index: the options its rankings are asked with."""
        return {"k": self.k, "where": list(self.where), "rerank": dict(self.rerank), "band": self.band,
                "prefer": dict(self.prefer)}

    def rank(self, image: str, k: int | None = None) -> list[dict]:
        """The system's ranking for one query image (its ``k`` items, or ``k``): ``[{"rank", "id",
        "item", "file"}]``, ``item`` being the catalog path (the item's identity across indexes of
        one catalog) and ``file`` the image on disk. A catalog photo does not find itself."""
        rec = self.recommender
        (res,) = rec.recommend([image], k=k or self.k, exclude_self=True, where=self.where or None,
                               rerank=self.rerank or None, band=self.band, prefer=self.prefer or None)
        root = Path(rec.index.root)
        return [{"rank": r["rank"], "id": r["id"], "item": r["path"], "file": str(root / r["path"])}
                for r in res["results"]]

    def catalog_files(self) -> dict[str, str]:
        """Catalog path -> image file of every item of the system's index."""
        root = Path(self.recommender.index.root).resolve()
        return {it["path"]: str(root / it["path"]) for it in self.recommender.index.items}


def index_sha256(index_dir) -> str:
    """The identity of an index: sha256 over the digests of its ``index.json`` and ``features.npy``."""
    index_dir = Path(index_dir)
    h = hashlib.sha256()
    for name in ("index.json", "features.npy"):
        path = index_dir / name
        if not path.is_file():
            raise UserError(f"{index_dir}: not an index (no {name}); build one with `fashionrec index`")
        h.update(f"{name} {sha256_file(path)}\n".encode())
    return h.hexdigest()


def parse_system_list(text: str) -> list[Path]:
    """``A.yaml,B.yaml[,C.yaml]`` as paths: at least two, each named once."""
    paths = [Path(p.strip()) for p in str(text).split(",") if p.strip()]
    if len(paths) < 2:
        raise UserError(f"--systems {text!r}: give two or more system files, comma-separated (A.yaml,B.yaml)")
    seen = set()
    for p in paths:
        key = p.resolve()
        if key in seen:
            raise UserError(f"--systems: {p} is named twice")
        seen.add(key)
    return paths


def _check_options(path: Path, cfg: SystemConfig, index) -> None:
    """The options against the index's attributes; one line naming the file and the key."""
    from ..recommend import prepare_query

    for key, kwargs in (("where", {"where": cfg.where or None}),
                        ("rerank", {"rerank": cfg.rerank or None, "band": cfg.band}),
                        ("prefer", {"prefer": cfg.prefer or None})):
        try:
            prepare_query(index, **kwargs)
        except UserError as e:
            raise UserError(f"{path}: {key}: {e}") from None


def load_systems(paths, *, default_k: int = 5, device: str = "auto", runtime: str = "auto",
                 onnx_precision: str = "auto", log=None) -> list[System]:
    """Load each system file, its index and its extractors (each index once), in the order given."""
    from ..catalog_index import CatalogIndex
    from ..recommend import Recommender

    loaded: dict[Path, tuple] = {}  # index folder -> (recommender, sha256)
    systems, names = [], {}
    for path in map(Path, paths):
        cfg = load_config(SystemConfig, path)
        name = (cfg.name if cfg.name is not None else path.stem).strip()
        if not name or len(name) > 80 or not name.isprintable():
            raise UserError(f"{path}: name: expected a short printable name; got {cfg.name!r}")
        if name in names:
            raise UserError(f"{path}: name: {name!r} is also the name of {names[name]}; give each system its own")
        names[name] = path
        index_dir = Path(cfg.index).expanduser()
        if not index_dir.is_absolute():
            index_dir = path.parent / index_dir
        index_dir = index_dir.resolve()
        if not index_dir.is_dir():
            raise UserError(f"{path}: index: {cfg.index} is not a folder ({index_dir}; relative paths are read from "
                            f"the system file's folder)")
        if index_dir not in loaded:
            sha = index_sha256(index_dir)  # before loading: what was hashed is what is served
            index = CatalogIndex.load(index_dir)
            _check_options(path, cfg, index)
            rec = Recommender.from_index(index, device=device, runtime=runtime, onnx_precision=onnx_precision)
            loaded[index_dir] = (rec, sha)
            if log:
                log(f"system {name}: {len(index.items)} items from {index_dir} (sha256 {sha[:12]}, runtime "
                    f"{rec.runtime})")
        else:
            _check_options(path, cfg, loaded[index_dir][0].index)
            if log:
                log(f"system {name}: the index of system(s) above, {index_dir}")
        rec, sha = loaded[index_dir]
        k = cfg.k if cfg.k is not None else default_k
        if k > len(rec.index.items) - 1:
            raise UserError(f"{path}: k: {k} is more than the {len(rec.index.items) - 1} items a query can find in "
                            f"{index_dir}")
        systems.append(System(name, path, index_dir, sha, k, list(cfg.where), dict(cfg.rerank), cfg.band,
                              dict(cfg.prefer), rec))
    if len(systems) < 2:
        raise UserError("a study compares two or more systems; got " + ", ".join(str(p) for p in paths))
    return systems


def load_queries(source, systems: list[System], *, sample: int = 50, seed: int = 0) -> list[Query]:
    """The query images: every image under a folder, the ``path`` column of a CSV, or (``source``
    None) ``sample`` items of the first system's catalog drawn with ``seed`` (the same ones at
    every start)."""
    if source is None:
        items = systems[0].recommender.index.items
        if sample < 1:
            raise UserError(f"--sample {sample}: expected at least 1 query")
        picks = sorted(random.Random(seed).sample(range(len(items)), min(sample, len(items))))
        root = Path(systems[0].recommender.index.root)
        return [Query(str((root / items[i]["path"]).resolve()), items[i]["path"]) for i in picks]
    source = Path(source)
    if source.is_dir():
        found = [Query(str(p.resolve())) for p in find_images(source)]
    elif source.is_file() and source.suffix.lower() == ".csv":
        _, rows = read_csv_rows(source)
        found = []
        for lineno, row in rows:
            image = (source.parent / row["path"]).resolve()
            if not image.is_file():
                raise UserError(f"{source}:{lineno}: path: {row['path']} is not a file")
            found.append(Query(str(image)))
    elif not source.exists():
        raise UserError(f"--queries {source}: no such folder or CSV file")
    else:
        raise UserError(f"--queries {source}: expected a folder of images or a CSV file with a 'path' column")
    if not found:
        raise UserError(f"--queries {source}: holds no images")
    catalog = {}
    for s in systems:  # a query that is a catalog photo keeps its catalog path beside it
        for item, file in s.catalog_files().items():
            catalog.setdefault(file, item)
    return [Query(q.image, catalog.get(q.image)) for q in found]
