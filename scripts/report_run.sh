# Sourced by the run scripts: report_run NAME CODE PROGRESS HISTORY COPY
# logs a finished training run's exit code (with the end of its PROGRESS file
# when it failed), sets failed=1 unless it succeeded or RUN_TIMEOUT cut it
# short (exit 124), and copies its HISTORY to COPY when there is one.
report_run() {
    local name=$1 code=$2 progress=$3 history=$4 copy=$5
    echo "$name: exit $code"
    if [ "$code" -ne 0 ]; then
        tail -n 5 "$progress"
        [ "$code" -ne 124 ] && failed=1  # 124: cut short by RUN_TIMEOUT, as asked
    fi
    if [ -e "$history" ]; then
        cp "$history" "$copy"
    fi
}
