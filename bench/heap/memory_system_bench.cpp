// What a memkit::memory_system (include/memkit/heap/memory_system.hpp) allocate + deallocate
// costs, with its budget accounting and per-tier statistics, next to what a program would use
// instead of it:
//   malloc                                  - glibc malloc/free;
//   std::pmr::synchronized_pool_resource    - thread-safe like memory_system; pools up to 64 KiB
//                                             (largest_required_pool_block), the range that
//                                             memory_system's small and medium tiers cache, and
//                                             larger requests to new/delete as memory_system
//                                             sends them to malloc;
//   std::pmr::unsynchronized_pool_resource  - the same without locking (single-thread cases).
// memory_system runs with its default configuration (small <= 256 B, medium <= 64 KiB) and an
// unlimited budget, which still counts every byte.
//
// Patterns (times are per allocation + deallocation pair; one byte is written per block):
//   single/64           allocate one 64-byte block and free it, repeated: the hot path;
//   bulk/16-256         allocate 1024 blocks of random small sizes, then free them in order;
//   bulk/257-64K        the same with 256 random medium sizes (the TLSF tier);
//   bulk/64K-1M         64 random large sizes (the system allocator tier);
//   bulk/mixed          1024 sizes: 85 % 16..256 B, 14 % 257 B..64 KiB, 1 % 64 KiB..1 MiB;
//   bulk/16-256-2t      bulk/16-256 on 2 threads sharing one allocator (not the unsynchronized
//                       pool), each with its own sizes; CPU time per pair as Google Benchmark
//                       reports threaded runs.
// Every subject is built once per benchmark run and warm after the first round, so this is the
// steady state. Sizes come from fixed seeds; every subject sees the same sequence.
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <random>
#include <string>
#include <vector>

#include "common/handoff.hpp"
#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#include "memkit/heap/memory_system.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::size_t single_rounds = 1024;

std::pmr::pool_options pooled_up_to_64k() {
    std::pmr::pool_options o;
    o.largest_required_pool_block = std::size_t{64} << 10;
    return o;
}

struct memkit_system {
    static constexpr const char* name = "memkit::memory_system";
    memkit::memory_system sys{memkit::memory_system_config{}};
    void* allocate(std::size_t n) { return sys.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { sys.deallocate(p, n, align); }
};

struct c_malloc {
    static constexpr const char* name = "malloc";
    mb::malloc_peer m;
    void* allocate(std::size_t n) { return m.allocate(n); }
    void deallocate(void* p, std::size_t n) noexcept { m.deallocate(p, n); }
};

struct pmr_sync {
    static constexpr const char* name = "std::pmr::synchronized_pool_resource";
    std::pmr::synchronized_pool_resource r{pooled_up_to_64k()};
    void* allocate(std::size_t n) { return r.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { r.deallocate(p, n, align); }
};

struct pmr_unsync {
    static constexpr const char* name = "std::pmr::unsynchronized_pool_resource";
    std::pmr::unsynchronized_pool_resource r{pooled_up_to_64k()};
    void* allocate(std::size_t n) { return r.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { r.deallocate(p, n, align); }
};

std::vector<std::size_t> mixed_sizes(std::size_t count, std::uint64_t seed) {
    std::mt19937_64 rng{seed};
    std::uniform_int_distribution<int> pick{0, 99};
    std::uniform_int_distribution<std::size_t> small{16, 256}, medium{257, 64 << 10},
        large{(64 << 10) + 1, 1 << 20};
    std::vector<std::size_t> r(count);
    for (std::size_t& s : r) {
        const int k = pick(rng);
        s = k < 85 ? small(rng) : k < 99 ? medium(rng) : large(rng);
    }
    return r;
}

template <class Subject>
void single(benchmark::State& state, std::size_t n) {
    Subject s;
    for (auto _ : state)
        for (std::size_t i = 0; i < single_rounds; ++i) {
            void* p = s.allocate(n);
            mb::touch(p);
            s.deallocate(p, n);
        }
    mb::set_allocations(state, single_rounds);
}

template <class Subject>
void bulk_on(Subject& s, const std::vector<std::size_t>& sizes, std::vector<void*>& blocks) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        blocks[i] = s.allocate(sizes[i]);
        mb::touch(blocks[i]);
    }
    for (std::size_t i = 0; i < sizes.size(); ++i) s.deallocate(blocks[i], sizes[i]);
}

template <class Subject>
void bulk(benchmark::State& state, const std::vector<std::size_t>& sizes) {
    Subject s;
    std::vector<void*> blocks(sizes.size());
    for (auto _ : state) bulk_on(s, sizes, blocks);
    mb::set_allocations(state, sizes.size());
}

// Each thread allocates and frees its own blocks (its own size sequence) from the shared subject.
template <class Subject>
void bulk_threads(benchmark::State& state, std::size_t count) {
    const auto me = static_cast<std::uint64_t>(state.thread_index());
    const std::vector<std::size_t> sizes = mb::random_sizes(count, 16, 256, 0x5157 + me);
    std::vector<void*> blocks(sizes.size());
    mb::shared_run<Subject>::begin(state);
    for (auto _ : state) bulk_on(mb::shared_run<Subject>::get(), sizes, blocks);
    mb::shared_run<Subject>::end(state);
    mb::set_allocations(state, sizes.size());
}

template <class Subject>
void add_single(std::size_t n, mb::role who) {
    mb::add_case({"memory_system/single/" + std::to_string(n), Subject::name, who, single_rounds},
                 [n](benchmark::State& s) { single<Subject>(s, n); });
}

template <class Subject>
void add_bulk(const std::string& param, const std::vector<std::size_t>& sizes, mb::role who) {
    mb::add_case({"memory_system/bulk/" + param, Subject::name, who, sizes.size()},
                 [sizes](benchmark::State& s) { bulk<Subject>(s, sizes); });
}

template <class Subject>
void add_threads(std::size_t count, int threads, mb::role who) {
    mb::add_case(
        {"memory_system/bulk/16-256-" + std::to_string(threads) + "t", Subject::name, who, count},
        [count](benchmark::State& s) { bulk_threads<Subject>(s, count); })
        ->Threads(threads);
}

bool register_all() {
    add_single<memkit_system>(64, mb::role::memkit);
    add_single<c_malloc>(64, mb::role::peer);
    add_single<pmr_sync>(64, mb::role::peer);
    add_single<pmr_unsync>(64, mb::role::peer);

    struct shape {
        const char* param;
        std::vector<std::size_t> sizes;
    };
    const shape shapes[] = {
        {"16-256", mb::random_sizes(1024, 16, 256, 0x5151)},
        {"257-64K", mb::random_sizes(256, 257, 64 << 10, 0x5152)},
        {"64K-1M", mb::random_sizes(64, (64 << 10) + 1, 1 << 20, 0x5153)},
        {"mixed", mixed_sizes(1024, 0x5154)},
    };
    for (const shape& s : shapes) {
        add_bulk<memkit_system>(s.param, s.sizes, mb::role::memkit);
        add_bulk<c_malloc>(s.param, s.sizes, mb::role::peer);
        add_bulk<pmr_sync>(s.param, s.sizes, mb::role::peer);
        add_bulk<pmr_unsync>(s.param, s.sizes, mb::role::peer);
    }

    add_threads<memkit_system>(1024, 2, mb::role::memkit);
    add_threads<c_malloc>(1024, 2, mb::role::peer);
    add_threads<pmr_sync>(1024, 2, mb::role::peer);
    mb::add_skipped("memory_system/bulk/16-256-2t", "std::pmr::unsynchronized_pool_resource",
                    "not thread-safe");
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
