#!/usr/bin/env bash
# The GPU figures of the README: the benchmark, and PyTorch trained on CIFAR-10
# with the paper's recipe at several image sizes (accuracy against time).
#
#   scripts/gpu_results.sh DATA RESULTS [EPOCHS] [TRAIN OPTIONS...]
#
# DATA is anything `--data` takes (cifar10, or a folder or .zip of CIFAR-10
# images); RESULTS receives bench.md, log.txt and torch-<size>px.json, the
# history of each run. Checkpoints go to $RUNS (default RESULTS/runs).
# Environment: SIZES (default "71 128 299"); BENCH, image:batch pairs (default
# "299:64 128:128"); RUN_TIMEOUT, seconds per training run (default none: a
# run cut short keeps the epochs it finished).
set -uo pipefail

if [ $# -lt 2 ]; then
    sed -n '4,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
data=$1 results=$2 epochs=${3:-10}
shift $(($# < 3 ? $# : 3))
runs=${RUNS:-$results/runs}
mkdir -p "$results" "$runs"
exec > >(tee -a "$results/log.txt") 2>&1
export PYTHONUNBUFFERED=1

for pair in ${BENCH-299:64 128:128}; do
    python -m xception_common.bench --image-size "${pair%:*}" --batch-size "${pair#*:}" \
        --steps 20 --warmup 5 --markdown | tee -a "$results/bench.md"
    echo >> "$results/bench.md"
done

for size in ${SIZES:-71 128 299}; do
    out=$runs/torch-${size}px
    timeout "${RUN_TIMEOUT:-0}" python -m xception_common.train --framework torch --data "$data" \
        --epochs "$epochs" --image-size "$size" --batch-size 128 --out "$out" "$@" 2> "$out.progress"
    echo "torch ${size}px: exit $?"
    cp "$out/history.json" "$results/torch-${size}px.json" 2>/dev/null
done
