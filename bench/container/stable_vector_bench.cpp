// Benchmarks of memkit::stable_vector (include/memkit/container/stable_vector.hpp) against the
// containers a program would otherwise use to keep elements at fixed addresses.
//
// Cases (ints; fixed seeds, so every subject sees the same work):
//   churn/1e4   - a container of 10 000 elements; one round walks it, erases the elements at the
//                 positions a fixed random mask selects (about 50%), then inserts as many new
//                 ones. Time per element operation (each erase and each insert), the walk
//                 included. The peers:
//                   std::list                        - erase(it) and push_back: O(1), stable,
//                                                      one allocation per element;
//                   std::deque (tombstones)          - the std-only way to get O(1) erase with
//                                                      stable references: a deque of {value,
//                                                      live} slots plus a vector of free slot
//                                                      indices; erase marks a slot dead and
//                                                      remembers it, insert reuses a dead slot or
//                                                      appends (push_back keeps references),
//                                                      the walk skips dead slots;
//                   std::vector (swap-and-pop)       - the fastest erase there is, but it moves an
//                                                      element into the hole, so it does NOT keep
//                                                      pointers stable: shown for scale only;
//                   boost::container::stable_vector  - stable, but erase is O(n) (its index of
//                                                      node pointers shifts).
//   iterate/1e5 - sum 100 000 elements with a range-for loop, every container filled with
//                 100 000 push_backs or inserts and nothing erased. The target is std::vector,
//                 whose loop the compiler vectorizes; an iterator that must check for holes
//                 cannot be.
//   iterate/1e5-1pct-holes - the same with a history: memkit, std::list and Boost are filled with
//                 101 000 elements and then 1 000 random ones are erased (1% holes; the erased
//                 nodes of the node-based peers leave gaps in their memory too); std::vector and
//                 std::deque hold 100 000.
//   iterate-segments/... - the same two sums, memkit through for_each_segment (a loop over each
//                 run of adjacent elements, which vectorizes) against the peers' fastest full
//                 traversal (std::accumulate over their iterators; for std::vector that is the
//                 same loop as range-for). Every hole splits a run, so the cost per hole is that
//                 of starting a new loop.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#if defined(MEMKIT_BENCH_HAVE_BOOST)
#include <boost/container/stable_vector.hpp>
#endif

#include "common/harness.hpp"
#include "memkit/container/stable_vector.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t churn_size = 10000;
constexpr std::size_t iterate_size = 100000;
constexpr std::size_t iterate_holes = 1000;
constexpr std::uint64_t seed = 0x73746162; // "stab"

// The erase mask of the churn rounds: one bit per visited element, about half of them set.
const std::vector<unsigned char>& churn_mask() {
    static const std::vector<unsigned char> mask = [] {
        std::mt19937_64 gen{seed};
        std::vector<unsigned char> m(churn_size);
        for (auto& b : m) b = static_cast<unsigned char>(gen() & 1);
        return m;
    }();
    return mask;
}

std::size_t churn_erasures() {
    std::size_t n = 0;
    for (unsigned char b : churn_mask()) n += b;
    return n;
}

// --- churn -----------------------------------------------------------------------------------

// Node-based containers with erase(it) -> next and push_back / insert.
template <class C>
void churn_erase_insert(benchmark::State& state) {
    const auto& mask = churn_mask();
    C c;
    for (std::size_t i = 0; i < churn_size; ++i) c.insert(c.end(), static_cast<int>(i));
    int next = 0;
    for (auto _ : state) {
        std::size_t k = 0;
        std::size_t erased = 0;
        for (auto it = c.begin(); it != c.end(); ++k) {
            if (mask[k] != 0) {
                it = c.erase(it);
                ++erased;
            } else {
                ++it;
            }
        }
        for (std::size_t i = 0; i < erased; ++i) c.insert(c.end(), ++next);
        benchmark::DoNotOptimize(c.size());
    }
    mb::set_allocations(state, 2 * churn_erasures());
}

void churn_memkit(benchmark::State& state) {
    const auto& mask = churn_mask();
    memkit::stable_vector<int> c;
    for (std::size_t i = 0; i < churn_size; ++i) c.insert(static_cast<int>(i));
    int next = 0;
    for (auto _ : state) {
        std::size_t k = 0;
        std::size_t erased = 0;
        for (auto it = c.begin(); it != c.end(); ++k) {
            if (mask[k] != 0) {
                it = c.erase(it);
                ++erased;
            } else {
                ++it;
            }
        }
        for (std::size_t i = 0; i < erased; ++i) c.insert(++next);
        benchmark::DoNotOptimize(c.size());
    }
    mb::set_allocations(state, 2 * churn_erasures());
}

struct tombstone_deque {
    struct slot {
        int value;
        bool live;
    };
    std::deque<slot> slots;
    std::vector<std::size_t> free;
};

void churn_deque(benchmark::State& state) {
    const auto& mask = churn_mask();
    tombstone_deque c;
    for (std::size_t i = 0; i < churn_size; ++i) c.slots.push_back({static_cast<int>(i), true});
    int next = 0;
    for (auto _ : state) {
        std::size_t k = 0;
        for (std::size_t i = 0; i < c.slots.size(); ++i) {
            auto& s = c.slots[i];
            if (!s.live) continue;
            if (mask[k++] != 0) {
                s.live = false;
                c.free.push_back(i);
            }
        }
        const std::size_t erased = c.free.size();
        for (std::size_t i = 0; i < erased; ++i) {
            ++next;
            if (!c.free.empty()) {
                c.slots[c.free.back()] = {next, true};
                c.free.pop_back();
            } else {
                c.slots.push_back({next, true});
            }
        }
        benchmark::DoNotOptimize(c.slots.size());
    }
    mb::set_allocations(state, 2 * churn_erasures());
}

void churn_vector_swap_pop(benchmark::State& state) {
    const auto& mask = churn_mask();
    std::vector<int> c;
    for (std::size_t i = 0; i < churn_size; ++i) c.push_back(static_cast<int>(i));
    int next = 0;
    for (auto _ : state) {
        std::size_t k = 0;
        std::size_t erased = 0;
        for (std::size_t i = 0; i < c.size(); ++k) {
            if (mask[k] != 0) {
                c[i] = c.back(); // the moved element is visited next, as every element is once
                c.pop_back();
                ++erased;
            } else {
                ++i;
            }
        }
        for (std::size_t i = 0; i < erased; ++i) c.push_back(++next);
        benchmark::DoNotOptimize(c.data());
    }
    mb::set_allocations(state, 2 * churn_erasures());
}

// --- iterate ---------------------------------------------------------------------------------

// Fills with size + holes elements and erases `holes` of them at random positions.
template <class C, std::size_t Holes>
C with_holes() {
    C c;
    std::vector<typename C::iterator> its;
    for (std::size_t i = 0; i < iterate_size + Holes; ++i) {
        if constexpr (requires { c.insert(1); }) its.push_back(c.insert(static_cast<int>(i)));
        else its.push_back(c.insert(c.end(), static_cast<int>(i)));
    }
    const auto order = mb::shuffled_indices(its.size(), seed);
    for (std::size_t i = 0; i < Holes; ++i) c.erase(its[order[i]]);
    return c;
}

template <class C>
C dense() {
    C c;
    for (std::size_t i = 0; i < iterate_size; ++i) c.push_back(static_cast<int>(i));
    return c;
}

template <class C>
void iterate_range_for(benchmark::State& state, const C& c) {
    for (auto _ : state) {
        long long sum = 0;
        for (int x : c) sum += x;
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, iterate_size);
}

template <class C>
void iterate_accumulate(benchmark::State& state, const C& c) {
    for (auto _ : state) {
        long long sum = std::accumulate(c.begin(), c.end(), 0LL);
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, iterate_size);
}

void iterate_segments(benchmark::State& state, const memkit::stable_vector<int>& c) {
    for (auto _ : state) {
        long long sum = 0;
        c.for_each_segment([&sum](std::span<const int> run) {
            for (int x : run) sum += x;
        });
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, iterate_size);
}

template <class C, std::size_t Holes>
const C& holey() {
    static const C c = with_holes<C, Holes>();
    return c;
}

template <class C>
const C& full() {
    static const C c = dense<C>();
    return c;
}

template <std::size_t Holes>
void register_iterate(const std::string& param) {
    using sv = memkit::stable_vector<int>;
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    using bsv = boost::container::stable_vector<int>;
#endif
    const std::string iterate = "stable_vector/iterate/" + param;
    mb::add_case({iterate, "memkit::stable_vector", mb::role::memkit, iterate_size},
                 [](benchmark::State& s) { iterate_range_for(s, holey<sv, Holes>()); });
    mb::add_case({iterate, "std::vector", mb::role::peer, iterate_size},
                 [](benchmark::State& s) { iterate_range_for(s, full<std::vector<int>>()); });
    mb::add_case({iterate, "std::deque", mb::role::peer, iterate_size},
                 [](benchmark::State& s) { iterate_range_for(s, full<std::deque<int>>()); });
    mb::add_case({iterate, "std::list", mb::role::peer, iterate_size},
                 [](benchmark::State& s) { iterate_range_for(s, holey<std::list<int>, Holes>()); });
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({iterate, "boost::container::stable_vector", mb::role::peer, iterate_size},
                 [](benchmark::State& s) { iterate_range_for(s, holey<bsv, Holes>()); });
#else
    mb::add_skipped(iterate, "boost::container::stable_vector",
                    "Boost headers not installed; run scripts/setup");
#endif

    const std::string segments = "stable_vector/iterate-segments/" + param;
    mb::add_case({segments, "memkit::stable_vector", mb::role::memkit, iterate_size},
                 [](benchmark::State& s) { iterate_segments(s, holey<sv, Holes>()); });
    mb::add_case({segments, "std::vector", mb::role::peer, iterate_size},
                 [](benchmark::State& s) { iterate_accumulate(s, full<std::vector<int>>()); });
    mb::add_case({segments, "std::deque", mb::role::peer, iterate_size},
                 [](benchmark::State& s) { iterate_accumulate(s, full<std::deque<int>>()); });
    mb::add_case({segments, "std::list", mb::role::peer, iterate_size}, [](benchmark::State& s) {
        iterate_accumulate(s, holey<std::list<int>, Holes>());
    });
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({segments, "boost::container::stable_vector", mb::role::peer, iterate_size},
                 [](benchmark::State& s) { iterate_accumulate(s, holey<bsv, Holes>()); });
#else
    mb::add_skipped(segments, "boost::container::stable_vector",
                    "Boost headers not installed; run scripts/setup");
#endif
}

bool register_all() {
    const std::size_t churn_ops = 2 * churn_erasures();
    const std::string churn = "stable_vector/churn/1e4";
    mb::add_case({churn, "memkit::stable_vector", mb::role::memkit, churn_ops}, churn_memkit);
    mb::add_case({churn, "std::list", mb::role::peer, churn_ops},
                 churn_erase_insert<std::list<int>>);
    mb::add_case({churn, "std::deque (tombstones)", mb::role::peer, churn_ops}, churn_deque);
    mb::add_case({churn, "std::vector (swap-and-pop, not stable)", mb::role::peer, churn_ops},
                 churn_vector_swap_pop);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({churn, "boost::container::stable_vector", mb::role::peer, churn_ops},
                 churn_erase_insert<boost::container::stable_vector<int>>);
#else
    mb::add_skipped(churn, "boost::container::stable_vector",
                    "Boost headers not installed; run scripts/setup");
#endif

    register_iterate<0>("1e5");
    register_iterate<iterate_holes>("1e5-1pct-holes");
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
