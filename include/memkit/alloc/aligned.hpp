// memkit/alloc/aligned.hpp - raises the alignment of every request to a fixed minimum.
//
// `aligned_allocator<A, Align>` forwards every call to the allocator A it holds by value, with
// the alignment raised to at least Align: cache-line aligned nodes that never share a line
// (Align = 64), SIMD data (32 or 64), page-aligned buffers. Requests asking for more than Align
// keep their own alignment. deallocate forwards the same raised alignment, so A sees matching
// allocate/deallocate pairs. owns, reset, stats and max_size are forwarded when A has them.
//
// Complexity and thread-safety: those of A. Failure: that of A; errors are thrown by A and carry
// A's name. An alignment that is not a power of two (0 included) is passed to A unchanged, so it
// is rejected exactly as A rejects it.
//
//   memkit::aligned_allocator<memkit::system_allocator, 64> a;
//   void* p = a.allocate(100);          // 64-byte aligned
//   a.deallocate(p, 100);
#pragma once

#include <concepts>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

template <allocator A, std::size_t Align>
class aligned_allocator {
    using traits = allocator_traits<A>;
    static_assert(is_pow2(Align), "aligned_allocator: Align must be a power of two");
    static_assert(Align <= traits::max_alignment,
                  "aligned_allocator: Align exceeds the wrapped allocator's max_alignment");

public:
    using allocator_type = A;
    static constexpr std::size_t alignment = Align;
    static constexpr bool is_thread_safe = traits::is_thread_safe;
    static constexpr std::size_t max_alignment = traits::max_alignment;
    static constexpr const char* name = "memkit::aligned_allocator";

    aligned_allocator() requires std::default_initializable<A>
    = default;
    explicit aligned_allocator(A a) noexcept(std::is_nothrow_move_constructible_v<A>)
        : a_(std::move(a)) {}
    /// Constructs the wrapped allocator in place from `args`.
    template <class... Args>
    requires std::constructible_from<A, Args&&...>
    explicit aligned_allocator(std::in_place_t, Args&&... args) : a_(std::forward<Args>(args)...) {}

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        return a_.allocate(size, raise(align));
    }
    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        return a_.try_allocate(size, raise(align));
    }
    void deallocate(void* p, std::size_t size,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        a_.deallocate(p, size, raise(align));
    }

    [[nodiscard]] bool owns(const void* p) const noexcept requires traits::has_owns {
        return a_.owns(p);
    }
    void reset() noexcept(noexcept(std::declval<A&>().reset())) requires traits::has_reset {
        a_.reset();
    }
    [[nodiscard]] allocator_stats stats() const noexcept requires traits::has_stats {
        return a_.stats();
    }
    [[nodiscard]] std::size_t max_size() const noexcept requires traits::has_max_size {
        return a_.max_size();
    }

    [[nodiscard]] A& get() noexcept { return a_; }
    [[nodiscard]] const A& get() const noexcept { return a_; }

    friend bool
    operator==(const aligned_allocator& x,
               const aligned_allocator& y) noexcept requires std::equality_comparable<A> {
        return x.a_ == y.a_;
    }

private:
    // Only valid alignments are raised, so that A still sees (and rejects) a bad one.
    static constexpr std::size_t raise(std::size_t align) noexcept {
        return align < Align && is_pow2(align) ? Align : align;
    }

    [[no_unique_address]] A a_;
};

} // namespace memkit
