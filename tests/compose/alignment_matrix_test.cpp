// Every power-of-two alignment from 1 to 4096 (capped at each composition's max_alignment), at
// sizes around every threshold, through every composition block and a few nestings: each block
// must come back aligned, no two live blocks may overlap, and every block keeps its contents
// while others come and go. Alignments above max_alignment must be served aligned or refused
// cleanly (nullptr from try_allocate, invalid_alignment from allocate).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <new>
#include <span>
#include <utility>
#include <vector>

#include "memkit/alloc/aligned.hpp"
#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/growing_pool.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/pool_collection.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/compose/affix.hpp"
#include "memkit/compose/budgeted.hpp"
#include "memkit/compose/fallback.hpp"
#include "memkit/compose/segregator.hpp"
#include "memkit/compose/stats_collector.hpp"
#include "memkit/compose/synchronized.hpp"
#include "memkit/core/memory_utils.hpp"
#include "support/test_support.hpp"

namespace {

using namespace memkit; // NOLINT(google-build-using-namespace): the file is about memkit's names

// malloc without posix_memalign: an allocator whose alignment stops at 16, so that compositions
// with a narrow part show that max_alignment follows the parts.
class narrow_heap {
public:
    static constexpr std::size_t max_alignment = 16;
    static constexpr const char* name = "test::narrow_heap";

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        if (n == 0 || !is_pow2(align) || align > max_alignment)
            throw_bad_request(name, n, align, std::size_t{1} << 40, max_alignment);
        throw out_of_memory(name, n);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (n == 0 || !is_pow2(align) || align > max_alignment) return nullptr;
        return std::malloc(n);
    }
    void deallocate(void* p, std::size_t, std::size_t = alignof(std::max_align_t)) noexcept {
        std::free(p);
    }
};

struct u64_tag {
    std::uint64_t v = 0x1111222233334444ULL;
};
struct u32_tag {
    std::uint32_t v = 0x55667788;
};
struct alignas(32) wide_tag {
    std::uint64_t v[3] = {7, 8, 9};
};

constexpr pool_collection_options with_large{.large = large_policy::parent};

// --- the compositions and their max_alignment, computed from the parts -------------------------

using collection = pool_collection; // max_alignment: the parent's
using seg = segregator<256, pool_collection, system_allocator>;
using narrow_seg = segregator<128, narrow_heap, system_allocator>;
using pool_first = fallback<pool, system_allocator>;
using narrow_fallback = fallback<pool, narrow_heap>;
using counted = stats_collector<pool_collection>;
using limited = budgeted<system_allocator>;
using framed = affix<system_allocator, u64_tag, u32_tag>;
using wide_framed = affix<pool_collection, wide_tag, u32_tag>;
using shared_seg = synchronized<seg>;
using aligned_seg = aligned_allocator<seg, 64>;
using local_then_heap = fallback<affix<arena, u64_tag, u32_tag>, seg>;
using deep = stats_collector<budgeted<
    segregator<128, affix<pool_collection, u64_tag, u32_tag>, fallback<arena, system_allocator>>>>;
using tree = segregator<64, pool_collection,
                        segregator<1024, stats_collector<pool_collection>,
                                   budgeted<affix<narrow_heap, u64_tag>>>>;

static_assert(allocator<collection> && allocator<seg> && allocator<narrow_seg> &&
              allocator<pool_first> && allocator<narrow_fallback> && allocator<counted> &&
              allocator<limited> && allocator<framed> && allocator<wide_framed> &&
              allocator<shared_seg> && allocator<aligned_seg> && allocator<local_then_heap> &&
              allocator<deep> && allocator<tree>);
static_assert(owning_allocator<local_then_heap> || !allocator_traits<seg>::has_owns);
static_assert(collection::max_alignment == system_allocator::max_alignment);
static_assert(seg::max_alignment == system_allocator::max_alignment);
static_assert(narrow_seg::max_alignment == 16, "the smaller part's");
static_assert(pool_first::max_alignment == system_allocator::max_alignment);
static_assert(narrow_fallback::max_alignment == 16, "the secondary's, not the pool's 4096");
static_assert(counted::max_alignment == collection::max_alignment);
static_assert(limited::max_alignment == system_allocator::max_alignment);
static_assert(framed::max_alignment == system_allocator::max_alignment);
static_assert(wide_framed::max_alignment == collection::max_alignment);
static_assert(shared_seg::max_alignment == seg::max_alignment);
static_assert(local_then_heap::max_alignment == seg::max_alignment);
static_assert(deep::max_alignment == system_allocator::max_alignment,
              "min(affixed collection, fallback to the system heap)");
static_assert(tree::max_alignment == 16, "the narrow leaf caps the whole tree");

constexpr std::size_t matrix_max_alignment = 4096;

struct block {
    void* p;
    std::size_t size;
    std::size_t align;
    std::uint8_t seed;
};

// Sizes around 1, the pointer size, the usual class boundaries, the composition's thresholds and
// the alignment itself.
std::vector<std::size_t> sizes_for(std::size_t align,
                                   std::initializer_list<std::size_t> thresholds) {
    std::vector<std::size_t> sizes{1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 255, 256, 257, 1000};
    for (std::size_t t : thresholds) sizes.insert(sizes.end(), {t - 1, t, t + 1});
    sizes.insert(sizes.end(), {align, align + 1});
    if (align > 1) sizes.push_back(align - 1);
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    sizes.erase(std::remove(sizes.begin(), sizes.end(), std::size_t{0}), sizes.end());
    return sizes;
}

void expect_intact_and_disjoint(const std::vector<block>& live) {
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (const block& b : live) {
        ranges.emplace_back(reinterpret_cast<std::uintptr_t>(b.p), b.size);
        ASSERT_EQ(verify_pattern(b.p, b.size, b.seed), nullptr)
            << "block of " << b.size << " @" << b.align << " was overwritten";
    }
    ASSERT_TRUE(test::no_overlap(ranges));
}

template <class A>
void run_matrix(A& a, std::initializer_list<std::size_t> thresholds, std::size_t max_size = 5000) {
    static_assert(allocator<A>);
    const std::size_t cap = std::min(matrix_max_alignment, allocator_traits<A>::max_alignment);
    std::vector<block> live;
    std::uint8_t seed = 0;
    auto take = [&](std::size_t size, std::size_t align) {
        void* p = a.allocate(size, align);
        ASSERT_NE(p, nullptr);
        ASSERT_TRUE(is_aligned(p, align)) << size << " @" << align;
        fill_pattern(p, size, ++seed);
        live.push_back({p, size, align, seed});
    };
    for (std::size_t align = 1; align <= cap; align *= 2) {
        for (std::size_t size : sizes_for(align, thresholds)) {
            if (size > max_size) continue;
            take(size, align);
            if (::testing::Test::HasFatalFailure()) return;
        }
    }
    expect_intact_and_disjoint(live);
    if (::testing::Test::HasFatalFailure()) return;

    // Free every other block and take the same requests again, so freed memory is reused while
    // the survivors must stay untouched.
    std::vector<block> again;
    std::vector<block> kept;
    for (std::size_t i = 0; i < live.size(); ++i) {
        if (i % 2 == 0) {
            a.deallocate(live[i].p, live[i].size, live[i].align);
            again.push_back(live[i]);
        } else {
            kept.push_back(live[i]);
        }
    }
    live = std::move(kept);
    for (const block& b : again) {
        take(b.size, b.align);
        if (::testing::Test::HasFatalFailure()) return;
    }
    expect_intact_and_disjoint(live);
    if (::testing::Test::HasFatalFailure()) return;
    for (const block& b : live) a.deallocate(b.p, b.size, b.align);

    // Beyond max_alignment: aligned or refused, never misaligned.
    for (std::size_t align = cap * 2; align <= matrix_max_alignment; align *= 2) {
        for (std::size_t size : {std::size_t{8}, std::size_t{300}}) {
            void* p = a.try_allocate(size, align);
            if (p == nullptr) continue;
            EXPECT_TRUE(is_aligned(p, align)) << size << " @" << align << " beyond the limit";
            a.deallocate(p, size, align);
        }
    }
}

// --- blocks -----------------------------------------------------------------------------------

TEST(AlignmentMatrix, PoolCollection) {
    collection a{with_large};
    run_matrix(a, {8, 16, 32, 64, 128, 256});
    collection linear{pool_collection_options{.spacing = size_class_spacing::linear,
                                              .min_class = 24,
                                              .max_class = 240,
                                              .step = 24,
                                              .large = large_policy::parent}};
    run_matrix(linear, {24, 48, 72, 96, 120, 240});
}

TEST(AlignmentMatrix, GrowingPoolUpToItsNodeAlignment) {
    // A pool's limit is its node alignment (a runtime value): one pool per alignment.
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        growing_pool p{64, align, growing_pool_options{.first_chunk_nodes = 2}};
        std::vector<block> live;
        for (std::size_t size : {1u, 8u, 63u, 64u}) {
            for (std::size_t a = 1; a <= p.node_alignment(); a *= 2) {
                void* q = p.allocate(size, a);
                ASSERT_TRUE(is_aligned(q, a));
                fill_pattern(q, size, static_cast<std::uint8_t>(live.size()));
                live.push_back({q, size, a, static_cast<std::uint8_t>(live.size())});
            }
        }
        expect_intact_and_disjoint(live);
        EXPECT_EQ(p.try_allocate(8, p.node_alignment() * 2), nullptr);
        for (const block& b : live) p.deallocate(b.p, b.size, b.align);
    }
}

TEST(AlignmentMatrix, Segregator) {
    seg a;
    run_matrix(a, {256});
    narrow_seg n;
    run_matrix(n, {128});
    void* p = n.allocate(8, 64); // beyond the small part: Large serves it
    EXPECT_TRUE(is_aligned(p, 64));
    n.deallocate(p, 8, 64);
}

TEST(AlignmentMatrix, Fallback) {
    pool_first a{pool{256, 256, pool_options{.nodes_per_chunk = 8, .max_nodes = 64}}, {}};
    run_matrix(a, {256});
    narrow_fallback n{pool{256, 4096, pool_options{.max_nodes = 4}}, {}};
    run_matrix(n, {256});
}

TEST(AlignmentMatrix, StatsCollector) {
    counted a{collection{with_large}};
    run_matrix(a, {8, 16, 32, 64, 128, 256});
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
    EXPECT_EQ(a.stats().allocations, a.stats().deallocations);
}

TEST(AlignmentMatrix, Budgeted) {
    limited a{std::size_t{64} << 20};
    run_matrix(a, {});
    EXPECT_EQ(a.used(), 0u);
}

TEST(AlignmentMatrix, Affix) {
    framed a;
    run_matrix(a, {});
    wide_framed w{std::in_place, with_large};
    run_matrix(w, {8, 16, 32, 64, 128, 256});
    affix<pool_collection, void, u32_tag> suffix_only{std::in_place, with_large};
    run_matrix(suffix_only, {8, 16, 32, 64, 128, 256});
}

TEST(AlignmentMatrix, Synchronized) {
    shared_seg a;
    run_matrix(a, {256});
}

TEST(AlignmentMatrix, AlignedSegregator) {
    aligned_seg a;
    run_matrix(a, {256});
}

// --- nestings -------------------------------------------------------------------------------

TEST(AlignmentMatrix, AffixedArenaBeforeASegregator) {
    alignas(64) std::byte buffer[16384];
    local_then_heap a{affix<arena, u64_tag, u32_tag>{
                          std::in_place, std::span{buffer}, arena_options{.max_total = 0}},
                      seg{}};
    run_matrix(a, {256});
}

TEST(AlignmentMatrix, CountedBudgetedSegregatorOfAffixedPoolsAndAnArena) {
    // The affixes make an over-aligned request larger by up to its alignment (the prefix takes
    // a whole alignment in front), so the affixed collection must accept sizes above its
    // largest class: they go to its parent. With large_policy::reject, a 4-byte request at
    // 512 would become a 520-byte one and fail with bad_size.
    deep a{std::in_place, std::size_t{32} << 20, std::in_place,
           affix<pool_collection, u64_tag, u32_tag>{
               std::in_place,
               pool_collection_options{.max_class = 512, .large = large_policy::parent}},
           fallback<arena, system_allocator>{arena{arena_options{.max_total = 1 << 16}}, {}}};
    run_matrix(a, {128, 512});
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
    EXPECT_EQ(a.get().used(), 0u);
}

TEST(AlignmentMatrix, ASizeClassTreeWithANarrowLeaf) {
    tree t{pool_collection{pool_collection_options{.max_class = 64}},
           {stats_collector<pool_collection>{
                pool_collection{pool_collection_options{.max_class = 1024}}},
            budgeted<affix<narrow_heap, u64_tag>>{std::size_t{16} << 20}}};
    run_matrix(t, {64, 1024});
    EXPECT_EQ(t.large().small().stats().bytes_in_use, 0u);
    EXPECT_EQ(t.large().large().used(), 0u);
}

} // namespace
