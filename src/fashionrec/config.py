"""YAML configuration loaded into typed dataclasses.

Every stage is driven by one YAML file. Loading is strict: an unknown key or one given twice, a
value of the wrong type, a number outside its field's :class:`Range` or not finite, a missing
required key or a missing file is a :class:`ConfigError` whose one-line message names the file,
the line and the dotted key (with a "did you mean" for near misses), quoting at most a short
prefix of the value. YAML whose aliases expand past :data:`MAX_YAML_VALUES` values is refused
before it is built. ``--set a.b=value`` overrides are parsed as YAML and checked the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from .configtypes import Choice, OneOf, Range, range_words
from .engines.registry import ARCH_NAMES, ENGINE_NAMES, PRECISION_NAMES, TRAINING_PRECISION_NAMES
from .errors import ConfigError
from .knn import backend_choices

SEED = Range(ge=0, le=2**32 - 1)  # numpy's seeds
WORKERS = Range(ge=0, le=256)
BATCH = Range(ge=1, le=65536)
EPOCHS = Range(ge=1, le=100_000)
FRACTION = Range(ge=0, le=1)
PIXELS = Range(ge=1, le=2**31 - 1)  # an image's pixel count
INPUT_SIZE = Range(ge=32, le=2048)  # px; smaller leaves the networks' last feature map empty
LR = Range(gt=0, le=10)
WEIGHT_DECAY = Range(ge=0, le=1)

TASKS = ("category", "texture")  # the paper's; any name is a task (a CSV's data.label_column, DeepFashion types)
TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")  # a task names files, columns and runs
# The Fashion dataset's classes (Tuinhof et al. 2018, Section 3.2); the defaults for user catalogs.
DEFAULT_CLASSES = {
    "category": ["blouse", "dress", "pants", "pullover", "shirt", "shorts", "skirt", "top", "t-shirt"],
    "texture": ["graphic", "plaid", "plain", "spotted", "striped"],
}


@dataclass
class DataConfig:
    """Where the images and labels come from.

    format: ``deepfashion`` (the Category and Attribute Prediction benchmark root), ``csv``
    (a ``path,label[,split]`` file), ``folder`` (one sub-folder per class) or ``manifest``
    (a manifest CSV written by this toolkit).
    """

    format: Literal["deepfashion", "csv", "folder", "manifest"]
    root: str
    classes: list[str] | None = None  # csv/folder: class list; None = the paper's list for the task
    # csv/folder without a split column: stratified, seeded split
    val_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.2
    split_seed: Annotated[int, SEED] = 0
    label_seed: Annotated[int, SEED] = 0  # DeepFashion attribute tasks: seed for sampling one positive attribute
    label_column: str = "label"  # csv: the column holding the task's labels (colour, gender, sleeve length...)
    max_bad_fraction: Annotated[float, FRACTION] = 0.01  # abort if more than this share of images cannot be decoded
    max_pixels: Annotated[int, PIXELS] = 40_000_000  # refuse larger images (decompression bombs)
    skip_missing: bool = False  # skip (and count) listed images whose file is missing


@dataclass
class ModelConfig:
    arch: Literal[ARCH_NAMES]  # the registered architectures (fashionrec.engines.registry)
    input_size: Annotated[int, INPUT_SIZE] = 224


@dataclass
class TrainConfig:
    optimizer: Literal["sgd", "adam", "adamw"]  # adamw: Adam with decoupled weight decay (Loshchilov & Hutter)
    lr: Annotated[float, LR]  # of the run, however many ranks (torchrun) share it
    # the run's global batch: under torchrun each of N ranks takes batch_size / N (a multiple of N)
    batch_size: Annotated[int, BATCH]
    weight_decay: Annotated[float, WEIGHT_DECAY] = 0.0
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9  # SGD only
    max_epochs: Annotated[int, EPOCHS] = 30
    patience: Annotated[int, EPOCHS] = 3  # early stopping: epochs without a lower validation loss
    top_k: Annotated[int, Range(ge=1, le=1000)] = 5  # top-K accuracy reported (paper: 5 for category, 3 for texture)
    seed: Annotated[int, SEED] = 0
    workers: Annotated[int, WORKERS] = 1  # decoding worker processes; 0 decodes in the main process
    device: Literal["auto", "cpu", "cuda"] = "auto"
    limit_train_batches: Annotated[int, Range(ge=1)] | None = None  # cap batches per epoch (quick runs, benchmarks)
    # The small-data recipe's knobs (configs/small-data/); the defaults are the paper's settings.
    # targets (1 - e) one-hot + e / classes (Szegedy et al. 2016)
    label_smoothing: Annotated[float, Range(ge=0, le=0.99)] = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: lr down to 0 at max_epochs, every step
    # linear warm-up to lr over these (fractional) epochs, every step
    warmup_epochs: Annotated[float, Range(ge=0, le=100_000)] = 0.0
    sync_bn: bool = False  # torchrun: BatchNorm normalises with the global batch's statistics (SyncBatchNorm)
    precision: Literal[TRAINING_PRECISION_NAMES] = "auto"  # of training; auto: bf16 autocast on CUDA, fp32 on a CPU
    # Fine-tuning a pretrained backbone (configs/small-data/finetune-pretrained.yaml; torch engine):
    # the backbone learns at this share of train.lr, the new head at train.lr (parameter groups)
    backbone_lr_factor: Annotated[float, Range(gt=0, le=1)] = 1.0
    # the first epochs train the head only (the backbone's weights frozen), so its random start does not
    # send large gradients through the pretrained features
    freeze_backbone_epochs: Annotated[int, Range(ge=0, le=100_000)] = 0
    freeze_batchnorm: bool = False  # keep the BatchNorm statistics the backbone came with (eval-mode BatchNorm)

    def __post_init__(self):
        check_ranges(self)


FLIP_AXES = ("vertical", "horizontal", "none")  # of AugmentConfig.flip


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


def config_kinds() -> list[tuple[str, type]]:
    """The config files the toolkit reads: (the commands reading it, its dataclass)."""
    from .metric.config import MetricConfig  # below config: imported when asked

    return [("pretrain, finetune", StageConfig), ("metric", MetricConfig), ("index", IndexConfig)]


def ranges_table() -> str:
    """The README's table of every numeric config key and its allowed values (a key several files share with
    the same range is one row)."""
    rows: dict[tuple, list[str]] = {}
    for kind, cls in config_kinds():
        for key, kind_of_number, allowed in numeric_keys(cls):
            rows.setdefault((key, kind_of_number, str(allowed)), []).append(kind)
    lines = ["| key | config | type | allowed |", "|---|---|---|---|"]
    lines += [f"| `{key.partition(' ')[0]}`{' ' * bool(key.partition(' ')[2])}{key.partition(' ')[2]} | "
              f"{', '.join(kinds)} | {type_} | {allowed} |" for (key, type_, allowed), kinds in sorted(rows.items())]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the fine-tune augmentation (:mod:`fashionrec.data.augment`); each parameter is
    drawn uniformly in its range.

    Attributes:
        rotation: largest rotation in degrees; the angle is drawn in [-rotation, rotation].
        hsl_shift: largest shift of each of hue, saturation and lightness, in 0-255 units of
            that channel (a hue shift of 255 is a full turn).
        shear: largest horizontal shear factor (x += shear * y).
        aspect_ratio: (lo, hi) range of the width/height stretch; area is kept.
        flip: axis of the random flip: "vertical" (top-bottom), "horizontal" (left-right)
            or "none".
        flip_prob: probability of flipping.
        crop_scale: (lo, hi) share of the image's area a random resized crop keeps (Szegedy et
            al. 2015's "Inception crop", torchvision's RandomResizedCrop); (1, 1), the default
            and the paper's setting, crops nothing.
        crop_ratio: (lo, hi) range of the crop's width/height ratio (drawn log-uniformly).
        enabled: False turns the whole augmentation off.
    """

    rotation: Annotated[float, Range(ge=0, le=180)] = 3.0
    hsl_shift: Annotated[float, Range(ge=0, le=255)] = 6.0
    shear: Annotated[float, Range(ge=0, le=1)] = 0.25
    aspect_ratio: tuple[Annotated[float, Range(gt=0, le=10)], Annotated[float, Range(gt=0, le=10)]] = (0.875, 1.125)
    flip: str = "vertical"
    flip_prob: Annotated[float, FRACTION] = 0.5
    crop_scale: tuple[Annotated[float, Range(gt=0, le=1)], Annotated[float, Range(gt=0, le=1)]] = (1.0, 1.0)
    crop_ratio: tuple[Annotated[float, Range(gt=0, le=10)], Annotated[float, Range(gt=0, le=10)]] = (0.75, 4 / 3)
    enabled: bool = True

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise types in place once, here
        for name in ("aspect_ratio", "crop_scale", "crop_ratio"):
            pair = getattr(self, name)
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"{name} must be a pair [lo, hi]; got {_short(pair)}")
            set_(self, name, tuple(pair))
        check_ranges(self)
        for name in ("rotation", "hsl_shift", "shear", "flip_prob"):
            set_(self, name, float(getattr(self, name)))
        for name in ("aspect_ratio", "crop_scale", "crop_ratio"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not lo <= hi:
                raise ValueError(f"{name} must be [lo, hi] with lo <= hi; got {[lo, hi]!r}")
            set_(self, name, (lo, hi))
        if self.flip not in FLIP_AXES:
            raise ValueError(f"flip must be one of {', '.join(FLIP_AXES)}; got {_short(self.flip)}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be true or false; got {_short(self.enabled)}")


@dataclass
class OutputConfig:
    dir: str = "runs"
    name: str | None = None  # default: <arch>-<task>


@dataclass
class LogConfig:
    """What a training stage writes besides history.jsonl and history.png."""

    tensorboard: bool = False  # epoch scalars under <run>/tensorboard (pip install fashionrec[tensorboard])


@dataclass
class StageConfig:
    """A pretrain or finetune run."""

    stage: Literal["pretrain", "finetune"]
    task: str  # category, texture, any DeepFashion attribute type (fabric, shape, part, style) or CSV column's name
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    engine: Literal[ENGINE_NAMES] = "torch"
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(enabled=False))
    output: OutputConfig = field(default_factory=OutputConfig)
    log: LogConfig = field(default_factory=LogConfig)
    init: str | None = None  # run to start from (its head replaced), e.g. an imported ImageNet checkpoint; --init wins

    def __post_init__(self):
        if not TASK_NAME.match(self.task):
            raise ValueError(f"task: must be a name of letters, digits, '_' or '-' starting with a letter; "
                             f"got {_short(self.task)}")

    @property
    def run_name(self) -> str:
        return self.output.name or f"{self.model.arch}-{self.task}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output.dir) / self.stage / self.run_name


@dataclass
class CatalogConfig:
    """The catalog to index: a CSV with a ``path`` column (other columns are kept as known
    labels, e.g. ``category``, ``texture``), a folder of images, or a manifest CSV."""

    format: Literal["csv", "folder", "manifest"]
    root: str
    max_bad_fraction: Annotated[float, FRACTION] = 0.01
    max_pixels: Annotated[int, PIXELS] = 40_000_000
    # column -> number | boolean | text where the guess from the values is wrong (fashionrec.attributes)
    types: dict[str, Literal["number", "boolean", "text"]] = field(default_factory=dict)


@dataclass
class ExtractorConfig:
    """One extractor of an index: a run and how much its block counts in the distance."""

    run: str
    # multiplies the block's squared distance (its features are scaled by sqrt(weight)); 0: leave the extractor out
    weight: Annotated[float, Range(gt=0)] = 1.0

    def __post_init__(self):
        check_ranges(self)
        self.weight = float(self.weight)


@dataclass
class IndexConfig:
    catalog: CatalogConfig
    # run directories (or {run: PATH, weight: 2.0}), in concatenation order (category, then texture)
    extractors: list[str | ExtractorConfig]
    output: str = "index"
    # a name (its parameters' defaults) or {name: faiss-ivf, nlist: 1024, nprobe: 16}: each backend's own keys
    backend: Annotated[Choice, OneOf("backend", backend_choices)] = field(
        default_factory=lambda: backend_choices()["balltree"]())
    l2_normalize: bool = False  # normalise each extractor's block before concatenating (before its weight)
    batch_size: Annotated[int, BATCH] = 32
    workers: Annotated[int, WORKERS] = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal[PRECISION_NAMES] = "fp32"  # of extraction; recommend and serve follow the index
    # hybrid re-ranking (fashionrec.hybrid): catalog column -> weight of its agreement with the query
    rerank: dict[str, Annotated[float, Range(ge=0)]] = field(default_factory=dict)
    # a number column agrees within this relative band (|p - p_q| <= 0.2 p_q)
    rerank_band: Annotated[float, Range(ge=0)] = 0.2

    def __post_init__(self):
        check_ranges(self)
        self.rerank_band = float(self.rerank_band)

    @property
    def extractor_runs(self) -> list[str]:
        return [e.run if isinstance(e, ExtractorConfig) else e for e in self.extractors]

    @property
    def extractor_weights(self) -> list[float]:
        return [e.weight if isinstance(e, ExtractorConfig) else 1.0 for e in self.extractors]


# ----------------------------------------------------------------------------- loading


def _one_of(tp) -> OneOf | None:
    """The :class:`OneOf` of an ``Annotated`` annotation, if it has one."""
    return next((a for a in getattr(tp, "__metadata__", ()) if isinstance(a, OneOf)), None)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated and _one_of(tp):
        return f"a {_one_of(tp).what} name or {{name: ..., its keys}}"
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


class _Mismatch(Exception):
    pass


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
SHORT = 72  # characters of a value quoted in an error message


def _short(value, limit: int = SHORT) -> str:
    """``repr(value)`` cut to ``limit`` characters with "...": a config value can be megabytes (its YAML a few
    hundred bytes of aliases), and an error stays one short line. Bounded work however large the value."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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


def index_config_for(catalog, extractors, output=None, overrides=()) -> IndexConfig:
    """The index of ``catalog`` (a folder of photos or a CSV with a path column) by ``extractors``, with no
    config file: the defaults of :class:`IndexConfig` and an exact search that suits any catalog size."""
    raw = {"catalog": {"format": "folder" if Path(catalog).is_dir() else "csv", "root": str(catalog)},
           "extractors": [str(e) for e in extractors], "output": str(output or "index"), "backend": "auto"}
    return _build(IndexConfig, apply_overrides(raw, overrides), _Source("--catalog/--extractor"))


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
