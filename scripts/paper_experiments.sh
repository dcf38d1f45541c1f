#!/usr/bin/env bash
# The paper's experiments at small scale (notebook 06): PyTorch trains every
# variant of the model with several seeds, all runs at once on one machine.
#
#   scripts/paper_experiments.sh DATA RESULTS [EPOCHS [TRAIN OPTIONS...]]
#
# DATA is anything `--data` takes; RESULTS receives log.txt and
# <variant>-seed<N>.json, the history of each run. Checkpoints go to $RUNS
# (default RESULTS/runs); run again, the script resumes the runs there.
# Environment: VARIANTS (default "xception no-residual relu elu segments-2
# segments-4 segments-8"), SEEDS (default "0 1 2"), RUN_TIMEOUT: seconds per
# run (default none; a run cut short keeps the epochs it finished), PYTHON
# (default python3). TRAIN OPTIONS (image size, batch size, ...) apply to
# every run. Exits 1 if any run failed.
set -uo pipefail

if [ $# -lt 2 ]; then
    sed -n '5,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
data=$1 results=$2 epochs=${3:-10}
shift $(($# < 3 ? $# : 3))
runs=${RUNS:-$results/runs}
mkdir -p "$results" "$runs"
exec > >(tee -a "$results/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}

variant_options() {
    case $1 in
        xception) ;;
        no-residual) echo --no-residual ;;
        relu | elu) echo --intermediate-activation "$1" ;;
        segments-*) echo --segment-size "${1#segments-}" ;;
        *) echo "unknown variant $1" >&2; return 1 ;;
    esac
}

names=() pids=()
for variant in ${VARIANTS-xception no-residual relu elu segments-2 segments-4 segments-8}; do
    options=$(variant_options "$variant") || exit 2
    for seed in ${SEEDS-0 1 2}; do
        name=$variant-seed$seed out=$runs/$variant-seed$seed
        resume=()
        [ -e "$out/config.json" ] && resume=(--resume)
        # shellcheck disable=SC2086  # the variant's options are words
        timeout "${RUN_TIMEOUT:-0}" "$python" -m xception_common.train --framework torch --data "$data" \
            --epochs "$epochs" --seed "$seed" $options --out "$out" "${resume[@]}" "$@" 2> "$out.progress" &
        names+=("$name") pids+=($!)
    done
done

failed=0
# shellcheck source=scripts/report_run.sh
source "$(dirname "$0")/report_run.sh"
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    name=${names[$i]}
    report_run "$name" $? "$runs/$name.progress" "$runs/$name/history.json" "$results/$name.json"
done
exit "$failed"
