// Benchmarks of memkit::virtual_arena (include/memkit/vm/virtual_arena.hpp): the cost of growth.
//
// Pattern "grow-reset": allocate 256-byte blocks, writing one byte into each (so every page is
// faulted in), until N MiB are in use, then reset. The arena lives across iterations, so this is
// the steady state of a per-batch arena: by default virtual_arena keeps committed what the last
// round used (retain_last_round), so after the first round it takes no page faults; memkit::arena
// keeps its first block and one spare and frees the other blocks to malloc;
// std::pmr::monotonic_buffer_resource frees everything to the heap. Other settings of the virtual
// arena are shown as peers, to price decommitting: keep 4 MiB (decommit the rest at each reset),
// keep nothing, and keep nothing without prefaulting commit steps (one page fault per page).
//
// Pattern "grow-fresh": the same growth to 16 MiB with a new allocator every iteration, so it
// includes the reservation (virtual_arena) or the first blocks (arena) and their release.
//
// Times are per allocation.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>

#include "common/harness.hpp"
#include "memkit/alloc/arena.hpp"
#include "memkit/vm/virtual_arena.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t block = 256;
constexpr std::size_t mib = std::size_t{1} << 20;

template <class Alloc, class Reset>
void grow(benchmark::State& state, Alloc& a, std::size_t count, Reset reset) {
    for (auto _ : state) {
        for (std::size_t i = 0; i < count; ++i) mb::touch(a.allocate(block, 16));
        benchmark::ClobberMemory();
        reset(a);
    }
    mb::set_allocations(state, count);
}

void grow_virtual(benchmark::State& state, std::size_t count, memkit::virtual_arena_options o) {
    memkit::virtual_arena a{o};
    grow(state, a, count, [](memkit::virtual_arena& v) { v.reset(); });
}

void grow_arena(benchmark::State& state, std::size_t count) {
    memkit::arena a;
    grow(state, a, count, [](memkit::arena& x) { x.reset(); });
}

void grow_monotonic(benchmark::State& state, std::size_t count) {
    std::pmr::monotonic_buffer_resource r{4096};
    grow(state, r, count, [](std::pmr::monotonic_buffer_resource& x) { x.release(); });
}

void register_grow_reset(std::size_t mebibytes) {
    const std::string c = "virtual_arena/grow-reset/" + std::to_string(mebibytes) + "MiB";
    const std::size_t count = mebibytes * mib / block;
    mb::add_case({c, "memkit::virtual_arena", mb::role::memkit, count},
                 [=](benchmark::State& s) { grow_virtual(s, count, {}); });
    mb::add_case({c, "memkit::arena", mb::role::peer, count},
                 [=](benchmark::State& s) { grow_arena(s, count); });
    mb::add_case({c, "std::pmr::monotonic_buffer_resource", mb::role::peer, count},
                 [=](benchmark::State& s) { grow_monotonic(s, count); });
    mb::add_case(
        {c, "memkit::virtual_arena(retain=4MiB)", mb::role::peer, count},
        [=](benchmark::State& s) { grow_virtual(s, count, {.retain_last_round = false}); });
    mb::add_case({c, "memkit::virtual_arena(retain=0)", mb::role::peer, count},
                 [=](benchmark::State& s) {
                     grow_virtual(s, count, {.retain_on_reset = 0, .retain_last_round = false});
                 });
    mb::add_case({c, "memkit::virtual_arena(retain=0,no-populate)", mb::role::peer, count},
                 [=](benchmark::State& s) {
                     grow_virtual(
                         s, count,
                         {.retain_on_reset = 0, .retain_last_round = false, .populate = false});
                 });
}

template <class Make>
void grow_fresh(benchmark::State& state, std::size_t count, Make make) {
    for (auto _ : state) {
        auto a = make();
        for (std::size_t i = 0; i < count; ++i) mb::touch(a->allocate(block, 16));
        benchmark::ClobberMemory();
    }
    mb::set_allocations(state, count);
}

void register_grow_fresh() {
    const std::string c = "virtual_arena/grow-fresh/16MiB";
    const std::size_t count = 16 * mib / block;
    mb::add_case({c, "memkit::virtual_arena", mb::role::memkit, count}, [=](benchmark::State& s) {
        grow_fresh(s, count, [] { return std::make_unique<memkit::virtual_arena>(); });
    });
    mb::add_case({c, "memkit::arena", mb::role::peer, count}, [=](benchmark::State& s) {
        grow_fresh(s, count, [] { return std::make_unique<memkit::arena>(); });
    });
    mb::add_case({c, "std::pmr::monotonic_buffer_resource", mb::role::peer, count},
                 [=](benchmark::State& s) {
                     grow_fresh(s, count, [] {
                         return std::make_unique<std::pmr::monotonic_buffer_resource>(4096);
                     });
                 });
}

bool register_all() {
    register_grow_reset(1);
    register_grow_reset(16);
    register_grow_reset(256);
    register_grow_fresh();
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
