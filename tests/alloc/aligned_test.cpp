#include "memkit/alloc/aligned.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/alloc/stack.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/traits.hpp"
#include "support/test_support.hpp"

// Huge requests must come back as nullptr from malloc under the sanitizers too.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

namespace {

using memkit::aligned_allocator;
using memkit::system_allocator;

template <std::size_t N>
using sys_aligned = aligned_allocator<system_allocator, N>;
using cache_aligned = sys_aligned<64>;
using aligned_stack = aligned_allocator<memkit::stack_allocator, 64>;

static_assert(memkit::allocator<cache_aligned>);
static_assert(!memkit::owning_allocator<cache_aligned>);
static_assert(memkit::owning_allocator<aligned_stack>);
static_assert(cache_aligned::is_thread_safe);
static_assert(!aligned_stack::is_thread_safe);
static_assert(cache_aligned::max_alignment == system_allocator::max_alignment);
static_assert(aligned_stack::max_alignment == 4096);
static_assert(cache_aligned::alignment == 64);
static_assert(std::is_empty_v<cache_aligned>);
static_assert(sizeof(aligned_stack) == sizeof(memkit::stack_allocator));
// Optional members appear exactly when the wrapped allocator has them.
static_assert(!memkit::allocator_traits<cache_aligned>::has_owns);
static_assert(!memkit::allocator_traits<cache_aligned>::has_reset);
static_assert(!memkit::allocator_traits<cache_aligned>::has_stats);
static_assert(memkit::allocator_traits<cache_aligned>::has_max_size);
static_assert(memkit::allocator_traits<aligned_stack>::has_owns);
static_assert(memkit::allocator_traits<aligned_stack>::has_reset);
static_assert(memkit::allocator_traits<aligned_stack>::has_stats);
static_assert(memkit::allocator_traits<aligned_stack>::has_max_size);
static_assert(!std::is_copy_constructible_v<aligned_stack>);
static_assert(std::is_nothrow_move_constructible_v<aligned_stack>);
static_assert(std::is_copy_constructible_v<cache_aligned>);

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

template <class T>
class AlignedSystem : public ::testing::Test {};
using alignments = ::testing::Types<
    std::integral_constant<std::size_t, 1>, std::integral_constant<std::size_t, 16>,
    std::integral_constant<std::size_t, 64>, std::integral_constant<std::size_t, 256>,
    std::integral_constant<std::size_t, 4096>>;
TYPED_TEST_SUITE(AlignedSystem, alignments);

TYPED_TEST(AlignedSystem, EveryAlignmentUpTo1MiB) {
    constexpr std::size_t N = TypeParam::value;
    sys_aligned<N> a;
    for (std::size_t align = 1; align <= (std::size_t{1} << 20); align *= 2) {
        for (std::size_t size : {std::size_t{1}, std::size_t{24}, std::size_t{1000}}) {
            void* p = a.allocate(size, align);
            ASSERT_NE(p, nullptr);
            EXPECT_TRUE(memkit::is_aligned(p, align < N ? N : align))
                << "N " << N << " align " << align << " size " << size;
            memkit::fill_pattern(p, size, static_cast<std::uint8_t>(size));
            EXPECT_EQ(memkit::verify_pattern(p, size, static_cast<std::uint8_t>(size)), nullptr);
            a.deallocate(p, size, align);
        }
    }
    // The default alignment is raised too.
    void* p = a.allocate(8);
    EXPECT_TRUE(
        memkit::is_aligned(p, N < alignof(std::max_align_t) ? alignof(std::max_align_t) : N));
    a.deallocate(p, 8);
}

TYPED_TEST(AlignedSystem, LiveBlocksDoNotOverlapAndKeepTheirContents) {
    constexpr std::size_t N = TypeParam::value;
    sys_aligned<N> a;
    std::mt19937 rng{N};
    struct block {
        void* p;
        std::size_t size, align;
        std::uint8_t seed;
    };
    std::vector<block> live;
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (int i = 0; i < 300; ++i) {
        const std::size_t size = 1 + rng() % 500;
        const std::size_t align = std::size_t{1} << (rng() % 10);
        void* p = a.allocate(size, align);
        EXPECT_TRUE(memkit::is_aligned(p, std::max(align, N)));
        const auto seed = static_cast<std::uint8_t>(i);
        memkit::fill_pattern(p, size, seed);
        live.push_back({p, size, align, seed});
        ranges.emplace_back(addr(p), size);
        if (i % 3 == 0) { // free something from the middle to mix frees into the allocations
            const std::size_t k = rng() % live.size();
            EXPECT_EQ(memkit::verify_pattern(live[k].p, live[k].size, live[k].seed), nullptr);
            a.deallocate(live[k].p, live[k].size, live[k].align);
            live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
        }
    }
    ranges.clear();
    for (const block& b : live) ranges.emplace_back(addr(b.p), b.size);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (const block& b : live) {
        EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
        a.deallocate(b.p, b.size, b.align);
    }
}

TYPED_TEST(AlignedSystem, ErrorsComeFromTheWrappedAllocator) {
    constexpr std::size_t N = TypeParam::value;
    sys_aligned<N> a;
    EXPECT_EQ(a.max_size(), system_allocator::max_size());
    // Alignments that are not powers of two are never "raised" into valid ones.
    for (std::size_t align :
         {std::size_t{0}, std::size_t{3}, std::size_t{48}, system_allocator::max_alignment * 2}) {
        EXPECT_EQ(a.try_allocate(8, align), nullptr) << align;
        try {
            (void)a.allocate(8, align);
            FAIL() << "no exception for alignment " << align;
        } catch (const memkit::invalid_alignment& e) {
            EXPECT_EQ(e.alignment(), align);
            EXPECT_EQ(e.max_alignment(), system_allocator::max_alignment);
            EXPECT_NE(std::string(e.what()).find("memkit::system_allocator"), std::string::npos);
        }
    }
    for (std::size_t size : {std::size_t{0}, system_allocator::max_size() + 1, SIZE_MAX}) {
        EXPECT_EQ(a.try_allocate(size), nullptr);
        try {
            (void)a.allocate(size);
            FAIL() << "no exception for size " << size;
        } catch (const memkit::bad_size& e) {
            EXPECT_EQ(e.size(), size);
            EXPECT_EQ(e.max_size(), system_allocator::max_size());
        }
    }
    const std::size_t huge = system_allocator::max_size();
    EXPECT_EQ(a.try_allocate(huge), nullptr);
    try {
        (void)a.allocate(huge);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), huge);
        EXPECT_EQ(e.available(), memkit::out_of_memory::unknown);
        EXPECT_EQ(e.used(), memkit::out_of_memory::unknown);
        EXPECT_EQ(e.capacity(), memkit::out_of_memory::unknown);
        EXPECT_NE(std::string(e.what()).find("memkit::system_allocator"), std::string::npos);
    }
}

TEST(AlignedAllocator, ReuseAfterFreeOverAStack) {
    aligned_stack a{std::in_place, 1 << 16};
    void* keep = a.allocate(3, 1);
    EXPECT_TRUE(memkit::is_aligned(keep, 64));
    const std::size_t used = a.get().used();
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        void* p = a.allocate(100, align);
        EXPECT_TRUE(memkit::is_aligned(p, std::max<std::size_t>(align, 64)));
        // deallocate raises the alignment the same way, so the stack sees a matching pair.
        a.deallocate(p, 100, align);
        EXPECT_EQ(a.get().used(), used);
        EXPECT_EQ(a.allocate(100, align), p);
        a.deallocate(p, 100, align);
    }
    a.deallocate(keep, 3, 1);
    EXPECT_EQ(a.get().used(), 0u);
}

TEST(AlignedAllocator, ForwardsOptionalMembers) {
    aligned_stack a{memkit::stack_allocator{4096}};
    void* p = a.allocate(10);
    void* q = a.allocate(20, 128);
    EXPECT_TRUE(a.owns(p));
    EXPECT_TRUE(a.owns(q));
    int local = 0;
    EXPECT_FALSE(a.owns(&local));
    EXPECT_EQ(a.max_size(), a.get().max_size());
    EXPECT_EQ(a.stats(), (memkit::allocator_stats{30, 30, 4096, 2, 0}));
    a.reset();
    EXPECT_EQ(a.stats(), (memkit::allocator_stats{0, 30, 4096, 2, 2}));
    EXPECT_EQ(a.get().used(), 0u);
    const aligned_stack& ca = a;
    EXPECT_EQ(&ca.get(), &a.get());
}

TEST(AlignedAllocator, OutOfMemoryFromAStackCarriesItsState) {
    aligned_stack a{std::in_place, 256};
    (void)a.allocate(100);
    const std::size_t used = a.get().used();
    try {
        (void)a.allocate(200, 1);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 200u);
        EXPECT_EQ(e.used(), used);
        EXPECT_EQ(e.available(), 256u - used);
        EXPECT_EQ(e.capacity(), 256u);
        EXPECT_NE(std::string(e.what()).find("memkit::stack_allocator"), std::string::npos);
    }
}

TEST(AlignedAllocator, ViolationsOfTheWrappedAllocatorAreReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    aligned_stack a{std::in_place, 4096};
    void* p = a.allocate(16);
    void* q = a.allocate(16);
    memkit::test::violation_recorder rec;
    a.deallocate(p, 16);
    EXPECT_EQ(memkit::test::violation_recorder::count(), 1);
    EXPECT_EQ(memkit::test::violation_recorder::last().code, memkit::errc::lifo_violation);
    a.deallocate(q, 16);
    a.deallocate(p, 16);
    EXPECT_EQ(memkit::test::violation_recorder::count(), 1);
}

// Records the alignment the wrapped allocator sees.
struct recording_allocator {
    static constexpr std::size_t max_alignment = 4096;
    std::size_t last_alloc_align = 0, last_free_align = 0;
    void* allocate(std::size_t n, std::size_t align) {
        if (void* p = try_allocate(n, align)) return p;
        throw std::bad_alloc();
    }
    void* try_allocate(std::size_t n, std::size_t align) noexcept {
        last_alloc_align = align;
        return system_allocator{}.try_allocate(n, align);
    }
    void deallocate(void* p, std::size_t n, std::size_t align) noexcept {
        last_free_align = align;
        system_allocator{}.deallocate(p, n, align);
    }
    friend bool operator==(const recording_allocator&, const recording_allocator&) = default;
};

TEST(AlignedAllocator, RaisesOnlyValidSmallerAlignments) {
    aligned_allocator<recording_allocator, 32> a;
    const aligned_allocator<recording_allocator, 32> fresh;
    EXPECT_TRUE(a == fresh); // equality forwards to the wrapped allocators
    static_assert(decltype(a)::max_alignment == 4096);
    static_assert(!decltype(a)::is_thread_safe);
    void* p = a.allocate(8, 1);
    EXPECT_EQ(a.get().last_alloc_align, 32u);
    a.deallocate(p, 8, 1);
    EXPECT_EQ(a.get().last_free_align, 32u);
    EXPECT_EQ(a.try_allocate(8, 3), nullptr);
    EXPECT_EQ(a.get().last_alloc_align, 3u);
    EXPECT_EQ(a.try_allocate(8, 0), nullptr);
    EXPECT_EQ(a.get().last_alloc_align, 0u);
    EXPECT_FALSE(a == fresh);
}

TEST(AlignedAllocator, MoveKeepsTheBlocks) {
    aligned_stack a{std::in_place, 1024};
    void* p = a.allocate(40);
    memkit::fill_pattern(p, 40, 3);
    aligned_stack b{std::move(a)};
    EXPECT_TRUE(b.owns(p));
    EXPECT_EQ(memkit::verify_pattern(p, 40, 3), nullptr);
    aligned_stack c{std::in_place, 64};
    c = std::move(b);
    EXPECT_TRUE(c.owns(p));
    EXPECT_EQ(c.stats().bytes_in_use, 40u);
    c.deallocate(p, 40);
    EXPECT_EQ(c.get().used(), 0u);
}

TEST(AlignedAllocator, StatelessCopiesAreInterchangeable) {
    cache_aligned a;
    cache_aligned b = a;
    EXPECT_TRUE(a == b);
    void* p = a.allocate(64);
    b.deallocate(p, 64);
}

// A million random allocations and frees checked against a model of the live set.
TEST(AlignedAllocator, RandomizedAgainstShadowModel) {
    cache_aligned a;
    struct block {
        void* p;
        std::size_t size, align;
        std::uint8_t seed;
    };
    std::vector<block> live;
    std::mt19937_64 rng{2024};
    std::size_t ops = 0, allocated = 0, freed = 0;
    for (; ops < 1'000'000; ++ops) {
        const bool alloc = live.empty() || (live.size() < 4096 && rng() % 2 == 0);
        if (alloc) {
            const std::size_t size = 1 + rng() % 128;
            const std::size_t align = std::size_t{1} << (rng() % 9);
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, std::max<std::size_t>(align, 64)));
            const auto seed = static_cast<std::uint8_t>(rng());
            memkit::fill_pattern(p, size, seed);
            live.push_back({p, size, align, seed});
            ++allocated;
        } else {
            const std::size_t k = rng() % live.size();
            const block b = live[k];
            live[k] = live.back();
            live.pop_back();
            ASSERT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
            a.deallocate(b.p, b.size, b.align);
            ++freed;
        }
    }
    for (const block& b : live) {
        ASSERT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
        a.deallocate(b.p, b.size, b.align);
    }
    EXPECT_EQ(allocated, freed + live.size());
    EXPECT_GT(allocated, 400'000u);
}

} // namespace
