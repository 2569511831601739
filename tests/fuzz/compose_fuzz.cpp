// Fuzzes a nested composition through the shared driver: a stats_collector over a byte budget
// over a segregator whose small side is an affixed pool collection and whose large side is a
// capped arena falling back to a second pool collection. Every block crosses at least three
// composition layers; the collector's exact counts are checked against the driver's model, and
// reset() travels through every layer.
#include <cstdint>

#include "fuzz_driver.hpp"
#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/pool_collection.hpp"
#include "memkit/compose/affix.hpp"
#include "memkit/compose/budgeted.hpp"
#include "memkit/compose/fallback.hpp"
#include "memkit/compose/segregator.hpp"
#include "memkit/compose/stats_collector.hpp"

namespace {

struct header {
    std::uint64_t word = 0x6d656d6b6974ULL;
};
struct trailer {
    std::uint32_t word = 0x66656e63;
};

using small_side = memkit::affix<memkit::pool_collection, header, trailer>;
using large_side = memkit::fallback<memkit::arena, memkit::pool_collection>;
using composition = memkit::stats_collector<
    memkit::budgeted<memkit::segregator<128, small_side, large_side>>>;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr memkit::pool_collection_options with_large{.max_class = 512,
                                                         .large = memkit::large_policy::parent};
    composition c{std::in_place, std::size_t{1} << 20, std::in_place,
                  small_side{std::in_place, with_large},
                  large_side{memkit::arena{memkit::arena_options{.block_size = 8192,
                                                                 .max_total = 1 << 16}},
                             memkit::pool_collection{memkit::pool_collection_options{
                                 .max_class = 4096, .large = memkit::large_policy::parent}}}};
    return memkit::fuzz::run(c, data, size, {.max_size = 6000, .max_align = 4096});
}
