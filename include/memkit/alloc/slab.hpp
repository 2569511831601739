// memkit/alloc/slab.hpp - object caches per size class, carved from size-aligned slabs.
//
// `basic_slab_allocator<Parent>` serves small requests from a fixed set of size classes (by
// default 16, 32, 48, ... 128 bytes in steps of 16, then 192, 256, 384, 512, ... - two classes
// per doubling - up to `slab_options::max_object_size`, which defaults to 1/8 of the slab; or
// the caller's own ascending list of multiples of 16). Each class has a cache; a cache owns
// slabs, blocks of `slab_size` bytes (the OS page by default, a power of two) taken from the
// Parent aligned to their size. A slab carries its header at its end - the free list of its
// objects, its in-use count, its list links - so the header of any object is found by masking
// the object's address. Objects are carved from a slab lazily, in address order, and start at
// the slab's first byte: an object of a class is aligned to the largest power of two dividing
// the class size (16 at least), and a request with a larger alignment goes to the smallest class
// aligned that strictly. Each cache keeps its slabs on three lists: partial (some objects free;
// allocation takes from the first one), full and empty. A free moves a full slab to the front
// of the partial list and a partial one that empties to the empty list - except the slab that
// allocations come from, which stays in front while it is empty, so that allocating and freeing
// one object repeatedly moves no slab. A cache keeps `slab_options::retained_empty` empty slabs
// (the idle front slab counts as one) and returns further ones to the Parent at once. The
// default, 4, bounds idle memory to 4 slabs per class and spares a workload that frees and
// reallocates in bursts most of the round trips to the Parent (Linux's SLUB keeps a minimum of
// 5 partial slabs per node for the same reason). Requests above the largest class are refused
// (bad_size): compose the slab allocator with a general-purpose heap for those (a segregator on
// max_size()).
//
// Besides the common interface: cache_stats(class) (slabs per list, objects in use),
// class_count(), class_size(i), class_index(size, align), reallocate and resize_in_place (in
// place while the new size fits the object's class), shrink_to_fit (returns every empty slab),
// release (returns every slab), validate() (walks every list, slab and free list). reset() frees
// every object and keeps up to retained_empty slabs per cache. Move-only: a moved-from slab
// allocator has no size classes (every allocation fails with bad_size) until one is assigned.
//
// Sanitizers: under ASan (and valgrind with MEMKIT_VALGRIND=1) every object that is not allocated
// is poisoned (a freed object except its first word, the free-list link), and allocate unpoisons
// exactly the requested bytes (resize_in_place and an in-place reallocate move that boundary);
// so a read of a freed object past its first word, or past the requested size, is reported.
//
// Complexity: allocate and deallocate O(1) (a class lookup in a table, a pop or push on one
// slab's free list, at most one list move; taking or returning a slab is one parent call); owns
// O(1) (the slab is looked up in a hash set of this allocator's slabs, so a foreign pointer is
// never dereferenced); cache_stats O(partial slabs of the class); reset, release and
// shrink_to_fit O(slabs); validate O(slabs + objects).
// Thread-safety: not thread-safe; use one per thread or wrap it in memkit::synchronized.
// Statistics: stats().bytes_in_use is the sum of requested sizes; capacity is the bytes held in
// slabs (slab_count() * slab_size(), plus alignment slack when the Parent cannot align to the
// slab size); the class table and the slab hash set (also from the Parent) are not counted.
// Failure: allocate throws bad_size for a size of 0 or above max_size() (the largest class),
// invalid_alignment for an alignment that is not a power of two, above supported_alignment() or
// that no class large enough can give, and out_of_memory when the Parent has no slab for a
// cache with no free object; try_allocate returns nullptr instead. The constructor throws
// bad_size for a slab size that is not a power of two in [512 B, 16 MiB], for a max_object_size
// or a listed class that does not fit a slab (with its header), and for a class list that is not
// ascending multiples of 16 (at most 255 classes); the Parent's error when the class table
// cannot be allocated. In debug builds (memkit::debug_checks) deallocating a pointer that is not
// the start of an object carved from one of this allocator's slabs reports errc::not_owned, and
// freeing a free object reports errc::double_free (every slab keeps an allocated bit per object);
// the call then does nothing.
//
//   memkit::slab_allocator slabs;                    // page-sized slabs, classes 16 .. 512 B
//   void* p = slabs.allocate(40);                    // from the 48-byte cache
//   slabs.deallocate(p, 40);
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
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
#include "memkit/core/traits.hpp"

namespace memkit {

struct slab_options {
    std::size_t slab_size = 0;       ///< 0: the OS page size; else a power of two, 512 B .. 16 MiB
    std::size_t max_object_size = 0; ///< 0: slab_size / 8 (the largest default class)
    std::size_t retained_empty = 4;  ///< empty slabs each cache keeps instead of returning them
    /// Empty: the default classes. Else the classes to use: ascending multiples of 16 that fit a
    /// slab (copied at construction; max_object_size is then ignored).
    std::span<const std::size_t> size_classes = {};
};

/// One cache's state, as reported by basic_slab_allocator::cache_stats.
struct slab_cache_stats {
    std::size_t object_size = 0; ///< the class size
    std::size_t objects_per_slab = 0;
    std::size_t partial_slabs = 0; ///< slabs with both free and allocated objects
    std::size_t full_slabs = 0;
    std::size_t empty_slabs = 0; ///< retained slabs without allocated objects
    std::size_t objects_in_use = 0;

    friend bool operator==(const slab_cache_stats&, const slab_cache_stats&) = default;
};

template <allocator Parent = system_allocator>
class basic_slab_allocator {
    struct object {
        object* next;
    };

    enum list_id : std::uint8_t { partial_list = 0, full_list = 1, empty_list = 2 };
    static constexpr std::size_t list_count = 3;

    // At the end of every slab, followed by the allocated-object bitmap (one bit per possible
    // object; kept in debug builds, reserved in all builds so that capacities never differ).
    struct slab {
        slab* prev;
        slab* next;
        object* free;
        void* raw;         // what the parent returned (below the slab when aligned by hand)
        const void* owner; // the allocator's class table: identifies the allocator
        std::uint32_t carved;
        std::uint32_t in_use;
        std::uint16_t cls;
        std::uint8_t list;
    };

    // One cache line per class. There is no objects-in-use counter: cache_stats derives it
    // from the slabs, which keeps a read-modify-write off both fast paths.
    struct alignas(64) cache {
        slab* lists[list_count];
        std::size_t counts[list_count];
        std::size_t object_size;
        std::uint32_t per_slab;
        std::uint32_t alignment; // of every object of this class
    };

    static constexpr std::size_t granule = 16;
    static constexpr unsigned granule_shift = 4;
    static constexpr std::size_t max_classes = 255;
    static constexpr std::size_t min_slab_size = 512;
    static constexpr std::size_t max_slab_size = std::size_t{1} << 24;
    static constexpr std::size_t parent_max_alignment = allocator_traits<Parent>::max_alignment;
    // The class table is asked for at most what the parent supports and aligned by hand.
    static constexpr std::size_t meta_align =
        alignof(cache) < parent_max_alignment ? alignof(cache) : parent_max_alignment;

public:
    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = 4096;
    static constexpr const char* name = "memkit::slab_allocator";
    /// class_index() of a request no class can serve.
    static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

    /// Sets up the size classes (one small table from the parent); slabs are taken on demand.
    explicit basic_slab_allocator(slab_options opts = {}, Parent parent = Parent{})
        : parent_(std::move(parent)), retained_(opts.retained_empty) {
        const std::size_t ss = opts.slab_size == 0 ? page_size() : opts.slab_size;
        if (!is_pow2(ss) || ss < min_slab_size || ss > max_slab_size)
            throw bad_size(name, ss, max_slab_size);
        slab_size_ = ss;
        bitmap_words_ = ss / (granule * 64) == 0 ? 1 : ss / (granule * 64);
        // The header starts on a cache line, so that the fields both fast paths touch share one.
        header_bytes_ = align_up(sizeof(slab) + bitmap_words_ * sizeof(std::uint64_t), 64);
        const std::size_t room = ss - header_bytes_;

        std::size_t sizes[max_classes];
        const std::size_t n =
            opts.size_classes.empty()
                ? default_classes(opts.max_object_size == 0 ? ss / 8 : opts.max_object_size, room,
                                  sizes)
                : listed_classes(opts.size_classes, room, sizes);
        const std::size_t largest = sizes[n - 1];
        const std::size_t lookup_entries = (largest >> granule_shift) + 1;
        meta_bytes_ = n * sizeof(cache) + lookup_entries + (alignof(cache) - meta_align);
        meta_ = parent_.allocate(meta_bytes_, meta_align);
        caches_ =
            reinterpret_cast<cache*>(align_up(static_cast<std::byte*>(meta_), alignof(cache)));
        lookup_ = reinterpret_cast<std::uint8_t*>(caches_ + n);
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t low_bit = sizes[i] & (~sizes[i] + 1);
            ::new (static_cast<void*>(caches_ + i)) cache{
                {nullptr, nullptr, nullptr},
                {0, 0, 0},
                sizes[i],
                static_cast<std::uint32_t>(room / sizes[i]),
                static_cast<std::uint32_t>(low_bit < max_alignment ? low_bit : max_alignment)};
            if (caches_[i].alignment > supported_align_) supported_align_ = caches_[i].alignment;
        }
        lookup_[0] = 0;
        for (std::size_t g = 1, ci = 0; g < lookup_entries; ++g) {
            while (sizes[ci] < (g << granule_shift)) ++ci;
            lookup_[g] = static_cast<std::uint8_t>(ci);
        }
        class_count_ = n;
        max_class_ = largest;
        if (parent_max_alignment >= ss) {
            slab_ask_align_ = ss;
            slab_ask_bytes_ = ss;
        } else { // the parent cannot align to the slab size: over-allocate and align by hand
            slab_ask_align_ = parent_max_alignment;
            slab_ask_bytes_ = 2 * ss - parent_max_alignment;
        }
    }

    basic_slab_allocator(const basic_slab_allocator&) = delete;
    basic_slab_allocator& operator=(const basic_slab_allocator&) = delete;

    basic_slab_allocator(basic_slab_allocator&& o) noexcept(
        std::is_nothrow_move_constructible_v<Parent>)
        : parent_(std::move(o.parent_)) {
        take(o);
    }

    basic_slab_allocator&
    operator=(basic_slab_allocator&& o) noexcept(std::is_nothrow_move_assignable_v<Parent>) {
        if (this != &o) {
            destroy();
            parent_ = std::move(o.parent_);
            take(o);
        }
        return *this;
    }

    /// Returns every slab and the class table to the parent (live objects become invalid).
    ~basic_slab_allocator() { destroy(); }

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        // size - 1 wraps for 0, so one comparison also rejects zero.
        if (MEMKIT_UNLIKELY(size - 1 >= max_class_)) return nullptr;
        std::size_t ci;
        if (MEMKIT_LIKELY(align - 1 < granule && (align & (align - 1)) == 0)) {
            ci = lookup_[(size + granule - 1) >> granule_shift]; // every object is 16-aligned
        } else {
            ci = aligned_class(size, align);
            if (ci == npos) return nullptr;
        }
        cache& c = caches_[ci];
        slab* s = c.lists[partial_list];
        if (MEMKIT_UNLIKELY(s == nullptr)) {
            s = refill(c);
            if (s == nullptr) return nullptr;
        }
        void* p;
        if (object* o = s->free; o != nullptr) {
            s->free = o->next;
            p = o;
        } else {
            p = slab_begin(s) + std::size_t{s->carved++} * c.object_size;
        }
        if (MEMKIT_UNLIKELY(++s->in_use == c.per_slab)) relink(c, s, full_list);
        bytes_in_use_ += size;
        // A branch, not a conditional move: in a steady state nothing is stored.
        if (MEMKIT_UNLIKELY(bytes_in_use_ > peak_)) peak_ = bytes_in_use_;
        ++allocations_;
        if constexpr (debug_checks) flip_bit(s, c, p);
        if constexpr (has_memory_annotations) mark_allocated(p, size);
        return p;
    }

    /// Returns an object. `size` is the one given to allocate (or the last resize; used for
    /// statistics only: the class comes from the slab header).
    MEMKIT_ALWAYS_INLINE void
    deallocate(void* p, std::size_t size,
               std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        slab* s = slab_of(p);
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_object(p, s))) return;
            flip_bit(s, caches_[s->cls], p);
        }
        cache& c = caches_[s->cls];
        if constexpr (has_memory_annotations)
            mark_owned(p, sizeof(object)); // the request may have been shorter than the link
        s->free = ::new (p) object{s->free};
        if constexpr (has_memory_annotations)
            mark_unused(static_cast<std::byte*>(p) + sizeof(object),
                        c.object_size - sizeof(object));
        bytes_in_use_ -= size;
        ++deallocations_;
        const std::uint32_t before = s->in_use--;
        // Leaving the full list, or becoming empty: list moves, off the fast path. The slab that
        // allocations come from (the head of the partial list) stays where it is when it
        // empties and the retained budget has room for it, so that a cache that repeatedly
        // allocates and frees one object never moves a slab.
        if (MEMKIT_UNLIKELY(
                before == c.per_slab ||
                (before == 1 && (s != c.lists[partial_list] || c.counts[empty_list] >= retained_))))
            after_free(c, s);
    }

    /// True when `new_size` (> 0) still fits the object's class: the object stays where it is
    /// and only the statistics change. False (changing nothing) otherwise.
    [[nodiscard]] bool resize_in_place(void* p, std::size_t old_size, std::size_t new_size,
                                       std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        slab* s = slab_of(p);
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_object(p, s))) return false;
        }
        if (new_size - 1 >= caches_[s->cls].object_size) return false;
        if constexpr (has_memory_annotations) annotate_resize(p, old_size, new_size);
        bytes_in_use_ = bytes_in_use_ - old_size + new_size;
        peak_ = peak_ < bytes_in_use_ ? bytes_in_use_ : peak_;
        return true;
    }

    /// Resizes the object at `p`: in place while `new_size` fits its class, else allocates from
    /// the new size's class, copies min(old_size, new_size) bytes and frees the old object.
    /// Throws like allocate and then leaves `p` untouched. A null `p` is an allocate. In debug
    /// builds a `p` that is not a live object is reported as by deallocate and nullptr returned.
    [[nodiscard]] void* reallocate(void* p, std::size_t old_size, std::size_t new_size,
                                   std::size_t align = alignof(std::max_align_t)) {
        if (p == nullptr) return allocate(new_size, align);
        slab* s = slab_of(p);
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_object(p, s))) return nullptr;
        }
        const std::size_t cls_size = caches_[s->cls].object_size;
        const bool align_ok = (align & (align - 1)) == 0 && align - 1 < supported_align_;
        if (new_size - 1 < cls_size && align_ok && is_aligned(p, align)) {
            if constexpr (has_memory_annotations) annotate_resize(p, old_size, new_size);
            bytes_in_use_ = bytes_in_use_ - old_size + new_size;
            peak_ = peak_ < bytes_in_use_ ? bytes_in_use_ : peak_;
            return p;
        }
        void* q = allocate(new_size, align);
        std::memcpy(q, p, old_size < new_size ? old_size : new_size);
        deallocate(p, old_size, align);
        return q;
    }

    /// Frees every object. Each cache keeps up to retained_empty slabs (as empty slabs); the
    /// others go back to the parent. The peak and the call counters keep counting.
    void reset() noexcept { free_all(retained_); }

    /// Returns every slab to the parent; the class table stays (the allocator remains usable).
    void release() noexcept { free_all(0); }

    /// Returns every empty slab to the parent.
    void shrink_to_fit() noexcept {
        for (std::size_t i = 0; i < class_count_; ++i) {
            cache& c = caches_[i];
            while (slab* s = c.lists[empty_list]) {
                unlink(c, s);
                give_back(s);
            }
            if (head_is_empty(c) != 0) {
                slab* s = c.lists[partial_list];
                unlink(c, s);
                give_back(s);
            }
        }
    }

    /// True if `p` points into the object area of one of this allocator's slabs (a live or a
    /// free object, at its start or inside it). Never reads memory at `p`.
    [[nodiscard]] bool owns(const void* p) const noexcept {
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        const std::uintptr_t base = a & ~static_cast<std::uintptr_t>(slab_size_ - 1);
        return a - base < slab_size_ - header_bytes_ && registered(base);
    }

    /// Walks every cache, slab list, slab header and free list, and throws
    /// memkit::corruption_detected at the first inconsistency: a list entry that is not one of
    /// this allocator's slabs, a header naming another allocator, class or list, a broken back
    /// link, a slab on the wrong list for its in-use count, a free-list entry that is not a
    /// carved object of its slab (or, in debug builds, one marked allocated), free and in-use
    /// counts that disagree, or list lengths and totals that differ from the counters.
    void validate() const {
        std::size_t slabs = 0;
        std::size_t in_use = 0;
        for (std::size_t ci = 0; ci < class_count_; ++ci) {
            const cache& c = caches_[ci];
            for (std::size_t l = 0; l < list_count; ++l) {
                std::size_t count = 0;
                const slab* prev = nullptr;
                for (const slab* s = c.lists[l]; s != nullptr; prev = s, s = s->next) {
                    if (++count > slab_count_) corrupt(s, "slab list longer than the slabs held");
                    check_slab(c, ci, l, s, prev);
                    in_use += s->in_use;
                }
                if (count != c.counts[l]) corrupt(c.lists[l], "slab list length differs");
                slabs += count;
            }
        }
        if (slabs != slab_count_) corrupt(nullptr, "a slab is missing from its cache's lists");
        if (in_use != allocations_ - deallocations_)
            corrupt(nullptr, "objects in use differ from the allocations not freed");
    }

    /// bytes_in_use: the sum of the requested sizes of live objects; peak_bytes: its maximum;
    /// capacity: bytes held in slabs (see the header comment).
    [[nodiscard]] allocator_stats stats() const noexcept {
        return {bytes_in_use_, peak_, slab_count_ * slab_ask_bytes_, allocations_, deallocations_};
    }

    /// The state of the cache of class `i`, in O(partial slabs of the class); throws
    /// std::out_of_range for i >= class_count().
    [[nodiscard]] slab_cache_stats cache_stats(std::size_t i) const {
        if (i >= class_count_) throw std::out_of_range("memkit::slab_allocator: no such class");
        const cache& c = caches_[i];
        const std::size_t idle_head = head_is_empty(c); // an empty slab, though on the list
        std::size_t in_use = c.counts[full_list] * c.per_slab;
        for (const slab* s = c.lists[partial_list]; s != nullptr; s = s->next) in_use += s->in_use;
        return {c.object_size,
                c.per_slab,
                c.counts[partial_list] - idle_head,
                c.counts[full_list],
                c.counts[empty_list] + idle_head,
                in_use};
    }

    [[nodiscard]] std::size_t class_count() const noexcept { return class_count_; }
    /// The object size of class `i` (precondition: i < class_count()).
    [[nodiscard]] std::size_t class_size(std::size_t i) const noexcept {
        return caches_[i].object_size;
    }
    /// The class that serves a request, or npos when none can.
    [[nodiscard]] std::size_t
    class_index(std::size_t size, std::size_t align = alignof(std::max_align_t)) const noexcept {
        if (size - 1 >= max_class_) return npos;
        if (align - 1 < granule && (align & (align - 1)) == 0)
            return lookup_[(size + granule - 1) >> granule_shift];
        return aligned_class(size, align);
    }
    /// The largest class: requests above it are refused with bad_size.
    [[nodiscard]] std::size_t max_size() const noexcept { return max_class_; }
    /// The largest alignment a request may ask for: that of the most aligned class.
    [[nodiscard]] std::size_t supported_alignment() const noexcept { return supported_align_; }
    [[nodiscard]] std::size_t slab_size() const noexcept { return slab_size_; }
    /// Slabs held, in every cache and list.
    [[nodiscard]] std::size_t slab_count() const noexcept { return slab_count_; }
    [[nodiscard]] std::size_t retained_empty() const noexcept { return retained_; }
    [[nodiscard]] Parent& parent() noexcept { return parent_; }
    [[nodiscard]] const Parent& parent() const noexcept { return parent_; }

private:
    // --- construction -------------------------------------------------------------------------

    static std::size_t default_classes(std::size_t cap, std::size_t room,
                                       std::size_t (&out)[max_classes]) {
        if (cap > room) throw bad_size(name, cap, room);
        std::size_t n = 0;
        for (std::size_t s = granule; s <= 128 && s <= cap; s += granule) out[n++] = s;
        for (std::size_t p = 128; p + p / 2 <= cap; p *= 2) {
            out[n++] = p + p / 2;
            if (2 * p <= cap) out[n++] = 2 * p;
        }
        if (n == 0) out[n++] = granule;
        else if (out[n - 1] < cap) out[n++] = align_up(cap, granule);
        return n;
    }

    static std::size_t listed_classes(std::span<const std::size_t> list, std::size_t room,
                                      std::size_t (&out)[max_classes]) {
        if (list.size() > max_classes) throw bad_size(name, list.size(), max_classes);
        std::size_t n = 0;
        for (std::size_t s : list) {
            if (s == 0 || s % granule != 0 || s > room || (n > 0 && s <= out[n - 1]))
                throw bad_size(name, s, room);
            out[n++] = s;
        }
        return n;
    }

    // --- slabs --------------------------------------------------------------------------------

    [[nodiscard]] std::byte* slab_begin(const slab* s) const noexcept {
        return const_cast<std::byte*>(reinterpret_cast<const std::byte*>(s)) + header_bytes_ -
               slab_size_;
    }

    [[nodiscard]] slab* slab_of(const void* p) const noexcept {
        const auto a = reinterpret_cast<std::uintptr_t>(p) | (slab_size_ - 1);
        return reinterpret_cast<slab*>(a + 1 - header_bytes_);
    }

    [[nodiscard]] std::uint64_t* bitmap(const slab* s) const noexcept {
        return reinterpret_cast<std::uint64_t*>(const_cast<slab*>(s) + 1);
    }

    void flip_bit(const slab* s, const cache& c, const void* p) const noexcept {
        const std::size_t i =
            static_cast<std::size_t>(static_cast<const std::byte*>(p) - slab_begin(s)) /
            c.object_size;
        bitmap(s)[i / 64] ^= std::uint64_t{1} << (i % 64);
    }

    [[nodiscard]] bool bit(const slab* s, std::size_t i) const noexcept {
        return ((bitmap(s)[i / 64] >> (i % 64)) & 1) != 0;
    }

    void link(cache& c, slab* s, list_id l) noexcept {
        s->list = l;
        s->prev = nullptr;
        s->next = c.lists[l];
        if (s->next != nullptr) s->next->prev = s;
        c.lists[l] = s;
        ++c.counts[l];
    }

    void unlink(cache& c, slab* s) noexcept {
        if (s->prev != nullptr) s->prev->next = s->next;
        else c.lists[s->list] = s->next;
        if (s->next != nullptr) s->next->prev = s->prev;
        --c.counts[s->list];
    }

    MEMKIT_NOINLINE void relink(cache& c, slab* s, list_id l) noexcept {
        unlink(c, s);
        link(c, s, l);
    }

    // A free made a full slab partial, or a slab empty: move it, and return an empty slab
    // beyond the retained count to the parent. Invariant: only the head of the partial list
    // may be empty (it counts against retained_empty like the slabs on the empty list).
    MEMKIT_NOINLINE void after_free(cache& c, slab* s) noexcept {
        if (s->in_use != 0) { // full -> partial, at the head: it is the most recently used
            unlink(c, s);
            if (slab* head = c.lists[partial_list]; head != nullptr && head->in_use == 0) {
                unlink(c, head); // an empty head is no longer where allocations come from
                link(c, head, empty_list);
            }
            link(c, s, partial_list);
            return;
        }
        if (s == c.lists[partial_list] && retained_ != 0) {
            // The allocation slab emptied with the budget spent: keep it, return another one.
            unlink(c, s = c.lists[empty_list]);
            give_back(s);
            return;
        }
        unlink(c, s);
        if (c.counts[empty_list] + head_is_empty(c) >= retained_) give_back(s);
        else link(c, s, empty_list);
    }

    [[nodiscard]] static std::size_t head_is_empty(const cache& c) noexcept {
        const slab* head = c.lists[partial_list];
        return head != nullptr && head->in_use == 0 ? 1 : 0;
    }

    // The live object at `p` changes from `old_size` to `new_size` bytes within its class.
    static void annotate_resize(void* p, std::size_t old_size, std::size_t new_size) noexcept {
        auto* b = static_cast<std::byte*>(p);
        if (new_size > old_size) mark_allocated(b + old_size, new_size - old_size);
        else mark_unused(b + new_size, old_size - new_size);
    }

    // The cache has no partial slab: reuse an empty one or take a new one from the parent.
    MEMKIT_NOINLINE slab* refill(cache& c) noexcept {
        slab* s = c.lists[empty_list];
        if (s != nullptr) {
            unlink(c, s);
        } else {
            s = new_slab(static_cast<std::size_t>(&c - caches_));
            if (s == nullptr) return nullptr;
        }
        link(c, s, partial_list);
        return s;
    }

    slab* new_slab(std::size_t ci) noexcept {
        if (!reserve_slot()) return nullptr;
        void* raw = parent_.try_allocate(slab_ask_bytes_, slab_ask_align_);
        if (raw == nullptr) return nullptr;
        std::byte* base = align_up(static_cast<std::byte*>(raw), slab_size_);
        insert(reinterpret_cast<std::uintptr_t>(base));
        ++slab_count_;
        const auto cls = static_cast<std::uint16_t>(ci);
        void* at = base + slab_size_ - header_bytes_;
        slab* s = ::new (at) slab{nullptr, nullptr, nullptr, raw, caches_, 0, 0, cls, partial_list};
        if constexpr (has_memory_annotations) mark_unused(base, slab_size_ - header_bytes_);
        std::memset(static_cast<void*>(bitmap(s)), 0, bitmap_words_ * sizeof(std::uint64_t));
        return s;
    }

    void give_back(slab* s) noexcept {
        if constexpr (has_memory_annotations) mark_owned(slab_begin(s), slab_size_ - header_bytes_);
        erase(reinterpret_cast<std::uintptr_t>(slab_begin(s)));
        --slab_count_;
        parent_.deallocate(s->raw, slab_ask_bytes_, slab_ask_align_);
    }

    // Frees every object; keeps up to `keep` slabs per cache as empty slabs.
    void free_all(std::size_t keep) noexcept {
        for (std::size_t i = 0; i < class_count_; ++i) {
            cache& c = caches_[i];
            // Detach all three lists into one chain first: relinking into the empty list while
            // walking it would visit slabs twice.
            slab* chain = nullptr;
            for (std::size_t l = 0; l < list_count; ++l) {
                while (slab* s = c.lists[l]) {
                    unlink(c, s);
                    s->next = chain;
                    chain = s;
                }
            }
            while (chain != nullptr) {
                slab* s = std::exchange(chain, chain->next);
                if (c.counts[empty_list] < keep) {
                    s->free = nullptr;
                    s->carved = 0;
                    s->in_use = 0;
                    std::memset(static_cast<void*>(bitmap(s)), 0,
                                bitmap_words_ * sizeof(std::uint64_t));
                    if constexpr (has_memory_annotations)
                        mark_unused(slab_begin(s), slab_size_ - header_bytes_);
                    link(c, s, empty_list);
                } else {
                    give_back(s);
                }
            }
        }
        deallocations_ = allocations_;
        bytes_in_use_ = 0;
    }

    // --- the set of this allocator's slabs (open addressing, linear probing) -------------------

    [[nodiscard]] std::size_t slot_of(std::uintptr_t key) const noexcept {
        const std::uint64_t h = (static_cast<std::uint64_t>(key) >> std::countr_zero(slab_size_)) *
                                0x9e3779b97f4a7c15ULL;
        return static_cast<std::size_t>(h >> (64 - slot_bits_));
    }

    [[nodiscard]] bool registered(std::uintptr_t key) const noexcept {
        if (slots_ == nullptr || key == 0) return false;
        const std::size_t mask = (std::size_t{1} << slot_bits_) - 1;
        for (std::size_t i = slot_of(key); slots_[i] != 0; i = (i + 1) & mask)
            if (slots_[i] == key) return true;
        return false;
    }

    void insert(std::uintptr_t key) noexcept {
        const std::size_t mask = (std::size_t{1} << slot_bits_) - 1;
        std::size_t i = slot_of(key);
        while (slots_[i] != 0) i = (i + 1) & mask;
        slots_[i] = key;
    }

    // Backward-shift deletion keeps every probe sequence unbroken without tombstones.
    void erase(std::uintptr_t key) noexcept {
        const std::size_t mask = (std::size_t{1} << slot_bits_) - 1;
        std::size_t i = slot_of(key);
        while (slots_[i] != key) i = (i + 1) & mask;
        for (std::size_t j = (i + 1) & mask; slots_[j] != 0; j = (j + 1) & mask) {
            const std::size_t home = slot_of(slots_[j]);
            // slots_[j] may move to the hole at i unless its home lies cyclically in (i, j].
            const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) {
                slots_[i] = slots_[j];
                i = j;
            }
        }
        slots_[i] = 0;
    }

    // Makes room for one more slab at a load factor of at most 1/2.
    bool reserve_slot() noexcept {
        const std::size_t capacity = slots_ == nullptr ? 0 : std::size_t{1} << slot_bits_;
        if ((slab_count_ + 1) * 2 <= capacity) return true;
        const unsigned bits = slots_ == nullptr ? 4 : slot_bits_ + 1;
        const std::size_t bytes = (std::size_t{1} << bits) * sizeof(std::uintptr_t);
        void* mem = parent_.try_allocate(bytes, alignof(std::uintptr_t));
        if (mem == nullptr) return false;
        std::memset(mem, 0, bytes);
        std::uintptr_t* old = std::exchange(slots_, static_cast<std::uintptr_t*>(mem));
        slot_bits_ = bits;
        if (old != nullptr) {
            for (std::size_t i = 0; i < capacity; ++i)
                if (old[i] != 0) insert(old[i]);
            parent_.deallocate(old, capacity * sizeof(std::uintptr_t), alignof(std::uintptr_t));
        }
        return true;
    }

    // --- requests -----------------------------------------------------------------------------

    // The smallest class that holds `size` bytes aligned to `align` (> 16), or npos.
    MEMKIT_NOINLINE std::size_t aligned_class(std::size_t size, std::size_t align) const noexcept {
        if (!is_pow2(align) || align > supported_align_) return npos;
        const std::size_t need = size > align ? size : align;
        if (need > max_class_) return npos;
        for (std::size_t ci = lookup_[(need + granule - 1) >> granule_shift]; ci < class_count_;
             ++ci)
            if (caches_[ci].alignment >= align) return ci;
        return npos;
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        if (class_count_ == 0) throw bad_size(name, size, 0); // moved from: no classes
        if (size == 0 || size > max_class_ || !is_pow2(align) || align > supported_align_)
            throw_bad_request(name, size, align, max_class_, supported_align_);
        if (class_index(size, align) == npos) // no class both large and aligned enough
            throw invalid_alignment(name, align, supported_align_);
        throw out_of_memory(name, size, 0, bytes_in_use_, slab_count_ * slab_ask_bytes_);
    }

    // --- debug checks -------------------------------------------------------------------------

    // True if `p` is a live object of one of this allocator's slabs; else reports why.
    MEMKIT_NOINLINE bool accept_object(const void* p, const slab* s) const noexcept {
        if (!owns(p)) {
            report_violation(
                {errc::not_owned, name, p, "pointer is not in one of this allocator's slabs"});
            return false;
        }
        const cache& c = caches_[s->cls];
        const auto off = static_cast<std::size_t>(static_cast<const std::byte*>(p) - slab_begin(s));
        if (off % c.object_size != 0 || off / c.object_size >= s->carved) {
            report_violation({errc::not_owned, name, p, "pointer is not the start of an object"});
            return false;
        }
        if (!bit(s, off / c.object_size)) {
            report_violation({errc::double_free, name, p, "object is already free"});
            return false;
        }
        return true;
    }

    void check_slab(const cache& c, std::size_t ci, std::size_t l, const slab* s,
                    const slab* prev) const {
        if (!registered(reinterpret_cast<std::uintptr_t>(slab_begin(s))))
            corrupt(s, "slab list entry is not one of this allocator's slabs");
        if (s->owner != caches_ || s->cls != ci || s->list != l)
            corrupt(s, "slab header names another allocator, class or list");
        if (s->prev != prev) corrupt(s, "slab list back link is broken");
        if (s->carved > c.per_slab || s->in_use > s->carved)
            corrupt(s, "slab counters out of range");
        const bool full = s->in_use == c.per_slab;
        bool right_list = s->in_use == 0; // the empty list
        if (l == full_list) right_list = full;
        // Only the head of the partial list (the allocation slab) may be empty there.
        if (l == partial_list) right_list = (s->in_use > 0 || prev == nullptr) && !full;
        if (!right_list) corrupt(s, "slab is on the wrong list for its in-use count");
        const std::byte* begin = slab_begin(s);
        const std::size_t carved_bytes = std::size_t{s->carved} * c.object_size;
        std::size_t free_count = 0;
        for (const object* o = s->free; o != nullptr; o = o->next) {
            if (++free_count > s->carved) corrupt(o, "slab free list has a cycle");
            const auto a = reinterpret_cast<std::uintptr_t>(o);
            const auto b = reinterpret_cast<std::uintptr_t>(begin);
            if (a < b || a - b >= carved_bytes || (a - b) % c.object_size != 0)
                corrupt(o, "free-list entry is not a carved object of its slab");
            if (debug_checks && bit(s, (a - b) / c.object_size))
                corrupt(o, "free-list entry is marked allocated");
        }
        if (free_count != s->carved - s->in_use) corrupt(s, "free and in-use counts disagree");
        if constexpr (debug_checks) {
            std::size_t marked = 0;
            for (std::size_t w = 0; w < bitmap_words_; ++w)
                marked += static_cast<std::size_t>(std::popcount(bitmap(s)[w]));
            if (marked != s->in_use) corrupt(s, "allocated bits differ from the in-use count");
        }
    }

    [[noreturn]] MEMKIT_NOINLINE void corrupt(const void* at, const char* what) const {
        throw corruption_detected(name, at, what);
    }

    // --- lifetime -----------------------------------------------------------------------------

    void take(basic_slab_allocator& o) noexcept {
        caches_ = std::exchange(o.caches_, nullptr);
        lookup_ = std::exchange(o.lookup_, nullptr);
        max_class_ = std::exchange(o.max_class_, 0);
        bytes_in_use_ = std::exchange(o.bytes_in_use_, 0);
        peak_ = std::exchange(o.peak_, 0);
        allocations_ = std::exchange(o.allocations_, 0);
        deallocations_ = std::exchange(o.deallocations_, 0);
        slab_size_ = o.slab_size_;
        header_bytes_ = o.header_bytes_;
        bitmap_words_ = o.bitmap_words_;
        class_count_ = std::exchange(o.class_count_, 0);
        retained_ = o.retained_;
        supported_align_ = std::exchange(o.supported_align_, 0);
        slab_ask_bytes_ = o.slab_ask_bytes_;
        slab_ask_align_ = o.slab_ask_align_;
        meta_bytes_ = std::exchange(o.meta_bytes_, 0);
        meta_ = std::exchange(o.meta_, nullptr);
        slots_ = std::exchange(o.slots_, nullptr);
        slot_bits_ = std::exchange(o.slot_bits_, 0);
        slab_count_ = std::exchange(o.slab_count_, 0);
    }

    void destroy() noexcept {
        release();
        if (slots_ != nullptr)
            parent_.deallocate(slots_, (std::size_t{1} << slot_bits_) * sizeof(std::uintptr_t),
                               alignof(std::uintptr_t));
        if (meta_ != nullptr) parent_.deallocate(meta_, meta_bytes_, meta_align);
        meta_ = nullptr;
        slots_ = nullptr;
        caches_ = nullptr;
        lookup_ = nullptr;
        class_count_ = 0;
        max_class_ = 0;
    }

    // Hot state first: the fast paths read the class table, one cache and the counters.
    cache* caches_ = nullptr;
    std::uint8_t* lookup_ = nullptr; // (size + 15) / 16 -> class index
    std::size_t max_class_ = 0;
    std::size_t bytes_in_use_ = 0;
    std::size_t peak_ = 0;
    std::uint64_t allocations_ = 0;
    std::uint64_t deallocations_ = 0;
    std::size_t slab_size_ = 0;
    std::size_t header_bytes_ = 0;
    std::size_t bitmap_words_ = 0;
    std::size_t class_count_ = 0;
    [[no_unique_address]] Parent parent_;
    std::size_t retained_ = 4;
    std::size_t supported_align_ = 0;
    std::size_t slab_ask_bytes_ = 0;
    std::size_t slab_ask_align_ = 0;
    void* meta_ = nullptr; // class table: caches and lookup, as the parent returned it
    std::size_t meta_bytes_ = 0;
    std::uintptr_t* slots_ = nullptr;
    unsigned slot_bits_ = 0;
    std::size_t slab_count_ = 0;
};

using slab_allocator = basic_slab_allocator<>;

} // namespace memkit
