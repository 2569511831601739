// `memkit bench`: runs the registered benchmark cases in this process and prints, for each case,
// memkit's time per allocation next to each peer's, with the ratio peer / memkit.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "bench_results.hpp"
#include "commands.hpp"
#include "common/harness.hpp"
#include "memkit/core/platform.hpp"

namespace memkit::cli {
namespace {

struct bench_options {
    std::string filter;
    std::string json;
    bool quick = false;
    bool list = false;
    int repetitions = 5;
    double min_time = 0.1;
};

constexpr double quick_min_time = 0.01;

// Google Benchmark selects benchmarks by regex; the selection is made here on case names, and
// handed over as an alternation of exact, escaped benchmark names.
std::string escape_regex(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (std::string_view{R"(\^$.|?*+()[]{})"}.find(c) != std::string_view::npos) out += '\\';
        out += c;
    }
    return out;
}

int run_bench(const bench_options& opts, bool repetitions_given, bool min_time_given) {
    std::regex filter;
    try {
        filter = std::regex(opts.filter.empty() ? std::string{"."} : opts.filter);
    } catch (const std::regex_error& e) {
        fmt::print(stderr, "memkit bench: invalid --filter '{}': {}\n", opts.filter, e.what());
        return 2;
    }

    std::vector<std::string> selected_cases;
    std::vector<std::string> names;
    for (const bench::case_spec& c : bench::registered_cases()) {
        if (!std::regex_search(c.case_name, filter)) continue;
        names.push_back(bench::benchmark_name(c.case_name, c.subject));
        if (std::find(selected_cases.begin(), selected_cases.end(), c.case_name) ==
            selected_cases.end())
            selected_cases.push_back(c.case_name);
    }
    if (names.empty()) {
        fmt::print(stderr,
                   "memkit bench: no case matches --filter '{}' (see memkit bench --list)\n",
                   opts.filter);
        return 1;
    }

    // Peers this build lacks, once each, for the selected cases only.
    std::vector<std::string> skipped;
    for (const bench::skipped_subject& s : bench::skipped_subjects()) {
        if (std::find(selected_cases.begin(), selected_cases.end(), s.case_name) ==
            selected_cases.end())
            continue;
        std::string line = fmt::format("skipped: {} ({})", s.subject, s.reason);
        if (std::find(skipped.begin(), skipped.end(), line) == skipped.end())
            skipped.push_back(std::move(line));
    }

    if (opts.list) {
        for (const std::string& n : names) fmt::print("{}\n", n);
        for (const std::string& s : skipped) fmt::print("{}\n", s);
        return 0;
    }

    const int repetitions =
        repetitions_given ? opts.repetitions : (opts.quick ? 1 : opts.repetitions);
    const double min_time =
        min_time_given ? opts.min_time : (opts.quick ? quick_min_time : opts.min_time);

    // Opened before the run so that a bad path fails in a second, not after the whole suite.
    std::ofstream json_out;
    if (!opts.json.empty()) {
        json_out.open(opts.json);
        if (!json_out) {
            fmt::print(stderr, "memkit bench: cannot write '{}'\n", opts.json);
            return 1;
        }
    }

    if constexpr (debug_checks)
        fmt::print(stderr, "warning: memkit was built with debug checks; "
                           "use a Release build (scripts/bench) for representative numbers\n");

    std::vector<std::string> args{"memkit-bench", "--benchmark_repetitions=1",
                                  fmt::format("--benchmark_min_time={}", min_time)};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int argc = static_cast<int>(args.size());
    benchmark::Initialize(&argc, argv.data());

    std::string spec = "^(";
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i != 0) spec += '|';
        spec += escape_regex(names[i]);
    }
    // Multi-threaded and timing variants get suffixes such as "/threads:2" from Google Benchmark.
    spec += ")(/(threads:[0-9]+|real_time|process_time|manual_time))*$";

    // One pass over every selected benchmark per repetition (rather than Google Benchmark's
    // back-to-back repetitions of one benchmark), so that memkit and its peers alternate.
    run_collector collector{names.size(), stderr};
    for (int pass = 1; pass <= repetitions; ++pass) {
        collector.begin_pass(pass, repetitions);
        benchmark::RunSpecifiedBenchmarks(&collector, spec);
    }
    benchmark::Shutdown();

    int status = 0;
    for (const subject_result& r : collector.results()) {
        if (r.error.empty()) continue;
        fmt::print(stderr, "error: {} | {}: {}\n", r.case_name, r.subject, r.error);
        status = 1;
    }

    const std::vector<result_row> rows = pair_results(collector.results());
    fmt::print("\n{}", format_table(rows));
    for (const std::string& s : skipped) fmt::print("{}\n", s);
    fmt::print(
        "ratio = peer ns/op / memkit ns/op (> 1: memkit is faster); CPU time per allocation, "
        "median of {} repetition{}\n",
        repetitions, repetitions == 1 ? "" : "s");

    if (json_out.is_open()) {
        json_out << to_json(rows).dump(2) << '\n';
        json_out.close();
        if (!json_out) {
            fmt::print(stderr, "memkit bench: cannot write '{}'\n", opts.json);
            return 1;
        }
    }
    return status;
}

} // namespace

command add_bench_command(CLI::App& app) {
    auto opts = std::make_shared<bench_options>();
    CLI::App* sub = app.add_subcommand(
        "bench", "Run memkit's allocator benchmarks against their peers (std::pmr, malloc, "
                 "new/delete, Boost) and print ns per allocation and the ratio peer/memkit");
    sub->add_option("--filter", opts->filter,
                    "Run only the cases whose name (e.g. 'arena/bulk/64') contains a match for "
                    "REGEX (ECMAScript); a case always runs with all of its peers")
        ->type_name("REGEX");
    sub->add_option("--json", opts->json,
                    "Also write the results to FILE as {\"results\": [{\"case\", \"subject\", "
                    "\"subject_ns\", \"peer\", \"peer_ns\", \"ratio\"}]}")
        ->type_name("FILE");
    sub->add_flag("--quick", opts->quick,
                  "One repetition with a short minimum time: a smoke run of a few seconds");
    CLI::Option* reps = sub->add_option("--repetitions", opts->repetitions,
                                        "Repetitions of each case; the table shows medians")
                            ->check(CLI::Range(1, 1000))
                            ->capture_default_str();
    CLI::Option* min_time =
        sub->add_option("--min-time", opts->min_time, "Minimum seconds per repetition of a case")
            ->check(CLI::PositiveNumber)
            ->capture_default_str()
            ->type_name("SECONDS");
    sub->add_flag("--list", opts->list,
                  "List the selected benchmarks and skipped peers; run nothing");
    return {sub, [opts, reps, min_time] {
                return run_bench(*opts, reps->count() > 0, min_time->count() > 0);
            }};
}

} // namespace memkit::cli
