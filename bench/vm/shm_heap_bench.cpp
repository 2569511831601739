// Benchmarks of memkit::shm_heap (include/memkit/vm/shm_heap.hpp) against Boost.Interprocess's
// managed_shared_memory (its rbtree_best_fit allocator under an interprocess_mutex: the usual
// way to allocate in shared memory) and, as the process-local baseline, glibc malloc/free.
//
// Cases, one byte written into every block, the same sizes and orders (fixed seeds) for all:
//   shm_heap/single/64           - allocate one 64-byte block and free it; time per pair;
//   shm_heap/bulk/64             - allocate 1000 blocks of 64 B, then free them in the same order;
//                                  time per allocation, including its share of the frees;
//   shm_heap/shuffled/random-small - allocate 1000 blocks of 16..256 B, free them in a random
//                                  order;
//   shm_heap/live-1e3/random-small - keep 1000 blocks live, repeatedly free a random one and
//                                  allocate a random size into its slot; time per pair.
// Both shared-memory subjects take a process-shared lock on every call (one thread here, so
// uncontended) and live in a 64 MiB segment created once per benchmark run and removed after it.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#include "memkit/vm/shm_heap.hpp"

#if defined(MEMKIT_BENCH_HAVE_BOOST)
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#endif

namespace {

namespace mb = memkit::bench;

constexpr std::size_t segment_size = std::size_t{64} << 20;
constexpr std::size_t block_count = 1000;
constexpr std::size_t replacements = 1024;
constexpr std::uint64_t size_seed = 0x73686d;      // "shm"
constexpr std::uint64_t order_seed = 0x6f72646572; // "order"

std::string segment_name(const char* who) {
    static int counter = 0;
    return "/memkit-bench-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "-" +
           who;
}

struct memkit_shm {
    static constexpr const char* name = "memkit::shm_heap";
    memkit::shm_heap h =
        memkit::shm_heap::create(segment_name("memkit"), segment_size, {.remove_on_destroy = true});
    void* allocate(std::size_t n) { return h.allocate(n, alignof(std::max_align_t)); }
    void deallocate(void* p, std::size_t n) noexcept {
        h.deallocate(p, n, alignof(std::max_align_t));
    }
};

using c_malloc = mb::malloc_peer;

#if defined(MEMKIT_BENCH_HAVE_BOOST)
struct boost_shm {
    static constexpr const char* name = "boost::interprocess::managed_shared_memory";
    std::string seg_name = segment_name("boost").substr(1); // Boost adds the '/'
    boost::interprocess::managed_shared_memory m{boost::interprocess::create_only, seg_name.c_str(),
                                                 segment_size};
    boost_shm() = default;
    boost_shm(const boost_shm&) = delete;
    boost_shm& operator=(const boost_shm&) = delete;
    ~boost_shm() { boost::interprocess::shared_memory_object::remove(seg_name.c_str()); }
    void* allocate(std::size_t n) { return m.allocate(n); }
    void deallocate(void* p, std::size_t /*n*/) noexcept { m.deallocate(p); }
};
#endif

template <class Subject>
void single(benchmark::State& state) {
    Subject s;
    for (auto _ : state) {
        void* p = s.allocate(64);
        mb::touch(p);
        s.deallocate(p, 64);
    }
    mb::set_allocations(state, 1);
}

template <class Subject>
void bulk(benchmark::State& state) {
    Subject s;
    std::vector<void*> ptrs(block_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < block_count; ++i) {
            ptrs[i] = s.allocate(64);
            mb::touch(ptrs[i]);
        }
        benchmark::ClobberMemory();
        for (std::size_t i = 0; i < block_count; ++i) s.deallocate(ptrs[i], 64);
    }
    mb::set_allocations(state, block_count);
}

template <class Subject>
void shuffled(benchmark::State& state) {
    static const std::vector<std::size_t> sizes = mb::random_sizes(block_count, 16, 256, size_seed);
    static const std::vector<std::size_t> order = mb::shuffled_indices(block_count, order_seed);
    Subject s;
    std::vector<void*> ptrs(block_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < block_count; ++i) {
            ptrs[i] = s.allocate(sizes[i]);
            mb::touch(ptrs[i]);
        }
        benchmark::ClobberMemory();
        for (std::size_t i : order) s.deallocate(ptrs[i], sizes[i]);
    }
    mb::set_allocations(state, block_count);
}

template <class Subject>
void live_replace(benchmark::State& state) {
    static const std::vector<std::size_t> sizes =
        mb::random_sizes(std::size_t{1} << 16, 16, 256, size_seed);
    Subject s;
    std::vector<void*> ptrs(block_count);
    std::vector<std::size_t> size_of(block_count);
    for (std::size_t i = 0; i < block_count; ++i) {
        size_of[i] = sizes[i];
        ptrs[i] = s.allocate(size_of[i]);
        mb::touch(ptrs[i]);
    }
    std::size_t next = block_count;
    std::uint64_t x = order_seed;
    for (auto _ : state) {
        for (std::size_t k = 0; k < replacements; ++k) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            const auto i = static_cast<std::size_t>(((x >> 32) * block_count) >> 32);
            s.deallocate(ptrs[i], size_of[i]);
            const std::size_t n = sizes[next++ % sizes.size()];
            ptrs[i] = s.allocate(n);
            mb::touch(ptrs[i]);
            size_of[i] = n;
        }
    }
    for (std::size_t i = 0; i < block_count; ++i) s.deallocate(ptrs[i], size_of[i]);
    mb::set_allocations(state, replacements);
}

template <template <class> class Pattern>
void register_case(const std::string& case_name, std::size_t ops) {
    mb::add_case({case_name, memkit_shm::name, mb::role::memkit, ops}, Pattern<memkit_shm>::run);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({case_name, boost_shm::name, mb::role::peer, ops}, Pattern<boost_shm>::run);
#else
    mb::add_skipped(case_name, "boost::interprocess::managed_shared_memory",
                    "Boost headers not installed; run scripts/setup");
#endif
    mb::add_case({case_name, c_malloc::name, mb::role::peer, ops}, Pattern<c_malloc>::run);
}

template <class Subject>
struct single_pattern {
    static void run(benchmark::State& s) { single<Subject>(s); }
};
template <class Subject>
struct bulk_pattern {
    static void run(benchmark::State& s) { bulk<Subject>(s); }
};
template <class Subject>
struct shuffled_pattern {
    static void run(benchmark::State& s) { shuffled<Subject>(s); }
};
template <class Subject>
struct live_pattern {
    static void run(benchmark::State& s) { live_replace<Subject>(s); }
};

bool register_all() {
    register_case<single_pattern>("shm_heap/single/64", 1);
    register_case<bulk_pattern>("shm_heap/bulk/64", block_count);
    register_case<shuffled_pattern>("shm_heap/shuffled/random-small", block_count);
    register_case<live_pattern>("shm_heap/live-1e3/random-small", replacements);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
