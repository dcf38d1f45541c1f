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
    mkdir -p "$results" "$runs"
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
# progress goes to $runs/NAME.progress, its command to $runs/NAME.command.
train_run() {
    local name=$1 out=$runs/$1
    shift
    local resume=()
    [ -e "$out/config.json" ] && resume=(--resume)
    echo "python -m xception_common.train --framework torch --data $data $*" > "$out.command"
    timeout "${RUN_TIMEOUT:-0}" "$python" -m xception_common.train --framework torch --data "$data" "$@" \
        --out "$out" "${resume[@]}" 2> "$out.progress"
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
        rm -f "$results/$name.json" "$results/$name.npz"
        "$python" -m xception_common.results "$runs/$name" "$results/$name.json" --machine "$machine" \
            --data "${DATA_LABEL:-$data}" --title "$name, $machine" --command "$(cat "$runs/$name.command")" \
            || failed=1
    fi
}

# usage: prints the comment block at the top of the script that sourced this
# file (its lines up to `set`) and exits 2.
usage() {
    sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
