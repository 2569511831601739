// memkit/compose/fallback.hpp - tries one allocator, and another when the first cannot serve.
//
// `fallback<Primary, Secondary>` asks Primary first (try_allocate) and Secondary when Primary
// returns nothing: a fixed buffer or a capped pool backed by the heap, a fast arena that spills
// into a general allocator. deallocate asks Primary whether it owns the pointer and frees it
// there, else in Secondary, so Primary must be an owning_allocator (owns(p) noexcept).
//
// Everything Primary refuses goes to Secondary, so Secondary's limits are the composition's:
// max_alignment is Secondary's (an alignment up to it is always served, by one part or the
// other). max_size() is the larger of the parts' (a size above Primary's goes to Secondary);
// is_thread_safe holds when both parts are. Optional members: owns() when Secondary also has it
// (true if either owns the pointer), reset() when both have it, stats() when both have it (the
// fields are summed; peak_bytes is the sum of the parts' peaks, an upper bound of the combined
// peak - use memkit::stats_collector for an exact one).
//
// Complexity: Primary's try_allocate, plus Secondary's allocate when Primary fails; deallocate
// costs Primary's owns() (O(chunks) for pools and arenas) plus the free. Thread-safety:
// thread-safe when both parts are. Failure: allocate throws what Secondary's allocate throws
// when both parts fail (errors carry Secondary's name); try_allocate returns nullptr.
//
//   memkit::fallback<memkit::pool, memkit::system_allocator> a{
//       memkit::pool{64, 16, {.max_nodes = 1000}}, {}};
//   void* p = a.allocate(48);    // from the pool while it has nodes, then from malloc
#pragma once

#include <concepts>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "memkit/core/concepts.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

template <owning_allocator Primary, allocator Secondary>
class fallback {
    using primary_traits = allocator_traits<Primary>;
    using secondary_traits = allocator_traits<Secondary>;

public:
    using primary_type = Primary;
    using secondary_type = Secondary;
    static constexpr bool is_thread_safe =
        primary_traits::is_thread_safe && secondary_traits::is_thread_safe;
    static constexpr std::size_t max_alignment = secondary_traits::max_alignment;
    static constexpr const char* name = "memkit::fallback";

    fallback() requires std::default_initializable<Primary> && std::default_initializable<Secondary>
        : primary_(), secondary_() {}
    fallback(Primary primary,
             Secondary secondary) noexcept(std::is_nothrow_move_constructible_v<Primary>&&
                                               std::is_nothrow_move_constructible_v<Secondary>)
        : primary_(std::move(primary)), secondary_(std::move(secondary)) {}
    /// Constructs each part in place from its tuple of arguments (for parts that cannot move).
    template <class... PrimaryArgs, class... SecondaryArgs>
    fallback(std::piecewise_construct_t, std::tuple<PrimaryArgs...> primary_args,
             std::tuple<SecondaryArgs...> secondary_args)
        : fallback(primary_args, secondary_args, std::index_sequence_for<PrimaryArgs...>{},
                   std::index_sequence_for<SecondaryArgs...>{}) {}

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = primary_.try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        return secondary_.allocate(size, align);
    }
    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        if (void* p = primary_.try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        return secondary_.try_allocate(size, align);
    }
    void deallocate(void* p, std::size_t size,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        if (primary_.owns(p)) primary_.deallocate(p, size, align);
        else secondary_.deallocate(p, size, align);
    }

    [[nodiscard]] bool owns(const void* p) const noexcept requires secondary_traits::has_owns {
        return primary_.owns(p) || secondary_.owns(p);
    }
    void reset() requires primary_traits::has_reset && secondary_traits::has_reset {
        primary_.reset();
        secondary_.reset();
    }
    /// The parts' stats() summed; peak_bytes is the sum of their peaks (an upper bound).
    [[nodiscard]] allocator_stats stats() const noexcept requires primary_traits::has_stats
        && secondary_traits::has_stats {
        const allocator_stats p = primary_.stats();
        const allocator_stats s = secondary_.stats();
        return {p.bytes_in_use + s.bytes_in_use, p.peak_bytes + s.peak_bytes,
                p.capacity + s.capacity, p.allocations + s.allocations,
                p.deallocations + s.deallocations};
    }
    [[nodiscard]] std::size_t max_size() const noexcept {
        const std::size_t p = primary_traits::max_size(primary_);
        const std::size_t s = secondary_traits::max_size(secondary_);
        return p > s ? p : s;
    }

    [[nodiscard]] Primary& primary() noexcept { return primary_; }
    [[nodiscard]] const Primary& primary() const noexcept { return primary_; }
    [[nodiscard]] Secondary& secondary() noexcept { return secondary_; }
    [[nodiscard]] const Secondary& secondary() const noexcept { return secondary_; }

private:
    template <class PrimaryTuple, class SecondaryTuple, std::size_t... I, std::size_t... J>
    fallback(PrimaryTuple& primary_args, SecondaryTuple& secondary_args, std::index_sequence<I...>,
             std::index_sequence<J...>)
        : primary_(std::get<I>(std::move(primary_args))...),
          secondary_(std::get<J>(std::move(secondary_args))...) {}

    [[no_unique_address]] Primary primary_;
    [[no_unique_address]] Secondary secondary_;
};

} // namespace memkit
