"""``folder``: one sub-folder per class (``root/<class>/*.jpg``); to index, every image under the folder."""

from __future__ import annotations

import os
from pathlib import Path

from ..catalog import read_catalog_folder, read_class_folders, read_csv_rows
from . import DatasetFormat, register_format


@register_format
class ClassFolders(DatasetFormat):
    name = "folder"

    def read_labelled(self, data, task):
        return read_class_folders(data.root, task, data.classes, data.val_fraction, data.split_seed)

    def read_catalog(self, root):
        return read_catalog_folder(root)

    def sample(self, synth_root, out, task="category"):
        """The synthetic Fashion tree's images, hard-linked into one folder per ``task`` class."""
        labels = Path(synth_root) / "fashion" / f"{task}.csv"
        root = Path(out) / f"folders-{task}"
        for _, row in read_csv_rows(labels)[1]:
            dest = root / row["label"] / Path(row["path"]).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                os.link(labels.parent / row["path"], dest)
        return root
