// The deep composition: a thread-safe heap that sends small requests to per-thread caches
// over a slab allocator and larger ones to a TLSF heap, used through std::pmr from many threads.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory_resource>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "memkit/alloc/slab.hpp"
#include "memkit/alloc/thread_cache.hpp"
#include "memkit/alloc/tlsf.hpp"
#include "memkit/compose/segregator.hpp"
#include "memkit/compose/synchronized.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/pmr/resource.hpp"
#include "support/test_support.hpp"

namespace {

// thread_cache needs a thread-safe allocator behind it, hence synchronized<slab_allocator>.
using small_heap = memkit::thread_cache<memkit::synchronized<memkit::slab_allocator>>;
using split_heap = memkit::segregator<256, small_heap, memkit::tlsf_heap>;
using nested = memkit::synchronized<split_heap>;

static_assert(memkit::allocator<small_heap>);
static_assert(memkit::allocator<split_heap>);
static_assert(memkit::allocator<nested>);
static_assert(memkit::allocator_traits<nested>::is_thread_safe);


struct nested_heap {
    nested heap{std::in_place, std::piecewise_construct, std::tuple<>{},
                std::tuple<std::size_t>{std::size_t{1} << 20}};
};

TEST(Nesting, RoutesBySizeAndKeepsContents) {
    nested_heap h;
    std::vector<std::tuple<void*, std::size_t, std::size_t>> blocks;
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (std::size_t size : {1u, 16u, 64u, 200u, 256u, 257u, 1000u, 5000u, 70000u}) {
        for (std::size_t align = 1; align <= 64; align *= 2) {
            void* p = h.heap.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align)) << size << " " << align;
            memkit::fill_pattern(p, size, static_cast<std::uint8_t>(size + align));
            blocks.emplace_back(p, size, align);
            ranges.emplace_back(reinterpret_cast<std::uintptr_t>(p), size);
        }
    }
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (auto [p, size, align] : blocks) {
        EXPECT_EQ(memkit::verify_pattern(p, size, static_cast<std::uint8_t>(size + align)), nullptr);
        h.heap.deallocate(p, size, align);
    }
}

TEST(Nesting, StdPmrContainersFromManyThreads) {
    nested_heap h;
    memkit::resource r{h.heap};
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::pmr::vector<std::pmr::string> v{&r};
            std::pmr::map<int, std::pmr::vector<int>> m{&r};
            for (int i = 0; i < 2000; ++i) {
                v.emplace_back(static_cast<std::size_t>(i % 300), static_cast<char>('a' + t));
                m[i % 97].push_back(i);
            }
            for (int i = 0; i < 2000; ++i)
                if (std::string_view(v[static_cast<std::size_t>(i)]) !=
                    std::string(static_cast<std::size_t>(i % 300), static_cast<char>('a' + t)))
                    ++failures;
            std::size_t total = 0;
            for (auto& [k, vec] : m) total += vec.size();
            if (total != 2000) ++failures;
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
}

TEST(Nesting, BlocksFreedOnAnotherThread) {
    nested_heap h;
    std::mutex mu;
    std::vector<std::pair<void*, std::size_t>> handoff;
    std::thread producer([&] {
        for (int i = 0; i < 4000; ++i) {
            const std::size_t size = 1 + static_cast<std::size_t>(i * 37) % 600;
            void* p = h.heap.allocate(size, 8);
            memkit::fill_pattern(p, size, static_cast<std::uint8_t>(size));
            std::lock_guard lock(mu);
            handoff.emplace_back(p, size);
        }
    });
    int freed = 0, bad = 0;
    std::thread consumer([&] {
        while (freed < 4000) {
            std::vector<std::pair<void*, std::size_t>> batch;
            {
                std::lock_guard lock(mu);
                batch.swap(handoff);
            }
            for (auto [p, size] : batch) {
                if (memkit::verify_pattern(p, size, static_cast<std::uint8_t>(size)) != nullptr)
                    ++bad;
                h.heap.deallocate(p, size, 8);
                ++freed;
            }
            if (batch.empty()) std::this_thread::yield();
        }
    });
    producer.join();
    consumer.join();
    EXPECT_EQ(bad, 0);
    EXPECT_EQ(freed, 4000);
}

} // namespace
