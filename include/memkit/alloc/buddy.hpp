// memkit/alloc/buddy.hpp - a binary buddy allocator over one fixed region.
//
// `basic_buddy_allocator<Parent>` splits a region into blocks whose sizes are the minimum block
// (`buddy_options::min_block`, 64 bytes by default, a power of two >= 16) times a power of two:
// a block of order k holds min_block << k bytes. A request is rounded up to the smallest order
// that holds it; a larger free block is split in halves until that order is reached, and a
// freed block merges with its buddy (the other half of its parent block) again and again while
// the buddy is free. Blocks are naturally aligned: a block of order k starts at a multiple of its
// size from the region base, so an alignment up to the block size comes for free.
//
// Region. Either a size (block bytes; rounded down to a multiple of min_block) taken from the
// Parent at construction, or a caller std::span<std::byte> that is never freed here. The base is
// aligned up to min(4096, the largest power of two not above the region size), which is also
// the largest alignment a request may ask for (`max_alignment`, 4096, or less on a small region:
// see supported_alignment()); pass a 4096-aligned span to lose no bytes to that. The usable size
// need not be a power of two: it is covered by naturally aligned top-level blocks, one per set
// bit of its count of min blocks (7 min blocks: one block of 4, one of 2, one of 1), so at most
// one min block of a region is lost; max_size() is the largest of those top-level blocks.
// Bookkeeping lives outside the blocks, in a side table of one byte per min block (order, free
// bit, block-start bit) placed after the blocks: in the parent's allocation, or at the end of
// the caller's span. Free blocks hold the links of a doubly linked free list per order, so a
// buddy is unlinked in O(1) when it merges.
//
// Complexity: allocate O(log(region / min_block)) splits at most (a bit mask finds the first
// non-empty order in O(1)); deallocate O(log(region / min_block)) merges; owns O(1); reset
// O(region / min_block); validate O(region / min_block). Thread-safety: not thread-safe; wrap it
// in memkit::synchronized to share it.
// Statistics: stats().bytes_in_use is the sum of requested sizes; allocated_bytes() the sum of
// the block sizes handed out; internal_fragmentation() is 1 - requested / allocated (0 when
// nothing is live); free_bytes() and largest_free_block() tell how much is left and how it lies.
// Resizing: resize_in_place shrinks by splitting off the upper halves and grows by absorbing free
// buddies that lie above the block; reallocate does that or moves the contents.
// Failure: the constructor throws memkit::bad_size for a min_block that is not a power of two of
// at least 16 bytes, and for a region too small to hold one min block (with its side-table byte);
// e.max_size() then holds the smallest region that works. A parent that cannot supply the
// region throws its own error. allocate throws out_of_memory (available = free bytes, used =
// allocated_bytes(), capacity = usable region) when no free block is large enough, bad_size for
// a size of 0 or above max_size(), invalid_alignment for an alignment that is not a power of two
// or above supported_alignment(); try_allocate returns nullptr instead. In debug builds
// (memkit::debug_checks) deallocating a pointer outside the region or not at the start of an
// allocated block reports errc::not_owned, and freeing memory that is free (a second free, also
// after the block has merged with its buddy) reports errc::double_free; the call then does
// nothing. The block's order comes from the side table, so `size` is used only for statistics.
//
//   memkit::buddy_allocator heap{1 << 20};          // 1 MiB region, 64-byte minimum blocks
//   void* p = heap.allocate(1000, 256);             // a 1024-byte block, 256-aligned
//   heap.deallocate(p, 1000, 256);                  // merges back into one 1 MiB block
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>

#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

struct buddy_options {
    std::size_t min_block = 64; ///< smallest block: a power of two, at least 16 bytes
};

template <allocator Parent = system_allocator>
class basic_buddy_allocator {
    // The links of a free block, stored in the block itself.
    struct free_block {
        free_block* next;
        free_block* prev;
    };

    // One side-table byte per min block. A byte is 0 unless a block starts there; a block start
    // holds head_bit, free_bit while the block is free, and the block's order.
    static constexpr std::uint8_t head_bit = 0x80;
    static constexpr std::uint8_t free_bit = 0x40;
    static constexpr std::uint8_t order_mask = 0x3f;
    static constexpr std::size_t order_count = 64;
    static constexpr std::size_t parent_max_alignment = allocator_traits<Parent>::max_alignment;

public:
    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = 4096;
    static constexpr const char* name = "memkit::buddy_allocator";

    /// Takes `region_size` bytes of blocks (rounded down to a multiple of min_block), plus the
    /// side table and any alignment slack, from `parent` in one allocation.
    explicit basic_buddy_allocator(std::size_t region_size, buddy_options opts = {},
                                   Parent parent = Parent{})
        : parent_(std::move(parent)) {
        check_min_block(opts.min_block);
        const std::size_t blocks = region_size / opts.min_block;
        std::size_t usable = 0;
        std::size_t total = 0;
        if (blocks == 0 || !checked_mul(blocks, opts.min_block, usable) ||
            !checked_add(usable, blocks, total) || total > static_cast<std::size_t>(PTRDIFF_MAX))
            throw bad_size(name, region_size, opts.min_block);
        const std::size_t base_align = base_alignment_for(usable);
        const std::size_t ask_align =
            base_align < parent_max_alignment ? base_align : parent_max_alignment;
        raw_bytes_ = total + (base_align - ask_align);
        raw_align_ = ask_align;
        raw_ = static_cast<std::byte*>(parent_.allocate(raw_bytes_, raw_align_));
        owns_region_ = true;
        setup(align_up(raw_, base_align), blocks, opts.min_block, base_align);
    }

    /// Manages the caller's `region` (which must outlive the allocator and is never freed here);
    /// the side table takes one byte per min block at the end of it.
    explicit basic_buddy_allocator(std::span<std::byte> region, buddy_options opts = {},
                                   Parent parent = Parent{})
        : parent_(std::move(parent)) {
        check_min_block(opts.min_block);
        const std::size_t n = region.size();
        const std::size_t base_align = base_alignment_for(n);
        const std::size_t pad = n == 0 ? 0 : align_padding(region.data(), base_align);
        const std::size_t blocks = n > pad ? (n - pad) / (opts.min_block + 1) : 0;
        if (blocks == 0) throw bad_size(name, n, opts.min_block + 1);
        raw_ = region.data();
        raw_bytes_ = n;
        setup(region.data() + pad, blocks, opts.min_block, base_align);
    }

    basic_buddy_allocator(const basic_buddy_allocator&) = delete;
    basic_buddy_allocator& operator=(const basic_buddy_allocator&) = delete;

    /// Takes the region and every block of `o`; `o` is left without a region (every allocation
    /// fails with bad_size) until something is assigned to it.
    basic_buddy_allocator(basic_buddy_allocator&& o) noexcept(
        std::is_nothrow_move_constructible_v<Parent>)
        : parent_(std::move(o.parent_)) {
        take(o);
    }

    basic_buddy_allocator&
    operator=(basic_buddy_allocator&& o) noexcept(std::is_nothrow_move_assignable_v<Parent>) {
        if (this != &o) {
            release_region();
            parent_ = std::move(o.parent_);
            take(o);
        }
        return *this;
    }

    /// Returns the region to the parent when it came from there (live blocks become invalid).
    ~basic_buddy_allocator() { release_region(); }

    // Not: blocks may lie in a caller's buffer, and that attribute would let
    // the compiler assume a block never compares equal to an address inside that buffer.
    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        // size - 1 and align - 1 wrap for 0, so one comparison each also rejects zero.
        if (MEMKIT_UNLIKELY(size - 1 >= max_size_ || align - 1 >= supported_align_ ||
                            (align & (align - 1)) != 0))
            return nullptr;
        const std::size_t order = order_for(size > align ? size : align);
        const std::uint64_t candidates = nonempty_ >> order;
        if (MEMKIT_UNLIKELY(candidates == 0)) return nullptr;
        std::size_t k = order + static_cast<std::size_t>(std::countr_zero(candidates));
        free_block* b = pop(k);
        const std::size_t off = offset_of(b);
        while (k > order) { // keep the lower half, free the upper one
            --k;
            const std::size_t upper = off + (min_block_ << k);
            table_[upper >> min_shift_] = static_cast<std::uint8_t>(head_bit | free_bit | k);
            push(k, base_ + upper);
        }
        table_[off >> min_shift_] = static_cast<std::uint8_t>(head_bit | order);
        bytes_in_use_ += size;
        allocated_bytes_ += min_block_ << order;
        if (MEMKIT_UNLIKELY(bytes_in_use_ > peak_)) peak_ = bytes_in_use_;
        ++allocations_;
        return b;
    }

    /// Frees the block at `p` and merges it with its free buddies. `size` and `align` are those
    /// given to allocate (or the last resize); the block's order is read from the side table.
    void deallocate(void* p, std::size_t size,
                    std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_block(p))) return;
        }
        const std::size_t off = offset_of(p);
        const std::size_t order = table_[off >> min_shift_] & order_mask;
        bytes_in_use_ -= size;
        allocated_bytes_ -= min_block_ << order;
        ++deallocations_;
        free_and_merge(off, order);
    }

    /// Resizes the block at `p` without moving it: always possible when the new size rounds to
    /// the block's order or a smaller one (the upper halves are freed), and for a larger order
    /// when the buddies above the block are free and the grown block stays naturally aligned.
    /// Returns false (changing nothing) otherwise, for a new size of 0 or above max_size(), and
    /// when `p` is not aligned to `align` (reallocate then moves the block).
    [[nodiscard]] bool resize_in_place(void* p, std::size_t old_size, std::size_t new_size,
                                       std::size_t align = alignof(std::max_align_t)) noexcept {
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_block(p))) return false;
        }
        return resize_block(p, old_size, new_size, align);
    }

    /// Resizes the block at `p` to `new_size`: in place when resize_in_place can, else by
    /// allocating a new block, copying min(old_size, new_size) bytes and freeing the old one.
    /// Throws like allocate and then leaves `p` untouched. A null `p` is an allocate. In debug
    /// builds a `p` that is not an allocated block is reported as by deallocate and nullptr is
    /// returned.
    [[nodiscard]] void* reallocate(void* p, std::size_t old_size, std::size_t new_size,
                                   std::size_t align = alignof(std::max_align_t)) {
        if (p == nullptr) return allocate(new_size, align);
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_block(p))) return nullptr;
        }
        if (resize_block(p, old_size, new_size, align)) return p;
        void* q = allocate(new_size, align);
        std::memcpy(q, p, old_size < new_size ? old_size : new_size);
        deallocate(p, old_size, align);
        return q;
    }

    /// Frees every block: the region is one set of top-level blocks again. The peak and the call
    /// counters keep counting from construction.
    void reset() noexcept {
        deallocations_ = allocations_;
        bytes_in_use_ = 0;
        allocated_bytes_ = 0;
        init_blocks();
    }

    /// True if `p` points into the region of blocks (allocated or free).
    [[nodiscard]] bool owns(const void* p) const noexcept {
        return reinterpret_cast<std::uintptr_t>(p) - reinterpret_cast<std::uintptr_t>(base_) <
               region_size_;
    }

    /// Walks the side table and every free list and throws memkit::corruption_detected at the
    /// first inconsistency: a block start that is misaligned or overruns the region, bytes
    /// inside a block that claim to start one, a free list entry outside the region, not at a
    /// free block of its order, or with a broken back link, a free block missing from its list,
    /// two free buddies left unmerged, or counters that disagree with the blocks.
    void validate() const {
        if (base_ == nullptr) return;
        std::size_t free_per_order[order_count] = {};
        std::size_t allocated = 0;
        for (std::size_t off = 0; off < region_size_;) {
            const std::uint8_t b = table_[off >> min_shift_];
            if ((b & head_bit) == 0) corrupt(base_ + off, "no block starts where one must");
            const std::size_t k = b & order_mask;
            if (k > top_order_) corrupt(base_ + off, "block order above the largest order");
            const std::size_t size = min_block_ << k;
            if ((off & (size - 1)) != 0) corrupt(base_ + off, "block not aligned to its size");
            if (size > region_size_ - off) corrupt(base_ + off, "block runs past the region");
            for (std::size_t i = (off >> min_shift_) + 1; i < (off + size) >> min_shift_; ++i)
                if (table_[i] != 0) corrupt(base_ + (i << min_shift_), "stray block start");
            if ((b & free_bit) != 0) {
                ++free_per_order[k];
                if (buddy_is_free(off, k)) corrupt(base_ + off, "free buddies were not merged");
            } else {
                allocated += size;
            }
            off += size;
        }
        if (allocated != allocated_bytes_)
            corrupt(base_, "allocated bytes differ from the allocated blocks");
        for (std::size_t k = 0; k < order_count; ++k) {
            const bool listed = heads_[k] != nullptr;
            if (listed != (((nonempty_ >> k) & 1) != 0))
                corrupt(heads_[k], "free-list mask disagrees with the lists");
            std::size_t count = 0;
            const free_block* prev = nullptr;
            for (const free_block* f = heads_[k]; f != nullptr; prev = f, f = f->next) {
                if (++count > free_per_order[k])
                    corrupt(f, "free list holds more blocks than are free (a cycle or a stray)");
                if (!owns(f) || (offset_of(f) & (min_block_ - 1)) != 0)
                    corrupt(f, "free-list entry outside the region");
                if (table_[offset_of(f) >> min_shift_] !=
                    static_cast<std::uint8_t>(head_bit | free_bit | k))
                    corrupt(f, "free-list entry is not a free block of its order");
                if (f->prev != prev) corrupt(f, "free-list back link is broken");
            }
            if (count != free_per_order[k]) corrupt(base_, "a free block is missing from its list");
        }
    }

    /// bytes_in_use: the sum of the requested sizes of live blocks; peak_bytes: its maximum since
    /// construction; capacity: bytes taken from the parent (region, side table, alignment slack)
    /// or the size of the caller's span.
    [[nodiscard]] allocator_stats stats() const noexcept {
        return {bytes_in_use_, peak_, raw_bytes_, allocations_, deallocations_};
    }

    /// Sum of the sizes of the blocks handed out (requests rounded up to their order).
    [[nodiscard]] std::size_t allocated_bytes() const noexcept { return allocated_bytes_; }
    /// 1 - requested / allocated bytes over the live blocks: the share of the allocated bytes
    /// lost to rounding up to a power of two. 0 when no block is live.
    [[nodiscard]] double internal_fragmentation() const noexcept {
        if (allocated_bytes_ == 0) return 0.0;
        return 1.0 - static_cast<double>(bytes_in_use_) / static_cast<double>(allocated_bytes_);
    }
    /// Bytes in free blocks.
    [[nodiscard]] std::size_t free_bytes() const noexcept {
        return region_size_ - allocated_bytes_;
    }
    /// Size of the largest free block (0 when none is free): the largest request that succeeds.
    [[nodiscard]] std::size_t largest_free_block() const noexcept {
        if (nonempty_ == 0) return 0;
        return min_block_ << (std::bit_width(nonempty_) - 1);
    }
    /// The usable region: a multiple of min_block, covered by top-level blocks.
    [[nodiscard]] std::size_t region_size() const noexcept { return region_size_; }
    [[nodiscard]] std::size_t min_block() const noexcept { return min_block_; }
    /// Size of the largest top-level block: no request above it can ever succeed.
    [[nodiscard]] std::size_t max_size() const noexcept { return max_size_; }
    /// The largest alignment a request may ask for: min(max_alignment, max_size()) here.
    [[nodiscard]] std::size_t supported_alignment() const noexcept { return supported_align_; }
    /// Size of the block that serves a request (0 when the request is invalid for this region).
    [[nodiscard]] std::size_t
    block_size_for(std::size_t size, std::size_t align = alignof(std::max_align_t)) const noexcept {
        if (size - 1 >= max_size_ || align - 1 >= supported_align_ || (align & (align - 1)) != 0)
            return 0;
        return min_block_ << order_for(size > align ? size : align);
    }

    [[nodiscard]] Parent& parent() noexcept { return parent_; }
    [[nodiscard]] const Parent& parent() const noexcept { return parent_; }

private:
    static void check_min_block(std::size_t min_block) {
        if (min_block < sizeof(free_block) || !is_pow2(min_block) ||
            min_block > (std::size_t{1} << 40))
            throw bad_size(name, min_block, std::size_t{1} << 40);
    }

    static std::size_t base_alignment_for(std::size_t n) noexcept {
        const std::size_t floor = n == 0 ? 1 : std::bit_floor(n);
        return floor < max_alignment ? floor : max_alignment;
    }

    void setup(std::byte* base, std::size_t blocks, std::size_t min_block,
               std::size_t base_align) noexcept {
        base_ = base;
        min_block_ = min_block;
        min_shift_ = static_cast<unsigned>(std::countr_zero(min_block));
        region_size_ = blocks * min_block;
        table_ = reinterpret_cast<std::uint8_t*>(base + region_size_);
        top_order_ = static_cast<std::size_t>(std::bit_width(blocks)) - 1;
        max_size_ = min_block << top_order_;
        supported_align_ = base_align < max_size_ ? base_align : max_size_;
        init_blocks();
    }

    // Every block free: one top-level block per set bit of the block count, largest first, so
    // that each starts at a multiple of its size.
    void init_blocks() noexcept {
        for (auto& h : heads_) h = nullptr;
        nonempty_ = 0;
        if (base_ == nullptr) return;
        const std::size_t blocks = region_size_ >> min_shift_;
        std::memset(table_, 0, blocks);
        std::size_t off = 0;
        for (std::size_t k = top_order_ + 1; k-- > 0;) {
            if (((blocks >> k) & 1) == 0) continue;
            table_[off >> min_shift_] = static_cast<std::uint8_t>(head_bit | free_bit | k);
            push(k, base_ + off);
            off += min_block_ << k;
        }
    }

    [[nodiscard]] std::size_t order_for(std::size_t need) const noexcept {
        if (need <= min_block_) return 0;
        return static_cast<std::size_t>(std::bit_width(need - 1)) - min_shift_;
    }

    [[nodiscard]] std::size_t offset_of(const void* p) const noexcept {
        return static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(p) -
                                        reinterpret_cast<std::uintptr_t>(base_));
    }

    void push(std::size_t k, std::byte* at) noexcept {
        free_block* head = heads_[k];
        auto* b = ::new (static_cast<void*>(at)) free_block{head, nullptr};
        if (head != nullptr) head->prev = b;
        heads_[k] = b;
        nonempty_ |= std::uint64_t{1} << k;
    }

    free_block* pop(std::size_t k) noexcept {
        free_block* b = heads_[k];
        heads_[k] = b->next;
        if (b->next != nullptr) b->next->prev = nullptr;
        else nonempty_ &= ~(std::uint64_t{1} << k);
        return b;
    }

    void unlink(std::size_t k, free_block* b) noexcept {
        if (b->prev != nullptr) b->prev->next = b->next;
        else heads_[k] = b->next;
        if (b->next != nullptr) b->next->prev = b->prev;
        if (heads_[k] == nullptr) nonempty_ &= ~(std::uint64_t{1} << k);
    }

    // True if the buddy of the order-k block at `off` exists in the region (the merged block
    // would fit) and is a free block of order k.
    [[nodiscard]] bool buddy_is_free(std::size_t off, std::size_t k) const noexcept {
        const std::size_t size = min_block_ << k;
        if (k >= top_order_ || (off & ~(2 * size - 1)) + 2 * size > region_size_) return false;
        return table_[(off ^ size) >> min_shift_] ==
               static_cast<std::uint8_t>(head_bit | free_bit | k);
    }

    void free_and_merge(std::size_t off, std::size_t k) noexcept {
        while (buddy_is_free(off, k)) {
            const std::size_t buddy = off ^ (min_block_ << k);
            unlink(k, reinterpret_cast<free_block*>(base_ + buddy));
            // The upper of the two stops being a block start.
            table_[(off > buddy ? off : buddy) >> min_shift_] = 0;
            off = off < buddy ? off : buddy;
            ++k;
        }
        table_[off >> min_shift_] = static_cast<std::uint8_t>(head_bit | free_bit | k);
        push(k, base_ + off);
    }

    bool resize_block(void* p, std::size_t old_size, std::size_t new_size,
                      std::size_t align) noexcept {
        if (new_size - 1 >= max_size_ || align - 1 >= supported_align_ ||
            (align & (align - 1)) != 0 || !is_aligned(p, align))
            return false;
        const std::size_t off = offset_of(p);
        const std::size_t idx = off >> min_shift_;
        const std::size_t k = table_[idx] & order_mask;
        const std::size_t want = order_for(new_size > align ? new_size : align);
        if (want > k) {
            // Grow by absorbing the free buddies above: the block must be the lower half at
            // every level, and each upper half a free block of exactly that order.
            const std::size_t grown = min_block_ << want;
            if ((off & (grown - 1)) != 0 || grown > region_size_ - off) return false;
            for (std::size_t j = k; j < want; ++j)
                if (table_[(off + (min_block_ << j)) >> min_shift_] !=
                    static_cast<std::uint8_t>(head_bit | free_bit | j))
                    return false;
            for (std::size_t j = k; j < want; ++j) {
                const std::size_t upper = off + (min_block_ << j);
                unlink(j, reinterpret_cast<free_block*>(base_ + upper));
                table_[upper >> min_shift_] = 0;
            }
        } else {
            // Shrink by freeing upper halves; their buddies are the kept lower halves, which are
            // allocated, so nothing merges.
            for (std::size_t j = k; j > want;) {
                --j;
                const std::size_t upper = off + (min_block_ << j);
                table_[upper >> min_shift_] = static_cast<std::uint8_t>(head_bit | free_bit | j);
                push(j, base_ + upper);
            }
        }
        table_[idx] = static_cast<std::uint8_t>(head_bit | want);
        allocated_bytes_ = allocated_bytes_ - (min_block_ << k) + (min_block_ << want);
        bytes_in_use_ = bytes_in_use_ - old_size + new_size;
        peak_ = peak_ < bytes_in_use_ ? bytes_in_use_ : peak_;
        return true;
    }

    // --- debug checks -------------------------------------------------------------------------

    // The start offset of the block that contains `off` (which lies in the region).
    [[nodiscard]] std::size_t containing_block(std::size_t off) const noexcept {
        off &= ~(min_block_ - 1);
        for (std::size_t k = 0; k <= top_order_; ++k) {
            const std::size_t start = off & ~((min_block_ << k) - 1);
            const std::uint8_t b = table_[start >> min_shift_];
            if ((b & head_bit) != 0 && start + (min_block_ << (b & order_mask)) > off) return start;
        }
        return off; // not reached while the table is intact
    }

    // True if `p` is the start of an allocated block; else reports why and returns false.
    MEMKIT_NOINLINE bool accept_block(const void* p) const noexcept {
        if (!owns(p)) {
            report_violation({errc::not_owned, name, p, "pointer outside the buddy region"});
            return false;
        }
        const std::size_t off = offset_of(p);
        const std::uint8_t b = table_[off >> min_shift_];
        const bool at_start = (off & (min_block_ - 1)) == 0 && (b & head_bit) != 0;
        if (at_start && (b & free_bit) == 0) return true;
        const std::uint8_t host = table_[containing_block(off) >> min_shift_];
        if ((host & free_bit) != 0 && (off & (min_block_ - 1)) == 0) {
            report_violation({errc::double_free, name, p,
                              at_start ? "block is already free"
                                       : "memory is already free (merged into a larger block)"});
        } else {
            report_violation(
                {errc::not_owned, name, p, "pointer is not the start of an allocated block"});
        }
        return false;
    }

    [[noreturn]] MEMKIT_NOINLINE void corrupt(const void* at, const char* what) const {
        throw corruption_detected(name, at, what);
    }

    // --- lifetime -----------------------------------------------------------------------------

    void take(basic_buddy_allocator& o) noexcept {
        raw_ = std::exchange(o.raw_, nullptr);
        raw_bytes_ = std::exchange(o.raw_bytes_, 0);
        raw_align_ = std::exchange(o.raw_align_, 0);
        owns_region_ = std::exchange(o.owns_region_, false);
        base_ = std::exchange(o.base_, nullptr);
        table_ = std::exchange(o.table_, nullptr);
        region_size_ = std::exchange(o.region_size_, 0);
        min_block_ = o.min_block_;
        min_shift_ = o.min_shift_;
        top_order_ = std::exchange(o.top_order_, 0);
        max_size_ = std::exchange(o.max_size_, 0);
        supported_align_ = std::exchange(o.supported_align_, 0);
        nonempty_ = std::exchange(o.nonempty_, 0);
        for (std::size_t k = 0; k < order_count; ++k)
            heads_[k] = std::exchange(o.heads_[k], nullptr);
        bytes_in_use_ = std::exchange(o.bytes_in_use_, 0);
        allocated_bytes_ = std::exchange(o.allocated_bytes_, 0);
        peak_ = std::exchange(o.peak_, 0);
        allocations_ = std::exchange(o.allocations_, 0);
        deallocations_ = std::exchange(o.deallocations_, 0);
    }

    void release_region() noexcept {
        if (owns_region_) parent_.deallocate(raw_, raw_bytes_, raw_align_);
        owns_region_ = false;
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        if (base_ == nullptr) throw bad_size(name, size, 0); // moved from: no region
        if (size == 0 || size > max_size_ || !is_pow2(align) || align > supported_align_)
            throw_bad_request(name, size, align, max_size_, supported_align_);
        throw out_of_memory(name, size, free_bytes(), allocated_bytes_, region_size_);
    }

    // Hot state first.
    std::uint64_t nonempty_ = 0; // bit k: the order-k free list is not empty
    std::byte* base_ = nullptr;
    std::uint8_t* table_ = nullptr;
    std::size_t min_block_ = 64;
    unsigned min_shift_ = 6;
    std::size_t max_size_ = 0;
    std::size_t supported_align_ = 0;
    std::size_t bytes_in_use_ = 0;
    std::size_t allocated_bytes_ = 0;
    std::size_t peak_ = 0;
    std::uint64_t allocations_ = 0;
    std::uint64_t deallocations_ = 0;
    std::size_t region_size_ = 0;
    std::size_t top_order_ = 0;
    free_block* heads_[order_count] = {};
    std::byte* raw_ = nullptr; // the parent's allocation or the caller's span
    std::size_t raw_bytes_ = 0;
    std::size_t raw_align_ = 0;
    bool owns_region_ = false;
    [[no_unique_address]] Parent parent_;
};

using buddy_allocator = basic_buddy_allocator<>;

} // namespace memkit
