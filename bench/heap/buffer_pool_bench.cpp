// What a memkit::buffer_pool (include/memkit/heap/buffer_pool.hpp) get + put costs next to the
// allocators a program would otherwise get its I/O buffers from:
//   malloc                                  - glibc malloc/free of the same size;
//   std::pmr::unsynchronized_pool_resource  - configured with largest_required_pool_block = 1 MiB
//                                             so that every size here is pooled;
//   std::pmr::synchronized_pool_resource    - the same, thread-safe (what a buffer shared between
//                                             threads needs, like memkit's pool).
//
// Pattern get-put/<size>: get one buffer of <size> bytes, write its first and last byte, give it
// back; repeated. Steady state: every subject is built once per benchmark and warm after the
// first round, so this is the recycling cost the pool exists for (a hit in the thread's stack).
// Times are per get + put pair.
#include <cstddef>
#include <memory_resource>
#include <string>

#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#include "memkit/heap/buffer_pool.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t rounds = 256; // get/put pairs per benchmark iteration
constexpr std::size_t align = alignof(std::max_align_t);

void touch_ends(std::byte* p, std::size_t n) noexcept {
    p[0] = std::byte{0x5a};
    p[n - 1] = std::byte{0x5a};
    benchmark::DoNotOptimize(p);
}

struct memkit_buffer_pool {
    static constexpr const char* name = "memkit::buffer_pool";
    memkit::buffer_pool pool;
    void run(std::size_t n) {
        memkit::buffer_pool::buffer b = pool.get(n);
        touch_ends(b.data(), n);
    }
};

struct c_malloc {
    static constexpr const char* name = "malloc";
    mb::malloc_peer m;
    void run(std::size_t n) {
        auto* p = static_cast<std::byte*>(m.allocate(n));
        touch_ends(p, n);
        m.deallocate(p, n);
    }
};

std::pmr::pool_options pooled_up_to_1mib() {
    std::pmr::pool_options o;
    o.largest_required_pool_block = std::size_t{1} << 20;
    return o;
}

struct pmr_unsync {
    static constexpr const char* name = "std::pmr::unsynchronized_pool_resource";
    std::pmr::unsynchronized_pool_resource r{pooled_up_to_1mib()};
    void run(std::size_t n) {
        auto* p = static_cast<std::byte*>(r.allocate(n, align));
        touch_ends(p, n);
        r.deallocate(p, n, align);
    }
};

struct pmr_sync {
    static constexpr const char* name = "std::pmr::synchronized_pool_resource";
    std::pmr::synchronized_pool_resource r{pooled_up_to_1mib()};
    void run(std::size_t n) {
        auto* p = static_cast<std::byte*>(r.allocate(n, align));
        touch_ends(p, n);
        r.deallocate(p, n, align);
    }
};

template <class Subject>
void get_put(benchmark::State& state, std::size_t n) {
    Subject s;
    for (auto _ : state)
        for (std::size_t i = 0; i < rounds; ++i) s.run(n);
    mb::set_allocations(state, rounds);
}

template <class Subject>
void add(std::size_t size, mb::role who) {
    mb::add_case({"buffer_pool/get-put/" + std::to_string(size), Subject::name, who, rounds},
                 [size](benchmark::State& s) { get_put<Subject>(s, size); });
}

bool register_all() {
    for (std::size_t size : {std::size_t{256}, std::size_t{4096}, std::size_t{65536}}) {
        add<memkit_buffer_pool>(size, mb::role::memkit);
        add<c_malloc>(size, mb::role::peer);
        add<pmr_unsync>(size, mb::role::peer);
        add<pmr_sync>(size, mb::role::peer);
    }
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
