// sharded_lru_cache: the single-threaded contract, then real threads (this file also runs under
// ThreadSanitizer).
#include "memkit/cache/sharded_lru_cache.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "memkit/heap/pressure_level.hpp"
#include "support/test_support.hpp"

namespace {

constexpr int scale = memkit::test::stress_scale;

using memkit::cache_stats;
using memkit::eviction_reason;
using memkit::pressure_level;
using memkit::sharded_lru_cache;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

using cache_t = sharded_lru_cache<int, std::string>;

std::size_t length_charge(const int&, const std::string& v) { return v.size(); }

TEST(ShardedLruCache, BasicOperationsReturnCopies) {
    cache_t c({.max_entries = 1000}, 4);
    EXPECT_EQ(c.shard_count(), 4u);
    EXPECT_FALSE(c.get(1).has_value());
    EXPECT_TRUE(c.put(1, "one"));
    EXPECT_TRUE(c.put(2, std::string("two")));
    EXPECT_EQ(c.get(1), std::optional<std::string>("one"));
    EXPECT_EQ(c.peek(2), std::optional<std::string>("two"));
    EXPECT_TRUE(c.contains(2));
    EXPECT_FALSE(c.contains(3));
    EXPECT_TRUE(c.try_emplace(3, 3, 'x'));
    EXPECT_FALSE(c.try_emplace(3, "ignored"));
    EXPECT_EQ(*c.get(3), "xxx");
    bool seen = false;
    EXPECT_TRUE(c.visit(3, [&](std::string& v) {
        v += "!"; // in place, under the shard's lock
        seen = true;
    }));
    EXPECT_TRUE(seen);
    EXPECT_EQ(*c.peek(3), "xxx!");
    EXPECT_FALSE(c.visit(4, [](std::string&) { FAIL(); }));
    EXPECT_TRUE(c.erase(1));
    EXPECT_FALSE(c.erase(1));
    EXPECT_EQ(c.size(), 2u);
    EXPECT_EQ(c.bytes(), 2 * (sizeof(int) + sizeof(std::string)));
    const cache_stats s = c.stats();
    EXPECT_EQ(s.hits, 3u);   // get 1, get 3, visit 3
    EXPECT_EQ(s.misses, 2u); // get 1 before the put, visit 4
    EXPECT_EQ(s.insertions, 3u);
    EXPECT_EQ(s.removals(eviction_reason::erased), 1u);
    c.clear();
    EXPECT_EQ(c.size(), 0u);
    EXPECT_EQ(c.stats().removals(eviction_reason::cleared), 2u);
    c.reset_stats();
    EXPECT_EQ(c.stats(), cache_stats{});
}

TEST(ShardedLruCache, ShardCountValidationAndDefault) {
    EXPECT_THROW(cache_t({}, 3), std::invalid_argument);
    EXPECT_THROW(cache_t({}, 8192), std::invalid_argument);
    EXPECT_THROW(cache_t({.ttl = -1s}, 4), std::invalid_argument);
    EXPECT_EQ(cache_t({}, 1).shard_count(), 1u);
    const std::size_t d = cache_t::default_shard_count(cache_t::unlimited);
    EXPECT_GE(d, 4u);
    EXPECT_LE(d, 64u);
    EXPECT_TRUE(std::has_single_bit(d));
    EXPECT_EQ(cache_t(cache_t::options{}).shard_count(), d);
    // Small caches get fewer shards: at least 16 entries each.
    EXPECT_EQ(cache_t::default_shard_count(40), 2u);
    EXPECT_EQ(cache_t::default_shard_count(10), 1u);
    EXPECT_EQ(cache_t({.max_entries = 10}).shard_count(), 1u);
}

TEST(ShardedLruCache, LimitsAreDividedExactly) {
    cache_t c({.max_entries = 10, .max_bytes = 103, .size_of = length_charge}, 4);
    EXPECT_EQ(c.max_entries(), 10u);
    EXPECT_EQ(c.max_bytes(), 103u);
    EXPECT_EQ(c.byte_limit(), 103u); // 26 + 26 + 26 + 25
    for (int k = 0; k < 1000; ++k) c.put(k, "x");
    EXPECT_EQ(c.size(), 10u); // shares 3 + 3 + 2 + 2, each filled
    for (int k = 0; k < 1000; ++k) c.put(k, std::string(9, 'y'));
    EXPECT_EQ(c.size(), 8u); // bytes: 26 / 9 = 2 per shard... and 25 / 9 = 2
    EXPECT_EQ(c.bytes(), 72u);
    // An entry above its shard's share (26 bytes) is rejected even though max_bytes is 103.
    EXPECT_FALSE(c.put(5000, std::string(27, 'z')));
    EXPECT_TRUE(c.put(5000, std::string(25, 'z')));
    c.set_max_entries(4);
    EXPECT_LE(c.size(), 4u);
    c.set_max_bytes(40); // 10 per shard
    EXPECT_LE(c.bytes(), 40u);
    EXPECT_EQ(c.size(), 3u); // a 9-byte entry fits in each 10-byte share, the 25-byte one not
    EXPECT_EQ(c.max_bytes(), 40u);
    EXPECT_EQ(c.max_entries(), 4u);
}

TEST(ShardedLruCache, ShrinkToAndOnPressure) {
    cache_t c({.max_bytes = 1600, .size_of = length_charge}, 4);
    for (int k = 0; c.bytes() < 1600 && k < 100000; ++k) c.put(k, std::string(10, 'a'));
    EXPECT_EQ(c.bytes(), 1600u); // 40 entries of 10 bytes in each 400-byte shard
    EXPECT_EQ(c.on_pressure(pressure_level::high), 800u);
    EXPECT_EQ(c.pressure(), pressure_level::high);
    EXPECT_EQ(c.byte_limit(), 800u);
    EXPECT_EQ(c.bytes(), 800u);
    for (int k = 200000; k < 201000; ++k) c.put(k, std::string(10, 'b'));
    EXPECT_EQ(c.bytes(), 800u); // the lowered limit holds for insertions
    EXPECT_EQ(c.on_pressure(pressure_level::critical), 400u);
    EXPECT_EQ(c.on_pressure(pressure_level::low), 0u);
    EXPECT_EQ(c.byte_limit(), 1600u);
    EXPECT_EQ(c.shrink_to(100), 320u); // 25 bytes per shard: two of its ten entries stay
    EXPECT_EQ(c.bytes(), 80u);
    EXPECT_EQ(c.stats().removals(eviction_reason::shrunk), 152u);
}

TEST(ShardedLruCache, TtlWithAnInjectedClock) {
    std::atomic<std::int64_t> now{0};
    cache_t c({.ttl = 10s,
               .clock = [&] { return clock_type::time_point(clock_type::duration(now.load())); }},
              4);
    for (int k = 0; k < 100; ++k) c.put(k, "v");
    now += std::chrono::nanoseconds(5s).count();
    for (int k = 100; k < 150; ++k) c.put(k, "w");
    now += std::chrono::nanoseconds(5s).count();
    EXPECT_FALSE(c.get(0).has_value());
    EXPECT_EQ(c.purge_expired(), 99u);
    EXPECT_EQ(c.size(), 50u);
    EXPECT_EQ(c.stats().removals(eviction_reason::expired), 100u);
}

TEST(ShardedLruCache, TransparentLookup) {
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    sharded_lru_cache<std::string, int, string_hash, std::equal_to<>> c({}, 8);
    c.put("a", 1);
    EXPECT_EQ(c.get(std::string_view("a")), std::optional<int>(1));
    EXPECT_EQ(c.peek("a"), std::optional<int>(1));
    EXPECT_TRUE(c.contains(std::string_view("a")));
    int seen = 0;
    EXPECT_TRUE(c.visit("a", [&](int& v) { seen = v; }));
    EXPECT_EQ(seen, 1);
    EXPECT_TRUE(c.erase(std::string_view("a")));
}

TEST(ShardedLruCache, GetOrComputeStoresAndPropagatesErrors) {
    cache_t c({.max_entries = 64, .max_bytes = 400, .size_of = length_charge}, 4);
    int calls = 0;
    EXPECT_EQ(c.get_or_compute(1,
                               [&](const int& k) {
                                   ++calls;
                                   return std::to_string(k);
                               }),
              "1");
    EXPECT_EQ(c.get_or_compute(1,
                               [&] {
                                   ++calls;
                                   return std::string("other");
                               }),
              "1");
    EXPECT_EQ(calls, 1);
    EXPECT_THROW(c.get_or_compute(2, []() -> std::string { throw std::runtime_error("load"); }),
                 std::runtime_error);
    EXPECT_FALSE(c.contains(2));
    // Larger than a shard's 100 bytes: returned, not stored.
    EXPECT_EQ(c.get_or_compute(3, [] { return std::string(150, 'b'); }).size(), 150u);
    EXPECT_FALSE(c.contains(3));
    const cache_stats s = c.stats();
    EXPECT_EQ(s.hits, 1u);
    EXPECT_EQ(s.misses, 3u);
    EXPECT_EQ(s.insertions, 1u);
    EXPECT_EQ(s.rejections, 1u);
}

// While fn runs, its shard stays usable: fn computes outside the lock.
TEST(ShardedLruCache, ComputationDoesNotBlockTheShard) {
    cache_t c({}, 1); // one shard: every key shares the lock
    std::atomic<bool> started{false}, release{false};
    std::thread t([&] {
        EXPECT_EQ(c.get_or_compute(1,
                                   [&] {
                                       started = true;
                                       while (!release) std::this_thread::yield();
                                       return std::string("slow");
                                   }),
                  "slow");
    });
    while (!started) std::this_thread::yield();
    EXPECT_TRUE(c.put(2, "fast")); // would deadlock if fn held the shard's lock
    EXPECT_EQ(c.get(2), std::optional<std::string>("fast"));
    EXPECT_FALSE(c.contains(1));
    release = true;
    t.join();
    EXPECT_EQ(c.peek(1), std::optional<std::string>("slow"));
}

// Callers that miss on a key being computed wait for that computation: fn runs once.
TEST(ShardedLruCache, ConcurrentMissesComputeOnce) {
    cache_t c({}, 4);
    std::atomic<int> calls{0};
    std::atomic<bool> release{false};
    constexpr int threads = 8;
    std::vector<std::thread> pool;
    std::vector<std::string> got(threads);
    for (int i = 0; i < threads; ++i) {
        pool.emplace_back([&, i] {
            got[static_cast<std::size_t>(i)] = c.get_or_compute(42, [&] {
                ++calls;
                while (!release) std::this_thread::yield();
                return std::string("answer");
            });
        });
    }
    // Every caller has missed (and all but one wait) once the shard counted 8 misses.
    while (c.stats().misses < threads) std::this_thread::yield();
    release = true;
    for (std::thread& t : pool) t.join();
    EXPECT_EQ(calls.load(), 1);
    for (const std::string& s : got) EXPECT_EQ(s, "answer");
    EXPECT_EQ(c.stats().insertions, 1u);
    EXPECT_EQ(c.stats().misses, static_cast<std::uint64_t>(threads));
}

// An exception reaches only the caller whose fn threw; the waiters retry, one at a time.
TEST(ShardedLruCache, AFailedComputationIsRetriedByTheWaiters) {
    cache_t c({}, 2);
    std::atomic<bool> release{false};
    std::atomic<int> calls{0}, thrown{0}, got{0};
    auto flaky = [&]() -> std::string {
        const int n = ++calls;
        while (!release) std::this_thread::yield();
        if (n == 1) throw std::runtime_error("transient");
        return "loaded";
    };
    std::vector<std::thread> pool;
    for (int i = 0; i < 4; ++i) {
        pool.emplace_back([&] {
            try {
                if (c.get_or_compute(7, flaky) == "loaded") ++got;
            } catch (const std::runtime_error&) {
                ++thrown;
            }
        });
    }
    while (c.stats().misses < 4) std::this_thread::yield(); // one computes, three wait
    release = true;
    for (std::thread& t : pool) t.join();
    EXPECT_EQ(calls.load(), 2);
    EXPECT_EQ(thrown.load(), 1);
    EXPECT_EQ(got.load(), 3);
    EXPECT_EQ(c.peek(7), std::optional<std::string>("loaded"));
    EXPECT_EQ(c.stats().misses, 4u); // a retry is not a second lookup
    EXPECT_EQ(c.stats().hits, 0u);
}

TEST(ShardedLruCache, APersistentFailureIsTriedOncePerCaller) {
    cache_t c({}, 2);
    std::atomic<bool> release{false};
    std::atomic<int> calls{0}, thrown{0};
    auto fail = [&]() -> std::string {
        ++calls;
        while (!release) std::this_thread::yield();
        throw std::runtime_error("decode failed");
    };
    std::vector<std::thread> pool;
    for (int i = 0; i < 4; ++i) {
        pool.emplace_back([&] {
            try {
                (void)c.get_or_compute(7, fail);
            } catch (const std::runtime_error& e) {
                EXPECT_STREQ(e.what(), "decode failed");
                ++thrown;
            }
        });
    }
    while (c.stats().misses < 4) std::this_thread::yield();
    release = true;
    for (std::thread& t : pool) t.join();
    EXPECT_EQ(calls.load(), 4);
    EXPECT_EQ(thrown.load(), 4);
    EXPECT_FALSE(c.contains(7));
    EXPECT_EQ(c.size(), 0u);
}

// 8 threads of mixed operations; the bounds hold throughout and the counters add up.
TEST(ShardedLruCache, EightThreadStress) {
    constexpr int threads = 8;
    const int ops = 40000 / scale;
    constexpr std::size_t max_entries = 200, max_bytes = 4000;
    std::atomic<std::uint64_t> evicted_callbacks{0};
    cache_t c({.max_entries = max_entries,
               .max_bytes = max_bytes,
               .size_of = length_charge,
               .on_evict =
                   [&](const int& k, std::string&& v, eviction_reason) {
                       // Values are the key's digits repeated: check what leaves is intact.
                       EXPECT_EQ(v.substr(0, std::to_string(k).size()), std::to_string(k));
                       ++evicted_callbacks;
                   }},
              8);
    std::atomic<std::uint64_t> lookups{0}, computed{0};
    std::atomic<bool> stop_checker{false};
    auto value_for = [](int k, std::size_t reps) {
        std::string s;
        for (std::size_t i = 0; i < reps; ++i) s += std::to_string(k);
        return s;
    };
    auto check_value = [](int k, const std::string& v) {
        const std::string d = std::to_string(k);
        return !v.empty() && v.size() % d.size() == 0 && v.substr(0, d.size()) == d;
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) * 7919 + 1);
            std::uint64_t my_lookups = 0;
            for (int i = 0; i < ops; ++i) {
                const int k = static_cast<int>(rng() % 512);
                switch (rng() % 10) {
                case 0:
                case 1:
                case 2: {
                    ++my_lookups;
                    if (auto v = c.get(k)) {
                        EXPECT_TRUE(check_value(k, *v));
                    }
                    break;
                }
                case 3: {
                    ++my_lookups;
                    c.visit(k, [&](std::string& v) { EXPECT_TRUE(check_value(k, v)); });
                    break;
                }
                case 4:
                case 5: c.put(k, value_for(k, 1 + rng() % 8)); break;
                case 6: c.try_emplace(k, value_for(k, 2)); break;
                case 7: {
                    ++my_lookups;
                    const std::string v = c.get_or_compute(k, [&](const int& key) {
                        ++computed;
                        return value_for(key, 3);
                    });
                    EXPECT_TRUE(check_value(k, v));
                    break;
                }
                case 8: c.erase(k); break;
                default: {
                    if (auto v = c.peek(k)) {
                        EXPECT_TRUE(check_value(k, *v));
                    }
                    if (t == 0 && i % 1000 == 0) c.shrink_to(max_bytes / 2);
                    if (t == 1 && i % 1500 == 0) {
                        c.on_pressure(pressure_level::high);
                        c.on_pressure(pressure_level::low);
                    }
                    break;
                }
                }
            }
            lookups += my_lookups;
        });
    }
    std::thread checker([&] {
        while (!stop_checker) {
            EXPECT_LE(c.size(), max_entries);
            EXPECT_LE(c.bytes(), max_bytes);
            std::this_thread::yield();
        }
    });
    for (std::thread& th : pool) th.join();
    stop_checker = true;
    checker.join();

    const cache_stats s = c.stats();
    EXPECT_EQ(s.hits + s.misses, lookups.load());
    EXPECT_LE(c.size(), max_entries);
    EXPECT_LE(c.bytes(), max_bytes);
    std::uint64_t removed = 0;
    for (std::uint64_t n : s.by_reason) removed += n;
    EXPECT_EQ(c.size(), s.insertions - (removed - s.updates));
    EXPECT_EQ(evicted_callbacks.load(), removed);
    EXPECT_LE(computed.load(), s.misses);
    EXPECT_GT(s.hits, 0u);
    EXPECT_GT(s.removals(eviction_reason::capacity) + s.removals(eviction_reason::bytes), 0u);
    // Everything left is intact and reachable.
    std::size_t found = 0;
    for (int k = 0; k < 512; ++k) {
        if (auto v = c.peek(k)) {
            EXPECT_TRUE(check_value(k, *v));
            ++found;
        }
    }
    EXPECT_EQ(found, c.size());
}

} // namespace
