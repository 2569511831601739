#include "memkit/alloc/concurrent_arena.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/traits.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"

namespace {

constexpr int scale = memkit::test::stress_scale;

using memkit::arena_options;
using memkit::concurrent_arena;
using memkit::test::counting_parent;
using memkit::test::violation_recorder;
using counted_arena = memkit::basic_concurrent_arena<counting_parent>;

static_assert(memkit::allocator<concurrent_arena>);
static_assert(memkit::owning_allocator<concurrent_arena>);
static_assert(memkit::allocator_traits<concurrent_arena>::is_thread_safe);
static_assert(memkit::allocator_traits<concurrent_arena>::has_reset);
static_assert(memkit::allocator_traits<concurrent_arena>::has_stats);
static_assert(memkit::allocator_traits<concurrent_arena>::max_alignment == 65536);
static_assert(!std::is_copy_constructible_v<concurrent_arena>);
static_assert(!std::is_move_constructible_v<concurrent_arena>);

struct block_record {
    void* p;
    std::size_t size;
    std::uint8_t seed;
};

bool no_overlap(const std::vector<block_record>& blocks) {
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (const block_record& b : blocks)
        ranges.emplace_back(reinterpret_cast<std::uintptr_t>(b.p), b.size);
    return memkit::test::no_overlap(ranges);
}

// A latch for keeping a test thread alive (or inside a call) while the test looks.
struct gate {
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
    void wait() {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return open; });
    }
    void release() {
        {
            std::lock_guard<std::mutex> lock(m);
            open = true;
        }
        cv.notify_all();
    }
};

// --- construction -----------------------------------------------------------------------------

TEST(ConcurrentArena, ConstructorRejectsBadOptions) {
    EXPECT_THROW(concurrent_arena(arena_options{.growth_factor = 0.5}), std::invalid_argument);
    EXPECT_THROW(concurrent_arena(arena_options{.block_size = 8}), memkit::bad_size);
    EXPECT_THROW(concurrent_arena(arena_options{.block_size = 8192, .max_block_size = 4096}),
                 memkit::bad_size);
    concurrent_arena a;
    EXPECT_EQ(a.stats(), memkit::allocator_stats{});
    EXPECT_EQ(a.block_count(), 0u);
    EXPECT_STREQ(concurrent_arena::name, "memkit::concurrent_arena");
}

// --- alignment, overlap, contents ----------------------------------------------------------------

TEST(ConcurrentArena, EveryPowerOfTwoAlignment) {
    concurrent_arena a;
    std::vector<block_record> blocks;
    std::uint8_t seed = 0;
    for (std::size_t align = 1; align <= 65536; align *= 2) {
        for (std::size_t size : {1u, 7u, 64u, 1000u, 5000u}) {
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align)) << "align " << align << " size " << size;
            memkit::fill_pattern(p, size, ++seed);
            blocks.push_back({p, size, seed});
        }
    }
    EXPECT_TRUE(no_overlap(blocks));
    for (const block_record& b : blocks) {
        EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
        EXPECT_TRUE(a.owns(b.p));
    }
}

TEST(ConcurrentArena, LargeRequestsGetDedicatedBlocks) {
    counting_parent::counters c;
    counted_arena a{arena_options{.block_size = 1024}, counting_parent{&c}};
    void* small = a.allocate(100);
    EXPECT_EQ(c.allocations, 1u);
    void* big = a.allocate(10000);
    EXPECT_EQ(c.allocations, 2u);
    EXPECT_GE(c.live_bytes, 1024u + 10000u);
    void* small2 = a.allocate(100); // still in the first block
    EXPECT_EQ(c.allocations, 2u);
    EXPECT_EQ(static_cast<std::byte*>(small2) - static_cast<std::byte*>(small), 112);
    EXPECT_TRUE(a.owns(big));
    EXPECT_EQ(a.block_count(), 2u);
}

// --- statistics and reset ------------------------------------------------------------------------

TEST(ConcurrentArena, ExactStatsAndReset) {
    counting_parent::counters c;
    counted_arena a{arena_options{.block_size = 1024}, counting_parent{&c}};
    void* p = a.allocate(10, 1);
    void* q = a.allocate(30, 8);
    memkit::allocator_stats s = a.stats();
    EXPECT_EQ(s.bytes_in_use, 40u);
    EXPECT_EQ(s.peak_bytes, 40u);
    EXPECT_EQ(s.allocations, 2u);
    EXPECT_EQ(s.deallocations, 0u);
    EXPECT_EQ(s.capacity, 1024u);
    EXPECT_EQ(a.capacity(), c.live_bytes);
    a.deallocate(q, 30, 8);
    a.deallocate(p, 10, 1);
    s = a.stats();
    EXPECT_EQ(s.deallocations, 2u);
    EXPECT_EQ(s.bytes_in_use, 40u) << "a monotonic arena frees nothing before reset";
    for (int i = 0; i < 100; ++i) (void)a.allocate(100); // more blocks
    const std::size_t blocks = a.block_count();
    EXPECT_GT(blocks, 1u);
    const std::size_t calls = c.allocations;
    a.reset();
    s = a.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.peak_bytes, 10040u);
    EXPECT_EQ(s.allocations, 102u);
    EXPECT_EQ(s.deallocations, 102u); // everything counts as freed
    EXPECT_EQ(s.capacity, c.live_bytes) << "reset keeps every block";
    EXPECT_EQ(a.block_count(), 0u);
    EXPECT_FALSE(a.owns(p));
    // The next phase runs on the kept blocks: no parent call.
    for (int i = 0; i < 100; ++i) (void)a.allocate(100);
    EXPECT_EQ(c.allocations, calls);
    EXPECT_EQ(a.stats().bytes_in_use, 10000u);
    EXPECT_EQ(a.stats().peak_bytes, 10040u);
    a.release();
    EXPECT_EQ(c.live_bytes, 0u);
    EXPECT_EQ(c.allocations, c.deallocations);
    EXPECT_EQ(a.stats().capacity, 0u);
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
    void* r = a.allocate(8); // usable after release
    EXPECT_TRUE(a.owns(r));
}

// --- errors
// ----------------------------------------------------------------------------------------

TEST(ConcurrentArena, ErrorsHaveExactTypes) {
    concurrent_arena a{arena_options{.block_size = 1024, .max_total = 4096}};
    EXPECT_THROW((void)a.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)a.allocate(5000), memkit::bad_size); // above max_size()
    EXPECT_EQ(a.max_size(), 4096u - 16u);
    EXPECT_THROW((void)a.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)a.allocate(8, std::size_t{1} << 17), memkit::invalid_alignment);
    EXPECT_EQ(a.try_allocate(0), nullptr);
    EXPECT_EQ(a.try_allocate(8, 0), nullptr);
    (void)a.allocate(3000); // dedicated
    try {
        (void)a.allocate(2000);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_STREQ(e.allocator(), "memkit::concurrent_arena");
        EXPECT_EQ(e.requested(), 2000u);
        EXPECT_EQ(e.capacity(), a.capacity());
        EXPECT_EQ(e.available(), 4096u - a.capacity());
        EXPECT_EQ(e.used(), 3000u);
    }
    // What is left under the cap still serves requests that fit.
    EXPECT_NE(a.try_allocate(100), nullptr);
}

TEST(ConcurrentArena, ParentFailureIsOutOfMemory) {
    counting_parent::counters c;
    c.fail_after = 1;
    counted_arena a{arena_options{.block_size = 256}, counting_parent{&c}};
    (void)a.allocate(100);
    EXPECT_THROW((void)a.allocate(200), memkit::out_of_memory);
    EXPECT_EQ(a.try_allocate(1000), nullptr);
    EXPECT_NE(a.try_allocate(50), nullptr); // still room in the first block
}

TEST(ConcurrentArena, DebugChecksReportForeignPointers) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    concurrent_arena a;
    violation_recorder rec;
    int local = 0;
    (void)a.allocate(8);
    a.deallocate(&local, sizeof local);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_STREQ(rec.last().allocator, "memkit::concurrent_arena");
    a.deallocate(nullptr, 8);
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(a.stats().deallocations, 0u);
}

// A parent that blocks inside its allocate until told to go on, so that a test can call reset()
// while another thread is inside allocate.
struct blocking_parent {
    gate* entered;
    gate* go;
    std::atomic<int>* calls;
    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        throw memkit::out_of_memory("blocking_parent", n);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (calls->fetch_add(1) == 1) { // the second call (on the worker) blocks
            entered->release();
            go->wait();
        }
        return memkit::system_allocator{}.try_allocate(n, align);
    }
    void deallocate(void* p, std::size_t n,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        memkit::system_allocator{}.deallocate(p, n, align);
    }
};

TEST(ConcurrentArena, DebugChecksReportResetDuringAllocation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    gate entered, go;
    std::atomic<int> calls{0};
    memkit::basic_concurrent_arena<blocking_parent> a{arena_options{},
                                                      blocking_parent{&entered, &go, &calls}};
    void* mine = a.allocate(16);
    std::thread t([&] { (void)a.allocate(16); });
    entered.wait();
    {
        violation_recorder rec;
        a.reset();
        EXPECT_EQ(rec.count(), 1);
        EXPECT_EQ(rec.last().code, memkit::errc::still_in_use);
        a.release();
        EXPECT_EQ(rec.count(), 2);
    }
    go.release();
    t.join();
    EXPECT_TRUE(a.owns(mine)) << "the refused reset touched nothing";
    EXPECT_EQ(a.stats().allocations, 2u);
    a.reset();
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
}

// --- pmr and standard containers -----------------------------------------------------------------

TEST(ConcurrentArena, WorksAsAPmrResourceAndAStandardAllocator) {
    concurrent_arena a;
    {
        memkit::resource r{a};
        std::pmr::vector<int> v{&r};
        std::pmr::list<std::pmr::string> l{&r};
        for (int i = 0; i < 1000; ++i) {
            v.push_back(i);
            l.emplace_back(std::pmr::string(40, 'x', &r));
        }
        EXPECT_EQ(v[999], 999);
        EXPECT_EQ(l.size(), 1000u);
    }
    {
        std::vector<double, memkit::std_allocator<double, concurrent_arena>> v{a};
        for (int i = 0; i < 500; ++i) v.push_back(i * 0.5);
        EXPECT_EQ(v[499], 249.5);
    }
    const memkit::allocator_stats s = a.stats();
    EXPECT_EQ(s.allocations, s.deallocations);
    EXPECT_GT(s.bytes_in_use, 0u);
    a.reset();
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
}

// --- randomized single-threaded model
// -------------------------------------------------------------

TEST(ConcurrentArena, RandomOperationsMatchAShadowModel) {
    counting_parent::counters c;
    counted_arena a{arena_options{.block_size = 2048, .max_block_size = 1 << 16},
                    counting_parent{&c}};
    std::vector<block_record> live;
    std::mt19937_64 gen{0x6361726e61ULL};
    std::uint64_t bytes = 0, peak = 0, allocations = 0, deallocations = 0;
    const int ops = 1'000'000 / scale;
    for (int i = 0; i < ops; ++i) {
        const std::uint64_t r = gen();
        const std::uint64_t kind = r % 1000;
        if (kind < 2) { // end of a phase
            for (const block_record& b : live)
                ASSERT_EQ(memkit::verify_pattern(b.p, std::min<std::size_t>(b.size, 32), b.seed),
                          nullptr);
            ASSERT_TRUE(no_overlap(live));
            a.reset();
            live.clear();
            peak = std::max(peak, bytes);
            bytes = 0;
            deallocations = allocations;
        } else if (kind < 700 || live.empty()) {
            const std::size_t size =
                (r >> 10) % 64 == 0 ? 1 + (r >> 20) % 20000 : 1 + (r >> 20) % 200;
            const std::size_t align = std::size_t{1} << ((r >> 40) % 8);
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            const auto seed = static_cast<std::uint8_t>(r >> 48);
            memkit::fill_pattern(p, std::min<std::size_t>(size, 32), seed);
            live.push_back({p, size, seed});
            bytes += size;
            ++allocations;
        } else {
            const block_record& b = live[(r >> 10) % live.size()];
            ASSERT_EQ(memkit::verify_pattern(b.p, std::min<std::size_t>(b.size, 32), b.seed),
                      nullptr);
            a.deallocate(b.p, b.size);
            ++deallocations;
        }
        if (i % 4096 == 0) {
            const memkit::allocator_stats s = a.stats();
            ASSERT_EQ(s.bytes_in_use, bytes);
            ASSERT_EQ(s.peak_bytes, std::max(peak, bytes));
            ASSERT_EQ(s.allocations, allocations);
            ASSERT_EQ(s.deallocations, deallocations);
            ASSERT_EQ(s.capacity, c.live_bytes);
        }
    }
}

// --- threads
// ---------------------------------------------------------------------------------------

TEST(ConcurrentArena, ParallelAllocationsDoNotOverlap) {
    counting_parent::counters c;
    counted_arena a{arena_options{.block_size = 1024}, counting_parent{&c}};
    constexpr int threads = 4;
    const int per_thread = 20000 / scale;
    std::vector<std::vector<block_record>> got(threads);
    std::vector<std::thread> workers;
    std::atomic<int> corrupted{0};
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            std::mt19937 gen{static_cast<unsigned>(t)};
            auto& mine = got[static_cast<std::size_t>(t)];
            for (int i = 0; i < per_thread; ++i) {
                const std::size_t size = i % 500 == 0 ? 3000 : 1 + gen() % 100;
                const std::size_t align = std::size_t{1} << (gen() % 6);
                void* p = a.allocate(size, align);
                const auto seed = static_cast<std::uint8_t>(t * 50 + i);
                memkit::fill_pattern(p, size, seed);
                mine.push_back({p, size, seed});
                if (i % 7 == 0) a.deallocate(p, size, align); // a no-op, counted
            }
            for (const block_record& b : mine)
                if (memkit::verify_pattern(b.p, b.size, b.seed) != nullptr) ++corrupted;
        });
    }
    for (std::thread& w : workers) w.join();
    EXPECT_EQ(corrupted.load(), 0);
    // The threads are gone; what they allocated stays valid until reset.
    std::vector<block_record> all;
    std::uint64_t bytes = 0;
    for (auto& v : got)
        for (const block_record& b : v) {
            EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
            EXPECT_TRUE(a.owns(b.p));
            all.push_back(b);
            bytes += b.size;
        }
    EXPECT_TRUE(no_overlap(all));
    const memkit::allocator_stats s = a.stats();
    EXPECT_EQ(s.allocations, all.size());
    EXPECT_EQ(s.bytes_in_use, bytes);
    EXPECT_EQ(s.deallocations, std::uint64_t{threads} * ((per_thread + 6) / 7));
    EXPECT_EQ(s.capacity, c.live_bytes);
    a.reset();
    EXPECT_EQ(a.stats().bytes_in_use, 0u);
    EXPECT_EQ(a.stats().capacity, c.live_bytes);
}

TEST(ConcurrentArena, PhasesOfWorkersWithResetInBetween) {
    concurrent_arena a{arena_options{.block_size = 4096}};
    for (int phase = 0; phase < 5; ++phase) {
        std::vector<std::thread> workers;
        std::atomic<int> corrupted{0};
        for (int t = 0; t < 3; ++t) {
            workers.emplace_back([&, t] {
                std::vector<block_record> mine;
                for (int i = 0; i < 3000 / scale; ++i) {
                    const std::size_t size = 8 + static_cast<std::size_t>((i * 13 + t) % 120);
                    void* p = a.allocate(size);
                    const auto seed = static_cast<std::uint8_t>(phase + t + i);
                    memkit::fill_pattern(p, size, seed);
                    mine.push_back({p, size, seed});
                }
                for (const block_record& b : mine)
                    if (memkit::verify_pattern(b.p, b.size, b.seed) != nullptr) ++corrupted;
            });
        }
        for (std::thread& w : workers) w.join();
        EXPECT_EQ(corrupted.load(), 0);
        const std::size_t capacity = a.capacity();
        a.reset();
        EXPECT_EQ(a.capacity(), capacity);
        EXPECT_EQ(a.stats().bytes_in_use, 0u);
    }
}

TEST(ConcurrentArena, AnArenaDestroyedBeforeAThreadThatUsedItExits) {
    auto a = std::make_unique<concurrent_arena>();
    gate used, may_exit;
    std::thread t([&] {
        void* p = a->allocate(100);
        std::memset(p, 1, 100);
        used.release();
        may_exit.wait();
        // A new arena on the same thread, possibly with the old one's id.
        concurrent_arena b;
        void* q = b.allocate(100);
        std::memset(q, 2, 100);
        EXPECT_TRUE(b.owns(q));
    });
    used.wait();
    EXPECT_EQ(a->stats().allocations, 1u);
    a.reset();
    may_exit.release();
    t.join();
}

} // namespace
