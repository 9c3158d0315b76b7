"""YAML configuration loaded into typed dataclasses.

Every stage is driven by one YAML file. Loading is strict: an unknown key, a value of the
wrong type, a missing required key or a missing file is a :class:`ConfigError` whose one-line
message names the file and the dotted key (with a "did you mean" for near misses).
``--set a.b=value`` overrides are parsed as YAML scalars and checked the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .engines.registry import ARCH_NAMES, ENGINE_NAMES, PRECISION_NAMES, TRAINING_PRECISION_NAMES
from .errors import ConfigError
from .knn import BACKENDS

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
    val_fraction: float = 0.2  # csv/folder without a split column: stratified, seeded split
    split_seed: int = 0
    label_seed: int = 0  # DeepFashion attribute tasks: seed for sampling one positive attribute per image
    label_column: str = "label"  # csv: the column holding the task's labels (colour, gender, sleeve length...)
    max_bad_fraction: float = 0.01  # abort if more than this share of images cannot be decoded
    max_pixels: int = 40_000_000  # refuse larger images (decompression bombs)
    skip_missing: bool = False  # skip (and count) listed images whose file is missing


@dataclass
class ModelConfig:
    arch: Literal[ARCH_NAMES]  # the registered architectures (fashionrec.engines.registry)
    input_size: int = 224


@dataclass
class TrainConfig:
    optimizer: Literal["sgd", "adam"]
    lr: float  # of the run, however many ranks (torchrun) share it
    batch_size: int  # the run's global batch: under torchrun each of N ranks takes batch_size / N (a multiple of N)
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    max_epochs: int = 30
    patience: int = 3  # early stopping: epochs without a lower validation loss
    top_k: int = 5  # top-K accuracy reported (paper: 5 for category, 3 for texture)
    seed: int = 0
    workers: int = 1  # decoding worker processes; 0 decodes in the main process
    device: Literal["auto", "cpu", "cuda"] = "auto"
    limit_train_batches: int | None = None  # cap batches per epoch (quick runs, benchmarks)
    # The small-data recipe's knobs (configs/small-data/); the defaults are the paper's settings.
    label_smoothing: float = 0.0  # targets (1 - e) one-hot + e / classes (Szegedy et al. 2016)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: lr down to 0 at max_epochs, every step
    warmup_epochs: float = 0.0  # linear warm-up to lr over these (fractional) epochs, every step
    sync_bn: bool = False  # torchrun: BatchNorm normalises with the global batch's statistics (SyncBatchNorm)
    precision: Literal[TRAINING_PRECISION_NAMES] = "auto"  # of training; auto: bf16 autocast on CUDA, fp32 on a CPU

    def __post_init__(self):
        self.label_smoothing = _check_number("label_smoothing", self.label_smoothing, 0.0, 0.99)
        self.warmup_epochs = _check_number("warmup_epochs", self.warmup_epochs, 0.0, math.inf)
        _check_counts(self, batch_size=1, workers=0)


def _check_counts(cfg, **lowest: int) -> None:
    """Integer fields of ``cfg`` with their lowest allowed value (the loader refused them with a traceback)."""
    for name, lo in lowest.items():
        _check_number(name, getattr(cfg, name), lo, math.inf)


FLIP_AXES = ("vertical", "horizontal", "none")  # of AugmentConfig.flip


def _check_number(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if not lo <= value <= hi:
        bounds = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
        raise ValueError(f"{name} must be {bounds}; got {value!r}")
    return float(value)


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

    rotation: float = 3.0
    hsl_shift: float = 6.0
    shear: float = 0.25
    aspect_ratio: tuple[float, float] = (0.875, 1.125)
    flip: str = "vertical"
    flip_prob: float = 0.5
    crop_scale: tuple[float, float] = (1.0, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)
    enabled: bool = True

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise types in place once, here
        set_(self, "rotation", _check_number("rotation", self.rotation, 0.0, 180.0))
        set_(self, "hsl_shift", _check_number("hsl_shift", self.hsl_shift, 0.0, 255.0))
        set_(self, "shear", _check_number("shear", self.shear, 0.0, math.inf))
        set_(self, "flip_prob", _check_number("flip_prob", self.flip_prob, 0.0, 1.0))
        ar = self.aspect_ratio
        if not isinstance(ar, (list, tuple)) or len(ar) != 2:
            raise ValueError(f"aspect_ratio must be a pair [lo, hi]; got {ar!r}")
        lo, hi = (_check_number("aspect_ratio", v, -math.inf, math.inf) for v in ar)
        if not 0 < lo <= hi:
            raise ValueError(f"aspect_ratio must satisfy 0 < lo <= hi; got {list(ar)!r}")
        set_(self, "aspect_ratio", (lo, hi))
        for name, top in (("crop_scale", 1.0), ("crop_ratio", math.inf)):
            pair = getattr(self, name)
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"{name} must be a pair [lo, hi]; got {pair!r}")
            lo, hi = (_check_number(name, v, 0.0, top) for v in pair)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < lo <= hi{' <= 1' if top == 1 else ''}; got {list(pair)!r}")
            set_(self, name, (lo, hi))
        if self.flip not in FLIP_AXES:
            raise ValueError(f"flip must be one of {', '.join(FLIP_AXES)}; got {self.flip!r}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be true or false; got {self.enabled!r}")


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
                             f"got {self.task!r}")

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
    max_bad_fraction: float = 0.01
    max_pixels: int = 40_000_000
    # column -> number | boolean | text where the guess from the values is wrong (fashionrec.attributes)
    types: dict[str, Literal["number", "boolean", "text"]] = field(default_factory=dict)


@dataclass
class ExtractorConfig:
    """One extractor of an index: a run and how much its block counts in the distance."""

    run: str
    weight: float = 1.0  # multiplies the block's squared distance (its features are scaled by sqrt(weight))

    def __post_init__(self):
        self.weight = _check_number("weight", self.weight, 0.0, math.inf)
        if self.weight == 0:
            raise ValueError("weight must be > 0 (leave the extractor out instead)")


@dataclass
class IndexConfig:
    catalog: CatalogConfig
    # run directories (or {run: PATH, weight: 2.0}), in concatenation order (category, then texture)
    extractors: list[str | ExtractorConfig]
    output: str = "index"
    backend: Literal[BACKENDS] = "balltree"
    l2_normalize: bool = False  # normalise each extractor's block before concatenating (before its weight)
    batch_size: int = 32
    workers: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal[PRECISION_NAMES] = "fp32"  # of extraction; recommend and serve follow the index
    # hybrid re-ranking (fashionrec.hybrid): catalog column -> weight of its agreement with the query
    rerank: dict[str, float] = field(default_factory=dict)
    rerank_band: float = 0.2  # a number column agrees within this relative band (|p - p_q| <= 0.2 p_q)

    def __post_init__(self):
        _check_counts(self, batch_size=1, workers=0)
        for column, weight in self.rerank.items():
            _check_number(f"rerank.{column}", weight, 0.0, math.inf)
        self.rerank_band = _check_number("rerank_band", self.rerank_band, 0.0, math.inf)

    @property
    def extractor_runs(self) -> list[str]:
        return [e.run if isinstance(e, ExtractorConfig) else e for e in self.extractors]

    @property
    def extractor_weights(self) -> list[float]:
        return [e.weight if isinstance(e, ExtractorConfig) else 1.0 for e in self.extractors]


# ----------------------------------------------------------------------------- loading


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
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


def _coerce(value, tp, where_key: str, src: str):
    """Check ``value`` against the annotation ``tp``; return the (converted) value."""
    origin = typing.get_origin(tp)
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
        return tuple(_coerce(v, a, where_key, src) for v, a in zip(value, args))
    if tp is bool:
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Mismatch
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config annotation {tp!r}")  # a bug in this module, not the user's


def _build(cls, raw: dict, src: str, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (known keys: {', '.join(fields)})"
            raise ConfigError(f"{src}: {prefix}{key}: unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{src}: {key}: required key is missing")
            continue
        try:
            kwargs[name] = _coerce(raw[name], hints[name], key, src)
        except _Mismatch:
            raise ConfigError(
                f"{src}: {key}: expected {_type_name(hints[name])}, got {raw[name]!r}"
            ) from None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # the dataclass's own validation (e.g. AugmentConfig)
        where = prefix.rstrip(".")  # top-level checks name their key in the message itself
        raise ConfigError(f"{src}: {where + ': ' if where else ''}{e}") from None


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


def yaml_load(text: str):
    """Parse YAML as the configs mean it (scientific notation is a number)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key.sub=value")
    key, _, value = text.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text}: bad key {key!r}")
    try:
        parsed = yaml_load(value) if value.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {text}: value is not valid YAML") from None
    return parts, parsed


def apply_overrides(raw: dict, overrides) -> dict:
    for text in overrides or ():
        parts, value = parse_override(text)
        node = raw
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {} if p not in node else node[p]
                if not isinstance(node[p], dict):
                    raise ConfigError(f"--set {text}: {p} is not a section")
            node = node[p]
        node[parts[-1]] = value
    return raw


def read_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load_config(cls, path, overrides=()):
    """Load ``path`` (YAML) with ``--set`` overrides into the dataclass ``cls``."""
    raw = apply_overrides(read_yaml(path), overrides)
    return _build(cls, raw, str(path))


def from_dict(cls, raw: dict, src: str = "<config>"):
    return _build(cls, raw, src)


def to_dict(cfg) -> dict:
    """A dataclass config as plain YAML-able data (tuples become lists)."""

    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
