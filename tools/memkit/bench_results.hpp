// tools/memkit/bench_results.hpp - collecting benchmark runs and pairing memkit with its peers.
//
// `run_collector` is a Google Benchmark reporter: it receives every run of every "case|subject"
// benchmark, converts it to nanoseconds per allocation (CPU time of the run / iterations /
// allocations per iteration), and prints one progress line per run. `memkit bench` makes one
// pass over all selected benchmarks per repetition, so that a slow drift of a noisy machine
// affects memkit and its peers alike. `pair_results` then takes the median of each subject's
// repetitions and makes one row per (case, peer) with ratio = peer ns / memkit ns, so a ratio above
// 1 means memkit is faster.
//
//   memkit::cli::run_collector rc{expected, stderr};
//   benchmark::RunSpecifiedBenchmarks(&rc, spec);
//   auto rows = memkit::cli::pair_results(rc.results());
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include "common/harness.hpp"

namespace memkit::cli {

/// Every repetition of one (case, subject).
struct subject_result {
    std::string case_name;
    std::string subject;
    bench::role who = bench::role::peer;
    std::vector<double> ns_per_op; ///< one value per repetition
    std::string error;             ///< non-empty when the benchmark reported an error
};

/// One line of the `memkit bench` table and of its JSON output.
struct result_row {
    std::string case_name;
    std::string subject;
    double subject_ns = 0;
    std::string peer;
    double peer_ns = 0;
    double ratio = 0; ///< peer_ns / subject_ns: > 1 means memkit is faster
};

class run_collector final : public benchmark::BenchmarkReporter {
public:
    /// `expected` is the number of benchmarks in one pass (for "[i/n]"); progress lines go to
    /// `progress` (nullptr: silent).
    run_collector(std::size_t expected, std::FILE* progress) noexcept
        : expected_(expected), progress_(progress) {}

    /// Starts pass `pass` (1-based) of `passes`: the progress count restarts.
    void begin_pass(int pass, int passes) noexcept {
        pass_ = pass;
        passes_ = passes;
        reported_ = 0;
    }

    bool ReportContext(const Context& context) override;
    void ReportRuns(const std::vector<Run>& runs) override;

    /// Subjects in the order they ran.
    [[nodiscard]] const std::vector<subject_result>& results() const noexcept { return results_; }

private:
    subject_result& entry_for(const std::string& name);

    std::vector<subject_result> results_;
    std::size_t expected_;
    std::size_t reported_ = 0;
    int pass_ = 1;
    int passes_ = 1;
    std::FILE* progress_;
};

[[nodiscard]] double median(std::vector<double> values);

/// One row per (case, peer), cases in the order they ran, peers in registration order. Cases
/// without a successful memkit subject, and failed peers, produce no row.
[[nodiscard]] std::vector<result_row> pair_results(const std::vector<subject_result>& results);

/// The human-readable table: case | memkit ns/op | peer | peer ns/op | ratio.
[[nodiscard]] std::string format_table(const std::vector<result_row>& rows);

/// {"results": [{"case", "subject", "subject_ns", "peer", "peer_ns", "ratio"}, ...]}
[[nodiscard]] nlohmann::ordered_json to_json(const std::vector<result_row>& rows);

} // namespace memkit::cli
