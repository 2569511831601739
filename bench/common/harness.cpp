#include "harness.hpp"

#include <algorithm>
#include <numeric>
#include <random>
#include <thread>
#include <utility>

namespace memkit::bench {
namespace {

struct registry {
    std::vector<case_spec> cases;
    std::vector<skipped_subject> skipped;
};

registry& the_registry() {
    static registry r;
    return r;
}

// glibc skips atomic instructions in malloc and in mutexes until the process starts its first
// thread, and never returns to that mode. Starting one thread before any case runs makes every
// case see the same (multi-threaded) library, whatever order the cases run in.
[[maybe_unused]] const bool process_is_multithreaded = [] {
    std::thread([] {}).join();
    return true;
}();

} // namespace

std::string benchmark_name(std::string_view case_name, std::string_view subject) {
    std::string name;
    name.reserve(case_name.size() + 1 + subject.size());
    name.append(case_name).append(1, name_separator).append(subject);
    return name;
}

std::optional<split_name_result> split_name(std::string_view name) {
    const auto sep = name.find(name_separator);
    if (sep == std::string_view::npos) return std::nullopt;
    return split_name_result{std::string(name.substr(0, sep)), std::string(name.substr(sep + 1))};
}

benchmark::internal::Benchmark* add_case(case_spec spec,
                                         std::function<void(benchmark::State&)> fn) {
    const std::string name = benchmark_name(spec.case_name, spec.subject);
    if (spec.ops_per_iteration == 0) spec.ops_per_iteration = 1;
    the_registry().cases.push_back(std::move(spec));
    return benchmark::RegisterBenchmark(name.c_str(), std::move(fn));
}

void add_skipped(std::string case_name, std::string subject, std::string reason) {
    the_registry().skipped.push_back({std::move(case_name), std::move(subject), std::move(reason)});
}

const std::vector<case_spec>& registered_cases() noexcept { return the_registry().cases; }

const std::vector<skipped_subject>& skipped_subjects() noexcept { return the_registry().skipped; }

const case_spec* find_case(std::string_view name) noexcept {
    const auto split = split_name(name);
    if (!split) return nullptr;
    for (const case_spec& c : the_registry().cases)
        if (c.case_name == split->case_name && c.subject == split->subject) return &c;
    return nullptr;
}

std::vector<std::size_t> random_sizes(std::size_t count, std::size_t lo, std::size_t hi,
                                      std::uint64_t seed) {
    // mt19937_64's output sequence is fixed by the standard, and the reduction below does not
    // depend on the library's distributions, so the sizes are the same on every platform.
    std::mt19937_64 gen{seed};
    std::vector<std::size_t> sizes(count);
    const std::uint64_t span = hi - lo + 1;
    for (std::size_t& s : sizes) s = lo + static_cast<std::size_t>(gen() % span);
    return sizes;
}

std::vector<std::size_t> shuffled_indices(std::size_t count, std::uint64_t seed) {
    std::vector<std::size_t> order(count);
    std::iota(order.begin(), order.end(), std::size_t{0});
    // Fisher-Yates with the same platform-independent reduction as random_sizes.
    std::mt19937_64 gen{seed};
    for (std::size_t i = count; i > 1; --i) {
        const auto j = static_cast<std::size_t>(gen() % i);
        std::swap(order[i - 1], order[j]);
    }
    return order;
}

} // namespace memkit::bench
