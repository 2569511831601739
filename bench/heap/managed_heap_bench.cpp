// What memkit::managed_heap (include/memkit/heap/managed_heap.hpp) costs per allocation next to
// the heap it is built on and to glibc malloc:
//   memkit::tlsf_heap               - the raw single-threaded tlsf heap (no lock, no accounting):
//                                     the floor;
//   memkit::synchronized<tlsf_heap> - the same heap behind one std::mutex: what the lock alone
//                                     costs, so the rest of the difference is the accounting;
//   malloc                          - glibc malloc/free.
//
// Case managed_heap/alloc-free/random-small: 1024 live blocks of 16..256 bytes (fixed-seed sizes);
// each step frees a random block (fixed-seed xorshift) and allocates a new one into its slot. The
// managed heap spreads the blocks over 8 owners (each with a limit that is never reached, under a
// common parent owner), so every pair charges and releases two budget levels, links and unlinks
// the block in its owner's list and checks the pressure level. Time per (free + allocate) pair,
// one thread; the subjects keep their memory between iterations (steady state).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#include "memkit/alloc/tlsf.hpp"
#include "memkit/compose/synchronized.hpp"
#include "memkit/heap/managed_heap.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::size_t live = 1024;
constexpr std::size_t pairs = 1024; // replacements per benchmark iteration
constexpr std::size_t sequence_length = std::size_t{1} << 16;
constexpr std::uint64_t size_seed = 0x6d686561; // "mhea"
constexpr std::uint64_t order_seed = 0x6f72646572;
constexpr std::size_t owners = 8;

struct memkit_managed {
    static constexpr const char* name = "memkit::managed_heap";
    memkit::managed_heap h{memkit::managed_heap_options{.capacity = std::size_t{256} << 20,
                                                        .region_size = std::size_t{64} << 20}};
    std::vector<memkit::owner_id> ids;
    std::size_t next_owner = 0;
    memkit_managed() {
        const memkit::owner_id parent = h.create_owner("service", std::size_t{128} << 20);
        for (std::size_t i = 0; i < owners; ++i)
            ids.push_back(h.create_owner("request", std::size_t{16} << 20, parent));
    }
    void* allocate(std::size_t n) {
        next_owner = (next_owner + 1) % owners;
        return h.allocate(n, ids[next_owner], align);
    }
    void deallocate(void* p, std::size_t /*n*/) { h.deallocate(p); }
};

struct memkit_tlsf {
    static constexpr const char* name = "memkit::tlsf_heap";
    memkit::tlsf_heap h{std::size_t{64} << 20,
                        memkit::tlsf_options{.region_size = std::size_t{64} << 20}};
    void* allocate(std::size_t n) { return h.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { h.deallocate(p, n, align); }
};

struct locked_tlsf {
    static constexpr const char* name = "memkit::synchronized<tlsf_heap>";
    memkit::synchronized<memkit::tlsf_heap> h{
        std::in_place, std::size_t{64} << 20,
        memkit::tlsf_options{.region_size = std::size_t{64} << 20}};
    void* allocate(std::size_t n) { return h.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { h.deallocate(p, n, align); }
};

template <class Subject>
void alloc_free(benchmark::State& state) {
    static const std::vector<std::size_t> sz = mb::random_sizes(sequence_length, 16, 256, size_seed);
    Subject s;
    std::vector<void*> ptrs(live);
    std::vector<std::size_t> size_of(live);
    for (std::size_t i = 0; i < live; ++i) {
        size_of[i] = sz[i];
        ptrs[i] = s.allocate(size_of[i]);
        mb::touch(ptrs[i]);
    }
    std::size_t next = live;
    std::uint64_t x = order_seed;
    for (auto _ : state) {
        for (std::size_t k = 0; k < pairs; ++k) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            const auto i = static_cast<std::size_t>(((x >> 32) * live) >> 32);
            s.deallocate(ptrs[i], size_of[i]);
            const std::size_t n = sz[next++ % sz.size()];
            void* p = s.allocate(n);
            mb::touch(p);
            ptrs[i] = p;
            size_of[i] = n;
        }
    }
    for (std::size_t i = 0; i < live; ++i) s.deallocate(ptrs[i], size_of[i]);
    mb::set_allocations(state, pairs);
}

template <class Subject>
void add(mb::role who) {
    mb::add_case({"managed_heap/alloc-free/random-small", Subject::name, who, pairs},
                 [](benchmark::State& s) { alloc_free<Subject>(s); });
}

bool register_all() {
    add<memkit_managed>(mb::role::memkit);
    add<memkit_tlsf>(mb::role::peer);
    add<locked_tlsf>(mb::role::peer);
    add<mb::malloc_peer>(mb::role::peer);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
