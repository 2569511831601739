// What memkit::debug_allocator (include/memkit/debug/debug_allocator.hpp) costs on top of the
// allocator it checks. The "memkit" subject is always a debug_allocator<system_allocator>; its
// peers are the same heap without checks, so the ratio (peer ns / memkit ns) is below 1 and its
// inverse is the overhead factor of turning the checks on:
//   malloc                           - std::malloc/std::free directly;
//   memkit::system_allocator (bare)  - the allocator the debug_allocator wraps;
//   memkit::affix<system, fence, fence> - 16-byte fence objects written before and after each
//                                      block, never checked (the cheapest possible "fences").
// Cases ("debug_allocator/<pattern>/<size>"):
//   single/64              - allocate one 64-byte block and free it at once, 256 times;
//   shuffled/64            - allocate 4096 blocks of 64 bytes, free them in a fixed random order;
//   shuffled/random-small  - the same with sizes 16..256 bytes (fixed seed);
//   shuffled-nofill/random-small - debug_allocator with fill patterns and quarantine off (fences
//                            and the block table only), to show what those two cost;
//   shuffled-pool/64       - debug_allocator<pool> (96-byte nodes: the block and its fences)
//                            against a bare pool of 64-byte nodes. A pool is not thread-safe, so
//                            this debug_allocator takes no lock: the cost of the checks alone.
// One byte is written into every block. Each subject is built once per benchmark and keeps its
// memory between rounds (the debug_allocator keeps its quarantine), so these are steady states.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/compose/affix.hpp"
#include "memkit/debug/debug_allocator.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t count = 4096;
constexpr std::size_t single_rounds = 256;
constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::uint64_t size_seed = 0x64656275; // "debu"
constexpr std::uint64_t order_seed = 0x67;      // "g"

struct fence {
    unsigned char bytes[16];
    fence() noexcept { std::memset(bytes, 0xFD, sizeof bytes); }
};

// The subjects, each with allocate(size) / deallocate(p, size).
struct debug_default {
    memkit::debug_allocator<memkit::system_allocator> a;
};
struct debug_bookkeeping {
    memkit::debug_allocator<memkit::system_allocator> a{
        memkit::debug_options{.fill = false, .quarantine_blocks = 0}};
};
struct debug_pool {
    memkit::debug_allocator<memkit::pool> a{std::in_place, 64 + 2 * 16, align};
};
struct bare_pool {
    memkit::pool a{64, align};
};
struct bare_system {
    memkit::system_allocator a;
};
struct affix_fences {
    memkit::affix<memkit::system_allocator, fence, fence> a;
};
struct c_malloc {
    struct heap {
        static void* allocate(std::size_t n, std::size_t) {
            void* p = std::malloc(n);
            if (p == nullptr) throw std::bad_alloc();
            return p;
        }
        static void deallocate(void* p, std::size_t, std::size_t) noexcept { std::free(p); }
    } a;
};

const std::vector<std::size_t>& fixed_sizes() {
    static const std::vector<std::size_t> s(count, 64);
    return s;
}
const std::vector<std::size_t>& small_sizes() {
    static const std::vector<std::size_t> s = mb::random_sizes(count, 16, 256, size_seed);
    return s;
}
const std::vector<std::size_t>& order() {
    static const std::vector<std::size_t> o = mb::shuffled_indices(count, order_seed);
    return o;
}

template <class Subject>
void shuffled(benchmark::State& state, const std::vector<std::size_t>& sizes) {
    Subject s;
    std::vector<void*> ptrs(count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < count; ++i) {
            void* p = s.a.allocate(sizes[i], align);
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (std::size_t i : order()) s.a.deallocate(ptrs[i], sizes[i], align);
    }
    mb::set_allocations(state, count);
}

template <class Subject>
void single(benchmark::State& state) {
    Subject s;
    for (auto _ : state) {
        for (std::size_t i = 0; i < single_rounds; ++i) {
            void* p = s.a.allocate(64, align);
            mb::touch(p);
            s.a.deallocate(p, 64, align);
        }
    }
    mb::set_allocations(state, single_rounds);
}

template <class Debug>
void register_shuffled(const std::string& case_name, const char* debug_name,
                       const std::vector<std::size_t>& (*sizes)()) {
    mb::add_case({case_name, debug_name, mb::role::memkit, count},
                 [sizes](benchmark::State& st) { shuffled<Debug>(st, sizes()); });
    mb::add_case({case_name, "malloc", mb::role::peer, count},
                 [sizes](benchmark::State& st) { shuffled<c_malloc>(st, sizes()); });
    mb::add_case({case_name, "memkit::system_allocator (bare)", mb::role::peer, count},
                 [sizes](benchmark::State& st) { shuffled<bare_system>(st, sizes()); });
    mb::add_case({case_name, "memkit::affix<system, fence16, fence16>", mb::role::peer, count},
                 [sizes](benchmark::State& st) { shuffled<affix_fences>(st, sizes()); });
}

bool register_all() {
    const std::string single_case = "debug_allocator/single/64";
    mb::add_case({single_case, "memkit::debug_allocator<system>", mb::role::memkit, single_rounds},
                 [](benchmark::State& st) { single<debug_default>(st); });
    mb::add_case({single_case, "malloc", mb::role::peer, single_rounds},
                 [](benchmark::State& st) { single<c_malloc>(st); });
    mb::add_case({single_case, "memkit::system_allocator (bare)", mb::role::peer, single_rounds},
                 [](benchmark::State& st) { single<bare_system>(st); });
    mb::add_case(
        {single_case, "memkit::affix<system, fence16, fence16>", mb::role::peer, single_rounds},
        [](benchmark::State& st) { single<affix_fences>(st); });
    register_shuffled<debug_default>("debug_allocator/shuffled/64",
                                     "memkit::debug_allocator<system>", fixed_sizes);
    register_shuffled<debug_default>("debug_allocator/shuffled/random-small",
                                     "memkit::debug_allocator<system>", small_sizes);
    register_shuffled<debug_bookkeeping>("debug_allocator/shuffled-nofill/random-small",
                                         "memkit::debug_allocator<system> (no fill, no quarantine)",
                                         small_sizes);
    const std::string pool_case = "debug_allocator/shuffled-pool/64";
    mb::add_case({pool_case, "memkit::debug_allocator<pool>", mb::role::memkit, count},
                 [](benchmark::State& st) { shuffled<debug_pool>(st, fixed_sizes()); });
    mb::add_case({pool_case, "memkit::pool (bare)", mb::role::peer, count},
                 [](benchmark::State& st) { shuffled<bare_pool>(st, fixed_sizes()); });
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
