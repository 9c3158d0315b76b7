"""The torch networks: parameter counts, feature sizes, the head split."""

import pytest
import torch

from fashionrec.engines.torch.alexnet import alexnet
from fashionrec.engines.torch.bninception import bninception


def n_trainable(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def test_bninception_parameter_count_is_pinned():
    assert n_trainable(bninception(1000)) == 11_295_240  # conv biases, as the Caffe model
    assert n_trainable(bninception(1000, conv_bias=False)) == 11_285_224


@pytest.mark.parametrize("size", [32, 64, 80, 97, 128, 224])
def test_bninception_runs_at_any_size_and_gives_1024(size):
    m = bninception(9).eval()
    with torch.no_grad():
        f = m.pooled_features(torch.randn(2, 3, size, size))
    assert f.shape == (2, 1024)


@pytest.mark.parametrize("build,dim", [(alexnet, 4096), (bninception, 1024)])
def test_head_split(build, dim):
    torch.manual_seed(0)
    m = build(num_classes=7).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        fmap = m.forward_features(x)
        pooled = m.forward_head(fmap, pre_logits=True)
        assert pooled.shape == (3, dim) and m.num_features == dim
        torch.testing.assert_close(pooled, m.pooled_features(x))
        torch.testing.assert_close(m.fc(pooled), m(x))
        assert m(x).shape == (3, 7)
        m.reset_classifier(4)
        assert m(x).shape == (3, 4) and m.num_classes == 4
        torch.testing.assert_close(m.pooled_features(x), pooled)  # the features survive a new head


def test_alexnet_matches_torchvision_layout():
    m = alexnet(1000)
    convs = [l for l in m.features if isinstance(l, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == \
        [(64, 11, 4), (192, 5, 1), (384, 3, 1), (256, 3, 1), (256, 3, 1)]
    assert n_trainable(m) == 61_100_840  # torchvision's AlexNet


@pytest.mark.parametrize("build", [alexnet, bninception])
def test_builders_validate_their_arguments(build):
    with pytest.raises(ValueError, match="num_classes"):
        build(num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        build(num_classes=2.0)
    with pytest.raises(ValueError, match="dropout"):
        build(num_classes=3, dropout=1.0)


def test_weights_round_trip_through_numpy_and_refuse_misfits():
    from fashionrec.engines.torch.weights import get_weights, set_weights

    torch.manual_seed(0)
    src, dst = bninception(5), bninception(5)
    src.blocks[0].branch1[1].running_mean.fill_(0.25)  # buffers travel too
    weights = get_weights(src)
    assert not any(k.endswith("num_batches_tracked") for k in weights)
    set_weights(dst, weights)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    with pytest.raises(ValueError, match=r"wrong shape: .*fc.weight \(5, 1024\) \(expected \(3, 1024\)\)"):
        set_weights(bninception(3), weights)
    del weights["stem.0.0.bias"]
    with pytest.raises(ValueError, match="missing: stem.0.0.bias"):
        set_weights(dst, weights)


@pytest.mark.parametrize("arch", ["bninception", "alexnet"])
def test_engine_inference_matches_the_unfused_network_and_follows_training(arch):
    """extract() runs a BatchNorm-folded channels_last copy: same outputs, refreshed after a step."""
    import numpy as np

    from fashionrec.data.images import normalize_batch
    from fashionrec.engines.factory import build_classifier

    clf = build_classifier("torch", arch, 5, device="cpu", seed=0)
    clf.configure_optimizer("adam", 1e-3, 0.0, 0.9)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 3])
    for _ in range(2):  # move BatchNorm statistics and weights off their initial values
        clf.train_step(x, y)

    def reference():
        clf.model.eval()
        with torch.no_grad():
            fmap = clf.model.forward_features(torch.from_numpy(normalize_batch(x)))
            return clf.model.forward_head(fmap).numpy(), clf.model.forward_head(fmap, pre_logits=True).numpy()

    for _ in range(2):
        logits, pooled = clf.extract(x)
        want_logits, want_pooled = reference()
        for got, want in ((logits, want_logits), (pooled, want_pooled)):
            np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))
        clf.train_step(x, y)  # the folded copy must not keep the old weights
    assert not np.allclose(clf.extract(x)[1], pooled)


def test_engines_normalise_uint8_images_on_their_device_as_normalize_batch_does():
    """The torch engine's on-device normalisation gives normalize_batch's floats to the last bit,
    its (N, 3, H, W) view is channels_last without a copy, and a float batch is refused."""
    import numpy as np

    from fashionrec.data.images import normalize_batch
    from fashionrec.engines.factory import build_classifier

    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    clf = build_classifier("torch", "alexnet", 3, device="cpu", mean=mean, std=std)
    x = np.random.default_rng(0).integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
    t = clf._images(x)
    assert t.shape == (2, 3, 20, 24) and t.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(t.numpy(), normalize_batch(x, mean, std))
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\).*float32 \(2, 3, 20, 24\)"):
        clf.extract(normalize_batch(x))
    with pytest.raises(ValueError, match="mean and std must be 3 numbers"):
        build_classifier("torch", "alexnet", 3, device="cpu", std=(0.2, 0.0, 0.3))


def test_a_run_normalises_as_its_model_json_says(tmp_path):
    import json

    import numpy as np

    from fashionrec.engines.factory import build_classifier
    from fashionrec.errors import UserError
    from fashionrec.runs import load_classifier, write_model_json

    clf = build_classifier("torch", "alexnet", 2, device="cpu")
    clf.save_weights(tmp_path / "weights.safetensors")
    info = {"engine": "torch", "arch": "alexnet", "classes": ["a", "b"], "input_size": 32, "task": "category",
            "weights": "weights.safetensors", "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    write_model_json(tmp_path, info)
    loaded, _ = load_classifier(tmp_path, device="cpu")
    assert loaded.mean == (0.5, 0.5, 0.5) and loaded.std == (0.5, 0.5, 0.5)
    x = np.full((1, 32, 32, 3), 255, np.uint8)
    assert float(loaded._images(x).min()) == pytest.approx(1.0)  # (1 - 0.5) / 0.5
    info["normalization"]["std"] = "wide"
    (tmp_path / "model.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match=r"model.json: normalization: mean and std must be 3 numbers"):
        load_classifier(tmp_path, device="cpu")
