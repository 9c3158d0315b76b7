"""Check on a GPU what tests/test_feeding.py checks on the CPU: the feeding paths that only CUDA takes.

    python scripts/check_cuda_feeding.py [--out benchmarks/gpu/check_cuda_feeding.json]   # ~20 s (scripts/gpu_check.sh)

1. the loader's slots page-locked in place (``transfer.pin``, cudaHostRegister): a lent batch reads as pinned;
2. batches lent from those slots (``borrow=True``, 2 workers, 3 epochs, 2 slots) reach the GPU with the bytes the
   copying loader gives (their sums on the device against the host's), so no slot was refilled under a copy;
3. the epoch's sums tallied on the GPU (``sync=False``) against the host's sums of ``float(loss)``, on two identical
   classifiers over the same batches (deterministic cuDNN): equal.

Exits 1 when a check fails; without CUDA it says so and exits 0 (nothing to check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchlib import REPO, synthetic_catalog


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cpu: the rehearsal (every check but the page-locking, which needs CUDA)")
    args = p.parse_args(argv)
    import torch

    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("check_cuda_feeding: no CUDA device here; nothing to check")
        return 0
    from fashionrec.data.catalog import read_labels_csv
    from fashionrec.data.loader import BatchLoader
    from fashionrec.engines.factory import build_classifier
    from fashionrec.engines.torch.transfer import pin, to_device
    from fashionrec.training.tally import EpochTally

    csv_path = synthetic_catalog(args.work / "catalog-feeding-160", n=160, size=160)
    manifest = read_labels_csv(csv_path.parent / "category.csv", task="category")
    report, ok = {}, True
    kw = dict(input_size=96, batch_size=16, shuffle=True, seed=3, workers=2, prefetch=2, limit_batches=6)

    want = []
    loader = BatchLoader(manifest, **kw)
    for e in range(3):
        want += [int(x.astype(np.int64).sum()) for x, _, _ in loader.epoch(e)]
    loader.close()
    loader = BatchLoader(manifest, borrow=True, pin=pin, **kw)
    got, pinned = [], []
    for e in range(3):
        for x, _, _ in loader.epoch(e):
            t = torch.from_numpy(x)
            pinned.append(bool(t.is_pinned()))
            got.append(int(to_device(t, dev).to(torch.int64).sum()))
    loader.close()
    report["slots_pinned"] = all(pinned) if dev == "cuda" else None
    report["lent_batches_equal"] = got == want
    ok &= report["slots_pinned"] is not False and report["lent_batches_equal"]

    torch.backends.cudnn.deterministic = True
    batches = [(x.copy(), y.copy()) for x, y, _ in BatchLoader(manifest, 96, 16, limit_batches=5).epoch(0)]

    def classifier():
        clf = build_classifier("torch", "bninception", len(manifest.classes), device=dev, seed=4)
        clf.configure_optimizer("sgd", 0.01, 0.0, 0.9)
        clf.set_training_precision("fp32")
        return clf

    host, device = classifier(), classifier()
    loss_sum, correct, n = 0.0, 0, 0
    tally = EpochTally()
    for step, (x, y) in enumerate(batches):
        host.set_seed(step)
        loss, logits = host.train_step(x, y)
        loss_sum, correct, n = loss_sum + loss * len(y), correct + int((logits.argmax(1) == y).sum()), n + len(y)
        device.set_seed(step)
        t_loss, t_logits = device.train_step(x, y, sync=False)
        tally.add(t_loss, len(y), t_logits, y)
    report["host_sums"], report["tally_sums"] = [loss_sum, correct, n], list(tally.read())
    report["tally_equal"] = report["tally_sums"] == report["host_sums"]
    ok &= report["tally_equal"]
    report["ok"] = bool(ok)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
