// What memkit's composition blocks (include/memkit/compose/) cost on top of the allocator they
// wrap. These are memkit-versus-memkit numbers: in every case the "memkit" subject is a
// composition and the "peer" is the same allocator used bare, so the ratio (peer / memkit) is
// the composed speed relative to the bare one - 1.0 means free, 0.8 means 25% slower. Case names
// say so: "compose/<block>-overhead/<size>".
//
// Workload of every case (the "shuffled" pattern): allocate 4096 blocks, writing one byte into
// each, then free them in a fixed random order; each subject is built once per benchmark and
// keeps its memory between rounds. Sizes are 64 bytes for the blocks over memkit::pool, and
// "random-small" (16..256 bytes, fixed seed) for those over memkit::pool_collection.
//   stats_collector-overhead/64       stats_collector<pool>        vs pool
//   budgeted-overhead/64              budgeted<pool>               vs pool
//   fallback-overhead/64              fallback<pool, system>       vs pool (deallocate asks
//                                                                    pool.owns(): O(chunks))
//   segregator-overhead/random-small  segregator<256, pool_collection, system> vs pool_collection
//   nested-overhead/random-small      stats_collector<budgeted<segregator<...>>> vs pool_collection
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common/harness.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/pool_collection.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/compose/budgeted.hpp"
#include "memkit/compose/fallback.hpp"
#include "memkit/compose/segregator.hpp"
#include "memkit/compose/stats_collector.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t count = 4096;
constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::size_t node = 64;
constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();
constexpr std::uint64_t size_seed = 0x73697a6573;  // "sizes"
constexpr std::uint64_t order_seed = 0x6f72646572; // "order"

const std::vector<std::size_t>& fixed_sizes() {
    static const std::vector<std::size_t> s(count, node);
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

using seg = memkit::segregator<256, memkit::pool_collection, memkit::system_allocator>;

// The subjects, each built the same way for every round.
struct bare_pool {
    memkit::pool a{node, align};
};
struct counted_pool {
    memkit::stats_collector<memkit::pool> a{std::in_place, node, align};
};
struct budgeted_pool {
    memkit::budgeted<memkit::pool> a{unlimited, std::in_place, node, align};
};
struct pool_or_heap {
    memkit::fallback<memkit::pool, memkit::system_allocator> a{memkit::pool{node, align}, {}};
};
struct bare_collection {
    memkit::pool_collection a;
};
struct segregated {
    seg a;
};
struct nested {
    memkit::stats_collector<memkit::budgeted<seg>> a{std::in_place, unlimited};
};

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

template <class Composed, class Bare>
void register_overhead(const std::string& block, const char* composed_name, const char* bare_name,
                       const std::vector<std::size_t>& (*sizes)(), const char* size_label) {
    const std::string case_name = "compose/" + block + "-overhead/" + size_label;
    mb::add_case({case_name, composed_name, mb::role::memkit, count},
                 [sizes](benchmark::State& st) { shuffled<Composed>(st, sizes()); });
    mb::add_case({case_name, bare_name, mb::role::peer, count},
                 [sizes](benchmark::State& st) { shuffled<Bare>(st, sizes()); });
}

bool register_all() {
    register_overhead<counted_pool, bare_pool>("stats_collector",
                                               "memkit::stats_collector<pool>",
                                               "memkit::pool (bare)", fixed_sizes, "64");
    register_overhead<budgeted_pool, bare_pool>("budgeted", "memkit::budgeted<pool>",
                                                "memkit::pool (bare)", fixed_sizes, "64");
    register_overhead<pool_or_heap, bare_pool>("fallback", "memkit::fallback<pool, system>",
                                               "memkit::pool (bare)", fixed_sizes, "64");
    register_overhead<segregated, bare_collection>(
        "segregator", "memkit::segregator<256, pool_collection, system>",
        "memkit::pool_collection (bare)", small_sizes, "random-small");
    register_overhead<nested, bare_collection>(
        "nested", "memkit::stats_collector<budgeted<segregator<...>>>",
        "memkit::pool_collection (bare)", small_sizes, "random-small");
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
