#include "memkit/alloc/pool_collection.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <memory_resource>
#include <new>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::large_policy;
using memkit::pool_collection;
using memkit::pool_collection_options;
using memkit::size_class_spacing;
using memkit::test::violation_recorder;

static_assert(memkit::allocator<pool_collection>);
static_assert(memkit::owning_allocator<pool_collection>);
static_assert(memkit::allocator_traits<pool_collection>::has_stats);
static_assert(memkit::allocator_traits<pool_collection>::has_reset);
static_assert(memkit::allocator_traits<pool_collection>::has_max_size);
static_assert(!memkit::allocator_traits<pool_collection>::is_thread_safe);
static_assert(pool_collection::max_alignment == memkit::system_allocator::max_alignment);
static_assert(!std::is_copy_constructible_v<pool_collection>);
static_assert(std::is_nothrow_move_constructible_v<pool_collection>);
static_assert(std::is_nothrow_move_assignable_v<pool_collection>);

// A parent that records every block and checks that each comes back with its size and
// alignment; it can be told to fail after a number of calls.
struct parent_log {
    std::map<void*, std::pair<std::size_t, std::size_t>> blocks;
    std::size_t allocations = 0;
    std::size_t fail_after = std::numeric_limits<std::size_t>::max();
    [[nodiscard]] std::size_t live_bytes() const {
        std::size_t n = 0;
        for (const auto& [p, b] : blocks) n += b.first;
        return n;
    }
};

class checking_parent {
public:
    static constexpr const char* name = "checking_parent";
    static constexpr std::size_t max_alignment = 4096;

    explicit checking_parent(parent_log& log) noexcept : log_(&log) {}

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        throw memkit::out_of_memory(name, n);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (!memkit::is_pow2(align) || align > max_alignment) return nullptr;
        if (log_->allocations >= log_->fail_after) return nullptr;
        void* p = ::operator new (n, std::align_val_t{align}, std::nothrow);
        if (p == nullptr) return nullptr;
        log_->blocks.emplace(p, std::pair{n, align});
        ++log_->allocations;
        return p;
    }
    void deallocate(void* p, std::size_t n,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        const auto it = log_->blocks.find(p);
        if (it == log_->blocks.end()) {
            ADD_FAILURE() << "parent: unknown block returned";
            return;
        }
        EXPECT_EQ(it->second.first, n) << "parent: block returned with a different size";
        EXPECT_EQ(it->second.second, align) << "parent: block returned with another alignment";
        ::operator delete (p, std::align_val_t{align});
        log_->blocks.erase(it);
    }

private:
    parent_log* log_;
};

using checked_collection = memkit::basic_pool_collection<checking_parent>;
static_assert(checked_collection::max_alignment == 4096);

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

struct block {
    void* p;
    std::size_t size;
    std::size_t align;
    std::uint8_t seed;
};

std::vector<std::pair<std::uintptr_t, std::size_t>> ranges_of(const std::vector<block>& v) {
    std::vector<std::pair<std::uintptr_t, std::size_t>> r;
    for (const block& b : v) r.emplace_back(addr(b.p), b.size);
    return r;
}

std::vector<std::size_t> class_sizes(const auto& c) {
    std::vector<std::size_t> v;
    for (std::size_t i = 0; i < c.class_count(); ++i) v.push_back(c.class_size(i));
    return v;
}

// --- configuration ----------------------------------------------------------------------------

TEST(PoolCollection, DefaultClassesArePowersOfTwoFrom8To256) {
    pool_collection c;
    EXPECT_EQ(class_sizes(c), (std::vector<std::size_t>{8, 16, 32, 64, 128, 256}));
    for (std::size_t i = 0; i < c.class_count(); ++i) {
        EXPECT_EQ(c.class_alignment(i), c.class_size(i)) << "a power-of-two class is self-aligned";
        EXPECT_EQ(c.class_pool(i).node_size(), c.class_size(i));
    }
    EXPECT_EQ(c.max_size(), 256u);
    EXPECT_STREQ(pool_collection::name, "memkit::pool_collection");
    EXPECT_EQ(c.stats(), memkit::allocator_stats{});
    EXPECT_EQ(c.direct_count(), 0u);
}

TEST(PoolCollection, PowerOfTwoBoundsAreRoundedUp) {
    pool_collection c{pool_collection_options{.min_class = 1, .max_class = 100}};
    EXPECT_EQ(class_sizes(c), (std::vector<std::size_t>{8, 16, 32, 64, 128}));
    EXPECT_EQ(c.max_size(), 128u);
    pool_collection d{pool_collection_options{.min_class = 24, .max_class = 4096}};
    EXPECT_EQ(class_sizes(d), (std::vector<std::size_t>{32, 64, 128, 256, 512, 1024, 2048, 4096}));
    EXPECT_EQ(d.class_alignment(7), 4096u);
}

TEST(PoolCollection, LinearClasses) {
    pool_collection c{pool_collection_options{
        .spacing = size_class_spacing::linear, .min_class = 16, .max_class = 128, .step = 16}};
    EXPECT_EQ(class_sizes(c), (std::vector<std::size_t>{16, 32, 48, 64, 80, 96, 112, 128}));
    EXPECT_EQ(c.class_alignment(2), 16u) << "48 = 3 * 16";
    EXPECT_EQ(c.class_alignment(3), 64u);
    EXPECT_EQ(c.class_pool(2).node_size(), 48u);
    pool_collection d{pool_collection_options{
        .spacing = size_class_spacing::linear, .min_class = 12, .max_class = 100, .step = 12}};
    EXPECT_EQ(class_sizes(d), (std::vector<std::size_t>{12, 24, 36, 48, 60, 72, 84, 96, 108}));
    EXPECT_EQ(d.max_size(), 108u) << "the last class is the first one >= max_class";
    EXPECT_EQ(d.class_pool(0).node_size(), 16u) << "nodes are rounded to their alignment";
    EXPECT_EQ(d.class_alignment(0), 8u) << "raised to a pointer's alignment";
}

TEST(PoolCollection, OptionsItCannotHonourAreRejected) {
    using opts = pool_collection_options;
    EXPECT_THROW(pool_collection(opts{.min_class = 0}), std::invalid_argument);
    EXPECT_THROW(pool_collection(opts{.min_class = 64, .max_class = 32}), std::invalid_argument);
    EXPECT_THROW(pool_collection(opts{.spacing = size_class_spacing::linear, .step = 0}),
                 std::invalid_argument);
    EXPECT_THROW(pool_collection(opts{.spacing = size_class_spacing::linear,
                                      .min_class = 1,
                                      .max_class = 300,
                                      .step = 1}),
                 std::invalid_argument)
        << "more than 256 classes";
    EXPECT_THROW(pool_collection(opts{.min_class = 8, .max_class = std::size_t{1} << 20}),
                 std::invalid_argument)
        << "a table of 131072 entries";
    EXPECT_THROW(pool_collection(opts{.max_class = std::size_t{1} << 31}), std::invalid_argument);
    EXPECT_NO_THROW(pool_collection(opts{
        .spacing = size_class_spacing::linear, .min_class = 1, .max_class = 256, .step = 1}));
    parent_log log;
    {
        log.fail_after = 0;
        EXPECT_THROW(checked_collection(opts{}, checking_parent{log}), memkit::out_of_memory)
            << "the routing table comes from the parent";
    }
    EXPECT_TRUE(log.blocks.empty());
}

// --- routing ---------------------------------------------------------------------------------

// Every (size, alignment) either gets a class that is large enough and aligned enough, or none
// exists; for power-of-two classes the class is exactly the first one >= max(size, alignment).
template <class Collection>
void check_routing(const Collection& c, bool pow2) {
    for (std::size_t align = 1; align <= 8192; align *= 2) {
        for (std::size_t size = 1; size <= c.class_size(c.class_count() - 1) + 1; ++size) {
            const std::size_t i = c.class_index(size, align);
            bool exists = false;
            for (std::size_t k = 0; k < c.class_count(); ++k)
                exists = exists || (c.class_size(k) >= size && c.class_alignment(k) >= align);
            if (i == Collection::npos) {
                ASSERT_FALSE(exists) << size << " @" << align;
                continue;
            }
            ASSERT_GE(c.class_size(i), size) << size << " @" << align;
            ASSERT_GE(c.class_alignment(i), align) << size << " @" << align;
            if (pow2) {
                const std::size_t key = std::max(size, align);
                std::size_t first = 0;
                while (c.class_size(first) < key) ++first;
                ASSERT_EQ(i, first) << size << " @" << align;
            }
        }
    }
}

TEST(PoolCollection, RoutesEverySizeAndAlignmentToAFittingClass) {
    check_routing(pool_collection{}, true);
    check_routing(pool_collection{pool_collection_options{.min_class = 16, .max_class = 8192}},
                  true);
    check_routing(pool_collection{pool_collection_options{
                      .spacing = size_class_spacing::linear, .min_class = 8, .max_class = 512,
                      .step = 8}},
                  false);
    check_routing(pool_collection{pool_collection_options{
                      .spacing = size_class_spacing::linear, .min_class = 12, .max_class = 200,
                      .step = 20}},
                  false);
    pool_collection c;
    EXPECT_EQ(c.class_index(0), pool_collection::npos);
    EXPECT_EQ(c.class_index(8, 3), pool_collection::npos);
    EXPECT_EQ(c.class_index(257, 8), pool_collection::npos);
    EXPECT_EQ(c.class_index(24, 8), 2u);
    EXPECT_EQ(c.class_index(8), 1u) << "the default alignment (16) picks the 16-byte class";
    EXPECT_EQ(c.class_index(8, 8), 0u);
}

TEST(PoolCollection, LinearClassesServeOverAlignedRequestsFromAlignedClasses) {
    pool_collection c{pool_collection_options{
        .spacing = size_class_spacing::linear, .min_class = 8, .max_class = 64, .step = 8}};
    EXPECT_EQ(c.class_size(c.class_index(20, 16)), 32u) << "24 is only 8-aligned";
    EXPECT_EQ(c.class_size(c.class_index(40, 32)), 64u);
    void* p = c.allocate(20, 16);
    EXPECT_TRUE(memkit::is_aligned(p, 16));
    EXPECT_EQ(c.class_stats(3).allocations, 1u);
    c.deallocate(p, 20, 16);
    EXPECT_EQ(c.class_stats(3).deallocations, 1u);
}

// --- alignment, overlap, contents, reuse ------------------------------------------------------

TEST(PoolCollection, EveryAlignmentAndSizeAroundTheClassBoundaries) {
    parent_log log;
    {
        checked_collection c{pool_collection_options{.pool = {.nodes_per_chunk = 4}},
                             checking_parent{log}};
        std::vector<block> live;
        std::uint8_t seed = 0;
        for (std::size_t align = 1; align <= 4096; align *= 2) {
            for (std::size_t boundary : {8u, 16u, 32u, 64u, 128u, 256u}) {
                for (std::size_t size : {boundary - 1, boundary, boundary + 1}) {
                    if (size == 0 || size > 256) continue;
                    void* p = c.allocate(size, align);
                    ASSERT_TRUE(memkit::is_aligned(p, align)) << size << " @" << align;
                    memkit::fill_pattern(p, size, ++seed);
                    live.push_back({p, size, align, seed});
                }
            }
        }
        EXPECT_GT(c.direct_count(), 0u) << "alignments above 256 are served by the parent";
        EXPECT_TRUE(memkit::test::no_overlap(ranges_of(live)));
        for (const block& b : live) {
            EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
            EXPECT_TRUE(c.owns(b.p));
        }
        for (const block& b : live) c.deallocate(b.p, b.size, b.align);
        EXPECT_EQ(c.stats().bytes_in_use, 0u);
        EXPECT_EQ(c.direct_count(), 0u);
    }
    EXPECT_TRUE(log.blocks.empty());
}

TEST(PoolCollection, ReusesFreedNodesOfTheSameClass) {
    pool_collection c;
    void* a = c.allocate(20, 8);
    void* b = c.allocate(30, 8);
    c.deallocate(a, 20, 8);
    EXPECT_EQ(c.allocate(17, 8), a) << "17 and 20 share the 32-byte class";
    c.deallocate(b, 30, 8);
    EXPECT_NE(c.allocate(40, 8), b) << "40 is in the 64-byte class";
    c.reset();
}

// --- statistics -------------------------------------------------------------------------------

TEST(PoolCollection, StatsAreExactForTheWholeAndPerClass) {
    parent_log log;
    checked_collection c{pool_collection_options{.pool = {.nodes_per_chunk = 8},
                                                 .large = large_policy::parent},
                         checking_parent{log}};
    const std::size_t table_bytes = log.live_bytes();
    void* a = c.allocate(10, 8);  // 16
    void* b = c.allocate(100, 8); // 128
    void* d = c.allocate(1000);   // direct
    void* e = c.allocate(8, 512); // direct (over-aligned)
    auto s = c.stats();
    EXPECT_EQ(s.bytes_in_use, 16u + 128u + 1000u + 8u);
    EXPECT_EQ(s.peak_bytes, s.bytes_in_use);
    EXPECT_EQ(s.allocations, 4u);
    EXPECT_EQ(s.deallocations, 0u);
    EXPECT_EQ(s.capacity, log.live_bytes() - table_bytes);
    EXPECT_EQ(c.class_stats(1).bytes_in_use, 16u);
    EXPECT_EQ(c.class_stats(4).bytes_in_use, 128u);
    EXPECT_EQ(c.class_stats(0).allocations, 0u);
    const auto direct = c.direct_stats();
    EXPECT_EQ(direct.bytes_in_use, 1008u);
    EXPECT_EQ(direct.allocations, 2u);
    EXPECT_EQ(c.direct_count(), 2u);
    std::size_t sum = direct.capacity;
    for (std::size_t i = 0; i < c.class_count(); ++i) sum += c.class_stats(i).capacity;
    EXPECT_EQ(sum, s.capacity);

    c.deallocate(d, 1000);
    c.deallocate(a, 10, 8);
    s = c.stats();
    EXPECT_EQ(s.bytes_in_use, 128u + 8u);
    EXPECT_EQ(s.peak_bytes, 1152u);
    EXPECT_EQ(s.deallocations, 2u);
    EXPECT_EQ(c.direct_stats().peak_bytes, 1008u);

    // The peak is the sum of every class's own peak: nodes of one class never serve another.
    void* f = c.allocate(200, 8);
    s = c.stats();
    EXPECT_EQ(s.peak_bytes, 1152u + 256u) << "the 256-byte class reaches its own peak";
    std::size_t peaks = c.direct_stats().peak_bytes;
    for (std::size_t i = 0; i < c.class_count(); ++i) peaks += c.class_stats(i).peak_bytes;
    EXPECT_EQ(s.peak_bytes, peaks);
    c.deallocate(f, 200, 8);

    c.reset(); // b and e count as freed; the direct block goes back to the parent
    s = c.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.allocations, s.deallocations);
    EXPECT_EQ(c.direct_count(), 0u);
    EXPECT_EQ(c.direct_stats().capacity, 0u);
    EXPECT_GT(s.capacity, 0u) << "reset keeps the chunks";
    c.release();
    EXPECT_EQ(c.stats().capacity, 0u);
    EXPECT_EQ(log.live_bytes(), table_bytes);
    (void)b;
    (void)e;
}

// --- large requests ------------------------------------------------------------------------------

TEST(PoolCollection, LargeRequestsAreRejectedByDefault) {
    pool_collection c;
    EXPECT_THROW((void)c.allocate(257), memkit::bad_size);
    try {
        (void)c.allocate(1000, 8);
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_EQ(e.size(), 1000u);
        EXPECT_EQ(e.max_size(), 256u);
        EXPECT_EQ(e.code(), memkit::errc::bad_size);
    }
    EXPECT_EQ(c.try_allocate(257), nullptr);
    EXPECT_EQ(c.stats().allocations, 0u);
}

TEST(PoolCollection, LargeRequestsCanGoToTheParent) {
    parent_log log;
    {
        checked_collection c{pool_collection_options{.large = large_policy::parent},
                             checking_parent{log}};
        EXPECT_GT(c.max_size(), std::size_t{1} << 40);
        std::vector<block> v;
        for (std::size_t size : {257u, 1000u, 4096u, 100000u}) {
            for (std::size_t align : {1u, 16u, 64u, 4096u}) {
                void* p = c.allocate(size, align);
                ASSERT_TRUE(memkit::is_aligned(p, align));
                memkit::fill_pattern(p, size, static_cast<std::uint8_t>(size + align));
                v.push_back({p, size, align, static_cast<std::uint8_t>(size + align)});
            }
        }
        EXPECT_EQ(c.direct_count(), 16u);
        EXPECT_TRUE(memkit::test::no_overlap(ranges_of(v)));
        for (const block& b : v) {
            EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
            EXPECT_TRUE(c.owns(b.p));
        }
        for (std::size_t i = 0; i < v.size(); i += 2) c.deallocate(v[i].p, v[i].size, v[i].align);
        EXPECT_EQ(c.direct_count(), 8u);
        (void)c.allocate(5000);
        // The destructor returns the rest.
    }
    EXPECT_TRUE(log.blocks.empty());
}

// --- errors -----------------------------------------------------------------------------------

TEST(PoolCollection, BadRequestsThrowTheExactError) {
    parent_log log;
    checked_collection c{pool_collection_options{}, checking_parent{log}};
    EXPECT_THROW((void)c.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)c.allocate(0, 8), memkit::bad_size);
    EXPECT_THROW((void)c.allocate(8, 0), memkit::invalid_alignment);
    EXPECT_THROW((void)c.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)c.allocate(300, 3), memkit::invalid_alignment);
    try {
        (void)c.allocate(8, 8192);
        FAIL() << "no exception";
    } catch (const memkit::invalid_alignment& e) {
        EXPECT_EQ(e.alignment(), 8192u);
        EXPECT_EQ(e.max_alignment(), 4096u) << "the parent's limit";
    }
    EXPECT_EQ(c.try_allocate(0), nullptr);
    EXPECT_EQ(c.try_allocate(8, 3), nullptr);
    EXPECT_EQ(c.try_allocate(8, 8192), nullptr);
    EXPECT_EQ(c.stats().allocations, 0u);
    EXPECT_EQ(c.stats().capacity, 0u) << "failed requests take nothing from the parent";
}

TEST(PoolCollection, ClassCapsAndParentFailuresAreOutOfMemory) {
    parent_log log;
    checked_collection c{pool_collection_options{.pool = {.nodes_per_chunk = 2, .max_nodes = 3}},
                         checking_parent{log}};
    std::vector<void*> v;
    for (int i = 0; i < 3; ++i) v.push_back(c.allocate(50, 8));
    EXPECT_EQ(c.try_allocate(50, 8), nullptr);
    try {
        (void)c.allocate(60, 8);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_STREQ(e.allocator(), "memkit::pool_collection");
        EXPECT_EQ(e.requested(), 60u);
        EXPECT_EQ(e.available(), 0u);
        EXPECT_EQ(e.used(), 3u * 64u);
        EXPECT_EQ(e.capacity(), c.stats().capacity);
    }
    void* other = c.allocate(20, 8); // another class still works
    log.fail_after = log.allocations;
    EXPECT_THROW((void)c.allocate(100, 8), memkit::out_of_memory);
    EXPECT_THROW(c.reserve(200, 10, 8), memkit::out_of_memory);
    EXPECT_THROW(c.reserve(300, 10, 8), memkit::bad_size);
    c.deallocate(other, 20, 8);
    for (void* p : v) c.deallocate(p, 50, 8);
    EXPECT_EQ(c.stats().bytes_in_use, 0u);
}

TEST(PoolCollection, ReserveFillsOneClass) {
    parent_log log;
    checked_collection c{pool_collection_options{}, checking_parent{log}};
    c.reserve(40, 100, 8);
    const std::size_t calls = log.allocations;
    EXPECT_GE(c.class_pool(3).free_count(), 100u);
    std::vector<void*> v;
    for (int i = 0; i < 100; ++i) v.push_back(c.allocate(33 + i % 32, 8));
    EXPECT_EQ(log.allocations, calls) << "no parent call for reserved nodes";
    for (std::size_t i = 0; i < v.size(); ++i) c.deallocate(v[i], 33 + i % 32, 8);
    c.shrink_to_fit();
    EXPECT_EQ(c.class_pool(3).chunk_count(), 0u);
}

// --- debug checks ------------------------------------------------------------------------------

TEST(PoolCollection, ForeignPointersWrongSizesAndDoubleFreesAreReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    pool_collection c{pool_collection_options{.large = large_policy::parent}};
    pool_collection other;
    void* a = c.allocate(24, 8);
    void* b = other.allocate(24, 8);
    c.deallocate(b, 24, 8);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.last().pointer, b);
    EXPECT_STREQ(rec.last().allocator, "memkit::pool_collection");
    c.deallocate(a, 100, 8); // the wrong class
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    int local = 0;
    c.deallocate(&local, 1000); // not a direct block
    EXPECT_EQ(rec.count(), 3);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    c.deallocate(a, 0, 8); // no class serves size 0
    EXPECT_EQ(rec.count(), 4);
    EXPECT_EQ(c.stats().bytes_in_use, 32u) << "rejected calls change nothing";
    c.deallocate(a, 24, 8);
    c.deallocate(a, 24, 8);
    EXPECT_EQ(rec.count(), 5);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(c.stats().bytes_in_use, 0u);
    EXPECT_EQ(c.stats().deallocations, 1u);
    void* d = c.allocate(3000);
    c.deallocate(d, 3000);
    c.deallocate(d, 3000);
    EXPECT_EQ(rec.count(), 6) << "a freed direct block is no longer known";
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    other.deallocate(b, 24, 8);
    EXPECT_EQ(rec.count(), 6);
}

TEST(PoolCollection, OwnsNodesAndDirectBlocksOnly) {
    pool_collection c{pool_collection_options{.large = large_policy::parent}};
    void* a = c.allocate(64, 64);
    void* d = c.allocate(1000);
    int local = 0;
    EXPECT_TRUE(c.owns(a));
    EXPECT_TRUE(c.owns(d));
    EXPECT_FALSE(c.owns(&local));
    EXPECT_FALSE(c.owns(static_cast<std::byte*>(a) + 8));
    EXPECT_FALSE(c.owns(static_cast<std::byte*>(d) + 8));
    c.deallocate(d, 1000);
    EXPECT_FALSE(c.owns(d));
    c.deallocate(a, 64, 64);
    EXPECT_TRUE(c.owns(a)) << "a free node is still the collection's";
}

// --- move -------------------------------------------------------------------------------------

TEST(PoolCollection, MoveKeepsEveryBlockAndThePoolsFollowTheParent) {
    parent_log log;
    {
        auto source = std::make_unique<checked_collection>(
            pool_collection_options{.pool = {.nodes_per_chunk = 2}, .large = large_policy::parent},
            checking_parent{log});
        std::vector<block> v;
        for (std::size_t i = 0; i < 20; ++i) {
            const std::size_t size = 1 + i * 13;
            void* p = source->allocate(size, 8);
            memkit::fill_pattern(p, size, static_cast<std::uint8_t>(i));
            v.push_back({p, size, 8, static_cast<std::uint8_t>(i)});
        }
        const auto s = source->stats();
        checked_collection moved{std::move(*source)};
        source.reset(); // the old object's storage is gone: the pools must not refer to it
        EXPECT_EQ(moved.stats(), s);
        for (int i = 0; i < 50; ++i) (void)moved.allocate(100, 8); // new chunks via the parent
        for (const block& b : v) {
            EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
            EXPECT_TRUE(moved.owns(b.p));
        }
        checked_collection target{pool_collection_options{}, checking_parent{log}};
        (void)target.allocate(8, 8);
        target = std::move(moved);
        EXPECT_EQ(moved.class_count(), 0u); // NOLINT(bugprone-use-after-move)
        EXPECT_EQ(moved.class_index(8, 8), checked_collection::npos);
        void* x = moved.allocate(8, 8); // without classes, only direct blocks
        EXPECT_EQ(moved.direct_count(), 1u);
        moved.deallocate(x, 8, 8);
        for (const block& b : v) target.deallocate(b.p, b.size, b.align);
        EXPECT_EQ(target.stats().bytes_in_use, 50u * 128u);
    }
    EXPECT_TRUE(log.blocks.empty());
}

// --- randomized -------------------------------------------------------------------------------

TEST(PoolCollection, RandomizedAgainstAShadowModel) {
    parent_log log;
    checked_collection c{pool_collection_options{.spacing = size_class_spacing::linear,
                                                 .min_class = 16,
                                                 .max_class = 512,
                                                 .step = 16,
                                                 .large = large_policy::parent},
                         checking_parent{log}};
    std::mt19937_64 rng(0x636f6c6c);
    std::vector<block> live;
    std::unordered_map<void*, std::size_t> index;
    std::size_t expected_bytes = 0; // whole nodes for classes, requested sizes for direct blocks
    auto charge = [&](std::size_t size, std::size_t align) {
        const std::size_t i = c.class_index(size, align);
        return i == checked_collection::npos ? size : c.class_pool(i).node_size();
    };
    auto check_all = [&] {
        ASSERT_EQ(c.stats().bytes_in_use, expected_bytes);
        ASSERT_EQ(c.stats().allocations - c.stats().deallocations, live.size());
        ASSERT_TRUE(memkit::test::no_overlap(ranges_of(live)));
        for (const block& b : live)
            ASSERT_EQ(memkit::verify_pattern(b.p, std::min<std::size_t>(b.size, 64), b.seed),
                      nullptr);
    };
    for (int op = 0; op < 1'000'000; ++op) {
        const std::uint64_t r = rng();
        const std::size_t target = ((op >> 16) & 1) ? 3000 : 800;
        const bool grow = live.empty() || (r % (2 * target)) >= live.size();
        if (grow) {
            // Mostly small sizes, some above the largest class, some over-aligned.
            std::size_t size = 1 + (r >> 8) % 512;
            if ((r >> 20) % 64 == 0) size = 513 + (r >> 26) % 5000;
            const std::size_t align = std::size_t{1} << ((r >> 40) % 8 == 0 ? (r >> 44) % 13
                                                                             : (r >> 44) % 5);
            void* p = c.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            const auto seed = static_cast<std::uint8_t>(r >> 56);
            memkit::fill_pattern(p, std::min<std::size_t>(size, 64), seed);
            ASSERT_TRUE(index.emplace(p, live.size()).second) << "a live block handed out twice";
            live.push_back({p, size, align, seed});
            expected_bytes += charge(size, align);
        } else {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            const block b = live[i];
            ASSERT_EQ(memkit::verify_pattern(b.p, std::min<std::size_t>(b.size, 64), b.seed),
                      nullptr);
            c.deallocate(b.p, b.size, b.align);
            expected_bytes -= charge(b.size, b.align);
            index.erase(b.p);
            live[i] = live.back();
            live.pop_back();
            if (i < live.size()) index[live[i].p] = i;
        }
        if (op % 100'000 == 50'000) c.shrink_to_fit();
        if (op % 100'000 == 99'999) {
            check_all();
            if (HasFatalFailure()) return;
        }
    }
    for (const block& b : live) c.deallocate(b.p, b.size, b.align);
    EXPECT_EQ(c.stats().bytes_in_use, 0u);
    c.release();
    EXPECT_EQ(c.stats().capacity, 0u);
}

// --- standard containers ------------------------------------------------------------------------

TEST(PoolCollection, ServesPmrContainersThroughResource) {
    pool_collection c{pool_collection_options{.large = large_policy::parent}};
    {
        memkit::resource r{c};
        std::pmr::vector<std::pmr::string> words{&r};
        for (int i = 0; i < 500; ++i)
            words.emplace_back("a string long enough to need memory #" + std::to_string(i));
        std::pmr::map<int, std::pmr::string> m{&r};
        for (int i = 0; i < 200; ++i) m.emplace(i, words[static_cast<std::size_t>(i)]);
        std::pmr::list<double> l{&r};
        for (int i = 0; i < 300; ++i) l.push_back(i * 0.5);
        std::pmr::unordered_map<int, int> u{&r};
        for (int i = 0; i < 400; ++i) u[i] = -i;
        EXPECT_EQ(m.at(7), words[7]);
        EXPECT_EQ(u.at(399), -399);
        EXPECT_EQ(l.back(), 149.5);
        EXPECT_GT(c.direct_count(), 0u) << "the vectors' buffers are large";
        EXPECT_GT(c.class_stats(c.class_index(sizeof(double) + 16, 8)).allocations, 0u);
    }
    EXPECT_EQ(c.stats().bytes_in_use, 0u);
    EXPECT_EQ(c.direct_count(), 0u);
}

TEST(PoolCollection, ServesStdContainersThroughStdAllocator) {
    pool_collection c;
    {
        std::set<long, std::less<>, memkit::std_allocator<long, pool_collection>> s{c};
        std::list<int, memkit::std_allocator<int, pool_collection>> l{c};
        for (long i = 0; i < 1000; ++i) s.insert(i * 7 % 1000);
        for (int i = 0; i < 100; ++i) l.push_back(i);
        EXPECT_EQ(s.size(), 1000u);
        EXPECT_EQ(*s.begin(), 0);
        EXPECT_EQ(l.size(), 100u);
        EXPECT_EQ(c.stats().allocations, 1100u);
    }
    EXPECT_EQ(c.stats().bytes_in_use, 0u);
}

} // namespace
