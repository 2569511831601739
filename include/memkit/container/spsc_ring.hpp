// memkit/container/spsc_ring.hpp - a lock-free single-producer single-consumer ring buffer.
//
// `spsc_ring<T>` passes elements from exactly one producer thread to exactly one consumer thread
// without locks: a bounded FIFO in one block allocated at construction. The producer calls the
// push functions (try_push, try_emplace, push(span)), the consumer the pop functions (try_pop,
// front/pop, pop(span), pop(out, n)); size_approx(), empty() and capacity() may be called from
// either. Elements are constructed in place by the producer (never default-constructed) and
// destroyed when popped; the destructor destroys what is left.
//
// Design (as rigtorp::SPSCQueue; folly::ProducerConsumerQueue without the caches): the producer
// owns `tail` and the consumer owns `head`, each on its own cache line (memkit::cache_line_size)
// next to that side's private data, so the two threads do not false-share. Each side also keeps
// a private copy of the other side's index (the producer as `head + capacity`, the limit it may
// fill to) and reads the shared one (one cache-line transfer) only when its copy says the ring is
// full (or empty): in a steady stream most operations touch no line the other thread writes.
// A push constructs the element, then publishes it with a release store of `tail`; a pop reads
// `tail` with acquire, so it sees the constructed element, and frees the slot with a release
// store of `head`, which the producer reads with acquire before reusing the slot.
// The capacity is rounded up to a power of two: the indices are then free-running counters
// (tail - head is the size, no slot is wasted to tell full from empty, unsigned wrap-around is
// harmless) and a slot is `index & mask` - one AND, no compare or division on the hot path. The
// price is up to 2x the requested memory; capacity() says what was allocated.
//
// Complexity: every operation O(1) except the bulk ones, O(n) in the elements moved.
// Exception safety: a push whose constructor throws pushes nothing (strong); try_push(T&&) does
// not move from a value it does not push; push(span) constructs all of its elements before
// publishing any, and on a throw destroys them and pushes nothing. try_pop(T&) and try_pop() leave
// the element in the ring if the move throws. pop(span) and pop(out, n) pop the elements moved
// before a throwing move and leave the rest. The destructor must not race with either thread.
// Failure: the constructor throws std::length_error if the rounded capacity exceeds max_size(),
// and what the allocator throws; nothing else throws except T's operations. Pushing into a full
// ring or popping from an empty one returns false / 0 / nullopt. pop() without an element is a
// precondition violation (reported in debug builds, errc::invalid_argument, then ignored).
// Thread-safety: exactly one producer thread and one consumer thread at a time (they may change
// over time if the hand-over synchronizes, e.g. a thread join). Two producers or two consumers
// at once are a data race. size_approx() and empty() may be called from any thread; they read
// both indices, so the answer may be stale when it returns (a "not empty" seen by the consumer
// stays true, as does a "not full" seen by the producer).
// Allocator: any standard Allocator (raw pointers); the ring is neither copyable nor movable, so
// propagation does not arise. The ring's block is allocated by the constructor and freed by the
// destructor only. memkit::pmr::spsc_ring uses std::pmr::polymorphic_allocator; note that
// allocator-aware elements (std::pmr::string) then allocate on the producer thread and free on the
// consumer thread, so their resource must be thread-safe (std::pmr::synchronized_pool_resource).
//
//   memkit::spsc_ring<int> q{1024};
//   std::thread producer{[&] { for (int i = 0; i < 100; ++i) while (!q.try_push(i)) {} }};
//   int v; for (int got = 0; got < 100;) if (q.try_pop(v)) ++got;  producer.join();
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <memory_resource>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"

namespace memkit {

template <class T, class Allocator = std::allocator<T>>
class spsc_ring {
    using alloc_traits = std::allocator_traits<Allocator>;
    static_assert(std::is_same_v<typename alloc_traits::value_type, T>,
                  "Allocator::value_type must be T");
    static_assert(std::is_same_v<typename alloc_traits::pointer, T*>,
                  "allocators with fancy pointers are not supported");
    static_assert(std::is_nothrow_destructible_v<T>, "T's destructor must not throw");
    static_assert(std::atomic<std::size_t>::is_always_lock_free);

public:
    using value_type = T;
    using allocator_type = Allocator;
    using size_type = std::size_t;

    /// A ring for at least `capacity` elements (rounded up to a power of two, at least 1).
    explicit spsc_ring(size_type capacity, const Allocator& alloc = Allocator()) : alloc_(alloc) {
        const size_type limit = max_size();
        if (capacity > limit) throw_length_error(capacity, limit);
        cap_ = std::bit_ceil(capacity == 0 ? size_type{1} : capacity);
        mask_ = cap_ - 1;
        limit_ = cap_;
        buf_ = alloc_traits::allocate(alloc_, cap_);
    }

    spsc_ring(const spsc_ring&) = delete;
    spsc_ring& operator=(const spsc_ring&) = delete;

    /// Destroys the elements still in the ring. Neither thread may use the ring any more.
    ~spsc_ring() {
        if constexpr (!std::is_trivially_destructible_v<T>) {
            const size_type t = tail_.load(std::memory_order_acquire);
            for (size_type h = head_.load(std::memory_order_relaxed); h != t; ++h)
                alloc_traits::destroy(alloc_, buf_ + (h & mask_));
        }
        alloc_traits::deallocate(alloc_, buf_, cap_);
    }

    [[nodiscard]] allocator_type get_allocator() const noexcept { return alloc_; }
    [[nodiscard]] size_type capacity() const noexcept { return cap_; }
    /// The largest capacity a ring can have (a power of two no larger than the allocator's).
    [[nodiscard]] size_type max_size() const noexcept {
        size_type by_alloc = alloc_traits::max_size(alloc_);
        const size_type by_type =
            static_cast<size_type>(std::numeric_limits<std::ptrdiff_t>::max()) / sizeof(T);
        if (by_type < by_alloc) by_alloc = by_type;
        return std::bit_floor(by_alloc);
    }

    /// Number of elements: a snapshot when the other side is active (never above capacity()).
    [[nodiscard]] size_type size_approx() const noexcept {
        // head first: tail can only have grown since, so the difference is never negative.
        const size_type h = head_.load(std::memory_order_acquire);
        const size_type t = tail_.load(std::memory_order_acquire);
        const size_type n = t - h;
        return n > cap_ ? cap_ : n;
    }
    /// True if no element is ready: exact for the consumer (the answer can only become false
    /// while it waits), a snapshot for anyone else.
    [[nodiscard]] bool empty() const noexcept {
        return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
    }

    // ---- producer ------------------------------------------------------------------------

    /// Constructs an element at the tail from `args`; false (nothing constructed) when full.
    template <class... Args>
    bool try_emplace(Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args&&...>) {
        const size_type t = tail_.load(std::memory_order_relaxed);
        if (t == limit_) {
            limit_ = head_.load(std::memory_order_acquire) + cap_;
            if (t == limit_) return false;
        }
        alloc_traits::construct(alloc_, buf_ + (t & mask_), std::forward<Args>(args)...);
        tail_.store(t + 1, std::memory_order_release);
        return true;
    }
    bool try_push(const T& value) noexcept(std::is_nothrow_copy_constructible_v<T>) {
        return try_emplace(value);
    }
    /// Moves from `value` only when it is pushed.
    bool try_push(T&& value) noexcept(std::is_nothrow_move_constructible_v<T>) {
        return try_emplace(std::move(value));
    }

    /// Copies as many of `items` as fit, in order, and publishes them at once; returns how many.
    size_type push(std::span<const T> items) {
        const size_type t = tail_.load(std::memory_order_relaxed);
        size_type room = limit_ - t;
        if (room < items.size()) {
            limit_ = head_.load(std::memory_order_acquire) + cap_;
            room = limit_ - t;
        }
        const size_type n = items.size() < room ? items.size() : room;
        if (n == 0) return 0;
        if constexpr (bitwise) {
            // Two contiguous runs: up to the end of the block, then from its start.
            const size_type at = t & mask_;
            const size_type run = cap_ - at < n ? cap_ - at : n;
            std::memcpy(static_cast<void*>(buf_ + at), items.data(), run * sizeof(T));
            std::memcpy(static_cast<void*>(buf_), items.data() + run, (n - run) * sizeof(T));
        } else {
            size_type i = 0;
            try {
                for (; i < n; ++i)
                    alloc_traits::construct(alloc_, buf_ + ((t + i) & mask_), items[i]);
            } catch (...) {
                while (i != 0) {
                    --i;
                    alloc_traits::destroy(alloc_, buf_ + ((t + i) & mask_));
                }
                throw;
            }
        }
        tail_.store(t + n, std::memory_order_release);
        return n;
    }

    // ---- consumer ------------------------------------------------------------------------

    /// Moves the head element into `out` and pops it; false when empty.
    bool try_pop(T& out) noexcept(std::is_nothrow_move_assignable_v<T>) {
        const size_type h = head_.load(std::memory_order_relaxed);
        if (h == tail_cache_ && !refresh_tail(h)) return false;
        T* p = buf_ + (h & mask_);
        out = std::move(*p);
        alloc_traits::destroy(alloc_, p);
        head_.store(h + 1, std::memory_order_release);
        return true;
    }
    /// The head element, moved out and popped; nullopt when empty.
    [[nodiscard]] std::optional<T> try_pop() noexcept(std::is_nothrow_move_constructible_v<T>) {
        const size_type h = head_.load(std::memory_order_relaxed);
        if (h == tail_cache_ && !refresh_tail(h)) return std::nullopt;
        T* p = buf_ + (h & mask_);
        std::optional<T> out{std::move(*p)};
        alloc_traits::destroy(alloc_, p);
        head_.store(h + 1, std::memory_order_release);
        return out;
    }

    /// The head element, or nullptr when empty; the consumer may use it in place, then pop().
    [[nodiscard]] T* front() noexcept {
        const size_type h = head_.load(std::memory_order_relaxed);
        if (h == tail_cache_ && !refresh_tail(h)) return nullptr;
        return buf_ + (h & mask_);
    }
    /// Destroys the head element. Precondition: front() returned an element.
    void pop() noexcept {
        if (MEMKIT_CHECKS && head_.load(std::memory_order_relaxed) ==
                                 tail_.load(std::memory_order_acquire)) {
            report_violation({errc::invalid_argument, "memkit::spsc_ring", this,
                              "pop() on an empty ring"});
            return;
        }
        pop_unchecked();
    }

    /// Moves up to out.size() elements into `out`, in order; returns how many were popped.
    size_type pop(std::span<T> out) {
        if constexpr (bitwise) {
            const size_type h = head_.load(std::memory_order_relaxed);
            const size_type n = available(h, out.size());
            if (n == 0) return 0;
            const size_type at = h & mask_;
            const size_type run = cap_ - at < n ? cap_ - at : n;
            std::memcpy(static_cast<void*>(out.data()), buf_ + at, run * sizeof(T));
            std::memcpy(static_cast<void*>(out.data() + run), buf_, (n - run) * sizeof(T));
            head_.store(h + n, std::memory_order_release);
            return n;
        } else {
            return pop(out.begin(), out.size());
        }
    }

    /// Moves up to `max_count` elements to the output iterator `out`, in order; returns how many.
    template <class OutputIt>
        requires std::output_iterator<OutputIt, T&&>
    size_type pop(OutputIt out, size_type max_count) {
        const size_type h = head_.load(std::memory_order_relaxed);
        const size_type n = available(h, max_count);
        size_type i = 0;
        try {
            for (; i < n; ++i) {
                T* p = buf_ + ((h + i) & mask_);
                *out = std::move(*p);
                ++out;
                alloc_traits::destroy(alloc_, p);
            }
        } catch (...) {
            head_.store(h + i, std::memory_order_release);
            throw;
        }
        if (n != 0) head_.store(h + n, std::memory_order_release);
        return n;
    }

private:
    // Raw copies are safe only when the allocator would construct with placement new.
    static constexpr bool bitwise =
        std::is_trivially_copyable_v<T> &&
        !requires(Allocator& a, T* p, const T& v) { a.construct(p, v); } &&
        !requires(Allocator& a, T* p) { a.destroy(p); };

    // The consumer's cached tail says empty: reads the producer's index (one cache-line
    // transfer); true if elements arrived since.
    bool refresh_tail(size_type h) noexcept {
        tail_cache_ = tail_.load(std::memory_order_acquire);
        return h != tail_cache_;
    }

    void pop_unchecked() noexcept {
        const size_type h = head_.load(std::memory_order_relaxed);
        alloc_traits::destroy(alloc_, buf_ + (h & mask_));
        head_.store(h + 1, std::memory_order_release);
    }

    // Elements ready for the consumer, at most `want`; refreshes the cached tail if needed.
    size_type available(size_type h, size_type want) noexcept {
        size_type n = tail_cache_ - h;
        if (n < want) {
            tail_cache_ = tail_.load(std::memory_order_acquire);
            n = tail_cache_ - h;
        }
        return n < want ? n : want;
    }

    [[noreturn]] MEMKIT_COLD static void throw_length_error(size_type n, size_type limit) {
        throw std::length_error("memkit::spsc_ring: capacity " + std::to_string(n) +
                                " above max_size() " + std::to_string(limit));
    }

    // Producer's line: its index, written on every push, and how far it may go: the consumer's
    // index when last read, plus the capacity.
    alignas(cache_line_size) std::atomic<size_type> tail_{0};
    size_type limit_ = 0;
    // Consumer's line.
    alignas(cache_line_size) std::atomic<size_type> head_{0};
    size_type tail_cache_ = 0;
    // Read-only after construction, shared by both threads without traffic.
    alignas(cache_line_size) T* buf_ = nullptr;
    size_type cap_ = 0;
    size_type mask_ = 0;
    [[no_unique_address]] Allocator alloc_;
};

namespace pmr {
template <class T>
using spsc_ring = memkit::spsc_ring<T, std::pmr::polymorphic_allocator<T>>;
} // namespace pmr

} // namespace memkit
