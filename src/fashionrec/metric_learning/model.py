"""The embedding network and its trainer (torch engine).

:class:`EmbeddingNet`: a registered backbone's ``forward_features`` (its feature map; the
classifier head is dropped), global average + global max pooling added together (as Kim et
al.'s Proxy-Anchor code does), a linear layer to ``embedding_dim`` and L2 normalisation.

:class:`Embedder` is a :class:`~fashionrec.engines.torch.engine.TorchClassifier` whose network
is an EmbeddingNet, so saving and loading weights and training state, the folded-BatchNorm
inference copy, bf16 and the device handling are the classifier's own. ``extract`` returns
(empty logits, embeddings); it adds the losses and miners of pytorch-metric-learning, AdamW
with three parameter groups (backbone, embedding, the loss's proxies at their own lr), the
frozen-backbone warm-up and gradient clipping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..artifacts import atomic_path
from ..data.images import IMAGENET_MEAN, IMAGENET_STD, normalization_kwargs
from ..engines.factory import get_builder
from ..engines.torch.engine import TorchClassifier
from ..engines.torch.transfer import to_device
from ..errors import ConfigError, UserError
from ..runs import EMBEDDING_KIND as KIND

# Children of the registered backbones that only the classification head uses; forward_features
# never calls them, so they are dropped (no unused weights in the embedding run's file).
HEAD_MODULES = ("fc", "pre_logits", "avgpool", "global_pool", "drop")


class EmbeddingNet(nn.Module):
    def __init__(self, backbone: nn.Module, embedding_dim: int, input_size: int):
        super().__init__()
        for name in HEAD_MODULES:
            if isinstance(getattr(backbone, name, None), nn.Module):
                setattr(backbone, name, nn.Identity())
        self.backbone = backbone
        was_training = backbone.training
        backbone.eval()
        try:
            with torch.no_grad():  # the feature map's channels, from one small forward pass
                channels = backbone.forward_features(torch.zeros(1, 3, input_size, input_size)).shape[1]
        except RuntimeError:
            raise ConfigError(f"model.input_size: {input_size} px is too small for "
                              f"{type(backbone).__name__}") from None
        backbone.train(was_training)
        self.feature_channels = int(channels)
        self.embedding = nn.Linear(self.feature_channels, embedding_dim)
        nn.init.kaiming_normal_(self.embedding.weight, mode="fan_out")
        nn.init.zeros_(self.embedding.bias)
        self.num_features = embedding_dim
        self.num_classes = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, fmap: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The L2-normalised embedding (``pre_logits``), else empty logits (an embedding has no classes)."""
        pooled = torch.flatten(F.adaptive_avg_pool2d(fmap, 1) + F.adaptive_max_pool2d(fmap, 1), 1)
        emb = F.normalize(self.embedding(pooled).float(), dim=1)
        return emb if pre_logits else emb.new_zeros((emb.shape[0], 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), pre_logits=True)


def build_loss(cfg, num_items: int, embedding_dim: int):
    """(loss module, miner or None) of the config's loss (a :class:`~fashionrec.metric_learning.losses.MetricLoss`)."""
    return cfg.build(num_items, embedding_dim)


class Embedder(TorchClassifier):
    """An :class:`EmbeddingNet` behind the torch classifier's interface, plus metric training."""

    kind = KIND

    def __init__(self, arch: str, embedding_dim: int = 512, input_size: int = 224, device: str = "auto",
                 seed: int = 0, mean=IMAGENET_MEAN, std=IMAGENET_STD, channels: str = "rgb", scale: float = 1.0):
        # channels/scale: an imported Caffe-lineage backbone wants BGR in 0-255 (model.json records it)
        super().__init__(arch, 1, device=device, seed=seed, mean=mean, std=std, channels=channels, scale=scale,
                         build_network=get_builder(self.engine, arch))  # self.model: the backbone
        self.model = EmbeddingNet(self.model.cpu(), embedding_dim, input_size).to(
            self.device, memory_format=torch.channels_last)
        self.loss_fn = self.miner = None
        self.clip_grad_norm = None
        self._base_lrs: list[float] = []

    # ------------------------------------------------------------------ weights

    def load_backbone(self, weights: dict[str, np.ndarray], source: str) -> list[str]:
        """Load a classifier's weights (its head ignored) or another embedding's into the network.

        An embedding run's ``embedding.*`` weights are taken when their shapes fit. Returns the
        names loaded. Missing backbone weights are a UserError naming ``source``.
        """
        own = self.model.state_dict()
        if any(k.startswith("backbone.") for k in weights):
            renamed = dict(weights)
        else:
            renamed = {f"backbone.{k}": v for k, v in weights.items()}
        take = {k: v for k, v in renamed.items() if k in own and tuple(own[k].shape) == tuple(np.shape(v))
                and not k.endswith("num_batches_tracked")}  # a step counter, not a weight
        missing = sorted(k for k in own if k.startswith("backbone.") and k not in take
                         and not k.endswith("num_batches_tracked"))
        if missing:
            raise UserError(f"{source}: weights do not fit the {self.arch} backbone (missing or misshapen: "
                            f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''})")
        with torch.no_grad():
            for k, v in take.items():
                own[k].copy_(torch.as_tensor(np.asarray(v)))
        self._inference_model = None
        return sorted(take)

    # ------------------------------------------------------------------ training

    def configure_training(self, loss_cfg, train_cfg, num_items: int) -> None:
        """Loss, miner and AdamW: the embedding at ``train.lr``, the backbone at ``backbone_lr_factor`` x that (a
        pretrained one learns slower than the new layer), proxies at ``proxy_lr_factor`` x."""
        self.loss_fn, self.miner = build_loss(loss_cfg, num_items, self.model.num_features)
        self.loss_fn = self.loss_fn.to(self.device)
        self.clip_grad_norm = train_cfg.clip_grad_norm
        self.freeze_batchnorm(train_cfg.freeze_batchnorm)
        lr = train_cfg.lr
        groups = [{"params": list(self.model.backbone.parameters()), "lr": lr * train_cfg.backbone_lr_factor},
                  {"params": list(self.model.embedding.parameters()), "lr": lr}]
        loss_params = list(self.loss_fn.parameters())
        if loss_params:  # Proxy-Anchor's proxies
            groups.append({"params": loss_params, "lr": lr * loss_cfg.parameter_lr_factor})
        self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=train_cfg.weight_decay)
        self._base_lrs = [g["lr"] for g in groups]

    def configure_optimizer(self, name, lr, weight_decay=0.0, momentum=0.9):
        raise NotImplementedError("an Embedder trains with configure_training()")

    def set_lr_factor(self, factor: float) -> None:
        """Every group's lr = its base lr x ``factor`` (the schedule is a function of the epoch)."""
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * factor

    def lrs(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def freeze_backbone(self, frozen: bool) -> None:
        for p in self.model.backbone.parameters():
            p.requires_grad_(not frozen)

    def train_step(self, x: np.ndarray, y: np.ndarray, sync: bool = True) -> tuple[float, np.ndarray]:
        """One step on a class-balanced batch; returns (loss, embeddings), as the device's tensors with
        ``sync=False`` (see the classifier's)."""
        if self.optimizer is None:
            raise RuntimeError("call configure_training() before train_step()")
        self.train_mode()
        xt, yt = self._images(x), to_device(torch.from_numpy(np.asarray(y, np.int64)), self.device)
        with self._autocast():
            emb = self._training_module()(xt)  # the DDP wrapper when data-parallel
        emb = emb.float()
        emb, yt = self._global_batch(emb, yt)  # data-parallel: every rank scores the whole global batch
        pairs = self.miner(emb, yt) if self.miner is not None else None
        loss = self.loss_fn(emb, yt, pairs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world_size > 1:  # the proxies are the loss's, not DDP's: keep every rank's the same
            from ..engines.torch.parallel import average_gradients

            average_gradients(self.loss_fn.parameters())
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        if not sync:
            return loss.detach(), emb.detach()
        return float(loss.detach()), emb.detach().cpu().numpy()

    def reset_head(self, num_classes: int) -> None:
        raise NotImplementedError("an embedding has no classification head")

    # ------------------------------------------------------------------ training state

    def save_training_state(self, directory) -> None:
        super().save_training_state(directory)  # network weights and the optimiser (proxies' moments too)
        if self.loss_fn is not None and list(self.loss_fn.parameters()):
            state = {k: v.detach().cpu().contiguous() for k, v in self.loss_fn.state_dict().items()}
            with atomic_path(Path(directory) / "loss.safetensors") as tmp:
                save_file(state, str(tmp))

    def load_training_state(self, directory) -> None:
        super().load_training_state(directory)
        path = Path(directory) / "loss.safetensors"
        if self.loss_fn is not None and path.is_file():
            self.loss_fn.load_state_dict({k: v.to(self.device) for k, v in load_file(str(path)).items()})


def load_embedder(run_dir, info: dict, device: str = "auto") -> Embedder:
    """A metric run's network with its best weights (``info`` is its model.json)."""
    run_dir = Path(run_dir)
    weights = run_dir / info["weights"]
    if not weights.is_file():
        raise UserError(f"{run_dir}: weights file {info['weights']} is missing (the run has no finished epoch?)")
    model = Embedder(info["arch"], int(info["embedding_dim"]), int(info["input_size"]), device=device,
                     **normalization_kwargs(info.get("normalization")))
    model.load_weights(weights)
    return model
