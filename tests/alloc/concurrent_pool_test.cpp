#include "memkit/alloc/concurrent_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <memory_resource>
#include <mutex>
#include <new>
#include <random>
#include <set>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/traits.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"

namespace {

constexpr int scale = memkit::test::stress_scale;

using memkit::concurrent_pool;
using memkit::concurrent_pool_options;
using memkit::test::counting_parent;
using memkit::test::violation_recorder;
using counted_pool = memkit::basic_concurrent_pool<counting_parent>;

static_assert(memkit::allocator<concurrent_pool>);
static_assert(memkit::owning_allocator<concurrent_pool>);
static_assert(memkit::allocator_traits<concurrent_pool>::is_thread_safe);
static_assert(memkit::allocator_traits<concurrent_pool>::has_stats);
static_assert(memkit::allocator_traits<concurrent_pool>::has_reset);
static_assert(memkit::allocator_traits<concurrent_pool>::has_max_size);
static_assert(memkit::allocator_traits<concurrent_pool>::max_alignment == 4096);
static_assert(!std::is_copy_constructible_v<concurrent_pool>);
static_assert(!std::is_move_constructible_v<concurrent_pool>);

using range = std::pair<std::uintptr_t, std::size_t>;

std::vector<range> ranges_of(const std::vector<void*>& ptrs, std::size_t size) {
    std::vector<range> r;
    for (void* p : ptrs) r.emplace_back(reinterpret_cast<std::uintptr_t>(p), size);
    return r;
}

// --- construction -----------------------------------------------------------------------------

TEST(ConcurrentPool, NodeSizeIsRoundedToHoldALinkAndToTheAlignment) {
    EXPECT_EQ(concurrent_pool(1, 1).node_size(), 8u);
    EXPECT_EQ(concurrent_pool(1, 1).node_alignment(), 8u);
    EXPECT_EQ(concurrent_pool(17, 8).node_size(), 24u);
    EXPECT_EQ(concurrent_pool(24, 16).node_size(), 32u);
    EXPECT_EQ(concurrent_pool(100, 64).node_size(), 128u);
    EXPECT_EQ(concurrent_pool(5, 4096).node_size(), 4096u);
    concurrent_pool p{40};
    EXPECT_EQ(p.node_size(), 48u);
    EXPECT_EQ(p.node_alignment(), alignof(std::max_align_t));
    EXPECT_EQ(p.max_size(), 48u);
    EXPECT_EQ(p.max_nodes(), 0xfffffffeu);
    EXPECT_EQ(concurrent_pool(8, 8, {.max_nodes = 10}).max_nodes(), 10u);
    EXPECT_STREQ(concurrent_pool::name, "memkit::concurrent_pool");
}

TEST(ConcurrentPool, ConstructorRejectsBadNodeSizeAndAlignment) {
    EXPECT_THROW(concurrent_pool(0), memkit::bad_size);
    EXPECT_THROW(concurrent_pool((std::size_t{1} << 31) + 1), memkit::bad_size);
    EXPECT_THROW(concurrent_pool(8, 0), memkit::invalid_alignment);
    EXPECT_THROW(concurrent_pool(8, 3), memkit::invalid_alignment);
    EXPECT_THROW(concurrent_pool(8, 8192), memkit::invalid_alignment);
}

TEST(ConcurrentPool, NewPoolHoldsNothing) {
    counting_parent::counters counters;
    {
        counted_pool p{32, 8, {}, counting_parent{&counters}};
        EXPECT_EQ(p.chunk_count(), 0u);
        EXPECT_EQ(p.capacity(), 0u);
        EXPECT_EQ(p.stats(), memkit::allocator_stats{});
        EXPECT_FALSE(p.owns(&counters));
    }
    EXPECT_EQ(counters.allocations, 0u);
}

// --- chunks, alignment, overlap, contents
// ----------------------------------------------------------

TEST(ConcurrentPool, ChunksDoubleFromTheFirstChunkSize) {
    counting_parent::counters counters;
    {
        counted_pool p{24, 8, {.nodes_per_chunk = 3}, counting_parent{&counters}}; // rounds to 4
        std::vector<void*> ptrs;
        const std::size_t expect_capacity[] = {4, 4, 4, 4, 8, 8, 8, 8, 16};
        for (std::size_t i = 0; i < 9; ++i) {
            ptrs.push_back(p.allocate());
            EXPECT_EQ(p.capacity(), expect_capacity[i]) << i;
        }
        EXPECT_EQ(p.chunk_count(), 3u); // 4 + 4 + 8 nodes
        EXPECT_EQ(counters.allocations, 3u);
        EXPECT_EQ(p.stats().capacity, counters.live_bytes);
        for (void* q : ptrs) p.deallocate(q);
    }
    EXPECT_EQ(counters.live_bytes, 0u);
    EXPECT_EQ(counters.deallocations, 3u);
}

TEST(ConcurrentPool, EveryNodeAlignmentFrom1To4096) {
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        concurrent_pool p{24, align, {.nodes_per_chunk = 4}};
        const std::size_t na = p.node_alignment();
        EXPECT_EQ(na, std::max<std::size_t>(align, 8));
        std::vector<void*> ptrs;
        for (int i = 0; i < 13; ++i) { // four chunks
            void* q = (i % 2 == 0) ? p.allocate() : p.allocate(24, align);
            ASSERT_TRUE(memkit::is_aligned(q, na)) << "align " << align;
            memkit::fill_pattern(q, p.node_size(), static_cast<std::uint8_t>(i));
            ptrs.push_back(q);
        }
        EXPECT_EQ(p.chunk_count(), 3u);
        EXPECT_TRUE(memkit::test::no_overlap(ranges_of(ptrs, p.node_size())));
        for (std::size_t i = 0; i < ptrs.size(); ++i) {
            EXPECT_EQ(memkit::verify_pattern(ptrs[i], p.node_size(), static_cast<std::uint8_t>(i)),
                      nullptr);
            EXPECT_TRUE(p.owns(ptrs[i]));
        }
        EXPECT_THROW((void)p.allocate(8, na * 2), memkit::invalid_alignment);
        for (void* q : ptrs) p.deallocate(q, 24, align);
    }
}

// A parent that aligns to 16 bytes at most.
struct small_align_parent : counting_parent {
    static constexpr std::size_t max_alignment = 16;
    using counting_parent::counting_parent;
};

TEST(ConcurrentPool, AlignsNodesItselfWhenTheParentCannot) {
    counting_parent::counters counters;
    {
        memkit::basic_concurrent_pool<small_align_parent> p{
            40, 256, {.nodes_per_chunk = 2}, small_align_parent{&counters}};
        std::vector<void*> ptrs;
        for (int i = 0; i < 7; ++i) {
            ptrs.push_back(p.allocate());
            ASSERT_TRUE(memkit::is_aligned(ptrs.back(), 256));
            memkit::fill_pattern(ptrs.back(), 256, static_cast<std::uint8_t>(i));
        }
        EXPECT_TRUE(memkit::test::no_overlap(ranges_of(ptrs, 256)));
        for (int i = 0; i < 7; ++i)
            EXPECT_EQ(memkit::verify_pattern(ptrs[static_cast<std::size_t>(i)], 256,
                                             static_cast<std::uint8_t>(i)),
                      nullptr);
        for (void* q : ptrs) p.deallocate(q);
    }
    EXPECT_EQ(counters.live_bytes, 0u);
}

// Node sizes that are not powers of two exercise the division-free pointer-to-index mapping over
// many chunks.
TEST(ConcurrentPool, ManyNodesOfOddSizesMapBackToThemselves) {
    for (std::size_t size : {24u, 40u, 56u, 72u, 104u, 1000u}) {
        concurrent_pool p{size, 8, {.nodes_per_chunk = 8}};
        std::vector<void*> ptrs;
        const int n = 20000 / scale;
        for (int i = 0; i < n; ++i) ptrs.push_back(p.allocate());
        EXPECT_TRUE(memkit::test::no_overlap(ranges_of(ptrs, p.node_size())));
        for (void* q : ptrs) ASSERT_TRUE(p.owns(q));
        ASSERT_FALSE(p.owns(static_cast<std::byte*>(ptrs[5]) + 8));
        for (void* q : ptrs) p.deallocate(q);
        // Everything is free again: the same nodes come back, and nothing new is carved.
        const std::size_t cap = p.capacity();
        std::set<void*> first(ptrs.begin(), ptrs.end());
        for (int i = 0; i < n; ++i) ASSERT_EQ(first.count(p.allocate()), 1u);
        EXPECT_EQ(p.capacity(), cap);
        EXPECT_EQ(p.stats().bytes_in_use, static_cast<std::size_t>(n) * p.node_size());
    }
}

TEST(ConcurrentPool, ReusesTheLastFreedNodeFirst) {
    concurrent_pool p{32};
    void* a = p.allocate();
    void* b = p.allocate();
    void* c = p.allocate();
    p.deallocate(b);
    p.deallocate(a);
    EXPECT_EQ(p.allocate(), a);
    EXPECT_EQ(p.allocate(), b);
    p.deallocate(a);
    p.deallocate(b);
    p.deallocate(c);
}

// --- statistics, capacity and lifetime --------------------------------------------------------

TEST(ConcurrentPool, ExactStats) {
    counting_parent::counters counters;
    counted_pool p{48, 16, {.nodes_per_chunk = 4}, counting_parent{&counters}};
    std::vector<void*> ptrs;
    for (int i = 0; i < 6; ++i) ptrs.push_back(p.allocate());
    memkit::allocator_stats s = p.stats();
    EXPECT_EQ(s.allocations, 6u);
    EXPECT_EQ(s.deallocations, 0u);
    EXPECT_EQ(s.bytes_in_use, 6u * 48);
    EXPECT_EQ(s.peak_bytes, 6u * 48);
    EXPECT_EQ(s.capacity, counters.live_bytes);
    for (int i = 0; i < 4; ++i) p.deallocate(ptrs[static_cast<std::size_t>(i)]);
    s = p.stats();
    EXPECT_EQ(s.deallocations, 4u);
    EXPECT_EQ(s.bytes_in_use, 2u * 48);
    EXPECT_EQ(s.peak_bytes, 6u * 48);
    for (int i = 0; i < 3; ++i) ptrs[static_cast<std::size_t>(i)] = p.allocate(); // reused
    EXPECT_EQ(p.stats().peak_bytes, 6u * 48);
    p.reset(); // every node free again, chunks kept
    s = p.stats();
    EXPECT_EQ(s.allocations, 9u);
    EXPECT_EQ(s.deallocations, 9u);
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.peak_bytes, 6u * 48);
    EXPECT_EQ(s.capacity, counters.live_bytes);
    const std::size_t parent_calls = counters.allocations;
    for (int i = 0; i < 8; ++i) (void)p.allocate();
    EXPECT_EQ(counters.allocations, parent_calls); // the chunks were kept
    EXPECT_EQ(p.stats().peak_bytes, 8u * 48);
    p.release();
    EXPECT_EQ(counters.live_bytes, 0u);
    EXPECT_EQ(p.stats().capacity, 0u);
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
    EXPECT_EQ(p.chunk_count(), 0u);
    void* q = p.allocate(); // usable after release
    EXPECT_TRUE(p.owns(q));
    p.deallocate(q);
}

TEST(ConcurrentPool, ReserveTakesChunksAhead) {
    counting_parent::counters counters;
    counted_pool p{16, 8, {.nodes_per_chunk = 4}, counting_parent{&counters}};
    p.reserve(20);
    EXPECT_GE(p.capacity(), 20u);
    const std::size_t calls = counters.allocations;
    for (int i = 0; i < 20; ++i) (void)p.allocate();
    EXPECT_EQ(counters.allocations, calls);
    p.reserve(0);
    EXPECT_EQ(counters.allocations, calls);
}

TEST(ConcurrentPool, BoundedCapacityThrowsOutOfMemory) {
    concurrent_pool p{32, 8, {.nodes_per_chunk = 4, .max_nodes = 10}};
    std::vector<void*> ptrs;
    for (int i = 0; i < 10; ++i) ptrs.push_back(p.allocate());
    EXPECT_EQ(p.capacity(), 10u); // the last chunk is cut to the cap
    EXPECT_EQ(p.try_allocate(), nullptr);
    try {
        (void)p.allocate(20, 8);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_STREQ(e.allocator(), "memkit::concurrent_pool");
        EXPECT_EQ(e.requested(), 20u);
        EXPECT_EQ(e.available(), 0u);
        EXPECT_EQ(e.used(), 10u * 32);
        EXPECT_EQ(e.capacity(), 10u * 32);
    }
    EXPECT_THROW(p.reserve(1), memkit::out_of_memory);
    p.deallocate(ptrs.back());
    ptrs.back() = p.allocate();
    EXPECT_EQ(p.stats().allocations, 11u);
    for (void* q : ptrs) p.deallocate(q);
}

TEST(ConcurrentPool, ParentFailureIsOutOfMemory) {
    counting_parent::counters counters;
    counters.fail_after = 1;
    counted_pool p{64, 16, {.nodes_per_chunk = 2}, counting_parent{&counters}};
    void* a = p.allocate();
    void* b = p.allocate();
    EXPECT_THROW((void)p.allocate(), memkit::out_of_memory);
    EXPECT_EQ(p.try_allocate(), nullptr);
    p.deallocate(a);
    EXPECT_EQ(p.allocate(), a); // freed nodes still serve
    p.deallocate(a);
    p.deallocate(b);
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
}

TEST(ConcurrentPool, BadRequestsHaveExactTypes) {
    concurrent_pool p{64, 16};
    EXPECT_THROW((void)p.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)p.allocate(65), memkit::bad_size);
    EXPECT_THROW((void)p.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)p.allocate(8, 32), memkit::invalid_alignment);
    EXPECT_EQ(p.try_allocate(0), nullptr);
    EXPECT_EQ(p.try_allocate(65), nullptr);
    EXPECT_EQ(p.try_allocate(8, 0), nullptr);
    EXPECT_EQ(p.stats().allocations, 0u);
}

TEST(ConcurrentPool, DebugChecksReportForeignPointersAndDoubleFrees) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    concurrent_pool p{32, 8};
    violation_recorder rec;
    void* a = p.allocate();
    void* b = p.allocate();
    int local = 0;
    p.deallocate(&local);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_STREQ(rec.last().allocator, "memkit::concurrent_pool");
    p.deallocate(static_cast<std::byte*>(a) + 8); // inside a node
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    p.deallocate(a);
    p.deallocate(b);
    p.deallocate(a); // not the top of the free list: found through the tag and the walk
    EXPECT_EQ(rec.count(), 3);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(rec.last().pointer, a);
    p.deallocate(b);
    EXPECT_EQ(rec.count(), 4);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    // Nothing was touched.
    EXPECT_EQ(p.stats().deallocations, 2u);
    EXPECT_EQ(p.allocate(), b);
    EXPECT_EQ(p.allocate(), a);
    p.deallocate(a);
    p.deallocate(b);
    // 8-byte nodes have no tag word: only the top of the free list is checked.
    concurrent_pool small{8, 8};
    void* c = small.allocate();
    small.deallocate(c);
    small.deallocate(c);
    EXPECT_EQ(rec.count(), 5);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
}

// --- pmr and standard containers -----------------------------------------------------------------

TEST(ConcurrentPool, WorksAsAPmrResourceAndAStandardAllocator) {
    concurrent_pool p{64, 16};
    {
        memkit::resource r{p};
        std::pmr::list<int> l{&r};
        for (int i = 0; i < 1000; ++i) l.push_back(i);
        EXPECT_EQ(l.back(), 999);
        EXPECT_EQ(p.stats().allocations, 1000u);
        EXPECT_THROW(std::pmr::vector<char>(100, 'x', &r), memkit::bad_size);
    }
    {
        std::list<long, memkit::std_allocator<long, concurrent_pool>> l{p};
        std::set<int, std::less<>, memkit::std_allocator<int, concurrent_pool>> s{p};
        for (int i = 0; i < 500; ++i) {
            l.push_back(i);
            s.insert(i);
        }
        EXPECT_EQ(l.size(), 500u);
        EXPECT_EQ(*s.rbegin(), 499);
    }
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
}

// --- randomized single-threaded model
// -------------------------------------------------------------

TEST(ConcurrentPool, RandomOperationsMatchAShadowModel) {
    counting_parent::counters counters;
    counted_pool p{40, 8, {.nodes_per_chunk = 16, .max_nodes = 5000}, counting_parent{&counters}};
    const std::size_t ns = p.node_size();
    std::unordered_map<void*, std::uint8_t> live;
    std::vector<void*> order;
    std::mt19937_64 gen{0x63706f6f6cULL};
    std::uint64_t allocations = 0, deallocations = 0;
    const int ops = 1'000'000 / scale;
    for (int i = 0; i < ops; ++i) {
        const std::uint64_t r = gen();
        const bool grow = order.size() < 100 || (r % 100) < (order.size() < 4000 ? 52u : 40u);
        if (grow) {
            void* q = p.try_allocate(1 + (r >> 8) % ns, std::size_t{1} << ((r >> 20) % 4));
            if (order.size() >= 5000) {
                ASSERT_EQ(q, nullptr);
                continue;
            }
            ASSERT_NE(q, nullptr);
            ASSERT_TRUE(live.emplace(q, static_cast<std::uint8_t>(r >> 32)).second)
                << "a live node was handed out again";
            memkit::fill_pattern(q, ns, static_cast<std::uint8_t>(r >> 32));
            order.push_back(q);
            ++allocations;
        } else {
            const std::size_t k = (r >> 8) % order.size();
            void* q = order[k];
            order[k] = order.back();
            order.pop_back();
            ASSERT_EQ(memkit::verify_pattern(q, ns, live.at(q)), nullptr);
            live.erase(q);
            p.deallocate(q);
            ++deallocations;
        }
        if (i % 4096 == 0) {
            const memkit::allocator_stats s = p.stats();
            ASSERT_EQ(s.allocations, allocations);
            ASSERT_EQ(s.deallocations, deallocations);
            ASSERT_EQ(s.bytes_in_use, order.size() * ns);
            ASSERT_GE(s.peak_bytes, s.bytes_in_use);
            ASSERT_EQ(s.capacity, counters.live_bytes);
        }
    }
    for (void* q : order) p.deallocate(q);
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
}

// --- threads
// ---------------------------------------------------------------------------------------

TEST(ConcurrentPool, ManyThreadsAllocateAndFreeWithIntactContents) {
    concurrent_pool p{48, 16, {.nodes_per_chunk = 8}};
    constexpr int threads = 4;
    const int iterations = 50000 / scale;
    std::atomic<int> corrupted{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            std::mt19937 gen{static_cast<unsigned>(t)};
            std::deque<std::pair<void*, std::uint8_t>> window;
            for (int i = 0; i < iterations; ++i) {
                void* q = p.allocate();
                const auto seed = static_cast<std::uint8_t>(t * 61 + i);
                memkit::fill_pattern(q, 48, seed);
                window.emplace_back(q, seed);
                if (window.size() > 32 || gen() % 2 == 0) {
                    auto [x, xs] = window.front();
                    window.pop_front();
                    if (memkit::verify_pattern(x, 48, xs) != nullptr) ++corrupted;
                    p.deallocate(x);
                }
            }
            for (auto& [x, xs] : window) {
                if (memkit::verify_pattern(x, 48, xs) != nullptr) ++corrupted;
                p.deallocate(x);
            }
        });
    }
    for (std::thread& w : workers) w.join();
    EXPECT_EQ(corrupted.load(), 0);
    const memkit::allocator_stats s = p.stats(); // counts of exited threads included
    EXPECT_EQ(s.allocations, std::uint64_t{threads} * static_cast<std::uint64_t>(iterations));
    EXPECT_EQ(s.deallocations, s.allocations);
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_LE(s.peak_bytes, std::size_t{threads} * 40 * 48);
}

TEST(ConcurrentPool, NodesFreedOnAnotherThreadAreReused) {
    concurrent_pool p{64, 16, {.nodes_per_chunk = 16}};
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::pair<void*, std::uint8_t>> queue;
    int producers_left = 2;
    const int per_producer = 40000 / scale;
    std::atomic<int> corrupted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < per_producer; ++i) {
                void* q = p.allocate();
                const auto seed = static_cast<std::uint8_t>(i + t);
                memkit::fill_pattern(q, 64, seed);
                {
                    std::lock_guard<std::mutex> lock(m);
                    queue.emplace_back(q, seed);
                }
                cv.notify_one();
            }
            {
                std::lock_guard<std::mutex> lock(m);
                --producers_left;
            }
            cv.notify_all();
        });
        threads.emplace_back([&] {
            for (;;) {
                std::pair<void*, std::uint8_t> item;
                {
                    std::unique_lock<std::mutex> lock(m);
                    cv.wait(lock, [&] { return !queue.empty() || producers_left == 0; });
                    if (queue.empty()) return;
                    item = queue.front();
                    queue.pop_front();
                }
                if (memkit::verify_pattern(item.first, 64, item.second) != nullptr) ++corrupted;
                p.deallocate(item.first);
            }
        });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(corrupted.load(), 0);
    const memkit::allocator_stats s = p.stats();
    EXPECT_EQ(s.allocations, 2u * static_cast<std::uint64_t>(per_producer));
    EXPECT_EQ(s.deallocations, s.allocations);
    // Every node freed by the consumers is back: the whole capacity can be allocated again
    // without growing the pool, and from the main thread.
    const std::size_t capacity = p.capacity();
    const std::size_t chunks = p.chunk_count();
    std::unordered_set<void*> again;
    for (std::size_t i = 0; i < capacity; ++i) ASSERT_TRUE(again.insert(p.allocate()).second);
    EXPECT_EQ(p.chunk_count(), chunks);
    EXPECT_EQ(p.capacity(), capacity);
    for (void* q : again) p.deallocate(q);
}

// Many threads pop and push the same few nodes as fast as they can: the pattern for ABA. Each
// node carries its holder's mark while held; two holders of one node, or a node lost or
// duplicated in the free list, would show.
TEST(ConcurrentPool, AbaStressOnAFewNodes) {
    constexpr std::size_t nodes = 4;
    concurrent_pool p{32, 8, {.nodes_per_chunk = nodes, .max_nodes = nodes}};
    constexpr int threads = 6;
    const int rounds = 60000 / scale;
    std::atomic<int> errors{0};
    std::atomic<std::uint64_t> empty_pops{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            const std::uint64_t mark = 0x1000 + static_cast<std::uint64_t>(t);
            void* held[2] = {nullptr, nullptr};
            for (int i = 0; i < rounds; ++i) {
                // Take up to two nodes, mark them, check the marks, give them back in an order
                // that varies, so that the top of the stack keeps coming back to the same node.
                int n = 0;
                for (void*& h : held) {
                    h = p.try_allocate();
                    if (h == nullptr) {
                        empty_pops.fetch_add(1, std::memory_order_relaxed);
                        continue;
                    }
                    auto* w = static_cast<std::uint64_t*>(h);
                    w[0] = mark;
                    w[1] = mark ^ 0xffff;
                    w[2] = static_cast<std::uint64_t>(i);
                    ++n;
                }
                for (void* h : held) {
                    if (h == nullptr) continue;
                    const auto* w = static_cast<const std::uint64_t*>(h);
                    if (w[0] != mark || w[1] != (mark ^ 0xffff) ||
                        w[2] != static_cast<std::uint64_t>(i))
                        errors.fetch_add(1, std::memory_order_relaxed);
                }
                if (i % 2 == 0) std::swap(held[0], held[1]);
                for (void*& h : held) {
                    if (h != nullptr) p.deallocate(h);
                    h = nullptr;
                }
                (void)n;
            }
        });
    }
    for (std::thread& w : workers) w.join();
    EXPECT_EQ(errors.load(), 0);
    // All four nodes are free, each exactly once: four allocations succeed, the fifth fails.
    std::set<void*> got;
    for (std::size_t i = 0; i < nodes; ++i) got.insert(p.allocate());
    EXPECT_EQ(got.size(), nodes);
    EXPECT_EQ(p.try_allocate(), nullptr);
    for (void* q : got) EXPECT_TRUE(p.owns(q));
    const memkit::allocator_stats s = p.stats();
    EXPECT_EQ(s.allocations - s.deallocations, nodes);
    for (void* q : got) p.deallocate(q);
}

// Threads that grow the pool at the same time get distinct nodes from the new chunks.
TEST(ConcurrentPool, ConcurrentGrowthHandsOutDistinctNodes) {
    concurrent_pool p{16, 8, {.nodes_per_chunk = 1}};
    constexpr int threads = 4;
    const int per_thread = 20000 / scale;
    std::vector<std::vector<void*>> got(threads);
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
        workers.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i)
                got[static_cast<std::size_t>(t)].push_back(p.allocate());
        });
    for (std::thread& w : workers) w.join();
    std::unordered_set<void*> all;
    for (auto& v : got)
        for (void* q : v) EXPECT_TRUE(all.insert(q).second);
    EXPECT_EQ(all.size(), std::size_t{threads} * static_cast<std::size_t>(per_thread));
    EXPECT_EQ(p.stats().bytes_in_use, all.size() * 16);
    for (void* q : all) p.deallocate(q);
}

} // namespace
