#include "memkit/container/small_vector.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <forward_list>
#include <iterator>
#include <limits>
#include <list>
#include <memory>
#include <memory_resource>
#include <numeric>
#include <optional>
#include <random>
#include <ranges>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/container_support.hpp"

namespace {

using memkit::small_vector;
using memkit::small_vector_base;
using memkit::test::allocator_state;
using memkit::test::counted;
using memkit::test::counted_nothrow_move;
using memkit::test::counted_state;
using memkit::test::failing_allocator;
using memkit::test::for_each_failure_point;
using memkit::test::live_object_guard;

// --- conformance and layout ---------------------------------------------------------------------

using ints8 = small_vector<int, 8>;
static_assert(std::contiguous_iterator<ints8::iterator>);
static_assert(std::contiguous_iterator<ints8::const_iterator>);
static_assert(std::random_access_iterator<ints8::reverse_iterator>);
static_assert(std::ranges::contiguous_range<ints8>);
static_assert(std::ranges::contiguous_range<const ints8>);
static_assert(std::ranges::sized_range<ints8>);
static_assert(std::ranges::common_range<ints8>);
static_assert(std::ranges::contiguous_range<small_vector_base<int>>);
static_assert(std::ranges::sized_range<small_vector_base<int>>);
static_assert(std::ranges::contiguous_range<memkit::pmr::small_vector<std::pmr::string>>);
static_assert(std::is_same_v<ints8::size_type, std::size_t>);
static_assert(std::is_same_v<std::ranges::range_value_t<ints8>, int>);

// The whole object is 64 bytes when N is left to the default.
static_assert(sizeof(small_vector<int>) == 64);
static_assert(sizeof(small_vector<char>) == 64);
static_assert(sizeof(small_vector<double>) == 64);
static_assert(sizeof(small_vector<void*>) == 64);
static_assert(small_vector<int>::static_capacity == 10);
static_assert(small_vector<char>::static_capacity == 32);
static_assert(small_vector<std::string>::static_capacity >= 1);
static_assert(memkit::pmr::small_vector<int>::static_capacity >= 1);
// N = 0 is the header alone; N does not change the header.
static_assert(sizeof(small_vector<int, 0>) == 24);
static_assert(sizeof(small_vector<int, 8>) == 24 + 8 * sizeof(int));
static_assert(sizeof(small_vector<char, 0>) == 32);
static_assert(sizeof(small_vector<std::max_align_t, 0>) == 32); // 16-byte aligned header

// Move construction is noexcept exactly when the element's is, so std::vector relocates with it.
static_assert(std::is_nothrow_move_constructible_v<small_vector<int, 4>>);
static_assert(std::is_nothrow_move_constructible_v<small_vector<std::string, 4>>);
static_assert(!std::is_nothrow_move_constructible_v<small_vector<counted, 4>>);
static_assert(std::is_nothrow_default_constructible_v<small_vector<int, 4>>);

// Comparisons exist only when the element has them.
struct no_compare {
    int v;
};
static_assert(!std::equality_comparable<small_vector<no_compare, 2>>);
static_assert(!std::three_way_comparable<small_vector<no_compare, 2>>);
static_assert(std::three_way_comparable<small_vector<int, 2>>);

template <class V>
std::vector<int> values(const V& v) {
    std::vector<int> r;
    for (const auto& x : v) r.push_back(static_cast<int>(x));
    return r;
}

template <class T>
bool aligned_to(const T* p, std::size_t a) {
    return memkit::is_aligned(static_cast<const void*>(p), a);
}

// --- construction -------------------------------------------------------------------------------

TEST(SmallVector, DefaultIsEmptyAndInline) {
    ints8 v;
    EXPECT_TRUE(v.empty());
    EXPECT_EQ(v.size(), 0u);
    EXPECT_EQ(v.capacity(), 8u);
    EXPECT_EQ(v.inline_capacity(), 8u);
    EXPECT_TRUE(v.is_inline());
    EXPECT_EQ(v.begin(), v.end());
    // The inline buffer is inside the object.
    const auto* obj = reinterpret_cast<const std::byte*>(&v);
    const auto* data = reinterpret_cast<const std::byte*>(v.data());
    EXPECT_GE(data, obj);
    EXPECT_LT(data, obj + sizeof(v));
}

TEST(SmallVector, Constructors) {
    ints8 a(5);
    EXPECT_EQ(values(a), std::vector<int>(5, 0));
    ints8 b(3, 7);
    EXPECT_EQ(values(b), (std::vector<int>{7, 7, 7}));
    ints8 c(12, 1);
    EXPECT_FALSE(c.is_inline());
    EXPECT_EQ(c.capacity(), 12u); // exact, as std::vector
    const std::list<int> l{1, 2, 3, 4};
    ints8 d(l.begin(), l.end());
    EXPECT_EQ(values(d), (std::vector<int>{1, 2, 3, 4}));
    std::istringstream in("9 8 7 6 5 4 3 2 1 0");
    ints8 e{std::istream_iterator<int>(in), std::istream_iterator<int>()};
    EXPECT_EQ(values(e), (std::vector<int>{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}));
    EXPECT_FALSE(e.is_inline());
    ints8 f{1, 2, 3};
    EXPECT_EQ(values(f), (std::vector<int>{1, 2, 3}));
    // Two ints are a count and a value, not an iterator range.
    small_vector<std::size_t, 4> g(std::size_t{2}, std::size_t{9});
    EXPECT_EQ(g.size(), 2u);
    EXPECT_EQ(g[1], 9u);
    small_vector h{1, 2, 3}; // deduces T and the default N
    static_assert(std::is_same_v<decltype(h), small_vector<int>>);
}

TEST(SmallVector, CopyAndMoveConstruction) {
    ints8 inl{1, 2, 3};
    ints8 heap(20, 4);
    ints8 c1(inl);
    ints8 c2(heap);
    EXPECT_EQ(c1, inl);
    EXPECT_EQ(c2, heap);
    EXPECT_TRUE(c1.is_inline());
    EXPECT_NE(c2.data(), heap.data());

    const int* heap_data = heap.data();
    ints8 m1(std::move(heap)); // takes the buffer
    EXPECT_EQ(m1.data(), heap_data);
    EXPECT_EQ(m1.size(), 20u);
    EXPECT_TRUE(heap.empty()); // NOLINT(bugprone-use-after-move): the source is documented empty
    EXPECT_TRUE(heap.is_inline());
    EXPECT_EQ(heap.capacity(), 8u);
    heap.push_back(5); // and usable
    EXPECT_EQ(values(heap), std::vector<int>{5});

    ints8 m2(std::move(inl)); // moves the elements
    EXPECT_EQ(values(m2), (std::vector<int>{1, 2, 3}));
    EXPECT_TRUE(m2.is_inline());
    EXPECT_TRUE(inl.empty()); // NOLINT(bugprone-use-after-move)

    // Across inline capacities, through the base.
    small_vector<int, 2> small{1, 2, 3, 4}; // heap
    small_vector<int, 16> big(small);
    EXPECT_TRUE(big.is_inline());
    EXPECT_EQ(values(big), (std::vector<int>{1, 2, 3, 4}));
    small_vector<int, 2> back(big); // does not fit: heap
    EXPECT_FALSE(back.is_inline());
    EXPECT_EQ(back, big);
    const int* small_data = small.data();
    small_vector<int, 16> stolen(std::move(small));
    EXPECT_EQ(stolen.data(), small_data); // a heap buffer moves whatever N is
    EXPECT_FALSE(stolen.is_inline());
    stolen.shrink_to_fit(); // and comes home
    EXPECT_TRUE(stolen.is_inline());
    EXPECT_EQ(values(stolen), (std::vector<int>{1, 2, 3, 4}));
}

TEST(SmallVector, Assignment) {
    ints8 v{1, 2, 3};
    ints8 heap(30, 2);
    v = heap;
    EXPECT_EQ(v, heap);
    v = {4, 5};
    EXPECT_EQ(values(v), (std::vector<int>{4, 5}));
    EXPECT_FALSE(v.is_inline()); // assignment keeps capacity
    const int* heap_data = heap.data();
    v = std::move(heap);
    EXPECT_EQ(v.data(), heap_data);
    EXPECT_TRUE(heap.empty()); // NOLINT(bugprone-use-after-move)
    small_vector<int, 3> other{7, 8, 9};
    v = other; // any N
    EXPECT_EQ(values(v), (std::vector<int>{7, 8, 9}));
    v = std::move(other);
    EXPECT_EQ(values(v), (std::vector<int>{7, 8, 9}));
    EXPECT_TRUE(other.empty()); // NOLINT(bugprone-use-after-move)
    auto& self = v;
    v = self;
    EXPECT_EQ(values(v), (std::vector<int>{7, 8, 9}));
    v = std::move(self);
    EXPECT_EQ(values(v), (std::vector<int>{7, 8, 9}));

    v.assign(4, 1);
    EXPECT_EQ(values(v), (std::vector<int>{1, 1, 1, 1}));
    v.assign(50, 3);
    EXPECT_EQ(values(v), std::vector<int>(50, 3));
    v.assign({1, 2});
    EXPECT_EQ(values(v), (std::vector<int>{1, 2}));
    std::istringstream in("5 6 7");
    v.assign(std::istream_iterator<int>(in), std::istream_iterator<int>());
    EXPECT_EQ(values(v), (std::vector<int>{5, 6, 7}));
    std::istringstream in2("1");
    v.assign(std::istream_iterator<int>(in2), std::istream_iterator<int>());
    EXPECT_EQ(values(v), std::vector<int>{1});
    const std::forward_list<int> fl{3, 2, 1};
    v.assign(fl.begin(), fl.end());
    EXPECT_EQ(values(v), (std::vector<int>{3, 2, 1}));
    // assign(n, value) where value is an element of the vector.
    v.assign(6, v[1]);
    EXPECT_EQ(values(v), std::vector<int>(6, 2));
    v.assign(100, v[0]);
    EXPECT_EQ(values(v), std::vector<int>(100, 2));
    v.assign(1, v[99]);
    EXPECT_EQ(values(v), std::vector<int>{2});
}

// --- access and iteration -----------------------------------------------------------------------

TEST(SmallVector, ElementAccess) {
    ints8 v{10, 20, 30};
    EXPECT_EQ(v.at(1), 20);
    EXPECT_THROW((void)v.at(3), std::out_of_range);
    EXPECT_THROW((void)std::as_const(v).at(100), std::out_of_range);
    EXPECT_EQ(v[2], 30);
    EXPECT_EQ(v.front(), 10);
    EXPECT_EQ(v.back(), 30);
    EXPECT_EQ(v.data(), &v[0]);
    v.front() = 1;
    v.back() = 3;
    EXPECT_EQ(values(v), (std::vector<int>{1, 20, 3}));
    ints8 heap(20);
    std::iota(heap.begin(), heap.end(), 0);
    EXPECT_EQ(heap.at(19), 19);
    EXPECT_THROW((void)heap.at(20), std::out_of_range);
}

TEST(SmallVector, IteratorsAndRanges) {
    ints8 v{5, 3, 9, 1};
    EXPECT_EQ(std::vector<int>(v.rbegin(), v.rend()), (std::vector<int>{1, 9, 3, 5}));
    EXPECT_EQ(std::vector<int>(v.crbegin(), v.crend()), (std::vector<int>{1, 9, 3, 5}));
    EXPECT_EQ(v.cend() - v.cbegin(), 4);
    std::ranges::sort(v);
    EXPECT_EQ(values(v), (std::vector<int>{1, 3, 5, 9}));
    std::vector<int> doubled;
    std::ranges::transform(v, std::back_inserter(doubled), [](int x) { return x * 2; });
    EXPECT_EQ(doubled, (std::vector<int>{2, 6, 10, 18}));
    EXPECT_EQ(std::ranges::find(v, 5), v.begin() + 2);
    EXPECT_EQ(std::ranges::data(v), v.data());
    EXPECT_EQ(std::ranges::size(v), 4u);
    std::span<int> s{v};
    EXPECT_EQ(s.size(), 4u);
}

// --- capacity -----------------------------------------------------------------------------------

TEST(SmallVector, GrowthAndShrink) {
    small_vector<int, 4> v;
    for (int i = 0; i < 4; ++i) v.push_back(i);
    EXPECT_TRUE(v.is_inline());
    v.push_back(4);
    EXPECT_FALSE(v.is_inline());
    EXPECT_EQ(v.capacity(), 8u); // doubled
    for (int i = 5; i < 9; ++i) v.push_back(i);
    EXPECT_EQ(v.capacity(), 16u);
    EXPECT_EQ(values(v), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
    v.shrink_to_fit();
    EXPECT_EQ(v.capacity(), 9u);
    EXPECT_FALSE(v.is_inline());
    v.resize(3);
    v.shrink_to_fit(); // fits inline again
    EXPECT_TRUE(v.is_inline());
    EXPECT_EQ(v.capacity(), 4u);
    EXPECT_EQ(values(v), (std::vector<int>{0, 1, 2}));
    v.shrink_to_fit(); // already inline: nothing
    EXPECT_TRUE(v.is_inline());
    v.reserve(2);
    EXPECT_TRUE(v.is_inline());
    v.reserve(100);
    EXPECT_EQ(v.capacity(), 100u);
    EXPECT_EQ(values(v), (std::vector<int>{0, 1, 2}));
    v.clear();
    EXPECT_EQ(v.capacity(), 100u); // clear keeps the buffer
    v.shrink_to_fit();
    EXPECT_TRUE(v.is_inline());
}

TEST(SmallVector, MaxSizeAndLengthErrors) {
    ints8 v{1, 2};
    EXPECT_EQ(v.max_size(), std::size_t{0xFFFFFFFFu}); // 32-bit sizes for int
    EXPECT_THROW(v.reserve(v.max_size() + 1), std::length_error);
    EXPECT_THROW(v.resize(v.max_size() + 1), std::length_error);
    EXPECT_THROW(v.insert(v.begin(), v.max_size(), 0), std::length_error);
    EXPECT_THROW(v.assign(v.max_size() + 1, 0), std::length_error);
    EXPECT_THROW((ints8(v.max_size() + 1)), std::length_error);
    EXPECT_EQ(values(v), (std::vector<int>{1, 2})); // unchanged
    EXPECT_TRUE(v.is_inline());
    small_vector<char, 8> c;
    EXPECT_GT(c.max_size(), std::size_t{0xFFFFFFFFu}); // 64-bit sizes for bytes
    EXPECT_THROW(c.reserve(c.max_size() + 1), std::length_error);
    // The allocator's limit counts too.
    memkit::arena a;
    small_vector<std::uint64_t, 2, memkit::std_allocator<std::uint64_t, memkit::arena>> s{a};
    EXPECT_LE(s.max_size(), std::numeric_limits<std::uint32_t>::max());
}

// --- modifiers ----------------------------------------------------------------------------------

TEST(SmallVector, PushEmplacePop) {
    small_vector<std::string, 2> v;
    std::string& a = v.emplace_back(3, 'a');
    EXPECT_EQ(a, "aaa");
    v.push_back("b");
    std::string c = "c";
    v.push_back(c);
    EXPECT_EQ(c, "c");
    v.push_back(std::move(c));
    EXPECT_EQ(v.size(), 4u);
    EXPECT_EQ(v.back(), "c");
    v.pop_back();
    v.pop_back();
    EXPECT_EQ(v.size(), 2u);
    EXPECT_EQ(v.back(), "b");
    // push_back of an element of the full vector (the reallocation must copy it first).
    small_vector<std::string, 2> w{"first string, long enough to allocate", "second"};
    w.push_back(w[0]);
    EXPECT_EQ(w[2], "first string, long enough to allocate");
    w.shrink_to_fit();
    w.emplace_back(w[1]);
    EXPECT_EQ(w[3], "second");
}

TEST(SmallVector, InsertInPlaceAndReallocating) {
    for (std::size_t reserve : {std::size_t{0}, std::size_t{64}}) {
        small_vector<std::string, 4> v{"a", "b", "c"};
        v.reserve(reserve);
        std::vector<std::string> ref{"a", "b", "c"};
        auto same = [&] { return std::equal(v.begin(), v.end(), ref.begin(), ref.end()); };
        EXPECT_EQ(*v.insert(v.begin() + 1, std::string("x")), "x");
        ref.insert(ref.begin() + 1, "x");
        EXPECT_TRUE(same());
        const std::string y = "y";
        EXPECT_EQ(*v.insert(v.begin(), y), "y");
        ref.insert(ref.begin(), y);
        EXPECT_TRUE(same());
        v.insert(v.end(), "z");
        ref.insert(ref.end(), "z");
        EXPECT_TRUE(same());
        EXPECT_EQ(*v.insert(v.begin() + 2, 3, "n"), "n");
        ref.insert(ref.begin() + 2, 3, "n");
        EXPECT_TRUE(same());
        const std::vector<std::string> src{"r1", "r2", "r3", "r4", "r5", "r6", "r7"};
        v.insert(v.begin() + 1, src.begin(), src.end()); // fewer elements after pos than new
        ref.insert(ref.begin() + 1, src.begin(), src.end());
        EXPECT_TRUE(same());
        v.insert(v.end() - 1, src.begin(), src.begin() + 1); // more after
        ref.insert(ref.end() - 1, src.begin(), src.begin() + 1);
        EXPECT_TRUE(same());
        v.insert(v.begin() + 3, {"i1", "i2"});
        ref.insert(ref.begin() + 3, {"i1", "i2"});
        EXPECT_TRUE(same());
        std::istringstream in("s1 s2 s3");
        v.insert(v.begin() + 2, std::istream_iterator<std::string>(in),
                 std::istream_iterator<std::string>());
        ref.insert(ref.begin() + 2, {"s1", "s2", "s3"});
        EXPECT_TRUE(same());
        EXPECT_EQ(*v.emplace(v.begin() + 4, 2, 'e'), "ee");
        ref.emplace(ref.begin() + 4, 2, 'e');
        EXPECT_TRUE(same());
        EXPECT_EQ(v.insert(v.begin() + 1, src.begin(), src.begin()), v.begin() + 1); // empty
        EXPECT_EQ(v.insert(v.begin() + 1, 0, "none"), v.begin() + 1);
        EXPECT_TRUE(same());
    }
}

TEST(SmallVector, InsertArgumentsMayBeElements) {
    for (std::size_t reserve : {std::size_t{0}, std::size_t{64}}) {
        small_vector<std::string, 4> v{"a long string that is not in the small buffer", "b", "c",
                                       "d"};
        v.reserve(reserve);
        v.insert(v.begin(), v.back()); // lvalue element shifted by the insertion
        EXPECT_EQ(v[0], "d");
        v.insert(v.begin() + 1, 2, v[1]); // count copies of an element
        EXPECT_EQ(v[1], "a long string that is not in the small buffer");
        EXPECT_EQ(v[2], "a long string that is not in the small buffer");
        v.emplace(v.begin(), v[5]); // emplace from an element
        EXPECT_EQ(v[0], "c");
        v.resize(v.size() + 40, v[0]); // resize with an element, reallocating
        EXPECT_EQ(v.back(), "c");
        v.insert(v.end(), 3, v[1]);
        EXPECT_EQ(v.back(), "d");
    }
}

TEST(SmallVector, EraseAndResize) {
    ints8 v{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    EXPECT_EQ(*v.erase(v.begin() + 2), 3);
    EXPECT_EQ(values(v), (std::vector<int>{0, 1, 3, 4, 5, 6, 7, 8, 9}));
    EXPECT_EQ(v.erase(v.begin() + 1, v.begin() + 4), v.begin() + 1);
    EXPECT_EQ(values(v), (std::vector<int>{0, 5, 6, 7, 8, 9}));
    EXPECT_EQ(v.erase(v.begin() + 2, v.begin() + 2), v.begin() + 2);
    const auto at_end = v.erase(v.begin() + 4, v.end());
    EXPECT_EQ(at_end, v.end());
    EXPECT_EQ(values(v), (std::vector<int>{0, 5, 6, 7}));
    v.resize(6);
    EXPECT_EQ(values(v), (std::vector<int>{0, 5, 6, 7, 0, 0}));
    v.resize(2);
    EXPECT_EQ(values(v), (std::vector<int>{0, 5}));
    v.resize(12, 4);
    EXPECT_EQ(values(v), (std::vector<int>{0, 5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4}));
    v.clear();
    EXPECT_TRUE(v.empty());
    // std::erase / std::erase_if style, found by ADL.
    ints8 w{1, 2, 3, 2, 5, 2};
    EXPECT_EQ(erase(w, 2), 3u);
    EXPECT_EQ(values(w), (std::vector<int>{1, 3, 5}));
    EXPECT_EQ(erase_if(w, [](int x) { return x > 2; }), 2u);
    EXPECT_EQ(values(w), std::vector<int>{1});
    EXPECT_EQ(memkit::erase(w, 42), 0u);
}

// --- swap ---------------------------------------------------------------------------------------

template <std::size_t NA, std::size_t NB>
void check_swap(std::size_t na, std::size_t nb) {
    small_vector<std::string, NA> a;
    small_vector<std::string, NB> b;
    // (std::string::append, not "a" + std::to_string(i): GCC 12 -O3 warns -Wrestrict inside
    // libstdc++'s operator+, a known false positive.)
    for (std::size_t i = 0; i < na; ++i) a.push_back(std::string("a").append(std::to_string(i)));
    for (std::size_t i = 0; i < nb; ++i) b.push_back(std::string("b").append(std::to_string(i)));
    const std::vector<std::string> ra(a.begin(), a.end()), rb(b.begin(), b.end());
    const bool a_heap = !a.is_inline(), b_heap = !b.is_inline();
    const std::string* const a_data = a.data();
    a.swap(b);
    EXPECT_TRUE(std::ranges::equal(a, rb)) << NA << "/" << NB << " " << na << "/" << nb;
    EXPECT_TRUE(std::ranges::equal(b, ra)) << NA << "/" << NB << " " << na << "/" << nb;
    if (a_heap) {
        EXPECT_EQ(b.data(), a_data); // a heap buffer changes hands
    }
    if (a_heap && b_heap) {
        EXPECT_FALSE(a.is_inline());
        EXPECT_FALSE(b.is_inline());
    }
    using std::swap;
    swap(a, b); // the base's ADL swap
    EXPECT_TRUE(std::ranges::equal(a, ra));
    EXPECT_TRUE(std::ranges::equal(b, rb));
}

TEST(SmallVector, SwapAllStates) {
    check_swap<4, 4>(2, 3);  // inline / inline
    check_swap<4, 4>(0, 4);  // inline / inline, one empty
    check_swap<4, 4>(9, 2);  // heap / inline
    check_swap<4, 4>(2, 9);  // inline / heap
    check_swap<4, 4>(9, 12); // heap / heap
    check_swap<2, 8>(1, 7);  // inline / inline, the short one cannot hold the other
    check_swap<8, 2>(7, 1);
    check_swap<2, 8>(5, 3); // heap / inline, the heap one's N is too small for the other
    check_swap<8, 2>(3, 5);
    check_swap<0, 4>(3, 2); // N = 0
    check_swap<0, 0>(3, 0);
    check_swap<0, 0>(0, 0);
    small_vector<int, 4> a{1, 2}, b{3};
    std::swap(a, b); // the generic std::swap (moves) works too
    EXPECT_EQ(values(a), std::vector<int>{3});
    EXPECT_EQ(values(b), (std::vector<int>{1, 2}));
    using std::swap;
    swap(a, b); // ADL finds small_vector's own swap
    EXPECT_EQ(values(a), (std::vector<int>{1, 2}));
    a.swap(a);
    EXPECT_EQ(values(a), (std::vector<int>{1, 2}));
}

TEST(SmallVector, MoveOnlyElements) {
    small_vector<std::unique_ptr<int>, 2> v;
    for (int i = 0; i < 5; ++i) v.push_back(std::make_unique<int>(i));
    v.insert(v.begin() + 1, std::make_unique<int>(10));
    v.emplace(v.begin(), std::make_unique<int>(20));
    v.erase(v.begin() + 2);
    v.resize(8);
    EXPECT_EQ(v[7], nullptr);
    v.resize(4);
    v.shrink_to_fit();
    std::vector<int> got;
    for (const auto& p : v) got.push_back(*p);
    EXPECT_EQ(got, (std::vector<int>{20, 0, 1, 2}));
    small_vector<std::unique_ptr<int>, 2> w(std::move(v));
    EXPECT_EQ(*w[0], 20);
    small_vector<std::unique_ptr<int>, 8> x;
    x.emplace_back(std::make_unique<int>(1));
    x.swap(w); // inline (N = 8) with heap (N = 2)
    EXPECT_EQ(*x[3], 2);
    EXPECT_EQ(*w[0], 1);
    w = std::move(x);
    EXPECT_EQ(w.size(), 4u);
    std::ranges::sort(w, [](const auto& a, const auto& b) { return *a < *b; });
    EXPECT_EQ(*w.front(), 0);
    // A vector of small vectors relocates them with their noexcept move constructor.
    std::vector<small_vector<std::unique_ptr<int>, 2>> outer(3);
    outer[1].push_back(std::make_unique<int>(5));
    outer.reserve(100);
    EXPECT_EQ(*outer[1][0], 5);
}

// --- comparisons --------------------------------------------------------------------------------

struct less_only {
    int v;
    friend bool operator<(const less_only& a, const less_only& b) { return a.v < b.v; }
};

TEST(SmallVector, Comparisons) {
    ints8 a{1, 2, 3}, b{1, 2, 4};
    small_vector<int, 2> c{1, 2, 3}; // other N, on the heap
    EXPECT_TRUE(a == c);
    EXPECT_TRUE(a != b);
    EXPECT_TRUE(a < b);
    EXPECT_TRUE(b > c);
    EXPECT_TRUE(a <= c);
    EXPECT_EQ(a <=> b, std::strong_ordering::less);
    EXPECT_EQ(a <=> c, std::strong_ordering::equal);
    EXPECT_EQ((ints8{1, 2}) <=> a, std::strong_ordering::less);
    small_vector<less_only, 2> x{{1}, {2}}, y{{1}, {3}};
    static_assert(std::is_same_v<decltype(x <=> y), std::weak_ordering>);
    EXPECT_EQ(x <=> y, std::weak_ordering::less);
    EXPECT_TRUE(y > x);
    small_vector<double, 2> d{1.0}, e{std::nan("")};
    static_assert(std::is_same_v<decltype(d <=> e), std::partial_ordering>);
    EXPECT_EQ(d <=> e, std::partial_ordering::unordered);
}

// --- the size-erased base -----------------------------------------------------------------------

int sum_and_append(small_vector_base<int>& v, int x) {
    v.push_back(x);
    v.insert(v.begin(), x);
    return std::accumulate(v.begin(), v.end(), 0);
}

TEST(SmallVector, BaseReferenceTakesAnyN) {
    small_vector<int, 1> a{1};
    small_vector<int, 32> b{1, 2};
    small_vector<int, 0> c;
    EXPECT_EQ(sum_and_append(a, 10), 21);
    EXPECT_EQ(sum_and_append(b, 10), 23);
    EXPECT_EQ(sum_and_append(c, 10), 20);
    EXPECT_FALSE(a.is_inline());
    EXPECT_TRUE(b.is_inline());
    small_vector_base<int>& ra = a;
    small_vector_base<int>& rb = b;
    ra = rb; // assignment through the base, any N
    EXPECT_EQ(values(a), (std::vector<int>{10, 1, 2, 10}));
    ra.swap(rb);
    ra.resize(1);
    ra.shrink_to_fit(); // knows a's inline capacity without knowing N
    EXPECT_TRUE(a.is_inline());
    EXPECT_EQ(ra.inline_capacity(), 1u);
    EXPECT_EQ(rb.inline_capacity(), 32u);
    rb = std::move(ra);
    EXPECT_EQ(values(b), std::vector<int>{10});
    EXPECT_TRUE(a.empty()); // NOLINT(bugprone-use-after-move)
}

TEST(SmallVector, ZeroInlineCapacity) {
    small_vector<std::string, 0> v;
    EXPECT_TRUE(v.is_inline());
    EXPECT_EQ(v.capacity(), 0u);
    EXPECT_EQ(v.begin(), v.end());
    v.push_back("a");
    EXPECT_FALSE(v.is_inline());
    EXPECT_EQ(v.capacity(), 1u);
    v.push_back("b");
    v.push_back("c");
    EXPECT_EQ(v.capacity(), 4u);
    small_vector<std::string, 0> w = std::move(v);
    EXPECT_TRUE(v.is_inline()); // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(w.size(), 3u);
    w.clear();
    w.shrink_to_fit();
    EXPECT_TRUE(w.is_inline());
    EXPECT_EQ(w.capacity(), 0u);
}

// --- alignment ----------------------------------------------------------------------------------

struct alignas(64) wide {
    int v = 0;
    wide() = default;
    wide(int x) : v(x) {}              // NOLINT(google-explicit-constructor)
    operator int() const { return v; } // NOLINT(google-explicit-constructor)
};

template <class V>
void check_wide(V& v) {
    EXPECT_TRUE(aligned_to(v.data(), 64));
    EXPECT_TRUE(v.is_inline());
    for (int i = 0; i < 5; ++i) v.emplace_back(i);
    EXPECT_FALSE(v.is_inline());
    EXPECT_TRUE(aligned_to(v.data(), 64));
    for (std::size_t i = 0; i < v.size(); ++i) EXPECT_TRUE(aligned_to(&v[i], 64));
    EXPECT_EQ(values(v), (std::vector<int>{0, 1, 2, 3, 4}));
    v.resize(2);
    v.shrink_to_fit();
    EXPECT_TRUE(v.is_inline());
    EXPECT_TRUE(aligned_to(v.data(), 64));
    EXPECT_EQ(values(v), (std::vector<int>{0, 1}));
}

TEST(SmallVector, OverAlignedElements) {
    static_assert(alignof(small_vector<wide, 2>) == 64);
    static_assert(small_vector<wide>::static_capacity == 1);
    small_vector<wide, 2> a;
    check_wide(a);
    memkit::arena ar;
    small_vector<wide, 2, memkit::std_allocator<wide, memkit::arena>> b{ar};
    check_wide(b);
    std::pmr::monotonic_buffer_resource mr;
    memkit::pmr::small_vector<wide, 2> c{&mr};
    check_wide(c);
    auto boxed = std::make_unique<small_vector<wide, 3>>(2, wide{7});
    EXPECT_TRUE(aligned_to(boxed->data(), 64));
    static_assert(sizeof(small_vector<wide, 0>) == 64); // no buffer, but it ends on one
    small_vector<wide, 0> z;
    EXPECT_TRUE(z.is_inline());
    z.emplace_back(1);
    z.emplace_back(2);
    EXPECT_TRUE(aligned_to(z.data(), 64));
    EXPECT_TRUE(aligned_to(&z[1], 64));
    z.clear();
    z.shrink_to_fit();
    EXPECT_TRUE(z.is_inline());
}

// --- allocators ---------------------------------------------------------------------------------

TEST(SmallVectorAllocators, ArenaStdAllocator) {
    memkit::arena a, b;
    using alloc = memkit::std_allocator<int, memkit::arena>;
    small_vector<int, 4, alloc> v{a};
    for (int i = 0; i < 4; ++i) v.push_back(i);
    EXPECT_EQ(a.stats().allocations, 0u); // inline: nothing from the arena
    v.push_back(4);
    EXPECT_TRUE(a.owns(v.data()));
    EXPECT_EQ(a.stats().allocations, 1u);
    small_vector<int, 4, alloc> w{b};
    w = v; // copy-assignment propagates std_allocator
    EXPECT_EQ(&w.get_allocator().get(), &a);
    const int* v_data = v.data();
    small_vector<int, 4, alloc> x{b};
    x = std::move(v); // propagates on move: the buffer is taken even across arenas
    EXPECT_EQ(x.data(), v_data);
    EXPECT_EQ(&x.get_allocator().get(), &a);
    small_vector<int, 4, alloc> y(x, alloc{b}); // allocator-extended copy
    EXPECT_TRUE(b.owns(y.data()));
    EXPECT_EQ(y, x);
}

TEST(SmallVectorAllocators, PolymorphicAllocator) {
    std::pmr::monotonic_buffer_resource mr1, mr2;
    using vec = memkit::pmr::small_vector<std::pmr::string, 2>;
    static_assert(std::uses_allocator_v<vec, std::pmr::polymorphic_allocator<int>>);
    vec v{&mr1};
    const char* long_text = "a string far too long for the small string buffer";
    v.emplace_back(long_text);
    v.emplace_back(long_text);
    v.push_back(std::pmr::string(long_text)); // moved in, rebuilt with mr1 (uses-allocator)
    EXPECT_FALSE(v.is_inline());
    for (const auto& s : v) EXPECT_EQ(s.get_allocator().resource(), &mr1);
    vec copy(v); // select_on_container_copy_construction: the default resource
    EXPECT_EQ(copy.get_allocator().resource(), std::pmr::get_default_resource());
    vec w{&mr2};
    w = std::move(v); // unequal, not propagating: element by element into mr2
    EXPECT_EQ(w.get_allocator().resource(), &mr2);
    EXPECT_EQ(w.size(), 3u);
    for (const auto& s : w) EXPECT_EQ(s.get_allocator().resource(), &mr2);
    EXPECT_TRUE(v.empty());    // NOLINT(bugprone-use-after-move)
    vec z(std::move(w), &mr1); // allocator-extended move, unequal
    EXPECT_EQ(z.size(), 3u);
    EXPECT_EQ(z[0].get_allocator().resource(), &mr1);
    // A pmr vector of pmr small_vectors passes its resource down.
    std::pmr::vector<memkit::pmr::small_vector<int, 2>> outer{&mr1};
    outer.emplace_back(3, 1);
    EXPECT_EQ(outer[0].get_allocator().resource(), &mr1);
}

template <bool P>
using fail_alloc = failing_allocator<int, P, P, P>;

TEST(SmallVectorAllocators, PropagatingFailingAllocator) {
    fail_alloc<true> a1, a2;
    {
        small_vector<int, 2, fail_alloc<true>> v(10, 1, a1), w(10, 2, a2);
        w = v; // POCCA: w frees its buffer through a2, then allocates through a1
        EXPECT_TRUE(w.get_allocator() == a1);
        EXPECT_EQ(a2.state().live_blocks, 0);
        EXPECT_EQ(values(w), std::vector<int>(10, 1));
        small_vector<int, 2, fail_alloc<true>> x({5, 6, 7}, a2);
        const int* x_data = x.data();
        v = std::move(x); // POCMA: the buffer is taken across unequal allocators
        EXPECT_EQ(v.data(), x_data);
        EXPECT_TRUE(v.get_allocator() == a2);
        small_vector<int, 2, fail_alloc<true>> y({9}, a1); // inline
        y.swap(v); // POCS: the allocators follow the buffers
        EXPECT_TRUE(y.get_allocator() == a2);
        EXPECT_TRUE(v.get_allocator() == a1);
        EXPECT_EQ(values(y), (std::vector<int>{5, 6, 7}));
        EXPECT_EQ(values(v), std::vector<int>{9});
        w.swap(y); // heap/heap, unequal, POCS
        EXPECT_TRUE(w.get_allocator() == a2);
        EXPECT_TRUE(y.get_allocator() == a1);
    }
    EXPECT_EQ(a1.state().live_blocks, 0); // every block went back to its allocator
    EXPECT_EQ(a2.state().live_blocks, 0);
}

TEST(SmallVectorAllocators, NonPropagatingFailingAllocator) {
    fail_alloc<false> a1, a2;
    {
        small_vector<int, 2, fail_alloc<false>> v(10, 1, a1), w(10, 2, a2);
        w = v;
        EXPECT_TRUE(w.get_allocator() == a2); // no POCCA
        EXPECT_EQ(values(w), std::vector<int>(10, 1));
        const long a2_allocs = a2.state().allocations;
        const int* v_data = v.data();
        w = std::move(v); // unequal, no POCMA: element-wise, into w's own buffer
        EXPECT_NE(w.data(), v_data);
        EXPECT_EQ(a2.state().allocations, a2_allocs); // w had room
        EXPECT_TRUE(v.empty());                       // NOLINT(bugprone-use-after-move)
        small_vector<int, 2, fail_alloc<false>> x(20, 3, a1);
        w = std::move(x); // needs a bigger buffer, from a2
        EXPECT_EQ(a2.state().allocations, a2_allocs + 1);
        EXPECT_EQ(values(w), std::vector<int>(20, 3));
        // Equal allocators: the buffer is taken.
        small_vector<int, 2, fail_alloc<false>> y(30, 4, a2);
        const int* y_data = y.data();
        w = std::move(y);
        EXPECT_EQ(w.data(), y_data);
        // Swap with equal allocators, all four combinations.
        small_vector<int, 2, fail_alloc<false>> z({1}, a2);
        w.swap(z);
        EXPECT_EQ(values(z), std::vector<int>(30, 4));
        EXPECT_EQ(values(w), std::vector<int>{1});
        small_vector<int, 2, fail_alloc<false>> m(std::move(z), a1); // unequal: element-wise
        EXPECT_EQ(values(m), std::vector<int>(30, 4));
        EXPECT_TRUE(m.get_allocator() == a1);
        small_vector<int, 2, fail_alloc<false>> n(std::move(m), a1); // equal: taken
        EXPECT_TRUE(m.is_inline()); // NOLINT(bugprone-use-after-move)
    }
    EXPECT_EQ(a1.state().live_blocks, 0);
    EXPECT_EQ(a2.state().live_blocks, 0);
}

// --- exception safety ---------------------------------------------------------------------------

enum class fail_on { element, allocation };

// Prepares a vector, arms a failure at step k (a copy or move of a counted element, or an
// allocation), runs `op` and, after each failure, checks the strong guarantee: same contents,
// capacity and state, and no object leaked. Returns the number of failure points.
template <class V, class Prepare, class Op>
long expect_strong(fail_on what, Prepare prepare, Op op) {
    live_object_guard guard;
    const long base_live = counted_state::live;
    auto state = std::make_shared<allocator_state>();
    std::optional<V> v;
    std::vector<int> before;
    std::size_t cap_before = 0;
    bool inline_before = false;
    const long points = for_each_failure_point(
        [&](long k) {
            v.reset();
            v.emplace(typename V::allocator_type(state));
            prepare(*v);
            before = values(*v);
            cap_before = v->capacity();
            inline_before = v->is_inline();
            if (what == fail_on::element) {
                counted_state::fail_at(k);
            } else {
                state->fail_at(k);
            }
            op(*v);
            state->fail_at(0);
        },
        [&] {
            state->fail_at(0);
            EXPECT_EQ(values(*v), before);
            EXPECT_EQ(v->capacity(), cap_before);
            EXPECT_EQ(v->is_inline(), inline_before);
            EXPECT_EQ(counted_state::live, base_live + static_cast<long>(v->size()));
            EXPECT_EQ(state->live_blocks, inline_before ? 0 : 1);
        });
    v.reset();
    EXPECT_EQ(state->live_blocks, 0);
    return points;
}

// As expect_strong, but only the basic guarantee: the vector holds live elements (reading them
// checks that), it can still be used, and nothing leaked.
template <class V, class Prepare, class Op>
long expect_basic(fail_on what, Prepare prepare, Op op) {
    live_object_guard guard;
    const long base_live = counted_state::live;
    auto state = std::make_shared<allocator_state>();
    std::optional<V> v;
    const long points = for_each_failure_point(
        [&](long k) {
            v.reset();
            v.emplace(typename V::allocator_type(state));
            prepare(*v);
            if (what == fail_on::element) {
                counted_state::fail_at(k);
            } else {
                state->fail_at(k);
            }
            op(*v);
            state->fail_at(0);
        },
        [&] {
            state->fail_at(0);
            (void)values(*v);
            EXPECT_EQ(counted_state::live, base_live + static_cast<long>(v->size()));
            v->push_back(1);
            v->erase(v->end() - 1);
            EXPECT_EQ(counted_state::live, base_live + static_cast<long>(v->size()));
        });
    v.reset();
    EXPECT_EQ(state->live_blocks, 0);
    return points;
}

template <class T>
using failing_vec = small_vector<T, 4, failing_allocator<T>>;

template <class V>
void fill(V& v, int n) {
    for (int i = 0; i < n; ++i) v.emplace_back(i + 1);
}

template <class T>
void strong_growth_suite() {
    using V = failing_vec<T>;
    for (fail_on what : {fail_on::element, fail_on::allocation}) {
        for (int n : {0, 2, 4, 8}) { // inline with room, inline full, heap full
            SCOPED_TRACE(testing::Message() << "size " << n << " fail_on "
                                            << (what == fail_on::element ? "element" : "alloc"));
            const auto prep = [n](V& v) {
                fill(v, n);
                if (n == 8) v.shrink_to_fit();
            };
            const long points = expect_strong<V>(what, prep, [](V& v) {
                const T x{42};
                v.push_back(x);
            });
            // The copy of x, then (when the vector is full and T's move may throw) one copy per
            // relocated element; or the one allocation of the growth.
            const bool full = n == 4 || n == 8;
            const bool copies_on_growth = !std::is_nothrow_move_constructible_v<T>;
            if (what == fail_on::element) {
                EXPECT_EQ(points, 1 + (full && copies_on_growth ? n : 0));
            } else {
                EXPECT_EQ(points, full ? 1 : 0);
            }
            expect_strong<V>(what, prep, [](V& v) { v.push_back(T{42}); });
            expect_strong<V>(what, prep, [](V& v) { v.emplace_back(42); });
            expect_strong<V>(what, prep, [](V& v) { v.reserve(v.size() + 9); });
            expect_strong<V>(what, prep, [](V& v) {
                const T x{42};
                v.insert(v.end(), x);
            });
            expect_strong<V>(what, prep, [](V& v) { v.insert(v.end(), 3, T{42}); });
            expect_strong<V>(what, prep, [](V& v) {
                const std::vector<T> src{T{7}, T{8}, T{9}, T{10}, T{11}};
                v.insert(v.end(), src.begin(), src.end());
            });
            expect_strong<V>(what, prep, [](V& v) { v.resize(v.size() + 5); });
            expect_strong<V>(what, prep, [](V& v) { v.resize(v.size() + 5, T{3}); });
            expect_strong<V>(what, prep, [](V& v) { v.assign(12, T{3}); });
            if (n > 0) {
                // Insertion in the middle that must reallocate is strong too.
                expect_strong<V>(what, prep, [](V& v) {
                    v.reserve(0);
                    if (v.size() == v.capacity()) v.insert(v.begin() + 1, T{5});
                });
                expect_strong<V>(what, prep, [](V& v) {
                    if (v.size() + 6 > v.capacity()) v.insert(v.begin() + 1, 6, T{5});
                });
                expect_strong<V>(what, prep, [](V& v) {
                    if (v.size() == v.capacity()) v.emplace(v.begin(), 5);
                });
            }
        }
    }
}

TEST(SmallVectorExceptions, GrowthIsStrongWithThrowingMove) { strong_growth_suite<counted>(); }
TEST(SmallVectorExceptions, GrowthIsStrongWithNothrowMove) {
    strong_growth_suite<counted_nothrow_move>();
}

TEST(SmallVectorExceptions, RelocationCopiesWhenMoveMayThrow) {
    live_object_guard guard;
    {
        small_vector<counted, 2> a;
        fill(a, 2);
        counted_state::reset_counts();
        a.push_back(counted{3}); // spill: 2 relocated + the new one
        EXPECT_EQ(counted_state::copies, 2);
        EXPECT_EQ(counted_state::moves, 1);
        small_vector<counted_nothrow_move, 2> b;
        fill(b, 2);
        counted_state::reset_counts();
        b.push_back(counted_nothrow_move{3});
        EXPECT_EQ(counted_state::copies, 0);
        EXPECT_EQ(counted_state::moves, 3);
    }
}

TEST(SmallVectorExceptions, ShrinkToFitIsStrong) {
    using V = failing_vec<counted>;
    for (fail_on what : {fail_on::element, fail_on::allocation}) {
        // heap -> inline
        const long to_inline = expect_strong<V>(
            what,
            [](V& v) {
                fill(v, 9);
                v.resize(3);
            },
            [](V& v) { v.shrink_to_fit(); });
        // heap -> smaller heap
        expect_strong<V>(
            what,
            [](V& v) {
                fill(v, 9);
                v.resize(6);
            },
            [](V& v) { v.shrink_to_fit(); });
        if (what == fail_on::element) {
            EXPECT_EQ(to_inline, 3); // one copy per element
        }
    }
}

TEST(SmallVectorExceptions, MiddleInsertionInPlaceIsBasic) {
    using V = failing_vec<counted>;
    const auto prep = [](V& v) {
        fill(v, 5);
        v.reserve(16);
    };
    const long a = expect_basic<V>(fail_on::element, prep, [](V& v) {
        const counted x{9};
        v.insert(v.begin() + 1, x);
    });
    EXPECT_GE(a, 4); // the copy, the shifts and the assignment can all fail
    expect_basic<V>(fail_on::element, prep, [](V& v) { v.insert(v.begin() + 2, 2, counted{9}); });
    expect_basic<V>(fail_on::element, prep, [](V& v) { v.insert(v.begin() + 4, 6, counted{9}); });
    expect_basic<V>(fail_on::element, prep, [](V& v) {
        const std::vector<counted> src{1, 2, 3, 4, 5, 6, 7};
        v.insert(v.begin() + 1, src.begin(), src.end());
    });
    expect_basic<V>(fail_on::element, prep, [](V& v) { v.emplace(v.begin(), 3); });
    expect_basic<V>(fail_on::element, prep, [](V& v) { v.erase(v.begin(), v.begin() + 2); });
    expect_basic<V>(fail_on::element, prep, [](V& v) {
        std::istringstream in("1 2 3");
        v.insert(v.begin() + 1, std::istream_iterator<int>(in), std::istream_iterator<int>());
    });
    expect_basic<V>(fail_on::element, prep, [](V& v) { v.assign(3, counted{2}); });
    expect_basic<V>(fail_on::element, prep, [](V& v) { v.assign(12, counted{2}); });
}

TEST(SmallVectorExceptions, CopyConstructionAndAssignment) {
    using V = failing_vec<counted>;
    for (int n : {3, 9}) {
        live_object_guard guard;
        auto state = std::make_shared<allocator_state>();
        V src{failing_allocator<counted>(state)};
        fill(src, n);
        const std::vector<int> before = values(src);
        const long base_live = counted_state::live;
        for (fail_on what : {fail_on::element, fail_on::allocation}) {
            for_each_failure_point(
                [&](long k) {
                    if (what == fail_on::element) counted_state::fail_at(k);
                    else state->fail_at(k);
                    V copy(src);
                    state->fail_at(0);
                    EXPECT_EQ(values(copy), before);
                },
                [&] {
                    state->fail_at(0);
                    EXPECT_EQ(values(src), before);
                    EXPECT_EQ(counted_state::live, base_live); // the partial copy is gone
                });
            std::optional<V> dst;
            for_each_failure_point(
                [&](long k) {
                    dst.reset();
                    dst.emplace(failing_allocator<counted>(state));
                    fill(*dst, 2 * n - 4);
                    if (what == fail_on::element) counted_state::fail_at(k);
                    else state->fail_at(k);
                    *dst = src;
                    state->fail_at(0);
                    EXPECT_EQ(values(*dst), before);
                },
                [&] {
                    state->fail_at(0);
                    EXPECT_EQ(values(src), before);
                    (void)values(*dst);
                    EXPECT_EQ(counted_state::live, base_live + static_cast<long>(dst->size()));
                });
            dst.reset();
        }
        EXPECT_EQ(state->live_blocks, src.is_inline() ? 0 : 1);
    }
}

TEST(SmallVectorExceptions, SwapInlineHeapIsStrong) {
    using V = failing_vec<counted>;
    using W = small_vector<counted, 2, failing_allocator<counted>>;
    for (fail_on what : {fail_on::element, fail_on::allocation}) {
        for (const auto& sizes : {std::pair{3, 9}, std::pair{9, 3}, std::pair{2, 3},
                                  std::pair{4, 1}, std::pair{3, 1}}) {
            const int na = sizes.first, nb = sizes.second;
            SCOPED_TRACE(testing::Message() << na << " <-> " << nb);
            live_object_guard guard;
            auto state = std::make_shared<allocator_state>();
            std::optional<V> a;
            std::optional<W> b;
            std::vector<int> ra, rb;
            const long base_live = counted_state::live;
            for_each_failure_point(
                [&](long k) {
                    a.reset();
                    b.reset();
                    a.emplace(failing_allocator<counted>(state));
                    b.emplace(failing_allocator<counted>(state));
                    fill(*a, na);
                    fill(*b, nb);
                    ra = values(*a);
                    rb = values(*b);
                    if (what == fail_on::element) counted_state::fail_at(k);
                    else state->fail_at(k);
                    a->swap(*b);
                    state->fail_at(0);
                    EXPECT_EQ(values(*a), rb);
                    EXPECT_EQ(values(*b), ra);
                },
                [&] {
                    state->fail_at(0);
                    EXPECT_EQ(values(*a), ra);
                    EXPECT_EQ(values(*b), rb);
                    EXPECT_EQ(counted_state::live,
                              base_live + static_cast<long>(a->size() + b->size()));
                });
            a.reset();
            b.reset();
            EXPECT_EQ(state->live_blocks, 0);
        }
    }
}

TEST(SmallVectorExceptions, SwapInlineInlineIsBasic) {
    for (fail_on what : {fail_on::element, fail_on::allocation}) {
        live_object_guard guard;
        auto state = std::make_shared<allocator_state>();
        std::optional<failing_vec<counted>> a, b;
        const long base_live = counted_state::live;
        const long points = for_each_failure_point(
            [&](long k) {
                a.reset();
                b.reset();
                a.emplace(failing_allocator<counted>(state));
                b.emplace(failing_allocator<counted>(state));
                fill(*a, 3);
                fill(*b, 1);
                if (what == fail_on::element) counted_state::fail_at(k);
                else state->fail_at(k);
                a->swap(*b);
                state->fail_at(0);
                EXPECT_EQ(values(*a), std::vector<int>{1});
                EXPECT_EQ(values(*b), (std::vector<int>{1, 2, 3}));
            },
            [&] {
                state->fail_at(0);
                (void)values(*a); // live elements, whatever their values
                (void)values(*b);
                EXPECT_TRUE(a->is_inline() && b->is_inline());
                EXPECT_EQ(counted_state::live,
                          base_live + static_cast<long>(a->size() + b->size()));
            });
        EXPECT_EQ(points, what == fail_on::element ? 5 : 0); // 3 moves per swap, 2 moves
        a.reset();
        b.reset();
    }
}

TEST(SmallVectorExceptions, MoveFromInlineWithThrowingMove) {
    live_object_guard guard;
    small_vector<counted, 4> src;
    fill(src, 3);
    const long base_live = counted_state::live;
    for_each_failure_point(
        [&](long k) {
            counted_state::fail_at(k);
            small_vector<counted, 4> dst(std::move(src));
            EXPECT_TRUE(src.empty()); // NOLINT(bugprone-use-after-move)
        },
        [&] {
            EXPECT_EQ(src.size(), 3u); // NOLINT(bugprone-use-after-move): still holds live objects
            (void)values(src);
            EXPECT_EQ(counted_state::live, base_live);
        });
}

// --- randomized differential test against std::vector --------------------------------------------

template <class T>
T make_value(std::mt19937_64& rng);
template <>
int make_value<int>(std::mt19937_64& rng) {
    return static_cast<int>(rng() % 1000);
}
template <>
std::string make_value<std::string>(std::mt19937_64& rng) {
    // Lengths on both sides of the small-string buffer.
    return std::string(rng() % 24, static_cast<char>('a' + rng() % 26));
}

template <class T, std::size_t N>
void differential(std::uint64_t seed) {
    constexpr std::size_t M = N + 3;
    std::mt19937_64 rng(seed);
    small_vector<T, N> v;
    small_vector<T, M> other;
    std::vector<T> ref, ref_other;
    auto pick = [&](std::size_t n) { return n == 0 ? std::size_t{0} : rng() % (n + 1); };
    auto random_range = [&] {
        std::vector<T> r(rng() % 7);
        for (auto& x : r) x = make_value<T>(rng);
        return r;
    };
    constexpr int ops = 100000;
    for (int op = 0; op < ops; ++op) {
        const bool big = ref.size() > 48;
        switch (rng() % (big ? 22 : 16)) {
        case 0:
        case 1:
        case 2: {
            T x = make_value<T>(rng);
            v.push_back(x);
            ref.push_back(x);
            break;
        }
        case 3:
            if (!ref.empty()) {
                v.pop_back();
                ref.pop_back();
            }
            break;
        case 4: {
            const std::size_t i = pick(ref.size());
            T x = make_value<T>(rng);
            v.insert(v.begin() + static_cast<std::ptrdiff_t>(i), x);
            ref.insert(ref.begin() + static_cast<std::ptrdiff_t>(i), x);
            break;
        }
        case 5: {
            const std::size_t i = pick(ref.size());
            const std::size_t n = rng() % 5;
            T x = make_value<T>(rng);
            v.insert(v.begin() + static_cast<std::ptrdiff_t>(i), n, x);
            ref.insert(ref.begin() + static_cast<std::ptrdiff_t>(i), n, x);
            break;
        }
        case 6: {
            const std::size_t i = pick(ref.size());
            const auto r = random_range();
            v.insert(v.begin() + static_cast<std::ptrdiff_t>(i), r.begin(), r.end());
            ref.insert(ref.begin() + static_cast<std::ptrdiff_t>(i), r.begin(), r.end());
            break;
        }
        case 7:
            if (!ref.empty()) {
                const std::size_t i = rng() % ref.size();
                // An element inserted elsewhere in its own vector.
                const std::size_t j = pick(ref.size());
                v.insert(v.begin() + static_cast<std::ptrdiff_t>(j), v[i]);
                ref.insert(ref.begin() + static_cast<std::ptrdiff_t>(j), T(ref[i]));
            }
            break;
        case 8: {
            const std::size_t i = pick(ref.size());
            T x = make_value<T>(rng);
            v.emplace(v.begin() + static_cast<std::ptrdiff_t>(i), x);
            ref.emplace(ref.begin() + static_cast<std::ptrdiff_t>(i), x);
            break;
        }
        case 9: {
            const std::size_t n = rng() % 40;
            if (rng() % 2) {
                v.resize(n);
                ref.resize(n);
            } else {
                T x = make_value<T>(rng);
                v.resize(n, x);
                ref.resize(n, x);
            }
            break;
        }
        case 10:
            if (rng() % 2) {
                const auto r = random_range();
                v.assign(r.begin(), r.end());
                ref.assign(r.begin(), r.end());
            } else {
                const std::size_t n = rng() % 20;
                T x = make_value<T>(rng);
                v.assign(n, x);
                ref.assign(n, x);
            }
            break;
        case 11:
            v.shrink_to_fit();
            ref.shrink_to_fit();
            break;
        case 12:
            v.swap(other);
            ref.swap(ref_other);
            break;
        case 13:
            switch (rng() % 4) {
            case 0:
                other = v;
                ref_other = ref;
                break;
            case 1:
                v = other;
                ref = ref_other;
                break;
            case 2:
                other = std::move(v);
                ref_other = std::move(ref);
                ref.clear();
                break;
            default: {
                small_vector<T, N> copy(other);
                small_vector<T, N> moved(std::move(copy));
                v = std::move(moved);
                ref = ref_other;
                break;
            }
            }
            break;
        case 14: v.reserve(rng() % 64); break;
        case 15:
            if (rng() % 8 == 0) {
                v.clear();
                ref.clear();
            } else {
                T x = make_value<T>(rng);
                other.push_back(x);
                ref_other.push_back(x);
            }
            break;
        default: { // erase, more often when the vector is large
            if (ref.empty()) break;
            const std::size_t i = rng() % ref.size();
            const std::size_t n = std::min<std::size_t>(rng() % 8, ref.size() - i);
            auto r = v.erase(v.begin() + static_cast<std::ptrdiff_t>(i),
                             v.begin() + static_cast<std::ptrdiff_t>(i + n));
            ref.erase(ref.begin() + static_cast<std::ptrdiff_t>(i),
                      ref.begin() + static_cast<std::ptrdiff_t>(i + n));
            ASSERT_EQ(r - v.begin(), static_cast<std::ptrdiff_t>(i));
            break;
        }
        }
        ASSERT_EQ(v.size(), ref.size()) << "op " << op;
        ASSERT_GE(v.capacity(), v.size());
        // Heap buffers are always larger than the inline one here.
        ASSERT_EQ(v.is_inline(), v.capacity() == N) << "op " << op;
        if (op % 8 == 0 || op == ops - 1) {
            ASSERT_TRUE(std::equal(v.begin(), v.end(), ref.begin(), ref.end())) << "op " << op;
            ASSERT_TRUE(std::equal(other.begin(), other.end(), ref_other.begin(), ref_other.end()))
                << "op " << op;
        }
        if (other.size() > 64) {
            other.clear();
            ref_other.clear();
        }
    }
}

TEST(SmallVectorDifferential, IntN0) { differential<int, 0>(0x5eed0001); }
TEST(SmallVectorDifferential, IntN1) { differential<int, 1>(0x5eed0002); }
TEST(SmallVectorDifferential, IntN8) { differential<int, 8>(0x5eed0003); }
TEST(SmallVectorDifferential, StringN0) { differential<std::string, 0>(0x5eed0004); }
TEST(SmallVectorDifferential, StringN1) { differential<std::string, 1>(0x5eed0005); }
TEST(SmallVectorDifferential, StringN8) { differential<std::string, 8>(0x5eed0006); }

// --- AddressSanitizer container-overflow annotations -------------------------------------------

int read_int(const int* p) {
    const volatile int* q = p;
    return *q;
}

TEST(SmallVectorDeathTest, ReadingSpareInlineCapacityIsReported) {
    if (!memkit::has_address_sanitizer) GTEST_SKIP() << "needs AddressSanitizer";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    small_vector<int, 8> v{1, 2, 3};
    EXPECT_EQ(read_int(v.data() + 2), 3); // in bounds: fine
    EXPECT_DEATH((void)read_int(v.data() + v.size()), "container-overflow");
    v.pop_back();
    EXPECT_DEATH((void)read_int(v.data() + 2), "container-overflow");
}

TEST(SmallVectorDeathTest, ReadingSpareHeapCapacityIsReported) {
    if (!memkit::has_address_sanitizer) GTEST_SKIP() << "needs AddressSanitizer";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    small_vector<int, 2> v{1, 2, 3, 4, 5};
    v.reserve(32);
    EXPECT_FALSE(v.is_inline());
    EXPECT_DEATH((void)read_int(v.data() + v.size()), "container-overflow");
    EXPECT_DEATH((void)read_int(v.data() + 31), "container-overflow");
}

TEST(SmallVectorDeathTest, InlinePointerKeptAcrossGrowthIsReported) {
    if (!memkit::has_address_sanitizer) GTEST_SKIP() << "needs AddressSanitizer";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    small_vector<int, 4> v{1, 2, 3, 4};
    const int* stale = v.data();
    v.push_back(5); // the elements move to the heap; the inline buffer is poisoned
    EXPECT_DEATH((void)read_int(stale), "container-overflow");
    v.resize(2);
    v.shrink_to_fit(); // back inline: the first two slots are live again
    EXPECT_EQ(read_int(stale + 1), 2);
}

TEST(SmallVector, AnnotationsAllowEveryValidAccess) {
    // Runs in every build; under ASan it checks that no valid access is reported after the
    // transitions that move annotations between buffers.
    small_vector<int, 4> a{1, 2, 3};
    small_vector<int, 4> b(9, 7);
    a.swap(b);
    b.swap(a);
    a = std::move(b);
    b.assign({4, 5, 6, 7});
    b.insert(b.begin(), 3, 1);
    b.erase(b.begin() + 1, b.end() - 1);
    b.shrink_to_fit();
    a.resize(1);
    a.shrink_to_fit();
    int sum = 0;
    for (int x : a) sum += x;
    for (int x : b) sum += x;
    EXPECT_EQ(sum, 7 + 1 + 7);         // a = {7}, b = {1, 7}
    small_vector<char, 3> c{'x', 'y'}; // byte-sized, odd inline capacity
    c.push_back('z');
    c.push_back('w');
    EXPECT_EQ(std::string(c.begin(), c.end()), "xyzw");
    memkit::arena ar; // heap buffers that may share granules with neighbours
    small_vector<char, 1, memkit::std_allocator<char, memkit::arena>> d{ar}, e{ar};
    for (char ch : std::string("abcdefg")) {
        d.push_back(ch);
        e.push_back(ch);
    }
    EXPECT_EQ(std::string(d.begin(), d.end()), std::string(e.begin(), e.end()));
}

// --- debug precondition checks ------------------------------------------------------------------

int violations = 0;

TEST(SmallVector, DebugChecksReportMisuse) {
    if (!memkit::debug_checks) GTEST_SKIP() << "debug checks are compiled out";
    violations = 0;
    auto* previous = memkit::set_violation_handler([](const memkit::violation& v) {
        EXPECT_EQ(v.code, memkit::errc::invalid_argument);
        ++violations;
    });
    ints8 v;
    v.pop_back(); // does nothing once reported
    EXPECT_EQ(violations, 1);
    EXPECT_TRUE(v.empty());
    fail_alloc<false> a1, a2;
    small_vector<int, 2, fail_alloc<false>> x(5, 1, a1), y(5, 2, a2);
    x.swap(y); // unequal allocators that do not propagate: reported, nothing swapped
    EXPECT_EQ(violations, 2);
    EXPECT_EQ(values(x), std::vector<int>(5, 1));
    memkit::set_violation_handler(previous);
}

} // namespace
