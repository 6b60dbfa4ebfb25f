// oneTBB's flow graph on the BENCH-GRAPHS.md layered graphs: one no-op `continue_node` per
// object, one edge per dependency, the roots started and the graph waited for; the time of
// one run, per task. The same graphs as `engine/benches/sched.rs` (the generator of
// BENCH-GRAPHS.md, checked against its checksums), so the figures stand beside
// `sched/<graph>/deliveries` and `executor_run_t1`.
//
// Build and run: benches/cpp/run.sh (needs libtbb-dev and a C++17 compiler).
//   tbb_flow <g100k_shuf|g1m_shuf> <threads> <runs>
#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

struct SplitMix64 {
    uint64_t state;
    uint64_t next() {
        state += 0x9E3779B97F4A7C15ull;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    uint64_t below(uint64_t n) { return (uint64_t)(((unsigned __int128)next() * n) >> 64); }
};

struct Dag {
    uint32_t n;
    std::vector<std::pair<uint32_t, uint32_t>> edges;  // (src, dst): dst depends on src
};

static Dag layered(uint32_t w, uint32_t l, uint32_t d, uint64_t seed, bool shuffle) {
    SplitMix64 rng{seed};
    Dag g{w * l, {}};
    g.edges.reserve((size_t)w * (l - 1) * d);
    std::vector<uint32_t> picks;
    for (uint32_t layer = 1; layer < l; ++layer) {
        for (uint32_t i = 0; i < w; ++i) {
            uint32_t v = layer * w + i;
            picks.clear();
            while (picks.size() < d) {
                uint32_t u = (layer - 1) * w + (uint32_t)rng.below(w);
                if (std::find(picks.begin(), picks.end(), u) == picks.end()) picks.push_back(u);
            }
            for (uint32_t u : picks) g.edges.emplace_back(u, v);
        }
    }
    if (shuffle) {
        std::vector<uint32_t> perm(g.n);
        for (uint32_t i = 0; i < g.n; ++i) perm[i] = i;
        for (uint32_t i = g.n - 1; i >= 1; --i) std::swap(perm[i], perm[rng.below((uint64_t)i + 1)]);
        for (auto& e : g.edges) e = {perm[e.first], perm[e.second]};
        for (size_t i = g.edges.size() - 1; i >= 1; --i)
            std::swap(g.edges[i], g.edges[rng.below((uint64_t)i + 1)]);
    }
    return g;
}

static uint64_t checksum(const Dag& g) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (auto& e : g.edges) {
        h = (h ^ e.first) * 0x100000001b3ull;
        h = (h ^ e.second) * 0x100000001b3ull;
    }
    return h;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: tbb_flow <g100k_shuf|g1m_shuf> <threads> <runs>\n");
        return 2;
    }
    Dag g;
    uint64_t want;
    if (std::strcmp(argv[1], "g100k_shuf") == 0) {
        g = layered(1000, 100, 4, 7, true);
        want = 0x0723c302a9217d38ull;
    } else if (std::strcmp(argv[1], "g1m_shuf") == 0) {
        g = layered(1000, 1000, 4, 42, true);
        want = 0xb0e16571f1241168ull;
    } else {
        std::fprintf(stderr, "unknown graph %s\n", argv[1]);
        return 2;
    }
    if (checksum(g) != want) {
        std::fprintf(stderr, "%s: checksum %016llx, want %016llx\n", argv[1],
                     (unsigned long long)checksum(g), (unsigned long long)want);
        return 1;
    }
    int threads = std::atoi(argv[2]);
    int runs = std::atoi(argv[3]);
    if (threads < 1 || runs < 1) {
        std::fprintf(stderr, "threads and runs must be at least 1 (got %s, %s)\n", argv[2], argv[3]);
        return 2;
    }
    oneapi::tbb::global_control limit(oneapi::tbb::global_control::max_allowed_parallelism,
                                      threads);
    std::vector<uint32_t> indegree(g.n, 0);
    for (auto& e : g.edges) indegree[e.second]++;
    std::vector<double> ns_per_task;
    for (int r = 0; r < runs; ++r) {
        // A fresh graph per run: a continue_node counts its predecessors' signals once.
        oneapi::tbb::flow::graph fg;
        std::vector<std::unique_ptr<oneapi::tbb::flow::continue_node<oneapi::tbb::flow::continue_msg>>> nodes;
        nodes.reserve(g.n);
        for (uint32_t i = 0; i < g.n; ++i)
            nodes.emplace_back(new oneapi::tbb::flow::continue_node<oneapi::tbb::flow::continue_msg>(
                fg, [](const oneapi::tbb::flow::continue_msg&) {}));
        for (auto& e : g.edges) oneapi::tbb::flow::make_edge(*nodes[e.first], *nodes[e.second]);
        auto start = std::chrono::steady_clock::now();
        for (uint32_t i = 0; i < g.n; ++i)
            if (indegree[i] == 0) nodes[i]->try_put(oneapi::tbb::flow::continue_msg());
        fg.wait_for_all();
        auto took = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
        ns_per_task.push_back(took / g.n);
    }
    std::sort(ns_per_task.begin(), ns_per_task.end());
    double median = ns_per_task[ns_per_task.size() / 2];
    std::printf("tbb_flow/%s/t%d: median %.1f ns/task over %d runs (min %.1f, max %.1f); %u tasks, %zu edges\n",
                argv[1], threads, median, runs, ns_per_task.front(), ns_per_task.back(), g.n,
                g.edges.size());
    return 0;
}
