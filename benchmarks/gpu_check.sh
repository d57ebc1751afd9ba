#!/usr/bin/env bash
# The GPU paths in at most 8 minutes, one line each: the GPU-marked tests, the throughput benchmark with the
# transformers backend and with vLLM, and a two-process NCCL data-parallel run. For a machine with a CUDA
# build of torch (and vLLM for its line); missing packages the machine lacks (trl, gymnasium, pluggy, ...) can be
# installed from wheels in .whl/ (see docs/guides/scaling.md). Logs go to $OUT (or /tmp/gpu_check).
#
#     bash benchmarks/gpu_check.sh                 # from the repository root
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOGS=${OUT:-/tmp/gpu_check}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
$PY -m pip install -q --no-deps --no-build-isolation -e . plugins/llamagym-blackjack >"$LOGS/install.log" 2>&1 \
    || { echo "install: FAILED (see $LOGS/install.log)"; exit 1; }
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('device:', torch.cuda.get_device_name(0))" \
    || exit 1

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, print one line
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    local took=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        echo "$name: ok in ${took}s: $(grep -v '^\s*$' "$LOGS/$name.log" | tail -1)"
    else
        echo "$name: FAILED (exit $rc) in ${took}s: $(grep -v '^\s*$' "$LOGS/$name.log" | tail -1)"
    fi
}

step gpu-tests 120 $PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
step throughput-transformers 120 $PY benchmarks/throughput.py --device cuda --episodes 64 --seed-episodes 4 \
    --skip-ablations --out "$LOGS/throughput-cuda.json"
step throughput-vllm 150 $PY benchmarks/generation_backends.py --device cuda --backends transformers vllm \
    --episodes 64 --out "$LOGS/generation-backends-cuda.json"
step nccl-two-processes 90 $PY -m llamagym run --agent blackjack --env Blackjack-v1 --episodes 64 \
    --num-processes 2 --device cuda --overwrite -o "$LOGS/nccl-run" -q
