// Benchmarks of memkit::pool (include/memkit/alloc/pool.hpp) against other fixed-size and
// general allocators: std::pmr::unsynchronized_pool_resource (used through its concrete type),
// boost::pool<> (Boost's raw-block pool; boost::object_pool frees in address order, O(n) per
// free, so it would measure that policy rather than a pool) and malloc/free.
//
// Patterns, for 16, 64 and 256-byte nodes, one byte written into every block:
//   single   - allocate one block and free it at once, repeatedly ("pool/single/64");
//   bulk     - allocate N blocks, then free them in allocation order;
//   shuffled - allocate N blocks, then free them in a random order (fixed seed), which leaves
//              the free list scattered for the next round, as in long-running programs.
// Each subject is built once per benchmark and keeps its memory between rounds, so the numbers
// are the steady state. Times are per allocation including its share of the frees.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <new>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#if defined(MEMKIT_BENCH_HAVE_BOOST)
#include <boost/pool/pool.hpp>
#endif

#include "common/harness.hpp"
#include "memkit/alloc/pool.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t single_rounds = 256; // allocate/free pairs per benchmark iteration
constexpr std::size_t bulk_count = 4096;
constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::uint64_t shuffle_seed = 0x706f6f6c; // "pool"

// Each subject as the three operations the patterns need, with the allocator's natural calls.
template <std::size_t Size>
struct memkit_pool {
    static constexpr const char* name = "memkit::pool";
    memkit::pool p{Size, align};
    void* allocate() { return p.allocate(); }
    void deallocate(void* q) noexcept { p.deallocate(q); }
};

template <std::size_t Size>
struct pmr_pool {
    static constexpr const char* name = "std::pmr::unsynchronized_pool_resource";
    std::pmr::unsynchronized_pool_resource r;
    void* allocate() { return r.allocate(Size, align); }
    void deallocate(void* q) noexcept { r.deallocate(q, Size, align); }
};

template <std::size_t Size>
struct c_malloc {
    static constexpr const char* name = "malloc";
    void* allocate() {
        void* q = std::malloc(Size);
        if (q == nullptr) throw std::bad_alloc();
        return q;
    }
    void deallocate(void* q) noexcept { std::free(q); }
};

#if defined(MEMKIT_BENCH_HAVE_BOOST)
template <std::size_t Size>
struct boost_pool {
    static constexpr const char* name = "boost::pool";
    boost::pool<> p{Size};
    void* allocate() {
        void* q = p.malloc();
        if (q == nullptr) throw std::bad_alloc();
        return q;
    }
    void deallocate(void* q) noexcept { p.free(q); }
};
#endif

template <class Subject>
void single(benchmark::State& state) {
    Subject s;
    for (auto _ : state) {
        for (std::size_t i = 0; i < single_rounds; ++i) {
            void* p = s.allocate();
            mb::touch(p);
            s.deallocate(p);
        }
    }
    mb::set_allocations(state, single_rounds);
}

// Frees in the order given by `order` (identity: bulk; a fixed permutation: shuffled).
template <class Subject>
void bulk_in_order(benchmark::State& state, std::span<const std::size_t> order) {
    Subject s;
    std::vector<void*> ptrs(bulk_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < bulk_count; ++i) {
            void* p = s.allocate();
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (std::size_t i : order) s.deallocate(ptrs[i]);
    }
    mb::set_allocations(state, bulk_count);
}

const std::vector<std::size_t>& in_order() {
    static const std::vector<std::size_t> order = [] {
        std::vector<std::size_t> v(bulk_count);
        std::iota(v.begin(), v.end(), std::size_t{0});
        return v;
    }();
    return order;
}

const std::vector<std::size_t>& shuffled() {
    static const std::vector<std::size_t> order = mb::shuffled_indices(bulk_count, shuffle_seed);
    return order;
}

// Registers one case for memkit's pool and every peer, so that they run back to back.
template <template <class> class Pattern, std::size_t Size>
void register_pattern(const char* pattern, std::size_t ops) {
    const std::string case_name = std::string("pool/") + pattern + "/" + std::to_string(Size);
    mb::add_case({case_name, memkit_pool<Size>::name, mb::role::memkit, ops},
                 Pattern<memkit_pool<Size>>::run);
    mb::add_case({case_name, pmr_pool<Size>::name, mb::role::peer, ops},
                 Pattern<pmr_pool<Size>>::run);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({case_name, boost_pool<Size>::name, mb::role::peer, ops},
                 Pattern<boost_pool<Size>>::run);
#else
    mb::add_skipped(case_name, "boost::pool", "Boost headers not installed; run scripts/setup");
#endif
    mb::add_case({case_name, c_malloc<Size>::name, mb::role::peer, ops},
                 Pattern<c_malloc<Size>>::run);
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

template <std::size_t Size>
void register_size() {
    register_pattern<single_pattern, Size>("single", single_rounds);
    register_pattern<bulk_pattern, Size>("bulk", bulk_count);
    register_pattern<shuffled_pattern, Size>("shuffled", bulk_count);
}

bool register_all() {
    register_size<16>();
    register_size<64>();
    register_size<256>();
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
