#include "memkit/compose/budgeted.hpp"

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

#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/pool_collection.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/compose/synchronized.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"
#include "support/tracker.hpp"

namespace {

using memkit::budgeted;
using memkit::local_budget;
using memkit::system_allocator;

using memkit::test::tracker;

using limited = budgeted<tracker<>>;
using limited_system = budgeted<system_allocator>;

// A budget source shared by several allocators (a stand-in for a hierarchical budget): the limit
// and the counter live outside, each handle also keeps what it charged.
struct shared_pool_budget {
    std::size_t limit = 0;
    std::size_t used = 0;
};

class shared_budget {
public:
    static constexpr bool is_thread_safe = true; // claimed only to test the trait
    explicit shared_budget(shared_pool_budget& b) noexcept : b_(&b) {}
    bool try_charge(std::size_t n) noexcept {
        if (n > remaining()) return false;
        b_->used += n;
        mine_ += n;
        return true;
    }
    void refund(std::size_t n) noexcept {
        b_->used -= n;
        mine_ -= n;
    }
    void refund_all() noexcept { refund(mine_); }
    [[nodiscard]] std::size_t used() const noexcept { return b_->used; }
    [[nodiscard]] std::size_t limit() const noexcept { return b_->limit; }
    [[nodiscard]] std::size_t remaining() const noexcept {
        return b_->used < b_->limit ? b_->limit - b_->used : 0;
    }

private:
    shared_pool_budget* b_;
    std::size_t mine_ = 0;
};

static_assert(memkit::budget_source<local_budget>);
static_assert(memkit::budget_source<shared_budget>);
static_assert(!memkit::budget_source<int>);
static_assert(memkit::allocator<limited>);
static_assert(memkit::owning_allocator<limited>);
static_assert(memkit::allocator<limited_system>);
static_assert(!memkit::owning_allocator<limited_system>);
static_assert(memkit::allocator_traits<limited>::has_reset);
static_assert(memkit::allocator_traits<limited>::has_stats);
static_assert(!memkit::allocator_traits<limited_system>::has_reset);
static_assert(!memkit::allocator_traits<limited_system>::has_stats);
static_assert(memkit::allocator_traits<limited_system>::has_max_size);
static_assert(limited_system::max_alignment == system_allocator::max_alignment);
static_assert(!limited_system::is_thread_safe, "local_budget is a plain counter");
static_assert(budgeted<system_allocator, shared_budget>::is_thread_safe);
static_assert(!budgeted<memkit::pool, shared_budget>::is_thread_safe);
static_assert(std::string_view{limited::name} == "memkit::budgeted");
static_assert(sizeof(limited_system) == sizeof(local_budget), "the allocator costs no space");

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

struct block {
    void* p;
    std::size_t size;
    std::size_t align;
    std::uint8_t seed;
};

TEST(Budgeted, ChargesRequestedBytesAndGivesThemBack) {
    limited a{1000};
    EXPECT_EQ(a.limit(), 1000u);
    EXPECT_EQ(a.remaining(), 1000u);
    void* p = a.allocate(300);
    void* q = a.allocate(200, 64);
    EXPECT_EQ(a.used(), 500u);
    EXPECT_EQ(a.remaining(), 500u);
    a.deallocate(p, 300);
    EXPECT_EQ(a.used(), 200u);
    void* r = a.allocate(800);
    EXPECT_EQ(a.remaining(), 0u);
    EXPECT_EQ(a.get().live(), 2u);
    a.deallocate(r, 800);
    a.deallocate(q, 200, 64);
    EXPECT_EQ(a.used(), 0u);
}

TEST(Budgeted, ExceedingTheLimitThrowsBudgetExceededWithTheNumbers) {
    limited a{1000};
    void* p = a.allocate(600);
    try {
        (void)a.allocate(500);
        FAIL() << "no exception";
    } catch (const memkit::budget_exceeded& e) {
        EXPECT_STREQ(e.allocator(), "memkit::budgeted");
        EXPECT_EQ(e.requested(), 500u);
        EXPECT_EQ(e.remaining(), 400u);
        EXPECT_EQ(e.used(), 600u);
        EXPECT_EQ(e.limit(), 1000u);
        EXPECT_EQ(e.code(), memkit::errc::budget_exceeded);
    }
    EXPECT_THROW((void)a.allocate(401), memkit::out_of_memory) << "it is an out_of_memory";
    EXPECT_THROW((void)a.allocate(401), std::bad_alloc);
    EXPECT_EQ(a.try_allocate(401), nullptr);
    EXPECT_EQ(a.used(), 600u) << "refused requests charge nothing";
    EXPECT_EQ(a.get().live(), 1u) << "A is not asked";
    void* q = a.allocate(400); // exactly the rest
    EXPECT_EQ(a.remaining(), 0u);
    a.deallocate(q, 400);
    a.deallocate(p, 600);
}

TEST(Budgeted, InvalidRequestsAreReportedAsSuchEvenOverBudget) {
    limited a{100, tracker<>{1000}};
    EXPECT_THROW((void)a.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)a.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)a.allocate(500, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)a.allocate(8, 8192), memkit::invalid_alignment);
    try {
        (void)a.allocate(5000);
        FAIL() << "no exception";
    } catch (const memkit::bad_size& e) {
        EXPECT_EQ(e.max_size(), 1000u) << "A's limit";
    }
    EXPECT_THROW((void)a.allocate(500), memkit::budget_exceeded);
    EXPECT_EQ(a.used(), 0u);
}

TEST(Budgeted, AFailingAllocatorGivesTheChargeBack) {
    budgeted<memkit::pool> a{1 << 20, memkit::pool{32, 16, memkit::pool_options{.max_nodes = 2}}};
    void* p = a.allocate(32);
    void* q = a.allocate(16);
    EXPECT_THROW((void)a.allocate(8), memkit::out_of_memory);
    EXPECT_EQ(a.try_allocate(8), nullptr);
    try {
        (void)a.allocate(8);
    } catch (const memkit::budget_exceeded&) {
        FAIL() << "the pool's error, not the budget's";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_STREQ(e.allocator(), "memkit::pool");
    }
    EXPECT_EQ(a.used(), 48u);
    a.deallocate(p, 32);
    a.deallocate(q, 16);
    EXPECT_EQ(a.used(), 0u);
}

TEST(Budgeted, SetLimitTakesEffectAtOnce) {
    limited_system a{1000};
    void* p = a.allocate(800);
    a.set_limit(500); // below what is in use
    EXPECT_EQ(a.limit(), 500u);
    EXPECT_EQ(a.remaining(), 0u);
    EXPECT_THROW((void)a.allocate(1), memkit::budget_exceeded);
    a.deallocate(p, 800);
    EXPECT_EQ(a.remaining(), 500u);
    void* q = a.allocate(500);
    a.set_limit(std::numeric_limits<std::size_t>::max());
    void* r = a.allocate(1 << 20);
    a.deallocate(r, 1 << 20);
    a.deallocate(q, 500);
    EXPECT_EQ(a.used(), 0u);
}

TEST(Budgeted, ForwardsOwnsResetStatsAndMaxSize) {
    limited a{10000, tracker<>{4096}};
    void* p = a.allocate(100);
    void* q = a.allocate(200);
    int local = 0;
    EXPECT_TRUE(a.owns(p));
    EXPECT_FALSE(a.owns(&local));
    EXPECT_EQ(a.stats().bytes_in_use, 300u);
    EXPECT_EQ(a.stats().allocations, 2u);
    EXPECT_EQ(a.max_size(), 4096u);
    a.reset();
    EXPECT_EQ(a.used(), 0u) << "every charge is given back";
    EXPECT_EQ(a.get().live(), 0u);
    EXPECT_EQ(a.remaining(), 10000u);
    (void)q;
}

TEST(Budgeted, ASharedBudgetSourceLimitsSeveralAllocators) {
    shared_pool_budget pool_budget{1000, 0};
    budgeted<system_allocator, shared_budget> a{shared_budget{pool_budget}, {}};
    budgeted<system_allocator, shared_budget> b{shared_budget{pool_budget}, {}};
    void* p = a.allocate(600);
    EXPECT_EQ(b.remaining(), 400u);
    EXPECT_THROW((void)b.allocate(500), memkit::budget_exceeded);
    void* q = b.allocate(400);
    EXPECT_EQ(a.remaining(), 0u);
    a.deallocate(p, 600);
    EXPECT_EQ(b.remaining(), 600u);
    b.deallocate(q, 400);
    EXPECT_EQ(pool_budget.used, 0u);
}

TEST(Budgeted, EveryAlignmentWithContentsAndNoOverlap) {
    budgeted<memkit::pool_collection> a{
        1 << 20, std::in_place,
        memkit::pool_collection_options{.large = memkit::large_policy::parent}};
    std::vector<block> live;
    std::uint8_t seed = 0;
    std::size_t bytes = 0;
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t size : {1u, 100u, 256u, 257u, 3000u}) {
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            memkit::fill_pattern(p, size, ++seed);
            live.push_back({p, size, align, seed});
            bytes += size;
        }
    }
    EXPECT_EQ(a.used(), bytes);
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (const block& b : live) ranges.emplace_back(addr(b.p), b.size);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (const block& b : live) EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
    for (const block& b : live) a.deallocate(b.p, b.size, b.align);
    EXPECT_EQ(a.used(), 0u);
}

TEST(Budgeted, RandomizedAgainstAShadowModel) {
    limited a{200'000};
    std::mt19937_64 rng(0x62756467);
    std::vector<block> live;
    std::size_t used = 0;
    std::size_t limit = 200'000;
    std::uint64_t refused = 0;
    auto check_all = [&] {
        ASSERT_EQ(a.used(), used);
        ASSERT_EQ(a.stats().bytes_in_use, used);
        ASSERT_EQ(a.get().live(), live.size());
        std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
        for (const block& b : live) {
            ranges.emplace_back(addr(b.p), b.size);
            ASSERT_EQ(memkit::verify_pattern(b.p, std::min<std::size_t>(b.size, 32), b.seed),
                      nullptr);
        }
        ASSERT_TRUE(memkit::test::no_overlap(ranges));
    };
    for (int op = 0; op < 1'000'000; ++op) {
        const std::uint64_t r = rng();
        // Drift towards ~2000 live blocks of ~100 bytes: the budget refuses some of them.
        const bool grow = live.empty() || (r % 4000) >= live.size();
        if (grow) {
            const std::size_t size = 1 + (r >> 8) % 200;
            const std::size_t align = std::size_t{1} << ((r >> 34) % 7);
            void* p = a.try_allocate(size, align);
            if (p == nullptr) {
                ASSERT_GT(used + size, limit) << "refused only when over budget";
                ++refused;
                continue;
            }
            ASSERT_LE(used + size, limit);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            const auto seed = static_cast<std::uint8_t>(r >> 56);
            memkit::fill_pattern(p, std::min<std::size_t>(size, 32), seed);
            live.push_back({p, size, align, seed});
            used += size;
        } else {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            const block b = live[i];
            ASSERT_EQ(memkit::verify_pattern(b.p, std::min<std::size_t>(b.size, 32), b.seed),
                      nullptr);
            a.deallocate(b.p, b.size, b.align);
            used -= b.size;
            live[i] = live.back();
            live.pop_back();
        }
        if (op % 100'000 == 99'999) {
            check_all();
            if (HasFatalFailure()) return;
        }
        if (op == 500'000) {
            limit = 150'000; // below what is in use: refusals until enough is freed
            a.set_limit(limit);
        }
    }
    check_all();
    EXPECT_GT(refused, 0u) << "the budget was reached";
    for (const block& b : live) a.deallocate(b.p, b.size, b.align);
    EXPECT_EQ(a.used(), 0u);
}

TEST(Budgeted, ServesPmrContainersThroughResourceUntilTheBudgetRunsOut) {
    limited_system a{64 * 1024};
    memkit::resource r{a};
    std::pmr::vector<std::uint64_t> v{&r};
    EXPECT_THROW(
        {
            for (int i = 0; i < 100'000; ++i) v.push_back(static_cast<std::uint64_t>(i));
        },
        memkit::budget_exceeded);
    EXPECT_EQ(v.size(), 4096u) << "the vector keeps its elements (strong guarantee)";
    EXPECT_EQ(a.used(), 4096u * sizeof(std::uint64_t));
    std::pmr::list<int> l{&r};
    EXPECT_THROW(
        {
            for (int i = 0; i < 100'000; ++i) l.push_back(i);
        },
        std::bad_alloc);
    EXPECT_GT(l.size(), 500u);
    l.clear();
    v.clear();
    v.shrink_to_fit();
    EXPECT_EQ(a.used(), 0u);
}

TEST(Budgeted, ServesStdContainersThroughStdAllocator) {
    limited_system a{10'000};
    std::vector<int, memkit::std_allocator<int, limited_system>> v{a};
    v.reserve(1000);
    EXPECT_EQ(a.used(), 4000u);
    EXPECT_THROW(v.reserve(3000), memkit::budget_exceeded) << "4000 + 12000 > 10000";
    v.clear();
    v.shrink_to_fit();
    EXPECT_EQ(a.used(), 0u);
    v.reserve(2500);
    EXPECT_EQ(a.remaining(), 0u);
}

} // namespace
