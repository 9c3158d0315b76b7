"""The CLI: real --help text, one-line errors with exit code 2, `python -m fashionrec`."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from fashionrec.cli import main

COMMANDS = ["synth", "pretrain", "finetune", "evaluate", "index", "recommend", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage: main " + command in result.output or f"{command} [OPTIONS]" in result.output
    assert len(result.output.splitlines()) > 5


def test_group_help_lists_commands():
    out = CliRunner().invoke(main, ["--help"]).output
    for command in COMMANDS:
        assert command in out


def _run(args):
    return CliRunner().invoke(main, args)


def test_config_errors_are_one_line_exit_2(tmp_path):
    r = _run(["pretrain", "-c", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2 and r.output.strip().endswith("config file not found")
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text(open("configs/pretrain/bninception-category.yaml").read().replace("lr:", "lrr:"))
    r = _run(["pretrain", "-c", str(cfg)])
    assert r.exit_code == 2 and "train.lrr: unknown key (did you mean 'lr'?)" in r.output
    r = _run(["pretrain", "-c", "configs/pretrain/bninception-category.yaml", "--set", "train.batch_size=x"])
    assert r.exit_code == 2 and "train.batch_size: expected int" in r.output


def test_wrong_stage_and_missing_data_are_clear(tmp_path):
    r = _run(["finetune", "-c", "configs/pretrain/bninception-category.yaml", "--init", str(tmp_path)])
    assert r.exit_code == 2 and "use `fashionrec pretrain`" in r.output
    r = _run(["pretrain", "-c", "configs/pretrain/bninception-category.yaml",
              "--set", f"data.root={tmp_path / 'nowhere'}", "--set", f"output.dir={tmp_path}"])
    assert r.exit_code == 2 and "DeepFashion root folder not found" in r.output


def test_recommend_without_index_is_clear(tmp_path):
    img = tmp_path / "q.jpg"
    img.write_bytes(b"")
    r = _run(["recommend", str(img), "--index", str(tmp_path / "idx")])
    assert r.exit_code == 2 and "not an index" in r.output and "Traceback" not in r.output


def test_python_dash_m_and_synth(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fashionrec", "synth", str(tmp_path / "s"), "--n", "20",
                        "--size", "32", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s/deepfashion/Anno/list_attr_img.txt").is_file()
    assert (tmp_path / "s/fashion/catalog.csv").is_file()
    r = subprocess.run([sys.executable, "-m", "fashionrec", "synth", str(tmp_path / "t"), "--n", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: ")
