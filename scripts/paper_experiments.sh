#!/usr/bin/env bash
# The paper's experiments at small scale (notebook 06): PyTorch trains every
# variant of the model with several seeds, all runs at once on one machine.
#
#   scripts/paper_experiments.sh DATA RESULTS [EPOCHS [TRAIN OPTIONS...]]
#
# DATA is anything `--data` takes; RESULTS receives log.txt and, for each
# finished run, <variant>-seed<N>.json and .npz, the result files notebook 06
# reads. A run cut short by RUN_TIMEOUT keeps its checkpoint but makes no
# result file, since the notebook compares runs of equal length: run again to
# finish it. Environment (and scripts/common.sh's): VARIANTS (default
# "xception no-residual relu elu segments-2 segments-4 segments-8"), SEEDS
# (default "0 1 2"). TRAIN OPTIONS (image size, batch size, ...) apply to
# every run. Exits 1 if any run failed.
set -uo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"
[ $# -lt 2 ] && usage

variant_options() {
    case $1 in
        xception) ;;
        no-residual) echo --no-residual ;;
        relu | elu) echo --intermediate-activation "$1" ;;
        segments-*) echo --segment-size "${1#segments-}" ;;
        *) echo "unknown variant $1" >&2; return 1 ;;
    esac
}

variants=${VARIANTS-xception no-residual relu elu segments-2 segments-4 segments-8}
for variant in $variants; do
    variant_options "$variant" > /dev/null || exit 2
done
begin "$1" "$2"
epochs=${3:-10}
shift $(($# < 3 ? $# : 3))

names=() pids=()
for variant in $variants; do
    for seed in ${SEEDS-0 1 2}; do
        # shellcheck disable=SC2046  # the variant's options are words
        train_run "$variant-seed$seed" --epochs "$epochs" --seed "$seed" $(variant_options "$variant") "$@" &
        names+=("$variant-seed$seed") pids+=($!)
    done
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    finish_run "${names[$i]}" $? finished
done
exit "$failed"
