// memkit/pmr/resource.hpp - any memkit allocator as a std::pmr::memory_resource.
//
// `resource<A>` adapts a memkit allocator to the standard polymorphic interface so that
// std::pmr containers (and any library taking a std::pmr::memory_resource*) allocate from it.
// It either owns the allocator (`resource<arena> r{opts}` constructs one in place) or refers to
// one that lives elsewhere (`resource r{my_arena}` deduces `resource<allocator_ref<arena>>`).
//
// Behaviour follows the std::pmr contract, not memkit's raw interface: allocate(0) is valid
// (it is served as a 1-byte request), failures throw (out_of_memory is a std::bad_alloc;
// bad_size/invalid_alignment are std::invalid_argument), and deallocate forwards the size and
// alignment the container passes back. Two resources compare equal when they are the same
// object or refer to the same allocator, so memory from one may be freed through the other.
//
// Complexity: one virtual call on top of A's own cost. Thread-safety: that of A.
//
//   memkit::arena a;
//   memkit::resource r{a};                        // refers to `a`
//   std::pmr::vector<int> v{&r};                  // v allocates from the arena
#pragma once

#include <cstddef>
#include <memory_resource>
#include <type_traits>
#include <utility>

#include "memkit/core/concepts.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

template <allocator A>
class resource final : public std::pmr::memory_resource {
public:
    using allocator_type = A;

    /// Constructs the owned allocator from `args` (or refers to an lvalue allocator when A is an
    /// allocator_ref).
    template <class... Args>
        requires std::constructible_from<A, Args&&...>
    explicit resource(Args&&... args) noexcept(std::is_nothrow_constructible_v<A, Args&&...>)
        : a_(std::forward<Args>(args)...) {}

    resource(const resource&) = delete;
    resource& operator=(const resource&) = delete;

    /// The adapted allocator (for allocator_ref, the handle; use get().get() for the referent).
    [[nodiscard]] A& get() noexcept { return a_; }
    [[nodiscard]] const A& get() const noexcept { return a_; }

private:
    void* do_allocate(std::size_t bytes, std::size_t align) override {
        return a_.allocate(bytes == 0 ? 1 : bytes, align);
    }
    void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
        a_.deallocate(p, bytes == 0 ? 1 : bytes, align);
    }
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
        if (this == &other) return true;
        if constexpr (requires(const A& x, const A& y) { x == y; }) {
            // Same dynamic type and the same (referenced) allocator: interchangeable.
            const auto* o = dynamic_cast<const resource*>(&other);
            return o != nullptr && (is_reference || std::is_empty_v<A>) && a_ == o->a_;
        } else {
            return false;
        }
    }

    static constexpr bool is_reference = requires { typename A::referenced_type; };

    [[no_unique_address]] A a_;
};

/// `resource r{a}` with an lvalue allocator refers to it instead of copying it.
template <allocator A>
resource(A&) -> resource<allocator_ref<A>>;

} // namespace memkit
