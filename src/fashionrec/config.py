"""The configs: a typed dataclass per YAML file a stage reads, each number's range beside its field.

Every stage is driven by one YAML file, loaded by :mod:`fashionrec.configload`. Loading is
strict: an unknown key or one given twice, a value of the wrong type, a number outside its
field's :class:`Range` or not finite, a missing
required key or a missing file is a :class:`ConfigError` whose one-line message names the file,
the line and the dotted key (with a "did you mean" for near misses), quoting at most a short
prefix of the value. YAML whose aliases expand past :data:`MAX_YAML_VALUES` values is refused
before it is built. ``--set a.b=value`` overrides are parsed as YAML and checked the same way.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from .configcheck import _short, check_ranges
from .configcheck import numeric_keys as numeric_keys
from .configload import _build, _Source, apply_overrides
from .configload import dump_yaml as dump_yaml  # the loading machinery: one import for the callers
from .configload import from_dict as from_dict
from .configload import load_config as load_config
from .configload import read_yaml as read_yaml
from .configload import to_dict as to_dict
from .configtypes import Choice, Named, OneOf, Range
from .engines.registry import (
    ARCH_NAMES,
    COMPILE_MODES,
    DEVICE_NAMES,
    ENGINE_NAMES,
    PRECISION_NAMES,
    TRAINING_PRECISION_NAMES,
)
from .errors import ConfigError
from .knn import backend_choices

# data.format / catalog.format: the registered dataset formats that can serve the stage (fashionrec.data.formats)
# (read when a config loads: importing this module imports no reader)


def _formats(use: str):
    return lambda: importlib.import_module("fashionrec.data.formats").format_names(use)


LABELLED_FORMATS = Named("dataset format", _formats("labelled"))
CATALOG_FORMATS = Named("catalog format", _formats("catalog"))
ITEM_FORMATS = Named("dataset format", _formats("items"))
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

    format: Annotated[str, LABELLED_FORMATS]
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
    # a folder for the images decoded and resized once (memory-mapped shards, fashionrec.data.decoded_cache):
    # epochs after the first never touch a JPEG; built on first use, rebuilt when the rows or size change
    cache: str | None = None


@dataclass
class ModelConfig:
    arch: Literal[ARCH_NAMES]  # the registered architectures (fashionrec.engines.registry)
    input_size: Annotated[int, INPUT_SIZE] = 224


@dataclass(kw_only=True)
class TrainingBlock:
    """The ``train`` keys every training objective shares (the Trainer's, the engine's and the optimiser's);
    each objective's block (:class:`TrainConfig`, the metric stage's ``MetricTrainConfig``) adds its own."""

    lr: Annotated[float, LR]  # of the run, however many ranks (torchrun) share it
    # the run's global batch: under torchrun each of N ranks takes batch_size / N (a multiple of N)
    batch_size: Annotated[int, BATCH]
    weight_decay: Annotated[float, WEIGHT_DECAY] = 0.0
    max_epochs: Annotated[int, EPOCHS] = 30
    patience: Annotated[int, EPOCHS] = 3  # early stopping: epochs without a better validation value
    seed: Annotated[int, SEED] = 0
    workers: Annotated[int, WORKERS] = 1  # decoding worker processes; 0 decodes in the main process
    device: Literal[DEVICE_NAMES] = "auto"
    limit_train_batches: Annotated[int, Range(ge=1)] | None = None  # cap batches per epoch (quick runs, benchmarks)
    sync_bn: bool = False  # torchrun: BatchNorm normalises with the global batch's statistics (SyncBatchNorm)
    precision: Literal[TRAINING_PRECISION_NAMES] = "auto"  # of training; auto: bf16 autocast on CUDA, fp32 on a CPU
    compile: Literal[COMPILE_MODES] = "eager"  # torch.compile the training step (torch engine); eager: not compiled
    # Fine-tuning a pretrained backbone (torch engine): the backbone learns at this share of train.lr, the
    # new head (or embedding) at train.lr (parameter groups)
    backbone_lr_factor: Annotated[float, Range(gt=0, le=1)] = 1.0
    freeze_batchnorm: bool = False  # keep the BatchNorm statistics the backbone came with (eval-mode BatchNorm)

    def __post_init__(self):
        check_ranges(self)


@dataclass(kw_only=True)
class TrainConfig(TrainingBlock):
    """The classification objective's ``train`` block: the shared keys and these."""

    optimizer: Literal["sgd", "adam", "adamw"]  # adamw: Adam with decoupled weight decay (Loshchilov & Hutter)
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9  # SGD only
    top_k: Annotated[int, Range(ge=1, le=1000)] = 5  # top-K accuracy reported (paper: 5 for category, 3 for texture)
    # The small-data recipe's knobs (configs/small-data/); the defaults are the paper's settings.
    # targets (1 - e) one-hot + e / classes (Szegedy et al. 2016)
    label_smoothing: Annotated[float, Range(ge=0, le=0.99)] = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: lr down to 0 at max_epochs, every step
    # linear warm-up to lr over these (fractional) epochs, every step
    warmup_epochs: Annotated[float, Range(ge=0, le=100_000)] = 0.0
    # the first epochs train the head only (the backbone's weights frozen), so its random start does not
    # send large gradients through the pretrained features
    freeze_backbone_epochs: Annotated[int, Range(ge=0, le=100_000)] = 0


FLIP_AXES = ("vertical", "horizontal", "none")  # of AugmentConfig.flip
AUGMENT_ON = ("host", "device", "auto")  # of AugmentConfig.on


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
        on: where the training loop augments: ``host`` (the loader's workers, PIL), ``device``
            (batched tensor ops on the network's device, torch engine:
            :mod:`fashionrec.engines.torch.device_augment`, the same bytes on a CPU) or ``auto``
            (device on CUDA, host otherwise). The parameters are drawn from (seed, epoch, row) either way.
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
    on: str = "host"

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
        if self.on not in AUGMENT_ON:
            raise ValueError(f"on must be one of {', '.join(AUGMENT_ON)}; got {_short(self.on)}")


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

    format: Annotated[str, CATALOG_FORMATS]
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
    device: Literal[DEVICE_NAMES] = "auto"
    precision: Literal[PRECISION_NAMES] = "fp32"  # of extraction; recommend and serve follow the index
    compile: Literal[COMPILE_MODES] = "eager"  # torch.compile extraction's forward pass (torch engine)
    # where the catalog's JPEGs are decoded: host (the loader's workers, the bytes queries get) or device (nvJPEG
    # on the extractors' GPU through torchvision; the resize there too: within rounding of the host's)
    decode: Literal["host", "device"] = "host"
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


def index_config_for(catalog, extractors, output=None, overrides=()) -> IndexConfig:
    """The index of ``catalog`` (a folder of photos or a CSV with a path column) by ``extractors``, with no
    config file: the defaults of :class:`IndexConfig` and an exact search that suits any catalog size."""
    if not Path(catalog).exists():
        raise ConfigError(f"--catalog {catalog}: not found; give a folder of photos or a CSV with a path column")
    raw = {"catalog": {"format": "folder" if Path(catalog).is_dir() else "csv", "root": str(catalog)},
           "extractors": [str(e) for e in extractors], "output": str(output or "index"), "backend": "auto"}
    return _build(IndexConfig, apply_overrides(raw, overrides), _Source("--catalog/--extractor"))
