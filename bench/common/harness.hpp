// bench/common/harness.hpp - registration of memkit's benchmark cases and the helpers they share.
//
// A case is one workload (an allocation pattern and its sizes, e.g. "arena/bulk/64") run by
// several subjects: the memkit allocator under test and its peers (std::pmr resources, malloc,
// new/delete, Boost). Every (case, subject) pair is a Google Benchmark named "case|subject", so
// the plain Google Benchmark front end (memkit-bench) and `memkit bench` see the same names and
// can pair a memkit subject with its peers. The harness also records, for each registration,
// whether the subject is memkit's or a peer, and how many allocations one benchmark iteration
// performs, so that every front end reports time per allocation.
//
// Registrations happen during static initialisation of the case files; the registry is a
// function-local static, so the order in which those files initialise does not matter.
// Thread-safety: register everything before running benchmarks; reading is then safe.
//
//   memkit::bench::add_case({"arena/bulk/64", "memkit::arena", memkit::bench::role::memkit, 4096},
//                           [](benchmark::State& s) { for (auto _ : s) run_once(); });
//   memkit::bench::add_skipped("pool/bulk/64", "boost::pool", "Boost headers not installed");
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memkit::bench {

/// Whether a subject is the memkit allocator a case is about, or a peer it is compared with.
enum class role { memkit, peer };

/// One registered (case, subject) pair.
struct case_spec {
    std::string case_name; ///< workload, "<area>/<pattern>/<size>", e.g. "pool/single/64"
    std::string subject;   ///< what runs it, e.g. "memkit::pool", "malloc"
    role who = role::peer;
    /// Allocations per benchmark iteration: front ends divide the iteration time by it.
    std::size_t ops_per_iteration = 1;
};

/// A peer that could not be built into this binary, and why.
struct skipped_subject {
    std::string case_name;
    std::string subject;
    std::string reason;
};

/// Separates the case from the subject in a benchmark name.
inline constexpr char name_separator = '|';

/// "case|subject": the Google Benchmark name of a registration.
[[nodiscard]] std::string benchmark_name(std::string_view case_name, std::string_view subject);

/// Splits a benchmark name made by benchmark_name(); nullopt for names without a separator.
struct split_name_result {
    std::string case_name;
    std::string subject;
};
[[nodiscard]] std::optional<split_name_result> split_name(std::string_view name);

/// Registers `fn` as the benchmark "case|subject" and records `spec`. The returned benchmark can
/// be tuned further (Unit, MinTime ...), but its arguments must not change the name.
benchmark::internal::Benchmark* add_case(case_spec spec, std::function<void(benchmark::State&)> fn);

/// Records a peer that this build cannot run, so that front ends can say so.
void add_skipped(std::string case_name, std::string subject, std::string reason);

/// Everything registered, in registration order.
[[nodiscard]] const std::vector<case_spec>& registered_cases() noexcept;
[[nodiscard]] const std::vector<skipped_subject>& skipped_subjects() noexcept;

/// The registration whose benchmark name is `name`, or nullptr.
[[nodiscard]] const case_spec* find_case(std::string_view name) noexcept;

/// Tells Google Benchmark how many allocations the loop performed, so that its items/s counter
/// and every front end's ns/op are per allocation. Call once after the timing loop.
inline void set_allocations(benchmark::State& state, std::size_t per_iteration) {
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(per_iteration));
}

/// Writes one byte into a freshly allocated block and makes the pointer escape, so that neither
/// the write nor the allocation can be optimised away and lazily-mapping peers pay their faults.
inline void touch(void* p) noexcept {
    *static_cast<unsigned char*>(p) = 0x5a;
    benchmark::DoNotOptimize(p);
}

/// Request sizes for the "random-small" pattern: `count` sizes uniform in [lo, hi] from a fixed
/// seed, so every subject (and every run) sees the same sequence.
[[nodiscard]] std::vector<std::size_t> random_sizes(std::size_t count, std::size_t lo,
                                                    std::size_t hi, std::uint64_t seed);

/// A permutation of 0..count-1 from a fixed seed: the free order of the "shuffled" pattern.
[[nodiscard]] std::vector<std::size_t> shuffled_indices(std::size_t count, std::uint64_t seed);

} // namespace memkit::bench
