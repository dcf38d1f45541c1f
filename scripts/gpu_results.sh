#!/usr/bin/env bash
# The GPU figures of the README: the benchmark, and PyTorch trained on CIFAR-10
# with the paper's recipe at several image sizes (accuracy against time).
#
#   scripts/gpu_results.sh DATA RESULTS [EPOCHS [TRAIN OPTIONS...]]
#
# DATA is anything `--data` takes (cifar10, or a folder or .zip of CIFAR-10
# images); RESULTS receives bench.md, log.txt and torch-<size>px.json (.npz
# beside it once the run has finished), the result file of each run, one size
# after another. A run cut short by RUN_TIMEOUT keeps the epochs it finished
# in its result file: run again with more epochs, it resumes. Environment
# (and scripts/common.sh's), each empty to skip: SIZES (default
# "71 128 299"); BENCH, image:batch pairs (default "299:64 128:128"). Exits 1
# if any step failed.
set -uo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"
[ $# -lt 2 ] && usage
begin "$1" "$2"
epochs=${3:-10}
shift $(($# < 3 ? $# : 3))

run_bench "${BENCH-299:64 128:128}" no

for size in ${SIZES-71 128 299}; do
    train_run "torch-${size}px" --epochs "$epochs" --image-size "$size" --batch-size 128 "$@"
    finish_run "torch-${size}px" $? any
done
exit "$failed"
