#include "memkit/container/flat_map.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/container_support.hpp"

namespace {

using memkit::test::allocator_state;
using memkit::test::counted;
using memkit::test::counted_nothrow_move;
using memkit::test::counted_state;
using memkit::test::failing_allocator;
using memkit::test::for_each_failure_point;
using memkit::test::injected_failure;
using memkit::test::live_object_guard;

using imap = memkit::flat_map<int, int>;
using imultimap = memkit::flat_multimap<int, int>;
using smap = memkit::flat_map<std::string, int, std::less<>>;

// --- iterator and range concepts -----------------------------------------------------------

static_assert(std::random_access_iterator<imap::iterator>);
static_assert(std::random_access_iterator<imap::const_iterator>);
static_assert(std::random_access_iterator<imap::reverse_iterator>);
static_assert(std::random_access_iterator<imap::const_reverse_iterator>);
static_assert(std::sized_sentinel_for<imap::iterator, imap::iterator>);
static_assert(std::sized_sentinel_for<imap::const_iterator, imap::iterator>);
static_assert(std::ranges::random_access_range<imap>);
static_assert(std::ranges::random_access_range<const imap>);
static_assert(std::ranges::sized_range<imap>);
static_assert(std::ranges::common_range<imap>);
static_assert(std::ranges::random_access_range<imultimap>);
static_assert(std::ranges::random_access_range<smap>);
static_assert(std::same_as<std::iter_value_t<imap::iterator>, std::pair<int, int>>);
static_assert(std::same_as<std::iter_value_t<imap::const_iterator>, std::pair<int, int>>);
static_assert(std::same_as<std::iter_reference_t<imap::iterator>, imap::reference>);
static_assert(std::same_as<std::iter_reference_t<imap::const_iterator>, imap::const_reference>);
// The references are the standard's pairs of references (classes derived from them).
static_assert(std::derived_from<imap::reference, std::pair<const int&, int&>>);
static_assert(std::derived_from<imap::const_reference, std::pair<const int&, const int&>>);
static_assert(std::same_as<std::tuple_element_t<0, imap::reference>, const int&>);
static_assert(std::same_as<std::tuple_element_t<1, imap::reference>, int&>);
static_assert(std::same_as<std::tuple_element_t<1, imap::const_reference>, const int&>);
static_assert(std::same_as<std::common_reference_t<imap::reference&&, std::pair<int, int>&>,
                           imap::reference>);
static_assert(std::same_as<std::iterator_traits<imap::iterator>::iterator_category,
                           std::random_access_iterator_tag>);
static_assert(std::convertible_to<imap::iterator, imap::const_iterator>);
static_assert(!std::convertible_to<imap::const_iterator, imap::iterator>);
// Also with string keys and move-only mapped values (C++20's std::pair alone is not enough).
using uptr_map = memkit::flat_map<std::string, std::unique_ptr<int>>;
static_assert(std::random_access_iterator<uptr_map::iterator>);
static_assert(std::random_access_iterator<uptr_map::const_iterator>);
static_assert(std::ranges::random_access_range<uptr_map>);

static_assert(std::same_as<imap::key_container_type, std::vector<int>>);
static_assert(std::same_as<imap::mapped_container_type, std::vector<int>>);
static_assert(std::same_as<memkit::pmr::flat_map<int, double>::mapped_container_type,
                           std::pmr::vector<double>>);
static_assert(
    std::uses_allocator_v<memkit::pmr::flat_map<int, int>, std::pmr::polymorphic_allocator<int>>);
static_assert(std::uses_allocator_v<memkit::pmr::flat_multimap<int, int>,
                                    std::pmr::polymorphic_allocator<char>>);
static_assert(!std::uses_allocator_v<imap, std::pmr::polymorphic_allocator<int>>);
static_assert(std::is_nothrow_move_constructible_v<imap>);
static_assert(std::is_nothrow_move_assignable_v<imap>);
static_assert(std::is_nothrow_swappable_v<imap>);
static_assert(std::same_as<decltype(std::declval<imap&>().insert(std::pair{1, 2})),
                           std::pair<imap::iterator, bool>>);
static_assert(std::same_as<decltype(std::declval<imultimap&>().insert(std::pair{1, 2})),
                           imultimap::iterator>);

template <class M, class K>
concept can_find = requires(M& m, const K& k) {
    m.find(k);
};
static_assert(can_find<smap, std::string_view>);
static_assert(can_find<smap, const char*>);
static_assert(!can_find<memkit::flat_map<std::string, int>, std::string_view>);

template <class M>
concept has_map_only_members = requires(M& m, int k) {
    m[k];
    m.at(k);
    m.try_emplace(k, 1);
    m.insert_or_assign(k, 1);
};
static_assert(has_map_only_members<imap>);
static_assert(!has_map_only_members<imultimap>);

// --- helpers -------------------------------------------------------------------------------

template <class Map>
std::vector<std::pair<long, long>> contents(const Map& m) {
    std::vector<std::pair<long, long>> out;
    for (auto&& [k, v] : m) out.emplace_back(static_cast<long>(k), static_cast<long>(v));
    return out;
}

/// keys().size() == values().size() == size(), keys sorted (strictly, for a unique map).
template <class Map>
void expect_valid(const Map& m, bool unique = true) {
    ASSERT_EQ(m.keys().size(), m.values().size());
    ASSERT_EQ(m.size(), m.keys().size());
    const auto& k = m.keys();
    for (std::size_t i = 1; i < k.size(); ++i) {
        if (unique) ASSERT_TRUE(m.key_comp()(k[i - 1], k[i])) << "at " << i;
        else ASSERT_FALSE(m.key_comp()(k[i], k[i - 1])) << "at " << i;
    }
}

/// Every value is ten times its key: detects keys and values that got out of step.
template <class Map>
void expect_paired(const Map& m) {
    for (std::size_t i = 0; i < m.size(); ++i)
        ASSERT_EQ(static_cast<long>(m.values()[i]), 10 * static_cast<long>(m.keys()[i]));
}

// --- construction and basic use ------------------------------------------------------------

TEST(FlatMap, ConstructsFromUnsortedInputKeepingTheFirstOfEqualKeys) {
    imap m{{5, 50}, {1, 10}, {3, 30}, {1, 11}, {5, 51}, {2, 20}};
    EXPECT_EQ(contents(m),
              (std::vector<std::pair<long, long>>{{1, 10}, {2, 20}, {3, 30}, {5, 50}}));
    EXPECT_EQ(m.keys(), (std::vector<int>{1, 2, 3, 5}));
    EXPECT_EQ(m.values(), (std::vector<int>{10, 20, 30, 50}));
    expect_valid(m);

    std::vector<std::pair<int, int>> input;
    for (int i = 0; i < 1000; ++i) input.emplace_back((i * 7919) % 500, i);
    imap from_range(input.begin(), input.end());
    std::map<int, int> expected(input.begin(), input.end());
    EXPECT_EQ(contents(from_range), contents(expected));

    imap empty;
    EXPECT_TRUE(empty.empty());
    EXPECT_EQ(empty.begin(), empty.end());
    EXPECT_EQ(empty.find(1), empty.end());
    EXPECT_GE(empty.max_size(), 1000u);
}

TEST(FlatMap, LookupsAgreeWithStdLowerBoundOnEveryProbe) {
    std::vector<int> keys, values;
    for (int i = 0; i < 1000; ++i) {
        keys.push_back(2 * i);
        values.push_back(20 * i);
    }
    const imap m(memkit::sorted_unique, keys, values);
    for (int probe = -3; probe <= 2003; ++probe) {
        const auto lb = std::lower_bound(keys.begin(), keys.end(), probe) - keys.begin();
        const auto ub = std::upper_bound(keys.begin(), keys.end(), probe) - keys.begin();
        ASSERT_EQ(m.lower_bound(probe) - m.begin(), lb) << probe;
        ASSERT_EQ(m.upper_bound(probe) - m.begin(), ub) << probe;
        const bool present = probe >= 0 && probe < 2000 && probe % 2 == 0;
        ASSERT_EQ(m.contains(probe), present);
        ASSERT_EQ(m.count(probe), present ? 1u : 0u);
        const auto [first, last] = m.equal_range(probe);
        ASSERT_EQ(first - m.begin(), lb);
        ASSERT_EQ(last - m.begin(), ub);
        if (present) {
            ASSERT_EQ(m.find(probe)->second, 10 * probe);
            ASSERT_EQ(m.at(probe), 10 * probe);
        } else {
            ASSERT_EQ(m.find(probe), m.end());
        }
    }
}

// The branchless search for arithmetic keys against std::lower_bound / upper_bound, on every
// size up to 130 (all the loop's shapes), with runs of equal keys and both orders.
TEST(FlatMap, BranchlessSearchAgreesWithTheStandardAlgorithms) {
    std::mt19937_64 rng(42);
    for (std::size_t n = 0; n <= 130; ++n) {
        std::vector<long> v(n);
        for (auto& x : v) x = static_cast<long>(rng() % 40);
        std::sort(v.begin(), v.end());
        std::vector<long> desc(v.rbegin(), v.rend());
        for (long probe = -1; probe <= 41; ++probe) {
            const std::less<long> lt;
            const std::greater<> gt;
            ASSERT_EQ(
                memkit::detail::bound_index<false>(v.begin(), n, probe, lt),
                static_cast<std::size_t>(std::lower_bound(v.begin(), v.end(), probe) - v.begin()));
            ASSERT_EQ(
                memkit::detail::bound_index<true>(v.begin(), n, probe, lt),
                static_cast<std::size_t>(std::upper_bound(v.begin(), v.end(), probe) - v.begin()));
            ASSERT_EQ(memkit::detail::bound_index<false>(desc.begin(), n, probe, gt),
                      static_cast<std::size_t>(
                          std::lower_bound(desc.begin(), desc.end(), probe, gt) - desc.begin()));
            ASSERT_EQ(memkit::detail::bound_index<true>(desc.begin(), n, probe, gt),
                      static_cast<std::size_t>(
                          std::upper_bound(desc.begin(), desc.end(), probe, gt) - desc.begin()));
        }
    }
}

TEST(FlatMap, GreaterComparatorOrdersDescending) {
    memkit::flat_map<int, int, std::greater<int>> m{{1, 10}, {3, 30}, {2, 20}};
    EXPECT_EQ(m.keys(), (std::vector<int>{3, 2, 1}));
    EXPECT_EQ(m.lower_bound(2)->first, 2);
    EXPECT_EQ(m.upper_bound(2)->first, 1);
    EXPECT_EQ(m.find(4), m.end());
    m[4] = 40;
    EXPECT_EQ(m.begin()->first, 4);
}

TEST(FlatMap, AtThrowsOutOfRangeForAMissingKey) {
    imap m{{1, 10}};
    EXPECT_EQ(m.at(1), 10);
    m.at(1) = 11;
    EXPECT_EQ(std::as_const(m).at(1), 11);
    EXPECT_THROW((void)m.at(2), std::out_of_range);
    EXPECT_THROW((void)std::as_const(m).at(0), std::out_of_range);
    smap s{{"a", 1}};
    EXPECT_THROW((void)s.at(std::string_view{"b"}), std::out_of_range);
    EXPECT_EQ(s.size(), 1u);
}

TEST(FlatMap, SubscriptInsertsADefaultValueOnce) {
    imap m;
    m[3] += 1;
    m[3] += 1;
    m[1] = 7;
    EXPECT_EQ(contents(m), (std::vector<std::pair<long, long>>{{1, 7}, {3, 2}}));
    int key = 2;
    m[key] = 5;
    m[std::move(key)] += 1;
    EXPECT_EQ(m.at(2), 6);
}

TEST(FlatMap, TryEmplaceLeavesItsArgumentsAloneWhenTheKeyExists) {
    memkit::flat_map<int, std::unique_ptr<int>> m;
    auto p = std::make_unique<int>(1);
    auto [it, inserted] = m.try_emplace(1, std::move(p));
    EXPECT_TRUE(inserted);
    EXPECT_EQ(p, nullptr);
    auto q = std::make_unique<int>(2);
    auto [it2, inserted2] = m.try_emplace(1, std::move(q));
    EXPECT_FALSE(inserted2);
    EXPECT_NE(q, nullptr) << "try_emplace moved from its argument although the key existed";
    EXPECT_EQ(*it2->second, 1);
    EXPECT_EQ(it2, m.begin());
    auto r = m.try_emplace(m.end(), 5, std::make_unique<int>(5));
    EXPECT_EQ(r->first, 5);
    auto s = m.try_emplace(m.begin(), 3, std::make_unique<int>(3)); // wrong hint
    EXPECT_EQ(s->first, 3);
    EXPECT_EQ(m.keys(), (std::vector<int>{1, 3, 5}));
}

TEST(FlatMap, InsertOrAssignReportsWhetherItInserted) {
    imap m{{1, 10}};
    auto [it, inserted] = m.insert_or_assign(1, 11);
    EXPECT_FALSE(inserted);
    EXPECT_EQ(it->second, 11);
    auto [it2, inserted2] = m.insert_or_assign(0, 5);
    EXPECT_TRUE(inserted2);
    EXPECT_EQ(it2, m.begin());
    EXPECT_EQ(m.insert_or_assign(m.end(), 2, 20)->second, 20);
    EXPECT_EQ(m.insert_or_assign(m.end(), 2, 21)->second, 21);
    EXPECT_EQ(contents(m), (std::vector<std::pair<long, long>>{{0, 5}, {1, 11}, {2, 21}}));
}

TEST(FlatMap, HeterogeneousLookupWithStringViewsAndLiterals) {
    smap m{{"delta", 4}, {"alpha", 1}, {"charlie", 3}};
    const std::string_view b = "bravo";
    EXPECT_EQ(m.find(std::string_view{"alpha"})->second, 1);
    EXPECT_EQ(m.find("charlie")->second, 3);
    EXPECT_EQ(m.find(b), m.end());
    EXPECT_TRUE(m.contains("delta"));
    EXPECT_EQ(m.count(std::string_view{"delta"}), 1u);
    EXPECT_EQ(m.lower_bound(b)->first, "charlie");
    EXPECT_EQ(m.upper_bound(std::string_view{"charlie"})->first, "delta");
    auto [first, last] = m.equal_range(std::string_view{"alpha"});
    EXPECT_EQ(last - first, 1);
    EXPECT_EQ(m.at(std::string_view{"alpha"}), 1);
    EXPECT_EQ(std::as_const(m).at("delta"), 4);

    m[b] = 2; // builds a std::string only to insert
    EXPECT_EQ(m.keys()[1], "bravo");
    EXPECT_FALSE(m.try_emplace(std::string_view{"bravo"}, 9).second);
    EXPECT_TRUE(m.try_emplace(std::string_view{"echo"}, 5).second);
    EXPECT_FALSE(m.insert_or_assign(std::string_view{"echo"}, 50).second);
    EXPECT_EQ(m.at("echo"), 50);
    EXPECT_EQ(m.try_emplace(m.end(), std::string_view{"foxtrot"}, 6)->second, 6);
    EXPECT_EQ(m.erase(std::string_view{"alpha"}), 1u);
    EXPECT_EQ(m.erase("zulu"), 0u);
    EXPECT_EQ(m.keys(), (std::vector<std::string>{"bravo", "charlie", "delta", "echo", "foxtrot"}));
}

TEST(FlatMap, EmplaceHintUsesAGoodHintAndSurvivesABadOne) {
    imap m;
    for (int i = 0; i < 100; ++i) m.emplace_hint(m.end(), i, 10 * i); // always right
    expect_valid(m);
    expect_paired(m);
    auto it = m.emplace_hint(m.begin(), 50, 0); // exists: unchanged
    EXPECT_EQ(it->second, 500);
    it = m.emplace_hint(m.begin(), 200, 2000); // wrong hint
    EXPECT_EQ(it, m.end() - 1);
    it = m.insert(m.end(), std::pair{-1, -10}); // wrong hint
    EXPECT_EQ(it, m.begin());
    EXPECT_EQ(m.size(), 102u);
    expect_valid(m);
    expect_paired(m);

    imultimap mm{{1, 1}, {1, 2}, {3, 3}};
    // With a valid hint, the new element goes just before it.
    auto h = mm.emplace_hint(mm.begin() + 1, 1, 9);
    EXPECT_EQ(h - mm.begin(), 1);
    // With an invalid one, as close to it as the order allows.
    h = mm.emplace_hint(mm.end(), 1, 8);
    EXPECT_EQ(h - mm.begin(), 3);
    h = mm.emplace_hint(mm.begin(), 2, 7);
    EXPECT_EQ(h - mm.begin(), 4);
    EXPECT_EQ(contents(mm),
              (std::vector<std::pair<long, long>>{{1, 1}, {1, 9}, {1, 2}, {1, 8}, {2, 7}, {3, 3}}));
}

TEST(FlatMap, EraseByIteratorRangeAndKey) {
    imap m;
    for (int i = 0; i < 10; ++i) m.emplace(i, 10 * i);
    auto it = m.erase(m.begin() + 2);
    EXPECT_EQ(it->first, 3);
    it = m.erase(m.cbegin() + 1, m.cbegin() + 4); // 1, 3, 4
    EXPECT_EQ(it->first, 5);
    EXPECT_EQ(m.erase(7), 1u);
    EXPECT_EQ(m.erase(7), 0u);
    const auto after_last = m.erase(m.end() - 1);
    EXPECT_EQ(after_last, m.end());
    EXPECT_EQ(m.keys(), (std::vector<int>{0, 5, 6, 8}));
    expect_paired(m);
    const auto after_all = m.erase(m.begin(), m.end());
    EXPECT_EQ(after_all, m.end());
    EXPECT_TRUE(m.empty());

    imultimap mm{{1, 1}, {2, 2}, {2, 3}, {2, 4}, {3, 5}};
    EXPECT_EQ(mm.count(2), 3u);
    EXPECT_EQ(mm.erase(2), 3u);
    EXPECT_EQ(contents(mm), (std::vector<std::pair<long, long>>{{1, 1}, {3, 5}}));
}

TEST(FlatMap, BulkInsertSortsOnceAndKeepsExistingValues) {
    imap m{{2, 20}, {4, 40}, {6, 60}};
    std::vector<std::pair<int, int>> more{{5, 50}, {4, 41}, {1, 10}, {5, 51}, {7, 70}, {3, 30}};
    m.insert(more.begin(), more.end());
    EXPECT_EQ(contents(m), (std::vector<std::pair<long, long>>{
                               {1, 10}, {2, 20}, {3, 30}, {4, 40}, {5, 50}, {6, 60}, {7, 70}}));
    m.insert({{0, 0}, {8, 80}});
    m.insert_range(std::vector<std::pair<int, int>>{{9, 90}, {-1, -10}});
    EXPECT_EQ(m.size(), 11u);
    expect_valid(m);
    expect_paired(m);

    imultimap mm{{2, 1}, {1, 2}};
    std::vector<std::pair<int, int>> more_mm{{2, 3}, {0, 4}, {2, 5}, {1, 6}};
    mm.insert(more_mm.begin(), more_mm.end());
    // Equal keys: the existing elements first, then the new ones in input order (as
    // std::multimap::insert(first, last)).
    EXPECT_EQ(contents(mm),
              (std::vector<std::pair<long, long>>{{0, 4}, {1, 2}, {1, 6}, {2, 1}, {2, 3}, {2, 5}}));
    expect_valid(mm, false);
}

// Large batches of integer keys are sorted by a radix sort: check it against std::map for
// signed and unsigned keys of every width, both orders, with repeated keys (the first wins).
template <class Key, class Compare>
void check_integer_bulk_insert(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    memkit::flat_map<Key, int, Compare> f;
    std::map<Key, int, Compare> s;
    for (int round = 0; round < 3; ++round) {
        std::vector<std::pair<Key, int>> batch;
        for (int i = 0; i < 3000; ++i) {
            // Mostly small keys (many repeats), sometimes any value of the type.
            const auto r = rng();
            const Key k = r % 4 == 0 ? static_cast<Key>(r >> 8) : static_cast<Key>((r >> 8) % 700);
            batch.emplace_back(static_cast<Key>(k - (r % 3 == 0 ? Key(300) : Key(0))), i);
        }
        f.insert(batch.begin(), batch.end());
        s.insert(batch.begin(), batch.end());
        ASSERT_TRUE(std::ranges::equal(f, s, [](const auto& a, const auto& b) {
            return a.first == b.first && a.second == b.second;
        }));
    }
}

TEST(FlatMap, BulkInsertOfIntegerKeysInBothOrders) {
    check_integer_bulk_insert<int, std::less<int>>(1);
    check_integer_bulk_insert<int, std::greater<int>>(2);
    check_integer_bulk_insert<long long, std::less<>>(3);
    check_integer_bulk_insert<long long, std::ranges::greater>(4);
    check_integer_bulk_insert<unsigned, std::less<unsigned>>(5);
    check_integer_bulk_insert<std::uint64_t, std::greater<>>(6);
    check_integer_bulk_insert<short, std::less<short>>(7);
    check_integer_bulk_insert<signed char, std::less<signed char>>(8);
    check_integer_bulk_insert<unsigned char, std::greater<unsigned char>>(9);
    check_integer_bulk_insert<char, std::less<char>>(10);
}

TEST(FlatMap, BulkInsertFromASinglePassInputRange) {
    std::vector<std::pair<int, int>> src{{3, 30}, {1, 10}, {2, 20}, {1, 11}};
    struct single_pass {
        using value_type = std::pair<int, int>;
        using difference_type = std::ptrdiff_t;
        const std::pair<int, int>* p;
        const std::pair<int, int>& operator*() const { return *p; }
        single_pass& operator++() {
            ++p;
            return *this;
        }
        void operator++(int) { ++p; }
        bool operator==(const single_pass& o) const { return p == o.p; }
    };
    static_assert(std::input_iterator<single_pass> && !std::forward_iterator<single_pass>);
    imap m;
    m.insert(single_pass{src.data()}, single_pass{src.data() + src.size()});
    EXPECT_EQ(contents(m), (std::vector<std::pair<long, long>>{{1, 10}, {2, 20}, {3, 30}}));
}

TEST(FlatMap, SortedUniqueInputSkipsTheSortAndIsCheckedInDebugBuilds) {
    std::vector<std::pair<int, int>> sorted{{1, 10}, {2, 20}, {4, 40}};
    imap m(memkit::sorted_unique, sorted.begin(), sorted.end());
    EXPECT_EQ(m.size(), 3u);
    std::vector<std::pair<int, int>> after{{5, 50}, {6, 60}};
    m.insert(memkit::sorted_unique, after.begin(), after.end()); // appended in place
    std::vector<std::pair<int, int>> between{{0, 0}, {3, 30}, {4, 41}};
    m.insert(memkit::sorted_unique, between.begin(), between.end()); // merged; 4 kept
    EXPECT_EQ(contents(m), (std::vector<std::pair<long, long>>{
                               {0, 0}, {1, 10}, {2, 20}, {3, 30}, {4, 40}, {5, 50}, {6, 60}}));
    m.insert(memkit::sorted_unique, {{7, 70}});
    imap il{memkit::sorted_unique, {{1, 10}, {2, 20}}};
    EXPECT_EQ(il.size(), 2u);
    imultimap mm{memkit::sorted_equivalent, {{1, 1}, {1, 2}, {2, 3}}};
    EXPECT_EQ(mm.count(1), 2u);

    if constexpr (memkit::debug_checks) {
        const auto before = contents(m);
        std::vector<std::pair<int, int>> unsorted{{9, 90}, {8, 80}};
        EXPECT_THROW(m.insert(memkit::sorted_unique, unsorted.begin(), unsorted.end()),
                     std::invalid_argument);
        EXPECT_EQ(contents(m), before) << "a rejected sorted insert must change nothing";
        std::vector<std::pair<int, int>> repeated{{9, 90}, {9, 91}};
        EXPECT_THROW(m.insert(memkit::sorted_unique, repeated.begin(), repeated.end()),
                     std::invalid_argument);
        EXPECT_THROW((imap{memkit::sorted_unique, {{2, 20}, {1, 10}}}), std::invalid_argument);
        EXPECT_THROW((imap(memkit::sorted_unique, std::vector<int>{1, 1}, std::vector<int>{1, 2})),
                     std::invalid_argument);
        EXPECT_THROW((imultimap{memkit::sorted_equivalent, {{2, 20}, {1, 10}}}),
                     std::invalid_argument);
        EXPECT_NO_THROW((imultimap{memkit::sorted_equivalent, {{1, 20}, {1, 10}}}));
    }
}

TEST(FlatMap, ContainerConstructorsSortDeduplicateAndCheckSizes) {
    imap m(std::vector<int>{3, 1, 2, 1}, std::vector<int>{30, 10, 20, 11});
    EXPECT_EQ(contents(m), (std::vector<std::pair<long, long>>{{1, 10}, {2, 20}, {3, 30}}));
    imultimap mm(std::vector<int>{3, 1, 2, 1}, std::vector<int>{30, 10, 20, 11});
    EXPECT_EQ(contents(mm),
              (std::vector<std::pair<long, long>>{{1, 10}, {1, 11}, {2, 20}, {3, 30}}));
    EXPECT_THROW((imap(std::vector<int>{1, 2}, std::vector<int>{1})), std::invalid_argument);
    EXPECT_THROW((imap(memkit::sorted_unique, std::vector<int>{1, 2}, std::vector<int>{1})),
                 std::invalid_argument);
}

TEST(FlatMap, ExtractEmptiesTheMapAndReplaceTakesNewContainers) {
    imap m{{1, 10}, {2, 20}};
    auto c = std::move(m).extract();
    EXPECT_TRUE(m.empty()); // NOLINT(bugprone-use-after-move): extract's postcondition
    EXPECT_EQ(m.keys().size(), 0u);
    EXPECT_EQ(m.values().size(), 0u);
    EXPECT_EQ(c.keys, (std::vector<int>{1, 2}));
    EXPECT_EQ(c.values, (std::vector<int>{10, 20}));
    c.values[0] = 11;
    m.replace(std::move(c.keys), std::move(c.values));
    EXPECT_EQ(m.at(1), 11);
    EXPECT_THROW(m.replace(std::vector<int>{1}, std::vector<int>{}), std::invalid_argument);
    EXPECT_EQ(m.size(), 2u) << "a rejected replace changes nothing";
    if constexpr (memkit::debug_checks) {
        EXPECT_THROW(m.replace(std::vector<int>{2, 1}, std::vector<int>{20, 10}),
                     std::invalid_argument);
    }
}

TEST(FlatMap, ComparisonOperatorsCompareLexicographically) {
    const imap a{{1, 10}, {2, 20}};
    const imap b{{1, 10}, {2, 21}};
    const imap c{{1, 10}};
    EXPECT_EQ(a, a);
    EXPECT_NE(a, b);
    EXPECT_LT(a, b);
    EXPECT_GT(a, c);
    EXPECT_LE(c, a);
    EXPECT_EQ(a <=> imap(a), std::strong_ordering::equal);
    EXPECT_EQ(c <=> a, std::strong_ordering::less);
    // Keys compare before values.
    EXPECT_LT((imap{{1, 99}}), (imap{{2, 0}}));
    // A type with only operator< gives a weak ordering.
    struct only_less {
        int v;
        bool operator<(const only_less& o) const { return v < o.v; }
        bool operator==(const only_less& o) const { return v == o.v; }
    };
    memkit::flat_map<int, only_less> x{{1, {1}}}, y{{1, {2}}};
    EXPECT_TRUE((x <=> y) < 0);
    static_assert(std::same_as<decltype(x <=> y), std::weak_ordering>);
}

TEST(FlatMap, SwapExchangesContentsAndClearEmpties) {
    imap a{{1, 10}}, b{{2, 20}, {3, 30}};
    auto it = b.begin();
    swap(a, b);
    EXPECT_EQ(a.size(), 2u);
    EXPECT_EQ(b.size(), 1u);
    EXPECT_EQ(it, a.begin()) << "iterators follow the containers";
    a.swap(b);
    EXPECT_EQ(a.begin()->first, 1);
    std::swap(a, b);
    EXPECT_EQ(a.begin()->first, 2);
    a.clear();
    EXPECT_TRUE(a.empty());
    EXPECT_TRUE(a.values().empty());
}

TEST(FlatMap, EraseIfRemovesMatchesAndKeepsTheRestWhenThePredicateThrows) {
    imap m;
    for (int i = 0; i < 20; ++i) m.emplace(i, 10 * i);
    EXPECT_EQ(memkit::erase_if(m, [](const auto& e) { return e.first % 3 == 0; }), 7u);
    EXPECT_EQ(m.size(), 13u);
    expect_valid(m);
    expect_paired(m);
    int calls = 0;
    EXPECT_THROW(memkit::erase_if(m,
                                  [&](imap::const_reference e) {
                                      if (++calls == 6) throw injected_failure();
                                      return e.first % 2 == 0;
                                  }),
                 injected_failure);
    // The first five were tested (1, 2, 4, 5, 7: 2 and 4 removed); the rest is kept.
    EXPECT_EQ(m.keys(), (std::vector<int>{1, 5, 7, 8, 10, 11, 13, 14, 16, 17, 19}));
    expect_paired(m);

    imultimap mm{{1, 1}, {1, 2}, {2, 3}};
    EXPECT_EQ(memkit::erase_if(mm, [](auto e) { return e.second == 2; }), 1u);
    EXPECT_EQ(contents(mm), (std::vector<std::pair<long, long>>{{1, 1}, {2, 3}}));
}

TEST(FlatMap, IteratorsWorkWithAlgorithmsAndStructuredBindings) {
    imap m;
    for (int i = 0; i < 10; ++i) m.emplace(i, i);
    for (auto [k, v] : m) v = 10 * k; // v is an int&
    expect_paired(m);
    m.begin()[3].second = 31;
    EXPECT_EQ(m.at(3), 31);
    (m.begin() + 3)->second = 30;
    auto it = m.begin();
    it += 4;
    EXPECT_EQ((*it).first, 4);
    EXPECT_EQ(it - m.begin(), 4);
    EXPECT_EQ(m.end() - it, 6);
    EXPECT_TRUE(m.begin() < it && it <= it && it < m.end());
    EXPECT_EQ((it--)->first, 4);
    EXPECT_EQ((++it)->first, 4);
    EXPECT_EQ((2 + it)->first, 6);
    imap::const_iterator cit = it; // iterator -> const_iterator
    EXPECT_EQ(cit, it);
    EXPECT_EQ(cit - m.cbegin(), 4);
    EXPECT_EQ(m.rbegin()->first, 9);
    EXPECT_EQ(std::prev(m.rend())->first, 0);
    EXPECT_EQ(std::ranges::distance(m), 10);
    auto found = std::ranges::find_if(m, [](const auto& e) { return e.second == 70; });
    EXPECT_EQ(found->first, 7);
    auto lb = std::ranges::lower_bound(m, 5, {}, [](const auto& e) { return e.first; });
    EXPECT_EQ(lb->first, 5);
    std::vector<std::pair<int, int>> copy(m.begin(), m.end());
    EXPECT_EQ(copy.size(), 10u);
    EXPECT_EQ(copy[9], (std::pair<int, int>{9, 90}));
    const std::pair<const int&, int&> as_std_pair = *m.begin();
    EXPECT_EQ(as_std_pair.first, 0);
    EXPECT_EQ(std::get<1>(*m.begin()), 0);
#if !defined(__clang__) || __clang_major__ >= 15 // clang 14 cannot compile libstdc++ 12's views
    auto keys = m | std::views::keys;
    EXPECT_TRUE(std::ranges::equal(keys, m.keys()));
    int sum = 0;
    for (int v : m | std::views::values | std::views::reverse) sum += v;
    EXPECT_EQ(sum, 450);
#endif
}

struct alignas(64) wide {
    int v = 0;
    wide() = default;
    wide(int x) : v(x) {} // NOLINT(google-explicit-constructor)
};

TEST(FlatMap, OverAlignedMappedValuesStayAligned) {
    memkit::flat_map<int, wide> m;
    for (int i = 0; i < 100; ++i) m.try_emplace((i * 37) % 101, i);
    std::vector<std::pair<int, wide>> more;
    for (int i = 0; i < 50; ++i) more.emplace_back(200 - i, i);
    m.insert(more.begin(), more.end());
    for (auto [k, v] : m) {
        ASSERT_EQ(reinterpret_cast<std::uintptr_t>(&v) % 64, 0u);
        (void)k;
    }
    EXPECT_EQ(m.size(), 150u);
}

TEST(FlatMap, MoveOnlyMappedValues) {
    memkit::flat_map<int, std::unique_ptr<int>> m;
    m.emplace(2, std::make_unique<int>(2));
    m.insert(std::pair{1, std::make_unique<int>(1)});
    std::vector<std::pair<int, std::unique_ptr<int>>> more;
    for (int i = 10; i > 2; --i) more.emplace_back(i, std::make_unique<int>(i));
    m.insert(std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    ASSERT_EQ(m.size(), 10u);
    for (auto [k, v] : m) EXPECT_EQ(*v, k);
    m.erase(5);
    auto moved = std::move(m);
    EXPECT_EQ(moved.size(), 9u);
    EXPECT_TRUE(m.empty()); // NOLINT(bugprone-use-after-move): moved-from maps are empty
}

TEST(FlatMap, DequeContainersWork) {
    memkit::flat_map<int, std::string, std::less<int>, std::deque<int>, std::deque<std::string>> m{
        {3, "c"}, {1, "a"}};
    m[2] = "b";
    m.insert({{0, "z"}, {4, "d"}});
    EXPECT_EQ(m.lower_bound(2)->second, "b");
    EXPECT_EQ(m.keys(), (std::deque<int>{0, 1, 2, 3, 4}));
    m.erase(m.begin());
    EXPECT_EQ(m.begin()->second, "a");
}

TEST(FlatMap, DeductionGuides) {
    memkit::flat_map a(std::vector<int>{2, 1}, std::vector<double>{2.0, 1.0});
    static_assert(std::same_as<decltype(a), memkit::flat_map<int, double>>);
    EXPECT_EQ(a.begin()->first, 1);
    std::vector<std::pair<int, char>> v{{1, 'a'}};
    memkit::flat_map b(v.begin(), v.end());
    static_assert(std::same_as<decltype(b), memkit::flat_map<int, char>>);
    memkit::flat_map c(v.begin(), v.end(), std::greater<int>());
    static_assert(std::same_as<decltype(c), memkit::flat_map<int, char, std::greater<int>>>);
    memkit::flat_map d{std::pair{1, 2L}, std::pair{0, 1L}};
    static_assert(std::same_as<decltype(d), memkit::flat_map<int, long>>);
    memkit::flat_map e(memkit::sorted_unique, std::vector<int>{1}, std::vector<int>{1});
    static_assert(std::same_as<decltype(e), memkit::flat_map<int, int>>);
    memkit::flat_multimap f(v.begin(), v.end());
    static_assert(std::same_as<decltype(f), memkit::flat_multimap<int, char>>);
    EXPECT_EQ(d.size(), 2u);
}

// --- allocators ----------------------------------------------------------------------------

TEST(FlatMap, KeysAndValuesLiveInAnArenaThroughStdAllocator) {
    memkit::arena a;
    using ka = memkit::std_allocator<int, memkit::arena>;
    using va = memkit::std_allocator<double, memkit::arena>;
    using map_t = memkit::flat_map<int, double, std::less<int>, std::vector<int, ka>,
                                   std::vector<double, va>>;
    map_t m(ka{a}); // both containers from one allocator (rebound for the values)
    for (int i = 0; i < 500; ++i) m.emplace((i * 31) % 500, i);
    std::vector<std::pair<int, double>> more{{1000, 1.0}, {-1, 2.0}};
    m.insert(more.begin(), more.end());
    EXPECT_EQ(m.size(), 502u);
    EXPECT_TRUE(a.owns(m.keys().data()));
    EXPECT_TRUE(a.owns(m.values().data()));
    EXPECT_EQ(&m.values().get_allocator().get(), &a);

    memkit::arena other;
    map_t copy(m, ka{other}); // allocator-extended copy
    EXPECT_EQ(copy, m);
    EXPECT_TRUE(other.owns(copy.keys().data()));
    map_t il({{1, 1.0}, {0, 0.0}}, ka{other});
    EXPECT_TRUE(other.owns(il.keys().data()));
    map_t from_range(more.begin(), more.end(), ka{other});
    EXPECT_EQ(from_range.begin()->first, -1);
}

TEST(FlatMap, PmrMapPassesItsResourceToKeysAndIsUsesAllocatorAware) {
    memkit::resource<memkit::arena> res;
    memkit::pmr::flat_map<std::pmr::string, int, std::less<>> m(&res);
    m["a key long enough to need a heap block of its own"] = 1;
    m.try_emplace("another key that is far too long for the small buffer", 2);
    std::vector<std::pair<std::string_view, int>> more{{"a third rather long key, sorted last", 3}};
    m.insert(more.begin(), more.end());
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m.keys().get_allocator().resource(), &res);
    EXPECT_EQ(m.values().get_allocator().resource(), &res);
    for (const auto& k : m.keys()) EXPECT_TRUE(res.get().owns(k.data())) << k;
    EXPECT_TRUE(m.contains(std::string_view{"a third rather long key, sorted last"}));

    // A flat_map inside a pmr container gets that container's resource.
    std::pmr::vector<memkit::pmr::flat_map<int, int>> outer(&res);
    outer.emplace_back();
    outer.back()[1] = 1;
    EXPECT_EQ(outer.back().keys().get_allocator().resource(), &res);
    EXPECT_TRUE(res.get().owns(outer.back().values().data()));
}

template <class Alloc>
using alloc_map =
    memkit::flat_map<int, int, std::less<int>, std::vector<int, Alloc>, std::vector<int, Alloc>>;

template <bool Propagate>
void check_assignment_propagation() {
    using alloc = failing_allocator<int, Propagate, Propagate, Propagate>;
    using map_t = alloc_map<alloc>;
    alloc a1, a2;
    {
        map_t x(a1), y(a2);
        for (int i = 0; i < 10; ++i) x.emplace(i, 10 * i);
        y.emplace(100, 1000);

        y = x; // copy assignment
        EXPECT_EQ(y, x);
        EXPECT_EQ(y.keys().get_allocator() == a1, Propagate);
        expect_paired(y);

        map_t z(a2);
        z.emplace(5, 50);
        z = std::move(y); // move assignment: steals (propagating) or moves element-wise
        EXPECT_EQ(z, x);
        EXPECT_TRUE(y.empty()); // NOLINT(bugprone-use-after-move): moved-from maps are empty
        EXPECT_EQ(y.keys().size(), y.values().size());
        EXPECT_EQ(z.keys().get_allocator() == a1, Propagate);

        map_t w(a2);
        map_t v(Propagate ? a1 : a2); // unequal allocators only where they propagate
        v.emplace(7, 70);
        w.emplace(8, 80);
        swap(v, w);
        EXPECT_EQ(v.begin()->first, 8);
        EXPECT_EQ(w.begin()->first, 7);

        map_t moved(std::move(x), a2); // allocator-extended move with an unequal allocator
        EXPECT_EQ(moved.size(), 10u);
        EXPECT_TRUE(x.empty()); // NOLINT(bugprone-use-after-move)
        EXPECT_TRUE(moved.keys().get_allocator() == a2);
    }
    EXPECT_EQ(a1.state().live_blocks, 0);
    EXPECT_EQ(a2.state().live_blocks, 0);
}

TEST(FlatMap, AssignmentAndSwapFollowNonPropagatingAllocators) {
    check_assignment_propagation<false>();
}
TEST(FlatMap, AssignmentAndSwapFollowPropagatingAllocators) {
    check_assignment_propagation<true>();
}

// An allocator whose max_size() is 8 elements: growing beyond it throws std::length_error.
template <class T>
using capped_allocator = memkit::test::small_max_allocator<T, 8>;

TEST(FlatMap, GrowingBeyondMaxSizeThrowsLengthErrorAndChangesNothing) {
    alloc_map<capped_allocator<int>> m;
    for (int i = 0; i < 8; ++i) m.emplace(2 * i, 20 * i);
    EXPECT_EQ(m.max_size(), 8u);
    const auto before = contents(m);
    EXPECT_THROW(m.emplace(3, 30), std::length_error);
    EXPECT_THROW(m[5] = 50, std::length_error);
    const std::vector<std::pair<int, int>> more{{1, 10}, {100, 1000}};
    EXPECT_THROW(m.insert(more.begin(), more.end()), std::length_error);
    EXPECT_EQ(contents(m), before);
    expect_valid(m);
    m.insert(more.begin(), more.begin()); // an empty range is fine
    EXPECT_EQ(m.size(), 8u);
}

TEST(FlatMap, ClearedMapsAreReusable) {
    imap m;
    for (int i = 0; i < 100; ++i) m.emplace(i, 10 * i);
    const std::size_t capacity = m.keys().capacity();
    m.clear();
    EXPECT_TRUE(m.empty());
    EXPECT_EQ(m.keys().capacity(), capacity) << "clear keeps the memory for reuse";
    for (int i = 99; i >= 0; --i) m.emplace(i, 10 * i);
    EXPECT_EQ(m.size(), 100u);
    expect_valid(m);
    expect_paired(m);
    m = {{5, 50}, {4, 40}};
    EXPECT_EQ(contents(m), (std::vector<std::pair<long, long>>{{4, 40}, {5, 50}}));
}

// --- exception safety ----------------------------------------------------------------------

using cn = counted_nothrow_move;
using cn_alloc = failing_allocator<cn>;
using cn_map =
    memkit::flat_map<cn, cn, std::less<cn>, std::vector<cn, cn_alloc>, std::vector<cn, cn_alloc>>;

// A map of `n` elements {2i, 20i} whose containers are full (the next insertion reallocates).
template <class Map, class Alloc>
Map make_full_map(const Alloc& alloc, int n) {
    typename Map::key_container_type keys(alloc);
    typename Map::mapped_container_type values(alloc);
    keys.reserve(static_cast<std::size_t>(n));
    values.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        keys.emplace_back(2 * i);
        values.emplace_back(20 * i);
    }
    return Map(memkit::sorted_unique, std::move(keys), std::move(values));
}

// Single-element insertion with nothrow-movable elements: after any failed allocation or copy
// the map is unchanged (strong guarantee), and nothing leaks.
TEST(FlatMapExceptions, SingleInsertIsStrongWithNothrowMoves) {
    live_object_guard guard;
    cn_alloc alloc;
    {
        const std::vector<std::function<void(cn_map&)>> ops{
            [](cn_map& m) { m.try_emplace(cn(33), 330); },
            [](cn_map& m) {
                const cn key(35);
                m.try_emplace(key, 350); // copies the key
            },
            [](cn_map& m) { m.emplace(cn(37), cn(370)); },
            [](cn_map& m) {
                const std::pair<cn, cn> p(39, 390);
                m.insert(p); // copies key and value
            },
            [](cn_map& m) { m[cn(41)] = 410; },
            [](cn_map& m) { m.insert_or_assign(cn(43), cn(430)); },
            [](cn_map& m) { m.emplace_hint(m.begin() + 22, cn(43 + 2), cn(450)); },
            [](cn_map& m) { m.emplace_hint(m.begin(), cn(-1), cn(-10)); },
        };
        for (std::size_t op = 0; op < ops.size(); ++op) {
            for (int kind = 0; kind < 2; ++kind) { // 0: allocation fails, 1: a copy fails
                cn_map m = make_full_map<cn_map>(alloc, 40);
                const auto before = contents(m);
                const long points = for_each_failure_point(
                    [&](long k) {
                        if (kind == 0) alloc.state().fail_at(k);
                        else counted_state::fail_at(k);
                        ops[op](m);
                        alloc.state().fail_at(0);
                    },
                    [&] {
                        alloc.state().fail_at(0);
                        EXPECT_EQ(contents(m), before) << "op " << op << " kind " << kind;
                        expect_valid(m);
                    });
                EXPECT_EQ(m.size(), 41u);
                expect_paired(m);
                if (kind == 0) {
                    EXPECT_GE(points, 1) << "op " << op;
                }
            }
        }
    }
    EXPECT_EQ(alloc.state().live_blocks, 0);
}

// With copies and moves that may throw, a failure leaves the map either unchanged or empty (the
// standard's rule), never out of step.
TEST(FlatMapExceptions, ThrowingMovesLeaveTheMapUnchangedOrEmpty) {
    using c_alloc = failing_allocator<counted>;
    using c_map = memkit::flat_map<counted, counted, std::less<counted>,
                                   std::vector<counted, c_alloc>, std::vector<counted, c_alloc>>;
    live_object_guard guard;
    c_alloc alloc;
    {
        const std::vector<std::function<void(c_map&)>> ops{
            [](c_map& m) { m.try_emplace(counted(33), 330); },
            [](c_map& m) { m.emplace(counted(-3), counted(-30)); },
            [](c_map& m) { m.erase(m.begin() + 3); },
            [](c_map& m) { m.erase(counted(20)); },
            [](c_map& m) {
                std::vector<std::pair<int, int>> more{{7, 70}, {101, 1010}, {-5, -50}, {7, 71}};
                m.insert(more.begin(), more.end());
            },
            [](c_map& m) {
                std::vector<std::pair<int, int>> more{{200, 2000}, {201, 2010}};
                m.insert(memkit::sorted_unique, more.begin(), more.end());
            },
        };
        for (std::size_t op = 0; op < ops.size(); ++op) {
            for (int kind = 0; kind < 2; ++kind) {
                c_map m = make_full_map<c_map>(alloc, 30);
                const auto before = contents(m);
                for_each_failure_point(
                    [&](long k) {
                        if (kind == 0) alloc.state().fail_at(k);
                        else counted_state::fail_at(k);
                        ops[op](m);
                        alloc.state().fail_at(0);
                    },
                    [&] {
                        alloc.state().fail_at(0);
                        expect_valid(m);
                        expect_paired(m);
                        const auto now = contents(m);
                        EXPECT_TRUE(now == before || now.empty()) << "op " << op;
                        if (now.empty()) m = make_full_map<c_map>(alloc, 30);
                    });
                expect_valid(m);
                expect_paired(m);
            }
        }
    }
    EXPECT_EQ(alloc.state().live_blocks, 0);
}

// Range insertion with nothrow-movable elements: failures while copying the range in are undone.
TEST(FlatMapExceptions, BulkInsertIsStrongWhileCopyingIn) {
    live_object_guard guard;
    cn_alloc alloc;
    {
        std::vector<std::pair<cn, cn>> more;
        for (int i = 0; i < 25; ++i) more.emplace_back(3 * i + 1, 10 * (3 * i + 1));
        for (int kind = 0; kind < 2; ++kind) {
            cn_map m = make_full_map<cn_map>(alloc, 40);
            const auto before = contents(m);
            const long points = for_each_failure_point(
                [&](long k) {
                    if (kind == 0) alloc.state().fail_at(k);
                    else counted_state::fail_at(k);
                    m.insert(more.begin(), more.end());
                    alloc.state().fail_at(0);
                },
                [&] {
                    alloc.state().fail_at(0);
                    EXPECT_EQ(contents(m), before);
                    expect_valid(m);
                });
            EXPECT_GE(points, 2);
            expect_valid(m);
            expect_paired(m);
            EXPECT_EQ(m.size(), 40u + 25u - 12u); // 12 of the new keys were already there
        }
        // Construction from a range: a failure leaks nothing.
        for_each_failure_point(
            [&](long k) {
                counted_state::fail_at(k);
                cn_map m(more.begin(), more.end(), alloc);
                EXPECT_EQ(m.size(), 25u);
            },
            [] {});
    }
    EXPECT_EQ(alloc.state().live_blocks, 0);
}

// A comparator that throws on its k-th call.
struct throwing_less {
    static inline long countdown = -1;
    bool operator()(int a, int b) const {
        if (countdown > 0 && --countdown == 0) throw injected_failure();
        return a < b;
    }
};

TEST(FlatMapExceptions, AThrowingComparatorLeavesTheMapUnchangedOrEmpty) {
    using map_t = memkit::flat_map<int, int, throwing_less>;
    std::vector<std::pair<int, int>> more;
    for (int i = 0; i < 40; ++i) more.emplace_back((i * 17) % 60, 10 * ((i * 17) % 60));
    std::map<int, int> expected(more.begin(), more.end());
    map_t m;
    auto refill = [&] {
        m.clear();
        for (int i = 0; i < 30; ++i) m.emplace(2 * i, 20 * i);
    };
    refill();
    const auto before = contents(m);
    bool saw_unchanged = false, saw_empty = false;
    for (long k = 1; k < 2000; ++k) {
        throwing_less::countdown = k;
        try {
            m.insert(more.begin(), more.end());
            throwing_less::countdown = -1;
            break;
        } catch (const injected_failure&) {}
        throwing_less::countdown = -1;
        expect_valid(m);
        expect_paired(m);
        const auto now = contents(m);
        ASSERT_TRUE(now == before || now.empty());
        (now.empty() ? saw_empty : saw_unchanged) = true;
        if (now.empty()) refill();
    }
    EXPECT_TRUE(saw_unchanged);
    EXPECT_TRUE(saw_empty) << "the merge phase should have been reached by some failure point";
    for (int i = 0; i < 30; ++i) expected.insert_or_assign(2 * i, 20 * i);
    EXPECT_EQ(contents(m), contents(expected));
}

TEST(FlatMapExceptions, CopiesThatFailLeakNothing) {
    live_object_guard guard;
    cn_alloc alloc;
    {
        cn_map src = make_full_map<cn_map>(alloc, 20);
        for_each_failure_point(
            [&](long k) {
                alloc.state().fail_at(k);
                cn_map copy(src);
                alloc.state().fail_at(0);
                EXPECT_EQ(copy, src);
            },
            [&] { alloc.state().fail_at(0); });
        cn_map target = make_full_map<cn_map>(alloc, 3);
        for_each_failure_point(
            [&](long k) {
                counted_state::fail_at(k);
                target = src;
            },
            [&] {
                expect_valid(target);
                EXPECT_TRUE(target.empty()) << "a failed copy assignment leaves the target empty";
            });
        EXPECT_EQ(target, src);
    }
    EXPECT_EQ(alloc.state().live_blocks, 0);
}

// --- differential tests against std::map / std::multimap ----------------------------------

template <class Flat, class Std>
void expect_same(const Flat& f, const Std& s) {
    ASSERT_EQ(f.size(), s.size());
    ASSERT_TRUE(std::ranges::equal(f, s, [](const auto& a, const auto& b) {
        return a.first == b.first && a.second == b.second;
    }));
}

TEST(FlatMapDifferential, MatchesStdMapOverRandomOperations) {
    std::mt19937_64 rng(0xF1A7'0001);
    memkit::flat_map<int, long> f;
    std::map<int, long> s;
    auto key = [&] { return static_cast<int>(rng() % 3000); };
    for (int step = 0; step < 100000; ++step) {
        const int k = key();
        const long v = static_cast<long>(rng() % 1000000);
        switch (rng() % 12) {
        case 0: {
            auto [fi, fb] = f.insert({k, v});
            auto [si, sb] = s.insert({k, v});
            ASSERT_EQ(fb, sb);
            ASSERT_EQ(fi->first, si->first);
            ASSERT_EQ(fi->second, si->second);
            break;
        }
        case 1: ASSERT_EQ(f.erase(k), s.erase(k)); break;
        case 2: {
            auto fi = f.find(k);
            auto si = s.find(k);
            ASSERT_EQ(fi == f.end(), si == s.end());
            if (si != s.end()) {
                auto fn = f.erase(fi);
                auto sn = s.erase(si);
                ASSERT_EQ(fn == f.end(), sn == s.end());
                if (sn != s.end()) {
                    ASSERT_EQ(fn->first, sn->first);
                }
            }
            break;
        }
        case 3: {
            auto fi = f.find(k);
            auto si = s.find(k);
            ASSERT_EQ(fi == f.end(), si == s.end());
            if (si != s.end()) {
                ASSERT_EQ(fi->second, si->second);
            }
            break;
        }
        case 4: {
            auto fi = f.lower_bound(k);
            auto si = s.lower_bound(k);
            ASSERT_EQ(fi == f.end(), si == s.end());
            if (si != s.end()) {
                ASSERT_EQ(fi->first, si->first);
            }
            auto fu = f.upper_bound(k);
            auto su = s.upper_bound(k);
            ASSERT_EQ(fu == f.end(), su == s.end());
            if (su != s.end()) {
                ASSERT_EQ(fu->first, su->first);
            }
            ASSERT_EQ(f.count(k), s.count(k));
            break;
        }
        case 5: {
            // Bulk insertion, small or large, with repeats inside the batch.
            const std::size_t n = rng() % 8 == 0 ? rng() % 600 : rng() % 24;
            std::vector<std::pair<int, long>> batch;
            for (std::size_t i = 0; i < n; ++i)
                batch.emplace_back(key(), static_cast<long>(rng() % 1000));
            f.insert(batch.begin(), batch.end());
            s.insert(batch.begin(), batch.end());
            break;
        }
        case 6:
            f[k] += v;
            s[k] += v;
            break;
        case 7: ASSERT_EQ(f.try_emplace(k, v).second, s.try_emplace(k, v).second); break;
        case 8: ASSERT_EQ(f.insert_or_assign(k, v).second, s.insert_or_assign(k, v).second); break;
        case 9: {
            // Erase a range of keys [k, k + 20).
            f.erase(f.lower_bound(k), f.lower_bound(k + 20));
            s.erase(s.lower_bound(k), s.lower_bound(k + 20));
            break;
        }
        case 10: {
            // Insert with a hint that is right half of the time.
            auto fh = rng() % 2 ? f.lower_bound(k) : f.begin();
            auto fi = f.emplace_hint(fh, k, v);
            auto si = s.emplace_hint(s.lower_bound(k), k, v);
            ASSERT_EQ(fi->first, si->first);
            ASSERT_EQ(fi->second, si->second);
            break;
        }
        default:
            ASSERT_EQ(f.contains(k), s.contains(k));
            if (s.contains(k)) {
                ASSERT_EQ(f.at(k), s.at(k));
            }
            break;
        }
        if (step % 1000 == 0) {
            expect_same(f, s);
            expect_valid(f);
        }
    }
    expect_same(f, s);
}

TEST(FlatMapDifferential, MultimapMatchesStdMultimapOverRandomOperations) {
    std::mt19937_64 rng(0xF1A7'0002);
    memkit::flat_multimap<int, long> f;
    std::multimap<int, long> s;
    long serial = 0; // distinct values, so the order of equal keys is checked too
    auto key = [&] { return static_cast<int>(rng() % 200); };
    for (int step = 0; step < 100000; ++step) {
        const int k = key();
        switch (rng() % 9) {
        case 0:
        case 1: {
            auto fi = f.emplace(k, serial);
            auto si = s.emplace(k, serial++);
            ASSERT_EQ(fi->first, si->first);
            ASSERT_EQ(fi->second, si->second);
            break;
        }
        case 2: ASSERT_EQ(f.erase(k), s.erase(k)); break;
        case 3: {
            auto fi = f.lower_bound(k);
            auto si = s.lower_bound(k);
            ASSERT_EQ(fi == f.end(), si == s.end());
            if (si != s.end() && si->first == k) {
                ASSERT_EQ(fi->second, si->second);
                f.erase(fi);
                s.erase(si);
            }
            break;
        }
        case 4: {
            ASSERT_EQ(f.count(k), s.count(k));
            auto [ff, fl] = f.equal_range(k);
            auto [sf, sl] = s.equal_range(k);
            ASSERT_EQ(fl - ff, std::distance(sf, sl));
            ASSERT_EQ(f.contains(k), s.contains(k));
            break;
        }
        case 5: {
            const std::size_t n = rng() % 8 == 0 ? rng() % 100 : rng() % 8;
            std::vector<std::pair<int, long>> batch;
            for (std::size_t i = 0; i < n; ++i) batch.emplace_back(key(), serial++);
            f.insert(batch.begin(), batch.end());
            s.insert(batch.begin(), batch.end());
            break;
        }
        case 6: {
            // A hint at a random position; both place the element as close to it as allowed.
            const auto idx = static_cast<std::ptrdiff_t>(rng() % (s.size() + 1));
            auto fi = f.emplace_hint(f.begin() + idx, k, serial);
            auto si = s.emplace_hint(std::next(s.begin(), idx), k, serial++);
            ASSERT_EQ(fi - f.begin(), std::distance(s.begin(), si));
            break;
        }
        case 7: {
            auto fu = f.upper_bound(k);
            auto su = s.upper_bound(k);
            ASSERT_EQ(fu - f.begin(), std::distance(s.begin(), su));
            break;
        }
        default:
            if (rng() % 8 == 0) {
                f.erase(f.lower_bound(k), f.upper_bound(k + 5));
                s.erase(s.lower_bound(k), s.upper_bound(k + 5));
            }
            break;
        }
        if (step % 1000 == 0) {
            expect_same(f, s);
            expect_valid(f, false);
        }
    }
    expect_same(f, s);
}

} // namespace
