"""The range checks of config dataclasses, and the short quoting of values in config errors.

Each number a config holds carries its :class:`~fashionrec.configtypes.Range` in its annotation;
:func:`check_ranges` checks a dataclass built in code, :func:`numeric_keys` lists them for the README's
table. The loader (:mod:`fashionrec.configload`) checks the same as a file is read, naming its line.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from typing import Annotated

from .configtypes import OneOf, Range, range_words

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
SHORT = 72  # characters of a value quoted in an error message


def _short(value, limit: int = SHORT) -> str:
    """``repr(value)`` cut to ``limit`` characters with "...": a config value can be megabytes (its YAML a few
    hundred bytes of aliases), and an error stays one short line. Bounded work however large the value."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _one_of(tp) -> OneOf | None:
    """The :class:`OneOf` of an ``Annotated`` annotation, if it has one."""
    return next((a for a in getattr(tp, "__metadata__", ()) if isinstance(a, OneOf)), None)


def _check_number(name: str, value, allowed: Range, kind: type = float):
    """``value`` as a ``kind`` in ``allowed``, or a ValueError naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {_short(value)}")
    if kind is int and value != int(value):
        raise ValueError(f"{name} must be a whole number; got {value!r}")
    if value not in allowed:
        raise ValueError(f"{name} must be {_range_words(allowed)}; got {value!r}")
    return kind(value)


_range_words = range_words


def check_ranges(cfg) -> None:
    """Each number of the dataclass ``cfg`` (a field's own, or each item of a list, tuple or mapping) in its
    field's :class:`Range`: a ValueError naming the field and the range (the loader checks the same, naming the
    file and line, before the dataclass is made; this catches one built in code)."""
    hints = typing.get_type_hints(type(cfg), include_extras=True)
    for f in dataclasses.fields(cfg):
        for where, value, allowed, kind in _ranged_values(f.name, getattr(cfg, f.name), hints[f.name]):
            _check_number(where, value, allowed, kind)


def _ranged_values(name: str, value, tp):
    """(key, value, Range, int or float) for each number ``value`` holds under the annotation ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated and _one_of(tp) and dataclasses.is_dataclass(value):  # a chosen block: its own fields
        hints = typing.get_type_hints(type(value), include_extras=True)
        for f in dataclasses.fields(value):
            yield from _ranged_values(f"{name}.{f.name}", getattr(value, f.name), hints[f.name])
    elif origin is Annotated:
        ranges = [a for a in tp.__metadata__ if isinstance(a, Range)]
        if ranges and value is not None:
            yield name, value, ranges[0], args[0]
        yield from _ranged_values(name, value, args[0])
    elif origin in (typing.Union, types.UnionType):
        if value is not None:
            for arg in args:
                if typing.get_origin(arg) is Annotated:
                    yield from _ranged_values(name, value, arg)
    elif origin in (list, tuple) and isinstance(value, (list, tuple)):
        items = args if origin is tuple else args * len(value)
        for i, (v, a) in enumerate(zip(value, items)):
            yield from _ranged_values(f"{name}[{i}]", v, a)
    elif origin is dict and isinstance(value, dict):
        for k, v in value.items():
            yield from _ranged_values(f"{name}.{k}", v, args[1])


def numeric_keys(cls, prefix: str = ""):
    """(dotted key, type, :class:`Range` or None) of each number a config dataclass holds, its sections'
    included: a list's items as ``key[]``, a mapping's values as ``key.<name>``, a [lo, hi] pair as one."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if f.init:
            yield from _numeric(prefix + f.name, hints[f.name])


def _numeric(key: str, tp, optional: bool = False):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated and _one_of(tp):  # each choice's keys, the choice named after the key
        for name, cls in _one_of(tp).lookup().items():
            for sub, type_, allowed in numeric_keys(cls, key + "."):
                yield f"{sub} ({name})", type_, allowed
    elif origin is Annotated and args[0] in (int, float):
        ranges = [a for a in tp.__metadata__ if isinstance(a, Range)]
        yield key, args[0].__name__ + (" or null" if optional else ""), ranges[0] if ranges else None
    elif origin is Annotated:
        yield from _numeric(key, args[0], optional)
    elif dataclasses.is_dataclass(tp):
        yield from numeric_keys(tp, key + ".")
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is not type(None):
                yield from _numeric(key, arg, type(None) in args)
    elif origin is list:
        yield from _numeric(key + "[]", args[0])
    elif origin is dict:
        yield from _numeric(key + ".<name>", args[1])
    elif origin is tuple:
        items = [row for i, a in enumerate(args) for row in _numeric(f"{key}[{i}]", a)]
        if items and all(row[1:] == items[0][1:] for row in items) and len(items) == len(args) == 2:
            yield key, f"[lo, hi] of {items[0][1]}, lo <= hi", items[0][2]
        else:
            yield from items
    elif tp in (int, float):
        yield key, tp.__name__ + (" or null" if optional else ""), None


# ----------------------------------------------------------------------------- loading
