// memkit/alloc/growing_pool.hpp - a pool of fixed-size nodes whose chunks grow by a chosen factor.
//
// `growing_pool` is a memkit::basic_pool with its own chunk policy: the first chunk holds
// `growing_pool_options::first_chunk_nodes` nodes (0: about a page worth, at least 8), each
// further chunk holds `growth_factor` times as many (rounded up, at least one more when the
// factor is above 1), up to `max_chunk_nodes` per chunk. `max_nodes` and `max_bytes` cap what the
// pool ever holds: the last chunk is cut to fit, and a request beyond the cap fails with
// out_of_memory. Use it instead of `pool` when the number of nodes is unknown and the memory
// footprint must stay close to what is used (a small factor such as 1.25) or when a few large
// chunks are wanted quickly (a large factor); with a cap it is a fixed-capacity pool that takes
// its memory only as it is needed.
//
// Everything else is the pool's: an intrusive free list, no per-node header, nodes aligned to
// node_alignment(), lazy carving of new chunks, allocate()/deallocate(p) for one node,
// allocate_many (all or nothing) and deallocate_many, reserve, shrink_to_fit, clear (= reset),
// release. When the parent cannot give a whole chunk, a chunk of just the missing nodes is tried
// before giving up. release() also restarts the growth from the first chunk size.
//
// Complexity: allocate/deallocate O(1) (a new chunk is one parent call on a cold path);
// owns O(chunks); shrink_to_fit, clear, release as basic_pool.
// Thread-safety: not thread-safe; use one per thread or memkit::synchronized<growing_pool>.
// Failure: allocate throws out_of_memory (requested bytes; available, used and capacity in node
// bytes, capacity being the cap for a capped pool, else the bytes held from the parent) when the
// cap is reached or the parent fails; bad_size for a size of 0 or above node_size();
// invalid_alignment for an alignment that is not a power of two or above node_alignment();
// try_allocate returns nullptr instead. The constructor throws bad_size for a node size of 0 or a
// byte cap below one node, invalid_alignment for a node alignment that is not a power of two or
// above 4096, and std::invalid_argument for a growth factor below 1 (or NaN) or a
// max_chunk_nodes below first_chunk_nodes. Debug checks (not_owned, double_free) are those of
// the underlying pool and are reported under its name, "memkit::pool".
//
//   memkit::growing_pool nodes{64, 16, {.first_chunk_nodes = 32, .growth_factor = 1.5}};
//   void* p = nodes.allocate();
//   nodes.deallocate(p);
#pragma once

#include <cstddef>
#include <limits>
#include <new>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"

namespace memkit {

struct growing_pool_options {
    std::size_t first_chunk_nodes = 0; ///< nodes in the first chunk; 0: about a page (>= 8)
    double growth_factor = 2.0;        ///< each new chunk holds this many times more (>= 1)
    std::size_t max_chunk_nodes = 0;   ///< growth stops here; 0: 1 MiB of nodes (>= the first)
    std::size_t max_nodes = 0;         ///< 0: unlimited; else the pool never holds more nodes
    std::size_t max_bytes = 0;         ///< 0: unlimited; else nodes * node_size() stay within it
};

template <allocator Parent = system_allocator>
class basic_growing_pool {
    // The inner pool is told to take one node per chunk: it never takes a chunk of its own,
    // because every chunk is reserved here (with the size this class chooses) before the pool
    // runs out of free nodes.
    using pool_type = basic_pool<Parent>;
    static constexpr std::size_t min_auto_chunk_nodes = 8;
    static constexpr std::size_t max_auto_chunk_bytes = std::size_t{1} << 20;

public:
    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = pool_type::max_alignment;
    static constexpr const char* name = "memkit::growing_pool";

    explicit basic_growing_pool(std::size_t node_size,
                                std::size_t node_align = alignof(std::max_align_t),
                                growing_pool_options opts = {}, Parent parent = Parent{})
        : pool_(node_size, node_align, pool_options{.nodes_per_chunk = 1, .max_nodes = 0},
                std::move(parent)),
          opts_(opts) {
        if (!(opts.growth_factor >= 1.0))
            throw std::invalid_argument("memkit::growing_pool: growth_factor must be >= 1");
        const std::size_t ns = pool_.node_size();
        max_nodes_ = opts.max_nodes == 0 ? std::numeric_limits<std::size_t>::max() : opts.max_nodes;
        if (opts.max_bytes != 0) {
            if (opts.max_bytes < ns) throw bad_size(name, ns, opts.max_bytes);
            if (opts.max_bytes / ns < max_nodes_) max_nodes_ = opts.max_bytes / ns;
        }
        if (opts.first_chunk_nodes != 0) {
            first_chunk_nodes_ = opts.first_chunk_nodes;
        } else {
            const std::size_t n = page_size() / ns;
            first_chunk_nodes_ = n < min_auto_chunk_nodes ? min_auto_chunk_nodes : n;
        }
        if (opts.max_chunk_nodes != 0) {
            if (opts.max_chunk_nodes < first_chunk_nodes_)
                throw std::invalid_argument(
                    "memkit::growing_pool: max_chunk_nodes is below first_chunk_nodes");
            max_chunk_nodes_ = opts.max_chunk_nodes;
        } else {
            const std::size_t n = max_auto_chunk_bytes / ns;
            max_chunk_nodes_ = n < first_chunk_nodes_ ? first_chunk_nodes_ : n;
        }
        next_chunk_nodes_ = first_chunk_nodes_;
    }

    basic_growing_pool(const basic_growing_pool&) = delete;
    basic_growing_pool& operator=(const basic_growing_pool&) = delete;

    /// Takes every chunk and node of `o`; `o` is left empty (same options), usable.
    basic_growing_pool(basic_growing_pool&& o) noexcept(
        std::is_nothrow_move_constructible_v<Parent>)
        : pool_(std::move(o.pool_)), opts_(o.opts_), max_nodes_(o.max_nodes_),
          first_chunk_nodes_(o.first_chunk_nodes_), max_chunk_nodes_(o.max_chunk_nodes_),
          next_chunk_nodes_(std::exchange(o.next_chunk_nodes_, o.first_chunk_nodes_)) {}

    basic_growing_pool&
    operator=(basic_growing_pool&& o) noexcept(std::is_nothrow_move_constructible_v<Parent>) {
        if (this != &o) {
            pool_ = std::move(o.pool_);
            opts_ = o.opts_;
            max_nodes_ = o.max_nodes_;
            first_chunk_nodes_ = o.first_chunk_nodes_;
            max_chunk_nodes_ = o.max_chunk_nodes_;
            next_chunk_nodes_ = std::exchange(o.next_chunk_nodes_, o.first_chunk_nodes_);
        }
        return *this;
    }

    ~basic_growing_pool() = default;

    /// One node for a block of `size` <= node_size() bytes aligned to `align` <= node_alignment().
    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    /// One node.
    [[nodiscard]] void* allocate() {
        if (void* p = try_allocate(); MEMKIT_LIKELY(p != nullptr)) return p;
        fail_exhausted(pool_.node_size());
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        // size - 1 and align - 1 wrap for 0, so one comparison each also rejects zero.
        if (MEMKIT_UNLIKELY(size - 1 >= pool_.node_size() || align - 1 >= pool_.node_alignment() ||
                            (align & (align - 1)) != 0))
            return nullptr;
        return try_allocate();
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void* try_allocate() noexcept {
        if (MEMKIT_UNLIKELY(pool_.free_count() == 0) && !grow(1)) return nullptr;
        return pool_.try_allocate();
    }

    /// Returns a node; `size` and `align` are those given to allocate (unused: nodes are alike).
    MEMKIT_ALWAYS_INLINE void
    deallocate(void* p, std::size_t /*size*/,
               std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        pool_.deallocate(p);
    }

    /// Returns a node (the counterpart of `allocate()`).
    MEMKIT_ALWAYS_INLINE void deallocate(void* p) noexcept { pool_.deallocate(p); }

    /// Fills `out` with nodes, all or nothing: if they cannot all be had, throws out_of_memory
    /// and allocates none. Takes at most one chunk from the parent.
    void allocate_many(std::span<void*> out) {
        const std::size_t free = pool_.free_count();
        if (out.size() > free && !grow(out.size() - free))
            fail_exhausted(sat_mul(out.size(), pool_.node_size()));
        pool_.allocate_many(out);
    }

    /// Returns every node in `nodes` (each as by deallocate).
    void deallocate_many(std::span<void* const> nodes) noexcept { pool_.deallocate_many(nodes); }

    /// Makes sure `n` nodes can be allocated without calling the parent again (one chunk of at
    /// least the missing nodes). Throws out_of_memory when the cap or the parent forbids it; the
    /// pool is then unchanged.
    void reserve(std::size_t n) {
        const std::size_t free = pool_.free_count();
        if (n > free && !grow(n - free)) fail_exhausted(sat_mul(n, pool_.node_size()));
    }

    /// Returns to the parent every chunk none of whose nodes is allocated.
    void shrink_to_fit() noexcept { pool_.shrink_to_fit(); }
    /// Makes every node free again and keeps the chunks (allocated nodes count as freed).
    void clear() noexcept { pool_.clear(); }
    /// Same as clear().
    void reset() noexcept { pool_.clear(); }
    /// Returns every chunk to the parent and restarts the growth from the first chunk size.
    void release() noexcept {
        pool_.release();
        next_chunk_nodes_ = first_chunk_nodes_;
    }

    /// True if `p` is the start of a node this pool has handed out (allocated or free now).
    [[nodiscard]] bool owns(const void* p) const noexcept { return pool_.owns(p); }

    /// True if `n` more nodes fit under the cap (always true without one; the parent may fail).
    [[nodiscard]] bool can_allocate(std::size_t n) const noexcept {
        return n <= max_nodes_ - pool_.size();
    }

    /// bytes_in_use = allocated nodes * node_size(); capacity = bytes obtained from the parent.
    [[nodiscard]] allocator_stats stats() const noexcept { return pool_.stats(); }

    [[nodiscard]] std::size_t max_size() const noexcept { return pool_.node_size(); }
    [[nodiscard]] std::size_t node_size() const noexcept { return pool_.node_size(); }
    [[nodiscard]] std::size_t node_alignment() const noexcept { return pool_.node_alignment(); }
    /// Nodes that can be allocated without calling the parent.
    [[nodiscard]] std::size_t free_count() const noexcept { return pool_.free_count(); }
    /// Allocated nodes.
    [[nodiscard]] std::size_t size() const noexcept { return pool_.size(); }
    /// Nodes in all chunks.
    [[nodiscard]] std::size_t capacity() const noexcept { return pool_.capacity(); }
    [[nodiscard]] std::size_t chunk_count() const noexcept { return pool_.chunk_count(); }
    /// The node cap in effect (SIZE_MAX when unlimited).
    [[nodiscard]] std::size_t max_nodes() const noexcept { return max_nodes_; }
    /// Nodes the next chunk will hold (before the cap cuts it).
    [[nodiscard]] std::size_t next_chunk_nodes() const noexcept { return next_chunk_nodes_; }
    [[nodiscard]] std::size_t first_chunk_nodes() const noexcept { return first_chunk_nodes_; }
    [[nodiscard]] std::size_t max_chunk_nodes() const noexcept { return max_chunk_nodes_; }
    [[nodiscard]] const growing_pool_options& options() const noexcept { return opts_; }
    [[nodiscard]] Parent& parent() noexcept { return pool_.parent(); }
    [[nodiscard]] const Parent& parent() const noexcept { return pool_.parent(); }

private:
    static std::size_t sat_mul(std::size_t a, std::size_t b) noexcept {
        std::size_t r = 0;
        return checked_mul(a, b, r) ? r : std::numeric_limits<std::size_t>::max();
    }

    // Adds one chunk holding at least `need` more nodes: the next chunk size when it is larger,
    // cut to the cap. If the parent refuses, a chunk of exactly `need` nodes is tried.
    MEMKIT_NOINLINE bool grow(std::size_t need) noexcept {
        const std::size_t room = max_nodes_ - pool_.capacity();
        if (need > room) return false;
        std::size_t nodes = need > next_chunk_nodes_ ? need : next_chunk_nodes_;
        if (nodes > room) nodes = room;
        if (!take_chunk(nodes) && (nodes == need || !take_chunk(need))) return false;
        advance();
        return true;
    }

    bool take_chunk(std::size_t nodes) noexcept {
        // The pool reserves exactly the missing nodes: its own chunk size is one node.
        try {
            pool_.reserve(pool_.free_count() + nodes);
            return true;
        } catch (const std::bad_alloc&) {
            return false;
        }
    }

    void advance() noexcept {
        if (next_chunk_nodes_ >= max_chunk_nodes_) return;
        const double grown = static_cast<double>(next_chunk_nodes_) * opts_.growth_factor;
        std::size_t n = grown >= static_cast<double>(max_chunk_nodes_)
                            ? max_chunk_nodes_
                            : static_cast<std::size_t>(grown);
        if (n < grown) ++n; // round up
        if (n == next_chunk_nodes_ && opts_.growth_factor > 1.0) ++n;
        next_chunk_nodes_ = n < max_chunk_nodes_ ? n : max_chunk_nodes_;
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        const std::size_t ns = pool_.node_size();
        const std::size_t na = pool_.node_alignment();
        if (size == 0 || size > ns || !is_pow2(align) || align > na)
            throw_bad_request(name, size, align, ns, na);
        fail_exhausted(size);
    }

    [[noreturn]] MEMKIT_NOINLINE void fail_exhausted(std::size_t requested) const {
        const std::size_t ns = pool_.node_size();
        const std::size_t live = pool_.size();
        const bool capped = max_nodes_ != std::numeric_limits<std::size_t>::max();
        const std::size_t available = capped ? max_nodes_ - live : pool_.free_count();
        throw out_of_memory(name, requested, sat_mul(available, ns), live * ns,
                            capped ? sat_mul(max_nodes_, ns) : pool_.stats().capacity);
    }

    pool_type pool_;
    growing_pool_options opts_;
    std::size_t max_nodes_ = 0; // SIZE_MAX when unlimited
    std::size_t first_chunk_nodes_ = 0;
    std::size_t max_chunk_nodes_ = 0;
    std::size_t next_chunk_nodes_ = 0;
};

using growing_pool = basic_growing_pool<>;

} // namespace memkit
