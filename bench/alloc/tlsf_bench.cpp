// Benchmarks of memkit::tlsf_heap (include/memkit/alloc/tlsf.hpp) against the general-purpose
// allocators a heap replaces: glibc malloc/free and std::pmr::unsynchronized_pool_resource (used
// through its concrete type, over new/delete).
//
// Cases, one byte written into every block, the same sizes and orders (fixed seeds) for all:
//   tlsf/shuffled/random-mixed - allocate 1024 blocks of 16 B..64 KiB, then free them in a random
//                                order; time per allocation, including its share of the frees;
//   tlsf/live-1e3/random-small, tlsf/live-1e6/random-small, tlsf/live-1e3/random-mixed
//                              - keep N blocks live (16..256 B, or 16 B..64 KiB for N = 1e3: a
//                                million mixed blocks would need 32 GiB), then repeatedly free a
//                                random one and allocate a random size into its slot; time per
//                                (free + allocate) pair. The 1e3 and 1e6 cases differ only in N;
//                                with 1e6 blocks every subject also pays cache and TLB misses on
//                                the block it frees, so compare subjects within a case;
//   tlsf/latency-1e3/random-small, tlsf/latency-1e6/random-small
//                              - the live-N workload with every allocate and every free timed
//                                on its own (std::chrono::steady_clock, whose ~20 ns per
//                                reading is included); the Google Benchmark counters
//                                alloc_p50_ns, alloc_p99_ns, alloc_max_ns, free_p50_ns,
//                                free_p99_ns, free_max_ns give the distribution (memkit-bench
//                                prints them; the `memkit bench` table shows the mean pair).
// Each subject is built once per benchmark run and keeps its memory between iterations, so the
// numbers are the steady state. The tlsf heap starts with a 64 MiB region and grows by 64 MiB.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#include "memkit/alloc/tlsf.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::size_t shuffled_count = 1024;
constexpr std::size_t replacements_per_iteration = 1024;
constexpr std::size_t sequence_length = std::size_t{1} << 16; // sizes, reused cyclically
constexpr std::uint64_t size_seed = 0x746c7366;               // "tlsf"
constexpr std::uint64_t order_seed = 0x6f72646572;            // "order"
constexpr std::size_t small_lo = 16, small_hi = 256, mixed_lo = 16, mixed_hi = 64 * 1024;

// Each subject as the two operations the patterns need, with the allocator's natural calls.
struct memkit_tlsf {
    static constexpr const char* name = "memkit::tlsf_heap";
    memkit::tlsf_heap h{std::size_t{64} << 20,
                        memkit::tlsf_options{.region_size = std::size_t{64} << 20}};
    void* allocate(std::size_t n) { return h.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { h.deallocate(p, n, align); }
};

using c_malloc = memkit::bench::malloc_peer;

struct pmr_pool {
    static constexpr const char* name = "std::pmr::unsynchronized_pool_resource";
    std::pmr::unsynchronized_pool_resource r;
    void* allocate(std::size_t n) { return r.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { r.deallocate(p, n, align); }
};

const std::vector<std::size_t>& sizes(std::size_t lo, std::size_t hi) {
    static const std::vector<std::size_t> small =
        mb::random_sizes(sequence_length, small_lo, small_hi, size_seed);
    static const std::vector<std::size_t> mixed =
        mb::random_sizes(sequence_length, mixed_lo, mixed_hi, size_seed);
    return lo == small_lo && hi == small_hi ? small : mixed;
}

// --- shuffled ----------------------------------------------------------------------------------

template <class Subject>
void shuffled(benchmark::State& state) {
    static const std::vector<std::size_t> order = mb::shuffled_indices(shuffled_count, order_seed);
    const std::vector<std::size_t>& sz = sizes(mixed_lo, mixed_hi);
    Subject s;
    std::vector<void*> ptrs(shuffled_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < shuffled_count; ++i) {
            void* p = s.allocate(sz[i]);
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (std::size_t i : order) s.deallocate(ptrs[i], sz[i]);
    }
    mb::set_allocations(state, shuffled_count);
}

// --- live-N ------------------------------------------------------------------------------------

// N live blocks: slot i starts with sizes[i % len]; the k-th replacement frees a slot drawn by
// a fixed-seed xorshift generator (uniform over all N slots: a table of slots would cycle over a
// subset) and allocates sizes[(N + k) % len] into it.
template <class Subject>
struct live_set {
    Subject s;
    std::vector<void*> ptrs;
    std::vector<std::size_t> size_of;
    const std::vector<std::size_t>& sz;
    std::size_t next = 0;
    std::uint64_t state = order_seed;

    live_set(std::size_t live, const std::vector<std::size_t>& sizes_seq)
        : ptrs(live), size_of(live), sz(sizes_seq) {
        for (std::size_t i = 0; i < live; ++i) {
            size_of[i] = sz[i % sz.size()];
            ptrs[i] = s.allocate(size_of[i]);
            mb::touch(ptrs[i]);
        }
        next = live;
    }
    live_set(const live_set&) = delete;
    live_set& operator=(const live_set&) = delete;
    ~live_set() {
        for (std::size_t i = 0; i < ptrs.size(); ++i) s.deallocate(ptrs[i], size_of[i]);
    }

    MEMKIT_ALWAYS_INLINE std::size_t pick() noexcept {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return static_cast<std::size_t>(((state >> 32) * ptrs.size()) >> 32);
    }
    MEMKIT_ALWAYS_INLINE std::size_t new_size() noexcept { return sz[next++ % sz.size()]; }
};

template <class Subject, std::size_t Live, std::size_t Lo, std::size_t Hi>
void live_replace(benchmark::State& state) {
    live_set<Subject> set{Live, sizes(Lo, Hi)};
    for (auto _ : state) {
        for (std::size_t k = 0; k < replacements_per_iteration; ++k) {
            const std::size_t i = set.pick();
            set.s.deallocate(set.ptrs[i], set.size_of[i]);
            const std::size_t n = set.new_size();
            void* p = set.s.allocate(n);
            mb::touch(p);
            set.ptrs[i] = p;
            set.size_of[i] = n;
        }
    }
    mb::set_allocations(state, replacements_per_iteration);
}

// The same workload, every operation timed on its own.
template <class Subject, std::size_t Live>
void latency(benchmark::State& state) {
    using clock = std::chrono::steady_clock;
    live_set<Subject> set{Live, sizes(small_lo, small_hi)};
    std::vector<std::uint32_t> alloc_ns, free_ns;
    alloc_ns.reserve(std::size_t{1} << 22);
    free_ns.reserve(std::size_t{1} << 22);
    auto ns = [](clock::time_point a, clock::time_point b) {
        return static_cast<std::uint32_t>(std::min<std::int64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count(), UINT32_MAX));
    };
    for (auto _ : state) {
        for (std::size_t k = 0; k < replacements_per_iteration; ++k) {
            const std::size_t i = set.pick();
            const std::size_t n = set.new_size();
            const auto t0 = clock::now();
            set.s.deallocate(set.ptrs[i], set.size_of[i]);
            const auto t1 = clock::now();
            void* p = set.s.allocate(n);
            const auto t2 = clock::now();
            mb::touch(p);
            set.ptrs[i] = p;
            set.size_of[i] = n;
            if (free_ns.size() < free_ns.capacity()) {
                free_ns.push_back(ns(t0, t1));
                alloc_ns.push_back(ns(t1, t2));
            }
        }
    }
    mb::set_allocations(state, replacements_per_iteration);
    auto percentile = [](std::vector<std::uint32_t>& v, double q) {
        if (v.empty()) return 0.0;
        const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
        return static_cast<double>(v[k]);
    };
    auto max_of = [](const std::vector<std::uint32_t>& v) {
        return v.empty() ? 0.0 : static_cast<double>(*std::max_element(v.begin(), v.end()));
    };
    state.counters["alloc_p50_ns"] = percentile(alloc_ns, 0.50);
    state.counters["alloc_p99_ns"] = percentile(alloc_ns, 0.99);
    state.counters["alloc_max_ns"] = max_of(alloc_ns);
    state.counters["free_p50_ns"] = percentile(free_ns, 0.50);
    state.counters["free_p99_ns"] = percentile(free_ns, 0.99);
    state.counters["free_max_ns"] = max_of(free_ns);
}

// --- registration ------------------------------------------------------------------------------

// Registers one case for memkit's heap and every peer, so that they run back to back.
template <template <class> class Pattern>
void register_case(const std::string& case_name, std::size_t ops) {
    mb::add_case({case_name, memkit_tlsf::name, mb::role::memkit, ops}, Pattern<memkit_tlsf>::run);
    mb::add_case({case_name, pmr_pool::name, mb::role::peer, ops}, Pattern<pmr_pool>::run);
    mb::add_case({case_name, c_malloc::name, mb::role::peer, ops}, Pattern<c_malloc>::run);
}

template <class Subject>
struct shuffled_pattern {
    static void run(benchmark::State& s) { shuffled<Subject>(s); }
};
template <std::size_t Live, std::size_t Lo, std::size_t Hi>
struct live_pattern {
    template <class Subject>
    struct of {
        static void run(benchmark::State& s) { live_replace<Subject, Live, Lo, Hi>(s); }
    };
};
template <std::size_t Live>
struct latency_pattern {
    template <class Subject>
    struct of {
        static void run(benchmark::State& s) { latency<Subject, Live>(s); }
    };
};

bool register_all() {
    register_case<shuffled_pattern>("tlsf/shuffled/random-mixed", shuffled_count);
    register_case<live_pattern<1000, small_lo, small_hi>::of>("tlsf/live-1e3/random-small",
                                                              replacements_per_iteration);
    register_case<live_pattern<1000000, small_lo, small_hi>::of>("tlsf/live-1e6/random-small",
                                                                 replacements_per_iteration);
    register_case<live_pattern<1000, mixed_lo, mixed_hi>::of>("tlsf/live-1e3/random-mixed",
                                                              replacements_per_iteration);
    register_case<latency_pattern<1000>::of>("tlsf/latency-1e3/random-small",
                                             replacements_per_iteration);
    register_case<latency_pattern<1000000>::of>("tlsf/latency-1e6/random-small",
                                                replacements_per_iteration);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
