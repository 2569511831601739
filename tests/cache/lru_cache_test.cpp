#include "memkit/cache/lru_cache.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <list>
#include <memory_resource>
#include <optional>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memkit/heap/pressure_level.hpp"
#include "support/container_support.hpp"

namespace {

using memkit::cache_stats;
using memkit::eviction_reason;
using memkit::lru_cache;
using memkit::pressure_level;
using namespace std::chrono_literals;

using clock_type = std::chrono::steady_clock;

// A clock the test moves by hand.
struct fake_clock {
    std::int64_t ns = 1'000'000'000; // not 0, so "expires <= now" is exercised away from epoch
    void advance(clock_type::duration d) { ns += d.count(); }
    std::function<clock_type::time_point()> fn() {
        return [this] { return clock_type::time_point(clock_type::duration(ns)); };
    }
};

struct event {
    int key;
    std::string value;
    eviction_reason reason;
    friend bool operator==(const event&, const event&) = default;
};

std::ostream& operator<<(std::ostream& os, const event& e) {
    return os << "{" << e.key << ", \"" << e.value << "\", " << memkit::to_string(e.reason) << "}";
}

using string_cache = lru_cache<int, std::string>;

string_cache::options recording(std::vector<event>& log, string_cache::options o = {}) {
    o.on_evict = [&log](const int& k, std::string&& v, eviction_reason r) {
        log.push_back({k, std::move(v), r});
    };
    return o;
}

std::vector<int> keys_mru_first(const string_cache& c) {
    std::vector<int> keys;
    c.for_each([&](const int& k, const std::string&) { keys.push_back(k); });
    return keys;
}

// Charge = the value's length, so byte counts are easy to read.
std::size_t length_charge(const int&, const std::string& v) { return v.size(); }

// The value behind a lookup result, or a default value (and a test failure) for nullptr.
template <class T>
std::remove_const_t<T> value_of(T* p) {
    EXPECT_NE(p, nullptr);
    return p != nullptr ? *p : std::remove_const_t<T>{};
}

TEST(LruCache, StartsEmptyWithDefaults) {
    string_cache c;
    EXPECT_EQ(c.size(), 0u);
    EXPECT_TRUE(c.empty());
    EXPECT_EQ(c.bytes(), 0u);
    EXPECT_EQ(c.max_entries(), string_cache::unlimited);
    EXPECT_EQ(c.max_bytes(), string_cache::unlimited);
    EXPECT_EQ(c.byte_limit(), string_cache::unlimited);
    EXPECT_FALSE(c.ttl().has_value());
    EXPECT_EQ(c.pressure(), pressure_level::low);
    EXPECT_EQ(c.get(1), nullptr);
    EXPECT_EQ(c.peek(1), nullptr);
    EXPECT_FALSE(c.contains(1));
    EXPECT_FALSE(c.erase(1));
    EXPECT_EQ(c.stats().misses, 1u);
    EXPECT_EQ(c.hit_rate(), 0.0);
}

TEST(LruCache, PutGetPeekAndDefaultCharge) {
    string_cache c;
    EXPECT_TRUE(c.put(1, std::string("one")));
    EXPECT_TRUE(c.put(2, "two"));
    ASSERT_NE(c.get(1), nullptr);
    EXPECT_EQ(value_of(c.get(1)), "one");
    EXPECT_EQ(value_of(c.peek(2)), "two");
    EXPECT_TRUE(c.contains(2));
    EXPECT_EQ(c.size(), 2u);
    EXPECT_EQ(c.bytes(), 2 * (sizeof(int) + sizeof(std::string)));

    auto [p, inserted] = c.insert_or_assign(1, std::string("uno"));
    ASSERT_NE(p, nullptr);
    EXPECT_FALSE(inserted);
    EXPECT_EQ(value_of(p), "uno");
    auto [q, inserted2] = c.insert_or_assign(3, std::string("tres"));
    EXPECT_TRUE(inserted2);
    EXPECT_EQ(value_of(q), "tres");
    // A pointer stays valid (entries never move) while other entries come and go.
    std::string* one = c.get(1);
    for (int k = 100; k < 1100; ++k) c.put(k, std::to_string(k));
    for (int k = 100; k < 1100; k += 2) c.erase(k);
    EXPECT_EQ(one, c.peek(1));
    EXPECT_EQ(value_of(one), "uno");
    EXPECT_EQ(c.size(), 503u);
}

TEST(LruCache, LruOrderAndEvictionsAreExact) {
    std::vector<event> log;
    string_cache c(recording(log, {.max_entries = 3}));
    c.put(1, "a");
    c.put(2, "b");
    c.put(3, "c");
    EXPECT_EQ(keys_mru_first(c), (std::vector<int>{3, 2, 1}));
    ASSERT_NE(c.get(1), nullptr); // 1 becomes most recent: order 1 3 2
    c.put(4, "d");                // evicts 2
    EXPECT_EQ(keys_mru_first(c), (std::vector<int>{4, 1, 3}));
    ASSERT_NE(c.peek(3), nullptr); // peek does not promote
    EXPECT_TRUE(c.contains(3));
    c.put(5, "e"); // evicts 3
    auto [p, inserted] = c.try_emplace(1, "ignored");
    EXPECT_FALSE(inserted); // present: promoted, not replaced
    EXPECT_EQ(value_of(p), "a");
    c.put(6, "f"); // evicts 4
    c.put(5, "E"); // update in place: old value reported as replaced
    EXPECT_TRUE(c.erase(1));
    c.put(7, "g");
    c.put(8, "h"); // evicts 6
    EXPECT_EQ(keys_mru_first(c), (std::vector<int>{8, 7, 5}));
    c.clear();
    const std::vector<event> expected{
        {2, "b", eviction_reason::capacity}, {3, "c", eviction_reason::capacity},
        {4, "d", eviction_reason::capacity}, {5, "e", eviction_reason::replaced},
        {1, "a", eviction_reason::erased},   {6, "f", eviction_reason::capacity},
        {5, "E", eviction_reason::cleared},  {7, "g", eviction_reason::cleared},
        {8, "h", eviction_reason::cleared},
    };
    EXPECT_EQ(log, expected);
    EXPECT_EQ(c.size(), 0u);
    EXPECT_EQ(c.bytes(), 0u);
}

TEST(LruCache, ByteAccountingWithASizeFunction) {
    std::vector<event> log;
    string_cache c(recording(log, {.max_bytes = 20, .size_of = length_charge}));
    c.put(1, std::string(5, 'a'));
    c.put(2, std::string(5, 'b'));
    c.put(3, std::string(5, 'c'));
    EXPECT_EQ(c.bytes(), 15u);
    c.put(4, std::string(8, 'd')); // 23 > 20: evicts 1 (bytes)
    EXPECT_EQ(c.bytes(), 18u);
    EXPECT_EQ(c.size(), 3u);
    c.put(2, std::string(1, 'B')); // update shrinks the charge: 14
    EXPECT_EQ(c.bytes(), 14u);
    c.put(3, std::string(12, 'C')); // update grows to 1 + 12 + 8 = 21: evicts 4, the LRU
    EXPECT_EQ(c.bytes(), 13u);
    EXPECT_EQ(keys_mru_first(c), (std::vector<int>{3, 2}));
    c.put(5, std::string(20, 'e')); // exactly the limit: everything else goes
    EXPECT_EQ(c.bytes(), 20u);
    EXPECT_EQ(c.size(), 1u);
    c.put(6, ""); // a zero charge fits beside it
    EXPECT_EQ(c.size(), 2u);
    const std::vector<event> expected{
        {1, "aaaaa", eviction_reason::bytes},    {2, "bbbbb", eviction_reason::replaced},
        {3, "ccccc", eviction_reason::replaced}, {4, "dddddddd", eviction_reason::bytes},
        {2, "B", eviction_reason::bytes},        {3, "CCCCCCCCCCCC", eviction_reason::bytes},
    };
    EXPECT_EQ(log, expected);
    EXPECT_EQ(c.stats().removals(eviction_reason::bytes), 4u);
    EXPECT_EQ(c.stats().updates, 2u);
}

TEST(LruCache, EntryLimitAndByteLimitReasons) {
    std::vector<event> log;
    string_cache c(recording(log, {.max_entries = 2, .max_bytes = 10, .size_of = length_charge}));
    c.put(1, "aaaa");
    c.put(2, "bbbb");
    c.put(3, "c");        // entry limit: 1 goes (capacity)
    c.put(4, "dddddd");   // entry limit first (2 goes, capacity), then bytes already fit: 1 + 6
    c.put(5, "eeee");     // entries: 3 goes (capacity) -> 6 + 4 = 10 fits
    c.put(6, "f");        // entries: 4 goes (capacity)
    c.put(7, "gggggggg"); // entries: 5 goes (capacity), then bytes 1 + 8 fits
    c.put(8, "hh");       // entries: 6 goes; 8 + 2 = 10
    c.put(9, "i");        // entries: 7 goes
    EXPECT_EQ(log.size(), 7u);
    for (const event& e : log) EXPECT_EQ(e.reason, eviction_reason::capacity) << e;
    c.put(8, "hhhhhhhhh");  // update to 9: 9 + 1 = 10 fits
    c.put(8, "hhhhhhhhhh"); // update to 10: 9 must go (bytes)
    ASSERT_EQ(log.size(), 10u);
    EXPECT_EQ(log[9], (event{9, "i", eviction_reason::bytes}));
    EXPECT_EQ(c.bytes(), 10u);
}

TEST(LruCache, OversizeEntriesAreRejectedWithoutLosingTheValue) {
    std::vector<event> log;
    string_cache c(recording(log, {.max_bytes = 10, .size_of = length_charge}));
    c.put(1, "keep");
    std::string big(11, 'x');
    EXPECT_FALSE(c.put(2, std::move(big)));
    EXPECT_EQ(big, std::string(11, 'x')); // not moved from
    auto [p, inserted] = c.insert_or_assign(2, std::move(big));
    EXPECT_EQ(p, nullptr);
    EXPECT_FALSE(inserted);
    EXPECT_EQ(big.size(), 11u);
    EXPECT_FALSE(c.contains(2));
    EXPECT_EQ(c.size(), 1u);
    EXPECT_TRUE(log.empty());

    // Replacing a present key by an oversize value removes the stale value.
    EXPECT_FALSE(c.put(1, std::string(11, 'y')));
    EXPECT_FALSE(c.contains(1));
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0], (event{1, "keep", eviction_reason::replaced}));

    auto [q, inserted2] = c.try_emplace(3, 12, 'z');
    EXPECT_EQ(q, nullptr);
    EXPECT_FALSE(inserted2);

    // get_or_compute returns the computed value even when it cannot be cached.
    int calls = 0;
    std::string& v = c.get_or_compute(4, [&] {
        ++calls;
        return std::string(15, 'w');
    });
    EXPECT_EQ(v, std::string(15, 'w'));
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(c.contains(4));
    EXPECT_EQ(c.stats().rejections, 5u);
    EXPECT_EQ(c.stats().insertions, 1u);
    EXPECT_EQ(c.size(), 0u);
    EXPECT_EQ(c.bytes(), 0u);
    c.put(5, "ok"); // the held value is released by this insertion (ASan checks no leak)
    EXPECT_EQ(c.size(), 1u);

    lru_cache<int, int> none({.max_entries = 0});
    EXPECT_FALSE(none.put(1, 1));
    EXPECT_EQ(none.get_or_compute(2, [] { return 7; }), 7);
    EXPECT_EQ(none.size(), 0u);
    EXPECT_EQ(none.stats().rejections, 2u);
}

TEST(LruCache, TtlWithAnInjectedClock) {
    fake_clock clk;
    std::vector<event> log;
    string_cache c(recording(log, {.ttl = 10s, .clock = clk.fn()}));
    ASSERT_TRUE(c.ttl().has_value());
    EXPECT_EQ(*c.ttl(), 10s);
    c.put(1, "a");
    clk.advance(5s);
    ASSERT_NE(c.get(1), nullptr); // reads do not refresh the expiry
    clk.advance(4s);
    c.put(2, "b");                 // t = 9: expires at 19
    clk.advance(1s);               // t = 10: 1 expires now
    EXPECT_EQ(c.peek(1), nullptr); // expired: invisible to peek, but not removed by it
    EXPECT_FALSE(c.contains(1));
    EXPECT_EQ(c.size(), 2u);
    EXPECT_EQ(keys_mru_first(c), (std::vector<int>{2}));
    EXPECT_EQ(c.get(1), nullptr); // removed by the lookup
    EXPECT_EQ(c.size(), 1u);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0], (event{1, "a", eviction_reason::expired}));
    EXPECT_EQ(c.stats().hits, 1u);
    EXPECT_EQ(c.stats().misses, 1u);

    c.put(3, "c"); // t = 10: expires at 20
    clk.advance(2s);
    c.put(2, "B");   // t = 12: the update refreshes 2 to 22
    clk.advance(7s); // t = 19
    EXPECT_EQ(c.purge_expired(), 0u);
    clk.advance(1s);                  // t = 20
    EXPECT_EQ(c.purge_expired(), 1u); // 3 only
    EXPECT_EQ(log.back(), (event{3, "c", eviction_reason::expired}));
    clk.advance(2s);
    EXPECT_FALSE(c.erase(2)); // expired at 22: erase reports absent, removes it as expired
    EXPECT_EQ(log.back(), (event{2, "B", eviction_reason::expired}));
    EXPECT_EQ(c.size(), 0u);

    // put/try_emplace/get_or_compute over an expired entry insert a fresh one.
    c.put(4, "d");
    clk.advance(10s);
    auto [p, inserted] = c.try_emplace(4, "D");
    EXPECT_TRUE(inserted);
    EXPECT_EQ(value_of(p), "D");
    clk.advance(10s);
    EXPECT_EQ(c.get_or_compute(4, [] { return std::string("DD"); }), "DD");
    EXPECT_EQ(c.stats().insertions, 6u);
}

TEST(LruCache, ExpiredEntriesAreEvictedBeforeLiveOnes) {
    fake_clock clk;
    std::vector<event> log;
    string_cache c(recording(log, {.max_entries = 2, .ttl = 10s, .clock = clk.fn()}));
    c.put(1, "x"); // expires at 10
    clk.advance(5s);
    c.put(2, "y");                // expires at 15
    ASSERT_NE(c.get(1), nullptr); // 1 most recent, 2 least recent
    clk.advance(6s);              // t = 11: 1 expired, 2 alive
    c.put(3, "z");                // room: the expired 1 goes, not the LRU 2
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0], (event{1, "x", eviction_reason::expired}));
    EXPECT_TRUE(c.contains(2));
    c.put(4, "w"); // nothing expired: the LRU 2 goes
    EXPECT_EQ(log.back(), (event{2, "y", eviction_reason::capacity}));
}

TEST(LruCache, GetOrComputeCallsOnlyOnAMiss) {
    string_cache c({.max_entries = 10});
    int calls = 0;
    auto make = [&](const int& k) {
        ++calls;
        return "v" + std::to_string(k);
    };
    EXPECT_EQ(c.get_or_compute(1, make), "v1");
    EXPECT_EQ(c.get_or_compute(1, make), "v1");
    EXPECT_EQ(c.get_or_compute(2, make), "v2");
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(c.stats().hits, 1u);
    EXPECT_EQ(c.stats().misses, 2u);
    EXPECT_EQ(c.stats().insertions, 2u);
    std::string& ref = c.get_or_compute(1, make);
    EXPECT_EQ(&ref, c.peek(1));
}

TEST(LruCache, GetOrComputeExceptionStoresNothing) {
    std::vector<event> log;
    string_cache c(recording(log, {.max_entries = 1}));
    c.put(1, "old");
    EXPECT_THROW(c.get_or_compute(2, []() -> std::string { throw std::runtime_error("load"); }),
                 std::runtime_error);
    EXPECT_FALSE(c.contains(2));
    EXPECT_TRUE(c.contains(1)); // nothing was evicted for it
    EXPECT_TRUE(log.empty());
    EXPECT_EQ(c.size(), 1u);
    EXPECT_EQ(c.stats().misses, 1u);
    EXPECT_EQ(c.stats().insertions, 1u);
    // A throwing size function: nothing stored either.
    string_cache d({.size_of = [](const int&, const std::string&) -> std::size_t {
        throw std::length_error("size");
    }});
    EXPECT_THROW(d.get_or_compute(1, [] { return std::string("x"); }), std::length_error);
    EXPECT_THROW(d.put(1, "x"), std::length_error);
    EXPECT_THROW(d.try_emplace(1, "x"), std::length_error);
    EXPECT_EQ(d.size(), 0u);
}

TEST(LruCache, RecursiveMemoization) {
    lru_cache<int, std::uint64_t> memo({.max_entries = 200});
    int calls = 0;
    std::function<std::uint64_t(int)> fib = [&](int n) -> std::uint64_t {
        return memo.get_or_compute(n, [&](const int& k) -> std::uint64_t {
            ++calls;
            return k < 2 ? static_cast<std::uint64_t>(k) : fib(k - 1) + fib(k - 2);
        });
    };
    EXPECT_EQ(fib(90), 2880067194370816120ull);
    EXPECT_EQ(calls, 91);
    EXPECT_EQ(memo.size(), 91u);
    // A computation that stores its own key: the stored value wins, nothing is duplicated.
    lru_cache<int, int> c;
    int& v = c.get_or_compute(7, [&] {
        c.put(7, 1);
        return 2;
    });
    EXPECT_EQ(v, 1);
    EXPECT_EQ(c.size(), 1u);
}

TEST(LruCache, StatsAreExact) {
    std::vector<event> log;
    string_cache c(recording(log, {.max_entries = 2}));
    c.put(1, "a");                                              // insertion 1
    c.put(2, "b");                                              // insertion 2
    (void)c.get(1);                                             // hit
    (void)c.get(3);                                             // miss
    c.put(3, "c");                                              // insertion 3, evicts 2 (capacity)
    c.put(3, "C");                                              // update
    (void)c.get_or_compute(2, [] { return std::string("b"); }); // miss, insertion 4, evicts 1
    (void)c.get_or_compute(2, [] { return std::string("x"); }); // hit
    c.erase(3);                                                 // erased
    c.shrink_to(0);                                             // shrunk: 2
    cache_stats expected;
    expected.hits = 2;
    expected.misses = 2;
    expected.insertions = 4;
    expected.updates = 1;
    expected.by_reason = {2, 0, 0, 1, 0, 1, 1};
    EXPECT_EQ(c.stats(), expected);
    EXPECT_EQ(c.stats().evictions(), 3u);
    EXPECT_EQ(c.stats().lookups(), 4u);
    EXPECT_DOUBLE_EQ(c.hit_rate(), 0.5);
    std::uint64_t removed = 0;
    for (std::uint64_t n : c.stats().by_reason) removed += n;
    EXPECT_EQ(c.size(), c.stats().insertions - (removed - c.stats().updates));
    EXPECT_EQ(log.size(), removed);
    cache_stats sum = c.stats();
    sum += c.stats();
    EXPECT_EQ(sum.hits, 4u);
    EXPECT_EQ(sum.removals(eviction_reason::capacity), 4u);
    c.reset_stats();
    EXPECT_EQ(c.stats(), cache_stats{});
    EXPECT_EQ(memkit::to_string(eviction_reason::shrunk), "shrunk");
    EXPECT_EQ(memkit::to_string(eviction_reason::replaced), "replaced");
}

TEST(LruCache, ShrinkToEvictsLeastRecentlyUsed) {
    std::vector<event> log;
    lru_cache<int, std::string> c(recording(log, {.size_of = length_charge}));
    for (int k = 0; k < 10; ++k) c.put(k, std::string(10, 'a'));
    (void)c.get(0);
    EXPECT_EQ(c.shrink_to(35), 70u);
    EXPECT_EQ(c.bytes(), 30u);
    EXPECT_EQ(keys_mru_first(c), (std::vector<int>{0, 9, 8}));
    for (const event& e : log) EXPECT_EQ(e.reason, eviction_reason::shrunk);
    EXPECT_EQ(c.shrink_to(100), 0u);
    // shrink_to is one-off: the cache may grow again.
    for (int k = 10; k < 20; ++k) c.put(k, std::string(10, 'b'));
    EXPECT_EQ(c.bytes(), 130u);
    EXPECT_EQ(c.shrink_to(0), 130u);
    EXPECT_TRUE(c.empty());
}

TEST(LruCache, OnPressureLowersTheLimitUntilTheLevelDrops) {
    std::vector<event> log;
    string_cache c(recording(log, {.max_bytes = 1000, .size_of = length_charge}));
    for (int k = 0; k < 10; ++k) c.put(k, std::string(100, 'a'));
    EXPECT_EQ(c.on_pressure(pressure_level::medium), 0u);
    EXPECT_EQ(c.byte_limit(), 1000u);
    EXPECT_EQ(c.on_pressure(pressure_level::high), 500u);
    EXPECT_EQ(c.pressure(), pressure_level::high);
    EXPECT_EQ(c.byte_limit(), 500u);
    EXPECT_EQ(c.bytes(), 500u);
    EXPECT_EQ(keys_mru_first(c), (std::vector<int>{9, 8, 7, 6, 5}));
    ASSERT_EQ(log.size(), 5u);
    for (const event& e : log) EXPECT_EQ(e.reason, eviction_reason::shrunk);
    // While high, inserts respect 500 bytes; an entry above it is rejected.
    c.put(10, std::string(100, 'b'));
    EXPECT_EQ(c.bytes(), 500u);
    EXPECT_FALSE(c.put(11, std::string(600, 'c')));
    EXPECT_EQ(c.on_pressure(pressure_level::critical), 300u); // 25 % of 1000
    EXPECT_EQ(c.byte_limit(), 250u);
    EXPECT_EQ(c.bytes(), 200u);
    EXPECT_EQ(c.on_pressure(pressure_level::low), 0u);
    EXPECT_EQ(c.byte_limit(), 1000u);
    for (int k = 20; k < 40; ++k) c.put(k, std::string(100, 'd'));
    EXPECT_EQ(c.bytes(), 1000u);
    // set_max_bytes under pressure keeps the fraction.
    c.on_pressure(pressure_level::high);
    c.set_max_bytes(400);
    EXPECT_EQ(c.byte_limit(), 200u);
    EXPECT_EQ(c.bytes(), 200u);
    c.on_pressure(pressure_level::low);
    EXPECT_EQ(c.byte_limit(), 400u);
}

TEST(LruCache, OnPressureWithACustomPolicyAndUnlimitedBytes) {
    string_cache c({.size_of = length_charge,
                    .pressure = {.low = 1.0, .medium = 0.8, .high = 0.4, .critical = 0.0}});
    for (int k = 0; k < 10; ++k) c.put(k, std::string(100, 'a'));
    EXPECT_EQ(c.on_pressure(pressure_level::medium), 200u); // 80 % of the 1000 bytes held
    EXPECT_EQ(c.byte_limit(), 800u);
    EXPECT_EQ(c.on_pressure(pressure_level::high), 400u); // 40 % of the same 1000
    EXPECT_EQ(c.byte_limit(), 400u);
    EXPECT_EQ(c.on_pressure(pressure_level::critical), 400u);
    EXPECT_EQ(c.byte_limit(), 0u);
    EXPECT_TRUE(c.empty());
    EXPECT_FALSE(c.put(1, "x")); // nothing fits while critical
    EXPECT_EQ(c.on_pressure(pressure_level::low), 0u);
    EXPECT_EQ(c.byte_limit(), string_cache::unlimited);
    EXPECT_TRUE(c.put(1, "x"));
}

TEST(LruCache, SetLimitsEvictAtOnce) {
    std::vector<event> log;
    string_cache c(recording(log, {.size_of = length_charge}));
    for (int k = 0; k < 10; ++k) c.put(k, "abc");
    c.set_max_entries(4);
    EXPECT_EQ(c.size(), 4u);
    EXPECT_EQ(c.max_entries(), 4u);
    c.set_max_bytes(6);
    EXPECT_EQ(c.size(), 2u);
    EXPECT_EQ(c.max_bytes(), 6u);
    EXPECT_EQ(keys_mru_first(c), (std::vector<int>{9, 8}));
    ASSERT_EQ(log.size(), 8u);
    for (const event& e : log) EXPECT_EQ(e.reason, eviction_reason::shrunk);
    c.set_max_entries(0);
    EXPECT_TRUE(c.empty());
    EXPECT_FALSE(c.put(1, "a"));
}

TEST(LruCache, InvalidOptionsAreRejected) {
    EXPECT_THROW(string_cache({.ttl = -1s}), std::invalid_argument);
    EXPECT_THROW(string_cache({.ttl = -1ns}), std::invalid_argument);
    EXPECT_FALSE(string_cache({.ttl = 0s}).ttl().has_value()); // zero: no expiry
    EXPECT_THROW(string_cache({.pressure = {.high = 1.5}}), std::invalid_argument);
    EXPECT_THROW(string_cache({.pressure = {.high = 0.2, .critical = 0.5}}), std::invalid_argument);
    EXPECT_THROW(string_cache({.pressure = {.critical = -0.1}}), std::invalid_argument);
    EXPECT_NO_THROW(string_cache({.ttl = 1ns}));
}

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

TEST(LruCache, HeterogeneousLookup) {
    lru_cache<std::string, int, string_hash, std::equal_to<>> c;
    c.put("alpha", 1);
    c.put(std::string("beta"), 2);
    const std::string_view a = "alpha";
    ASSERT_NE(c.get(a), nullptr);
    EXPECT_EQ(value_of(c.get(a)), 1);
    EXPECT_EQ(value_of(c.peek("beta")), 2);
    EXPECT_TRUE(c.contains(std::string_view("beta")));
    EXPECT_FALSE(c.contains("gamma"));
    EXPECT_TRUE(c.erase(a));
    EXPECT_FALSE(c.contains("alpha"));
    EXPECT_EQ(c.size(), 1u);
}

// Every node and index block goes through the allocator; a hit allocates nothing, and a full
// cache that evicts on each insertion reuses the evicted node.
TEST(LruCache, AllocatorIsUsedAndHitsDoNotAllocate) {
    using alloc = memkit::test::failing_allocator<std::pair<const int, int>>;
    alloc a;
    {
        lru_cache<int, int, std::hash<int>, std::equal_to<int>, alloc> c({.max_entries = 100}, {},
                                                                         {}, a);
        for (int k = 0; k < 100; ++k) c.put(k, k);
        EXPECT_GT(a.state().live_blocks, 100);
        const long before = a.state().allocations;
        long sum = 0;
        for (int i = 0; i < 10000; ++i) {
            const int* v = c.get(i % 100);
            sum += v != nullptr ? *v : -1000000;
        }
        EXPECT_EQ(sum, 495000);
        EXPECT_EQ(a.state().allocations, before);
        for (int k = 100; k < 1100; ++k) c.put(k, k); // evicts one per put
        EXPECT_EQ(a.state().allocations, before + 1); // one spare node, then reuse
        EXPECT_EQ(c.size(), 100u);
        EXPECT_EQ(c.get_allocator(), a);
        c.clear();
        EXPECT_EQ(a.state().live_blocks, 0); // clear gives the index and the spare back
        c.put(1, 1);
    }
    EXPECT_EQ(a.state().live_blocks, 0);
}

// Strong guarantee: a failing allocation or a throwing value copy leaves the cache unchanged.
TEST(LruCache, FailuresLeaveTheCacheUnchanged) {
    using memkit::test::counted;
    using memkit::test::counted_state;
    using alloc = memkit::test::failing_allocator<std::pair<const int, counted>>;
    memkit::test::live_object_guard guard;
    alloc a;
    using cache_t = lru_cache<int, counted, std::hash<int>, std::equal_to<int>, alloc>;
    // 12 entries fill an index of 16 slots to its load limit: the next insertion grows it.
    cache_t c({.max_entries = 12}, {}, {}, a);
    for (int k = 0; k < 12; ++k) c.put(k, counted(k * 10));
    auto contents = [&] {
        std::vector<std::pair<int, int>> v;
        c.for_each([&](const int& k, const counted& x) { v.emplace_back(k, x.value()); });
        return v;
    };
    const counted value(999);
    auto expect_strong = [&](auto&& op) {
        const auto before = contents();
        const cache_stats stats = c.stats();
        return memkit::test::for_each_failure_point(op, [&] {
            a.state().fail_at(0);
            EXPECT_EQ(contents(), before);
            EXPECT_EQ(c.size(), 12u);
            EXPECT_EQ(c.bytes(), 12 * (sizeof(int) + sizeof(counted)));
            EXPECT_EQ(c.stats(), stats);
        });
    };
    // A new key in a full cache: the index growth fails, then the node allocation.
    EXPECT_EQ(expect_strong([&](long k) {
                  a.state().fail_at(k);
                  c.put(100, value);
                  a.state().fail_at(0);
              }),
              2);
    EXPECT_TRUE(c.contains(100));
    EXPECT_FALSE(c.contains(0));
    // The copy of the value into a new node.
    EXPECT_EQ(expect_strong([&](long k) {
                  counted_state::fail_at(k);
                  c.try_emplace(101, value);
              }),
              1);
    EXPECT_TRUE(c.contains(101));
    // The copy assignment of an update (no callback: assigned in place).
    EXPECT_EQ(expect_strong([&](long k) {
                  counted_state::fail_at(k);
                  c.put(5, value);
              }),
              1);
    EXPECT_EQ(value_of(c.peek(5)).value(), 999);
    c.clear();
    EXPECT_EQ(a.state().live_blocks, 0);
}

TEST(LruCache, MoveConstructionAndAssignmentKeepOrder) {
    std::vector<event> log;
    string_cache a(recording(log, {.max_entries = 3}));
    a.put(1, "a");
    a.put(2, "b");
    a.put(3, "c");
    (void)a.get(1);
    string_cache b(std::move(a));
    EXPECT_TRUE(a.empty()); // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(keys_mru_first(b), (std::vector<int>{1, 3, 2}));
    b.put(4, "d");
    EXPECT_EQ(log.back(), (event{2, "b", eviction_reason::capacity}));
    string_cache c;
    c.put(9, "z");
    c = std::move(b);
    EXPECT_EQ(keys_mru_first(c), (std::vector<int>{4, 1, 3}));
    EXPECT_EQ(c.max_entries(), 3u);
    EXPECT_EQ(c.stats().insertions, 4u);
    EXPECT_EQ(log.size(), 1u); // assignment drops 9 without a callback
}

TEST(LruCache, MoveAssignmentAcrossUnequalAllocators) {
    using memkit::test::failing_allocator;
    using alloc = failing_allocator<std::pair<const int, std::string>>; // no propagation
    using cache_t = lru_cache<int, std::string, std::hash<int>, std::equal_to<int>, alloc>;
    fake_clock clk;
    alloc a1, a2;
    {
        cache_t x({.max_entries = 4, .ttl = 10s, .clock = clk.fn()}, {}, {}, a1);
        cache_t y({}, {}, {}, a2);
        x.put(1, "a");
        clk.advance(3s);
        x.put(2, "b");
        x.put(3, "c");
        (void)x.get(1);
        y = std::move(x);
        EXPECT_EQ(a1.state().live_blocks, 0); // every node was re-made with a2
        EXPECT_GT(a2.state().live_blocks, 3);
        EXPECT_EQ(y.get_allocator(), a2);
        std::vector<int> keys;
        y.for_each([&](const int& k, const std::string&) { keys.push_back(k); });
        EXPECT_EQ(keys, (std::vector<int>{1, 3, 2}));
        clk.advance(7s); // 1 (written at 0) expires; 2 and 3 (at 3) do not
        EXPECT_EQ(y.purge_expired(), 1u);
        EXPECT_EQ(y.size(), 2u);
        clk.advance(3s);
        EXPECT_EQ(y.purge_expired(), 2u);

        using prop = failing_allocator<std::pair<const int, std::string>, false, true, false>;
        using cache_p = lru_cache<int, std::string, std::hash<int>, std::equal_to<int>, prop>;
        prop p1, p2;
        cache_p u({}, {}, {}, p1), v({}, {}, {}, p2);
        u.put(1, "a");
        const long blocks = p1.state().live_blocks;
        v = std::move(u);
        EXPECT_EQ(v.get_allocator(), p1); // propagated: the nodes are taken, not copied
        EXPECT_EQ(p1.state().live_blocks, blocks);
        EXPECT_EQ(value_of(v.get(1)), "a");
    }
    EXPECT_EQ(a1.state().live_blocks, 0);
    EXPECT_EQ(a2.state().live_blocks, 0);
}

// A memory resource that counts what it hands out.
class counting_resource : public std::pmr::memory_resource {
public:
    std::size_t live = 0, allocations = 0;

private:
    void* do_allocate(std::size_t n, std::size_t al) override {
        ++allocations;
        live += n;
        return std::pmr::new_delete_resource()->allocate(n, al);
    }
    void do_deallocate(void* p, std::size_t n, std::size_t al) override {
        live -= n;
        std::pmr::new_delete_resource()->deallocate(p, n, al);
    }
    bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
        return this == &o;
    }
};

TEST(LruCache, PmrAliasTakesNodesFromTheResource) {
    counting_resource r;
    {
        memkit::pmr::lru_cache<int, int> c({.max_entries = 50}, {}, {}, &r);
        for (int k = 0; k < 200; ++k) c.put(k, k);
        EXPECT_GT(r.allocations, 50u);
        EXPECT_GT(r.live, 50 * 2 * sizeof(int));
        EXPECT_EQ(value_of(c.get(199)), 199);
    }
    EXPECT_EQ(r.live, 0u);
}

// A hash that sends keys to a handful of values stresses probing, Robin Hood displacement and
// backward-shift deletion.
struct bad_hash {
    std::size_t operator()(int k) const noexcept { return static_cast<std::size_t>(k % 5); }
};

TEST(LruCache, IndexStaysConsistentUnderCollisionsAndGrowth) {
    lru_cache<int, int, bad_hash> c;
    std::unordered_map<int, int> ref;
    std::mt19937_64 rng(7);
    for (int i = 0; i < 20000; ++i) {
        const int k = static_cast<int>(rng() % 600);
        if (rng() % 3 == 0) {
            EXPECT_EQ(c.erase(k), ref.erase(k) == 1);
        } else {
            c.put(k, i);
            ref[k] = i;
        }
    }
    EXPECT_EQ(c.size(), ref.size());
    for (int k = 0; k < 600; ++k) {
        const int* v = c.peek(k);
        auto it = ref.find(k);
        ASSERT_EQ(v != nullptr, it != ref.end()) << k;
        if (v != nullptr) {
            EXPECT_EQ(*v, it->second);
        }
    }
    lru_cache<int, int> big;
    big.reserve(100000);
    for (int k = 0; k < 100000; ++k) big.put(k, -k);
    for (int k = 0; k < 100000; ++k) ASSERT_EQ(value_of(big.peek(k)), -k);
    EXPECT_EQ(big.shrink_to(8 * 10), (100000 - 10) * 8u); // compacts the index too
    EXPECT_EQ(big.size(), 10u);
    for (int k = 99990; k < 100000; ++k) EXPECT_EQ(value_of(big.peek(k)), -k);
}

// ---- differential test against a reference model ----------------------------------------

// The usual LRU written plainly: a list in recency order and a map into it, with the same rules
// as lru_cache (expired entries first in write order, then least recently used).
class reference_lru {
public:
    struct entry {
        int key;
        std::string value;
        std::size_t charge;
        std::int64_t expires;
        std::uint64_t written; // write sequence
    };

    reference_lru(std::size_t max_entries, std::size_t max_bytes, std::int64_t ttl,
                  const fake_clock& clk, std::vector<event>& log)
        : max_entries_(max_entries), byte_limit_(max_bytes), ttl_(ttl), clk_(clk), log_(log) {}

    const std::string* get(int k) {
        auto it = find_live(k);
        if (it == map_.end()) {
            ++stats.misses;
            return nullptr;
        }
        order_.splice(order_.begin(), order_, it->second);
        ++stats.hits;
        return &it->second->value;
    }
    const std::string* peek(int k) const {
        auto it = map_.find(k);
        if (it == map_.end() || expired(*it->second)) return nullptr;
        return &it->second->value;
    }
    bool put(int k, const std::string& v) {
        auto it = find_live(k);
        const std::size_t c = v.size();
        if (it != map_.end()) {
            if (!fits(c)) {
                remove(it->second, eviction_reason::replaced);
                ++stats.rejections;
                return false;
            }
            entry& e = *it->second;
            std::string old = e.value;
            e.value = v;
            bytes_ = bytes_ - e.charge + c;
            e.charge = c;
            order_.splice(order_.begin(), order_, it->second);
            e.expires = clk_.ns + ttl_;
            e.written = ++seq_;
            ++stats.updates;
            ++stats.by_reason[static_cast<std::size_t>(eviction_reason::replaced)];
            log_.push_back({k, old, eviction_reason::replaced});
            evict_until(max_entries_, byte_limit_, false);
            return true;
        }
        if (!fits(c)) {
            ++stats.rejections;
            return false;
        }
        insert(k, v, c);
        return true;
    }
    // try_emplace and get_or_compute: {value or nullptr, inserted}
    std::pair<const std::string*, bool> emplace(int k, const std::string& v, bool lookup) {
        auto it = find_live(k);
        if (it != map_.end()) {
            order_.splice(order_.begin(), order_, it->second);
            if (lookup) ++stats.hits;
            return {&it->second->value, false};
        }
        if (lookup) ++stats.misses;
        if (!fits(v.size())) {
            ++stats.rejections;
            return {nullptr, false};
        }
        insert(k, v, v.size());
        return {&order_.front().value, true};
    }
    bool erase(int k) {
        auto it = find_live(k);
        if (it == map_.end()) return false;
        remove(it->second, eviction_reason::erased);
        return true;
    }
    std::size_t shrink_to(std::size_t target) {
        const std::size_t before = bytes_;
        evict_until(max_entries_, target, true);
        return before - bytes_;
    }
    std::size_t purge_expired() {
        std::size_t n = 0;
        for (auto it = oldest(); it != order_.end() && expired(*it); it = oldest()) {
            remove(it, eviction_reason::expired);
            ++n;
        }
        return n;
    }
    std::vector<int> keys() const {
        std::vector<int> v;
        for (const entry& e : order_)
            if (!expired(e)) v.push_back(e.key);
        return v;
    }
    std::size_t size() const { return order_.size(); }
    std::size_t bytes() const { return bytes_; }

    cache_stats stats;

private:
    using iter = std::list<entry>::iterator;

    bool expired(const entry& e) const { return ttl_ != 0 && e.expires <= clk_.ns; }
    bool fits(std::size_t c) const { return max_entries_ != 0 && c <= byte_limit_; }

    std::unordered_map<int, iter>::iterator find_live(int k) {
        auto it = map_.find(k);
        if (it != map_.end() && expired(*it->second)) {
            remove(it->second, eviction_reason::expired);
            return map_.end();
        }
        return it;
    }
    iter oldest() {
        iter best = order_.end();
        for (iter it = order_.begin(); it != order_.end(); ++it)
            if (best == order_.end() || it->written < best->written) best = it;
        return best;
    }
    void insert(int k, const std::string& v, std::size_t c) {
        evict_until(max_entries_ - 1, byte_limit_ - c, false);
        order_.push_front({k, v, c, clk_.ns + ttl_, ++seq_});
        map_[k] = order_.begin();
        bytes_ += c;
        ++stats.insertions;
    }
    void evict_until(std::size_t n, std::size_t b, bool shrink) {
        if (order_.size() <= n && bytes_ <= b) return;
        if (ttl_ != 0) {
            for (iter it = oldest();
                 (order_.size() > n || bytes_ > b) && it != order_.end() && expired(*it);
                 it = oldest())
                remove(it, eviction_reason::expired);
        }
        while (order_.size() > n || bytes_ > b) {
            const eviction_reason r = shrink              ? eviction_reason::shrunk
                                      : order_.size() > n ? eviction_reason::capacity
                                                          : eviction_reason::bytes;
            remove(std::prev(order_.end()), r);
        }
    }
    void remove(iter it, eviction_reason r) {
        log_.push_back({it->key, it->value, r});
        ++stats.by_reason[static_cast<std::size_t>(r)];
        bytes_ -= it->charge;
        map_.erase(it->key);
        order_.erase(it);
    }

    std::list<entry> order_;
    std::unordered_map<int, iter> map_;
    std::size_t max_entries_, byte_limit_;
    std::size_t bytes_ = 0;
    std::int64_t ttl_;
    std::uint64_t seq_ = 0;
    const fake_clock& clk_;
    std::vector<event>& log_;
};

template <class Cache>
std::vector<int> keys_of(const Cache& c) {
    std::vector<int> keys;
    c.for_each([&](const int& k, const std::string&) { keys.push_back(k); });
    return keys;
}

template <class Hash>
void run_differential(std::uint64_t seed, bool with_ttl) {
    constexpr std::size_t max_entries = 24, max_bytes = 400;
    constexpr int ops = 100000;
    fake_clock clk;
    std::vector<event> log_cache, log_model;
    const auto ttl = std::chrono::duration_cast<clock_type::duration>(4ms);
    typename lru_cache<int, std::string, Hash>::options o{.max_entries = max_entries,
                                                          .max_bytes = max_bytes,
                                                          .clock = clk.fn(),
                                                          .size_of = length_charge};
    if (with_ttl) {
        o.ttl = ttl;
    }
    o.on_evict = [&](const int& k, std::string&& v, eviction_reason r) {
        log_cache.push_back({k, std::move(v), r});
    };
    lru_cache<int, std::string, Hash> c(std::move(o));
    reference_lru m(max_entries, max_bytes, with_ttl ? ttl.count() : 0, clk, log_model);

    std::mt19937_64 rng(seed);
    auto value = [&](int k) {
        // Mostly small, sometimes large, rarely above the byte limit.
        const std::uint64_t r = rng() % 100;
        const std::size_t len = r < 85 ? 1 + rng() % 30 : r < 99 ? 30 + rng() % 120 : 401;
        return std::string(len, static_cast<char>('a' + k % 26));
    };
    for (int i = 0; i < ops; ++i) {
        const int k = static_cast<int>(rng() % 64);
        const std::uint64_t op = rng() % 100;
        if (op < 35) {
            const std::string* a = c.get(k);
            const std::string* b = m.get(k);
            ASSERT_EQ(a != nullptr, b != nullptr) << "get " << k << " at op " << i;
            if (a != nullptr) {
                ASSERT_EQ(*a, *b);
            }
        } else if (op < 45) {
            const std::string* a = c.peek(k);
            const std::string* b = m.peek(k);
            ASSERT_EQ(a != nullptr, b != nullptr) << "peek " << k << " at op " << i;
            if (a != nullptr) {
                ASSERT_EQ(*a, *b);
            }
            ASSERT_EQ(c.contains(k), b != nullptr);
        } else if (op < 70) {
            const std::string v = value(k);
            ASSERT_EQ(c.put(k, v), m.put(k, v)) << "put " << k << " at op " << i;
        } else if (op < 78) {
            const std::string v = value(k);
            auto [a, ia] = c.try_emplace(k, v);
            auto [b, ib] = m.emplace(k, v, false);
            ASSERT_EQ(ia, ib) << "try_emplace " << k << " at op " << i;
            ASSERT_EQ(a != nullptr, b != nullptr);
            if (a != nullptr) {
                ASSERT_EQ(*a, *b);
            }
        } else if (op < 88) {
            const std::string v = value(k);
            int calls = 0;
            const std::string a = c.get_or_compute(k, [&] {
                ++calls;
                return v;
            });
            const bool had = m.peek(k) != nullptr;
            auto [b, ib] = m.emplace(k, v, true);
            ASSERT_EQ(calls, had ? 0 : 1) << "get_or_compute " << k << " at op " << i;
            ASSERT_EQ(a, b != nullptr ? *b : v);
        } else if (op < 95) {
            ASSERT_EQ(c.erase(k), m.erase(k)) << "erase " << k << " at op " << i;
        } else if (op < 96) {
            const std::size_t target = rng() % max_bytes;
            ASSERT_EQ(c.shrink_to(target), m.shrink_to(target)) << "shrink_to at op " << i;
        } else if (op < 97 && with_ttl) {
            ASSERT_EQ(c.purge_expired(), m.purge_expired()) << "purge at op " << i;
        } else {
            clk.advance(std::chrono::milliseconds(rng() % 8));
        }
        ASSERT_EQ(c.size(), m.size()) << "op " << i;
        ASSERT_EQ(c.bytes(), m.bytes()) << "op " << i;
        ASSERT_LE(c.size(), max_entries);
        ASSERT_LE(c.bytes(), max_bytes);
        if (i % 1000 == 0) {
            ASSERT_EQ(keys_of(c), m.keys()) << "op " << i;
            ASSERT_EQ(log_cache, log_model) << "op " << i;
        }
    }
    EXPECT_EQ(keys_of(c), m.keys());
    EXPECT_EQ(log_cache, log_model);
    EXPECT_EQ(c.stats(), m.stats);
    EXPECT_GT(c.stats().hits, 1000u);
    EXPECT_GT(c.stats().removals(eviction_reason::capacity), 100u);
    EXPECT_GT(c.stats().removals(eviction_reason::bytes), 100u);
    EXPECT_GT(c.stats().rejections, 10u);
    if (with_ttl) {
        EXPECT_GT(c.stats().removals(eviction_reason::expired), 100u);
    }
}

TEST(LruCacheDifferential, MatchesTheReferenceModel) {
    run_differential<std::hash<int>>(0x6c7275, false);
}
TEST(LruCacheDifferential, MatchesTheReferenceModelWithTtl) {
    run_differential<std::hash<int>>(0x74746c, true);
}
TEST(LruCacheDifferential, MatchesTheReferenceModelWithCollidingHashes) {
    run_differential<bad_hash>(0x626164, true);
}

} // namespace
