"""ONNX export and the torch-free runtime (issue 28): every architecture an index holds exports, fp32 graphs agree
with torch, int8 stays within its band, recommend and serve run without importing torch, and a graph changed on
disk, a graph of another index or an export onto a folder that is not ours is refused."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fashionrec.catalog_index import CatalogIndex, build_index, remove_items, update_index
from fashionrec.config import IndexConfig, from_dict
from fashionrec.errors import UserError
from fashionrec.onnx_export import export_onnx
from fashionrec.recommend import Recommender

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SIZE = 64
QUIET = dict(log=lambda *_: None)


def make_run(run_dir: Path, arch: str, task: str, seed: int, engine: str = "torch", embedding: int = 0) -> Path:
    """A run folder (model.json + weights) of a freshly initialised network: export reads it as any run."""
    from fashionrec.engines.factory import build_classifier
    from fashionrec.engines.registry import weights_file
    from fashionrec.runs import sha256_file, write_model_json

    run_dir.mkdir(parents=True)
    classes = [f"{task}_{i}" for i in range(5)]
    info = {"engine": engine, "arch": arch, "task": task, "stage": "test", "classes": classes, "input_size": SIZE,
            "top_k": 3, "weights": weights_file(engine)}
    if embedding:
        from fashionrec.metric_learning.model import Embedder

        net = Embedder(arch, embedding, SIZE, device="cpu", seed=seed)
        info.update(kind="embedding", task="embedding", stage="metric", classes=[], embedding_dim=embedding)
    else:
        net = build_classifier(engine, arch, len(classes), device="cpu", seed=seed)
    net.save_weights(run_dir / info["weights"])
    info.update(num_features=net.num_features, weights_sha256=sha256_file(run_dir / info["weights"]),
                normalization={"mean": list(net.mean), "std": list(net.std), "channels": net.channels,
                               "scale": net.scale})
    write_model_json(run_dir, info)
    return run_dir


def make_index(catalog: Path, runs, out: Path) -> Path:
    cfg = from_dict(IndexConfig, {"catalog": {"format": "csv", "root": str(catalog)},
                                  "extractors": [str(r) for r in runs], "output": str(out), "backend": "brute",
                                  "workers": 0, "device": "cpu"})
    build_index(cfg, progress=False, **QUIET)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from fashionrec.data.synth import synthesize

    root = tmp_path_factory.mktemp("onnx")
    synthesize(root / "synth", n=30, size=SIZE, seed=3, progress=False, workers=1)
    return root


@pytest.fixture(scope="module")
def catalog(work):
    return work / "synth" / "fashion" / "catalog.csv"


@pytest.fixture(scope="module")
def lite_index(work, catalog):
    """One EfficientNet-Lite0 extractor (the fastest to export), fp32 and int8 graphs."""
    out = make_index(catalog, [make_run(work / "runs" / "lite-a", "efficientnet_lite0", "category", 0)],
                     work / "lite-index")
    export_onnx(out, int8=True, calibration_images=16, **QUIET)
    return out


def query_paths(index_dir: Path, n: int = 6) -> list[Path]:
    index = CatalogIndex.load(index_dir)
    return [index.root / it["path"] for it in index.items[:n]]


def test_every_architecture_exports_and_fp32_matches_torch(work, catalog):
    runs = [make_run(work / "runs" / "bn", "bninception", "category", 1),
            make_run(work / "runs" / "alex", "alexnet", "texture", 2),
            make_run(work / "runs" / "lite", "efficientnet_lite0", "colour", 3),
            make_run(work / "runs" / "metric", "efficientnet_lite0", "", 4, embedding=16)]
    out = make_index(catalog, runs, work / "all-index")
    export_onnx(out, **QUIET)
    meta = json.loads((out / "index.json").read_text())
    graphs = meta["onnx"]["graphs"]
    assert set(graphs) == {"fp32"} and len(graphs["fp32"]) == 4
    for g, e in zip(graphs["fp32"], meta["extractors"]):
        assert (out / g["file"]).is_file() and len(g["sha256"]) == 64
        assert g["weights_sha256"] == e["weights_sha256"] and g["task"] == e["task"]
    assert graphs["fp32"][3]["outputs"] == ["features"]  # an embedding predicts no label

    torch_rec = Recommender.load(out, device="cpu", runtime="torch")
    onnx_rec = Recommender.load(out, runtime="auto")  # auto prefers the graphs
    assert torch_rec.runtime == "torch" and onnx_rec.runtime == "onnx-fp32"
    paths = query_paths(out)
    ft, pt = torch_rec.extractor.extract_files(paths)
    fo, po = onnx_rec.extractor.extract_files(paths)
    assert fo.shape == ft.shape == (len(paths), meta["dim"])
    for (a, b), e in zip(meta["blocks"], meta["extractors"]):
        scale = np.abs(ft[:, a:b]).max()
        assert np.abs(fo[:, a:b] - ft[:, a:b]).max() <= 1e-4 * scale, e["arch"]
    for p, q in zip(po, pt):
        assert p.shape == q.shape and np.allclose(p, q, atol=1e-4)
    same = [r["results"] for r in torch_rec.recommend(paths, k=5)]
    assert [[x["id"] for x in r] for r in same] == [[x["id"] for x in r["results"]]
                                                    for r in onnx_rec.recommend(paths, k=5)]


def test_int8_is_within_its_band_and_preferred_when_exported(lite_index):
    torch_rec = Recommender.load(lite_index, device="cpu", runtime="torch")
    int8 = Recommender.load(lite_index, runtime="onnx")
    fp32 = Recommender.load(lite_index, runtime="onnx", onnx_precision="fp32")
    assert int8.runtime == "onnx-int8" and fp32.runtime == "onnx-fp32"
    paths = query_paths(lite_index, 12)
    ft, _ = torch_rec.extractor.extract_files(paths)
    fq, pq = int8.extractor.extract_files(paths)
    cos = (ft * fq).sum(1) / np.linalg.norm(ft, axis=1) / np.linalg.norm(fq, axis=1)
    assert cos.min() > 0.98, cos
    assert np.abs(fq - ft).max() > 1e-4 * np.abs(ft).max()  # quantised: not the fp32 graph under another name
    assert pq[0].shape == (len(paths), 5) and np.allclose(pq[0].sum(1), 1, atol=1e-5)
    # each catalog image still finds itself first among its neighbours
    found = int8.recommend(paths, k=3)
    assert [r["results"][0]["path"] for r in found] == [str(p.relative_to(int8.index.root)) for p in paths]


def test_recommend_and_serve_with_onnx_import_no_torch(lite_index):
    query = query_paths(lite_index, 1)[0]
    code = textwrap.dedent(f"""
        import sys
        from fashionrec.recommend import Recommender
        from fashionrec.serve import create_app
        rec = Recommender.load({str(lite_index)!r})
        assert rec.runtime == "onnx-int8", rec.runtime
        res = rec.recommend([{str(query)!r}], k=3, explain=True)
        assert res[0]["results"][0]["distance"] < 1e-2, res
        from fastapi.testclient import TestClient
        with TestClient(create_app(rec)) as client:
            r = client.post("/recommend", files={{"image": ("q.jpg", open({str(query)!r}, "rb").read())}},
                            data={{"k": "2"}})
            assert r.status_code == 200 and len(r.json()["results"]) == 2, r.text
            assert client.get("/healthz").json()["runtime"] == "onnx-int8"
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("TORCH" if loaded else "NO-TORCH", loaded[:3])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NO-TORCH" in done.stdout, done.stdout


def test_a_graph_changed_on_disk_is_refused(lite_index, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(lite_index, index)
    graph = index / "onnx" / "0-category.int8.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 1
    graph.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"0-category\.int8\.onnx: changed since the index recorded it") as e:
        Recommender.load(index)
    assert "\n" not in str(e.value)
    Recommender.load(index, onnx_precision="fp32")  # the other graphs are untouched
    graph.unlink()
    with pytest.raises(UserError, match="0-category.int8.onnx: cannot be read"):
        Recommender.load(index, runtime="onnx")


def test_a_graph_of_another_index_is_refused(work, catalog, lite_index, tmp_path):
    other = make_index(catalog, [make_run(tmp_path / "runs" / "lite-b", "efficientnet_lite0", "category", 9)],
                       tmp_path / "other")
    export_onnx(other, **QUIET)
    index = tmp_path / "index"
    shutil.copytree(lite_index, index)
    # the other index's graph and its record, copied in: the sha256 agrees, the weights it holds do not
    shutil.copy(other / "onnx" / "0-category.onnx", index / "onnx" / "0-category.onnx")
    meta = json.loads((index / "index.json").read_text())
    meta["onnx"]["graphs"]["fp32"] = json.loads((other / "index.json").read_text())["onnx"]["graphs"]["fp32"]
    (index / "index.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="a graph of another index or run"):
        Recommender.load(index, runtime="onnx", onnx_precision="fp32")


def test_export_onto_a_folder_that_is_not_ours_is_refused_and_nothing_is_lost(lite_index, work, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(lite_index, index, ignore=shutil.ignore_patterns("onnx"))
    meta = json.loads((index / "index.json").read_text())
    del meta["onnx"]
    (index / "index.json").write_text(json.dumps(meta))
    before = (index / "index.json").read_bytes()
    (index / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="files fashionrec did not write"):
        export_onnx(index, **QUIET)
    assert (index / "notes.txt").read_text() == "mine" and (index / "index.json").read_bytes() == before
    assert not (index / "onnx").exists()
    # an index without graphs loads as before: auto runs torch, onnx says what to do
    (index / "notes.txt").unlink()
    assert Recommender.load(index, device="cpu").runtime == "torch"
    with pytest.raises(UserError, match="no ONNX graphs; write them with `fashionrec export"):
        Recommender.load(index, runtime="onnx")
    # a run exports into its own folder; a folder of someone else's files is refused, untouched
    run = work / "runs" / "lite-a"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "photo.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="not a fashionrec ONNX export"):
        export_onnx(run, out=theirs, **QUIET)
    assert [p.name for p in theirs.iterdir()] == ["photo.jpg"]
    written = export_onnx(run, out=tmp_path / "run-onnx", **QUIET)
    record = json.loads((written / "onnx.json").read_text())
    assert record["graphs"]["fp32"][0]["file"] == "model.onnx" and record["input_size"] == SIZE


def test_graphs_survive_editing_the_index_and_bad_records_are_one_line(catalog, tmp_path):
    half = catalog.with_name("half.csv")
    lines = catalog.read_text().splitlines()
    half.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    run = make_run(tmp_path / "runs" / "lite-c", "efficientnet_lite0", "category", 7)
    index = make_index(half, [run], tmp_path / "index")
    export_onnx(index, int8=True, calibration_images=8, **QUIET)
    graphs = json.loads((index / "index.json").read_text())["onnx"]
    cfg = from_dict(IndexConfig, {"catalog": {"format": "csv", "root": str(catalog)}, "extractors": [str(run)],
                                  "output": str(index), "backend": "brute", "workers": 0, "device": "cpu"})
    build_index(cfg, append=True, progress=False, **QUIET)  # the same extractors: their graphs stay
    first, second = (it["path"] for it in CatalogIndex.load(index).items[:2])
    remove_items(cfg, [first], progress=False, **QUIET)
    (tmp_path / "stock.csv").write_text(f"path,price\n{second},12.5\n")
    update_index(cfg, tmp_path / "stock.csv", **QUIET)
    rec = Recommender.load(index)
    assert rec.runtime == "onnx-int8" and len(rec.index.items) == len(lines) - 2
    assert rec.index.items[0]["price"] == "12.5" and rec.index.meta["onnx"] == graphs
    meta = json.loads((index / "index.json").read_text())
    meta["onnx"]["graphs"]["int8"][0]["file"] = "../../elsewhere.onnx"
    (index / "index.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"index.json: key 'onnx.graphs.int8\[0\]' must have a file under onnx/"):
        Recommender.load(index)


def test_export_command(lite_index, tmp_path):
    from click.testing import CliRunner

    from fashionrec.onnx_cli import export

    index = tmp_path / "index"
    shutil.copytree(lite_index, index)
    result = CliRunner().invoke(export, [str(index)])
    assert result.exit_code == 0, result.output
    assert "exported category (efficientnet_lite0): onnx/0-category.onnx" in result.output
    assert set(json.loads((index / "index.json").read_text())["onnx"]["graphs"]) == {"fp32"}  # replaced
    assert not (index / "onnx" / "0-category.int8.onnx").exists()


def test_the_cli_options_offer_what_the_library_takes():
    import fashionrec.onnx_cli as cli
    import fashionrec.onnx_runtime as runtime

    assert cli.RUNTIMES == runtime.RUNTIMES and cli.PRECISIONS == runtime.PRECISIONS


@pytest.mark.mxnet
def test_an_mxnet_run_exports_as_the_same_network(work, catalog, tmp_path):
    run = make_run(tmp_path / "mx", "bninception", "category", 5, engine="mxnet")
    out = make_index(catalog, [run], tmp_path / "mx-index")
    export_onnx(out, **QUIET)
    paths = query_paths(out)
    ft, _ = Recommender.load(out, device="cpu", runtime="torch").extractor.extract_files(paths)
    fo, _ = Recommender.load(out, runtime="onnx").extractor.extract_files(paths)
    assert np.abs(fo - ft).max() <= 1e-4 * np.abs(ft).max()


def test_export_and_recommend_through_the_cli_import_no_torch(built_index, tmp_path):
    """`fashionrec export INDEX --int8`, then `fashionrec recommend --runtime onnx` in a new process: the same
    top result as torch, and torch never imported (the CLI's own imports included)."""
    from click.testing import CliRunner

    from fashionrec.cli import main

    index = tmp_path / "index"
    shutil.copytree(built_index, index)
    done = CliRunner().invoke(main, ["export", str(index), "--int8", "--calibration-images", "8"])
    assert done.exit_code == 0, done.output
    assert json.loads((index / "index.json").read_text())["onnx"]
    query = str(index.resolve())
    code = textwrap.dedent(f"""
        import json, sys
        from fashionrec.cli import main
        from fashionrec.catalog_index import CatalogIndex
        cat = CatalogIndex.load({query!r})
        image = str(cat.root / cat.items[3]["path"])
        try:
            main(["recommend", image, "--index", {query!r}, "-k", "2", "--json", "--runtime", "onnx"],
                 standalone_mode=False)
        finally:
            print("TORCH" if any(m == "torch" or m.startswith("torch.") for m in sys.modules) else "NO-TORCH")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("NO-TORCH"), done.stdout[-500:]
    bad = CliRunner().invoke(main, ["export", str(tmp_path / "missing")])
    assert bad.exit_code == 2


@pytest.mark.skipif(not os.environ.get("FASHIONREC_SERVE_PYTHON"),
                    reason="make test sets FASHIONREC_SERVE_PYTHON to the torch-free .venv-serve it builds")
def test_a_serving_environment_without_torch_recommends_and_serves(lite_index, tmp_path):
    """requirements-serve.txt + the package (no dependencies): torch is not installed at all, and `recommend` and
    the HTTP app answer from the exported graphs."""
    python = os.environ["FASHIONREC_SERVE_PYTHON"]
    missing = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert missing.returncode != 0 and "No module named 'torch'" in missing.stderr
    query = str(query_paths(lite_index, 1)[0])
    done = subprocess.run([python, "-m", "fashionrec", "recommend", query, "--index", str(lite_index), "-k", "3",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)[0]["results"][0]["distance"] < 1e-2
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([python, "-m", "fashionrec", "serve", "--index", str(lite_index), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):  # up to 60 s on a busy machine
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.1)
        assert health["runtime"] == "onnx-int8"
        boundary = "fashionrec-test-boundary"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n2\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
                f"Content-Type: image/jpeg\r\n\r\n").encode()
        body += Path(query).read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(f"{url}/recommend", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=120) as r:
            assert r.status == 200 and len(json.loads(r.read())["results"]) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)
