"""``folder``: one sub-folder per class (``root/<class>/*.jpg``); to index, every image under the folder."""

from __future__ import annotations

from pathlib import Path

from ..catalog import read_catalog_folder, read_class_folders, read_csv_rows
from . import DatasetFormat, link_into, register_format


@register_format
class ClassFolders(DatasetFormat):
    name = "folder"

    def read_labelled(self, data, task):
        return read_class_folders(data.root, task, data.classes, data.val_fraction, data.split_seed)

    def read_catalog(self, root):
        return read_catalog_folder(root)

    def sample(self, synth_root, out, use="labelled", task="category"):
        """The synthetic Fashion tree's images, hard-linked into one folder per ``task`` class."""
        labels = Path(synth_root) / "fashion" / f"{task}.csv"
        root = Path(out) / f"folders-{task}"
        for _, row in read_csv_rows(labels)[1]:
            link_into(labels.parent / row["path"], root / row["label"] / Path(row["path"]).name)
        return root
