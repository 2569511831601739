// memkit::spin_lock: mutual exclusion under contention, try_lock, and use as the lock of
// memkit::synchronized.
#include "memkit/core/spin_lock.hpp"

#include <gtest/gtest.h>

#include <concepts>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "memkit/alloc/tlsf.hpp"
#include "memkit/compose/synchronized.hpp"

namespace {

using memkit::spin_lock;

static_assert(!std::is_copy_constructible_v<spin_lock>);
static_assert(!std::is_move_constructible_v<spin_lock>);
static_assert(std::is_nothrow_default_constructible_v<spin_lock>);

TEST(SpinLock, TryLockFailsWhileHeldAndSucceedsAfterUnlock) {
    spin_lock l;
    ASSERT_TRUE(l.try_lock());
    EXPECT_FALSE(l.try_lock());
    std::thread other([&] { EXPECT_FALSE(l.try_lock()); });
    other.join();
    l.unlock();
    EXPECT_TRUE(l.try_lock());
    l.unlock();
    std::lock_guard guard{l};
    EXPECT_FALSE(l.try_lock());
}

TEST(SpinLock, ExcludesUnderContention) {
    // A non-atomic read-modify-write that loses updates unless the lock excludes: 8 threads, and
    // the total must be exact.
    constexpr int threads = 8, rounds = 20'000;
    spin_lock l;
    std::uint64_t counter = 0;
    std::uint64_t in_section = 0, overlaps = 0;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&] {
            for (int i = 0; i < rounds; ++i) {
                std::lock_guard guard{l};
                if (in_section++ != 0) ++overlaps;
                counter = counter + 1;
                --in_section;
            }
        });
    for (auto& th : pool) th.join();
    EXPECT_EQ(counter, std::uint64_t{threads} * rounds);
    EXPECT_EQ(overlaps, 0u);
}

TEST(SpinLock, GuardsASynchronizedAllocator) {
    memkit::synchronized<memkit::tlsf_heap, spin_lock> heap{std::in_place, std::size_t{1} << 20};
    constexpr int threads = 4, rounds = 2'000;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (int i = 0; i < rounds; ++i) {
                auto* p = static_cast<unsigned char*>(heap.allocate(64, 16));
                p[0] = static_cast<unsigned char>(t);
                p[63] = static_cast<unsigned char>(t);
                EXPECT_EQ(p[0], p[63]);
                heap.deallocate(p, 64, 16);
            }
        });
    for (auto& th : pool) th.join();
    EXPECT_EQ(heap.with_lock([](memkit::tlsf_heap& h) { return h.stats().bytes_in_use; }), 0u);
}

} // namespace
