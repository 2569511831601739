#include "memkit/alloc/buddy.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory_resource>
#include <new>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::buddy_allocator;
using memkit::buddy_options;
using memkit::test::counting_parent;
using memkit::test::violation_recorder;
using counted_buddy = memkit::basic_buddy_allocator<counting_parent>;

static_assert(memkit::allocator<buddy_allocator>);
static_assert(memkit::owning_allocator<buddy_allocator>);
static_assert(memkit::allocator_traits<buddy_allocator>::has_stats);
static_assert(memkit::allocator_traits<buddy_allocator>::has_reset);
static_assert(memkit::allocator_traits<buddy_allocator>::has_max_size);
static_assert(memkit::allocator_traits<buddy_allocator>::has_reallocate);
static_assert(!memkit::allocator_traits<buddy_allocator>::is_thread_safe);
static_assert(memkit::allocator_traits<buddy_allocator>::max_alignment == 4096);
static_assert(std::string_view{buddy_allocator::name} == "memkit::buddy_allocator");
static_assert(
    std::is_same_v<buddy_allocator, memkit::basic_buddy_allocator<memkit::system_allocator>>);
static_assert(!std::is_copy_constructible_v<buddy_allocator>);
static_assert(!std::is_copy_assignable_v<buddy_allocator>);
static_assert(std::is_nothrow_move_constructible_v<buddy_allocator>);
static_assert(std::is_nothrow_move_assignable_v<buddy_allocator>);

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
std::byte* bytes(void* p) { return static_cast<std::byte*>(p); }

// A 4096-aligned buffer for caller-span tests.
template <std::size_t N>
struct alignas(4096) buffer {
    std::array<std::byte, N> data{};
    std::span<std::byte> span() { return std::span<std::byte>{data}; }
};

// --- construction -----------------------------------------------------------------------------

TEST(BuddyAllocator, RegionFromTheParentIsOneTopBlock) {
    counting_parent::counters c;
    {
        counted_buddy b{1 << 16, {}, counting_parent{&c}};
        EXPECT_EQ(b.min_block(), 64u);
        EXPECT_EQ(b.region_size(), 65536u);
        EXPECT_EQ(b.max_size(), 65536u);
        EXPECT_EQ(b.largest_free_block(), 65536u);
        EXPECT_EQ(b.free_bytes(), 65536u);
        EXPECT_EQ(b.allocated_bytes(), 0u);
        EXPECT_EQ(b.supported_alignment(), 4096u);
        EXPECT_EQ(b.internal_fragmentation(), 0.0);
        // One parent call: the blocks plus one side-table byte per min block (1024 of them);
        // posix_memalign aligns as asked, but counting_parent does not say so, so the base is
        // aligned by hand with 4096 - 16 bytes of slack.
        EXPECT_EQ(c.allocations, 1u);
        EXPECT_EQ(c.live_bytes, 65536u + 1024u + (4096u - alignof(std::max_align_t)));
        EXPECT_EQ(b.stats(), (memkit::allocator_stats{0, 0, c.live_bytes, 0, 0}));
        b.validate();
    }
    EXPECT_EQ(c.deallocations, 1u);
    EXPECT_EQ(c.live_bytes, 0u);
}

TEST(BuddyAllocator, RegionSizeIsRoundedDownToMinBlocks) {
    buddy_allocator b{1000, {.min_block = 64}}; // 15 min blocks: 8 + 4 + 2 + 1
    EXPECT_EQ(b.region_size(), 960u);
    EXPECT_EQ(b.max_size(), 512u);
    EXPECT_EQ(b.largest_free_block(), 512u);
    EXPECT_EQ(b.supported_alignment(), 512u) << "no block is larger than 512";
    b.validate();
}

TEST(BuddyAllocator, NonPowerOfTwoRegionIsCoveredByTopLevelBlocks) {
    buffer<7 * 64 + 7> buf; // 7 min blocks and their side-table bytes
    buddy_allocator b{buf.span()};
    ASSERT_EQ(b.region_size(), 7u * 64u);
    EXPECT_EQ(b.max_size(), 256u);
    std::byte* base = buf.data.data();
    // The top-level blocks are 256 at 0, 128 at 256 and 64 at 384: each fits exactly once.
    void* a = b.allocate(256);
    void* c = b.allocate(128);
    void* d = b.allocate(64);
    EXPECT_EQ(a, base);
    EXPECT_EQ(c, base + 256);
    EXPECT_EQ(d, base + 384);
    EXPECT_EQ(b.free_bytes(), 0u);
    EXPECT_EQ(b.largest_free_block(), 0u);
    EXPECT_EQ(b.try_allocate(1), nullptr);
    b.validate();
    // Freed, they never merge across top-level boundaries.
    b.deallocate(c, 128);
    b.deallocate(a, 256);
    b.deallocate(d, 64);
    EXPECT_EQ(b.largest_free_block(), 256u);
    EXPECT_EQ(b.free_bytes(), 448u);
    b.validate();
    EXPECT_EQ(b.allocate(256), base);
    EXPECT_EQ(b.try_allocate(256), nullptr);
}

TEST(BuddyAllocator, CallerSpanHoldsBlocksAndTableAndIsNeverFreed) {
    counting_parent::counters c;
    buffer<65536 + 1024> buf;
    {
        counted_buddy b{buf.span(), {}, counting_parent{&c}};
        EXPECT_EQ(b.region_size(), 65536u);
        EXPECT_EQ(b.max_size(), 65536u);
        EXPECT_EQ(b.stats().capacity, buf.data.size());
        void* p = b.allocate(65536);
        EXPECT_EQ(p, buf.data.data());
        EXPECT_TRUE(b.owns(p));
        b.deallocate(p, 65536);
    }
    EXPECT_EQ(c.allocations, 0u);
    EXPECT_EQ(c.deallocations, 0u);
}

TEST(BuddyAllocator, UnalignedCallerSpanIsAlignedUp) {
    std::vector<std::byte> storage(40000);
    auto* odd = storage.data() + (memkit::align_padding(storage.data(), 16) + 3);
    buddy_allocator b{std::span<std::byte>{odd, 32768}};
    EXPECT_GT(b.region_size(), 16384u);
    EXPECT_LE(b.region_size(), 32768u - (32768u / 65u));
    for (std::size_t align = 1; align <= b.supported_alignment(); align *= 2) {
        void* p = b.allocate(24, align);
        EXPECT_TRUE(memkit::is_aligned(p, align)) << align;
        EXPECT_GE(addr(p), addr(odd));
        EXPECT_LE(addr(p) + 24, addr(odd) + 32768);
    }
    b.validate();
}

TEST(BuddyAllocator, RegionTooSmallForOneBlockIsBadSize) {
    EXPECT_THROW(buddy_allocator{0}, memkit::bad_size);
    EXPECT_THROW(buddy_allocator{63}, memkit::bad_size);
    EXPECT_THROW((buddy_allocator{100, {.min_block = 128}}), memkit::bad_size);
    try {
        buddy_allocator b{63};
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_EQ(e.size(), 63u);
        EXPECT_EQ(e.max_size(), 64u) << "carries the smallest region that works";
        EXPECT_NE(std::string(e.what()).find("memkit::buddy_allocator"), std::string::npos);
    }
    std::array<std::byte, 64> small{}; // one block needs 64 bytes and a side-table byte
    EXPECT_THROW(buddy_allocator{std::span<std::byte>{small}}, memkit::bad_size);
    EXPECT_THROW(buddy_allocator{std::span<std::byte>{}}, memkit::bad_size);
    buddy_allocator ok{63 + 1};
    EXPECT_EQ(ok.region_size(), 64u);
}

TEST(BuddyAllocator, MinBlockMustBeAPowerOfTwoOfAtLeast16) {
    for (std::size_t m :
         {std::size_t{0}, std::size_t{1}, std::size_t{8}, std::size_t{48}, std::size_t{100}})
        EXPECT_THROW((buddy_allocator{4096, {.min_block = m}}), memkit::bad_size) << m;
    buddy_allocator b{4096, {.min_block = 16}};
    EXPECT_EQ(b.block_size_for(1), 16u);
    EXPECT_EQ(b.region_size(), 4096u);
}

TEST(BuddyAllocator, ParentFailurePropagates) {
    counting_parent::counters c;
    c.fail_after = 0;
    EXPECT_THROW((counted_buddy{4096, {}, counting_parent{&c}}), memkit::out_of_memory);
    EXPECT_EQ(c.deallocations, 0u);
}

// --- placement, alignment, contents ------------------------------------------------------------

TEST(BuddyAllocator, RequestsRoundUpToTheirOrder) {
    buddy_allocator b{1 << 16};
    EXPECT_EQ(b.block_size_for(1), 64u);
    EXPECT_EQ(b.block_size_for(64), 64u);
    EXPECT_EQ(b.block_size_for(65), 128u);
    EXPECT_EQ(b.block_size_for(1000), 1024u);
    EXPECT_EQ(b.block_size_for(1024), 1024u);
    EXPECT_EQ(b.block_size_for(1025), 2048u);
    EXPECT_EQ(b.block_size_for(10, 512), 512u) << "alignment rounds up too";
    EXPECT_EQ(b.block_size_for(65536), 65536u);
    EXPECT_EQ(b.block_size_for(65537), 0u);
    EXPECT_EQ(b.block_size_for(0), 0u);
    EXPECT_EQ(b.block_size_for(8, 3), 0u);
}

TEST(BuddyAllocator, SplitsTheSmallestSuitableBlock) {
    buffer<1024 + 16> buf;
    buddy_allocator b{buf.span()};
    std::byte* base = buf.data.data();
    ASSERT_EQ(b.region_size(), 1024u);
    void* a = b.allocate(64);
    EXPECT_EQ(a, base);
    EXPECT_EQ(b.largest_free_block(), 512u); // 512, 256, 128 and 64 are left
    EXPECT_EQ(b.free_bytes(), 960u);
    void* c = b.allocate(64);
    EXPECT_EQ(c, base + 64) << "the buddy of the first block";
    void* d = b.allocate(200);
    EXPECT_EQ(d, base + 256);
    void* e = b.allocate(100);
    EXPECT_EQ(e, base + 128);
    EXPECT_EQ(b.largest_free_block(), 512u);
    void* f = b.allocate(512);
    EXPECT_EQ(f, base + 512);
    EXPECT_EQ(b.largest_free_block(), 0u);
    b.validate();
    b.deallocate(a, 64);
    b.deallocate(c, 64);
    EXPECT_EQ(b.largest_free_block(), 128u) << "a and c merged";
    b.deallocate(e, 100);
    EXPECT_EQ(b.largest_free_block(), 256u);
    b.deallocate(d, 200);
    EXPECT_EQ(b.largest_free_block(), 512u);
    b.deallocate(f, 512);
    EXPECT_EQ(b.largest_free_block(), 1024u);
    b.validate();
}

TEST(BuddyAllocator, AllocatingEveryMinBlockThenFreeingAllGivesOneTopBlock) {
    buddy_allocator b{1 << 16};
    const std::size_t n = b.region_size() / b.min_block();
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < n; ++i) {
        void* p = b.allocate(1 + i % 64);
        blocks.push_back(p);
    }
    EXPECT_EQ(b.free_bytes(), 0u);
    EXPECT_EQ(b.largest_free_block(), 0u);
    EXPECT_EQ(b.try_allocate(1), nullptr);
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (void* p : blocks) ranges.emplace_back(addr(p), 64);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    b.validate();

    std::mt19937 rng(3);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    std::size_t freed = 0;
    for (void* p : blocks) {
        b.deallocate(p, 1); // the size only feeds the statistics
        ++freed;
        if (freed == n / 2) {
            EXPECT_EQ(b.free_bytes(), (n / 2) * 64);
            EXPECT_LT(b.largest_free_block(), b.region_size());
            b.validate();
        }
    }
    EXPECT_EQ(b.largest_free_block(), 65536u);
    EXPECT_EQ(b.free_bytes(), 65536u);
    b.validate();
    void* whole = b.allocate(65536);
    EXPECT_NE(whole, nullptr);
    b.deallocate(whole, 65536);
}

TEST(BuddyAllocator, EveryAlignmentUpTo4096) {
    buddy_allocator b{1 << 20};
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t size :
             {std::size_t{1}, std::size_t{7}, std::size_t{100}, align, std::size_t{5000}}) {
            void* p = b.allocate(size, align);
            EXPECT_TRUE(memkit::is_aligned(p, align)) << "align " << align << " size " << size;
            EXPECT_TRUE(b.owns(p));
            EXPECT_EQ(b.allocated_bytes(), b.block_size_for(size, align));
            memkit::fill_pattern(p, size, static_cast<std::uint8_t>(align));
            EXPECT_EQ(memkit::verify_pattern(p, size, static_cast<std::uint8_t>(align)), nullptr);
            b.deallocate(p, size, align);
            EXPECT_EQ(b.largest_free_block(), 1u << 20);
        }
    }
}

TEST(BuddyAllocator, EveryAlignmentWhenTheParentAlignsLess) {
    // counting_parent advertises only alignof(max_align_t): the base is aligned by hand.
    counted_buddy b{1 << 16, {}, counting_parent{}};
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        std::vector<void*> ps;
        for (int i = 0; i < 4; ++i) {
            void* p = b.allocate(3, align);
            EXPECT_TRUE(memkit::is_aligned(p, align)) << align;
            ps.push_back(p);
        }
        for (void* p : ps) b.deallocate(p, 3, align);
    }
    EXPECT_EQ(b.largest_free_block(), 65536u);
}

TEST(BuddyAllocator, ContentsSurviveOtherAllocationsAndFrees) {
    buddy_allocator b{1 << 18};
    struct block {
        void* p;
        std::size_t size;
        std::uint8_t seed;
    };
    std::vector<block> live;
    std::mt19937 rng(11);
    for (int i = 0; i < 300; ++i) {
        const std::size_t size = 1 + rng() % 2000;
        void* p = b.try_allocate(size, std::size_t{1} << (rng() % 8));
        if (p != nullptr) {
            memkit::fill_pattern(p, size, static_cast<std::uint8_t>(i));
            live.push_back({p, size, static_cast<std::uint8_t>(i)});
        }
        if (!live.empty() && rng() % 3 == 0) {
            const std::size_t k = rng() % live.size();
            ASSERT_EQ(memkit::verify_pattern(live[k].p, live[k].size, live[k].seed), nullptr);
            b.deallocate(live[k].p, live[k].size);
            live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
        }
    }
    for (const block& x : live) EXPECT_EQ(memkit::verify_pattern(x.p, x.size, x.seed), nullptr);
    for (const block& x : live) b.deallocate(x.p, x.size);
    EXPECT_EQ(b.largest_free_block(), 1u << 18);
}

TEST(BuddyAllocator, FreedBlockIsReusedFirst) {
    buddy_allocator b{1 << 14};
    void* keep = b.allocate(64);
    void* a = b.allocate(300);
    b.deallocate(a, 300);
    EXPECT_EQ(b.allocate(257), a);
    EXPECT_NE(keep, a);
}

// --- statistics --------------------------------------------------------------------------------

TEST(BuddyAllocator, StatsAreExact) {
    buddy_allocator b{1 << 16};
    const std::size_t cap = b.stats().capacity;
    void* a = b.allocate(100);
    void* c = b.allocate(64, 32);
    void* d = b.allocate(1000);
    EXPECT_EQ(b.stats(), (memkit::allocator_stats{1164, 1164, cap, 3, 0}));
    EXPECT_EQ(b.allocated_bytes(), 128u + 64u + 1024u);
    EXPECT_EQ(b.free_bytes(), 65536u - 1216u);
    b.deallocate(c, 64, 32);
    EXPECT_EQ(b.stats(), (memkit::allocator_stats{1100, 1164, cap, 3, 1}));
    EXPECT_EQ(b.allocated_bytes(), 1152u);
    b.deallocate(a, 100);
    b.deallocate(d, 1000);
    EXPECT_EQ(b.stats(), (memkit::allocator_stats{0, 1164, cap, 3, 3}));
    EXPECT_EQ(b.allocated_bytes(), 0u);

    // Failed requests change nothing.
    EXPECT_EQ(b.try_allocate(0), nullptr);
    EXPECT_EQ(b.try_allocate(70000), nullptr);
    EXPECT_EQ(b.try_allocate(8, 3), nullptr);
    EXPECT_EQ(b.stats(), (memkit::allocator_stats{0, 1164, cap, 3, 3}));
}

TEST(BuddyAllocator, InternalFragmentationOnCraftedRequests) {
    buddy_allocator b{1 << 16};
    EXPECT_EQ(b.internal_fragmentation(), 0.0);
    void* a = b.allocate(64); // exact fit
    EXPECT_EQ(b.internal_fragmentation(), 0.0);
    void* c = b.allocate(65); // 128-byte block: 63 bytes lost
    EXPECT_EQ(b.allocated_bytes(), 192u);
    EXPECT_DOUBLE_EQ(b.internal_fragmentation(), 1.0 - 129.0 / 192.0);
    void* d = b.allocate(513); // 1024-byte block
    EXPECT_DOUBLE_EQ(b.internal_fragmentation(), 1.0 - 642.0 / 1216.0);
    void* e = b.allocate(1, 4096); // alignment costs a whole 4096-byte block
    EXPECT_EQ(b.allocated_bytes(), 5312u);
    EXPECT_DOUBLE_EQ(b.internal_fragmentation(), 1.0 - 643.0 / 5312.0);
    b.deallocate(e, 1, 4096);
    b.deallocate(d, 513);
    b.deallocate(c, 65);
    EXPECT_EQ(b.internal_fragmentation(), 0.0) << "only an exact fit is left";
    b.deallocate(a, 64);
    EXPECT_EQ(b.internal_fragmentation(), 0.0);

    // Half a block plus one byte: the worst case tends to one half.
    void* w = b.allocate(2049);
    EXPECT_DOUBLE_EQ(b.internal_fragmentation(), 1.0 - 2049.0 / 4096.0);
    b.deallocate(w, 2049);
}

// --- errors -------------------------------------------------------------------------------------

TEST(BuddyAllocator, BadSizeErrors) {
    buddy_allocator b{1 << 16};
    for (std::size_t size : {std::size_t{0}, std::size_t{65537}, SIZE_MAX}) {
        EXPECT_EQ(b.try_allocate(size), nullptr);
        try {
            (void)b.allocate(size);
            FAIL() << "no exception for size " << size;
        } catch (const memkit::bad_size& e) {
            EXPECT_EQ(e.size(), size);
            EXPECT_EQ(e.max_size(), 65536u);
            EXPECT_EQ(e.code(), memkit::errc::bad_size);
            EXPECT_NE(std::string(e.what()).find("memkit::buddy_allocator"), std::string::npos);
        }
    }
    EXPECT_EQ(b.stats().allocations, 0u);
}

TEST(BuddyAllocator, InvalidAlignmentErrors) {
    buddy_allocator b{1 << 16};
    for (std::size_t align : {std::size_t{0}, std::size_t{3}, std::size_t{48}, std::size_t{8192},
                              std::size_t{1} << 40, SIZE_MAX}) {
        EXPECT_EQ(b.try_allocate(8, align), nullptr);
        try {
            (void)b.allocate(8, align);
            FAIL() << "no exception for alignment " << align;
        } catch (const memkit::invalid_alignment& e) {
            EXPECT_EQ(e.alignment(), align);
            EXPECT_EQ(e.max_alignment(), 4096u);
            EXPECT_EQ(e.code(), memkit::errc::invalid_alignment);
        }
    }
    // A small region supports no alignment above its largest block.
    buddy_allocator small{1024};
    EXPECT_EQ(small.supported_alignment(), 1024u);
    EXPECT_THROW((void)small.allocate(8, 2048), memkit::invalid_alignment);
    void* p = small.allocate(8, 1024);
    EXPECT_TRUE(memkit::is_aligned(p, 1024));
    small.deallocate(p, 8, 1024);
}

TEST(BuddyAllocator, ExhaustionThrowsOutOfMemoryWithState) {
    buddy_allocator b{4096};
    void* a = b.allocate(2048);
    void* c = b.allocate(1024);
    EXPECT_EQ(b.try_allocate(2048), nullptr);
    try {
        (void)b.allocate(2000);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 2000u);
        EXPECT_EQ(e.available(), 1024u);
        EXPECT_EQ(e.used(), 3072u);
        EXPECT_EQ(e.capacity(), 4096u);
        EXPECT_STREQ(e.allocator(), "memkit::buddy_allocator");
        EXPECT_EQ(e.code(), memkit::errc::out_of_memory);
    }
    EXPECT_EQ(b.allocate(1024), static_cast<std::byte*>(a) + 3072);
    b.deallocate(c, 1024);
    b.validate();
}

TEST(BuddyAllocator, FreeingAForeignPointerIsReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    buddy_allocator b{1 << 14};
    buddy_allocator other{1 << 14};
    void* a = b.allocate(256);
    void* x = other.allocate(64);
    const auto before = b.stats();
    b.deallocate(x, 64);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.last().pointer, x);
    EXPECT_STREQ(rec.last().allocator, "memkit::buddy_allocator");
    int local = 0;
    b.deallocate(&local, sizeof local);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    b.deallocate(nullptr, 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    b.deallocate(bytes(a) + 64, 64); // inside an allocated block, at a min-block boundary
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    b.deallocate(bytes(a) + 3, 1); // inside, not at a boundary
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.count(), 5);
    EXPECT_EQ(b.stats(), before) << "rejected frees change nothing";
    b.validate();
    b.deallocate(a, 256);
    other.deallocate(x, 64);
    EXPECT_EQ(rec.count(), 5);
}

TEST(BuddyAllocator, DoubleFreeIsDetectedByTheFreeBit) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    buddy_allocator b{1 << 14};
    void* keep = b.allocate(64); // keeps its buddy from merging all the way up
    void* a = b.allocate(64);
    void* c = b.allocate(1000);
    b.deallocate(a, 64); // stays a free 64-byte block: its buddy `keep` is live
    b.deallocate(a, 64);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(rec.last().pointer, a);
    b.deallocate(c, 1000); // stays free at its order: its buddy holds `keep`
    b.deallocate(c, 1000);
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    b.deallocate(keep, 64); // everything merges: `a` is now inside the one free block
    b.deallocate(a, 64);
    EXPECT_EQ(rec.count(), 3);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(b.stats().deallocations, 3u);
    EXPECT_EQ(b.largest_free_block(), 1u << 14);
    b.validate();
}

TEST(BuddyAllocator, ResizeAndReallocateOfABadPointerAreReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    buddy_allocator b{1 << 14};
    void* a = b.allocate(64);
    b.deallocate(a, 64);
    EXPECT_FALSE(b.resize_in_place(a, 64, 32));
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    int local = 0;
    EXPECT_EQ(b.reallocate(&local, 4, 100), nullptr);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(b.stats().allocations, 1u);
}

// --- validate -----------------------------------------------------------------------------------

TEST(BuddyAllocator, ValidateDetectsABrokenFreeList) {
    buddy_allocator b{1 << 14};
    void* keep = b.allocate(64);
    void* a = b.allocate(64);
    void* c = b.allocate(256);
    b.deallocate(a, 64); // a free block whose first word links to the next free block
    b.validate();
    void* saved[2];
    std::memcpy(saved, a, sizeof saved);

    int outside = 0;
    void* bad = &outside;
    std::memcpy(a, &bad, sizeof bad); // a use-after-free write over the link
    try {
        b.validate();
        FAIL() << "no exception";
    } catch (const memkit::corruption_detected& e) {
        EXPECT_EQ(e.code(), memkit::errc::corruption_detected);
        EXPECT_NE(std::string(e.what()).find("memkit::buddy_allocator"), std::string::npos);
    }

    void* inside = bytes(c) + 64; // in the region, but not a free block
    std::memcpy(a, &inside, sizeof inside);
    EXPECT_THROW(b.validate(), memkit::corruption_detected);

    std::memcpy(a, saved, sizeof saved);
    void* self = a; // a back link that points at the block itself
    std::memcpy(bytes(a) + sizeof(void*), &self, sizeof self);
    EXPECT_THROW(b.validate(), memkit::corruption_detected);

    std::memcpy(a, saved, sizeof saved);
    b.validate();
    b.deallocate(c, 256);
    b.deallocate(keep, 64);
    b.validate();
}

TEST(BuddyAllocator, ValidateDetectsABrokenSideTable) {
    buffer<(1 << 12) + 64> buf;
    buddy_allocator b{buf.span()};
    ASSERT_EQ(b.region_size(), 4096u);
    void* a = b.allocate(64);
    b.validate();
    // The side table follows the blocks: one byte per min block. Mark the second min block
    // (the free buddy of `a`) as allocated: its free-list entry no longer matches.
    std::byte* table = buf.data.data() + 4096;
    const std::byte saved = table[1];
    table[1] &= std::byte{0xbf};
    EXPECT_THROW(b.validate(), memkit::corruption_detected);
    table[1] = saved;
    table[5] = std::byte{0x80}; // a block start inside a free 256-byte block
    EXPECT_THROW(b.validate(), memkit::corruption_detected);
    table[5] = std::byte{0};
    b.validate();
    b.deallocate(a, 64);
}

// --- resizing -----------------------------------------------------------------------------------

TEST(BuddyAllocator, ResizeInPlaceWithinTheOrder) {
    buddy_allocator b{1 << 14};
    void* p = b.allocate(100);
    EXPECT_TRUE(b.resize_in_place(p, 100, 128));
    EXPECT_TRUE(b.resize_in_place(p, 128, 65));
    EXPECT_EQ(b.stats().bytes_in_use, 65u);
    EXPECT_EQ(b.allocated_bytes(), 128u);
    EXPECT_FALSE(b.resize_in_place(p, 65, 0));
    EXPECT_FALSE(b.resize_in_place(p, 65, (1 << 14) + 1));
    b.deallocate(p, 65);
}

TEST(BuddyAllocator, ResizeInPlaceShrinksBySplitting) {
    buddy_allocator b{1 << 14};
    void* p = b.allocate(4096);
    memkit::fill_pattern(p, 100, 9);
    EXPECT_EQ(b.free_bytes(), 12288u);
    EXPECT_TRUE(b.resize_in_place(p, 4096, 100));
    EXPECT_EQ(b.allocated_bytes(), 128u);
    EXPECT_EQ(b.free_bytes(), 16384u - 128u);
    EXPECT_EQ(b.stats().bytes_in_use, 100u);
    EXPECT_EQ(memkit::verify_pattern(p, 100, 9), nullptr);
    b.validate();
    // The freed upper halves are usable at once.
    void* q = b.allocate(2048);
    EXPECT_EQ(q, bytes(p) + 2048);
    b.deallocate(q, 2048);
    b.deallocate(p, 100);
    EXPECT_EQ(b.largest_free_block(), 16384u);
}

TEST(BuddyAllocator, ResizeInPlaceGrowsIntoFreeBuddies) {
    buddy_allocator b{1 << 14};
    void* p = b.allocate(64);
    memkit::fill_pattern(p, 64, 4);
    EXPECT_TRUE(b.resize_in_place(p, 64, 1000)); // absorbs the 64, 128, 256 and 512 buddies
    EXPECT_EQ(b.allocated_bytes(), 1024u);
    EXPECT_EQ(b.stats().bytes_in_use, 1000u);
    EXPECT_EQ(memkit::verify_pattern(p, 64, 4), nullptr);
    b.validate();
    void* q = b.allocate(1024);
    EXPECT_EQ(q, bytes(p) + 1024);
    EXPECT_FALSE(b.resize_in_place(p, 1000, 2048)) << "the buddy is allocated";
    EXPECT_FALSE(b.resize_in_place(q, 1024, 2048)) << "an upper half cannot grow in place";
    EXPECT_EQ(b.allocated_bytes(), 2048u);
    b.deallocate(q, 1024);
    EXPECT_TRUE(b.resize_in_place(p, 1000, 16384));
    EXPECT_EQ(b.free_bytes(), 0u);
    b.validate();
    b.deallocate(p, 16384);
    EXPECT_EQ(b.largest_free_block(), 16384u);
}

TEST(BuddyAllocator, ReallocateMovesWhenItMust) {
    buddy_allocator b{1 << 14};
    void* p = b.allocate(100);
    void* blocker = b.allocate(128); // p's buddy: p cannot grow in place
    memkit::fill_pattern(p, 100, 1);
    void* q = b.reallocate(p, 100, 500);
    EXPECT_NE(q, p);
    EXPECT_EQ(memkit::verify_pattern(q, 100, 1), nullptr);
    EXPECT_EQ(b.stats().bytes_in_use, 628u);
    EXPECT_EQ(b.stats().allocations, 3u);
    EXPECT_EQ(b.stats().deallocations, 1u);
    void* r = b.reallocate(q, 500, 20); // shrinks in place
    EXPECT_EQ(r, q);
    EXPECT_EQ(memkit::verify_pattern(r, 20, 1), nullptr);
    EXPECT_EQ(b.stats().bytes_in_use, 148u);
    void* s = b.reallocate(nullptr, 0, 40);
    EXPECT_TRUE(b.owns(s));
    b.deallocate(s, 40);
    b.deallocate(r, 20);
    b.deallocate(blocker, 128);
    EXPECT_EQ(b.largest_free_block(), 16384u);
}

TEST(BuddyAllocator, ReallocateToAStricterAlignmentMoves) {
    buddy_allocator b{1 << 14};
    void* keep = b.allocate(64);
    void* p = b.allocate(100); // the 128-byte block at offset 128
    ASSERT_FALSE(memkit::is_aligned(p, 4096));
    memkit::fill_pattern(p, 100, 8);
    EXPECT_FALSE(b.resize_in_place(p, 100, 100, 4096));
    void* q = b.reallocate(p, 100, 100, 4096);
    EXPECT_TRUE(memkit::is_aligned(q, 4096));
    EXPECT_EQ(memkit::verify_pattern(q, 100, 8), nullptr);
    EXPECT_EQ(b.allocated_bytes(), 64u + 4096u);
    b.deallocate(q, 100, 4096);
    b.deallocate(keep, 64);
    EXPECT_EQ(b.largest_free_block(), 16384u);
    b.validate();
}

TEST(BuddyAllocator, FailedReallocateLeavesTheBlockIntact) {
    buddy_allocator b{4096};
    void* p = b.allocate(1024);
    void* blocker = b.allocate(1024);
    memkit::fill_pattern(p, 1024, 7);
    const auto before = b.stats();
    EXPECT_THROW((void)b.reallocate(p, 1024, 3000), memkit::out_of_memory);
    EXPECT_THROW((void)b.reallocate(p, 1024, 5000), memkit::bad_size);
    EXPECT_THROW((void)b.reallocate(p, 1024, 0), memkit::bad_size);
    EXPECT_EQ(b.stats(), before);
    EXPECT_EQ(memkit::verify_pattern(p, 1024, 7), nullptr);
    b.validate();
    b.deallocate(blocker, 1024);
    b.deallocate(p, 1024);
}

// --- reset and move -----------------------------------------------------------------------------

TEST(BuddyAllocator, ResetFreesEverything) {
    buddy_allocator b{1 << 14};
    void* first = b.allocate(64);
    for (int i = 0; i < 50; ++i) (void)b.allocate(200);
    b.reset();
    EXPECT_EQ(b.largest_free_block(), 16384u);
    EXPECT_EQ(b.allocated_bytes(), 0u);
    const auto s = b.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.allocations, 51u);
    EXPECT_EQ(s.deallocations, 51u);
    EXPECT_EQ(s.peak_bytes, 64u + 50u * 200u);
    b.validate();
    EXPECT_EQ(b.allocate(64), first);
}

TEST(BuddyAllocator, MoveTransfersTheRegion) {
    counting_parent::counters c;
    counted_buddy a{1 << 14, {}, counting_parent{&c}};
    void* p = a.allocate(500);
    memkit::fill_pattern(p, 500, 3);
    const auto s = a.stats();
    counted_buddy b{std::move(a)};
    EXPECT_EQ(b.stats(), s);
    EXPECT_TRUE(b.owns(p));
    EXPECT_FALSE(a.owns(p)); // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(a.max_size(), 0u);
    EXPECT_EQ(a.try_allocate(1), nullptr);
    EXPECT_THROW((void)a.allocate(1), memkit::bad_size);
    EXPECT_EQ(memkit::verify_pattern(p, 500, 3), nullptr);
    b.validate();

    counted_buddy d{4096, {}, counting_parent{&c}};
    EXPECT_EQ(c.allocations, 2u);
    d = std::move(b);
    EXPECT_EQ(c.deallocations, 1u) << "d's own region went back";
    EXPECT_TRUE(d.owns(p));
    d.deallocate(p, 500);
    EXPECT_EQ(d.largest_free_block(), 16384u);
    counted_buddy& alias = d;
    d = std::move(alias);
    EXPECT_EQ(d.region_size(), 16384u);
    a = std::move(d);
    EXPECT_EQ(a.region_size(), 16384u);
}

TEST(BuddyAllocator, OwnsTheWholeRegion) {
    buffer<4096 + 64> buf;
    buddy_allocator b{buf.span()};
    EXPECT_TRUE(b.owns(buf.data.data()));
    EXPECT_TRUE(b.owns(buf.data.data() + 4095));
    EXPECT_FALSE(b.owns(buf.data.data() + 4096)) << "the side table is not a block";
    EXPECT_FALSE(b.owns(nullptr));
    int local = 0;
    EXPECT_FALSE(b.owns(&local));
}

// --- standard containers ------------------------------------------------------------------------

TEST(BuddyAllocator, ServesPmrContainersThroughResource) {
    buddy_allocator b{1 << 20};
    {
        memkit::resource r{b};
        std::pmr::vector<int> v{&r};
        for (int i = 0; i < 10000; ++i) v.push_back(i);
        EXPECT_EQ(v[9999], 9999);
        EXPECT_GE(b.stats().bytes_in_use, 40000u);
        std::pmr::map<int, std::pmr::string> m{&r};
        for (int i = 0; i < 200; ++i) m.emplace(i, std::pmr::string(100, 'x'));
        EXPECT_EQ(m.at(150).size(), 100u);
        b.validate();
    }
    EXPECT_EQ(b.stats().bytes_in_use, 0u);
    EXPECT_EQ(b.largest_free_block(), 1u << 20);
}

TEST(BuddyAllocator, ServesStdContainersThroughStdAllocator) {
    buddy_allocator b{1 << 20};
    {
        std::vector<double, memkit::std_allocator<double, buddy_allocator>> v{b};
        for (int i = 0; i < 5000; ++i) v.push_back(i * 0.5);
        EXPECT_EQ(v[4000], 2000.0);
        EXPECT_EQ(v.get_allocator().max_size(), (1u << 20) / sizeof(double));
        EXPECT_THROW(v.reserve(1 << 20), std::length_error);
        EXPECT_THROW((void)v.get_allocator().allocate(1 << 20), memkit::bad_size);
    }
    EXPECT_EQ(b.stats().bytes_in_use, 0u);
}

// --- randomized ---------------------------------------------------------------------------------

TEST(BuddyAllocator, RandomizedAgainstAShadowModel) {
    buddy_allocator b{1 << 22, {.min_block = 32}};
    std::mt19937_64 rng(0xb0dd1e5);
    struct block {
        void* p;
        std::size_t size;
        std::size_t align;
        std::uint8_t seed;
    };
    std::vector<block> live;
    std::size_t requested = 0;
    std::size_t rounded = 0;
    // Patterns cover the first 32 bytes and up to 32 more at the end: enough to catch
    // overlaps and stray writes without making large blocks slow.
    auto write = [](const block& x) {
        const std::size_t head = std::min<std::size_t>(x.size, 32);
        const std::size_t tail = std::min<std::size_t>(x.size - head, 32);
        memkit::fill_pattern(x.p, head, x.seed);
        memkit::fill_pattern(bytes(x.p) + x.size - tail, tail, static_cast<std::uint8_t>(~x.seed));
    };
    auto intact = [](const block& x) {
        const std::size_t head = std::min<std::size_t>(x.size, 32);
        const std::size_t tail = std::min<std::size_t>(x.size - head, 32);
        return memkit::verify_pattern(x.p, head, x.seed) == nullptr &&
               memkit::verify_pattern(bytes(x.p) + x.size - tail, tail,
                                      static_cast<std::uint8_t>(~x.seed)) == nullptr;
    };
    auto check_all = [&] {
        ASSERT_EQ(b.stats().bytes_in_use, requested);
        ASSERT_EQ(b.allocated_bytes(), rounded);
        ASSERT_EQ(b.stats().allocations - b.stats().deallocations, live.size());
        std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
        for (const block& x : live) {
            ASSERT_TRUE(intact(x));
            ranges.emplace_back(addr(x.p), b.block_size_for(x.size, x.align));
        }
        ASSERT_TRUE(memkit::test::no_overlap(ranges));
        b.validate();
    };
    auto random_size = [&] { // power-of-two-ish: 1 .. 2^e for e in 0..13
        const unsigned e = static_cast<unsigned>(rng() % 14);
        return 1 + static_cast<std::size_t>(rng() % (std::size_t{1} << e));
    };

    constexpr int ops = 1'000'000;
    for (int op = 0; op < ops; ++op) {
        const std::uint64_t r = rng();
        const std::size_t target = ((op >> 16) & 1) ? 1500 : 300;
        const unsigned kind = static_cast<unsigned>(r % 16);
        if (kind < 9 && (live.size() < target || live.empty())) {
            const std::size_t size = random_size();
            const std::size_t align = std::size_t{1} << ((r >> 8) % 13);
            void* p = b.try_allocate(size, align);
            if (p == nullptr) {
                // Refused only when no free block is large enough.
                ASSERT_LT(b.largest_free_block(), b.block_size_for(size, align));
                continue;
            }
            ASSERT_TRUE(memkit::is_aligned(p, align));
            block x{p, size, align, static_cast<std::uint8_t>(r >> 56)};
            write(x);
            live.push_back(x);
            requested += size;
            rounded += b.block_size_for(size, align);
        } else if (kind < 14 && !live.empty()) {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            ASSERT_TRUE(intact(live[i]));
            b.deallocate(live[i].p, live[i].size, live[i].align);
            requested -= live[i].size;
            rounded -= b.block_size_for(live[i].size, live[i].align);
            live[i] = live.back();
            live.pop_back();
        } else if (!live.empty()) {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            block& x = live[i];
            ASSERT_TRUE(intact(x));
            const std::size_t size = random_size();
            void* q = nullptr;
            try {
                q = b.reallocate(x.p, x.size, size, x.align);
            } catch (const memkit::out_of_memory&) {
                ASSERT_TRUE(intact(x));
                continue;
            }
            ASSERT_TRUE(memkit::is_aligned(q, x.align));
            const std::size_t keep = std::min<std::size_t>({x.size, size, 32});
            ASSERT_EQ(memkit::verify_pattern(q, keep, x.seed), nullptr);
            requested = requested - x.size + size;
            rounded = rounded - b.block_size_for(x.size, x.align) + b.block_size_for(size, x.align);
            x.p = q;
            x.size = size;
            write(x);
        }
        if (op % 100'000 == 99'999) {
            check_all();
            if (HasFatalFailure()) return;
        }
    }
    check_all();
    EXPECT_GT(b.stats().allocations, 400'000u) << "the model exercised the allocator";
    for (const block& x : live) b.deallocate(x.p, x.size, x.align);
    EXPECT_EQ(b.largest_free_block(), std::size_t{1} << 22);
    EXPECT_EQ(b.stats().bytes_in_use, 0u);
    b.validate();
}

} // namespace
