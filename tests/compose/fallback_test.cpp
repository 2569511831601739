#include "memkit/compose/fallback.hpp"

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
#include <utility>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/compose/synchronized.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"
#include "support/tracker.hpp"

namespace {

using memkit::fallback;
using memkit::pool;
using memkit::pool_options;
using memkit::system_allocator;

using memkit::test::tracker;

using capped = fallback<pool, tracker<>>;
using pool_then_system = fallback<pool, system_allocator>;

template <class P, class S>
concept can_fall_back = requires { typename fallback<P, S>; };

static_assert(memkit::allocator<capped>);
static_assert(memkit::owning_allocator<capped>);
static_assert(memkit::allocator<pool_then_system>);
static_assert(!memkit::owning_allocator<pool_then_system>);
static_assert(!can_fall_back<system_allocator, pool>, "Primary must answer owns()");
static_assert(can_fall_back<pool, system_allocator>);
static_assert(capped::max_alignment == 4096);
static_assert(fallback<pool, tracker<16>>::max_alignment == 16, "Secondary's limit");
static_assert(pool_then_system::max_alignment == system_allocator::max_alignment);
static_assert(std::string_view{capped::name} == "memkit::fallback");
static_assert(!capped::is_thread_safe);
static_assert(fallback<memkit::synchronized<pool>, system_allocator>::is_thread_safe);
static_assert(memkit::allocator_traits<capped>::has_reset);
static_assert(memkit::allocator_traits<capped>::has_stats);
static_assert(!memkit::allocator_traits<pool_then_system>::has_reset);
static_assert(!memkit::allocator_traits<pool_then_system>::has_stats);
static_assert(memkit::allocator_traits<pool_then_system>::has_max_size);

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

struct block {
    void* p;
    std::size_t size;
    std::size_t align;
    std::uint8_t seed;
};

capped make_capped(std::size_t nodes, std::size_t node_size = 64) {
    return capped{pool{node_size, 64, pool_options{.nodes_per_chunk = 4, .max_nodes = nodes}},
                  tracker<>{}};
}

TEST(Fallback, UsesPrimaryUntilItIsExhausted) {
    capped f = make_capped(5);
    std::vector<void*> v;
    for (int i = 0; i < 8; ++i) v.push_back(f.allocate(48, 16));
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(f.primary().owns(v[static_cast<std::size_t>(i)]));
    for (int i = 5; i < 8; ++i) EXPECT_TRUE(f.secondary().owns(v[static_cast<std::size_t>(i)]));
    EXPECT_EQ(f.primary().size(), 5u);
    EXPECT_EQ(f.secondary().live(), 3u);
    // Frees go where the block came from.
    f.deallocate(v[1], 48, 16);
    f.deallocate(v[6], 48, 16);
    EXPECT_EQ(f.primary().size(), 4u);
    EXPECT_EQ(f.secondary().live(), 2u);
    void* again = f.allocate(48, 16);
    EXPECT_EQ(again, v[1]) << "the primary is asked first again";
    v[1] = again;
    v.erase(v.begin() + 6);
    for (void* p : v) f.deallocate(p, 48, 16);
    EXPECT_EQ(f.primary().size(), 0u);
    EXPECT_EQ(f.secondary().live(), 0u);
}

TEST(Fallback, RequestsThePrimaryCannotTakeGoToTheSecondary) {
    capped f = make_capped(100);
    void* big = f.allocate(100);          // above the node size
    void* aligned = f.allocate(8, 128);   // above the node alignment
    void* fits = f.allocate(64, 64);
    EXPECT_TRUE(f.secondary().owns(big));
    EXPECT_TRUE(f.secondary().owns(aligned));
    EXPECT_TRUE(memkit::is_aligned(aligned, 128));
    EXPECT_TRUE(f.primary().owns(fits));
    f.deallocate(big, 100);
    f.deallocate(aligned, 8, 128);
    f.deallocate(fits, 64, 64);
    EXPECT_EQ(f.secondary().live(), 0u);
}

TEST(Fallback, EveryAlignmentUpToTheLimit) {
    fallback<pool, system_allocator> f{pool{256, 256, pool_options{.max_nodes = 40}}, {}};
    std::vector<block> live;
    std::uint8_t seed = 0;
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t size : {1u, 255u, 256u, 257u, 3000u}) {
            void* p = f.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align)) << size << " @" << align;
            memkit::fill_pattern(p, size, ++seed);
            live.push_back({p, size, align, seed});
        }
    }
    EXPECT_EQ(f.primary().size(), 27u) << "256-byte or smaller at alignments up to 256";
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (const block& b : live) ranges.emplace_back(addr(b.p), b.size);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (const block& b : live) EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
    for (const block& b : live) f.deallocate(b.p, b.size, b.align);
    EXPECT_EQ(f.primary().size(), 0u);
}

TEST(Fallback, WhenBothFailTheSecondarysErrorIsThrown) {
    fallback<pool, tracker<64>> f{pool{32, 16, pool_options{.max_nodes = 1}}, tracker<64>{100}};
    void* a = f.allocate(32);
    try {
        (void)f.allocate(200);
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_NE(std::string(e.what()).find("test::tracker"), std::string::npos);
        EXPECT_EQ(e.max_size(), 100u);
    }
    EXPECT_THROW((void)f.allocate(8, 128), memkit::invalid_alignment);
    EXPECT_THROW((void)f.allocate(0), memkit::bad_size);
    EXPECT_EQ(f.try_allocate(200), nullptr);
    EXPECT_EQ(f.try_allocate(8, 3), nullptr);
    EXPECT_EQ(f.secondary().live(), 0u);
    f.deallocate(a, 32);
    EXPECT_EQ(f.max_size(), 100u) << "the larger of 32 and 100";
}

TEST(Fallback, ForwardsOwnsResetAndSummedStats) {
    capped f = make_capped(2);
    void* a = f.allocate(10);
    void* b = f.allocate(20);
    void* c = f.allocate(30);
    int local = 0;
    EXPECT_TRUE(f.owns(a));
    EXPECT_TRUE(f.owns(c));
    EXPECT_FALSE(f.owns(&local));
    auto s = f.stats();
    EXPECT_EQ(s.bytes_in_use, 2u * 64u + 30u) << "pool nodes plus the secondary's bytes";
    EXPECT_EQ(s.allocations, 3u);
    f.deallocate(c, 30);
    s = f.stats();
    EXPECT_EQ(s.bytes_in_use, 128u);
    EXPECT_EQ(s.deallocations, 1u);
    EXPECT_EQ(s.peak_bytes, 128u + 30u);
    f.reset();
    EXPECT_EQ(f.stats().bytes_in_use, 0u);
    EXPECT_EQ(f.primary().size(), 0u);
    (void)b;
}

TEST(Fallback, NestedFallbacksTryEachInTurn) {
    using chain = fallback<pool, fallback<pool, tracker<>>>;
    static_assert(memkit::owning_allocator<chain>);
    chain f{pool{32, 16, pool_options{.max_nodes = 2}},
            {pool{32, 16, pool_options{.max_nodes = 2}}, tracker<>{}}};
    std::vector<void*> v;
    for (int i = 0; i < 6; ++i) v.push_back(f.allocate(32));
    EXPECT_EQ(f.primary().size(), 2u);
    EXPECT_EQ(f.secondary().primary().size(), 2u);
    EXPECT_EQ(f.secondary().secondary().live(), 2u);
    for (void* p : v) f.deallocate(p, 32);
    EXPECT_EQ(f.stats().bytes_in_use, 0u);
}

TEST(Fallback, AnArenaInAStackBufferThenTheHeap) {
    alignas(64) std::byte buffer[1024];
    using local_first = fallback<memkit::arena, system_allocator>;
    local_first f{memkit::arena{std::span{buffer},
                                memkit::arena_options{.block_size = 4096, .max_total = 0}},
                  {}};
    std::vector<void*> v;
    for (int i = 0; i < 20; ++i) v.push_back(f.allocate(100));
    EXPECT_TRUE(f.primary().owns(v[0]));
    EXPECT_FALSE(f.primary().owns(v[19])) << "the buffer is used up";
    for (void* p : v) f.deallocate(p, 100);
}

TEST(Fallback, PiecewiseConstructionBuildsPartsInPlace) {
    using sync_first = fallback<memkit::synchronized<pool>, system_allocator>;
    sync_first f{std::piecewise_construct, std::forward_as_tuple(std::in_place, 64, 16),
                 std::forward_as_tuple()};
    void* p = f.allocate(40);
    EXPECT_TRUE(f.primary().owns(p));
    f.deallocate(p, 40);
}

TEST(Fallback, RandomizedAgainstAShadowModel) {
    capped f{pool{128, 16, pool_options{.nodes_per_chunk = 64, .max_nodes = 700}}, tracker<>{}};
    std::mt19937_64 rng(0x66616c6c);
    struct entry {
        block b;
        bool primary;
    };
    std::vector<entry> live;
    std::size_t expected_bytes = 0;
    auto check_all = [&] {
        const auto s = f.stats();
        ASSERT_EQ(s.bytes_in_use, expected_bytes);
        ASSERT_EQ(s.allocations - s.deallocations, live.size());
        std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
        for (const entry& e : live) {
            ranges.emplace_back(addr(e.b.p), e.b.size);
            ASSERT_EQ(f.primary().owns(e.b.p), e.primary);
            ASSERT_EQ(memkit::verify_pattern(e.b.p, std::min<std::size_t>(e.b.size, 32), e.b.seed),
                      nullptr);
        }
        ASSERT_TRUE(memkit::test::no_overlap(ranges));
    };
    for (int op = 0; op < 1'000'000; ++op) {
        const std::uint64_t r = rng();
        const std::size_t target = ((op >> 16) & 1) ? 1000 : 300;
        if (live.empty() || (r % (2 * target)) >= live.size()) {
            const std::size_t size =
                (r >> 8) % 16 == 0 ? 129 + (r >> 12) % 2000 : 1 + (r >> 12) % 128;
            const std::size_t align = std::size_t{1} << ((r >> 34) % 6);
            const bool primary_has_room = f.primary().can_allocate(1);
            void* p = f.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            const bool primary = f.primary().owns(p);
            ASSERT_EQ(primary, size <= 128 && align <= 16 && primary_has_room);
            const auto seed = static_cast<std::uint8_t>(r >> 56);
            memkit::fill_pattern(p, std::min<std::size_t>(size, 32), seed);
            live.push_back({{p, size, align, seed}, primary});
            expected_bytes += primary ? 128 : size;
        } else {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            const entry e = live[i];
            ASSERT_EQ(memkit::verify_pattern(e.b.p, std::min<std::size_t>(e.b.size, 32), e.b.seed),
                      nullptr);
            f.deallocate(e.b.p, e.b.size, e.b.align);
            expected_bytes -= e.primary ? 128 : e.b.size;
            live[i] = live.back();
            live.pop_back();
        }
        if (op % 100'000 == 99'999) {
            check_all();
            if (HasFatalFailure()) return;
        }
    }
    check_all();
    for (const entry& e : live) f.deallocate(e.b.p, e.b.size, e.b.align);
    EXPECT_EQ(f.stats().bytes_in_use, 0u);
}

TEST(Fallback, ServesPmrContainersThroughResource) {
    pool_then_system f{pool{64, 16, pool_options{.max_nodes = 100}}, {}};
    {
        memkit::resource r{f};
        std::pmr::list<int> l{&r};
        for (int i = 0; i < 300; ++i) l.push_back(i); // 100 from the pool, the rest from malloc
        std::pmr::vector<double> v{&r};
        for (int i = 0; i < 1000; ++i) v.push_back(i);
        EXPECT_EQ(f.primary().size(), 100u);
        long sum = 0;
        for (int x : l) sum += x;
        EXPECT_EQ(sum, 299 * 300 / 2);
        EXPECT_EQ(v[999], 999.0);
    }
    EXPECT_EQ(f.primary().size(), 0u);
}

TEST(Fallback, ServesStdContainersThroughStdAllocator) {
    pool_then_system f{pool{64, 16, pool_options{.max_nodes = 50}}, {}};
    {
        std::map<int, int, std::less<>, memkit::std_allocator<std::pair<const int, int>,
                                                              pool_then_system>>
            m{f};
        for (int i = 0; i < 120; ++i) m.emplace(i, -i);
        EXPECT_EQ(m.size(), 120u);
        EXPECT_EQ(m.at(77), -77);
        EXPECT_EQ(f.primary().size(), 50u);
    }
    EXPECT_EQ(f.primary().size(), 0u);
}

} // namespace
