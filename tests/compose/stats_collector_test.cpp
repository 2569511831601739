#include "memkit/compose/stats_collector.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory_resource>
#include <new>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/pool_collection.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"
#include "support/tracker.hpp"

namespace {

using memkit::stats_collector;
using memkit::system_allocator;

using memkit::test::tracker;

using counted = stats_collector<tracker<>>;
using counted_system = stats_collector<system_allocator>;
using counted_pools = stats_collector<memkit::pool_collection>;

static_assert(memkit::allocator<counted>);
static_assert(memkit::owning_allocator<counted>);
static_assert(memkit::allocator<counted_system>);
static_assert(memkit::owning_allocator<counted_pools>);
static_assert(memkit::allocator_traits<counted_system>::has_stats, "it counts for any A");
static_assert(!memkit::allocator_traits<counted_system>::has_owns);
static_assert(!memkit::allocator_traits<counted_system>::has_reset);
static_assert(memkit::allocator_traits<counted_system>::has_max_size);
static_assert(memkit::allocator_traits<counted>::has_reset);
static_assert(!counted_system::is_thread_safe, "plain counters");
static_assert(counted_system::max_alignment == system_allocator::max_alignment);
static_assert(counted::max_alignment == 4096);
static_assert(std::string_view{counted_system::name} == "memkit::system_allocator");
static_assert(std::string_view{counted_pools::name} == "memkit::pool_collection");
static_assert(counted::bucket_of(1) == 0);
static_assert(counted::bucket_of(2) == 1);
static_assert(counted::bucket_of(3) == 2 && counted::bucket_of(4) == 2);
static_assert(counted::bucket_of(5) == 3 && counted::bucket_of(8) == 3);
static_assert(counted::bucket_of(9) == 4);
static_assert(counted::bucket_of(4096) == 12 && counted::bucket_of(4097) == 13);
static_assert(counted::bucket_of(std::size_t{1} << 63) == 63);
static_assert(counted::bucket_of(static_cast<std::size_t>(-1)) == 63);
static_assert(counted::histogram_buckets == 64);

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

struct block {
    void* p;
    std::size_t size;
    std::size_t align;
    std::uint8_t seed;
};

TEST(StatsCollector, CountsExactlyWhatPassesThrough) {
    counted a;
    void* p = a.allocate(100);
    void* q = a.allocate(28, 4);
    void* r = a.try_allocate(1000, 64);
    auto s = a.stats();
    EXPECT_EQ(s.bytes_in_use, 1128u);
    EXPECT_EQ(s.peak_bytes, 1128u);
    EXPECT_EQ(s.allocations, 3u);
    EXPECT_EQ(s.deallocations, 0u);
    EXPECT_EQ(s.capacity, a.inner_stats().capacity) << "A's capacity";
    a.deallocate(r, 1000, 64);
    a.deallocate(p, 100);
    s = a.stats();
    EXPECT_EQ(s.bytes_in_use, 28u);
    EXPECT_EQ(s.peak_bytes, 1128u);
    EXPECT_EQ(s.deallocations, 2u);
    void* t = a.allocate(500);
    EXPECT_EQ(a.stats().peak_bytes, 1128u);
    a.deallocate(t, 500);
    a.deallocate(q, 28, 4);
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
    EXPECT_EQ(a.get().live(), 0u);
}

TEST(StatsCollector, HistogramBucketsRequestSizesByPowersOfTwo) {
    counted_system a;
    const std::vector<std::size_t> sizes{1, 2, 3, 4, 5, 8, 9, 16, 17, 100, 128, 129, 4096, 70000};
    std::vector<void*> v;
    for (std::size_t n : sizes) v.push_back(a.allocate(n));
    const auto& h = a.histogram();
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(h)>, std::array<std::uint64_t, 64>>);
    EXPECT_EQ(h[0], 1u); // 1
    EXPECT_EQ(h[1], 1u); // 2
    EXPECT_EQ(h[2], 2u); // 3, 4
    EXPECT_EQ(h[3], 2u); // 5, 8
    EXPECT_EQ(h[4], 2u); // 9, 16
    EXPECT_EQ(h[5], 1u); // 17
    EXPECT_EQ(h[7], 2u); // 100, 128
    EXPECT_EQ(h[8], 1u); // 129
    EXPECT_EQ(h[12], 1u); // 4096
    EXPECT_EQ(h[17], 1u); // 70000
    EXPECT_EQ(std::accumulate(h.begin(), h.end(), std::uint64_t{0}), a.stats().allocations);
    for (std::size_t i = 0; i < v.size(); ++i) a.deallocate(v[i], sizes[i]);
    EXPECT_EQ(std::accumulate(h.begin(), h.end(), std::uint64_t{0}), sizes.size())
        << "frees do not change the histogram";
}

TEST(StatsCollector, FailuresAreCountedApartAndChangeNothingElse) {
    counted a{tracker<>{1000}};
    void* p = a.allocate(10);
    EXPECT_THROW((void)a.allocate(2000), memkit::bad_size);
    EXPECT_THROW((void)a.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)a.allocate(0), memkit::bad_size);
    EXPECT_EQ(a.try_allocate(2000), nullptr);
    EXPECT_EQ(a.failed_allocations(), 4u);
    const auto s = a.stats();
    EXPECT_EQ(s.allocations, 1u);
    EXPECT_EQ(s.bytes_in_use, 10u);
    EXPECT_EQ(std::accumulate(a.histogram().begin(), a.histogram().end(), std::uint64_t{0}), 1u);
    a.deallocate(p, 10);
    try {
        (void)a.allocate(5000);
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_NE(std::string(e.what()).find("test::tracker"), std::string::npos)
            << "errors are A's";
    }
}

TEST(StatsCollector, ForwardsOwnsResetAndMaxSize) {
    counted a{tracker<>{777}};
    void* p = a.allocate(10);
    void* q = a.allocate(20);
    int local = 0;
    EXPECT_TRUE(a.owns(p));
    EXPECT_FALSE(a.owns(&local));
    EXPECT_EQ(a.max_size(), 777u);
    a.reset();
    EXPECT_EQ(a.get().live(), 0u);
    auto s = a.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.allocations, 2u);
    EXPECT_EQ(s.deallocations, 2u) << "live blocks count as freed";
    EXPECT_EQ(s.peak_bytes, 30u);
    EXPECT_EQ(a.histogram()[4] + a.histogram()[5], 2u) << "reset keeps the histogram";
    (void)q;
}

TEST(StatsCollector, ConstructsTheAllocatorInPlace) {
    stats_collector<memkit::pool> a{std::in_place, 64, 16};
    EXPECT_EQ(a.get().node_size(), 64u);
    void* p = a.allocate(40);
    EXPECT_EQ(a.stats().bytes_in_use, 40u) << "as requested";
    EXPECT_EQ(a.inner_stats().bytes_in_use, 64u) << "whole nodes";
    a.deallocate(p, 40);
}

TEST(StatsCollector, EveryAlignmentWithContentsAndNoOverlap) {
    counted_pools a{memkit::pool_collection{
        memkit::pool_collection_options{.large = memkit::large_policy::parent}}};
    std::vector<block> live;
    std::uint8_t seed = 0;
    std::size_t bytes = 0;
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t size : {1u, 64u, 255u, 256u, 257u, 4000u}) {
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            memkit::fill_pattern(p, size, ++seed);
            live.push_back({p, size, align, seed});
            bytes += size;
        }
    }
    EXPECT_EQ(a.stats().bytes_in_use, bytes);
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (const block& b : live) ranges.emplace_back(addr(b.p), b.size);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (const block& b : live) EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
    for (const block& b : live) a.deallocate(b.p, b.size, b.align);
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
    EXPECT_EQ(a.inner_stats().bytes_in_use, 0u);
}

TEST(StatsCollector, RandomizedAgainstAShadowModel) {
    counted_pools a;
    std::mt19937_64 rng(0x73746174);
    std::vector<block> live;
    std::size_t bytes = 0;
    std::size_t peak = 0;
    std::uint64_t allocations = 0;
    std::uint64_t failures = 0;
    std::array<std::uint64_t, 64> hist{};
    auto check_all = [&] {
        const auto s = a.stats();
        ASSERT_EQ(s.bytes_in_use, bytes);
        ASSERT_EQ(s.peak_bytes, peak);
        ASSERT_EQ(s.allocations, allocations);
        ASSERT_EQ(s.allocations - s.deallocations, live.size());
        ASSERT_EQ(a.failed_allocations(), failures);
        ASSERT_EQ(a.histogram(), hist);
        std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
        for (const block& b : live) {
            ranges.emplace_back(addr(b.p), b.size);
            ASSERT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
        }
        ASSERT_TRUE(memkit::test::no_overlap(ranges));
    };
    for (int op = 0; op < 1'000'000; ++op) {
        const std::uint64_t r = rng();
        const std::size_t target = ((op >> 16) & 1) ? 2000 : 500;
        if (live.empty() || (r % (2 * target)) >= live.size()) {
            const std::size_t size = 1 + (r >> 8) % 300; // some above the largest class: refused
            const std::size_t align = std::size_t{1} << ((r >> 34) % 5);
            void* p = a.try_allocate(size, align);
            if (p == nullptr) {
                ASSERT_GT(size, 256u);
                ++failures;
                continue;
            }
            const auto seed = static_cast<std::uint8_t>(r >> 56);
            memkit::fill_pattern(p, size, seed);
            live.push_back({p, size, align, seed});
            bytes += size;
            peak = std::max(peak, bytes);
            ++allocations;
            ++hist[counted_pools::bucket_of(size)];
        } else {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            const block b = live[i];
            ASSERT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
            a.deallocate(b.p, b.size, b.align);
            bytes -= b.size;
            live[i] = live.back();
            live.pop_back();
        }
        if (op % 100'000 == 99'999) {
            check_all();
            if (HasFatalFailure()) return;
        }
    }
    check_all();
    for (const block& b : live) a.deallocate(b.p, b.size, b.align);
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
}

TEST(StatsCollector, ServesPmrContainersThroughResource) {
    counted_system a;
    {
        memkit::resource r{a};
        std::pmr::vector<int> v{&r};
        for (int i = 0; i < 1000; ++i) v.push_back(i);
        const auto before = a.histogram();
        std::pmr::map<int, std::pmr::string> m{&r};
        for (int i = 0; i < 50; ++i) m.emplace(i, std::string(40, 'y'));
        const auto s = a.stats();
        EXPECT_EQ(s.allocations - s.deallocations, 1u + 50u + 50u)
            << "the vector's buffer, 50 map nodes, 50 strings";
        EXPECT_GE(s.bytes_in_use, 1024u * sizeof(int) + 50u * (sizeof(*m.begin()) + 41u));
        const std::size_t k = counted_system::bucket_of(41);
        EXPECT_EQ(a.histogram()[k] - before[k], 50u) << "the strings";
        EXPECT_EQ(v[500], 500);
    }
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
    EXPECT_EQ(a.stats().allocations, a.stats().deallocations);
}

TEST(StatsCollector, ServesStdContainersThroughStdAllocator) {
    counted_system a;
    {
        std::list<long, memkit::std_allocator<long, counted_system>> l{a};
        for (long i = 0; i < 100; ++i) l.push_back(i);
        EXPECT_EQ(a.stats().allocations, 100u);
        EXPECT_EQ(a.stats().bytes_in_use, 100u * (sizeof(long) + 2 * sizeof(void*)));
        EXPECT_EQ(a.histogram()[counted_system::bucket_of(sizeof(long) + 2 * sizeof(void*))], 100u);
    }
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
}

} // namespace
