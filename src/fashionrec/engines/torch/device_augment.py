"""The fine-tune augmentation of :mod:`fashionrec.data.augment` as batched tensor ops on the model's device.

The host path augments each image in the loader's workers with PIL; here a whole uint8 (N, H, W, 3) batch, already
resized to the input size (the loader's batches without ``augment=``), is augmented where the network runs, so
the host only decodes (or reads the decoded cache) and copies uint8. The parameters are the host path's own draws:
:func:`augment_params` calls :meth:`Augmenter.sample_params` with ``np.random.default_rng([seed, epoch, row])``
for each row of the batch, as the loader's workers do, so a run's randomness does not depend on where it is
augmented. With a loader made without ``augment=`` (same seed), for each batch ``(x, y, index)`` of ``epoch``::

    params = augment_params(config, seed, epoch, index)        # numpy, on the host (~25 us an image)
    xt = augment_batch(torch.from_numpy(x).to(device), params)  # uint8 (N, H, W, 3) on the device

Each step is PIL's own arithmetic, so the bytes are the host path's (``tests/test_device_augment.py``):

- the random resized crop: ``Image.resize(box=...)``'s bilinear fixed-point passes (horizontal, then vertical,
  each rounded to uint8; the box in C float as PIL takes it), as gathers of 2-3 taps with int32 weights;
- rotation, shear and aspect (``warp``'s coefficients, computed as it computes them) and the flip (an output
  pixel reads the warp's mirrored one) as one sampling pass: each output pixel's position in float64 as PIL's
  ``affine_transform`` computes it, then PIL's bilinear filter (the edge repeated, its lerps in float64,
  truncated to uint8), and the mean edge colour where ``warp``'s padding (at most twice the side) ends;
- the HSL shift: ``shift_hsl``'s float32 formulas op for op (no fused multiply-add: one torch op each).

Agreement with the host path (``scripts/bench_device_augment.py``, 64 synthetic garments at 224 px, CPU
tensors, 0-255 units; ``benchmarks/RESULTS.md``, device-augment):

- the paper's recipe and the small-data one (crop, rotation 8, horizontal flips): identical bytes (max 0);
- ``sampler="grid_sample"`` (torch's bilinear in float32, the same positions, truncated): for the warp alone
  max 1, 0.012 % of values off; after the colour shift, which can widen a unit, max 2 (paper) and 4 (small
  data), 0.012 % and 0.06 % off. Rounding it instead of truncating: max 1 but 50 % off (mean 0.50); bicubic:
  max 43, mean 1.13. It is one kernel, so on a GPU it may well be the faster: the bench measures both there;
- ``fuse_crop=True`` (the crop folded into the warp's pass: one resampling instead of two, less blur): max 59,
  mean 0.83, 54 % identical; not the host's bytes, so not the default.

On one CPU core, for the paper's recipe at batch 64, the "pil" sampler augments 300 img/s and "grid_sample" 592,
against PIL's 451 (small data: 229 and 356 against 420): the device path is meant for the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...config import AugmentConfig
from ...data.augment import IDENTITY_PARAMS, Augmenter

FLIPS = ("none", "vertical", "horizontal")  # the codes of AugmentParams.flip
SAMPLERS = ("pil", "grid_sample")  # augment_batch's bilinear sampler
_IDENTITY_COEFFS = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])  # _plan's for an image warp() returns as it is
_PRECISION_BITS = 32 - 8 - 2  # of PIL's 8-bit resampling weights (Resample.c)
_CPU_CHUNK, _DEVICE_CHUNK = 8, 64  # images augment_batch augments at a time on a CPU, on a GPU


@dataclass(frozen=True)
class AugmentParams:
    """The parameters of a batch's images, one row each (numpy, on the host).

    ``angle``, ``shear``, ``aspect`` (N,) float64; ``hsl`` (N, 3) float64 (hue, saturation, lightness);
    ``flip`` (N,) int8, an index into :data:`FLIPS`; ``crop`` (N, 4) float64, the box (left, top, right,
    bottom) as fractions of the image, NaN where there is no crop.
    """

    angle: np.ndarray
    shear: np.ndarray
    aspect: np.ndarray
    hsl: np.ndarray
    flip: np.ndarray
    crop: np.ndarray

    def __len__(self) -> int:
        return len(self.angle)

    def __getitem__(self, rows) -> AugmentParams:
        """The parameters of some of the images (a slice, an index array)."""
        return AugmentParams(self.angle[rows], self.shear[rows], self.aspect[rows], self.hsl[rows], self.flip[rows],
                             self.crop[rows])

    @classmethod
    def from_dicts(cls, draws: list[dict]) -> AugmentParams:
        """From :meth:`Augmenter.sample_params`'s dicts."""
        def column(key):
            return np.array([d[key] for d in draws], np.float64).reshape(len(draws))

        return cls(angle=column("angle"), shear=column("shear"), aspect=column("aspect"),
                   hsl=np.array([d["hsl"] for d in draws], np.float64).reshape(len(draws), 3),
                   flip=np.array([FLIPS.index(d["flip"]) for d in draws], np.int8),
                   crop=np.array([d.get("crop") or (np.nan,) * 4 for d in draws], np.float64).reshape(len(draws), 4))

    def to_dicts(self) -> list[dict]:
        """As :meth:`Augmenter.sample_params` returns them (for :meth:`Augmenter.apply`)."""
        out = []
        for i in range(len(self)):
            d = {"angle": float(self.angle[i]), "shear": float(self.shear[i]), "aspect": float(self.aspect[i]),
                 "hsl": tuple(float(v) for v in self.hsl[i]), "flip": FLIPS[self.flip[i]]}
            if not np.isnan(self.crop[i]).any():
                d["crop"] = tuple(float(v) for v in self.crop[i])
            out.append(d)
        return out


def augment_params(config: AugmentConfig | None, seed: int, epoch: int, rows) -> AugmentParams:
    """The parameters the loader's workers would draw for ``rows`` (a batch's ``index``) in ``epoch``: the same
    generators (``default_rng([seed, epoch, row])``), the same function (:meth:`Augmenter.sample_params`).
    ``config`` None or disabled: the identity for every row, as an un-augmented loader's batches are."""
    if config is None or not config.enabled:
        return AugmentParams.from_dicts([dict(IDENTITY_PARAMS) for _ in rows])
    aug = Augmenter(config)
    return AugmentParams.from_dicts([aug.sample_params(np.random.default_rng([seed, epoch, int(row)]))
                                     for row in np.asarray(rows).tolist()])


# ---------------------------------------------------------------------------------- geometry (host side)


def warp_coefficients(w: int, h: int, angle: float, shear: float, aspect: float) -> tuple[tuple, int, int]:
    """PIL's affine coefficients (output pixel -> input position in the padded image) and the padding
    (x, y) that :func:`fashionrec.data.augment.warp` uses, computed as it computes them."""
    t = math.radians(angle)
    cos, sin = math.cos(t), math.sin(t)
    sx = math.sqrt(aspect)
    fwd = np.array([[cos, sin], [-sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, 1 / sx])
    inv = np.linalg.inv(fwd)
    corners = np.array([[-w, -h], [w, -h], [-w, h], [w, h]], dtype=np.float64) / 2
    reach = np.abs(corners @ inv.T).max(axis=0) - (w / 2, h / 2)
    pad_x, pad_y = (min(math.ceil(r) + 2, 2 * max(w, h)) if r > 0 else 1 for r in reach)
    cx, cy = w / 2, h / 2
    offset = np.array([cx + pad_x, cy + pad_y]) - inv @ (cx, cy)
    return (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1]), pad_x, pad_y


def _plan(params: AugmentParams, w: int, h: int, fuse_crop: bool) -> dict:
    """Per image, on the host: the warp's coefficients and padding (identity where ``warp`` returns its input),
    whether its padding was capped (the fill colour is then reachable), and the crop: PIL's resize coefficients,
    or with ``fuse_crop`` as a map of positions (crop's output -> input)."""
    n = len(params)
    coeffs, pads, capped, still = np.zeros((n, 6)), np.ones((n, 2)), np.zeros(n, bool), np.ones(n, bool)
    coeffs[:, [0, 4]] = 1.0
    coeffs[:, [2, 5]] = 1.0  # PIL is not called for the identity: x + 0.5 + 1 - 1 (padding 1) is exact
    for i in range(n):
        a, s, r = float(params.angle[i]), float(params.shear[i]), float(params.aspect[i])
        if a == 0 and s == 0 and r == 1:
            continue
        c, px, py = warp_coefficients(w, h, a, s, r)
        still[i] = False
        coeffs[i], pads[i] = c, (px, py)
        capped[i] = px == 2 * max(w, h) or py == 2 * max(w, h)
    cropped = ~np.isnan(params.crop).any(axis=1)
    box = np.where(cropped[:, None], params.crop, (0.0, 0.0, 1.0, 1.0))
    # a position q in the crop's output (w x h) is box_left * w + q * (box width in px / w) in the input
    left, top, right, bottom = box[:, 0] * w, box[:, 1] * h, box[:, 2] * w, box[:, 3] * h  # PIL's box, in px
    crop = np.stack([left, (right - left) / w, top, (bottom - top) / h], axis=1)
    plan = {"coeffs": coeffs, "pads": pads, "capped": capped, "still": still, "cropped": cropped, "crop": crop,
            "fused": fuse_crop and cropped.any()}
    if cropped.any() and not fuse_crop:
        plan["taps"] = _resize_taps(w, left, right, w), _resize_taps(h, top, bottom, h)
    return plan


def _resize_taps(in_size: int, box0: np.ndarray, box1: np.ndarray, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL's bilinear resize coefficients (``precompute_coeffs`` and ``normalize_coeffs_8bpc`` in Resample.c)
    from ``[box0, box1)`` of ``in_size`` pixels to ``out_size``, per image: first input pixel (N, out) int64 and
    the fixed-point weights (N, out, K) int64 of K pixels from it (zero past an output's last)."""
    box0, box1 = box0.astype(np.float32), box1.astype(np.float32)  # PIL's box is C float
    scale = (box1 - box0).astype(np.float64) / out_size  # (double)(in1 - in0) / outSize
    filterscale = np.maximum(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    taps = int(np.ceil(support).max()) * 2 + 1
    center = box0.astype(np.float64)[:, None] + (np.arange(out_size) + 0.5)[None, :] * scale[:, None]
    ss = (1.0 / filterscale)[:, None]
    first = np.maximum(np.trunc(center - support[:, None] + 0.5), 0).astype(np.int64)  # C's (int) truncates
    count = np.minimum(np.trunc(center + support[:, None] + 0.5), in_size).astype(np.int64) - first
    k = np.zeros((*center.shape, taps))
    total = np.zeros(center.shape)
    for t in range(taps):  # in C's order: the sum of the weights is float64 too
        wt = np.maximum(1.0 - np.abs(((t + first) - center + 0.5) * ss), 0.0)
        k[..., t] = np.where(t < count, wt, 0.0)
        total = total + k[..., t]
    k = np.where(total[..., None] != 0, k / np.where(total == 0, 1.0, total)[..., None], k)
    fixed = np.trunc(np.where(k < 0, -0.5, 0.5) + k * (1 << _PRECISION_BITS)).astype(np.int64)
    return first, fixed


# ---------------------------------------------------------------------------------- device side
# Images travel as planes: uint8 (3, N, H, W), each channel's values contiguous (as augment.shift_hsl's are).


def _crop(planes: torch.Tensor, plan: dict) -> torch.Tensor:
    """PIL's ``resize(box=...)`` to the same size, bilinear: its horizontal then vertical pass in its fixed-point
    arithmetic, each rounded to uint8."""
    _, n, h, w = planes.shape
    out = planes.to(torch.int32)
    for dim, size, (first, fixed) in zip((3, 2), (w, h), plan["taps"]):
        first = torch.from_numpy(first).to(planes.device, non_blocking=True)
        fixed = torch.from_numpy(fixed.astype(np.int32)).to(planes.device, non_blocking=True)
        shape = (1, n, 1, size) if dim == 3 else (1, n, size, 1)
        acc = None
        for t in range(fixed.shape[-1]):
            idx = (first + t).clamp_(max=size - 1).view(shape).expand(out.shape)
            term = out.gather(dim, idx).mul_(fixed[..., t].view(shape))
            acc = term.add_(1 << (_PRECISION_BITS - 1)) if acc is None else acc.add_(term)
        out = acc.bitwise_right_shift_(_PRECISION_BITS).clamp_(0, 255)
    return out.to(torch.uint8)


def _sample(planes: torch.Tensor, xf: torch.Tensor, yf: torch.Tensor) -> torch.Tensor:
    """PIL's bilinear filter with the edge repeated at positions (``xf``, ``yf``) (N, H', W') float64 in input pixels,
    less 0.5 (pixel i at i): (3, N, H', W') float64, before truncation."""
    _, n, h, w = planes.shape
    flat = planes.reshape(3, n * h * w)
    x0, y0 = torch.floor(xf), torch.floor(yf)
    dx, dy = xf - x0, yf - y0
    x0, y0 = x0.long(), y0.long()
    xa, xb = x0.clamp(0, w - 1), (x0 + 1).clamp_(0, w - 1)
    base = (torch.arange(n, device=planes.device) * (h * w)).view(n, 1, 1)
    ya, yb = y0.clamp(0, h - 1).mul_(w).add_(base), (y0 + 1).clamp_(0, h - 1).mul_(w).add_(base)

    def pixels(rows, cols):
        return flat[:, (rows + cols).view(-1)].view(3, *xf.shape).double()

    def lerp(a, b, d):  # PIL's a + (b - a) * d, in three ops (no fused multiply-add)
        return b.sub_(a).mul_(d).add_(a)

    top = lerp(pixels(ya, xa), pixels(ya, xb), dx)
    return lerp(top, lerp(pixels(yb, xa), pixels(yb, xb), dx), dy)


def _sample_grid(planes: torch.Tensor, xf: torch.Tensor, yf: torch.Tensor) -> torch.Tensor:
    """As :func:`_sample`, by ``grid_sample`` (bilinear, edge repeated) in float32: (3, N, H', W') float32."""
    _, n, h, w = planes.shape
    grid = torch.stack([xf.add(0.5).mul_(2 / w).sub_(1), yf.add(0.5).mul_(2 / h).sub_(1)], dim=-1).float()
    out = F.grid_sample(planes.permute(1, 0, 2, 3).float(), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.permute(1, 0, 2, 3)


def _warp(planes: torch.Tensor, plan: dict, flip: np.ndarray, sampler: str) -> torch.Tensor:
    """Warp and flip each image (and crop it, when fused) in one bilinear pass."""
    _, n, h, w = planes.shape
    dev = planes.device
    host = np.concatenate([plan["coeffs"], plan["pads"], plan["crop"], flip[:, None]], axis=1)  # one copy
    p = torch.from_numpy(host).to(dev, non_blocking=True)
    a0, a1, a2, a3, a4, a5, pad_x, pad_y, cx0, csx, cy0, csy, fl = (p[:, i].view(n, 1, 1) for i in range(13))
    # the flip comes after the warp on the host: output pixel j reads the warp's pixel w - 1 - j
    cols = torch.arange(w, dtype=torch.float64, device=dev).view(1, 1, w)
    rows = torch.arange(h, dtype=torch.float64, device=dev).view(1, h, 1)
    cols = torch.where(fl == FLIPS.index("horizontal"), (w - 1) - cols, cols).add_(0.5)
    rows = torch.where(fl == FLIPS.index("vertical"), (h - 1) - rows, rows).add_(0.5)
    # PIL's affine_transform: a0 * x + a1 * y + a2, in that order; positions in the padded image
    xin = torch.add(a0 * cols, a1 * rows).add_(a2)
    yin = torch.add(a3 * cols, a4 * rows).add_(a5)
    outside = None
    if plan["capped"].any():  # PIL's bilinear filter refuses positions off the padded image: the fill colour
        outside = (xin < 0) | (xin >= w + 2 * pad_x) | (yin < 0) | (yin >= h + 2 * pad_y)
    xf, yf = xin.sub_(0.5).sub_(pad_x), yin.sub_(0.5).sub_(pad_y)  # in the unpadded image: edge clamped
    if plan["fused"]:  # the warp's input is the crop's output, its edge repeated: back to the input image
        cropped = torch.from_numpy(plan["cropped"]).to(dev, non_blocking=True).view(n, 1, 1)
        xf = torch.where(cropped, xf.clamp(0, w - 1).add_(0.5).mul_(csx).add_(cx0).sub_(0.5), xf)
        yf = torch.where(cropped, yf.clamp(0, h - 1).add_(0.5).mul_(csy).add_(cy0).sub_(0.5), yf)
    out = _sample(planes, xf, yf) if sampler == "pil" else _sample_grid(planes, xf, yf)
    if outside is not None:
        out = torch.where(outside, _edge_fill(planes, plan, p).view(3, n, 1, 1), out)
    rounded = plan["cropped"] & plan["still"]  # the crop alone: PIL's resize rounds where its transform truncates
    if plan["fused"] and rounded.any():
        out = out.add_(torch.from_numpy(np.where(rounded, 0.5, 0.0)).to(dev, non_blocking=True).view(1, n, 1, 1))
    return out.clamp_(0, 255).to(torch.uint8)  # truncated


def _edge_fill(planes: torch.Tensor, plan: dict, p: torch.Tensor) -> torch.Tensor:
    """The mean edge colour of each warp's input (``augment._edge_mean``), (3, N) float64; fused with a crop, of
    the crop's edge sampled bilinearly (rounded, as PIL's resize rounds) from the input."""
    _, n, h, w = planes.shape
    dev = planes.device
    ring_x = np.concatenate([np.arange(w), np.arange(w), np.zeros(h - 2), np.full(h - 2, w - 1)]) + 0.5
    ring_y = np.concatenate([np.zeros(w), np.full(w, h - 1), np.arange(1, h - 1), np.arange(1, h - 1)]) + 0.5
    rx = torch.from_numpy(ring_x).to(dev).view(1, 1, -1).expand(n, 1, -1)
    ry = torch.from_numpy(ring_y).to(dev).view(1, 1, -1).expand(n, 1, -1)
    if plan["fused"]:  # the crop's output's edge, sampled from the input
        cx0, csx, cy0, csy = (p[:, 8 + i].view(n, 1, 1) for i in range(4))
        rx, ry = rx * csx + cx0, ry * csy + cy0
    ring = _sample(planes, rx - 0.5, ry - 0.5)
    if plan["fused"]:
        ring = torch.floor(ring + 0.5)
    return ring.mean(dim=(2, 3)).round()


def _shift_hsl(planes: torch.Tensor, hsl: np.ndarray) -> torch.Tensor:
    """``augment.shift_hsl`` on uint8 planes: its float32 arithmetic op for op; an image whose shifts are all zero
    comes back as it is, as there."""
    n = planes.shape[1]
    dev = planes.device
    # the host's per-image scalars: np.float32(hue * 6 / 255), np.float32(saturation / 255), np.float32(lightness)
    terms = np.stack([hsl[:, 0] * 6 / 255, hsl[:, 1] / 255, hsl[:, 2]], axis=1).astype(np.float32)
    t = torch.from_numpy(terms).to(dev, non_blocking=True)
    dh, ds, dl = (t[:, i].view(n, 1, 1) for i in range(3))
    r, g, b = planes.float()
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    total = maxc + minc  # 2 * lightness
    s = chroma / torch.abs(total - 255).neg_().add_(255).clamp_min_(1e-6)
    hue = torch.where(r == maxc, g - b, torch.where(g == maxc, 2 * chroma + (b - r), 4 * chroma + (r - g)))
    hue = hue.div_(chroma.clamp_min_(1e-6)).add_(dh)
    hue = hue.sub_(torch.floor(hue * float(np.float32(1 / 6))).mul_(6))  # wrap to [0, 6)
    light = total.mul_(0.5).add_(dl).clamp_(0, 255)
    amp = s.add_(ds).clamp_(0, 1).mul_(torch.minimum(light, 255 - light))
    twice_h = hue.mul_(2)
    out = torch.empty((3, *r.shape), dtype=torch.uint8, device=dev)
    for channel, offset in enumerate((0.0, 8.0, 4.0)):
        k = twice_h + offset
        k = torch.where(k >= 12, k - 12, k)
        k = torch.minimum(k - 3, 9 - k).clamp_(-1, 1).mul_(amp)
        out[channel] = torch.sub(light, k).add_(0.5).clamp_(0, 255)  # rounded, not truncated
    zero = np.all(hsl == 0, axis=1)
    if zero.any():
        keep = torch.from_numpy(zero).to(dev, non_blocking=True).view(1, n, 1, 1)
        out = torch.where(keep, planes, out)
    return out


def augment_batch(x: torch.Tensor, params: AugmentParams, *, sampler: str = "pil", fuse_crop: bool = False,
                  chunk: int | None = None) -> torch.Tensor:
    """Augment a uint8 (N, H, W, 3) RGB batch on its device with ``params`` (:func:`augment_params` of its rows):
    the bytes :meth:`Augmenter.apply` makes of each image.

    ``sampler``: "pil", PIL's bilinear filter in float64 (the host's bytes), or "grid_sample", torch's in float32
    (one kernel; a unit off on about 1 value in 10,000). ``fuse_crop``: the random resized crop and the warp in
    one bilinear pass instead of PIL's two (less blur, a pass fewer, but not the host's bytes: see the module's
    docstring). ``chunk``: images augmented at a time, which bounds the temporaries (about 200 bytes a pixel with
    the "pil" sampler: 640 MB for 64 images at 224 px); default 8 on a CPU (about twice as fast as 64 there), 64
    elsewhere. Returns a new uint8 (N, H, W, 3) tensor on the same device; ``x`` is not changed."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"x must be a uint8 (N, H, W, 3) tensor; got {getattr(x, 'dtype', type(x).__name__)} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    if len(params) != x.shape[0]:
        raise ValueError(f"{len(params)} sets of parameters for a batch of {x.shape[0]} images")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    chunk = chunk or (_CPU_CHUNK if x.device.type == "cpu" else _DEVICE_CHUNK)
    if len(params) <= chunk:
        return _augment(x, params, sampler, fuse_crop)
    out = torch.empty_like(x)
    for start in range(0, len(params), chunk):
        out[start:start + chunk] = _augment(x[start:start + chunk], params[start:start + chunk], sampler, fuse_crop)
    return out


def _augment(x: torch.Tensor, params: AugmentParams, sampler: str, fuse_crop: bool) -> torch.Tensor:
    n, h, w, _ = x.shape
    plan = _plan(params, w, h, fuse_crop)
    warped = plan["fused"] or (plan["coeffs"] != _IDENTITY_COEFFS).any() or (params.flip != 0).any()
    shifted = (params.hsl != 0).any()
    if n == 0 or not ("taps" in plan or warped or shifted):
        return x.clone()
    planes = x.permute(3, 0, 1, 2).contiguous()
    if "taps" in plan:
        planes = _crop(planes, plan)
    if warped:
        planes = _warp(planes, plan, params.flip, sampler)
    if shifted:
        planes = _shift_hsl(planes, params.hsl)
    return planes.permute(1, 2, 3, 0).contiguous()


__all__ = ["AugmentParams", "FLIPS", "SAMPLERS", "augment_batch", "augment_params", "warp_coefficients"]
