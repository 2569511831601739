// memkit/vm/ksm.hpp - kernel samepage merging (KSM) and a page deduplication estimator.
//
// KSM is a Linux kernel thread (ksmd) that scans memory a process has marked mergeable, finds
// pages with identical contents and maps them to one write-protected copy; a later write gives the
// writer a private copy again (copy-on-write). Many similar processes or buffers (VM images,
// containers, replicated caches, per-tenant copies of the same tables) can save a large part of
// their memory this way, at the cost of ksmd's CPU time and of slower first writes to merged pages.
//
// What is here:
//  * vm::ksm::mark_mergeable(span) / unmark_mergeable(span): madvise(MADV_MERGEABLE /
//    MADV_UNMERGEABLE) on the whole pages inside the span (KSM works on pages; a span shorter
//    than a page has none and succeeds with nothing marked).
//  * vm::ksm::set_process_merging(bool): prctl(PR_SET_MEMORY_MERGE) (Linux 6.4+) makes every
//    present and future anonymous mapping of the process mergeable; process_merging() asks.
//  * vm::ksm::status(): the global counters of /sys/kernel/mm/ksm (run, pages_shared,
//    pages_sharing, pages_unshared, full_scans) and vm::ksm::process_merging_pages(), this
//    process's merged pages (/proc/self/ksm_merging_pages, Linux 6.1+). What cannot be read is
//    reported in the result (an empty optional and a line in `unreadable`), never thrown.
//  * memkit::ksm_run_guard: switches ksmd on (root, writable /sys/kernel/mm/ksm/run) and restores
//    the earlier settings when destroyed; error() says why it could not.
//  * memkit::page_deduplicator: hashes the pages of any readable ranges and counts identical
//    ones exactly (hash, then byte comparison, as KSM itself does): the saving KSM could give,
//    measured without KSM, without root and without waiting for ksmd.
//
// Status, not exceptions: the KSM functions are noexcept and return a std::error_code: empty on
// success; std::errc::not_supported when the kernel lacks the feature (no CONFIG_KSM, or a kernel
// before 6.4 for PR_SET_MEMORY_MERGE); std::errc::operation_not_permitted / permission_denied
// without the privilege (CAP_SYS_RESOURCE for the prctl, root for sysfs); memkit::errc::
// out_of_memory when the kernel has no memory for its bookkeeping; other errno values as they are.
//
// Complexity: mark/unmark one system call (the merging itself happens later, in ksmd, at
// pages_to_scan pages every sleep_millisecs). page_deduplicator::add is O(pages) with one 64-bit
// hash per page and one memcmp per page whose hash was seen before; report() is O(1).
// Thread-safety: the vm::ksm functions are thread-safe; ksm_run_guard changes system-wide
// settings (use one at a time); page_deduplicator is not thread-safe (concurrent const access is
// fine).
//
//   std::span<std::byte> buf = ...;                       // page-aligned buffers work best
//   if (auto ec = memkit::vm::ksm::mark_mergeable(buf)) log("KSM unavailable: ", ec.message());
//   memkit::dedup_report r = memkit::page_deduplicator::scan(buf);  // r.saved_bytes()
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "memkit/vm/virtual_memory.hpp"

namespace memkit {

/// The value of /sys/kernel/mm/ksm/run.
enum class ksm_run_state : int {
    stopped = 0,   ///< ksmd sleeps; merged pages stay merged
    merging = 1,   ///< ksmd scans and merges
    unmerging = 2, ///< ksmd stops and unmerges every merged page
};

/// A snapshot of the global KSM counters. Every field is optional: a field is empty when its file
/// could not be read, and `unreadable` then says which and why ("pages_shared: No such file ...").
struct ksm_status {
    bool available = false; ///< /sys/kernel/mm/ksm exists (the kernel has KSM)
    std::optional<ksm_run_state> run;
    std::optional<std::uint64_t> pages_shared;   ///< shared pages in use (the kept copies)
    std::optional<std::uint64_t> pages_sharing;  ///< further mappings of them: pages saved
    std::optional<std::uint64_t> pages_unshared; ///< unique pages checked repeatedly
    std::optional<std::uint64_t> full_scans;     ///< completed scans of all mergeable memory
    std::string unreadable;                      ///< empty when everything was read

    /// Memory saved system-wide: pages_sharing * page size (empty if pages_sharing is unknown).
    [[nodiscard]] std::optional<std::size_t> saved_bytes() const noexcept;
};

/// Optional faster scanning while a ksm_run_guard is active (the defaults are slow: 100 pages
/// every 20 ms).
struct ksm_tuning {
    std::optional<unsigned> pages_to_scan{};
    std::optional<unsigned> sleep_millisecs{};
};

/// Sets /sys/kernel/mm/ksm/run (and the tuning) for its lifetime and restores the earlier values
/// in its destructor. Never throws: active() is false and error() says why when the settings
/// cannot be written (not root, read-only sysfs, no KSM). Not copyable or movable.
class ksm_run_guard {
public:
    explicit ksm_run_guard(ksm_run_state state = ksm_run_state::merging,
                           ksm_tuning tuning = {}) noexcept;
    ksm_run_guard(const ksm_run_guard&) = delete;
    ksm_run_guard& operator=(const ksm_run_guard&) = delete;
    ~ksm_run_guard();

    [[nodiscard]] bool active() const noexcept { return !error_; }
    [[nodiscard]] std::error_code error() const noexcept { return error_; }
    /// The run value found at construction (restored by the destructor).
    [[nodiscard]] std::optional<ksm_run_state> previous() const noexcept { return previous_; }

private:
    std::error_code error_;
    std::optional<ksm_run_state> previous_;
    std::optional<unsigned> previous_pages_to_scan_, previous_sleep_;
};

/// What page_deduplicator found. Pages are whole, aligned pages of the ranges given.
struct dedup_report {
    std::size_t page_size = 0;
    std::size_t pages = 0;           ///< pages examined
    std::size_t distinct_pages = 0;  ///< different contents among them
    std::size_t duplicate_pages = 0; ///< pages - distinct_pages: freed if identical pages merged
    std::size_t zero_pages = 0;      ///< pages that are all zero (one of the distinct contents)
    std::size_t largest_group = 0;   ///< most pages with one content
    std::size_t skipped_bytes = 0;   ///< bytes at range ends outside whole pages (not examined)

    /// What merging identical pages would free: duplicate_pages * page_size.
    [[nodiscard]] std::size_t saved_bytes() const noexcept { return duplicate_pages * page_size; }
    /// duplicate_pages / pages (0 when nothing was examined).
    [[nodiscard]] double saving_ratio() const noexcept {
        return pages == 0 ? 0.0 : static_cast<double>(duplicate_pages) / static_cast<double>(pages);
    }
};

/// Counts identical pages across the ranges given to add(), exactly: pages are grouped by a
/// 64-bit hash and a page joins a group only if its bytes equal the group's first page. The
/// first page of each group is remembered by address, so the ranges must stay alive, readable
/// and unchanged until clear() or destruction (the counts are taken during add()).
///
/// Errors: the constructor throws std::invalid_argument for a page size that is not a power of
/// two or is below 64; add() throws std::bad_alloc if its table cannot grow (the pages counted so
/// far stay counted; the range that was being added is partly counted).
class page_deduplicator {
public:
    explicit page_deduplicator(std::size_t page_size = vm::page_size());

    /// Examines every whole page of `range` (pages aligned to page_size inside it).
    void add(std::span<const std::byte> range);

    [[nodiscard]] dedup_report report() const noexcept { return report_; }
    void clear() noexcept;

    /// One range, one report.
    [[nodiscard]] static dedup_report scan(std::span<const std::byte> range,
                                           std::size_t page_size = vm::page_size());

    /// The page hash (exposed for tests and tools): 64 bits, not collision-resistant (equal
    /// hashes are confirmed byte by byte). size must be a multiple of 64.
    [[nodiscard]] static std::uint64_t hash_page(const std::byte* page, std::size_t size,
                                                 bool& all_zero) noexcept;

private:
    struct slot {
        std::uint64_t hash;
        std::uint32_t group; // index + 1 into groups_; 0: empty
    };
    struct group {
        const std::byte* first;
        std::size_t count;
    };
    void add_page(const std::byte* page);
    void grow();

    std::size_t page_size_;
    std::vector<slot> slots_; // open addressing, power-of-two size, load <= 1/2
    std::vector<group> groups_;
    dedup_report report_;
};

namespace vm::ksm {

/// madvise(MADV_MERGEABLE) on the whole pages inside `range`.
[[nodiscard]] std::error_code mark_mergeable(std::span<std::byte> range) noexcept;
/// madvise(MADV_UNMERGEABLE): merged pages get private copies again (this can need memory).
[[nodiscard]] std::error_code unmark_mergeable(std::span<std::byte> range) noexcept;

/// prctl(PR_SET_MEMORY_MERGE): every anonymous mapping of the process, present and future, is
/// mergeable (or none is). std::errc::not_supported before Linux 6.4.
[[nodiscard]] std::error_code set_process_merging(bool enabled) noexcept;
/// prctl(PR_GET_MEMORY_MERGE); empty when the kernel does not have it.
[[nodiscard]] std::optional<bool> process_merging() noexcept;

/// The global counters (see ksm_status); never throws except std::bad_alloc for the text.
[[nodiscard]] ksm_status status();

/// Pages of this process currently merged by KSM (/proc/self/ksm_merging_pages, Linux 6.1+);
/// empty when the kernel does not report it.
[[nodiscard]] std::optional<std::uint64_t> process_merging_pages() noexcept;

/// Writes /sys/kernel/mm/ksm/run (root). Prefer ksm_run_guard, which restores the old value.
[[nodiscard]] std::error_code set_run(ksm_run_state state) noexcept;

} // namespace vm::ksm

} // namespace memkit
