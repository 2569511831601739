// memkit/debug/memory_tracker.hpp - who allocated what, where, and what is still live.
//
// `memory_tracker` keeps one record per live block: pointer, size, alignment, an optional type
// name, the source_location of the allocating call, a timestamp, an allocation sequence
// number and, when stack capture is on, the call stack (captured with stack_trace::capture,
// interned so that a stack seen a million times is stored once). From these it answers what
// heaptrack and valgrind's leak summary answer: bytes and blocks in use, the peak, total
// allocations, deallocations and bytes, the live blocks (find_leaks), the same grouped by call
// site or by stack with counts and bytes (leak_groups), and a report as text or JSON.
//
// `tracked<A>` wraps any memkit allocator and records every allocation and deallocation into a
// tracker (memory_tracker::instance() unless another is given); its allocate takes the caller's
// source_location as a defaulted argument, so `t.allocate(64)` records the line of that
// call. MEMKIT_TRACK(alloc, size) is the explicit spelling. (memkit::source_location is
// std::source_location, or an equivalent where the standard library lacks it: see below.)
// Through memkit::resource<tracked<A>> std::pmr containers are tracked too (their records then
// name the resource's call site; turn on stack capture to see the container code).
// `scoped_tracker` measures one scope: allocations, bytes, peak and the blocks allocated in the
// scope that are still live at its end.
//
// Design: records live in 64 shards chosen by a hash of the pointer, each with its own lock (a
// spin lock that yields) and an open-addressing table (linear probing, backward-shift deletion,
// no heap node per record), so threads that free different blocks rarely meet. Counters are
// updated inside the shard's critical section, so a block's deallocation is always counted
// after its allocation; an allocation costs two shared atomic increments (its sequence number
// and the bytes in use, which gives an exact peak). Times come from the coarse monotonic clock
// (steady_clock's epoch, millisecond resolution). Stack capture and symbolization are separate:
// capture costs 1-3 us per allocation, symbolization (dladdr, the ELF symbol tables, addr2line)
// happens only when a report with stacks is written.
//
// Errors (memkit::report_violation, never an exception; the default handler aborts): freeing a
// pointer the tracker never recorded -> errc::not_owned; freeing one it saw freed recently (the
// last 128 frees of its shard) -> errc::double_free (an older double free reads as not_owned);
// a size that differs from the allocated size -> errc::invalid_argument; an allocator handing out
// a block that is still live -> errc::corruption_detected (the old record is replaced). When the
// handler returns, record_deallocation returns false and tracked<A> does not pass the pointer
// on, so the wrapped allocator is never corrupted by the bad call.
//
// Complexity: record_allocation/record_deallocation O(1) expected (one hash, one short probe,
// a few atomics), plus the stack capture when on; stats() O(shards); find_leaks and reports
// O(live blocks) with each shard locked in turn (a snapshot per shard: stop the other threads
// for an exact global snapshot). Memory: 64 bytes per table slot (at most 70% full, so about
// 90-180 bytes per live block) plus the interned stacks, and 80 KiB per tracker for the shards.
// Thread-safety: memory_tracker is thread-safe (every member may be called concurrently);
// tracked<A> is as thread-safe as A; a scoped_tracker is used by the thread that made it, and
// scopes on one tracker must nest (its peak is that of the whole tracker, all threads).
//
//   memkit::memory_tracker tracker{{.capture_stacks = true}};
//   memkit::tracked<memkit::system_allocator> a{tracker};
//   void* p = a.allocate(64);   std::cout << tracker.report();   // 64 bytes leaked at this line
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <new>
#include <version>
#if defined(__cpp_lib_source_location)
#include <source_location>
#endif
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/core/concepts.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/traits.hpp"
#include "memkit/debug/stack_trace.hpp"

// The recording calls never read the block: saying so keeps GCC from warning that a freshly
// allocated (uninitialized) block is passed to a `const void*` parameter.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define MEMKIT_DETAIL_NO_ACCESS_ARG2 __attribute__((access(none, 2)))
#else
#define MEMKIT_DETAIL_NO_ACCESS_ARG2
#endif

namespace memkit {

#if defined(__cpp_lib_source_location)
using source_location = std::source_location;
#else
/// std::source_location where the standard library lacks it (libstdc++ 12 with clang 14, which
/// has no __builtin_source_location): the same interface, from the older builtins, which give
/// the caller's position when used as default arguments. function_name() is then the bare name.
class source_location {
public:
    [[nodiscard]] static constexpr source_location
    current(const char* file = __builtin_FILE(), const char* function = __builtin_FUNCTION(),
            unsigned line = __builtin_LINE(), unsigned column = __builtin_COLUMN()) noexcept {
        source_location l;
        l.file_ = file;
        l.function_ = function;
        l.line_ = line;
        l.column_ = column;
        return l;
    }
    constexpr source_location() noexcept = default;
    [[nodiscard]] constexpr std::uint_least32_t line() const noexcept { return line_; }
    [[nodiscard]] constexpr std::uint_least32_t column() const noexcept { return column_; }
    [[nodiscard]] constexpr const char* file_name() const noexcept { return file_; }
    [[nodiscard]] constexpr const char* function_name() const noexcept { return function_; }

private:
    const char* file_ = "";
    const char* function_ = "";
    std::uint_least32_t line_ = 0;
    std::uint_least32_t column_ = 0;
};
#endif

struct tracker_options {
    /// Capture the call stack of every allocation (about 120 ns per frame; off by default).
    bool capture_stacks = false;
    /// Frames kept per stack, 1..stack_trace::max_depth.
    std::size_t stack_depth = 32;
    /// Shown in reports; must outlive the tracker (a string literal).
    const char* name = "memkit::memory_tracker";
};

/// Totals since the tracker was made. Bytes are the sizes requested.
struct tracker_stats {
    std::size_t current_bytes = 0;     ///< bytes in live blocks
    std::size_t current_blocks = 0;    ///< live blocks
    std::size_t peak_bytes = 0;        ///< maximum of current_bytes
    std::uint64_t allocations = 0;     ///< recorded allocations
    std::uint64_t deallocations = 0;   ///< recorded deallocations (bad ones are not counted)
    std::uint64_t bytes_allocated = 0; ///< sum of the sizes of all recorded allocations

    friend bool operator==(const tracker_stats&, const tracker_stats&) = default;
};

/// One live block, as returned by find_leaks().
struct allocation_record {
    const void* pointer = nullptr;
    std::size_t size = 0;
    std::size_t alignment = 0;
    const char* type_name = nullptr; ///< as given to record_allocation, or nullptr
    source_location location;        ///< the allocating call
    std::chrono::steady_clock::time_point time;
    std::uint64_t sequence = 0; ///< 0 for the tracker's first allocation, then 1, 2, ...
    std::vector<void*> stack;   ///< captured return addresses; empty when capture is off
};

enum class leak_grouping {
    call_site, ///< by source_location (file, line, column, function)
    stack,     ///< by the whole captured stack (call site for records without one)
};

/// Live blocks that share a call site or a stack.
struct leak_group {
    std::size_t bytes = 0;
    std::size_t blocks = 0;
    source_location location;        ///< that of the group's first allocation
    const char* type_name = nullptr; ///< that of the group's first allocation
    std::uint64_t first_sequence = 0;
    std::vector<void*> stack; ///< that of the group's first allocation
};

enum class report_format { text, json };

struct report_options {
    report_format format = report_format::text;
    leak_grouping grouping = leak_grouping::call_site;
    /// Symbolize stacks (dladdr, and addr2line when symbols.use_addr2line); off: raw addresses.
    bool symbolize = true;
    stack_trace::symbolize_options symbols{};
    /// Groups listed, largest (bytes) first; the rest are counted as omitted.
    std::size_t max_groups = 50;
    /// Only blocks with sequence >= this count as leaks (scoped_tracker uses it).
    std::uint64_t since_sequence = 0;
};

class scoped_tracker;

class memory_tracker {
public:
    explicit memory_tracker(tracker_options options = {});
    ~memory_tracker();
    memory_tracker(const memory_tracker&) = delete;
    memory_tracker& operator=(const memory_tracker&) = delete;

    /// The process-wide tracker (created on first use, never destroyed, so blocks freed by
    /// static destructors are still recorded). Stack capture is off until set_capture_stacks.
    [[nodiscard]] static memory_tracker& instance();

    /// Records a live block. Throws std::bad_alloc when the table cannot grow (nothing is
    /// recorded then). A null `p` is ignored. `type_name` must outlive the tracker.
    MEMKIT_NOINLINE MEMKIT_DETAIL_NO_ACCESS_ARG2 void record_allocation(
        const void* p, std::size_t size, std::size_t align = alignof(std::max_align_t),
        const char* type_name = nullptr, source_location location = source_location::current());
    /// As record_allocation, but returns false instead of throwing.
    [[nodiscard]] MEMKIT_NOINLINE MEMKIT_DETAIL_NO_ACCESS_ARG2 bool
    try_record_allocation(const void* p, std::size_t size,
                          std::size_t align = alignof(std::max_align_t),
                          const char* type_name = nullptr,
                          source_location location = source_location::current()) noexcept;
    /// Forgets the block at `p`; `size` (0: unchecked) must be the allocated size. Returns true
    /// when recorded; false after reporting a violation (see the header comment). A null `p` is
    /// ignored (returns true).
    bool record_deallocation(const void* p, std::size_t size = 0) noexcept;

    [[nodiscard]] tracker_stats stats() const noexcept;
    /// Whether `p` is a live block of this tracker.
    [[nodiscard]] bool is_live(const void* p) const noexcept;
    /// The live blocks allocated with sequence >= since_sequence, oldest first.
    [[nodiscard]] std::vector<allocation_record> find_leaks(std::uint64_t since_sequence = 0) const;
    /// find_leaks() grouped, largest number of bytes first.
    [[nodiscard]] std::vector<leak_group>
    leak_groups(leak_grouping grouping = leak_grouping::call_site,
                std::uint64_t since_sequence = 0) const;

    /// The statistics and the leak groups, as text or JSON (options.format).
    void report(std::ostream& os, const report_options& options = {}) const;
    [[nodiscard]] std::string report(const report_options& options = {}) const;

    void set_capture_stacks(bool on) noexcept;
    [[nodiscard]] bool capture_stacks() const noexcept;
    [[nodiscard]] const char* name() const noexcept;

private:
    friend class scoped_tracker;
    struct impl;
    bool record(std::uintptr_t address, std::size_t size, std::size_t align, const char* type_name,
                const source_location& location) noexcept;
    std::size_t begin_scope() noexcept;
    std::size_t scope_peak() const noexcept;
    void end_scope(std::size_t saved_peak) noexcept;

    std::unique_ptr<impl> impl_;
};

/// Measures one scope on a tracker: what was allocated during it, its peak, and what it leaked.
///
///   memkit::scoped_tracker scope{tracker};
///   run_request();
///   EXPECT_EQ(scope.leaked_blocks(), 0u) << scope.report();
class scoped_tracker {
public:
    explicit scoped_tracker(memory_tracker& tracker = memory_tracker::instance());
    ~scoped_tracker();
    scoped_tracker(const scoped_tracker&) = delete;
    scoped_tracker& operator=(const scoped_tracker&) = delete;

    /// Allocations recorded since the scope began (by any thread).
    [[nodiscard]] std::uint64_t allocations() const noexcept;
    /// Deallocations recorded since the scope began (including of older blocks).
    [[nodiscard]] std::uint64_t deallocations() const noexcept;
    [[nodiscard]] std::uint64_t bytes_allocated() const noexcept;
    /// Bytes in use now minus bytes in use when the scope began (negative: it freed more).
    [[nodiscard]] std::ptrdiff_t net_bytes() const noexcept;
    /// The highest bytes-in-use level during the scope, above the level at its start.
    [[nodiscard]] std::size_t peak_bytes() const noexcept;
    /// Blocks allocated during the scope that are still live.
    [[nodiscard]] std::vector<allocation_record> leaks() const;
    [[nodiscard]] std::size_t leaked_blocks() const;
    [[nodiscard]] std::size_t leaked_bytes() const;
    /// The scope's numbers and its leaks (options.since_sequence is replaced by the scope's).
    [[nodiscard]] std::string report(report_options options = {}) const;

    [[nodiscard]] memory_tracker& tracker() const noexcept { return *tracker_; }

private:
    memory_tracker* tracker_;
    tracker_stats start_;
    std::size_t saved_peak_;
};

/// Any memkit allocator whose allocations and deallocations are recorded in a memory_tracker.
/// Errors are A's (a failed allocation records nothing); a bad deallocation is reported by the
/// tracker and not passed on to A. owns() and max_size() are forwarded when A has them.
template <allocator A>
class tracked {
    using traits = allocator_traits<A>;

public:
    using allocator_type = A;
    static constexpr bool is_thread_safe = traits::is_thread_safe;
    static constexpr std::size_t max_alignment = traits::max_alignment;
    static constexpr const char* name = [] {
        if constexpr (requires { A::name; }) return static_cast<const char*>(A::name);
        else return "memkit::tracked";
    }();

    tracked() requires std::default_initializable<A> : a_(), t_(&memory_tracker::instance()) {}
    explicit tracked(memory_tracker& t) requires std::default_initializable<A> : a_(), t_(&t) {}
    tracked(A a, memory_tracker& t) noexcept(std::is_nothrow_move_constructible_v<A>)
        : a_(std::move(a)), t_(&t) {}
    /// Constructs the wrapped allocator in place from `args`.
    // clang-format off
    template <class... Args>
        requires std::constructible_from<A, Args&&...>
    tracked(std::in_place_t, memory_tracker& t, Args&&... args)
        : a_(std::forward<Args>(args)...), t_(&t) {}
    // clang-format on

    // Always inlined, so that a captured stack starts in the caller, in every build mode.
    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    allocate(std::size_t size, std::size_t align = alignof(std::max_align_t),
             source_location location = source_location::current()) {
        return allocate(size, align, nullptr, location);
    }
    /// As allocate, recording `type_name` (which must outlive the tracker).
    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    allocate(std::size_t size, std::size_t align, const char* type_name,
             source_location location = source_location::current()) {
        void* p = a_.allocate(size, align);
        if (MEMKIT_UNLIKELY(!t_->try_record_allocation(p, size, align, type_name, location)))
            untrack_failed(p, size, align);
        return p;
    }
    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t),
                 source_location location = source_location::current()) noexcept {
        void* p = a_.try_allocate(size, align);
        if (p != nullptr &&
            MEMKIT_UNLIKELY(!t_->try_record_allocation(p, size, align, nullptr, location))) {
            a_.deallocate(p, size, align);
            return nullptr;
        }
        return p;
    }
    void deallocate(void* p, std::size_t size,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        if (t_->record_deallocation(p, size)) a_.deallocate(p, size, align);
    }

    [[nodiscard]] bool owns(const void* p) const noexcept requires traits::has_owns {
        return a_.owns(p);
    }
    [[nodiscard]] std::size_t max_size() const noexcept requires traits::has_max_size {
        return a_.max_size();
    }

    [[nodiscard]] memory_tracker& tracker() const noexcept { return *t_; }
    [[nodiscard]] A& get() noexcept { return a_; }
    [[nodiscard]] const A& get() const noexcept { return a_; }

    friend bool operator==(const tracked& x,
                           const tracked& y) noexcept requires std::equality_comparable<A> {
        return x.t_ == y.t_ && x.a_ == y.a_;
    }

private:
    // The block could not be recorded (no memory for the table): give it back, then fail as
    // an allocator does.
    [[noreturn]] MEMKIT_COLD void untrack_failed(void* p, std::size_t size, std::size_t align) {
        a_.deallocate(p, size, align);
        throw std::bad_alloc();
    }

    [[no_unique_address]] A a_;
    memory_tracker* t_;
};

} // namespace memkit

/// Allocates `size` bytes from `alloc` (a memkit::tracked<A>), recording this line as the call
/// site: the explicit form of the defaulted source_location argument.
#define MEMKIT_TRACK(alloc, size)                                                                  \
    (alloc).allocate((size), alignof(std::max_align_t), ::memkit::source_location::current())
