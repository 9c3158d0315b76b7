from pathlib import Path

import pytest
import yaml

from fashionrec.config import IndexConfig, StageConfig, load_config
from fashionrec.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PACKAGED = Path(__file__).resolve().parents[1] / "src" / "fashionrec" / "configs"  # the demo's, shipped in the wheel
ALL_CONFIGS = sorted([*CONFIGS.rglob("*.yaml"), *PACKAGED.rglob("*.yaml")])


def _is_metric(path: Path) -> bool:
    return path.parent.name == "metric" or path.stem == "metric"


@pytest.mark.parametrize("path", [p for p in ALL_CONFIGS if p.name != "index.yaml" and not _is_metric(p)])
def test_committed_stage_configs_load(path):
    cfg = load_config(StageConfig, path)
    assert cfg.stage in path.name or cfg.stage in path.parent.name


@pytest.mark.parametrize("path", [p for p in ALL_CONFIGS if _is_metric(p)])
def test_committed_metric_configs_load(path):
    from fashionrec.metric_learning.config import load_metric_config

    assert load_metric_config(path).model.embedding_dim > 0


@pytest.mark.parametrize("path", [p for p in ALL_CONFIGS if p.name == "index.yaml"])
def test_committed_index_configs_load(path):
    cfg = load_config(IndexConfig, path)
    assert len(cfg.extractors) == 2


def test_paper_settings_are_the_defaults():
    a = load_config(StageConfig, CONFIGS / "pretrain/alexnet-category.yaml")
    assert (a.train.optimizer, a.train.lr, a.train.momentum, a.train.weight_decay, a.train.batch_size) == \
        ("sgd", 0.01, 0.9, 5e-4, 64)
    b = load_config(StageConfig, CONFIGS / "pretrain/bninception-texture.yaml")
    assert (b.train.optimizer, b.train.lr, b.train.weight_decay, b.train.batch_size, b.train.top_k) == \
        ("adam", 1e-3, 0.0, 32, 3)
    f = load_config(StageConfig, CONFIGS / "finetune/category.yaml")
    assert (f.train.optimizer, f.train.lr, f.train.weight_decay, f.train.batch_size) == ("adam", 1e-3, 1e-4, 16)
    assert f.augment.enabled and f.augment.rotation == 3 and f.augment.shear == 0.25
    assert tuple(f.augment.aspect_ratio) == (0.875, 1.125) and f.augment.hsl_shift == 6
    t = load_config(StageConfig, CONFIGS / "finetune/texture.yaml")
    assert t.augment.rotation == 8
    idx = load_config(IndexConfig, CONFIGS / "index.yaml")
    assert idx.backend.name == "balltree" and idx.l2_normalize is False


def _write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def _base():
    return yaml.safe_load((CONFIGS / "pretrain/bninception-category.yaml").read_text())


def test_unknown_key_names_file_and_key_with_suggestion(tmp_path):
    data = _base()
    data["train"]["lrr"] = 0.1
    p = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: train\.lrr: unknown key \(did you mean 'lr'\?\)"):
        load_config(StageConfig, p)


def test_wrong_type_names_key(tmp_path):
    data = _base()
    data["train"]["batch_size"] = "big"
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected int, got 'big'"):
        load_config(StageConfig, _write(tmp_path, data))


def test_bool_is_not_an_int_and_literals_are_checked(tmp_path):
    data = _base()
    data["train"]["max_epochs"] = True
    with pytest.raises(ConfigError, match="train.max_epochs"):
        load_config(StageConfig, _write(tmp_path, data))
    data = _base()
    data["model"]["arch"] = "resnet"
    with pytest.raises(ConfigError, match=r"model\.arch: expected 'alexnet' \| 'bninception'"):
        load_config(StageConfig, _write(tmp_path, data))


def test_missing_required_key(tmp_path):
    data = _base()
    del data["train"]["lr"]
    with pytest.raises(ConfigError, match=r"train\.lr: required key is missing"):
        load_config(StageConfig, _write(tmp_path, data))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(StageConfig, tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(StageConfig, p)


def test_overrides(tmp_path):
    p = _write(tmp_path, _base())
    cfg = load_config(StageConfig, p, ["train.lr=0.05", "augment.rotation=5", "output.name=x"])
    assert cfg.train.lr == 0.05 and cfg.augment.rotation == 5.0 and cfg.run_name == "x"
    with pytest.raises(ConfigError, match=r"train\.lrr: unknown key"):
        load_config(StageConfig, p, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(StageConfig, p, ["train.lr"])
    with pytest.raises(ConfigError, match=r"train\.lr: expected float"):
        load_config(StageConfig, p, ["train.lr=fast"])


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("5E-4", 5e-4), ("1.5e0", 1.5), ("2", 2.0)])
def test_scientific_notation_is_a_number_in_set_and_in_files(tmp_path, text, value):
    p = _write(tmp_path, _base())
    assert load_config(StageConfig, p, [f"train.lr={text}"]).train.lr == value
    raw = _base()
    raw["train"]["lr"] = "@"
    p.write_text(yaml.safe_dump(raw).replace("'@'", text))
    assert load_config(StageConfig, p).train.lr == value


def test_augment_validation_is_reported_with_the_section(tmp_path):
    data = _base()
    data["augment"] = {"flip": "diagonal"}
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: augment: .*flip"):
        load_config(StageConfig, _write(tmp_path, data))


def test_engine_arch_and_precision_choices_come_from_the_engine_registry(tmp_path):
    import typing

    from fashionrec.config import ModelConfig
    from fashionrec.engines import registry

    engine = typing.get_type_hints(StageConfig)["engine"]
    assert typing.get_args(engine) == registry.engine_names() == ("torch", "mxnet")
    assert typing.get_args(typing.get_type_hints(ModelConfig)["arch"]) == registry.list_archs()
    assert typing.get_args(typing.get_type_hints(IndexConfig)["precision"]) == registry.precision_names()
    data = _base()
    data["engine"] = "onnx"
    with pytest.raises(ConfigError, match=r"engine: expected 'torch' \| 'mxnet', got 'onnx'"):
        load_config(StageConfig, _write(tmp_path, data))


def test_config_imports_neither_the_data_package_nor_a_framework():
    """config sits below data (data.augment and data.loader import AugmentConfig from it)."""
    import subprocess
    import sys

    code = ("import sys, fashionrec.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('fashionrec.data', 'torch', 'mxnet', 'sklearn', "
            "'faiss'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- ranges and odd files (issue 26)

DEMO = PACKAGED / "demo"


def _demo(tmp_path, name="pretrain-category.yaml", replace=(), append="", out="c.yaml"):
    """The demo config ``name`` with lines replaced (old text -> new text); the path and the 1-based line of
    the first replacement."""
    lines = (DEMO / name).read_text().splitlines()
    first = None
    for old, new in replace:
        (i,) = [i for i, line in enumerate(lines) if line == old]
        lines[i] = new
        first = first or i + 1
    p = tmp_path / out
    p.write_text("\n".join(lines) + "\n" + append)
    return p, first


def _error(cls, path, overrides=()) -> str:
    from fashionrec.metric_learning.config import MetricConfig, load_metric_config

    with pytest.raises(ConfigError) as e:
        load_metric_config(path, overrides) if cls is MetricConfig else load_config(cls, path, overrides)
    message = str(e.value)
    assert "\n" not in message and len(message) < 500, message  # a path, the key, the known keys (20 in train)
    return message


@pytest.mark.parametrize("old, new, words", [
    ("  lr: 0.001", "  lr: -0.1", "train.lr: must be in (0, 10]; got -0.1"),
    ("  lr: 0.001", "  lr: 0", "train.lr: must be in (0, 10]; got 0"),
    ("  weight_decay: 0.0", "  weight_decay: -1e-4", "train.weight_decay: must be in [0, 1]; got -0.0001"),
    ("  input_size: 64", "  input_size: 8", "model.input_size: must be in [32, 2048]; got 8"),
    ("  input_size: 64", "  input_size: -5", "model.input_size: must be in [32, 2048]; got -5"),
    ("  input_size: 64", "  input_size: 20000", "model.input_size: must be in [32, 2048]; got 20000"),
    ("  root: demo/data/deepfashion", "  root: x\n  val_fraction: 1.5",
     "data.val_fraction: must be in (0, 1); got 1.5"),
    ("  max_epochs: 4", "  max_epochs: 0", "train.max_epochs: must be in [1, 100000]; got 0"),
    ("  patience: 2", "  patience: 0", "train.patience: must be in [1, 100000]; got 0"),
    ("  top_k: 5", "  top_k: 0", "train.top_k: must be in [1, 1000]; got 0"),
    ("  seed: 0", "  seed: -1", "train.seed: must be in [0, 4294967295]; got -1"),
    ("  workers: 1", "  workers: 100000", "train.workers: must be in [0, 256]; got 100000"),
    ("  device: auto", "  device: auto\n  limit_train_batches: 0", "train.limit_train_batches: must be >= 1; got 0"),
    ("  device: auto", "  device: auto\n  momentum: 1.5", "train.momentum: must be in [0, 1); got 1.5"),
    ("  device: auto", "  device: auto\n  label_smoothing: 1", "train.label_smoothing: must be in [0, 0.99]; got 1"),
    ("output:", "augment:\n  rotation: 400\noutput:", "augment.rotation: must be in [0, 180]; got 400"),
    ("output:", "augment:\n  crop_scale: [0.5, 2]\noutput:", "augment.crop_scale[1]: must be in (0, 1]; got 2"),
])
def test_a_number_outside_its_range_is_one_line_naming_file_line_key_and_range(tmp_path, old, new, words):
    p, line = _demo(tmp_path, replace=[(old, new)])
    assert _error(StageConfig, p) == f"{p}:{line + _offset(new, words)}: {words}"


def _offset(new: str, words: str) -> int:
    """Which line of the replacement text ``new`` holds the key the message ``words`` names."""
    leaf = words.split(":")[0].split(".")[-1].split("[")[0]
    return [i for i, row in enumerate(new.split("\n")) if row.strip().startswith(leaf + ":")][0]


def test_the_same_number_from_set_names_the_key_without_a_line(tmp_path):
    p, _ = _demo(tmp_path)
    assert _error(StageConfig, p, ["train.lr=-0.1"]) == f"{p}: train.lr: must be in (0, 10]; got -0.1"
    assert _error(StageConfig, p, ["augment.flip_prob=2"]) == f"{p}: augment.flip_prob: must be in [0, 1]; got 2"


@pytest.mark.parametrize("old, new, words", [
    ("  input_size: 64", "  input_size: 16", "model.input_size: must be in [32, 2048]; got 16"),
    ("  embedding_dim: 128", "  embedding_dim: 0", "model.embedding_dim: must be in [1, 65536]; got 0"),
    ("  val_fraction: 0.2", "  val_fraction: 1.5", "data.val_fraction: must be in [0, 1); got 1.5"),
    ("  name: multi_similarity", "  name: proxy_anchor\n  delta: 5", "loss.delta: must be in [0, 1]; got 5"),
    ("  name: multi_similarity", "  name: multi_similarity\n  base: -3", "loss.base: must be in [-1, 1]; got -3"),
    # the flat key of older configs, read as `base`, is named as written
    ("  name: multi_similarity", "  name: multi_similarity\n  ms_base: -3", "loss.ms_base: must be in [-1, 1]; got -3"),
    ("  clip_grad_norm: 10.0", "  clip_grad_norm: -1", "train.clip_grad_norm: must be in (0, 1000000]; got -1"),
    ("  schedule: constant", "  schedule: step\n  gamma: 2", "train.gamma: must be in (0, 1]; got 2"),
    ("  images_per_item: 4", "  images_per_item: 1", "train.images_per_item: must be in [2, 1000]; got 1"),
])
def test_metric_numbers_outside_their_range(tmp_path, old, new, words):
    from fashionrec.metric_learning.config import MetricConfig

    p, line = _demo(tmp_path, "metric.yaml", replace=[(old, new)])
    assert _error(MetricConfig, p) == f"{p}:{line + _offset(new, words)}: {words}"


def test_index_numbers_outside_their_range(tmp_path):
    p, line = _demo(tmp_path, "index.yaml", replace=[("batch_size: 64", "batch_size: 0")])
    assert _error(IndexConfig, p) == f"{p}:{line}: batch_size: must be in [1, 65536]; got 0"
    p, _ = _demo(tmp_path, "index.yaml", append="rerank:\n  brand: 0.5\n  price: -1\n")
    n = len(p.read_text().splitlines())
    assert _error(IndexConfig, p) == f"{p}:{n}: rerank.price: must be >= 0; got -1"
    p, line = _demo(tmp_path, "index.yaml", replace=[("  - demo/runs/finetune/bninception-texture",
                                                       "  - {run: demo/runs/finetune/bninception-texture, weight: 0}")])
    assert _error(IndexConfig, p) == f"{p}:{line}: extractors[1].weight: must be > 0; got 0"


def test_every_number_of_every_config_has_a_range_and_code_built_configs_are_checked_too():
    from fashionrec.config import TrainConfig, numeric_keys
    from fashionrec.config_ranges import config_kinds

    missing = [f"{kind}: {key}" for kind, cls in config_kinds() for key, _, allowed in numeric_keys(cls)
               if allowed is None]
    assert not missing, f"give these fields a Range (Annotated[float, Range(...)]): {missing}"
    with pytest.raises(ValueError, match=r"^lr must be in \(0, 10\]; got -1$"):
        TrainConfig(optimizer="adam", lr=-1, batch_size=8)


def test_the_readme_table_of_ranges_is_the_one_the_fields_give():
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_ranges", CONFIGS.parent / "scripts/config_ranges.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from fashionrec.config_ranges import ranges_table

    readme = (CONFIGS.parent / "README.md").read_text(encoding="utf-8")
    assert script.readme_table(readme) == ranges_table(), "run: python scripts/config_ranges.py --write"
    assert "| `train.lr` | pretrain, finetune, metric | float | (0, 10] |" in readme


def _bomb(levels=9, width=10) -> str:
    """A few hundred bytes of YAML whose aliases stand for width**levels values."""
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(rows) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once_naming_the_file(tmp_path):
    import time

    p = tmp_path / "bomb.yaml"
    p.write_text(_bomb() + "stage: pretrain\ntrain:\n  lr: *a8\n")
    assert len(p.read_bytes()) < 600
    start = time.perf_counter()
    assert _error(StageConfig, p) == f"{p}: its YAML aliases expand to more than 100,000 values; write the values out"
    assert time.perf_counter() - start < 5
    merge = "a0: &a0 {x: 1, y: 2}\n" + "".join(f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 10)}]}}\n"
                                               for i in range(1, 9))
    p.write_text(merge)  # merge keys copy their mappings: the same expansion
    assert "aliases expand" in _error(StageConfig, p)
    p.write_text("stage: &s [*s]\n")
    assert _error(StageConfig, p) == f"{p}:1: a YAML alias refers to a value that holds it"
    p.write_text("stage: pretrain\n" + "a: " + "[" * 2000 + "]" * 2000 + "\n")
    assert _error(StageConfig, p) == f"{p}: nested too deeply to be a config"


def test_an_alias_bomb_in_set_is_refused_too(tmp_path):
    p, _ = _demo(tmp_path)
    value = "[" + ", ".join(f"&a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * 10) + "]" for i in range(7)) + "]"
    assert "aliases expand to more than 100,000 values" in _error(StageConfig, p, [f"train.lr={value}"])


def test_values_quoted_in_errors_are_cut_to_a_short_prefix(tmp_path):
    p, _ = _demo(tmp_path, replace=[("  lr: 0.001", "  lr: " + "9" * 1_000_000 + "x")])
    message = _error(StageConfig, p)
    assert message.startswith(f"{p}:14: train.lr: expected float, got '99999") and message.endswith("...")
    assert len(message) < len(str(p)) + 120
    leaves = "[" + ", ".join(["[" + ", ".join(["1"] * 100) + "]"] * 900) + "]"  # 90,000 values, no alias
    p, _ = _demo(tmp_path, replace=[("  lr: 0.001", "  lr: " + leaves)])
    message = _error(StageConfig, p)
    assert message.startswith(f"{p}:14: train.lr: expected float, got [[1, 1, 1,") and len(message) < 200
    p, _ = _demo(tmp_path, replace=[("task: category", "task: " + "é" * 100_000)])
    assert len(_error(StageConfig, p)) < 250
    p, _ = _demo(tmp_path, replace=[("  lr: 0.001", "  lr: 0.001\n  " + "k" * 1000 + ": 1")])
    message = _error(StageConfig, p)
    assert "unknown key" in message and "k" * 100 not in message


@pytest.mark.parametrize("old, new, words", [
    ("  max_epochs: 4", "  max_epochs: 3.5", "train.max_epochs: expected int, got 3.5"),
    ("  lr: 0.001", "  lr: .nan", "train.lr: must be a finite number; got nan"),
    ("  lr: 0.001", "  lr: .inf", "train.lr: must be a finite number; got inf"),
    ("  weight_decay: 0.0", "  weight_decay: -.inf", "train.weight_decay: must be a finite number; got -inf"),
    ("  lr: 0.001", "  lr: '0.001'", "train.lr: expected float, got '0.001'"),
])
def test_odd_values_real_configs_hold(tmp_path, old, new, words):
    p, line = _demo(tmp_path, replace=[(old, new)])
    assert _error(StageConfig, p) == f"{p}:{line + _offset(new, words)}: {words}"


def test_a_key_given_twice_names_both_lines(tmp_path):
    p, line = _demo(tmp_path, replace=[("  input_size: 64", "  input_size: 64\n  input_size: 96")])
    assert _error(StageConfig, p) == f"{p}:{line + 1}: model.input_size: given twice (first on line {line}); keep one"
    p, _ = _demo(tmp_path)
    message = _error(StageConfig, p, ["augment={rotation: 1, rotation: 2}"])
    assert message == "--set augment={rotation: 1, rotation: 2}: rotation: given twice; keep one"


def test_booleans_spelled_yes_are_booleans_and_quoted_ones_say_how_to_write_them(tmp_path):
    p, line = _demo(tmp_path, replace=[("output:", "augment:\n  enabled: yes\noutput:")])
    assert load_config(StageConfig, p).augment.enabled is True
    p, line = _demo(tmp_path, replace=[("output:", "augment:\n  enabled: \"true\"\noutput:")])
    assert _error(StageConfig, p) == (f"{p}:{line + 1}: augment.enabled: expected bool, got 'true' "
                                      "(write true or false without quotes)")


def test_integral_floats_are_ints_and_plain_numbers_or_yes_given_for_text_are_the_text(tmp_path):
    p, _ = _demo(tmp_path, replace=[("  max_epochs: 4", "  max_epochs: 4.0"),
                                    ("  root: demo/data/deepfashion", "  root: x\n  max_pixels: 4e7"),
                                    ("  dir: demo/runs", "  dir: demo/runs\n  name: 2024")])
    cfg = load_config(StageConfig, p)
    assert cfg.train.max_epochs == 4 and isinstance(cfg.train.max_epochs, int)
    assert cfg.data.max_pixels == 40_000_000 and cfg.output.name == "2024"
    cfg = load_config(StageConfig, p, ["output.name=1e3", "data.classes=[yes, no, 'on']"])
    assert cfg.output.name == "1e3" and cfg.data.classes == ["yes", "no", "on"]
    assert load_config(StageConfig, p, ["output.name=null"]).output.name is None


@pytest.mark.parametrize("content, words", [
    (b"", "the file holds no settings (empty, or comments only)"),
    (b"# only a comment\n", "the file holds no settings (empty, or comments only)"),
    (b"- stage: pretrain\n", "expected a mapping at the top level, got [{'stage': 'pretrain'}]"),
    (b"pretrain\n", "expected a mapping at the top level, got 'pretrain'"),
    (b"stage: pretrain\ntrain:\n\tlr: 0.1\n", "invalid YAML (found character '\\t' that cannot start any token)"),
    ("stage: pretrain\ntask: catégorie\n".encode("latin-1"), "not a UTF-8 text file"),
    (b"stage: pretrain\n---\nstage: finetune\n", "invalid YAML (but found another document)"),
])
def test_odd_files_are_one_line(tmp_path, content, words):
    p = tmp_path / "c.yaml"
    p.write_bytes(content)
    message = _error(StageConfig, p)
    assert message.startswith(str(p)) and message.endswith(words), message


def test_cli_config_mistakes_are_exit_2_and_one_line(tmp_path):
    from click.testing import CliRunner

    from fashionrec.cli import main

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb() + "stage: pretrain\n")
    p, line = _demo(tmp_path, replace=[("  input_size: 64", "  input_size: 20000")])
    cases = [
        (["pretrain", "-c", str(p)], f"error: {p}:{line}: model.input_size: must be in [32, 2048]; got 20000"),
        (["pretrain", "-c", str(bomb)], f"error: {bomb}: its YAML aliases expand to more than 100,000 values; "
                                        "write the values out"),
        (["pretrain", "-c", str(DEMO / "pretrain-category.yaml"), "--set", "train.lr=.nan"],
         f"error: {DEMO / 'pretrain-category.yaml'}: train.lr: must be a finite number; got nan"),
        (["metric", "-c", str(DEMO / "metric.yaml"), "--set", "loss.alpha=-1"],
         f"error: {DEMO / 'metric.yaml'}: loss.alpha: must be in (0, 1000]; got -1"),
    ]
    for args, want in cases:
        r = CliRunner().invoke(main, [*args, "--set", f"output.dir={tmp_path / 'runs'}"])
        assert r.exit_code == 2 and r.output.strip() == want, (args, r.output)
    assert not (tmp_path / "runs").exists()
