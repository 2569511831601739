// memkit/vm/virtual_memory.hpp - address space reservation, commit/decommit, protection, guard
// pages and huge pages.
//
// Virtual memory lets a program separate *address space* from *memory*. `vm::reserve` takes a
// range of addresses that nothing else in the process will be given, without memory behind it
// (PROT_NONE, MAP_NORESERVE on Linux: no RSS, no commit charge, no swap reservation). `vm::commit`
// makes pages of that range readable and writable; their memory appears when first touched and
// reads zero. `vm::decommit` gives the memory of committed pages back to the OS at once and makes
// them inaccessible again, so a later touch faults instead of silently reading stale data.
// Because the addresses never change, structures that grow inside a reservation (an arena, a
// heap's capacity, a table) never move their contents: pointers into them stay valid.
//
// `memkit::reservation` is the owning, move-only form: it remembers which pages are committed
// (exact accounting, whatever order regions are committed and decommitted in), checks every range
// against its bounds, and releases the whole range in its destructor. It is the building block
// for "reserve N once, commit region by region":
//
//   memkit::reservation r{std::size_t{1} << 30};        // 1 GiB of addresses, no memory yet
//   auto* region = static_cast<int*>(r.commit(0, 1 << 20));  // first MiB usable, reads zero
//   r.decommit(0, 1 << 20);                             // its RSS is gone; touching it faults
//
// What decommit does to the RSS (Linux): madvise(MADV_DONTNEED) drops the pages at once (the
// resident set shrinks immediately; a recommit reads zeros), then mprotect(PROT_NONE) makes the
// range fault on access. Under strict overcommit (vm.overcommit_memory = 2) the kernel keeps the
// commit charge of a range that was once writable until it is released; RSS is what shrinks.
//
// Huge pages. `huge_page_request::transparent` aligns the reservation to the huge page size and
// marks it madvise(MADV_HUGEPAGE), so the kernel may back each fully committed, aligned 2 MiB
// chunk with one huge page (fewer TLB misses, fewer faults). `huge_page_request::explicit_pages`
// first asks for MAP_HUGETLB pages from the kernel's preallocated pool (vm.nr_hugepages); those
// are reserved when the range is mapped, so the whole reservation is committed at construction and
// a shortage is reported then rather than as a SIGBUS at first touch. When that fails it falls
// back to transparent huge pages, then to standard pages. The obtained kind is a status
// (`huge_page_status`), never an error: `huge_pages_unavailable` means standard pages were used.
//
// Errors. Each function says which channel it uses:
//  * zero or overflowing sizes throw memkit::bad_size; a non-power-of-two alignment throws
//    memkit::invalid_alignment;
//  * a pointer that is not aligned to the page (or the reservation's granularity) throws
//    memkit::bad_address with code() == errc::invalid_argument; a range that is not inside a
//    reservation throws memkit::bad_address with code() == errc::not_owned (both are
//    std::invalid_argument);
//  * the OS refusing memory (ENOMEM or EAGAIN: address space, commit limit, map count) throws
//    memkit::out_of_memory, a std::bad_alloc, like every other memkit allocation failure; any
//    other OS failure (EPERM, EACCES, an unexpected EINVAL) throws std::system_error with the
//    errno value in the generic category;
//  * `try_` forms are noexcept and return the same conditions as a std::error_code
//    (memkit::errc for memkit's own conditions, std::generic_category() for errno values);
//  * `release` is noexcept; passing it a range that was not reserved is a precondition
//    violation reported to memkit's violation handler in debug builds (errc::invalid_argument).
//
// Sizes passed to commit, decommit and protect are rounded up to whole pages (the reservation's
// granularity); pointers and offsets must already be aligned, because rounding them down would
// silently affect bytes the caller did not name.
//
// Complexity: every call is one or two system calls plus, for a reservation, O(log k) for its
// k committed runs (one run while regions are committed in order). Costs are dominated by the
// kernel: a commit is an mprotect, the memory itself is paid for by page faults at first touch.
// Thread-safety: the free functions are thread-safe (the kernel serialises changes to one
// mapping). A reservation is not thread-safe; concurrent const access is fine.
// Platform: Linux/POSIX (src/vm/posix_virtual_memory.cpp); the portable parts are written
// against the vm:: free functions only, so another platform needs only that file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "memkit/core/error.hpp"

namespace memkit {

/// What a protected range may be used for. `none` makes every access fault (a guard page).
enum class page_access { none, read, read_write, read_execute };

/// What a reservation asked for in terms of huge pages.
enum class huge_page_request {
    none,           ///< standard pages
    transparent,    ///< transparent huge pages: aligned to the huge page size, MADV_HUGEPAGE
    explicit_pages, ///< MAP_HUGETLB from the preallocated pool, else transparent, else standard
};

/// What a reservation obtained. Only `explicit_pages` is a guarantee; `transparent` means the
/// range is eligible and the kernel backs aligned committed 2 MiB chunks with huge pages when it
/// can (see vm::anon_huge_bytes to observe it).
enum class huge_page_status {
    not_requested,          ///< standard pages were asked for
    transparent,            ///< MADV_HUGEPAGE accepted and THP not disabled system-wide
    explicit_pages,         ///< backed by MAP_HUGETLB pages (committed at construction)
    huge_pages_unavailable, ///< huge pages were asked for but standard pages are used
};

/// The system-wide transparent huge page setting (/sys/kernel/mm/transparent_hugepage/enabled).
enum class thp_mode { always, madvise, never, unknown };

[[nodiscard]] const char* to_string(page_access a) noexcept;
[[nodiscard]] const char* to_string(huge_page_status s) noexcept;
[[nodiscard]] const char* to_string(thp_mode m) noexcept;

/// Thrown for a pointer or offset that is not suitably aligned (code() == errc::invalid_argument)
/// or a range that lies outside the reservation it is applied to (code() == errc::not_owned).
class bad_address : public std::invalid_argument {
public:
    bad_address(errc code, const char* where, const void* address, std::size_t size,
                const char* detail);
    [[nodiscard]] std::error_code code() const noexcept { return make_error_code(code_); }
    [[nodiscard]] const void* address() const noexcept { return address_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
    errc code_;
    const void* address_;
    std::size_t size_;
};

namespace vm {

/// The base page size (sysconf). Thread-safe, cached.
[[nodiscard]] std::size_t page_size() noexcept;

/// The default huge page size (Hugepagesize in /proc/meminfo, else
/// /sys/kernel/mm/transparent_hugepage/hpage_pmd_size); 0 when it cannot be determined.
[[nodiscard]] std::size_t huge_page_size() noexcept;

/// The transparent huge page mode; `unknown` when the sysfs file is missing or unreadable.
[[nodiscard]] thp_mode transparent_huge_page_mode() noexcept;

/// Huge pages free in the explicit (hugetlb) pool of the default size (HugePages_Free), or
/// nullopt when the kernel does not report it.
[[nodiscard]] std::optional<std::size_t> free_explicit_huge_pages() noexcept;

/// Reserves `bytes` (rounded up to pages) of address space with no memory behind it, aligned to
/// `alignment` (0 or anything up to the page size: page-aligned; larger powers of two are honoured
/// by trimming an over-sized reservation). Throws bad_size, invalid_alignment, out_of_memory (no
/// address space left, RLIMIT_AS) or std::system_error. Free with release(p, bytes).
[[nodiscard]] void* reserve(std::size_t bytes, std::size_t alignment = 0);
/// reserve without exceptions: nullptr and `ec` set on failure.
[[nodiscard]] void* try_reserve(std::size_t bytes, std::size_t alignment,
                                std::error_code& ec) noexcept;

/// Like reserve, but backed by explicit huge pages (MAP_HUGETLB), readable and writable, with the
/// pages reserved now. `bytes` is rounded up to the huge page size. Returns nullptr and sets `ec`
/// when the pool cannot supply them (or the kernel has no hugetlb support); never throws.
[[nodiscard]] void* map_explicit_huge_pages(std::size_t bytes, std::error_code& ec) noexcept;

/// Makes [p, p + bytes) readable and writable; bytes is rounded up to pages. New pages read zero;
/// already committed pages keep their contents. p must be page-aligned (bad_address otherwise).
/// Throws bad_size, bad_address, out_of_memory (commit limit, map count) or std::system_error.
void commit(void* p, std::size_t bytes);
[[nodiscard]] std::error_code try_commit(void* p, std::size_t bytes) noexcept;

/// Returns the memory of [p, p + bytes) to the OS at once and makes the range inaccessible (see
/// the header comment for RSS and commit charge). The range stays reserved. Errors as commit.
void decommit(void* p, std::size_t bytes);
[[nodiscard]] std::error_code try_decommit(void* p, std::size_t bytes) noexcept;

/// Changes the access of committed pages. `none` keeps the contents but makes every access fault.
/// Errors as commit (std::system_error with EACCES for execute on a noexec system, for example).
void protect(void* p, std::size_t bytes, page_access access);
[[nodiscard]] std::error_code try_protect(void* p, std::size_t bytes, page_access access) noexcept;

/// Turns [p, p + bytes) into guard pages: decommitted and inaccessible, so a stray access stops
/// the program at the faulting instruction (SIGSEGV) instead of corrupting a neighbour.
inline void guard(void* p, std::size_t bytes) { decommit(p, bytes); }

/// Faults the pages of committed [p, p + bytes) in now, writable, in one system call
/// (MADV_POPULATE_WRITE, Linux 5.14+): the page faults a first touch would take, paid in bulk and
/// up front (roughly 2-4x cheaper than one fault per page). Contents are unchanged. Returns
/// std::errc::not_supported on older kernels (nothing happens; the pages fault in at first touch
/// as usual), errc::out_of_memory when memory runs out, else as try_commit.
[[nodiscard]] std::error_code populate(void* p, std::size_t bytes) noexcept;

/// Unmaps a range obtained from reserve or map_explicit_huge_pages (or a whole-page part of one).
/// noexcept; a misaligned or foreign range is a debug-checked precondition (errc::invalid_argument
/// to the violation handler).
void release(void* p, std::size_t bytes) noexcept;

/// Marks [p, p + bytes) as eligible for transparent huge pages (MADV_HUGEPAGE). Returns
/// `transparent` when the kernel accepted it and THP is not `never`, else `huge_pages_unavailable`.
/// Only whole huge pages that are inside a committed range can actually be backed by huge pages.
[[nodiscard]] huge_page_status advise_transparent_huge_pages(void* p, std::size_t bytes) noexcept;

/// Bytes of [p, p + bytes) that are resident in RAM now (mincore). p must be page-aligned.
/// Throws bad_address, bad_size or std::system_error (ENOMEM: part of the range is not mapped).
[[nodiscard]] std::size_t resident_bytes(const void* p, std::size_t bytes);

/// The access of the mapping containing `p`, read from /proc/self/maps; nullopt when p is not
/// mapped or the file cannot be read. Meant for tests and diagnostics (it reads a text file).
[[nodiscard]] std::optional<page_access> access_of(const void* p);

/// Bytes of the mappings overlapping [p, p + bytes) that are backed by transparent huge pages
/// (AnonHugePages in /proc/self/smaps, summed over those mappings); nullopt when unreadable.
/// Meant for tests and diagnostics.
[[nodiscard]] std::optional<std::size_t> anon_huge_bytes(const void* p, std::size_t bytes);

namespace detail {
// Shared by the platform layer and the portable parts: validates a page range (p aligned to
// `granularity`, bytes != 0, rounded up without overflow) and turns an error_code from a vm
// function into the documented exception.
[[nodiscard]] std::error_code check_range(const void* p, std::size_t& bytes,
                                          std::size_t granularity) noexcept;
[[noreturn]] void throw_error(std::error_code ec, const char* where, const void* p,
                              std::size_t bytes);
} // namespace detail

} // namespace vm

struct reservation_options {
    /// Alignment of the base address (0: the page size, or the huge page size for huge pages).
    std::size_t alignment = 0;
    huge_page_request huge_pages = huge_page_request::none;
};

/// An owned range of reserved address space with exact accounting of its committed pages.
///
/// Offsets are relative to data(); they must be multiples of granularity() (the page size, or the
/// huge page size for explicit huge pages) and sizes are rounded up to it. Committing a committed
/// page keeps its contents; decommitting an uncommitted page is a no-op. committed() counts each
/// committed page once. Moving leaves the source empty (size() == 0).
///
/// Errors: the constructor throws like vm::reserve; commit/decommit/protect throw bad_address
/// (errc::invalid_argument for a misaligned offset, errc::not_owned for a range past size()),
/// bad_size, out_of_memory or std::system_error; try_commit/try_decommit return those conditions
/// as an error_code. After any failure the reservation's state and accounting are unchanged.
/// Thread-safety: not thread-safe; concurrent const access is fine.
class reservation {
public:
    static constexpr const char* name = "memkit::reservation";

    /// An empty reservation (no address space).
    reservation() noexcept = default;

    /// Reserves `bytes` (rounded up to the granularity) of address space.
    explicit reservation(std::size_t bytes, reservation_options opts = {});

    reservation(const reservation&) = delete;
    reservation& operator=(const reservation&) = delete;
    reservation(reservation&& o) noexcept;
    reservation& operator=(reservation&& o) noexcept;
    ~reservation() { reset(); }

    [[nodiscard]] std::byte* data() const noexcept { return base_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    explicit operator bool() const noexcept { return size_ != 0; }

    /// Bytes currently committed (each page counted once).
    [[nodiscard]] std::size_t committed() const noexcept { return committed_; }
    /// The unit of offsets and sizes: the page size, or the huge page size for explicit pages.
    [[nodiscard]] std::size_t granularity() const noexcept { return granularity_; }
    [[nodiscard]] huge_page_status huge_pages() const noexcept { return huge_; }
    /// Number of maximal committed runs (1 when the committed pages are contiguous).
    [[nodiscard]] std::size_t committed_runs() const noexcept { return runs_.size(); }

    /// True if p lies inside [data(), data() + size()).
    [[nodiscard]] bool contains(const void* p) const noexcept {
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        const auto b = reinterpret_cast<std::uintptr_t>(base_);
        return a - b < size_;
    }

    /// The offset of `p` from data(), for code that works with pointers. Precondition:
    /// contains(p) or p == data() + size().
    [[nodiscard]] std::size_t offset_of(const void* p) const noexcept {
        return static_cast<std::size_t>(static_cast<const std::byte*>(p) - base_);
    }

    /// True if every page overlapping [offset, offset + bytes) is committed (false for a range
    /// outside the reservation; true for bytes == 0 inside it).
    [[nodiscard]] bool is_committed(std::size_t offset, std::size_t bytes) const noexcept;

    /// Commits [offset, offset + bytes) and returns data() + offset.
    void* commit(std::size_t offset, std::size_t bytes);
    [[nodiscard]] std::error_code try_commit(std::size_t offset, std::size_t bytes) noexcept;

    /// Decommits [offset, offset + bytes): memory returned to the OS, the range faults on access.
    void decommit(std::size_t offset, std::size_t bytes);
    [[nodiscard]] std::error_code try_decommit(std::size_t offset, std::size_t bytes) noexcept;

    /// Decommits [offset, offset + bytes) so that accesses fault: a guard region.
    void guard(std::size_t offset, std::size_t bytes) { decommit(offset, bytes); }

    /// Changes the access of committed pages (bad_address with errc::invalid_argument if part of
    /// the range is not committed: use commit to make pages accessible).
    void protect(std::size_t offset, std::size_t bytes, page_access access);

    /// Releases the whole range now (the reservation becomes empty).
    void reset() noexcept;

    /// Gives up ownership: returns {data(), size()} and leaves the reservation empty. The caller
    /// must vm::release the range.
    [[nodiscard]] std::pair<std::byte*, std::size_t> release_ownership() noexcept;

private:
    // Validates [offset, offset + bytes) and rounds it to the granularity; the error_code is set
    // when the range is rejected.
    std::error_code check(std::size_t offset, std::size_t& bytes) const noexcept;
    std::error_code apply(std::size_t offset, std::size_t bytes, bool commit) noexcept;
    [[noreturn]] void throw_error(std::error_code ec, const char* what, std::size_t offset,
                                  std::size_t bytes) const;

    std::byte* base_ = nullptr;
    std::size_t size_ = 0;
    std::size_t committed_ = 0;
    std::size_t granularity_ = 0;
    huge_page_status huge_ = huge_page_status::not_requested;
    // Committed runs as [begin, end) offsets, disjoint and never adjacent (adjacent runs are
    // merged), so a reservation committed front to back holds exactly one entry.
    std::map<std::size_t, std::size_t> runs_;
};

} // namespace memkit
