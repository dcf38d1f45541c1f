#!/usr/bin/env bash
# Notebook 05's runs: PyTorch trained on CIFAR-10 to convergence with the CIFAR
# recipe, two seeds, beside the paper's recipe for the same epochs, all at once
# on one machine; before them, the benchmark with torch.compile and a profile.
#
#   scripts/convergence.sh DATA RESULTS [EPOCHS [TRAIN OPTIONS...]]
#
# DATA is anything `--data` takes; RESULTS receives log.txt, bench.md, profile/
# and, for each run, <recipe>-seed<N>.json and .npz (results.export: history,
# options, test predictions, misclassified images). Checkpoints go to $RUNS
# (default RESULTS/runs); run again, the script resumes the runs there.
# Environment: RUNS_TO_MAKE, recipe:seed pairs (default "cifar:0 cifar:1
# paper:0"); BENCH, image:batch pairs for the benchmark (default "128:256";
# empty to skip); RUN_TIMEOUT: seconds per run (default none; a run cut short
# keeps its finished epochs but makes no result file, since the CIFAR
# recipe's schedule spans all its epochs); MACHINE, DATA_LABEL: words for the
# result files (default: the GPU's name, DATA); PYTHON (default python3).
# TRAIN OPTIONS (image size, batch size, --compile-mode...) apply to every
# run. Exits 1 if any step failed.
set -uo pipefail

if [ $# -lt 2 ]; then
    sed -n '6,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
data=$1 results=$2 epochs=${3:-30}
shift $(($# < 3 ? $# : 3))
runs=${RUNS:-$results/runs}
mkdir -p "$results" "$runs"
exec > >(tee -a "$results/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
failed=0
# shellcheck source=scripts/report_run.sh
source "$(dirname "$0")/report_run.sh"

bench=${BENCH-128:256}
[ -n "$bench" ] && : > "$results/bench.md"
for pair in $bench; do
    "$python" -m xception_common.bench --image-size "${pair%:*}" --batch-size "${pair#*:}" --steps 20 --warmup 5 \
        --models timm torch-fp32 torch torch-compiled --profile "$results/profile" --markdown \
        | tee -a "$results/bench.md" || failed=1
    echo >> "$results/bench.md"
done

machine=${MACHINE:-$("$python" -c "import torch; print(torch.cuda.get_device_name() \
    if torch.cuda.is_available() else 'CPU')")}
names=() pids=() started=$(date +%s)
for pair in ${RUNS_TO_MAKE-cifar:0 cifar:1 paper:0}; do
    recipe=${pair%:*} seed=${pair#*:}
    name=$recipe-seed$seed out=$runs/$recipe-seed$seed
    resume=()
    [ -e "$out/config.json" ] && resume=(--resume)
    timeout "${RUN_TIMEOUT:-0}" "$python" -m xception_common.train --framework torch --data "$data" \
        --epochs "$epochs" --recipe "$recipe" --seed "$seed" --out "$out" "${resume[@]}" "$@" \
        2> "$out.progress" &
    names+=("$name") pids+=($!)
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    code=$? name=${names[$i]}
    report_run "$name" "$code" "$runs/$name.progress" "$runs/$name/history.json" "$runs/$name.history.json"
    echo "$name: $(($(date +%s) - started)) s from the start of the runs"
    [ "$code" -ne 0 ] && continue
    rm -f "$results/$name.json" "$results/$name.npz"  # made again from the run, which holds all of it
    "$python" -m xception_common.results "$runs/$name" "$results/$name.json" --machine "$machine" \
        --data "${DATA_LABEL:-$data}" --title "$name, $machine" \
        --command "python -m xception_common.train --framework torch --data $data --epochs $epochs \
--recipe ${name%-seed*} --seed ${name##*seed} $*" || failed=1
done
exit "$failed"
