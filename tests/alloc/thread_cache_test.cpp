#include "memkit/alloc/thread_cache.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <random>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memkit/alloc/pool.hpp"
#include "memkit/compose/synchronized.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/traits.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"

namespace {

constexpr int scale = memkit::test::stress_scale;

using memkit::test::violation_recorder;

// A deliberately thread-unsafe heap that records every block it hands out with its size and
// alignment, and counts frees that do not match (unknown pointer, other size or alignment).
// Wrapped in memkit::synchronized it is the shared allocator behind the caches under test.
class tracking_heap {
public:
    static constexpr const char* name = "test::tracking_heap";
    static constexpr std::size_t max_alignment = 4096;

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        throw memkit::out_of_memory(name, n);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (n == 0 || n > max_size_ || !memkit::is_pow2(align) || align > max_alignment)
            return nullptr;
        if (allocations >= fail_after) return nullptr;
        void* p = ::operator new (n, std::align_val_t{align < 16 ? 16 : align}, std::nothrow);
        if (p == nullptr) return nullptr;
        blocks.emplace(p, std::pair{n, align});
        ++allocations;
        live_bytes += n;
        return p;
    }
    void deallocate(void* p, std::size_t n,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        const auto it = blocks.find(p);
        if (it == blocks.end()) {
            ++bad_frees;
            return;
        }
        if (it->second != std::pair{n, align}) ++mismatched_frees;
        ::operator delete (p, std::align_val_t{it->second.second < 16 ? 16 : it->second.second});
        live_bytes -= it->second.first;
        blocks.erase(it);
        ++deallocations;
    }
    [[nodiscard]] bool owns(const void* p) const noexcept {
        return blocks.count(const_cast<void*>(p)) != 0;
    }
    [[nodiscard]] std::size_t max_size() const noexcept { return max_size_; }

    std::unordered_map<void*, std::pair<std::size_t, std::size_t>> blocks;
    std::size_t allocations = 0, deallocations = 0, live_bytes = 0;
    std::size_t bad_frees = 0, mismatched_frees = 0;
    std::size_t fail_after = static_cast<std::size_t>(-1);
    std::size_t max_size_ = std::size_t{1} << 24;
};

using shared_heap = memkit::synchronized<tracking_heap>;
using cache = memkit::thread_cache<shared_heap>;
using cache_ref = memkit::thread_cache<memkit::allocator_ref<shared_heap>>;

static_assert(memkit::allocator<cache>);
static_assert(memkit::owning_allocator<cache>);
static_assert(memkit::allocator_traits<cache>::is_thread_safe);
static_assert(memkit::allocator_traits<cache>::has_stats);
static_assert(memkit::allocator_traits<cache>::has_max_size);
static_assert(!memkit::allocator_traits<cache>::has_reset);
static_assert(memkit::allocator_traits<cache>::max_alignment == 4096);
static_assert(!std::is_copy_constructible_v<cache> && !std::is_move_constructible_v<cache>);
static_assert(memkit::allocator<memkit::thread_cache<>>);
static_assert(memkit::allocator_traits<memkit::thread_cache<>>::max_alignment ==
              memkit::system_allocator::max_alignment);

// A not thread-safe allocator cannot be put behind a thread_cache (checked by a static_assert);
// the trait it is checked with:
static_assert(!memkit::allocator_traits<memkit::pool>::is_thread_safe);
static_assert(memkit::allocator_traits<memkit::synchronized<memkit::pool>>::is_thread_safe);

struct heap_view {
    std::size_t live_blocks, live_bytes, allocations, deallocations, bad_frees, mismatched;
};

template <class C>
heap_view view(C& c) {
    auto read = [](tracking_heap& h) {
        return heap_view{h.blocks.size(), h.live_bytes, h.allocations,
                         h.deallocations, h.bad_frees,  h.mismatched_frees};
    };
    if constexpr (std::is_same_v<C, shared_heap>) return c.with_lock(read);
    else if constexpr (std::is_same_v<typename C::allocator_type, shared_heap>)
        return c.get().with_lock(read);
    else return c.get().get().with_lock(read);
}

void expect_clean(const heap_view& v) {
    EXPECT_EQ(v.live_blocks, 0u);
    EXPECT_EQ(v.live_bytes, 0u);
    EXPECT_EQ(v.bad_frees, 0u);
    EXPECT_EQ(v.mismatched, 0u);
}

// --- configuration
// --------------------------------------------------------------------------------

TEST(ThreadCache, SizeClasses) {
    cache c;
    EXPECT_EQ(c.class_size(1), 16u);
    EXPECT_EQ(c.class_size(16), 16u);
    EXPECT_EQ(c.class_size(17), 32u);
    EXPECT_EQ(c.class_size(100), 112u);
    EXPECT_EQ(c.class_size(255), 256u);
    EXPECT_EQ(c.class_size(256), 256u);
    EXPECT_EQ(c.class_size(257), 512u);
    EXPECT_EQ(c.class_size(513), 1024u);
    EXPECT_EQ(c.class_size(4097), 8192u);
    EXPECT_EQ(c.class_size(32768), 32768u);
    EXPECT_EQ(c.class_size(32769), 0u);
    EXPECT_EQ(c.class_size(0), 0u);
    EXPECT_EQ(c.max_cached_size(), 32768u);
    EXPECT_EQ(c.max_size(), std::size_t{1} << 24);
    EXPECT_STREQ(cache::name, "memkit::thread_cache");
}

TEST(ThreadCache, CachedSizeFollowsOptionsAndTheSharedAllocator) {
    cache a{memkit::thread_cache_options{.max_cached_size = 300}};
    EXPECT_EQ(a.max_cached_size(), 256u);
    EXPECT_EQ(a.class_size(257), 0u);
    cache b{memkit::thread_cache_options{.max_cached_size = 1 << 20}};
    EXPECT_EQ(b.max_cached_size(), std::size_t{1} << 20);
    // A pool of 40-byte nodes serves up to 40 bytes: classes 16 and 32 are cached, 33..40 goes
    // straight to the pool.
    memkit::thread_cache<memkit::synchronized<memkit::pool>> p{
        memkit::thread_cache_options{.alignment = 8}, std::in_place, 40, 8};
    EXPECT_EQ(p.max_cached_size(), 32u);
    EXPECT_EQ(p.max_size(), 40u);
    void* x = p.allocate(40, 8);
    void* y = p.allocate(20, 8);
    EXPECT_TRUE(p.get().owns(x));
    EXPECT_TRUE(p.get().owns(y));
    p.deallocate(x, 40, 8);
    p.deallocate(y, 20, 8);
    EXPECT_THROW((void)p.allocate(41), memkit::bad_size);
}

TEST(ThreadCache, RejectsBadOptions) {
    EXPECT_THROW(cache(memkit::thread_cache_options{.max_cached_size = 0}), memkit::bad_size);
    EXPECT_THROW(cache(memkit::thread_cache_options{.max_cached_size = (1 << 20) + 1}),
                 memkit::bad_size);
    EXPECT_THROW(cache(memkit::thread_cache_options{.max_blocks_per_class = 1}),
                 std::invalid_argument);
}

TEST(ThreadCache, ConstructsTheSharedAllocatorInPlaceOrTakesIt) {
    memkit::thread_cache<memkit::synchronized<memkit::pool>> a{
        memkit::thread_cache_options{.max_blocks_per_class = 4}, std::in_place, 64};
    EXPECT_EQ(a.get().max_size(), 64u);
    EXPECT_EQ(a.options().max_blocks_per_class, 4u);
    shared_heap heap;
    memkit::thread_cache<memkit::allocator_ref<shared_heap>> b{{}, memkit::allocator_ref{heap}};
    void* p = b.allocate(10);
    EXPECT_TRUE(heap.owns(p));
    b.deallocate(p, 10);
}

// --- alignment, overlap, contents, reuse
// ------------------------------------------------------------

TEST(ThreadCache, EveryAlignmentUpTo4096) {
    cache c;
    std::vector<std::tuple<void*, std::size_t, std::size_t>> live;
    std::uint8_t seed = 0;
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t size : {1u, 8u, 16u, 24u, 100u, 256u, 700u, 5000u, 40000u}) {
            void* p = c.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align)) << size << " / " << align;
            memkit::fill_pattern(p, size, ++seed);
            live.emplace_back(p, size, align);
        }
    }
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (auto& [p, size, align] : live)
        ranges.emplace_back(reinterpret_cast<std::uintptr_t>(p), size);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    seed = 0;
    for (auto& [p, size, align] : live) {
        EXPECT_EQ(memkit::verify_pattern(p, size, ++seed), nullptr);
        c.deallocate(p, size, align);
    }
    c.flush();
    c.trim();
    expect_clean(view(c));
}

TEST(ThreadCache, TheSharedAllocatorSeesClassSizesInBatches) {
    cache c{memkit::thread_cache_options{.max_blocks_per_class = 8}};
    void* p = c.allocate(20, 8);
    heap_view v = view(c);
    EXPECT_EQ(v.allocations, 4u); // half a magazine
    EXPECT_EQ(v.live_bytes, 4u * 32u);
    c.get().with_lock([&](tracking_heap& h) {
        for (auto& [q, sa] : h.blocks) {
            EXPECT_EQ(sa.first, 32u);
            EXPECT_EQ(sa.second, alignof(std::max_align_t));
        }
    });
    std::vector<void*> more;
    for (int i = 0; i < 3; ++i) more.push_back(c.allocate(32));
    EXPECT_EQ(view(c).allocations, 4u); // from the magazine
    more.push_back(c.allocate(17));
    EXPECT_EQ(view(c).allocations, 8u); // the next half magazine
    c.deallocate(p, 20, 8);
    for (void* q : more) c.deallocate(q, 32);
    EXPECT_EQ(c.cached_bytes(), 8u * 32u); // 3 left from the second batch + 5 freed: full
    std::vector<void*> burst;
    for (int i = 0; i < 9; ++i) burst.push_back(c.allocate(30));
    EXPECT_EQ(view(c).allocations, 12u); // 8 from the magazine, then half a magazine
    for (void* q : burst) c.deallocate(q, 30);
    // 3 + 5 frees fill the loaded magazine; it becomes the spare and 4 go into a new one.
    EXPECT_EQ(view(c).deallocations, 0u);
    EXPECT_EQ(c.cached_bytes(), 12u * 32u);
    EXPECT_EQ(c.depot_bytes(), 0u);
    c.flush();
    EXPECT_EQ(c.cached_bytes(), 0u);
    EXPECT_EQ(view(c).deallocations, 12u);
    expect_clean(view(c));
}

TEST(ThreadCache, FullMagazinesGoToTheDepotThenToTheSharedAllocator) {
    cache c{memkit::thread_cache_options{.max_blocks_per_class = 4, .max_depot_magazines = 1}};
    std::vector<void*> blocks;
    for (int i = 0; i < 20; ++i) blocks.push_back(c.allocate(16));
    const std::size_t taken = view(c).allocations;
    EXPECT_EQ(taken, 20u); // half magazines of 2
    for (void* q : blocks) c.deallocate(q, 16);
    // Loaded 4, spare 4, one magazine of 4 in the depot; the two that found the depot full went
    // back to the heap.
    EXPECT_EQ(c.cached_bytes(), 12u * 16u);
    EXPECT_EQ(c.depot_bytes(), 4u * 16u);
    EXPECT_EQ(view(c).deallocations, 8u);
    // Allocations take the loaded magazine, the spare, then the depot's, before the heap.
    for (int i = 0; i < 12; ++i) blocks[static_cast<std::size_t>(i)] = c.allocate(16);
    EXPECT_EQ(view(c).allocations, taken);
    EXPECT_EQ(c.depot_bytes(), 0u);
    for (int i = 0; i < 12; ++i) c.deallocate(blocks[static_cast<std::size_t>(i)], 16);
    c.trim();
    EXPECT_EQ(c.depot_bytes(), 0u);
    EXPECT_EQ(c.cached_bytes(), 8u * 16u);
    c.flush();
    expect_clean(view(c));
}

TEST(ThreadCache, ThreadsExchangeWholeMagazinesThroughTheDepot) {
    cache c{memkit::thread_cache_options{.max_blocks_per_class = 4}};
    std::vector<void*> freed_by_first;
    std::thread first([&] {
        for (int i = 0; i < 12; ++i) freed_by_first.push_back(c.allocate(64));
        for (void* q : freed_by_first) c.deallocate(q, 64);
        c.flush(); // loaded and spare go back to the heap; the depot keeps its magazine
    });
    first.join();
    EXPECT_EQ(c.depot_bytes(), 4u * 64u);
    const std::size_t taken = view(c).allocations;
    std::thread second([&] {
        std::vector<void*> got;
        for (int i = 0; i < 4; ++i) got.push_back(c.allocate(64));
        EXPECT_EQ(view(c).allocations, taken); // no call to the heap
        for (void* q : got)
            EXPECT_NE(std::find(freed_by_first.begin(), freed_by_first.end(), q),
                      freed_by_first.end());
        for (void* q : got) c.deallocate(q, 64);
    });
    second.join();
    EXPECT_EQ(c.depot_bytes(), 0u);
    EXPECT_EQ(c.cached_bytes(), 0u); // the second thread's exit returned its magazines
    expect_clean(view(c));
}

TEST(ThreadCache, LargeAndOverAlignedRequestsGoStraightThrough) {
    cache c;
    void* big = c.allocate(100000, 8);
    void* over = c.allocate(64, 64);
    c.get().with_lock([&](tracking_heap& h) {
        EXPECT_EQ(h.blocks.at(big), (std::pair<std::size_t, std::size_t>{100000, 8}));
        EXPECT_EQ(h.blocks.at(over), (std::pair<std::size_t, std::size_t>{64, 64}));
    });
    c.deallocate(big, 100000, 8);
    c.deallocate(over, 64, 64);
    EXPECT_EQ(c.cached_bytes(), 0u);
    expect_clean(view(c));
}

TEST(ThreadCache, ReusesTheLastFreedBlockOfAClass) {
    cache c;
    void* a = c.allocate(40);
    void* b = c.allocate(48);
    c.deallocate(a, 40);
    EXPECT_EQ(c.allocate(33), a); // same class (48)
    c.deallocate(b, 48);
    c.deallocate(a, 33);
    EXPECT_EQ(c.allocate(48), a);
    EXPECT_EQ(c.allocate(48), b);
    c.deallocate(a, 48);
    c.deallocate(b, 48);
}

TEST(ThreadCache, ContentsSurviveOtherAllocationsAndFrees) {
    cache c;
    std::mt19937 gen{7};
    std::vector<std::tuple<void*, std::size_t, std::uint8_t>> live;
    for (int i = 0; i < 3000; ++i) {
        const std::size_t size = 1 + gen() % 2000;
        void* p = c.allocate(size);
        const auto seed = static_cast<std::uint8_t>(i);
        memkit::fill_pattern(p, size, seed);
        live.emplace_back(p, size, seed);
        if (i % 3 == 2) {
            const std::size_t k = gen() % live.size();
            auto [q, qs, qseed] = live[k];
            ASSERT_EQ(memkit::verify_pattern(q, qs, qseed), nullptr);
            c.deallocate(q, qs);
            live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
        }
    }
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (auto& [p, size, seed] : live) {
        EXPECT_EQ(memkit::verify_pattern(p, size, seed), nullptr);
        ranges.emplace_back(reinterpret_cast<std::uintptr_t>(p), size);
    }
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (auto& [p, size, seed] : live) c.deallocate(p, size);
}

// --- statistics
// ------------------------------------------------------------------------------------

TEST(ThreadCache, ExactStats) {
    cache c{memkit::thread_cache_options{.max_blocks_per_class = 4}};
    EXPECT_EQ(c.stats(), memkit::allocator_stats{});
    void* a = c.allocate(10);    // class 16: batch of 2 from the heap
    void* b = c.allocate(100);   // class 112: batch of 2
    void* d = c.allocate(50000); // straight through
    memkit::allocator_stats s = c.stats();
    EXPECT_EQ(s.allocations, 3u);
    EXPECT_EQ(s.deallocations, 0u);
    EXPECT_EQ(s.capacity, 2u * 16 + 2u * 112 + 50000);
    EXPECT_EQ(s.bytes_in_use, 16u + 112 + 50000);
    EXPECT_EQ(s.peak_bytes, s.capacity);
    EXPECT_EQ(s.capacity, view(c).live_bytes);
    c.deallocate(d, 50000);
    c.deallocate(b, 100);
    s = c.stats();
    EXPECT_EQ(s.deallocations, 2u);
    EXPECT_EQ(s.bytes_in_use, 16u);
    EXPECT_EQ(s.capacity, 2u * 16 + 2u * 112);
    EXPECT_EQ(s.peak_bytes, 2u * 16 + 2u * 112 + 50000);
    EXPECT_EQ(c.cached_bytes(), 16u + 2u * 112);
    c.deallocate(a, 10);
    c.flush();
    s = c.stats();
    EXPECT_EQ(s.allocations, 3u);
    EXPECT_EQ(s.deallocations, 3u);
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.capacity, 0u);
    expect_clean(view(c));
}

// --- errors
// ----------------------------------------------------------------------------------------

TEST(ThreadCache, ErrorsHaveExactTypes) {
    cache c;
    EXPECT_THROW((void)c.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)c.allocate((std::size_t{1} << 24) + 1), memkit::bad_size);
    EXPECT_THROW((void)c.allocate(16, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)c.allocate(16, 0), memkit::invalid_alignment);
    EXPECT_THROW((void)c.allocate(16, 8192), memkit::invalid_alignment);
    EXPECT_EQ(c.try_allocate(0), nullptr);
    EXPECT_EQ(c.try_allocate(16, 3), nullptr);
    EXPECT_EQ(c.try_allocate(100000, 8192), nullptr);
    c.get().with_lock([](tracking_heap& h) { h.fail_after = 0; });
    try {
        (void)c.allocate(24);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_STREQ(e.allocator(), "memkit::thread_cache");
        EXPECT_EQ(e.requested(), 24u);
    }
    EXPECT_THROW((void)c.allocate(100000), memkit::out_of_memory);
    EXPECT_EQ(c.try_allocate(24), nullptr);
    EXPECT_EQ(c.stats().allocations, 0u);
    // A refill that gets fewer blocks than it asked for still serves the request.
    c.get().with_lock([](tracking_heap& h) { h.fail_after = 3; });
    std::vector<void*> got;
    for (int i = 0; i < 3; ++i) got.push_back(c.allocate(24));
    EXPECT_EQ(c.try_allocate(24), nullptr);
    for (void* p : got) c.deallocate(p, 24);
    c.flush();
    c.trim();
    expect_clean(view(c));
}

TEST(ThreadCache, DebugChecksReportForeignPointersAndDoubleFrees) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    cache c;
    violation_recorder rec;
    int local = 0;
    c.deallocate(&local, 16);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_STREQ(rec.last().allocator, "memkit::thread_cache");
    c.deallocate(&local, 100000); // the direct path checks too
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    c.deallocate(nullptr, 16);
    EXPECT_EQ(rec.count(), 3);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    void* p = c.allocate(16);
    c.deallocate(p, 16);
    c.deallocate(p, 16);
    EXPECT_EQ(rec.count(), 4);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(rec.last().pointer, p);
    // Nothing was touched: one free block in the cache, and it comes back once.
    void* again = c.allocate(16);
    void* other = c.allocate(16);
    EXPECT_EQ(again, p);
    EXPECT_NE(other, p);
    c.deallocate(again, 16);
    c.deallocate(other, 16);
    EXPECT_EQ(rec.count(), 4);
    c.flush();
    c.trim();
    expect_clean(view(c));
}

// --- pmr and standard containers -----------------------------------------------------------------

TEST(ThreadCache, WorksAsAPmrResourceAndAStandardAllocator) {
    cache c;
    {
        memkit::resource r{c};
        std::pmr::vector<int> v{&r};
        std::pmr::list<std::pmr::string> l{&r};
        for (int i = 0; i < 1000; ++i) {
            v.push_back(i);
            l.emplace_back(std::pmr::string(50, static_cast<char>('a' + i % 26), &r));
        }
        EXPECT_EQ(v[999], 999);
        EXPECT_EQ(l.back()[0], static_cast<char>('a' + 999 % 26));
        EXPECT_GT(c.stats().allocations, 2000u);
    }
    {
        std::list<long, memkit::std_allocator<long, cache>> l{c};
        std::vector<double, memkit::std_allocator<double, cache>> v{c};
        for (int i = 0; i < 500; ++i) {
            l.push_back(i);
            v.push_back(i * 0.5);
        }
        EXPECT_EQ(l.size(), 500u);
        EXPECT_EQ(v[499], 249.5);
    }
    const memkit::allocator_stats s = c.stats();
    EXPECT_EQ(s.allocations, s.deallocations);
    EXPECT_EQ(s.bytes_in_use, 0u);
    c.flush();
    c.trim();
    expect_clean(view(c));
}

// --- randomized single-threaded model
// -------------------------------------------------------------

TEST(ThreadCache, RandomOperationsMatchAShadowModel) {
    cache c{memkit::thread_cache_options{.max_cached_size = 8192, .max_blocks_per_class = 16}};
    struct block {
        std::size_t size, align;
        std::uint8_t seed;
    };
    std::unordered_map<void*, block> live;
    std::vector<void*> order;
    std::mt19937_64 gen{0x7468726561646361ULL};
    std::size_t in_use = 0;
    std::uint64_t allocations = 0, deallocations = 0;
    const int ops = 1'000'000 / scale;
    auto class_bytes = [&](std::size_t size, std::size_t align) {
        const std::size_t cs = align <= alignof(std::max_align_t) ? c.class_size(size) : 0;
        return cs != 0 ? cs : size;
    };
    for (int i = 0; i < ops; ++i) {
        const std::uint64_t r = gen();
        if (r % 100 < 55 || order.empty()) {
            const std::uint64_t kind = (r >> 8) % 100;
            const std::size_t size = kind < 70   ? 1 + (r >> 16) % 256
                                     : kind < 95 ? 1 + (r >> 16) % 8192
                                                 : 8193 + (r >> 16) % 30000;
            const std::size_t align = std::size_t{1} << ((r >> 40) % 8); // 1..128
            void* p = c.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            ASSERT_EQ(live.count(p), 0u) << "a live block was handed out again";
            const auto seed = static_cast<std::uint8_t>(r >> 48);
            memkit::fill_pattern(p, std::min<std::size_t>(size, 64), seed);
            live.emplace(p, block{size, align, seed});
            order.push_back(p);
            in_use += class_bytes(size, align);
            ++allocations;
        } else {
            const std::size_t k = (r >> 8) % order.size();
            void* p = order[k];
            order[k] = order.back();
            order.pop_back();
            const block b = live.at(p);
            ASSERT_EQ(memkit::verify_pattern(p, std::min<std::size_t>(b.size, 64), b.seed),
                      nullptr);
            c.deallocate(p, b.size, b.align);
            live.erase(p);
            in_use -= class_bytes(b.size, b.align);
            ++deallocations;
        }
        if (i % 4096 == 0) {
            const memkit::allocator_stats s = c.stats();
            ASSERT_EQ(s.allocations, allocations);
            ASSERT_EQ(s.deallocations, deallocations);
            ASSERT_EQ(s.bytes_in_use, in_use);
            ASSERT_GE(s.peak_bytes, s.bytes_in_use);
            ASSERT_EQ(s.capacity, view(c).live_bytes);
        }
    }
    for (auto& [p, b] : live) c.deallocate(p, b.size, b.align);
    EXPECT_EQ(c.stats().bytes_in_use, 0u);
    c.flush();
    c.trim();
    expect_clean(view(c));
}

// --- threads
// ---------------------------------------------------------------------------------------

// Each thread keeps a window of blocks with a pattern of its own and checks it before freeing.
TEST(ThreadCache, ManyThreadsAllocateAndFreeWithIntactContents) {
    cache c{memkit::thread_cache_options{.max_blocks_per_class = 16}};
    constexpr int threads = 4;
    const int iterations = 40000 / scale;
    std::atomic<int> corrupted{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            std::mt19937 gen{static_cast<unsigned>(t)};
            std::deque<std::tuple<void*, std::size_t, std::uint8_t>> window;
            for (int i = 0; i < iterations; ++i) {
                const std::size_t size = i % 17 == 0 ? 1 + gen() % 20000 : 1 + gen() % 300;
                void* p = c.allocate(size);
                const auto seed = static_cast<std::uint8_t>(t * 64 + i);
                memkit::fill_pattern(p, size, seed);
                window.emplace_back(p, size, seed);
                if (window.size() > 48 || gen() % 3 == 0) {
                    auto [q, qs, qseed] = window.front();
                    window.pop_front();
                    if (memkit::verify_pattern(q, qs, qseed) != nullptr) ++corrupted;
                    c.deallocate(q, qs);
                }
            }
            for (auto& [q, qs, qseed] : window) {
                if (memkit::verify_pattern(q, qs, qseed) != nullptr) ++corrupted;
                c.deallocate(q, qs);
            }
        });
    }
    for (std::thread& th : pool) th.join();
    EXPECT_EQ(corrupted.load(), 0);
    const memkit::allocator_stats s = c.stats();
    EXPECT_EQ(s.allocations, std::uint64_t{threads} * static_cast<std::uint64_t>(iterations));
    EXPECT_EQ(s.deallocations, s.allocations);
    EXPECT_EQ(s.bytes_in_use, 0u);
    // The threads are gone, and so are their caches: what is not in the depot is back in the
    // heap, and trim() returns the depot.
    EXPECT_EQ(c.cached_bytes(), c.depot_bytes());
    EXPECT_EQ(s.capacity, c.depot_bytes());
    c.trim();
    EXPECT_EQ(c.cached_bytes(), 0u);
    EXPECT_EQ(c.stats().capacity, 0u);
    expect_clean(view(c));
}

// A blocking queue of blocks from producers to consumers.
struct hand_off {
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::tuple<void*, std::size_t, std::uint8_t>> q;
    int producers_left = 0;

    void push(void* p, std::size_t size, std::uint8_t seed) {
        {
            std::lock_guard<std::mutex> lock(m);
            q.emplace_back(p, size, seed);
        }
        cv.notify_one();
    }
    void producer_done() {
        {
            std::lock_guard<std::mutex> lock(m);
            --producers_left;
        }
        cv.notify_all();
    }
    bool pop(std::tuple<void*, std::size_t, std::uint8_t>& out) {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return !q.empty() || producers_left == 0; });
        if (q.empty()) return false;
        out = q.front();
        q.pop_front();
        return true;
    }
};

TEST(ThreadCache, BlocksFreedOnAnotherThreadGoBackCorrectly) {
    cache c{memkit::thread_cache_options{.max_blocks_per_class = 32}};
    hand_off queue;
    queue.producers_left = 2;
    const int per_producer = 30000 / scale;
    std::atomic<int> corrupted{0};
    std::atomic<int> consumed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 gen{static_cast<unsigned>(100 + t)};
            for (int i = 0; i < per_producer; ++i) {
                const std::size_t size = 1 + gen() % 512;
                void* p = c.allocate(size);
                const auto seed = static_cast<std::uint8_t>(i * 3 + t);
                memkit::fill_pattern(p, size, seed);
                queue.push(p, size, seed);
            }
            queue.producer_done();
        });
        threads.emplace_back([&] {
            std::tuple<void*, std::size_t, std::uint8_t> item;
            while (queue.pop(item)) {
                auto [p, size, seed] = item;
                if (memkit::verify_pattern(p, size, seed) != nullptr) ++corrupted;
                memkit::fill_bytes(p, size, 0xdd); // a consumer writes to what it received
                c.deallocate(p, size);
                ++consumed;
            }
        });
    }
    for (std::thread& th : threads) th.join();
    EXPECT_EQ(corrupted.load(), 0);
    EXPECT_EQ(consumed.load(), 2 * per_producer);
    const memkit::allocator_stats s = c.stats();
    EXPECT_EQ(s.allocations, s.deallocations);
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(c.cached_bytes(), c.depot_bytes());
    c.trim();
    expect_clean(view(c));
}

// A latch a test thread waits on, so that it stays alive while the test looks at the cache.
struct gate {
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
    void wait() {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return open; });
    }
    void release() {
        {
            std::lock_guard<std::mutex> lock(m);
            open = true;
        }
        cv.notify_all();
    }
};

TEST(ThreadCache, AThreadThatExitsReturnsItsCache) {
    cache c;
    gate used, may_exit;
    std::thread t([&] {
        std::vector<std::pair<void*, std::size_t>> blocks;
        for (int i = 0; i < 100; ++i) {
            const std::size_t size = 16 + 40 * (i % 3);
            blocks.emplace_back(c.allocate(size), size);
        }
        for (auto& [p, size] : blocks) c.deallocate(p, size);
        used.release();
        may_exit.wait();
    });
    used.wait();
    EXPECT_GT(c.cached_bytes(), 0u);
    EXPECT_EQ(c.stats().capacity, c.cached_bytes());
    EXPECT_GT(view(c).live_blocks, 0u);
    EXPECT_EQ(c.stats().bytes_in_use, 0u);
    may_exit.release();
    t.join();
    EXPECT_EQ(c.cached_bytes(), 0u);
    EXPECT_EQ(c.stats().capacity, 0u);
    EXPECT_EQ(c.stats().allocations, 100u);
    EXPECT_EQ(c.stats().deallocations, 100u);
    expect_clean(view(c));
}

TEST(ThreadCache, ACacheDestroyedBeforeAThreadThatUsedItExits) {
    shared_heap heap;
    auto first =
        std::make_unique<cache_ref>(memkit::thread_cache_options{}, memkit::allocator_ref{heap});
    std::atomic<cache_ref*> current{first.get()};
    gate used, second_ready, used_again, may_exit;
    void* kept = nullptr;
    std::thread t([&] {
        cache_ref& c1 = *current.load();
        void* p = c1.allocate(64);
        c1.deallocate(c1.allocate(200), 200);
        c1.deallocate(p, 64);
        kept = c1.allocate(64); // lives on after the cache is gone
        used.release();
        second_ready.wait();
        // A new cache (quite possibly with the id of the old one) on the same thread.
        cache_ref& c2 = *current.load();
        for (int i = 0; i < 50; ++i) c2.deallocate(c2.allocate(64), 64);
        used_again.release();
        may_exit.wait();
    });
    used.wait();
    EXPECT_GT(first->cached_bytes(), 0u);
    heap_view before = view(heap);
    EXPECT_GT(before.live_blocks, 1u);
    first.reset(); // returns the thread's magazines; the thread is still alive
    heap_view after = view(heap);
    EXPECT_EQ(after.live_blocks, 1u); // only the block the thread still holds
    EXPECT_EQ(after.bad_frees + after.mismatched, 0u);
    heap.deallocate(kept, 64, alignof(std::max_align_t)); // the class size is 64
    auto second =
        std::make_unique<cache_ref>(memkit::thread_cache_options{}, memkit::allocator_ref{heap});
    current.store(second.get());
    second_ready.release();
    used_again.wait();
    EXPECT_GT(second->cached_bytes(), 0u);
    may_exit.release();
    t.join(); // the thread's exit flushes the second cache and skips the dead first one
    EXPECT_EQ(second->cached_bytes(), 0u);
    EXPECT_EQ(second->stats().allocations, 50u);
    second.reset();
    expect_clean(view(heap));
}

TEST(ThreadCache, SeveralCachesAliveAtOnce) {
    shared_heap heap;
    std::vector<std::unique_ptr<cache_ref>> caches;
    for (int i = 0; i < 5; ++i)
        caches.push_back(std::make_unique<cache_ref>(
            memkit::thread_cache_options{.max_blocks_per_class = 8}, memkit::allocator_ref{heap}));
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
        threads.emplace_back([&, t] {
            std::vector<std::tuple<cache_ref*, void*, std::size_t>> live;
            for (int i = 0; i < 3000 / scale; ++i) {
                cache_ref* c = caches[static_cast<std::size_t>(i + t) % caches.size()].get();
                const std::size_t size = 8 + static_cast<std::size_t>((i * 37) % 500);
                live.emplace_back(c, c->allocate(size), size);
                if (live.size() > 20) {
                    auto [lc, lp, ls] = live.front();
                    live.erase(live.begin());
                    lc->deallocate(lp, ls);
                }
            }
            for (auto& [lc, lp, ls] : live) lc->deallocate(lp, ls);
        });
    }
    for (std::thread& th : threads) th.join();
    std::uint64_t allocations = 0, deallocations = 0;
    for (auto& c : caches) {
        EXPECT_EQ(c->cached_bytes(), c->depot_bytes());
        c->trim();
        allocations += c->stats().allocations;
        deallocations += c->stats().deallocations;
    }
    EXPECT_EQ(allocations, deallocations);
    expect_clean(view(heap));
    caches.clear();
    expect_clean(view(heap));
}

TEST(ThreadCache, FlushReturnsOnlyTheCallingThreadsCache) {
    cache c;
    gate used, flushed;
    std::thread t([&] {
        c.deallocate(c.allocate(100), 100);
        used.release();
        flushed.wait();
    });
    used.wait();
    c.deallocate(c.allocate(100), 100);
    const std::size_t both = c.cached_bytes();
    c.flush();
    EXPECT_LT(c.cached_bytes(), both);
    EXPECT_GT(c.cached_bytes(), 0u);
    flushed.release();
    t.join();
    EXPECT_EQ(c.cached_bytes(), 0u);
    EXPECT_EQ(c.stats().allocations, 2u);
    expect_clean(view(c));
}

// Threads exit while the cache is being destroyed, in random interleavings: neither order may
// lose a block or touch freed memory.
TEST(ThreadCache, ThreadExitRacesWithDestruction) {
    shared_heap heap;
    for (int round = 0; round < 40 / scale + 4; ++round) {
        auto c = std::make_unique<cache_ref>(memkit::thread_cache_options{},
                                             memkit::allocator_ref{heap});
        std::atomic<int> done{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 3; ++t) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < 50; ++i) {
                    const std::size_t size = 16u * static_cast<std::size_t>(1 + (i + t) % 8);
                    c->deallocate(c->allocate(size), size);
                }
                done.fetch_add(1, std::memory_order_release);
            });
        }
        while (done.load(std::memory_order_acquire) != 3) std::this_thread::yield();
        c.reset(); // the threads may or may not have exited yet; the depots go back too
        for (std::thread& th : threads) th.join();
        expect_clean(view(heap));
    }
}

} // namespace
