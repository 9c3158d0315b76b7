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
    from fashionrec.metric.config import load_metric_config

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
    assert idx.backend == "balltree" and idx.l2_normalize is False


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
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.lrr: unknown key \(did you mean 'lr'\?\)"):
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


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("5E-4", 5e-4), ("1.5e2", 150.0), ("2", 2.0)])
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
    with pytest.raises(ConfigError, match=r"c\.yaml: augment: .*flip"):
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
