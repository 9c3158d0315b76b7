"""The pieces of a config's annotations that the packages below :mod:`fashionrec.config` state their
parameters with (``knn``'s backends, ``metric``'s losses): importing this module imports nothing else.

* :class:`Range`: the values a numeric key may take, ``Annotated[float, Range(gt=0, le=10)]``;
* :class:`Choice` and :class:`OneOf`: a config block one of several registered dataclasses fills, picked by
  its ``name`` key: ``loss: {name: triplet, margin: 0.2}``, ``backend: {name: faiss-ivf, nprobe: 4}`` (or a
  bare name, ``backend: brute``). The field is ``Annotated[Base, OneOf("loss", registry_lookup)]``; each
  name's dataclass holds only its own keys, so a key another choice owns is a one-line error naming both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Range:
    """The values a numeric config key may take, stated beside its field as
    ``lr: Annotated[float, Range(gt=0, le=10)]`` (an item's range in a list, tuple or mapping:
    ``dict[str, Annotated[float, Range(ge=0)]]``). The loader checks it (one line naming the file,
    line and key) and the README's table of ranges is generated from it
    (``python scripts/config_ranges.py``)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, value) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def __str__(self) -> str:
        lo, hi = (self.ge, "[") if self.gt is None else (self.gt, "(")
        top, end = (self.le, "]") if self.lt is None else (self.lt, ")")
        if top is None:
            return f"{'>=' if hi == '[' else '>'} {_num(lo)}" if lo is not None else "any"
        if lo is None:
            return f"{'<=' if end == ']' else '<'} {_num(top)}"
        return f"{hi}{_num(lo)}, {_num(top)}{end}"


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def range_words(allowed: Range) -> str:
    """``in [0, 1]``, ``>= 1``: how an error message states a range."""
    words = str(allowed)
    return words if words[0] in "<>" else f"in {words}"


class Choice:
    """Base of a dataclass a config block picks by name (``name`` is the class's, not a field: the block's
    other keys are the dataclass's fields). A config dumps it as ``{name: ..., <its fields>}``."""

    name: ClassVar[str] = ""


@dataclass(frozen=True)
class OneOf:
    """``Annotated[Base, OneOf("loss", lookup)]``: the block names one of ``lookup()`` (name -> a
    :class:`Choice` dataclass, read when a config loads, so a choice registered later is found) and holds
    that dataclass's keys. ``upgrade(raw, where)``, if given, rewrites an older spelling of the block
    (``raw``, a dict with ``name``) and returns (the new block, {new key: the key as written}).
    ``bare``: a plain name stands for ``{name: ...}``."""

    what: str
    lookup: Callable[[], dict[str, type]]
    upgrade: Callable[[dict, str], tuple[dict, dict]] | None = None
    bare: bool = True


@dataclass(frozen=True)
class Named:
    """``Annotated[str, Named("dataset format", lookup)]``: a name among ``lookup()`` (read when a config
    loads, so a name registered by a plugin is found): a registry's ``Literal``."""

    what: str
    lookup: Callable[[], tuple[str, ...]]
