#!/usr/bin/env bash
# oneTBB's flow graph on the same layered graphs as engine/benches/sched.rs (see
# tbb_flow.cpp): builds the program and prints ns/task, one and two threads.
#   benches/cpp/run.sh [runs]        # default 10 runs per figure
# Needs libtbb-dev (Debian: apt-get install libtbb-dev) and g++. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")"
runs="${1:-10}"
out="${TMPDIR:-/tmp}/syncore-tbb_flow"
g++ -O2 -std=c++17 -o "$out" tbb_flow.cpp -ltbb
for graph in g100k_shuf g1m_shuf; do
    for threads in 1 2; do
        "$out" "$graph" "$threads" "$runs"
    done
done
