// Benchmarks of memkit::arena (include/memkit/alloc/arena.hpp) against the allocators it
// replaces for scratch data: std::pmr::monotonic_buffer_resource (used through its concrete type,
// so calls are not virtual), malloc/free and ::operator new/delete.
//
// Pattern "bulk": allocate N blocks, writing one byte into each, then give all of them back: the
// arena and the monotonic resource by reset()/release(), malloc and new/delete by freeing the N
// blocks in allocation order. Times are per allocation, so malloc's and new's include their
// share of the frees. Sizes: fixed 16, 64 and 256 bytes ("arena/bulk/64"), and "random-small":
// 16..256 bytes from a fixed seed, precomputed outside the timed region and the same for all.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "memkit/alloc/arena.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t bulk_count = 4096;
constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::uint64_t random_small_seed = 0x6d656d6b6974; // "memkit"

// The size of the i-th request: a compile-time constant for the fixed cases, so that every
// subject's fast path sees the constant size a typical caller would pass.
template <std::size_t Size>
struct fixed_size {
    constexpr std::size_t operator()(std::size_t /*i*/) const noexcept { return Size; }
};

struct listed_size {
    const std::vector<std::size_t>* sizes;
    std::size_t operator()(std::size_t i) const noexcept { return (*sizes)[i]; }
};

// Both bump allocators start with a 4 KiB first block (the arena's default block size) and
// then grow by their own policy.
constexpr std::size_t first_block = 4096;

template <class Sizes>
void bulk_arena(benchmark::State& state, Sizes size_of) {
    memkit::arena a{memkit::arena_options{.block_size = first_block}};
    std::vector<void*> ptrs(bulk_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < bulk_count; ++i) {
            void* p = a.allocate(size_of(i), align);
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        a.reset();
    }
    mb::set_allocations(state, bulk_count);
}

template <class Sizes>
void bulk_monotonic(benchmark::State& state, Sizes size_of) {
    std::pmr::monotonic_buffer_resource r{first_block};
    std::vector<void*> ptrs(bulk_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < bulk_count; ++i) {
            void* p = r.allocate(size_of(i), align);
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        r.release();
    }
    mb::set_allocations(state, bulk_count);
}

template <class Sizes>
void bulk_malloc(benchmark::State& state, Sizes size_of) {
    std::vector<void*> ptrs(bulk_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < bulk_count; ++i) {
            void* p = std::malloc(size_of(i));
            if (p == nullptr) {
                state.SkipWithError("malloc failed");
                return;
            }
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (void* p : ptrs) std::free(p);
    }
    mb::set_allocations(state, bulk_count);
}

template <class Sizes>
void bulk_new_delete(benchmark::State& state, Sizes size_of) {
    std::vector<void*> ptrs(bulk_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < bulk_count; ++i) {
            void* p = ::operator new(size_of(i));
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        // Unsized: clang enables sized deallocation only with -fsized-deallocation.
        for (void* p : ptrs) ::operator delete(p);
    }
    mb::set_allocations(state, bulk_count);
}

template <class Sizes>
void register_bulk(const std::string& case_name, Sizes size_of) {
    mb::add_case({case_name, "memkit::arena", mb::role::memkit, bulk_count},
                 [size_of](benchmark::State& s) { bulk_arena(s, size_of); });
    mb::add_case({case_name, "std::pmr::monotonic_buffer_resource", mb::role::peer, bulk_count},
                 [size_of](benchmark::State& s) { bulk_monotonic(s, size_of); });
    mb::add_case({case_name, "malloc", mb::role::peer, bulk_count},
                 [size_of](benchmark::State& s) { bulk_malloc(s, size_of); });
    mb::add_case({case_name, "new/delete", mb::role::peer, bulk_count},
                 [size_of](benchmark::State& s) { bulk_new_delete(s, size_of); });
}

bool register_all() {
    register_bulk("arena/bulk/16", fixed_size<16>{});
    register_bulk("arena/bulk/64", fixed_size<64>{});
    register_bulk("arena/bulk/256", fixed_size<256>{});
    // Lives as long as the registered benchmarks, which hold a pointer to it.
    static const std::vector<std::size_t> random_small =
        mb::random_sizes(bulk_count, 16, 256, random_small_seed);
    register_bulk("arena/bulk/random-small", listed_size{&random_small});
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
