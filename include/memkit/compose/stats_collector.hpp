// memkit/compose/stats_collector.hpp - counts what goes through an allocator.
//
// `stats_collector<A>` forwards every call to the allocator A it holds by value and counts:
// successful allocations and deallocations, bytes in use (as requested), their peak, failed
// allocation requests, and a histogram of the sizes of successful allocations by power-of-two
// buckets - bucket k counts sizes in (2^(k-1), 2^k], bucket 0 size 1 - which is what one needs
// to choose size classes for a pool collection or a segregator threshold. stats() reports the
// counts with capacity taken from A's stats() (0 when A has none); inner_stats() is A's own.
// It adds the exact numbers to compositions whose parts only report approximate ones.
//
// owns, reset and max_size are forwarded when A has them; reset() also counts every live block
// as deallocated and sets bytes in use to 0 (the peak and the histogram stay). is_thread_safe is
// false: the counters are plain integers (wrap it in memkit::synchronized to share it).
// max_alignment and name are A's (errors come from A).
//
// Complexity: A's plus a few integer updates per call; stats() O(1) (plus A's stats()).
// Failure: that of A; a failed allocate leaves the counts of successes unchanged and adds one to
// failed_allocations().
//
//   memkit::stats_collector<memkit::pool_collection> a;
//   a.deallocate(a.allocate(100), 100);
//   auto hist = a.histogram();   // hist[7] == 1: one request in (64, 128]
#pragma once

#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "memkit/core/concepts.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

template <allocator A>
class stats_collector {
    using traits = allocator_traits<A>;

public:
    using allocator_type = A;
    /// Buckets of histogram(): sizes up to 2^63 (anything larger is counted in the last one).
    static constexpr std::size_t histogram_buckets = 64;
    using histogram_type = std::array<std::uint64_t, histogram_buckets>;

    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = traits::max_alignment;
    static constexpr const char* name = [] {
        if constexpr (requires { A::name; }) return static_cast<const char*>(A::name);
        else return "memkit::stats_collector";
    }();

    stats_collector() requires std::default_initializable<A> : a_() {}
    explicit stats_collector(A a) noexcept(std::is_nothrow_move_constructible_v<A>)
        : a_(std::move(a)) {}
    /// Constructs the wrapped allocator in place from `args`.
    template <class... Args>
    requires std::constructible_from<A, Args&&...>
    explicit stats_collector(std::in_place_t, Args&&... args) : a_(std::forward<Args>(args)...) {}

    /// The histogram bucket of a request of `size` bytes: the k with size in (2^(k-1), 2^k].
    [[nodiscard]] static constexpr std::size_t bucket_of(std::size_t size) noexcept {
        const auto k = static_cast<std::size_t>(std::bit_width(size - (size != 0 ? 1 : 0)));
        return k < histogram_buckets ? k : histogram_buckets - 1;
    }

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        void* p = nullptr;
        try {
            p = a_.allocate(size, align);
        } catch (...) {
            ++failures_;
            throw;
        }
        count_allocation(size);
        return p;
    }
    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        void* p = a_.try_allocate(size, align);
        if (MEMKIT_LIKELY(p != nullptr)) count_allocation(size);
        else ++failures_;
        return p;
    }
    void deallocate(void* p, std::size_t size,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        a_.deallocate(p, size, align);
        ++deallocations_;
        bytes_ -= size;
    }

    [[nodiscard]] bool owns(const void* p) const noexcept requires traits::has_owns {
        return a_.owns(p);
    }
    /// Resets A; every live block counts as deallocated (peak and histogram are kept).
    void reset() requires traits::has_reset {
        a_.reset();
        deallocations_ = allocations_;
        bytes_ = 0;
    }
    [[nodiscard]] std::size_t max_size() const noexcept requires traits::has_max_size {
        return a_.max_size();
    }

    /// Exact counts of what passed through; capacity is A's (0 when A keeps no stats).
    [[nodiscard]] allocator_stats stats() const noexcept {
        std::size_t capacity = 0;
        if constexpr (traits::has_stats) capacity = a_.stats().capacity;
        return {bytes_, peak_, capacity, allocations_, deallocations_};
    }
    /// A's own statistics.
    [[nodiscard]] allocator_stats inner_stats() const noexcept requires traits::has_stats {
        return a_.stats();
    }
    /// Successful allocations by request size (see bucket_of); the buckets sum to
    /// stats().allocations.
    [[nodiscard]] const histogram_type& histogram() const noexcept { return histogram_; }
    /// allocate calls that threw and try_allocate calls that returned nullptr.
    [[nodiscard]] std::uint64_t failed_allocations() const noexcept { return failures_; }

    [[nodiscard]] A& get() noexcept { return a_; }
    [[nodiscard]] const A& get() const noexcept { return a_; }

private:
    MEMKIT_ALWAYS_INLINE void count_allocation(std::size_t size) noexcept {
        ++allocations_;
        bytes_ += size;
        if (bytes_ > peak_) peak_ = bytes_;
        ++histogram_[bucket_of(size)];
    }

    std::size_t bytes_ = 0;
    std::size_t peak_ = 0;
    std::uint64_t allocations_ = 0;
    std::uint64_t deallocations_ = 0;
    std::uint64_t failures_ = 0;
    [[no_unique_address]] A a_;
    histogram_type histogram_{};
};

} // namespace memkit
