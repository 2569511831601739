// memkit/pmr/std_allocator.hpp - any memkit allocator as a standard C++ Allocator.
//
// `std_allocator<T, A>` lets standard containers allocate from a memkit allocator without
// virtual calls: `std::vector<int, memkit::std_allocator<int, memkit::arena>> v{arena};`.
// It holds a pointer to the allocator, so copies share it, and the allocator must outlive every
// container that uses it. Unlike std::pmr::polymorphic_allocator, it propagates on copy
// assignment, move assignment and swap: a container always frees through the allocator that
// allocated its memory, and move assignment between containers on different allocators stays
// O(1). Two std_allocators compare equal when they point at the same allocator object.
//
// Failure: allocate throws memkit::bad_size when n * sizeof(T) overflows, and whatever A throws
// (memkit::out_of_memory, a std::bad_alloc) when it has no memory.
// Complexity: that of A. Thread-safety: that of A (the handle itself is a plain pointer).
//
//   memkit::pool nodes{64};
//   std::list<int, memkit::std_allocator<int, memkit::pool>> l{nodes};
//   l.push_back(1);
#pragma once

#include <cstddef>
#include <limits>
#include <type_traits>

#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

template <class T, allocator A>
class std_allocator {
public:
    using value_type = T;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using propagate_on_container_copy_assignment = std::true_type;
    using propagate_on_container_move_assignment = std::true_type;
    using propagate_on_container_swap = std::true_type;
    using is_always_equal = std::false_type;

    template <class U>
    struct rebind {
        using other = std_allocator<U, A>;
    };

    // Implicit on purpose: `std::vector<int, std_allocator<int, arena>> v{my_arena};` reads well.
    std_allocator(A& a) noexcept : a_(&a) {}  // NOLINT(google-explicit-constructor)

    template <class U>
    std_allocator(const std_allocator<U, A>& other) noexcept  // NOLINT(google-explicit-constructor)
        : a_(&other.get()) {}

    [[nodiscard]] T* allocate(std::size_t n) {
        std::size_t bytes = 0;
        if (MEMKIT_UNLIKELY(!checked_mul(n, sizeof(T), bytes)))
            throw bad_size("memkit::std_allocator", n, max_size());
        return static_cast<T*>(a_->allocate(bytes == 0 ? 1 : bytes, alignof(T)));
    }

    void deallocate(T* p, std::size_t n) noexcept {
        const std::size_t bytes = n * sizeof(T);
        a_->deallocate(p, bytes == 0 ? 1 : bytes, alignof(T));
    }

    /// The largest n for which allocate(n) can succeed.
    [[nodiscard]] std::size_t max_size() const noexcept {
        const std::size_t by_type = std::numeric_limits<std::size_t>::max() / sizeof(T);
        const std::size_t by_alloc = allocator_traits<A>::max_size(*a_) / sizeof(T);
        return by_type < by_alloc ? by_type : by_alloc;
    }

    [[nodiscard]] A& get() const noexcept { return *a_; }

    template <class U>
    friend bool operator==(const std_allocator& x, const std_allocator<U, A>& y) noexcept {
        return &x.get() == &y.get();
    }

private:
    A* a_;
};

} // namespace memkit
