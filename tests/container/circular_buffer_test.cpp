#include "memkit/container/circular_buffer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <limits>
#include <memory>
#include <memory_resource>
#include <numeric>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/container_support.hpp"
#include "support/test_support.hpp"

#if MEMKIT_HAS_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace {

using memkit::buffer_full;
using memkit::circular_buffer;
using memkit::full_policy;
using memkit::test::allocator_state;
using memkit::test::counted;
using memkit::test::counted_nothrow_move;
using memkit::test::counted_state;
using memkit::test::failing_allocator;
using memkit::test::for_each_failure_point;
using memkit::test::live_object_guard;
using memkit::test::violation_recorder;

using int_buffer = circular_buffer<int>;

// ---- conformance -------------------------------------------------------------------------

static_assert(std::random_access_iterator<int_buffer::iterator>);
static_assert(std::random_access_iterator<int_buffer::const_iterator>);
static_assert(std::random_access_iterator<int_buffer::reverse_iterator>);
static_assert(std::sized_sentinel_for<int_buffer::const_iterator, int_buffer::iterator>);
static_assert(std::ranges::random_access_range<int_buffer>);
static_assert(std::ranges::random_access_range<const int_buffer>);
static_assert(std::ranges::sized_range<int_buffer>);
static_assert(std::ranges::common_range<int_buffer>);
static_assert(std::is_convertible_v<int_buffer::iterator, int_buffer::const_iterator>);
static_assert(!std::is_convertible_v<int_buffer::const_iterator, int_buffer::iterator>);
static_assert(std::is_same_v<std::ranges::range_reference_t<const int_buffer>, const int&>);
static_assert(std::is_nothrow_move_constructible_v<int_buffer>);
static_assert(std::is_nothrow_move_assignable_v<int_buffer>);
static_assert(std::is_nothrow_swappable_v<int_buffer>);
static_assert(std::is_base_of_v<std::length_error, buffer_full>);
static_assert(std::is_same_v<memkit::pmr::circular_buffer<int>,
                             circular_buffer<int, std::pmr::polymorphic_allocator<int>>>);

template <class Buffer>
std::vector<int> contents(const Buffer& b) {
    std::vector<int> v;
    for (const auto& x : b) v.push_back(static_cast<int>(x));
    return v;
}

template <class Buffer>
std::vector<int> span_contents(const Buffer& b) {
    std::vector<int> v;
    auto [first, second] = b.as_spans();
    for (const auto& x : first) v.push_back(static_cast<int>(x));
    for (const auto& x : second) v.push_back(static_cast<int>(x));
    return v;
}

// A buffer of `cap` holding `size` values 1..size whose front sits at physical slot `head`.
template <class Buffer>
Buffer rotated(std::size_t cap, std::size_t head, std::size_t size) {
    Buffer b(cap, full_policy::reject);
    for (std::size_t i = 0; i < head; ++i) b.push_back(0);
    for (std::size_t i = 0; i < head; ++i) b.pop_front();
    for (std::size_t i = 0; i < size; ++i) b.push_back(static_cast<int>(i + 1));
    return b;
}

std::vector<int> iota_vec(int from, int to) {
    std::vector<int> v;
    for (int i = from; i <= to; ++i) v.push_back(i);
    return v;
}

// ---- basics ------------------------------------------------------------------------------

TEST(CircularBuffer, DefaultIsEmptyWithZeroCapacity) {
    int_buffer b;
    EXPECT_TRUE(b.empty());
    EXPECT_TRUE(b.full());
    EXPECT_EQ(b.capacity(), 0u);
    EXPECT_EQ(b.begin(), b.end());
    EXPECT_THROW(b.push_back(1), buffer_full);
    EXPECT_THROW(b.push_front(1), buffer_full);
    EXPECT_FALSE(b.try_push_back(1));
    EXPECT_TRUE(b.as_spans().first.empty());
    EXPECT_TRUE(b.linearize().empty());
}

TEST(CircularBuffer, FifoAtBothEnds) {
    int_buffer b(5);
    EXPECT_EQ(b.capacity(), 5u);
    EXPECT_EQ(b.policy(), full_policy::overwrite);
    b.push_back(1);
    b.push_back(2);
    b.push_front(0);
    EXPECT_EQ(b.emplace_back(3), 3);
    EXPECT_EQ(b.emplace_front(-1), -1);
    EXPECT_TRUE(b.full());
    EXPECT_EQ(contents(b), (std::vector<int>{-1, 0, 1, 2, 3}));
    EXPECT_EQ(b.front(), -1);
    EXPECT_EQ(b.back(), 3);
    EXPECT_EQ(b[2], 1);
    EXPECT_EQ(b.at(4), 3);
    b.pop_front();
    b.pop_back();
    EXPECT_EQ(contents(b), (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(b.size(), 3u);
    b.clear();
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(b.capacity(), 5u);
}

TEST(CircularBuffer, AtThrowsOutOfRange) {
    int_buffer b(4, {1, 2});
    EXPECT_THROW((void)b.at(2), std::out_of_range);
    EXPECT_THROW((void)std::as_const(b).at(100), std::out_of_range);
    EXPECT_EQ(std::as_const(b).at(1), 2);
}

TEST(CircularBuffer, CapacityAboveMaxSizeThrowsLengthError) {
    EXPECT_THROW((void)int_buffer(std::numeric_limits<std::size_t>::max()), std::length_error);
    int_buffer b;
    EXPECT_LE(b.max_size(), std::numeric_limits<std::size_t>::max() / sizeof(int));
    EXPECT_THROW((void)int_buffer(b.max_size() + 1), std::length_error);
}

TEST(CircularBuffer, WrapsAroundWithAnyCapacity) {
    for (std::size_t cap : {1u, 2u, 3u, 5u, 7u, 10u, 1000u}) {
        int_buffer b(cap);
        std::deque<int> model;
        for (int i = 0; i < 3000; ++i) {
            b.push_back(i);
            model.push_back(i);
            if (model.size() > cap) model.pop_front();
            if (i % 3 == 0) {
                b.pop_front();
                model.pop_front();
            }
        }
        ASSERT_TRUE(std::ranges::equal(b, model)) << "capacity " << cap;
    }
}

// ---- full policies -----------------------------------------------------------------------

TEST(CircularBuffer, OverwriteDropsTheOtherEnd) {
    int_buffer b(3, {1, 2, 3});
    b.push_back(4); // drops 1
    EXPECT_EQ(contents(b), (std::vector<int>{2, 3, 4}));
    b.push_front(0); // drops 4
    EXPECT_EQ(contents(b), (std::vector<int>{0, 2, 3}));
    EXPECT_EQ(b.emplace_back(9), 9);
    EXPECT_EQ(contents(b), (std::vector<int>{2, 3, 9}));
    EXPECT_EQ(b.emplace_front(8), 8);
    EXPECT_EQ(contents(b), (std::vector<int>{8, 2, 3}));
    EXPECT_EQ(b.size(), 3u);
}

TEST(CircularBuffer, OverwriteWithAnAliasOfAnElement) {
    circular_buffer<std::string> b(3, {"a", "b", "c"});
    b.push_back(b.front()); // the front is both the dropped element and the value
    EXPECT_EQ(std::vector<std::string>(b.begin(), b.end()),
              (std::vector<std::string>{"b", "c", "a"}));
    b.push_back(b.back());
    EXPECT_EQ(std::vector<std::string>(b.begin(), b.end()),
              (std::vector<std::string>{"c", "a", "a"}));
    b.push_front(b.back());
    EXPECT_EQ(std::vector<std::string>(b.begin(), b.end()),
              (std::vector<std::string>{"a", "c", "a"}));
}

TEST(CircularBuffer, InitializerListKeepsTheNewestWithOverwrite) {
    int_buffer b(3, {1, 2, 3, 4, 5});
    EXPECT_EQ(contents(b), (std::vector<int>{3, 4, 5}));
    EXPECT_THROW(int_buffer(3, {1, 2, 3, 4}, full_policy::reject), buffer_full);
}

TEST(CircularBuffer, RejectThrowsTypedErrorAndKeepsEverything) {
    int_buffer b(2, {1, 2}, full_policy::reject);
    try {
        b.push_back(3);
        FAIL() << "push_back into a full reject buffer must throw";
    } catch (const buffer_full& e) {
        EXPECT_EQ(e.capacity(), 2u);
        EXPECT_EQ(e.code(), memkit::errc::limit_exceeded);
        EXPECT_NE(std::string(e.what()).find("full"), std::string::npos);
    }
    EXPECT_THROW(b.push_front(0), buffer_full);
    EXPECT_THROW(b.emplace_back(0), buffer_full);
    EXPECT_THROW(b.emplace_front(0), buffer_full);
    EXPECT_EQ(contents(b), (std::vector<int>{1, 2}));
    b.set_policy(full_policy::overwrite);
    b.push_back(3);
    EXPECT_EQ(contents(b), (std::vector<int>{2, 3}));
}

TEST(CircularBuffer, TryPushNeverOverwritesAndNeverConsumesARejectedValue) {
    for (full_policy p : {full_policy::overwrite, full_policy::reject}) {
        circular_buffer<std::string> b(2, p);
        std::string a = "first", c = "third";
        EXPECT_TRUE(b.try_push_back(std::move(a)));
        EXPECT_TRUE(b.try_push_front(std::string("zeroth")));
        EXPECT_FALSE(b.try_push_back(std::move(c)));
        EXPECT_EQ(c, "third") << "a rejected rvalue must not be moved from";
        EXPECT_FALSE(b.try_push_front(std::move(c)));
        EXPECT_EQ(c, "third");
        EXPECT_FALSE(b.try_emplace_back(5, 'x'));
        EXPECT_FALSE(b.try_emplace_front(5, 'x'));
        EXPECT_EQ(b.front(), "zeroth");
        EXPECT_EQ(b.back(), "first");
    }
}

TEST(CircularBuffer, RejectedPushOfMoveOnlyValueKeepsIt) {
    circular_buffer<std::unique_ptr<int>> b(1, full_policy::reject);
    b.push_back(std::make_unique<int>(1));
    auto p = std::make_unique<int>(2);
    EXPECT_THROW(b.push_back(std::move(p)), buffer_full);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 2);
    EXPECT_FALSE(b.try_push_back(std::move(p)));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*b.front(), 1);
}

// A type without assignment: the overwrite path constructs in place instead.
struct const_member {
    const int v;
    explicit const_member(int x) : v(x) {}
};

TEST(CircularBuffer, OverwriteWorksForNonAssignableTypes) {
    circular_buffer<const_member> b(2);
    b.emplace_back(1);
    b.emplace_back(2);
    b.emplace_back(3);
    EXPECT_EQ(b.front().v, 2);
    EXPECT_EQ(b.back().v, 3);
    b.emplace_front(0);
    EXPECT_EQ(b.front().v, 0);
    EXPECT_EQ(b.back().v, 2);
}

// ---- spans, linearize, capacity changes --------------------------------------------------

TEST(CircularBuffer, AsSpansGivesTheOlderPartFirst) {
    auto b = rotated<int_buffer>(5, 3, 4); // slots: [3 4 _ 1 2]
    auto [first, second] = b.as_spans();
    EXPECT_EQ(std::vector<int>(first.begin(), first.end()), (std::vector<int>{1, 2}));
    EXPECT_EQ(std::vector<int>(second.begin(), second.end()), (std::vector<int>{3, 4}));
    EXPECT_FALSE(b.is_linearized());
    EXPECT_EQ(first.data() + 2, b.as_spans().first.data() + first.size());
    const auto& cb = b;
    static_assert(std::is_same_v<decltype(cb.as_spans().first), std::span<const int>>);
    EXPECT_EQ(span_contents(cb), iota_vec(1, 4));
}

template <class T>
void check_linearize_everywhere() {
    live_object_guard guard;
    for (std::size_t cap = 1; cap <= 7; ++cap) {
        for (std::size_t head = 0; head < cap; ++head) {
            for (std::size_t size = 0; size <= cap; ++size) {
                auto b = rotated<circular_buffer<T>>(cap, head, size);
                const auto before = contents(b);
                auto s = b.linearize();
                ASSERT_EQ(s.size(), size);
                ASSERT_TRUE(b.is_linearized());
                ASSERT_TRUE(b.as_spans().second.empty());
                ASSERT_EQ(contents(b), before) << cap << " " << head << " " << size;
                std::vector<int> in_span;
                for (const auto& x : s) in_span.push_back(static_cast<int>(x));
                ASSERT_EQ(in_span, before);
                // Still a working ring afterwards.
                b.set_policy(full_policy::overwrite);
                b.push_back(100);
                ASSERT_EQ(static_cast<int>(b.back()), 100);
                b.push_front(-100);
                ASSERT_EQ(static_cast<int>(b.front()), -100);
                ASSERT_EQ(b.size(), std::min(size + 2, cap));
            }
        }
    }
}

TEST(CircularBuffer, LinearizeInPlaceForNothrowTypes) {
    check_linearize_everywhere<int>();
    check_linearize_everywhere<counted_nothrow_move>();
}

TEST(CircularBuffer, LinearizeByCopyForThrowingMoves) { check_linearize_everywhere<counted>(); }

TEST(CircularBuffer, LinearizeKeepsStringsIntact) {
    circular_buffer<std::string> b(4);
    for (int i = 0; i < 7; ++i) b.push_back(std::string(40, static_cast<char>('a' + i)));
    b.pop_back(); // [d e f] wrapping
    auto s = b.linearize();
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(s[0], std::string(40, 'd'));
    EXPECT_EQ(s[2], std::string(40, 'f'));
}

TEST(CircularBuffer, SetCapacityKeepsTheFrontAndRsetCapacityTheBack) {
    auto b = rotated<int_buffer>(5, 2, 5);
    b.set_capacity(3);
    EXPECT_EQ(b.capacity(), 3u);
    EXPECT_EQ(contents(b), (std::vector<int>{1, 2, 3}));
    auto c = rotated<int_buffer>(5, 4, 5);
    c.rset_capacity(2);
    EXPECT_EQ(contents(c), (std::vector<int>{4, 5}));
    c.set_capacity(10);
    EXPECT_EQ(c.capacity(), 10u);
    EXPECT_EQ(contents(c), (std::vector<int>{4, 5}));
    for (int i = 6; i <= 13; ++i) c.push_back(i);
    EXPECT_EQ(contents(c), iota_vec(4, 13));
    c.set_capacity(0);
    EXPECT_TRUE(c.empty());
    EXPECT_EQ(c.capacity(), 0u);
}

// ---- iterators and algorithms ------------------------------------------------------------

TEST(CircularBuffer, IteratorsWorkWithRangesAndAlgorithms) {
    auto b = rotated<int_buffer>(9, 6, 8); // wraps
    std::ranges::reverse(b);
    EXPECT_EQ(contents(b), (std::vector<int>{8, 7, 6, 5, 4, 3, 2, 1}));
    std::ranges::sort(b);
    EXPECT_EQ(contents(b), iota_vec(1, 8));
    EXPECT_EQ(*std::ranges::lower_bound(b, 5), 5);
    EXPECT_EQ(std::accumulate(b.begin(), b.end(), 0), 36);
    EXPECT_EQ(std::vector<int>(b.rbegin(), b.rend()), (std::vector<int>{8, 7, 6, 5, 4, 3, 2, 1}));
    auto it = b.begin();
    EXPECT_EQ(it[3], 4);
    EXPECT_EQ(*(it + 5), 6);
    EXPECT_EQ(*(5 + it), 6);
    EXPECT_EQ(b.end() - b.begin(), 8);
    EXPECT_LT(b.cbegin(), b.end());
    it += 7;
    EXPECT_EQ(*it, 8);
    it -= 7;
    EXPECT_EQ(*it, 1);
    EXPECT_EQ(std::ranges::count_if(b, [](int x) { return x % 2 == 0; }), 4);
    EXPECT_EQ(std::ranges::distance(b), 8);
}

TEST(CircularBuffer, EraseMovesTheShorterSide) {
    int_buffer b = rotated<int_buffer>(10, 7, 9);
    auto it = b.erase(b.begin() + 1); // near the front
    EXPECT_EQ(*it, 3);
    EXPECT_EQ(contents(b), (std::vector<int>{1, 3, 4, 5, 6, 7, 8, 9}));
    it = b.erase(b.begin() + 5, b.begin() + 7); // near the back
    EXPECT_EQ(*it, 9);
    EXPECT_EQ(contents(b), (std::vector<int>{1, 3, 4, 5, 6, 9}));
    it = b.erase(b.begin(), b.end());
    EXPECT_EQ(it, b.end());
    EXPECT_TRUE(b.empty());
}

// ---- comparisons, copy, move, swap ---------------------------------------------------------

TEST(CircularBuffer, ComparesElementsOnly) {
    int_buffer a(3, {1, 2, 3});
    auto b = rotated<int_buffer>(8, 5, 3);
    EXPECT_EQ(a, b);
    b.push_back(0);
    EXPECT_NE(a, b);
    EXPECT_LT(a, b);
    int_buffer c(3, {1, 2, 4});
    EXPECT_LT(a, c);
    EXPECT_EQ(a <=> c, std::strong_ordering::less);
    EXPECT_GT(c, b);
}

TEST(CircularBuffer, CopyAndMoveCarryCapacityPolicyAndContents) {
    auto a = rotated<int_buffer>(6, 4, 5);
    a.set_policy(full_policy::reject);
    int_buffer c(a);
    EXPECT_EQ(c, a);
    EXPECT_EQ(c.capacity(), 6u);
    EXPECT_EQ(c.policy(), full_policy::reject);
    c.push_back(6);
    EXPECT_EQ(a.size(), 5u);

    int_buffer d(2);
    d = a;
    EXPECT_EQ(d, a);
    EXPECT_EQ(d.capacity(), 6u);
    EXPECT_EQ(d.policy(), full_policy::reject);

    int_buffer m(std::move(c));
    EXPECT_EQ(contents(m), iota_vec(1, 6));
    EXPECT_EQ(c.capacity(), 0u); // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_TRUE(c.empty());
    d = std::move(m);
    EXPECT_EQ(contents(d), iota_vec(1, 6));
    const int_buffer& alias = d;
    d = alias; // self-assignment is a no-op
    EXPECT_EQ(contents(d), iota_vec(1, 6));

    swap(a, d);
    EXPECT_EQ(contents(a), iota_vec(1, 6));
    EXPECT_EQ(contents(d), iota_vec(1, 5));
}

// ---- allocators ----------------------------------------------------------------------------

TEST(CircularBuffer, UsesAMemkitArenaThroughStdAllocator) {
    memkit::arena a;
    using alloc = memkit::std_allocator<int, memkit::arena>;
    circular_buffer<int, alloc> b(100, full_policy::overwrite, alloc{a});
    for (int i = 0; i < 250; ++i) b.push_back(i);
    EXPECT_EQ(b.front(), 150);
    EXPECT_TRUE(a.owns(&b.front()));
    EXPECT_EQ(&b.get_allocator().get(), &a);
    auto copy = b;
    EXPECT_TRUE(a.owns(&copy.back()));
    EXPECT_EQ(copy, b);
}

TEST(CircularBuffer, PmrElementsGetTheBuffersResource) {
    std::pmr::monotonic_buffer_resource res;
    memkit::pmr::circular_buffer<std::pmr::string> b(4, full_policy::overwrite, &res);
    b.emplace_back("a string long enough to need the heap, not the small buffer");
    b.push_back(std::pmr::string("another long string that is not a small string", &res));
    EXPECT_EQ(b.front().get_allocator().resource(), &res);
    EXPECT_EQ(b.back().get_allocator().resource(), &res);
    EXPECT_EQ(b.get_allocator().resource(), &res);
}

template <bool P>
using fail_alloc = failing_allocator<counted, P, P, P>;

TEST(CircularBuffer, CopyAssignmentPropagatesOnlyWhenTold) {
    live_object_guard guard;
    {
        circular_buffer<counted, fail_alloc<true>> src(3, full_policy::overwrite,
                                                       fail_alloc<true>{});
        src.push_back(1);
        circular_buffer<counted, fail_alloc<true>> dst(1, full_policy::overwrite,
                                                       fail_alloc<true>{});
        dst = src;
        EXPECT_EQ(dst.get_allocator(), src.get_allocator());
        EXPECT_EQ(src.get_allocator().state().live_blocks, 2);
    }
    {
        fail_alloc<false> sa, da;
        circular_buffer<counted, fail_alloc<false>> src(3, full_policy::overwrite, sa);
        src.push_back(1);
        circular_buffer<counted, fail_alloc<false>> dst(1, full_policy::overwrite, da);
        dst = src;
        EXPECT_EQ(dst.get_allocator(), da);
        EXPECT_EQ(contents(dst), std::vector<int>{1});
        EXPECT_EQ(sa.state().live_blocks, 1);
        EXPECT_EQ(da.state().live_blocks, 1);
    }
}

TEST(CircularBuffer, MoveAssignmentWithUnequalAllocators) {
    live_object_guard guard;
    fail_alloc<false> sa, da;
    {
        circular_buffer<counted, fail_alloc<false>> src(4, full_policy::reject, sa);
        for (int i = 1; i <= 4; ++i) src.push_back(i);
        src.pop_front();
        src.push_back(5); // wrapped
        circular_buffer<counted, fail_alloc<false>> dst(1, full_policy::overwrite, da);
        dst = std::move(src); // element-wise, into a block from da
        EXPECT_EQ(contents(dst), iota_vec(2, 5));
        EXPECT_EQ(dst.capacity(), 4u);
        EXPECT_EQ(dst.policy(), full_policy::reject);
        EXPECT_EQ(dst.get_allocator(), da);
        EXPECT_EQ(sa.state().live_blocks, 1); // src keeps its own block
        EXPECT_EQ(da.state().live_blocks, 1);
    }
    EXPECT_EQ(sa.state().live_blocks, 0);
    EXPECT_EQ(da.state().live_blocks, 0);
    {
        fail_alloc<true> pa, qa;
        circular_buffer<counted, fail_alloc<true>> src(4, full_policy::overwrite, pa);
        src.push_back(7);
        circular_buffer<counted, fail_alloc<true>> dst(2, full_policy::overwrite, qa);
        dst = std::move(src); // steals the block and the allocator
        EXPECT_EQ(dst.get_allocator(), pa);
        EXPECT_EQ(contents(dst), std::vector<int>{7});
        EXPECT_EQ(pa.state().live_blocks, 1);
        EXPECT_EQ(qa.state().live_blocks, 0);
    }
}

TEST(CircularBuffer, AllocatorExtendedMoveConstruction) {
    live_object_guard guard;
    fail_alloc<false> a, b;
    circular_buffer<counted, fail_alloc<false>> src(3, full_policy::overwrite, a);
    src.push_back(1);
    src.push_back(2);
    circular_buffer<counted, fail_alloc<false>> same(std::move(src), a);
    EXPECT_EQ(contents(same), (std::vector<int>{1, 2}));
    EXPECT_EQ(a.state().allocations, 1); // stolen
    circular_buffer<counted, fail_alloc<false>> other(std::move(same), b);
    EXPECT_EQ(contents(other), (std::vector<int>{1, 2}));
    EXPECT_EQ(b.state().live_blocks, 1);
    circular_buffer<counted, fail_alloc<false>> copy(other, a);
    EXPECT_EQ(copy.get_allocator(), a);
    EXPECT_EQ(copy, other);
}

TEST(CircularBuffer, SwapPropagatesWhenTold) {
    fail_alloc<true> pa, qa;
    circular_buffer<counted, fail_alloc<true>> x(2, full_policy::overwrite, pa);
    circular_buffer<counted, fail_alloc<true>> y(3, full_policy::reject, qa);
    x.push_back(1);
    y.swap(x);
    EXPECT_EQ(y.get_allocator(), pa);
    EXPECT_EQ(x.get_allocator(), qa);
    EXPECT_EQ(contents(y), std::vector<int>{1});
    EXPECT_EQ(x.capacity(), 3u);
    EXPECT_EQ(x.policy(), full_policy::reject);
}

TEST(CircularBuffer, SwapWithUnequalNonPropagatingAllocatorsIsReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    fail_alloc<false> pa, qa;
    circular_buffer<counted, fail_alloc<false>> x(2, full_policy::overwrite, pa);
    circular_buffer<counted, fail_alloc<false>> y(3, full_policy::overwrite, qa);
    x.swap(y);
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::invalid_argument);
    EXPECT_EQ(x.capacity(), 2u); // nothing exchanged
}

// ---- exception safety ------------------------------------------------------------------------

using counted_buffer = circular_buffer<counted, fail_alloc<false>>;

counted_buffer make_counted(std::size_t cap, std::size_t head, std::size_t size,
                            full_policy p = full_policy::overwrite) {
    counted_buffer b(cap, full_policy::reject, fail_alloc<false>{});
    for (std::size_t i = 0; i < head; ++i) b.push_back(0);
    for (std::size_t i = 0; i < head; ++i) b.pop_front();
    for (std::size_t i = 0; i < size; ++i) b.push_back(static_cast<int>(i + 1));
    b.set_policy(p);
    return b;
}

// Runs `op` on a fresh buffer at every copy/move failure point and checks that the buffer is
// unchanged after each failure.
template <class Op>
void expect_strong(std::size_t cap, std::size_t head, std::size_t size, full_policy p, Op op) {
    live_object_guard guard;
    auto b = make_counted(cap, head, size, p);
    const auto before = contents(b);
    const long live_before = counted_state::live;
    const long points = for_each_failure_point(
        [&](long k) {
            counted_state::fail_at(k);
            op(b);
        },
        [&] {
            ASSERT_EQ(contents(b), before);
            ASSERT_EQ(counted_state::live, live_before);
        });
    EXPECT_GE(points, 1);
}

TEST(CircularBuffer, PushesAreStrong) {
    const counted v(42);
    for (full_policy p : {full_policy::overwrite, full_policy::reject}) {
        expect_strong(5, 3, 3, p, [&](counted_buffer& b) { b.push_back(v); });
        expect_strong(5, 3, 3, p, [&](counted_buffer& b) { b.push_front(v); });
        expect_strong(5, 3, 3, p, [&](counted_buffer& b) { b.push_back(counted(7)); });
        expect_strong(5, 1, 3, p, [&](counted_buffer& b) { (void)b.try_push_back(v); });
        expect_strong(5, 1, 3, p, [&](counted_buffer& b) { (void)b.try_push_front(v); });
    }
    // Overwriting a full buffer: the assignment throws before anything changes.
    expect_strong(4, 2, 4, full_policy::overwrite, [&](counted_buffer& b) { b.push_back(v); });
    expect_strong(4, 2, 4, full_policy::overwrite, [&](counted_buffer& b) { b.push_front(v); });
    expect_strong(4, 0, 4, full_policy::overwrite, [&](counted_buffer& b) { b.emplace_back(v); });
    expect_strong(4, 3, 4, full_policy::overwrite, [&](counted_buffer& b) { b.emplace_front(v); });
}

TEST(CircularBuffer, SetCapacityAndLinearizeAreStrong) {
    expect_strong(6, 4, 5, full_policy::overwrite, [](counted_buffer& b) { b.set_capacity(8); });
    expect_strong(6, 4, 5, full_policy::overwrite, [](counted_buffer& b) { b.rset_capacity(3); });
    expect_strong(6, 4, 5, full_policy::overwrite, [](counted_buffer& b) { (void)b.linearize(); });
}

TEST(CircularBuffer, CopyConstructionLeaksNothing) {
    live_object_guard guard;
    const auto src = make_counted(7, 5, 6);
    const long live_before = counted_state::live;
    // Element copies failing.
    long points = for_each_failure_point(
        [&](long k) {
            counted_state::fail_at(k);
            counted_buffer copy(src, src.get_allocator());
            EXPECT_EQ(copy, src);
        },
        [&] { ASSERT_EQ(counted_state::live, live_before); });
    EXPECT_EQ(points, 6);
    // The allocation failing.
    fail_alloc<false> target;
    points = for_each_failure_point(
        [&](long k) {
            target.state().fail_at(k);
            counted_buffer copy(src, target);
            target.state().fail_at(0);
        },
        [&] {
            ASSERT_EQ(counted_state::live, live_before);
            ASSERT_EQ(target.state().live_blocks, 0);
        });
    EXPECT_EQ(points, 1);
    EXPECT_EQ(target.state().live_blocks, 0);
    EXPECT_EQ(src.get_allocator().state().live_blocks, 1);
}

TEST(CircularBuffer, CopyAssignmentIsStrong) {
    live_object_guard guard;
    const auto src = make_counted(7, 5, 6);
    auto dst = make_counted(3, 1, 2);
    const auto before = contents(dst);
    for_each_failure_point(
        [&](long k) {
            counted_state::fail_at(k);
            dst = src;
        },
        [&] {
            ASSERT_EQ(contents(dst), before);
            ASSERT_EQ(dst.capacity(), 3u);
        });
    EXPECT_EQ(dst, src);
    EXPECT_EQ(dst.capacity(), 7u);
}

TEST(CircularBuffer, FailedAllocationLosesNothing) {
    live_object_guard guard;
    auto b = make_counted(4, 2, 3);
    const auto before = contents(b);
    b.get_allocator().state().fail_at(1);
    EXPECT_THROW(b.set_capacity(10), std::bad_alloc);
    EXPECT_EQ(contents(b), before);
    EXPECT_EQ(b.capacity(), 4u);
    b.get_allocator().state().fail_at(1);
    EXPECT_THROW((void)counted_buffer(10, full_policy::overwrite, b.get_allocator()),
                 std::bad_alloc);
    EXPECT_EQ(b.get_allocator().state().live_blocks, 1);
}

// ---- alignment, ASan, debug checks -----------------------------------------------------------

struct alignas(64) wide {
    int v = 0;
    explicit wide(int x) : v(x) {}
};

TEST(CircularBuffer, OverAlignedElementsAreAligned) {
    circular_buffer<wide> b(5);
    for (int i = 0; i < 12; ++i) {
        b.emplace_back(i);
        if (i % 4 == 0) b.emplace_front(-i);
        for (const wide& w : b) ASSERT_EQ(reinterpret_cast<std::uintptr_t>(&w) % 64, 0u);
    }
    EXPECT_EQ(b.back().v, 11);
}

TEST(CircularBuffer, UnusedSlotsArePoisonedUnderAsan) {
    if constexpr (!memkit::has_address_sanitizer) {
        GTEST_SKIP() << "not an ASan build";
    } else {
#if MEMKIT_HAS_ASAN
        circular_buffer<std::uint64_t> b(4);
        b.push_back(1);
        b.push_back(2);
        const std::uint64_t* first = &b.front();
        const std::uint64_t* second = &b.back();
        EXPECT_FALSE(__asan_address_is_poisoned(first));
        EXPECT_TRUE(__asan_address_is_poisoned(second + 1)); // never used yet
        b.pop_front();
        EXPECT_TRUE(__asan_address_is_poisoned(first));
        EXPECT_FALSE(__asan_address_is_poisoned(second));
        b.push_back(3);
        b.push_back(4);
        b.push_back(5); // wraps into the first slot
        EXPECT_FALSE(__asan_address_is_poisoned(first));
#endif
    }
}

TEST(CircularBuffer, PopOnEmptyIsAReportedViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    int_buffer b(3);
    b.pop_front();
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::invalid_argument);
    b.pop_back();
    EXPECT_EQ(violation_recorder::count(), 2);
    EXPECT_TRUE(b.empty());
    b.push_back(1); // still usable
    EXPECT_EQ(b.front(), 1);
}

// ---- differential test against std::deque ------------------------------------------------------

// Drives a circular_buffer and a std::deque with the same random operations. `cap`: the buffer's
// capacity; with reject, a push into a full buffer must fail and leave both unchanged; with
// overwrite, the model drops from the other end when it exceeds the capacity.
void differential(std::size_t cap, full_policy policy, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    circular_buffer<std::string> b(cap, policy);
    std::deque<std::string> model;
    auto value = [&](std::uint64_t r) {
        return std::to_string(r % 100000) + "-value-of-some-length";
    };
    const bool overwrite = policy == full_policy::overwrite;
    for (int step = 0; step < 100000; ++step) {
        const std::uint64_t r = rng();
        const bool was_full = model.size() == cap;
        switch (r % 16) {
        case 0:
        case 1:
        case 2: {
            const std::string v = value(r >> 8);
            if (!overwrite && was_full) {
                ASSERT_THROW(b.push_back(v), buffer_full);
            } else {
                b.push_back(v);
                model.push_back(v);
                if (model.size() > cap) model.pop_front();
            }
            break;
        }
        case 3:
        case 4: {
            std::string v = value(r >> 8);
            if (!overwrite && was_full) {
                ASSERT_THROW(b.push_front(std::move(v)), buffer_full);
                ASSERT_FALSE(v.empty());
            } else {
                model.push_front(v);
                b.push_front(std::move(v));
                if (model.size() > cap) model.pop_back();
            }
            break;
        }
        case 5: {
            std::string v = value(r >> 8);
            const bool ok = b.try_push_back(std::move(v));
            ASSERT_EQ(ok, !was_full);
            if (ok) model.push_back(value(r >> 8));
            else ASSERT_EQ(v, value(r >> 8));
            break;
        }
        case 6: {
            const bool ok = b.try_emplace_front(value(r >> 8));
            ASSERT_EQ(ok, !was_full);
            if (ok) model.push_front(value(r >> 8));
            break;
        }
        case 7:
        case 8:
            if (!model.empty()) {
                b.pop_front();
                model.pop_front();
            }
            break;
        case 9:
        case 10:
            if (!model.empty()) {
                b.pop_back();
                model.pop_back();
            }
            break;
        case 11:
            if (!model.empty()) {
                const std::size_t i = (r >> 8) % model.size();
                ASSERT_EQ(b[i], model[i]);
                ASSERT_EQ(b.at(i), model.at(i));
                ASSERT_EQ(b.front(), model.front());
                ASSERT_EQ(b.back(), model.back());
            }
            ASSERT_THROW((void)b.at(model.size()), std::out_of_range);
            break;
        case 12:
            if (!model.empty()) {
                const std::size_t i = (r >> 8) % model.size();
                const std::size_t n = std::min<std::size_t>((r >> 24) % 4, model.size() - i);
                auto it = b.erase(b.begin() + static_cast<std::ptrdiff_t>(i),
                                  b.begin() + static_cast<std::ptrdiff_t>(i + n));
                auto mit = model.erase(model.begin() + static_cast<std::ptrdiff_t>(i),
                                       model.begin() + static_cast<std::ptrdiff_t>(i + n));
                ASSERT_EQ(it - b.begin(), mit - model.begin());
            }
            break;
        case 13:
            if ((r >> 8) % 16 == 0) (void)b.linearize();
            else if ((r >> 8) % 16 == 1) b = circular_buffer<std::string>(b);
            else if ((r >> 8) % 64 == 2) {
                b.clear();
                model.clear();
            }
            break;
        default: {
            if (!model.empty()) {
                const std::size_t i = (r >> 8) % model.size();
                b[i] += "!";
                model[i] += "!";
            }
            break;
        }
        }
        ASSERT_EQ(b.size(), model.size());
        ASSERT_LE(b.size(), cap);
        if (step % 97 == 0) {
            ASSERT_TRUE(std::ranges::equal(b, model)) << "step " << step;
            auto [first, second] = b.as_spans();
            ASSERT_TRUE(std::equal(first.begin(), first.end(), model.begin()));
            ASSERT_TRUE(std::equal(second.begin(), second.end(),
                                   model.begin() + static_cast<std::ptrdiff_t>(first.size())));
        }
    }
    EXPECT_TRUE(std::ranges::equal(b, model));
}

TEST(CircularBuffer, DifferentialRejectLargeCapacityMirrorsDeque) {
    differential(1 << 17, full_policy::reject, 0xC1BC1B01);
}
TEST(CircularBuffer, DifferentialRejectSmallCapacity) {
    differential(37, full_policy::reject, 0xC1BC1B02);
}
TEST(CircularBuffer, DifferentialOverwrite) {
    differential(53, full_policy::overwrite, 0xC1BC1B03);
}

} // namespace
