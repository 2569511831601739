// memkit/compose/segregator.hpp - routes each request by size to one of two allocators.
//
// `segregator<Threshold, Small, Large>` sends a request of at most Threshold bytes to Small and
// a larger one to Large, so that small objects come from a fast specialised allocator (a pool
// collection, a slab) and the rest from a general one (the system heap, a TLSF heap). Both parts
// are held by value and can be segregators themselves, which builds a size-class tree:
// `segregator<64, A, segregator<4096, B, C>>`. deallocate routes by the same rule, so it must
// receive the size and alignment given to allocate.
//
// Alignment: max_alignment is the smaller of the parts' max_alignment, so every alignment up to
// it works at every size. A request whose alignment exceeds Small's max_alignment goes to Large
// whatever its size (so a small over-aligned block is still served, or rejected by Large with
// invalid_alignment when Large cannot align it either); deallocate applies the same rule.
// Small must serve every size up to Threshold: when Small reports max_size(), the constructor
// checks it (bad_size otherwise).
//
// Optional members: owns() when both parts have it (true if either owns the pointer), reset()
// when both have it (both are reset), stats() when both have it (the fields are summed;
// peak_bytes is the sum of the parts' peaks, an upper bound of the true combined peak - wrap the
// segregator in memkit::stats_collector for an exact one). max_size() is Large's when Large goes
// beyond Threshold, else the smaller of Threshold and Small's.
//
// Complexity: one comparison plus the chosen part's cost. Thread-safety: thread-safe when both
// parts are (it has no state of its own). Failure: that of the part the request goes to; errors
// carry that part's name. The constructor throws bad_size when Small's max_size() is below
// Threshold.
//
//   memkit::segregator<256, memkit::pool_collection, memkit::system_allocator> a;
//   void* small = a.allocate(48);    // pool_collection
//   void* big = a.allocate(4000);    // system_allocator
#pragma once

#include <concepts>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

template <std::size_t Threshold, allocator Small, allocator Large>
class segregator {
    using small_traits = allocator_traits<Small>;
    using large_traits = allocator_traits<Large>;
    static_assert(Threshold > 0, "segregator: Threshold must be at least 1");

public:
    using small_type = Small;
    using large_type = Large;
    static constexpr std::size_t threshold = Threshold;
    static constexpr bool is_thread_safe =
        small_traits::is_thread_safe && large_traits::is_thread_safe;
    static constexpr std::size_t max_alignment =
        small_traits::max_alignment < large_traits::max_alignment ? small_traits::max_alignment
                                                                  : large_traits::max_alignment;
    static constexpr const char* name = "memkit::segregator";

    segregator() requires std::default_initializable<Small> && std::default_initializable<Large>
        : small_(), large_() {
        check_small();
    }
    segregator(Small small, Large large) noexcept(
        std::is_nothrow_move_constructible_v<Small>&& std::is_nothrow_move_constructible_v<Large> &&
        !small_traits::has_max_size)
        : small_(std::move(small)), large_(std::move(large)) {
        check_small();
    }
    /// Constructs each part in place from its tuple of arguments (for parts that cannot move).
    template <class... SmallArgs, class... LargeArgs>
    segregator(std::piecewise_construct_t, std::tuple<SmallArgs...> small_args,
               std::tuple<LargeArgs...> large_args)
        : segregator(small_args, large_args, std::index_sequence_for<SmallArgs...>{},
                     std::index_sequence_for<LargeArgs...>{}) {}

    /// True when (size, align) goes to Small.
    [[nodiscard]] static constexpr bool is_small(std::size_t size, std::size_t align) noexcept {
        return size <= Threshold && align <= small_traits::max_alignment;
    }

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        return is_small(size, align) ? small_.allocate(size, align) : large_.allocate(size, align);
    }
    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        return is_small(size, align) ? small_.try_allocate(size, align)
                                     : large_.try_allocate(size, align);
    }
    MEMKIT_ALWAYS_INLINE void deallocate(void* p, std::size_t size,
                                         std::size_t align = alignof(std::max_align_t)) noexcept {
        if (is_small(size, align)) small_.deallocate(p, size, align);
        else large_.deallocate(p, size, align);
    }

    [[nodiscard]] bool owns(const void* p) const noexcept requires small_traits::has_owns
        && large_traits::has_owns {
        return small_.owns(p) || large_.owns(p);
    }
    void reset() requires small_traits::has_reset && large_traits::has_reset {
        small_.reset();
        large_.reset();
    }
    /// The parts' stats() summed; peak_bytes is the sum of their peaks (an upper bound).
    [[nodiscard]] allocator_stats stats() const noexcept requires small_traits::has_stats
        && large_traits::has_stats {
        const allocator_stats s = small_.stats();
        const allocator_stats l = large_.stats();
        return {s.bytes_in_use + l.bytes_in_use, s.peak_bytes + l.peak_bytes,
                s.capacity + l.capacity, s.allocations + l.allocations,
                s.deallocations + l.deallocations};
    }
    [[nodiscard]] std::size_t max_size() const noexcept {
        const std::size_t large_max = large_traits::max_size(large_);
        if (large_max > Threshold) return large_max;
        const std::size_t small_max = small_traits::max_size(small_);
        return small_max < Threshold ? small_max : Threshold;
    }

    [[nodiscard]] Small& small() noexcept { return small_; }
    [[nodiscard]] const Small& small() const noexcept { return small_; }
    [[nodiscard]] Large& large() noexcept { return large_; }
    [[nodiscard]] const Large& large() const noexcept { return large_; }

private:
    template <class SmallTuple, class LargeTuple, std::size_t... I, std::size_t... J>
    segregator(SmallTuple& small_args, LargeTuple& large_args, std::index_sequence<I...>,
               std::index_sequence<J...>)
        : small_(std::get<I>(std::move(small_args))...),
          large_(std::get<J>(std::move(large_args))...) {
        check_small();
    }

    void check_small() const {
        if constexpr (small_traits::has_max_size) {
            const std::size_t small_max = small_.max_size();
            if (small_max < Threshold) throw bad_size(name, Threshold, small_max);
        }
    }

    [[no_unique_address]] Small small_;
    [[no_unique_address]] Large large_;
};

} // namespace memkit
