"""What every benchmark script shares: the machine it ran on, timing summaries, RESULTS.md sections.

Each script owns one section of ``benchmarks/RESULTS.md`` between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` and replaces only that, so the scripts can run in any order.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout

from fashionrec.artifacts import write_text  # noqa: E402

RESULTS_TITLE = "# Benchmark results\n"


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor() or "unknown"


def mem_available_bytes() -> int:
    try:
        m = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        return int(m.group(1)) * 1024
    except (OSError, AttributeError):
        return 0


def gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # noqa: BLE001 - a benchmark must not fail on how it describes the machine
        return "none"


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def machine(*packages: str) -> dict:
    """CPU, cores, RAM, GPU, the 1-minute load average now, and the versions of ``packages``."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu_name(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "numpy": np.__version__, "loadavg_start": loadavg()}
    for name in packages:
        try:
            info[name] = package_version(name)
        except PackageNotFoundError:
            info[name] = "not installed"
    return info


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def machine_line(m: dict) -> str:
    """One markdown sentence: the machine and how busy it was (numbers from a busy machine run slow)."""
    load = f"{m.get('loadavg_start', '?')} / {m.get('loadavg_end', '?')}"
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB RAM, GPU {m['gpu']}. "
            f"Load average (1 min) at start / end: {load} (above ~0.5, other jobs shared the cores).")


def percentiles_ms(seconds) -> dict:
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(a.size)}


def update_results_md(path: Path, name: str, section_body: str):
    """Replace (or append) section ``name`` of ``path``; the other sections stay as they are."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{section_body.strip()}\n{end}\n"
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else RESULTS_TITLE
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_text(path, text)


# ---------------------------------------------------------------------------------- fixtures
# Speed does not depend on what the weights learned, so the benchmarks use freshly initialised
# networks written as ordinary run directories: every load goes through the toolkit's own code.

CATEGORY_CLASSES = ["blouse", "dress", "pants", "pullover", "shirt", "shorts", "skirt", "top", "t-shirt"]
TEXTURE_CLASSES = ["graphic", "plaid", "plain", "spotted", "striped"]


def untrained_run(run_dir, engine: str, arch: str, task: str, input_size: int, seed: int = 0) -> Path:
    """A run directory (model.json + weights) holding a freshly initialised network (kept if it exists)."""
    from fashionrec.data.images import IMAGENET_MEAN, IMAGENET_STD
    from fashionrec.engines.factory import build_classifier
    from fashionrec.engines.registry import weights_file
    from fashionrec.runs import sha256_file, write_model_json

    classes = CATEGORY_CLASSES if task == "category" else TEXTURE_CLASSES
    run_dir = Path(run_dir)
    if (run_dir / "model.json").is_file():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    clf = build_classifier(engine, arch, len(classes), device="cpu", seed=seed)
    weights = run_dir / weights_file(engine)
    clf.save_weights(weights)
    write_model_json(run_dir, {
        "engine": engine, "arch": arch, "task": task, "stage": "benchmark", "classes": classes,
        "input_size": input_size, "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "num_features": clf.num_features, "weights": weights.name, "top_k": 3,
        "weights_sha256": sha256_file(weights)})
    return run_dir


def synthetic_catalog(out_dir, n: int, size: int, seed: int = 0) -> Path:
    """``n`` synthetic catalog JPEGs at ``size`` px; returns the labels CSV (path,category,texture)."""
    from fashionrec.data.synth import synthesize

    out_dir = Path(out_dir)
    csv_path = out_dir / "fashion" / "catalog.csv"
    if not csv_path.is_file():  # every core draws: a GPU machine's 16 make thousands of images in seconds
        synthesize(out_dir, n=n, size=size, seed=seed, progress=False, workers=os.cpu_count())
    return csv_path


def extractor_runs(work, engine: str, size: int) -> list[Path]:
    """Category and texture BN-Inception runs at ``size`` px, as `fashionrec index` uses them."""
    return [untrained_run(Path(work) / f"runs-{engine}-{size}px" / task, engine, "bninception", task, size, seed=i)
            for i, task in enumerate(("category", "texture"))]


# ---------------------------------------------------------------------------------- reports

def comma_list(convert=str, choices=None):
    """An argparse ``type``: ``"a,b"`` -> ``[a, b]``, each item converted and, with ``choices``, one of them."""
    import argparse

    def parse(text: str) -> list:
        try:
            items = [convert(item.strip()) for item in text.split(",") if item.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"comma-separated {convert.__name__} values expected; got {text!r}") from None
        unknown = [item for item in items if choices is not None and item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"each must be one of {', '.join(map(str, choices or ()))}; got {text!r}"
                                             if unknown else "give at least one value")
        return items

    return parse


def add_output_options(parser, name: str) -> None:
    """``--work``, ``--out``, ``--results`` and ``--section``: where a script makes its inputs and writes its
    numbers (a GPU run writes its own section, beside the CPU one)."""
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work",
                        help="where catalogs, runs and indexes are made (kept between runs; git-ignored)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / f"bench_{name}.json")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"),
                        help=f"markdown file whose {name} section is replaced ('' to skip)")
    parser.add_argument("--section", default=name, help=f"the section of --results to replace (default {name})")


def start_report(script: str, args, argv, *packages: str) -> dict:
    """Date, the command as typed, the machine (with ``packages``' versions) and the arguments."""
    command = " ".join([script, *(sys.argv[1:] if argv is None else argv)])
    return {"date": now(), "command": command, "machine": machine(*packages), "started": time.time(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}


def finish_report(report: dict, args, name: str, markdown) -> None:
    """Record the load at the end and the run time, write ``--out`` and section ``--section`` (``name`` where
    the script has no such option) of ``--results``."""
    from fashionrec.artifacts import write_json

    report["machine"]["loadavg_end"] = loadavg()
    report["elapsed_s"] = round(time.time() - report.pop("started"), 1)
    write_json(args.out, report)
    name = getattr(args, "section", None) or name
    if args.results:
        shown = args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out
        body = markdown(report, shown) + f"\n\nRun time {report['elapsed_s'] / 60:.1f} min."
        update_results_md(Path(args.results), name, body)
        print(f"wrote {args.out} and the {name} section of {args.results}")
