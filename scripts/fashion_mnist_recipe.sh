#!/usr/bin/env bash
# Fashion-MNIST: the paper's recipe and the small-data recipe from scratch, ImageNet EfficientNet-Lite0 with
# no training at all (an index of its pooled features: P@5 only) and Lite0 fine-tuned
# (configs/small-data/finetune-pretrained-fashion-mnist.yaml) side by side (test accuracy, leave-one-out
# P@5 of an index of the 10,000 test images, minutes), for benchmarks/RESULTS.md. About 1.5 hours on a
# 2-core CPU (three ~30-minute trainings); run it alone. The pretrained recipes need
# `pip install 'fashionrec[pretrained]'`. The same script reruns the table on any labelled photo set
# laid out as scripts/fashion_mnist_to_csv.py writes it (labels.csv with a split column, catalog-test.csv).
#   sudo apt-get install dataset-fashion-mnist     # or give the IDX folder: FASHION_MNIST_IDX=~/Downloads
#   scripts/fashion_mnist_recipe.sh [data/fashion-mnist] [runs/fashion-mnist]
# RECIPES="small-data pretrained" picks recipes (paper, small-data, off-the-shelf, pretrained). A quick try of the pipeline (minutes, not the benchmark): RECIPE_SET="train.max_epochs=1 train.limit_train_batches=5"
set -euo pipefail
DATA=${1:-data/fashion-mnist}
OUT=${2:-runs/fashion-mnist}
FR=${FASHIONREC:-fashionrec}
if [ ! -f "$DATA/labels.csv" ]; then
  python scripts/fashion_mnist_to_csv.py "$DATA" --source "${FASHION_MNIST_IDX:-/usr/share/datasets/fashion-mnist}"
fi
mkdir -p "$OUT"
EXTRA=()
for kv in ${RECIPE_SET:-}; do EXTRA+=(--set "$kv"); done
LITE0=$OUT/imported/efficientnet_lite0
for recipe in ${RECIPES:-paper small-data off-the-shelf pretrained}; do
  name=fashion-mnist-$recipe
  if [ "$recipe" = off-the-shelf ] || [ "$recipe" = pretrained ]; then
    [ -f "$LITE0/model.json" ] || $FR import-weights --arch efficientnet_lite0 --out "$LITE0"
  fi
  start=$(date +%s)
  if [ "$recipe" = off-the-shelf ]; then  # no training: the ImageNet network's pooled features as they are
    run=$LITE0
    $FR index --catalog "$DATA/catalog-test.csv" --extractor "$run" --out "$OUT/index-$recipe" --no-progress \
      --set backend=brute --set workers=1
    $FR evaluate --index "$OUT/index-$recipe" --labels category --no-progress > "$OUT/$name-retrieval.txt"
    python - "$OUT/index-$recipe" "$recipe" "$(( $(date +%s) - start ))" <<'PY' | tee -a "$OUT/results.md"
import json, sys
index, recipe, seconds = sys.argv[1:]
ret = json.load(open(f"{index}/retrieval.json"))["variants"]["concat raw"]["category"]
print(f"| {recipe} | - | {ret['precision@5']:.4f} | {ret['map@5']:.4f} | 0 | 0 (indexing {int(seconds) / 60:.1f}) |")
PY
    continue
  fi
  case $recipe in
    paper) config=configs/small-data/pretrain-fashion-mnist-paper.yaml; stage=pretrain; init=() ;;
    pretrained) config=configs/small-data/finetune-pretrained-fashion-mnist.yaml; stage=finetune; init=(--init "$LITE0") ;;
    *) config=configs/small-data/pretrain-fashion-mnist.yaml; stage=pretrain; init=() ;;
  esac
  $FR $stage -c "$config" --no-progress --force --set "data.root=$DATA/labels.csv" --set "output.dir=$OUT" \
    --set "output.name=$name" ${init[@]+"${init[@]}"} ${EXTRA[@]+"${EXTRA[@]}"}
  seconds=$(( $(date +%s) - start ))
  run=$OUT/$stage/$name
  $FR evaluate "$run" --split test --no-progress > "$OUT/$name-test.txt"
  $FR index -c configs/index.yaml --no-progress --set "catalog.root=$DATA/catalog-test.csv" \
    --set "extractors=[$run]" --set "output=$OUT/index-$recipe" --set backend=brute --set workers=1
  $FR evaluate --index "$OUT/index-$recipe" --no-progress > "$OUT/$name-retrieval.txt"
  python - "$run" "$OUT/index-$recipe" "$recipe" "$seconds" <<'PY' | tee -a "$OUT/results.md"
import json, sys
run, index, recipe, seconds = sys.argv[1:]
test = json.load(open(f"{run}/metrics-test.json"))
ret = json.load(open(f"{index}/retrieval.json"))["variants"]["concat raw"]["category"]
epochs = json.load(open(f"{run}/model.json"))["epochs"]
print(f"| {recipe} | {test['accuracy']:.4f} | {ret['precision@5']:.4f} | {ret['map@5']:.4f} | {epochs} | {int(seconds) / 60:.1f} |")
PY
done
echo "| recipe | test accuracy | P@5 (test, leave-one-out) | mAP@5 | epochs | minutes (training) |  <- the header of $OUT/results.md"
