#include "memkit/alloc/system.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/traits.hpp"
#include "support/test_support.hpp"

// Huge requests must come back as nullptr from malloc under the sanitizers too.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
extern "C" const char* __tsan_default_options() { return "allocator_may_return_null=1"; }

namespace {

using memkit::system_allocator;
using traits = memkit::allocator_traits<system_allocator>;

static_assert(memkit::allocator<system_allocator>);
static_assert(!memkit::owning_allocator<system_allocator>);
static_assert(std::is_empty_v<system_allocator>);
static_assert(std::is_trivially_copyable_v<system_allocator>);
static_assert(traits::is_thread_safe);
static_assert(traits::max_alignment == std::size_t{1} << 30);
static_assert(!traits::has_owns && !traits::has_reset && !traits::has_stats);
static_assert(traits::has_max_size);
static_assert(system_allocator::max_size() == static_cast<std::size_t>(PTRDIFF_MAX));
static_assert(system_allocator{} == system_allocator{});
static_assert(std::string_view{system_allocator::name} == "memkit::system_allocator");

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

TEST(SystemAllocator, EveryAlignmentUpTo1MiB) {
    system_allocator a;
    for (std::size_t align = 1; align <= (std::size_t{1} << 20); align *= 2) {
        for (std::size_t size :
             {std::size_t{1}, std::size_t{3}, std::size_t{64}, std::size_t{5000}, align}) {
            void* p = a.allocate(size, align);
            ASSERT_NE(p, nullptr);
            EXPECT_TRUE(memkit::is_aligned(p, align)) << "align " << align << " size " << size;
            memkit::fill_pattern(p, size, 0x3C);
            EXPECT_EQ(memkit::verify_pattern(p, size, 0x3C), nullptr);
            a.deallocate(p, size, align);
        }
        void* q = a.try_allocate(24, align);
        ASSERT_NE(q, nullptr);
        EXPECT_TRUE(memkit::is_aligned(q, align));
        a.deallocate(q, 24, align);
    }
}

TEST(SystemAllocator, DefaultAlignmentIsMaxAlign) {
    system_allocator a;
    for (std::size_t size = 1; size <= 256; ++size) {
        void* p = a.allocate(size);
        EXPECT_TRUE(memkit::is_aligned(p, alignof(std::max_align_t)));
        a.deallocate(p, size);
    }
}

TEST(SystemAllocator, LiveBlocksDoNotOverlapAndKeepTheirContents) {
    system_allocator a;
    std::mt19937 rng{99};
    struct block {
        void* p;
        std::size_t size, align;
        std::uint8_t seed;
    };
    std::vector<block> live;
    for (int i = 0; i < 2000; ++i) {
        const std::size_t size = 1 + rng() % 1000;
        const std::size_t align = std::size_t{1} << (rng() % 12);
        void* p = a.allocate(size, align);
        const auto seed = static_cast<std::uint8_t>(i);
        memkit::fill_pattern(p, size, seed);
        live.push_back({p, size, align, seed});
        if (i % 4 == 3) {
            const std::size_t k = rng() % live.size();
            ASSERT_EQ(memkit::verify_pattern(live[k].p, live[k].size, live[k].seed), nullptr);
            a.deallocate(live[k].p, live[k].size, live[k].align);
            live[k] = live.back();
            live.pop_back();
        }
    }
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (const block& b : live) ranges.emplace_back(addr(b.p), b.size);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (const block& b : live) {
        EXPECT_EQ(memkit::verify_pattern(b.p, b.size, b.seed), nullptr);
        a.deallocate(b.p, b.size, b.align);
    }
}

TEST(SystemAllocator, MemoryIsReusableAfterFree) {
    // Allocating and freeing the same large block many times must not exhaust anything, and the
    // freed block is writable again when handed back.
    system_allocator a;
    for (int i = 0; i < 200; ++i) {
        void* p = a.allocate(1 << 20, 4096);
        memkit::fill_pattern(p, 64, static_cast<std::uint8_t>(i));
        ASSERT_EQ(memkit::verify_pattern(p, 64, static_cast<std::uint8_t>(i)), nullptr);
        a.deallocate(p, 1 << 20, 4096);
    }
}

TEST(SystemAllocator, InstancesAreInterchangeable) {
    system_allocator a, b;
    EXPECT_TRUE(a == b);
    void* p = a.allocate(128, 64);
    b.deallocate(p, 128, 64);
    memkit::allocator_ref<system_allocator> ref{a};
    void* q = ref.allocate(32, 256);
    EXPECT_TRUE(memkit::is_aligned(q, 256));
    ref.deallocate(q, 32, 256);
}

TEST(SystemAllocator, BadSizeErrors) {
    system_allocator a;
    for (std::size_t size : {std::size_t{0}, system_allocator::max_size() + 1, SIZE_MAX}) {
        for (std::size_t align : {std::size_t{1}, std::size_t{16}, std::size_t{4096}}) {
            EXPECT_EQ(a.try_allocate(size, align), nullptr);
            try {
                (void)a.allocate(size, align);
                FAIL() << "no exception for size " << size;
            } catch (const memkit::bad_size& e) {
                EXPECT_EQ(e.size(), size);
                EXPECT_EQ(e.max_size(), system_allocator::max_size());
                EXPECT_EQ(e.code(), memkit::errc::bad_size);
                EXPECT_NE(std::string(e.what()).find("memkit::system_allocator"),
                          std::string::npos);
            }
        }
    }
    // bad_size is an invalid argument, not an allocation failure.
    EXPECT_THROW((void)a.allocate(0), std::invalid_argument);
}

TEST(SystemAllocator, InvalidAlignmentErrors) {
    system_allocator a;
    for (std::size_t align : {std::size_t{0}, std::size_t{3}, std::size_t{6}, std::size_t{24},
                              std::size_t{100}, system_allocator::max_alignment * 2, SIZE_MAX}) {
        EXPECT_EQ(a.try_allocate(8, align), nullptr) << align;
        try {
            (void)a.allocate(8, align);
            FAIL() << "no exception for alignment " << align;
        } catch (const memkit::invalid_alignment& e) {
            EXPECT_EQ(e.alignment(), align);
            EXPECT_EQ(e.max_alignment(), system_allocator::max_alignment);
            EXPECT_EQ(e.code(), memkit::errc::invalid_alignment);
            EXPECT_NE(std::string(e.what()).find("memkit::system_allocator"), std::string::npos);
        }
    }
    // A bad alignment is reported even when the size is bad too.
    EXPECT_THROW((void)a.allocate(0, 3), memkit::invalid_alignment);
}

TEST(SystemAllocator, OutOfMemoryCarriesTheRequest) {
    system_allocator a;
    const std::size_t huge = system_allocator::max_size();
    for (std::size_t align : {std::size_t{8}, std::size_t{64}}) {
        EXPECT_EQ(a.try_allocate(huge, align), nullptr);
        try {
            (void)a.allocate(huge, align);
            FAIL() << "no exception";
        } catch (const memkit::out_of_memory& e) {
            EXPECT_EQ(e.requested(), huge);
            EXPECT_EQ(e.available(), memkit::out_of_memory::unknown);
            EXPECT_EQ(e.used(), memkit::out_of_memory::unknown);
            EXPECT_EQ(e.capacity(), memkit::out_of_memory::unknown);
            EXPECT_STREQ(e.allocator(), "memkit::system_allocator");
            EXPECT_EQ(e.code(), memkit::errc::out_of_memory);
            const std::string what = e.what();
            EXPECT_NE(what.find("memkit::system_allocator"), std::string::npos);
            EXPECT_NE(what.find(std::to_string(huge)), std::string::npos);
        }
        EXPECT_THROW((void)a.allocate(huge, align), std::bad_alloc);
    }
}

// A million random allocations and frees checked against a model of the live set.
TEST(SystemAllocator, RandomizedAgainstShadowModel) {
    system_allocator a;
    struct block {
        void* p;
        std::size_t size, align;
        std::uint8_t seed;
    };
    std::vector<block> live;
    std::mt19937_64 rng{77};
    std::size_t allocated = 0, freed = 0;
    for (int op = 0; op < 1'000'000; ++op) {
        if (live.empty() || (live.size() < 2048 && rng() % 2 == 0)) {
            std::size_t size = 1 + rng() % 64;
            if (rng() % 256 == 0) size = 1 + rng() % 100'000;
            const std::size_t align = std::size_t{1} << (rng() % 8);
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align));
            const auto seed = static_cast<std::uint8_t>(rng());
            // The pattern covers the first and last 16 bytes (all of a block up to 32 bytes):
            // enough to catch overlap, and cheap enough for ThreadSanitizer runs.
            const std::size_t n = size < 32 ? size : 16;
            memkit::fill_pattern(p, n, seed);
            memkit::fill_pattern(static_cast<std::byte*>(p) + size - n, n, seed);
            live.push_back({p, size, align, seed});
            ++allocated;
        } else {
            const std::size_t k = rng() % live.size();
            const block b = live[k];
            live[k] = live.back();
            live.pop_back();
            const std::size_t n = b.size < 32 ? b.size : 16;
            ASSERT_EQ(memkit::verify_pattern(static_cast<std::byte*>(b.p) + b.size - n, n, b.seed),
                      nullptr);
            if (b.size >= 32) {
                ASSERT_EQ(memkit::verify_pattern(b.p, n, b.seed), nullptr);
            }
            a.deallocate(b.p, b.size, b.align);
            ++freed;
        }
    }
    for (const block& b : live) a.deallocate(b.p, b.size, b.align);
    EXPECT_EQ(allocated, freed + live.size());
    EXPECT_GT(allocated, 400'000u);
}

// Four threads allocate, write, verify and free at once; some blocks are freed by another thread
// than the one that allocated them. ThreadSanitizer runs this too.
TEST(SystemAllocator, ConcurrentStress) {
    constexpr int threads = 4;
    constexpr int rounds = 20'000;
    system_allocator a;
    std::atomic<int> failures{0};
    std::atomic<int> handed_over{0};
    // Thread t offers blocks in slot t; thread t + 1 takes them, checks them and frees them.
    std::vector<std::atomic<void*>> slots(threads);
    std::atomic<int> started{0};

    auto worker = [&](int id) {
        std::mt19937 rng{static_cast<unsigned>(id) + 1};
        std::vector<std::tuple<void*, std::size_t, std::size_t>> mine;
        const auto seed_of = [id](std::size_t n) { return static_cast<std::uint8_t>(id * 64 + n); };
        started.fetch_add(1);
        while (started.load() < threads) std::this_thread::yield();
        for (int i = 0; i < rounds; ++i) {
            const std::size_t size = 1 + rng() % 256;
            const std::size_t align = std::size_t{1} << (rng() % 8);
            void* p = a.allocate(size, align);
            if (!memkit::is_aligned(p, align)) failures.fetch_add(1);
            memkit::fill_pattern(p, size, seed_of(size));
            mine.emplace_back(p, size, align);
            if (mine.size() > 32) {
                for (auto [q, n, al] : mine) {
                    if (memkit::verify_pattern(q, n, seed_of(n)) != nullptr) failures.fetch_add(1);
                    a.deallocate(q, n, al);
                }
                mine.clear();
            }
            if (i % 8 == 0) {
                void* h = a.allocate(64, 64);
                memkit::fill_pattern(h, 64, static_cast<std::uint8_t>(id));
                void* expected = nullptr;
                if (!slots[static_cast<std::size_t>(id)].compare_exchange_strong(
                        expected, h, std::memory_order_release, std::memory_order_relaxed))
                    a.deallocate(h, 64, 64);
            }
            const int from = (id + threads - 1) % threads;
            if (void* q = slots[static_cast<std::size_t>(from)].exchange(
                    nullptr, std::memory_order_acquire)) {
                if (memkit::verify_pattern(q, 64, static_cast<std::uint8_t>(from)) != nullptr)
                    failures.fetch_add(1);
                a.deallocate(q, 64, 64);
                handed_over.fetch_add(1, std::memory_order_relaxed);
            }
        }
        for (auto [q, n, al] : mine) a.deallocate(q, n, al);
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
    for (auto& t : pool) t.join();
    for (auto& s : slots)
        if (void* q = s.load()) a.deallocate(q, 64, 64);
    EXPECT_EQ(failures.load(), 0);
    EXPECT_GT(handed_over.load(), 0);
}

} // namespace
