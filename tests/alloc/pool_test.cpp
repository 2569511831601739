#include "memkit/alloc/pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <map>
#include <memory_resource>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::pool;
using memkit::pool_options;
using memkit::test::violation_recorder;

static_assert(memkit::allocator<pool>);
static_assert(memkit::owning_allocator<pool>);
static_assert(memkit::allocator_traits<pool>::has_stats);
static_assert(memkit::allocator_traits<pool>::has_reset);
static_assert(memkit::allocator_traits<pool>::has_max_size);
static_assert(!memkit::allocator_traits<pool>::is_thread_safe);
static_assert(memkit::allocator_traits<pool>::max_alignment == 4096);
static_assert(!std::is_copy_constructible_v<pool>);
static_assert(!std::is_copy_assignable_v<pool>);
static_assert(std::is_nothrow_move_constructible_v<pool>);
static_assert(std::is_nothrow_move_assignable_v<pool>);

// A parent that records every block it hands out and fails the test when a block comes back with
// a different size or alignment, or twice. It can be told to fail after a number of calls.
struct parent_log {
    std::map<void*, std::pair<std::size_t, std::size_t>> blocks; // pointer -> (size, align)
    std::size_t allocations = 0;
    std::size_t deallocations = 0;
    std::size_t live_bytes = 0;
    std::size_t fail_after = static_cast<std::size_t>(-1); // successful calls before failing
    std::size_t last_size = 0;
};

template <std::size_t MaxAlign = 4096>
class checking_parent {
public:
    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = MaxAlign;
    static constexpr const char* name = "checking_parent";

    explicit checking_parent(parent_log& log) noexcept : log_(&log) {}

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        throw memkit::out_of_memory(name, n);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        EXPECT_TRUE(memkit::is_pow2(align) && align <= MaxAlign) << "alignment " << align;
        if (log_->allocations >= log_->fail_after) return nullptr;
        void* p = ::operator new (n, std::align_val_t{align}, std::nothrow);
        if (p == nullptr) return nullptr;
        log_->blocks.emplace(p, std::pair{n, align});
        ++log_->allocations;
        log_->live_bytes += n;
        log_->last_size = n;
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
        EXPECT_EQ(it->second.second, align) << "parent: block returned with a different alignment";
        ::operator delete (p, std::align_val_t{it->second.second});
        log_->live_bytes -= it->second.first;
        log_->blocks.erase(it);
        ++log_->deallocations;
    }

private:
    parent_log* log_;
};

using checked_pool = memkit::basic_pool<checking_parent<>>;

using range = std::pair<std::uintptr_t, std::size_t>;

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

std::vector<range> ranges_of(const std::vector<void*>& ptrs, std::size_t size) {
    std::vector<range> r;
    r.reserve(ptrs.size());
    for (void* p : ptrs) r.emplace_back(addr(p), size);
    return r;
}

// --- construction -----------------------------------------------------------------------------

TEST(Pool, NodeSizeIsRoundedToHoldAPointerAndToTheAlignment) {
    EXPECT_EQ(pool(1, 1).node_size(), sizeof(void*));
    EXPECT_EQ(pool(1, 1).node_alignment(), alignof(void*));
    EXPECT_EQ(pool(17, 8).node_size(), 24u);
    EXPECT_EQ(pool(24, 16).node_size(), 32u);
    EXPECT_EQ(pool(24, 16).node_alignment(), 16u);
    EXPECT_EQ(pool(100, 64).node_size(), 128u);
    EXPECT_EQ(pool(64, 64).node_size(), 64u);
    EXPECT_EQ(pool(5, 4096).node_size(), 4096u);
    pool p{40};
    EXPECT_EQ(p.node_size(), 48u);
    EXPECT_EQ(p.node_alignment(), alignof(std::max_align_t));
    EXPECT_EQ(p.max_size(), p.node_size());
    EXPECT_STREQ(pool::name, "memkit::pool");
}

TEST(Pool, ConstructorRejectsBadNodeSizeAndAlignment) {
    EXPECT_THROW(pool(0), memkit::bad_size);
    EXPECT_THROW(pool(0, 8), memkit::bad_size);
    EXPECT_THROW(pool(static_cast<std::size_t>(-1), 8), memkit::bad_size);
    EXPECT_THROW(pool(8, 0), memkit::invalid_alignment);
    EXPECT_THROW(pool(8, 3), memkit::invalid_alignment);
    EXPECT_THROW(pool(8, 48), memkit::invalid_alignment);
    EXPECT_THROW(pool(8, 8192), memkit::invalid_alignment);
    try {
        pool p(8, 8192);
        FAIL() << "no exception";
    } catch (const memkit::invalid_alignment& e) {
        EXPECT_EQ(e.alignment(), 8192u);
        EXPECT_EQ(e.max_alignment(), 4096u);
    }
}

TEST(Pool, NewPoolHoldsNothing) {
    parent_log log;
    {
        checked_pool p{32, 8, {}, checking_parent<>{log}};
        EXPECT_EQ(p.chunk_count(), 0u);
        EXPECT_EQ(p.free_count(), 0u);
        EXPECT_EQ(p.stats(), memkit::allocator_stats{});
        EXPECT_FALSE(p.owns(&log));
        EXPECT_FALSE(p.owns(nullptr));
    }
    EXPECT_EQ(log.allocations, 0u);
}

// --- alignment, overlap, contents ----------------------------------------------------------------

TEST(Pool, EveryNodeAlignmentFrom1To4096) {
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        pool p{24, align, pool_options{.nodes_per_chunk = 4}};
        const std::size_t na = p.node_alignment();
        EXPECT_EQ(na, std::max(align, alignof(void*)));
        std::vector<void*> ptrs;
        for (int i = 0; i < 10; ++i) { // three chunks
            void* q = (i % 2 == 0) ? p.allocate() : p.allocate(24, align);
            ASSERT_TRUE(memkit::is_aligned(q, align)) << "align " << align;
            ASSERT_TRUE(memkit::is_aligned(q, na)) << "align " << align;
            memkit::fill_pattern(q, p.node_size(), static_cast<std::uint8_t>(i));
            ptrs.push_back(q);
        }
        EXPECT_EQ(p.chunk_count(), 3u);
        EXPECT_TRUE(memkit::test::no_overlap(ranges_of(ptrs, p.node_size())));
        for (std::size_t i = 0; i < ptrs.size(); ++i)
            EXPECT_EQ(memkit::verify_pattern(ptrs[i], p.node_size(), static_cast<std::uint8_t>(i)),
                      nullptr);
        EXPECT_THROW((void)p.allocate(8, na * 2), memkit::invalid_alignment);
        for (void* q : ptrs) p.deallocate(q, 24, align);
    }
}

TEST(Pool, AlignsNodesItselfWhenTheParentCannot) {
    parent_log log;
    {
        memkit::basic_pool<checking_parent<16>> p{40, 256, pool_options{.nodes_per_chunk = 3},
                                                  checking_parent<16>{log}};
        std::vector<void*> ptrs;
        for (int i = 0; i < 7; ++i) {
            ptrs.push_back(p.allocate());
            ASSERT_TRUE(memkit::is_aligned(ptrs.back(), 256));
            memkit::fill_pattern(ptrs.back(), 256, static_cast<std::uint8_t>(i));
        }
        EXPECT_TRUE(memkit::test::no_overlap(ranges_of(ptrs, 256)));
        for (int i = 0; i < 7; ++i)
            EXPECT_EQ(memkit::verify_pattern(ptrs[static_cast<std::size_t>(i)], 256,
                                             static_cast<std::uint8_t>(i)),
                      nullptr);
        for (void* q : ptrs) p.deallocate(q);
    }
    EXPECT_TRUE(log.blocks.empty());
}

TEST(Pool, LiveNodesDoNotOverlap) {
    pool p{40, 8};
    std::vector<void*> ptrs;
    for (int i = 0; i < 3000; ++i) ptrs.push_back(p.allocate());
    EXPECT_GT(p.chunk_count(), 1u);
    EXPECT_TRUE(memkit::test::no_overlap(ranges_of(ptrs, p.node_size())));
    std::set<void*> unique(ptrs.begin(), ptrs.end());
    EXPECT_EQ(unique.size(), ptrs.size());
    for (void* q : ptrs) EXPECT_TRUE(p.owns(q));
    for (void* q : ptrs) p.deallocate(q);
}

TEST(Pool, ContentsSurviveOtherAllocationsAndFrees) {
    pool p{56, 8, pool_options{.nodes_per_chunk = 16}};
    const std::size_t ns = p.node_size();
    std::vector<std::pair<void*, std::uint8_t>> live;
    for (int i = 0; i < 500; ++i) {
        void* q = p.allocate();
        memkit::fill_pattern(q, ns, static_cast<std::uint8_t>(i));
        live.emplace_back(q, static_cast<std::uint8_t>(i));
    }
    std::vector<std::pair<void*, std::uint8_t>> kept;
    for (std::size_t i = 0; i < live.size(); ++i) {
        if (i % 3 == 0) p.deallocate(live[i].first);
        else kept.push_back(live[i]);
    }
    for (int i = 0; i < 300; ++i) {
        void* q = p.allocate();
        const auto seed = static_cast<std::uint8_t>(i * 7 + 3);
        memkit::fill_pattern(q, ns, seed);
        kept.emplace_back(q, seed);
    }
    for (auto& [q, seed] : kept) EXPECT_EQ(memkit::verify_pattern(q, ns, seed), nullptr);
    std::vector<void*> ptrs;
    for (auto& k : kept) ptrs.push_back(k.first);
    EXPECT_TRUE(memkit::test::no_overlap(ranges_of(ptrs, ns)));
    for (void* q : ptrs) p.deallocate(q);
}

TEST(Pool, ReusesTheLastFreedNodeFirst) {
    pool p{32};
    void* a = p.allocate();
    void* b = p.allocate();
    void* c = p.allocate();
    p.deallocate(b);
    EXPECT_EQ(p.allocate(), b);
    p.deallocate(a);
    p.deallocate(c);
    EXPECT_EQ(p.allocate(), c);
    EXPECT_EQ(p.allocate(), a);
    p.deallocate(a);
    p.deallocate(b);
    p.deallocate(c);
    EXPECT_EQ(p.chunk_count(), 1u);
}

TEST(Pool, AcceptsAnySizeUpToTheNodeSize) {
    pool p{64, 16};
    for (std::size_t size = 1; size <= 64; ++size) {
        for (std::size_t align = 1; align <= 16; align *= 2) {
            void* q = p.allocate(size, align);
            ASSERT_NE(q, nullptr);
            memkit::fill_pattern(q, size, 1);
            p.deallocate(q, size, align);
        }
    }
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
}

// --- statistics ---------------------------------------------------------------------------------

TEST(Pool, StatsAreExactAfterEveryOperation) {
    parent_log log;
    checked_pool p{32, 8, pool_options{.nodes_per_chunk = 8}, checking_parent<>{log}};
    const std::size_t ns = p.node_size();
    const std::size_t chunk_bytes = [&] {
        void* q = p.allocate();
        p.deallocate(q);
        return log.last_size;
    }();
    EXPECT_GE(chunk_bytes, 8 * ns);
    auto s = p.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.peak_bytes, ns);
    EXPECT_EQ(s.capacity, chunk_bytes);
    EXPECT_EQ(s.allocations, 1u);
    EXPECT_EQ(s.deallocations, 1u);

    void* a = p.allocate();
    void* b = p.allocate(7, 4);
    s = p.stats();
    EXPECT_EQ(s.bytes_in_use, 2 * ns) << "a whole node counts, whatever the size asked";
    EXPECT_EQ(s.peak_bytes, 2 * ns);
    EXPECT_EQ(s.allocations, 3u);
    EXPECT_EQ(p.free_count(), 6u);

    std::array<void*, 10> many{};
    p.allocate_many(many);
    s = p.stats();
    EXPECT_EQ(s.bytes_in_use, 12 * ns);
    EXPECT_EQ(s.peak_bytes, 12 * ns);
    EXPECT_EQ(s.allocations, 13u);
    EXPECT_EQ(s.capacity, log.live_bytes);
    EXPECT_EQ(p.chunk_count(), log.blocks.size());

    p.deallocate_many(many);
    p.deallocate(b, 7, 4);
    s = p.stats();
    EXPECT_EQ(s.bytes_in_use, ns);
    EXPECT_EQ(s.peak_bytes, 12 * ns);
    EXPECT_EQ(s.deallocations, 12u);
    EXPECT_EQ(p.free_count(), p.capacity() - 1);

    p.reserve(100);
    s = p.stats();
    EXPECT_EQ(s.bytes_in_use, ns);
    EXPECT_EQ(s.capacity, log.live_bytes);
    EXPECT_GE(p.free_count(), 100u);

    p.clear(); // `a` counts as freed
    s = p.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.peak_bytes, 12 * ns);
    EXPECT_EQ(s.allocations, 13u);
    EXPECT_EQ(s.deallocations, 13u);
    EXPECT_EQ(s.capacity, log.live_bytes);
    (void)a;

    p.shrink_to_fit();
    s = p.stats();
    EXPECT_EQ(s.capacity, 0u);
    EXPECT_EQ(log.live_bytes, 0u);

    EXPECT_TRUE(p.owns(p.allocate()));
    p.release();
    s = p.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.capacity, 0u);
    EXPECT_EQ(s.allocations, 14u);
    EXPECT_EQ(s.deallocations, 14u);
    EXPECT_EQ(s.peak_bytes, 12 * ns);
}

TEST(Pool, PeakTracksTheHighWaterMark) {
    pool p{16};
    std::vector<void*> v;
    for (int i = 0; i < 5; ++i) v.push_back(p.allocate());
    for (int i = 0; i < 3; ++i) {
        p.deallocate(v.back());
        v.pop_back();
    }
    for (int i = 0; i < 2; ++i) v.push_back(p.allocate());
    EXPECT_EQ(p.stats().peak_bytes, 5 * p.node_size());
    for (int i = 0; i < 4; ++i) v.push_back(p.allocate());
    EXPECT_EQ(p.stats().peak_bytes, 8 * p.node_size()) << "peak reported before any free";
    for (void* q : v) p.deallocate(q);
    EXPECT_EQ(p.stats().peak_bytes, 8 * p.node_size());
}

// --- errors -------------------------------------------------------------------------------------

TEST(Pool, BadRequestsThrowTheExactError) {
    pool p{40, 16};
    const std::size_t ns = p.node_size();
    EXPECT_THROW((void)p.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)p.allocate(ns + 1), memkit::bad_size);
    EXPECT_THROW((void)p.allocate(static_cast<std::size_t>(-1)), memkit::bad_size);
    EXPECT_THROW((void)p.allocate(8, 0), memkit::invalid_alignment);
    EXPECT_THROW((void)p.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)p.allocate(8, 32), memkit::invalid_alignment);
    try {
        (void)p.allocate(ns + 1, 8);
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_EQ(e.size(), ns + 1);
        EXPECT_EQ(e.max_size(), ns);
    }
    try {
        (void)p.allocate(8, 64);
        FAIL() << "no exception";
    } catch (const memkit::invalid_alignment& e) {
        EXPECT_EQ(e.alignment(), 64u);
        EXPECT_EQ(e.max_alignment(), 16u);
    }
    EXPECT_EQ(p.try_allocate(0), nullptr);
    EXPECT_EQ(p.try_allocate(ns + 1), nullptr);
    EXPECT_EQ(p.try_allocate(8, 3), nullptr);
    EXPECT_EQ(p.try_allocate(8, 32), nullptr);
    EXPECT_EQ(p.stats(), memkit::allocator_stats{}) << "failed requests change nothing";
    EXPECT_EQ(p.chunk_count(), 0u);
}

TEST(Pool, MaxNodesIsAFixedCapacity) {
    parent_log log;
    checked_pool p{32, 8, pool_options{.nodes_per_chunk = 0, .max_nodes = 5},
                   checking_parent<>{log}};
    std::vector<void*> v;
    EXPECT_TRUE(p.can_allocate(5));
    EXPECT_FALSE(p.can_allocate(6));
    for (int i = 0; i < 5; ++i) v.push_back(p.allocate());
    EXPECT_EQ(p.capacity(), 5u) << "chunks never exceed max_nodes";
    EXPECT_TRUE(p.can_allocate(0));
    EXPECT_FALSE(p.can_allocate(1));
    EXPECT_EQ(p.try_allocate(), nullptr);
    EXPECT_EQ(p.try_allocate(16, 8), nullptr);
    try {
        (void)p.allocate(20, 8);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 20u);
        EXPECT_EQ(e.available(), 0u);
        EXPECT_EQ(e.used(), 5 * 32u);
        EXPECT_EQ(e.capacity(), 5 * 32u);
        EXPECT_STREQ(e.allocator(), "memkit::pool");
        EXPECT_EQ(e.code(), memkit::errc::out_of_memory);
    }
    try {
        (void)p.allocate();
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 32u);
        EXPECT_EQ(e.capacity(), 5 * 32u);
    }
    EXPECT_THROW(p.reserve(1), memkit::out_of_memory);
    EXPECT_EQ(p.stats().allocations, 5u);
    p.deallocate(v.back());
    v.pop_back();
    EXPECT_TRUE(p.can_allocate(1));
    v.push_back(p.allocate());
    for (void* q : v) p.deallocate(q);
    EXPECT_TRUE(p.can_allocate(5));
    p.reserve(5);
    EXPECT_EQ(log.allocations, 1u);
}

TEST(Pool, ParentFailureIsOutOfMemory) {
    parent_log log;
    log.fail_after = 0;
    checked_pool p{32, 8, {}, checking_parent<>{log}};
    EXPECT_EQ(p.try_allocate(), nullptr);
    try {
        (void)p.allocate(16, 8);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 16u);
        EXPECT_EQ(e.used(), 0u);
        EXPECT_EQ(e.capacity(), 0u);
    }
    EXPECT_THROW(p.reserve(10), memkit::out_of_memory);
    EXPECT_EQ(p.free_count(), 0u);
    log.fail_after = static_cast<std::size_t>(-1);
    void* q = p.allocate();
    EXPECT_TRUE(p.owns(q));
    p.deallocate(q);
}

TEST(Pool, AllocateManyIsAllOrNothing) {
    parent_log log;
    checked_pool p{32, 8, pool_options{.nodes_per_chunk = 4, .max_nodes = 10},
                   checking_parent<>{log}};
    std::vector<void*> held;
    for (int i = 0; i < 4; ++i) held.push_back(p.allocate());
    const auto before = p.stats();
    const std::size_t free_before = p.free_count();
    const std::size_t chunks_before = p.chunk_count();

    std::vector<void*> out(7, nullptr);
    const std::optional<memkit::out_of_memory> error =
        [&]() -> std::optional<memkit::out_of_memory> {
        try {
            p.allocate_many(out);
        } catch (const memkit::out_of_memory& e) {
            return e;
        }
        return std::nullopt;
    }();
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->requested(), 7 * 32u);
    EXPECT_EQ(error->available(), 6 * 32u);
    EXPECT_EQ(error->used(), 4 * 32u);
    EXPECT_EQ(error->capacity(), 10 * 32u);
    EXPECT_EQ(p.stats(), before);
    EXPECT_EQ(p.free_count(), free_before);
    EXPECT_EQ(p.chunk_count(), chunks_before);
    for (void* q : out) EXPECT_EQ(q, nullptr);

    out.resize(6);
    const std::size_t calls = log.allocations;
    p.allocate_many(out);
    EXPECT_LE(log.allocations, calls + 1) << "one chunk at most";
    EXPECT_EQ(p.stats().allocations, before.allocations + 6);
    EXPECT_EQ(p.free_count(), 0u);
    std::vector<void*> all = held;
    all.insert(all.end(), out.begin(), out.end());
    for (void* q : all) EXPECT_TRUE(p.owns(q));
    EXPECT_TRUE(memkit::test::no_overlap(ranges_of(all, p.node_size())));
    EXPECT_THROW(p.allocate_many(std::span<void*>(out.data(), 1)), memkit::out_of_memory);

    p.deallocate_many(out);
    EXPECT_EQ(p.stats().bytes_in_use, 4 * 32u);
    EXPECT_EQ(p.free_count(), 6u);
    std::vector<void*> none;
    p.allocate_many(none);
    p.deallocate_many(held);
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
}

TEST(Pool, AllocateManyAllocatesNothingWhenTheParentFails) {
    parent_log log;
    checked_pool p{32, 8, pool_options{.nodes_per_chunk = 4}, checking_parent<>{log}};
    void* first = p.allocate();
    log.fail_after = log.allocations;
    std::array<void*, 8> out{};
    EXPECT_THROW(p.allocate_many(out), memkit::out_of_memory);
    EXPECT_EQ(p.stats().allocations, 1u);
    EXPECT_EQ(p.free_count(), 3u);
    std::array<void*, 3> fits{};
    p.allocate_many(fits); // the current chunk has room: no parent call needed
    EXPECT_EQ(p.free_count(), 0u);
    p.deallocate_many(fits);
    p.deallocate(first);
}

// --- reserve, shrink_to_fit, clear, release ------------------------------------------------------

TEST(Pool, ReserveTakesOneChunkAndNoFurtherParentCalls) {
    parent_log log;
    checked_pool p{48, 16, {}, checking_parent<>{log}};
    p.reserve(1000);
    EXPECT_EQ(log.allocations, 1u);
    EXPECT_EQ(p.chunk_count(), 1u);
    EXPECT_GE(p.free_count(), 1000u);
    EXPECT_GE(log.last_size, 1000 * p.node_size());
    std::vector<void*> v;
    for (int i = 0; i < 1000; ++i) v.push_back(p.allocate());
    EXPECT_EQ(log.allocations, 1u);
    EXPECT_TRUE(memkit::test::no_overlap(ranges_of(v, p.node_size())));
    p.reserve(0);
    const std::size_t spare = p.free_count();
    p.reserve(spare);
    EXPECT_EQ(log.allocations, 1u) << "enough free nodes: nothing to do";
    p.reserve(spare + 1);
    EXPECT_EQ(log.allocations, 2u);
    for (void* q : v) p.deallocate(q);
}

TEST(Pool, ReserveIsLazyAboutCarving) {
    // A reserved chunk is not threaded into the free list: its nodes are carved on demand, in
    // address order, and never touched before that.
    pool p{64, 64};
    p.reserve(10000);
    void* prev = p.allocate();
    for (int i = 0; i < 100; ++i) {
        void* q = p.allocate();
        EXPECT_EQ(addr(q), addr(prev) + p.node_size());
        prev = q;
    }
    p.clear();
}

TEST(Pool, ChunksGrowGeometricallyInAutomaticMode) {
    parent_log log;
    checked_pool p{64, 8, {}, checking_parent<>{log}};
    std::vector<std::size_t> sizes;
    std::vector<void*> v;
    for (int i = 0; i < 20000; ++i) {
        const std::size_t calls = log.allocations;
        v.push_back(p.allocate());
        if (log.allocations != calls) sizes.push_back(log.last_size);
    }
    ASSERT_GE(sizes.size(), 3u);
    EXPECT_GE(sizes[0] / p.node_size(), 8u);
    EXPECT_LE(sizes[0], 2 * memkit::page_size());
    for (std::size_t i = 1; i < sizes.size(); ++i) EXPECT_GE(sizes[i], sizes[i - 1]);
    EXPECT_GT(sizes[2], sizes[0]);
    p.clear();
}

TEST(Pool, ExplicitChunkSizeIsFixed) {
    parent_log log;
    checked_pool p{64, 8, pool_options{.nodes_per_chunk = 10}, checking_parent<>{log}};
    std::set<std::size_t> sizes;
    for (int i = 0; i < 95; ++i) {
        (void)p.allocate();
        sizes.insert(log.last_size);
    }
    EXPECT_EQ(sizes.size(), 1u);
    EXPECT_EQ(p.chunk_count(), 10u);
    EXPECT_EQ(p.capacity(), 100u);
    EXPECT_EQ(p.free_count(), 5u);
    p.clear();
}

TEST(Pool, ShrinkToFitReturnsOnlyChunksWithoutLiveNodes) {
    parent_log log;
    checked_pool p{32, 8, pool_options{.nodes_per_chunk = 16}, checking_parent<>{log}};
    const std::size_t ns = p.node_size();
    std::vector<void*> v;
    for (int i = 0; i < 64; ++i) { // four full chunks, carved in order
        v.push_back(p.allocate());
        memkit::fill_pattern(v.back(), ns, static_cast<std::uint8_t>(i));
    }
    ASSERT_EQ(p.chunk_count(), 4u);
    const std::size_t chunk_bytes = log.last_size;
    for (int i = 16; i < 32; ++i) p.deallocate(v[static_cast<std::size_t>(i)]);    // chunk 2: all
    for (int i = 32; i < 48; i += 2) p.deallocate(v[static_cast<std::size_t>(i)]); // chunk 3: half
    p.deallocate(v[0]);                                                            // chunk 1: one
    EXPECT_EQ(p.free_count(), 25u);
    p.shrink_to_fit();
    EXPECT_EQ(p.chunk_count(), 3u);
    EXPECT_EQ(log.deallocations, 1u);
    EXPECT_EQ(p.stats().capacity, 3 * chunk_bytes);
    EXPECT_EQ(p.free_count(), 9u);
    EXPECT_EQ(p.stats().bytes_in_use, 39 * ns);
    for (int i = 1; i < 64; ++i) {
        if ((i >= 16 && i < 32) || (i >= 32 && i < 48 && i % 2 == 0)) continue;
        EXPECT_EQ(memkit::verify_pattern(v[static_cast<std::size_t>(i)], ns,
                                         static_cast<std::uint8_t>(i)),
                  nullptr);
        EXPECT_TRUE(p.owns(v[static_cast<std::size_t>(i)]));
    }
    // The free nodes left are those of chunks 1 and 3; using them calls no parent.
    std::vector<void*> again;
    for (int i = 0; i < 9; ++i) again.push_back(p.allocate());
    EXPECT_EQ(log.allocations, 4u);
    std::set<void*> expect{v[0]};
    for (int i = 32; i < 48; i += 2) expect.insert(v[static_cast<std::size_t>(i)]);
    EXPECT_EQ(std::set<void*>(again.begin(), again.end()), expect);
    (void)p.allocate();
    EXPECT_EQ(log.allocations, 5u);
    p.release();
    EXPECT_TRUE(log.blocks.empty());
}

TEST(Pool, ShrinkToFitReleasesReservedAndPartlyCarvedChunks) {
    parent_log log;
    checked_pool p{32, 8, pool_options{.nodes_per_chunk = 16}, checking_parent<>{log}};
    std::vector<void*> v;
    for (int i = 0; i < 20; ++i) v.push_back(p.allocate()); // chunk 2 carved up to node 4
    p.reserve(100);                                         // plus a reserved chunk
    EXPECT_EQ(p.chunk_count(), 3u);
    for (int i = 16; i < 20; ++i) p.deallocate(v[static_cast<std::size_t>(i)]);
    p.shrink_to_fit();
    EXPECT_EQ(p.chunk_count(), 1u);
    EXPECT_EQ(p.free_count(), 0u);
    EXPECT_EQ(p.stats().capacity, log.live_bytes);
    for (int i = 0; i < 16; ++i) EXPECT_TRUE(p.owns(v[static_cast<std::size_t>(i)]));
    EXPECT_FALSE(p.owns(v[16]));
    void* q = p.allocate(); // the pool keeps working after losing its current chunk
    EXPECT_EQ(p.chunk_count(), 2u);
    EXPECT_TRUE(p.owns(q));
    p.deallocate(q);
    for (int i = 0; i < 16; ++i) p.deallocate(v[static_cast<std::size_t>(i)]);
    p.shrink_to_fit();
    EXPECT_EQ(p.chunk_count(), 0u);
    EXPECT_EQ(p.stats().capacity, 0u);
    EXPECT_TRUE(log.blocks.empty());
    p.shrink_to_fit(); // nothing to do
    EXPECT_NE(p.allocate(), nullptr);
    p.clear();
}

TEST(Pool, ShrinkToFitWithManyChunks) {
    parent_log log;
    checked_pool p{16, 8, pool_options{.nodes_per_chunk = 8}, checking_parent<>{log}};
    std::vector<void*> v;
    for (int i = 0; i < 8 * 200; ++i) v.push_back(p.allocate());
    std::mt19937 rng(3);
    std::shuffle(v.begin(), v.end(), rng);
    // Keep one node in every fifth chunk (by address order) alive.
    std::vector<void*> sorted = v;
    std::sort(sorted.begin(), sorted.end(), [](void* a, void* b) { return addr(a) < addr(b); });
    std::set<void*> keep;
    for (std::size_t i = 0; i < sorted.size(); i += 8 * 5) keep.insert(sorted[i + 3]);
    for (void* q : v)
        if (!keep.contains(q)) p.deallocate(q);
    p.shrink_to_fit();
    EXPECT_EQ(p.chunk_count(), keep.size());
    EXPECT_EQ(p.free_count(), 7 * keep.size());
    for (void* q : keep) EXPECT_TRUE(p.owns(q));
    std::vector<void*> again;
    for (std::size_t i = 0; i < 7 * keep.size(); ++i) again.push_back(p.allocate());
    EXPECT_EQ(log.allocations, 200u);
    std::vector<void*> all(keep.begin(), keep.end());
    all.insert(all.end(), again.begin(), again.end());
    EXPECT_TRUE(memkit::test::no_overlap(ranges_of(all, p.node_size())));
    p.release();
}

TEST(Pool, ClearMakesEveryNodeFreeAndKeepsTheChunks) {
    parent_log log;
    checked_pool p{32, 8, pool_options{.nodes_per_chunk = 16}, checking_parent<>{log}};
    std::vector<void*> v;
    for (int i = 0; i < 50; ++i) v.push_back(p.allocate());
    p.deallocate(v[3]);
    ASSERT_EQ(p.chunk_count(), 4u);
    p.clear();
    EXPECT_EQ(p.chunk_count(), 4u);
    EXPECT_EQ(p.free_count(), 64u);
    EXPECT_EQ(p.free_count(), p.capacity());
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
    EXPECT_EQ(p.stats().deallocations, 50u);
    EXPECT_EQ(log.deallocations, 0u);
    std::vector<void*> w;
    for (int i = 0; i < 64; ++i) w.push_back(p.allocate());
    EXPECT_EQ(log.allocations, 4u) << "the kept chunks serve every node again";
    for (void* q : v) EXPECT_EQ(std::count(w.begin(), w.end(), q), 1);
    EXPECT_TRUE(memkit::test::no_overlap(ranges_of(w, p.node_size())));
    p.reset(); // the generic name
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
    EXPECT_EQ(p.free_count(), 64u);
}

TEST(Pool, ReleaseReturnsEverythingToTheParent) {
    parent_log log;
    {
        checked_pool p{32, 8, pool_options{.nodes_per_chunk = 16}, checking_parent<>{log}};
        for (int i = 0; i < 40; ++i) (void)p.allocate();
        p.reserve(200);
        EXPECT_EQ(log.blocks.size(), 4u);
        p.release();
        EXPECT_TRUE(log.blocks.empty());
        EXPECT_EQ(p.chunk_count(), 0u);
        EXPECT_EQ(p.free_count(), 0u);
        EXPECT_EQ(p.stats().capacity, 0u);
        EXPECT_EQ(p.stats().bytes_in_use, 0u);
        void* q = p.allocate(); // usable again
        EXPECT_TRUE(p.owns(q));
        EXPECT_EQ(log.blocks.size(), 1u);
    }
    EXPECT_TRUE(log.blocks.empty()) << "the destructor returns the chunks";
    EXPECT_EQ(log.allocations, log.deallocations);
}

// --- ownership --------------------------------------------------------------------------------

TEST(Pool, OwnsOnlyNodeStartsOfItsChunks) {
    pool p{32, 8, pool_options{.nodes_per_chunk = 8}};
    pool other{32, 8};
    void* a = p.allocate();
    void* b = other.allocate();
    int local = 0;
    EXPECT_TRUE(p.owns(a));
    EXPECT_FALSE(p.owns(b));
    EXPECT_FALSE(p.owns(&local));
    EXPECT_FALSE(p.owns(static_cast<std::byte*>(a) + 8)) << "inside a node, not its start";
    EXPECT_FALSE(p.owns(static_cast<std::byte*>(a) + p.node_size())) << "a node not yet handed out";
    p.deallocate(a);
    EXPECT_TRUE(p.owns(a)) << "a free node is still the pool's";
    other.deallocate(b);
}

// --- debug checks -------------------------------------------------------------------------------

TEST(Pool, DeallocatingAForeignPointerIsReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    pool p{32, 8};
    pool other{32, 8};
    void* a = p.allocate();
    void* b = other.allocate();
    const auto before = p.stats();
    p.deallocate(b);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.last().pointer, b);
    EXPECT_STREQ(rec.last().allocator, "memkit::pool");
    p.deallocate(static_cast<std::byte*>(a) + 8, 24);
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    int local = 0;
    p.deallocate(&local, sizeof local);
    EXPECT_EQ(rec.count(), 3);
    p.deallocate(nullptr);
    EXPECT_EQ(rec.count(), 4);
    std::array<void*, 2> mixed{b, a};
    p.deallocate_many(mixed);
    EXPECT_EQ(rec.count(), 5);
    EXPECT_EQ(p.stats().deallocations, before.deallocations + 1) << "only `a` was freed";
    EXPECT_EQ(p.allocate(), a) << "state untouched by the rejected calls";
    p.deallocate(a);
    other.deallocate(b);
    EXPECT_EQ(rec.count(), 5);
}

TEST(Pool, DoubleFreeIsReportedAndIgnored) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    pool p{32, 8};
    void* a = p.allocate();
    void* b = p.allocate();
    void* c = p.allocate();
    p.deallocate(a);
    p.deallocate(b);
    p.deallocate(a); // not at the head of the free list
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(rec.last().pointer, a);
    p.deallocate(b); // at the head
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(p.stats().deallocations, 2u);
    EXPECT_EQ(p.allocate(), b);
    EXPECT_EQ(p.allocate(), a);
    EXPECT_NE(p.allocate(), a) << "the free list holds each node once";
    p.deallocate(c);
    EXPECT_EQ(rec.count(), 2);
    p.clear();
}

TEST(Pool, UserDataThatLooksLikeATagIsNotADoubleFree) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    pool p{32, 8};
    void* a = p.allocate();
    p.deallocate(a);
    // While a node is free its second word holds the pool's tag; store the same value in a live
    // node, as user data might, and free it: the free-list walk must clear it.
    std::uintptr_t tag = 0;
    std::memcpy(&tag, static_cast<std::byte*>(a) + 8, sizeof tag);
    void* b = p.allocate();
    ASSERT_EQ(a, b);
    std::memcpy(static_cast<std::byte*>(b) + 8, &tag, sizeof tag);
    void* c = p.allocate();
    p.deallocate(c);
    p.deallocate(b);
    EXPECT_EQ(rec.count(), 0);
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
    EXPECT_EQ(p.allocate(), b);
    EXPECT_EQ(p.allocate(), c);
    p.clear();
}

TEST(Pool, DoubleFreeOfTheLastFreedNodeIsCaughtForPointerSizedNodes) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    pool p{8, 8};
    ASSERT_EQ(p.node_size(), sizeof(void*));
    void* a = p.allocate();
    p.deallocate(a);
    p.deallocate(a);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(p.allocate(), a);
    EXPECT_NE(p.allocate(), a);
    p.clear();
}

// --- move ---------------------------------------------------------------------------------------

TEST(Pool, MoveConstructionTransfersEverything) {
    parent_log log;
    checked_pool a{32, 8, pool_options{.nodes_per_chunk = 8}, checking_parent<>{log}};
    std::vector<void*> v;
    for (int i = 0; i < 20; ++i) {
        v.push_back(a.allocate());
        memkit::fill_pattern(v.back(), 32, static_cast<std::uint8_t>(i));
    }
    const auto s = a.stats();
    checked_pool b{std::move(a)};
    EXPECT_EQ(b.stats(), s);
    EXPECT_EQ(b.chunk_count(), 3u);
    for (int i = 0; i < 20; ++i) {
        EXPECT_TRUE(b.owns(v[static_cast<std::size_t>(i)]));
        EXPECT_EQ(memkit::verify_pattern(v[static_cast<std::size_t>(i)], 32,
                                         static_cast<std::uint8_t>(i)),
                  nullptr);
    }
    // The source is empty and usable.
    EXPECT_EQ(a.chunk_count(), 0u); // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(a.free_count(), 0u);
    EXPECT_EQ(a.stats(), memkit::allocator_stats{});
    EXPECT_FALSE(a.owns(v[0]));
    EXPECT_EQ(a.node_size(), 32u);
    void* q = a.allocate();
    EXPECT_TRUE(a.owns(q));
    EXPECT_FALSE(b.owns(q));
    a.deallocate(q);
    for (void* x : v) b.deallocate(x);
    EXPECT_EQ(b.stats().bytes_in_use, 0u);
}

TEST(Pool, MoveAssignmentReleasesTheTargetsChunks) {
    parent_log log_a;
    parent_log log_b;
    checked_pool a{32, 8, pool_options{.nodes_per_chunk = 8}, checking_parent<>{log_a}};
    checked_pool b{64, 16, pool_options{.nodes_per_chunk = 4}, checking_parent<>{log_b}};
    void* pa = a.allocate();
    for (int i = 0; i < 10; ++i) (void)b.allocate();
    EXPECT_EQ(log_b.blocks.size(), 3u);
    b = std::move(a);
    EXPECT_TRUE(log_b.blocks.empty()) << "b's chunks went back to b's parent";
    EXPECT_EQ(b.node_size(), 32u);
    EXPECT_TRUE(b.owns(pa));
    EXPECT_EQ(b.stats().bytes_in_use, 32u);
    b.deallocate(pa);
    EXPECT_EQ(a.chunk_count(), 0u); // NOLINT(bugprone-use-after-move)
    void* q = a.allocate();
    a.deallocate(q);
    checked_pool& alias = b;
    b = std::move(alias); // self-move leaves it intact
    EXPECT_EQ(b.chunk_count(), 1u);
}

// --- randomized
// -----------------------------------------------------------------------------------

TEST(Pool, RandomizedAgainstAShadowModel) {
    parent_log log;
    checked_pool p{40, 8, {}, checking_parent<>{log}};
    const std::size_t ns = p.node_size();
    std::mt19937_64 rng(0x5eed);
    std::unordered_map<void*, std::uint8_t> shadow; // live pointer -> pattern seed
    std::vector<void*> live;
    shadow.reserve(8192);
    live.reserve(8192);

    auto check_all = [&] {
        ASSERT_EQ(p.stats().bytes_in_use, live.size() * ns);
        ASSERT_EQ(p.stats().allocations - p.stats().deallocations, live.size());
        ASSERT_TRUE(memkit::test::no_overlap(ranges_of(live, ns)));
        for (void* q : live) {
            ASSERT_TRUE(p.owns(q));
            ASSERT_EQ(memkit::verify_pattern(q, ns, shadow.at(q)), nullptr);
        }
        ASSERT_EQ(p.stats().capacity, log.live_bytes);
    };
    auto add = [&](void* q, std::uint8_t seed) {
        ASSERT_TRUE(memkit::is_aligned(q, 8));
        memkit::fill_pattern(q, ns, seed);
        ASSERT_TRUE(shadow.emplace(q, seed).second) << "a live node handed out twice";
        live.push_back(q);
    };
    auto remove_at = [&](std::size_t i) {
        void* q = live[i];
        EXPECT_EQ(memkit::verify_pattern(q, ns, shadow.at(q)), nullptr);
        shadow.erase(q);
        live[i] = live.back();
        live.pop_back();
        return q;
    };

    constexpr int ops = 1'000'000;
    for (int op = 0; op < ops; ++op) {
        const std::uint64_t r = rng();
        const auto seed = static_cast<std::uint8_t>(r >> 56);
        // The live count drifts around ~4000 and sometimes sweeps: both directions are exercised.
        const std::size_t target = ((op >> 17) & 1) ? 6000 : 2000;
        const bool grow = live.empty() || (r % (2 * target)) >= live.size();
        switch ((r >> 8) % 64) {
        case 0: { // bulk allocation
            std::array<void*, 5> many{};
            p.allocate_many(many);
            for (void* q : many) add(q, seed);
            break;
        }
        case 1: { // bulk free
            std::array<void*, 5> many{};
            std::size_t n = 0;
            while (n < many.size() && !live.empty())
                many[n++] = remove_at(static_cast<std::size_t>(r >> 20) % live.size());
            p.deallocate_many(std::span<void* const>(many.data(), n));
            break;
        }
        default:
            if (grow) {
                const std::size_t size = 1 + static_cast<std::size_t>(r >> 24) % ns;
                add(p.allocate(size, std::size_t{1} << ((r >> 40) % 4)), seed);
            } else {
                p.deallocate(remove_at(static_cast<std::size_t>(r >> 20) % live.size()), 8);
            }
        }
        if (op % 50'000 == 25'000) p.shrink_to_fit();
        if (op % 50'000 == 40'000) p.reserve(live.size() / 2 + 100);
        if (op % 100'000 == 99'999) {
            check_all();
            if (HasFatalFailure()) return;
        }
    }
    check_all();
    for (void* q : live) p.deallocate(q);
    p.shrink_to_fit();
    EXPECT_EQ(p.chunk_count(), 0u);
    EXPECT_TRUE(log.blocks.empty());
}

// --- standard containers ---------------------------------------------------------------------

TEST(Pool, ServesAPmrListThroughResource) {
    pool p{64, alignof(std::max_align_t)};
    {
        memkit::resource r{p};
        std::pmr::list<int> l{&r};
        for (int i = 0; i < 1000; ++i) l.push_back(i);
        EXPECT_EQ(p.size(), 1000u);
        EXPECT_EQ(p.stats().bytes_in_use, 1000 * p.node_size());
        l.remove_if([](int x) { return x % 2 == 0; });
        EXPECT_EQ(p.size(), 500u);
        int expect = 1;
        for (int x : l) {
            EXPECT_EQ(x, expect);
            expect += 2;
        }
        std::pmr::map<int, int> m{&r}; // map nodes also fit in 64 bytes
        for (int i = 0; i < 100; ++i) m.emplace(i, i * i);
        EXPECT_EQ(m.at(9), 81);
        EXPECT_EQ(p.size(), 600u);
    }
    EXPECT_EQ(p.size(), 0u);
}

TEST(Pool, ServesAStdListThroughStdAllocator) {
    pool p{64, alignof(std::max_align_t)};
    {
        std::list<long, memkit::std_allocator<long, pool>> l{p};
        for (long i = 0; i < 500; ++i) l.push_front(i);
        EXPECT_EQ(p.size(), 500u);
        long sum = 0;
        for (long x : l) sum += x;
        EXPECT_EQ(sum, 499 * 500 / 2);
        std::set<int, std::less<>, memkit::std_allocator<int, pool>> s{p};
        for (int i = 0; i < 100; ++i) s.insert(i % 50);
        EXPECT_EQ(s.size(), 50u);
        EXPECT_EQ(p.size(), 550u);
    }
    EXPECT_EQ(p.size(), 0u);
}

TEST(Pool, RejectsRequestsLargerThanANodeThroughContainers) {
    pool p{32, 8};
    memkit::resource r{p};
    std::pmr::vector<std::int64_t> v{&r};
    v.reserve(4); // 32 bytes: one node
    EXPECT_EQ(p.size(), 1u);
    EXPECT_THROW(v.reserve(5), memkit::bad_size);
}

} // namespace
