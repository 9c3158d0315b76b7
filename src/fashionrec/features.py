"""Feature extraction: the fine-tuned networks with their heads stripped, concatenated.

Following Tuinhof et al. (2018), the catalog representation is ``[F_category, F_texture]``:
each network's pooled penultimate feature (1024-d for BN-Inception), concatenated. Each
network also predicts its task's label, which ``recommend`` shows for the query.

Under torchrun (``torchrun ... -m fashionrec index``) each rank extracts a contiguous run of the
catalog's batches, the very batches one process would make, and rank 0 gathers them in catalog
order: the features are the same bytes as a one-process build's (on the CPU), and images no rank
could decode are counted over all of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import distributed
from .data.loader import BatchLoader, ImageSource
from .errors import UserError
from .label_metrics import softmax
from .query_images import QueryImages
from .runs import load_classifier, sha256_file


class FeatureExtractor(QueryImages):
    """Several trained runs used as one feature extractor (heads stripped, features concatenated)."""

    def __init__(self, run_dirs, device: str = "auto", precision: str = "fp32", compile: str = "eager"):
        if not run_dirs:
            raise UserError("extractors: give at least one run directory")
        self.runs = [Path(r) for r in run_dirs]
        self.precision = precision
        self.classifiers, self.infos = [], []
        for run in self.runs:
            clf, info = load_classifier(run, device=device)
            clf.set_inference_precision(precision)
            if compile != "eager":
                if not hasattr(clf, "set_compile"):
                    raise UserError(f"compile: {compile} needs engine torch ({run} is engine {info['engine']})")
                clf.set_compile(inference=compile)
            self.classifiers.append(clf)
            self.infos.append(info)
        sizes = {i["input_size"] for i in self.infos}
        if len(sizes) != 1:  # one decoded batch feeds every network; each normalises it its own way
            raise UserError("extractors: all runs must share the input size; got "
                            + ", ".join(f"{r} ({i['input_size']} px)" for r, i in zip(self.runs, self.infos)))
        self.input_size = sizes.pop()
        dims = [c.num_features for c in self.classifiers]
        edges = np.cumsum([0] + dims)
        self.blocks = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        self.dim = int(edges[-1])
        self.tasks = [i["task"] for i in self.infos]

    def describe(self) -> list[dict]:
        """What index.json records about each extractor (the hash is of the weights file)."""
        out = []
        for run, info, (a, b) in zip(self.runs, self.infos, self.blocks):
            out.append({
                "run": str(run.resolve()), "task": info["task"], "engine": info["engine"], "arch": info["arch"],
                "classes": info["classes"], "num_features": b - a, "block": [a, b],
                "input_size": info["input_size"], "normalization": info["normalization"],
                # hash the file itself: model.json could be stale after a weights file was replaced
                "weights_sha256": sha256_file(run / info["weights"]),
            })
        return out

    def extract_batch(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """uint8 images (N, H, W, 3) -> (concatenated features (N, dim), [class probabilities per run])."""
        feats, probs = [], []
        for clf in self.classifiers:
            logits, pooled = clf.extract(x)
            feats.append(pooled.astype(np.float32, copy=False))
            # an embedding run (fashionrec metric) has no classes: its probabilities are (N, 0)
            probs.append(softmax(logits) if logits.shape[-1] else logits.astype(np.float32, copy=False))
        return np.concatenate(feats, axis=1), probs

    def _feeding(self) -> dict:
        """The loader's ``borrow`` and ``pin``: every network is done with a batch once it has extracted it, so batches
        are lent from the workers' slots; on CUDA (torch) the slots are page-locked for the copies to the GPU."""
        if any(c.device != "cuda" or c.engine != "torch" for c in self.classifiers):
            return {"borrow": True}
        from .engines.torch.transfer import pin

        return {"borrow": True, "pin": pin}

    def _device_decoding_loader(self, source: ImageSource, batch_size: int, common: dict):
        if any(c.engine != "torch" for c in self.classifiers):
            raise UserError("decode: device needs the torch engine for every extractor; use decode: host")
        from .engines.torch.nvjpeg import DeviceJpegLoader

        return DeviceJpegLoader(source, self.input_size, batch_size, device=self.classifiers[0].device, **common)

    def extract_catalog(self, root, paths, batch_size: int = 32, workers: int = 1, progress: bool = True,
                        max_bad_fraction: float = 0.01, max_pixels: int = 40_000_000, decode: str = "host"):
        """Extract a whole catalog. Returns (features, probs per run, kept row indices, bad {path: reason}).
        ``decode``: ``host`` (the loader's workers) or ``device`` (nvJPEG on the extractors' GPU,
        :mod:`fashionrec.engines.torch.nvjpeg`).

        Under torchrun every rank calls it: each extracts its shard, rank 0 returns the whole catalog's
        arrays and the others (None, None, None, bad)."""
        with distributed.session(self.classifiers[0].device) as world:
            common = dict(max_bad_fraction=max_bad_fraction, max_pixels=max_pixels, rank=world.rank,
                          world_size=world.size, shard_by="range")
            if decode == "device":
                loader = self._device_decoding_loader(ImageSource(root, paths), batch_size, common)
            else:
                loader = BatchLoader(ImageSource(root, paths), self.input_size, batch_size, workers=workers,
                                     **common, **self._feeding())
            # empty first parts: a rank whose shard is empty or all undecodable still has the arrays' shapes
            feats = [np.zeros((0, self.dim), np.float32)]
            probs = [[np.zeros((0, c.num_classes), np.float32)] for c in self.classifiers]
            rows = [np.zeros(0, np.int64)]
            try:
                for x, _, idx in tqdm(loader.epoch(0), total=len(loader), desc="extract", unit="batch",
                                      disable=not progress or not world.is_main):
                    f, p = self.extract_batch(x)
                    feats.append(f)
                    for acc, pi in zip(probs, p):
                        acc.append(pi.astype(np.float32, copy=False))
                    rows.append(np.asarray(idx, np.int64))
            finally:
                loader.close()
            feats, probs, rows = np.concatenate(feats), [np.concatenate(p) for p in probs], np.concatenate(rows)
            if world.enabled:
                return self._gather_shards(world, loader, root, feats, probs, rows)
        if not len(feats):
            raise UserError(f"{root}: no image of the catalog could be decoded")
        return feats, probs, rows, loader.bad

    @staticmethod
    def _gather_shards(world, loader: BatchLoader, root, feats, probs, rows):
        """Rank 0: every rank's shard in rank order, which is catalog order; the bad images of all ranks."""
        kept, bad_count, seen = (int(v) for v in world.sum([len(rows), len(loader.bad), loader.seen]))
        bad = {p: r for part in world.all_gather_json(loader.bad) for p, r in part.items()}
        loader.check_bad(bad_count, seen, final=True)  # the same limit, over the whole catalog, on every rank
        if not kept:
            raise UserError(f"{root}: no image of the catalog could be decoded")
        feats = world.gather_arrays(feats)
        probs = [world.gather_arrays(p) for p in probs]
        rows = world.gather_arrays(rows)
        if not world.is_main:
            return None, None, None, bad
        return np.concatenate(feats), [np.concatenate(p) for p in probs], np.concatenate(rows), bad
