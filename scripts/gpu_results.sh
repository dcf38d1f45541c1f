#!/usr/bin/env bash
# The GPU figures of the README: the benchmark, and PyTorch trained on CIFAR-10
# with the paper's recipe at several image sizes (accuracy against time).
#
#   scripts/gpu_results.sh DATA RESULTS [EPOCHS [TRAIN OPTIONS...]]
#
# DATA is anything `--data` takes (cifar10, or a folder or .zip of CIFAR-10
# images); RESULTS receives bench.md, log.txt and torch-<size>px.json, the
# history of each run. Checkpoints go to $RUNS (default RESULTS/runs); run
# again, the script resumes the runs there. Environment, each empty to skip:
# SIZES (default "71 128 299"); BENCH, image:batch pairs (default
# "299:64 128:128"). RUN_TIMEOUT: seconds per training run (default none; a
# run cut short keeps the epochs it finished). PYTHON: the interpreter
# (default python3). Exits 1 if any step failed.
set -uo pipefail

if [ $# -lt 2 ]; then
    sed -n '5,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
data=$1 results=$2 epochs=${3:-10}
shift $(($# < 3 ? $# : 3))
runs=${RUNS:-$results/runs}
bench=${BENCH-299:64 128:128}
sizes=${SIZES-71 128 299}
mkdir -p "$results" "$runs"
exec > >(tee -a "$results/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
failed=0
python=${PYTHON:-python3}
# shellcheck source=scripts/report_run.sh
source "$(dirname "$0")/report_run.sh"

[ -n "$bench" ] && : > "$results/bench.md"
for pair in $bench; do
    "$python" -m xception_common.bench --image-size "${pair%:*}" --batch-size "${pair#*:}" \
        --steps 20 --warmup 5 --markdown | tee -a "$results/bench.md" || failed=1
    echo >> "$results/bench.md"
done

for size in $sizes; do
    out=$runs/torch-${size}px
    resume=()
    [ -e "$out/config.json" ] && resume=(--resume)
    timeout "${RUN_TIMEOUT:-0}" "$python" -m xception_common.train --framework torch --data "$data" \
        --epochs "$epochs" --image-size "$size" --batch-size 128 --out "$out" "${resume[@]}" "$@" \
        2> "$out.progress"
    report_run "torch ${size}px" $? "$out.progress" "$out/history.json" "$results/torch-${size}px.json"
done
exit "$failed"
