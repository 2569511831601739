// Benchmarks of memkit::bump_vector (include/memkit/container/bump_vector.hpp): building a
// sequence of ints with push_back from empty, then destroying it, N = 1e3 and 1e5.
//
//   push-back/N      - memkit::bump_vector<int> on a memkit::arena (its default allocator; the
//                      arena is reset after each round, which the time includes) against
//                      std::vector<int> without reserve (it reallocates and moves every element
//                      at each doubling), std::vector<int> on the same kind of arena (the same
//                      allocator, so the difference is the container) and std::deque<int>.
//   push-back-heap/N - memkit::bump_vector<int, std::allocator<int>> against std::vector<int> and
//                      std::deque<int>: every subject on the global heap.
// Times are per push_back, the destruction of the container included.
#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "memkit/alloc/arena.hpp"
#include "memkit/container/bump_vector.hpp"
#include "memkit/pmr/std_allocator.hpp"

namespace {

namespace mb = memkit::bench;

template <class C>
void fill(C& c, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) c.push_back(static_cast<int>(i));
    benchmark::DoNotOptimize(&c.back());
}

template <class C>
void push_back_heap(benchmark::State& state, std::size_t n) {
    for (auto _ : state) {
        C c;
        fill(c, n);
    }
    mb::set_allocations(state, n);
}

template <class C>
void push_back_arena(benchmark::State& state, std::size_t n) {
    memkit::arena a;
    for (auto _ : state) {
        {
            C c{a};
            fill(c, n);
        }
        a.reset();
    }
    mb::set_allocations(state, n);
}

using arena_vector = std::vector<int, memkit::std_allocator<int, memkit::arena>>;

void register_size(std::size_t n, const char* param) {
    const std::string arena_case = std::string("bump_vector/push-back/") + param;
    mb::add_case({arena_case, "memkit::bump_vector (arena)", mb::role::memkit, n},
                 [n](benchmark::State& s) { push_back_arena<memkit::bump_vector<int>>(s, n); });
    mb::add_case({arena_case, "std::vector", mb::role::peer, n},
                 [n](benchmark::State& s) { push_back_heap<std::vector<int>>(s, n); });
    mb::add_case({arena_case, "std::vector (arena)", mb::role::peer, n},
                 [n](benchmark::State& s) { push_back_arena<arena_vector>(s, n); });
    mb::add_case({arena_case, "std::deque", mb::role::peer, n},
                 [n](benchmark::State& s) { push_back_heap<std::deque<int>>(s, n); });

    const std::string heap_case = std::string("bump_vector/push-back-heap/") + param;
    mb::add_case({heap_case, "memkit::bump_vector (std::allocator)", mb::role::memkit, n},
                 [n](benchmark::State& s) {
                     push_back_heap<memkit::bump_vector<int, std::allocator<int>>>(s, n);
                 });
    mb::add_case({heap_case, "std::vector", mb::role::peer, n},
                 [n](benchmark::State& s) { push_back_heap<std::vector<int>>(s, n); });
    mb::add_case({heap_case, "std::deque", mb::role::peer, n},
                 [n](benchmark::State& s) { push_back_heap<std::deque<int>>(s, n); });
}

bool register_all() {
    register_size(1000, "1e3");
    register_size(100000, "1e5");
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
