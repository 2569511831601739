// memkit-bench: Google Benchmark's own front end over memkit's registered cases. Every
// --benchmark_* flag works (filter, repetitions, format, out ...). Benchmark names are
// "case|subject"; `memkit bench` runs the same cases and prints them paired with their peers.
#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "common/harness.hpp"
#include "memkit/core/platform.hpp"

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    // Peers missing from this build are never dropped silently (one line per peer and reason).
    std::vector<std::string> lines;
    for (const auto& s : memkit::bench::skipped_subjects()) {
        std::string line = "skipped: " + s.subject + " (" + s.reason + ")";
        if (std::find(lines.begin(), lines.end(), line) != lines.end()) continue;
        std::fprintf(stderr, "%s\n", line.c_str());
        lines.push_back(std::move(line));
    }
    if constexpr (memkit::debug_checks)
        std::fprintf(stderr,
                     "warning: memkit debug checks are on; build Release for real numbers\n");
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
