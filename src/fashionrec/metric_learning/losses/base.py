"""The loss protocol and its registry: a loss is one small ``@register_loss`` dataclass whose fields are
its parameters (with their :class:`~fashionrec.configtypes.Range`) and whose :meth:`MetricLoss.build`
makes pytorch-metric-learning's loss and miner. The config's ``loss`` block is ``{name: ..., its
fields}``; the flat keys of configs written before issue 27 (``ms_alpha``, ``triplet_margin``...) are
read by :func:`upgrade_flat_keys`, with a one-line deprecation warning.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from typing import ClassVar

from ...config import check_ranges
from ...configtypes import Choice
from ...registry import Registry

# Every module of the losses package is imported on first use, and plugins (fashionrec.registry)
LOSSES = Registry("loss", "fashionrec.metric_learning.losses")

# The keys of the flat ``loss`` block every loss's parameters shared until issue 27; a loss's own
# ``renamed`` maps the ones that changed name (ms_alpha -> multi_similarity's alpha).
FLAT_KEYS = ("alpha", "delta", "proxy_lr_factor", "ms_alpha", "ms_beta", "ms_base", "ms_epsilon", "pos_margin",
             "neg_margin", "triplet_margin")


@dataclass
class MetricLoss(Choice):
    """A metric-learning loss: its fields are its parameters. Subclasses set ``name`` and implement ``build``."""

    # the flat config's key -> this loss's field, for configs written before each loss had its own block
    renamed: ClassVar[dict[str, str]] = {}

    def __post_init__(self):
        check_ranges(self)  # one built in code is checked as one read from a file

    def build(self, num_items: int, embedding_dim: int):
        """(the loss module, its miner or None) for ``num_items`` training items of ``embedding_dim``-d."""
        raise NotImplementedError

    @property
    def parameter_lr_factor(self) -> float:
        """The lr of the loss's own parameters (Proxy-Anchor's proxies) as a multiple of ``train.lr``."""
        return 1.0


def register_loss(cls: type[MetricLoss]) -> type[MetricLoss]:
    """Class decorator: the loss ``cls`` (a dataclass subclassing :class:`MetricLoss`) under ``cls.name``."""
    if not cls.name or not isinstance(cls.name, str) or cls.name in LOSSES.registered():
        raise ValueError(f"loss name {cls.name!r} is empty or already registered")
    if "__dataclass_fields__" not in cls.__dict__ or not issubclass(cls, MetricLoss):
        raise ValueError(f"loss {cls.name}: decorate a @dataclass subclass of MetricLoss")
    return LOSSES.register(cls, name=cls.name)


def loss_names() -> tuple[str, ...]:
    return LOSSES.names()


def loss_class(name: str) -> type[MetricLoss]:
    return LOSSES.get(name)


def loss_choices() -> dict[str, type[MetricLoss]]:
    """name -> loss class: what the config's ``loss`` block may name."""
    return dict(LOSSES.items())


def upgrade_flat_keys(raw: dict, where: str) -> tuple[dict, dict]:
    """A ``loss`` block written with the flat keys (``ms_alpha``, ``triplet_margin``...: a config or a run's
    ``config.yaml`` from before issue 27) as the new block of its loss, with a one-line deprecation warning
    on stderr: the chosen loss's renamed keys take their new names (winning over the same name written
    plainly, as in a run's saved config, where ``alpha`` was Proxy-Anchor's), the other losses' flat keys
    are dropped (they were ignored). A block without a renamed key is already the new form. Returns (the
    block, {new key: key as written})."""
    renamed = {old for _, cls in LOSSES.items() for old in cls.renamed}
    if not renamed & set(raw):
        return raw, {}
    cls = LOSSES.get(raw["name"])
    own = {f.name for f in fields(cls) if f.init}
    out = {k: v for k, v in raw.items() if k == "name" or k in own or k not in FLAT_KEYS}
    moved = {new: old for old, new in cls.renamed.items() if old in raw}
    out.update({new: raw[old] for new, old in moved.items()})
    dropped = [k for k in raw if k in FLAT_KEYS and k not in out and k not in cls.renamed]
    new = ", ".join(f"{k}: {out[k]}" for k in out if k != "name")
    print(f"{where}: deprecated flat loss keys ({', '.join(sorted(renamed & set(raw)))}) read as "
          f"{{name: {cls.name}{', ' if new else ''}{new}}}" + (f", ignoring {', '.join(dropped)}" if dropped else "")
          + "; write the block that way", file=sys.stderr)
    return out, moved
