"""Nothing lost, round three: --force replaces only after the new run has an epoch, a user's catalog
columns are kept, and a full disk or a file-size limit is one line in every writer."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashionrec.cli import main
from fashionrec.errors import UserError
from test_nothing_lost import _one_line_error


def _tree(path: Path) -> dict:
    """Every file under ``path`` and its bytes: what a user would lose."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _quiet(*_):
    pass


# ------------------------------------------------------------------------------ --force

@pytest.fixture()
def finished_run(tmp_path, synth_root):
    from fashionrec.training import train
    from test_train import stage_config

    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=1, limit=1, name="r")
    run = train(cfg, progress=False, log=_quiet)
    return cfg, run, _tree(run)


def test_force_with_a_typo_in_the_data_root_keeps_the_old_run(finished_run, tmp_path):
    from fashionrec.training import train

    cfg, run, before = finished_run
    cfg.data.root = str(tmp_path / "no-such-dataset")
    with pytest.raises(UserError, match="left as it was"):
        train(cfg, progress=False, log=_quiet, force=True)
    assert _tree(run) == before
    # no temporary folder left beside it
    assert sorted(p.name for p in run.parent.iterdir() if not p.name.endswith(".lock")) == ["r"]


def test_force_that_diverges_keeps_the_old_run(finished_run):
    from fashionrec.training import train

    cfg, run, before = finished_run
    cfg.train.lr, cfg.train.optimizer = 1e12, "sgd"
    with pytest.raises(UserError, match="diverged"):
        train(cfg, progress=False, log=_quiet, force=True)
    assert _tree(run) == before


def test_ctrl_c_before_the_first_epoch_of_a_force_run_keeps_the_old_run(finished_run, monkeypatch):
    from fashionrec.errors import TrainingInterrupted
    from fashionrec.training import train
    from fashionrec.training.objectives import classification

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(classification, "_run_epoch", interrupted)
    cfg, run, before = finished_run
    with pytest.raises(TrainingInterrupted, match="is unchanged"):
        train(cfg, progress=False, log=_quiet, force=True)
    assert _tree(run) == before
    assert sorted(p.name for p in run.parent.iterdir() if not p.name.endswith(".lock")) == ["r"]


def test_force_swaps_in_the_new_run_after_its_first_epoch(finished_run):
    from fashionrec.training import train

    cfg, run, before = finished_run
    cfg.train.max_epochs = 2
    assert train(cfg, progress=False, log=_quiet, force=True) == run
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert json.loads((run / "last" / "state.json").read_text())["epoch"] == 2
    assert _tree(run)["model.json"] != before["model.json"]
    assert sorted(p.name for p in run.parent.iterdir() if not p.name.endswith(".lock")) == ["r"]


def test_finetune_force_into_its_own_init_run_is_refused(finished_run, tmp_path, synth_root):
    from fashionrec.training import train
    from test_train import stage_config

    _, run, before = finished_run
    ft = stage_config(tmp_path, synth_root / "deepfashion", stage="finetune", epochs=1, limit=1, name="r")
    # a finetune run, then the same command asked to replace it starting from itself
    first = train(ft, init=run, progress=False, log=_quiet)
    mine = _tree(first)
    with pytest.raises(UserError, match="--init names the run --force would replace"):
        train(ft, init=first, progress=False, log=_quiet, force=True)
    assert _tree(first) == mine and _tree(run) == before


def test_force_never_replaces_a_run_of_another_stage(finished_run, tmp_path, synth_root):
    from fashionrec.training import train
    from test_train import stage_config

    _, run, before = finished_run  # a pretrain run at runs/pretrain/r
    ft = stage_config(tmp_path, synth_root / "deepfashion", stage="finetune", epochs=1, limit=1, name="r")
    target = Path(ft.run_dir)  # runs/finetune/r holds a pretrain run (copied, or an output.dir mix-up)
    shutil.copytree(run, target)
    with pytest.raises(UserError, match="is a pretrain run, not a finetune run"):
        train(ft, init=run, progress=False, log=_quiet, force=True)
    assert _tree(target) == before


def test_cli_force_with_a_typo_is_one_line_and_keeps_the_run(finished_run, tmp_path):
    cfg, run, before = finished_run
    from fashionrec.config import dump_yaml

    path = tmp_path / "pretrain.yaml"
    path.write_text(dump_yaml(cfg))
    r = CliRunner().invoke(main, ["pretrain", "-c", str(path), "--force", "--no-progress",
                                  "--set", f"data.root={tmp_path / 'typo'}"])
    _one_line_error(r, "typo", "left as it was")
    assert _tree(run) == before


def test_import_weights_force_never_replaces_a_trained_run(finished_run, tmp_path):
    import torch

    from test_import_weights import cadene_state

    _, run, before = finished_run
    torch.save(cadene_state(), tmp_path / "bn_inception.pth")
    r = CliRunner().invoke(main, ["import-weights", str(tmp_path / "bn_inception.pth"), "--arch", "bninception",
                                  "--out", str(run), "--force"])
    _one_line_error(r, str(run), "is a pretrain run", "only an imported run")
    assert _tree(run) == before


def test_convert_of_a_metric_run_is_one_line(tmp_path):
    run = tmp_path / "m"
    run.mkdir()
    (run / "model.json").write_text(json.dumps({
        "kind": "embedding", "engine": "torch", "arch": "bninception", "classes": [], "input_size": 32,
        "weights": "weights.safetensors", "task": "embedding", "stage": "metric"}))
    r = CliRunner().invoke(main, ["convert", str(run), "--to", "mxnet"])
    _one_line_error(r, str(run), "metric-learning run")
    assert not (tmp_path / "m-mxnet").exists()


# ------------------------------------------------------------------------------ a user's catalog export

def _catalog(tmp_path, synth_root, text: str, name="export.csv", encoding="utf-8") -> Path:
    """A catalog CSV beside (a copy of) the synthetic Fashion images."""
    root = tmp_path / "shop"
    if not root.exists():
        shutil.copytree(synth_root / "fashion" / "images", root / "images")
    path = root / name
    path.write_bytes(text.encode(encoding))
    return path


def _images(synth_root, n):
    return sorted(p.name for p in (synth_root / "fashion" / "images").iterdir())[:n]


def _index(tmp_path, extractor_runs, catalog, out):
    cfg = tmp_path / "index.yaml"
    cfg.write_text(json.dumps({
        "catalog": {"format": "csv", "root": str(catalog)}, "output": str(out), "workers": 0, "device": "cpu",
        "extractors": [str(extractor_runs["category"]), str(extractor_runs["texture"])], "backend": "brute"}))
    return CliRunner().invoke(main, ["index", "-c", str(cfg), "--no-progress"])


def test_a_catalog_with_a_sku_id_column_keeps_it(tmp_path, synth_root, extractor_runs):
    from fashionrec.catalog_index import CatalogIndex

    names = _images(synth_root, 8)
    rows = "".join(f"SKU-{i:04d},images/{n},shirt-{i % 2}\n" for i, n in enumerate(names))
    catalog = _catalog(tmp_path, synth_root, "id,path,pred_category\n" + rows)
    out = tmp_path / "index"
    r = _index(tmp_path, extractor_runs, catalog, out)
    assert r.exit_code == 0, r.output
    assert "catalog_id" in r.output and "indexed 8 images" in r.output
    idx = CatalogIndex.load(out)  # every later command reads it
    assert [it["id"] for it in idx.items] == [str(i) for i in range(8)]
    assert [it["catalog_id"] for it in idx.items] == [f"SKU-{i:04d}" for i in range(8)]
    assert [it["catalog_pred_category"] for it in idx.items] == [f"shirt-{i % 2}" for i in range(8)]
    assert idx.attributes().types["catalog_id"] == "text"
    query = str(catalog.parent / "images" / names[3])
    r = CliRunner().invoke(main, ["recommend", query, "--index", str(out), "--device", "cpu", "--json", "--explain",
                                  "--where", "catalog_id=SKU-0003"])
    assert r.exit_code == 0, r.output
    hit = json.loads(r.output)[0]["results"][0]
    assert hit["attributes"]["catalog_id"] == "SKU-0003" and hit["path"] == f"images/{names[3]}"


def test_a_catalog_whose_stand_in_name_is_taken_is_refused_before_the_old_index_goes(
        tmp_path, synth_root, extractor_runs, built_index):
    out = tmp_path / "index"
    shutil.copytree(built_index, out)
    before = _tree(out)
    n = _images(synth_root, 1)[0]
    catalog = _catalog(tmp_path, synth_root, f"id,catalog_id,path\n1,2,images/{n}\n")
    _one_line_error(_index(tmp_path, extractor_runs, catalog, out), "export.csv:1", "'id'", "'catalog_id'")
    assert _tree(out) == before


@pytest.mark.parametrize("case", ["bom-crlf", "semicolon", "tab", "spaces-unicode"])
def test_real_catalog_exports_index(tmp_path, synth_root, extractor_runs, case):
    from fashionrec.catalog_index import CatalogIndex

    names = _images(synth_root, 4)
    sep = {"semicolon": ";", "tab": "\t"}.get(case, ",")
    if case == "spaces-unicode":  # file names a shop's system makes
        images = tmp_path / "shop" / "images"
        shutil.copytree(synth_root / "fashion" / "images", images)
        for i, n in enumerate(names):
            (images / n).rename(images / f"Jäcke blau {i}.jpg")
        names = [f"Jäcke blau {i}.jpg" for i in range(4)]
    eol = "\r\n" if case == "bom-crlf" else "\n"
    text = eol.join([sep.join(["path", "brand", "price"])]
                    + [sep.join([f"images/{n}", "Aurel", f"{10 + i}.5"]) for i, n in enumerate(names)]) + eol
    catalog = _catalog(tmp_path, synth_root, ("\ufeff" if case == "bom-crlf" else "") + text)
    r = _index(tmp_path, extractor_runs, catalog, tmp_path / "index")
    assert r.exit_code == 0, r.output
    idx = CatalogIndex.load(tmp_path / "index")
    assert [it["path"] for it in idx.items] == [f"images/{n}" for n in names]
    assert idx.attributes().types == {"brand": "text", "price": "number"}


@pytest.mark.parametrize("text, fragments", [
    ("path,brand,brand\nimages/{n},a,b\n", ("export.csv:1", "'brand' appears more than once")),
    ("path,brand\n", ("export.csv", "no rows")),
    ("path,brand\n,Aurel\n", ("export.csv:2", "path must be relative")),
    ("", ("export.csv:1", "empty file")),
])
def test_odd_catalog_exports_are_one_line_and_keep_the_index(tmp_path, synth_root, extractor_runs, built_index,
                                                             text, fragments):
    out = tmp_path / "index"
    shutil.copytree(built_index, out)
    before = _tree(out)
    catalog = _catalog(tmp_path, synth_root, text.format(n=_images(synth_root, 1)[0]))
    _one_line_error(_index(tmp_path, extractor_runs, catalog, out), *fragments)
    assert _tree(out) == before


# ------------------------------------------------------------------------------ a full disk, a file-size limit

def _limited(args, limit_bytes, cwd=None):
    """The CLI in a process whose files may not grow past ``limit_bytes`` (``ulimit -f``); SIGXFSZ ignored
    (as Python does), so a write past it fails with EFBIG."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "fashionrec", *args], preexec_fn=limit, capture_output=True,
                          text=True, timeout=600, cwd=cwd, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))


def _one_line_stderr(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def test_index_past_a_file_size_limit_is_one_line_and_keeps_the_old_index(tmp_path, synth_root, extractor_runs,
                                                                          built_index):
    out = tmp_path / "index"
    shutil.copytree(built_index, out)
    before = _tree(out)
    cfg = tmp_path / "index.yaml"
    cfg.write_text(json.dumps({
        "catalog": {"format": "csv", "root": str(synth_root / "fashion" / "catalog.csv")}, "output": str(out),
        "extractors": [str(extractor_runs["category"]), str(extractor_runs["texture"])], "workers": 0,
        "device": "cpu", "backend": "brute"}))
    assert (out / "features.npy").stat().st_size > 200_000
    line = _one_line_stderr(_limited(["index", "-c", str(cfg), "--no-progress"], 100_000), str(out),
                            "the previous index there is unchanged")
    assert "File too large" in line or "short write" in line
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".index.") and p.suffix == ".tmp") == []


def test_import_weights_past_a_file_size_limit_is_one_line(tmp_path):
    import torch

    from test_import_weights import cadene_state

    torch.save(cadene_state(), tmp_path / "bn_inception.pth")
    out = tmp_path / "imported"
    _one_line_stderr(_limited(["import-weights", str(tmp_path / "bn_inception.pth"), "--arch", "bninception",
                               "--out", str(out)], 5_000_000), str(out), "File too large", "no run was left there")
    assert not out.exists()


def test_training_past_a_file_size_limit_is_one_line_and_keeps_the_old_run(finished_run, tmp_path):
    from fashionrec.config import dump_yaml

    cfg, run, before = finished_run
    path = tmp_path / "pretrain.yaml"
    path.write_text(dump_yaml(cfg))
    line = _one_line_stderr(_limited(["pretrain", "-c", str(path), "--force", "--no-progress"], 5_000_000),
                            "File too large", str(run))
    assert "left as it was" in line
    assert _tree(run) == before


def test_synth_past_a_file_size_limit_is_one_line(tmp_path):
    # one image's JPEG is a few kB; the limit stops the draw in a worker (two workers from 100 images)
    _one_line_stderr(_limited(["synth", str(tmp_path / "s"), "--n", "120", "--size", "64", "--no-progress"], 2_000),
                     "File too large")
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_index_on_a_full_small_filesystem_is_one_line(tmp_path, synth_root, extractor_runs, built_index):
    """A real full disk (ENOSPC): a 300 kB tmpfs in a private mount namespace (``unshare -r -m``)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    probe = subprocess.run(["unshare", "-r", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k none {tmp_path}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {probe.stderr.decode().strip()}")
    disk = tmp_path / "disk"
    disk.mkdir()
    cfg = tmp_path / "index.yaml"
    cfg.write_text(json.dumps({
        "catalog": {"format": "csv", "root": str(synth_root / "fashion" / "catalog.csv")},
        "output": str(disk / "index"), "workers": 0, "device": "cpu", "backend": "brute",
        "extractors": [str(extractor_runs["category"]), str(extractor_runs["texture"])]}))
    script = (f"mount -t tmpfs -o size=300k none {disk} && "
              f"PYTHONDONTWRITEBYTECODE=1 exec {sys.executable} -m fashionrec index -c {cfg} --no-progress")
    proc = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    line = _one_line_stderr(proc, str(disk / "index"), "cannot be written", "no index was left there")
    assert "No space left on device" in line or "the disk is full" in line  # numpy's short write has no errno


# ------------------------------------------------------------------------------ a rank that dies

@pytest.mark.slow
def test_sigkill_of_one_rank_is_one_line_on_the_other(tmp_path, synth_root):
    import time

    import yaml

    from test_distributed import STAGE, finish, rank_pid, torchrun

    raw = dict(STAGE, data={"format": "deepfashion", "root": str(synth_root / "deepfashion")},
               output={"dir": str(tmp_path / "runs"), "name": "two"})
    raw["train"] = dict(raw["train"], max_epochs=50, limit_train_batches=4)
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(raw))
    proc = torchrun(["pretrain", "-c", "two.yaml", "--no-progress"], tmp_path, wait=False)
    run = tmp_path / "runs/pretrain/two"
    deadline = time.time() + 240
    while not (run / "history.jsonl").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, finish(proc)
    os.kill(rank_pid(proc.pid, 1), signal.SIGKILL)  # the OOM killer's way: no word from rank 1
    code, out, err = finish(proc)
    assert code != 0
    ours = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert ours and "rank 1 of 2 stopped" in ours[0] and "--resume" in ours[0], err[-3000:]
    assert "pair.cc" not in err and "ProcessGroupGloo" not in err, err[-3000:]  # not gloo's traceback
    assert (run / "last" / "state.json").is_file()  # the epochs saved before are kept
