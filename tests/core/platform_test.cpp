// Tests of core/platform.hpp and core/barrier.hpp.
#include "memkit/core/platform.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <thread>
#include <type_traits>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/barrier.hpp"

namespace {

static_assert(memkit::is_pow2(memkit::cache_line_size));
static_assert(memkit::cache_line_size >= 32 && memkit::cache_line_size <= 256);
static_assert(std::is_same_v<decltype(memkit::debug_checks), const bool>);
static_assert(memkit::debug_checks == (MEMKIT_CHECKS != 0));

MEMKIT_NOINLINE int cold_path(int x) { return x * 3; }
MEMKIT_ALWAYS_INLINE int hot_path(int x) { return x + 1; }

TEST(Platform, PageSizeMatchesTheOs) {
    const std::size_t pg = memkit::page_size();
    EXPECT_TRUE(memkit::is_pow2(pg));
    EXPECT_GE(pg, 4096u);
    EXPECT_EQ(pg, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)));
    EXPECT_EQ(memkit::page_size(), pg); // cached, stable
    static_assert(noexcept(memkit::page_size()));
}

TEST(Platform, PageSizeIsConsistentAcrossThreads) {
    std::vector<std::size_t> seen(4);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < seen.size(); ++i)
        threads.emplace_back([&seen, i] { seen[i] = memkit::page_size(); });
    for (auto& t : threads) t.join();
    for (std::size_t s : seen) EXPECT_EQ(s, memkit::page_size());
}

TEST(Platform, BranchHintsKeepTheirValue) {
    int taken = 0;
    for (int i = 0; i < 10; ++i) {
        if (MEMKIT_LIKELY(i < 9)) ++taken;
        if (MEMKIT_UNLIKELY(i == 9)) taken += 100;
    }
    EXPECT_EQ(taken, 109);
    // The macros normalise any truthy value.
    EXPECT_TRUE(MEMKIT_LIKELY(42));
    EXPECT_FALSE(MEMKIT_UNLIKELY(nullptr != nullptr));
    EXPECT_EQ(cold_path(hot_path(1)), 6);
}

TEST(Platform, PrefetchOnValidPointers) {
    std::vector<int> v(1024, 1);
    long sum = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i + 16 < v.size()) memkit::prefetch_read(&v[i + 16]);
        memkit::prefetch_write(&v[i]);
        v[i] += 1;
        sum += v[i];
    }
    EXPECT_EQ(sum, 2048);
    static_assert(noexcept(memkit::prefetch_read(nullptr)));
    static_assert(noexcept(memkit::prefetch_write(nullptr)));
}

TEST(Barrier, FencesAndRelaxCompileAndRun) {
    int x = 1;
    memkit::compiler_barrier();
    x += 1;
    memkit::acquire_fence();
    memkit::release_fence();
    memkit::full_fence();
    for (int i = 0; i < 100; ++i) memkit::cpu_relax();
    EXPECT_EQ(x, 2);
    static_assert(noexcept(memkit::cpu_relax()));
    static_assert(noexcept(memkit::full_fence()));
}

// Spins with cpu_relax until `turn` reaches `value`, yielding now and then so the test stays
// fast on a machine with fewer free cores than threads.
void wait_for(const std::atomic<int>& turn, int value) {
    for (unsigned spins = 1; turn.load(std::memory_order_relaxed) != value; ++spins) {
        memkit::cpu_relax();
        if (spins % 64 == 0) std::this_thread::yield();
    }
}

// Two threads hand a token back and forth through relaxed atomics; release/acquire fences
// order the plain data written around each hand-off.
TEST(Barrier, TwoThreadSpinHandshake) {
    constexpr int rounds = 1000;
    std::atomic<int> turn{0}; // even: main thread's turn, odd: the other thread's
    long data = 0;            // plain, published by the fences
    std::thread pong([&] {
        for (int i = 0; i < rounds; ++i) {
            wait_for(turn, 2 * i + 1);
            memkit::acquire_fence();
            data += 2;
            memkit::release_fence();
            turn.store(2 * i + 2, std::memory_order_relaxed);
        }
    });
    for (int i = 0; i < rounds; ++i) {
        wait_for(turn, 2 * i);
        memkit::acquire_fence();
        data += 1;
        memkit::release_fence();
        turn.store(2 * i + 1, std::memory_order_relaxed);
    }
    wait_for(turn, 2 * rounds);
    memkit::acquire_fence();
    pong.join();
    EXPECT_EQ(data, 3L * rounds);
}

} // namespace
