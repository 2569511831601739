// memkit/core/concepts.hpp - the allocator concept every memkit building block satisfies.
//
// A memkit allocator is a plain class (no virtual functions) with
//   void* allocate(std::size_t size, std::size_t align);          // throws on failure
//   void* try_allocate(std::size_t size, std::size_t align) noexcept; // nullptr on failure
//   void  deallocate(void* p, std::size_t size, std::size_t align) noexcept;
// `deallocate` receives the size and alignment given to allocate (sized deallocation), which lets
// allocators keep no per-block header. Optional members (owns, reset, stats, max_size) are
// detected by memkit::allocator_traits.
//
//   template <memkit::allocator A> void* grab(A& a) { return a.allocate(64, 16); }
//   static_assert(memkit::allocator<memkit::arena>);
#pragma once

#include <concepts>
#include <cstddef>

namespace memkit {

template <class A>
concept allocator = requires(A& a, void* p, std::size_t n, std::size_t align) {
    { a.allocate(n, align) } -> std::same_as<void*>;
    { a.try_allocate(n, align) } noexcept -> std::same_as<void*>;
    { a.deallocate(p, n, align) } noexcept;
};

/// An allocator that can tell whether it handed out a pointer (needed by `fallback` and by the
/// debug ownership checks).
template <class A>
concept owning_allocator = allocator<A> && requires(const A& a, const void* p) {
    { a.owns(p) } noexcept -> std::same_as<bool>;
};

} // namespace memkit
