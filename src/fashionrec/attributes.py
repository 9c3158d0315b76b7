"""Catalog attributes: typed columns, their validation, and filter expressions over them.

Every column of the catalog other than ``path`` (and ``split``) is an attribute of its items
(``brand``, ``price``, ``in_stock``, ``category``...). Indexing types each one from its values:

* ``number`` when at least 95 % of the values are decimal numbers (``12``, ``-3.5``, ``1e3``; not
  ``nan``/``inf``): the rest are then bad values, each an error naming its line;
* ``boolean`` when every value is ``true``/``false``, ``yes``/``no`` or ``1``/``0`` (any case;
  a column of only 0 and 1 is boolean: declare it ``number`` where it counts something);
* ``text`` otherwise. An empty cell is a missing value and never decides the type.

Where the guess is wrong, a declaration wins: ``<catalog>.types.json`` beside the CSV (``{"price":
"number"}``), then ``catalog.types`` in the index config, then ``fashionrec index --types
price=number,in_stock=boolean``. The types are stored in ``index.json`` (``"attributes"``) and
``items.csv`` keeps the values as written. A value that does not parse as its column's type is one
:class:`UserError` naming the file, line and column.

**Filters** (``--where``, ``where=[...]``) are expressions over the attributes, ANDed:

=========================  ======================================================
``gender=women``           text: equal (case-insensitive); ``colour=red|blue``: any of them
``brand!=Aurel``           text, number or boolean: present and different
``price<=50``              number: ``<``, ``<=``, ``>``, ``>=``, ``=``, ``!=``
``in_stock``, ``!in_stock``  boolean: true / false (``in_stock=yes`` works too)
=========================  ======================================================

An item without a value in a column never matches a condition on that column. A filter naming
an unknown column, comparing a text column with ``<`` or a number with ``abc`` is one UserError
naming the expression. :class:`AttributeTable` holds the typed columns as numpy arrays (built once
per loaded index), so a filter is a few vectorised comparisons over the catalog.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import read_json_object
from .errors import UserError

ATTRIBUTE_TYPES = ("number", "boolean", "text")
NOT_ATTRIBUTES = ("id", "path", "split")  # catalog columns that describe the row, not the item
PREDICTED_PREFIX = "pred_"  # items.csv's predicted labels: not catalog attributes
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1"), ("false", "no", "0")
MOSTLY_NUMBERS = 0.95  # share of a column's values that makes it a number column
MAX_TEXT_VALUES = 50  # distinct values a text column's schema lists
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_EXPRESSION = re.compile(r"^(?P<column>[^!<>=|]+?)\s*(?P<op>!=|==|<=|>=|=|<|>)\s*(?P<value>.*)$")
_FLAG = re.compile(r"^(?P<negate>!?)\s*(?P<column>[^!<>=|]+)$")
_HINTS = {"number": "a number such as 12.5", "boolean": "true/false, yes/no or 1/0", "text": "text"}


def parse_number(text: str) -> float | None:
    """``text`` as a finite float, or None (``1_000``, ``nan``, ``inf`` are not catalog numbers)."""
    return float(text) if _NUMBER.match(text.strip()) else None


def parse_boolean(text: str) -> bool | None:
    word = text.strip().casefold()
    return True if word in TRUE_WORDS else (False if word in FALSE_WORDS else None)


def parses_as(text: str, kind: str) -> bool:
    """Whether a non-empty value is valid for an attribute type."""
    if kind == "number":
        return parse_number(text) is not None
    if kind == "boolean":
        return parse_boolean(text) is not None
    return True


def bad_value(where: str, column: str, value: str, kind: str, origin: str) -> UserError:
    """The one-line error of a value that does not parse as its column's type."""
    return UserError(f"{where}: column '{column}': '{value}' is not {_HINTS[kind]} (the column is {kind}, {origin})")


def guess_type(values) -> str:
    """The type of a column from its values (empty ones left out): boolean, number or text."""
    present = [v for v in values if v != ""]
    if not present:
        return "text"
    if all(parse_boolean(v) is not None for v in present):
        return "boolean"
    # a price column with one typo is a number column with a bad value (an error naming its line),
    # not a text column that every price filter then refuses
    numbers = sum(parse_number(v) is not None for v in present)
    return "number" if numbers >= MOSTLY_NUMBERS * len(present) else "text"


def is_attribute(column: str) -> bool:
    return column not in NOT_ATTRIBUTES and not column.startswith(PREDICTED_PREFIX)


# ----------------------------------------------------------------------------- declarations


def parse_assignments(option: str, texts, split_commas: bool = True) -> dict[str, str]:
    """``["price=number,in_stock=boolean"]`` -> ``{"price": "number", "in_stock": "boolean"}``.

    ``option`` names the option in errors (``--types``); a later assignment of a column wins.
    """
    out: dict[str, str] = {}
    for text in texts or ():
        for part in (text.split(",") if split_commas else [text]):
            column, eq, value = part.partition("=")
            if not eq or not column.strip() or not value.strip():
                raise UserError(f"{option} {text}: expected column=value; got '{part}'")
            out[column.strip()] = value.strip()
    return out


def parse_types_option(texts) -> dict[str, str]:
    """``--types price=number,...``: each type one of number, boolean, text."""
    types = parse_assignments("--types", texts)
    for column, kind in types.items():
        if kind not in ATTRIBUTE_TYPES:
            raise UserError(f"--types {column}={kind}: the type must be one of {', '.join(ATTRIBUTE_TYPES)}")
    return types


def types_sidecar(catalog) -> Path:
    """Where the types of a catalog CSV may be declared: ``catalog.csv`` -> ``catalog.types.json``."""
    catalog = Path(catalog)
    return catalog.with_name(catalog.stem + ".types.json")


def read_types_sidecar(catalog) -> dict[str, str]:
    """The declarations of ``<catalog>.types.json`` (none when the file is absent)."""
    path = types_sidecar(catalog)
    if not path.is_file():
        return {}
    raw = read_json_object(path, what="types file")
    for column, kind in raw.items():
        if kind not in ATTRIBUTE_TYPES:
            raise UserError(f"{path}: key '{column}': the type must be one of {', '.join(ATTRIBUTE_TYPES)}; "
                            f"got {kind!r}")
    return raw


def type_columns(source, columns: dict[str, list[str]], paths: list[str],
                 declared: dict[str, tuple[str, str]], fixed: dict[str, str] | None = None) -> dict[str, str]:
    """Type the catalog's attribute columns and check every value; returns ``{column: type}``.

    ``columns`` holds each column's values for the rows ``paths``; ``declared`` maps a column
    to ``(type, where it was declared)``; ``fixed`` the types an existing index already has
    (``--append``), which a declaration may not contradict. A bad value is one UserError naming
    ``source``, the row's line and the column.
    """
    fixed = fixed or {}
    attributes = [c for c in columns if is_attribute(c)]
    unknown = [c for c in declared if c not in columns]
    if unknown:
        kind, where = declared[unknown[0]]
        raise UserError(f"{where}: {unknown[0]}={kind}: {source} has no column '{unknown[0]}' "
                        f"(its columns: {', '.join(attributes) or 'none'})")
    types, origin = {}, {}
    for c in attributes:
        if c in fixed:
            if c in declared and declared[c][0] != fixed[c]:
                raise UserError(f"{declared[c][1]}: {c}={declared[c][0]}, but the index holds '{c}' as "
                                f"{fixed[c]}; rebuild the index to change a column's type")
            types[c], origin[c] = fixed[c], "the index"
        elif c in declared:
            types[c], origin[c] = declared[c][0], declared[c][1]
        else:
            types[c], origin[c] = guess_type(columns[c]), "guessed"
    for c, kind in types.items():
        for row, value in enumerate(columns[c]):
            if value != "" and not parses_as(value, kind):
                raise bad_value(_row_position(source, paths[row]), c, value, kind, origin[c])
    return types


def _row_position(source, path: str) -> str:
    """``catalog.csv:LINE`` of the row of ``path`` (re-read only to name a bad value's line)."""
    from .data.catalog import read_csv_rows

    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        try:
            for lineno, row in read_csv_rows(source)[1]:
                if row["path"] == path:
                    return f"{source}:{lineno}"
        except UserError:
            pass
    return f"{source}: item '{path}'"


# ----------------------------------------------------------------------------- the typed table


class AttributeTable:
    """An index's attributes as numpy arrays, one per column, for filters and re-ranking.

    ``number`` columns are float64 (NaN: missing); ``boolean`` int8 (1, 0, -1: missing); ``text``
    int64 codes into :attr:`vocabulary` (casefolded, sorted; -1: missing).
    """

    def __init__(self, items: list[dict], types: dict[str, str], source="items.csv"):
        self.types = dict(types)
        self.n_items = len(items)
        self.values: dict[str, np.ndarray] = {}
        self.vocabulary: dict[str, list[str]] = {}
        self._display: dict[str, dict[str, str]] = {}
        for column, kind in self.types.items():
            raw = [it.get(column) or "" for it in items]
            for i, v in enumerate(raw):  # a hand-edited items.csv is checked, not trusted
                if v and not parses_as(v, kind):
                    raise bad_value(f"{source}:{i + 2}", column, v, kind, "in index.json")
            if kind == "number":
                self.values[column] = np.array([parse_number(v) if v else np.nan for v in raw], np.float64)
            elif kind == "boolean":
                self.values[column] = np.array([int(parse_boolean(v)) if v else -1 for v in raw], np.int8)
            else:
                folded = [v.casefold() for v in raw]
                vocab = sorted({f for f in folded if f})
                code = {f: j for j, f in enumerate(vocab)}
                self.values[column] = np.array([code[f] if f else -1 for f in folded], np.int64)
                self.vocabulary[column] = vocab
                display: dict[str, str] = {}
                for v, f in zip(raw, folded):
                    if f:
                        display.setdefault(f, v)  # the first spelling met
                self._display[column] = display

    def code(self, column: str, value) -> int | float:
        """A query value in the column's array terms: text -> its code (-2: not in the catalog),
        boolean -> 1/0, number -> float; -1 (NaN for numbers) when ``value`` is missing/unparsable."""
        kind = self.types[column]
        text = "" if value is None else str(value).strip()
        if kind == "number":
            number = parse_number(text) if text else None
            return np.nan if number is None else number
        if kind == "boolean":
            flag = parse_boolean(text) if text else None
            return -1 if flag is None else int(flag)
        if not text:
            return -1
        vocab = self.vocabulary[column]
        j = int(np.searchsorted(vocab, text.casefold()))
        return j if j < len(vocab) and vocab[j] == text.casefold() else -2

    def value(self, column: str, item_id: int):
        """Item ``item_id``'s value as a Python value (None: missing)."""
        v = self.values[column][item_id]
        kind = self.types[column]
        if kind == "number":
            return None if np.isnan(v) else float(v)
        if kind == "boolean":
            return None if v < 0 else bool(v)
        return None if v < 0 else self._display[column][self.vocabulary[column][v]]

    def schema(self) -> dict:
        """Per attribute: ``{"type": "number", "min", "max"}``, ``{"type": "boolean"}`` or
        ``{"type": "text", "values": [...], "n_values"}`` (the first :data:`MAX_TEXT_VALUES` distinct
        values, sorted), each with ``"missing"``: how many items have no value."""
        out = {}
        for column, kind in self.types.items():
            v = self.values[column]
            missing = np.isnan(v) if kind == "number" else v < 0
            entry: dict = {"type": kind}
            if kind == "number":
                present = v[~missing]
                entry.update(min=float(present.min()) if len(present) else None,
                             max=float(present.max()) if len(present) else None)
            elif kind == "text":
                names = [self._display[column][f] for f in self.vocabulary[column]]
                entry.update(values=names[:MAX_TEXT_VALUES], n_values=len(names))
            entry["missing"] = int(missing.sum())
            out[column] = entry
        return out

    def mask(self, conditions) -> np.ndarray:
        """The items that satisfy every condition (bool, (n_items,))."""
        keep = np.ones(self.n_items, bool)
        for condition in conditions:
            keep &= condition.mask(self)
        return keep


# ----------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Condition:
    """One parsed filter expression: ``column op values`` (values typed for the column)."""

    expression: str
    column: str
    op: str  # = != < <= > >=
    values: tuple

    def mask(self, table: AttributeTable) -> np.ndarray:
        v = table.values[self.column]
        kind = table.types[self.column]
        present = ~np.isnan(v) if kind == "number" else v >= 0
        if self.op in ("=", "!="):
            if kind == "text":
                codes = [table.code(self.column, x) for x in self.values]
                hit = np.isin(v, [c for c in codes if c >= 0])
            else:
                hit = np.isin(v, np.array(self.values, v.dtype))
            return present & (hit if self.op == "=" else ~hit)
        x = self.values[0]
        with np.errstate(invalid="ignore"):
            hit = {"<": v < x, "<=": v <= x, ">": v > x, ">=": v >= x}[self.op]
        return present & hit


def parse_condition(expression: str, types: dict[str, str]) -> Condition:
    """One filter expression, checked against the index's attribute ``types``."""
    text = str(expression).strip()
    what = f"filter '{expression}'"
    if not text:
        raise UserError(f"{what}: empty; write column=value, column<=number or a boolean column's name")
    m = _EXPRESSION.match(text)
    if m:
        column, op, value = m["column"].strip(), m["op"], m["value"].strip()
        op = "=" if op == "==" else op
    else:
        flag = _FLAG.match(text)
        if not flag:
            raise UserError(f"{what}: expected column=value, column!=value, column<number, column>=number, "
                            f"column or !column")
        column, op, value = flag["column"].strip(), ("!=" if flag["negate"] else "="), None
    kind = _column_type(what, column, types)
    if value is None:  # a bare name: a boolean column is true
        if kind != "boolean":
            raise UserError(f"{what}: '{column}' is a {kind} column; a bare name filters a boolean column "
                            f"(write {column}=... or {column}<=...)")
        return Condition(text, column, op, (1,))
    if not value:
        raise UserError(f"{what}: no value after '{op}'")
    if op in ("<", "<=", ">", ">=") and kind != "number":
        raise UserError(f"{what}: '{op}' compares numbers; '{column}' is a {kind} column "
                        f"(use {column}=value or {column}!=value)")
    parts = [p.strip() for p in value.split("|")]
    if any(not p for p in parts):
        raise UserError(f"{what}: an empty alternative in '{value}'")
    if len(parts) > 1 and op not in ("=", "!="):
        raise UserError(f"{what}: '|' (any of) goes with = or !=")
    typed = []
    for p in parts:
        if kind == "number":
            number = parse_number(p)
            if number is None:
                raise UserError(f"{what}: '{p}' is not a number ('{column}' is a number column)")
            typed.append(number)
        elif kind == "boolean":
            flag = parse_boolean(p)
            if flag is None:
                raise UserError(f"{what}: '{p}' is not true/false, yes/no or 1/0 ('{column}' is a boolean column)")
            typed.append(int(flag))
        else:
            typed.append(p)
    return Condition(text, column, op, tuple(typed))


def parse_where(where, types: dict[str, str]) -> list[Condition]:
    """``where`` (a list of expression strings, or one string) -> conditions, ANDed."""
    if where is None:
        return []
    if isinstance(where, str):
        where = [where]
    return [parse_condition(w, types) for w in where]


def describe(conditions) -> str:
    return " and ".join(c.expression for c in conditions)


def _column_type(what: str, column: str, types: dict[str, str]) -> str:
    if column in types:
        return types[column]
    near = difflib.get_close_matches(column, list(types), n=1)
    hint = f"did you mean '{near[0]}'? " if near else ""
    raise UserError(f"{what}: no attribute '{column}'; {hint}the index has: {', '.join(types) or 'none'}")


def check_columns(what: str, columns, types: dict[str, str]) -> None:
    """Every name in ``columns`` is an attribute (``what`` names the option in the error)."""
    for column in columns:
        _column_type(what, column, types)


def attribute_types(meta: dict, items: list[dict]) -> dict[str, str]:
    """An index's attribute types: ``index.json``'s ``attributes``, or for an index written before
    attributes were typed, guessed from ``items.csv``'s catalog columns."""
    if isinstance(meta.get("attributes"), dict):
        return dict(meta["attributes"])
    columns = [c for c in meta.get("label_columns", []) if is_attribute(c)]
    return {c: guess_type([it.get(c) or "" for it in items]) for c in columns}


CATALOG_PREFIX = "catalog_"  # a catalog column named like one the toolkit writes (id, pred_*) is kept under this


def keep_catalog_columns(source, known: dict[str, list[str]], log=print) -> dict[str, list[str]]:
    """The catalog's columns with those named like items.csv's own (``id``: the item's row; ``pred_*``: the
    predicted labels) kept as ``catalog_<name>``, never overwritten: a shop's SKU ``id`` column stays the link to
    its product. A clash with a column the catalog also has is one error naming both, before any work."""
    renamed = {c: f"{CATALOG_PREFIX}{c}" for c in known if c == "id" or c.startswith(PREDICTED_PREFIX)}
    for c, new in renamed.items():
        if new in known:
            raise UserError(f"{source}:1: column '{c}' is a name fashionrec writes in items.csv, and its stand-in "
                            f"'{new}' is taken by another column; rename one of them")
    if renamed:
        log(f"kept the catalog's column(s) {', '.join(renamed)} as {', '.join(renamed.values())} "
            f"(items.csv's own {', '.join(renamed)} are the item's row and predictions)")
    return {renamed.get(c, c): v for c, v in known.items()}
