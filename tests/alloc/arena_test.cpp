#include "memkit/alloc/arena.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <map>
#include <memory_resource>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::arena;
using memkit::arena_options;
using memkit::test::counting_parent;
using parent_counters = counting_parent::counters;

static_assert(memkit::allocator<arena>);
static_assert(memkit::owning_allocator<arena>);
static_assert(memkit::allocator_traits<arena>::has_reset);
static_assert(memkit::allocator_traits<arena>::has_stats);
static_assert(!memkit::allocator_traits<arena>::is_thread_safe);
static_assert(!std::is_copy_constructible_v<arena>);
static_assert(std::is_nothrow_move_constructible_v<arena>);

TEST(Arena, EveryPowerOfTwoAlignment) {
    arena a;
    for (std::size_t align = 1; align <= 65536; align *= 2) {
        for (std::size_t size : {1u, 7u, 64u, 1000u}) {
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align)) << "align " << align << " size " << size;
            std::memset(p, 0xAB, size);
        }
    }
}

TEST(Arena, LiveBlocksDoNotOverlapAndKeepTheirContents) {
    arena a{arena_options{.block_size = 256}};
    std::mt19937 rng(7);
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    std::vector<std::tuple<void*, std::size_t, std::uint8_t>> blocks;
    for (int i = 0; i < 2000; ++i) {
        const std::size_t size = 1 + rng() % 300;
        const std::size_t align = std::size_t{1} << (rng() % 7);
        void* p = a.allocate(size, align);
        const auto seed = static_cast<std::uint8_t>(i);
        memkit::fill_pattern(p, size, seed);
        ranges.emplace_back(reinterpret_cast<std::uintptr_t>(p), size);
        blocks.emplace_back(p, size, seed);
    }
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (auto& [p, size, seed] : blocks) EXPECT_EQ(memkit::verify_pattern(p, size, seed), nullptr);
}

TEST(Arena, StatsAreExact) {
    arena a;
    EXPECT_EQ(a.stats(), memkit::allocator_stats{});
    void* p = a.allocate(10, 1);
    void* q = a.allocate(30, 8);
    auto s = a.stats();
    EXPECT_EQ(s.bytes_in_use, 40u);
    EXPECT_EQ(s.peak_bytes, 40u);
    EXPECT_EQ(s.allocations, 2u);
    EXPECT_EQ(s.deallocations, 0u);
    EXPECT_EQ(s.capacity, 4096u);
    a.deallocate(q, 30, 8);
    a.deallocate(p, 10, 1);
    s = a.stats();
    EXPECT_EQ(s.deallocations, 2u);
    EXPECT_EQ(s.bytes_in_use, 40u) << "a monotonic arena frees nothing before reset";
    a.reset();
    s = a.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.peak_bytes, 40u);
    EXPECT_EQ(s.allocations, 0u);
    EXPECT_EQ(s.capacity, 4096u) << "reset keeps the first block";
    (void)a.allocate(5, 1);
    EXPECT_EQ(a.stats().bytes_in_use, 5u);
    EXPECT_EQ(a.stats().peak_bytes, 40u);
}

TEST(Arena, UsedCountsPaddingAndRemainingShrinks) {
    arena a;
    auto* first = static_cast<std::byte*>(a.allocate(1, 1));
    const std::size_t rem = a.remaining();
    auto* second = static_cast<std::byte*>(a.allocate(8, 64));
    EXPECT_EQ(a.used(), static_cast<std::size_t>(second + 8 - first));
    EXPECT_EQ(a.remaining(), rem - (a.used() - 1));
}

TEST(Arena, ResetReusesTheFirstBlock) {
    parent_counters c;
    memkit::basic_arena<counting_parent> a{arena_options{.block_size = 1024}, counting_parent{&c}};
    void* first = a.allocate(100, 16);
    for (int i = 0; i < 100; ++i) (void)a.allocate(100, 16);
    EXPECT_GT(a.block_count(), 1u);
    a.reset();
    EXPECT_EQ(a.block_count(), 1u);
    EXPECT_EQ(a.allocate(100, 16), first) << "memory after reset starts at the first block";
    // The first block and at most one spare are kept; everything else went back.
    EXPECT_LE(c.allocations - c.deallocations, 2u);
    a.release();
    EXPECT_EQ(c.allocations, c.deallocations);
    EXPECT_EQ(c.live_bytes, 0u);
    EXPECT_EQ(a.stats().capacity, 0u);
}

TEST(Arena, GeometricGrowthIsCapped) {
    parent_counters c;
    memkit::basic_arena<counting_parent> a{
        arena_options{.block_size = 1024, .growth_factor = 2.0, .max_block_size = 8192},
        counting_parent{&c}};
    for (int i = 0; i < 400; ++i) (void)a.allocate(256, 16);
    // Blocks: 1024, 2048, 4096, 8192, 8192, ...: capacity is their sum.
    std::size_t expected = 0, next = 1024;
    for (std::size_t i = 0; i < a.block_count(); ++i) {
        expected += next;
        next = next * 2 > 8192 ? 8192 : next * 2;
    }
    EXPECT_EQ(a.stats().capacity, expected);
    EXPECT_EQ(c.live_bytes, expected);
}

TEST(Arena, OversizedRequestsGetDedicatedBlocks) {
    parent_counters c;
    memkit::basic_arena<counting_parent> a{arena_options{.block_size = 4096}, counting_parent{&c}};
    void* small1 = a.allocate(16, 16);
    void* big = a.allocate(100000, 64);
    void* small2 = a.allocate(16, 16);
    EXPECT_TRUE(memkit::is_aligned(big, 64));
    // The small requests still come from the first block, one after the other.
    EXPECT_EQ(static_cast<std::byte*>(small2) - static_cast<std::byte*>(small1), 16);
    EXPECT_TRUE(a.owns(big));
    EXPECT_TRUE(a.owns(static_cast<std::byte*>(big) + 99999));
    a.reset();
    EXPECT_FALSE(a.owns(big));
    EXPECT_EQ(c.allocations - c.deallocations, 1u) << "dedicated block returned on reset";
}

TEST(Arena, InitialBufferIsUsedFirstAndNeverFreed) {
    alignas(64) std::array<std::byte, 1024> buf{};
    parent_counters c;
    memkit::basic_arena<counting_parent> a{std::span<std::byte>{buf}, arena_options{},
                                           counting_parent{&c}};
    void* p = a.allocate(64, 16);
    EXPECT_GE(static_cast<std::byte*>(p), buf.data());
    EXPECT_LT(static_cast<std::byte*>(p), buf.data() + buf.size());
    EXPECT_EQ(c.allocations, 0u);
    EXPECT_EQ(a.stats().capacity, 1024u);
    for (int i = 0; i < 40; ++i) (void)a.allocate(64, 16);
    EXPECT_EQ(c.allocations, 1u) << "the arena moved on to the parent when the buffer was full";
    a.reset();
    EXPECT_EQ(a.allocate(64, 16), p) << "reset returns to the caller buffer";
    a.release();
    EXPECT_EQ(c.allocations, c.deallocations);
    EXPECT_EQ(a.allocate(64, 16), p) << "release keeps the caller buffer";
}

TEST(Arena, ScopeRewindsEverything) {
    parent_counters c;
    memkit::basic_arena<counting_parent> a{arena_options{.block_size = 512}, counting_parent{&c}};
    void* before = a.allocate(32, 16);
    const auto s0 = a.stats();
    void* inside_first = nullptr;
    {
        memkit::basic_arena<counting_parent>::scope s{a};
        inside_first = a.allocate(48, 16);
        for (int i = 0; i < 50; ++i) (void)a.allocate(100, 8);  // crosses block boundaries
        (void)a.allocate(10000, 16);                             // a dedicated block
        EXPECT_GT(a.block_count(), 2u);
    }
    EXPECT_EQ(a.stats().bytes_in_use, s0.bytes_in_use);
    EXPECT_EQ(a.stats().allocations, s0.allocations);
    EXPECT_EQ(a.block_count(), 1u);
    EXPECT_EQ(a.allocate(48, 16), inside_first);
    EXPECT_TRUE(a.owns(before));
    // One spare block may be kept for the next growth; no other block stays allocated.
    EXPECT_LE(c.allocations - c.deallocations, 2u);
}

TEST(Arena, RepeatedScopesAcrossABlockBoundaryReuseTheSpare) {
    parent_counters c;
    memkit::basic_arena<counting_parent> a{arena_options{.block_size = 512}, counting_parent{&c}};
    (void)a.allocate(400, 16);
    for (int round = 0; round < 100; ++round) {
        auto s = a.make_scope();
        (void)a.allocate(200, 16);  // does not fit the first block: needs a second one
    }
    EXPECT_LE(c.allocations, 2u) << "the retired block is reused instead of asking the parent";
}

TEST(Arena, NestedMarkers) {
    arena a;
    auto m0 = a.mark();
    void* p1 = a.allocate(100);
    auto m1 = a.mark();
    void* p2 = a.allocate(100);
    a.rewind(m1);
    EXPECT_EQ(a.allocate(100), p2);
    a.rewind(m0);
    EXPECT_EQ(a.allocate(100), p1);
    EXPECT_EQ(a.stats().bytes_in_use, 100u);
}

TEST(Arena, MaxTotalLimitsParentMemory) {
    arena a{arena_options{.block_size = 1024, .max_total = 4096}};
    std::size_t n = 0;
    while (a.try_allocate(100, 8) != nullptr) ++n;
    EXPECT_GT(n, 10u);
    EXPECT_LE(a.stats().capacity, 4096u);
    try {
        (void)a.allocate(100, 8);
        FAIL() << "expected out_of_memory";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 100u);
        EXPECT_EQ(e.capacity(), a.stats().capacity);
        EXPECT_EQ(e.used(), a.stats().bytes_in_use);
        EXPECT_EQ(e.available(), 4096u - a.stats().capacity);
        EXPECT_NE(std::string(e.what()).find("memkit::arena"), std::string::npos);
    }
    // A failed request leaves the arena usable and unchanged.
    const auto s = a.stats();
    EXPECT_EQ(a.try_allocate(1u << 20, 8), nullptr);
    EXPECT_EQ(a.stats(), s);
}

TEST(Arena, ParentFailureIsOutOfMemory) {
    parent_counters c;
    c.fail_after = 1;
    memkit::basic_arena<counting_parent> a{arena_options{.block_size = 1024}, counting_parent{&c}};
    (void)a.allocate(300, 8);  // the first block: the parent's one successful call
    EXPECT_THROW((void)a.allocate(800, 8), memkit::out_of_memory);
    EXPECT_EQ(a.try_allocate(800, 8), nullptr);
    EXPECT_NE(a.try_allocate(100, 8), nullptr) << "the current block still serves small requests";
}

TEST(Arena, BadRequests) {
    arena a;
    EXPECT_THROW((void)a.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)a.allocate(16, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)a.allocate(16, 0), memkit::invalid_alignment);
    EXPECT_THROW((void)a.allocate(16, std::size_t{1} << 17), memkit::invalid_alignment);
    EXPECT_THROW((void)a.allocate(static_cast<std::size_t>(-1)), memkit::bad_size);
    EXPECT_THROW((void)a.allocate(static_cast<std::size_t>(-1) - 100, 64), memkit::bad_size);
    EXPECT_EQ(a.try_allocate(0, 8), nullptr);
    EXPECT_EQ(a.try_allocate(16, 48), nullptr);
    EXPECT_EQ(a.try_allocate(static_cast<std::size_t>(-1), 8), nullptr);
    EXPECT_EQ(a.stats().allocations, 0u) << "bad requests change nothing";
    try {
        (void)a.allocate(16, 24);
    } catch (const memkit::invalid_alignment& e) {
        EXPECT_EQ(e.alignment(), 24u);
        EXPECT_EQ(e.max_alignment(), arena::max_alignment);
    }
    EXPECT_THROW(arena(arena_options{.block_size = 8}), memkit::bad_size);
    EXPECT_THROW(arena(arena_options{.growth_factor = 0.5}), std::invalid_argument);
}

TEST(Arena, DeallocatingAForeignPointerIsAViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    memkit::test::violation_recorder rec;
    arena a;
    (void)a.allocate(16);
    int local = 0;
    a.deallocate(&local, sizeof local);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.last().pointer, &local);
    EXPECT_STREQ(rec.last().allocator, "memkit::arena");
    EXPECT_EQ(a.stats().deallocations, 0u) << "the violating call changes nothing";
}

TEST(Arena, MoveTransfersBlocks) {
    arena a;
    void* p = a.allocate(100);
    memkit::fill_pattern(p, 100, 3);
    arena b{std::move(a)};
    EXPECT_TRUE(b.owns(p));
    EXPECT_FALSE(a.owns(p));  // NOLINT(bugprone-use-after-move): moved-from is empty and usable
    EXPECT_EQ(a.stats().capacity, 0u);
    EXPECT_NE(a.allocate(10), nullptr);
    arena c;
    c = std::move(b);
    EXPECT_TRUE(c.owns(p));
    EXPECT_EQ(memkit::verify_pattern(p, 100, 3), nullptr);
}

TEST(Arena, WorksAsPmrResource) {
    memkit::resource<arena> r;  // owns its arena
    std::pmr::vector<int> v{&r};
    for (int i = 0; i < 1000; ++i) v.push_back(i);
    std::pmr::unordered_map<int, std::pmr::string> m{&r};
    for (int i = 0; i < 500; ++i) m.emplace(i, std::pmr::string(40, static_cast<char>('a' + i % 26)));
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(v[static_cast<std::size_t>(i)], i);
    for (int i = 0; i < 500; ++i)
        ASSERT_EQ(std::string_view(m.at(i)), std::string(40, static_cast<char>('a' + i % 26)));
    EXPECT_GT(r.get().stats().allocations, 500u);
}

TEST(Arena, WorksWithStdAllocator) {
    arena a;
    std::vector<int, memkit::std_allocator<int, arena>> v{a};
    for (int i = 0; i < 10000; ++i) v.push_back(i);
    EXPECT_EQ(v[9999], 9999);
    EXPECT_TRUE(a.owns(v.data()));
    std::map<int, int, std::less<>, memkit::std_allocator<std::pair<const int, int>, arena>> m{a};
    for (int i = 0; i < 100; ++i) m[i] = i * i;
    EXPECT_EQ(m.at(9), 81);
}

TEST(Arena, RandomizedAgainstShadowModel) {
    // 1e6 operations: allocate (random size and alignment), mark, rewind, occasional reset. The
    // shadow holds every live block, its size and pattern; a rewind drops the blocks allocated
    // after its marker. Contents, non-overlap and stats are verified periodically.
    arena a{arena_options{.block_size = 1024, .max_block_size = 65536}};
    std::mt19937_64 rng(12345);
    struct live {
        void* p;
        std::size_t size;
        std::uint8_t seed;
    };
    std::vector<live> blocks;
    std::vector<std::pair<arena::marker, std::size_t>> marks;
    std::size_t bytes = 0;
    // Patterns cover the first 64 bytes of each block to keep 1e6 operations fast.
    auto checked = [](const live& b) { return b.size < 64 ? b.size : std::size_t{64}; };
    auto verify_all = [&] {
        std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
        for (auto& b : blocks) {
            ASSERT_EQ(memkit::verify_pattern(b.p, checked(b), b.seed), nullptr);
            ranges.emplace_back(reinterpret_cast<std::uintptr_t>(b.p), b.size);
        }
        ASSERT_TRUE(memkit::test::no_overlap(ranges));
        ASSERT_EQ(a.stats().bytes_in_use, bytes);
        ASSERT_EQ(a.stats().allocations, blocks.size());
    };
    for (int op = 0; op < 1000000; ++op) {
        const auto r = rng() % 1000;
        if (r >= 990 && r < 995 && marks.size() < 16) {
            marks.emplace_back(a.mark(), blocks.size());
        } else if (r >= 995 && r < 999 && !marks.empty()) {
            auto [m, n] = marks.back();
            marks.pop_back();
            a.rewind(m);
            for (std::size_t i = n; i < blocks.size(); ++i) bytes -= blocks[i].size;
            blocks.resize(n);
        } else if (r == 999) {
            a.reset();
            blocks.clear();
            marks.clear();
            bytes = 0;
        } else {
            const std::size_t size = (rng() % 16 == 0) ? 1 + rng() % 5000 : 1 + rng() % 64;
            const std::size_t align = std::size_t{1} << (rng() % 8);
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            live b{p, size, static_cast<std::uint8_t>(rng())};
            memkit::fill_pattern(p, checked(b), b.seed);
            blocks.push_back(b);
            bytes += size;
        }
        if (op % 50000 == 0) verify_all();
    }
    verify_all();
}

} // namespace
