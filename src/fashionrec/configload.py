"""Loading YAML configs into typed dataclasses, strictly: the machinery behind :mod:`fashionrec.config`.

An unknown key or one given twice, a value of the wrong type, a number outside its field's
:class:`~fashionrec.configtypes.Range` or not finite, a missing required key or a missing file is a
:class:`ConfigError` whose one-line message names the file, the line and the dotted key (with a "did
you mean" for near misses), quoting at most a short prefix of the value. YAML whose aliases expand past
:data:`MAX_YAML_VALUES` values is refused before it is built. ``--set a.b=value`` overrides are parsed as
YAML and checked the same way. Nothing here knows which configs exist (config.py declares them).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from .configcheck import SHORT, _one_of, _range_words, _short
from .configtypes import Choice, Named, OneOf, Range
from .errors import ConfigError


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated and _one_of(tp):
        return f"a {_one_of(tp).what} name or {{name: ..., its keys}}"
    if origin is Annotated and _named(tp):
        return " | ".join(repr(a) for a in _named(tp).lookup())
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping of {} to {}".format(*(_type_name(a) for a in typing.get_args(tp)))
    if origin is tuple:
        return "list of " + ", ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _named(tp) -> Named | None:
    return next((a for a in getattr(tp, "__metadata__", ()) if isinstance(a, Named)), None)


class _Mismatch(Exception):
    pass


def _key_text(key) -> str:
    return key if isinstance(key, str) and key.isprintable() and len(key) <= SHORT else _short(key)


class _Source:
    """Where a config's values come from: the file, the line of each key (dotted, list items as ``[i]``),
    and the text as written of each plain scalar YAML read as a bool or a number (a text field takes the
    text: ``name: 2024``, ``classes: [yes, no]``). A key given with ``--set`` has no line."""

    def __init__(self, name: str, lines: dict | None = None, texts: dict | None = None):
        self.name, self.lines, self.texts = name, lines or {}, texts or {}
        self.written: dict[str, str] = {}  # a key renamed while loading (an older spelling) -> as written

    def at(self, key: str) -> str:
        """``file:line: key``: the key's line, else the line of the nearest section holding it."""
        key = self.written.get(key, key)
        probe, line = key, None
        while probe:
            if probe in self.lines:
                line = self.lines[probe]
                break
            probe = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", probe) if re.search(r"[.\[]", probe) else ""
        return f"{self.name}{f':{line}' if line else ''}" + (f": {key}" if key else "")

    def override(self, key: str, texts: dict) -> None:
        """``key`` now holds a ``--set`` value: no line of the file is its line."""
        def inside(k: str) -> bool:
            return k == key or k.startswith((key + ".", key + "["))

        self.lines = {k: v for k, v in self.lines.items() if not inside(k)}
        self.texts = {k: v for k, v in self.texts.items() if not inside(k)}
        self.lines[key] = None
        self.texts.update({key + k if k.startswith("[") else f"{key}.{k}" if k else key: v for k, v in texts.items()})


def _range_error(src: _Source, key: str, value, allowed: Range) -> ConfigError:
    return ConfigError(f"{src.at(key)}: must be {_range_words(allowed)}; got {_short(value)}")


def _coerce(value, tp, where_key: str, src: _Source):
    """Check ``value`` against the annotation ``tp``; return the (converted) value."""
    origin = typing.get_origin(tp)
    if origin is Annotated and _one_of(tp):
        return _choose(value, _one_of(tp), where_key, src)
    if origin is Annotated:
        inner = typing.get_args(tp)[0]
        coerced = _coerce(value, inner, where_key, src)
        for allowed in tp.__metadata__:
            if isinstance(allowed, Range) and coerced is not None and coerced not in allowed:
                raise _range_error(src, where_key, value, allowed)
            if isinstance(allowed, Named) and coerced not in allowed.lookup():
                raise _Mismatch
        return coerced
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch
        return _build(tp, value, src, where_key + ".")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise _Mismatch
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where_key, src)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is type(None):
        if value is not None:
            raise _Mismatch
        return None
    if origin is list:
        if not isinstance(value, list):
            raise _Mismatch
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{where_key}[{i}]", src) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        key_tp, value_tp = typing.get_args(tp)
        return {_coerce(k, key_tp, where_key, src): _coerce(v, value_tp, f"{where_key}.{k}", src)
                for k, v in value.items()}
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a, f"{where_key}[{i}]", src) for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():  # 4e7, 32.0
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        if not math.isfinite(value):
            raise ConfigError(f"{src.at(where_key)}: must be a finite number; got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            if where_key not in src.texts:
                raise _Mismatch
            return src.texts[where_key]  # written as a plain yes, 2024 or 1e3: the text as written
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config annotation {tp!r}")  # a bug in this module, not the user's


def _choose(value, one_of: OneOf, key: str, src: _Source):
    """The :class:`Choice` dataclass a block names (``{name: ..., its keys}``, or a bare name), built from its
    keys; a key it does not have is one line naming the choice and the keys it has (and who owns the key)."""
    choices = one_of.lookup()
    if isinstance(value, str) and one_of.bare:
        value = {"name": value}
    if not isinstance(value, dict):
        raise _Mismatch
    if "name" not in value:
        raise ConfigError(f"{src.at(key + '.name')}: required key is missing (the {one_of.what}: "
                          f"{' | '.join(map(repr, choices))})")
    name = value["name"]
    if not isinstance(name, str) or name not in choices:
        raise ConfigError(f"{src.at(key + '.name')}: expected {' | '.join(map(repr, choices))}, got {_short(name)}")
    if one_of.upgrade is not None:
        value, written = one_of.upgrade(dict(value), src.at(key))
        src.written.update({f"{key}.{new}": f"{key}.{old}" for new, old in written.items()})
    cls = choices[name]
    own = [f.name for f in dataclasses.fields(cls) if f.init]
    for k in value:
        if k == "name" or k in own:
            continue
        owners = [n for n, c in choices.items() if k in {f.name for f in dataclasses.fields(c)}]
        near = difflib.get_close_matches(str(k), own, n=1)
        hint = (f" (it is {' and '.join(owners)}'s)" if owners else
                f" (did you mean '{near[0]}'?)" if near else "")
        has = f"{name}'s keys: {', '.join(own)}" if own else f"{name} takes none"
        raise ConfigError(f"{src.at(f'{key}.{_key_text(k)}')}: not a key of {one_of.what} {name}{hint}; {has}")
    return _build(cls, {k: v for k, v in value.items() if k != "name"}, src, key + ".")


BOOL_WORDS = ("true", "false", "yes", "no", "on", "off")


def _build(cls, raw: dict, src: _Source, prefix: str = ""):
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (known keys: {', '.join(fields)})"
            raise ConfigError(f"{src.at(prefix + _key_text(key))}: unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{src.at(key)}: required key is missing")
            continue
        try:
            kwargs[name] = _coerce(raw[name], hints[name], key, src)
        except _Mismatch:
            value = raw[name]
            quoted = (isinstance(value, str) and value.strip().lower() in BOOL_WORDS
                      and "bool" in _type_name(hints[name]))
            raise ConfigError(
                f"{src.at(key)}: expected {_type_name(hints[name])}, got {_short(value)}"
                + (" (write true or false without quotes)" if quoted else "")
            ) from None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # the dataclass's own validation (e.g. AugmentConfig)
        where = prefix.rstrip(".")  # top-level checks name their key in the message itself
        raise ConfigError(f"{src.at(where)}: {e}" if where else f"{src.name}: {e}") from None


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot, no exponent sign... or no dot) as a string; configs and
    ``--set`` write rates that way, so any float literal is a float here (the YAML 1.2 rule)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+][0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))

MAX_YAML_VALUES = 100_000  # values of one config with its aliases expanded (a real one holds a few hundred)
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float")}
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_size(root: yaml.Node, name: str, numbered: bool = True) -> None:
    """Refuse a document whose aliases expand past MAX_YAML_VALUES values (a few hundred bytes can stand for
    10^9: the "billion laughs") or refer to a value holding them (a loop); the composed graph is walked once."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            at = f"{name}:{node.start_mark.line + 1}" if numbered else name
            raise ConfigError(f"{at}: a YAML alias refers to a value that holds it")
        open_.add(key)
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else
                    node.value if isinstance(node, yaml.SequenceNode) else ())
        total = 1 + sum(size(c) for c in children)
        if total > MAX_YAML_VALUES:
            raise ConfigError(f"{name}: its YAML aliases expand to more than {MAX_YAML_VALUES:,} values; "
                              "write the values out")
        open_.discard(key)
        sizes[key] = total
        return total

    size(root)


def _key_lines(node: yaml.Node, name: str, key: str, lines: dict, texts: dict, numbered: bool = True) -> None:
    """The line of each key under ``node`` and the text of each plain bool or number; a key given twice in one
    mapping is an error (YAML keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple, int] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or k.tag == _MERGE_TAG:
                continue
            line, child = k.start_mark.line + 1, f"{key}.{k.value}" if key else k.value
            if (k.tag, k.value) in seen:
                first = f" (first on line {seen[k.tag, k.value]})" if numbered else ""
                raise ConfigError(f"{name}{f':{line}' if numbered else ''}: {_key_text(child)}: given twice{first}; "
                                  "keep one")
            seen[k.tag, k.value] = lines[child] = line
            _key_lines(v, name, child, lines, texts, numbered)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[f"{key}[{i}]"] = item.start_mark.line + 1
            _key_lines(item, name, f"{key}[{i}]", lines, texts, numbered)
    elif node.style is None and node.tag in _PLAIN_TAGS:
        texts[key] = node.value


def _compose(text: str, name: str, numbered: bool = True) -> tuple[Any, dict, dict]:
    """(the document, the line of each key, the text of each plain bool or number) of the YAML ``text``;
    errors name ``name`` and, when ``numbered`` (a file, not a ``--set`` value), the line."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, {}
        _check_size(node, name, numbered)
        lines: dict = {}
        texts: dict = {}
        _key_lines(node, name, "", lines, texts, numbered)
        return loader.construct_document(node), lines, texts
    finally:
        loader.dispose()


def yaml_load(text: str, name: str = "<yaml>"):
    """Parse YAML as the configs mean it (scientific notation is a number), refusing alias bombs and keys
    given twice."""
    return _compose(text, name)[0]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01); the value is parsed as YAML."""
    parts, value, _ = _parse_override(text)
    return parts, value


def _parse_override(text: str) -> tuple[list[str], Any, dict]:
    shown = text if len(text) <= SHORT else text[:SHORT - 3] + "..."
    if "=" not in text:
        raise ConfigError(f"--set {shown}: expected key.sub=value")
    key, _, value = text.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {shown}: bad key {_short(key)}")
    try:
        parsed, _, texts = _compose(value, f"--set {shown}", numbered=False) if value.strip() else ("", {}, {})
    except yaml.YAMLError:
        raise ConfigError(f"--set {shown}: value is not valid YAML") from None
    except RecursionError:
        raise ConfigError(f"--set {shown}: value is nested too deeply") from None
    return parts, parsed, texts


def apply_overrides(raw: dict, overrides, source: _Source | None = None) -> dict:
    for text in overrides or ():
        parts, value, texts = _parse_override(text)
        node = raw
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {} if p not in node else node[p]
                if not isinstance(node[p], dict):
                    raise ConfigError(f"--set {_short(text)}: {p} is not a section")
            node = node[p]
        node[parts[-1]] = value
        if source is not None:
            source.override(".".join(parts), texts)
    return raw


def _read(path) -> tuple[dict, _Source]:
    """The mapping a config file holds, and where each of its keys is."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw, lines, texts = _compose(path.read_text(encoding="utf-8"), str(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if raw is None:
        raise ConfigError(f"{path}: the file holds no settings (empty, or comments only)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {_short(raw)}")
    return raw, _Source(str(path), lines, texts)


def read_yaml(path) -> dict:
    """The mapping a config file holds (one line naming the file when it is not one)."""
    return _read(path)[0]


def load_config(cls, path, overrides=()):
    """Load ``path`` (YAML) with ``--set`` overrides into the dataclass ``cls``."""
    raw, source = _read(path)
    return _build(cls, apply_overrides(raw, overrides, source), source)


def from_dict(cls, raw: dict, src: str = "<config>"):
    return _build(cls, raw, _Source(src))


def to_dict(cfg) -> dict:
    """A dataclass config as plain YAML-able data (tuples become lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):  # a Choice: {name: ..., its fields}
            head = {"name": v.name} if isinstance(v, Choice) else {}
            return head | {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
