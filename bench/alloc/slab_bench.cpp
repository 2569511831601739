// Benchmarks of memkit::slab_allocator (include/memkit/alloc/slab.hpp) against the general
// allocators it replaces for small objects: malloc/free and std::pmr::unsynchronized_pool_resource
// (used through its concrete type, so neither side pays a virtual call).
//
// Patterns, one byte written into every block:
//   single/64           - allocate one 64-byte block and free it at once, repeatedly;
//   shuffled/random-small - allocate N blocks of random sizes in 16..256 bytes (fixed seed),
//                         then free them in a random order (fixed seed), which scatters the
//                         free lists for the next round, as in long-running programs.
// Each subject is built once per benchmark and keeps its memory between rounds, so the numbers
// are the steady state. Times are per allocation including its share of the frees.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#include "memkit/alloc/slab.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t single_rounds = 256; // allocate/free pairs per benchmark iteration
constexpr std::size_t bulk_count = 4096;
constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::uint64_t sizes_seed = 0x736c6162; // "slab"
constexpr std::uint64_t shuffle_seed = 0x736c6163;

struct memkit_slab {
    static constexpr const char* name = "memkit::slab_allocator";
    memkit::slab_allocator s;
    void* allocate(std::size_t n) { return s.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { s.deallocate(p, n, align); }
};

struct pmr_pool {
    static constexpr const char* name = "std::pmr::unsynchronized_pool_resource";
    std::pmr::unsynchronized_pool_resource r;
    void* allocate(std::size_t n) { return r.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { r.deallocate(p, n, align); }
};

using c_malloc = memkit::bench::malloc_peer;

template <class Subject>
void single_64(benchmark::State& state) {
    Subject s;
    for (auto _ : state) {
        for (std::size_t i = 0; i < single_rounds; ++i) {
            void* p = s.allocate(64);
            mb::touch(p);
            s.deallocate(p, 64);
        }
    }
    mb::set_allocations(state, single_rounds);
}

const std::vector<std::size_t>& random_small() {
    static const std::vector<std::size_t> sizes = mb::random_sizes(bulk_count, 16, 256, sizes_seed);
    return sizes;
}

const std::vector<std::size_t>& free_order() {
    static const std::vector<std::size_t> order = mb::shuffled_indices(bulk_count, shuffle_seed);
    return order;
}

template <class Subject>
void shuffled_random_small(benchmark::State& state) {
    Subject s;
    const std::vector<std::size_t>& sizes = random_small();
    const std::vector<std::size_t>& order = free_order();
    std::vector<void*> ptrs(bulk_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < bulk_count; ++i) {
            void* p = s.allocate(sizes[i]);
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (std::size_t i : order) s.deallocate(ptrs[i], sizes[i]);
    }
    mb::set_allocations(state, bulk_count);
}

template <template <class> class Pattern>
void register_case(const std::string& case_name, std::size_t ops) {
    mb::add_case({case_name, memkit_slab::name, mb::role::memkit, ops}, Pattern<memkit_slab>::run);
    mb::add_case({case_name, pmr_pool::name, mb::role::peer, ops}, Pattern<pmr_pool>::run);
    mb::add_case({case_name, c_malloc::name, mb::role::peer, ops}, Pattern<c_malloc>::run);
}

template <class Subject>
struct single_pattern {
    static void run(benchmark::State& s) { single_64<Subject>(s); }
};
template <class Subject>
struct shuffled_pattern {
    static void run(benchmark::State& s) { shuffled_random_small<Subject>(s); }
};

bool register_all() {
    register_case<single_pattern>("slab/single/64", single_rounds);
    register_case<shuffled_pattern>("slab/shuffled/random-small", bulk_count);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
