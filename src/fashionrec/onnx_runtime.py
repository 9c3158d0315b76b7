"""Query extraction on ONNX Runtime: the index's graphs (:mod:`fashionrec.onnx_export`), no torch.

:class:`OnnxExtractor` has what :class:`~fashionrec.recommend.Recommender` and the server ask of
an extractor (``input_size``, ``blocks``, ``dim``, ``tasks``, ``preprocess``, ``extract_batch``,
``extract_images``, ``extract_files``), and imports neither torch nor any run: the graphs hold the
networks and their input conventions, so an index folder with graphs is all a server needs.

Each graph is read once, its sha256 checked against ``index.json`` (a graph changed on disk is
refused, one line naming the file) and its recorded weights against the index's extractor (a
graph copied from another index is refused), then handed to ONNX Runtime from those same bytes.

Which runtime and which graphs (:func:`choose_runtime`): ``runtime="auto"`` takes ONNX when the
index has graphs and onnxruntime is installed (and neither other runs nor a CUDA device were
asked for), else torch. ``precision="auto"`` takes the int8 graphs when the export made them
(``export --int8``: asked for, so preferred), else fp32.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import numpy as np

from .engines.base import check_images
from .errors import UserError
from .label_metrics import softmax
from .query_images import QueryImages

RUNTIMES = ("auto", "onnx", "torch")
PRECISIONS = ("auto", "fp32", "int8")
META_PREFIX = "fashionrec."  # the graphs' metadata_props (onnx_export writes them)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def index_graphs(meta: dict, path) -> dict[str, list[dict]]:
    """index.json's ``onnx.graphs`` ({precision: one record per extractor}), checked; {} for an index without
    graphs. A damaged or hand-edited record is one line naming the file and the key."""
    record = meta.get("onnx")
    if record is None:
        return {}
    graphs = record.get("graphs") if isinstance(record, dict) else None
    if not isinstance(graphs, dict) or not graphs:
        raise UserError(f"{path}: key 'onnx.graphs' must map fp32 / int8 to a list of graphs; export again")
    n = len(meta["extractors"])
    for precision, entries in graphs.items():
        key = f"onnx.graphs.{precision}"
        if precision not in PRECISIONS[1:] or not isinstance(entries, list) or len(entries) != n:
            raise UserError(f"{path}: key '{key}' must be fp32 or int8 with one graph per extractor ({n}); export "
                            f"again")
        for i, g in enumerate(entries):
            file = g.get("file") if isinstance(g, dict) else None
            if not (isinstance(file, str) and re.fullmatch(r"onnx/[^/\\]+\.onnx", file)
                    and isinstance(g.get("sha256"), str) and _SHA256.fullmatch(g["sha256"])):
                raise UserError(f"{path}: key '{key}[{i}]' must have a file under onnx/ and its sha256; export again")
    return graphs


def has_graphs(index) -> bool:
    return bool(index.meta.get("onnx"))


def choose_runtime(index, runtime: str = "auto", extractors=None, device: str = "auto") -> str:
    """``onnx`` or ``torch`` for a query extractor of ``index``; a request that cannot hold is one line."""
    if runtime not in RUNTIMES:
        raise UserError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if runtime == "torch":
        return "torch"
    found = has_graphs(index) and not extractors and device != "cuda"
    if runtime == "auto":
        return "onnx" if found and importlib.util.find_spec("onnxruntime") is not None else "torch"
    if extractors:
        raise UserError("runtime onnx runs the index's own graphs; other extractor runs need runtime torch")
    if device == "cuda":
        raise UserError("runtime onnx runs on the CPU; --device cuda needs runtime torch")
    if not has_graphs(index):
        raise UserError(f"{index.directory}: the index has no ONNX graphs; write them with `fashionrec export "
                        f"{index.directory}` (add --int8 for the quantised ones) or use runtime torch")
    return "onnx"


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise UserError("runtime onnx needs onnxruntime, which is not installed: pip install 'fashionrec[serve]'"
                        ) from None
    return onnxruntime


class OnnxExtractor(QueryImages):
    """The index's extractors as ONNX Runtime sessions; ``precision`` ``fp32`` or ``int8`` (``auto``: int8 when
    the index has it)."""

    def __init__(self, index, precision: str = "auto", threads: int | None = None):
        if precision not in PRECISIONS:
            raise UserError(f"ONNX precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        meta_path = Path(index.directory) / "index.json"
        graphs = index_graphs(index.meta, meta_path)
        if not graphs:
            raise UserError(f"{index.directory}: the index has no ONNX graphs; write them with `fashionrec export "
                            f"{index.directory}`")
        if precision == "auto":
            precision = "int8" if "int8" in graphs else "fp32"
        if precision not in graphs:
            raise UserError(f"{index.directory}: the index has no {precision} graphs (it has "
                            f"{', '.join(graphs)}); export with{'' if precision == 'int8' else 'out'} --int8")
        ort = _ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle workers sleep instead of spinning: on a few shared cores a spinning pool takes the CPU from the
        # decoder, the server's threads and other processes (2 busy cores: one BN-Inception int8 at 224 px took
        # 17.8 ms against 24.3 spinning, fp32 31.7 against 53.2)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        extractors = index.meta["extractors"]
        self.precision, self.runtime = precision, f"onnx-{precision}"
        loaded = [self._session(ort, options, Path(index.directory), g, e, i)
                  for i, (g, e) in enumerate(zip(graphs[precision], extractors))]
        sizes = sorted({size for *_, size in loaded})
        if len(sizes) != 1:
            raise UserError(f"{index.directory}: the graphs take different input sizes ({sizes} px); export again")
        self.input_size = sizes[0]
        self.sessions = [(session, outputs) for session, outputs, _ in loaded]
        self.tasks = [e["task"] for e in extractors]
        self.blocks = [tuple(b) for b in index.meta["blocks"]]
        self.dim = int(index.meta["dim"])

    def _session(self, ort, options, directory: Path, record: dict, extractor: dict, i: int):
        path = directory / record["file"]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UserError(f"{path}: cannot be read ({e.strerror or type(e).__name__}); export the index's graphs "
                            f"again with `fashionrec export {directory}`") from None
        have = hashlib.sha256(data).hexdigest()
        if have != record["sha256"]:
            raise UserError(f"{path}: changed since the index recorded it (sha256 {have[:12]}, index.json has "
                            f"{record['sha256'][:12]}); export again with `fashionrec export {directory}`")
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ONNX Runtime's own errors: a bad graph, one line
            raise UserError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:120]})") from None
        props = session.get_modelmeta().custom_metadata_map
        weights = props.get(META_PREFIX + "weights_sha256", "")
        if weights != extractor["weights_sha256"] or props.get(META_PREFIX + "task") != extractor["task"]:
            raise UserError(f"{path}: a graph of another index or run ({props.get(META_PREFIX + 'task', '?')}, "
                            f"weights sha256 {weights[:12] or 'none'}), but extractor {i} of {directory} is "
                            f"{extractor['task']} with weights {extractor['weights_sha256'][:12]}; export again")
        shape = session.get_inputs()[0].shape
        size = int(props.get(META_PREFIX + "input_size", 0))
        if len(shape) != 4 or shape[1:] != [size, size, 3]:
            raise UserError(f"{path}: input {shape} is not uint8 (N, {size}, {size}, 3); export again")
        return session, [o.name for o in session.get_outputs()], size

    def extract_batch(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """uint8 images (N, H, W, 3) -> (concatenated features (N, dim), [class probabilities per extractor])."""
        x = check_images(x)
        feats, probs = [], []
        for session, outputs in self.sessions:
            result = dict(zip(outputs, session.run(None, {"images": x})))
            feats.append(np.asarray(result["features"], np.float32))
            logits = result.get("logits")
            probs.append(softmax(logits) if logits is not None else np.zeros((len(x), 0), np.float32))
        return np.concatenate(feats, axis=1), probs
