// Benchmarks of memkit::flat_map (include/memkit/container/flat_map.hpp) against std::map,
// std::unordered_map and boost::container::flat_map (a sorted vector of pairs), with int keys
// and int values.
//
// Patterns:
//   lookup      - find() of present keys in random order (fixed seed), reading the value, in a
//                 map of 1e3 or 1e5 random distinct keys ("flat_map/lookup/1e5");
//   bulk-insert - insert(first, last) of 1e5 unsorted pairs (about 2% repeated keys) into an
//                 empty map, then destroy it ("flat_map/bulk-insert/1e5");
//   iterate     - a walk over every element of a 1e5-element map, summing keys and values
//                 ("flat_map/iterate/1e5").
// Times are per element operation: per lookup, per inserted element, per visited element.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#if defined(MEMKIT_BENCH_HAVE_BOOST)
#include <boost/container/flat_map.hpp>
#endif

#include "common/harness.hpp"
#include "memkit/container/flat_map.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t lookups_per_iteration = 4096;
constexpr std::size_t bulk_count = 100000;
constexpr std::uint64_t seed = 0x666c6174; // "flat"

struct memkit_subject {
    static constexpr const char* name = "memkit::flat_map";
    using map = memkit::flat_map<int, int>;
};
struct std_map_subject {
    static constexpr const char* name = "std::map";
    using map = std::map<int, int>;
};
struct std_unordered_subject {
    static constexpr const char* name = "std::unordered_map";
    using map = std::unordered_map<int, int>;
};
#if defined(MEMKIT_BENCH_HAVE_BOOST)
struct boost_subject {
    static constexpr const char* name = "boost::container::flat_map";
    using map = boost::container::flat_map<int, int>;
};
#endif

/// `count` distinct random keys with their values, in random order.
std::vector<std::pair<int, int>> distinct_pairs(std::size_t count, std::uint64_t s) {
    std::mt19937_64 rng(s);
    std::unordered_set<int> seen;
    std::vector<std::pair<int, int>> out;
    out.reserve(count);
    while (out.size() < count) {
        const auto k = static_cast<int>(rng() >> 33);
        if (seen.insert(k).second) out.emplace_back(k, static_cast<int>(out.size()));
    }
    return out;
}

template <class Map>
Map build(const std::vector<std::pair<int, int>>& pairs) {
    return Map(pairs.begin(), pairs.end());
}

template <class Subject, std::size_t N>
void lookup(benchmark::State& state) {
    const auto pairs = distinct_pairs(N, seed + N);
    const auto m = build<typename Subject::map>(pairs);
    std::mt19937_64 rng(seed);
    std::vector<int> probes(lookups_per_iteration);
    for (auto& p : probes) p = pairs[rng() % N].first;
    for (auto _ : state) {
        long sum = 0;
        for (const int k : probes) sum += m.find(k)->second;
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, lookups_per_iteration);
}

template <class Subject>
void bulk_insert(benchmark::State& state) {
    // About 2% of the keys repeat an earlier one, so the unique-keys path is exercised too.
    auto pairs = distinct_pairs(bulk_count, seed + 1);
    std::mt19937_64 rng(seed + 2);
    for (std::size_t i = 0; i < bulk_count / 50; ++i)
        pairs[rng() % bulk_count].first = pairs[rng() % bulk_count].first;
    for (auto _ : state) {
        typename Subject::map m;
        m.insert(pairs.begin(), pairs.end());
        benchmark::DoNotOptimize(m.size());
    }
    mb::set_allocations(state, bulk_count);
}

template <class Subject>
void iterate(benchmark::State& state) {
    const auto m = build<typename Subject::map>(distinct_pairs(bulk_count, seed + 3));
    for (auto _ : state) {
        long sum = 0;
        for (const auto& [k, v] : m) sum += k + v;
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, bulk_count);
}

template <class Subject>
struct lookup_1e3 {
    static void run(benchmark::State& s) { lookup<Subject, 1000>(s); }
};
template <class Subject>
struct lookup_1e5 {
    static void run(benchmark::State& s) { lookup<Subject, 100000>(s); }
};
template <class Subject>
struct bulk_insert_pattern {
    static void run(benchmark::State& s) { bulk_insert<Subject>(s); }
};
template <class Subject>
struct iterate_pattern {
    static void run(benchmark::State& s) { iterate<Subject>(s); }
};

template <template <class> class Pattern>
void register_pattern(const std::string& case_name, std::size_t ops, bool with_unordered) {
    mb::add_case({case_name, memkit_subject::name, mb::role::memkit, ops},
                 Pattern<memkit_subject>::run);
    mb::add_case({case_name, std_map_subject::name, mb::role::peer, ops},
                 Pattern<std_map_subject>::run);
    if (with_unordered)
        mb::add_case({case_name, std_unordered_subject::name, mb::role::peer, ops},
                     Pattern<std_unordered_subject>::run);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({case_name, boost_subject::name, mb::role::peer, ops},
                 Pattern<boost_subject>::run);
#else
    mb::add_skipped(case_name, "boost::container::flat_map",
                    "Boost headers not installed; run scripts/setup");
#endif
}

bool register_all() {
    register_pattern<lookup_1e3>("flat_map/lookup/1e3", lookups_per_iteration, true);
    register_pattern<lookup_1e5>("flat_map/lookup/1e5", lookups_per_iteration, true);
    register_pattern<bulk_insert_pattern>("flat_map/bulk-insert/1e5", bulk_count, false);
    register_pattern<iterate_pattern>("flat_map/iterate/1e5", bulk_count, true);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
