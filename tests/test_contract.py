"""The Classifier contract, checked for every registered engine x architecture.

In the spirit of scikit-learn's ``parametrize_with_checks``: a new architecture file or a new
engine is picked up from the registry and must pass every check here, through the interface
only (``fashionrec.engines.base.Classifier``), except the eval-mode reference forward, which is
the one thing each engine spells out below. mxnet cases are skipped where mxnet (an optional
extra) is not installed. Inputs are 64 px (AlexNet's smallest comfortable size), batch 2.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fashionrec.data.images import normalize_batch
from fashionrec.engines.factory import build_classifier, get_builder
from fashionrec.engines.registry import (
    engine_names,
    engine_spec,
    list_archs,
    precision_names,
    register_model,
    weights_file,
)
from fashionrec.errors import UserError

# EfficientNet-Lite1-4 are lite0's definition at other widths and depths: lite0 runs the whole contract, the other
# sizes their shapes against the reference port and a forward (tests/test_pretrained_lite.py), ~4 min less CI
SAME_DEFINITION = {f"efficientnet_lite{v}" for v in range(1, 5)}
CASES = [pytest.param((engine, arch), id=f"{engine}-{arch}")
         for engine in engine_names() for arch in list_archs(engine) if arch not in SAME_DEFINITION]
NUM_CLASSES = 5
RUNNING = (".running_mean", ".running_var")


def _images(n: int = 2, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _randomise_batchnorm(clf, seed: int = 0) -> None:
    """Random BatchNorm statistics, scale and shift, through get/set_weights, so that eval-mode
    BatchNorm (and folding it into the convolution) is not the identity."""
    rng = np.random.default_rng(seed)
    weights = clf.get_weights()
    batchnorms = {k[: -len(RUNNING[0])] for k in weights if k.endswith(RUNNING[0])}
    for name, value in weights.items():
        prefix, _, leaf = name.rpartition(".")
        if prefix not in batchnorms:
            continue
        if name.endswith(RUNNING[1]):
            new = rng.uniform(0.5, 2.0, value.shape)
        elif leaf in ("weight", "gamma"):
            new = rng.uniform(0.5, 1.5, value.shape)
        else:  # running mean, shift
            new = rng.normal(0.0, 0.2, value.shape)
        weights[name] = new.astype(value.dtype)
    clf.set_weights(weights)


@pytest.fixture(scope="module", params=CASES)
def built(request):
    """One classifier per case with random BatchNorm statistics, and its weights. Built once:
    pytest runs a case's checks together, so one network at a time is alive."""
    engine, arch = request.param
    if engine_spec(engine).extra:
        pytest.importorskip(engine_spec(engine).requires)
    clf = build_classifier(engine, arch, NUM_CLASSES, device="cpu", seed=0)
    _randomise_batchnorm(clf)
    return clf, clf.get_weights()


@pytest.fixture
def clf(built):
    """The case's classifier as built, whatever the previous check did to it."""
    clf, weights = built
    if clf.num_classes != NUM_CLASSES:
        clf.reset_head(NUM_CLASSES)
    clf.set_weights(weights)
    clf.set_inference_precision("fp32")
    return clf


def _torch_eval_forward(clf, x):
    import torch

    clf.model.eval()
    with torch.no_grad():
        t = torch.from_numpy(normalize_batch(x, clf.mean, clf.std))
        return clf.model(t).numpy(), clf.model.pooled_features(t).numpy()


def _mxnet_eval_forward(clf, x):
    import mxnet as mx

    t = mx.nd.array(normalize_batch(x, clf.mean, clf.std), ctx=clf.ctx)
    return clf.net(t).asnumpy(), clf.net.pooled_features(t).asnumpy()


# the plain network in eval mode, fp32, NCHW, without the engine's inference optimisations
EVAL_FORWARD = {"torch": _torch_eval_forward, "mxnet": _mxnet_eval_forward}


def _assert_close(got, want, rel=1e-4):
    np.testing.assert_allclose(got, want, rtol=0, atol=rel * max(1.0, float(np.abs(want).max())))


def test_predict_and_extract_shapes(clf):
    assert clf.engine in engine_names() and clf.arch in list_archs(clf.engine) and clf.num_classes == NUM_CLASSES
    assert isinstance(clf.num_features, int) and clf.num_features > 0
    x = _images()
    logits, features = clf.extract(x)
    assert logits.shape == (2, NUM_CLASSES) and features.shape == (2, clf.num_features)
    assert np.isfinite(logits).all() and np.isfinite(features).all()
    np.testing.assert_array_equal(clf.predict(x), logits)
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        clf.predict(x.astype(np.float32))


def test_reset_head_changes_the_class_count_and_keeps_the_features(clf):
    x = _images()
    _, features = clf.extract(x)
    clf.reset_head(3)
    logits, new_features = clf.extract(x)
    assert clf.num_classes == 3 and logits.shape == (2, 3) and clf.predict(x).shape == (2, 3)
    np.testing.assert_array_equal(new_features, features)
    assert clf.get_weights()["fc.weight"].shape == (3, clf.num_features)


def test_save_and_load_weights_round_trip(clf, tmp_path):
    x = _images()
    saved = clf.extract(x)
    path = tmp_path / weights_file(clf.engine)
    clf.save_weights(path)
    _randomise_batchnorm(clf, seed=1)
    clf.reset_head(NUM_CLASSES)  # a new random head
    assert not np.allclose(clf.predict(x), saved[0])
    clf.load_weights(path)
    for got, want in zip(clf.extract(x), saved):
        np.testing.assert_array_equal(got, want)
    clf.reset_head(NUM_CLASSES + 1)
    with pytest.raises(UserError, match=f"weights do not fit {clf.arch}"):
        clf.load_weights(path)


def test_inference_equals_the_plain_network_in_eval_mode(clf):
    """What extract runs (torch: BatchNorm folded into the convolutions, channels_last) gives the
    plain network's eval-mode outputs to float32 rounding, and follows a training step."""
    if clf.engine not in EVAL_FORWARD:
        pytest.fail(f"engine {clf.engine}: add its eval-mode reference forward to EVAL_FORWARD")
    x = _images()
    logits, features = clf.extract(x)
    want_logits, want_features = EVAL_FORWARD[clf.engine](clf, x)
    _assert_close(logits, want_logits)
    _assert_close(features, want_features)

    clf.configure_optimizer("sgd", 0.01, 0.0, 0.9)
    loss, train_logits = clf.train_step(x, np.array([0, 1]))
    assert np.isfinite(loss) and train_logits.shape == (2, NUM_CLASSES)
    after, _ = clf.extract(x)
    assert not np.allclose(after, logits)  # the inference copy does not keep the old weights
    _assert_close(after, EVAL_FORWARD[clf.engine](clf, x)[0])


def test_set_inference_precision(clf):
    x = _images()
    fp32 = clf.extract(x)
    supported = engine_spec(clf.engine).precisions
    assert supported[0] == "fp32"
    for precision in supported[1:]:
        clf.set_inference_precision(precision)
        logits, features = clf.extract(x)
        assert logits.shape == fp32[0].shape and features.shape == fp32[1].shape
        _assert_close(features, fp32[1], rel=0.1)  # bf16 keeps ~3 significant digits
    for precision in [p for p in precision_names() if p not in supported] + ["fp8"]:
        with pytest.raises((ValueError, UserError), match="precision"):
            clf.set_inference_precision(precision)
    clf.set_inference_precision("fp32")
    for got, want in zip(clf.extract(x), fp32):
        _assert_close(got, want, rel=1e-6)


def test_set_training_precision(clf):
    """auto is fp32 on a CPU (the same step as fp32, to the bit); bf16 trains where the engine can, and an
    engine that cannot says so in one line naming train.precision."""
    x, y = _images(4), np.arange(4) % NUM_CLASSES
    weights = clf.get_weights()
    losses = {}
    for precision in ("fp32", "auto", "bf16"):
        clf.set_weights(weights)
        clf.configure_optimizer("sgd", 0.0)  # lr 0: the weights stay, only the step's arithmetic differs
        clf.set_seed(0)
        try:
            clf.set_training_precision(precision)
        except UserError as e:  # an engine that trains in fp32 only (mxnet) says so
            assert precision == "bf16" and "train.precision: bf16" in str(e)
            continue
        losses[precision] = clf.train_step(x, y)[0]
    assert losses["auto"] == losses["fp32"]
    if "bf16" in losses:
        assert np.isfinite(losses["bf16"]) and losses["bf16"] != losses["fp32"]
        assert abs(losses["bf16"] - losses["fp32"]) < 0.05 * abs(losses["fp32"])
    with pytest.raises((ValueError, UserError), match="precision"):
        clf.set_training_precision("fp8")
    clf.set_training_precision("auto")


# ----------------------------------------------------------------------------- the registry


def test_the_registry_imports_no_framework():
    code = ("import sys, fashionrec.engines.registry as r, fashionrec.cli, fashionrec.config; "
            "print(r.ENGINE_NAMES, r.ARCH_NAMES, [m for m in ('torch', 'mxnet') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    archs = ["'alexnet',", "'bninception',", *(f"'efficientnet_lite{v}'," for v in range(4)), "'efficientnet_lite4')"]
    assert out.split() == ["('torch',", "'mxnet')", "(" + archs[0], *archs[1:], "[]"]


def test_names_are_checked_against_the_registry():
    with pytest.raises(ValueError, match="engine must be one of torch, mxnet; got 'onnx'"):
        build_classifier("onnx", "alexnet", 3)
    with pytest.raises(ValueError, match=r"arch must be one of alexnet, bninception, efficientnet_lite0, .*"
                                         r"efficientnet_lite4 \(engine torch\); got 'resnet'"):
        build_classifier("torch", "resnet", 3)
    with pytest.raises(ValueError, match=r"arch must be one of alexnet, bninception \(engine mxnet\); got "
                                         r"'efficientnet_lite0'"):  # mxnet declines EfficientNet-Lite in one line
        build_classifier("mxnet", "efficientnet_lite0", 3)
    with pytest.raises(ValueError, match="mean and std must be 3 numbers"):
        build_classifier("torch", "alexnet", 3, mean=(0.5, 0.5))
    assert get_builder("torch", "alexnet").__name__ == "alexnet"


def test_an_architecture_is_declared_in_its_file():
    """The registry lists architectures from the @register_model lines of the files, before importing them: a
    builder registered any other way would be invisible to the config checks, so it is refused."""
    def resnet(num_classes=1000):
        raise AssertionError("never built")

    resnet.__module__ = "fashionrec.engines.torch.alexnet"
    with pytest.raises(RuntimeError, match=r"registers 'resnet', which its source does not declare"):
        register_model("resnet")(resnet)
    resnet.__module__ = "somewhere.else"
    with pytest.raises(RuntimeError, match="outside a registered engine"):
        register_model("else")(resnet)


def test_an_engine_that_is_not_installed_is_one_line_saying_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mxnet", None)  # what `import mxnet` meets without mxnet installed
    with pytest.raises(UserError, match=r"^engine mxnet needs mxnet, which is not installed: "
                                        r"`pip install fashionrec\[mxnet\]`$"):
        build_classifier("mxnet", "bninception", 3, device="cpu")
    assert "mxnet" in engine_names() and list_archs("mxnet") == ("alexnet", "bninception")
