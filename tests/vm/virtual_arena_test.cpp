#include "memkit/vm/virtual_arena.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <csignal>
#include <cstring>
#include <memory_resource>
#include <random>
#include <tuple>
#include <type_traits>
#include <vector>

#include "memkit/core/annotations.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/traits.hpp"
#include "memkit/pmr/resource.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::virtual_arena;
using memkit::virtual_arena_options;
namespace vm = memkit::vm;

static_assert(memkit::allocator<virtual_arena>);
static_assert(memkit::owning_allocator<virtual_arena>);
static_assert(memkit::allocator_traits<virtual_arena>::has_reset);
static_assert(memkit::allocator_traits<virtual_arena>::has_stats);
static_assert(memkit::allocator_traits<virtual_arena>::has_max_size);
static_assert(!memkit::allocator_traits<virtual_arena>::is_thread_safe);
static_assert(memkit::allocator_traits<virtual_arena>::max_alignment == 65536);
static_assert(!std::is_copy_constructible_v<virtual_arena>);
static_assert(std::is_nothrow_move_constructible_v<virtual_arena>);
static_assert(std::is_nothrow_move_assignable_v<virtual_arena>);

const std::size_t pg = vm::page_size();
constexpr std::size_t mib = std::size_t{1} << 20;

using memkit::test::died_of_segv;
using memkit::test::segv_report;

void poke(void* p, unsigned char v) { *static_cast<volatile unsigned char*>(p) = v; }

bool all_bytes(const void* p, std::size_t n, unsigned char v) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i)
        if (b[i] != v) return false;
    return true;
}

TEST(VirtualArena, ReservesWithoutCommitting) {
    virtual_arena a;
    EXPECT_EQ(a.reserved(), sizeof(void*) >= 8 ? std::size_t{64} << 30 : std::size_t{256} << 20);
    EXPECT_EQ(a.committed(), 0u);
    EXPECT_EQ(a.used(), 0u);
    EXPECT_EQ(a.max_size(), a.reserved());
    EXPECT_EQ(a.huge_pages(), memkit::huge_page_status::not_requested);
    EXPECT_EQ(vm::access_of(a.base()), memkit::page_access::none);

    virtual_arena big{{.reserve_size = std::size_t{1} << 40}}; // a terabyte of addresses
    EXPECT_EQ(big.reserved(), std::size_t{1} << 40);
    EXPECT_EQ(big.committed(), 0u);
    poke(big.allocate(100), 1);
    EXPECT_EQ(big.committed(), big.options().commit_step);
}

TEST(VirtualArena, EveryPowerOfTwoAlignment) {
    virtual_arena a{{.reserve_size = 64 * mib}};
    for (std::size_t align = 1; align <= 65536; align *= 2) {
        for (std::size_t size : {1u, 7u, 64u, 1000u, 70000u}) {
            void* p = a.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align)) << "align " << align << " size " << size;
            std::memset(p, 0xAB, size);
        }
    }
}

TEST(VirtualArena, GrowsInPlaceSoPointersNeverMove) {
    virtual_arena a{{.reserve_size = 256 * mib, .commit_step = 64 << 10}};
    std::mt19937 rng(11);
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    std::vector<std::tuple<void*, std::size_t, std::uint8_t>> blocks;
    std::byte* prev_end = a.base();
    while (a.used() < 48 * mib) {
        const std::size_t size = 1 + rng() % 20000;
        const std::size_t align = std::size_t{1} << (rng() % 8);
        auto* p = static_cast<std::byte*>(a.allocate(size, align));
        // Contiguous: each block starts at the first aligned address after the previous one.
        ASSERT_EQ(p, memkit::align_up(prev_end, align));
        prev_end = p + size;
        const auto seed = static_cast<std::uint8_t>(blocks.size());
        memkit::fill_pattern(p, size, seed);
        ranges.emplace_back(reinterpret_cast<std::uintptr_t>(p), size);
        blocks.emplace_back(p, size, seed);
        ASSERT_GE(a.committed(), a.used());
        ASSERT_EQ(a.committed() % (64 << 10), 0u);
        ASSERT_LT(a.committed() - a.used(), std::size_t{64} << 10);
    }
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (auto& [p, size, seed] : blocks) {
        ASSERT_TRUE(a.owns(p));
        ASSERT_EQ(memkit::verify_pattern(p, size, seed), nullptr);
    }
    EXPECT_EQ(a.region().committed_runs(), 1u);
}

TEST(VirtualArena, ResetDecommitsAboveTheRetainedAmount) {
    virtual_arena a{{.reserve_size = 64 * mib,
                     .commit_step = mib,
                     .retain_on_reset = 2 * mib,
                     .retain_last_round = false}};
    void* p = a.allocate(8 * mib, 64);
    std::memset(p, 0x77, 8 * mib);
    EXPECT_EQ(a.committed(), 8 * mib);
    EXPECT_EQ(vm::resident_bytes(a.base(), 8 * mib), 8 * mib);
    a.reset();
    EXPECT_EQ(a.used(), 0u);
    EXPECT_EQ(a.committed(), 2 * mib);
    EXPECT_EQ(vm::resident_bytes(a.base(), 8 * mib), 2 * mib); // the rest went back at once
    // Reuse: the same addresses; retained pages keep old bytes, decommitted ones read zero.
    auto* q = static_cast<unsigned char*>(a.allocate(8 * mib, 64));
    EXPECT_EQ(static_cast<void*>(q), p);
    EXPECT_TRUE(all_bytes(q, 2 * mib, 0x77));
    EXPECT_TRUE(all_bytes(q + 2 * mib, 6 * mib, 0));
}

TEST(VirtualArena, ResetKeepsWhatTheLastRoundUsed) {
    virtual_arena a{{.reserve_size = 256 * mib, .commit_step = mib, .retain_on_reset = 2 * mib}};
    std::memset(a.allocate(20 * mib), 1, 20 * mib);
    a.reset(); // a 20 MiB round: the next one of that size takes no page faults
    EXPECT_EQ(a.committed(), 20 * mib);
    EXPECT_EQ(vm::resident_bytes(a.base(), 20 * mib), 20 * mib);
    std::memset(a.allocate(5 * mib), 2, 5 * mib);
    a.reset(); // a smaller round gives the excess back
    EXPECT_EQ(a.committed(), 5 * mib);
    EXPECT_EQ(vm::resident_bytes(a.base(), 20 * mib), 5 * mib);
    (void)a.allocate(mib);
    a.reset(); // never below retain_on_reset
    EXPECT_EQ(a.committed(), 2 * mib);
}

TEST(VirtualArena, PopulatePrefaultsEachStep) {
    virtual_arena lazy{{.reserve_size = 64 * mib, .commit_step = 4 * mib, .populate = false}};
    virtual_arena eager{{.reserve_size = 64 * mib, .commit_step = 4 * mib}};
    poke(lazy.allocate(64), 1);
    poke(eager.allocate(64), 1);
    EXPECT_EQ(lazy.committed(), 4 * mib);
    EXPECT_EQ(eager.committed(), 4 * mib);
    EXPECT_LT(vm::resident_bytes(lazy.base(), 4 * mib), 4 * mib);
    const std::error_code ec = vm::populate(lazy.base(), pg);
    if (ec == std::errc::not_supported) GTEST_SKIP() << "kernel without MADV_POPULATE_WRITE";
    EXPECT_FALSE(ec);
    EXPECT_EQ(vm::resident_bytes(eager.base(), 4 * mib), 4 * mib);
}

TEST(VirtualArena, ReleaseDecommitsEverythingAndRecommittedPagesReadZero) {
    virtual_arena a{{.reserve_size = 16 * mib, .retain_on_reset = 0, .retain_last_round = false}};
    void* p = a.allocate(3 * mib);
    std::memset(p, 0x42, 3 * mib);
    a.reset(); // retain 0: like release
    EXPECT_EQ(a.committed(), 0u);
    EXPECT_EQ(vm::resident_bytes(a.base(), 3 * mib), 0u);
    void* q = a.allocate(3 * mib);
    EXPECT_EQ(q, p);
    EXPECT_TRUE(all_bytes(q, 3 * mib, 0));

    virtual_arena b{{.reserve_size = 16 * mib}}; // default retain, then release()
    std::memset(b.allocate(6 * mib), 1, 6 * mib);
    b.release();
    EXPECT_EQ(b.committed(), 0u);
    EXPECT_EQ(vm::resident_bytes(b.base(), 6 * mib), 0u);
}

TEST(VirtualArena, TrimKeepsLiveBlocks) {
    virtual_arena a{{.reserve_size = 64 * mib, .commit_step = mib}};
    a.commit_ahead(10 * mib);
    EXPECT_EQ(a.committed(), 10 * mib);
    EXPECT_EQ(a.remaining(), 10 * mib);
    void* p = a.allocate(mib + 1);
    std::memset(p, 9, mib + 1);
    a.trim();
    EXPECT_EQ(a.committed(), 2 * mib); // used() rounded up to a step
    EXPECT_TRUE(all_bytes(p, mib + 1, 9));
    a.trim(5 * mib); // keeps more than is committed: nothing happens
    EXPECT_EQ(a.committed(), 2 * mib);
    EXPECT_THROW(a.commit_ahead(65 * mib), memkit::out_of_memory);
    EXPECT_EQ(a.committed(), 2 * mib);
}

TEST(VirtualArena, DeallocateRollsBackTheLastBlockOnly) {
    virtual_arena a{{.reserve_size = 16 * mib}};
    void* p1 = a.allocate(100);
    void* p2 = a.allocate(200);
    a.deallocate(p1, 100); // not the last: a no-op
    EXPECT_EQ(a.stats().bytes_in_use, 300u);
    a.deallocate(p2, 200); // the last: rolled back
    EXPECT_EQ(a.stats().bytes_in_use, 100u);
    EXPECT_EQ(a.allocate(200), p2);
    EXPECT_EQ(a.stats().deallocations, 2u);
    a.deallocate(nullptr, 0);
}

TEST(VirtualArena, MarkersAndScopes) {
    virtual_arena a{{.reserve_size = 16 * mib}};
    void* first = a.allocate(64);
    const auto m = a.mark();
    void* p = a.allocate(5 * mib);
    {
        virtual_arena::scope s{a};
        EXPECT_TRUE(a.owns(a.allocate(1000)));
    }
    void* again = a.allocate(10);
    EXPECT_EQ(static_cast<std::byte*>(again), static_cast<std::byte*>(p) + 5 * mib);
    a.rewind(m);
    EXPECT_EQ(a.allocate(5 * mib), p);
    EXPECT_TRUE(a.owns(first));
    EXPECT_EQ(a.stats().peak_bytes, 64 + 5 * mib + 1000);
}

TEST(VirtualArena, Stats) {
    virtual_arena a{{.reserve_size = 16 * mib, .commit_step = 64 << 10}};
    (void)a.allocate(1000);
    (void)a.allocate(24, 8);
    auto s = a.stats();
    EXPECT_EQ(s.bytes_in_use, 1024u);
    EXPECT_EQ(s.allocations, 2u);
    EXPECT_EQ(s.deallocations, 0u);
    EXPECT_EQ(s.capacity, std::size_t{64} << 10);
    EXPECT_EQ(s.capacity, a.committed());
    a.reset();
    s = a.stats();
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.peak_bytes, 1024u);
    EXPECT_EQ(s.allocations, 0u);
    EXPECT_EQ(s.deallocations, 2u);
}

TEST(VirtualArena, Errors) {
    virtual_arena a{{.reserve_size = mib, .commit_step = 64 << 10}};
    EXPECT_THROW((void)a.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)a.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)a.allocate(8, std::size_t{1} << 17), memkit::invalid_alignment);
    EXPECT_THROW((void)a.allocate(2 * mib), memkit::bad_size); // above max_size()
    EXPECT_EQ(a.try_allocate(0, 8), nullptr);
    EXPECT_EQ(a.try_allocate(2 * mib, 8), nullptr);

    void* p = a.allocate(600 << 10);
    const auto before = a.stats();
    const std::size_t used = a.used();
    try {
        (void)a.allocate(600 << 10);
        ADD_FAILURE() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), std::size_t{600} << 10);
        EXPECT_EQ(e.capacity(), a.committed());
        EXPECT_STREQ(e.allocator(), "memkit::virtual_arena");
    }
    EXPECT_EQ(a.try_allocate(600 << 10, 8), nullptr);
    EXPECT_EQ(a.used(), used); // unchanged by the failures
    EXPECT_EQ(a.stats(), before);
    // Exactly what is left still fits.
    void* rest = a.allocate(mib - used, 1);
    EXPECT_EQ(static_cast<std::byte*>(rest), static_cast<std::byte*>(p) + (600 << 10));
    EXPECT_EQ(a.committed(), mib);

    EXPECT_THROW(virtual_arena({.reserve_size = 0}), memkit::bad_size);
    EXPECT_THROW(virtual_arena({.reserve_size = std::size_t{1} << 62}), memkit::out_of_memory);
}

TEST(VirtualArena, DeallocateOfAForeignPointerIsAViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    memkit::test::violation_recorder rec;
    virtual_arena a{{.reserve_size = mib}};
    void* p = a.allocate(64);
    int local = 0;
    a.deallocate(&local, sizeof local);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    a.deallocate(static_cast<std::byte*>(p) + 64, 1); // at the top, not below it
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(a.stats().deallocations, 0u);
}

TEST(VirtualArena, MovesTransferTheReservation) {
    virtual_arena a{{.reserve_size = 4 * mib}};
    void* p = a.allocate(100);
    virtual_arena b{std::move(a)};
    EXPECT_TRUE(b.owns(p));
    EXPECT_EQ(b.used(), 100u);
    EXPECT_EQ(a.reserved(), 0u);
    EXPECT_FALSE(a.owns(p));
    EXPECT_EQ(a.try_allocate(8, 8), nullptr); // a moved-from arena has no space
    EXPECT_THROW((void)a.allocate(8), std::bad_alloc);
    a.reset();
    a.trim();
    virtual_arena c{{.reserve_size = mib}};
    c = std::move(b);
    EXPECT_TRUE(c.owns(p));
    EXPECT_EQ(c.reserved(), 4 * mib);
}

TEST(VirtualArena, PmrAdapters) {
    virtual_arena a{{.reserve_size = 256 * mib}};
    memkit::resource r{a};
    std::pmr::vector<int> v{&r};
    for (int i = 0; i < 1000000; ++i) v.push_back(i);
    EXPECT_TRUE(a.owns(v.data()));
    for (int i = 0; i < 1000000; i += 9973) ASSERT_EQ(v[static_cast<std::size_t>(i)], i);
    EXPECT_GE(a.stats().allocations, 20u);

    memkit::pmr::virtual_arena_resource owned{virtual_arena_options{.reserve_size = 16 * mib}};
    std::pmr::vector<double> w{&owned};
    w.assign(1000, 1.5);
    EXPECT_TRUE(owned.get().owns(w.data()));
    EXPECT_TRUE(owned.is_equal(owned));
    EXPECT_FALSE(owned.is_equal(r));
}

TEST(VirtualArena, TransparentHugePagesCommitInHugePages) {
    virtual_arena a{
        {.reserve_size = 64 * mib, .huge_pages = memkit::huge_page_request::transparent}};
    const std::size_t hps = vm::huge_page_size();
    if (a.huge_pages() != memkit::huge_page_status::transparent)
        GTEST_SKIP() << "transparent huge pages unavailable: " << memkit::to_string(a.huge_pages());
    EXPECT_TRUE(memkit::is_aligned(a.base(), hps));
    std::memset(a.allocate(100), 1, 100);
    EXPECT_EQ(a.committed(), hps);
}

TEST(VirtualArenaDeathTest, TouchingPastTheCommittedEndOrAfterResetKillsTheProcess) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    virtual_arena a{{.reserve_size = 16 * mib,
                     .commit_step = 64 << 10,
                     .retain_on_reset = 0,
                     .retain_last_round = false}};
    auto* p = static_cast<std::byte*>(a.allocate(100));
    EXPECT_EXIT(poke(p + a.committed(), 1), died_of_segv, segv_report);
    a.reset();
    EXPECT_EXIT(poke(p, 1), died_of_segv, segv_report);
}

} // namespace
