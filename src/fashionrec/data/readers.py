"""One entry point from a data configuration to a :class:`Manifest`."""

from __future__ import annotations

from ..config import DataConfig
from .catalog import read_class_folders, read_labels_csv
from .deepfashion import read_deepfashion
from .manifest import Manifest


def load_manifest(data: DataConfig, task: str) -> Manifest:
    if data.format == "deepfashion":
        return read_deepfashion(data.root, task, seed=data.label_seed, skip_missing=data.skip_missing)
    if data.format == "csv":
        return read_labels_csv(data.root, task, data.classes, data.val_fraction, data.split_seed,
                               label_column=data.label_column, skip_missing=data.skip_missing)
    if data.format == "folder":
        return read_class_folders(data.root, task, data.classes, data.val_fraction, data.split_seed)
    if data.format == "manifest":
        return Manifest.from_csv(data.root)
    raise ValueError(f"data.format: unknown format {data.format!r}")
