"""Load test `fashionrec serve`: a fixed number of requests from a second process on loopback.

    python scripts/bench_serve.py --quick        # ~1 minute
    python scripts/bench_serve.py                # 224 px, two BN-Inceptions, 2,000 items (< 5 min)
    python scripts/bench_serve.py --index DIR    # an index of your own

The server runs as its own process (``python -m fashionrec serve``); this script is the client.
Three rounds: uploads one at a time (``POST /recommend``, no concurrency: the latency a lone
customer sees), uploads from ``--concurrency`` clients at once (where the server's micro-batching
shares forward passes), and ``GET /items/{id}/similar`` from as many clients. Every request must
succeed; the script fails otherwise. Requests/s, p50/p95 latency and failures go to ``--out``
(JSON) and the serve section of ``benchmarks/RESULTS.md``.

Without ``--index`` the index is made as ``bench_recommend.py`` makes it: freshly initialised
extractors (speed does not depend on what they learned) over synthetic JPEGs.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from benchlib import add_output_options, finish_report, machine_line, percentiles_ms, start_report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(fields: dict, file_field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f'Content-Type: image/jpeg\r\n\r\n'.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def timed(request: urllib.request.Request) -> tuple[float, int]:
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            json.loads(r.read())
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    return time.perf_counter() - t, status


def run_round(name: str, requests: list[urllib.request.Request], concurrency: int) -> dict:
    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(timed, requests))
    wall = time.perf_counter() - t
    latencies = [s for s, _ in results]
    failed = sum(1 for _, status in results if status != 200)
    row = {"round": name, "requests": len(requests), "concurrency": concurrency, "failed": failed,
           "requests_per_s": round(len(requests) / wall, 2), **percentiles_ms(latencies)}
    print(row, flush=True)
    return row


def start_server(index_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "fashionrec", "serve", "--index", str(index_dir),
                             "--port", str(port), "--device", "cpu"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not come up in 180 s")


def markdown(report: dict, out_path) -> str:
    a = report["args"]
    lines = ["## Serving (HTTP load test)", "",
             f"`{report['command']}` on {report['date'][:10]}; full numbers in `{out_path}`.", "",
             machine_line(report["machine"]) + " Server and client share the machine's cores.", "",
             f"`fashionrec serve` over {report['index']['items']:,} items x {report['index']['dim']}-d "
             f"({report['index']['describe']}); the client is a second process on loopback, k={a['k']}.", "",
             "| round | requests | concurrency | req/s | p50 ms | p95 ms | failed |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["rounds"]:
        lines.append(f"| {r['round']} | {r['requests']} | {r['concurrency']} | {r['requests_per_s']:.1f} | "
                     f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['failed']} |")
    rounds = {r["round"]: r for r in report["rounds"]}
    gain = rounds["upload, concurrent"]["requests_per_s"] / rounds["upload, one at a time"]["requests_per_s"]
    lines += ["", f"- Concurrent uploads are served at {gain:.2f}x the one-at-a-time rate: requests that arrive "
              "together share a forward pass (micro-batching), which costs less per image than one pass each.",
              "- `similar` needs no forward pass (the item's features are in the index): its cost is the search."]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64 px, fewer requests (~1 min)")
    p.add_argument("--index", type=Path, help="serve this index instead of making one")
    p.add_argument("--size", type=int, default=224, help="input size of the made index's networks")
    p.add_argument("--catalog", type=int, default=2000, help="items in the made index")
    p.add_argument("--images", type=int, default=90, help="real JPEGs extracted into the made index")
    p.add_argument("--uploads", type=int, default=160, help="POST /recommend requests (concurrent round)")
    p.add_argument("--similar", type=int, default=400, help="GET /items/{id}/similar requests")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("-k", type=int, default=5)
    add_output_options(p, "serve")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.uploads, args.similar = 64, 48, 100
    if min(args.uploads, args.similar, args.concurrency) < 1:
        p.error("--uploads, --similar and --concurrency must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    from bench_recommend import build_catalog_index, query_images

    report = start_report("bench_serve.py", args, argv, "torch", "fastapi", "uvicorn")
    if args.index:
        index_dir, describe = args.index, f"`{args.index}`"
    else:
        made = SimpleNamespace(images=args.images, size=args.size, engine="torch", catalog=args.catalog,
                               backend="auto", device="cpu")  # serve runs on the CPU server it benchmarks
        index_dir = build_catalog_index(args.work, made)
        describe = f"two BN-Inception extractors at {args.size} px, {args.images} synthetic JPEGs grown to the catalog"
    meta = json.loads((index_dir / "index.json").read_text())
    report["index"] = {"dir": str(index_dir), "items": meta["n_items"], "dim": meta["dim"], "describe": describe}
    queries = [q.read_bytes() for q in query_images(args.work, 45, args.size if not args.index else 224)]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(index_dir, port)
    try:
        def upload(i):
            body, ctype = multipart({"k": args.k}, "image", f"q{i}.jpg", queries[i % len(queries)])
            return urllib.request.Request(base + "/recommend", data=body, headers={"Content-Type": ctype})

        rng = random.Random(0)
        run_round("warm-up", [upload(i) for i in range(4)], 1)
        rounds = [run_round("upload, one at a time", [upload(i) for i in range(max(8, args.uploads // 4))], 1),
                  run_round("upload, concurrent", [upload(i) for i in range(args.uploads)], args.concurrency),
                  run_round("similar, concurrent",
                            [urllib.request.Request(f"{base}/items/{rng.randrange(meta['n_items'])}/similar?k={args.k}")
                             for _ in range(args.similar)], args.concurrency)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    report["rounds"] = rounds
    finish_report(report, args, "serve", markdown)
    failed = sum(r["failed"] for r in rounds)
    if failed:
        raise SystemExit(f"{failed} request(s) failed")
    return report


if __name__ == "__main__":
    main()
