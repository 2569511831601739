#include "memkit/alloc/growing_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <list>
#include <map>
#include <memory_resource>
#include <new>
#include <random>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::growing_pool;
using memkit::growing_pool_options;
using memkit::test::violation_recorder;

static_assert(memkit::allocator<growing_pool>);
static_assert(memkit::owning_allocator<growing_pool>);
static_assert(memkit::allocator_traits<growing_pool>::has_stats);
static_assert(memkit::allocator_traits<growing_pool>::has_reset);
static_assert(memkit::allocator_traits<growing_pool>::has_max_size);
static_assert(!memkit::allocator_traits<growing_pool>::is_thread_safe);
static_assert(memkit::allocator_traits<growing_pool>::max_alignment == 4096);
static_assert(!std::is_copy_constructible_v<growing_pool>);
static_assert(std::is_nothrow_move_constructible_v<growing_pool>);
static_assert(std::is_nothrow_move_assignable_v<growing_pool>);

// A parent that logs the size of every block it hands out and can be told to refuse blocks
// larger than a limit or to fail after a number of calls.
struct chunk_log {
    std::vector<std::size_t> sizes; // every successful request, in order
    std::map<void*, std::size_t> live;
    std::size_t refuse_above = std::numeric_limits<std::size_t>::max();
    std::size_t fail_after = std::numeric_limits<std::size_t>::max();
};

class logging_parent {
public:
    static constexpr const char* name = "logging_parent";
    static constexpr std::size_t max_alignment = 4096;

    explicit logging_parent(chunk_log& log) noexcept : log_(&log) {}

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        throw memkit::out_of_memory(name, n);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (n > log_->refuse_above || log_->sizes.size() >= log_->fail_after) return nullptr;
        void* p = ::operator new (n, std::align_val_t{align}, std::nothrow);
        if (p == nullptr) return nullptr;
        log_->sizes.push_back(n);
        log_->live.emplace(p, n);
        return p;
    }
    void deallocate(void* p, std::size_t n,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        const auto it = log_->live.find(p);
        if (it == log_->live.end() || it->second != n) {
            ADD_FAILURE() << "parent: unknown block or wrong size";
            return;
        }
        log_->live.erase(it);
        ::operator delete (p, std::align_val_t{align});
    }

private:
    chunk_log* log_;
};

using logged_pool = memkit::basic_growing_pool<logging_parent>;

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

std::vector<std::pair<std::uintptr_t, std::size_t>> ranges_of(const std::vector<void*>& ptrs,
                                                              std::size_t size) {
    std::vector<std::pair<std::uintptr_t, std::size_t>> r;
    for (void* p : ptrs) r.emplace_back(addr(p), size);
    return r;
}

// The node counts of the chunks taken so far, from the pool's capacity after each allocation.
std::vector<std::size_t> chunk_nodes_after(growing_pool& p, std::size_t allocations,
                                           std::vector<void*>& out) {
    std::vector<std::size_t> chunks;
    std::size_t capacity = 0;
    for (std::size_t i = 0; i < allocations; ++i) {
        out.push_back(p.allocate());
        if (p.capacity() != capacity) {
            chunks.push_back(p.capacity() - capacity);
            capacity = p.capacity();
        }
    }
    return chunks;
}

// --- construction and options ---------------------------------------------------------------

TEST(GrowingPool, DefaultsFollowThePool) {
    growing_pool p{40};
    EXPECT_EQ(p.node_size(), 48u);
    EXPECT_EQ(p.node_alignment(), alignof(std::max_align_t));
    EXPECT_EQ(p.max_size(), 48u);
    EXPECT_EQ(p.first_chunk_nodes(), memkit::page_size() / 48);
    EXPECT_EQ(p.max_chunk_nodes(), (std::size_t{1} << 20) / 48);
    EXPECT_EQ(p.next_chunk_nodes(), p.first_chunk_nodes());
    EXPECT_EQ(p.max_nodes(), std::numeric_limits<std::size_t>::max());
    EXPECT_EQ(p.chunk_count(), 0u);
    EXPECT_EQ(p.stats(), memkit::allocator_stats{});
    EXPECT_STREQ(growing_pool::name, "memkit::growing_pool");
    growing_pool big{4096, 4096};
    EXPECT_EQ(big.first_chunk_nodes(), 8u) << "at least 8 nodes per chunk";
}

TEST(GrowingPool, ConstructorRejectsBadOptions) {
    EXPECT_THROW(growing_pool(0), memkit::bad_size);
    EXPECT_THROW(growing_pool(8, 3), memkit::invalid_alignment);
    EXPECT_THROW(growing_pool(8, 8192), memkit::invalid_alignment);
    EXPECT_THROW(growing_pool(8, 8, growing_pool_options{.growth_factor = 0.5}),
                 std::invalid_argument);
    EXPECT_THROW(growing_pool(8, 8,
                              growing_pool_options{.growth_factor =
                                                       std::numeric_limits<double>::quiet_NaN()}),
                 std::invalid_argument);
    EXPECT_THROW(growing_pool(8, 8,
                              growing_pool_options{.first_chunk_nodes = 16, .max_chunk_nodes = 8}),
                 std::invalid_argument);
    try {
        growing_pool p(32, 8, growing_pool_options{.max_bytes = 31});
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_EQ(e.size(), 32u);
        EXPECT_EQ(e.max_size(), 31u);
    }
}

// --- chunk growth -----------------------------------------------------------------------------

TEST(GrowingPool, ChunksGrowByTheFactorUpToTheMaximum) {
    growing_pool p{16, 8,
                   growing_pool_options{.first_chunk_nodes = 4, .growth_factor = 2.0,
                                        .max_chunk_nodes = 20}};
    std::vector<void*> v;
    const auto chunks = chunk_nodes_after(p, 4 + 8 + 16 + 20 + 20 + 1, v);
    EXPECT_EQ(chunks, (std::vector<std::size_t>{4, 8, 16, 20, 20, 20}));
    EXPECT_EQ(p.chunk_count(), 6u);
    EXPECT_EQ(p.next_chunk_nodes(), 20u);
    for (void* q : v) p.deallocate(q);
}

TEST(GrowingPool, FractionalFactorsRoundUpAndAlwaysGrow) {
    growing_pool p{16, 8,
                   growing_pool_options{.first_chunk_nodes = 10, .growth_factor = 1.25,
                                        .max_chunk_nodes = 1000}};
    std::vector<void*> v;
    // 10, 12.5 -> 13, 16.25 -> 17, 21.25 -> 22
    const auto chunks = chunk_nodes_after(p, 10 + 13 + 17 + 1, v);
    EXPECT_EQ(chunks, (std::vector<std::size_t>{10, 13, 17, 22}));
    for (void* q : v) p.deallocate(q);

    growing_pool q{16, 8,
                   growing_pool_options{.first_chunk_nodes = 2, .growth_factor = 1.01,
                                        .max_chunk_nodes = 1000}};
    std::vector<void*> w;
    EXPECT_EQ(chunk_nodes_after(q, 2 + 3 + 4, w), (std::vector<std::size_t>{2, 3, 4}))
        << "a factor above 1 adds at least one node per chunk";
    for (void* x : w) q.deallocate(x);
}

TEST(GrowingPool, FactorOneKeepsEveryChunkTheSame) {
    growing_pool p{32, 8, growing_pool_options{.first_chunk_nodes = 5, .growth_factor = 1.0}};
    std::vector<void*> v;
    EXPECT_EQ(chunk_nodes_after(p, 21, v), (std::vector<std::size_t>{5, 5, 5, 5, 5}));
    for (void* q : v) p.deallocate(q);
}

TEST(GrowingPool, ReleaseRestartsTheGrowth) {
    chunk_log log;
    logged_pool p{16, 8, growing_pool_options{.first_chunk_nodes = 4, .growth_factor = 3.0},
                  logging_parent{log}};
    for (int i = 0; i < 20; ++i) (void)p.allocate();
    EXPECT_EQ(p.capacity(), 4u + 12u + 36u);
    EXPECT_EQ(p.next_chunk_nodes(), 108u);
    p.release();
    EXPECT_TRUE(log.live.empty());
    EXPECT_EQ(p.next_chunk_nodes(), 4u);
    (void)p.allocate();
    EXPECT_EQ(p.capacity(), 4u);
    p.clear();
    EXPECT_EQ(p.next_chunk_nodes(), 12u) << "clear keeps the chunks and the growth";
}

TEST(GrowingPool, ParentIsAskedForExactlyOneChunkAtATime) {
    chunk_log log;
    {
        logged_pool p{24, 8, growing_pool_options{.first_chunk_nodes = 8, .growth_factor = 2.0},
                      logging_parent{log}};
        std::vector<void*> v;
        for (int i = 0; i < 8 + 16 + 32; ++i) v.push_back(p.allocate());
        ASSERT_EQ(log.sizes.size(), 3u);
        // Each chunk holds its nodes plus the pool's chunk header (the same for every chunk).
        const std::size_t header = log.sizes[0] - 8 * 24;
        EXPECT_EQ(log.sizes[1], 16 * 24 + header);
        EXPECT_EQ(log.sizes[2], 32 * 24 + header);
        EXPECT_EQ(p.stats().capacity, log.sizes[0] + log.sizes[1] + log.sizes[2]);
        for (void* q : v) p.deallocate(q);
    }
    EXPECT_TRUE(log.live.empty()) << "the destructor returns every chunk";
}

TEST(GrowingPool, WhenTheParentRefusesAChunkOnlyTheMissingNodesAreTaken) {
    chunk_log log;
    logged_pool p{32, 8, growing_pool_options{.first_chunk_nodes = 64}, logging_parent{log}};
    log.refuse_above = 40 * 32; // no room for 64 nodes, but one node fits
    void* a = p.allocate();
    EXPECT_EQ(p.capacity(), 1u);
    EXPECT_EQ(p.next_chunk_nodes(), 128u) << "the growth goes on";
    std::array<void*, 10> many{};
    p.allocate_many(many); // needs 10 more: a chunk of exactly 10
    EXPECT_EQ(p.capacity(), 11u);
    log.fail_after = log.sizes.size();
    EXPECT_EQ(p.try_allocate(), nullptr);
    EXPECT_THROW((void)p.allocate(), memkit::out_of_memory);
    EXPECT_THROW(p.reserve(50), memkit::out_of_memory);
    EXPECT_EQ(p.capacity(), 11u) << "failures change nothing";
    p.deallocate(a);
    p.deallocate_many(many);
    EXPECT_EQ(p.stats().bytes_in_use, 0u);
}

// --- caps -----------------------------------------------------------------------------------

TEST(GrowingPool, MaxNodesCutsTheLastChunkAndThenFails) {
    growing_pool p{32, 8,
                   growing_pool_options{.first_chunk_nodes = 4, .growth_factor = 2.0,
                                        .max_nodes = 10}};
    std::vector<void*> v;
    EXPECT_TRUE(p.can_allocate(10));
    EXPECT_FALSE(p.can_allocate(11));
    const auto chunks = chunk_nodes_after(p, 10, v);
    EXPECT_EQ(chunks, (std::vector<std::size_t>{4, 6})) << "8 would exceed the cap";
    EXPECT_FALSE(p.can_allocate(1));
    EXPECT_EQ(p.try_allocate(), nullptr);
    EXPECT_EQ(p.try_allocate(8, 8), nullptr);
    try {
        (void)p.allocate(16, 8);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_STREQ(e.allocator(), "memkit::growing_pool");
        EXPECT_EQ(e.requested(), 16u);
        EXPECT_EQ(e.available(), 0u);
        EXPECT_EQ(e.used(), 10u * 32u);
        EXPECT_EQ(e.capacity(), 10u * 32u);
        EXPECT_EQ(e.code(), memkit::errc::out_of_memory);
    }
    std::array<void*, 1> one{};
    EXPECT_THROW(p.allocate_many(one), memkit::out_of_memory);
    EXPECT_THROW(p.reserve(11), memkit::out_of_memory);
    EXPECT_NO_THROW(p.reserve(0));
    p.deallocate(v.back());
    v.pop_back();
    v.push_back(p.allocate()); // a freed node is reusable under the cap
    EXPECT_EQ(p.capacity(), 10u);
    for (void* q : v) p.deallocate(q);
}

TEST(GrowingPool, MaxBytesCapsTheNodeBytes) {
    growing_pool p{64, 64, growing_pool_options{.first_chunk_nodes = 2, .max_bytes = 64 * 5 + 63}};
    EXPECT_EQ(p.max_nodes(), 5u);
    std::vector<void*> v;
    for (int i = 0; i < 5; ++i) v.push_back(p.allocate(64, 64));
    EXPECT_THROW((void)p.allocate(), memkit::out_of_memory);
    EXPECT_EQ(p.stats().bytes_in_use, 5u * 64u);
    growing_pool both{64, 64, growing_pool_options{.max_nodes = 3, .max_bytes = 64 * 5}};
    EXPECT_EQ(both.max_nodes(), 3u) << "the smaller cap wins";
    for (void* q : v) p.deallocate(q);
}

// --- alignment, overlap, contents, reuse -------------------------------------------------------

TEST(GrowingPool, EveryAlignmentFrom1To4096) {
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        growing_pool p{24, align,
                       growing_pool_options{.first_chunk_nodes = 2, .growth_factor = 1.5}};
        std::vector<void*> v;
        for (int i = 0; i < 12; ++i) {
            void* q = i % 2 == 0 ? p.allocate() : p.allocate(24, align);
            ASSERT_TRUE(memkit::is_aligned(q, align)) << align;
            memkit::fill_pattern(q, p.node_size(), static_cast<std::uint8_t>(i));
            v.push_back(q);
        }
        EXPECT_TRUE(memkit::test::no_overlap(ranges_of(v, p.node_size())));
        for (std::size_t i = 0; i < v.size(); ++i)
            EXPECT_EQ(memkit::verify_pattern(v[i], p.node_size(), static_cast<std::uint8_t>(i)),
                      nullptr);
        EXPECT_THROW((void)p.allocate(8, p.node_alignment() * 2), memkit::invalid_alignment);
        for (void* q : v) p.deallocate(q, 24, align);
    }
}

TEST(GrowingPool, ReusesFreedNodesBeforeGrowing) {
    growing_pool p{32, 8, growing_pool_options{.first_chunk_nodes = 4}};
    std::vector<void*> v;
    for (int i = 0; i < 4; ++i) v.push_back(p.allocate());
    p.deallocate(v[1]);
    p.deallocate(v[2]);
    EXPECT_EQ(p.allocate(), v[2]);
    EXPECT_EQ(p.allocate(), v[1]);
    EXPECT_EQ(p.chunk_count(), 1u);
    for (void* q : v) p.deallocate(q);
    EXPECT_EQ(p.free_count(), 4u);
}

// --- stats and errors ---------------------------------------------------------------------------

TEST(GrowingPool, StatsAreExact) {
    chunk_log log;
    logged_pool p{32, 8, growing_pool_options{.first_chunk_nodes = 4, .growth_factor = 2.0},
                  logging_parent{log}};
    std::vector<void*> v;
    for (int i = 0; i < 6; ++i) v.push_back(p.allocate(20, 8));
    auto s = p.stats();
    EXPECT_EQ(s.bytes_in_use, 6u * 32u);
    EXPECT_EQ(s.peak_bytes, 6u * 32u);
    EXPECT_EQ(s.allocations, 6u);
    EXPECT_EQ(s.deallocations, 0u);
    EXPECT_EQ(s.capacity, log.sizes[0] + log.sizes[1]);
    for (int i = 0; i < 4; ++i) {
        p.deallocate(v.back());
        v.pop_back();
    }
    s = p.stats();
    EXPECT_EQ(s.bytes_in_use, 2u * 32u);
    EXPECT_EQ(s.peak_bytes, 6u * 32u);
    EXPECT_EQ(s.deallocations, 4u);
    p.reset();
    s = p.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.deallocations, 6u);
    p.shrink_to_fit();
    EXPECT_EQ(p.stats().capacity, 0u);
    EXPECT_TRUE(log.live.empty());
}

TEST(GrowingPool, BadRequestsThrowTheExactError) {
    growing_pool p{40, 16};
    EXPECT_THROW((void)p.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)p.allocate(49), memkit::bad_size);
    EXPECT_THROW((void)p.allocate(8, 0), memkit::invalid_alignment);
    EXPECT_THROW((void)p.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)p.allocate(8, 32), memkit::invalid_alignment);
    try {
        (void)p.allocate(100, 8);
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_EQ(e.size(), 100u);
        EXPECT_EQ(e.max_size(), 48u);
    }
    EXPECT_EQ(p.try_allocate(0), nullptr);
    EXPECT_EQ(p.try_allocate(49), nullptr);
    EXPECT_EQ(p.try_allocate(8, 32), nullptr);
    EXPECT_EQ(p.chunk_count(), 0u) << "a bad request takes no chunk";
    EXPECT_EQ(p.stats(), memkit::allocator_stats{});
}

TEST(GrowingPool, ForeignPointersAndDoubleFreesAreReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    growing_pool p{32, 8};
    growing_pool other{32, 8};
    void* a = p.allocate();
    void* b = other.allocate();
    p.deallocate(b);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.last().pointer, b);
    p.deallocate(a);
    p.deallocate(a, 32, 8);
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_STREQ(rec.last().allocator, "memkit::pool");
    EXPECT_EQ(p.stats().deallocations, 1u);
    EXPECT_FALSE(p.owns(b));
    EXPECT_TRUE(p.owns(a));
    other.deallocate(b);
}

TEST(GrowingPool, MoveKeepsTheNodesAndTheGrowth) {
    growing_pool a{32, 8, growing_pool_options{.first_chunk_nodes = 2, .growth_factor = 2.0}};
    std::vector<void*> v;
    for (int i = 0; i < 5; ++i) {
        v.push_back(a.allocate());
        memkit::fill_pattern(v.back(), 32, static_cast<std::uint8_t>(i));
    }
    growing_pool b{std::move(a)};
    EXPECT_EQ(b.next_chunk_nodes(), 8u);
    EXPECT_EQ(b.size(), 5u);
    for (int i = 0; i < 5; ++i) {
        EXPECT_TRUE(b.owns(v[static_cast<std::size_t>(i)]));
        EXPECT_EQ(memkit::verify_pattern(v[static_cast<std::size_t>(i)], 32,
                                         static_cast<std::uint8_t>(i)),
                  nullptr);
    }
    EXPECT_EQ(a.next_chunk_nodes(), 2u); // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(a.chunk_count(), 0u);
    void* q = a.allocate();
    EXPECT_EQ(a.capacity(), 2u);
    a.deallocate(q);
    growing_pool c{16};
    c = std::move(b);
    EXPECT_EQ(c.size(), 5u);
    EXPECT_EQ(c.node_size(), 32u);
    for (void* x : v) c.deallocate(x);
}

// --- randomized -----------------------------------------------------------------------------

TEST(GrowingPool, RandomizedAgainstAShadowModel) {
    chunk_log log;
    logged_pool p{40, 8,
                  growing_pool_options{.first_chunk_nodes = 8, .growth_factor = 1.5,
                                       .max_chunk_nodes = 512, .max_nodes = 7000},
                  logging_parent{log}};
    const std::size_t ns = p.node_size();
    std::mt19937_64 rng(0x67726f77);
    std::unordered_map<void*, std::uint8_t> shadow;
    std::vector<void*> live;
    auto check_all = [&] {
        ASSERT_EQ(p.size(), live.size());
        ASSERT_EQ(p.stats().bytes_in_use, live.size() * ns);
        ASSERT_LE(p.capacity(), 7000u);
        ASSERT_TRUE(memkit::test::no_overlap(ranges_of(live, ns)));
        for (void* q : live) ASSERT_EQ(memkit::verify_pattern(q, ns, shadow.at(q)), nullptr);
        std::size_t held = 0;
        for (const auto& [ptr, n] : log.live) held += n;
        ASSERT_EQ(p.stats().capacity, held);
    };
    for (int op = 0; op < 1'000'000; ++op) {
        const std::uint64_t r = rng();
        const std::size_t target = ((op >> 16) & 1) ? 6500 : 1500;
        const bool grow = live.empty() || (r % (2 * target)) >= live.size();
        if (grow) {
            void* q = p.try_allocate(1 + (r >> 24) % ns, std::size_t{1} << ((r >> 40) % 4));
            if (q == nullptr) {
                ASSERT_EQ(p.capacity(), 7000u) << "only the cap makes it fail";
                ASSERT_EQ(p.size(), 7000u);
                continue;
            }
            const auto seed = static_cast<std::uint8_t>(r >> 56);
            memkit::fill_pattern(q, ns, seed);
            ASSERT_TRUE(shadow.emplace(q, seed).second);
            live.push_back(q);
        } else {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            void* q = live[i];
            ASSERT_EQ(memkit::verify_pattern(q, ns, shadow.at(q)), nullptr);
            shadow.erase(q);
            live[i] = live.back();
            live.pop_back();
            p.deallocate(q, 8);
        }
        if (op % 100'000 == 50'000) p.shrink_to_fit();
        if (op % 100'000 == 99'999) {
            check_all();
            if (HasFatalFailure()) return;
        }
    }
    check_all();
    for (void* q : live) p.deallocate(q);
    p.shrink_to_fit();
    EXPECT_TRUE(log.live.empty());
}

// --- standard containers ---------------------------------------------------------------------

TEST(GrowingPool, ServesPmrContainersThroughResource) {
    growing_pool p{64, alignof(std::max_align_t), growing_pool_options{.first_chunk_nodes = 16}};
    {
        memkit::resource r{p};
        std::pmr::list<int> l{&r};
        for (int i = 0; i < 1000; ++i) l.push_back(i);
        EXPECT_EQ(p.size(), 1000u);
        l.remove_if([](int x) { return x % 3 == 0; });
        EXPECT_EQ(p.size(), 666u);
        std::pmr::map<int, long> m{&r};
        for (int i = 0; i < 50; ++i) m.emplace(i, i * 2L);
        EXPECT_EQ(m.at(21), 42);
        EXPECT_EQ(p.size(), 716u);
    }
    EXPECT_EQ(p.size(), 0u);
}

TEST(GrowingPool, ServesStdContainersThroughStdAllocator) {
    growing_pool p{48, 16};
    {
        std::set<int, std::less<>, memkit::std_allocator<int, growing_pool>> s{p};
        for (int i = 0; i < 300; ++i) s.insert(i % 100);
        EXPECT_EQ(s.size(), 100u);
        EXPECT_EQ(p.size(), 100u);
        EXPECT_EQ(*s.rbegin(), 99);
    }
    EXPECT_EQ(p.size(), 0u);
}

} // namespace
