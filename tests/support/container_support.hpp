// Shared helpers for the container tests: an element type that counts live objects and throws on
// the k-th copy or move, an allocator that fails on the k-th allocation and checks that every
// block comes back to the allocator that made it, and a driver that runs an operation once per
// failure point.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace memkit::test {

/// Thrown by `counted` and `failing_allocator` when a failure point is reached.
struct injected_failure : std::runtime_error {
    injected_failure() : std::runtime_error("memkit::test: injected failure") {}
};

/// Global failure schedule for `counted`: when `countdown` reaches zero on a copy or move (ctor or
/// assignment, as selected), that operation throws. Also counts live objects of every
/// instantiation of `counted` together.
struct counted_state {
    static inline long live = 0;              ///< constructed and not yet destroyed
    static inline long countdown = -1;        ///< operations before the throw; -1: never throw
    static inline long copies = 0, moves = 0; ///< performed so far (for move-vs-copy checks)

    /// Arms the k-th (1-based) copy/move from now to throw; k == 0 disarms.
    static void fail_at(long k) noexcept { countdown = k == 0 ? -1 : k; }
    static void disarm() noexcept { countdown = -1; }
    static void reset_counts() noexcept { copies = moves = 0; }
    static void tick() {
        if (countdown > 0 && --countdown == 0) {
            countdown = -1;
            throw injected_failure();
        }
    }
};

/// An int-valued element that counts live objects, tracks copies and moves, detects use of a
/// destroyed or moved-from object and can throw on the k-th copy or move (counted_state).
/// `NoexceptMove` selects whether its move operations are noexcept (and then never throw), which
/// decides whether containers move or copy during reallocation.
template <bool NoexceptMove = false>
class basic_counted {
public:
    basic_counted() : basic_counted(0) {}
    basic_counted(int v) : v_(v), alive_(magic) { ++counted_state::live; } // NOLINT
    basic_counted(const basic_counted& o) : v_(o.checked()) {
        counted_state::tick();
        ++counted_state::copies;
        alive_ = magic;
        ++counted_state::live;
    }
    basic_counted(basic_counted&& o) noexcept(NoexceptMove) : v_(o.checked()) {
        if constexpr (!NoexceptMove) counted_state::tick();
        ++counted_state::moves;
        alive_ = magic;
        ++counted_state::live;
    }
    basic_counted& operator=(const basic_counted& o) {
        checked();
        const int v = o.checked();
        counted_state::tick();
        ++counted_state::copies;
        v_ = v;
        return *this;
    }
    basic_counted& operator=(basic_counted&& o) noexcept(NoexceptMove) {
        checked();
        const int v = o.checked();
        if constexpr (!NoexceptMove) counted_state::tick();
        ++counted_state::moves;
        v_ = v;
        return *this;
    }
    ~basic_counted() {
        EXPECT_EQ(alive_, magic) << "destroying an object that is not alive";
        alive_ = dead;
        --counted_state::live;
    }

    [[nodiscard]] int value() const { return checked(); }
    operator int() const { return checked(); } // NOLINT(google-explicit-constructor)

    friend bool operator==(const basic_counted& a, const basic_counted& b) {
        return a.checked() == b.checked();
    }
    friend auto operator<=>(const basic_counted& a, const basic_counted& b) {
        return a.checked() <=> b.checked();
    }

private:
    static constexpr std::uint32_t magic = 0xC0FFEE11u, dead = 0xDEADDEADu;
    int checked() const {
        EXPECT_EQ(alive_, magic) << "use of an object that is not alive";
        return v_;
    }
    int v_;
    std::uint32_t alive_;
};

using counted = basic_counted<false>;
using counted_nothrow_move = basic_counted<true>;

/// Shared state of a failing_allocator and its copies: counts, failure schedule and identity.
struct allocator_state {
    long allocations = 0, deallocations = 0, live_blocks = 0;
    long countdown = -1; ///< allocations before the failing one; -1: never fail
    void fail_at(long k) noexcept { countdown = k == 0 ? -1 : k; }
};

/// A standard allocator over operator new that fails (throws std::bad_alloc) on the k-th
/// allocation, counts live blocks, and compares equal only to copies of itself: a container that
/// frees through the wrong allocator makes `state().live_blocks` disagree between the two.
/// The propagation traits are template parameters so that every combination can be tested.
template <class T, bool POCCA = false, bool POCMA = false, bool POCS = false>
class failing_allocator {
public:
    using value_type = T;
    using propagate_on_container_copy_assignment = std::bool_constant<POCCA>;
    using propagate_on_container_move_assignment = std::bool_constant<POCMA>;
    using propagate_on_container_swap = std::bool_constant<POCS>;
    using is_always_equal = std::false_type;
    template <class U>
    struct rebind {
        using other = failing_allocator<U, POCCA, POCMA, POCS>;
    };

    failing_allocator() : s_(std::make_shared<allocator_state>()) {}
    explicit failing_allocator(std::shared_ptr<allocator_state> s) : s_(std::move(s)) {}
    template <class U>
    failing_allocator(const failing_allocator<U, POCCA, POCMA, POCS>& o) noexcept // NOLINT
        : s_(o.shared_state()) {}

    T* allocate(std::size_t n) {
        if (s_->countdown > 0 && --s_->countdown == 0) {
            s_->countdown = -1;
            throw std::bad_alloc();
        }
        T* p = static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{alignof(T)}));
        ++s_->allocations;
        ++s_->live_blocks;
        return p;
    }
    void deallocate(T* p, std::size_t) noexcept {
        ++s_->deallocations;
        --s_->live_blocks;
        ::operator delete(p, std::align_val_t{alignof(T)});
    }

    [[nodiscard]] allocator_state& state() const noexcept { return *s_; }
    [[nodiscard]] const std::shared_ptr<allocator_state>& shared_state() const noexcept {
        return s_;
    }

    template <class U>
    friend bool operator==(const failing_allocator& a,
                           const failing_allocator<U, POCCA, POCMA, POCS>& b) noexcept {
        return a.s_ == b.shared_state();
    }

private:
    std::shared_ptr<allocator_state> s_;
};

/// A stateless allocator over operator new whose max_size() is `Max` elements: containers must
/// throw std::length_error (or split their storage) rather than ask it for more.
template <class T, std::size_t Max>
struct small_max_allocator {
    using value_type = T;
    template <class U>
    struct rebind {
        using other = small_max_allocator<U, Max>;
    };
    small_max_allocator() = default;
    template <class U>
    small_max_allocator(const small_max_allocator<U, Max>&) noexcept {} // NOLINT
    T* allocate(std::size_t n) {
        EXPECT_LE(n, Max) << "allocate(n) above max_size()";
        return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{alignof(T)}));
    }
    void deallocate(T* p, std::size_t) noexcept {
        ::operator delete(p, std::align_val_t{alignof(T)});
    }
    [[nodiscard]] std::size_t max_size() const noexcept { return Max; }
    template <class U>
    friend bool operator==(const small_max_allocator&, const small_max_allocator<U, Max>&) noexcept {
        return true;
    }
};

/// Runs `op(k)` for k = 1, 2, ... where op arms a failure at its k-th step (a copy, a move or an
/// allocation), until op completes without throwing. Returns the number of failure points seen.
/// `op` returns normally when the operation succeeded; it must catch nothing itself. After each
/// injected failure, `check()` is called to verify the documented guarantee.
template <class Op, class Check>
long for_each_failure_point(Op&& op, Check&& check, long max_points = 100000) {
    for (long k = 1; k <= max_points; ++k) {
        try {
            op(k);
            counted_state::disarm();
            return k - 1;
        } catch (const injected_failure&) {
        } catch (const std::bad_alloc&) {
        }
        counted_state::disarm();
        check();
    }
    ADD_FAILURE() << "the operation still failed after " << max_points << " failure points";
    return max_points;
}

/// Checks at scope exit that no `counted` object was leaked or destroyed twice.
class live_object_guard {
public:
    live_object_guard() noexcept : before_(counted_state::live) {}
    ~live_object_guard() {
        EXPECT_EQ(counted_state::live, before_) << "counted objects leaked or double-destroyed";
        counted_state::disarm();
    }
    live_object_guard(const live_object_guard&) = delete;
    live_object_guard& operator=(const live_object_guard&) = delete;

private:
    long before_;
};

} // namespace memkit::test
