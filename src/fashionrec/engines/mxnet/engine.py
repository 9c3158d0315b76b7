"""The MXNet (Gluon) engine: a :class:`~fashionrec.engines.base.Classifier` over the Gluon models.

Weights are Gluon ``.params`` files (MXNet's own NDArray format, not pickle). The optimiser
state is saved as NDArrays too: ``Trainer.save_states`` pickles, so it is not used.

mxnet-cu112 1.9.1 carries GPU kernels for compute capability 5.0-8.6 only; on a newer GPU the
engine fails before training with a one-line error naming ``engine: torch`` instead of
mxnet's kernel-image error in the middle of a run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from ...artifacts import atomic_path, read_json, write_json
from ...data.images import IMAGENET_MEAN, IMAGENET_STD, normalize_batch
from ...errors import UserError
from ..base import check_images
from ..registry import check_training_precision, engine_spec

MAX_COMPUTE_CAPABILITY = (8, 6)


def _mx():
    import mxnet as mx  # imported lazily: a torch-only user never pays for it

    return mx


def _gpu_compute_capability():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        major, minor = out[0].split(".")
        return int(major), int(minor)
    except (IndexError, ValueError):
        return None


def gpu_refusal(cc: tuple[int, int] | None) -> str | None:
    """The one line a user sees for a GPU of compute capability ``cc`` that mxnet-cu112 has no kernels
    for; None where mxnet can run on it (or the capability is unknown)."""
    if cc is None or cc <= MAX_COMPUTE_CAPABILITY:
        return None
    return (f"engine mxnet: this GPU has compute capability {cc[0]}.{cc[1]}, newer than mxnet-cu112 1.9.1 supports "
            f"(up to 8.6); use engine: torch (or convert the run with `fashionrec convert`)")


def resolve_context(device: str):
    mx = _mx()
    n_gpus = mx.context.num_gpus() if device in ("auto", "cuda") else 0
    if device == "cuda" and n_gpus == 0:
        raise UserError("device: 'cuda' requested but this mxnet build sees no GPU "
                        "(install mxnet-cu112 with the CUDA 11.2 libraries, or use engine: torch)")
    if n_gpus == 0:
        return mx.cpu(), "cpu"
    refusal = gpu_refusal(_gpu_compute_capability())
    if refusal:
        raise UserError(refusal)
    return mx.gpu(0), "cuda"


class MXNetClassifier:
    engine = "mxnet"

    def __init__(self, arch: str, num_classes: int, device: str = "auto", seed: int = 0,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, channels: str = "rgb", scale: float = 1.0, *,
                 build_network):
        """``build_network(num_classes=)`` makes the ``arch`` network (the factory looks it up)."""
        mx = _mx()
        self.arch = arch
        self.mean, self.std, self.channels, self.scale = tuple(mean), tuple(std), channels, float(scale)
        self.ctx, self.device = resolve_context(device)
        self.set_seed(seed)
        self.net = build_network(num_classes=num_classes)
        self._init_params()
        self.trainer = None
        self._optim = None
        self._loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()
        self._dense_loss = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
        self.label_smoothing = 0.0

    def _init_params(self):
        mx = _mx()
        self.net.initialize(ctx=self.ctx)
        self.net.hybridize(static_alloc=True, static_shape=False)
        self.net(mx.nd.zeros((1, 3, 64, 64), ctx=self.ctx))  # materialise deferred shapes

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    @property
    def num_features(self) -> int:
        return self.net.num_features

    def set_seed(self, seed: int) -> None:
        _mx().random.seed(int(seed) % (2**31))

    def configure_optimizer(self, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                            label_smoothing: float = 0.0):
        mx = _mx()
        self.label_smoothing = float(label_smoothing)
        if name == "sgd":
            params = {"learning_rate": lr, "momentum": momentum, "wd": weight_decay}
        elif name == "adam":
            params = {"learning_rate": lr, "wd": weight_decay}
        else:
            raise ValueError(f"optimizer must be sgd or adam; got {name!r}")
        self._optim = (name, params)
        self.trainer = mx.gluon.Trainer(self.net.collect_params(), name, params, kvstore=None)

    def set_lr(self, lr: float) -> None:
        self.trainer.set_learning_rate(lr)

    def _nd(self, x, dtype="float32"):
        return _mx().nd.array(np.asarray(x), ctx=self.ctx, dtype=dtype)

    def _images(self, x: np.ndarray):
        """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W) on the context (normalised on the host:
        mxnet's GPU use here is training on older cards, where the torch engine's device-side
        normalisation is what matters)."""
        return self._nd(normalize_batch(check_images(x), self.mean, self.std, self.channels, self.scale))

    def train_step(self, x: np.ndarray, y: np.ndarray, sync: bool = True) -> tuple[float, np.ndarray]:
        # host values whatever ``sync`` says: asnumpy() is where mxnet's queue is waited for anyway
        if self.trainer is None:
            raise RuntimeError("call configure_optimizer() before train_step()")
        mx = _mx()
        xb, yb = self._images(x), self._nd(y, "float32")
        if self.label_smoothing:  # dense targets (1 - e) one-hot + e / classes, as torch's label_smoothing
            e, k = self.label_smoothing, self.num_classes
            yb = mx.nd.one_hot(yb, k) * (1 - e) + e / k
        with mx.autograd.record(train_mode=True):
            logits = self.net(xb)
            loss = (self._dense_loss if self.label_smoothing else self._loss)(logits, yb)
        loss.backward()
        self.trainer.step(len(y))  # gradients are divided by the batch size: a mean loss
        return float(loss.mean().asscalar()), logits.asnumpy()

    def set_inference_precision(self, precision: str) -> None:
        if precision not in engine_spec(self.engine).precisions:
            raise UserError(f"precision: {precision} inference needs the torch engine; the mxnet engine runs fp32 "
                            "(convert the runs with `fashionrec convert`)")

    def set_training_precision(self, precision: str) -> None:
        check_training_precision(self.engine, precision)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.extract(x)[0]

    def extract(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fmap = self.net.forward_features(self._images(x))
        pooled = self.net.forward_head(fmap, pre_logits=True)
        logits = self.net.forward_head(fmap)
        return logits.asnumpy(), pooled.asnumpy()

    def reset_head(self, num_classes: int) -> None:
        self.net.reset_classifier(num_classes, ctx=self.ctx)
        self.trainer = None

    # ------------------------------------------------------------------ weights

    def get_weights(self) -> dict[str, np.ndarray]:
        from .weights import get_weights

        return get_weights(self.net)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        from .weights import set_weights

        try:
            set_weights(self.net, weights, ctx=self.ctx)
        except (KeyError, ValueError) as e:
            raise UserError(f"weights do not fit {self.arch}: {e}") from None

    def save_weights(self, path) -> None:
        mx = _mx()
        with atomic_path(path) as tmp:
            mx.nd.save(str(tmp), {k: mx.nd.array(v) for k, v in self.get_weights().items()})

    def load_weights(self, path) -> None:
        mx = _mx()
        try:
            loaded = mx.nd.load(str(path))  # MXNet's NDArray format: arrays only, nothing executed
        except mx.base.MXNetError as e:
            raise UserError(f"{path}: not an MXNet .params file ({str(e).splitlines()[0][:100]})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected named arrays")
        self.set_weights({k: v.asnumpy() for k, v in loaded.items()})

    def save_training_state(self, directory) -> None:
        mx = _mx()
        directory = Path(directory)
        self.save_weights(directory / "weights.params")
        if self.trainer is None or not self.trainer._updaters:
            return
        updater = self.trainer._updaters[0]
        arrays, layout = {}, {}
        for idx, state in updater.states.items():
            parts = state if isinstance(state, (tuple, list)) else (state,)
            layout[str(idx)] = len(parts) if isinstance(state, (tuple, list)) else -1
            for j, s in enumerate(parts):
                if s is not None:
                    arrays[f"{idx}.{j}"] = s.copyto(mx.cpu())
        with atomic_path(directory / "optimizer.params") as tmp:
            mx.nd.save(str(tmp), arrays)
        opt = self.trainer._optimizer
        write_json(directory / "optimizer.json", {
            "layout": layout, "num_update": opt.num_update,
            "index_update_count": {str(k): v for k, v in opt._index_update_count.items()},
        })

    def load_training_state(self, directory) -> None:
        mx = _mx()
        directory = Path(directory)
        self.load_weights(directory / "weights.params")
        opt_file = directory / "optimizer.params"
        if self.trainer is None or not opt_file.exists():
            return
        arrays = mx.nd.load(str(opt_file))
        meta = read_json(directory / "optimizer.json")
        self.trainer._init_optimizer(self.trainer._optimizer, self.trainer._optimizer.param_dict) \
            if not self.trainer._updaters else None
        updater = self.trainer._updaters[0]
        for idx, count in meta["layout"].items():
            if count == -1:
                state = arrays.get(f"{idx}.0")
                state = state.as_in_context(self.ctx) if state is not None else None
            else:
                state = tuple(arrays[f"{idx}.{j}"].as_in_context(self.ctx) for j in range(count))
            updater.states[int(idx)] = state
            updater.states_synced[int(idx)] = True
        opt = self.trainer._optimizer
        opt.num_update = meta["num_update"]
        opt._index_update_count = {int(k): v for k, v in meta["index_update_count"].items()}
        for k, v in opt._index_update_count.items():
            opt._all_index_update_counts[0][k] = v


__all__ = ["MXNetClassifier", "resolve_context"]
