"""``inshop``: DeepFashion In-shop Clothes Retrieval (``img/``, ``Eval/list_eval_partition.txt``): photos
grouped by item, split into train / query / gallery."""

from __future__ import annotations

from pathlib import Path

from ..inshop import read_inshop
from . import DatasetFormat, register_format


@register_format
class InShop(DatasetFormat):
    name = "inshop"

    def read_items(self, data):
        return read_inshop(data.root, skip_missing=data.skip_missing)

    def sample(self, synth_root, out, use="labelled", task="category"):
        return Path(synth_root) / "inshop"
