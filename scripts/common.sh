# Sourced by the run scripts: what they share. Each of them takes DATA and
# RESULTS, trains PyTorch runs with checkpoints in $RUNS (default
# RESULTS/runs), resumes the runs it finds there, and makes a result file for
# the notebooks (python -m xception_common.results) of each run it exports.
# Environment: RUN_TIMEOUT, seconds per run (default none); MACHINE and
# DATA_LABEL, words for the result files (default: the GPU's name, DATA);
# PYTHON, the interpreter (default python3).

# begin DATA RESULTS: sets data, results, runs, python, machine and failed=0;
# from here on, everything printed goes to RESULTS/log.txt as well.
begin() {
    data=$1 results=$2
    runs=${RUNS:-$results/runs}
    if ! mkdir -p "$results" "$runs" 2> /dev/null; then
        echo "cannot make the folders $results and $runs: RESULTS (and RUNS) must be folders or new paths" >&2
        exit 2
    fi
    exec > >(tee -a "$results/log.txt") 2>&1
    export PYTHONUNBUFFERED=1
    PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
    python=${PYTHON:-python3}
    machine=${MACHINE:-$("$python" -c "import torch; print(torch.cuda.get_device_name() \
        if torch.cuda.is_available() else 'CPU')")}
    failed=0
}

# train_run NAME TRAIN OPTIONS...: trains $runs/NAME on DATA with PyTorch,
# resuming it when it has begun, for at most RUN_TIMEOUT seconds; its
# progress is added to $runs/NAME.progress, and its command replaces
# $runs/NAME.command unless train refused it (exit 2), which leaves the run
# as it was.
train_run() {
    local name=$1 out=$runs/$1
    shift
    local resume=() code
    [ -e "$out/config.json" ] && resume=(--resume)
    echo "python -m xception_common.train --framework torch --data $data $*" > "$out.command.new"
    echo "== $(date -u '+%F %T UTC'): $(cat "$out.command.new")${resume[*]:+ --resume}" >> "$out.progress"
    timeout "${RUN_TIMEOUT:-0}" "$python" -m xception_common.train --framework torch --data "$data" "$@" \
        --out "$out" "${resume[@]}" 2>> "$out.progress"
    code=$?
    if [ "$code" -eq 2 ]; then rm -f "$out.command.new"; else mv "$out.command.new" "$out.command"; fi
    return "$code"
}

# finish_run NAME CODE EXPORT: logs how run NAME ended (exit CODE; with the
# end of its progress when it failed) and sets failed=1 unless it finished or
# RUN_TIMEOUT cut it short (exit 124). EXPORT "finished" makes its result file
# RESULTS/NAME.json (and .npz) when it finished; "any" also when it was cut
# short, with the epochs it finished and without predictions. A result file
# made before is made again from the run, which holds all of it.
finish_run() {
    local name=$1 code=$2 export=$3
    echo "$name: exit $code"
    if [ "$code" -ne 0 ]; then
        tail -n 5 "$runs/$name.progress"
        [ "$code" -ne 124 ] && failed=1
    fi
    if [ "$code" -eq 0 ] || { [ "$code" -eq 124 ] && [ "$export" = any ] && [ -e "$runs/$name/history.json" ]; }; then
        local partial=$results/.$name.partial  # the earlier result stays until the new one is whole
        rm -f "$partial.json" "$partial.npz"
        if "$python" -m xception_common.results "$runs/$name" "$partial.json" --machine "$machine" \
            --data "${DATA_LABEL:-$data}" --title "$name, $machine" --command "$(cat "$runs/$name.command")"; then
            mv "$partial.json" "$results/$name.json"
            if [ -e "$partial.npz" ]; then mv "$partial.npz" "$results/$name.npz"; else rm -f "$results/$name.npz"; fi
        else
            rm -f "$partial.json" "$partial.npz"
            failed=1
        fi
    fi
}

# run_bench PAIRS PROFILE [MODEL...]: the benchmark (of MODELs; default all)
# at each image:batch pair of PAIRS, 20 timed steps after 5 warm-up steps,
# its tables to RESULTS/bench.md once every pair has run: an earlier
# bench.md stays until then, and a failed benchmark's tables are left in
# RESULTS/bench.partial.md (failed=1). PROFILE "profile" also profiles the
# PyTorch rows, into a new folder for each pair:
# $runs/profile-<size>px-batch<batch>, or with -2, -3... where that is taken.
run_bench() {
    local pairs=$1 profile=$2 partial=$results/bench.partial.md status=0 models=()
    shift 2
    [ -z "$pairs" ] && return
    [ $# -gt 0 ] && models=(--models "$@")
    : > "$partial"
    for pair in $pairs; do
        local size=${pair%:*} batch=${pair#*:} options=()
        if [ "$profile" = profile ]; then
            local folder=$runs/profile-${size}px-batch$batch n=1
            local candidate=$folder
            while [ -e "$candidate" ]; do n=$((n + 1)) candidate=$folder-$n; done
            options=(--profile "$candidate")
        fi
        "$python" -m xception_common.bench --image-size "$size" --batch-size "$batch" --steps 20 --warmup 5 \
            --markdown "${models[@]}" "${options[@]}" | tee -a "$partial"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
        echo >> "$partial"
    done
    if [ "$status" -eq 0 ]; then
        mv "$partial" "$results/bench.md"
    else
        echo "the benchmark failed: $results/bench.md is as it was; this run's tables are in $partial"
        failed=1
    fi
}

# usage: prints the comment block at the top of the script that sourced this
# file (its lines up to `set`) and exits 2.
usage() {
    sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
