"""``deepfashion``: the Category and Attribute Prediction benchmark's root (``img/``, ``Anno/``, ``Eval/``)."""

from __future__ import annotations

from pathlib import Path

from ..deepfashion import read_deepfashion
from . import DatasetFormat, register_format


@register_format
class DeepFashion(DatasetFormat):
    name = "deepfashion"

    def read_labelled(self, data, task):
        return read_deepfashion(data.root, task, seed=data.label_seed, skip_missing=data.skip_missing)

    def sample(self, synth_root, out, use="labelled", task="category"):
        return Path(synth_root) / "deepfashion"
