"""The benchmark scripts run end to end at tiny sizes and write what RESULTS.md shows.

Speed itself is not asserted here (that is what the scripts are for); these tests keep the
scripts working: set-up through the toolkit's own readers and run directories, every phase
measured, the JSON complete and the markdown section in place.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
# mxnet is an extra: without it the extraction benchmark measures torch alone.
ENGINES = ["torch", "mxnet"] if importlib.util.find_spec("mxnet") else ["torch"]


def run_script(name, *args):
    proc = subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def section(results_md: Path, name: str) -> str:
    text = results_md.read_text(encoding="utf-8")
    assert text.startswith("# Benchmark results")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1
    return text.split(start, 1)[1].split(end, 1)[0]


@pytest.mark.slow
def test_bench_recommend_measures_cold_warm_and_each_phase(tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "RESULTS.md"
    run_script("bench_recommend.py", "--size", 64, "--catalog", 300, "--images", 45, "--queries", 4,
               "--cold-runs", 1, "--work", tmp_path / "work", "--out", out, "--results", md)
    report = json.loads(out.read_text())
    assert report["backend_resolved"] == "brute" and report["dim"] == 2048
    phases = report["cold"]["phases_s"]
    for key in ("import_library_s", "index_load_s", "model_build_load_s", "forward_first_s", "search_s"):
        assert phases[key] > 0
    assert report["cold"]["p50_s"] > phases["import_library_s"]
    assert report["warm"]["single"]["n"] == 4 and report["warm"]["single"]["p50_ms"] > 0
    text = section(md, "recommend")
    assert "cold" in text and "warm" in text and "| search |" in text


@pytest.mark.slow
def test_bench_extract_and_train_report_ratios(tmp_path):
    md = tmp_path / "RESULTS.md"
    run_script("bench_extract.py", "--size", 32, "--images", 48, "--batch-size", 16, "--engines", ",".join(ENGINES),
               "--workers", "0,1", "--repeats", 1, "--work", tmp_path / "work", "--out", tmp_path / "e.json",
               "--results", md)
    extract = json.loads((tmp_path / "e.json").read_text())
    assert set(extract["engines"]) == set(ENGINES)
    for engine in ENGINES:
        r = extract["engines"][engine]
        assert r["forward_img_s"] > 0 and set(r["pipeline_img_s"]) == {"0", "1"}
        assert r["ratio"] > 0 and r["best_workers"] in (0, 1)
    run_script("bench_train.py", "--size", 32, "--batches", 2, "--images", 180, "--engines", "torch",
               "--archs", "bninception", "--work", tmp_path / "work", "--out", tmp_path / "t.json", "--results", md)
    train = json.loads((tmp_path / "t.json").read_text())
    (r,) = train["results"]
    assert r["optimizer"] == "adam" and r["batch_size"] == 32  # the committed paper config's settings
    assert r["compile"] == "eager"
    assert r["step_img_s"] > 0 and r["pipeline_img_s"] > 0
    # both sections in one file, neither overwriting the other
    assert "| torch |" in section(md, "extract") and "| torch | bninception |" in section(md, "train")


@pytest.mark.slow
def test_bench_knn_quick_path_on_given_features(tmp_path):
    import numpy as np

    feats = np.abs(np.random.default_rng(0).standard_normal((600, 64))).astype(np.float32)
    np.save(tmp_path / "f.npy", feats)
    md = tmp_path / "RESULTS.md"
    run_script("bench_knn.py", "--features", tmp_path / "f.npy", "--sizes", 500, "--queries", 50,
               "--backends", "brute,balltree,faiss-hnsw", "--budget", 0.3, "--bandwidth-gib", 0.05,
               "--out", tmp_path / "k.json", "--results", md)
    report = json.loads((tmp_path / "k.json").read_text())
    rows = {r["backend"]: r for r in report["results"]}
    assert rows["brute"]["recall_at_5"] == 1.0 and rows["balltree"]["recall_at_5"] == 1.0
    assert rows["faiss-hnsw"]["recall_at_5"] > 0.8
    assert "## k-NN search" in section(md, "knn")


@pytest.mark.slow
def test_bench_knn_filtered_mode_times_filters_against_unfiltered(tmp_path):
    md = tmp_path / "RESULTS.md"
    run_script("bench_knn.py", "--filtered", "--sizes", 1500, "--dim", 32, "--queries", 20, "--budget", 0.05,
               "--shares", "0.5,0.01", "--out", tmp_path / "f.json", "--results", md)
    report = json.loads((tmp_path / "f.json").read_text())
    assert report["mode"] == "filtered" and {r["backend"] for r in report["results"]} == {
        "brute", "faiss-ivf", "faiss-ivfpq"}
    assert {r["share"] for r in report["results"]} == {None, 0.5, 0.01}
    assert all(r["full_rows"] == 1.0 and r["single_ms_p50"] > 0 for r in report["results"])
    brute = {r["share"]: r for r in report["results"] if r["backend"] == "brute"}
    assert all(r["recall_at_5"] == 1.0 for r in brute.values())  # exact, against an independent reference
    assert brute[0.01]["allowed"] == 15 and brute[0.01]["route"] == "scan"
    text = section(md, "knn-filtered")
    assert "| 1,500 | brute | exact | 50% | 750 |" in text and "Targets:" in text


@pytest.mark.slow
def test_bench_serve_load_test_has_no_failed_request(tmp_path):
    md = tmp_path / "RESULTS.md"
    run_script("bench_serve.py", "--size", 32, "--catalog", 200, "--images", 45, "--uploads", 8, "--similar", 16,
               "--concurrency", 4, "--work", tmp_path / "work", "--out", tmp_path / "s.json", "--results", md)
    report = json.loads((tmp_path / "s.json").read_text())
    rounds = {r["round"]: r for r in report["rounds"]}
    assert set(rounds) == {"upload, one at a time", "upload, concurrent", "similar, concurrent"}
    assert all(r["failed"] == 0 and r["requests_per_s"] > 0 for r in rounds.values())
    assert rounds["upload, concurrent"]["requests"] == 8 and rounds["similar, concurrent"]["requests"] == 16
    assert "| similar, concurrent |" in section(md, "serve")


@pytest.mark.slow
def test_bench_lite0_compares_both_extractor_sets_in_one_run(tmp_path):
    out, md = tmp_path / "l.json", tmp_path / "RESULTS.md"
    run_script("bench_lite0.py", "--size", 64, "--images", 32, "--rounds", 1, "--queries", 3,
               "--work", tmp_path / "work", "--out", out, "--results", md)
    report = json.loads(out.read_text())
    assert len(report["results"]) == 2 and all(r["index_images_per_s"] > 0 and r["recommend"]["n"] == 3
                                               for r in report["results"].values())
    assert report["ratios"]["index_images_per_s"] > 0 and report["ratios"]["recommend_p50"] > 0
    assert "EfficientNet-Lite0" in section(md, "lite0")


@pytest.mark.slow
def test_bench_onnx_compares_the_runtimes_in_one_run(tmp_path, built_index):
    out, md = tmp_path / "o.json", tmp_path / "RESULTS.md"
    run_script("bench_onnx.py", "--size", 64, "--catalog", 300, "--images", 45, "--queries", 4, "--cold-runs", 1,
               "--uploads", 8, "--calibration-images", 8, "--quality-index", built_index,
               "--work", tmp_path / "work", "--out", out, "--results", md)
    report = json.loads(out.read_text())
    assert report["cold"] and report["warm"] and report["serve"] and len(report["quality"]) == 1
    assert "ONNX Runtime" in section(md, "onnx")


def test_check_cuda_feeding_rehearses_its_checks_on_the_cpu(tmp_path):
    """The GPU check's feeding step (lent batches, the device tally) runs its checks on the CPU too: the script
    the GPU machine runs has been run before it gets there."""
    out = tmp_path / "feeding.json"
    run_script("check_cuda_feeding.py", "--device", "cpu", "--work", tmp_path / "work", "--out", out)
    report = json.loads(out.read_text())
    assert report["ok"] and report["lent_batches_equal"] and report["tally_equal"]
    assert report["slots_pinned"] is None  # page-locking needs CUDA
    assert report["tally_sums"][2] == 80  # five batches of 16
