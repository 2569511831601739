// memkit/compose/budgeted.hpp - a byte limit on what an allocator hands out.
//
// `budgeted<A>` forwards to the allocator A it holds by value while charging every allocation's
// requested size to a byte budget and giving it back on deallocate: a request that would take
// the bytes in use above the limit fails before A is asked. Use it to bound a subsystem's memory
// (a cache, a request handler, a plugin) with a clear error instead of exhausting the process.
// The limit is a runtime value: limit(), used(), remaining(), set_limit(n) (a limit below the
// bytes in use is allowed; allocations then fail until enough is freed).
//
// The budget is a policy (`Budget`, default `local_budget`: a limit and a counter stored in the
// object). Any type with try_charge(n) / refund(n) / refund_all() / used() / limit() /
// remaining() (the `budget_source` concept) can stand in for it - for example a handle to a
// budget shared by several allocators; is_thread_safe holds when both A and the Budget are
// thread-safe (local_budget is not). A budget that knows better which limit refused (one level
// of a hierarchy) may also have `[[noreturn]] void throw_exceeded(std::size_t requested) const`:
// budgeted then lets it throw (a budget_exceeded or a type derived from it) instead of building
// the error from used(), limit() and remaining().
//
// owns, stats (A's) and max_size (A's) are forwarded when A has them; reset() resets A and
// gives back every charged byte. max_alignment is A's.
//
// Complexity: A's plus a compare and an add per call. Thread-safety: see above.
// Failure: allocate throws memkit::budget_exceeded (an out_of_memory carrying requested,
// remaining(), used and limit()) when the request does not fit in the budget, and A's errors
// otherwise (a failed A gives the charge back); a request that is invalid for A (size 0 or above
// A's max_size(), a bad alignment) is reported as A would (bad_size / invalid_alignment, with
// this block's name) even when it is over budget. try_allocate returns nullptr instead.
//
//   memkit::budgeted<memkit::system_allocator> a{1 << 20};   // 1 MiB
//   void* p = a.allocate(1000);                               // a.remaining() == 1047576
//   a.deallocate(p, 1000);
#pragma once

#include <concepts>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <utility>

#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

/// What budgeted<A, Budget> needs from its budget.
template <class B>
concept budget_source = requires(B& b, const B& cb, std::size_t n) {
    { b.try_charge(n) }
    noexcept->std::same_as<bool>; // take n bytes if they fit
    { b.refund(n) }
    noexcept; // give back n charged bytes
    { b.refund_all() }
    noexcept; // give back all this user's bytes
    { cb.used() }
    noexcept->std::convertible_to<std::size_t>;
    { cb.limit() }
    noexcept->std::convertible_to<std::size_t>;
    { cb.remaining() }
    noexcept->std::convertible_to<std::size_t>;
};

/// A byte limit and a counter held in the budgeted allocator itself. Not thread-safe.
class local_budget {
public:
    static constexpr bool is_thread_safe = false;

    explicit local_budget(std::size_t limit = std::numeric_limits<std::size_t>::max()) noexcept
        : limit_(limit) {}

    [[nodiscard]] MEMKIT_ALWAYS_INLINE bool try_charge(std::size_t n) noexcept {
        if (MEMKIT_UNLIKELY(n > remaining())) return false;
        used_ += n;
        return true;
    }
    MEMKIT_ALWAYS_INLINE void refund(std::size_t n) noexcept { used_ -= n; }
    void refund_all() noexcept { used_ = 0; }
    [[nodiscard]] std::size_t used() const noexcept { return used_; }
    [[nodiscard]] std::size_t limit() const noexcept { return limit_; }
    [[nodiscard]] std::size_t remaining() const noexcept {
        return used_ < limit_ ? limit_ - used_ : 0;
    }
    void set_limit(std::size_t limit) noexcept { limit_ = limit; }

private:
    std::size_t used_ = 0;
    std::size_t limit_;
};

template <allocator A, budget_source Budget = local_budget>
class budgeted {
    using traits = allocator_traits<A>;

public:
    using allocator_type = A;
    using budget_type = Budget;
    static constexpr bool is_thread_safe = traits::is_thread_safe && [] {
        if constexpr (requires { Budget::is_thread_safe; })
            return static_cast<bool>(Budget::is_thread_safe);
        else return false;
    }();
    static constexpr std::size_t max_alignment = traits::max_alignment;
    static constexpr const char* name = "memkit::budgeted";

    /// A budget of `limit` bytes over a default-constructed A.
    explicit budgeted(std::size_t limit) requires std::default_initializable<A> &&
        std::constructible_from<Budget, std::size_t> : budget_(limit),
                                                       a_() {}
    budgeted(std::size_t limit, A a) requires std::constructible_from<Budget, std::size_t>
        : budget_(limit), a_(std::move(a)) {}
    /// A budget of `limit` bytes over an A constructed in place from `args`.
    template <class... Args>
    requires std::constructible_from<Budget, std::size_t> && std::constructible_from<A, Args&&...>
    budgeted(std::size_t limit, std::in_place_t, Args&&... args)
        : budget_(limit), a_(std::forward<Args>(args)...) {}
    /// Any budget source (a shared budget, for example) over `a`.
    budgeted(Budget budget, A a) : budget_(std::move(budget)), a_(std::move(a)) {}

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (MEMKIT_UNLIKELY(!budget_.try_charge(size))) fail(size, align);
        try {
            return a_.allocate(size, align);
        } catch (...) {
            budget_.refund(size);
            throw;
        }
    }
    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (MEMKIT_UNLIKELY(!budget_.try_charge(size))) return nullptr;
        void* p = a_.try_allocate(size, align);
        if (MEMKIT_UNLIKELY(p == nullptr)) budget_.refund(size);
        return p;
    }
    MEMKIT_ALWAYS_INLINE void deallocate(void* p, std::size_t size,
                                         std::size_t align = alignof(std::max_align_t)) noexcept {
        a_.deallocate(p, size, align);
        budget_.refund(size);
    }

    [[nodiscard]] bool owns(const void* p) const noexcept requires traits::has_owns {
        return a_.owns(p);
    }
    /// Resets A and gives back every byte charged.
    void reset() requires traits::has_reset {
        a_.reset();
        budget_.refund_all();
    }
    [[nodiscard]] allocator_stats stats() const noexcept requires traits::has_stats {
        return a_.stats();
    }
    [[nodiscard]] std::size_t max_size() const noexcept requires traits::has_max_size {
        return a_.max_size();
    }

    /// Bytes charged (requested sizes of live blocks).
    [[nodiscard]] std::size_t used() const noexcept { return budget_.used(); }
    [[nodiscard]] std::size_t limit() const noexcept { return budget_.limit(); }
    /// Bytes that can still be allocated (0 when the limit is at or below used()).
    [[nodiscard]] std::size_t remaining() const noexcept { return budget_.remaining(); }
    void set_limit(std::size_t limit) noexcept requires requires(Budget& b, std::size_t n) {
        b.set_limit(n);
    }
    { budget_.set_limit(limit); }

    [[nodiscard]] Budget& budget() noexcept { return budget_; }
    [[nodiscard]] const Budget& budget() const noexcept { return budget_; }
    [[nodiscard]] A& get() noexcept { return a_; }
    [[nodiscard]] const A& get() const noexcept { return a_; }

private:
    // Argument errors come first, so that a bad request reads the same with or without a budget.
    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        const std::size_t max = traits::max_size(a_);
        if (size == 0 || size > max || !is_pow2(align) || align > max_alignment)
            throw_bad_request(name, size, align, max, max_alignment);
        if constexpr (requires(const Budget& b) { b.throw_exceeded(size); })
            budget_.throw_exceeded(size);
        else
            throw budget_exceeded(name, size, budget_.remaining(), budget_.used(), budget_.limit());
    }

    Budget budget_;
    [[no_unique_address]] A a_;
};

} // namespace memkit
