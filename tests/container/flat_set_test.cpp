#include "memkit/container/flat_set.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <memory_resource>
#include <random>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/container_support.hpp"

namespace {

using memkit::test::counted;
using memkit::test::counted_nothrow_move;
using memkit::test::counted_state;
using memkit::test::failing_allocator;
using memkit::test::for_each_failure_point;
using memkit::test::injected_failure;
using memkit::test::live_object_guard;

using iset = memkit::flat_set<int>;
using imultiset = memkit::flat_multiset<int>;
using sset = memkit::flat_set<std::string, std::less<>>;

// --- iterator and range concepts -----------------------------------------------------------

static_assert(std::contiguous_iterator<iset::iterator>);
static_assert(std::same_as<iset::iterator, iset::const_iterator>);
static_assert(std::same_as<std::iter_reference_t<iset::iterator>, const int&>);
static_assert(std::random_access_iterator<iset::reverse_iterator>);
static_assert(std::ranges::contiguous_range<iset>);
static_assert(std::ranges::contiguous_range<const iset>);
static_assert(std::ranges::sized_range<iset>);
static_assert(std::ranges::random_access_range<imultiset>);
static_assert(
    std::ranges::random_access_range<memkit::flat_set<int, std::less<int>, std::deque<int>>>);
static_assert(std::same_as<iset::container_type, std::vector<int>>);
static_assert(std::same_as<memkit::pmr::flat_set<int>::container_type, std::pmr::vector<int>>);
static_assert(
    std::uses_allocator_v<memkit::pmr::flat_set<int>, std::pmr::polymorphic_allocator<int>>);
static_assert(
    std::uses_allocator_v<memkit::pmr::flat_multiset<int>, std::pmr::polymorphic_allocator<int>>);
static_assert(!std::uses_allocator_v<iset, std::pmr::polymorphic_allocator<int>>);
static_assert(std::is_nothrow_move_constructible_v<iset>);
static_assert(std::is_nothrow_swappable_v<iset>);
static_assert(
    std::same_as<decltype(std::declval<iset&>().insert(1)), std::pair<iset::iterator, bool>>);
static_assert(std::same_as<decltype(std::declval<imultiset&>().insert(1)), imultiset::iterator>);

template <class S, class K>
concept can_find = requires(S& s, const K& k) {
    s.find(k);
};
static_assert(can_find<sset, std::string_view>);
static_assert(!can_find<memkit::flat_set<std::string>, std::string_view>);

template <class S>
std::vector<long> contents(const S& s) {
    std::vector<long> out;
    for (const auto& x : s) out.push_back(static_cast<long>(x));
    return out;
}

template <class S>
void expect_valid(const S& s, bool unique = true) {
    auto it = s.begin();
    for (std::size_t i = 1; i < s.size(); ++i, ++it) {
        if (unique) ASSERT_TRUE(s.key_comp()(*it, *(it + 1))) << "at " << i;
        else ASSERT_FALSE(s.key_comp()(*(it + 1), *it)) << "at " << i;
    }
}

// --- basic use -----------------------------------------------------------------------------

TEST(FlatSet, ConstructsSortedAndUniqueFromAnyInput) {
    iset s{5, 1, 3, 1, 5, 2};
    EXPECT_EQ(contents(s), (std::vector<long>{1, 2, 3, 5}));
    imultiset ms{5, 1, 3, 1, 5, 2};
    EXPECT_EQ(contents(ms), (std::vector<long>{1, 1, 2, 3, 5, 5}));
    iset from_vector(std::vector<int>{3, 3, 1});
    EXPECT_EQ(contents(from_vector), (std::vector<long>{1, 3}));
    std::vector<int> input;
    for (int i = 0; i < 1000; ++i) input.push_back((i * 7919) % 500);
    iset from_range(input.begin(), input.end());
    EXPECT_EQ(from_range.size(), 500u);
    expect_valid(from_range);
    iset empty;
    EXPECT_TRUE(empty.empty());
    EXPECT_EQ(empty.find(0), empty.end());
}

// Equal but distinguishable elements: the first one inserted is kept (std::set's rule).
TEST(FlatSet, KeepsTheFirstOfEquivalentElements) {
    struct by_first {
        bool operator()(const std::pair<int, int>& a, const std::pair<int, int>& b) const {
            return a.first < b.first;
        }
    };
    memkit::flat_set<std::pair<int, int>, by_first> s{{2, 0}, {1, 0}, {2, 1}, {1, 1}};
    EXPECT_EQ(s.begin()->second, 0);
    EXPECT_EQ((s.begin() + 1)->second, 0);
    std::vector<std::pair<int, int>> more{{2, 2}, {3, 2}, {3, 3}};
    s.insert(more.begin(), more.end());
    EXPECT_EQ((s.begin() + 1)->second, 0) << "existing elements win over new equivalent ones";
    EXPECT_EQ((s.begin() + 2)->second, 2);
    EXPECT_FALSE(s.insert({1, 9}).second);
    memkit::flat_multiset<std::pair<int, int>, by_first> ms{{2, 0}, {1, 0}, {2, 1}};
    ms.insert({{2, 2}, {1, 1}});
    std::vector<std::pair<int, int>> expected{{1, 0}, {1, 1}, {2, 0}, {2, 1}, {2, 2}};
    EXPECT_TRUE(std::ranges::equal(ms, expected));
}

TEST(FlatSet, LookupsAgreeWithStdLowerBound) {
    std::vector<int> v;
    for (int i = 0; i < 777; ++i) v.push_back(3 * i);
    const iset s(memkit::sorted_unique, v);
    for (int probe = -2; probe < 2340; ++probe) {
        const auto lb = std::lower_bound(v.begin(), v.end(), probe) - v.begin();
        const auto ub = std::upper_bound(v.begin(), v.end(), probe) - v.begin();
        ASSERT_EQ(s.lower_bound(probe) - s.begin(), lb);
        ASSERT_EQ(s.upper_bound(probe) - s.begin(), ub);
        ASSERT_EQ(s.contains(probe), lb != ub);
        ASSERT_EQ(s.count(probe), static_cast<std::size_t>(ub - lb));
        const auto [f, l] = s.equal_range(probe);
        ASSERT_EQ(l - f, ub - lb);
        ASSERT_EQ(s.find(probe) == s.end(), lb == ub);
    }
    const imultiset ms{1, 2, 2, 2, 3};
    EXPECT_EQ(ms.count(2), 3u);
    EXPECT_EQ(ms.lower_bound(2) - ms.begin(), 1);
    EXPECT_EQ(ms.upper_bound(2) - ms.begin(), 4);
}

TEST(FlatSet, InsertEmplaceAndHints) {
    iset s;
    EXPECT_TRUE(s.insert(3).second);
    EXPECT_FALSE(s.insert(3).second);
    const int two = 2;
    EXPECT_EQ(*s.insert(two).first, 2);
    EXPECT_TRUE(s.emplace(5).second);
    for (int i = 6; i < 50; ++i) s.emplace_hint(s.end(), i); // right hints
    EXPECT_EQ(*s.insert(s.begin(), 4), 4);                   // right hint
    EXPECT_EQ(*s.insert(s.begin(), 100), 100);               // wrong hint
    EXPECT_EQ(*s.emplace_hint(s.end(), 0), 0);               // wrong hint
    EXPECT_EQ(*s.insert(s.end(), 3), 3);                     // exists
    EXPECT_EQ(s.size(), 50u);
    expect_valid(s);

    imultiset ms{1, 1, 3};
    auto h = ms.insert(ms.begin() + 1, 1); // valid hint: just before it
    EXPECT_EQ(h - ms.begin(), 1);
    h = ms.emplace_hint(ms.end(), 1); // invalid: as close to it as allowed
    EXPECT_EQ(h - ms.begin(), 3);
    h = ms.emplace_hint(ms.begin(), 2);
    EXPECT_EQ(h - ms.begin(), 4);
    EXPECT_EQ(*ms.emplace(0), 0);
    EXPECT_EQ(contents(ms), (std::vector<long>{0, 1, 1, 1, 1, 2, 3}));
}

TEST(FlatSet, HeterogeneousLookupInsertAndErase) {
    sset s{"delta", "alpha", "charlie"};
    const std::string_view b = "bravo";
    EXPECT_EQ(s.find(b), s.end());
    EXPECT_EQ(*s.find("alpha"), "alpha");
    EXPECT_TRUE(s.contains(std::string_view{"charlie"}));
    EXPECT_EQ(s.count("delta"), 1u);
    EXPECT_EQ(*s.lower_bound(b), "charlie");
    EXPECT_EQ(*s.upper_bound(std::string_view{"charlie"}), "delta");
    EXPECT_EQ(s.equal_range(b).first, s.equal_range(b).second);
    EXPECT_TRUE(s.insert(b).second); // builds a std::string only to insert
    EXPECT_FALSE(s.insert(std::string_view{"bravo"}).second);
    EXPECT_EQ(*s.insert(s.end(), std::string_view{"echo"}), "echo");
    EXPECT_EQ(s.erase(std::string_view{"alpha"}), 1u);
    EXPECT_EQ(s.erase("zulu"), 0u);
    EXPECT_TRUE(
        std::ranges::equal(s, std::vector<std::string>{"bravo", "charlie", "delta", "echo"}));
}

TEST(FlatSet, EraseByIteratorRangeAndKey) {
    iset s{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    EXPECT_EQ(*s.erase(s.begin() + 2), 3);
    EXPECT_EQ(*s.erase(s.begin() + 1, s.begin() + 4), 5); // 1, 3, 4
    EXPECT_EQ(s.erase(7), 1u);
    EXPECT_EQ(s.erase(7), 0u);
    EXPECT_EQ(contents(s), (std::vector<long>{0, 5, 6, 8, 9}));
    imultiset ms{1, 2, 2, 2, 3};
    EXPECT_EQ(ms.erase(2), 3u);
    EXPECT_EQ(contents(ms), (std::vector<long>{1, 3}));
}

TEST(FlatSet, BulkInsertMergesOnce) {
    iset s{2, 4, 6};
    std::vector<int> more{5, 4, 1, 5, 7, 3};
    s.insert(more.begin(), more.end());
    EXPECT_EQ(contents(s), (std::vector<long>{1, 2, 3, 4, 5, 6, 7}));
    s.insert({0, 8});
    s.insert_range(std::vector<int>{9, -1});
    s.insert(memkit::sorted_unique, {10, 11});
    EXPECT_EQ(s.size(), 13u);
    expect_valid(s);
    imultiset ms{2, 2};
    ms.insert(memkit::sorted_equivalent, {1, 2, 2, 3});
    EXPECT_EQ(contents(ms), (std::vector<long>{1, 2, 2, 2, 2, 3}));
    if constexpr (memkit::debug_checks) {
        EXPECT_THROW(s.insert(memkit::sorted_unique, {20, 19}), std::invalid_argument);
        EXPECT_THROW(s.insert(memkit::sorted_unique, {20, 20}), std::invalid_argument);
        EXPECT_EQ(s.size(), 13u) << "a rejected sorted insert changes nothing";
        EXPECT_THROW((iset{memkit::sorted_unique, {2, 1}}), std::invalid_argument);
        EXPECT_THROW(s.replace(std::vector<int>{2, 1}), std::invalid_argument);
        EXPECT_NO_THROW((imultiset{memkit::sorted_equivalent, {1, 1}}));
    }
}

TEST(FlatSet, ExtractReplaceSwapAndCompare) {
    iset s{1, 2, 3};
    auto c = std::move(s).extract();
    EXPECT_TRUE(s.empty()); // NOLINT(bugprone-use-after-move): extract's postcondition
    EXPECT_EQ(c, (std::vector<int>{1, 2, 3}));
    c.push_back(4);
    s.replace(std::move(c));
    EXPECT_EQ(s.size(), 4u);
    iset t{1, 2};
    EXPECT_LT(t, s);
    EXPECT_NE(t, s);
    EXPECT_EQ(t <=> iset({1, 2}), std::strong_ordering::equal);
    swap(s, t);
    EXPECT_EQ(s.size(), 2u);
    EXPECT_EQ(t.size(), 4u);
    t.clear();
    EXPECT_TRUE(t.empty());
    s = {7, 5};
    EXPECT_EQ(contents(s), (std::vector<long>{5, 7}));
}

TEST(FlatSet, EraseIfKeepsTheRestWhenThePredicateThrows) {
    iset s;
    for (int i = 0; i < 20; ++i) s.insert(i);
    EXPECT_EQ(memkit::erase_if(s, [](int x) { return x % 3 == 0; }), 7u);
    int calls = 0;
    EXPECT_THROW(memkit::erase_if(s,
                                  [&](int x) {
                                      if (++calls == 6) throw injected_failure();
                                      return x % 2 == 0;
                                  }),
                 injected_failure);
    EXPECT_EQ(contents(s), (std::vector<long>{1, 5, 7, 8, 10, 11, 13, 14, 16, 17, 19}));
    imultiset ms{1, 1, 2};
    EXPECT_EQ(memkit::erase_if(ms, [](int x) { return x == 1; }), 2u);
}

struct alignas(64) wide_key {
    int v = 0;
    wide_key(int x) : v(x) {} // NOLINT(google-explicit-constructor)
    auto operator<=>(const wide_key&) const = default;
};

TEST(FlatSet, OverAlignedKeysStayAligned) {
    memkit::flat_set<wide_key> s;
    for (int i = 0; i < 100; ++i) s.insert((i * 37) % 101);
    std::vector<wide_key> more;
    for (int i = 0; i < 50; ++i) more.emplace_back(300 - i);
    s.insert(more.begin(), more.end());
    for (const auto& k : s) ASSERT_EQ(reinterpret_cast<std::uintptr_t>(&k) % 64, 0u);
    EXPECT_EQ(s.size(), 150u);
}

TEST(FlatSet, MoveOnlyKeys) {
    struct by_value {
        bool operator()(const std::unique_ptr<int>& a, const std::unique_ptr<int>& b) const {
            return *a < *b;
        }
    };
    memkit::flat_set<std::unique_ptr<int>, by_value> s;
    s.insert(std::make_unique<int>(3));
    s.emplace(std::make_unique<int>(1));
    std::vector<std::unique_ptr<int>> more;
    for (int i = 10; i > 3; --i) more.push_back(std::make_unique<int>(i));
    s.insert(std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    ASSERT_EQ(s.size(), 9u);
    EXPECT_EQ(**s.begin(), 1);
    EXPECT_EQ(**(s.end() - 1), 10);
}

TEST(FlatSet, DeductionGuides) {
    memkit::flat_set a{3, 1, 2};
    static_assert(std::same_as<decltype(a), memkit::flat_set<int>>);
    std::vector<long> v{2, 1};
    memkit::flat_set b(v.begin(), v.end());
    static_assert(std::same_as<decltype(b), memkit::flat_set<long>>);
    memkit::flat_set c(v);
    static_assert(std::same_as<decltype(c), memkit::flat_set<long>>);
    memkit::flat_set d(v, std::greater<long>());
    static_assert(std::same_as<decltype(d), memkit::flat_set<long, std::greater<long>>>);
    EXPECT_EQ(*d.begin(), 2);
    memkit::flat_multiset e{1, 1};
    static_assert(std::same_as<decltype(e), memkit::flat_multiset<int>>);
    EXPECT_EQ(e.size(), 2u);
}

// --- allocators ----------------------------------------------------------------------------

TEST(FlatSet, ElementsLiveInAnArenaThroughStdAllocator) {
    memkit::arena a;
    using alloc = memkit::std_allocator<int, memkit::arena>;
    using set_t = memkit::flat_set<int, std::less<int>, std::vector<int, alloc>>;
    set_t s(alloc{a});
    for (int i = 0; i < 300; ++i) s.insert((i * 31) % 300);
    s.insert({1000, -1});
    EXPECT_EQ(s.size(), 302u);
    EXPECT_TRUE(a.owns(&*s.begin()));
    memkit::arena other;
    set_t copy(s, alloc{other});
    EXPECT_EQ(copy, s);
    EXPECT_TRUE(other.owns(&*copy.begin()));
    set_t il({3, 1}, alloc{other});
    EXPECT_EQ(*il.begin(), 1);
}

TEST(FlatSet, PmrSetPassesItsResourceToTheKeys) {
    memkit::resource<memkit::arena> res;
    memkit::pmr::flat_set<std::pmr::string, std::less<>> s(&res);
    s.insert(std::string_view{"a string long enough to need a heap block of its own"});
    s.emplace("a second string that is far too long for the small buffer");
    for (const auto& k : s) EXPECT_TRUE(res.get().owns(k.data()));
    std::pmr::vector<memkit::pmr::flat_set<int>> outer(&res);
    outer.emplace_back();
    outer.back().insert(1);
    EXPECT_TRUE(res.get().owns(&*outer.back().begin()));
}

template <bool Propagate>
void check_assignment_propagation() {
    using alloc = failing_allocator<int, Propagate, Propagate, Propagate>;
    using set_t = memkit::flat_set<int, std::less<int>, std::vector<int, alloc>>;
    alloc a1, a2;
    {
        set_t x(a1), y(a2);
        for (int i = 0; i < 10; ++i) x.insert(i);
        y.insert(100);
        y = x;
        EXPECT_EQ(y, x);
        set_t z(a2);
        z.insert(5);
        z = std::move(y);
        EXPECT_EQ(z, x);
        EXPECT_TRUE(y.empty()); // NOLINT(bugprone-use-after-move)
        set_t v(Propagate ? a1 : a2), w(a2);
        v.insert(7);
        w.insert(8);
        swap(v, w);
        EXPECT_EQ(*v.begin(), 8);
        set_t moved(std::move(x), a2);
        EXPECT_EQ(moved.size(), 10u);
        EXPECT_TRUE(x.empty()); // NOLINT(bugprone-use-after-move)
    }
    EXPECT_EQ(a1.state().live_blocks, 0);
    EXPECT_EQ(a2.state().live_blocks, 0);
}

TEST(FlatSet, AssignmentFollowsNonPropagatingAllocators) { check_assignment_propagation<false>(); }
TEST(FlatSet, AssignmentFollowsPropagatingAllocators) { check_assignment_propagation<true>(); }

// An allocator whose max_size() is 8 elements: growing beyond it throws std::length_error.
template <class T>
using capped_allocator = memkit::test::small_max_allocator<T, 8>;

TEST(FlatSet, GrowingBeyondMaxSizeThrowsLengthErrorAndChangesNothing) {
    memkit::flat_set<int, std::less<int>, std::vector<int, capped_allocator<int>>> s;
    for (int i = 0; i < 8; ++i) s.insert(2 * i);
    EXPECT_THROW(s.insert(3), std::length_error);
    EXPECT_THROW(s.insert({1, 100}), std::length_error);
    EXPECT_EQ(contents(s), (std::vector<long>{0, 2, 4, 6, 8, 10, 12, 14}));
}

TEST(FlatSet, ClearedSetsAreReusable) {
    iset s;
    for (int i = 0; i < 100; ++i) s.insert(i);
    s.clear();
    EXPECT_TRUE(s.empty());
    for (int i = 99; i >= 0; --i) s.insert(i);
    EXPECT_EQ(s.size(), 100u);
    expect_valid(s);
}

// --- exception safety ----------------------------------------------------------------------

template <class Set, class Alloc>
Set make_full_set(const Alloc& alloc, int n) {
    typename Set::container_type c(alloc);
    c.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) c.emplace_back(2 * i);
    return Set(memkit::sorted_unique, std::move(c));
}

TEST(FlatSetExceptions, SingleInsertAndBulkInsertAreStrongWithNothrowMoves) {
    using alloc = failing_allocator<counted_nothrow_move>;
    using set_t = memkit::flat_set<counted_nothrow_move, std::less<counted_nothrow_move>,
                                   std::vector<counted_nothrow_move, alloc>>;
    live_object_guard guard;
    alloc a;
    {
        std::vector<counted_nothrow_move> more;
        for (int i = 0; i < 20; ++i) more.emplace_back(3 * i + 1);
        const std::vector<std::function<void(set_t&)>> ops{
            [](set_t& s) {
                const counted_nothrow_move x(33);
                s.insert(x);
            },
            [](set_t& s) { s.emplace(35); },
            [](set_t& s) {
                const counted_nothrow_move x(-1);
                s.insert(s.begin() + 3, x);
            },
            [&](set_t& s) { s.insert(more.begin(), more.end()); },
        };
        for (std::size_t op = 0; op < ops.size(); ++op) {
            for (int kind = 0; kind < 2; ++kind) {
                set_t s = make_full_set<set_t>(a, 40);
                const auto before = contents(s);
                for_each_failure_point(
                    [&](long k) {
                        if (kind == 0) a.state().fail_at(k);
                        else counted_state::fail_at(k);
                        ops[op](s);
                        a.state().fail_at(0);
                    },
                    [&] {
                        a.state().fail_at(0);
                        EXPECT_EQ(contents(s), before) << "op " << op << " kind " << kind;
                    });
                EXPECT_GT(s.size(), 40u);
                expect_valid(s);
            }
        }
    }
    EXPECT_EQ(a.state().live_blocks, 0);
}

TEST(FlatSetExceptions, ThrowingMovesLeaveTheSetUnchangedOrEmpty) {
    using alloc = failing_allocator<counted>;
    using set_t = memkit::flat_set<counted, std::less<counted>, std::vector<counted, alloc>>;
    live_object_guard guard;
    alloc a;
    {
        const std::vector<std::function<void(set_t&)>> ops{
            [](set_t& s) { s.insert(counted(33)); },
            [](set_t& s) { s.erase(s.begin() + 2); },
            [](set_t& s) {
                std::vector<int> more{7, 101, -5, 7, 12};
                s.insert(more.begin(), more.end());
            },
            [](set_t& s) {
                set_t copy(s);
                s = copy;
            },
        };
        for (std::size_t op = 0; op < ops.size(); ++op) {
            for (int kind = 0; kind < 2; ++kind) {
                set_t s = make_full_set<set_t>(a, 30);
                const auto before = contents(s);
                for_each_failure_point(
                    [&](long k) {
                        if (kind == 0) a.state().fail_at(k);
                        else counted_state::fail_at(k);
                        ops[op](s);
                        a.state().fail_at(0);
                    },
                    [&] {
                        a.state().fail_at(0);
                        expect_valid(s);
                        const auto now = contents(s);
                        EXPECT_TRUE(now == before || now.empty()) << "op " << op;
                        if (now.empty()) s = make_full_set<set_t>(a, 30);
                    });
                expect_valid(s);
            }
        }
    }
    EXPECT_EQ(a.state().live_blocks, 0);
}

// --- differential tests against std::set / std::multiset ----------------------------------

TEST(FlatSetDifferential, MatchesStdSetOverRandomOperations) {
    std::mt19937_64 rng(0xF1A7'0003);
    iset f;
    std::set<int> s;
    auto key = [&] { return static_cast<int>(rng() % 3000); };
    for (int step = 0; step < 100000; ++step) {
        const int k = key();
        switch (rng() % 8) {
        case 0:
        case 1: {
            auto [fi, fb] = f.insert(k);
            auto [si, sb] = s.insert(k);
            ASSERT_EQ(fb, sb);
            ASSERT_EQ(*fi, *si);
            break;
        }
        case 2: ASSERT_EQ(f.erase(k), s.erase(k)); break;
        case 3: {
            auto fi = f.find(k);
            auto si = s.find(k);
            ASSERT_EQ(fi == f.end(), si == s.end());
            if (si != s.end()) {
                auto fn = f.erase(fi);
                auto sn = s.erase(si);
                ASSERT_EQ(fn == f.end(), sn == s.end());
            }
            break;
        }
        case 4: {
            auto fi = f.lower_bound(k);
            auto si = s.lower_bound(k);
            ASSERT_EQ(fi == f.end(), si == s.end());
            if (si != s.end()) {
                ASSERT_EQ(*fi, *si);
            }
            break;
        }
        case 5: {
            const std::size_t n = rng() % 8 == 0 ? rng() % 600 : rng() % 24;
            std::vector<int> batch;
            for (std::size_t i = 0; i < n; ++i) batch.push_back(key());
            f.insert(batch.begin(), batch.end());
            s.insert(batch.begin(), batch.end());
            break;
        }
        case 6: {
            auto fi = f.emplace_hint(rng() % 2 ? f.lower_bound(k) : f.end(), k);
            ASSERT_EQ(*fi, *s.emplace_hint(s.lower_bound(k), k));
            break;
        }
        default:
            f.erase(f.lower_bound(k), f.lower_bound(k + 20));
            s.erase(s.lower_bound(k), s.lower_bound(k + 20));
            break;
        }
        if (step % 1000 == 0) {
            ASSERT_TRUE(std::ranges::equal(f, s));
            expect_valid(f);
        }
    }
    ASSERT_TRUE(std::ranges::equal(f, s));
}

TEST(FlatSetDifferential, MultisetMatchesStdMultisetOverRandomOperations) {
    std::mt19937_64 rng(0xF1A7'0004);
    imultiset f;
    std::multiset<int> s;
    auto key = [&] { return static_cast<int>(rng() % 300); };
    for (int step = 0; step < 100000; ++step) {
        const int k = key();
        switch (rng() % 6) {
        case 0:
        case 1: ASSERT_EQ(*f.insert(k), *s.insert(k)); break;
        case 2: ASSERT_EQ(f.erase(k), s.erase(k)); break;
        case 3: {
            ASSERT_EQ(f.count(k), s.count(k));
            auto fi = f.upper_bound(k);
            auto si = s.upper_bound(k);
            ASSERT_EQ(fi == f.end(), si == s.end());
            if (si != s.end()) {
                ASSERT_EQ(*fi, *si);
            }
            break;
        }
        case 4: {
            const std::size_t n = rng() % 8 == 0 ? rng() % 100 : rng() % 8;
            std::vector<int> batch;
            for (std::size_t i = 0; i < n; ++i) batch.push_back(key());
            f.insert(batch.begin(), batch.end());
            s.insert(batch.begin(), batch.end());
            break;
        }
        default: {
            auto fi = f.find(k);
            auto si = s.find(k);
            ASSERT_EQ(fi == f.end(), si == s.end());
            if (si != s.end()) {
                f.erase(fi);
                s.erase(si);
            }
            break;
        }
        }
        if (step % 1000 == 0) {
            ASSERT_TRUE(std::ranges::equal(f, s));
            expect_valid(f, false);
        }
    }
    ASSERT_TRUE(std::ranges::equal(f, s));
}

} // namespace
