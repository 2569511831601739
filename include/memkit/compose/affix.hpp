// memkit/compose/affix.hpp - a header object before and a trailer object after every block.
//
// `affix<A, Prefix, Suffix>` takes from A a block large enough for a Prefix object, the user's
// block and a Suffix object, constructs Prefix (value-initialised) immediately before the user's
// block and Suffix right after it (at the next multiple of alignof(Suffix)), and destroys both in
// deallocate. Either may be `void` for none. It is the building block for per-block metadata -
// a size or a tag in front, guard words around the block to detect overruns, a checksum behind.
// `prefix(p)` and `suffix(p, size)` return the objects of block p.
//
// The user's block is aligned as requested: A is asked for the larger of the requested alignment
// and the affixes' alignments, and the prefix takes a whole multiple of that alignment in front
// (so a 4096-aligned block with a 16-byte prefix costs 4096 bytes in front). Over a size-limited
// A (a pool, a pool collection that rejects large sizes) an over-aligned request can therefore
// exceed A's max_size() and fail with A's bad_size: give such an A room for the enlarged request
// (overhead(align) bytes more), e.g. a pool collection with large_policy::parent. deallocate must
// receive the size and alignment given to allocate (they locate the affixes and A's block).
// Prefix and Suffix must be nothrow default constructible and nothrow destructible; reset()
// does not run the destructors of live blocks' affixes.
//
// Optional members: owns(p) when A has it (it tries the prefix room of every alignment, so it is
// true for every block of this affix and may also be true for some pointers inside them),
// reset() and stats() (A's, counting the affixes and padding) when A has them. max_size() is A's
// less the overhead at the default alignment. max_alignment and is_thread_safe are A's.
//
// Complexity: A's plus constructing and destroying the affixes. Thread-safety: that of A.
// Failure: allocate throws bad_size for a size of 0 or one whose total with the affixes
// overflows, invalid_alignment for an alignment that is not a power of two or above
// max_alignment (these with this block's name), and what A throws for the enlarged request
// (out_of_memory, or bad_size when it exceeds A's max_size()); try_allocate returns nullptr.
//
//   struct tag { std::uint32_t owner = 0; };
//   memkit::affix<memkit::system_allocator, tag> a;
//   void* p = a.allocate(100); a.prefix(p)->owner = 7; a.deallocate(p, 100);
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

namespace detail {

// Size and alignment of an affix type, with `void` meaning "none".
template <class T>
struct affix_layout {
    static constexpr std::size_t size = sizeof(T);
    static constexpr std::size_t align = alignof(T);
    static_assert(std::is_nothrow_default_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                  "affix: Prefix and Suffix must be nothrow default constructible and "
                  "nothrow destructible");
};
template <>
struct affix_layout<void> {
    static constexpr std::size_t size = 0;
    static constexpr std::size_t align = 1;
};

} // namespace detail

template <allocator A, class Prefix, class Suffix = void>
class affix {
    using traits = allocator_traits<A>;
    using prefix_layout = detail::affix_layout<Prefix>;
    using suffix_layout = detail::affix_layout<Suffix>;
    static constexpr std::size_t affix_align =
        prefix_layout::align > suffix_layout::align ? prefix_layout::align : suffix_layout::align;
    static_assert(affix_align <= traits::max_alignment,
                  "affix: the affixes need more alignment than the allocator offers");

public:
    using allocator_type = A;
    using prefix_type = Prefix;
    using suffix_type = Suffix;
    static constexpr bool is_thread_safe = traits::is_thread_safe;
    static constexpr std::size_t max_alignment = traits::max_alignment;
    static constexpr const char* name = "memkit::affix";

    affix() requires std::default_initializable<A> : a_() {}
    explicit affix(A a) noexcept(std::is_nothrow_move_constructible_v<A>) : a_(std::move(a)) {}
    /// Constructs the wrapped allocator in place from `args`.
    template <class... Args>
    requires std::constructible_from<A, Args&&...>
    explicit affix(std::in_place_t, Args&&... args) : a_(std::forward<Args>(args)...) {}

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        std::size_t bytes = 0;
        if (MEMKIT_UNLIKELY(!valid(size, align) || !inner_size(size, align, bytes)))
            fail(size, align);
        return construct(a_.allocate(bytes, inner_alignment(align)), size, align);
    }
    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        std::size_t bytes = 0;
        if (MEMKIT_UNLIKELY(!valid(size, align) || !inner_size(size, align, bytes))) return nullptr;
        void* inner = a_.try_allocate(bytes, inner_alignment(align));
        return inner != nullptr ? construct(inner, size, align) : nullptr;
    }
    void deallocate(void* p, std::size_t size,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        auto* user = static_cast<std::byte*>(p);
        if constexpr (!std::is_void_v<Suffix>) suffix(p, size)->~Suffix();
        if constexpr (!std::is_void_v<Prefix>) prefix(p)->~Prefix();
        std::size_t bytes = 0;
        (void)inner_size(size, align, bytes); // cannot overflow: allocate computed it
        a_.deallocate(user - prefix_room(align), bytes, inner_alignment(align));
    }

    /// The Prefix of block `p`.
    [[nodiscard]] Prefix* prefix(void* p) const noexcept requires(!std::is_void_v<Prefix>) {
        return std::launder(
            reinterpret_cast<Prefix*>(static_cast<std::byte*>(p) - prefix_layout::size));
    }
    /// The Suffix of block `p` of `size` bytes.
    [[nodiscard]] Suffix* suffix(void* p, std::size_t size) const noexcept
        requires(!std::is_void_v<Suffix>) {
        return std::launder(reinterpret_cast<Suffix*>(
            align_up(static_cast<std::byte*>(p) + size, suffix_layout::align)));
    }

    /// Bytes A is asked for beyond `size` at alignment `align` (prefix room, suffix and its
    /// padding at most).
    [[nodiscard]] static constexpr std::size_t overhead(std::size_t align) noexcept {
        return prefix_room(align) + (suffix_layout::align - 1) + suffix_layout::size;
    }

    [[nodiscard]] bool owns(const void* p) const noexcept requires traits::has_owns {
        // The prefix room depends on the block's alignment, which owns() is not told: try each
        // distinct room.
        const auto* user = static_cast<const std::byte*>(p);
        std::size_t last = static_cast<std::size_t>(-1);
        for (std::size_t align = 1; align != 0 && align <= max_alignment; align *= 2) {
            const std::size_t room = prefix_room(align);
            if (room == last) continue;
            last = room;
            if (reinterpret_cast<std::uintptr_t>(user) >= room && a_.owns(user - room)) return true;
        }
        return false;
    }
    /// Resets A (the affixes of live blocks are not destroyed).
    void reset() requires traits::has_reset { a_.reset(); }
    /// A's statistics (affixes and padding included).
    [[nodiscard]] allocator_stats stats() const noexcept requires traits::has_stats {
        return a_.stats();
    }
    [[nodiscard]] std::size_t max_size() const noexcept {
        const std::size_t limit = traits::max_size(a_);
        const std::size_t extra = overhead(alignof(std::max_align_t));
        return limit > extra ? limit - extra : 0;
    }

    [[nodiscard]] A& get() noexcept { return a_; }
    [[nodiscard]] const A& get() const noexcept { return a_; }

private:
    static constexpr std::size_t inner_alignment(std::size_t align) noexcept {
        return align > affix_align ? align : affix_align;
    }
    // Room in front of the user's block: the prefix rounded up to the block's alignment, so the
    // user's block stays aligned and the prefix ends exactly where the block starts.
    static constexpr std::size_t prefix_room(std::size_t align) noexcept {
        return align_up(prefix_layout::size, inner_alignment(align));
    }
    // What A is asked for: prefix room, the block, padding to the suffix, the suffix.
    static constexpr bool inner_size(std::size_t size, std::size_t align,
                                     std::size_t& out) noexcept {
        std::size_t n = 0;
        return checked_add(prefix_room(align), size, n) &&
               checked_align_up(n, suffix_layout::align, n) &&
               checked_add(n, suffix_layout::size, out);
    }
    bool valid(std::size_t size, std::size_t align) const noexcept {
        return size != 0 && is_pow2(align) && align <= max_alignment;
    }

    void* construct(void* inner, std::size_t size, std::size_t align) noexcept {
        void* user = static_cast<std::byte*>(inner) + prefix_room(align);
        if constexpr (!std::is_void_v<Prefix>)
            ::new (static_cast<void*>(static_cast<std::byte*>(user) - prefix_layout::size))
                Prefix();
        if constexpr (!std::is_void_v<Suffix>)
            ::new (static_cast<void*>(
                align_up(static_cast<std::byte*>(user) + size, suffix_layout::align))) Suffix();
        return user;
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        const std::size_t limit = max_size();
        if (size == 0 || !is_pow2(align) || align > max_alignment || size > limit)
            throw_bad_request(name, size, align, limit, max_alignment);
        throw bad_size(name, size, limit); // the total with the affixes overflows
    }

    [[no_unique_address]] A a_;
};

} // namespace memkit
