// Benchmarks of memkit::small_vector (include/memkit/container/small_vector.hpp) against
// std::vector and the other small vectors: boost::container::small_vector and
// absl::InlinedVector (each skipped, with a line saying so, when this build cannot have it).
// Every inline capacity is 8 ints.
//
// Cases (the time is per element operation: a push_back or one copied element):
//   build-destroy/1-8 - build a vector of k = 1, 2, ..., 8 ints with push_back, read it back,
//                       destroy it; the sizes come from a table the compiler cannot see, as
//                       when the size depends on the input. The case small vectors exist for:
//                       nothing spills, std::vector allocates every time.
//   push-back/1000    - push_back 1000 ints into an empty vector, read, destroy: the inline
//                       buffer is outgrown at once, so this measures growth on the heap.
//   copy/8            - copy-construct a vector of 8 ints (inline for the small vectors), read,
//                       destroy.
// Every subject runs the same code: the vector's data escapes (benchmark::DoNotOptimize) and
// memory is clobbered after it is built, so the stores cannot be elided, and the elements are
// read back into a sum that escapes too.
#include <array>
#include <cstddef>
#include <string>
#include <vector>

#if defined(MEMKIT_BENCH_HAVE_BOOST)
#include <boost/container/small_vector.hpp>
#endif
#if defined(MEMKIT_BENCH_HAVE_ABSL)
#include <absl/container/inlined_vector.h>
#endif

#include "common/harness.hpp"
#include "memkit/container/small_vector.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t inline_n = 8;
constexpr std::size_t push_back_count = 1000;
constexpr std::size_t copy_rounds = 64;

// The sizes 1..8 through memory the optimizer must assume anything about.
const std::array<int, 8>& build_sizes() {
    static std::array<int, 8> sizes = [] {
        std::array<int, 8> s{};
        for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<int>(i + 1);
        return s;
    }();
    benchmark::DoNotOptimize(sizes.data());
    benchmark::ClobberMemory();
    return sizes;
}

constexpr std::size_t build_ops = 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8;

template <class Vec>
void read_back(const Vec& v) {
    benchmark::DoNotOptimize(v.data());
    benchmark::ClobberMemory();
    int sum = 0;
    for (int x : v) sum += x;
    benchmark::DoNotOptimize(sum);
}

template <class Vec>
void build_destroy(benchmark::State& state) {
    const std::array<int, 8>& sizes = build_sizes();
    for (auto _ : state) {
        for (int k : sizes) {
            Vec v;
            for (int i = 0; i < k; ++i) v.push_back(i);
            read_back(v);
        }
    }
    mb::set_allocations(state, build_ops);
}

template <class Vec>
void push_back_many(benchmark::State& state) {
    for (auto _ : state) {
        Vec v;
        for (int i = 0; i < static_cast<int>(push_back_count); ++i) v.push_back(i);
        read_back(v);
    }
    mb::set_allocations(state, push_back_count);
}

template <class Vec>
void copy_small(benchmark::State& state) {
    Vec src;
    for (int i = 0; i < static_cast<int>(inline_n); ++i) src.push_back(i);
    for (auto _ : state) {
        for (std::size_t r = 0; r < copy_rounds; ++r) {
            benchmark::DoNotOptimize(src.data());
            Vec c(src);
            read_back(c);
        }
    }
    mb::set_allocations(state, copy_rounds * inline_n);
}

template <class Vec>
struct subject;
template <>
struct subject<memkit::small_vector<int, inline_n>> {
    static constexpr const char* name = "memkit::small_vector<int, 8>";
    static constexpr mb::role who = mb::role::memkit;
};
template <>
struct subject<std::vector<int>> {
    static constexpr const char* name = "std::vector<int>";
    static constexpr mb::role who = mb::role::peer;
};
#if defined(MEMKIT_BENCH_HAVE_BOOST)
template <>
struct subject<boost::container::small_vector<int, inline_n>> {
    static constexpr const char* name = "boost::container::small_vector<int, 8>";
    static constexpr mb::role who = mb::role::peer;
};
#endif
#if defined(MEMKIT_BENCH_HAVE_ABSL)
template <>
struct subject<absl::InlinedVector<int, inline_n>> {
    static constexpr const char* name = "absl::InlinedVector<int, 8>";
    static constexpr mb::role who = mb::role::peer;
};
#endif

template <class Vec>
void add(const std::string& case_name, std::size_t ops, void (*fn)(benchmark::State&)) {
    mb::add_case({case_name, subject<Vec>::name, subject<Vec>::who, ops}, fn);
}

void register_case(const std::string& case_name, std::size_t ops,
                   void (*memkit_fn)(benchmark::State&), void (*std_fn)(benchmark::State&),
                   [[maybe_unused]] void (*boost_fn)(benchmark::State&),
                   [[maybe_unused]] void (*absl_fn)(benchmark::State&)) {
    add<memkit::small_vector<int, inline_n>>(case_name, ops, memkit_fn);
    add<std::vector<int>>(case_name, ops, std_fn);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    add<boost::container::small_vector<int, inline_n>>(case_name, ops, boost_fn);
#else
    mb::add_skipped(case_name, "boost::container::small_vector<int, 8>",
                    "Boost headers not installed; run scripts/setup");
#endif
#if defined(MEMKIT_BENCH_HAVE_ABSL)
    add<absl::InlinedVector<int, inline_n>>(case_name, ops, absl_fn);
#else
    mb::add_skipped(case_name, "absl::InlinedVector<int, 8>",
                    "Abseil not installed; run scripts/setup");
#endif
}

#if defined(MEMKIT_BENCH_HAVE_BOOST)
using boost_vec = boost::container::small_vector<int, inline_n>;
#else
using boost_vec = memkit::small_vector<int, inline_n>; // not registered
#endif
#if defined(MEMKIT_BENCH_HAVE_ABSL)
using absl_vec = absl::InlinedVector<int, inline_n>;
#else
using absl_vec = memkit::small_vector<int, inline_n>;  // not registered
#endif
using memkit_vec = memkit::small_vector<int, inline_n>;
using std_vec = std::vector<int>;

template <template <class> class Pattern>
void register_pattern(const std::string& case_name, std::size_t ops) {
    register_case(case_name, ops, Pattern<memkit_vec>::run, Pattern<std_vec>::run,
                  Pattern<boost_vec>::run, Pattern<absl_vec>::run);
}

template <class Vec>
struct build_destroy_pattern {
    static void run(benchmark::State& s) { build_destroy<Vec>(s); }
};
template <class Vec>
struct push_back_pattern {
    static void run(benchmark::State& s) { push_back_many<Vec>(s); }
};
template <class Vec>
struct copy_pattern {
    static void run(benchmark::State& s) { copy_small<Vec>(s); }
};

bool register_all() {
    register_pattern<build_destroy_pattern>("small_vector/build-destroy/1-8", build_ops);
    register_pattern<push_back_pattern>("small_vector/push-back/1000", push_back_count);
    register_pattern<copy_pattern>("small_vector/copy/8", copy_rounds * inline_n);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
