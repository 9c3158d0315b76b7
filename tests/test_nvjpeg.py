"""Index extraction with the catalog's JPEGs decoded on the device (``decode: device``, issue 30 part 5), on the
CPU: torchvision's nvJPEG is replaced by a stand-in with its contract (a list of byte tensors in, (3, H, W) uint8
tensors out, a RuntimeError for a damaged file), so what runs is everything around it: which files go to the device
and which to the host, the resize there, the rows, the bad-image records, the errors."""

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fashionrec.data.loader import BatchLoader, ImageSource
from fashionrec.engines.torch.nvjpeg import DeviceJpegLoader, nvjpeg_decoder
from fashionrec.errors import UserError


class StandInDecoder:
    """Full-size decodes with Pillow, as nvJPEG makes them; records what it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, data):
        self.calls.append(len(data))
        out = []
        for t in data:
            try:
                img = Image.open(io.BytesIO(t.numpy().tobytes()))
                img.load()
            except OSError as e:
                raise RuntimeError(f"nvjpeg: {e}") from None
            out.append(torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous())
        return out


@pytest.fixture(scope="module")
def catalog(synth_root, tmp_path_factory):
    """24 synthetic product JPEGs, then a PNG named .jpg, a JPEG with an EXIF rotation and a damaged JPEG."""
    src = sorted((synth_root / "fashion").rglob("*.jpg"))[:24]
    root = tmp_path_factory.mktemp("nvjpeg")
    paths = []
    for i, p in enumerate(src):
        shutil.copy(p, root / f"{i:02d}.jpg")
        paths.append(f"{i:02d}.jpg")
    img = Image.open(src[0]).convert("RGB")
    img.save(root / "png.jpg", format="PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    img.save(root / "rotated.jpg", format="JPEG", exif=exif)
    whole = (root / "00.jpg").read_bytes()
    (root / "damaged.jpg").write_bytes(whole[:len(whole) * 3 // 5])  # the header intact, the scan cut short
    return root, paths + ["png.jpg", "rotated.jpg", "damaged.jpg"]


def _batches(loader):
    out = []
    for x, _, rows in loader.epoch(0):
        out.append((np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x), rows.copy()))
    return out


def test_device_decoded_batches_are_the_hosts_within_rounding(catalog):
    root, paths = catalog
    source = ImageSource(root, paths[:24])
    decoder = StandInDecoder()
    device = _batches(DeviceJpegLoader(source, 64, 8, device="cpu", decode=decoder))
    host = _batches(BatchLoader(source, 64, 8))
    assert decoder.calls == [8, 8, 8]  # one call per batch, every JPEG of it
    assert [r.tolist() for _, r in device] == [r.tolist() for _, r in host]
    a = np.concatenate([x for x, _ in device]).astype(int)
    b = np.concatenate([x for x, _ in host]).astype(int)
    assert a.shape == b.shape == (24, 64, 64, 3)
    gap = np.abs(a - b)
    # the resize's rounding (and PIL's reducing_gap), not another picture
    assert gap.mean() < 1.5, gap.mean()
    assert np.percentile(gap, 99) <= 12


def test_other_files_go_through_the_host_and_a_damaged_one_is_named(catalog):
    root, paths = catalog
    source = ImageSource(root, paths[-5:])  # two plain JPEGs, the PNG, the rotated one, the damaged one
    decoder = StandInDecoder()
    loader = DeviceJpegLoader(source, 48, 8, device="cpu", decode=decoder, max_bad_fraction=0.5)
    (x, rows), = _batches(loader)
    assert rows.tolist() == [0, 1, 2, 3]
    assert list(loader.bad) == ["damaged.jpg"] and "cannot decode image" in loader.bad["damaged.jpg"]
    # the damaged JPEG failed the device's call: the batch's JPEGs then went through the host one by one
    assert decoder.calls == [3] and loader.device_decoded == 0
    host, _ = _batches(BatchLoader(source, 48, 8, max_bad_fraction=0.5))[0]
    np.testing.assert_array_equal(x, host)  # all of them the host's bytes
    # without the damaged file the PNG and the rotated JPEG still go to the host: the device gets the two plain ones
    decoder = StandInDecoder()
    loader = DeviceJpegLoader(ImageSource(root, paths[-5:-1]), 48, 8, device="cpu", decode=decoder)
    (x, rows), = _batches(loader)
    assert decoder.calls == [2] and loader.device_decoded == 2
    np.testing.assert_array_equal(x[2:], host[2:])


def test_decode_device_without_a_gpu_is_one_line(catalog, extractor_runs):
    from fashionrec.features import FeatureExtractor

    with pytest.raises(UserError, match="decode: device needs a CUDA device"):
        nvjpeg_decoder("cpu")
    root, paths = catalog
    extractor = FeatureExtractor(list(extractor_runs.values())[:1], device="cpu")
    with pytest.raises(UserError, match="decode: device needs a CUDA device"):
        extractor.extract_catalog(root, paths[:4], progress=False, decode="device")
