"""Nothing is loaded by unpickling; parsers and decoding fail only with the toolkit's own error;
a kill leaves the old artifact or the new one."""

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashionrec.catalog_index import CatalogIndex
from fashionrec.data.deepfashion import read_table
from fashionrec.data.images import decode_image
from fashionrec.demo import CONFIG_DIR as DEMO_CONFIGS
from fashionrec.errors import DataError, UserError
from fashionrec.runs import load_classifier


def foreground_job():
    """In the child: SIGINT as a terminal's foreground job has it, however pytest was started. A background job of
    a shell without job control (`make test &` in a script) starts with SIGINT ignored, and a command keeps
    ignoring it, as it should: Ctrl-C then never reached these children (issue 26)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("engine", ["torch", pytest.param("mxnet", marks=pytest.mark.mxnet)])
def test_planted_pickle_in_place_of_weights_is_refused_not_run(extractor_runs, tmp_path, engine):
    import json

    run = tmp_path / "run"
    shutil.copytree(extractor_runs["category"], run)
    info = json.loads((run / "model.json").read_text())
    weights = {"torch": "weights.safetensors", "mxnet": "weights.params"}[engine]
    info.update(engine=engine, weights=weights)
    (run / "model.json").write_text(json.dumps(info))
    marker = tmp_path / "pwned"
    (run / weights).write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UserError, match=weights):
        load_classifier(run, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("form", ["torch-save", "bare-pickle"])
def test_planted_pickle_in_a_checkpoint_to_import_is_refused_not_run(tmp_path, form):
    """`import-weights` reads .pth files, which are pickles: torch.load(weights_only=True) refuses the
    payload before it is called, whether saved by torch.save among real tensors or as a bare pickle."""
    import torch

    from fashionrec.runs import import_run

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "bn_inception-52deb4733.pth"
    if form == "torch-save":
        torch.save({"conv1_7x7_s2.weight": torch.zeros(64, 3, 7, 7), "last_linear.bias": Payload(marker)}, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UserError, match="bn_inception-52deb4733.pth: (refused|not a PyTorch checkpoint)") as e:
        import_run(ckpt, "bninception", tmp_path / "run")
    if form == "torch-save":
        assert "refused" in str(e.value) and "open" in str(e.value)
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_pickled_features_are_refused(built_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(built_index, copy)
    marker = tmp_path / "pwned"
    with open(copy / "features.npy", "wb") as f:
        np.save(f, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="features.npy"):
        CatalogIndex.load(copy)
    assert not marker.exists()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.text(max_size=40), max_size=6), n_values=st.integers(1, 4))
def test_annotation_parser_fails_only_with_data_error(tmp_path, lines, n_values):
    path = tmp_path / "anno.txt"
    path.write_bytes("\n".join(lines).encode("utf-8", errors="replace"))
    try:
        rows = read_table(path, n_values=n_values)
    except DataError as e:
        assert "anno.txt" in str(e) and "\n" not in str(e)
    else:
        assert all(len(v) == n_values for _, _, v in rows)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2048))
def test_decoding_random_bytes_fails_only_with_data_error(data):
    try:
        img = decode_image(data, name="fuzz.jpg")
    except DataError as e:
        assert str(e).startswith("fuzz.jpg: ")
    else:
        assert img.mode == "RGB"


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 4000), flip=st.integers(0, 4000))
def test_damaged_real_jpegs_fail_only_with_data_error(synth_root, cut, flip):
    data = bytearray((synth_root / "fashion" / "images" / "000001.jpg").read_bytes())
    if flip < len(data):
        data[flip] ^= 0xFF
    try:
        decode_image(bytes(data[: max(cut, 1)]), name="x.jpg")
    except DataError:
        pass


def test_kill_while_writing_an_index_leaves_the_old_one(built_index, tmp_path):
    target = tmp_path / "index"
    shutil.copytree(built_index, target)
    before = CatalogIndex.load(target).features.copy()
    script = (
        "import sys, time\n"
        "from fashionrec.artifacts import atomic_dir\nfrom fashionrec.catalog_index import INDEX_KIND\n"
        "with atomic_dir(sys.argv[1], kind=INDEX_KIND) as tmp:\n"
        "    (tmp / 'index.json').write_text('{\"format\": 1}')\n"
        "    with open(tmp / 'features.npy', 'wb') as f:\n"
        "        f.write(b'half')\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    after = CatalogIndex.load(target)  # the old, complete index; the half-written one is never picked up
    np.testing.assert_array_equal(after.features, before)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".index.")]
    assert leftovers  # the half-written directory is there, under a temporary name only


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_process_group_stops_training_with_workers_quietly(synth_root, tmp_path, signum):
    """`timeout` sends SIGTERM to the whole process group, Ctrl-C sends SIGINT to it: the loader's worker
    processes get it too. One line from the parent, no traceback from any worker, and the epoch kept."""
    cmd = [sys.executable, "-m", "fashionrec", "pretrain", "-c", str(DEMO_CONFIGS / "pretrain-category.yaml"),
           "--set", f"data.root={synth_root / 'deepfashion'}", "--set", f"output.dir={tmp_path}",
           "--set", "model.input_size=32", "--set", "train.max_epochs=50", "--set", "train.patience=50",
           "--set", "train.limit_train_batches=3", "--set", "train.workers=2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=foreground_job)
    for line in proc.stdout:
        if line.startswith("epoch 1:"):  # the workers are up and loading epoch 2
            os.killpg(proc.pid, signum)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert (tmp_path / "pretrain" / "bninception-category" / "last" / "state.json").is_file()


def test_a_loader_worker_killed_mid_training_ends_the_run_with_one_line_and_the_epoch_kept(synth_root, tmp_path):
    """The OOM killer takes a worker: the run stops at once, saying which, where a multiprocessing.Pool
    waited forever for the batch the worker owed."""
    cmd = [sys.executable, "-m", "fashionrec", "pretrain", "-c", str(DEMO_CONFIGS / "pretrain-category.yaml"),
           "--set", f"data.root={synth_root / 'deepfashion'}", "--set", f"output.dir={tmp_path}",
           "--set", "model.input_size=32", "--set", "train.max_epochs=50", "--set", "train.patience=50",
           "--set", "train.limit_train_batches=3", "--set", "train.workers=2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch 1:"):  # both loaders' workers are up
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            assert len(children) == 4  # 2 train + 2 validation workers
            for pid in children:
                os.kill(int(pid), signal.SIGKILL)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(r"error: loader worker [01] \(pid \d+\) was killed by SIGKILL while a batch was due; "
                        r"out of memory\? .*", err.strip()), err
    assert (tmp_path / "pretrain" / "bninception-category" / "last" / "state.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", ["", "epoch 1:+0.0", "epoch 1:+0.4", "epoch 2:+0.1"])
def test_sigterm_during_training_keeps_the_last_epoch_and_resume_finishes(synth_root, tmp_path, kill_after):
    base = [sys.executable, "-m", "fashionrec", "pretrain", "-c", str(DEMO_CONFIGS / "pretrain-category.yaml"),
            "--set", f"data.root={synth_root / 'deepfashion'}", "--set", f"output.dir={tmp_path}",
            "--set", "model.input_size=32", "--set", "train.max_epochs=4", "--set", "train.patience=9",
            "--set", "train.limit_train_batches=2", "--set", "train.workers=0", "--no-progress"]
    import json

    proc = subprocess.Popen(base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker, _, delay = kill_after.partition("+")
    for line in proc.stdout:
        if line.startswith(marker):  # "": the first line, before any epoch has finished
            time.sleep(float(delay or 0))
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)
    state = tmp_path / "pretrain" / "bninception-category" / "last" / "state.json"
    assert proc.returncode == 130 and "Traceback" not in err, err
    if not state.exists():  # killed inside epoch 1: nothing to resume, and nothing half-written
        assert marker == "" or delay
        r = subprocess.run(base + ["--resume"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "nothing to resume" in r.stderr
        r = subprocess.run(base, capture_output=True, text=True, timeout=300)
    else:
        assert "--resume" in err and json.loads(state.read_text())["epoch"] in (1, 2, 3)
        r = subprocess.run(base + ["--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(state.read_text())["epoch"] == 4
    history = (tmp_path / "pretrain" / "bninception-category" / "history.jsonl").read_text().splitlines()
    assert len(history) == 4
