"""`fashionrec import-weights`: published ImageNet checkpoints become ordinary runs.

The checkpoints are written here in the exact published layouts (Cadene's pretrainedmodels
BN-Inception, both BatchNorm forms; torchvision's AlexNet) from random tensors, with the key
names and shapes spelled out below from the public model definitions, not from the code under
test. The imported run's outputs are compared with a reference forward written here with
functional torch ops from the same tensors and the checkpoint's own input convention.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from fashionrec.cli import main
from fashionrec.errors import UserError
from fashionrec.runs import import_run, load_classifier

# --------------------------------------------------------------------------- the published layouts

# pretrainedmodels/models/bninception.py: (module, in channels, 1x1, 3x3 reduce, 3x3, double reduce,
# double 3x3, pool proj); 3c and 4e have no 1x1 and no pool proj (max-pool pass-through), stride 2
CADENE_MODULES = [
    ("3a", 192, 64, 64, 64, 64, 96, 32), ("3b", 256, 64, 64, 96, 64, 96, 64),
    ("3c", 320, 0, 128, 160, 64, 96, 0), ("4a", 576, 224, 64, 96, 96, 128, 128),
    ("4b", 576, 192, 96, 128, 96, 128, 128), ("4c", 576, 160, 128, 160, 128, 160, 128),
    ("4d", 608, 96, 128, 192, 160, 192, 128), ("4e", 608, 0, 128, 192, 192, 256, 0),
    ("5a", 1056, 352, 192, 320, 160, 224, 128), ("5b", 1024, 352, 192, 320, 192, 224, 128),
]
CAFFE_MEAN_BGR = (104.0, 117.0, 128.0)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _cadene_convs():
    """(name, in, out, kernel) of every convolution, in the published names."""
    convs = [("conv1_7x7_s2", 3, 64, 7), ("conv2_3x3_reduce", 64, 64, 1), ("conv2_3x3", 64, 192, 3)]
    for m, cin, n1, r3, n3, rd, nd, proj in CADENE_MODULES:
        p = f"inception_{m}"
        if n1:
            convs.append((f"{p}_1x1", cin, n1, 1))
        convs += [(f"{p}_3x3_reduce", cin, r3, 1), (f"{p}_3x3", r3, n3, 3), (f"{p}_double_3x3_reduce", cin, rd, 1),
                  (f"{p}_double_3x3_1", rd, nd, 3), (f"{p}_double_3x3_2", nd, nd, 3)]
        if proj:
            convs.append((f"{p}_pool_proj", cin, proj, 1))
    return convs


def cadene_state(seed: int = 0, bn_as_row: bool = False, num_classes: int = 1000) -> OrderedDict:
    """A random BN-Inception state dict in pretrainedmodels' layout (``bn_as_row``: the older [1, C] BN form)."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for name, cin, cout, k in _cadene_convs():
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        state[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.1
        bn = {"weight": torch.rand(cout, generator=g) + 0.5, "bias": torch.randn(cout, generator=g) * 0.1,
              "running_mean": torch.randn(cout, generator=g) * 0.2, "running_var": torch.rand(cout, generator=g) + 0.5}
        for leaf, value in bn.items():
            state[f"{name}_bn.{leaf}"] = value.reshape(1, cout) if bn_as_row else value
    state["last_linear.weight"] = torch.randn(num_classes, 1024, generator=g) * 0.03
    state["last_linear.bias"] = torch.randn(num_classes, generator=g) * 0.1
    return state


def cadene_forward(state, images: np.ndarray):
    """The published forward (Caffe convention: BGR, 0-255, minus the mean) in float64: (logits, pooled)."""
    sd = {k: v.double().reshape(-1) if v.dim() == 2 and k.split(".")[0].endswith("_bn") else v.double()
          for k, v in state.items()}
    x = torch.from_numpy(images[..., ::-1].copy()).double().permute(0, 3, 1, 2)  # RGB -> BGR
    x = x - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64).view(1, 3, 1, 1)

    def unit(name, x, stride=1, pad=0):
        x = F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride, padding=pad)
        x = F.batch_norm(x, sd[f"{name}_bn.running_mean"], sd[f"{name}_bn.running_var"], sd[f"{name}_bn.weight"],
                         sd[f"{name}_bn.bias"], training=False, eps=1e-5)
        return F.relu(x)

    x = unit("conv1_7x7_s2", x, 2, 3)
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = unit("conv2_3x3", unit("conv2_3x3_reduce", x), 1, 1)
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    for m, _, n1, *_ in CADENE_MODULES:
        p, s = f"inception_{m}", (1 if n1 else 2)
        outs = [unit(f"{p}_1x1", x)] if n1 else []
        outs.append(unit(f"{p}_3x3", unit(f"{p}_3x3_reduce", x), s, 1))
        d = unit(f"{p}_double_3x3_1", unit(f"{p}_double_3x3_reduce", x), 1, 1)
        outs.append(unit(f"{p}_double_3x3_2", d, s, 1))
        if not n1:
            outs.append(F.max_pool2d(x, 3, 2, ceil_mode=True))
        elif m == "5b":
            outs.append(unit(f"{p}_pool_proj", F.max_pool2d(x, 3, 1, 1, ceil_mode=True)))
        else:
            outs.append(unit(f"{p}_pool_proj", F.avg_pool2d(x, 3, 1, 1, ceil_mode=True, count_include_pad=True)))
        x = torch.cat(outs, 1)
    pooled = F.avg_pool2d(x, 7, 1).flatten(1)  # pretrainedmodels' global_pool: 7x7 at 224 px
    return F.linear(pooled, sd["last_linear.weight"], sd["last_linear.bias"]).numpy(), pooled.numpy()


ALEXNET_CONVS = [(0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3), (8, 384, 256, 3), (10, 256, 256, 3)]
ALEXNET_FCS = [(1, 9216, 4096), (4, 4096, 4096), (6, 4096, 1000)]


def torchvision_alexnet_state(seed: int = 0) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for i, cin, cout, k in ALEXNET_CONVS:
        state[f"features.{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        state[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.1
    for i, cin, cout in ALEXNET_FCS:
        state[f"classifier.{i}.weight"] = torch.randn(cout, cin, generator=g) * (2.0 / cin) ** 0.5
        state[f"classifier.{i}.bias"] = torch.randn(cout, generator=g) * 0.1
    return state


def torchvision_alexnet_forward(state, images: np.ndarray):
    """torchvision's AlexNet forward (RGB in [0, 1], ImageNet mean/std) in float64: (logits, 4096-d feature)."""
    sd = {k: v.double() for k, v in state.items()}
    x = torch.from_numpy(images).double().permute(0, 3, 1, 2) / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / \
        torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    strides = {0: (4, 2), 3: (1, 2), 6: (1, 1), 8: (1, 1), 10: (1, 1)}
    for i, *_ in ALEXNET_CONVS:
        x = F.relu(F.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], stride=strides[i][0],
                            padding=strides[i][1]))
        if i in (0, 3, 10):
            x = F.max_pool2d(x, 3, 2)
    x = F.adaptive_avg_pool2d(x, (6, 6)).flatten(1)
    x = F.relu(F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"]))
    pooled = F.relu(F.linear(x, sd["classifier.4.weight"], sd["classifier.4.bias"]))
    return F.linear(pooled, sd["classifier.6.weight"], sd["classifier.6.bias"]).numpy(), pooled.numpy()


def _images(n: int = 2, size: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _assert_close(got, want, rel=1e-4):
    """float32 against the float64 reference: to float rounding at the output's scale."""
    np.testing.assert_allclose(got, want, rtol=0, atol=rel * max(1.0, float(np.abs(want).max())))


@pytest.fixture(scope="module")
def cadene_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "bn_inception-52deb4733.pth"
    torch.save(cadene_state(), path)
    return path


# --------------------------------------------------------------------------- BN-Inception


@pytest.mark.parametrize("bn_as_row", [False, True], ids=["bn-vector", "bn-row-1xC"])
def test_cadene_bninception_imports_and_matches_the_published_forward(tmp_path, bn_as_row):
    state = cadene_state(seed=1, bn_as_row=bn_as_row)
    ckpt = tmp_path / "bn_inception.pth"
    torch.save(state, ckpt)
    run = import_run(ckpt, "bninception", tmp_path / "run")
    info = json.loads((run / "model.json").read_text())
    assert info["normalization"] == {"mean": [104.0, 117.0, 128.0], "std": [1.0, 1.0, 1.0], "channels": "bgr",
                                     "scale": 255.0}
    assert info["classes"][:2] == ["imagenet_0000", "imagenet_0001"] and len(info["classes"]) == 1000
    assert info["input_size"] == 224 and info["engine"] == "torch" and info["arch"] == "bninception"
    clf, _ = load_classifier(run, device="cpu")
    x = _images()
    logits, pooled = clf.extract(x)
    want_logits, want_pooled = cadene_forward(state, x)
    assert np.abs(want_logits).max() > 1.0  # a network that does something, not all zeros
    _assert_close(pooled, want_pooled)
    _assert_close(logits, want_logits)
    # the input convention matters: the same weights fed RGB give other outputs
    assert not np.allclose(clf.extract(x[..., ::-1].copy())[0], logits, atol=1e-3 * np.abs(logits).max())


def test_both_bn_forms_give_the_same_run(tmp_path):
    for form in (False, True):
        torch.save(cadene_state(seed=2, bn_as_row=form), tmp_path / f"{form}.pth")
        import_run(tmp_path / f"{form}.pth", "bninception", tmp_path / f"run-{form}")
    a, _ = load_classifier(tmp_path / "run-False", device="cpu")
    b, _ = load_classifier(tmp_path / "run-True", device="cpu")
    wa, wb = a.get_weights(), b.get_weights()
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_import_converts_to_mxnet_with_the_convention(cadene_file, tmp_path):
    pytest.importorskip("mxnet")
    from fashionrec.runs import convert_run

    run = import_run(cadene_file, "bninception", tmp_path / "run")
    other = convert_run(run, "mxnet", tmp_path / "run-mxnet")
    assert json.loads((other / "model.json").read_text())["normalization"]["channels"] == "bgr"
    torch_clf, _ = load_classifier(run, device="cpu")
    mx_clf, _ = load_classifier(other, device="cpu")
    assert (mx_clf.channels, mx_clf.scale) == ("bgr", 255.0)
    x = _images(size=64)
    _assert_close(mx_clf.extract(x)[1], torch_clf.extract(x)[1])


@pytest.mark.parametrize("engine", ["torch", pytest.param("mxnet", marks=pytest.mark.mxnet)])
def test_engines_apply_the_caffe_convention_on_their_device(engine):
    """BGR, 0-255, minus the mean: each engine's input is normalize_batch's to the last bit, and is
    exactly the published preprocessing."""
    from fashionrec.data.images import normalize_batch
    from fashionrec.engines.factory import build_classifier

    conv = {"mean": CAFFE_MEAN_BGR, "std": (1.0, 1.0, 1.0), "channels": "bgr", "scale": 255.0}
    clf = build_classifier(engine, "alexnet", 3, device="cpu", **conv)
    x = _images(size=20)
    got = clf._images(x)
    got = got.numpy() if engine == "torch" else got.asnumpy()
    want = normalize_batch(x, **conv)
    np.testing.assert_array_equal(got, want)
    published = x[..., ::-1].astype(np.float32).transpose(0, 3, 1, 2) - np.float32(CAFFE_MEAN_BGR).reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(want, published)
    with pytest.raises(ValueError, match="channels must be one of rgb, bgr"):
        build_classifier(engine, "alexnet", 3, device="cpu", channels="grb")
    with pytest.raises(ValueError, match="scale must be one of 1, 255"):
        build_classifier(engine, "alexnet", 3, device="cpu", scale=100)


# --------------------------------------------------------------------------- AlexNet


def test_torchvision_alexnet_imports_and_matches_the_published_forward(tmp_path):
    state = torchvision_alexnet_state()
    ckpt = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(state, ckpt)
    run = import_run(ckpt, "alexnet", tmp_path / "run")
    info = json.loads((run / "model.json").read_text())
    assert info["normalization"]["channels"] == "rgb" and info["normalization"]["scale"] == 1.0
    assert info["normalization"]["mean"] == list(IMAGENET_MEAN) and info["num_features"] == 4096
    clf, _ = load_classifier(run, device="cpu")
    x = _images()
    logits, pooled = clf.extract(x)
    want_logits, want_pooled = torchvision_alexnet_forward(state, x)
    _assert_close(pooled, want_pooled)
    _assert_close(logits, want_logits)


# --------------------------------------------------------------------------- what does not fit


def test_mismatched_checkpoints_are_one_line_naming_the_keys(cadene_file, tmp_path):
    with pytest.raises(UserError, match=r"not a alexnet checkpoint \(it looks like a bninception checkpoint: "
                                        r"--arch bninception\).*missing: classifier\.1\.bias"):
        import_run(cadene_file, "alexnet", tmp_path / "a")
    state = cadene_state()
    del state["inception_4a_1x1_bn.running_var"]
    state["aux_classifier.weight"] = torch.zeros(3)
    state["conv2_3x3.weight"] = torch.zeros(192, 64, 5, 5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(UserError) as e:
        import_run(tmp_path / "bad.pth", "bninception", tmp_path / "b")
    msg = str(e.value)
    assert "\n" not in msg and "missing: inception_4a_1x1_bn.running_var" in msg
    assert "unexpected: aux_classifier.weight" in msg
    assert "wrong shape: conv2_3x3.weight (192, 64, 5, 5) (expected (192, 64, 3, 3))" in msg
    (tmp_path / "notes.pth").write_text("not a checkpoint at all\n")
    with pytest.raises(UserError, match="notes.pth: not a PyTorch checkpoint"):
        import_run(tmp_path / "notes.pth", "bninception", tmp_path / "c")
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    with pytest.raises(UserError, match="not a state dict"):
        import_run(tmp_path / "list.pth", "bninception", tmp_path / "d")
    assert not any((tmp_path / n).exists() for n in "abcd")  # nothing half-written


def test_wrapped_and_data_parallel_checkpoints_load(tmp_path):
    state = cadene_state(seed=3)
    wrapped = {"epoch": 7, "state_dict": OrderedDict((f"module.{k}", v) for k, v in state.items())}
    torch.save(wrapped, tmp_path / "w.pth")
    run = import_run(tmp_path / "w.pth", "bninception", tmp_path / "run")
    clf, _ = load_classifier(run, device="cpu")
    np.testing.assert_array_equal(clf.get_weights()["fc.weight"], state["last_linear.weight"].numpy())


def test_an_existing_folder_is_kept_unless_forced(cadene_file, tmp_path):
    run = import_run(cadene_file, "bninception", tmp_path / "run")
    with pytest.raises(UserError, match="already exists"):
        import_run(cadene_file, "bninception", run)
    assert import_run(cadene_file, "bninception", run, force=True) == run
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError):
        import_run(cadene_file, "bninception", other, force=True)
    assert (other / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- through the CLI


def test_import_then_init_then_evaluate_through_the_cli(cadene_file, synth_root, tmp_path):
    runner = CliRunner()
    out = tmp_path / "imported" / "bn"
    r = runner.invoke(main, ["import-weights", str(cadene_file), "--arch", "bninception", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "imported run" in r.output and "bgr" in r.output
    config = tmp_path / "finetune.yaml"
    config.write_text(f"""
stage: finetune
task: category
engine: torch
data: {{format: csv, root: {synth_root / 'fashion' / 'category.csv'}}}
model: {{arch: bninception, input_size: 32}}
train: {{optimizer: adam, lr: 0.001, batch_size: 16, max_epochs: 1, workers: 0, device: cpu, limit_train_batches: 2}}
output: {{dir: {tmp_path / 'runs'}, name: from-imagenet}}
init: {out}
""")
    r = runner.invoke(main, ["finetune", "-c", str(config), "--no-progress"])  # init: from the config
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "finetune" / "from-imagenet"
    info = json.loads((run / "model.json").read_text())
    assert info["init"] == str(out)
    assert info["normalization"]["channels"] == "bgr" and info["normalization"]["scale"] == 255.0  # inherited
    assert len(info["classes"]) == 9
    # the fine-tuned backbone started from the imported weights, not from random ones
    clf, _ = load_classifier(run, device="cpu")
    assert clf.get_weights()["stem.0.0.weight"].shape == (64, 3, 7, 7)
    r = runner.invoke(main, ["evaluate", str(run), "--split", "val", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "per-class accuracy" in r.output and (run / "metrics.json").is_file()
    # without init: or --init, finetune says what it needs in one line
    r = runner.invoke(main, ["finetune", "-c", str(config), "--set", "init=null", "--no-progress"])
    assert r.exit_code == 2 and "--init RUN_DIR (or init: in the config) is required" in r.output
