// Benchmarks of memkit::pool_collection (include/memkit/alloc/pool_collection.hpp) for mixed
// small sizes against malloc/free and std::pmr::unsynchronized_pool_resource (the standard's
// pool-per-size-class resource, used through its concrete type).
//
// Sizes are "random-small": 16..256 bytes from a fixed seed, the same sequence for every
// subject; every request asks for alignof(std::max_align_t) and writes one byte. Patterns:
//   single   - allocate one block and free it at once, cycling through the sizes;
//   bulk     - allocate N blocks of the mixed sizes, then free them in allocation order;
//   shuffled - allocate N blocks, then free them in a random order (fixed seed), which leaves
//              every class's free list scattered for the next round.
// Each subject is built once per benchmark and keeps its memory between rounds (steady state).
// Times are per allocation, including its share of the frees.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <new>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#include "memkit/alloc/pool_collection.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t count = 4096;         // blocks per bulk/shuffled round
constexpr std::size_t single_rounds = 1024; // allocate/free pairs per single iteration
constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::uint64_t size_seed = 0x73697a6573;  // "sizes"
constexpr std::uint64_t order_seed = 0x6f72646572; // "order"

const std::vector<std::size_t>& sizes() {
    static const std::vector<std::size_t> s = mb::random_sizes(count, 16, 256, size_seed);
    return s;
}

struct memkit_collection {
    static constexpr const char* name = "memkit::pool_collection";
    memkit::pool_collection c; // classes 8, 16, ..., 256
    void* allocate(std::size_t n) { return c.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { c.deallocate(p, n, align); }
};

struct pmr_pool {
    static constexpr const char* name = "std::pmr::unsynchronized_pool_resource";
    std::pmr::unsynchronized_pool_resource r;
    void* allocate(std::size_t n) { return r.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { r.deallocate(p, n, align); }
};

using c_malloc = memkit::bench::malloc_peer;

template <class Subject>
void single(benchmark::State& state) {
    Subject s;
    const std::vector<std::size_t>& sz = sizes();
    std::size_t next = 0;
    for (auto _ : state) {
        for (std::size_t i = 0; i < single_rounds; ++i) {
            const std::size_t n = sz[next];
            next = (next + 1) % count;
            void* p = s.allocate(n);
            mb::touch(p);
            s.deallocate(p, n);
        }
    }
    mb::set_allocations(state, single_rounds);
}

// Frees in the order given by `order` (identity: bulk; a fixed permutation: shuffled).
template <class Subject>
void bulk_in_order(benchmark::State& state, std::span<const std::size_t> order) {
    Subject s;
    const std::vector<std::size_t>& sz = sizes();
    std::vector<void*> ptrs(count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < count; ++i) {
            void* p = s.allocate(sz[i]);
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (std::size_t i : order) s.deallocate(ptrs[i], sz[i]);
    }
    mb::set_allocations(state, count);
}

const std::vector<std::size_t>& in_order() {
    static const std::vector<std::size_t> order = [] {
        std::vector<std::size_t> v(count);
        std::iota(v.begin(), v.end(), std::size_t{0});
        return v;
    }();
    return order;
}

const std::vector<std::size_t>& shuffled() {
    static const std::vector<std::size_t> order = mb::shuffled_indices(count, order_seed);
    return order;
}

template <class Subject>
struct single_pattern {
    static void run(benchmark::State& s) { single<Subject>(s); }
};
template <class Subject>
struct bulk_pattern {
    static void run(benchmark::State& s) { bulk_in_order<Subject>(s, in_order()); }
};
template <class Subject>
struct shuffled_pattern {
    static void run(benchmark::State& s) { bulk_in_order<Subject>(s, shuffled()); }
};

template <template <class> class Pattern>
void register_pattern(const char* pattern, std::size_t ops) {
    const std::string case_name = std::string("pool_collection/") + pattern + "/random-small";
    mb::add_case({case_name, memkit_collection::name, mb::role::memkit, ops},
                 Pattern<memkit_collection>::run);
    mb::add_case({case_name, pmr_pool::name, mb::role::peer, ops}, Pattern<pmr_pool>::run);
    mb::add_case({case_name, c_malloc::name, mb::role::peer, ops}, Pattern<c_malloc>::run);
}

bool register_all() {
    register_pattern<single_pattern>("single", single_rounds);
    register_pattern<bulk_pattern>("bulk", count);
    register_pattern<shuffled_pattern>("shuffled", count);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
