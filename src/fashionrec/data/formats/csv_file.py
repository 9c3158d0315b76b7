"""``csv``: one CSV with a ``path`` column (relative to the CSV's folder) and label columns
(``path,label[,split]`` to train a task; ``path,category,texture,...`` to index; ``path,item_id[,split]``
for metric learning)."""

from __future__ import annotations

from pathlib import Path

from ...artifacts import write_text
from ...attributes import read_types_sidecar, types_sidecar
from ..catalog import read_catalog_csv, read_labels_csv
from ..inshop import read_inshop, read_items_csv
from . import DatasetFormat, link_into, register_format


@register_format
class CsvFile(DatasetFormat):
    name = "csv"

    def read_labelled(self, data, task):
        return read_labels_csv(data.root, task, data.classes, data.val_fraction, data.split_seed,
                               label_column=data.label_column, skip_missing=data.skip_missing)

    def read_catalog(self, root):
        return read_catalog_csv(root)

    def declared_types(self, root):
        """The ``<catalog>.types.json`` beside the CSV (see :mod:`fashionrec.attributes`)."""
        return read_types_sidecar(root), str(types_sidecar(root))

    def read_items(self, data):
        return read_items_csv(data.root, data.test_fraction, data.split_seed, skip_missing=data.skip_missing)

    def sample(self, synth_root, out, use="labelled", task="category"):
        """A task's labels CSV or the catalog CSV of the Fashion tree; for ``items``, the In-shop tree's
        photos hard-linked beside a ``path,item_id`` CSV."""
        if use == "catalog":
            return Path(synth_root) / "fashion" / "catalog.csv"
        if use != "items":
            return Path(synth_root) / "fashion" / f"{task}.csv"
        shop = read_inshop(Path(synth_root) / "inshop")
        root = Path(out) / "items"
        rows = ["path,item_id"]
        for i, (path, item) in enumerate(zip(shop.paths, shop.items)):
            link_into(shop.root / path, root / "images" / f"{i:05d}.jpg")
            rows.append(f"images/{i:05d}.jpg,{item}")
        write_text(root / "items.csv", "\n".join(rows) + "\n")
        return root / "items.csv"
