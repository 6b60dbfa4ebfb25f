#!/usr/bin/env bash
# Bounded fuzzing for CI: every target for a fixed time, then the canary until it fires.
#
#   bash fuzz/smoke.sh [SECONDS_PER_TARGET]      (default 20)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`; scripts/test.sh installs it) and a
# toolchain that accepts -Z flags: a nightly, or stable with RUSTC_BOOTSTRAP=1, which this
# script sets. It FAILS (non-zero exit, never a quiet skip) when:
#   - cargo-fuzz is missing, or `cargo fuzz build` fails (the log's last lines are printed);
#   - a target finds something: a crash, an oracle violation, a timeout or an out-of-memory
#     (the input is written to fuzz/artifacts/<target>/ and belongs in corpus/<target>/
#     once fixed);
#   - a target ran no input at all, or the canary does not fire within 60 s (the fuzzing
#     set-up would be finding nothing).
# For each target it prints the executions, executions per second, and the coverage
# (libFuzzer's `cov`: instrumented edges hit, and `ft`: features) at the end of the run.
# New inputs go to fuzz/work/ (ignored by git), never into the committed corpus. The build
# goes to $SYNCORE_FUZZ_TARGET_DIR (default fuzz/target).
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
targets=(schema changes snapshot ops outcomes)
target_dir="${SYNCORE_FUZZ_TARGET_DIR:-$PWD/target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: FAILED: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
    exit 1
fi
export RUSTC_BOOTSTRAP=1
mkdir -p work
echo "fuzz smoke: cargo fuzz build (log: fuzz/work/build.log)"
if ! cargo fuzz build --target-dir "$target_dir" >work/build.log 2>&1; then
    echo "fuzz smoke: FAILED: cargo fuzz build failed. Last lines:" >&2
    tail -n 30 work/build.log >&2
    exit 1
fi

# "stat::<name>: <value>" from libFuzzer's final stats.
stat() { grep -oE "stat::$1: *[0-9]+" "$2" | tail -n 1 | grep -oE '[0-9]+$'; }
# cov/ft of the last status line ("#N  DONE  cov: C ft: F ...").
last_cov() { grep -oE "$1: [0-9]+" "$2" | tail -n 1 | grep -oE '[0-9]+$'; }

failed=0
printf '%-10s %12s %10s %8s %8s\n' target executions "exec/s" cov ft >work/summary.txt
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    echo "fuzz smoke: $t for ${seconds}s"
    dict=()
    [ -f "$t.dict" ] && dict=(-dict="$t.dict")
    cargo fuzz run --target-dir "$target_dir" "$t" "work/$t" "corpus/$t" -- "${dict[@]}" \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        >"work/$t.log" 2>&1
    rc=$?
    execs="$(stat number_of_executed_units "work/$t.log")"
    if ((rc != 0)); then
        echo "fuzz smoke: $t FAILED (exit $rc); fuzz/work/$t.log says:" >&2
        # The panic's message (the finding) is the line after "panicked at".
        grep -E -A1 "panicked|ERROR|SUMMARY|Test unit written|finding" "work/$t.log" | head -n 20 >&2
        tail -n 5 "work/$t.log" >&2
        failed=1
    elif [[ -z "$execs" || "$execs" == 0 ]]; then
        echo "fuzz smoke: $t FAILED: it executed no input; fuzz/work/$t.log ends:" >&2
        tail -n 10 "work/$t.log" >&2
        failed=1
    fi
    printf '%-10s %12s %10s %8s %8s\n' "$t" "${execs:-?}" \
        "$(stat average_exec_per_sec "work/$t.log" || echo '?')" \
        "$(last_cov cov "work/$t.log" || echo '?')" "$(last_cov ft "work/$t.log" || echo '?')" \
        >>work/summary.txt
done

mkdir -p work/canary
if cargo fuzz run --target-dir "$target_dir" canary work/canary corpus/canary -- \
    -max_total_time=60 -artifact_prefix=work/canary- >work/canary.log 2>&1; then
    echo "fuzz smoke: FAILED: the canary did not fire in 60s: the fuzzing set-up finds nothing" >&2
    failed=1
elif grep -q "planted false invariant" work/canary.log; then
    echo "fuzz smoke: the canary fired, as it must"
else
    echo "fuzz smoke: FAILED: the canary stopped without its planted finding; work/canary.log ends:" >&2
    tail -n 10 work/canary.log >&2
    failed=1
fi
cat work/summary.txt
if ((failed)); then
    echo "fuzz smoke: FAILED" >&2
else
    echo "fuzz smoke: every target ran ${seconds}s with no finding"
fi
exit "$failed"
