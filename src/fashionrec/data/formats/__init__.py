"""Dataset formats: one module each, registered by name; adding a format is one new file here (or a
plugin module, see :mod:`fashionrec.registry`).

A format says what it can read, by the methods it implements:

===================  ==========================================================  =====================
method               returns                                                     used by
===================  ==========================================================  =====================
``read_labelled``    a :class:`~fashionrec.data.manifest.Manifest` for a task    pretrain, finetune
``read_catalog``     (root, relative paths, {label column: values})              index
``read_items``       :class:`~fashionrec.data.inshop.ItemImages` (photos by item) metric learning
``sample``           a dataset of the format made from the synthetic trees       tests, the contract
===================  ==========================================================  =====================

The configs' ``data.format`` (and ``catalog.format``) take the names of the formats that can serve
the stage (:func:`format_names`), so a format registered by a plugin is a valid config value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from ...registry import Registry

FORMATS = Registry("dataset format", __name__)
USES = {"labelled": "read_labelled", "catalog": "read_catalog", "items": "read_items"}


class DatasetFormat:
    """Base of a registered format: set ``name`` and implement the readers the format has."""

    name: ClassVar[str] = ""

    def read_labelled(self, data, task: str):
        raise NotImplementedError

    def read_catalog(self, root) -> tuple[Path, list[str], dict[str, list[str]]]:
        raise NotImplementedError

    def read_items(self, data):
        raise NotImplementedError

    def declared_types(self, root) -> tuple[dict[str, str], str]:
        """Column types the catalog's own files declare (``{"price": "number"}``) and where; none by default."""
        return {}, ""

    def sample(self, synth_root: Path, out: Path, use: str = "labelled", task: str = "category") -> Path:
        """The ``root`` of a small dataset in this format for ``use`` (a key of :data:`USES`), made from (or
        found in) the synthetic trees under ``synth_root`` (``fashionrec synth``), writing into ``out`` if it
        must write: the writer the tests and the registry's contract test run every format through."""
        raise NotImplementedError

    @classmethod
    def serves(cls, use: str) -> bool:
        """Whether the format implements ``use``'s reader (a key of :data:`USES`)."""
        method = USES[use]
        return getattr(cls, method) is not getattr(DatasetFormat, method)


def link_into(source: Path, dest: Path) -> None:
    """``dest`` a hard link of ``source`` (a sample shares the synthetic tree's bytes)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        os.link(source, dest)


def register_format(cls: type[DatasetFormat]) -> type[DatasetFormat]:
    """Class decorator: an instance of the :class:`DatasetFormat` subclass ``cls`` under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, DatasetFormat)):
        raise ValueError(f"{cls!r}: register a subclass of DatasetFormat")
    FORMATS.register(cls(), name=cls.name)
    return cls


def format_names(use: str | None = None) -> tuple[str, ...]:
    """The registered formats (that implement ``use``'s reader)."""
    return FORMATS.names(None if use is None else lambda f: type(f).serves(use))


def dataset_format(name: str) -> DatasetFormat:
    return FORMATS.get(name)


def load_manifest(data, task: str):
    """The labelled images a data config names, for ``task`` (pretrain, finetune)."""
    return dataset_format(data.format).read_labelled(data, task)


def read_catalog(root, fmt: str) -> tuple[Path, list[str], dict[str, list[str]]]:
    """A catalog to index: (root, relative paths, known label columns)."""
    return dataset_format(fmt).read_catalog(Path(root))


def load_items(data):
    """The photos grouped by item a data config names (metric learning), with the seeded ``val`` items
    split off."""
    return dataset_format(data.format).read_items(data).with_val(data.val_fraction, data.split_seed)
