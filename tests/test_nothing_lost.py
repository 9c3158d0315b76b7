"""Nothing lost: writers refuse what they did not write, queue on a lock, and check what they read."""

import json
import multiprocessing
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from fashionrec.artifacts import save_npy
from fashionrec.catalog_index import CatalogIndex, build_index
from fashionrec.cli import main
from test_index import index_config


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def _index_cli(synth_root, runs, out, tmp_path, *extra):
    cfg = tmp_path / "index.yaml"
    cfg.write_text(json.dumps({
        "catalog": {"format": "csv", "root": str(synth_root / "fashion" / "catalog.csv")},
        "extractors": [str(runs["category"]), str(runs["texture"])],
        "output": str(out), "workers": 0, "device": "cpu", "backend": "brute"}))
    return CliRunner().invoke(main, ["index", "-c", str(cfg), "--no-progress", *extra])


def test_index_refuses_a_folder_with_a_strangers_file(synth_root, extractor_runs, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    result = _index_cli(synth_root, extractor_runs, out, tmp_path)
    _one_line_error(result, str(out), "not a fashionrec index", "holiday.jpg")
    assert (out / "holiday.jpg").read_bytes() == b"precious"
    assert "extracting" not in result.output  # refused before any work


def test_index_refuses_an_index_folder_holding_a_users_file(built_index, synth_root, extractor_runs, tmp_path):
    out = tmp_path / "index"
    shutil.copytree(built_index, out)
    (out / "notes.txt").write_text("mine")
    result = _index_cli(synth_root, extractor_runs, out, tmp_path)
    _one_line_error(result, "notes.txt", "did not write")
    assert (out / "notes.txt").read_text() == "mine"


def test_index_refuses_the_catalogs_own_folder(synth_root, extractor_runs, tmp_path):
    catalog = tmp_path / "fashion"
    shutil.copytree(synth_root / "fashion", catalog)
    before = sorted(p.name for p in catalog.iterdir())
    result = _index_cli(synth_root, extractor_runs, catalog, tmp_path)
    _one_line_error(result, "not a fashionrec index")
    assert sorted(p.name for p in catalog.iterdir()) == before


def test_index_replaces_its_own_kind(built_index, synth_root, extractor_runs, tmp_path):
    out = tmp_path / "index"
    shutil.copytree(built_index, out)
    result = _index_cli(synth_root, extractor_runs, out, tmp_path)
    assert result.exit_code == 0, result.output
    assert CatalogIndex.load(out).meta["backend_params"]["backend"] == "brute"


def test_read_only_output_fails_before_the_work(synth_root, extractor_runs, tmp_path):
    result = _index_cli(synth_root, extractor_runs, "/proc/self/index", tmp_path)
    _one_line_error(result, "/proc/self", "cannot write here")
    assert "extracting" not in result.output


def test_two_concurrent_appends_keep_every_item_once(synth_root, extractor_runs, tmp_path):
    root = tmp_path / "fashion"
    shutil.copytree(synth_root / "fashion", root)
    rows = (root / "catalog.csv").read_text().splitlines()
    header, body = rows[0], rows[1:41]
    catalogs = []
    for name, part in (("base", body[:10]), ("a", body[:25]), ("b", body[:10] + body[25:40])):
        p = root / f"catalog-{name}.csv"  # beside the images: one catalog root for all three
        p.write_text("\n".join([header, *part]) + "\n")
        catalogs.append(p)
    out = tmp_path / "index"
    build_index(index_config(synth_root, extractor_runs, out, catalog=catalogs[0], backend="brute"),
                progress=False, log=lambda *_: None)
    # two real processes, as two users' commands would be
    procs = []
    for c in catalogs[1:]:
        cfg = tmp_path / f"{c.stem}.yaml"
        cfg.write_text(json.dumps({
            "catalog": {"format": "csv", "root": str(c)}, "output": str(out), "backend": "brute",
            "extractors": [str(extractor_runs["category"]), str(extractor_runs["texture"])],
            "workers": 0, "device": "cpu"}))
        procs.append(subprocess.Popen([sys.executable, "-m", "fashionrec", "index", "-c", str(cfg), "--append",
                                       "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output
    idx = CatalogIndex.load(out)
    paths = [it["path"] for it in idx.items]
    expected = {r.split(",")[0] for r in body[:40]}
    assert len(paths) == len(set(paths)) == 40 and set(paths) == expected
    assert [int(it["id"]) for it in idx.items] == list(range(40))
    assert idx.features.shape == (40, 2048)


@pytest.fixture()
def index_copy(built_index, tmp_path):
    out = tmp_path / "index"
    shutil.copytree(built_index, out)
    return out


@pytest.mark.parametrize("command", ["recommend", "evaluate"])
def test_nan_features_are_one_line(index_copy, synth_root, command):
    feats = np.load(index_copy / "features.npy")
    feats[4, 10] = np.nan
    save_npy(index_copy / "features.npy", feats)
    query = str(synth_root / "fashion" / "images" / "000001.jpg")
    args = (["recommend", query, "--index", str(index_copy), "--device", "cpu"] if command == "recommend"
            else ["evaluate", "--index", str(index_copy), "--no-progress"])
    _one_line_error(CliRunner().invoke(main, args), "features.npy", "NaN or infinite", "row 4")


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m.pop("blocks"), "'blocks' is missing"),
    (lambda m: m.update(dim="2048"), "'dim' must be an integer"),
    (lambda m: m["catalog"].pop("root"), "'catalog.root'"),
    (lambda m: m["extractors"][0].pop("weights_sha256"), "extractors[0]"),
])
def test_hand_edited_index_json_is_one_line(index_copy, edit, fragment):
    meta = json.loads((index_copy / "index.json").read_text())
    edit(meta)
    (index_copy / "index.json").write_text(json.dumps(meta))
    _one_line_error(CliRunner().invoke(main, ["evaluate", "--index", str(index_copy), "--no-progress"]),
                    "index.json", fragment)


def test_recommend_checks_arguments_before_loading(tmp_path):
    # no index at all: the argument errors must come first, and fast
    r = CliRunner().invoke(main, ["recommend", str(tmp_path / "nope.jpg"), "--index", str(tmp_path / "none")])
    _one_line_error(r, "nope.jpg", "no such image")
    img = tmp_path / "q.jpg"
    img.write_bytes(b"x")
    r = CliRunner().invoke(main, ["recommend", str(img), "-k", "0", "--index", str(tmp_path / "none")])
    _one_line_error(r, "-k must be >= 1")


def test_k_larger_than_the_catalog_is_one_line_of_ours(built_index, synth_root):
    query = str(synth_root / "fashion" / "images" / "000001.jpg")
    r = CliRunner().invoke(main, ["recommend", query, "--index", str(built_index), "-k", "5000", "--json",
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    warning_lines = [ln for ln in r.output.splitlines() if "larger than the catalog" in ln]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("warning: k=5000")
    assert "UserWarning" not in r.output and "warnings.warn" not in r.output


# ------------------------------------------------------------------------------- run folders

def _train_quick(tmp_path, synth_root, **kw):
    from fashionrec.training import train
    from test_train import stage_config

    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=1, limit=1, name="r")
    return cfg, train(cfg, progress=False, log=lambda *_: None, **kw)


def test_training_refuses_a_folder_with_a_strangers_file(tmp_path, synth_root):
    from fashionrec.errors import UserError
    from fashionrec.training import train
    from test_train import stage_config

    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=1, limit=1, name="r")
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "thesis.pdf").write_bytes(b"precious")
    with pytest.raises(UserError, match="not a fashionrec run"):
        train(cfg, progress=False, log=lambda *_: None, force=True)
    assert (cfg.run_dir / "thesis.pdf").read_bytes() == b"precious"


def test_force_replaces_a_finished_run_only(tmp_path, synth_root):
    from fashionrec.errors import UserError
    from fashionrec.training import train

    cfg, run = _train_quick(tmp_path, synth_root)
    with pytest.raises(UserError, match="--force"):
        train(cfg, progress=False, log=lambda *_: None)
    first = (run / "model.json").stat().st_mtime_ns
    train(cfg, progress=False, log=lambda *_: None, force=True)
    assert (run / "model.json").stat().st_mtime_ns != first
    (run / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt"):
        train(cfg, progress=False, log=lambda *_: None, force=True)
    assert (run / "notes.txt").read_text() == "mine"


def test_two_runs_into_one_folder_the_second_fails_at_once(tmp_path, synth_root):
    from fashionrec.artifacts import exclusive_lock
    from fashionrec.errors import UserError
    from fashionrec.training import train
    from test_train import stage_config

    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=1, limit=1, name="r")
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()

    def hold():
        with exclusive_lock(cfg.run_dir, what="run folder"):
            ready.set()
            release.wait(30)

    holder = ctx.Process(target=hold)
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(UserError, match=f"another writer holds the run folder \\(pid {holder.pid}"):
            train(cfg, progress=False, log=lambda *_: None)
    finally:
        release.set()
        holder.join(20)


def test_a_run_that_aborts_before_its_first_epoch_leaves_no_folder(tmp_path, synth_root):
    from fashionrec.errors import UserError
    from fashionrec.training import train
    from test_train import stage_config

    cfg = stage_config(tmp_path, synth_root / "deepfashion", epochs=1, limit=1, name="r")
    cfg.train.lr = 1e12  # diverges in the first steps
    cfg.train.optimizer = "sgd"
    with pytest.raises(UserError, match="diverged"):
        train(cfg, progress=False, log=lambda *_: None)
    assert not cfg.run_dir.exists()


def test_a_copied_run_folder_still_evaluates(tmp_path, synth_root):
    _, run = _train_quick(tmp_path, synth_root)
    moved = tmp_path / "elsewhere" / "deeper" / "r"
    shutil.copytree(run, moved)
    r = CliRunner().invoke(main, ["evaluate", str(moved), "--split", "val", "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output


def test_weights_are_readable_by_other_users(tmp_path, synth_root):
    _, run = _train_quick(tmp_path, synth_root)
    for name in ("weights.safetensors", "model.json", "last/weights.safetensors"):
        assert (run / name).stat().st_mode & 0o044 == 0o044, name


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "my-run.txt").write_text("weeks of training")
    (tmp_path / "README.md").write_text("my project")
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--quick", "--no-progress"])
    _one_line_error(r, str(tmp_path), "not a fashionrec demo folder")
    assert (tmp_path / "runs" / "my-run.txt").read_text() == "weeks of training"


@pytest.mark.parametrize("planted", ["runs/notes.txt", "runs/pretrain/mine/notes.txt", "index/notes.txt"])
def test_demo_keeps_what_a_user_put_inside_an_earlier_demos_runs_or_index(tmp_path, planted):
    """An earlier demo's folder is replaced, but runs/ and index/ go whole: a file no demo writes stops it."""
    (tmp_path / ".fashionrec-demo.json").write_text('{"quick": true, "engine": "torch"}')
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "index.json").write_text("{}")
    user_file = tmp_path / planted
    user_file.parent.mkdir(parents=True, exist_ok=True)
    if "mine" in planted:
        (user_file.parent / "model.json").write_text("{}")
    user_file.write_text("weeks of training")
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--quick", "--no-progress"])
    _one_line_error(r, str(user_file.parent if "mine" in planted or "index" in planted else user_file))
    assert user_file.read_text() == "weeks of training"
