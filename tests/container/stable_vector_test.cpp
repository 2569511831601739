// Tests of memkit::stable_vector (include/memkit/container/stable_vector.hpp): iterator and range
// concepts, hole reuse, pointer and iterator stability, iteration over holes in both directions,
// block limits and growth, reserve/shrink_to_fit, get_iterator/is_active/is_valid, allocator
// propagation on copy, move and swap, every error path, exception safety with counted elements
// and failing allocators, and a randomized differential test against std::list.
#include "memkit/container/stable_vector.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <list>
#include <memory_resource>
#include <numeric>
#include <random>
#include <ranges>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/container_support.hpp"

// clang before 16 cannot compile libstdc++'s range adaptors (for any container).
#if defined(__clang__) && __clang_major__ < 16 && defined(__GLIBCXX__)
#define MEMKIT_TEST_HAVE_VIEWS 0
#else
#define MEMKIT_TEST_HAVE_VIEWS 1
#endif

namespace {

using memkit::stable_vector;
using memkit::stable_vector_limits;
using memkit::test::allocator_state;
using memkit::test::counted;
using memkit::test::counted_state;
using memkit::test::failing_allocator;
using memkit::test::for_each_failure_point;
using memkit::test::small_max_allocator;
using memkit::test::live_object_guard;

// --- concepts --------------------------------------------------------------------------------

using sv_int = stable_vector<int>;
static_assert(std::bidirectional_iterator<sv_int::iterator>);
static_assert(std::bidirectional_iterator<sv_int::const_iterator>);
static_assert(!std::random_access_iterator<sv_int::iterator>);
static_assert(std::sentinel_for<sv_int::const_iterator, sv_int::iterator>);
static_assert(std::convertible_to<sv_int::iterator, sv_int::const_iterator>);
static_assert(!std::convertible_to<sv_int::const_iterator, sv_int::iterator>);
static_assert(std::same_as<std::iter_reference_t<sv_int::const_iterator>, const int&>);
static_assert(std::output_iterator<sv_int::iterator, int>);
static_assert(std::ranges::bidirectional_range<sv_int>);
static_assert(std::ranges::bidirectional_range<const sv_int>);
static_assert(std::ranges::common_range<sv_int>);
static_assert(std::ranges::sized_range<sv_int>);
static_assert(!std::ranges::random_access_range<sv_int>);
static_assert(std::is_nothrow_move_constructible_v<sv_int>);
static_assert(std::is_nothrow_move_assignable_v<sv_int>);
static_assert(std::is_nothrow_swappable_v<sv_int>);
static_assert(std::is_same_v<memkit::pmr::stable_vector<int>,
                             stable_vector<int, std::pmr::polymorphic_allocator<int>>>);
// Move assignment with unequal allocators that do not propagate copies elements: it may throw.
static_assert(!std::is_nothrow_move_assignable_v<
              stable_vector<int, failing_allocator<int, false, false, false>>>);
static_assert(std::is_nothrow_move_assignable_v<
              stable_vector<int, failing_allocator<int, true, true, true>>>);

template <class C>
std::vector<int> contents(const C& c) {
    std::vector<int> v;
    for (const auto& x : c) v.push_back(static_cast<int>(x));
    return v;
}

template <class C>
std::vector<const void*> addresses(const C& c) {
    std::vector<const void*> v;
    for (const auto& x : c) v.push_back(&x);
    return v;
}

template <class C>
std::multiset<int> as_multiset(const C& c) {
    std::multiset<int> s;
    for (const auto& x : c) s.insert(static_cast<int>(x));
    return s;
}

// An allocator whose max_size() (in units of its value_type, whatever that is) is tiny: it bounds
struct alignas(64) wide {
    int v;
    wide(int x) : v(x) {}              // NOLINT(google-explicit-constructor)
    operator int() const { return v; } // NOLINT(google-explicit-constructor)
};

// --- basics ----------------------------------------------------------------------------------

TEST(StableVector, EmptyContainer) {
    sv_int s;
    EXPECT_TRUE(s.empty());
    EXPECT_EQ(s.size(), 0u);
    EXPECT_EQ(s.capacity(), 0u);
    EXPECT_EQ(s.begin(), s.end());
    EXPECT_EQ(s.cbegin(), s.cend());
    EXPECT_EQ(s.rbegin(), s.rend());
    EXPECT_GT(s.max_size(), 1000000u);
    EXPECT_EQ(s.memory_use(), 0u);
    s.clear();
    s.shrink_to_fit();
    EXPECT_TRUE(s.empty());
}

TEST(StableVector, InsertIterateErase) {
    sv_int s;
    std::vector<sv_int::iterator> its;
    for (int i = 0; i < 100; ++i) {
        auto it = s.insert(i);
        EXPECT_EQ(*it, i);
        its.push_back(it);
    }
    EXPECT_EQ(s.size(), 100u);
    EXPECT_EQ(std::ranges::distance(s), 100);
    // Into an empty container, elements are appended in order.
    std::vector<int> expect(100);
    std::iota(expect.begin(), expect.end(), 0);
    EXPECT_EQ(contents(s), expect);

    auto next = s.erase(its[10]);
    EXPECT_EQ(*next, 11);
    EXPECT_EQ(s.size(), 99u);
    expect.erase(expect.begin() + 10);
    EXPECT_EQ(contents(s), expect);

    // emplace forwards its arguments
    stable_vector<std::string> strs;
    auto sit = strs.emplace(3u, 'x');
    EXPECT_EQ(*sit, "xxx");
    EXPECT_EQ(sit->size(), 3u);
}

TEST(StableVector, ErasedSlotIsReused) {
    sv_int s;
    for (int i = 0; i < 50; ++i) s.insert(i);
    const auto cap = s.capacity();
    auto it = std::ranges::find(s, 20);
    const int* hole = &*it;
    s.erase(it);
    auto again = s.insert(1234);
    EXPECT_EQ(&*again, hole);
    EXPECT_EQ(s.capacity(), cap);
    EXPECT_EQ(s.size(), 50u);
}

TEST(StableVector, PointersStayValidAcrossInsertAndErase) {
    stable_vector<std::uint64_t> s{stable_vector_limits{8, 64}};
    std::vector<std::pair<std::uint64_t*, std::uint64_t>> kept;
    std::vector<stable_vector<std::uint64_t>::iterator> others;
    std::mt19937_64 rng(7);
    for (std::uint64_t i = 0; i < 20000; ++i) {
        auto it = s.insert(i * 3 + 1);
        if (i % 10 == 0) kept.emplace_back(&*it, i * 3 + 1);
        else others.push_back(it);
        if (i % 3 == 0 && !others.empty()) {
            const auto j = static_cast<std::size_t>(rng() % others.size());
            s.erase(others[j]);
            others[j] = others.back();
            others.pop_back();
        }
    }
    for (auto [p, v] : kept) {
        EXPECT_EQ(*p, v);
        EXPECT_TRUE(s.is_active(p));
    }
    for (auto it : others) EXPECT_EQ(*it % 3, 1u);
    EXPECT_EQ(s.size(), kept.size() + others.size());
}

TEST(StableVector, IterationSkipsHolesBothWays) {
    // Patterns that cross bitmap words and blocks: single holes, runs longer than a word, and
    // whole blocks emptied.
    const std::vector<std::function<bool(int)>> erase_patterns = {
        [](int i) { return i % 2 == 0; },
        [](int i) { return i % 64 != 63; },
        [](int i) { return (i / 70) % 2 == 0; },
        [](int i) { return i < 600; },
        [](int i) { return i >= 100; },
        [](int i) { return i % 7 == 3 || (i > 130 && i < 260); },
        [](int) { return true; },
        [](int) { return false; },
    };
    for (std::size_t p = 0; p < erase_patterns.size(); ++p) {
        stable_vector<int> s{stable_vector_limits{100, 200}};
        std::vector<stable_vector<int>::iterator> its;
        for (int i = 0; i < 1000; ++i) its.push_back(s.insert(i));
        std::vector<int> expect;
        for (int i = 0; i < 1000; ++i) {
            if (erase_patterns[p](i)) s.erase(its[static_cast<std::size_t>(i)]);
            else expect.push_back(i);
        }
        SCOPED_TRACE(p);
        EXPECT_EQ(s.size(), expect.size());
        EXPECT_EQ(contents(s), expect);
        std::vector<int> backwards;
        for (auto it = s.end(); it != s.begin();) backwards.push_back(*--it);
        std::reverse(backwards.begin(), backwards.end());
        EXPECT_EQ(backwards, expect);
        std::vector<int> rev(s.rbegin(), s.rend());
        std::reverse(rev.begin(), rev.end());
        EXPECT_EQ(rev, expect);
        // Post-increment and post-decrement return the old position.
        if (!expect.empty()) {
            auto it = s.begin();
            EXPECT_EQ(*it++, expect.front());
            auto last = s.end();
            last--;
            EXPECT_EQ(*last, expect.back());
        }
    }
}

TEST(StableVector, SegmentsCoverEveryElementInOrderAndAreMaximal) {
    stable_vector<int> s{stable_vector_limits{64, 256}};
    std::vector<stable_vector<int>::iterator> its;
    for (int i = 0; i < 3000; ++i) its.push_back(s.insert(i));
    std::mt19937_64 rng(3);
    for (int i = 0; i < 3000; ++i)
        if (rng() % 5 == 0 || (i > 1000 && i < 1400)) s.erase(its[static_cast<std::size_t>(i)]);
    std::vector<int> seen;
    std::vector<std::span<int>> spans;
    s.for_each_segment([&](std::span<int> run) {
        EXPECT_FALSE(run.empty());
        spans.push_back(run);
        seen.insert(seen.end(), run.begin(), run.end());
    });
    EXPECT_EQ(seen, contents(s));
    // Maximal: a run never ends where the next one starts.
    for (std::size_t i = 1; i < spans.size(); ++i)
        EXPECT_NE(spans[i - 1].data() + spans[i - 1].size(), spans[i].data());
    // The const overload sees the same runs; a full container is one run per block.
    const auto& cs = s;
    std::size_t total = 0;
    cs.for_each_segment([&](std::span<const int> run) { total += run.size(); });
    EXPECT_EQ(total, s.size());
    stable_vector<int> dense{stable_vector_limits{128, 128}};
    for (int i = 0; i < 1000; ++i) dense.insert(i);
    std::size_t runs = 0;
    dense.for_each_segment([&](std::span<int>) { ++runs; });
    EXPECT_EQ(runs, 8u); // ceil(1000 / 128)
}

TEST(StableVector, WorksWithRangesAndAlgorithms) {
    sv_int s{5, 1, 4, 2, 3};
    EXPECT_EQ(std::accumulate(s.begin(), s.end(), 0), 15);
    EXPECT_EQ(std::ranges::count_if(s, [](int x) { return x > 2; }), 3);
#if MEMKIT_TEST_HAVE_VIEWS
    auto evens = s | std::views::filter([](int x) { return x % 2 == 0; });
    EXPECT_EQ(std::ranges::distance(evens), 2);
    auto rev = s | std::views::reverse;
    EXPECT_EQ(*rev.begin(), 3);
#endif
    std::ranges::for_each(s, [](int& x) { x *= 10; });
    EXPECT_EQ(*std::ranges::max_element(s), 50);
    EXPECT_NE(std::ranges::find(s, 40), s.end());
}

// --- limits, capacity ------------------------------------------------------------------------

TEST(StableVector, BlockLimitsAndGeometricGrowth) {
    constexpr auto hard = sv_int::block_capacity_hard_limits();
    EXPECT_EQ(hard.min, 1u);
    EXPECT_EQ(hard.max, 4096u);
    sv_int d;
    EXPECT_GE(d.block_capacity_limits().min, 8u);
    EXPECT_LE(d.block_capacity_limits().max, 4096u);

    sv_int s{stable_vector_limits{8, 64}};
    EXPECT_EQ(s.block_capacity_limits(), (stable_vector_limits{8, 64}));
    s.insert(1);
    EXPECT_EQ(s.capacity(), 8u);
    for (int i = 0; i < 7; ++i) s.insert(i);
    EXPECT_EQ(s.capacity(), 8u);
    s.insert(0);
    EXPECT_EQ(s.capacity(), 16u); // the new block holds size() = 8 slots
    s.insert(0);
    for (int i = 0; i < 1000; ++i) s.insert(i);
    EXPECT_GE(s.capacity(), s.size());
    EXPECT_LE(s.capacity(), s.size() + 64); // growth capped at max: at most one partial block

    EXPECT_THROW(sv_int(stable_vector_limits{0, 10}), std::length_error);
    EXPECT_THROW(sv_int(stable_vector_limits{20, 10}), std::length_error);
    EXPECT_THROW(sv_int(stable_vector_limits{1, 5000}), std::length_error);
    sv_int one{stable_vector_limits{1, 1}};
    for (int i = 0; i < 10; ++i) one.insert(i);
    EXPECT_EQ(one.capacity(), 10u);
    one.erase(std::ranges::find(one, 4));
    EXPECT_EQ(one.size(), 9u);
    one.insert(44);
    EXPECT_EQ(one.capacity(), 10u);
    EXPECT_EQ(as_multiset(one), (std::multiset<int>{0, 1, 2, 3, 5, 6, 7, 8, 9, 44}));
}

TEST(StableVector, ReserveShrinkAndClearKeepAddresses) {
    allocator_state* st = nullptr;
    failing_allocator<int> a;
    st = &a.state();
    {
        stable_vector<int, failing_allocator<int>> s{stable_vector_limits{16, 128}, a};
        s.reserve(1000);
        EXPECT_GE(s.capacity(), 1000u);
        const long allocs = st->allocations;
        for (int i = 0; i < 1000; ++i) s.insert(i);
        EXPECT_EQ(st->allocations, allocs) << "reserve must make later inserts allocation-free";
        EXPECT_THROW(s.reserve(s.max_size() + 1), std::length_error);

        // Empty a whole block: it leaves the iteration and becomes reserved capacity.
        std::vector<const int*> survivors;
        for (auto it = s.begin(); it != s.end();) {
            if (*it < 500) it = s.erase(it);
            else survivors.push_back(&*it++);
        }
        const auto cap = s.capacity();
        s.shrink_to_fit();
        EXPECT_LT(s.capacity(), cap);
        EXPECT_GE(s.capacity(), s.size());
        EXPECT_EQ(addresses(s), std::vector<const void*>(survivors.begin(), survivors.end()));

        const auto cap2 = s.capacity();
        s.clear();
        EXPECT_TRUE(s.empty());
        EXPECT_EQ(s.capacity(), cap2);
        const long allocs2 = st->allocations;
        for (int i = 0; i < 500; ++i) s.insert(i);
        EXPECT_EQ(st->allocations, allocs2) << "clear keeps the blocks for reuse";
        s.clear();
        s.shrink_to_fit();
        EXPECT_EQ(s.capacity(), 0u);
        EXPECT_EQ(s.memory_use(), 0u);
        EXPECT_EQ(st->live_blocks, 0);
        s.trim_capacity();
    }
    EXPECT_EQ(st->live_blocks, 0);
}

TEST(StableVector, MaxSizeAndAllocatorMaxSize) {
    sv_int s;
    EXPECT_EQ(s.max_size(), static_cast<std::size_t>(PTRDIFF_MAX) / sizeof(int));
    EXPECT_THROW(s.reserve(s.max_size() + 1), std::length_error);
    EXPECT_THROW(s.reserve(std::numeric_limits<std::size_t>::max()), std::length_error);
    EXPECT_EQ(s.capacity(), 0u);

    // The allocator's max_size() bounds one block: blocks shrink to fit it ...
    stable_vector<int, small_max_allocator<int, 40>> small; // 40 units of 8 bytes per block
    for (int i = 0; i < 1000; ++i) small.insert(i);
    EXPECT_EQ(small.size(), 1000u);
    EXPECT_GE(small.memory_use(), 1000u * sizeof(int));
    std::vector<int> expect(1000);
    std::iota(expect.begin(), expect.end(), 0);
    EXPECT_EQ(contents(small), expect);

    // ... and if not even a block of one element fits, the container cannot grow.
    stable_vector<int, small_max_allocator<int, 2>> none;
    EXPECT_THROW(none.insert(1), std::length_error);
    EXPECT_THROW(none.reserve(1), std::length_error);
    EXPECT_TRUE(none.empty());
    EXPECT_EQ(none.capacity(), 0u);
}

// --- lookup ----------------------------------------------------------------------------------

TEST(StableVector, GetIteratorIsActiveIsValid) {
    sv_int s{stable_vector_limits{8, 8}};
    std::vector<sv_int::iterator> its;
    for (int i = 0; i < 40; ++i) its.push_back(s.insert(i));
    for (auto it : its) {
        EXPECT_EQ(s.get_iterator(&*it), it);
        EXPECT_TRUE(s.is_active(&*it));
        EXPECT_TRUE(s.is_valid(it));
    }
    const int* p = &*its[5];
    s.erase(its[5]);
    EXPECT_FALSE(s.is_active(p));
    EXPECT_FALSE(s.is_valid(its[5]));
    EXPECT_EQ(s.get_iterator(p), s.end());
    int outside = 5;
    EXPECT_FALSE(s.is_active(&outside));
    EXPECT_EQ(s.get_iterator(&outside), s.end());
    EXPECT_FALSE(s.is_valid(s.end()));
    EXPECT_FALSE(s.is_valid(sv_int::const_iterator{}));
    sv_int other{1, 2, 3};
    EXPECT_FALSE(other.is_valid(its[0]));
    EXPECT_FALSE(other.is_active(&*its[0]));

    // Erase a whole block and free it: iterators into it are reported invalid without being
    // dereferenced (ASan would catch a read of the freed block).
    std::vector<sv_int::iterator> block2(its.begin() + 8, its.begin() + 16);
    for (auto it : block2) s.erase(it);
    s.shrink_to_fit();
    for (auto it : block2) EXPECT_FALSE(s.is_valid(it));
    const sv_int& cs = s;
    EXPECT_EQ(*cs.get_iterator(&*its[20]), 20);
}

TEST(StableVector, EraseRangeAndEraseIf) {
    sv_int s;
    for (int i = 0; i < 300; ++i) s.insert(i);
    auto first = std::ranges::find(s, 100);
    auto last = std::ranges::find(s, 200);
    auto r = s.erase(first, last);
    EXPECT_EQ(*r, 200);
    EXPECT_EQ(s.size(), 200u);
    EXPECT_EQ(std::ranges::find(s, 150), s.end());
    EXPECT_EQ(memkit::erase_if(s, [](int x) { return x % 2 == 1; }), 100u);
    EXPECT_EQ(s.size(), 100u);
    for (int x : s) EXPECT_EQ(x % 2, 0);
    EXPECT_EQ(s.erase(s.begin(), s.end()), s.end());
    EXPECT_TRUE(s.empty());
    EXPECT_EQ(s.begin(), s.end());
}

TEST(StableVector, ConstructorsAndEquality) {
    sv_int a(5, 7);
    EXPECT_EQ(contents(a), std::vector<int>(5, 7));
    std::vector<int> src{1, 2, 3, 4};
    sv_int b(src.begin(), src.end());
    EXPECT_EQ(contents(b), src);
    std::istringstream in("5 6 7 8 9"); // a single-pass input range
    sv_int c{std::istream_iterator<int>(in), std::istream_iterator<int>()};
    EXPECT_EQ(contents(c), (std::vector<int>{5, 6, 7, 8, 9}));
    sv_int d{1, 2, 3, 4};
    EXPECT_EQ(b, d);
    d.insert(5);
    EXPECT_NE(b, d);
    sv_int e;
    e = {4, 3, 2, 1};
    EXPECT_NE(e, b); // same elements, another order
    EXPECT_TRUE(std::is_permutation(e.begin(), e.end(), b.begin(), b.end()));
}

// --- copy, move, swap, allocators ------------------------------------------------------------

TEST(StableVector, CopyKeepsOrderAndMoveKeepsAddresses) {
    live_object_guard guard;
    stable_vector<counted> s{stable_vector_limits{8, 32}};
    std::vector<stable_vector<counted>::iterator> its;
    for (int i = 0; i < 200; ++i) its.push_back(s.insert(i));
    for (int i = 0; i < 200; i += 3) s.erase(its[static_cast<std::size_t>(i)]);
    stable_vector<counted> copy = s;
    EXPECT_EQ(copy, s);
    EXPECT_EQ(copy.size(), s.size());
    EXPECT_EQ(copy.block_capacity_limits(), s.block_capacity_limits());
    EXPECT_LE(copy.capacity(), s.size() + 32); // a copy is compact

    const auto addrs = addresses(s);
    const auto values = contents(s);
    const auto mid = std::next(s.begin(), 10);
    stable_vector<counted> moved = std::move(s);
    EXPECT_EQ(addresses(moved), addrs);
    EXPECT_EQ(contents(moved), values);
    // Iterators survive the move: they walk the same elements, to the new container's end.
    EXPECT_EQ(mid->value(), values[10]);
    EXPECT_EQ(std::distance(mid, moved.end()), static_cast<std::ptrdiff_t>(values.size()) - 10);
    EXPECT_EQ(std::distance(moved.begin(), mid), 10);
    EXPECT_TRUE(s.empty()); // NOLINT(bugprone-use-after-move): a moved-from container is empty
    EXPECT_EQ(s.capacity(), 0u);
    s.insert(5); // and usable
    EXPECT_EQ(s.size(), 1u);

    stable_vector<counted> assigned;
    assigned = moved;
    EXPECT_EQ(assigned, moved);
    assigned = std::move(moved);
    EXPECT_EQ(addresses(assigned), addrs);
    auto& alias = assigned;
    assigned = alias; // self-assignment is a no-op
    EXPECT_EQ(contents(assigned), values);
    assigned = std::move(alias);
    EXPECT_EQ(contents(assigned), values);

    stable_vector<counted> other{1, 2, 3};
    const counted* p = &*other.begin();
    const auto before_swap = std::next(assigned.begin(), 5);
    swap(assigned, other);
    EXPECT_EQ(std::distance(before_swap, other.end()),
              static_cast<std::ptrdiff_t>(values.size()) - 5);
    EXPECT_EQ(contents(assigned), (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(contents(other), values);
    EXPECT_TRUE(assigned.is_active(p)); // the element moved with its block
    EXPECT_EQ(assigned.get_iterator(p)->value(), 1);
    assigned.insert(4);
    EXPECT_EQ(assigned.size(), 4u);
}

template <bool POCCA, bool POCMA, bool POCS>
void check_propagation() {
    using A = failing_allocator<int, POCCA, POCMA, POCS>;
    using SV = stable_vector<int, A>;
    A a1, a2;
    {
        SV x{stable_vector_limits{8, 32}, a1};
        SV y{stable_vector_limits{8, 32}, a2};
        for (int i = 0; i < 100; ++i) x.insert(i);
        for (int i = 0; i < 10; ++i) y.insert(-i);

        // copy assignment
        y = x;
        EXPECT_EQ(y, x);
        EXPECT_EQ(y.get_allocator() == a1, POCCA);
        EXPECT_EQ(a2.state().live_blocks != 0, !POCCA);

        // copy construction uses select_on_container_copy_construction (a copy of the source's)
        SV z = x;
        EXPECT_TRUE(z.get_allocator() == a1);
        SV w(x, a2);
        EXPECT_TRUE(w.get_allocator() == a2);
        EXPECT_EQ(w, x);

        // move assignment: with POCMA the blocks move; without it and with unequal allocators
        // the elements are moved one by one into blocks of the target's allocator.
        SV m{stable_vector_limits{8, 32}, a2};
        m.insert(42);
        const long a1_allocs = a1.state().allocations;
        const auto xaddrs = addresses(x);
        m = std::move(x);
        EXPECT_EQ(contents(m), contents(z));
        EXPECT_EQ(m.get_allocator() == a1, POCMA);
        if (POCMA) {
            EXPECT_EQ(addresses(m), xaddrs);
            EXPECT_EQ(a1.state().allocations, a1_allocs);
        } else {
            EXPECT_NE(addresses(m), xaddrs);
        }

        // allocator-extended move: equal allocators adopt, unequal ones copy
        SV n(std::move(z), a1);
        EXPECT_EQ(n.size(), 100u);
        SV o(std::move(n), a2);
        EXPECT_EQ(o.size(), 100u);
        EXPECT_TRUE(o.get_allocator() == a2);

        // swap: with POCS the allocators follow the elements; without it they must be equal
        if constexpr (POCS) {
            SV p{stable_vector_limits{8, 32}, a1};
            p.insert(1);
            swap(p, o);
            EXPECT_TRUE(p.get_allocator() == a2);
            EXPECT_TRUE(o.get_allocator() == a1);
            EXPECT_EQ(o.size(), 1u);
            EXPECT_EQ(p.size(), 100u);
        } else {
            SV p{stable_vector_limits{8, 32}, a2};
            p.insert(1);
            swap(p, o);
            EXPECT_EQ(o.size(), 1u);
            EXPECT_EQ(p.size(), 100u);
        }
    }
    EXPECT_EQ(a1.state().live_blocks, 0);
    EXPECT_EQ(a2.state().live_blocks, 0);
}

TEST(StableVector, AllocatorPropagationNone) { check_propagation<false, false, false>(); }
TEST(StableVector, AllocatorPropagationAll) { check_propagation<true, true, true>(); }
TEST(StableVector, AllocatorPropagationMixed) {
    check_propagation<true, false, false>();
    check_propagation<false, true, false>();
    check_propagation<false, false, true>();
}

TEST(StableVector, MemkitAndPmrAllocators) {
    memkit::pool nodes{256};
    {
        // A pool's max_size() is its node size: blocks are sized to fit a 256-byte node.
        stable_vector<int, memkit::std_allocator<int, memkit::pool>> s{nodes};
        for (int i = 0; i < 1000; ++i) s.insert(i);
        memkit::erase_if(s, [](int x) { return x % 3 == 0; });
        EXPECT_EQ(s.size(), 666u);
        auto t = s;
        EXPECT_EQ(t, s);
    }
    memkit::arena ar;
    {
        stable_vector<std::string, memkit::std_allocator<std::string, memkit::arena>> s{ar};
        for (int i = 0; i < 300; ++i) s.insert(std::string(40, static_cast<char>('a' + i % 26)));
        EXPECT_EQ(s.size(), 300u);
        EXPECT_TRUE(ar.owns(&*s.begin()));
    }
    std::pmr::monotonic_buffer_resource mono;
    {
        memkit::pmr::stable_vector<int> s{&mono};
        for (int i = 0; i < 1000; ++i) s.insert(i);
        EXPECT_EQ(s.get_allocator().resource(), &mono);
        memkit::pmr::stable_vector<int> t{s, std::pmr::new_delete_resource()};
        EXPECT_EQ(t, s);
        EXPECT_EQ(t.get_allocator().resource(), std::pmr::new_delete_resource());
        // polymorphic_allocator does not propagate: assignment keeps the target's resource
        t = s;
        EXPECT_EQ(t.get_allocator().resource(), std::pmr::new_delete_resource());
        t = std::move(s);
        EXPECT_EQ(t.size(), 1000u);
    }
}

TEST(StableVector, OverAlignedElements) {
    auto check = [](auto& s) {
        for (int i = 0; i < 500; ++i) s.insert(i);
        memkit::erase_if(s, [](const wide& w) { return w.v % 4 == 0; });
        for (int i = 0; i < 50; ++i) s.insert(i);
        for (const wide& w : s) EXPECT_TRUE(memkit::is_aligned(&w, 64));
        EXPECT_EQ(s.size(), 425u);
    };
    stable_vector<wide> a;
    check(a);
    stable_vector<wide, failing_allocator<wide>> b{stable_vector_limits{3, 50}};
    check(b);
    memkit::pmr::stable_vector<wide> c;
    check(c);
    memkit::arena ar;
    stable_vector<wide, memkit::std_allocator<wide, memkit::arena>> d{ar};
    check(d);
}

// --- errors and exception safety -------------------------------------------------------------

TEST(StableVector, DebugCheckCatchesDoubleErase) {
    if constexpr (!memkit::debug_checks) GTEST_SKIP() << "debug checks are compiled out";
    static int reports = 0;
    reports = 0;
    auto old = memkit::set_violation_handler([](const memkit::violation& v) {
        EXPECT_EQ(v.code, memkit::errc::invalid_argument);
        ++reports;
    });
    sv_int s{1, 2, 3};
    auto it = std::ranges::find(s, 2);
    s.erase(it);
    s.erase(it); // the slot is empty now
    EXPECT_EQ(reports, 1);
    EXPECT_EQ(s.size(), 2u);
    memkit::set_violation_handler(old);
}

// A container with holes in some blocks, or with every block full, so that an insert either
// fills a hole or needs a new block.
template <class SV>
void fill_for_insert(SV& s, bool with_holes) {
    std::vector<typename SV::iterator> its;
    for (int i = 0; i < 64; ++i) its.push_back(s.insert(i));
    if (with_holes) {
        s.erase(its[3]);
        s.erase(its[40]);
    }
}

TEST(StableVector, InsertIsStrongWhenTheCopyThrows) {
    live_object_guard guard;
    for (bool holes : {true, false}) {
        failing_allocator<counted> a;
        stable_vector<counted, failing_allocator<counted>> s{stable_vector_limits{8, 8}, a};
        fill_for_insert(s, holes);
        const auto before = contents(s);
        const auto addrs = addresses(s);
        const auto cap = s.capacity();
        const long blocks = a.state().live_blocks;
        const counted value{999};
        const long live = counted_state::live;
        const long points = for_each_failure_point(
            [&](long k) {
                counted_state::fail_at(k);
                s.insert(value);
            },
            [&] {
                EXPECT_EQ(contents(s), before);
                EXPECT_EQ(addresses(s), addrs);
                EXPECT_EQ(s.capacity(), cap);
                EXPECT_EQ(a.state().live_blocks, blocks);
                EXPECT_EQ(counted_state::live, live);
            });
        EXPECT_EQ(points, 1);
        EXPECT_EQ(s.size(), before.size() + 1);
    }
}

TEST(StableVector, InsertIsStrongWhenAllocationFails) {
    live_object_guard guard;
    failing_allocator<counted> a;
    stable_vector<counted, failing_allocator<counted>> s{stable_vector_limits{8, 8}, a};
    fill_for_insert(s, false);
    const auto before = contents(s);
    const auto cap = s.capacity();
    const long blocks = a.state().live_blocks;
    const long points = for_each_failure_point(
        [&](long k) {
            a.state().fail_at(k);
            s.emplace(999);
        },
        [&] {
            EXPECT_EQ(contents(s), before);
            EXPECT_EQ(s.capacity(), cap);
            EXPECT_EQ(a.state().live_blocks, blocks);
        });
    a.state().fail_at(0);
    EXPECT_EQ(points, 1);
    EXPECT_EQ(s.size(), before.size() + 1);
}

TEST(StableVector, CopyConstructionLeaksNothingOnFailure) {
    live_object_guard guard;
    failing_allocator<counted> a;
    stable_vector<counted, failing_allocator<counted>> src{stable_vector_limits{8, 16}, a};
    std::vector<stable_vector<counted, failing_allocator<counted>>::iterator> its;
    for (int i = 0; i < 120; ++i) its.push_back(src.insert(i));
    for (int i = 0; i < 120; i += 4) src.erase(its[static_cast<std::size_t>(i)]);
    const long blocks = a.state().live_blocks;
    const long live = counted_state::live;
    auto check = [&] {
        EXPECT_EQ(a.state().live_blocks, blocks);
        EXPECT_EQ(counted_state::live, live);
    };
    const long copy_points = for_each_failure_point(
        [&](long k) {
            counted_state::fail_at(k);
            auto copy = src;
            EXPECT_EQ(copy, src);
        },
        check);
    EXPECT_EQ(copy_points, static_cast<long>(src.size()));
    const long alloc_points = for_each_failure_point(
        [&](long k) {
            a.state().fail_at(k);
            auto copy = src;
            a.state().fail_at(0);
            EXPECT_EQ(copy, src);
        },
        check);
    EXPECT_GE(alloc_points, 1);
    check();
}

TEST(StableVector, ReserveIsStrong) {
    failing_allocator<int> a;
    stable_vector<int, failing_allocator<int>> s{stable_vector_limits{8, 16}, a};
    for (int i = 0; i < 20; ++i) s.insert(i);
    const auto cap = s.capacity();
    const long blocks = a.state().live_blocks;
    const long points = for_each_failure_point(
        [&](long k) {
            a.state().fail_at(k);
            s.reserve(200);
        },
        [&] {
            EXPECT_EQ(s.capacity(), cap);
            EXPECT_EQ(a.state().live_blocks, blocks);
        });
    a.state().fail_at(0);
    EXPECT_GE(points, 10);
    EXPECT_GE(s.capacity(), 200u);
}

TEST(StableVector, CopyAssignmentAndRangeInsertAreBasic) {
    live_object_guard guard;
    failing_allocator<counted> a;
    using SV = stable_vector<counted, failing_allocator<counted>>;
    SV src{stable_vector_limits{8, 16}, a};
    for (int i = 0; i < 50; ++i) src.insert(i);
    SV dst{stable_vector_limits{8, 16}, a};
    for (int i = 0; i < 10; ++i) dst.insert(-i);
    for_each_failure_point(
        [&](long k) {
            counted_state::fail_at(k);
            dst = src;
        },
        [&] {
            // valid: consistent size, elements from the source, nothing leaked
            EXPECT_EQ(static_cast<std::size_t>(std::ranges::distance(dst)), dst.size());
            EXPECT_LT(dst.size(), src.size());
            for (const counted& c : dst) EXPECT_GE(c.value(), 0);
        });
    EXPECT_EQ(dst, src);

    std::vector<counted> more(30, counted{5});
    SV r{a};
    for_each_failure_point(
        [&](long k) {
            r.clear();
            counted_state::fail_at(k);
            r.insert(more.begin(), more.end());
        },
        [&] { EXPECT_EQ(static_cast<std::size_t>(std::ranges::distance(r)), r.size()); });
    EXPECT_EQ(r.size(), 30u);
}

TEST(StableVector, ThrowingConstructorInEmplace) {
    struct thrower {
        explicit thrower(bool fail) {
            if (fail) throw std::runtime_error("no");
        }
    };
    stable_vector<thrower> s;
    s.emplace(false);
    EXPECT_THROW(s.emplace(true), std::runtime_error);
    EXPECT_EQ(s.size(), 1u);
    stable_vector<thrower> e;
    EXPECT_THROW(e.emplace(true), std::runtime_error);
    EXPECT_EQ(e.capacity(), 0u); // the block allocated for it was given back
}

// --- differential test -----------------------------------------------------------------------

TEST(StableVector, DifferentialAgainstStdList) {
    using SV = stable_vector<std::uint64_t>;
    SV s{stable_vector_limits{16, 256}};
    std::list<std::uint64_t> ref;
    struct handle {
        SV::iterator it;
        const std::uint64_t* p;
        std::list<std::uint64_t>::iterator ref_it;
        std::uint64_t value;
    };
    std::vector<handle> handles;
    std::mt19937_64 rng(0x5eed);
    std::uint64_t next_value = 1;
    auto erase_handle = [&](std::size_t j) {
        s.erase(handles[j].it);
        ref.erase(handles[j].ref_it);
        handles[j] = handles.back();
        handles.pop_back();
    };
    auto check_all = [&] {
        ASSERT_EQ(s.size(), ref.size());
        ASSERT_EQ(static_cast<std::size_t>(std::distance(s.begin(), s.end())), s.size());
        std::vector<std::uint64_t> a(s.begin(), s.end());
        std::vector<std::uint64_t> b(ref.begin(), ref.end());
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        ASSERT_EQ(a, b);
        for (const handle& h : handles) {
            ASSERT_EQ(*h.p, h.value) << "a pointer no longer points at its element";
            ASSERT_EQ(&*h.it, h.p) << "an iterator no longer points at its element";
        }
    };
    for (int op = 0; op < 100000; ++op) {
        const auto r = rng() % 100;
        if (r < 50 || handles.empty()) {
            const std::uint64_t v = next_value++;
            auto it = s.insert(v);
            ref.push_back(v);
            handles.push_back({it, &*it, std::prev(ref.end()), v});
        } else if (r < 90) {
            erase_handle(static_cast<std::size_t>(rng() % handles.size()));
        } else if (r < 95) {
            // look an element up by address and erase it through that iterator
            const auto j = static_cast<std::size_t>(rng() % handles.size());
            auto it = s.get_iterator(handles[j].p);
            ASSERT_EQ(it, handles[j].it);
            handles[j].it = it;
            erase_handle(j);
        } else if (r < 99) {
            // erase a short run in iteration order
            auto it = s.get_iterator(handles[static_cast<std::size_t>(rng() % handles.size())].p);
            std::set<const std::uint64_t*> gone;
            for (int n = 0; n < 5 && it != s.end(); ++n, ++it) gone.insert(&*it);
            for (std::size_t j = 0; j < handles.size();) {
                if (gone.count(handles[j].p) != 0) erase_handle(j);
                else ++j;
            }
        } else if (rng() % 20 == 0) {
            s.clear();
            ref.clear();
            handles.clear();
            if (rng() % 2 == 0) s.shrink_to_fit();
        }
        if (op % 1000 == 0) check_all();
        if (::testing::Test::HasFatalFailure()) return;
    }
    check_all();
}

} // namespace
