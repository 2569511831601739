// memkit/alloc/tlsf.hpp - a two-level segregated-fit (TLSF) heap: general-purpose allocation
// and free in constant time, for any size and any power-of-two alignment.
//
// `basic_tlsf_heap<Parent>` manages one or more regions: a caller buffer, memory taken from the
// Parent allocator (system_allocator by default) at construction, regions the caller adds with
// `add_region`, and, when `tlsf_options::growth` is on, further regions taken from the Parent
// whenever no free block fits a request (at least `region_size` bytes each, never more than
// `max_total` bytes from the Parent in all). Blocks of any size are carved from the regions:
//  * Free blocks sit in segregated lists indexed by two levels: the first level is
//    floor(log2(block size)), the second splits each power-of-two range into 32 linear classes
//    (below 512 bytes: 32 classes of 16 bytes). Two bitmaps say which lists hold blocks, so
//    finding a list is two count-trailing-zeros instructions and there is no loop over blocks:
//    allocate and deallocate are O(1). The classes are finer than "powers of two from 64 B to
//    4 KiB, 4 KiB steps to 64 KiB": 16-byte steps up to 512 B, 1/32 of the power of two above.
//  * A request is rounded up to the next class boundary before the search, so the head of the
//    list found always fits (good fit). The block is split and the rest returned to its list.
//    Only when that finds nothing does the heap look at the first 16 blocks of the request's
//    own class (a block there may still be large enough) before it adds a region or fails.
//  * Every block starts with one header word: its size and two flags (free, previous block
//    free). A free block also keeps its free-list links in its payload, and its address in the
//    last word of its own payload (the next block's "previous block" boundary tag, only used
//    while the block is free). Freeing coalesces at once with both physical neighbours, so two
//    free blocks are never adjacent. Each region ends with a zero-size, never-free sentinel
//    block, so coalescing never crosses regions.
//  * Lists are LIFO: freeing a block and allocating the same size again gives the same address
//    (for sizes below 512 B and sizes on a class boundary; other sizes search one class up).
//
// Overhead: 8 bytes per block; payloads are 16-byte aligned and their usable size (see
// `usable_size`) is the request rounded up to 8 mod 16, at least 24 bytes. Each region spends
// 64 bytes on its header and sentinel (plus up to 15 bytes to align its start), so a region
// must hold at least 96 bytes after aligning its start to 16. The heap object itself is about
// 8.5 KiB (the list heads) and owns nothing but its regions. Blocks are at most 1 TiB; a
// larger region only has its first TiB used. 64-bit targets only.
//
// Also: `reallocate` (in place when the block can grow into a free right neighbour or shrink by
// splitting, else allocate + copy + free), `resize_in_place`, `reset` (every block free, regions
// kept), `owns`, `usable_size`, `largest_free_block`, `free_bytes`, `fragmentation_ratio`
// (1 - largest free block / free bytes) and `validate`, which walks every block and list.
//
// Statistics: bytes_in_use is the sum of the usable sizes of the live blocks (what usable_size
// reports: the request rounded up as above, plus whatever a split left too small to stand on its
// own), not of the requested sizes; peak_bytes its maximum; capacity the bytes of all regions
// (caller regions included); allocations counts successful allocate/try_allocate calls and the
// moves of reallocate; deallocations counts deallocate calls, the moves of reallocate, and the
// blocks freed by reset. An in-place resize changes bytes_in_use only.
//
// Sanitizers: under ASan (and valgrind with MEMKIT_VALGRIND=1) a free block is poisoned except
// the words the heap itself uses (its header, its two list links and its last word, the next
// block's boundary tag), and a live block is addressable for exactly the bytes requested (or
// given to resize_in_place/reallocate): its slack up to usable_size() is poisoned, so a read of
// a freed block or past the requested size is reported. To use the slack, resize_in_place(p,
// size, usable_size(p)) first. A heap given a caller region (the span constructor, add_region)
// annotates nothing: such memory may be shared with other processes (shm_heap), whose changes
// the sanitizer of this process would not see.
//
// Complexity: allocate, try_allocate, deallocate and resize_in_place are O(1) (a new region is a
// Parent call on a cold path); reallocate O(1) plus the copy when it moves; reset and owns are
// O(regions); largest_free_block is O(blocks in the largest size class); validate is
// O(blocks + free blocks * regions). With debug checks on, deallocate also pays owns().
// Thread-safety: not thread-safe; use one heap per thread or memkit::synchronized<tlsf_heap>.
// Failure: allocate throws out_of_memory (available = largest_free_block(), used = bytes in use,
// capacity = region bytes) when no block fits and no region can be added (growth off, max_total
// reached or the Parent failed); bad_size for a size of 0 or above max_size() (512 GiB);
// invalid_alignment for an alignment that is not a power of two or above max_alignment (1 GiB);
// try_allocate returns nullptr instead. reallocate throws like allocate and then leaves the
// block as it was. Constructors and add_region throw bad_size for a region too small to hold one
// block (bad_size::size() is the region size), and the size constructor throws what the Parent
// throws. In debug builds (memkit::debug_checks) deallocate, reallocate and resize_in_place of a
// pointer outside the regions or not at a block start report errc::not_owned; of a free block
// errc::double_free (found by the block's free bit; a block whose header was reused by a later
// allocation may go unnoticed); the call then does nothing (reallocate returns nullptr,
// resize_in_place false). validate() throws corruption_detected with the payload address of the
// first block whose header, boundary tag or free-list links are inconsistent.
//
//   memkit::tlsf_heap heap{1 << 20};                 // 1 MiB from malloc, grows on demand
//   void* p = heap.allocate(3000, 64);
//   p = heap.reallocate(p, 3000, 6000, 64);  /* ... */  heap.deallocate(p, 6000, 64);
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

struct tlsf_options {
    bool growth = true;                             ///< add a region from the parent when full
    std::size_t region_size = std::size_t{1} << 18; ///< smallest region taken when growing
    std::size_t max_total = std::numeric_limits<std::size_t>::max(); ///< bytes from the parent
};

template <allocator Parent = system_allocator>
class basic_tlsf_heap {
    static_assert(sizeof(void*) == 8 && sizeof(std::size_t) == 8,
                  "memkit::tlsf_heap needs a 64-bit target");

    // A block lives at a 16-byte aligned address b. Its first word is the last word of the
    // previous block's payload (valid only while that block is free); `header` holds the span
    // (bytes from b to the next block, a multiple of 16) and the flags; the payload starts at
    // b + 16, where a free block keeps its list links.
    struct block {
        block* prev_phys;
        std::size_t header;
        block* next_free;
        block* prev_free;
    };

    // Lives at the start of each region; the first block follows it, the sentinel ends it.
    struct alignas(16) region {
        region* next;
        std::byte* raw;
        std::size_t raw_size;
        block* first;
        block* sentinel;
        bool from_parent;
    };

    static constexpr std::size_t granule = 16;
    static constexpr std::size_t header_word = sizeof(std::size_t); // per-block overhead
    static constexpr std::size_t payload_offset = 2 * sizeof(void*);
    static constexpr std::size_t min_span = sizeof(block);
    static constexpr std::size_t sentinel_size = 2 * sizeof(void*);
    static constexpr std::size_t free_bit = 1;
    static constexpr std::size_t prev_free_bit = 2;
    static constexpr std::size_t flag_mask = granule - 1;
    static constexpr std::size_t reserved_bits = flag_mask & ~(free_bit | prev_free_bit);

    static constexpr unsigned sl_log2 = 5;
    static constexpr unsigned sl_count = 1u << sl_log2;
    static constexpr unsigned fl_shift = sl_log2 + 4; // log2(granule)
    static constexpr std::size_t small_span = std::size_t{1} << fl_shift;
    static constexpr unsigned fl_count = 32;
    // Spans below 2^(fl_count + fl_shift - 2) map to first-level indices below fl_count.
    static constexpr std::size_t max_block_span =
        (std::size_t{1} << (fl_count + fl_shift - 2)) - granule;

    static constexpr std::size_t parent_alignment =
        allocator_traits<Parent>::max_alignment < granule ? allocator_traits<Parent>::max_alignment
                                                          : granule;
    static constexpr std::size_t region_overhead =
        sizeof(region) + sentinel_size + (granule - parent_alignment);

    static_assert(sizeof(region) == 48 && sizeof(block) == 32);

    struct list_index {
        unsigned fl;
        unsigned sl;
        friend bool operator==(list_index, list_index) = default;
    };

public:
    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = std::size_t{1} << 30;
    static constexpr const char* name = "memkit::tlsf_heap";
    /// The smallest caller region that always holds one block, whatever its alignment.
    static constexpr std::size_t min_region_size =
        sizeof(region) + min_span + sentinel_size + granule - 1;

    /// An empty heap: the first allocation takes a region from the parent (default options).
    basic_tlsf_heap() noexcept(std::is_nothrow_default_constructible_v<Parent>) = default;

    /// Takes a first region of `initial_size` bytes from `parent`. Throws bad_size when it is too
    /// small for one block or above opts.max_total, and what the parent throws.
    explicit basic_tlsf_heap(std::size_t initial_size, tlsf_options opts = {},
                             Parent parent = Parent{})
        : parent_(std::move(parent)), opts_(opts) {
        if (initial_size < region_overhead + min_span || initial_size > opts_.max_total)
            throw bad_size(name, initial_size, opts_.max_total);
        void* raw = parent_.allocate(initial_size, parent_alignment);
        block* b = install(static_cast<std::byte*>(raw), initial_size, true);
        if (b == nullptr) { // only a parent that ignores the alignment gets here
            parent_.deallocate(raw, initial_size, parent_alignment);
            throw bad_size(name, initial_size, opts_.max_total);
        }
        taken_ = initial_size;
        insert(b, span_of(b));
    }

    /// Manages the caller's `buffer`, which must outlive the heap and is never freed by it.
    /// Growth is off unless `opts` turns it on. Throws bad_size when the buffer cannot hold one
    /// block.
    explicit basic_tlsf_heap(std::span<std::byte> buffer,
                             tlsf_options opts = tlsf_options{.growth = false},
                             Parent parent = Parent{})
        : parent_(std::move(parent)), opts_(opts) {
        add_region(buffer);
    }

    basic_tlsf_heap(const basic_tlsf_heap&) = delete;
    basic_tlsf_heap& operator=(const basic_tlsf_heap&) = delete;

    /// Takes every region of `o`; `o` is left empty (no regions, same options) and usable.
    basic_tlsf_heap(basic_tlsf_heap&& o) noexcept(std::is_nothrow_move_constructible_v<Parent>)
        : parent_(std::move(o.parent_)), opts_(o.opts_), regions_(o.regions_),
          fl_bitmap_(o.fl_bitmap_), bytes_in_use_(o.bytes_in_use_), peak_(o.peak_),
          capacity_(o.capacity_), taken_(o.taken_), total_span_(o.total_span_),
          allocations_(o.allocations_), deallocations_(o.deallocations_),
          free_count_(o.free_count_), region_count_(o.region_count_) {
        std::memcpy(sl_bitmap_, o.sl_bitmap_, sizeof sl_bitmap_);
        std::memcpy(heads_, o.heads_, sizeof heads_);
        if constexpr (has_memory_annotations) this->annotate_ = o.annotate_;
        o.forget();
    }

    basic_tlsf_heap&
    operator=(basic_tlsf_heap&& o) noexcept(std::is_nothrow_move_constructible_v<Parent>) {
        if (this != &o) {
            this->~basic_tlsf_heap();
            ::new (static_cast<void*>(this)) basic_tlsf_heap(std::move(o));
        }
        return *this;
    }

    /// Returns the regions taken from the parent (live blocks become invalid).
    ~basic_tlsf_heap() {
        for (region* r = regions_; r != nullptr;) {
            region* next = r->next;
            // Caller regions outlive the heap, and the parent may keep bookkeeping in its own.
            if constexpr (has_memory_annotations) mark_owned(r->raw, r->raw_size);
            if (r->from_parent) parent_.deallocate(r->raw, r->raw_size, parent_alignment);
            r = next;
        }
    }

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        // size - 1 and align - 1 wrap for 0, so these also reject zero.
        if (MEMKIT_UNLIKELY(size - 1 >= max_request || align - 1 >= max_alignment ||
                            (align & (align - 1)) != 0))
            return nullptr;
        if (MEMKIT_UNLIKELY(align > granule)) return allocate_aligned(size, align);
        const std::size_t span = span_for(size);
        block* b = take_free(span);
        if (MEMKIT_UNLIKELY(b == nullptr)) {
            b = refill(span);
            if (b == nullptr) return nullptr;
        }
        return hand_out(use(b, span), size);
    }

    /// Frees the block at `p`, merging it with free neighbours. `size` and `align` are those
    /// given to allocate. The block header knows the size; `size` only predicts it (a wrong
    /// size costs a little time, never correctness).
    MEMKIT_ALWAYS_INLINE void
    deallocate(void* p, std::size_t size,
               std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_live(p))) return;
        }
        // The header of a block just freed by the program is usually a cache miss. The span the
        // caller's size implies lets the list and bitmap updates (and the next allocation, which
        // reads the same bitmap) go ahead without waiting for it; the header only confirms.
        block* b = block_of(p);
        const std::size_t span = span_for(size);
        if (MEMKIT_UNLIKELY(span_of(b) != span)) return release_unpredicted(b);
        release(b, span);
    }

    /// Resizes the block at `p` (allocated with `old_size` and `align`) to `new_size`: in place
    /// when it can, else allocates a new block, copies min(old_size, new_size) bytes and frees
    /// the old one. `p == nullptr` allocates. Throws like allocate; `p` is then unchanged.
    [[nodiscard]] void* reallocate(void* p, std::size_t old_size, std::size_t new_size,
                                   std::size_t align = alignof(std::max_align_t)) {
        if (p == nullptr) return allocate(new_size, align);
        if (MEMKIT_UNLIKELY(new_size - 1 >= max_request))
            throw_bad_request(name, new_size, align, max_size(), max_alignment);
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_live(p))) return nullptr;
        }
        if (resize(block_of(p), new_size)) return p;
        void* q = allocate(new_size, align);
        std::memcpy(q, p, old_size < new_size ? old_size : new_size);
        deallocate(p, old_size, align);
        return q;
    }

    /// Resizes the block at `p` without moving it: shrinking always succeeds (the tail becomes a
    /// free block when it is large enough), growing succeeds when the next block is free and
    /// large enough. Returns false (and changes nothing) otherwise, and for a size of 0 or above
    /// max_size(). The contents up to min(old, new) size stay.
    bool resize_in_place(void* p, std::size_t /*old_size*/, std::size_t new_size,
                         std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        if (MEMKIT_UNLIKELY(new_size - 1 >= max_request)) return false;
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_live(p))) return false;
        }
        return resize(block_of(p), new_size);
    }

    /// Makes every block of every region free again; the regions stay. The peak and the call
    /// counters keep counting (the freed blocks count as deallocations).
    void reset() noexcept {
        clear_lists();
        for (region* r = regions_; r != nullptr; r = r->next) {
            block* b = r->first;
            const std::size_t span = static_cast<std::size_t>(addr(r->sentinel) - addr(b));
            if constexpr (has_memory_annotations)
                if (this->annotate_) mark_owned(payload(b), 2 * sizeof(void*));
            if constexpr (has_memory_annotations)
                if (this->annotate_) mark_owned(r->sentinel, sizeof(block*));
            if constexpr (has_memory_annotations)
                if (this->annotate_) mark_unused(free_middle(b), span - min_span);
            b->header = span | free_bit;
            r->sentinel->header = prev_free_bit;
            r->sentinel->prev_phys = b;
            insert(b, span);
        }
        deallocations_ = allocations_;
        bytes_in_use_ = 0;
    }

    /// Adds the caller's memory as a new region (never freed by the heap; it must outlive the
    /// heap and overlap no other region). Throws bad_size when it cannot hold one block.
    void add_region(std::span<std::byte> buffer) {
        if constexpr (has_memory_annotations) stop_annotating();
        block* b = install(buffer.data(), buffer.size(), false);
        if (b == nullptr) throw bad_size(name, buffer.size(), max_block_span);
        insert(b, span_of(b));
    }

    /// True if `p` lies in the block area of one of the regions (a pointer this heap may have
    /// handed out).
    [[nodiscard]] bool owns(const void* p) const noexcept { return region_of(p) != nullptr; }

    /// The usable size of the live block at `p`: at least what was requested.
    [[nodiscard]] std::size_t usable_size(const void* p) const noexcept {
        return span_of(block_of(p)) - header_word;
    }

    /// The largest request a heap can ever satisfy (512 GiB).
    [[nodiscard]] static constexpr std::size_t max_size() noexcept { return max_request; }

    /// Usable size of the largest free block (0 when none): the largest request with an
    /// alignment up to 16 that can succeed without a new region may be slightly smaller, because
    /// the search rounds up to a class boundary.
    [[nodiscard]] std::size_t largest_free_block() const noexcept {
        if (fl_bitmap_ == 0) return 0;
        const unsigned fl = static_cast<unsigned>(std::bit_width(fl_bitmap_)) - 1;
        const unsigned sl = static_cast<unsigned>(std::bit_width(sl_bitmap_[fl])) - 1;
        std::size_t best = 0;
        for (const block* b = heads_[fl * sl_count + sl]; b != nullptr; b = b->next_free)
            best = span_of(b) > best ? span_of(b) : best;
        return best - header_word;
    }

    /// Sum of the usable sizes of the free blocks.
    [[nodiscard]] std::size_t free_bytes() const noexcept {
        const std::size_t live = static_cast<std::size_t>(allocations_ - deallocations_);
        return total_span_ - (bytes_in_use_ + live * header_word) - free_count_ * header_word;
    }

    /// 1 - largest_free_block() / free_bytes(): 0 when the free memory is one block (or there is
    /// none), close to 1 when it is scattered over many small blocks.
    [[nodiscard]] double fragmentation_ratio() const noexcept {
        const std::size_t total = free_bytes();
        if (total == 0) return 0.0;
        return 1.0 - static_cast<double>(largest_free_block()) / static_cast<double>(total);
    }

    /// Number of free blocks (after coalescing).
    [[nodiscard]] std::size_t free_block_count() const noexcept { return free_count_; }
    [[nodiscard]] std::size_t region_count() const noexcept { return region_count_; }
    /// Bytes of all regions (caller regions included).
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

    [[nodiscard]] allocator_stats stats() const noexcept {
        return {bytes_in_use_, peak_, capacity_, allocations_, deallocations_};
    }

    /// Walks every region block by block and every free list; throws corruption_detected at the
    /// first inconsistency (a size out of range, a flag or boundary tag that disagrees with the
    /// neighbour, two adjacent free blocks, a broken free-list link, a bitmap that disagrees with
    /// its list, statistics that disagree with the blocks).
    void validate() const {
        std::size_t free_blocks = 0, used_blocks = 0, used_bytes = 0;
        for (const region* r = regions_; r != nullptr; r = r->next) {
            if (addr(r->first) != addr(r) + sizeof(region) || addr(r->sentinel) < addr(r->first) ||
                addr(r->sentinel) + sentinel_size > addr(r->raw) + r->raw_size)
                corrupt(nullptr, r, "region header damaged");
            const block* prev = nullptr;
            for (const block* b = r->first;; b = offset(b, span_of(b))) {
                const std::size_t h = b->header;
                const bool prev_is_free = prev != nullptr && (prev->header & free_bit) != 0;
                if (b == r->sentinel) {
                    if (h != (prev_is_free ? prev_free_bit : 0))
                        corrupt(b, nullptr, "region end marker damaged");
                    if (prev_is_free && b->prev_phys != prev)
                        corrupt(b, nullptr, "boundary tag does not point at the previous block");
                    break;
                }
                const std::size_t span = h & ~flag_mask;
                if ((h & reserved_bits) != 0 || span < min_span ||
                    span > addr(r->sentinel) - addr(b))
                    corrupt(b, nullptr, "block size out of range");
                if (((h & prev_free_bit) != 0) != prev_is_free)
                    corrupt(b, nullptr,
                            "previous-block-free bit disagrees with the previous block");
                if (prev_is_free && b->prev_phys != prev)
                    corrupt(b, nullptr, "boundary tag does not point at the previous block");
                if (h & free_bit) {
                    if (prev_is_free) corrupt(b, nullptr, "two adjacent free blocks");
                    check_links(b);
                    ++free_blocks;
                } else {
                    ++used_blocks;
                    used_bytes += span - header_word;
                }
                prev = b;
            }
        }
        check_lists(free_blocks);
        if (used_bytes != bytes_in_use_ || free_blocks != free_count_ ||
            used_blocks != allocations_ - deallocations_)
            corrupt(nullptr, regions_, "statistics disagree with the blocks");
    }

    [[nodiscard]] Parent& parent() noexcept { return parent_; }
    [[nodiscard]] const Parent& parent() const noexcept { return parent_; }
    [[nodiscard]] const tlsf_options& options() const noexcept { return opts_; }

private:
    static constexpr std::size_t max_request = std::size_t{1} << 39;
    static constexpr unsigned near_fit_scan = 16;

    static std::uintptr_t addr(const void* p) noexcept {
        return reinterpret_cast<std::uintptr_t>(p);
    }
    static block* at(std::uintptr_t a) noexcept { return reinterpret_cast<block*>(a); }
    static block* offset(block* b, std::size_t n) noexcept { return at(addr(b) + n); }
    static const block* offset(const block* b, std::size_t n) noexcept { return at(addr(b) + n); }
    static block* block_of(const void* p) noexcept { return at(addr(p) - payload_offset); }
    static void* payload(block* b) noexcept {
        return reinterpret_cast<void*>(addr(b) + payload_offset);
    }
    static std::size_t span_of(const block* b) noexcept { return b->header & ~flag_mask; }

    // The span serving `size` bytes: the payload runs to the next block's header word.
    static constexpr std::size_t span_for(std::size_t size) noexcept {
        const std::size_t s = align_up(size + header_word, granule);
        return s < min_span ? min_span : s;
    }

    // The list that holds free blocks of `span` bytes.
    static MEMKIT_ALWAYS_INLINE list_index class_of(std::size_t span) noexcept {
        if (span < small_span) return {0, static_cast<unsigned>(span / granule)};
        const unsigned f = static_cast<unsigned>(std::bit_width(span)) - 1;
        return {f - (fl_shift - 1), static_cast<unsigned>(span >> (f - sl_log2)) - sl_count};
    }

    // Rounds `span` up to the next class boundary, so that any block of the class found fits.
    static MEMKIT_ALWAYS_INLINE std::size_t round_to_class(std::size_t span) noexcept {
        if (span >= small_span)
            span +=
                (std::size_t{1} << (static_cast<unsigned>(std::bit_width(span)) - 1 - sl_log2)) - 1;
        return span;
    }

    // The lists are doubly linked, but the head's prev_free is left stale: a block is the head
    // exactly when heads_ says so. Popping or unlinking the head then never writes to the next
    // block, which is usually cold in the cache. Whether a list is empty is close to a coin
    // toss in a busy heap, so the updates below are written without branches on it: a link
    // that would go to a missing block goes to the dead field of the block being moved instead.
    MEMKIT_ALWAYS_INLINE void insert(block* b, std::size_t span) noexcept {
        const list_index i = class_of(span);
        block*& head = heads_[i.fl * sl_count + i.sl];
        block* h = head;
        b->next_free = h;
        (h != nullptr ? h : b)->prev_free = b;
        head = b;
        fl_bitmap_ |= std::uint32_t{1} << i.fl;
        sl_bitmap_[i.fl] |= std::uint32_t{1} << i.sl;
        ++free_count_;
    }

    MEMKIT_ALWAYS_INLINE void remove(block* b, std::size_t span) noexcept {
        const list_index i = class_of(span);
        block*& head = heads_[i.fl * sl_count + i.sl];
        block* n = b->next_free;
        if (head == b) {
            head = n;
            clear_if_empty(i, n);
        } else {
            block* p = b->prev_free;
            p->next_free = n;
            (n != nullptr ? n : b)->prev_free = p;
        }
        --free_count_;
    }

    // Clears the bitmap bits of list `i` when its new head `n` is null.
    MEMKIT_ALWAYS_INLINE void clear_if_empty(list_index i, const block* n) noexcept {
        const std::uint32_t sl_map =
            sl_bitmap_[i.fl] & ~(static_cast<std::uint32_t>(n == nullptr) << i.sl);
        sl_bitmap_[i.fl] = sl_map;
        fl_bitmap_ &= ~(static_cast<std::uint32_t>(sl_map == 0) << i.fl);
    }

    // Takes the head of the first non-empty list whose every block holds `span` bytes.
    MEMKIT_ALWAYS_INLINE block* take_free(std::size_t span) noexcept {
        list_index i = class_of(round_to_class(span));
        std::uint32_t sl_map = sl_bitmap_[i.fl] & (~std::uint32_t{0} << i.sl);
        if (sl_map == 0) {
            const auto fl_map =
                static_cast<std::uint32_t>(fl_bitmap_ & (~std::uint64_t{0} << (i.fl + 1)));
            if (fl_map == 0) return nullptr;
            i.fl = static_cast<unsigned>(std::countr_zero(fl_map));
            sl_map = sl_bitmap_[i.fl];
        }
        i.sl = static_cast<unsigned>(std::countr_zero(sl_map));
        block*& head = heads_[i.fl * sl_count + i.sl];
        block* b = head;
        block* n = b->next_free;
        head = n;
        clear_if_empty(i, n);
        --free_count_;
        return b;
    }

    // Frees the live block `b` of `span` bytes.
    MEMKIT_ALWAYS_INLINE void release(block* b, std::size_t span) noexcept {
        // The links and the boundary tag written below may lie in the block's poisoned slack.
        if constexpr (has_memory_annotations)
            if (this->annotate_) mark_owned(payload(b), 2 * sizeof(void*));
        if constexpr (has_memory_annotations)
            if (this->annotate_) mark_owned(offset(b, span), sizeof(block*));
        block* const freed = b;
        const std::size_t freed_span = span;
        bytes_in_use_ -= span - header_word;
        ++deallocations_;
        // Keeps the free bit in this header even when the block merges into its left
        // neighbour, so that freeing it again is reported as a double free.
        if constexpr (debug_checks) b->header |= free_bit;
        block* next = offset(b, span);
        if (b->header & prev_free_bit) {
            block* prev = b->prev_phys;
            const std::size_t ps = span_of(prev);
            remove(prev, ps);
            b = prev;
            span += ps;
        }
        if (next->header & free_bit) {
            const std::size_t ns = span_of(next);
            remove(next, ns);
            span += ns;
            next = offset(b, span);
        }
        // Both neighbours are in use now, so the previous-free bit is clear.
        b->header = span | free_bit;
        insert(b, span);
        next->header |= prev_free_bit;
        next->prev_phys = b;
        if constexpr (has_memory_annotations)
            if (this->annotate_) {
                // What just became the middle of a free block: the freed block (from its links on
                // if it stays a block of its own) and a merged right neighbour's header and links.
                // The rest of a merged neighbour is poisoned already, so the cost stays O(freed).
                std::byte* lo = b == freed ? free_middle(b) : reinterpret_cast<std::byte*>(freed);
                std::byte* hi = reinterpret_cast<std::byte*>(offset(freed, freed_span));
                if (hi != reinterpret_cast<std::byte*>(next)) hi += min_span;
                mark_unused(lo, static_cast<std::size_t>(hi - lo));
            }
    }

    // A block whose size the caller's size does not predict: aligned, grown or shrunk in place,
    // or with a split remainder too small to stand alone.
    MEMKIT_NOINLINE void release_unpredicted(block* b) noexcept { release(b, span_of(b)); }

    // A caller region arrives: lift every mark made so far and annotate nothing from now on.
    void stop_annotating() noexcept {
        if constexpr (has_memory_annotations) {
            if (!this->annotate_) return;
            this->annotate_ = false;
            for (region* r = regions_; r != nullptr; r = r->next) mark_owned(r->raw, r->raw_size);
        }
    }

    // Where the part of a free block that the heap never touches starts: after the header and the
    // two list links. It runs to the block's end; the next block's boundary tag follows.
    static std::byte* free_middle(block* b) noexcept {
        return reinterpret_cast<std::byte*>(b) + min_span;
    }

    // The live block at `p` was asked for `size` bytes: only those are addressable.
    MEMKIT_ALWAYS_INLINE void* hand_out(void* p, std::size_t size) noexcept {
        if constexpr (has_memory_annotations) {
            if (this->annotate_) {
                const std::size_t usable = span_of(block_of(p)) - header_word;
                mark_allocated(p, size);
                mark_unused(static_cast<std::byte*>(p) + size, usable - size);
            }
        }
        return p;
    }

    // Hands out the free block `b` (in no list) for `span` bytes, returning its tail to a list.
    MEMKIT_ALWAYS_INLINE void* use(block* b, std::size_t span) noexcept {
        const std::size_t have = span_of(b);
        if (have - span >= min_span) {
            block* rest = offset(b, span);
            if constexpr (has_memory_annotations)
                if (this->annotate_)
                    mark_owned(rest, min_span); // its header and links; its middle stays poisoned
            rest->header = (have - span) | free_bit;
            b->header = span | (b->header & prev_free_bit);
            insert(rest, have - span);
            // The next block already has its previous-free bit: `b` was free.
            offset(rest, have - span)->prev_phys = rest;
        } else {
            b->header &= ~free_bit;
            offset(b, have)->header &= ~prev_free_bit;
            span = have;
        }
        bytes_in_use_ += span - header_word;
        peak_ = peak_ < bytes_in_use_ ? bytes_in_use_ : peak_;
        ++allocations_;
        return payload(b);
    }

    // Alignments above 16: searches for room for the block plus a leading free block that
    // moves the payload to the alignment, then splits that leading block off.
    MEMKIT_NOINLINE void* allocate_aligned(std::size_t size, std::size_t align) noexcept {
        const std::size_t span = span_for(size);
        const std::size_t search = span + align + min_span;
        block* b = take_free(search);
        if (b == nullptr) {
            b = refill(search);
            if (b == nullptr) return nullptr;
        }
        const std::uintptr_t p = addr(b) + payload_offset;
        std::uintptr_t aligned = align_up(p, align);
        if (aligned != p && aligned - p < min_span) aligned = align_up(p + min_span, align);
        const std::size_t gap = aligned - p;
        if (gap != 0) {
            // The leading block keeps b's previous-free bit (clear: b was free, so its left
            // neighbour is in use) and goes back to a list.
            block* lead = b;
            b = offset(lead, gap);
            if constexpr (has_memory_annotations)
                if (this->annotate_)
                    mark_owned(b, 2 * sizeof(void*)); // lead's boundary tag and b's header
            b->header = (span_of(lead) - gap) | free_bit | prev_free_bit;
            b->prev_phys = lead;
            lead->header = gap | free_bit;
            insert(lead, gap);
            offset(b, span_of(b))->prev_phys = b; // its previous-free bit is set already
        }
        return hand_out(use(b, span), size);
    }

    // In-place resize of the live block `b` (see resize_in_place).
    bool resize(block* b, std::size_t new_size) noexcept {
        const std::size_t need = span_for(new_size);
        const std::size_t old_span = span_of(b);
        std::size_t have = old_span;
        if (need > have) {
            block* next = offset(b, have);
            if (!(next->header & free_bit) || have + span_of(next) < need) return false;
            const std::size_t ns = span_of(next);
            remove(next, ns);
            have += ns;
            b->header = have | (b->header & prev_free_bit);
            // The block after a free block is in use: coalescing left none free.
            offset(b, have)->header &= ~prev_free_bit;
        }
        if (have - need >= min_span) {
            block* rest = offset(b, need);
            std::size_t rest_span = have - need;
            block* after = offset(b, have);
            if (after->header & free_bit) {
                const std::size_t as = span_of(after);
                remove(after, as);
                rest_span += as;
                after = offset(rest, rest_span);
            }
            if constexpr (has_memory_annotations)
                if (this->annotate_) mark_owned(rest, min_span);
            if constexpr (has_memory_annotations)
                if (this->annotate_) mark_owned(after, sizeof(block*));
            b->header = need | (b->header & prev_free_bit);
            rest->header = rest_span | free_bit;
            insert(rest, rest_span);
            after->header |= prev_free_bit;
            after->prev_phys = rest;
            // A rare path, so poisoning all of the rest (O(its size)) is fine.
            if constexpr (has_memory_annotations)
                if (this->annotate_) mark_unused(free_middle(rest), rest_span - min_span);
            have = need;
        }
        bytes_in_use_ = bytes_in_use_ - old_span + have;
        peak_ = peak_ < bytes_in_use_ ? bytes_in_use_ : peak_;
        // The contents stay defined; only the new slack is poisoned.
        if constexpr (has_memory_annotations)
            if (this->annotate_) mark_owned(payload(b), new_size);
        if constexpr (has_memory_annotations)
            if (this->annotate_)
                mark_unused(static_cast<std::byte*>(payload(b)) + new_size,
                            have - header_word - new_size);
        return true;
    }

    // Lays out [raw, raw + size) as a region: header, one free block, sentinel. Returns the
    // free block (in no list yet), or nullptr when the region cannot hold one block.
    block* install(std::byte* raw, std::size_t size, bool from_parent) noexcept {
        const std::uintptr_t lo = addr(raw);
        const std::uintptr_t start = align_up(lo, granule);
        if (raw == nullptr || start - lo > size ||
            size - (start - lo) < sizeof(region) + min_span + sentinel_size)
            return nullptr;
        const std::uintptr_t first = start + sizeof(region);
        std::uintptr_t sentinel = align_down(lo + size - sentinel_size, granule);
        if (sentinel - first > max_block_span) sentinel = first + max_block_span;
        const std::size_t span = sentinel - first;
        regions_ = ::new (reinterpret_cast<void*>(start))
            region{regions_, raw, size, at(first), at(sentinel), from_parent};
        block* b = at(first);
        b->header = span | free_bit;
        block* s = at(sentinel);
        s->header = prev_free_bit;
        s->prev_phys = b;
        if constexpr (has_memory_annotations)
            if (this->annotate_) mark_unused(free_middle(b), span - min_span);
        capacity_ += size;
        total_span_ += span;
        ++region_count_;
        return b;
    }

    // The rounded search found nothing. Before adding a region, looks at the first few blocks of
    // the request's own class, which may hold a block large enough (a bounded look keeps the
    // worst case constant). Returns a block in no list, or nullptr.
    MEMKIT_NOINLINE block* refill(std::size_t span) noexcept {
        const list_index i = class_of(span);
        block* b = heads_[i.fl * sl_count + i.sl];
        for (unsigned n = 0; b != nullptr && n < near_fit_scan; ++n, b = b->next_free) {
            if (span_of(b) >= span) {
                remove(b, span_of(b));
                return b;
            }
        }
        return grow(span);
    }

    // No block holds `search` bytes: adds a region from the parent when the options allow.
    block* grow(std::size_t search) noexcept {
        if (!opts_.growth) return nullptr;
        const std::size_t room = opts_.max_total - taken_;
        const std::size_t need = region_overhead + search;
        if (need > room) return nullptr;
        std::size_t want = need < opts_.region_size ? opts_.region_size : need;
        if (want > room) want = room;
        void* raw = parent_.try_allocate(want, parent_alignment);
        if (raw == nullptr && want > need)
            raw = parent_.try_allocate(want = need, parent_alignment);
        if (raw == nullptr) return nullptr;
        taken_ += want;
        return install(static_cast<std::byte*>(raw), want, true);
    }

    // The region whose block area holds the payload address `p`.
    const region* region_of(const void* p) const noexcept {
        const std::uintptr_t v = addr(p);
        for (const region* r = regions_; r != nullptr; r = r->next)
            if (v >= addr(r->first) + payload_offset && v < addr(r->sentinel)) return r;
        return nullptr;
    }

    // Debug check: `p` is the payload of a live block of this heap.
    MEMKIT_NOINLINE bool accept_live(const void* p) const noexcept {
        const region* r = region_of(p);
        if (r == nullptr || !is_aligned(p, granule)) {
            report_violation(
                {errc::not_owned, name, p, "pointer is in none of the heap's regions"});
            return false;
        }
        // A block merged into its left neighbour lies in poisoned memory: peek at its header.
        const block* b = block_of(p);
        const std::size_t h = read_unused_word(&b->header);
        const std::size_t span = h & ~flag_mask;
        if ((h & reserved_bits) != 0 || span < min_span || span > addr(r->sentinel) - addr(b)) {
            report_violation({errc::not_owned, name, p, "pointer is not the start of a block"});
            return false;
        }
        if (h & free_bit) {
            report_violation({errc::double_free, name, p, "block is already free"});
            return false;
        }
        if (read_unused_word(&offset(b, span)->header) & prev_free_bit) {
            report_violation({errc::not_owned, name, p, "pointer is not the start of a block"});
            return false;
        }
        return true;
    }

    // validate(): a pointer found in a list is a free block inside a region's block area.
    bool is_free_block(const block* b) const noexcept {
        const std::uintptr_t v = addr(b);
        for (const region* r = regions_; r != nullptr; r = r->next) {
            if (v < addr(r->first) || v >= addr(r->sentinel)) continue;
            const std::size_t h = b->header;
            return (v & flag_mask) == 0 && (h & free_bit) != 0 && (h & reserved_bits) == 0 &&
                   (h & ~flag_mask) >= min_span && (h & ~flag_mask) <= addr(r->sentinel) - v;
        }
        return false;
    }

    void check_links(const block* b) const {
        const list_index i = class_of(span_of(b));
        if (const block* n = b->next_free; n != nullptr) {
            if (!is_free_block(n) || n->prev_free != b || class_of(span_of(n)) != i)
                corrupt(b, nullptr, "free-list link to the next block is broken");
        }
        if (heads_[i.fl * sl_count + i.sl] != b) { // the head's prev_free is stale
            const block* p = b->prev_free;
            if (!is_free_block(p) || p->next_free != b || class_of(span_of(p)) != i)
                corrupt(b, nullptr, "free-list link to the previous block is broken");
        }
    }

    void check_lists(std::size_t free_blocks) const {
        std::size_t listed = 0;
        for (unsigned fl = 0; fl < fl_count; ++fl) {
            if (((fl_bitmap_ >> fl) & 1u) != (sl_bitmap_[fl] != 0 ? 1u : 0u))
                corrupt(nullptr, regions_, "first-level bitmap disagrees with the second level");
            for (unsigned sl = 0; sl < sl_count; ++sl) {
                const block* head = heads_[fl * sl_count + sl];
                if (((sl_bitmap_[fl] >> sl) & 1u) != (head != nullptr ? 1u : 0u))
                    corrupt(head, regions_, "size-class bitmap disagrees with its list");
                for (const block* b = head; b != nullptr; b = b->next_free) {
                    if (!is_free_block(b) || class_of(span_of(b)) != list_index{fl, sl})
                        corrupt(b, nullptr, "free list holds a block that is not free there");
                    if (++listed > free_blocks)
                        corrupt(b, nullptr, "free lists hold more blocks than the heap");
                }
            }
        }
        if (listed != free_blocks)
            corrupt(nullptr, regions_, "a free block is missing from the free lists");
    }

    // Reports the payload address of `b`, or `where` when there is no block to blame.
    [[noreturn]] MEMKIT_NOINLINE static void corrupt(const block* b, const void* where,
                                                     const char* what) {
        throw corruption_detected(
            name, b != nullptr ? reinterpret_cast<const void*>(addr(b) + payload_offset) : where,
            what);
    }

    void clear_lists() noexcept {
        fl_bitmap_ = 0;
        std::memset(sl_bitmap_, 0, sizeof sl_bitmap_);
        std::memset(heads_, 0, sizeof heads_);
        free_count_ = 0;
    }

    void forget() noexcept {
        regions_ = nullptr;
        clear_lists();
        bytes_in_use_ = peak_ = capacity_ = taken_ = total_span_ = 0;
        allocations_ = deallocations_ = 0;
        region_count_ = 0;
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        if (size == 0 || size > max_size() || !is_pow2(align) || align > max_alignment)
            throw_bad_request(name, size, align, max_size(), max_alignment);
        throw out_of_memory(name, size, largest_free_block(), bytes_in_use_, capacity_);
    }

    [[no_unique_address]] Parent parent_{};
    tlsf_options opts_{};
    region* regions_ = nullptr;
    std::uint32_t fl_bitmap_ = 0;
    std::uint32_t sl_bitmap_[fl_count] = {};
    block* heads_[fl_count * sl_count] = {};
    std::size_t bytes_in_use_ = 0;
    std::size_t peak_ = 0;
    std::size_t capacity_ = 0;
    std::size_t taken_ = 0;      // bytes of the regions from the parent
    std::size_t total_span_ = 0; // bytes of all blocks in all regions
    std::uint64_t allocations_ = 0;
    std::uint64_t deallocations_ = 0;
    std::size_t free_count_ = 0;
    std::size_t region_count_ = 0;
#if MEMKIT_HAS_ASAN || MEMKIT_VALGRIND
    // Caller regions may be memory that other processes change (shm_heap) or that other code
    // inspects after a free (managed_heap): a heap with one annotates nothing (see add_region).
    bool annotate_ = true;
#endif
};

using tlsf_heap = basic_tlsf_heap<>;

} // namespace memkit
