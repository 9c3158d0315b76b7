"""The Gluon networks against the torch ones: converted weights give the same outputs.

Each torch model gets random weights and BatchNorm running statistics taken from a random batch
(then jittered, with random scale and shift), so eval-mode BatchNorm is not the identity and a
misplaced statistic or a swapped gamma/beta would show.
"""

import copy
import importlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fashionrec.engines.convert import convert_weights, gluon_to_torch, torch_to_gluon
from fashionrec.engines.factory import get_builder
from fashionrec.engines.registry import list_archs

mx = pytest.importorskip("mxnet")  # an optional extra: the environment without it skips this file
NUM_CLASSES = 7


def _engine_models(engine: str) -> SimpleNamespace:
    """An engine's builders by architecture name, and its get_weights/set_weights."""
    weights = importlib.import_module(f"fashionrec.engines.{engine}.weights")
    return SimpleNamespace(get_weights=weights.get_weights, set_weights=weights.set_weights,
                           **{arch: get_builder(engine, arch) for arch in list_archs(engine)})


gluon_models, torch_models = _engine_models("mxnet"), _engine_models("torch")


def _batch(size, n=2, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def _randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BatchNorm scale and shift; running statistics from a random batch, then jittered."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.empty(bn.num_features).uniform_(0.5, 1.5, generator=gen))
            bn.bias.copy_(torch.empty(bn.num_features).uniform_(-0.3, 0.3, generator=gen))
            bn.momentum = 1.0  # the running statistics become the next batch's
        model.train()
        model(torch.from_numpy(_batch(64, n=16, seed=seed + 100)))
        for bn in bns:
            bn.momentum = 0.1
            bn.running_mean.add_(0.1 * bn.running_var.sqrt() * torch.randn(bn.num_features, generator=gen))
            bn.running_var.mul_(torch.empty(bn.num_features).uniform_(0.8, 1.25, generator=gen))
    model.eval()


def _gluon(arch, weights=None, dtype="float32", **kwargs):
    """A hybridized Gluon network: Gluon's random init, or ``weights`` (then nothing is drawn)."""
    net = getattr(gluon_models, arch)(num_classes=NUM_CLASSES, **kwargs)
    net.cast(dtype)
    if weights is None:
        net.initialize()
    else:
        gluon_models.set_weights(net, weights)
    net.hybridize()
    return net


@pytest.fixture(scope="module", params=["alexnet", "bninception"])
def pair(request):
    """(arch, torch model, Gluon model with the torch model's weights), both in eval mode."""
    arch = request.param
    torch.manual_seed(0)
    tm = getattr(torch_models, arch)(num_classes=NUM_CLASSES)
    _randomise_batchnorm(tm)
    return arch, tm, _gluon(arch, torch_to_gluon(arch, torch_models.get_weights(tm)))


def _torch_outputs(model, x):
    with torch.no_grad():
        xt = torch.from_numpy(x)
        return model(xt).numpy(), model.pooled_features(xt).numpy()


def _gluon_outputs(net, x):
    xn = mx.nd.array(x, dtype=x.dtype)
    return net(xn).asnumpy(), net.pooled_features(xn).asnumpy()


def _max_diff(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    return float(np.abs(a - b).max())


@pytest.fixture(scope="module")
def pair64(pair):
    """The same pair in float64."""
    arch, tm, _ = pair
    tm = copy.deepcopy(tm).double()
    return arch, tm, _gluon(arch, torch_to_gluon(arch, torch_models.get_weights(tm)), dtype="float64")


@pytest.mark.parametrize("size", [64, 97, 224])
def test_eval_outputs_match_exactly_in_float64(pair64, size):
    """In float64 rounding is out of the way: any difference in the networks would show."""
    # 97 px: odd map sizes (BN-Inception's same-padded stride-2 pools; AlexNet's adaptive pool
    # spreads a 2x2 map over 6x6 overlapping bins)
    arch, tm, gm = pair64
    x = _batch(size).astype(np.float64)
    (t_logits, t_feat), (g_logits, g_feat) = _torch_outputs(tm, x), _gluon_outputs(gm, x)
    assert t_feat.shape == (2, tm.num_features) and gm.num_features == tm.num_features
    assert np.abs(t_feat).max() > 0.01  # a real signal, not a dead network
    assert _max_diff(t_logits, g_logits) < 1e-9
    assert _max_diff(t_feat, g_feat) < 1e-9


@pytest.mark.parametrize("size", [64, 224])
def test_eval_outputs_match_in_float32(pair, size):
    """What the engines run: equal up to float32 rounding over ~70 layers (1e-4 of the output scale)."""
    arch, tm, gm = pair
    x = _batch(size)
    for t, g in zip(_torch_outputs(tm, x), _gluon_outputs(gm, x)):
        assert _max_diff(t, g) < 1e-4 * max(1.0, float(np.abs(t).max()))


def test_eval_outputs_match_after_gluon_to_torch(pair):
    arch, _, _ = pair
    mx.random.seed(3)
    gm = _gluon(arch)  # Gluon's own random init this time
    tm = getattr(torch_models, arch)(num_classes=NUM_CLASSES).eval()
    torch_models.set_weights(tm, gluon_to_torch(arch, gluon_models.get_weights(gm)))
    x = _batch(64, seed=5)
    for t, g in zip(_torch_outputs(tm, x), _gluon_outputs(gm, x)):
        assert _max_diff(t, g) < 1e-4 * max(1.0, float(np.abs(t).max()))


def test_round_trips_are_exact(pair):
    arch, tm, gm = pair
    state = torch_models.get_weights(tm)
    back = gluon_to_torch(arch, torch_to_gluon(arch, state))
    assert back.keys() == state.keys()
    assert all(np.array_equal(back[k], state[k]) for k in state)
    # and through the Gluon network itself
    from_gluon = gluon_to_torch(arch, gluon_models.get_weights(gm))
    assert from_gluon.keys() == state.keys()
    assert all(np.array_equal(from_gluon[k], state[k]) for k in state)
    assert convert_weights(arch, state, "torch", "mxnet").keys() == gluon_models.get_weights(gm).keys()


def test_gluon_head_split(pair):
    arch, _, gm = pair
    x = mx.nd.array(_batch(64))
    fmap = gm.forward_features(x)
    pooled = gm.forward_head(fmap, pre_logits=True)
    assert pooled.shape == (2, gm.num_features)
    assert _max_diff(pooled.asnumpy(), gm.pooled_features(x).asnumpy()) == 0
    assert _max_diff(gm.fc(pooled).asnumpy(), gm(x).asnumpy()) < 1e-6


def test_gluon_reset_classifier_keeps_features(pair):
    arch, _, gm = pair
    gm = _gluon(arch, gluon_models.get_weights(gm))  # a copy: the pair stays as it is
    x = mx.nd.array(_batch(64))
    assert gm(x).shape == (2, NUM_CLASSES)
    before = gm.pooled_features(x).asnumpy()
    gm.reset_classifier(4)
    assert gm(x).shape == (2, 4) and gm.num_classes == 4  # the hybridized graph was rebuilt
    assert _max_diff(gm.pooled_features(x).asnumpy(), before) == 0
    assert gluon_models.get_weights(gm)["fc.weight"].shape == (4, gm.num_features)


def _n_trainable_gluon(net):
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values() if p.grad_req != "null")


def _n_trainable_torch(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch,kwargs,count", [
    ("bninception", {}, 11_295_240),                    # conv biases, as the Caffe model
    ("bninception", {"conv_bias": False}, 11_285_224),
    ("alexnet", {}, 61_100_840),                        # torchvision's AlexNet
])
def test_trainable_parameter_counts_are_pinned_in_both_engines(arch, kwargs, count):
    gm = getattr(gluon_models, arch)(num_classes=1000, **kwargs)  # shapes are known without initialising
    assert _n_trainable_gluon(gm) == count
    assert _n_trainable_torch(getattr(torch_models, arch)(num_classes=1000, **kwargs)) == count


def test_both_engines_build_bninception_from_the_same_table():
    gluon_module = importlib.import_module("fashionrec.engines.mxnet.bninception")
    torch_module = importlib.import_module("fashionrec.engines.torch.bninception")
    assert gluon_module.INCEPTION == torch_module.INCEPTION


def test_gluon_names_do_not_depend_on_gluon_prefix_counters():
    first, second = _gluon("bninception"), _gluon("bninception")
    assert first.collect_params().keys() != second.collect_params().keys()  # Gluon's own names differ ...
    assert gluon_models.get_weights(first).keys() == gluon_models.get_weights(second).keys()  # ... ours do not


def test_conversion_reports_every_misfit():
    torch.manual_seed(0)
    state = torch_models.get_weights(torch_models.bninception(num_classes=NUM_CLASSES))
    bad = dict(state)
    del bad["blocks.4a.branch1.0.weight"]
    bad["blocks.4a.extra.weight"] = np.zeros(3, np.float32)
    bad["stem.0.1.running_var"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError) as err:
        torch_to_gluon("bninception", bad)
    message = str(err.value)
    assert "missing: blocks.4a.branch1.0.weight" in message
    assert "unexpected: blocks.4a.extra.weight" in message
    assert "wrong shape: stem.0.1.running_var (5,) (expected (64,))" in message

    params = torch_to_gluon("bninception", state)
    params["stem.0.1.weight"] = params.pop("stem.0.1.gamma")  # a torch name in Gluon weights
    with pytest.raises(ValueError, match="missing: stem.0.1.gamma.*unexpected: stem.0.1.weight"):
        gluon_to_torch("bninception", params)
    with pytest.raises(ValueError, match="arch must be one of"):
        torch_to_gluon("resnet", state)
    with pytest.raises(ValueError, match="fc.weight"):
        torch_to_gluon("alexnet", {"features.0.weight": np.zeros((64, 3, 11, 11), np.float32)})
    with pytest.raises(ValueError, match=r"missing: blocks.3a.branch1.0.bias.*\(\+\d+ more\)"):
        gluon_models.set_weights(_gluon("bninception"),  # conv_bias=False weights, conv_bias=True network
                                 torch_to_gluon("bninception", torch_models.get_weights(
                                     torch_models.bninception(num_classes=NUM_CLASSES, conv_bias=False))))


def test_training_step_gradients_match():
    """Train mode (batch statistics) gives the same loss and gradients in both engines, hybridized."""
    arch = "bninception"
    torch.manual_seed(0)
    tm = torch_models.bninception(num_classes=NUM_CLASSES)
    _randomise_batchnorm(tm)
    gm = _gluon(arch, torch_to_gluon(arch, torch_models.get_weights(tm)))
    x, y = _batch(64, n=4, seed=7), np.array([0, 3, 6, 3])

    tm.train()
    t_loss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y))
    t_loss.backward()
    t_grads = {k: p.grad.numpy() for k, p in tm.named_parameters()}

    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    with mx.autograd.record(train_mode=True):
        g_loss = loss_fn(gm(mx.nd.array(x)), mx.nd.array(y)).mean()
    g_loss.backward()
    g_grads = gluon_to_torch(arch, {k: p.grad().asnumpy() for k, p in gm._collect_params_with_prefix().items()
                                    if p.grad_req != "null"} | _gluon_buffers(gm))
    assert abs(float(t_loss.detach()) - float(g_loss.asscalar())) < 1e-5
    for name in ("stem.0.0.weight", "stem.0.1.weight", "blocks.3c.branch3.1.0.weight", "blocks.5b.pool_proj.1.bias",
                 "fc.weight"):
        scale = np.abs(t_grads[name]).max()
        assert scale > 0 and _max_diff(t_grads[name], g_grads[name]) < 1e-3 * scale, name
    # the running means moved the same way (Gluon updates them in backward; its running variance
    # takes the biased batch variance where torch takes the unbiased one, so that is not compared)
    t_state = torch_models.get_weights(tm)
    for name in ("stem.0.1.running_mean", "blocks.5b.branch1.1.running_mean"):
        assert _max_diff(t_state[name], g_grads[name]) < 1e-4 * max(1.0, float(np.abs(t_state[name]).max())), name


def _gluon_buffers(net):
    """The running statistics (no gradients), so that the dict passes the conversion check."""
    return {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items() if p.grad_req == "null"}


def test_convert_weights_checks_engines_and_keeps_same_engine_weights():
    torch.manual_seed(0)
    state = torch_models.get_weights(torch_models.bninception(num_classes=NUM_CLASSES, conv_bias=False))
    same = convert_weights("bninception", state, "torch", "torch")
    assert same.keys() == state.keys() and all(np.array_equal(same[k], state[k]) for k in state)
    with pytest.raises(ValueError, match="target must be one of torch, mxnet"):
        convert_weights("bninception", state, "torch", "onnx")
