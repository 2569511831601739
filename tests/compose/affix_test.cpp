#include "memkit/compose/affix.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <list>
#include <map>
#include <memory_resource>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/pool_collection.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"
#include "support/tracker.hpp"

namespace {

using memkit::affix;
using memkit::system_allocator;

using memkit::test::tracker;

// Guard words with a recognisable value, and objects that count their lifetimes.
struct front_guard {
    std::uint64_t value = 0xF0F0F0F0F0F0F0F0ULL;
};
struct back_guard {
    std::uint32_t value = 0xB00CB00C;
};
struct alignas(32) wide_header {
    std::uint64_t words[5] = {1, 2, 3, 4, 5};
};
struct counted_affix {
    static inline int constructed = 0;
    static inline int destroyed = 0;
    std::uint16_t tag = 0x5a5a;
    counted_affix() noexcept { ++constructed; }
    ~counted_affix() { ++destroyed; }
    counted_affix(const counted_affix&) = delete;
    counted_affix& operator=(const counted_affix&) = delete;
};

using guarded = affix<tracker<>, front_guard, back_guard>;
using prefix_only = affix<system_allocator, front_guard>;
using suffix_only = affix<system_allocator, void, back_guard>;
using wide = affix<tracker<>, wide_header, back_guard>;

static_assert(memkit::allocator<guarded>);
static_assert(memkit::owning_allocator<guarded>);
static_assert(memkit::allocator<prefix_only>);
static_assert(memkit::allocator<suffix_only>);
static_assert(!memkit::owning_allocator<prefix_only>);
static_assert(memkit::allocator_traits<guarded>::has_reset);
static_assert(memkit::allocator_traits<guarded>::has_stats);
static_assert(!memkit::allocator_traits<prefix_only>::has_reset);
static_assert(memkit::allocator_traits<prefix_only>::has_max_size);
static_assert(guarded::max_alignment == 4096);
static_assert(prefix_only::max_alignment == system_allocator::max_alignment);
static_assert(prefix_only::is_thread_safe);
static_assert(!guarded::is_thread_safe);
static_assert(std::string_view{guarded::name} == "memkit::affix");
static_assert(guarded::overhead(16) == 16 + 3 + 4);
static_assert(guarded::overhead(1) == 8 + 3 + 4);
static_assert(guarded::overhead(4096) == 4096 + 3 + 4);
static_assert(suffix_only::overhead(64) == 3 + 4);
static_assert(wide::overhead(8) == 64 + 3 + 4, "the 40-byte header rounds up to its alignment");

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

struct block {
    void* p;
    std::size_t size;
    std::size_t align;
    std::uint8_t seed;
};

TEST(Affix, PlacesThePrefixRightBeforeAndTheSuffixRightAfterTheBlock) {
    guarded a;
    void* p = a.allocate(21, 8);
    front_guard* f = a.prefix(p);
    back_guard* b = a.suffix(p, 21);
    EXPECT_EQ(addr(f) + sizeof(front_guard), addr(p));
    EXPECT_EQ(addr(b), memkit::align_up(addr(p) + 21, alignof(back_guard)));
    EXPECT_TRUE(memkit::is_aligned(b, alignof(back_guard)));
    EXPECT_EQ(f->value, 0xF0F0F0F0F0F0F0F0ULL) << "value-initialised";
    EXPECT_EQ(b->value, 0xB00CB00Cu);
    memkit::fill_bytes(p, 21, 0xEE); // the whole user block
    EXPECT_EQ(f->value, 0xF0F0F0F0F0F0F0F0ULL);
    EXPECT_EQ(b->value, 0xB00CB00Cu);
    a.deallocate(p, 21, 8);
    EXPECT_EQ(a.get().live(), 0u);
}

TEST(Affix, AsksTheAllocatorForTheExactEnlargedBlock) {
    guarded a;
    void* p = a.allocate(100, 64);
    const auto s = a.get().stats();
    // 64 bytes of prefix room (the prefix rounded to the alignment), 100, padding to 4, 4.
    EXPECT_EQ(s.bytes_in_use, 64u + 100u + 0u + 4u);
    EXPECT_TRUE(memkit::is_aligned(p, 64));
    void* q = a.allocate(5, 1);
    EXPECT_EQ(a.get().stats().bytes_in_use, 168u + 8u + 5u + 3u + 4u);
    EXPECT_TRUE(a.stats() == a.get().stats()) << "stats are A's";
    a.deallocate(p, 100, 64);
    a.deallocate(q, 5, 1);
    EXPECT_EQ(a.get().stats().bytes_in_use, 0u);
}

TEST(Affix, ConstructsOnAllocateAndDestroysOnDeallocate) {
    counted_affix::constructed = counted_affix::destroyed = 0;
    {
        affix<system_allocator, counted_affix, counted_affix> a;
        void* p = a.allocate(10);
        void* q = a.try_allocate(20, 32);
        EXPECT_EQ(counted_affix::constructed, 4);
        EXPECT_EQ(counted_affix::destroyed, 0);
        EXPECT_EQ(a.prefix(q)->tag, 0x5a5a);
        EXPECT_EQ(a.suffix(q, 20)->tag, 0x5a5a);
        a.deallocate(p, 10);
        EXPECT_EQ(counted_affix::destroyed, 2);
        a.deallocate(q, 20, 32);
        EXPECT_EQ(counted_affix::destroyed, 4);
        EXPECT_EQ(a.try_allocate(0), nullptr);
        EXPECT_EQ(counted_affix::constructed, 4) << "a refused request constructs nothing";
    }
}

TEST(Affix, EveryAlignmentKeepsTheBlockAlignedAndTheAffixesIntact) {
    for (auto run : {0, 1}) {
        guarded a;
        wide w;
        std::vector<block> live;
        std::uint8_t seed = 0;
        for (std::size_t align = 1; align <= 4096; align *= 2) {
            for (std::size_t size : {1u, 3u, 8u, 63u, 64u, 65u, 1000u}) {
                void* p = run == 0 ? a.allocate(size, align) : w.allocate(size, align);
                ASSERT_TRUE(memkit::is_aligned(p, align)) << size << " @" << align;
                if (run == 1) {
                    ASSERT_TRUE(memkit::is_aligned(w.prefix(p), 32));
                }
                memkit::fill_pattern(p, size, ++seed);
                live.push_back({p, size, align, seed});
            }
        }
        std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
        for (const block& b : live) {
            // The user block with its affixes: none may overlap another block.
            const std::uintptr_t front =
                run == 0 ? addr(a.prefix(b.p)) : addr(w.prefix(b.p));
            const std::uintptr_t back =
                run == 0 ? addr(a.suffix(b.p, b.size)) : addr(w.suffix(b.p, b.size));
            ranges.emplace_back(front, back + sizeof(back_guard) - front);
        }
        EXPECT_TRUE(memkit::test::no_overlap(ranges));
        for (const block& b : live) {
            EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
            if (run == 0) {
                EXPECT_EQ(a.prefix(b.p)->value, 0xF0F0F0F0F0F0F0F0ULL);
                EXPECT_EQ(a.suffix(b.p, b.size)->value, 0xB00CB00Cu);
                a.deallocate(b.p, b.size, b.align);
            } else {
                EXPECT_EQ(w.prefix(b.p)->words[4], 5u);
                EXPECT_EQ(w.suffix(b.p, b.size)->value, 0xB00CB00Cu);
                w.deallocate(b.p, b.size, b.align);
            }
        }
        EXPECT_EQ(a.get().live() + w.get().live(), 0u);
    }
}

TEST(Affix, OwnsTheBlocksItHandedOut) {
    affix<memkit::pool, front_guard> pooled{std::in_place, 256, 64};
    affix<memkit::arena, front_guard, back_guard> bumped;
    std::vector<std::pair<void*, std::size_t>> v;
    for (std::size_t align = 1; align <= 64; align *= 2) {
        void* p = pooled.allocate(100, align);
        EXPECT_TRUE(pooled.owns(p)) << align;
        auto* front = static_cast<std::byte*>(static_cast<void*>(pooled.prefix(p)));
        EXPECT_TRUE(pooled.get().owns(front - (align <= 8 ? 0 : align - 8)))
            << "the pool's block starts a whole alignment before the user's";
        v.emplace_back(p, align);
        void* q = bumped.allocate(100, align);
        EXPECT_TRUE(bumped.owns(q)) << align;
    }
    int local = 0;
    EXPECT_FALSE(pooled.owns(&local));
    EXPECT_FALSE(bumped.owns(&local));
    for (auto [p, align] : v) pooled.deallocate(p, 100, align);
}

TEST(Affix, ErrorsCarryTheRightNameAndType) {
    guarded a{tracker<>{1000}};
    EXPECT_THROW((void)a.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)a.allocate(8, 3), memkit::invalid_alignment);
    try {
        (void)a.allocate(8, 8192);
        FAIL() << "no exception";
    } catch (const memkit::invalid_alignment& e) {
        EXPECT_NE(std::string(e.what()).find("memkit::affix"), std::string::npos);
        EXPECT_EQ(e.max_alignment(), 4096u);
    }
    try {
        (void)a.allocate(std::numeric_limits<std::size_t>::max() - 4);
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_NE(std::string(e.what()).find("memkit::affix"), std::string::npos)
            << "the total overflows";
        EXPECT_EQ(e.max_size(), a.max_size());
    }
    try {
        (void)a.allocate(990);
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_NE(std::string(e.what()).find("test::tracker"), std::string::npos)
            << "the enlarged request exceeds A's limit";
    }
    EXPECT_EQ(a.max_size(), 1000u - (16u + 3u + 4u));
    void* p = a.allocate(a.max_size());
    a.deallocate(p, a.max_size());
    EXPECT_EQ(a.try_allocate(0), nullptr);
    EXPECT_EQ(a.try_allocate(8, 3), nullptr);
    EXPECT_EQ(a.try_allocate(std::numeric_limits<std::size_t>::max()), nullptr);
    EXPECT_EQ(a.get().live(), 0u);
}

TEST(Affix, OverAlignedRequestsNeedRoomInASizeLimitedAllocator) {
    // The prefix takes a whole alignment in front: 4 bytes at 512 ask the collection for 520.
    affix<memkit::pool_collection, front_guard, back_guard> strict{
        std::in_place, memkit::pool_collection_options{.max_class = 512}};
    EXPECT_EQ(strict.overhead(512), 512u + 3u + 4u);
    EXPECT_THROW((void)strict.allocate(4, 512), memkit::bad_size);
    EXPECT_EQ(strict.try_allocate(4, 512), nullptr);
    void* small = strict.allocate(4, 256); // 256 + 4 + 4 fits the 512 class
    strict.deallocate(small, 4, 256);
    affix<memkit::pool_collection, front_guard, back_guard> roomy{
        std::in_place, memkit::pool_collection_options{.max_class = 512,
                                                       .large = memkit::large_policy::parent}};
    void* p = roomy.allocate(4, 512);
    EXPECT_TRUE(memkit::is_aligned(p, 512));
    EXPECT_EQ(roomy.get().direct_count(), 1u) << "served by the collection's parent";
    roomy.deallocate(p, 4, 512);
    EXPECT_EQ(roomy.get().direct_count(), 0u);
}

TEST(Affix, ResetForwardsToTheAllocator) {
    guarded a;
    (void)a.allocate(10);
    (void)a.allocate(20);
    a.reset();
    EXPECT_EQ(a.get().live(), 0u);
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
}

TEST(Affix, RandomizedAgainstAShadowModel) {
    affix<memkit::pool_collection, front_guard, back_guard> a{
        std::in_place, memkit::pool_collection_options{.max_class = 1024}};
    std::mt19937_64 rng(0x61666678);
    std::vector<block> live;
    auto check_block = [&](const block& b) {
        ASSERT_EQ(a.prefix(b.p)->value, 0xF0F0F0F0F0F0F0F0ULL);
        ASSERT_EQ(a.suffix(b.p, b.size)->value, 0xB00CB00Cu);
        ASSERT_EQ(memkit::verify_pattern(b.p, std::min<std::size_t>(b.size, 48), b.seed), nullptr);
    };
    auto check_all = [&] {
        ASSERT_EQ(a.stats().allocations - a.stats().deallocations, live.size());
        std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
        for (const block& b : live) {
            check_block(b);
            const std::uintptr_t front = addr(a.prefix(b.p));
            ranges.emplace_back(front, addr(a.suffix(b.p, b.size)) + sizeof(back_guard) - front);
        }
        ASSERT_TRUE(memkit::test::no_overlap(ranges));
    };
    for (int op = 0; op < 1'000'000; ++op) {
        const std::uint64_t r = rng();
        const std::size_t target = ((op >> 16) & 1) ? 1500 : 400;
        if (live.empty() || (r % (2 * target)) >= live.size()) {
            const std::size_t align = std::size_t{1} << ((r >> 34) % 7);
            const std::size_t size = 1 + (r >> 8) % (1000 - a.overhead(align));
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            const auto seed = static_cast<std::uint8_t>(r >> 56);
            memkit::fill_pattern(p, size, seed); // all of it: the affixes must survive
            live.push_back({p, size, align, seed});
        } else {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            const block b = live[i];
            check_block(b);
            if (HasFatalFailure()) return;
            a.deallocate(b.p, b.size, b.align);
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

TEST(Affix, ServesPmrContainersThroughResource) {
    guarded a;
    {
        memkit::resource r{a};
        std::pmr::vector<std::pmr::string> v{&r};
        for (int i = 0; i < 300; ++i) v.emplace_back(static_cast<std::size_t>(i), 'z');
        std::pmr::map<int, int> m{&r};
        for (int i = 0; i < 100; ++i) m.emplace(i, i);
        EXPECT_EQ(v[299].size(), 299u);
        EXPECT_EQ(m.at(42), 42);
    }
    EXPECT_EQ(a.get().live(), 0u);
}

TEST(Affix, ServesStdContainersThroughStdAllocator) {
    suffix_only a;
    {
        std::list<int, memkit::std_allocator<int, suffix_only>> l{a};
        for (int i = 0; i < 100; ++i) l.push_back(i);
        int sum = 0;
        for (int x : l) sum += x;
        EXPECT_EQ(sum, 4950);
    }
}

} // namespace
