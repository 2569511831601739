#include "memkit/vm/virtual_memory.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/core/platform.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::bad_address;
using memkit::page_access;
using memkit::reservation;
namespace vm = memkit::vm;

static_assert(!std::is_copy_constructible_v<reservation>);
static_assert(std::is_nothrow_move_constructible_v<reservation>);
static_assert(std::is_nothrow_move_assignable_v<reservation>);
static_assert(std::is_base_of_v<std::invalid_argument, bad_address>);

const std::size_t pg = vm::page_size();

// Reads one byte through a volatile pointer, so that the access really happens.
unsigned char peek(const void* p) { return *static_cast<const volatile unsigned char*>(p); }
void poke(void* p, unsigned char v) { *static_cast<volatile unsigned char*>(p) = v; }

using memkit::test::died_of_segv;
using memkit::test::segv_report;
#define EXPECT_SEGV(statement) EXPECT_EXIT(statement, died_of_segv, segv_report)

bool all_bytes(const std::byte* p, std::size_t n, std::byte v) {
    for (std::size_t i = 0; i < n; ++i)
        if (p[i] != v) return false;
    return true;
}

TEST(VirtualMemory, PageSizes) {
    EXPECT_TRUE(memkit::is_pow2(pg));
    EXPECT_EQ(pg, memkit::page_size());
    const std::size_t hps = vm::huge_page_size();
    if (hps != 0) {
        EXPECT_TRUE(memkit::is_pow2(hps));
        EXPECT_GT(hps, pg);
    }
    const memkit::thp_mode mode = vm::transparent_huge_page_mode();
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    if (!f) {
        EXPECT_EQ(mode, memkit::thp_mode::unknown);
    } else {
        std::string s;
        std::getline(f, s);
        EXPECT_NE(s.find(std::string("[") + memkit::to_string(mode) + "]"), std::string::npos) << s;
    }
    EXPECT_STREQ(memkit::to_string(memkit::huge_page_status::huge_pages_unavailable),
                 "huge_pages_unavailable");
    EXPECT_STREQ(memkit::to_string(page_access::read_write), "read_write");
}

TEST(VirtualMemory, TerabyteReservationCommitsNothing) {
    constexpr std::size_t tib = std::size_t{1} << 40;
    reservation r{tib};
    ASSERT_NE(r.data(), nullptr);
    EXPECT_EQ(r.size(), tib);
    EXPECT_EQ(r.committed(), 0u);
    EXPECT_TRUE(memkit::is_aligned(r.data(), pg));
    EXPECT_EQ(vm::resident_bytes(r.data(), std::size_t{64} << 20), 0u);
    EXPECT_EQ(vm::access_of(r.data()), page_access::none);
    EXPECT_EQ(vm::access_of(r.data() + tib - 1), page_access::none);
    // Commit a page at each end: a terabyte apart, each usable, the rest still untouched.
    poke(r.commit(0, 1), 1);
    poke(r.commit(tib - pg, pg), 2);
    EXPECT_EQ(r.committed(), 2 * pg);
    EXPECT_EQ(peek(r.data()), 1);
    EXPECT_EQ(peek(r.data() + tib - pg), 2);
    EXPECT_EQ(vm::resident_bytes(r.data(), 16 * pg), pg);
}

TEST(VirtualMemory, FreeFunctionsReserveCommitRelease) {
    void* p = vm::reserve(std::size_t{1} << 40);
    EXPECT_EQ(vm::access_of(p), page_access::none);
    vm::commit(p, 3 * pg);
    std::memset(p, 0x5a, 3 * pg);
    EXPECT_EQ(vm::resident_bytes(p, 3 * pg), 3 * pg);
    vm::decommit(p, 3 * pg);
    EXPECT_EQ(vm::resident_bytes(p, 3 * pg), 0u);
    EXPECT_FALSE(vm::try_commit(p, 3 * pg));
    EXPECT_TRUE(all_bytes(static_cast<std::byte*>(p), 3 * pg, std::byte{0}));
    vm::release(p, std::size_t{1} << 40);
    EXPECT_EQ(vm::access_of(p), std::nullopt);
}

TEST(VirtualMemory, ReserveHonoursAlignment) {
    for (std::size_t align : {std::size_t{0}, std::size_t{1}, pg, std::size_t{64} << 10,
                              std::size_t{2} << 20, std::size_t{1} << 30}) {
        void* p = vm::reserve(5 * pg, align);
        EXPECT_TRUE(memkit::is_aligned(p, align == 0 ? pg : std::max(align, pg))) << align;
        vm::commit(p, 5 * pg);
        poke(static_cast<std::byte*>(p) + 5 * pg - 1, 7);
        vm::release(p, 5 * pg);
        reservation r{pg, {.alignment = align}};
        EXPECT_TRUE(memkit::is_aligned(r.data(), align == 0 ? pg : std::max(align, pg))) << align;
    }
}

TEST(VirtualMemory, SizesAreRoundedUpToPages) {
    reservation r{pg + 1};
    EXPECT_EQ(r.size(), 2 * pg);
    r.commit(0, pg + 1);
    EXPECT_EQ(r.committed(), 2 * pg);
    EXPECT_TRUE(r.is_committed(0, 2 * pg));
    r.decommit(pg, 1);
    EXPECT_EQ(r.committed(), pg);
    EXPECT_FALSE(r.is_committed(pg, 1));
}

TEST(VirtualMemory, CommittedPagesReadZeroAndKeepTheirContents) {
    reservation r{64 * pg};
    auto* p = static_cast<std::byte*>(r.commit(0, 16 * pg));
    EXPECT_TRUE(all_bytes(p, 16 * pg, std::byte{0}));
    std::memset(p, 0xab, 16 * pg);
    // Committing again (and committing a range that overlaps) keeps what is there.
    r.commit(0, 16 * pg);
    r.commit(8 * pg, 16 * pg);
    EXPECT_TRUE(all_bytes(p, 16 * pg, std::byte{0xab}));
    EXPECT_TRUE(all_bytes(p + 16 * pg, 8 * pg, std::byte{0}));
    EXPECT_EQ(r.committed(), 24 * pg);
}

TEST(VirtualMemory, DecommitReleasesTheMemoryAndRecommitReadsZero) {
    reservation r{32 * pg};
    auto* p = static_cast<std::byte*>(r.commit(0, 16 * pg));
    std::memset(p, 0xcd, 16 * pg);
    EXPECT_EQ(vm::resident_bytes(p, 16 * pg), 16 * pg);

    r.decommit(4 * pg, 8 * pg);
    EXPECT_EQ(r.committed(), 8 * pg);
    EXPECT_EQ(vm::resident_bytes(p, 16 * pg), 8 * pg); // the RSS dropped at once
    EXPECT_EQ(vm::resident_bytes(p + 4 * pg, 8 * pg), 0u);
    EXPECT_EQ(vm::access_of(p + 4 * pg), page_access::none);
    EXPECT_EQ(vm::access_of(p), page_access::read_write);
    EXPECT_FALSE(r.is_committed(0, 16 * pg));
    EXPECT_TRUE(r.is_committed(0, 4 * pg));
    EXPECT_TRUE(r.is_committed(12 * pg, 4 * pg));

    r.commit(4 * pg, 8 * pg);
    EXPECT_TRUE(all_bytes(p, 4 * pg, std::byte{0xcd}));
    EXPECT_TRUE(all_bytes(p + 4 * pg, 8 * pg, std::byte{0}));
    EXPECT_TRUE(all_bytes(p + 12 * pg, 4 * pg, std::byte{0xcd}));
    EXPECT_EQ(r.committed(), 16 * pg);
    EXPECT_EQ(r.committed_runs(), 1u);
}

// Random commits and decommits against a per-page model: the accounting, the committed runs and
// the contents (a committed page keeps its stamp, a recommitted one reads zero) must agree.
TEST(VirtualMemory, AccountingMatchesAPageModel) {
    constexpr std::size_t pages = 256;
    reservation r{pages * pg};
    std::vector<int> stamp(pages, -1); // -1: not committed; else the byte written into it
    std::mt19937_64 rng(0x766d);
    for (int op = 0; op < 3000; ++op) {
        const std::size_t first = rng() % pages;
        const std::size_t count = 1 + rng() % std::min<std::size_t>(pages - first, 24);
        const bool commit = rng() % 3 != 0;
        if (commit) {
            auto* p = static_cast<std::byte*>(r.commit(first * pg, count * pg));
            for (std::size_t i = first; i < first + count; ++i) {
                if (stamp[i] < 0) {
                    ASSERT_EQ(peek(p + (i - first) * pg), 0) << "fresh page " << i;
                    stamp[i] = static_cast<int>(rng() % 255) + 1;
                    poke(r.data() + i * pg, static_cast<unsigned char>(stamp[i]));
                }
            }
        } else {
            r.decommit(first * pg, count * pg);
            for (std::size_t i = first; i < first + count; ++i) stamp[i] = -1;
        }
        std::size_t committed = 0;
        for (int s : stamp) committed += s >= 0 ? pg : 0;
        ASSERT_EQ(r.committed(), committed) << "op " << op;
        if (op % 100 == 0) {
            for (std::size_t i = 0; i < pages; ++i) {
                ASSERT_EQ(r.is_committed(i * pg, pg), stamp[i] >= 0) << i;
                if (stamp[i] >= 0) {
                    ASSERT_EQ(peek(r.data() + i * pg), stamp[i]) << i;
                }
            }
        }
    }
    EXPECT_EQ(vm::resident_bytes(r.data(), pages * pg), r.committed());
}

TEST(VirtualMemory, ProtectChangesAccess) {
    reservation r{4 * pg};
    auto* p = static_cast<std::byte*>(r.commit(0, 4 * pg));
    std::memset(p, 0x11, 4 * pg);
    r.protect(0, 2 * pg, page_access::read);
    EXPECT_EQ(vm::access_of(p), page_access::read);
    EXPECT_EQ(vm::access_of(p + 2 * pg), page_access::read_write);
    EXPECT_EQ(peek(p + pg), 0x11);
    r.protect(0, 2 * pg, page_access::none);
    EXPECT_EQ(vm::access_of(p), page_access::none);
    EXPECT_EQ(r.committed(), 4 * pg); // protected, still committed: the contents survive
    r.protect(0, 2 * pg, page_access::read_write);
    EXPECT_TRUE(all_bytes(p, 4 * pg, std::byte{0x11}));
    vm::protect(p, pg, page_access::read);
    EXPECT_EQ(vm::access_of(p), page_access::read);
    EXPECT_FALSE(vm::try_protect(p, pg, page_access::read_write));
}

TEST(VirtualMemory, GuardPages) {
    reservation r{8 * pg};
    r.commit(0, 8 * pg);
    r.guard(7 * pg, pg);
    EXPECT_EQ(r.committed(), 7 * pg);
    EXPECT_EQ(vm::access_of(r.data() + 7 * pg), page_access::none);
    void* p = vm::reserve(2 * pg);
    vm::commit(p, 2 * pg);
    vm::guard(static_cast<std::byte*>(p) + pg, pg);
    EXPECT_EQ(vm::access_of(static_cast<std::byte*>(p) + pg), page_access::none);
    EXPECT_EQ(vm::access_of(p), page_access::read_write);
    vm::release(p, 2 * pg);
}

TEST(VirtualMemoryDeathTest, TouchingAGuardPageKillsTheProcess) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    reservation r{4 * pg};
    r.commit(0, 4 * pg);
    r.guard(2 * pg, pg);
    poke(r.data() + pg, 1); // a committed neighbour is fine
    EXPECT_SEGV(poke(r.data() + 2 * pg, 1));
    EXPECT_SEGV((void)peek(r.data() + 2 * pg + 100));
}

TEST(VirtualMemoryDeathTest, TouchingADecommittedOrUncommittedPageKillsTheProcess) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    reservation r{4 * pg};
    r.commit(0, 2 * pg);
    poke(r.data(), 1);
    r.decommit(0, pg);
    EXPECT_SEGV((void)peek(r.data()));
    EXPECT_SEGV(poke(r.data() + 3 * pg, 1)); // reserved, never committed
}

TEST(VirtualMemoryDeathTest, WritingAReadOnlyPageKillsTheProcess) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    reservation r{pg};
    r.commit(0, pg);
    r.protect(0, pg, page_access::read);
    EXPECT_EQ(peek(r.data()), 0);
    EXPECT_SEGV(poke(r.data(), 1));
}

TEST(VirtualMemory, ReservationErrors) {
    EXPECT_THROW(reservation{0}, memkit::bad_size);
    EXPECT_THROW((reservation{pg, {.alignment = 3 * pg}}), memkit::invalid_alignment);
    EXPECT_THROW(reservation{~std::size_t{0}}, memkit::bad_size);
    // Beyond the 47-bit address space: the OS refuses, which is an allocation failure.
    EXPECT_THROW(reservation{std::size_t{1} << 62}, memkit::out_of_memory);

    reservation r{8 * pg};
    auto expect_code = [](auto&& f, memkit::errc code) {
        try {
            f();
            ADD_FAILURE() << "no exception";
        } catch (const bad_address& e) {
            EXPECT_EQ(e.code(), code) << e.what();
            EXPECT_NE(std::string(e.what()).find("memkit::reservation"), std::string::npos);
        }
    };
    expect_code([&] { r.commit(1, pg); }, memkit::errc::invalid_argument);
    expect_code([&] { r.commit(pg / 2, pg); }, memkit::errc::invalid_argument);
    expect_code([&] { r.commit(8 * pg, pg); }, memkit::errc::not_owned);
    expect_code([&] { r.commit(4 * pg, 5 * pg); }, memkit::errc::not_owned);
    expect_code([&] { r.decommit(9 * pg, pg); }, memkit::errc::not_owned);
    expect_code([&] { r.commit(pg, ~std::size_t{0} - 2 * pg); }, memkit::errc::not_owned);
    EXPECT_THROW(r.commit(0, ~std::size_t{0} - 10), memkit::bad_size); // rounding overflows
    expect_code([&] { r.protect(0, pg, page_access::read); }, memkit::errc::invalid_argument);
    EXPECT_THROW(r.commit(0, 0), memkit::bad_size);
    EXPECT_THROW(r.decommit(0, 0), memkit::bad_size);
    EXPECT_EQ(r.try_commit(0, 0), memkit::errc::bad_size);
    EXPECT_EQ(r.try_commit(pg, 8 * pg), memkit::errc::not_owned);
    EXPECT_EQ(r.try_decommit(3, pg), memkit::errc::invalid_argument);
    EXPECT_EQ(r.committed(), 0u); // failures change nothing
    EXPECT_FALSE(r.is_committed(8 * pg, 1));
    EXPECT_TRUE(r.is_committed(0, 0));
    EXPECT_FALSE(r.contains(r.data() + 8 * pg));
    EXPECT_TRUE(r.contains(r.data() + 8 * pg - 1));
}

TEST(VirtualMemory, FreeFunctionErrors) {
    EXPECT_THROW((void)vm::reserve(0), memkit::bad_size);
    EXPECT_THROW((void)vm::reserve(~std::size_t{0}), memkit::bad_size);
    EXPECT_THROW((void)vm::reserve(pg, 48), memkit::invalid_alignment);
    EXPECT_THROW((void)vm::reserve(std::size_t{1} << 62), memkit::out_of_memory);
    std::error_code ec;
    EXPECT_EQ(vm::try_reserve(0, 0, ec), nullptr);
    EXPECT_EQ(ec, memkit::errc::bad_size);
    EXPECT_EQ(vm::try_reserve(std::size_t{1} << 62, 0, ec), nullptr);
    EXPECT_EQ(ec, memkit::errc::out_of_memory);

    reservation r{2 * pg};
    try {
        vm::commit(r.data() + 1, pg);
        ADD_FAILURE() << "no exception";
    } catch (const bad_address& e) {
        EXPECT_EQ(e.code(), memkit::errc::invalid_argument);
        EXPECT_EQ(e.address(), r.data() + 1);
    }
    EXPECT_THROW(vm::commit(r.data(), 0), memkit::bad_size);
    EXPECT_THROW(vm::decommit(r.data() + 8, pg), bad_address);
    EXPECT_THROW(vm::protect(r.data() + 8, pg, page_access::read), bad_address);
    EXPECT_EQ(vm::try_commit(r.data() + 8, pg), memkit::errc::invalid_argument);
    EXPECT_EQ(vm::try_decommit(r.data(), 0), memkit::errc::bad_size);
    EXPECT_THROW((void)vm::resident_bytes(r.data() + 1, pg), bad_address);
    // An unmapped range: the kernel's ENOMEM from mprotect is an allocation failure, from mincore
    // a system error.
    void* gone = vm::reserve(pg);
    vm::release(gone, pg);
    EXPECT_THROW((void)vm::resident_bytes(gone, pg), std::system_error);
}

TEST(VirtualMemory, ReleaseOfAMisalignedRangeIsAViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    memkit::test::violation_recorder rec;
    reservation r{2 * pg};
    vm::release(r.data() + 1, pg);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::invalid_argument);
    vm::release(nullptr, 0); // the empty range is fine
    EXPECT_EQ(rec.count(), 1);
}

TEST(VirtualMemory, MovesTransferOwnership) {
    reservation a{4 * pg};
    a.commit(0, pg);
    std::byte* base = a.data();
    reservation b{std::move(a)};
    EXPECT_TRUE(a.empty());
    EXPECT_FALSE(static_cast<bool>(a));
    EXPECT_EQ(a.committed(), 0u);
    EXPECT_EQ(b.data(), base);
    EXPECT_EQ(b.committed(), pg);
    reservation c{2 * pg};
    c = std::move(b);
    EXPECT_EQ(c.data(), base);
    EXPECT_EQ(c.committed(), pg);
    c = reservation{};
    EXPECT_TRUE(c.empty());
    EXPECT_EQ(vm::access_of(base), std::nullopt); // released by the assignment

    reservation d{3 * pg};
    auto [p, n] = d.release_ownership();
    EXPECT_TRUE(d.empty());
    EXPECT_EQ(n, 3 * pg);
    EXPECT_EQ(vm::access_of(p), page_access::none);
    vm::release(p, n);
}

TEST(VirtualMemory, CommitRegionByRegion) {
    // The use a heap makes of a reservation: a fixed capacity, regions committed as needed and
    // returned independently, addresses stable throughout.
    constexpr std::size_t region = std::size_t{1} << 20;
    reservation r{std::size_t{1} << 30};
    std::vector<std::byte*> regions;
    for (std::size_t i = 0; i < 8; ++i) {
        auto* p = static_cast<std::byte*>(r.commit(i * region, region));
        std::memset(p, static_cast<int>(i + 1), region);
        regions.push_back(p);
    }
    EXPECT_EQ(r.committed(), 8 * region);
    r.decommit(r.offset_of(regions[2]), region);
    r.decommit(r.offset_of(regions[5]), 2 * region);
    EXPECT_EQ(r.committed(), 5 * region);
    for (std::size_t i : {0u, 1u, 3u, 4u, 7u})
        EXPECT_TRUE(all_bytes(regions[i], region, static_cast<std::byte>(i + 1))) << i;
    EXPECT_EQ(vm::resident_bytes(r.data(), 8 * region), 5 * region);
}

TEST(VirtualMemory, TransparentHugePages) {
    const std::size_t hps = vm::huge_page_size();
    reservation r{std::size_t{8} << 20, {.huge_pages = memkit::huge_page_request::transparent}};
    const memkit::thp_mode mode = vm::transparent_huge_page_mode();
    if (hps == 0 || mode == memkit::thp_mode::never) {
        EXPECT_EQ(r.huge_pages(), memkit::huge_page_status::huge_pages_unavailable);
        return;
    }
    EXPECT_EQ(r.huge_pages(), memkit::huge_page_status::transparent);
    EXPECT_TRUE(memkit::is_aligned(r.data(), hps));
    EXPECT_EQ(r.size() % hps, 0u);
    auto* p = static_cast<std::byte*>(r.commit(0, r.size()));
    std::memset(p, 1, r.size());
    const auto huge = vm::anon_huge_bytes(p, r.size());
    ASSERT_TRUE(huge.has_value());
    // The kernel may decline (fragmented memory), so this records rather than requires it.
    RecordProperty("anon_huge_bytes", std::to_string(*huge));
    EXPECT_LE(*huge, r.size());
}

TEST(VirtualMemory, ExplicitHugePagesOrAFallbackStatus) {
    const std::size_t hps = vm::huge_page_size();
    const auto free_pages = vm::free_explicit_huge_pages();
    const std::size_t want = hps == 0 ? std::size_t{4} << 20 : 2 * hps;
    reservation r{want, {.huge_pages = memkit::huge_page_request::explicit_pages}};
    ASSERT_FALSE(r.empty());
    if (hps != 0 && free_pages && *free_pages >= 2) {
        ASSERT_EQ(r.huge_pages(), memkit::huge_page_status::explicit_pages);
        EXPECT_EQ(r.granularity(), hps);
        EXPECT_EQ(r.committed(), r.size());
        std::memset(r.data(), 3, r.size());
        r.decommit(hps, hps);
        EXPECT_EQ(r.committed(), hps);
        r.commit(hps, 1);
        EXPECT_EQ(peek(r.data() + hps), 0);
        EXPECT_EQ(peek(r.data()), 3);
    } else {
        // No pool: a status, not a failure; the reservation works with the fallback pages.
        EXPECT_NE(r.huge_pages(), memkit::huge_page_status::explicit_pages);
        EXPECT_NE(r.huge_pages(), memkit::huge_page_status::not_requested);
        EXPECT_EQ(r.granularity(), pg);
        EXPECT_EQ(r.committed(), 0u);
        poke(r.commit(0, pg), 9);
        std::error_code ec;
        EXPECT_EQ(vm::map_explicit_huge_pages(want, ec), nullptr);
        EXPECT_TRUE(ec);
    }
}

} // namespace
