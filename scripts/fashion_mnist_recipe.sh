#!/usr/bin/env bash
# Fashion-MNIST from scratch: the paper's recipe and the small-data recipe side by side
# (test accuracy, leave-one-out P@5 of an index of the 10,000 test images, minutes), for
# benchmarks/RESULTS.md. About an hour on a 2-core CPU (two ~30-minute trainings); run it alone.
#   sudo apt-get install dataset-fashion-mnist     # or give the IDX folder: FASHION_MNIST_IDX=~/Downloads
#   scripts/fashion_mnist_recipe.sh [data/fashion-mnist] [runs/fashion-mnist]
# RECIPES="small-data" runs one recipe only. A quick try of the pipeline (minutes, not the benchmark): RECIPE_SET="train.max_epochs=1 train.limit_train_batches=5"
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
for recipe in ${RECIPES:-paper small-data}; do
  config=configs/small-data/pretrain-fashion-mnist.yaml
  [ "$recipe" = paper ] && config=configs/small-data/pretrain-fashion-mnist-paper.yaml
  name=fashion-mnist-$recipe
  start=$(date +%s)
  $FR pretrain -c "$config" --no-progress --force --set "data.root=$DATA/labels.csv" --set "output.dir=$OUT" \
    --set "output.name=$name" ${EXTRA[@]+"${EXTRA[@]}"}
  seconds=$(( $(date +%s) - start ))
  run=$OUT/pretrain/$name
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
