"""The torch engine: a :class:`~fashionrec.engines.base.Classifier` over the torch models.

Weights and optimiser state are stored as safetensors (no pickle). Batches arrive as uint8
(N, H, W, 3) and are normalised on the device; seen as (N, 3, H, W) that layout is already
channels_last, and so is the network on every device: training in channels_last is faster on a
CPU too (BN-Inception train step, 2 cores: 32 px batch 256 601 against 459 img/s in bf16, 479
against 431 in fp32; 224 px batch 32 in fp32 13.1 against 10.2).
Inference (``predict``, ``extract``) runs a copy of the network with each BatchNorm folded into
its convolution, in channels_last: the same outputs to float32 rounding, about 1.8x faster for
BN-Inception on a CPU (``scripts/bench_recommend.py``); fp32 unless ``set_inference_precision``
asks for bf16.

``set_training_precision`` picks the arithmetic of training: ``auto`` (the default) is bf16
autocast on CUDA and fp32 on a CPU. On CUDA, training lets cuDNN time each convolution's algorithms
on a shape's first use (``cudnn.benchmark``: training batches have one shape); inference does
not, since its batches have any size (1 query, 16, a catalog's last batch) and each new shape
would be timed anew. With it on for inference too, an H200 gave recommend's batches of 16 88 ms
per image against 22 ms for single queries (``benchmarks/RESULTS.md``, recommend-cuda).

Data-parallel training (torchrun): :meth:`TorchClassifier.distribute` wraps the network in
DistributedDataParallel (optionally with synchronised BatchNorm, :mod:`.parallel`); ``self.model``
stays the plain network, so weights, their names and inference are what one process has.
"""

from __future__ import annotations

import copy
import gc
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ...artifacts import atomic_path, read_json, write_json
from ...data.images import IMAGENET_MEAN, IMAGENET_STD, normalization_terms
from ...distributed import bind_local_gpu, gather_rows
from ...errors import UserError
from ..base import check_images
from ..registry import COMPILE_MODES, check_training_precision, engine_spec
from .transfer import to_device
from .weights import get_weights, set_weights

PRECISIONS = engine_spec("torch").precisions


_BATCHNORMS = (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm)  # sync_bn's too (parallel.py)


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of ``model`` with every Conv2d -> BatchNorm2d pair fused into one conv."""
    model = copy.deepcopy(model).eval()
    for seq in model.modules():
        if isinstance(seq, torch.nn.Sequential):
            for i in range(len(seq) - 1):
                if isinstance(seq[i], torch.nn.Conv2d) and isinstance(seq[i + 1], _BATCHNORMS):
                    seq[i], seq[i + 1] = fuse_conv_bn_eval(seq[i], seq[i + 1]), torch.nn.Identity()
    return model


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' requested but torch sees no CUDA GPU (use device: auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
    if device == "cuda":
        bind_local_gpu()  # under torchrun, "cuda" is this rank's own GPU
    return device


class TorchClassifier:
    engine = "torch"

    def __init__(self, arch: str, num_classes: int, device: str = "auto", seed: int = 0,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, channels: str = "rgb", scale: float = 1.0, *,
                 build_network):
        """``build_network(num_classes=)`` makes the ``arch`` network (the factory looks it up)."""
        self.arch = arch
        self.device = resolve_device(device)
        self.mean, self.std, self.channels, self.scale = tuple(mean), tuple(std), channels, float(scale)
        # (x / 255 - mean) / std as (x - 255 mean) / (255 std): the same float32 arithmetic as
        # data.images.normalize_batch, so both engines see the same input to the last bit
        shift, divisor = normalization_terms(mean, std, scale)
        self._shift = torch.from_numpy(shift).view(1, 3, 1, 1).to(self.device)
        self._scale = torch.from_numpy(divisor).view(1, 3, 1, 1).to(self.device)
        torch.manual_seed(seed)
        self.model = build_network(num_classes=num_classes)
        self.cuda = self.device == "cuda"
        self.model = self.model.to(self.device, memory_format=torch.channels_last)
        self.optimizer = None
        self.label_smoothing = 0.0
        self.batchnorm_frozen = False
        self._inference_model = None  # built on first use, dropped whenever the weights change
        self.precision = "fp32"  # of inference
        self.set_training_precision("auto")
        self.world_size = 1  # ranks training together (distribute)
        self._ddp, self._ddp_trainable = None, None  # the DistributedDataParallel wrapper, made when needed
        self.compile_modes = {"training": "eager", "inference": "eager"}
        self._compiled: dict[str, tuple] = {}  # role -> (the module or function compiled, its compiled form)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def num_features(self) -> int:
        return self.model.num_features

    # ------------------------------------------------------------------ training

    def set_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def configure_optimizer(self, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                            label_smoothing: float = 0.0, backbone_lr_factor: float = 1.0):
        """``backbone_lr_factor`` < 1: two parameter groups, the backbone at ``lr`` x factor and the head (``fc``)
        at ``lr``, as fine-tuning a pretrained network does; 1: one group, as training from scratch."""
        self.label_smoothing = float(label_smoothing)
        if not 0 < backbone_lr_factor <= 1:
            raise ValueError(f"backbone_lr_factor must be in (0, 1]; got {backbone_lr_factor!r}")
        if backbone_lr_factor == 1:
            params = [{"params": list(self.model.parameters()), "lr_factor": 1.0}]
        else:
            head = {id(p) for p in self.model.fc.parameters()}
            params = [{"params": [p for p in self.model.parameters() if id(p) not in head],
                       "lr": lr * backbone_lr_factor, "lr_factor": float(backbone_lr_factor)},
                      {"params": list(self.model.fc.parameters()), "lr_factor": 1.0}]
        if name == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        elif name == "adam":
            self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        elif name == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        else:
            raise ValueError(f"optimizer must be sgd, adam or adamw; got {name!r}")

    def set_lr(self, lr: float) -> None:
        """The head's learning rate; each group keeps its share of it (the backbone's ``backbone_lr_factor``)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_factor", 1.0)

    def freeze_backbone(self, frozen: bool) -> None:
        """Train the head only (``frozen``) or the whole network: the backbone's weights get no gradient."""
        head = {id(p) for p in self.model.fc.parameters()}
        for p in self.model.parameters():
            if id(p) not in head:
                p.requires_grad_(not frozen)

    def train_mode(self) -> None:
        """The network in training mode for a step (BatchNorm in eval mode where frozen); the folded inference
        copy is dropped, since the step changes the weights."""
        self.model.train()
        if self.batchnorm_frozen:
            for m in self.model.modules():
                if isinstance(m, _BATCHNORMS):
                    m.eval()
        self._inference_model = None

    def freeze_batchnorm(self, frozen: bool) -> None:
        """Keep every BatchNorm's running statistics (eval-mode normalisation) while training; its scale and
        shift still learn. Small batches of a new domain then do not overwrite the pretrained statistics."""
        self.batchnorm_frozen = bool(frozen)

    def distribute(self, sync_bn: bool = False) -> None:
        """Train data-parallel over the ranks of the torch.distributed process group: DistributedDataParallel
        averages the gradients, ``sync_bn`` makes every BatchNorm normalise with the global batch's statistics.
        Call it on every rank after the weights and optimiser state are loaded: the wrapper starts every
        rank from rank 0's weights."""
        from .parallel import convert_sync_batchnorm

        self.world_size = torch.distributed.get_world_size()
        if sync_bn:
            self.model = convert_sync_batchnorm(self.model)
        self._ddp = self._inference_model = None

    def set_compile(self, training: str | None = None, inference: str | None = None) -> None:
        """``torch.compile`` the training step's network and/or extraction's forward pass, in one of
        :data:`~fashionrec.engines.registry.COMPILE_MODES` (``eager``, the default: not compiled). The first step
        (and each new batch shape) then compiles for seconds to minutes; the weights, their file and the optimiser
        are the eager network's."""
        for role, mode in (("training", training), ("inference", inference)):
            if mode is None:
                continue
            if mode not in COMPILE_MODES:
                raise ValueError(f"{role} compile mode must be one of {', '.join(COMPILE_MODES)}; got {mode!r}")
            self.compile_modes[role] = mode
            self._compiled.pop(role, None)

    def _compiled_form(self, role: str, target):
        """``target`` (a module or function) as ``role``'s compile mode has it: compiled once per target."""
        mode = self.compile_modes[role]
        if mode == "eager":
            return target
        done = self._compiled.get(role)
        if done is None or done[0] is not target:
            done = self._compiled[role] = (target, torch.compile(target, mode=mode))
        return done[1]

    def _training_module(self) -> torch.nn.Module:
        """The network to train through (compiled when asked): the DDP wrapper when distributed, made anew when the
        set of trainable parameters changed (a frozen backbone), since DDP reduces the ones it was made with."""
        return self._compiled_form("training", self._plain_training_module())

    def _plain_training_module(self) -> torch.nn.Module:
        if self.world_size == 1:
            return self.model
        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if self._ddp is None or trainable != self._ddp_trainable:
            from .parallel import data_parallel

            if self._ddp is not None:  # the old wrapper and its gradient hooks go before the new one's
                self._ddp = None
                gc.collect()
            self._ddp, self._ddp_trainable = data_parallel(self.model), trainable
        return self._ddp

    def _global_batch(self, outputs: torch.Tensor, labels: torch.Tensor):
        """(outputs, labels) of the whole global batch, every rank's rows in rank order (the batch one process
        would see); gradients reach each rank's own rows. The identity in one process."""
        if self.world_size == 1:
            return outputs, labels
        return gather_rows(outputs), gather_rows(labels)

    def _images(self, x) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W) on the device, channels_last in memory. ``x`` is
        a numpy batch, or a uint8 tensor (already on the device when it was augmented there)."""
        if isinstance(x, torch.Tensor):
            if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(f"images must be a uint8 (N, H, W, 3) batch; got {x.dtype} {tuple(x.shape)}")
            t = to_device(x.contiguous(), self.device)
        else:
            t = to_device(torch.from_numpy(check_images(x)), self.device)
        if self.channels == "bgr":  # Caffe-lineage weights: reversed on the uint8 bytes, still NHWC
            t = t.flip(-1)
        t = t.permute(0, 3, 1, 2).float()  # a channels_last view of the NHWC bytes: no copy
        return t.sub_(self._shift).div_(self._scale)

    def _autocast(self, training: bool = True):
        enabled = (self.training_precision if training else self.precision) == "bf16"
        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=enabled)

    def set_training_precision(self, precision: str) -> None:
        check_training_precision(self.engine, precision)
        self.training_precision = ("bf16" if self.cuda else "fp32") if precision == "auto" else precision

    def set_inference_precision(self, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        self.precision = precision

    def train_step(self, x: np.ndarray, y: np.ndarray, global_batch: int | None = None,
                   sync: bool = True) -> tuple[float, np.ndarray]:
        """One step; data-parallel, ``global_batch`` is the number of images of the step over all ranks. With
        ``sync=False`` the (loss, logits) are the device's tensors, for :class:`~fashionrec.training.tally.EpochTally`:
        reading them here would make the host wait for every step."""
        if self.optimizer is None:
            raise RuntimeError("call configure_optimizer() before train_step()")
        self.train_mode()
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # one batch shape: autotuning each conv once pays
        xt, yt = self._images(x), to_device(torch.from_numpy(np.asarray(y, np.int64)), self.device)
        with self._autocast():
            logits = self._training_module()(xt)
            loss = F.cross_entropy(logits.float(), yt, label_smoothing=self.label_smoothing)
        # DDP averages the ranks' gradients: weighting each rank's mean by its share of the global batch
        # makes that average the gradient of the global batch's mean loss, uneven shares included
        weight = 1.0 if global_batch is None else len(yt) * self.world_size / global_batch
        self.optimizer.zero_grad(set_to_none=True)
        (loss * weight if weight != 1.0 else loss).backward()
        self.optimizer.step()
        if not sync:
            return loss.detach(), logits.detach()
        return float(loss.detach()), logits.detach().float().cpu().numpy()

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.extract(x)[0]

    @torch.inference_mode()
    def extract(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._inference_model is None:
            model = fold_batchnorm(self.model).to(memory_format=torch.channels_last)

            def forward(images):
                fmap = model.forward_features(images)
                return model.forward_head(fmap), model.forward_head(fmap, pre_logits=True)

            self._inference_model, self._inference_forward = model, forward
        if self.cuda:
            torch.backends.cudnn.benchmark = False  # any batch size: no autotuning per new shape
        with self._autocast(training=False):
            logits, pooled = self._compiled_form("inference", self._inference_forward)(self._images(x))
        return logits.float().cpu().numpy(), pooled.float().cpu().numpy()

    def reset_head(self, num_classes: int) -> None:
        self.model.reset_classifier(num_classes)
        self.model.to(self.device)
        self.optimizer = None
        self._inference_model = self._ddp = None

    # ------------------------------------------------------------------ weights

    def get_weights(self) -> dict[str, np.ndarray]:
        return get_weights(self.model)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._inference_model = None
        try:
            set_weights(self.model, weights)
        except ValueError as e:
            raise UserError(f"weights do not fit {self.arch}: {e}") from None

    def save_weights(self, path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp))

    def load_weights(self, path) -> None:
        try:
            state = load_file(str(path))  # safetensors: plain tensors, nothing executed
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad weights file
            raise UserError(f"{path}: not a safetensors weights file ({str(e).splitlines()[0][:100]})") from None
        self.set_weights({k: v.numpy() for k, v in state.items()})

    def save_training_state(self, directory) -> None:
        directory = Path(directory)
        self.save_weights(directory / "weights.safetensors")
        if self.optimizer is None:
            return
        sd = self.optimizer.state_dict()
        tensors = {}
        for pid, st in sd["state"].items():
            for key, val in st.items():
                val = val if torch.is_tensor(val) else torch.tensor(val)
                tensors[f"{pid}.{key}"] = val.detach().cpu().contiguous()
        with atomic_path(directory / "optimizer.safetensors") as tmp:
            save_file(tensors, str(tmp))
        write_json(directory / "optimizer.json", {"param_groups": sd["param_groups"]})

    def load_training_state(self, directory) -> None:
        directory = Path(directory)
        self.load_weights(directory / "weights.safetensors")
        opt_file = directory / "optimizer.safetensors"
        if self.optimizer is None or not opt_file.exists():
            return
        tensors = load_file(str(opt_file))
        state: dict[int, dict] = {}
        for name, val in tensors.items():
            pid, key = name.split(".", 1)
            state.setdefault(int(pid), {})[key] = val.to(self.device) if key != "step" else val
        groups = read_json(directory / "optimizer.json")["param_groups"]
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})


__all__ = ["TorchClassifier", "resolve_device"]
