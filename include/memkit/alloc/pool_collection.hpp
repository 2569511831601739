// memkit/alloc/pool_collection.hpp - one pool per size class, routed by size in O(1).
//
// `pool_collection` serves blocks of many small sizes from a set of memkit pools, one per size
// class, so that mixed small allocations (strings, nodes of different containers, messages of a
// few sizes) get a pool's speed without one pool per type. The classes are chosen at
// construction (`pool_collection_options`): powers of two from `min_class` to `max_class` (the
// default: 8, 16, ..., 256; both ends rounded up to powers of two, the smallest to at least a
// pointer), or linear steps `min_class`, `min_class + step`, ... up to the first class >=
// `max_class` (at most 256 classes). A request of `size` bytes aligned to `align` goes to the
// smallest class that holds max(size, align) bytes and whose nodes are aligned at least to
// `align`; a small table maps the size to its class, so routing is a shift and a load.
// deallocate(p, size, align) routes the same way, so it must receive the size and alignment
// given to allocate.
//
// Each class's nodes are aligned to the largest power of two that divides the class size
// (at most 4096; at least a pointer). Requests that no class can align (say 8 bytes at 4096)
// and, when `large == large_policy::parent`, sizes above the largest class are served by the
// Parent directly, as "direct blocks" with a small header that links them, so that reset(),
// release() and the destructor return them too. With the default `large_policy::reject`, a size
// above the largest class is a bad_size. Every class pool and every direct block takes its memory
// from the one Parent (system_allocator by default), as does the routing table.
//
// Statistics are kept for the whole and per class: stats() sums the classes (whose bytes are
// whole nodes) and the direct blocks (counted as requested); its peak_bytes is the sum of their
// peaks, which is the node memory the classes had to carve (a node of one class never serves
// another). class_stats(i) is the class pool's own stats(), direct_stats() those of the direct
// blocks. The fast paths keep no counters beyond the pools' own; stats() is O(classes).
// reset() (= clear every class, keep the chunks), release() (every chunk back) and
// shrink_to_fit() are forwarded to every class; reset() and release() also free direct blocks.
// Move-only; a moved-from collection has no classes and serves only direct blocks.
//
// Complexity: allocate/deallocate O(1) (a new chunk is one parent call on a cold path; direct
// blocks cost a parent call); owns O(classes * chunks + direct blocks), meant for debugging.
// Thread-safety: not thread-safe; use one per thread or memkit::synchronized<pool_collection>.
// Failure: allocate throws bad_size for a size of 0 or above max_size() (the largest class when
// large requests are rejected), invalid_alignment for an alignment that is not a power of two or
// above max_alignment (the Parent's), out_of_memory when a class pool reaches
// pool_options::max_nodes or the parent fails; try_allocate returns nullptr instead. The
// constructor throws std::invalid_argument for options it cannot honour (min_class 0, max_class
// below min_class, step 0, more than 256 classes, a routing table above 65536 entries) and what
// the Parent throws. Debug builds report errc::not_owned for a pointer that is not a node of the
// class its size and alignment select (or not a direct block of this collection); a double free
// of a node is reported by the class's pool (errc::double_free, allocator "memkit::pool"). The
// call then does nothing.
//
//   memkit::pool_collection pools;                      // classes 8, 16, ..., 256
//   void* p = pools.allocate(24, 8);                    // served by the 32-byte class
//   pools.deallocate(p, 24, 8);
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

/// How a pool_collection spaces its size classes.
enum class size_class_spacing {
    power_of_two, ///< min_class, 2 * min_class, ... (powers of two)
    linear,       ///< min_class, min_class + step, min_class + 2 * step, ...
};

/// What a pool_collection does with a size above its largest class.
enum class large_policy {
    reject, ///< bad_size (try_allocate: nullptr)
    parent, ///< a direct block from the Parent
};

struct pool_collection_options {
    size_class_spacing spacing = size_class_spacing::power_of_two;
    std::size_t min_class = 8;   ///< smallest class
    std::size_t max_class = 256; ///< the largest class is the first one >= max_class
    std::size_t step = 16;       ///< class spacing for size_class_spacing::linear
    pool_options pool = {};      ///< options of every class pool (nodes_per_chunk, max_nodes)
    large_policy large = large_policy::reject;
};

template <allocator Parent = system_allocator>
class basic_pool_collection {
    using parent_traits = allocator_traits<Parent>;

public:
    /// The pool of one class: it takes its chunks from the collection's Parent.
    using pool_type = basic_pool<allocator_ref<Parent>>;

    static constexpr bool is_thread_safe = false;
    /// Alignments beyond what a class offers are served by the Parent, so its limit is the one.
    static constexpr std::size_t max_alignment = parent_traits::max_alignment;
    static constexpr const char* name = "memkit::pool_collection";
    static constexpr std::size_t max_classes = 256;
    static constexpr std::size_t max_table_entries = std::size_t{1} << 16;
    /// class_index() for a request served by the Parent directly, or not at all.
    static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

private:
    struct class_info {
        std::size_t node_size; // what a node of the class counts in bytes_in_use
        std::size_t align;     // the class pool's node alignment
        std::size_t size;      // the nominal class size (the routing bound)
    };

    // Sits right before the user block of a direct block.
    struct direct_block {
        direct_block* prev;
        direct_block* next;
        void* raw;
        std::size_t raw_bytes;
        std::size_t raw_align;
        std::size_t size;
    };

    static constexpr std::size_t direct_route = npos - 1;
    static constexpr std::size_t max_node_alignment = 4096;

public:
    basic_pool_collection() requires std::default_initializable<Parent>
        : basic_pool_collection(pool_collection_options{}) {}

    explicit basic_pool_collection(pool_collection_options opts, Parent parent = Parent{})
        : opts_(opts), parent_(std::move(parent)) {
        std::array<std::size_t, max_classes> sizes{};
        const std::size_t n = class_sizes(opts, sizes);
        build(sizes, n);
    }

    basic_pool_collection(const basic_pool_collection&) = delete;
    basic_pool_collection& operator=(const basic_pool_collection&) = delete;

    /// Takes every class, node and direct block of `o`, which is left without classes.
    basic_pool_collection(basic_pool_collection&& o) noexcept(
        std::is_nothrow_move_constructible_v<Parent>)
        : table_(std::exchange(o.table_, nullptr)), pools_(std::exchange(o.pools_, nullptr)),
          max_class_(std::exchange(o.max_class_, 0)), shift_(std::exchange(o.shift_, 0)),
          class_count_(std::exchange(o.class_count_, 0)),
          classes_(std::exchange(o.classes_, nullptr)), direct_(std::exchange(o.direct_, nullptr)),
          direct_bytes_(std::exchange(o.direct_bytes_, 0)),
          direct_peak_(std::exchange(o.direct_peak_, 0)),
          direct_capacity_(std::exchange(o.direct_capacity_, 0)),
          direct_allocations_(std::exchange(o.direct_allocations_, 0)),
          direct_deallocations_(std::exchange(o.direct_deallocations_, 0)),
          meta_(std::exchange(o.meta_, nullptr)), meta_bytes_(std::exchange(o.meta_bytes_, 0)),
          opts_(o.opts_), parent_(std::move(o.parent_)) {
        // The class pools refer to the parent, which now lives here.
        for (std::size_t i = 0; i < class_count_; ++i) pools_[i].parent() = allocator_ref{parent_};
    }

    basic_pool_collection&
    operator=(basic_pool_collection&& o) noexcept(std::is_nothrow_move_constructible_v<Parent>) {
        if (this != &o) {
            this->~basic_pool_collection();
            ::new (static_cast<void*>(this)) basic_pool_collection(std::move(o));
        }
        return *this;
    }

    /// Returns every chunk and direct block to the parent (live blocks become invalid).
    ~basic_pool_collection() {
        free_direct_blocks();
        for (std::size_t i = class_count_; i > 0; --i) pools_[i - 1].~pool_type();
        if (meta_ != nullptr) parent_.deallocate(meta_, meta_bytes_, alignof(pool_type));
    }

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        const std::size_t key = size > align ? size : align;
        if (MEMKIT_LIKELY(key - 1 < max_class_)) {
            const unsigned e = table_[(key - 1) >> shift_];
            if (MEMKIT_LIKELY(aligned_enough(align, e) && (align & (align - 1)) == 0 && size != 0))
                return pools_[e & class_mask].try_allocate();
        }
        return allocate_other(size, align);
    }

    /// Returns a block; `size` and `align` must be those given to allocate (they pick the class).
    MEMKIT_ALWAYS_INLINE void deallocate(void* p, std::size_t size,
                                         std::size_t align = alignof(std::max_align_t)) noexcept {
        // The same route as allocate took: for the valid requests allocate served, the checks
        // it adds (a power-of-two alignment, a size above 0) hold anyway.
        const std::size_t key = size > align ? size : align;
        if (MEMKIT_LIKELY(key - 1 < max_class_)) {
            const unsigned e = table_[(key - 1) >> shift_];
            if (MEMKIT_LIKELY(aligned_enough(align, e))) {
                if constexpr (debug_checks) debug_free_node(e & class_mask, p);
                else pools_[e & class_mask].deallocate(p);
                return;
            }
        }
        deallocate_other(p, locate_slow(size, align));
    }

    /// Makes sure `n` blocks of `size` bytes aligned to `align` can be allocated without calling
    /// the parent (one chunk for their class). Throws bad_size when no class serves the request,
    /// out_of_memory when the class cap or the parent forbids it (nothing changes then).
    void reserve(std::size_t size, std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        const std::size_t c = locate(size, align);
        if (c >= class_count_) throw bad_size(name, size, max_class_);
        try {
            pools_[c].reserve(n);
        } catch (const std::bad_alloc&) {
            std::size_t bytes = 0;
            if (!checked_mul(n, classes_[c].node_size, bytes)) bytes = out_of_memory::unknown;
            const allocator_stats s = stats();
            throw out_of_memory(name, bytes, out_of_memory::unknown, s.bytes_in_use, s.capacity);
        }
    }

    /// Every class: chunks none of whose nodes is allocated go back to the parent.
    void shrink_to_fit() noexcept {
        for (std::size_t i = 0; i < class_count_; ++i) pools_[i].shrink_to_fit();
    }

    /// Every node of every class is free again (chunks kept); direct blocks go back to the
    /// parent. Live pointers become invalid; they count as deallocated.
    void reset() noexcept {
        for (std::size_t i = 0; i < class_count_; ++i) pools_[i].clear();
        free_direct_blocks();
    }

    /// Every chunk and direct block goes back to the parent; the classes stay usable.
    void release() noexcept {
        for (std::size_t i = 0; i < class_count_; ++i) pools_[i].release();
        free_direct_blocks();
    }

    /// True if `p` is a node start of one of the classes (allocated or free) or a live direct
    /// block.
    [[nodiscard]] bool owns(const void* p) const noexcept {
        for (std::size_t i = 0; i < class_count_; ++i)
            if (pools_[i].owns(p)) return true;
        return find_direct(p) != nullptr;
    }

    /// The sum over classes (whole nodes) and direct blocks (as requested): peak_bytes is the
    /// sum of their own peaks - the node memory each class had to carve, since nodes of one
    /// class never serve another - and capacity includes direct blocks' headers and padding.
    /// O(classes): the fast paths keep no counters of their own.
    [[nodiscard]] allocator_stats stats() const noexcept {
        allocator_stats s{direct_bytes_, direct_peak_, direct_capacity_, direct_allocations_,
                          direct_deallocations_};
        for (std::size_t i = 0; i < class_count_; ++i) {
            const allocator_stats c = pools_[i].stats();
            s.bytes_in_use += c.bytes_in_use;
            s.peak_bytes += c.peak_bytes;
            s.capacity += c.capacity;
            s.allocations += c.allocations;
            s.deallocations += c.deallocations;
        }
        return s;
    }

    /// The statistics of class `i` (its pool's stats()). Precondition: i < class_count().
    [[nodiscard]] allocator_stats class_stats(std::size_t i) const noexcept {
        return pools_[i].stats();
    }

    /// The statistics of the blocks served by the Parent directly.
    [[nodiscard]] allocator_stats direct_stats() const noexcept {
        return {direct_bytes_, direct_peak_, direct_capacity_, direct_allocations_,
                direct_deallocations_};
    }

    /// The largest size allocate can serve: the largest class, or the Parent's limit (less a
    /// direct block's header) when large requests go to the Parent.
    [[nodiscard]] std::size_t max_size() const noexcept {
        if (opts_.large == large_policy::reject) return max_class_;
        const std::size_t room = align_up(sizeof(direct_block), alignof(std::max_align_t));
        const std::size_t limit = parent_traits::max_size(parent_);
        return limit > room ? limit - room : 0;
    }

    [[nodiscard]] std::size_t class_count() const noexcept { return class_count_; }
    /// The nominal size of class `i` (the largest request it takes).
    [[nodiscard]] std::size_t class_size(std::size_t i) const noexcept { return classes_[i].size; }
    /// The node alignment of class `i`.
    [[nodiscard]] std::size_t class_alignment(std::size_t i) const noexcept {
        return classes_[i].align;
    }
    /// The pool of class `i`, to inspect (free_count, chunk_count ...).
    [[nodiscard]] const pool_type& class_pool(std::size_t i) const noexcept { return pools_[i]; }
    /// The class that serves (size, align), or npos when the request goes to the Parent or is
    /// rejected.
    [[nodiscard]] std::size_t
    class_index(std::size_t size, std::size_t align = alignof(std::max_align_t)) const noexcept {
        const std::size_t c = locate(size, align);
        return c < class_count_ ? c : npos;
    }
    /// Live direct blocks.
    [[nodiscard]] std::size_t direct_count() const noexcept {
        return static_cast<std::size_t>(direct_allocations_ - direct_deallocations_);
    }
    [[nodiscard]] const pool_collection_options& options() const noexcept { return opts_; }
    [[nodiscard]] Parent& parent() noexcept { return parent_; }
    [[nodiscard]] const Parent& parent() const noexcept { return parent_; }

private:
    // --- construction -------------------------------------------------------------------------

    [[noreturn]] static void bad_options(const char* why) {
        throw std::invalid_argument(std::string("memkit::pool_collection: ") + why);
    }

    static std::size_t lowest_bit(std::size_t x) noexcept { return x & (~x + 1); }

    // Fills `out` with the class sizes the options ask for and returns how many there are.
    static std::size_t class_sizes(const pool_collection_options& o,
                                   std::array<std::size_t, max_classes>& out) {
        if (o.min_class == 0) bad_options("min_class must be at least 1");
        if (o.max_class < o.min_class) bad_options("max_class is below min_class");
        // Classes beyond 1 GiB make no sense for pools and would overflow the arithmetic below.
        constexpr std::size_t class_limit = std::size_t{1} << 30;
        if (o.max_class > class_limit) bad_options("max_class is above 1 GiB");
        if (o.step > class_limit) bad_options("step is above 1 GiB");
        std::size_t n = 0;
        if (o.spacing == size_class_spacing::power_of_two) {
            const std::size_t lo =
                next_pow2(o.min_class < sizeof(void*) ? sizeof(void*) : o.min_class);
            for (std::size_t s = lo;; s *= 2) {
                if (n == max_classes) bad_options("more than 256 size classes");
                out[n++] = s;
                if (s >= o.max_class) break;
            }
        } else {
            if (o.step == 0) bad_options("step must be at least 1");
            for (std::size_t s = o.min_class;; s += o.step) {
                if (n == max_classes) bad_options("more than 256 size classes");
                out[n++] = s;
                if (s >= o.max_class) break;
            }
        }
        return n;
    }

    void build(const std::array<std::size_t, max_classes>& sizes, std::size_t n) {
        // Every class boundary is a multiple of the granule, so one table entry per granule
        // routes every size exactly.
        std::size_t granule = lowest_bit(sizes[0]);
        for (std::size_t i = 1; i < n; ++i)
            if (lowest_bit(sizes[i]) < granule) granule = lowest_bit(sizes[i]);
        const std::size_t largest = sizes[n - 1];
        const std::size_t entries = (largest - 1) / granule + 1;
        if (entries > max_table_entries)
            bad_options("the routing table would exceed 65536 entries (use coarser classes)");

        // One parent block: the pools, the class records, the table.
        const std::size_t classes_at = align_up(n * sizeof(pool_type), alignof(class_info));
        const std::size_t table_at =
            align_up(classes_at + n * sizeof(class_info), alignof(std::uint16_t));
        const std::size_t bytes = table_at + entries * sizeof(std::uint16_t);
        void* meta = parent_.allocate(bytes, alignof(pool_type));
        auto* base = static_cast<std::byte*>(meta);
        auto* pools = reinterpret_cast<pool_type*>(base);
        auto* classes = reinterpret_cast<class_info*>(base + classes_at);
        auto* table = reinterpret_cast<std::uint16_t*>(base + table_at);

        std::size_t built = 0;
        try {
            for (; built < n; ++built) {
                const std::size_t s = sizes[built];
                const std::size_t a =
                    lowest_bit(s) < max_node_alignment ? lowest_bit(s) : max_node_alignment;
                pool_type* p = ::new (static_cast<void*>(pools + built))
                    pool_type(s, a, opts_.pool, allocator_ref{parent_});
                ::new (static_cast<void*>(classes + built))
                    class_info{p->node_size(), p->node_alignment(), s};
            }
        } catch (...) {
            for (std::size_t i = built; i > 0; --i) pools[i - 1].~pool_type();
            parent_.deallocate(meta, bytes, alignof(pool_type));
            throw;
        }
        std::size_t c = 0;
        for (std::size_t e = 0; e < entries; ++e) {
            const std::size_t top = (e + 1) * granule; // the largest size of this entry
            while (sizes[c] < top) ++c;
            const auto align_log2 = static_cast<unsigned>(__builtin_ctzll(classes[c].align));
            table[e] = static_cast<std::uint16_t>(c | (align_log2 << 8));
        }

        meta_ = meta;
        meta_bytes_ = bytes;
        pools_ = pools;
        classes_ = classes;
        table_ = table;
        class_count_ = n;
        max_class_ = largest;
        shift_ = static_cast<unsigned>(__builtin_ctzll(granule));
    }

    // --- routing --------------------------------------------------------------------------------

    // A table entry is the class and, above bit 8, the log2 of its node alignment, so the common
    // request needs one table load and no class record.
    static constexpr unsigned class_mask = 0xffu;
    [[nodiscard]] static MEMKIT_ALWAYS_INLINE bool aligned_enough(std::size_t align,
                                                                  unsigned entry) noexcept {
        return ((align - 1) >> (entry >> 8)) == 0; // 1 <= align <= the class's node alignment
    }

    // The class for (size, align), direct_route for the Parent, or npos for a request nothing
    // serves. A pure function of the request, with the same fast path as allocate and
    // deallocate, so all three always agree.
    [[nodiscard]] std::size_t locate(std::size_t size, std::size_t align) const noexcept {
        const std::size_t key = size > align ? size : align;
        if (key - 1 < max_class_) {
            const unsigned e = table_[(key - 1) >> shift_];
            if (aligned_enough(align, e) && (align & (align - 1)) == 0 && size != 0)
                return e & class_mask;
        }
        return locate_slow(size, align);
    }

    // Over-aligned requests (a class large enough whose nodes are aligned enough, else the
    // Parent), sizes above the largest class, and invalid requests.
    [[nodiscard]] MEMKIT_NOINLINE std::size_t locate_slow(std::size_t size,
                                                          std::size_t align) const noexcept {
        if (size == 0 || !is_pow2(align)) return npos;
        if (size > max_class_) return opts_.large == large_policy::parent ? direct_route : npos;
        for (std::size_t c = table_[(size - 1) >> shift_] & class_mask; c < class_count_; ++c)
            if (classes_[c].align >= align) return c;
        return direct_route;
    }

    // Requests the fast path does not take: over-aligned ones, large ones, invalid ones.
    MEMKIT_NOINLINE void* allocate_other(std::size_t size, std::size_t align) noexcept {
        const std::size_t c = locate_slow(size, align);
        if (c < class_count_) return pools_[c].try_allocate();
        return c == direct_route ? allocate_direct(size, align) : nullptr;
    }

    // --- direct blocks ------------------------------------------------------------------------

    static std::size_t direct_room(std::size_t align) noexcept {
        return align_up(sizeof(direct_block), align);
    }

    MEMKIT_NOINLINE void* allocate_direct(std::size_t size, std::size_t align) noexcept {
        const std::size_t a = align > alignof(direct_block) ? align : alignof(direct_block);
        if (a > max_alignment) return nullptr;
        const std::size_t room = direct_room(a);
        std::size_t bytes = 0;
        if (!checked_add(room, size, bytes) || bytes > parent_traits::max_size(parent_))
            return nullptr;
        void* raw = parent_.try_allocate(bytes, a);
        if (raw == nullptr) return nullptr;
        std::byte* user = static_cast<std::byte*>(raw) + room;
        auto* b = ::new (static_cast<void*>(user - sizeof(direct_block)))
            direct_block{nullptr, direct_, raw, bytes, a, size};
        if (direct_ != nullptr) direct_->prev = b;
        direct_ = b;
        ++direct_allocations_;
        direct_bytes_ += size;
        direct_capacity_ += bytes;
        if (direct_bytes_ > direct_peak_) direct_peak_ = direct_bytes_;
        return user;
    }

    void unlink_and_free(direct_block* b) noexcept {
        if (b->prev != nullptr) b->prev->next = b->next;
        else direct_ = b->next;
        if (b->next != nullptr) b->next->prev = b->prev;
        ++direct_deallocations_;
        direct_bytes_ -= b->size;
        direct_capacity_ -= b->raw_bytes;
        const direct_block copy = *b;
        b->~direct_block();
        parent_.deallocate(copy.raw, copy.raw_bytes, copy.raw_align);
    }

    void free_direct_blocks() noexcept {
        while (direct_ != nullptr) unlink_and_free(direct_);
    }

    [[nodiscard]] direct_block* find_direct(const void* p) const noexcept {
        for (direct_block* b = direct_; b != nullptr; b = b->next)
            if (reinterpret_cast<const std::byte*>(b) + sizeof(direct_block) == p) return b;
        return nullptr;
    }

    // Frees a node of an over-aligned request or a direct block, or reports a request that
    // matches nothing.
    MEMKIT_NOINLINE void deallocate_other(void* p, std::size_t route) noexcept {
        if (route < class_count_) {
            if constexpr (debug_checks) debug_free_node(route, p);
            else pools_[route].deallocate(p);
            return;
        }
        if (route == direct_route) {
            direct_block* b = nullptr;
            if constexpr (debug_checks) {
                b = find_direct(p);
                if (b == nullptr) {
                    report_violation({errc::not_owned, name, p,
                                      "pointer is not a direct block of this pool collection"});
                    return;
                }
            } else {
                b = reinterpret_cast<direct_block*>(static_cast<std::byte*>(p) -
                                                    sizeof(direct_block));
            }
            unlink_and_free(b);
            return;
        }
        if constexpr (debug_checks)
            report_violation(
                {errc::not_owned, name, p, "no size class serves the size and alignment given"});
    }

    // Debug builds: the pointer must be a node of the class the request selects (a double free
    // is caught and reported by the pool itself).
    MEMKIT_NOINLINE void debug_free_node(std::size_t c, void* p) noexcept {
        if (!pools_[c].owns(p)) {
            report_violation({errc::not_owned, name, p,
                              "pointer is not a node of the class its size and alignment select"});
            return;
        }
        pools_[c].deallocate(p);
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        const std::size_t limit = max_size();
        if (size == 0 || size > limit || !is_pow2(align) || align > max_alignment)
            throw_bad_request(name, size, align, limit, max_alignment);
        const std::size_t c = locate(size, align);
        std::size_t available = out_of_memory::unknown;
        if (c < class_count_ && opts_.pool.max_nodes != 0)
            available = (opts_.pool.max_nodes - pools_[c].size()) * classes_[c].node_size;
        const allocator_stats s = stats();
        throw out_of_memory(name, size, available, s.bytes_in_use, s.capacity);
    }

    // Hot state first: everything routing reads shares a cache line.
    const std::uint16_t* table_ = nullptr; // granule index -> class | log2(node alignment) << 8
    pool_type* pools_ = nullptr;
    std::size_t max_class_ = 0; // the largest class size; 0 without classes
    unsigned shift_ = 0;        // log2 of the table's granule
    std::size_t class_count_ = 0;
    const class_info* classes_ = nullptr;
    direct_block* direct_ = nullptr;
    std::size_t direct_bytes_ = 0;
    std::size_t direct_peak_ = 0;
    std::size_t direct_capacity_ = 0;
    std::uint64_t direct_allocations_ = 0;
    std::uint64_t direct_deallocations_ = 0;
    void* meta_ = nullptr; // the parent block holding pools, class records and table
    std::size_t meta_bytes_ = 0;
    pool_collection_options opts_;
    [[no_unique_address]] Parent parent_;
};

using pool_collection = basic_pool_collection<>;

} // namespace memkit
