// memkit/vm/virtual_arena.hpp - a bump arena in one reserved address range that commits memory as
// it grows, so its memory is contiguous and its pointers never move.
//
// `virtual_arena` reserves a large range of address space once (64 GiB by default on 64-bit
// systems: address space only, no memory, see memkit::reservation) and commits it front to back in
// steps of `commit_step` as allocations reach the end of the committed part. Unlike memkit::arena
// it has no blocks: everything it ever hands out lies in [base(), base() + used()), one run of
// addresses, so a growing array can live at the start of it and simply keep growing, a "rewind"
// is one pointer assignment, and `owns()` is two comparisons. Memory goes back to the OS with
// reset(), release() (all of it) or trim(keep). reset() decommits everything above what the
// round it ends used (`retain_last_round`, on by default) and at least `retain_on_reset` (4 MiB):
// a steady per-batch workload keeps its pages and takes no page faults after its first round,
// while a round smaller than the one before gives the difference back at once (decommit drops
// the RSS immediately). Set retain_last_round = false to keep exactly retain_on_reset.
//
// Growth costs page faults: a fresh page is zeroed by the kernel at its first touch. By default
// each commit step is prefaulted in one system call (`populate`, MADV_POPULATE_WRITE), which
// nearly halves the cost of growing into new memory compared with one fault per page (measured in
// bench/vm/virtual_arena_bench.cpp). A heap allocator that recycles memory the process already
// touched avoids faults entirely, so a virtual_arena created fresh for each short task is slower
// than memkit::arena over malloc; keep one arena and reset() it.
//
// Why 64 GiB: x86-64 and AArch64 give a process 128 TiB (47 bits) of user address space, so two
// thousand such arenas still fit; the reservation is PROT_NONE + MAP_NORESERVE, which costs one
// kernel mapping entry, no page tables, no RSS and no commit charge (it succeeds under
// vm.overcommit_memory = 2 and with little RAM). Choose a smaller `reserve_size` where RLIMIT_AS
// (ulimit -v) is set or many arenas are created. On 32-bit systems the default is 256 MiB.
//
// Allocation is the same two-compare fast path as memkit::arena; only reaching the committed end
// takes the out-of-line path (one mprotect per step, plus one madvise with `populate`).
// deallocate() of the most recent block rolls the arena back over it (the LIFO case of a
// temporary buffer); any other deallocate is a no-op, as in memkit::arena. mark()/rewind() and the
// RAII `scope` return to an earlier point without decommitting anything.
//
// Huge pages: `huge_page_request::transparent` aligns the reservation to the huge page size and
// commits in whole huge pages, so that the kernel can back the arena with 2 MiB pages;
// `explicit_pages` maps MAP_HUGETLB pages for the whole reservation up front (size it
// accordingly) and falls back to transparent, then standard pages. huge_pages() says which.
//
// Complexity: allocate O(1) (plus one or two system calls per commit step); deallocate, mark,
// rewind, owns, stats O(1); reset/release/trim O(1) plus one decommit call.
// Thread-safety: not thread-safe (one arena per thread, or memkit::synchronized).
// Failure: allocate throws out_of_memory when the reservation is exhausted or the OS refuses to
// commit (commit limit, map count), bad_size for a zero size, invalid_alignment for a
// non-power-of-two alignment or one above max_alignment (64 KiB); try_allocate returns nullptr.
// The constructor throws like memkit::reservation (out_of_memory when no address space is left).
// deallocate of a pointer the arena does not own is a debug-checked precondition
// (errc::not_owned to the violation handler). A failed commit leaves the arena unchanged.
//
//   memkit::virtual_arena a;                              // 64 GiB of addresses, nothing committed
//   auto* v = static_cast<float*>(a.allocate(1 << 20));   // the first MiB is committed now
//   a.reset();                                            // everything freed, pages kept
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "memkit/core/align.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/vm/virtual_memory.hpp"

namespace memkit {

struct virtual_arena_options {
    /// Address space reserved once (rounded up to the page or huge page size).
    std::size_t reserve_size = sizeof(void*) >= 8 ? std::size_t{64} << 30 : std::size_t{256} << 20;
    /// Memory committed at a time as the arena grows (rounded up to the page size, or to the
    /// huge page size with transparent huge pages). Larger steps mean fewer system calls; the
    /// RSS still grows only as pages are touched.
    std::size_t commit_step = std::size_t{256} << 10;
    /// Committed bytes kept by reset() for the next round (rounded up to commit steps), so that a
    /// per-frame or per-request arena does not fault its pages in again every time; the rest is
    /// decommitted. 0 decommits everything; SIZE_MAX keeps everything.
    std::size_t retain_on_reset = std::size_t{4} << 20;
    /// reset() also keeps what the round it ends used (so a steady workload of any size stops
    /// paying page faults after its first round); a smaller round gives the excess back at its
    /// own reset(). false: reset() keeps exactly retain_on_reset.
    bool retain_last_round = true;
    /// Prefault each commit step in one system call (vm::populate, Linux 5.14+) instead of one
    /// page fault per page at first touch: about 2x faster growth, measured. A bump arena touches
    /// its memory in order anyway, so this costs at most one step of RSS ahead of use.
    bool populate = true;
    huge_page_request huge_pages = huge_page_request::none;
};

class virtual_arena {
public:
    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = std::size_t{1} << 16;
    static constexpr const char* name = "memkit::virtual_arena";

    /// A point in the arena's history. Valid until the arena is reset, released or rewound to an
    /// earlier point.
    struct marker {
        std::byte* cur;
        std::size_t bytes;
        std::uint64_t allocations;
    };

    /// Rewinds the arena to where it was at construction when it goes out of scope.
    class scope {
    public:
        explicit scope(virtual_arena& a) noexcept : a_(&a), m_(a.mark()) {}
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;
        ~scope() { a_->rewind(m_); }

    private:
        virtual_arena* a_;
        marker m_;
    };

    /// Reserves the address space (throws out_of_memory, bad_size or std::system_error).
    virtual_arena() : virtual_arena(virtual_arena_options{}) {}
    explicit virtual_arena(virtual_arena_options opts);

    virtual_arena(const virtual_arena&) = delete;
    virtual_arena& operator=(const virtual_arena&) = delete;
    /// Moves leave the source empty: it owns no address space and every allocation fails
    /// (out_of_memory).
    virtual_arena(virtual_arena&& o) noexcept;
    virtual_arena& operator=(virtual_arena&& o) noexcept;
    ~virtual_arena() = default;

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        // As in memkit::arena: the aligned address lies in [cur, end] and the block fits after it
        // (size - 1 wraps for size 0); integer arithmetic so no out-of-range pointer is formed.
        const auto cur = reinterpret_cast<std::uintptr_t>(cur_);
        const auto end = reinterpret_cast<std::uintptr_t>(end_);
        const std::uintptr_t p = (cur + align - 1) & ~static_cast<std::uintptr_t>(align - 1);
        if (MEMKIT_LIKELY(p - cur <= end - cur && size - 1 < end - p &&
                          (align & (align - 1)) == 0)) {
            cur_ = reinterpret_cast<std::byte*>(p + size);
            bytes_ += size;
            ++allocations_;
            return reinterpret_cast<void*>(p);
        }
        return allocate_slow(size, align);
    }

    /// Rolls the arena back over `p` if it is the most recent block; otherwise a no-op (the
    /// memory comes back with rewind, reset or release). Counted in stats().deallocations.
    void deallocate(void* p, std::size_t size,
                    std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(p != nullptr && !owns(p))) {
                report_violation(
                    {errc::not_owned, name, p, "pointer is not below the arena's top"});
                return;
            }
        }
        if (p != nullptr && static_cast<std::byte*>(p) + size == cur_) {
            note_peak();
            cur_ = static_cast<std::byte*>(p);
            bytes_ -= size;
        }
        ++deallocations_;
    }

    [[nodiscard]] marker mark() const noexcept { return {cur_, bytes_, allocations_}; }

    /// Frees everything allocated after `m` was taken. Nothing is decommitted.
    void rewind(const marker& m) noexcept {
        note_peak();
        cur_ = m.cur;
        bytes_ = m.bytes;
        allocations_ = m.allocations;
    }

    /// Frees every allocation and decommits what lies above `retain_on_reset` (or above what
    /// this round used, with `retain_last_round`).
    void reset() noexcept {
        const std::size_t keep = opts_.retain_last_round && used() > opts_.retain_on_reset
                                     ? used()
                                     : opts_.retain_on_reset;
        reset_to(keep);
    }

    /// Frees every allocation and decommits all memory; the address space stays reserved.
    void release() noexcept { reset_to(0); }

    /// Decommits committed memory above max(used(), keep_bytes) (rounded up to commit steps);
    /// live allocations are untouched.
    void trim(std::size_t keep_bytes = 0) noexcept;

    /// Commits at least `bytes` from the start of the arena now (for example to keep page faults
    /// out of a latency-sensitive phase: the memory is committed, the pages are still faulted in
    /// at first touch). Throws out_of_memory when bytes exceeds the reservation or the OS refuses.
    void commit_ahead(std::size_t bytes);

    /// True if `p` lies in memory handed out and not rewound: [base(), base() + used()).
    [[nodiscard]] bool owns(const void* p) const noexcept {
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        const auto b = reinterpret_cast<std::uintptr_t>(res_.data());
        return a - b < static_cast<std::size_t>(cur_ - res_.data());
    }

    /// bytes_in_use: requested bytes not yet freed (a rollback, rewind, reset or release frees);
    /// capacity: committed bytes.
    [[nodiscard]] allocator_stats stats() const noexcept {
        return {bytes_, peak_ > bytes_ ? peak_ : bytes_, committed(), allocations_, deallocations_};
    }

    /// The start of the arena: every block lies in [base(), base() + used()).
    [[nodiscard]] std::byte* base() const noexcept { return res_.data(); }
    /// Bytes from base() to the top, alignment padding included.
    [[nodiscard]] std::size_t used() const noexcept {
        return static_cast<std::size_t>(cur_ - res_.data());
    }
    /// Bytes committed (usable without a system call).
    [[nodiscard]] std::size_t committed() const noexcept { return res_.committed(); }
    /// Committed bytes left above the top.
    [[nodiscard]] std::size_t remaining() const noexcept {
        return static_cast<std::size_t>(end_ - cur_);
    }
    /// Address space reserved: the most the arena can ever hold.
    [[nodiscard]] std::size_t reserved() const noexcept { return res_.size(); }
    [[nodiscard]] std::size_t max_size() const noexcept { return res_.size(); }
    [[nodiscard]] huge_page_status huge_pages() const noexcept { return res_.huge_pages(); }
    [[nodiscard]] const virtual_arena_options& options() const noexcept { return opts_; }
    /// The underlying reservation (for diagnostics: committed runs, granularity).
    [[nodiscard]] const reservation& region() const noexcept { return res_; }

    scope make_scope() noexcept { return scope{*this}; }

private:
    void note_peak() noexcept {
        if (bytes_ > peak_) peak_ = bytes_;
    }
    MEMKIT_NOINLINE void* allocate_slow(std::size_t size, std::size_t align) noexcept;
    [[noreturn]] MEMKIT_COLD void fail(std::size_t size, std::size_t align) const;
    // Commits up to at least offset `need` (in commit steps, clamped to the reservation).
    bool grow_to(std::size_t need) noexcept;
    void reset_to(std::size_t keep) noexcept;

    // The fast path touches cur_, end_ and the two counters only; the counters are kept apart
    // for the reason given in memkit::arena (store forwarding).
    std::byte* cur_ = nullptr;
    std::size_t bytes_ = 0;
    std::byte* end_ = nullptr; // end of the committed part
    std::uint64_t allocations_ = 0;
    std::uint64_t deallocations_ = 0;
    std::size_t peak_ = 0;
    std::size_t step_ = 0;
    virtual_arena_options opts_{};
    reservation res_;
};

namespace pmr {
/// A std::pmr::memory_resource that owns a virtual_arena: `memkit::pmr::virtual_arena_resource
/// r{memkit::virtual_arena_options{...}}; std::pmr::vector<int> v{&r};`. To refer to an arena that
/// lives elsewhere, use `memkit::resource r{arena}`.
using virtual_arena_resource = memkit::resource<memkit::virtual_arena>;
} // namespace pmr

} // namespace memkit
