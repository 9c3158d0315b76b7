"""``manifest``: a manifest CSV this toolkit wrote (a run's ``manifest.csv``: paths, labels, splits, classes)."""

from __future__ import annotations

from pathlib import Path

from ..catalog import read_catalog_manifest, read_labels_csv
from ..manifest import Manifest
from . import DatasetFormat, register_format


@register_format
class ManifestCsv(DatasetFormat):
    name = "manifest"

    def read_labelled(self, data, task):
        return Manifest.from_csv(data.root)

    def read_catalog(self, root):
        return read_catalog_manifest(root)

    def sample(self, synth_root, out, use="labelled", task="category"):
        path = Path(out) / f"manifest-{task}.csv"
        read_labels_csv(Path(synth_root) / "fashion" / f"{task}.csv", task).to_csv(path)
        return path
