// memory_tracker under 8 threads (run under ThreadSanitizer too): exact totals at the end,
// blocks freed by other threads than the allocating one, reports taken while others allocate.
#include "memkit/debug/memory_tracker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "memkit/alloc/system.hpp"

namespace {

using memkit::memory_tracker;
using memkit::system_allocator;
using memkit::tracked;

constexpr int thread_count = 8;
constexpr std::size_t ops_per_thread = 20000;
constexpr std::size_t kept_per_thread = 100; // blocks each thread leaves live at the end

std::size_t size_of(std::size_t thread, std::size_t i) { return 1 + (thread * 31 + i * 7) % 200; }

void run_mixed_workload(memory_tracker& t) {
    tracked<system_allocator> a{t};
    // Each thread hands half its blocks to the next thread to free (cross-thread frees).
    std::vector<std::vector<std::pair<void*, std::size_t>>> handoff(thread_count);
    std::mutex handoff_mutex;
    std::vector<std::vector<std::pair<void*, std::size_t>>> kept(thread_count);
    std::atomic<bool> stop_reporting{false};

    std::vector<std::thread> threads;
    for (int th = 0; th < thread_count; ++th) {
        threads.emplace_back([&, th] {
            const auto tid = static_cast<std::size_t>(th);
            std::mt19937_64 rng(tid + 1);
            std::vector<std::pair<void*, std::size_t>> live;
            for (std::size_t i = 0; i < ops_per_thread; ++i) {
                const std::size_t n = size_of(tid, i);
                live.emplace_back(a.allocate(n), n);
                if (live.size() > 2 * kept_per_thread) {
                    const std::size_t k = rng() % live.size();
                    auto [p, sz] = live[k];
                    live[k] = live.back();
                    live.pop_back();
                    if (k % 2 == 0) {
                        a.deallocate(p, sz);
                    } else {
                        std::lock_guard lock(handoff_mutex);
                        handoff[(tid + 1) % thread_count].emplace_back(p, sz);
                    }
                }
                if (i % 256 == 0) {
                    std::vector<std::pair<void*, std::size_t>> mine;
                    {
                        std::lock_guard lock(handoff_mutex);
                        mine.swap(handoff[tid]);
                    }
                    for (auto [p, sz] : mine) a.deallocate(p, sz);
                }
            }
            while (live.size() > kept_per_thread) {
                a.deallocate(live.back().first, live.back().second);
                live.pop_back();
            }
            kept[tid] = std::move(live);
        });
    }
    // A reader that snapshots while the writers run.
    std::thread reporter([&] {
        while (!stop_reporting.load()) {
            (void)t.find_leaks();
            (void)t.report();
            const auto s = t.stats();
            EXPECT_LE(s.current_bytes, s.peak_bytes + 0);
        }
    });
    for (auto& th : threads) th.join();
    stop_reporting = true;
    reporter.join();
    for (auto& h : handoff)
        for (auto [p, sz] : h) a.deallocate(p, sz);

    const auto s = t.stats();
    std::size_t kept_bytes = 0;
    for (const auto& k : kept)
        for (const auto& [p, sz] : k) kept_bytes += sz;
    std::uint64_t total_bytes = 0;
    for (std::size_t th = 0; th < thread_count; ++th)
        for (std::size_t i = 0; i < ops_per_thread; ++i) total_bytes += size_of(th, i);

    EXPECT_EQ(s.allocations, thread_count * ops_per_thread);
    EXPECT_EQ(s.deallocations, thread_count * (ops_per_thread - kept_per_thread));
    EXPECT_EQ(s.bytes_allocated, total_bytes);
    EXPECT_EQ(s.current_blocks, thread_count * kept_per_thread);
    EXPECT_EQ(s.current_bytes, kept_bytes);
    EXPECT_GE(s.peak_bytes, kept_bytes);
    EXPECT_LE(s.peak_bytes, total_bytes);
    const auto leaks = t.find_leaks();
    ASSERT_EQ(leaks.size(), thread_count * kept_per_thread);
    std::size_t leak_bytes = 0;
    for (const auto& r : leaks) leak_bytes += r.size;
    EXPECT_EQ(leak_bytes, kept_bytes);

    for (const auto& k : kept)
        for (const auto& [p, sz] : k) a.deallocate(p, sz);
    EXPECT_EQ(t.stats().current_blocks, 0u);
    EXPECT_EQ(t.stats().current_bytes, 0u);
}

TEST(MemoryTrackerConcurrency, EightThreadsExactTotals) {
    memory_tracker t;
    run_mixed_workload(t);
}

TEST(MemoryTrackerConcurrency, EightThreadsWithStackCapture) {
    memory_tracker t{{.capture_stacks = true, .stack_depth = 8}};
    run_mixed_workload(t);
}

TEST(MemoryTrackerConcurrency, PeakIsExactForASingleAllocatingThreadWhileOthersRead) {
    memory_tracker t;
    tracked<system_allocator> a{t};
    std::atomic<bool> done{false};
    std::vector<std::thread> readers;
    for (int r = 0; r < thread_count - 1; ++r)
        readers.emplace_back([&] {
            while (!done.load()) {
                const auto s = t.stats();
                EXPECT_LE(s.current_bytes, 1000u * 64u);
                (void)t.is_live(nullptr);
            }
        });
    std::vector<void*> blocks;
    for (int i = 0; i < 1000; ++i) blocks.push_back(a.allocate(64));
    for (void* p : blocks) a.deallocate(p, 64);
    done = true;
    for (auto& r : readers) r.join();
    EXPECT_EQ(t.stats().peak_bytes, 64000u);
}

} // namespace
