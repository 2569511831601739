#include "memkit/vm/ksm.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/vm/virtual_memory.hpp"

namespace {

using memkit::dedup_report;
using memkit::page_deduplicator;
namespace vm = memkit::vm;
namespace ksm = memkit::vm::ksm;

const std::size_t pg = vm::page_size();

// Fills page `i` of a buffer with content that depends on `seed` and `i` only.
void fill_page(std::byte* page, std::size_t size, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (std::size_t j = 0; j < size; j += 8) {
        const std::uint64_t v = rng();
        std::memcpy(page + j, &v, 8);
    }
}

TEST(PageDeduplicator, CountsIdenticalBuffersExactly) {
    constexpr std::size_t buffers = 32, pages_per_buffer = 8;
    memkit::reservation r{buffers * pages_per_buffer * pg};
    auto* mem = static_cast<std::byte*>(r.commit(0, r.size()));
    for (std::size_t b = 0; b < buffers; ++b)
        for (std::size_t i = 0; i < pages_per_buffer; ++i)
            fill_page(mem + (b * pages_per_buffer + i) * pg, pg, 1000 + i); // same in every buffer

    page_deduplicator d;
    for (std::size_t b = 0; b < buffers; ++b)
        d.add({mem + b * pages_per_buffer * pg, pages_per_buffer * pg});
    const dedup_report rep = d.report();
    EXPECT_EQ(rep.page_size, pg);
    EXPECT_EQ(rep.pages, buffers * pages_per_buffer);
    EXPECT_EQ(rep.distinct_pages, pages_per_buffer);
    EXPECT_EQ(rep.duplicate_pages, (buffers - 1) * pages_per_buffer);
    EXPECT_EQ(rep.largest_group, buffers);
    EXPECT_EQ(rep.zero_pages, 0u);
    EXPECT_EQ(rep.skipped_bytes, 0u);
    EXPECT_EQ(rep.saved_bytes(), (buffers - 1) * pages_per_buffer * pg);
    EXPECT_DOUBLE_EQ(rep.saving_ratio(), 31.0 / 32.0);

    // One byte changed makes a page distinct.
    mem[5 * pg + pg - 1] ^= std::byte{1};
    const dedup_report again = page_deduplicator::scan({mem, r.size()});
    EXPECT_EQ(again.distinct_pages, pages_per_buffer + 1);
    EXPECT_EQ(again.duplicate_pages, buffers * pages_per_buffer - pages_per_buffer - 1);

    d.clear();
    EXPECT_EQ(d.report().pages, 0u);
    EXPECT_EQ(d.report().page_size, pg);
}

TEST(PageDeduplicator, ZeroPagesAndPartialPages) {
    memkit::reservation r{16 * pg};
    auto* mem = static_cast<std::byte*>(r.commit(0, 16 * pg));
    fill_page(mem + 3 * pg, pg, 7);
    // A range that starts and ends inside pages: only the 14 whole pages inside count.
    const dedup_report rep = page_deduplicator::scan({mem + 100, 15 * pg});
    EXPECT_EQ(rep.pages, 14u);
    EXPECT_EQ(rep.skipped_bytes, (pg - 100) + 100);
    EXPECT_EQ(rep.zero_pages, 13u);
    EXPECT_EQ(rep.distinct_pages, 2u);
    EXPECT_EQ(rep.duplicate_pages, 12u);
    EXPECT_EQ(rep.largest_group, 13u);

    const dedup_report tiny = page_deduplicator::scan({mem + 1, pg - 2});
    EXPECT_EQ(tiny.pages, 0u);
    EXPECT_EQ(tiny.skipped_bytes, pg - 2);
    EXPECT_EQ(tiny.saving_ratio(), 0.0);
    EXPECT_EQ(page_deduplicator::scan({}).pages, 0u);

    bool zero = false;
    (void)page_deduplicator::hash_page(mem, pg, zero);
    EXPECT_TRUE(zero);
    (void)page_deduplicator::hash_page(mem + 3 * pg, pg, zero);
    EXPECT_FALSE(zero);
}

// Random pages drawn from a few templates (with small variations), against a std::map model
// keyed by the page bytes.
TEST(PageDeduplicator, MatchesAContentModel) {
    constexpr std::size_t page = 256, pages = 20000;
    std::vector<std::byte> buf((pages + 1) * page);
    std::byte* mem = memkit::align_up(buf.data(), page);
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i < pages; ++i) {
        fill_page(mem + i * page, page, rng() % 300);
        if (rng() % 4 == 0) mem[i * page + rng() % page] = static_cast<std::byte>(rng());
    }
    std::map<std::string, std::size_t> model;
    for (std::size_t i = 0; i < pages; ++i)
        ++model[std::string(reinterpret_cast<const char*>(mem + i * page), page)];
    std::size_t largest = 0;
    for (auto& [k, n] : model) largest = std::max(largest, n);

    page_deduplicator d{page};
    d.add({mem, pages * page / 2});
    d.add({mem + pages * page / 2, pages * page / 2});
    const dedup_report rep = d.report();
    EXPECT_EQ(rep.pages, pages);
    EXPECT_EQ(rep.distinct_pages, model.size());
    EXPECT_EQ(rep.duplicate_pages, pages - model.size());
    EXPECT_EQ(rep.largest_group, largest);
}

TEST(PageDeduplicator, RejectsBadPageSizes) {
    EXPECT_THROW(page_deduplicator{0}, std::invalid_argument);
    EXPECT_THROW(page_deduplicator{32}, std::invalid_argument);
    EXPECT_THROW(page_deduplicator{1000}, std::invalid_argument);
    EXPECT_NO_THROW(page_deduplicator{64});
}

TEST(Ksm, StatusNeverThrowsAndSaysWhatIsMissing) {
    const memkit::ksm_status s = ksm::status();
    const bool has_dir = ::access("/sys/kernel/mm/ksm", F_OK) == 0;
    EXPECT_EQ(s.available, has_dir);
    if (!has_dir) {
        EXPECT_FALSE(s.run.has_value());
        EXPECT_FALSE(s.unreadable.empty());
        EXPECT_FALSE(s.saved_bytes().has_value());
        return;
    }
    // Every field is either read or named in `unreadable`.
    const std::pair<const char*, bool> fields[] = {{"run", s.run.has_value()},
                                                   {"pages_shared", s.pages_shared.has_value()},
                                                   {"pages_sharing", s.pages_sharing.has_value()},
                                                   {"pages_unshared", s.pages_unshared.has_value()},
                                                   {"full_scans", s.full_scans.has_value()}};
    for (auto [name, present] : fields)
        if (!present) {
            EXPECT_NE(s.unreadable.find(name), std::string::npos) << name;
        }
    if (s.pages_sharing) {
        EXPECT_EQ(*s.saved_bytes(), *s.pages_sharing * pg);
    }
}

TEST(Ksm, MarkAndUnmarkMergeable) {
    memkit::reservation r{8 * pg};
    auto* mem = static_cast<std::byte*>(r.commit(0, 8 * pg));
    const std::error_code ec = ksm::mark_mergeable({mem, 8 * pg});
    if (ec == std::errc::not_supported) GTEST_SKIP() << "kernel without KSM: " << ec.message();
    EXPECT_FALSE(ec) << ec.message();
    // Unaligned spans are narrowed to their whole pages; less than a page is nothing to do.
    EXPECT_FALSE(ksm::mark_mergeable({mem + 1, 3 * pg}));
    EXPECT_FALSE(ksm::mark_mergeable({mem + 1, 10}));
    EXPECT_FALSE(ksm::mark_mergeable({}));
    EXPECT_FALSE(ksm::unmark_mergeable({mem, 8 * pg}));
}

TEST(Ksm, ProcessWideMergingIsAStatus) {
    const std::optional<bool> before = ksm::process_merging();
    // Switching it off unmerges every mapping of the process, which walks AddressSanitizer's
    // terabytes of shadow mappings page table by page table (tens of seconds).
    if (memkit::has_address_sanitizer)
        GTEST_SKIP() << "process-wide KSM toggling is too slow under AddressSanitizer; "
                        "PR_GET_MEMORY_MERGE answered "
                     << (before ? (*before ? "on" : "off") : "unsupported");
    const std::error_code ec = ksm::set_process_merging(true);
    if (!before) {
        // A kernel before 6.4: the switch is reported as unsupported, never as a crash.
        EXPECT_TRUE(ec);
        return;
    }
    if (ec) {
        EXPECT_TRUE(ec == std::errc::operation_not_permitted ||
                    ec == std::errc::permission_denied || ec == std::errc::not_supported)
            << ec.message();
        return;
    }
    EXPECT_EQ(ksm::process_merging(), true);
    EXPECT_FALSE(ksm::set_process_merging(*before));
    EXPECT_EQ(ksm::process_merging(), before);
}

// The real thing: N identical buffers, marked mergeable, with ksmd running. Only where this
// process may switch KSM on (root, writable sysfs); ksm_run_guard restores the settings.
TEST(Ksm, MergesIdenticalBuffers) {
    const memkit::ksm_status before = ksm::status();
    memkit::ksm_run_guard guard{memkit::ksm_run_state::merging,
                                {.pages_to_scan = 4096, .sleep_millisecs = 10}};
    if (!guard.active())
        GTEST_SKIP() << "KSM cannot be switched on here (needs root and a writable "
                        "/sys/kernel/mm/ksm/run): "
                     << guard.error().message();
    ASSERT_TRUE(guard.previous().has_value());

    constexpr std::size_t buffers = 64, pages_per_buffer = 16;
    memkit::reservation r{buffers * pages_per_buffer * pg};
    auto* mem = static_cast<std::byte*>(r.commit(0, r.size()));
    for (std::size_t b = 0; b < buffers; ++b)
        for (std::size_t i = 0; i < pages_per_buffer; ++i)
            fill_page(mem + (b * pages_per_buffer + i) * pg, pg, 77 + i);
    const dedup_report expected = page_deduplicator::scan({mem, r.size()});
    ASSERT_EQ(expected.duplicate_pages, (buffers - 1) * pages_per_buffer);

    const auto process_pages = ksm::process_merging_pages();
    ASSERT_FALSE(ksm::mark_mergeable({mem, r.size()}));

    // Pages merged into this process: /proc/self/ksm_merging_pages counts every page of ours
    // that maps a KSM page (the kept copies included), so it reaches buffers * pages_per_buffer.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::uint64_t merged = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        if (process_pages) {
            merged = ksm::process_merging_pages().value_or(0);
        } else {
            const auto now = ksm::status();
            merged = now.pages_sharing.value_or(0) - before.pages_sharing.value_or(0);
        }
        if (merged >= buffers * pages_per_buffer - pages_per_buffer) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // Saving: every merged page but one copy per distinct content.
    const double saving =
        static_cast<double>(merged > pages_per_buffer ? merged - pages_per_buffer : 0) /
        static_cast<double>(buffers * pages_per_buffer);
    RecordProperty("ksm_merged_pages", std::to_string(merged));
    RecordProperty("ksm_saving_percent", std::to_string(static_cast<int>(saving * 100)));
    EXPECT_GT(saving, 0.40) << "merged " << merged << " of " << buffers * pages_per_buffer;
    EXPECT_LE(merged, expected.pages);
    EXPECT_FALSE(ksm::unmark_mergeable({mem, r.size()}));
}

std::string read_line(const char* path) {
    std::ifstream f(path);
    std::string s;
    std::getline(f, s);
    return s;
}

TEST(Ksm, RunGuardRestoresTheEarlierSettings) {
    const memkit::ksm_status before = ksm::status();
    const std::string pages_to_scan = read_line("/sys/kernel/mm/ksm/pages_to_scan");
    {
        memkit::ksm_run_guard guard{memkit::ksm_run_state::merging, {.pages_to_scan = 1234}};
        if (!guard.active())
            GTEST_SKIP() << "cannot write KSM settings: " << guard.error().message();
        EXPECT_EQ(ksm::status().run, memkit::ksm_run_state::merging);
        EXPECT_EQ(guard.previous(), before.run);
    }
    EXPECT_EQ(ksm::status().run, before.run);
    EXPECT_EQ(read_line("/sys/kernel/mm/ksm/pages_to_scan"), pages_to_scan);
}

} // namespace
