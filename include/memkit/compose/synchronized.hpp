// memkit/compose/synchronized.hpp - makes any allocator safe to share between threads.
//
// `synchronized<A, Mutex>` owns an A and a Mutex and runs every member of A under the lock:
// allocate, try_allocate, deallocate, and owns, reset, stats and max_size when A has them.
// `with_lock(f)` runs f(A&) under the lock, for sequences that must not interleave with other
// threads (a LIFO series on a stack allocator, mark/unwind on an arena). The lock is held only
// around A's own calls: the only user code ever run under it is the callable given to with_lock.
//
// Complexity: that of A plus one lock/unlock per call. Thread-safety: thread-safe (that is its
// purpose); with_lock callables must not call back into the same synchronized object (the
// default std::mutex is not recursive). Failure: that of A; exceptions leave the lock released.
//
//   memkit::synchronized<memkit::stack_allocator> s{std::in_place, 1 << 20};
//   void* p = s.allocate(64);                               // any thread
//   s.with_lock([](memkit::stack_allocator& a) { a.reset(); });
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <mutex>
#include <type_traits>
#include <utility>

#include "memkit/core/concepts.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

template <allocator A, class Mutex = std::mutex>
class synchronized {
    using traits = allocator_traits<A>;

public:
    using allocator_type = A;
    using mutex_type = Mutex;
    static constexpr bool is_thread_safe = true;
    static constexpr std::size_t max_alignment = traits::max_alignment;
    static constexpr const char* name = [] {
        if constexpr (requires { A::name; }) return static_cast<const char*>(A::name);
        else return "memkit::synchronized";
    }();

    synchronized() requires std::default_initializable<A> : a_() {}
    /// Constructs the wrapped allocator in place from `args`.
    template <class... Args>
    requires std::constructible_from<A, Args&&...>
    explicit synchronized(std::in_place_t, Args&&... args) : a_(std::forward<Args>(args)...) {}
    explicit synchronized(A a) noexcept(std::is_nothrow_move_constructible_v<A>)
        : a_(std::move(a)) {}

    synchronized(const synchronized&) = delete;
    synchronized& operator=(const synchronized&) = delete;

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        std::lock_guard<Mutex> lock(mutex_);
        return a_.allocate(size, align);
    }
    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        std::lock_guard<Mutex> lock(mutex_);
        return a_.try_allocate(size, align);
    }
    void deallocate(void* p, std::size_t size,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        std::lock_guard<Mutex> lock(mutex_);
        a_.deallocate(p, size, align);
    }

    [[nodiscard]] bool owns(const void* p) const noexcept requires traits::has_owns {
        std::lock_guard<Mutex> lock(mutex_);
        return a_.owns(p);
    }
    void reset() requires traits::has_reset {
        std::lock_guard<Mutex> lock(mutex_);
        a_.reset();
    }
    /// A consistent snapshot: no call runs halfway through while it is taken.
    [[nodiscard]] allocator_stats stats() const noexcept requires traits::has_stats {
        std::lock_guard<Mutex> lock(mutex_);
        return a_.stats();
    }
    [[nodiscard]] std::size_t max_size() const noexcept requires traits::has_max_size {
        std::lock_guard<Mutex> lock(mutex_);
        return a_.max_size();
    }

    /// Runs f(A&) under the lock and returns its result.
    template <class F>
    requires std::invocable<F, A&>
    decltype(auto) with_lock(F&& f) {
        std::lock_guard<Mutex> lock(mutex_);
        return std::invoke(std::forward<F>(f), a_);
    }
    template <class F>
    requires std::invocable<F, const A&>
    decltype(auto) with_lock(F&& f) const {
        std::lock_guard<Mutex> lock(mutex_);
        return std::invoke(std::forward<F>(f), a_);
    }

private:
    mutable Mutex mutex_;
    A a_;
};

} // namespace memkit
