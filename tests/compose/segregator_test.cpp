#include "memkit/compose/segregator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory_resource>
#include <new>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/pool_collection.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/compose/stats_collector.hpp"
#include "memkit/compose/synchronized.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"
#include "support/tracker.hpp"

namespace {

using memkit::pool_collection;
using memkit::segregator;
using memkit::system_allocator;

using memkit::test::tracker;

using seg = segregator<256, pool_collection, system_allocator>;
using tracked = segregator<128, tracker<>, tracker<>>;
using narrow_small = segregator<128, tracker<16>, tracker<4096>>;
using narrow_large = segregator<128, tracker<4096>, tracker<16>>;

static_assert(memkit::allocator<seg>);
static_assert(memkit::allocator<tracked>);
static_assert(memkit::allocator<memkit::synchronized<seg>>);
static_assert(seg::max_alignment == system_allocator::max_alignment);
static_assert(narrow_small::max_alignment == 16);
static_assert(narrow_large::max_alignment == 16);
static_assert(seg::threshold == 256);
static_assert(std::string_view{seg::name} == "memkit::segregator");
static_assert(!seg::is_thread_safe);
static_assert(segregator<64, system_allocator, system_allocator>::is_thread_safe);
static_assert(memkit::synchronized<seg>::is_thread_safe);
// Optional members exist exactly when both parts have them.
static_assert(!memkit::allocator_traits<seg>::has_owns);
static_assert(!memkit::allocator_traits<seg>::has_reset);
static_assert(!memkit::allocator_traits<seg>::has_stats);
static_assert(memkit::allocator_traits<seg>::has_max_size);
static_assert(memkit::owning_allocator<tracked>);
static_assert(memkit::allocator_traits<tracked>::has_reset);
static_assert(memkit::allocator_traits<tracked>::has_stats);
static_assert(memkit::allocator_traits<segregator<64, pool_collection, pool_collection>>::has_owns);
static_assert(std::is_empty_v<segregator<64, system_allocator, system_allocator>> ||
              sizeof(segregator<64, system_allocator, system_allocator>) <= 2);
static_assert(!std::is_copy_constructible_v<seg>);
static_assert(std::is_move_constructible_v<seg>);

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

struct block {
    void* p;
    std::size_t size;
    std::size_t align;
    std::uint8_t seed;
};

TEST(Segregator, RoutesBySizeAtTheThreshold) {
    tracked s;
    void* a = s.allocate(128);
    void* b = s.allocate(129);
    void* c = s.allocate(1);
    EXPECT_TRUE(s.small().owns(a));
    EXPECT_TRUE(s.large().owns(b));
    EXPECT_TRUE(s.small().owns(c));
    EXPECT_EQ(s.small().live(), 2u);
    EXPECT_EQ(s.large().live(), 1u);
    EXPECT_TRUE(tracked::is_small(128, 16));
    EXPECT_FALSE(tracked::is_small(129, 16));
    s.deallocate(b, 129);
    EXPECT_EQ(s.large().live(), 0u) << "freed in the part it came from";
    s.deallocate(a, 128);
    s.deallocate(c, 1);
    EXPECT_EQ(s.small().live(), 0u);
    void* t = s.try_allocate(500, 64);
    EXPECT_TRUE(s.large().owns(t));
    s.deallocate(t, 500, 64);
}

TEST(Segregator, OverAlignedSmallRequestsGoToLarge) {
    narrow_small s;
    EXPECT_FALSE(narrow_small::is_small(8, 64));
    void* p = s.allocate(8, 64);
    EXPECT_TRUE(memkit::is_aligned(p, 64));
    EXPECT_TRUE(s.large().owns(p)) << "Small cannot align to 64; Large can";
    s.deallocate(p, 8, 64);
    EXPECT_EQ(s.large().live(), 0u);
    void* q = s.allocate(8, 16);
    EXPECT_TRUE(s.small().owns(q));
    s.deallocate(q, 8, 16);
}

TEST(Segregator, AlignmentsNeitherPartOffersAreRejectedCleanly) {
    narrow_large s;
    // Large requests above Large's limit: rejected by Large, with nothing allocated.
    EXPECT_THROW((void)s.allocate(500, 64), memkit::invalid_alignment);
    EXPECT_EQ(s.try_allocate(500, 64), nullptr);
    // Small requests within Small's own limit are still served (beyond max_alignment).
    void* p = s.allocate(100, 64);
    EXPECT_TRUE(s.small().owns(p));
    s.deallocate(p, 100, 64);
    EXPECT_THROW((void)s.allocate(100, 8192), memkit::invalid_alignment);
    EXPECT_EQ(s.small().live() + s.large().live(), 0u);
}

TEST(Segregator, EveryAlignmentUpToTheLimitAtBothSidesOfTheThreshold) {
    seg s;
    std::vector<block> live;
    std::uint8_t seed = 0;
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t size : {1u, 8u, 100u, 255u, 256u, 257u, 1000u, 5000u}) {
            void* p = s.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align)) << size << " @" << align;
            memkit::fill_pattern(p, size, ++seed);
            live.push_back({p, size, align, seed});
        }
    }
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (const block& b : live) ranges.emplace_back(addr(b.p), b.size);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (const block& b : live) EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
    for (const block& b : live) s.deallocate(b.p, b.size, b.align);
    EXPECT_EQ(s.small().stats().bytes_in_use, 0u);
}

TEST(Segregator, ConstructorChecksThatSmallCoversTheThreshold) {
    using too_small = segregator<256, memkit::pool, system_allocator>;
    try {
        too_small s{memkit::pool{64}, system_allocator{}};
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_EQ(e.size(), 256u);
        EXPECT_EQ(e.max_size(), 64u);
    }
    EXPECT_NO_THROW((too_small{memkit::pool{256}, system_allocator{}}));
    EXPECT_THROW((segregator<512, pool_collection, system_allocator>{}), memkit::bad_size)
        << "the default collection's largest class is 256";
}

TEST(Segregator, ForwardsOwnsResetStatsAndMaxSize) {
    tracked s{tracker<>{1000}, tracker<>{1 << 20}};
    void* a = s.allocate(100);
    void* b = s.allocate(1000);
    void* c = s.allocate(50);
    int local = 0;
    EXPECT_TRUE(s.owns(a));
    EXPECT_TRUE(s.owns(b));
    EXPECT_FALSE(s.owns(&local));
    auto st = s.stats();
    EXPECT_EQ(st.bytes_in_use, 1150u);
    EXPECT_EQ(st.allocations, 3u);
    EXPECT_EQ(st.capacity, 1150u);
    s.deallocate(c, 50);
    st = s.stats();
    EXPECT_EQ(st.bytes_in_use, 1100u);
    EXPECT_EQ(st.peak_bytes, 1150u);
    EXPECT_EQ(st.deallocations, 1u);
    EXPECT_EQ(s.max_size(), std::size_t{1} << 20) << "Large's, above the threshold";
    s.reset();
    EXPECT_EQ(s.small().live() + s.large().live(), 0u);
    EXPECT_EQ(s.stats().bytes_in_use, 0u);

    // Sizes above the threshold go to Large even when Large is smaller: the limit is then
    // Small's, capped at the threshold.
    segregator<128, tracker<>, tracker<>> t{tracker<>{1000}, tracker<>{100}};
    EXPECT_EQ(t.max_size(), 128u);
    segregator<128, tracker<>, tracker<>> u{tracker<>{128}, tracker<>{100}};
    EXPECT_EQ(u.max_size(), 128u);
    EXPECT_EQ(seg{}.max_size(), system_allocator::max_size());
}

TEST(Segregator, ErrorsComeFromThePartWithItsName) {
    seg s;
    try {
        (void)s.allocate(0);
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_NE(std::string(e.what()).find("memkit::pool_collection"), std::string::npos);
    }
    EXPECT_THROW((void)s.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)s.allocate(1000, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)s.allocate(system_allocator::max_size() + 1), memkit::bad_size);
    EXPECT_EQ(s.try_allocate(0), nullptr);
    EXPECT_EQ(s.try_allocate(8, 3), nullptr);
    EXPECT_EQ(s.small().stats().allocations, 0u);
}

TEST(Segregator, NestsIntoASizeClassTree) {
    using tree = segregator<64, tracker<>, segregator<1024, tracker<>, tracker<>>>;
    static_assert(memkit::allocator<tree>);
    static_assert(memkit::owning_allocator<tree>);
    tree t;
    void* a = t.allocate(64);
    void* b = t.allocate(65);
    void* c = t.allocate(1024);
    void* d = t.allocate(1025);
    EXPECT_TRUE(t.small().owns(a));
    EXPECT_TRUE(t.large().small().owns(b));
    EXPECT_TRUE(t.large().small().owns(c));
    EXPECT_TRUE(t.large().large().owns(d));
    EXPECT_EQ(t.stats().bytes_in_use, 64u + 65u + 1024u + 1025u);
    t.deallocate(a, 64);
    t.deallocate(b, 65);
    t.deallocate(c, 1024);
    t.deallocate(d, 1025);
    EXPECT_EQ(t.stats().bytes_in_use, 0u);
}

TEST(Segregator, PiecewiseConstructionBuildsPartsInPlace) {
    using sync_small = segregator<64, memkit::synchronized<memkit::pool>, system_allocator>;
    sync_small s{std::piecewise_construct, std::forward_as_tuple(std::in_place, 64, 16),
                 std::forward_as_tuple()};
    void* p = s.allocate(40);
    EXPECT_TRUE(s.small().owns(p));
    s.deallocate(p, 40);
}

TEST(Segregator, RandomizedAgainstAShadowModel) {
    using model = segregator<200, pool_collection, memkit::stats_collector<system_allocator>>;
    model s;
    std::mt19937_64 rng(0x73656772);
    std::vector<block> live;
    std::size_t expected_bytes = 0;
    auto charge = [&](std::size_t size, std::size_t align) {
        if (!model::is_small(size, align)) return size;
        const std::size_t i = s.small().class_index(size, align);
        return i == pool_collection::npos ? size : s.small().class_pool(i).node_size();
    };
    auto check_all = [&] {
        const auto st = s.stats();
        ASSERT_EQ(st.bytes_in_use, expected_bytes);
        ASSERT_EQ(st.allocations - st.deallocations, live.size());
        std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
        for (const block& b : live) {
            ranges.emplace_back(addr(b.p), b.size);
            ASSERT_EQ(memkit::verify_pattern(b.p, std::min<std::size_t>(b.size, 32), b.seed),
                      nullptr);
        }
        ASSERT_TRUE(memkit::test::no_overlap(ranges));
    };
    for (int op = 0; op < 1'000'000; ++op) {
        const std::uint64_t r = rng();
        const std::size_t target = ((op >> 16) & 1) ? 2000 : 500;
        if (live.empty() || (r % (2 * target)) >= live.size()) {
            const std::size_t size =
                (r >> 8) % 8 == 0 ? 201 + (r >> 12) % 4000 : 1 + (r >> 12) % 200;
            const std::size_t align = std::size_t{1} << ((r >> 30) % 16 == 0 ? (r >> 34) % 13
                                                                              : (r >> 34) % 5);
            void* p = s.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            const auto seed = static_cast<std::uint8_t>(r >> 56);
            memkit::fill_pattern(p, std::min<std::size_t>(size, 32), seed);
            live.push_back({p, size, align, seed});
            expected_bytes += charge(size, align);
        } else {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            const block b = live[i];
            ASSERT_EQ(memkit::verify_pattern(b.p, std::min<std::size_t>(b.size, 32), b.seed),
                      nullptr);
            s.deallocate(b.p, b.size, b.align);
            expected_bytes -= charge(b.size, b.align);
            live[i] = live.back();
            live.pop_back();
        }
        if (op % 100'000 == 99'999) {
            check_all();
            if (HasFatalFailure()) return;
        }
    }
    check_all();
    for (const block& b : live) s.deallocate(b.p, b.size, b.align);
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
}

TEST(Segregator, ServesPmrContainersThroughResource) {
    seg s;
    {
        memkit::resource r{s};
        std::pmr::vector<int> v{&r};
        for (int i = 0; i < 10000; ++i) v.push_back(i); // grows past the threshold
        std::pmr::list<std::pmr::string> l{&r};
        for (int i = 0; i < 100; ++i)
            l.emplace_back(std::string(static_cast<std::size_t>(i * 5), 'x'));
        std::pmr::map<int, int> m{&r};
        for (int i = 0; i < 100; ++i) m[i] = i;
        EXPECT_EQ(v[9999], 9999);
        EXPECT_EQ(l.back().size(), 495u);
        EXPECT_EQ(m.at(50), 50);
        EXPECT_GT(s.small().stats().bytes_in_use, 0u);
    }
    EXPECT_EQ(s.small().stats().bytes_in_use, 0u);
}

TEST(Segregator, ServesStdContainersThroughStdAllocator) {
    seg s;
    {
        std::vector<long, memkit::std_allocator<long, seg>> v{s};
        std::set<int, std::less<>, memkit::std_allocator<int, seg>> set{s};
        for (long i = 0; i < 1000; ++i) v.push_back(i);
        for (int i = 0; i < 200; ++i) set.insert(i);
        EXPECT_EQ(v.back(), 999);
        EXPECT_EQ(set.size(), 200u);
        EXPECT_EQ(s.small().stats().allocations - s.small().stats().deallocations, 200u)
            << "the set's nodes; the vector's buffer is above the threshold by now";
    }
    EXPECT_EQ(s.small().stats().bytes_in_use, 0u);
}

// The composition the issue asks for: a size-segregated heap shared by threads through std::pmr.
// (Also run under ThreadSanitizer.)
TEST(Segregator, SynchronizedCompositionServesPmrContainersInFourThreads) {
    memkit::synchronized<seg> heap;
    memkit::resource r{heap};
    constexpr int threads = 4;
    std::vector<std::thread> workers;
    std::vector<long> sums(threads, 0);
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&r, &sums, t] {
            for (int round = 0; round < 20; ++round) {
                std::pmr::vector<std::pmr::string> names{&r};
                std::pmr::map<int, std::pmr::string> by_id{&r};
                std::pmr::list<int> queue{&r};
                for (int i = 0; i < 200; ++i) {
                    names.emplace_back("worker " + std::to_string(t) + " item " +
                                       std::to_string(i) +
                                       std::string(static_cast<std::size_t>(i % 40), '.'));
                    by_id.emplace(i, names.back());
                    queue.push_back(i);
                    if (queue.size() > 16) queue.pop_front();
                }
                long sum = 0;
                for (const auto& [id, name] : by_id) sum += static_cast<long>(name.size()) + id;
                for (int x : queue) sum += x;
                sums[static_cast<std::size_t>(t)] += sum;
            }
        });
    }
    for (std::thread& w : workers) w.join();
    for (int t = 1; t < threads; ++t) EXPECT_EQ(sums[static_cast<std::size_t>(t)], sums[0]);
    const auto st = heap.with_lock([](seg& s) { return s.small().stats(); });
    EXPECT_EQ(st.bytes_in_use, 0u);
    EXPECT_EQ(st.allocations, st.deallocations);
    EXPECT_GT(st.allocations, 4u * 20u * 400u);
}

} // namespace
