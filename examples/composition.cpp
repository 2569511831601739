// Building an allocator from parts.
//
// A message broker keeps many small records (topics, headers, queue nodes) and a few large
// payload buffers. The allocator below sends requests of up to 256 bytes to a pool collection
// (one pool per power-of-two size class) and larger ones to the system heap under a 1 MiB budget,
// and counts everything at the top, so the program can print a size histogram and the exact peak:
//
//   stats_collector< segregator<256, pool_collection, budgeted<system_allocator>> >
//
// The whole composition is used through std::pmr containers. When the budget runs out, the
// container gets a memkit::budget_exceeded (a std::bad_alloc) and the program recovers.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include <memkit/alloc/pool_collection.hpp>
#include <memkit/alloc/system.hpp>
#include <memkit/compose/budgeted.hpp>
#include <memkit/compose/segregator.hpp>
#include <memkit/compose/stats_collector.hpp>
#include <memkit/pmr/resource.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "composition: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

using large_heap = memkit::budgeted<memkit::system_allocator>;
using broker_heap =
    memkit::stats_collector<memkit::segregator<256, memkit::pool_collection, large_heap>>;

// Every part satisfies the allocator concept, and so does the whole.
static_assert(memkit::allocator<broker_heap>);
static_assert(broker_heap::max_alignment == memkit::system_allocator::max_alignment);

constexpr std::size_t payload_budget = 1 << 20;

} // namespace

int main() {
    // Parts are built inside out: the collection with its defaults (classes 8..256), the heap
    // with its budget.
    broker_heap heap{std::in_place, memkit::pool_collection{}, large_heap{payload_budget}};
    memkit::resource r{heap};

    {
        std::pmr::map<std::pmr::string, std::pmr::vector<std::pmr::string>> topics{&r};
        for (int t = 0; t < 20; ++t) {
            auto& queue = topics[std::pmr::string("sensors/building-7/floor-" + std::to_string(t))];
            for (int m = 0; m < 50; ++m)
                queue.emplace_back("reading " + std::to_string(m) + " of topic " +
                                   std::to_string(t));
        }
        require(topics.size() == 20, "all topics are there");

        const memkit::allocator_stats s = heap.stats();
        const auto& pools = heap.get().small();
        std::printf("live: %zu bytes in %llu blocks; peak %zu bytes\n", s.bytes_in_use,
                    static_cast<unsigned long long>(s.allocations - s.deallocations),
                    s.peak_bytes);
        for (std::size_t i = 0; i < pools.class_count(); ++i)
            std::printf("  class %4zu: %llu allocations\n", pools.class_size(i),
                        static_cast<unsigned long long>(pools.class_stats(i).allocations));
        require(pools.stats().allocations > 1000, "the small records come from the pools");

        // Request sizes by power-of-two bucket: what a size-class layout should cover.
        const auto& hist = heap.histogram();
        std::printf("request sizes:");
        for (std::size_t k = 0; k < hist.size(); ++k)
            if (hist[k] != 0)
                std::printf(" <=%zu:%llu", std::size_t{1} << k,
                            static_cast<unsigned long long>(hist[k]));
        std::printf("\n");
    }
    require(heap.stats().bytes_in_use == 0, "the containers gave everything back");

    // Large payloads draw on the budget; a request beyond it fails with the numbers.
    std::pmr::vector<std::pmr::vector<char>> payloads{&r};
    try {
        for (int i = 0; i < 100; ++i) payloads.emplace_back(std::size_t{64} << 10, 'p');
        require(false, "the budget should have run out");
    } catch (const memkit::budget_exceeded& e) {
        std::printf("budget: %s\n", e.what());
        require(e.limit() == payload_budget, "the error carries the limit");
        require(e.requested() > e.remaining(), "and why the request did not fit");
    }
    const large_heap& large = heap.get().large();
    require(large.used() <= large.limit(), "the budget was never exceeded");
    require(payloads.size() >= 10, "payloads fit until the budget was spent");
    payloads.clear();
    payloads.shrink_to_fit();
    require(large.used() == 0, "freeing the payloads gives the budget back");

    std::puts("composition: ok");
    return 0;
}
