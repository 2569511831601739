// memkit/heap/memory_budget.hpp - a thread-safe hierarchical byte budget: hard and soft limits.
//
// `memory_budget` counts bytes that its users say they hold (it allocates nothing itself) and
// refuses a reservation that would take it above its hard limit. Budgets form a tree, like
// ClickHouse's MemoryTracker (query -> user -> server) or PostgreSQL's memory contexts: a child
// charges itself and every ancestor, and a reservation succeeds only if it fits at EVERY level.
// It is all-or-nothing: when a level refuses, the levels below it that were already charged are
// given back before the call returns, so a refused reservation leaves no bytes anywhere.
//
//   constexpr std::size_t GiB = std::size_t{1} << 30, none = memkit::memory_budget::unlimited;
//   memkit::memory_budget server{8 * GiB, 6 * GiB, "server"};     // hard 8 GiB, soft 6 GiB
//   memkit::memory_budget user{server, 1 * GiB, none, "alice"};    // counts in server too
//   memkit::memory_budget query{user, GiB / 4, none, "query-17"};  // counts in alice and server
//   if (query.try_reserve(n)) { use(n); query.release(n); }
//   query.reserve(n);   // or throws memkit::memory_budget_exceeded naming the level that refused
//
// Limits. A reservation succeeds at a level when, at the instant of its atomic add, the level's
// total including it is within the hard limit; the committed bytes (those of successful
// reservations) therefore never exceed it, and peak() <= hard_limit(). As in Linux's memory-cgroup
// page counters, the add comes first and an overflowing one is undone at once: used() can exceed
// the hard limit for that instant, and a reservation racing with such an overshoot may be refused
// although it would have fitted. set_limits() may lower the hard limit below used(); reservations
// then fail until enough is released. `unlimited` (the default) means no ceiling. The soft limit
// refuses nothing: reaching it runs the on_soft_limit callbacks (a place to shrink caches or
// log). The pressure level is used() measured against the hard limit with `pressure_thresholds`
// (60/80/95 % by default); level() is always computed from the current used(). A budget without a
// hard limit stays at pressure_level::low.
//
// Callbacks report changes of the budget's state: its level, and whether used() is at or above
// the soft limit (an upward change runs on_soft_limit; the downward one only re-arms it, so a
// usage hovering above the soft limit is reported once). After any change of used() that passes
// a boundary (the soft limit or a level threshold), the thread that made it compares the current
// state with the last reported one; a difference is claimed with a compare-and-swap and reported
// by the thread that claimed it. So a change is never reported twice, each report's `from` is the
// previous report's `to`, and once the budget is quiet the last report agrees with level(). A
// change undone before it is checked - the transient charge of a reservation that an ancestor
// refused, or an overshoot at the hard limit - is not reported. The callback runs on the thread
// whose reserve(), release() or set_limits() caused the change, after every level of that call
// has been updated, with no memkit lock held, so it may call any member of any budget.
// Callbacks for changes reported by different threads can run concurrently, and not necessarily
// in the order of the reports; each carries the usage it was computed from. set_limits() judges
// the new limits against the usage it reads; a reservation racing with it may be judged against
// either limits. Callbacks are called from noexcept functions: one that throws terminates the
// program. A callback removed with remove_callback() may still run once on a thread that had
// already started notifying.
//
// Using a budget from an allocator. `budget_handle` is a budget_source (compose/budgeted.hpp):
// `memkit::budgeted<memkit::system_allocator, memkit::budget_handle> a{memkit::budget_handle{b},
// {}}` charges `b` (and its ancestors) for every allocation. Several allocators, each with its own
// handle, share one budget; each handle remembers the bytes it charged, so refund_all() (and
// budgeted::reset()) gives back only its own bytes.
//
// Complexity: try_reserve / reserve / release are O(depth) and lock-free: per level one fetch_add
// (reserve) or fetch_sub (release) and three relaxed loads (hard limit, lowest boundary, peak),
// so about the cost of a bare std::atomic counter per level (see docs/heap.md for the numbers).
// No compare-and-swap retry loop: contention costs no retries. A new peak, a usage at or above
// the lowest callback boundary, and a refusal take an out-of-line path. Registering callbacks,
// construction, destruction and set_limits take a mutex (never held while a callback runs).
//
// Thread-safety: every member function may be called concurrently from any thread, except
// destruction. A budget is neither copyable nor movable (children point at it).
//
// Failure: try_reserve returns false; reserve throws memory_budget_exceeded, a
// memkit::budget_exceeded (so an out_of_memory and a std::bad_alloc) whose allocator() and
// message name the budget that refused, with that budget's hard limit, its usage and what it had
// left; nothing is charged. The constructors throw std::invalid_argument for invalid thresholds.
// Debug builds (memkit::debug_checks) report violations through memkit::report_violation, with
// errc::invalid_argument for a release() of more bytes than a level holds (the call then stops at
// that level, which keeps its count), and errc::still_in_use for destroying a budget that still
// has bytes reserved or that still has children (the children then point at a destroyed parent:
// undefined behaviour). A budget destroyed with bytes reserved gives them back to its ancestors,
// since nothing could release them later.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/heap/pressure_level.hpp"

namespace memkit {

class memory_budget;

namespace detail {
// Holds a copy of the refusing budget's name for memory_budget_exceeded. It is a base class
// listed before budget_exceeded so that the copy exists when budget_exceeded formats its message
// from it, and allocator() can point into the exception itself (valid as long as the exception).
struct budget_name_copy {
    static constexpr std::size_t text_size = 64;
    char text[text_size];
    explicit budget_name_copy(std::string_view name) noexcept;
};
} // namespace detail

/// Thrown by memory_budget::reserve(). allocator() and budget_name() are the name of the budget
/// that refused (the requesting budget or one of its ancestors, truncated to 63 characters);
/// limit() is that budget's hard limit, used() its usage and remaining() what it had left.
class memory_budget_exceeded : private detail::budget_name_copy, public budget_exceeded {
public:
    memory_budget_exceeded(std::string_view budget_name, std::size_t requested,
                           std::size_t remaining, std::size_t used, std::size_t limit) noexcept;
    memory_budget_exceeded(const memory_budget_exceeded& other) noexcept;
    memory_budget_exceeded& operator=(const memory_budget_exceeded&) = delete;
    ~memory_budget_exceeded() override = default;

    [[nodiscard]] std::string_view budget_name() const noexcept { return text; }
};

/// What an on_soft_limit callback receives: the budget and the usage found above the soft limit.
struct soft_limit_event {
    memory_budget& budget;
    std::size_t used;
    std::size_t soft_limit;
};

/// What an on_level_change callback receives. `used` is the usage the new level was computed from.
struct budget_level_event {
    memory_budget& budget;
    pressure_level from;
    pressure_level to;
    std::size_t used;
    std::size_t hard_limit;
};

/// Identifies a registered callback, for remove_callback(). Never 0.
using budget_callback_id = std::uint64_t;

class memory_budget {
public:
    static constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();
    static constexpr bool is_thread_safe = true;

    /// A root budget. A soft limit of `unlimited` disables the soft-limit callbacks.
    explicit memory_budget(std::size_t hard_limit = unlimited, std::size_t soft_limit = unlimited,
                           std::string name = "memory_budget", pressure_thresholds thresholds = {});
    /// A child of `parent`: its reservations count in `parent` and every ancestor. `parent` must
    /// outlive it.
    memory_budget(memory_budget& parent, std::size_t hard_limit, std::size_t soft_limit = unlimited,
                  std::string name = "memory_budget", pressure_thresholds thresholds = {});
    ~memory_budget();

    memory_budget(const memory_budget&) = delete;
    memory_budget& operator=(const memory_budget&) = delete;

    /// Charges n bytes here and in every ancestor if they fit everywhere; else charges nothing
    /// and returns false. try_reserve(0) succeeds unless a level is above its hard limit.
    [[nodiscard]] bool try_reserve(std::size_t n) noexcept { return charge(n).by == nullptr; }

    /// As try_reserve, but throws memory_budget_exceeded naming the level that refused.
    void reserve(std::size_t n) {
        const refusal r = charge(n);
        if (MEMKIT_UNLIKELY(r.by != nullptr)) throw_exceeded(r, n);
    }

    /// Gives back n bytes reserved through this budget, here and in every ancestor.
    void release(std::size_t n) noexcept {
        for (memory_budget* b = this; b != nullptr;) {
            // Loads before the locked instruction, which later loads would have to wait for.
            const std::size_t lowest = b->limits_.lowest.load(std::memory_order_relaxed);
            memory_budget* const next = b->parent_;
            const std::size_t old = b->used_.fetch_sub(n, std::memory_order_relaxed);
            if (MEMKIT_UNLIKELY(old < n)) return b->over_release(n);
            if (MEMKIT_UNLIKELY(old >= lowest)) return release_rest(b, old, n);
            b = next;
        }
    }

    /// Bytes reserved here, including those reserved through children.
    [[nodiscard]] std::size_t used() const noexcept {
        return used_.load(std::memory_order_relaxed);
    }
    /// The highest usage reached by a reservation that fitted here, since construction or
    /// reset_peak(): never above the hard limit in force at the time. (A reservation that fitted
    /// here but that an ancestor refused counts.)
    [[nodiscard]] std::size_t peak() const noexcept {
        return peak_.load(std::memory_order_relaxed);
    }
    void reset_peak() noexcept { peak_.store(used(), std::memory_order_relaxed); }

    [[nodiscard]] std::size_t hard_limit() const noexcept {
        return limits_.hard.load(std::memory_order_relaxed);
    }
    [[nodiscard]] std::size_t soft_limit() const noexcept {
        return limits_.soft.load(std::memory_order_relaxed);
    }
    /// The most that a reservation here could get now: the smallest room left at this level and
    /// at every ancestor (0 where a level is at or above its hard limit).
    [[nodiscard]] std::size_t remaining() const noexcept;

    /// Sets both limits (a hard limit below used() is allowed) and runs the callbacks for the
    /// state change this causes, on the calling thread.
    void set_limits(std::size_t hard_limit, std::size_t soft_limit);

    /// The pressure level of used() against the hard limit.
    [[nodiscard]] pressure_level level() const noexcept { return level_at(used()); }
    [[nodiscard]] const pressure_thresholds& thresholds() const noexcept { return thresholds_; }

    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] memory_budget* parent() const noexcept { return parent_; }
    /// Number of live child budgets.
    [[nodiscard]] std::size_t children() const noexcept {
        return children_.load(std::memory_order_relaxed);
    }

    /// Runs `f` each time used() is found to have reached the soft limit from below (see the
    /// header comment); not for a usage already above it when `f` is registered. Throws
    /// std::invalid_argument if `f` is empty.
    budget_callback_id on_soft_limit(std::function<void(const soft_limit_event&)> f);
    /// Runs `f` each time level() changes (see the header comment). Throws std::invalid_argument
    /// if `f` is empty.
    budget_callback_id on_level_change(std::function<void(const budget_level_event&)> f);
    /// Unregisters a callback; false if `id` is not registered here.
    bool remove_callback(budget_callback_id id);

private:
    // Two words, so that it is returned in registers.
    struct refusal {
        memory_budget* by = nullptr; // nullptr: charged
        std::size_t used = 0;        // by's usage when it refused
    };

    // Add first, undo if it overflowed: one locked instruction per level, where a
    // compare-and-swap loop costs a dependent load and retries under contention. A loop rather
    // than recursion, so that it inlines. Anything unusual (a new peak, a usage near a callback
    // boundary, a refusal) leaves for a cold function that finishes the walk: the loop keeps no
    // state of its own, since a spilled local written before a locked instruction delays it.
    [[nodiscard]] MEMKIT_ALWAYS_INLINE refusal charge(std::size_t n) noexcept {
        for (memory_budget* b = this; b != nullptr;) {
            // Loads before the locked instruction, which later loads would have to wait for.
            const std::size_t hard = b->limits_.hard.load(std::memory_order_relaxed);
            const std::size_t lowest = b->limits_.lowest.load(std::memory_order_relaxed);
            const std::size_t peak = b->peak_.load(std::memory_order_relaxed);
            memory_budget* const next = b->parent_;
            if (MEMKIT_UNLIKELY(n > hard)) return refuse(b, b->used(), n, false, false);
            const std::size_t old = b->used_.fetch_add(n, std::memory_order_relaxed);
            if (MEMKIT_UNLIKELY(old > hard - n)) return refuse(b, old, n, false, true);
            const std::size_t now = old + n;
            if (MEMKIT_UNLIKELY(now > peak || now >= lowest)) return charge_rest(b, old, n);
            b = next;
        }
        return {};
    }

    // True if some callback boundary (the soft limit or a level threshold) lies in (lo, hi]. The
    // hot paths first compare hi with the lowest boundary (the usual answer: no).
    [[nodiscard]] bool crosses(std::size_t lo, std::size_t hi) const noexcept {
        if (hi < limits_.lowest.load(std::memory_order_relaxed)) return false;
        auto in = [lo, hi](const std::atomic<std::size_t>& b) {
            const std::size_t v = b.load(std::memory_order_relaxed);
            return lo < v && v <= hi;
        };
        return in(limits_.soft) || in(limits_.medium) || in(limits_.high) || in(limits_.critical);
    }

    [[nodiscard]] pressure_level level_at(std::size_t used) const noexcept;
    // The reported state: bits 0-1 the level, bit 2 "at or above the soft limit".
    [[nodiscard]] std::uint8_t state_at(std::size_t used) const noexcept;
    void raise_peak(std::size_t now) noexcept;
    // Undoes a refused reservation: `by`'s own add if `undo_by`, and the levels below it.
    MEMKIT_COLD refusal refuse(memory_budget* by, std::size_t used, std::size_t n, bool crossed,
                               bool undo_by) noexcept;
    // The rest of charge() / release() from level `b`, whose add / subtract gave `old`.
    MEMKIT_COLD refusal charge_rest(memory_budget* b, std::size_t old, std::size_t n) noexcept;
    MEMKIT_COLD void release_rest(memory_budget* b, std::size_t old, std::size_t n) noexcept;
    MEMKIT_COLD void reconcile() noexcept;
    MEMKIT_COLD void reconcile_all() noexcept; // this level and every ancestor
    MEMKIT_COLD void over_release(std::size_t n) noexcept;
    [[noreturn]] MEMKIT_COLD static void throw_exceeded(const refusal& r, std::size_t n);
    void store_limits(std::size_t hard, std::size_t soft) noexcept;

    template <class Event>
    struct callback_list {
        using entry = std::pair<budget_callback_id, std::function<void(const Event&)>>;
        std::shared_ptr<const std::vector<entry>> entries;
    };

    // Written on every reservation and release; peak_ is read by every reservation too, so it
    // shares the line that the reservation is about to take for writing anyway.
    alignas(cache_line_size) std::atomic<std::size_t> used_{0};
    std::atomic<std::size_t> peak_{0};

    // Read on every reservation and release, written only by set_limits(). medium/high/critical
    // are the smallest usages at which level_at() reaches that level (unlimited: never).
    struct limits {
        std::atomic<std::size_t> hard{0};
        std::atomic<std::size_t> soft{0};
        std::atomic<std::size_t> medium{0};
        std::atomic<std::size_t> high{0};
        std::atomic<std::size_t> critical{0};
        std::atomic<std::size_t> lowest{0}; // the smallest of soft, medium, high and critical
    };
    alignas(cache_line_size) limits limits_;
    memory_budget* const parent_;
    const pressure_thresholds thresholds_;

    // Cold: names, children and callbacks.
    alignas(cache_line_size) std::atomic<std::uint8_t> reported_{0}; // see state_at()
    std::atomic<std::size_t> children_{0};
    const std::string name_;
    mutable std::mutex mutex_; // guards the callback lists, the next id, and set_limits
    budget_callback_id next_id_ = 1;
    callback_list<soft_limit_event> soft_callbacks_;
    callback_list<budget_level_event> level_callbacks_;
};

/// A budget_source (compose/budgeted.hpp) over a memory_budget, for `budgeted<A, budget_handle>`.
/// Charges go to the budget and its ancestors; the handle also counts what it charged itself, so
/// refund_all() gives back only those bytes. used(), limit() and remaining() describe the shared
/// budget; charged() is this handle's share. A refused allocation through budgeted<A,
/// budget_handle> throws memory_budget_exceeded naming the level that refused (the handle's budget
/// or an ancestor), like memory_budget::reserve.
/// Destroying the handle gives back what it still holds (an arena under budgeted frees all of its
/// blocks at once without deallocate calls). Moving transfers the charged bytes. The budget must
/// outlive the handle. Thread-safe: all members may be called concurrently, except that
/// refund_all() and move assignment must not race with try_charge()/refund() on the same handle.
/// Debug builds report errc::invalid_argument for a refund of more bytes than the handle charged
/// (the call then does nothing).
///
///   memkit::memory_budget shared{1 << 20};
///   using limited = memkit::budgeted<memkit::system_allocator, memkit::budget_handle>;
///   limited a{memkit::budget_handle{shared}, {}}, b{memkit::budget_handle{shared}, {}};
///   void* p = a.allocate(1000);   // shared.used() == b.used() == 1000; b.budget().charged() == 0
class budget_handle {
public:
    static constexpr bool is_thread_safe = true;

    explicit budget_handle(memory_budget& budget) noexcept : budget_(&budget) {}
    budget_handle(budget_handle&& other) noexcept
        : budget_(other.budget_), charged_(other.charged_.exchange(0, std::memory_order_relaxed)) {}
    budget_handle& operator=(budget_handle&& other) noexcept {
        if (this != &other) {
            refund_all();
            budget_ = other.budget_;
            charged_.store(other.charged_.exchange(0, std::memory_order_relaxed),
                           std::memory_order_relaxed);
        }
        return *this;
    }
    budget_handle(const budget_handle&) = delete;
    budget_handle& operator=(const budget_handle&) = delete;
    ~budget_handle() { refund_all(); }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE bool try_charge(std::size_t n) noexcept {
        if (MEMKIT_UNLIKELY(!budget_->try_reserve(n))) return false;
        charged_.fetch_add(n, std::memory_order_relaxed);
        return true;
    }
    MEMKIT_ALWAYS_INLINE void refund(std::size_t n) noexcept {
        const std::size_t old = charged_.fetch_sub(n, std::memory_order_relaxed);
        if (MEMKIT_UNLIKELY(old < n)) return over_refund(n);
        budget_->release(n);
    }
    void refund_all() noexcept {
        if (const std::size_t n = charged_.exchange(0, std::memory_order_relaxed))
            budget_->release(n);
    }

    /// The shared budget's usage, hard limit and room left (see memory_budget).
    [[nodiscard]] std::size_t used() const noexcept { return budget_->used(); }
    [[nodiscard]] std::size_t limit() const noexcept { return budget_->hard_limit(); }
    [[nodiscard]] std::size_t remaining() const noexcept { return budget_->remaining(); }
    /// Bytes charged through this handle and not refunded.
    [[nodiscard]] std::size_t charged() const noexcept {
        return charged_.load(std::memory_order_relaxed);
    }
    [[nodiscard]] memory_budget& budget() const noexcept { return *budget_; }

    /// Throws the memory_budget_exceeded that a refused charge of `requested` bytes gets: it names
    /// the first level, from the handle's budget up, that has no room for it (the handle's budget
    /// if another thread freed room meanwhile). Called by budgeted<A, budget_handle>.
    [[noreturn]] MEMKIT_COLD void throw_exceeded(std::size_t requested) const;

private:
    MEMKIT_COLD void over_refund(std::size_t n) noexcept;

    memory_budget* budget_;
    std::atomic<std::size_t> charged_{0};
};

} // namespace memkit
