"""JPEG decoding on the GPU (nvJPEG, through torchvision) for index extraction on CUDA: ``decode: device``.

The host decodes a 300-px JPEG and resizes it at ~700 images/s per core (the H200 check), so a machine with few
cores per GPU cannot feed a forward pass of ~4,800 images/s. Here the main process only reads the files; nvJPEG
decodes them on the GPU in one batched call and the resize runs there too (bilinear with antialiasing, as PIL's).
torchvision is imported only when asked (it does not import beside the CPU build of torch the CPU machines pin).

What is not a plain JPEG the device decodes as it is (another format, an EXIF rotation, CMYK, a file the header
check refuses) goes through the host decoder, with its exact bytes and its one-line errors. A device-decoded image
differs from the host's by rounding in the IDCT and the resize (tests/test_nvjpeg.py measures the gap with a
stand-in decoder on the CPU); queries are decoded on the host, so an index built this way ranks as one built on
the host to within that.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ... import stop
from ...data.decoded_cache import decode_resized
from ...data.images import MIN_SIDE
from ...data.loader import BatchLoader
from ...errors import DataError, UserError

_PLAIN_MODES = ("RGB", "L")  # JPEG modes nvJPEG turns into RGB as Pillow does (CMYK/YCCK: the host's conversion)
_ORIENTATION = 0x0112


def nvjpeg_decoder(device) -> Callable:
    """``decode(list of uint8 byte tensors) -> list of (3, H, W) uint8 tensors on device``: torchvision's nvJPEG;
    a UserError saying what is missing when this machine cannot decode on ``device``."""
    if torch.device(device).type != "cuda":
        raise UserError(f"decode: device needs a CUDA device (the extractors are on {device}); use decode: host")
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception as e:  # noqa: BLE001 - not installed, or built for another torch: one line either way
        raise UserError(f"decode: device needs torchvision with nvJPEG ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:100] if str(e) else 'cannot import'}); use decode: host") from None

    def decode(data: list[torch.Tensor]) -> list[torch.Tensor]:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)

    return decode


def resize_on_device(img: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (size, size, 3) uint8, squashed (no crop) as the host's ``resize``."""
    if tuple(img.shape[1:]) == (size, size):
        return img.permute(1, 2, 0)
    x = F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)


def _plain_jpeg(data: bytes, max_pixels: int) -> bool:
    """Whether the device may decode ``data``: a JPEG in a plain mode, upright, within the host's size limits (what
    is outside them goes to the host decoder, which refuses it with its own message)."""
    if data[:2] != b"\xff\xd8":
        return False
    try:
        img = Image.open(io.BytesIO(data))  # the header only
        w, h = img.size
        return (img.format == "JPEG" and img.mode in _PLAIN_MODES and w * h <= max_pixels and min(w, h) >= MIN_SIDE
                and img.getexif().get(_ORIENTATION, 1) == 1)
    except Exception:  # noqa: BLE001 - whatever the header parser trips on, the host decoder names
        return False


class DeviceJpegLoader(BatchLoader):
    """A :class:`BatchLoader` (workers 0) whose batches are uint8 (N, H, W, 3) tensors on ``device``: JPEGs decoded
    by ``decode`` (default :func:`nvjpeg_decoder`) in one call per batch and resized there, the rest by the host
    decoder. The same rows, sharding, bad-image records and limit as the loader's own."""

    def __init__(self, images, input_size: int, batch_size: int, *, device, decode: Callable | None = None, **kwargs):
        kwargs.pop("workers", None)
        super().__init__(images, input_size, batch_size, workers=0, **kwargs)
        self.device = torch.device(device)
        self.decode = decode or nvjpeg_decoder(self.device)
        self.device_decoded = 0  # images the device decoded (the rest went through the host)

    def _results(self, epoch):
        for _, rows in self._jobs(epoch):
            stop.check()
            yield self._batch(rows)

    def _host(self, row: int):
        st = self._state
        img = decode_resized(st["root"] / st["paths"][row], st["size"], st["max_pixels"])
        return torch.from_numpy(np.array(img, np.uint8)).to(self.device)

    def _batch(self, rows: list[int]):
        st = self._state
        size, images, bad = st["size"], {}, []
        plain = []
        for row in rows:
            path = st["root"] / st["paths"][row]
            try:
                data = path.read_bytes()
            except OSError as e:
                bad.append((st["paths"][row], f"cannot read file ({e.strerror or e})"))
                continue
            if _plain_jpeg(data, st["max_pixels"]):
                plain.append((row, torch.frombuffer(bytearray(data), dtype=torch.uint8)))
            else:
                images[row] = None  # the host's
        if plain:
            try:
                decoded = self.decode([t for _, t in plain])
            except RuntimeError:  # a damaged JPEG fails the whole call: each then goes through the host, which names it
                decoded = [None] * len(plain)
            for (row, _), img in zip(plain, decoded):
                images[row] = None if img is None else resize_on_device(img, size)
                self.device_decoded += img is not None
        kept, out = [], []
        for row in rows:
            if row not in images:
                continue
            img = images[row]
            if img is None:
                try:
                    img = self._host(row)
                except DataError as e:
                    bad.append((st["paths"][row], str(e).split(": ", 1)[-1]))
                    continue
            kept.append(row)
            out.append(img)
        x = torch.stack(out) if out else torch.zeros((0, size, size, 3), dtype=torch.uint8, device=self.device)
        return x, np.asarray(kept, np.int64), bad


__all__ = ["DeviceJpegLoader", "nvjpeg_decoder", "resize_on_device"]
