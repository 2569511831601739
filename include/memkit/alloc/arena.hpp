// memkit/alloc/arena.hpp - a monotonic (bump-pointer) arena with scopes.
//
// `arena` hands out memory by moving a pointer through a block; individual frees are no-ops and
// memory comes back all at once: `reset()` (keeps the first block for reuse), `release()`
// (returns every block to the parent), or `rewind(marker)` / an RAII `arena::scope` that returns
// to an earlier point, which makes it ideal for per-frame, per-request and per-phase scratch data.
//
// Blocks come from the Parent allocator (system_allocator by default) and grow geometrically
// (`arena_options::block_size` * `growth_factor`, capped at `max_block_size`); an optional caller
// buffer (for example on the stack) is used first and never freed. A request larger than half of
// the next block gets a dedicated block of its own, so a big allocation does not waste the rest of
// the current block. `max_total` caps the bytes taken from the parent. There is no per-allocation
// header: a 16-byte request costs 16 bytes plus alignment padding.
//
// Sanitizers: under ASan (and valgrind with MEMKIT_VALGRIND=1) the unused tail of every block is
// poisoned and each allocation unpoisons exactly the bytes requested, so reading or writing past
// the end of an allocation into the free tail, or into memory given back by rewind/reset, is
// reported (alignment padding between allocations stays poisoned too).
//
// Complexity: allocate O(1) (a new block is a parent call on a cold path); deallocate O(1) (no-op);
// rewind/reset/release O(blocks). owns() is O(blocks) and meant for debugging.
// Thread-safety: not thread-safe; use one arena per thread or memkit::synchronized.
// Failure: allocate throws out_of_memory when the parent fails or max_total would be exceeded,
// bad_size for a zero size, invalid_alignment for a non-power-of-two alignment or one above
// max_alignment (64 KiB); try_allocate returns nullptr instead. A deallocate of a pointer the
// arena does not own is a precondition violation checked in debug builds (errc::not_owned).
//
//   memkit::arena a;
//   { memkit::arena::scope s{a}; auto* tmp = a.allocate(1024); use(tmp); }  // freed here
//   std::byte buf[4096]; memkit::arena local{std::span{buf}};              // stack first
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"

namespace memkit {

struct arena_options {
    std::size_t block_size = 4096; ///< size of the first block taken from the parent
    double growth_factor = 2.0;    ///< each further block is this much larger (>= 1)
    std::size_t max_block_size = std::size_t{1} << 24;               ///< growth stops here (16 MiB)
    std::size_t max_total = std::numeric_limits<std::size_t>::max(); ///< bytes from the parent
};

template <allocator Parent = system_allocator>
class basic_arena {
    struct block {
        block* prev;
        std::size_t size; // bytes of the whole block, header included
    };
    static constexpr std::size_t header_size = align_up(sizeof(block), alignof(std::max_align_t));

public:
    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = std::size_t{1} << 16;
    static constexpr const char* name = "memkit::arena";

    /// A point in the arena's history to rewind to. Valid until the arena is reset, released or
    /// rewound to an earlier point.
    struct marker {
        block* blk;
        std::byte* cur;
        block* large;
        std::size_t bytes;
        std::uint64_t allocations;
    };

    /// Rewinds the arena to where it was at construction when it goes out of scope.
    class scope {
    public:
        explicit scope(basic_arena& a) noexcept : a_(&a), m_(a.mark()) {}
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;
        ~scope() { a_->rewind(m_); }

    private:
        basic_arena* a_;
        marker m_;
    };

    basic_arena() noexcept(std::is_nothrow_default_constructible_v<Parent>) = default;

    explicit basic_arena(arena_options opts, Parent parent = Parent{})
        : parent_(std::move(parent)), opts_(opts), next_block_size_(opts.block_size) {
        validate_options();
    }

    /// Uses `initial` first (never freed by the arena), then blocks from the parent.
    explicit basic_arena(std::span<std::byte> initial, arena_options opts = {},
                         Parent parent = Parent{})
        : parent_(std::move(parent)), opts_(opts), next_block_size_(opts.block_size) {
        validate_options();
        initial_ = initial.data();
        initial_size_ = initial.size();
        install_initial();
    }

    basic_arena(const basic_arena&) = delete;
    basic_arena& operator=(const basic_arena&) = delete;

    basic_arena(basic_arena&& o) noexcept
        : cur_(std::exchange(o.cur_, nullptr)), bytes_(std::exchange(o.bytes_, 0)),
          end_(std::exchange(o.end_, nullptr)), allocations_(std::exchange(o.allocations_, 0)),
          deallocations_(std::exchange(o.deallocations_, 0)),
          head_(std::exchange(o.head_, nullptr)), large_(std::exchange(o.large_, nullptr)),
          spare_(std::exchange(o.spare_, nullptr)), parent_(std::move(o.parent_)), opts_(o.opts_),
          next_block_size_(std::exchange(o.next_block_size_, o.opts_.block_size)),
          from_parent_(std::exchange(o.from_parent_, 0)), peak_(std::exchange(o.peak_, 0)),
          initial_(std::exchange(o.initial_, nullptr)),
          initial_size_(std::exchange(o.initial_size_, 0)) {}

    basic_arena& operator=(basic_arena&& o) noexcept {
        if (this != &o) {
            this->~basic_arena();
            ::new (static_cast<void*>(this)) basic_arena(std::move(o));
        }
        return *this;
    }

    ~basic_arena() {
        release();
        // The caller buffer outlives the arena: leave it as it was given.
        if constexpr (has_memory_annotations) {
            if (initial_ != nullptr) mark_owned(initial_, initial_size_);
        }
    }

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        // Two unsigned comparisons reject everything but the common case: the aligned address
        // lies in [cur, end] (this also catches a wrap-around from an absurd alignment) and the
        // block fits after it (size - 1 wraps for size 0, so a zero size is rejected as well).
        // Addresses are computed as integers so no out-of-range pointer is ever formed.
        const auto cur = reinterpret_cast<std::uintptr_t>(cur_);
        const auto end = reinterpret_cast<std::uintptr_t>(end_);
        const std::uintptr_t p = (cur + align - 1) & ~static_cast<std::uintptr_t>(align - 1);
        if (MEMKIT_LIKELY(p - cur <= end - cur && size - 1 < end - p &&
                          (align & (align - 1)) == 0)) {
            cur_ = reinterpret_cast<std::byte*>(p + size);
            bytes_ += size;
            ++allocations_;
            if constexpr (has_memory_annotations) mark_allocated(reinterpret_cast<void*>(p), size);
            return reinterpret_cast<void*>(p);
        }
        return allocate_slow(size, align);
    }

    /// A no-op for the memory (an arena frees in bulk); counted in stats().deallocations.
    void deallocate(void* p, std::size_t /*size*/,
                    std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(p != nullptr && !owns(p))) {
                report_violation(
                    {errc::not_owned, name, p, "pointer is in none of the arena's blocks"});
                return;
            }
        }
        ++deallocations_;
    }

    [[nodiscard]] marker mark() const noexcept {
        return {head_, cur_, large_, bytes_, allocations_};
    }

    /// Frees everything allocated after `m` was taken. Blocks taken from the parent since then are
    /// returned to it, except the largest, which is kept for the next growth (so that a scope
    /// crossing a block boundary in a loop does not call the parent every iteration).
    void rewind(const marker& m) noexcept {
        note_peak();
        while (large_ != m.large) {
            block* b = large_;
            large_ = b->prev;
            give_back(b);
        }
        while (head_ != m.blk) {
            block* b = head_;
            head_ = b->prev;
            retire(b);
        }
        if (head_ == nullptr) {
            cur_ = end_ = nullptr;
        } else {
            cur_ = m.cur;
            end_ = block_end(head_);
            if constexpr (has_memory_annotations)
                mark_unused(cur_, static_cast<std::size_t>(end_ - cur_));
        }
        bytes_ = m.bytes;
        allocations_ = m.allocations;
    }

    /// Frees every allocation but keeps the first block (the caller buffer, or the first block
    /// from the parent), plus one spare block for reuse.
    void reset() noexcept {
        note_peak();
        while (large_ != nullptr) {
            block* b = large_;
            large_ = b->prev;
            give_back(b);
        }
        if (head_ != nullptr) {
            while (head_->prev != nullptr) {
                block* b = head_;
                head_ = b->prev;
                retire(b);
            }
            cur_ = block_begin(head_);
            end_ = block_end(head_);
            if constexpr (has_memory_annotations)
                mark_unused(cur_, static_cast<std::size_t>(end_ - cur_));
        }
        deallocations_ += allocations_;
        bytes_ = 0;
        allocations_ = 0;
        next_block_size_ = opts_.block_size;
    }

    /// Returns every block to the parent; the arena is as new (the caller buffer is kept).
    void release() noexcept {
        note_peak();
        while (large_ != nullptr) {
            block* b = large_;
            large_ = b->prev;
            give_back(b);
        }
        while (head_ != nullptr) {
            block* b = head_;
            head_ = b->prev;
            if (!is_initial(b)) give_back(b);
            else if constexpr (has_memory_annotations)
                mark_owned(block_begin(b), b->size - header_size);
        }
        if (spare_ != nullptr) give_back(std::exchange(spare_, nullptr));
        cur_ = end_ = nullptr;
        deallocations_ += allocations_;
        bytes_ = 0;
        allocations_ = 0;
        next_block_size_ = opts_.block_size;
        install_initial();
    }

    /// True if `p` lies inside memory handed out by this arena (any block, dedicated or not).
    [[nodiscard]] bool owns(const void* p) const noexcept {
        const auto* b = static_cast<const std::byte*>(p);
        for (block* blk = head_; blk != nullptr; blk = blk->prev) {
            const std::byte* end = (blk == head_) ? cur_ : block_end(blk);
            if (b >= block_begin(blk) && b < end) return true;
        }
        for (block* blk = large_; blk != nullptr; blk = blk->prev)
            if (b >= block_begin(blk) && b < block_end(blk)) return true;
        return false;
    }

    [[nodiscard]] allocator_stats stats() const noexcept {
        return {bytes_, peak_ > bytes_ ? peak_ : bytes_, capacity(), allocations_, deallocations_};
    }

    /// Bytes obtained from the parent plus the caller buffer, including the spare block.
    [[nodiscard]] std::size_t capacity() const noexcept { return from_parent_ + initial_size_; }

    /// Bytes consumed in the blocks, alignment padding and abandoned block tails included.
    [[nodiscard]] std::size_t used() const noexcept {
        std::size_t n = 0;
        for (block* blk = head_; blk != nullptr; blk = blk->prev)
            n += static_cast<std::size_t>(((blk == head_) ? cur_ : block_end(blk)) -
                                          block_begin(blk));
        for (block* blk = large_; blk != nullptr; blk = blk->prev) n += blk->size - header_size;
        return n;
    }

    /// Bytes left in the current block.
    [[nodiscard]] std::size_t remaining() const noexcept {
        return static_cast<std::size_t>(end_ - cur_);
    }

    /// Blocks in use (the caller buffer and dedicated blocks included, the spare excluded).
    [[nodiscard]] std::size_t block_count() const noexcept {
        std::size_t n = 0;
        for (block* blk = head_; blk != nullptr; blk = blk->prev) ++n;
        for (block* blk = large_; blk != nullptr; blk = blk->prev) ++n;
        return n;
    }

    [[nodiscard]] std::size_t max_size() const noexcept {
        const std::size_t cap = opts_.max_total < static_cast<std::size_t>(PTRDIFF_MAX)
                                    ? opts_.max_total
                                    : static_cast<std::size_t>(PTRDIFF_MAX);
        return cap > header_size ? cap - header_size : 0;
    }

    [[nodiscard]] const arena_options& options() const noexcept { return opts_; }
    [[nodiscard]] Parent& parent() noexcept { return parent_; }

    scope make_scope() noexcept { return scope{*this}; }

private:
    static std::byte* block_begin(block* b) noexcept {
        return reinterpret_cast<std::byte*>(b) + header_size;
    }
    static std::byte* block_end(block* b) noexcept {
        return reinterpret_cast<std::byte*>(b) + b->size;
    }
    bool is_initial(block* b) const noexcept {
        return initial_ != nullptr && reinterpret_cast<std::byte*>(b) == initial_;
    }

    // bytes_ only ever drops in rewind/reset/release, so the peak is recorded there and the
    // allocation fast path does not have to maintain it.
    void note_peak() noexcept {
        if (bytes_ > peak_) peak_ = bytes_;
    }

    void validate_options() {
        if (!(opts_.growth_factor >= 1.0))
            throw std::invalid_argument("memkit::arena: growth_factor must be >= 1");
        if (opts_.block_size <= header_size || opts_.max_block_size < opts_.block_size)
            throw bad_size(name, opts_.block_size, opts_.max_block_size);
    }

    // Places the block header at the start of the caller buffer (if it can hold one).
    void install_initial() noexcept {
        if (initial_ == nullptr) return;
        std::byte* base = align_up(initial_, alignof(block));
        const auto skip = static_cast<std::size_t>(base - initial_);
        if (initial_size_ < skip + header_size + 1) return; // too small to be useful
        auto* b = ::new (static_cast<void*>(base)) block{nullptr, initial_size_ - skip};
        initial_ = base;
        initial_size_ -= skip;
        head_ = b;
        cur_ = block_begin(b);
        end_ = block_end(b);
        if constexpr (has_memory_annotations)
            mark_unused(cur_, static_cast<std::size_t>(end_ - cur_));
    }

    // Called for blocks that leave the chain on rewind/reset: keep the largest as the spare.
    void retire(block* b) noexcept {
        if (is_initial(b)) return;
        if (spare_ == nullptr || spare_->size < b->size) {
            std::swap(spare_, b);
            if constexpr (has_memory_annotations)
                mark_unused(block_begin(spare_), spare_->size - header_size);
        }
        if (b != nullptr) give_back(b);
    }

    void give_back(block* b) noexcept {
        // The parent may keep its own bookkeeping in the block: hand it back addressable.
        if constexpr (has_memory_annotations) mark_owned(block_begin(b), b->size - header_size);
        from_parent_ -= b->size;
        parent_.deallocate(b, b->size, alignof(std::max_align_t));
    }

    block* take(std::size_t size) noexcept {
        if (size > opts_.max_total - from_parent_) return nullptr;
        void* mem = parent_.try_allocate(size, alignof(std::max_align_t));
        if (mem == nullptr) return nullptr;
        from_parent_ += size;
        return ::new (mem) block{nullptr, size};
    }

    MEMKIT_NOINLINE void* allocate_slow(std::size_t size, std::size_t align) noexcept {
        if (size == 0 || !is_pow2(align) || align > max_alignment) return nullptr;
        // Worst-case room: the payload plus padding to reach the alignment from the block start.
        const std::size_t pad = align > alignof(std::max_align_t) ? align - 1 : 0;
        std::size_t need = 0;
        if (!checked_add(size, pad, need) || !checked_add(need, header_size, need) ||
            need > static_cast<std::size_t>(PTRDIFF_MAX))
            return nullptr;

        if (need > next_block_size_ / 2) {
            // Dedicated block: the current block stays active for the small requests.
            block* b = take(need);
            if (b == nullptr) return nullptr;
            b->prev = large_;
            large_ = b;
            if constexpr (has_memory_annotations)
                mark_unused(block_begin(b), b->size - header_size);
            return commit(align_up(block_begin(b), align), size);
        }

        block* b = nullptr;
        if (spare_ != nullptr && spare_->size >= need) {
            b = std::exchange(spare_, nullptr);
        } else {
            b = take(next_block_size_);
            if (b == nullptr) return nullptr;
            grow_next_block_size();
        }
        b->prev = head_;
        head_ = b;
        cur_ = block_begin(b);
        end_ = block_end(b);
        if constexpr (has_memory_annotations)
            mark_unused(cur_, static_cast<std::size_t>(end_ - cur_));
        return commit(align_up(cur_, align), size, true);
    }

    void* commit(std::byte* p, std::size_t size, bool bump = false) noexcept {
        if constexpr (has_memory_annotations) mark_allocated(p, size);
        if (bump) cur_ = p + size;
        bytes_ += size;
        ++allocations_;
        return p;
    }

    void grow_next_block_size() noexcept {
        const double next = static_cast<double>(next_block_size_) * opts_.growth_factor;
        next_block_size_ = next >= static_cast<double>(opts_.max_block_size)
                               ? opts_.max_block_size
                               : static_cast<std::size_t>(next);
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        if (size == 0 || size > max_size() || !is_pow2(align) || align > max_alignment)
            throw_bad_request(name, size, align, max_size(), max_alignment);
        const std::size_t avail =
            opts_.max_total == std::numeric_limits<std::size_t>::max()
                ? out_of_memory::unknown
                : (opts_.max_total > from_parent_ ? opts_.max_total - from_parent_ : 0);
        throw out_of_memory(name, size, avail, bytes_, capacity());
    }

    // Hot members first: the fast path touches only cur_, end_ and the two counters. The
    // counters are deliberately not adjacent: when they are, compilers merge their updates into
    // one 16-byte vector read-modify-write, which defeats store forwarding and made the fast
    // path 2.5x slower in a tight allocation loop (measured with bench/alloc/arena_bench.cpp).
    std::byte* cur_ = nullptr;
    std::size_t bytes_ = 0;
    std::byte* end_ = nullptr;
    std::uint64_t allocations_ = 0;
    std::uint64_t deallocations_ = 0;
    block* head_ = nullptr;  // current block; earlier ones through prev
    block* large_ = nullptr; // dedicated blocks for big requests, newest first
    block* spare_ = nullptr; // one retired block kept for reuse
    [[no_unique_address]] Parent parent_{};
    arena_options opts_{};
    std::size_t next_block_size_ = arena_options{}.block_size;
    std::size_t from_parent_ = 0;
    std::size_t peak_ = 0;
    std::byte* initial_ = nullptr;
    std::size_t initial_size_ = 0;
};

using arena = basic_arena<>;

} // namespace memkit
