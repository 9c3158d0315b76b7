"""ONNX export: an index's extractors (or one run) as graphs that ONNX Runtime runs without torch.

Each graph takes what the loader makes, ``images``: uint8 ``(N, S, S, 3)`` RGB at the run's input
size (any batch size), and does the run's input convention inside the graph (channel order,
``(x - shift) / divisor`` with the float32 terms both engines use), then the network with every
BatchNorm folded into its convolution, as the torch engine's inference copy does. Its outputs are
``features`` (the pooled feature the index holds) and, for a classifier, ``logits`` (recommend
shows the predicted labels; an embedding run has none). ONNX Runtime then needs no torch and no
convention table. The graph's ``metadata_props`` name the run: task, arch, input size, the
convention and the sha256 of the weights it was exported from.

``--int8`` adds a statically quantised copy (ONNX Runtime's quantisation tools: QDQ, int8
per-channel weights, uint8 activations, MinMax ranges) calibrated on catalog images: the index's
items at evenly spaced ids, decoded and resized as the index decoded them.

Into an index (``index/onnx/<i>-<task>.onnx``, ``<i>-<task>.int8.onnx``) the export is one more
atomic write of the index folder: under the index's writer lock, a new folder hard-links every
file of the old one, gets the graphs and an ``index.json`` recording them (``"onnx"``: each
graph's file and sha256, and the weights' sha256 it came from), and is swapped in, so a kill
leaves the old index or the new one. An export replaces the index's earlier graphs. A folder that
is not an index of ours (a user's file in it) is refused before any work. The weights each run
holds now must be those the index was built with (sha256), or the export is refused.

A run exports into its own folder (``RUN-onnx/``: ``model.onnx``, ``onnx.json``); ``--int8``
then needs calibration images (``calibration=``, a folder or a catalog CSV).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .artifacts import ArtifactKind, atomic_dir, check_replaceable, ensure_writable, exclusive_lock, write_json
from .catalog_index import INDEX_KIND, ONNX_DIR, CatalogIndex, _link_or_copy, resolve_run
from .data.catalog import read_csv_rows
from .data.images import decode_image, find_images, normalization_kwargs, normalization_terms, resize
from .engines.torch.engine import fold_batchnorm
from .errors import DataError, UserError
from .runs import load_classifier, sha256_file

OPSET = 17
ONNX_FORMAT = 1
INPUT, FEATURES, LOGITS = "images", "features", "logits"
META_PREFIX = "fashionrec."  # the graph's metadata_props keys
DEFAULT_CALIBRATION_IMAGES = 64
# A run's export folder: what `export RUN` writes, and all it replaces.
EXPORT_KIND = ArtifactKind("ONNX export", marker="onnx.json", entries=("*.onnx",))


def export_onnx(target, int8: bool = False, out=None, calibration=None,
                calibration_images: int = DEFAULT_CALIBRATION_IMAGES, wait: bool = True, log=print) -> Path:
    """Export an index's extractors into the index (``target`` holds index.json) or one run
    (``target`` holds model.json) into ``out`` (default ``<run>-onnx``). Returns the folder written."""
    target = Path(target)
    if calibration_images < 1:
        raise UserError(f"--calibration-images must be >= 1; got {calibration_images}")
    _require("onnx")  # before any work: a missing package is one line, not a failure half-way
    if int8:
        _require("onnxruntime")
    if (target / "index.json").is_file():
        if out is not None or calibration is not None:
            raise UserError(f"{target}: an index's graphs go into the index and calibrate on its catalog; "
                            f"--out and --calibration are for exporting a run")
        return export_index(target, int8=int8, calibration_images=calibration_images, wait=wait, log=log)
    if (target / "model.json").is_file():
        return export_run(target, out=out, int8=int8, calibration=calibration,
                          calibration_images=calibration_images, log=log)
    raise UserError(f"{target}: neither an index (index.json) nor a run (model.json); export takes one of them")


def export_index(index_dir, int8: bool = False, calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                 wait: bool = True, log=print) -> Path:
    """Write the index's extractors as ONNX graphs into ``index_dir/onnx/`` and record them in index.json."""
    index_dir = Path(index_dir)
    ensure_writable(index_dir)
    check_replaceable(index_dir, INDEX_KIND)  # a user's file in the folder: refused before any work
    with exclusive_lock(index_dir, wait=wait, what="index"):
        index = CatalogIndex.load(index_dir)
        recorded = index.meta["extractors"]
        nets = [load_network(resolve_run(index_dir, e), recorded=e, where=index_dir) for e in recorded]
        images = None
        if int8:
            size = nets[0]["input_size"]
            images = catalog_images(index.root, [it["path"] for it in index.items], size, calibration_images, log)
        with atomic_dir(index_dir, kind=INDEX_KIND) as tmp:
            shutil.copytree(index_dir, tmp, dirs_exist_ok=True, copy_function=_link_or_copy,
                            ignore=lambda d, names: [n for n in names if Path(d) == index_dir
                                                     and (n in (ONNX_DIR, "index.json") or n.startswith("."))])
            graphs: dict[str, list[dict]] = {"fp32": []}
            if int8:
                graphs["int8"] = []
            for i, (e, net) in enumerate(zip(recorded, nets)):
                stem = f"{ONNX_DIR}/{i}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', e['task'])}"
                graphs["fp32"].append(write_graph(net, tmp / f"{stem}.onnx", tmp))
                log(f"exported {e['task']} ({e['arch']}): {stem}.onnx")
                if int8:
                    graphs["int8"].append(quantize_graph(net, tmp / f"{stem}.onnx", tmp / f"{stem}.int8.onnx", images,
                                                         tmp))
                    log(f"quantised {e['task']} to int8 on {len(images)} catalog images: {stem}.int8.onnx")
            record = {"format": ONNX_FORMAT, "opset": OPSET, "version": __version__, "graphs": graphs,
                      "input": f"{INPUT}: uint8 (N, {nets[0]['input_size']}, {nets[0]['input_size']}, 3) RGB"}
            if int8:
                record["calibration"] = {"images": len(images), "source": "catalog items at evenly spaced ids",
                                         "method": "minmax", "format": "QDQ, per-channel int8 weights, uint8 "
                                                                       "activations"}
            write_json(tmp / "index.json", dict(index.meta, onnx=record))
    return index_dir


def export_run(run_dir, out=None, int8: bool = False, calibration=None,
               calibration_images: int = DEFAULT_CALIBRATION_IMAGES, log=print) -> Path:
    """Write one run as ``out/model.onnx`` (+ ``model.int8.onnx``) with ``out/onnx.json`` describing it."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir.with_name(f"{run_dir.name}-onnx")
    if int8 and calibration is None:
        raise UserError(f"{run_dir}: --int8 on a run needs --calibration (a folder of images or a catalog CSV); "
                        f"an index calibrates on its own catalog")
    ensure_writable(out)
    check_replaceable(out, EXPORT_KIND)
    net = load_network(run_dir)
    images = None
    if int8:
        root, paths = calibration_paths(calibration)
        images = catalog_images(root, paths, net["input_size"], calibration_images, log)
    with atomic_dir(out, kind=EXPORT_KIND) as tmp:
        graphs = {"fp32": [write_graph(net, tmp / "model.onnx", tmp)]}
        if int8:
            graphs["int8"] = [quantize_graph(net, tmp / "model.onnx", tmp / "model.int8.onnx", images, tmp)]
        write_json(tmp / "onnx.json", {"format": ONNX_FORMAT, "opset": OPSET, "version": __version__,
                                       "run": str(run_dir.resolve()), "graphs": graphs, **net["describe"]})
    log(f"exported {run_dir} ({net['describe']['arch']}, {net['input_size']} px){' and its int8 copy' if int8 else ''}"
        f": {out}")
    return out


# --------------------------------------------------------------------------- the network as a graph


def load_network(run_dir, recorded: dict | None = None, where=None) -> dict:
    """The run's torch network (an mxnet run's weights converted), its convention and what the graph records.

    ``recorded``: index.json's entry for the run; weights that differ from it are refused."""
    run_dir = Path(run_dir)
    clf, info = load_classifier(run_dir, device="cpu")
    weights_sha = sha256_file(run_dir / info["weights"])
    if recorded is not None and recorded["weights_sha256"] != weights_sha:
        raise UserError(f"{where}: built with extractor {recorded['run']} (weights sha256 "
                        f"{recorded['weights_sha256'][:12]}), but {run_dir} now has weights {weights_sha[:12]}: "
                        f"rebuild the index with `fashionrec index` before exporting it")
    if info["engine"] != "torch":  # the graph is written by torch's exporter: the same network in torch
        from .engines.convert import convert_weights
        from .engines.factory import build_classifier

        torch_clf = build_classifier("torch", info["arch"], len(info["classes"]), device="cpu",
                                     **normalization_kwargs(info.get("normalization")))
        torch_clf.set_weights(convert_weights(info["arch"], clf.get_weights(), info["engine"], "torch"))
        clf = torch_clf
    size = int(info["input_size"])
    shift, divisor = normalization_terms(clf.mean, clf.std, clf.scale)
    net = fold_batchnorm(clf.model).float()
    with torch.no_grad():
        _replace_adaptive_pools(net, size)
    has_logits = net.num_classes > 0  # an embedding (metric run) has no classes, hence no logits
    describe = {"task": info["task"], "arch": info["arch"], "engine": info["engine"], "input_size": size,
                "classes": list(info["classes"]), "num_features": int(net.num_features),
                "normalization": {"mean": list(clf.mean), "std": list(clf.std), "channels": clf.channels,
                                  "scale": clf.scale},
                "weights_sha256": weights_sha, "outputs": [FEATURES, LOGITS] if has_logits else [FEATURES]}
    module = Normalised(net, shift, divisor, clf.channels == "bgr", has_logits).eval()
    return {"module": module, "input_size": size, "describe": describe}


class Normalised(torch.nn.Module):
    """uint8 NHWC RGB in; the run's convention, the folded network, (features[, logits]) out."""

    def __init__(self, net, shift, divisor, bgr: bool, logits: bool):
        super().__init__()
        self.net, self.bgr, self.logits = net, bgr, logits
        self.register_buffer("shift", torch.from_numpy(np.asarray(shift, np.float32)).view(1, 3, 1, 1))
        self.register_buffer("divisor", torch.from_numpy(np.asarray(divisor, np.float32)).view(1, 3, 1, 1))

    def forward(self, images):
        x = images.permute(0, 3, 1, 2).float()
        if self.bgr:  # Caffe-lineage weights: the channels reversed, as the engines do on the bytes
            x = x.flip(1)
        x = (x - self.shift) / self.divisor
        fmap = self.net.forward_features(x)
        features = self.net.forward_head(fmap, pre_logits=True)
        return (features, self.net.forward_head(fmap)) if self.logits else features


class PoolMatrices(torch.nn.Module):
    """An adaptive average pool as two matrix products: ``rows`` (out_h, H) and ``cols`` (out_w, W)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray):
        super().__init__()
        self.register_buffer("rows", torch.from_numpy(rows))
        self.register_buffer("cols_t", torch.from_numpy(np.ascontiguousarray(cols.T)))

    def forward(self, x):
        return torch.matmul(torch.matmul(self.rows, x), self.cols_t)


def _replace_adaptive_pools(net, size: int) -> None:
    """AdaptiveAvgPool2d to a size its input does not divide (AlexNet's 6x6 from a small map) has no ONNX
    operator in torch's exporter: the same averages as two matrix products (bins as torch computes them)."""
    pools = {name: m for name, m in net.named_modules()
             if isinstance(m, torch.nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1))}
    if not pools:
        return
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, a, _o, n=name: shapes.__setitem__(n, a[0].shape[-2:]))
             for name, m in pools.items()]
    net.forward_head(net.forward_features(torch.zeros(1, 3, size, size)), pre_logits=True)
    for h in hooks:
        h.remove()
    for name, pool in pools.items():
        if name not in shapes:
            continue
        out = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        (h, w), (oh, ow) = shapes[name], out
        parent, _, leaf = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf, PoolMatrices(_bins(h, oh), _bins(w, ow)))


def _bins(n: int, out: int) -> np.ndarray:
    """(out, n): row i averages torch's adaptive bin i, [floor(i n / out), ceil((i + 1) n / out))."""
    m = np.zeros((out, n), np.float32)
    for i in range(out):
        a, b = (i * n) // out, -(-((i + 1) * n) // out)
        m[i, a:b] = 1.0 / (b - a)
    return m


def write_graph(net: dict, path: Path, folder: Path) -> dict:
    """Export ``net`` to ``path`` (fp32) with its metadata; returns its record (file relative to ``folder``)."""
    onnx = _require("onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    size, outputs = net["input_size"], net["describe"]["outputs"]
    raw = path.with_name(f".{path.name}.raw")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracing notes
        torch.onnx.export(net["module"], (torch.zeros(1, size, size, 3, dtype=torch.uint8),), str(raw),
                          dynamo=False, opset_version=OPSET, input_names=[INPUT], output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in [INPUT, *outputs]}, do_constant_folding=True)
    model = onnx.load(str(raw))
    os.unlink(raw)
    return _save_with_metadata(model, net, "fp32", path, folder)


def _save_with_metadata(model, net: dict, precision: str, path: Path, folder: Path) -> dict:
    onnx = _require("onnx")
    d = net["describe"]
    props = {"version": __version__, "precision": precision, "task": d["task"], "arch": d["arch"],
             "engine": d["engine"], "input_size": str(d["input_size"]), "weights_sha256": d["weights_sha256"],
             "normalization": json.dumps(d["normalization"]), "outputs": ",".join(d["outputs"])}
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=META_PREFIX + key, value=value)
    model.producer_name, model.producer_version = "fashionrec", __version__
    model.doc_string = (f"fashionrec {d['task']} extractor ({d['arch']}): {INPUT} uint8 (N, {d['input_size']}, "
                        f"{d['input_size']}, 3) RGB -> {', '.join(d['outputs'])}")
    onnx.save(model, str(path))
    return {"file": path.relative_to(folder).as_posix(), "sha256": sha256_file(path), "precision": precision,
            "task": d["task"], "weights_sha256": d["weights_sha256"], "input_size": d["input_size"],
            "outputs": d["outputs"]}


def quantize_graph(net: dict, fp32_path: Path, path: Path, images: np.ndarray, folder: Path) -> dict:
    """Statically quantise the fp32 graph (QDQ, per-channel int8 weights, uint8 activations) on ``images``."""
    onnx = _require("onnx")
    _require("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{INPUT: images[i:i + 16]} for i in range(0, len(images), 16)])

        def get_next(self):
            return next(self._batches, None)

    prepared = path.with_name(f".{path.name}.prep")
    quantized = path.with_name(f".{path.name}.q")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=QUANTIZED_OPS)
    model = onnx.load(str(quantized))
    for tmp in (prepared, quantized):
        os.unlink(tmp)
    return _save_with_metadata(model, net, "int8", path, folder)


# the operators whose int8 kernels pay on a CPU (convolutions and matrix products) and the ones between them
# that keep a tensor in int8 (no dequantise / quantise around each)
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm", "MaxPool", "AveragePool", "Concat", "Relu", "Clip", "Add"]


def catalog_images(root, paths: list[str], size: int, n: int, log=print) -> np.ndarray:
    """Up to ``n`` images at evenly spaced positions of ``paths`` (under ``root``), as the index decoded them:
    uint8 (n, size, size, 3). Undecodable ones are skipped; none decodable is an error."""
    if not paths:
        raise UserError(f"{root}: no images to calibrate on")
    picks = sorted(set(np.linspace(0, len(paths) - 1, min(n, len(paths))).round().astype(int).tolist()))
    batch, bad = [], 0
    for i in picks:
        try:
            img = decode_image(Path(root) / paths[i], target_size=size)
        except (DataError, OSError):
            bad += 1
            continue
        batch.append(np.asarray(resize(img, size), dtype=np.uint8))
    if not batch:
        raise UserError(f"{root}: none of the {len(picks)} calibration images could be decoded")
    if bad:
        log(f"calibration: skipped {bad} undecodable image(s) of {len(picks)}")
    return np.stack(batch)


def calibration_paths(source) -> tuple[Path, list[str]]:
    """A run's calibration images: every image under a folder, or the ``path`` column of a CSV (relative to it)."""
    source = Path(source)
    if source.is_dir():
        return source, [p.relative_to(source).as_posix() for p in find_images(source)]
    if source.suffix.lower() == ".csv" and source.is_file():
        header, rows = read_csv_rows(source)
        if "path" not in header:
            raise UserError(f"{source}:1: no 'path' column; --calibration takes a folder of images or a CSV with one")
        return source.parent, [r["path"] for _, r in rows]
    raise UserError(f"--calibration {source}: not a folder of images nor a CSV file")


def _require(module: str):
    """Import ``module`` (onnx, onnxruntime) or one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"export needs {module}, which is not installed: pip install 'fashionrec[onnx]'") from None
