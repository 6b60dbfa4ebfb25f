#!/usr/bin/env bash
# Bounded fuzzing for CI (issue 7): each target for a few seconds, the canary until it fires.
#
#   bash fuzz/smoke.sh [SECONDS_PER_TARGET]      (default 20)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a toolchain that accepts -Z flags: a
# nightly, or stable with RUSTC_BOOTSTRAP=1, which this script sets. Without cargo-fuzz,
# or when the fuzz build fails (a toolchain problem: the same code is compiled and run by
# `cargo test --test fuzz_corpus` on stable), it says so and exits 0. A finding fails:
# the input is in fuzz/artifacts/<target>/, and belongs in fuzz/corpus/<target>/ once fixed.
# A canary that does not fire fails too: the fuzzing set-up would be finding nothing.
# New inputs go to fuzz/work/ (ignored by git), never into the committed corpus.
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
targets=(schema changes snapshot ops outcomes)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: cargo-fuzz is not installed; skipped (the corpus is replayed by cargo test)"
    exit 0
fi
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz build >/tmp/syncore-fuzz-build.log 2>&1; then
    echo "fuzz smoke: cargo fuzz build failed; skipped. Last lines:"
    tail -n 20 /tmp/syncore-fuzz-build.log
    exit 0
fi

failed=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "fuzz smoke: $t for ${seconds}s"
    dict=()
    [ -f "$t.dict" ] && dict=(-dict="$t.dict")
    if ! cargo fuzz run "$t" "work/$t" "corpus/$t" -- "${dict[@]}" \
        -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 \
        >"work/$t.log" 2>&1; then
        echo "fuzz smoke: $t FOUND A FAILURE:"
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "work/$t.log" | head -n 20
        failed=1
    fi
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec" "work/$t.log" | tr '\n' ' '
    echo
done

mkdir -p work/canary
if cargo fuzz run canary work/canary corpus/canary -- -max_total_time=60 \
    -artifact_prefix=work/canary- >work/canary.log 2>&1; then
    echo "fuzz smoke: the canary did not fire in 60s: the fuzzing set-up finds nothing"
    failed=1
else
    echo "fuzz smoke: the canary fired, as it must"
fi
exit "$failed"
