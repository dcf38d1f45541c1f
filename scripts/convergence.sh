#!/usr/bin/env bash
# Notebook 05's runs: PyTorch trained on CIFAR-10 to convergence with the CIFAR
# recipe, two seeds, beside the paper's recipe for the same epochs, all at once
# on one machine; before them, the benchmark with torch.compile and a profile.
#
#   scripts/convergence.sh DATA RESULTS [EPOCHS [TRAIN OPTIONS...]]
#
# DATA is anything `--data` takes; RESULTS receives log.txt, bench.md and, for
# each finished run, <recipe>-seed<N>.json and .npz (results.export:
# history, options, test predictions, misclassified images). A run cut short
# by RUN_TIMEOUT keeps its checkpoint but makes no result file, since the
# CIFAR recipe's schedule spans all its epochs: run again to finish it.
# Environment (and scripts/common.sh's): RUNS_TO_MAKE, recipe:seed pairs
# (default "cifar:0 cifar:1 paper:0"); BENCH, image:batch pairs for the
# benchmark (default "128:512"; empty to skip), whose profiler traces go to
# $RUNS/profile-<size>px-batch<batch>. TRAIN OPTIONS (image size, batch size, --compile-mode...)
# apply to every run. Exits 1 if any step failed.
set -uo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"
[ $# -lt 2 ] && usage
begin "$1" "$2"
epochs=${3:-30}
shift $(($# < 3 ? $# : 3))

run_bench "${BENCH-128:512}" profile timm torch-fp32 torch torch-trainer torch-compiled

names=() pids=() started=$(date +%s)
for pair in ${RUNS_TO_MAKE-cifar:0 cifar:1 paper:0}; do
    recipe=${pair%:*} seed=${pair#*:}
    train_run "$recipe-seed$seed" --epochs "$epochs" --recipe "$recipe" --seed "$seed" "$@" &
    names+=("$recipe-seed$seed") pids+=($!)
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    finish_run "${names[$i]}" $? finished
    echo "${names[$i]}: $(($(date +%s) - started)) s from the start of the runs"
done
exit "$failed"
