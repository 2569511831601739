// Tests of memkit::bump_vector (include/memkit/container/bump_vector.hpp): iterator and range
// concepts, chunk geometry, pointer stability across 1e5 push_backs, random access and iterator
// arithmetic across chunk boundaries, every error path, exception safety of push_back, reserve
// and copy with counted elements and failing allocators, allocator propagation, over-aligned
// elements, and a randomized differential test against std::vector.
#include "memkit/container/bump_vector.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <memory_resource>
#include <numeric>
#include <random>
#include <ranges>
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

using memkit::bump_vector;
using memkit::test::counted;
using memkit::test::counted_state;
using memkit::test::failing_allocator;
using memkit::test::for_each_failure_point;
using memkit::test::small_max_allocator;
using memkit::test::live_object_guard;

template <class T>
using heap_bump_vector = bump_vector<T, std::allocator<T>>;

// --- concepts --------------------------------------------------------------------------------

using bv_int = heap_bump_vector<int>;
static_assert(std::random_access_iterator<bv_int::iterator>);
static_assert(std::random_access_iterator<bv_int::const_iterator>);
static_assert(!std::contiguous_iterator<bv_int::iterator>);
static_assert(std::sized_sentinel_for<bv_int::iterator, bv_int::iterator>);
static_assert(std::convertible_to<bv_int::iterator, bv_int::const_iterator>);
static_assert(!std::convertible_to<bv_int::const_iterator, bv_int::iterator>);
static_assert(std::same_as<std::iter_reference_t<bv_int::const_iterator>, const int&>);
static_assert(std::output_iterator<bv_int::iterator, int>);
static_assert(std::sortable<bv_int::iterator>);
static_assert(std::ranges::random_access_range<bv_int>);
static_assert(std::ranges::random_access_range<const bv_int>);
static_assert(std::ranges::sized_range<bv_int>);
static_assert(std::ranges::common_range<bv_int>);
static_assert(std::is_nothrow_move_constructible_v<bv_int>);
static_assert(std::is_nothrow_move_assignable_v<bv_int>);
static_assert(std::is_nothrow_swappable_v<bv_int>);
// The default allocator takes chunks from an arena, which the container cannot invent.
static_assert(
    std::is_same_v<bump_vector<int>::allocator_type, memkit::std_allocator<int, memkit::arena>>);
static_assert(!std::is_default_constructible_v<bump_vector<int>>);
static_assert(std::is_constructible_v<bump_vector<int>, memkit::arena&>);
static_assert(std::is_default_constructible_v<bv_int>);
static_assert(std::is_same_v<memkit::pmr::bump_vector<int>,
                             bump_vector<int, std::pmr::polymorphic_allocator<int>>>);
static_assert(!std::is_nothrow_move_assignable_v<
              bump_vector<int, failing_allocator<int, false, false, false>>>);
// About 256 bytes of elements in the first chunk, a power of two, at least one.
static_assert(bump_vector<char>::first_chunk_capacity == 256);
static_assert(bv_int::first_chunk_capacity == 64);
static_assert(heap_bump_vector<std::array<char, 24>>::first_chunk_capacity == 8);
static_assert(heap_bump_vector<std::array<char, 4096>>::first_chunk_capacity == 1);
static_assert(bv_int::max_chunks >= 30);

struct alignas(64) wide {
    int v;
    wide(int x) : v(x) {} // NOLINT(google-explicit-constructor)
};

template <class C>
std::vector<int> contents(const C& c) {
    std::vector<int> v;
    for (const auto& x : c) v.push_back(static_cast<int>(x));
    return v;
}

constexpr std::size_t B = bv_int::first_chunk_capacity;
using counted_bv = bump_vector<counted, failing_allocator<counted>>;
constexpr std::size_t CB = counted_bv::first_chunk_capacity;

// Chunks a bump_vector allocates for n elements.
constexpr long chunks_for(std::size_t n, std::size_t first) {
    long k = 0;
    for (std::size_t cap = 0; cap < n; cap += first << k, ++k) {}
    return k;
}

// --- basics ----------------------------------------------------------------------------------

TEST(BumpVector, AllocatesFromAnArenaByDefault) {
    memkit::arena a;
    bump_vector<int> v{a};
    EXPECT_TRUE(v.empty());
    EXPECT_EQ(v.begin(), v.end());
    for (int i = 0; i < 1000; ++i) v.push_back(i);
    EXPECT_EQ(v.size(), 1000u);
    EXPECT_EQ(v.front(), 0);
    EXPECT_EQ(v.back(), 999);
    EXPECT_TRUE(a.owns(&v[0]));
    EXPECT_TRUE(a.owns(&v[999]));
    EXPECT_EQ(&v.get_allocator().get(), &a);
    std::vector<int> expect(1000);
    std::iota(expect.begin(), expect.end(), 0);
    EXPECT_EQ(contents(v), expect);

    bump_vector<std::string> names(a);
    auto& s = names.emplace_back(3u, 'x');
    EXPECT_EQ(s, "xxx");
    EXPECT_EQ(&names.back(), &s);
}

TEST(BumpVector, ChunksDoubleAndElementsNeverMove) {
    bv_int v;
    EXPECT_EQ(v.capacity(), 0u);
    v.push_back(0);
    EXPECT_EQ(v.capacity(), B);
    const int* first = &v[0];
    for (std::size_t i = 1; i < B; ++i) v.push_back(static_cast<int>(i));
    EXPECT_EQ(v.capacity(), B);
    v.push_back(0);
    EXPECT_EQ(v.capacity(), 3 * B); // B + 2B
    for (int i = 0; i < 10000; ++i) v.push_back(i);
    const std::size_t cap = v.capacity();
    EXPECT_EQ(cap % B, 0u);
    EXPECT_TRUE(std::has_single_bit(cap / B + 1)) << "capacity is B * (2^k - 1)";
    EXPECT_LT(cap, 2 * v.size() + 2 * B) << "at most the last chunk is partly empty";
    EXPECT_EQ(&v[0], first);
}

TEST(BumpVector, PointersStayValidAcross1e5PushBacks) {
    memkit::arena a;
    bump_vector<std::uint64_t> v{a};
    std::vector<const std::uint64_t*> ptrs;
    for (std::uint64_t i = 0; i < 100000; ++i) ptrs.push_back(&v.emplace_back(i * 7 + 3));
    ASSERT_EQ(v.size(), 100000u);
    for (std::size_t i = 0; i < ptrs.size(); ++i) {
        ASSERT_EQ(ptrs[i], &v[i]);
        ASSERT_EQ(*ptrs[i], i * 7 + 3);
    }
}

TEST(BumpVector, RandomAccessAndIteratorArithmetic) {
    bv_int v;
    for (int i = 0; i < 5000; ++i) v.push_back(i);
    for (std::size_t i = 0; i < v.size(); ++i) {
        ASSERT_EQ(v[i], static_cast<int>(i));
        ASSERT_EQ(v.at(i), static_cast<int>(i));
    }
    std::mt19937_64 rng(11);
    const auto b = v.begin();
    for (int n = 0; n < 2000; ++n) {
        const auto i = static_cast<std::ptrdiff_t>(rng() % 5000);
        const auto j = static_cast<std::ptrdiff_t>(rng() % 5000);
        const auto it = b + i;
        ASSERT_EQ(*it, i);
        ASSERT_EQ(it[j - i], j);
        ASSERT_EQ(*(it + (j - i)), j);
        ASSERT_EQ(*((j - i) + it), j);
        ASSERT_EQ(*(it - (i - j)), j);
        ASSERT_EQ((b + j) - it, j - i);
        ASSERT_EQ(it < b + j, i < j);
        ASSERT_EQ((it <=> b + j) == 0, i == j);
        auto k = it;
        k += j - i;
        ASSERT_EQ(*k, j);
        k -= j - i;
        ASSERT_EQ(k, it);
    }
    // Step by step across every chunk boundary, both ways.
    std::ptrdiff_t expect = 0;
    for (auto it = v.begin(); it != v.end(); ++it, ++expect) ASSERT_EQ(*it, expect);
    EXPECT_EQ(v.end() - v.begin(), 5000);
    for (auto it = v.end(); it != v.begin();) ASSERT_EQ(*--it, --expect);
    std::vector<int> rev(v.rbegin(), v.rend());
    EXPECT_EQ(rev.front(), 4999);
    EXPECT_EQ(rev.back(), 0);
    auto it = v.begin();
    EXPECT_EQ(*it++, 0);
    EXPECT_EQ(*it--, 1);
    EXPECT_EQ(*it.operator->(), 0);
}

TEST(BumpVector, AlgorithmsAndRanges) {
    bv_int v;
    std::mt19937_64 rng(5);
    std::vector<int> ref;
    for (int i = 0; i < 3000; ++i) {
        const int x = static_cast<int>(rng() % 100000);
        v.push_back(x);
        ref.push_back(x);
    }
    std::sort(v.begin(), v.end()); // random-access iterators that cross chunks
    std::sort(ref.begin(), ref.end());
    EXPECT_EQ(contents(v), ref);
    std::ranges::sort(v, std::greater<>());
    EXPECT_TRUE(std::ranges::is_sorted(v, std::greater<>()));
    EXPECT_TRUE(std::binary_search(v.rbegin(), v.rend(), ref[1234]));
    EXPECT_EQ(std::accumulate(v.cbegin(), v.cend(), 0LL),
              std::accumulate(ref.begin(), ref.end(), 0LL));
    std::reverse(v.begin(), v.end());
    EXPECT_EQ(contents(v), ref);
#if MEMKIT_TEST_HAVE_VIEWS
    auto odd = v | std::views::filter([](int x) { return x % 2 != 0; });
    EXPECT_EQ(std::ranges::distance(odd), std::ranges::count_if(ref, [](int x) { return x % 2; }));
    EXPECT_EQ((v | std::views::reverse).front(), ref.back());
#endif
}

TEST(BumpVector, SegmentsAreTheChunksInOrder) {
    bv_int v;
    for (int i = 0; i < 1000; ++i) v.push_back(i);
    std::vector<int> seen;
    std::vector<std::size_t> sizes;
    v.for_each_segment([&](std::span<int> s) {
        sizes.push_back(s.size());
        seen.insert(seen.end(), s.begin(), s.end());
    });
    EXPECT_EQ(seen, contents(v));
    EXPECT_EQ(sizes, (std::vector<std::size_t>{64, 128, 256, 512, 40}));
    const bv_int& cv = v;
    std::size_t total = 0;
    cv.for_each_segment([&](std::span<const int> s) { total += s.size(); });
    EXPECT_EQ(total, 1000u);
}

TEST(BumpVector, PopBackClearShrinkReuseChunks) {
    live_object_guard guard;
    failing_allocator<counted> a;
    {
        bump_vector<counted, failing_allocator<counted>> v{a};
        for (int i = 0; i < 200; ++i) v.push_back(i);
        const long allocs = a.state().allocations;
        const counted* at_boundary = &v[CB];
        // pop back across the boundary of chunks 0 and 1, then push again: same slots
        while (v.size() > CB - 3) v.pop_back();
        EXPECT_EQ(v.back().value(), static_cast<int>(CB) - 4);
        EXPECT_EQ(v.size(), CB - 3);
        for (int i = 0; i < 10; ++i) v.push_back(1000 + i);
        EXPECT_EQ(&v[CB], at_boundary);
        EXPECT_EQ(v[CB].value(), 1003);
        EXPECT_EQ(a.state().allocations, allocs);
        const long live_before_clear = counted_state::live;
        const auto size_before_clear = static_cast<long>(v.size());
        v.clear();
        EXPECT_EQ(counted_state::live, live_before_clear - size_before_clear);
        EXPECT_TRUE(v.empty());
        EXPECT_EQ(v.capacity(), 7 * CB); // chunks 0..2 kept
        for (int i = 0; i < 200; ++i) v.push_back(i);
        EXPECT_EQ(a.state().allocations, allocs) << "clear keeps the chunks";
        while (v.size() > 10) v.pop_back();
        v.shrink_to_fit();
        EXPECT_EQ(v.capacity(), CB);
        EXPECT_EQ(a.state().live_blocks, 1);
        v.clear();
        v.shrink_to_fit();
        EXPECT_EQ(v.capacity(), 0u);
        EXPECT_EQ(a.state().live_blocks, 0);
        v.push_back(7); // usable again
        EXPECT_EQ(v.back().value(), 7);
        v.pop_back();
        EXPECT_TRUE(v.empty());
        v.push_back(8);
        EXPECT_EQ(v.front().value(), 8);
    }
    EXPECT_EQ(a.state().live_blocks, 0);
}

TEST(BumpVector, ReserveAllocatesUpFront) {
    failing_allocator<int> a;
    bump_vector<int, failing_allocator<int>> v{a};
    v.reserve(1000);
    EXPECT_GE(v.capacity(), 1000u);
    const long allocs = a.state().allocations;
    for (int i = 0; i < 1000; ++i) v.push_back(i);
    EXPECT_EQ(a.state().allocations, allocs);
    v.reserve(10); // never shrinks
    EXPECT_GE(v.capacity(), 1000u);
}

// --- errors ----------------------------------------------------------------------------------

TEST(BumpVector, AtOutOfRangeThrows) {
    bv_int v;
    EXPECT_THROW((void)v.at(0), std::out_of_range);
    for (int i = 0; i < 100; ++i) v.push_back(i);
    EXPECT_EQ(v.at(99), 99);
    EXPECT_THROW((void)v.at(100), std::out_of_range);
    EXPECT_THROW((void)v.at(std::numeric_limits<std::size_t>::max()), std::out_of_range);
    const bv_int& cv = v;
    EXPECT_THROW((void)cv.at(1000), std::out_of_range);
    EXPECT_EQ(cv.at(5), 5);
}

TEST(BumpVector, MaxSizeIsEnforced) {
    bv_int v;
    EXPECT_GE(v.max_size(), std::size_t{1} << 40);
    EXPECT_THROW(v.reserve(v.max_size() + 1), std::length_error);
    EXPECT_THROW(v.reserve(std::numeric_limits<std::size_t>::max()), std::length_error);
    EXPECT_EQ(v.capacity(), 0u);

    // A chunk must fit in one allocation: with max_size() = 2B only chunks 0 (B) and 1 (2B) can
    // exist.
    bump_vector<int, small_max_allocator<int, 2 * B>> s;
    EXPECT_EQ(s.max_size(), 3 * B);
    for (std::size_t i = 0; i < 3 * B; ++i) s.push_back(static_cast<int>(i));
    EXPECT_THROW(s.push_back(-1), std::length_error);
    EXPECT_THROW(s.emplace_back(-1), std::length_error);
    EXPECT_EQ(s.size(), 3 * B);
    EXPECT_EQ(s.back(), static_cast<int>(3 * B) - 1);
    EXPECT_THROW(s.reserve(3 * B + 1), std::length_error);
    s.pop_back();
    s.push_back(5);
    EXPECT_EQ(s.back(), 5);

    // A pool serves one node size, so one 256-byte chunk is all it can give.
    memkit::pool nodes{256};
    bump_vector<int, memkit::std_allocator<int, memkit::pool>> p{nodes};
    EXPECT_EQ(p.max_size(), B);
    for (std::size_t i = 0; i < B; ++i) p.push_back(1);
    EXPECT_THROW(p.push_back(1), std::length_error);

    bump_vector<int, small_max_allocator<int, B - 1>> none;
    EXPECT_EQ(none.max_size(), 0u);
    EXPECT_THROW(none.push_back(1), std::length_error);
    EXPECT_TRUE(none.empty());
}

// --- exception safety ------------------------------------------------------------------------

TEST(BumpVector, PushBackIsStrongWhenTheCopyThrows) {
    live_object_guard guard;
    for (std::size_t fill : {std::size_t{10}, CB, 3 * CB}) { // mid-chunk, and at chunk boundaries
        failing_allocator<counted> a;
        bump_vector<counted, failing_allocator<counted>> v{a};
        for (std::size_t i = 0; i < fill; ++i) v.push_back(static_cast<int>(i));
        const auto before = contents(v);
        const auto cap = v.capacity();
        const long blocks = a.state().live_blocks;
        const counted value{-5};
        const long live = counted_state::live;
        const long points = for_each_failure_point(
            [&](long k) {
                counted_state::fail_at(k);
                v.push_back(value);
            },
            [&] {
                EXPECT_EQ(contents(v), before);
                EXPECT_EQ(v.size(), before.size());
                EXPECT_EQ(v.capacity(), cap);
                EXPECT_EQ(a.state().live_blocks, blocks);
                EXPECT_EQ(counted_state::live, live);
            });
        EXPECT_EQ(points, 1);
        EXPECT_EQ(v.back().value(), -5);
        EXPECT_EQ(v.size(), fill + 1);
    }
}

TEST(BumpVector, PushBackIsStrongWhenAllocationFails) {
    live_object_guard guard;
    for (std::size_t fill : {std::size_t{0}, CB, 3 * CB}) {
        failing_allocator<counted> a;
        bump_vector<counted, failing_allocator<counted>> v{a};
        for (std::size_t i = 0; i < fill; ++i) v.push_back(static_cast<int>(i));
        const auto before = contents(v);
        const long blocks = a.state().live_blocks;
        const long points = for_each_failure_point(
            [&](long k) {
                a.state().fail_at(k);
                v.emplace_back(77);
                a.state().fail_at(0);
            },
            [&] {
                EXPECT_EQ(contents(v), before);
                EXPECT_EQ(a.state().live_blocks, blocks);
            });
        EXPECT_EQ(points, 1);
        EXPECT_EQ(v.back().value(), 77);
    }
}

// Small trivially copyable values take another slow path (by value, in registers).
TEST(BumpVector, PushBackOfIntsIsStrongWhenAllocationFails) {
    for (std::size_t fill : {std::size_t{0}, B, 3 * B}) {
        failing_allocator<int> a;
        bump_vector<int, failing_allocator<int>> v{a};
        for (std::size_t i = 0; i < fill; ++i) v.push_back(static_cast<int>(i));
        const auto before = contents(v);
        const long blocks = a.state().live_blocks;
        const long points = for_each_failure_point(
            [&](long k) {
                a.state().fail_at(k);
                const int x = 77;
                v.push_back(x);
                a.state().fail_at(0);
            },
            [&] {
                EXPECT_EQ(contents(v), before);
                EXPECT_EQ(v.capacity(), fill);
                EXPECT_EQ(a.state().live_blocks, blocks);
            });
        EXPECT_EQ(points, 1);
        EXPECT_EQ(v.back(), 77);
        v.push_back(78); // the rvalue overload
        EXPECT_EQ(v.back(), 78);
        EXPECT_EQ(v.size(), fill + 2);
    }
}

TEST(BumpVector, CopyConstructionLeaksNothingOnFailure) {
    live_object_guard guard;
    failing_allocator<counted> a;
    bump_vector<counted, failing_allocator<counted>> src{a};
    for (int i = 0; i < 500; ++i) src.push_back(i);
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
    EXPECT_EQ(copy_points, 500);
    const long alloc_points = for_each_failure_point(
        [&](long k) {
            a.state().fail_at(k);
            auto copy = src;
            a.state().fail_at(0);
            EXPECT_EQ(copy, src);
        },
        check);
    EXPECT_EQ(alloc_points, chunks_for(500, CB));
}

TEST(BumpVector, ReserveIsStrong) {
    failing_allocator<int> a;
    bump_vector<int, failing_allocator<int>> v{a};
    for (int i = 0; i < 70; ++i) v.push_back(i);
    const auto cap = v.capacity();
    const long blocks = a.state().live_blocks;
    const long points = for_each_failure_point(
        [&](long k) {
            a.state().fail_at(k);
            v.reserve(10000);
            a.state().fail_at(0);
        },
        [&] {
            EXPECT_EQ(v.capacity(), cap);
            EXPECT_EQ(a.state().live_blocks, blocks);
            EXPECT_EQ(v.size(), 70u);
        });
    EXPECT_EQ(points, chunks_for(10000, B) - 2); // chunks 2.. (0 and 1 hold the 70)
    EXPECT_GE(v.capacity(), 10000u);
}

TEST(BumpVector, CopyAssignmentIsBasic) {
    live_object_guard guard;
    failing_allocator<counted> a;
    bump_vector<counted, failing_allocator<counted>> src{a}, dst{a};
    for (int i = 0; i < 100; ++i) src.push_back(i);
    for (int i = 0; i < 10; ++i) dst.push_back(-i);
    for_each_failure_point(
        [&](long k) {
            counted_state::fail_at(k);
            dst = src;
        },
        [&] {
            EXPECT_LT(dst.size(), src.size());
            EXPECT_EQ(static_cast<std::size_t>(dst.end() - dst.begin()), dst.size());
            for (std::size_t i = 0; i < dst.size(); ++i) EXPECT_EQ(dst[i].value(), src[i].value());
        });
    EXPECT_EQ(dst, src);
}

// --- copy, move, swap, allocators ------------------------------------------------------------

TEST(BumpVector, CopyMoveSwapAndComparisons) {
    memkit::arena ar;
    bump_vector<int> a{ar};
    for (int i = 0; i < 300; ++i) a.push_back(i);
    bump_vector<int> b = a;
    EXPECT_EQ(a, b);
    EXPECT_NE(&a[0], &b[0]);
    b.push_back(1);
    EXPECT_NE(a, b);
    EXPECT_LT(a, b);
    b[0] = -1;
    EXPECT_GT(a, b);

    const int* p = &a[150];
    bump_vector<int> m = std::move(a);
    EXPECT_EQ(&m[150], p);
    EXPECT_TRUE(a.empty()); // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(a.capacity(), 0u);
    a.push_back(3);
    EXPECT_EQ(a.size(), 1u);

    swap(a, m);
    EXPECT_EQ(&a[150], p);
    EXPECT_EQ(m.size(), 1u);
    m = std::move(a);
    EXPECT_EQ(&m[150], p);
    auto& alias = m;
    m = alias;
    EXPECT_EQ(&m[150], p);
    m = std::move(alias);
    EXPECT_EQ(m.size(), 300u);
    m = {1, 2, 3};
    EXPECT_EQ(contents(m), (std::vector<int>{1, 2, 3}));

    bv_int c(5, 9);
    EXPECT_EQ(contents(c), std::vector<int>(5, 9));
    std::istringstream in("1 2 3");
    bv_int d{std::istream_iterator<int>(in), std::istream_iterator<int>()};
    EXPECT_EQ(contents(d), (std::vector<int>{1, 2, 3}));
    bv_int e{4, 5};
    d.append(e.begin(), e.end());
    EXPECT_EQ(contents(d), (std::vector<int>{1, 2, 3, 4, 5}));
}

template <bool POCCA, bool POCMA, bool POCS>
void check_propagation() {
    using A = failing_allocator<int, POCCA, POCMA, POCS>;
    using BV = bump_vector<int, A>;
    A a1, a2;
    {
        BV x{a1};
        BV y{a2};
        for (int i = 0; i < 200; ++i) x.push_back(i);
        for (int i = 0; i < 10; ++i) y.push_back(-i);

        y = x;
        EXPECT_EQ(y, x);
        EXPECT_EQ(y.get_allocator() == a1, POCCA);
        EXPECT_EQ(a2.state().live_blocks != 0, !POCCA);

        BV z = x;
        EXPECT_TRUE(z.get_allocator() == a1);
        BV w(x, a2);
        EXPECT_TRUE(w.get_allocator() == a2);
        EXPECT_EQ(w, x);

        BV m{a2};
        m.push_back(42);
        const int* px = &x[0];
        m = std::move(x);
        EXPECT_EQ(m, z);
        EXPECT_EQ(m.get_allocator() == a1, POCMA);
        EXPECT_EQ(&m[0] == px, POCMA);

        BV n(std::move(z), a1);
        EXPECT_EQ(n.size(), 200u);
        BV o(std::move(n), a2);
        EXPECT_EQ(o.size(), 200u);
        EXPECT_TRUE(o.get_allocator() == a2);

        BV p{POCS ? a1 : a2};
        p.push_back(1);
        swap(p, o);
        EXPECT_EQ(o.size(), 1u);
        EXPECT_EQ(p.size(), 200u);
        EXPECT_TRUE(p.get_allocator() == a2);
    }
    EXPECT_EQ(a1.state().live_blocks, 0);
    EXPECT_EQ(a2.state().live_blocks, 0);
}

TEST(BumpVector, AllocatorPropagationNone) { check_propagation<false, false, false>(); }
TEST(BumpVector, AllocatorPropagationAll) { check_propagation<true, true, true>(); }
TEST(BumpVector, AllocatorPropagationMixed) {
    check_propagation<true, false, false>();
    check_propagation<false, true, false>();
    check_propagation<false, false, true>();
}

TEST(BumpVector, ArenaCopyAssignmentAdoptsTheSourceArena) {
    memkit::arena a1, a2;
    bump_vector<int> x{a1}, y{a2};
    for (int i = 0; i < 100; ++i) x.push_back(i);
    y.push_back(1);
    y = x; // std_allocator propagates on copy assignment
    EXPECT_EQ(&y.get_allocator().get(), &a1);
    EXPECT_TRUE(a1.owns(&y[0]));
}

TEST(BumpVector, PmrAllocator) {
    std::pmr::monotonic_buffer_resource mono;
    memkit::pmr::bump_vector<std::pmr::string> v{&mono};
    for (int i = 0; i < 100; ++i) {
        const std::string s = "a string long enough to allocate: " + std::to_string(i);
        v.emplace_back(s.c_str());
    }
    EXPECT_EQ(v.get_allocator().resource(), &mono);
    EXPECT_EQ(v[42].get_allocator().resource(), &mono); // uses-allocator construction
    memkit::pmr::bump_vector<std::pmr::string> copy{v, std::pmr::new_delete_resource()};
    EXPECT_EQ(copy, v);
    EXPECT_EQ(copy[3].get_allocator().resource(), std::pmr::new_delete_resource());
}

TEST(BumpVector, OverAlignedElements) {
    auto check = [](auto& v) {
        for (int i = 0; i < 1000; ++i) v.push_back(i);
        for (std::size_t i = 0; i < v.size(); ++i) {
            EXPECT_TRUE(memkit::is_aligned(&v[i], 64));
            EXPECT_EQ(v[i].v, static_cast<int>(i));
        }
    };
    memkit::arena ar;
    bump_vector<wide> a{ar};
    check(a);
    heap_bump_vector<wide> b;
    check(b);
    bump_vector<wide, failing_allocator<wide>> c;
    check(c);
    memkit::pmr::bump_vector<wide> d;
    check(d);
}

// --- differential test -----------------------------------------------------------------------

TEST(BumpVector, DifferentialAgainstStdVector) {
    live_object_guard guard;
    bump_vector<counted, std::allocator<counted>> v;
    std::vector<int> ref;
    std::mt19937_64 rng(0xb0b);
    auto check_all = [&] {
        ASSERT_EQ(v.size(), ref.size());
        ASSERT_EQ(static_cast<std::size_t>(v.end() - v.begin()), ref.size());
        std::size_t i = 0;
        for (const counted& c : v) ASSERT_EQ(c.value(), ref[i++]);
        ASSERT_GE(v.capacity(), v.size());
    };
    for (int op = 0; op < 100000; ++op) {
        const auto r = rng() % 100;
        const int x = static_cast<int>(rng() % 1000000);
        if (r < 45) {
            v.push_back(x);
            ref.push_back(x);
        } else if (r < 55) {
            ASSERT_EQ(v.emplace_back(x).value(), x);
            ref.emplace_back(x);
        } else if (r < 70) {
            if (!ref.empty()) {
                ASSERT_EQ(v.back().value(), ref.back());
                v.pop_back();
                ref.pop_back();
            }
        } else if (r < 85) {
            if (!ref.empty()) {
                const auto i = static_cast<std::size_t>(rng() % ref.size());
                ASSERT_EQ(v[i].value(), ref[i]);
                ASSERT_EQ(v.at(i).value(), ref[i]);
                ASSERT_EQ(v.begin()[static_cast<std::ptrdiff_t>(i)].value(), ref[i]);
            }
        } else if (r < 95) {
            if (!ref.empty()) {
                const auto i = static_cast<std::size_t>(rng() % ref.size());
                v[i] = x;
                ref[i] = x;
            }
        } else if (r < 97) {
            ASSERT_THROW((void)v.at(ref.size() + rng() % 10), std::out_of_range);
        } else if (r < 98) {
            v.shrink_to_fit();
        } else if (r < 99) {
            v.reserve(ref.size() + rng() % 5000);
        } else if (rng() % 10 == 0) {
            v.clear();
            ref.clear();
        }
        if (!ref.empty()) {
            ASSERT_EQ(v.front().value(), ref.front());
            ASSERT_EQ(v.back().value(), ref.back());
        }
        if (op % 1000 == 0) check_all();
        if (::testing::Test::HasFatalFailure()) return;
    }
    check_all();
}

} // namespace
