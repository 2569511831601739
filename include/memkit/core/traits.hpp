// memkit/core/traits.hpp - detection of an allocator's optional members.
//
// `allocator_traits<A>` answers at compile time which optional parts an allocator has and gives
// uniform access to them, so generic code (composition blocks, resource<A>, tests) never needs
// to know the concrete type:
//   has_owns, has_reset, has_stats, has_max_size,
//   has_reallocate                                   member detection
//   is_thread_safe                                   A::is_thread_safe, false when absent
//   max_alignment                                    A::max_alignment, alignof(max_align_t) when absent
//   max_size(a)                                      a.max_size(), or SIZE_MAX
//
// `allocator_ref<A>` is a non-owning handle that satisfies `allocator` by forwarding to a
// referenced allocator: use it to give several arenas or pools the same parent.
//
//   static_assert(memkit::allocator_traits<memkit::pool>::has_owns);
//   memkit::basic_arena<memkit::allocator_ref<memkit::pool>> a{memkit::allocator_ref{parent}};
#pragma once

#include <cstddef>
#include <limits>

#include "memkit/core/concepts.hpp"
#include "memkit/core/stats.hpp"

namespace memkit {

template <class A>
struct allocator_traits {
    static constexpr bool has_owns = requires(const A& a, const void* p) {
        { a.owns(p) } -> std::same_as<bool>;
    };
    static constexpr bool has_reset = requires(A& a) { a.reset(); };
    static constexpr bool has_stats = requires(const A& a) {
        { a.stats() } -> std::convertible_to<allocator_stats>;
    };
    /// `void* reallocate(void* p, size_t old_size, size_t new_size, size_t align)`: resizes in
    /// place when it can, else moves the contents (throws on failure; p stays valid).
    static constexpr bool has_reallocate = requires(A& a, void* p, std::size_t n) {
        { a.reallocate(p, n, n, n) } -> std::same_as<void*>;
    };
    static constexpr bool has_max_size = requires(const A& a) {
        { a.max_size() } -> std::convertible_to<std::size_t>;
    };

    static constexpr bool is_thread_safe = [] {
        if constexpr (requires { A::is_thread_safe; }) return static_cast<bool>(A::is_thread_safe);
        else return false;
    }();

    static constexpr std::size_t max_alignment = [] {
        if constexpr (requires { A::max_alignment; }) return static_cast<std::size_t>(A::max_alignment);
        else return alignof(std::max_align_t);
    }();

    /// The largest size `a` can ever satisfy (SIZE_MAX when the allocator does not say).
    [[nodiscard]] static std::size_t max_size(const A& a) noexcept {
        if constexpr (has_max_size) return a.max_size();
        else {
            (void)a;
            return std::numeric_limits<std::size_t>::max();
        }
    }
};

/// A copyable, non-owning reference to an allocator. The referenced allocator must outlive it.
template <allocator A>
class allocator_ref {
public:
    using referenced_type = A;
    static constexpr bool is_thread_safe = allocator_traits<A>::is_thread_safe;
    static constexpr std::size_t max_alignment = allocator_traits<A>::max_alignment;

    allocator_ref(A& a) noexcept : a_(&a) {}  // NOLINT(google-explicit-constructor): a handle

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        return a_->allocate(n, align);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        return a_->try_allocate(n, align);
    }
    void deallocate(void* p, std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        a_->deallocate(p, n, align);
    }
    [[nodiscard]] bool owns(const void* p) const noexcept
        requires allocator_traits<A>::has_owns
    {
        return a_->owns(p);
    }
    [[nodiscard]] std::size_t max_size() const noexcept { return allocator_traits<A>::max_size(*a_); }
    [[nodiscard]] allocator_stats stats() const noexcept
        requires allocator_traits<A>::has_stats
    {
        return a_->stats();
    }
    void reset()
        requires allocator_traits<A>::has_reset
    {
        a_->reset();
    }

    [[nodiscard]] A& get() const noexcept { return *a_; }
    friend bool operator==(allocator_ref x, allocator_ref y) noexcept { return x.a_ == y.a_; }

private:
    A* a_;
};

} // namespace memkit
