#include "memkit/alloc/stack.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/traits.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::stack_allocator;
using memkit::test::violation_recorder;

constexpr std::size_t header = sizeof(void*);

static_assert(memkit::allocator<stack_allocator>);
static_assert(memkit::owning_allocator<stack_allocator>);
static_assert(memkit::allocator_traits<stack_allocator>::has_owns);
static_assert(memkit::allocator_traits<stack_allocator>::has_reset);
static_assert(memkit::allocator_traits<stack_allocator>::has_stats);
static_assert(memkit::allocator_traits<stack_allocator>::has_max_size);
static_assert(!memkit::allocator_traits<stack_allocator>::is_thread_safe);
static_assert(memkit::allocator_traits<stack_allocator>::max_alignment == 4096);
static_assert(std::string_view{stack_allocator::name} == "memkit::stack_allocator");
static_assert(!std::is_copy_constructible_v<stack_allocator>);
static_assert(!std::is_copy_assignable_v<stack_allocator>);
static_assert(std::is_nothrow_move_constructible_v<stack_allocator>);
static_assert(std::is_nothrow_move_assignable_v<stack_allocator>);
static_assert(
    std::is_same_v<stack_allocator, memkit::basic_stack_allocator<memkit::system_allocator>>);
static_assert(std::is_nothrow_copy_constructible_v<stack_allocator::marker>);

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

TEST(StackAllocator, ConstructionFromParent) {
    stack_allocator s{4096};
    EXPECT_EQ(s.capacity(), 4096u);
    EXPECT_EQ(s.used(), 0u);
    EXPECT_EQ(s.remaining(), 4096u);
    EXPECT_EQ(s.max_size(), 4096u - header);
    const memkit::allocator_stats expected{0, 0, 4096, 0, 0};
    EXPECT_EQ(s.stats(), expected);
}

TEST(StackAllocator, ParentBufferIsTakenOnceAndReturnedOnce) {
    memkit::test::counting_parent::counters c;
    {
        memkit::basic_stack_allocator<memkit::test::counting_parent> s{
            1000, memkit::test::counting_parent{&c}};
        EXPECT_EQ(c.allocations, 1u);
        EXPECT_EQ(c.live_bytes, 1000u);
        for (int i = 0; i < 10; ++i) (void)s.allocate(16);
        s.reset();
        EXPECT_EQ(c.allocations, 1u);
        EXPECT_EQ(c.deallocations, 0u);
    }
    EXPECT_EQ(c.deallocations, 1u);
    EXPECT_EQ(c.live_bytes, 0u);
}

TEST(StackAllocator, ZeroCapacityThrowsBadSize) {
    EXPECT_THROW(stack_allocator{0}, memkit::bad_size);
    try {
        stack_allocator s{0};
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_EQ(e.size(), 0u);
        EXPECT_NE(std::string(e.what()).find("memkit::stack_allocator"), std::string::npos);
    }
}

TEST(StackAllocator, ParentFailurePropagates) {
    memkit::test::counting_parent::counters c;
    c.fail_after = 0;
    using stack = memkit::basic_stack_allocator<memkit::test::counting_parent>;
    EXPECT_THROW(stack(128, memkit::test::counting_parent{&c}), memkit::out_of_memory);
    EXPECT_EQ(c.deallocations, 0u);
}

TEST(StackAllocator, CallerBufferIsUsedAndNeverFreed) {
    memkit::test::counting_parent::counters c;
    alignas(64) std::array<std::byte, 512> buf{};
    {
        memkit::basic_stack_allocator<memkit::test::counting_parent> s{
            std::span<std::byte>{buf}, memkit::test::counting_parent{&c}};
        EXPECT_EQ(s.capacity(), 512u);
        void* p = s.allocate(100, 8);
        EXPECT_TRUE(addr(p) >= addr(buf.data()) && addr(p) + 100 <= addr(buf.data() + buf.size()));
        EXPECT_TRUE(s.owns(p));
        EXPECT_EQ(p, buf.data() + header); // first block right after its header
        s.deallocate(p, 100, 8);
    }
    EXPECT_EQ(c.allocations, 0u);
    EXPECT_EQ(c.deallocations, 0u);

    stack_allocator plain{std::span<std::byte>{buf}};
    EXPECT_EQ(plain.capacity(), 512u);
}

TEST(StackAllocator, EmptyCallerBuffer) {
    stack_allocator s{std::span<std::byte>{}};
    EXPECT_EQ(s.capacity(), 0u);
    EXPECT_EQ(s.max_size(), 0u);
    EXPECT_EQ(s.try_allocate(1, 1), nullptr);
    EXPECT_THROW((void)s.allocate(1, 1), memkit::bad_size);
}

TEST(StackAllocator, EveryAlignmentUpTo4096) {
    stack_allocator s{1 << 20};
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t size : {std::size_t{1}, std::size_t{7}, std::size_t{100}, align}) {
            void* p = s.allocate(size, align);
            ASSERT_NE(p, nullptr);
            EXPECT_TRUE(memkit::is_aligned(p, align)) << "align " << align << " size " << size;
            EXPECT_TRUE(s.owns(p));
            memkit::fill_pattern(p, size, static_cast<std::uint8_t>(align));
            EXPECT_EQ(memkit::verify_pattern(p, size, static_cast<std::uint8_t>(align)), nullptr);
            s.deallocate(p, size, align);
            EXPECT_EQ(s.used(), 0u);
        }
    }
}

TEST(StackAllocator, EveryAlignmentFromAnUnalignedCallerBuffer) {
    std::vector<std::byte> storage(3 * 4096 + 64);
    // Start the buffer at an odd address so that nothing depends on the buffer's own alignment.
    auto* odd = storage.data() + (memkit::align_padding(storage.data(), 8) + 3);
    stack_allocator s{std::span<std::byte>{odd, 3 * 4096}};
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        void* p = s.allocate(3, align);
        EXPECT_TRUE(memkit::is_aligned(p, align));
        EXPECT_GE(addr(p), addr(odd) + header);
        s.deallocate(p, 3, align);
    }
}

TEST(StackAllocator, PlacementIsExact) {
    alignas(4096) static std::array<std::byte, 8192> buf;
    stack_allocator s{std::span<std::byte>{buf}};
    void* a = s.allocate(1, 1);
    EXPECT_EQ(a, buf.data() + header);
    EXPECT_EQ(s.used(), header + 1);
    void* b = s.allocate(10, 8);
    EXPECT_EQ(b, buf.data() + 24); // the header goes at [9, 17), the block at the next 8
    void* c = s.allocate(5, 64);
    EXPECT_EQ(c, buf.data() + 64);
    EXPECT_EQ(s.used(), 69u);
    EXPECT_EQ(s.remaining(), 8192u - 69u);
    s.deallocate(c, 5, 64);
    EXPECT_EQ(s.used(), 34u);
    s.deallocate(b, 10, 8);
    EXPECT_EQ(s.used(), 9u);
}

TEST(StackAllocator, LiveBlocksDoNotOverlapAndStayInside) {
    stack_allocator s{1 << 18};
    std::mt19937 rng{7};
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    std::vector<std::pair<void*, std::size_t>> blocks;
    for (int i = 0; i < 500; ++i) {
        const std::size_t size = 1 + rng() % 300;
        const std::size_t align = std::size_t{1} << (rng() % 8);
        void* p = s.try_allocate(size, align);
        if (p == nullptr) break;
        // The header before every block is part of its footprint.
        ranges.emplace_back(addr(p) - header, size + header);
        blocks.emplace_back(p, size);
        EXPECT_TRUE(s.owns(p));
        EXPECT_TRUE(s.owns(static_cast<std::byte*>(p) + size - 1));
    }
    EXPECT_GT(blocks.size(), 100u);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it)
        s.deallocate(it->first, it->second, 1);
    EXPECT_EQ(s.used(), 0u);
}

TEST(StackAllocator, ContentsSurviveOtherAllocationsAndFrees) {
    stack_allocator s{1 << 16};
    struct block {
        void* p;
        std::size_t size;
        std::uint8_t seed;
    };
    std::vector<block> live;
    for (int i = 0; i < 50; ++i) {
        const std::size_t size = 1 + static_cast<std::size_t>(i) * 13;
        void* p = s.allocate(size, std::size_t{1} << (i % 7));
        memkit::fill_pattern(p, size, static_cast<std::uint8_t>(i));
        live.push_back({p, size, static_cast<std::uint8_t>(i)});
        // Push and pop a few scratch blocks on top; they must not disturb anything below.
        for (int j = 0; j < 3; ++j) {
            void* t = s.allocate(64, 32);
            std::memset(t, 0xEE, 64);
            s.deallocate(t, 64, 32);
        }
    }
    for (const block& b : live) EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
    while (!live.empty()) {
        const block b = live.back();
        live.pop_back();
        EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
        s.deallocate(b.p, b.size, 1);
        for (const block& o : live) ASSERT_EQ(memkit::verify_pattern(o.p, o.size, o.seed), nullptr);
    }
}

TEST(StackAllocator, FreedTopIsHandedOutAgainWithoutPaddingLeak) {
    stack_allocator s{1 << 16};
    void* base = s.allocate(3, 1);
    const std::size_t used_before = s.used();
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        void* p = s.allocate(17, align);
        EXPECT_GT(s.used(), used_before);
        s.deallocate(p, 17, align);
        EXPECT_EQ(s.used(), used_before) << "padding leaked for align " << align;
        EXPECT_EQ(s.allocate(17, align), p);
        s.deallocate(p, 17, align);
    }
    s.deallocate(base, 3, 1);
    EXPECT_EQ(s.used(), 0u);
    EXPECT_EQ(s.allocate(3, 1), base);
}

TEST(StackAllocator, StatsAreExact) {
    stack_allocator s{8192};
    void* a = s.allocate(100);
    void* b = s.allocate(50, 64);
    void* c = s.allocate(7, 1);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{157, 157, 8192, 3, 0}));
    s.deallocate(c, 7, 1);
    s.deallocate(b, 50, 64);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{100, 157, 8192, 3, 2}));
    void* d = s.allocate(10);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{110, 157, 8192, 4, 2}));
    s.deallocate(d, 10);
    s.deallocate(a, 100);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{0, 157, 8192, 4, 4}));

    // Failed requests change nothing.
    EXPECT_EQ(s.try_allocate(9000), nullptr);
    EXPECT_EQ(s.try_allocate(0), nullptr);
    EXPECT_EQ(s.try_allocate(8, 3), nullptr);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{0, 157, 8192, 4, 4}));
    EXPECT_EQ(s.used(), 0u);
}

TEST(StackAllocator, StatsExactAfterUnwindAndReset) {
    stack_allocator s{8192};
    (void)s.allocate(10);
    const auto m = s.mark();
    (void)s.allocate(20);
    (void)s.allocate(30, 128);
    (void)s.allocate(40);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{100, 100, 8192, 4, 0}));
    s.unwind(m);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{10, 100, 8192, 4, 3}));
    (void)s.allocate(5);
    (void)s.allocate(6);
    s.reset();
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{0, 100, 8192, 6, 6}));
    EXPECT_EQ(s.used(), 0u);
    (void)s.allocate(12);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{12, 100, 8192, 7, 6}));
}

TEST(StackAllocator, MarkersAndUnwind) {
    stack_allocator s{1 << 14};
    const auto empty = s.mark();
    void* a = s.allocate(64, 16);
    const auto m1 = s.mark();
    const std::size_t used1 = s.used();
    void* b = s.allocate(100, 256);
    const auto m2 = s.mark();
    const std::size_t used2 = s.used();
    void* c = s.allocate(1, 1);
    EXPECT_EQ(s.mark(), s.mark());
    EXPECT_FALSE(m1 == m2);

    s.unwind(m2);
    EXPECT_EQ(s.used(), used2);
    EXPECT_EQ(s.allocate(1, 1), c); // the unwound space is handed out again
    s.unwind(m2);
    s.unwind(m2); // unwinding to the current top is a no-op
    EXPECT_EQ(s.used(), used2);
    EXPECT_EQ(s.mark(), m2);
    s.unwind(m1);
    EXPECT_EQ(s.used(), used1);
    EXPECT_EQ(s.allocate(100, 256), b);
    s.deallocate(b, 100, 256); // plain frees and markers mix
    EXPECT_EQ(s.mark(), m1);
    s.unwind(empty);
    EXPECT_EQ(s.used(), 0u);
    EXPECT_EQ(s.allocate(64, 16), a);
}

TEST(StackAllocator, ResetFreesEverything) {
    stack_allocator s{4096};
    void* first = s.allocate(32);
    for (int i = 0; i < 20; ++i) (void)s.allocate(64);
    EXPECT_EQ(s.try_allocate(4000), nullptr);
    s.reset();
    EXPECT_EQ(s.used(), 0u);
    EXPECT_EQ(s.remaining(), 4096u);
    EXPECT_EQ(s.allocate(32), first);
    void* big = s.try_allocate(4000);
    EXPECT_NE(big, nullptr);
}

TEST(StackAllocator, OwnsOnlyItsBuffer) {
    stack_allocator s{1024};
    void* p = s.allocate(16, 1);
    stack_allocator other{1024};
    void* q = other.allocate(16);
    EXPECT_TRUE(s.owns(p));
    EXPECT_FALSE(s.owns(q));
    EXPECT_FALSE(s.owns(nullptr));
    int local = 0;
    EXPECT_FALSE(s.owns(&local));
    // The whole buffer counts, live or not; one past the end does not.
    const auto* begin = static_cast<const std::byte*>(p) - header;
    EXPECT_TRUE(s.owns(begin));
    EXPECT_TRUE(s.owns(begin + 1023));
    EXPECT_FALSE(s.owns(begin + 1024));
}

TEST(StackAllocator, BadSizeErrors) {
    stack_allocator s{1024};
    (void)s.allocate(10);
    const auto before = s.stats();
    for (std::size_t size : {std::size_t{0}, s.max_size() + 1, s.capacity(), SIZE_MAX}) {
        EXPECT_EQ(s.try_allocate(size), nullptr);
        try {
            (void)s.allocate(size);
            FAIL() << "no exception for size " << size;
        } catch (const memkit::bad_size& e) {
            EXPECT_EQ(e.size(), size);
            EXPECT_EQ(e.max_size(), s.max_size());
            EXPECT_EQ(e.code(), memkit::errc::bad_size);
            EXPECT_NE(std::string(e.what()).find("memkit::stack_allocator"), std::string::npos);
        }
    }
    EXPECT_EQ(s.stats(), before);
    // A size of exactly max_size() fits an empty stack.
    stack_allocator t{1024};
    void* p = t.allocate(t.max_size(), 1);
    EXPECT_EQ(t.remaining(), 0u);
    t.deallocate(p, t.max_size(), 1);
}

TEST(StackAllocator, InvalidAlignmentErrors) {
    stack_allocator s{1 << 16};
    for (std::size_t align : {std::size_t{0}, std::size_t{3}, std::size_t{12}, std::size_t{8192},
                              std::size_t{1} << 40, SIZE_MAX}) {
        EXPECT_EQ(s.try_allocate(8, align), nullptr);
        try {
            (void)s.allocate(8, align);
            FAIL() << "no exception for alignment " << align;
        } catch (const memkit::invalid_alignment& e) {
            EXPECT_EQ(e.alignment(), align);
            EXPECT_EQ(e.max_alignment(), 4096u);
            EXPECT_EQ(e.code(), memkit::errc::invalid_alignment);
            EXPECT_NE(std::string(e.what()).find("memkit::stack_allocator"), std::string::npos);
        }
    }
    EXPECT_EQ(s.used(), 0u);
    EXPECT_EQ(s.stats().allocations, 0u);
}

TEST(StackAllocator, ExhaustionThrowsOutOfMemoryWithState) {
    stack_allocator s{1024};
    (void)s.allocate(500, 1);
    const std::size_t used = s.used();
    EXPECT_EQ(used, header + 500);
    EXPECT_EQ(s.try_allocate(600), nullptr);
    try {
        (void)s.allocate(600);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 600u);
        EXPECT_EQ(e.available(), 1024u - used);
        EXPECT_EQ(e.used(), used);
        EXPECT_EQ(e.capacity(), 1024u);
        EXPECT_STREQ(e.allocator(), "memkit::stack_allocator");
        EXPECT_EQ(e.code(), memkit::errc::out_of_memory);
        const std::string what = e.what();
        EXPECT_NE(what.find("memkit::stack_allocator"), std::string::npos);
        EXPECT_NE(what.find("600"), std::string::npos);
    }
    // out_of_memory is a std::bad_alloc.
    EXPECT_THROW((void)s.allocate(600), std::bad_alloc);
    EXPECT_EQ(s.used(), used);

    // Padding can be what does not fit: the remaining bytes suffice only without alignment.
    const std::size_t rest = s.remaining() - header;
    EXPECT_EQ(s.try_allocate(rest, 4096), nullptr);
    EXPECT_THROW((void)s.allocate(rest, 4096), memkit::out_of_memory);
    void* last = s.allocate(rest, 1);
    EXPECT_EQ(s.remaining(), 0u);
    EXPECT_THROW((void)s.allocate(1, 1), memkit::out_of_memory);
    s.deallocate(last, rest, 1);
    EXPECT_EQ(s.used(), used);
}

TEST(StackAllocatorViolation, NonTopFreeIsLifoViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    stack_allocator s{4096};
    void* a = s.allocate(16);
    void* b = s.allocate(32);
    const auto before = s.stats();
    const std::size_t used = s.used();
    violation_recorder rec;
    s.deallocate(a, 16);
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::lifo_violation);
    EXPECT_EQ(violation_recorder::last().pointer, a);
    EXPECT_STREQ(violation_recorder::last().allocator, "memkit::stack_allocator");
    EXPECT_EQ(s.stats(), before);
    EXPECT_EQ(s.used(), used);
    // The top block still frees normally afterwards.
    s.deallocate(b, 32);
    s.deallocate(a, 16);
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(s.used(), 0u);
}

TEST(StackAllocatorViolation, DoubleFreeIsLifoViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    stack_allocator s{4096};
    void* a = s.allocate(16);
    void* b = s.allocate(32);
    s.deallocate(b, 32);
    const std::size_t used = s.used();
    violation_recorder rec;
    s.deallocate(b, 32);
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::lifo_violation);
    EXPECT_EQ(s.used(), used);
    EXPECT_EQ(s.stats().deallocations, 1u);
    s.deallocate(a, 16);
    EXPECT_EQ(s.used(), 0u);
}

TEST(StackAllocatorViolation, ForeignPointerIsNotOwned) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    stack_allocator s{4096};
    stack_allocator other{4096};
    void* mine = s.allocate(16);
    void* theirs = other.allocate(16);
    const auto before = s.stats();
    violation_recorder rec;
    s.deallocate(theirs, 16);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::not_owned);
    EXPECT_EQ(violation_recorder::last().pointer, theirs);
    int local = 0;
    s.deallocate(&local, sizeof local);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::not_owned);
    EXPECT_EQ(violation_recorder::count(), 2);
    EXPECT_EQ(s.stats(), before);
    s.deallocate(mine, 16);
    other.deallocate(theirs, 16);
    EXPECT_EQ(violation_recorder::count(), 2);
}

TEST(StackAllocatorViolation, UnwindAboveTopIsLifoViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    stack_allocator s{4096};
    (void)s.allocate(16);
    const auto low = s.mark();
    (void)s.allocate(100);
    const auto high = s.mark();
    s.unwind(low);
    const auto before = s.stats();
    violation_recorder rec;
    s.unwind(high);
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::lifo_violation);
    EXPECT_EQ(s.stats(), before);
    EXPECT_EQ(s.mark(), low);

    stack_allocator other{4096};
    s.unwind(other.mark());
    EXPECT_EQ(violation_recorder::count(), 2);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::not_owned);
    EXPECT_EQ(s.mark(), low);
}

TEST(StackAllocator, MoveConstructionTransfersTheBuffer) {
    memkit::test::counting_parent::counters c;
    using stack = memkit::basic_stack_allocator<memkit::test::counting_parent>;
    {
        stack a{2048, memkit::test::counting_parent{&c}};
        void* p = a.allocate(100, 64);
        memkit::fill_pattern(p, 100, 9);
        const auto st = a.stats();
        const std::size_t used = a.used();

        stack b{std::move(a)};
        EXPECT_EQ(b.stats(), st);
        EXPECT_EQ(b.used(), used);
        EXPECT_TRUE(b.owns(p));
        EXPECT_EQ(memkit::verify_pattern(p, 100, 9), nullptr);
        b.deallocate(p, 100, 64);
        EXPECT_EQ(b.used(), 0u);

        // The moved-from stack is empty and refuses everything, but stays usable as a value.
        EXPECT_EQ(a.capacity(), 0u); // NOLINT(bugprone-use-after-move)
        EXPECT_EQ(a.used(), 0u);
        EXPECT_FALSE(a.owns(p));
        EXPECT_EQ(a.try_allocate(1), nullptr);
        EXPECT_EQ(a.stats(), memkit::allocator_stats{});
    }
    EXPECT_EQ(c.allocations, 1u);
    EXPECT_EQ(c.deallocations, 1u);
    EXPECT_EQ(c.live_bytes, 0u);
}

TEST(StackAllocator, MoveAssignmentFreesTheOldBuffer) {
    memkit::test::counting_parent::counters c;
    using stack = memkit::basic_stack_allocator<memkit::test::counting_parent>;
    {
        stack a{1000, memkit::test::counting_parent{&c}};
        stack b{3000, memkit::test::counting_parent{&c}};
        void* p = b.allocate(10);
        EXPECT_EQ(c.allocations, 2u);
        a = std::move(b);
        EXPECT_EQ(c.deallocations, 1u);
        EXPECT_EQ(c.live_bytes, 3000u);
        EXPECT_EQ(a.capacity(), 3000u);
        EXPECT_TRUE(a.owns(p));
        EXPECT_EQ(a.stats().bytes_in_use, 10u);
        a.deallocate(p, 10);
        EXPECT_EQ(b.capacity(), 0u); // NOLINT(bugprone-use-after-move)

        auto& self = a;
        a = std::move(self); // self-move keeps the buffer
        EXPECT_EQ(a.capacity(), 3000u);
        EXPECT_EQ(c.deallocations, 1u);
    }
    EXPECT_EQ(c.deallocations, 2u);
    EXPECT_EQ(c.live_bytes, 0u);
}

TEST(StackAllocator, SharedParentThroughAllocatorRef) {
    memkit::test::counting_parent::counters c;
    memkit::test::counting_parent parent{&c};
    using ref = memkit::allocator_ref<memkit::test::counting_parent>;
    {
        memkit::basic_stack_allocator<ref> a{256, ref{parent}};
        memkit::basic_stack_allocator<ref> b{512, ref{parent}};
        EXPECT_EQ(c.allocations, 2u);
        EXPECT_EQ(c.live_bytes, 768u);
        EXPECT_TRUE(a.parent() == b.parent());
    }
    EXPECT_EQ(c.deallocations, 2u);
}

// A million random pushes, pops, marks and unwinds checked against a model of the stack.
TEST(StackAllocator, RandomizedAgainstShadowModel) {
    constexpr std::size_t capacity = 1 << 16;
    std::vector<std::byte> buffer(capacity);
    stack_allocator s{std::span<std::byte>{buffer}};
    const auto base = addr(buffer.data());

    struct block {
        void* p;
        std::size_t size;
        std::size_t align;
        std::size_t used_before;
        std::size_t bytes_before;
        std::uint8_t seed;
    };
    struct saved {
        stack_allocator::marker m;
        std::size_t depth;
        std::size_t used;
    };
    std::vector<block> live;
    std::vector<saved> marks;
    std::size_t bytes = 0, peak = 0;
    std::uint64_t allocs = 0, frees = 0;
    std::mt19937_64 rng{12345};

    for (int op = 0; op < 1'000'000; ++op) {
        const unsigned r = static_cast<unsigned>(rng() % 100);
        if (r < 52) {
            std::size_t size = 1 + rng() % 200;
            if (rng() % 64 == 0) size = 1 + rng() % 6000;
            std::size_t align = std::size_t{1} << (rng() % 7);
            if (rng() % 128 == 0) align = std::size_t{1} << (7 + rng() % 6);
            const std::size_t used = s.used();
            const std::uintptr_t expect = memkit::align_up(base + used + header, align);
            void* p = s.try_allocate(size, align);
            if (expect + size > base + capacity) {
                ASSERT_EQ(p, nullptr);
                ASSERT_EQ(s.used(), used);
                continue;
            }
            ASSERT_EQ(addr(p), expect);
            const auto seed = static_cast<std::uint8_t>(rng());
            memkit::fill_pattern(p, size, seed);
            live.push_back({p, size, align, used, bytes, seed});
            bytes += size;
            peak = std::max(peak, bytes);
            ++allocs;
            ASSERT_EQ(s.used(), expect + size - base);
        } else if (r < 92) {
            if (live.empty()) continue;
            const block b = live.back();
            live.pop_back();
            ASSERT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
            s.deallocate(b.p, b.size, b.align);
            ++frees;
            bytes -= b.size;
            ASSERT_EQ(s.used(), b.used_before);
            while (!marks.empty() && marks.back().depth > live.size()) marks.pop_back();
        } else if (r < 97) {
            marks.push_back({s.mark(), live.size(), s.used()});
        } else {
            if (marks.empty()) continue;
            const std::size_t i = rng() % marks.size();
            const saved m = marks[i];
            s.unwind(m.m);
            frees += live.size() - m.depth;
            if (m.depth < live.size()) bytes = live[m.depth].bytes_before;
            live.resize(m.depth);
            marks.erase(marks.begin() + static_cast<std::ptrdiff_t>(i) + 1, marks.end());
            ASSERT_EQ(s.used(), m.used);
            if (!live.empty()) {
                const block& top = live.back();
                ASSERT_EQ(memkit::verify_pattern(top.p, top.size, top.seed), nullptr);
            }
        }
        if (op % 1024 == 0) {
            ASSERT_EQ(s.stats(), (memkit::allocator_stats{bytes, peak, capacity, allocs, frees}));
        }
    }
    ASSERT_EQ(s.stats(), (memkit::allocator_stats{bytes, peak, capacity, allocs, frees}));
    for (const block& b : live) ASSERT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
    EXPECT_GT(allocs, 400'000u);
}

} // namespace
