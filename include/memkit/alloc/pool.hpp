// memkit/alloc/pool.hpp - a pool of fixed-size nodes with an intrusive free list.
//
// `pool` serves blocks of one size (the node size, fixed at construction) and is the fastest way
// to allocate many small objects of the same type: list, map and graph nodes, messages, handles.
// A free node stores the link to the next free node in its own first word, so there is no
// per-node header and no side table. Nodes are carved from chunks taken from the Parent
// allocator (system_allocator by default). A new chunk is not threaded into the free list up
// front: a bump pointer carves it on demand, so taking (or reserving) a large chunk costs one
// parent call and touches no node. Chunk sizes grow geometrically: with
// `pool_options::nodes_per_chunk == 0` the first chunk holds about one page of nodes (at least 8)
// and each further chunk twice as many, up to 1 MiB of nodes per chunk; an explicit
// `nodes_per_chunk` gives every chunk that many nodes. `max_nodes` caps the nodes the pool will
// ever hold (a fixed-capacity pool).
//
// The node size is rounded up to hold a pointer and to a multiple of the node alignment, and the
// node alignment is raised to at least alignof(void*) so that the free-list link is always
// aligned; node_size() and node_alignment() report the values in effect. Every node start is
// aligned to node_alignment().
//
// Besides the common interface: allocate()/deallocate(p) for one node, allocate_many (all or
// nothing) and deallocate_many, reserve, shrink_to_fit (returns chunks without allocated nodes),
// clear (every node free, chunks kept; reset() is the same), release (every chunk back).
// Move-only: a moved-from pool is empty and usable. The destructor returns every chunk.
//
// Sanitizers: under ASan (and valgrind with MEMKIT_VALGRIND=1) every node that is not allocated
// is poisoned, except, in a freed node, the words the pool keeps there (the free-list link, and
// the double-free tag in debug builds, which the debug checks read); allocate
// unpoisons the whole node. So a read of a freed node beyond those words, or of a node never
// handed out, is reported. The poison is lifted when chunks go back to the parent.
//
// Complexity: allocate/deallocate O(1) (a new chunk is a parent call on a cold path); reserve
// one parent call; clear O(chunks); release O(chunks); shrink_to_fit
// O(free * log chunks + chunks * log chunks) and no extra memory; owns O(chunks) (for debugging).
// Thread-safety: not thread-safe; use one pool per thread or memkit::synchronized<pool>.
// Failure: allocate throws out_of_memory (requested bytes; available, used and capacity in bytes,
// capacity being max_nodes * node_size for a capped pool, else the bytes held from the parent)
// when max_nodes is reached or the parent fails; bad_size for a size of 0 or above node_size();
// invalid_alignment for an alignment that is not a power of two or above node_alignment();
// try_allocate returns nullptr instead. The constructor throws bad_size for a node size of 0 and
// invalid_alignment for a node alignment that is not a power of two or above 4096. In debug
// builds (memkit::debug_checks) deallocating a pointer that is not one of the pool's nodes
// reports errc::not_owned, and freeing a free node reports errc::double_free (nodes of 16 bytes
// or more carry a tag word while free; 8-byte nodes only catch freeing the most recently freed
// node again); the call then does nothing.
//
//   memkit::pool nodes{sizeof(my_node), alignof(my_node)};
//   void* p = nodes.allocate();
//   nodes.deallocate(p);
#pragma once

#include <cstddef>
#include <cstdint>
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

struct pool_options {
    std::size_t nodes_per_chunk = 0; ///< 0: automatic (about a page of nodes, >= 8, growing)
    std::size_t max_nodes = 0;       ///< 0: unlimited; else the pool never holds more nodes
};

template <class T, allocator Parent>
class object_pool;

template <allocator Parent = system_allocator>
class basic_pool {
    struct node {
        node* next;
    };

    // Chunk header, placed right after the chunk's last node so that a node alignment of up to
    // 4096 costs no padding in front of the first node. `left`, `right` and `free_seen` are
    // scratch space for shrink_to_fit.
    struct chunk {
        chunk* next;
        chunk* left;
        chunk* right;
        void* raw;             // what the parent returned (before aligning to the node alignment)
        std::size_t raw_bytes; // what was asked of the parent
        std::byte* begin;      // first node
        std::size_t nodes;
        std::size_t free_seen;

        [[nodiscard]] std::byte* end() noexcept { return reinterpret_cast<std::byte*>(this); }
        [[nodiscard]] const std::byte* end() const noexcept {
            return reinterpret_cast<const std::byte*>(this);
        }
    };

    static constexpr std::size_t max_auto_chunk_bytes = std::size_t{1} << 20;
    static constexpr std::size_t min_auto_chunk_nodes = 8;
    static constexpr std::size_t parent_max_alignment = allocator_traits<Parent>::max_alignment;
    // A freed node's second word holds its address mixed with this value while it is free (debug
    // builds), so most double frees are caught without walking the free list.
    static constexpr std::uintptr_t free_tag_key =
        static_cast<std::uintptr_t>(0x6d656d6b69742e70ULL);

public:
    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = 4096;
    static constexpr const char* name = "memkit::pool";

    /// A pool of nodes of at least `node_size` bytes aligned to at least `node_align`.
    explicit basic_pool(std::size_t node_size, std::size_t node_align = alignof(std::max_align_t),
                        pool_options opts = {}, Parent parent = Parent{})
        : parent_(std::move(parent)), opts_(opts) {
        if (!is_pow2(node_align) || node_align > max_alignment)
            throw invalid_alignment(name, node_align, max_alignment);
        constexpr auto max_node = static_cast<std::size_t>(PTRDIFF_MAX);
        if (node_size == 0 || node_size > max_node) throw bad_size(name, node_size, max_node);
        node_align_ = node_align < alignof(node) ? alignof(node) : node_align;
        node_size_ = align_up(node_size < sizeof(node) ? sizeof(node) : node_size, node_align_);
        chunk_align_ = node_align_ < parent_max_alignment ? node_align_ : parent_max_alignment;
        max_nodes_ = opts.max_nodes == 0 ? std::numeric_limits<std::size_t>::max() : opts.max_nodes;
        if (opts.nodes_per_chunk != 0) {
            first_chunk_nodes_ = max_chunk_nodes_ = opts.nodes_per_chunk;
        } else {
            const std::size_t page = page_size();
            std::size_t n = page > sizeof(chunk) ? (page - sizeof(chunk)) / node_size_ : 0;
            first_chunk_nodes_ = n < min_auto_chunk_nodes ? min_auto_chunk_nodes : n;
            n = max_auto_chunk_bytes / node_size_;
            max_chunk_nodes_ = n < first_chunk_nodes_ ? first_chunk_nodes_ : n;
        }
        next_chunk_nodes_ = first_chunk_nodes_;
    }

    basic_pool(const basic_pool&) = delete;
    basic_pool& operator=(const basic_pool&) = delete;

    /// Takes every chunk and node of `o`; `o` is left empty (same node size and options), usable.
    basic_pool(basic_pool&& o) noexcept(std::is_nothrow_move_constructible_v<Parent>)
        : free_(std::exchange(o.free_, nullptr)), allocations_(std::exchange(o.allocations_, 0)),
          peak_(std::exchange(o.peak_, 0)), deallocations_(std::exchange(o.deallocations_, 0)),
          bump_(std::exchange(o.bump_, nullptr)), bump_end_(std::exchange(o.bump_end_, nullptr)),
          used_(std::exchange(o.used_, nullptr)), fresh_(std::exchange(o.fresh_, nullptr)),
          node_size_(o.node_size_), node_align_(o.node_align_), chunk_align_(o.chunk_align_),
          max_nodes_(o.max_nodes_), total_nodes_(std::exchange(o.total_nodes_, 0)),
          capacity_bytes_(std::exchange(o.capacity_bytes_, 0)),
          first_chunk_nodes_(o.first_chunk_nodes_), max_chunk_nodes_(o.max_chunk_nodes_),
          next_chunk_nodes_(std::exchange(o.next_chunk_nodes_, o.first_chunk_nodes_)),
          parent_(std::move(o.parent_)), opts_(o.opts_) {}

    basic_pool& operator=(basic_pool&& o) noexcept(std::is_nothrow_move_constructible_v<Parent>) {
        if (this != &o) {
            this->~basic_pool();
            ::new (static_cast<void*>(this)) basic_pool(std::move(o));
        }
        return *this;
    }

    /// Returns every chunk to the parent (live nodes become invalid).
    ~basic_pool() { release(); }

    /// One node for a block of `size` <= node_size() bytes aligned to `align` <= node_alignment().
    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    /// One node.
    [[nodiscard]] void* allocate() {
        if (void* p = try_allocate(); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(node_size_, node_align_);
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        // size - 1 and align - 1 wrap for 0, so one comparison each also rejects zero.
        if (MEMKIT_UNLIKELY(size - 1 >= node_size_ || align - 1 >= node_align_ ||
                            (align & (align - 1)) != 0))
            return nullptr;
        return try_allocate();
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void* try_allocate() noexcept {
        node* n = free_;
        if (MEMKIT_LIKELY(n != nullptr)) {
            free_ = n->next;
        } else {
            n = refill();
            if (n == nullptr) return nullptr;
        }
        if constexpr (has_memory_annotations) mark_allocated(n, node_size_);
        ++allocations_;
        if constexpr (debug_checks) untag(n);
        return n;
    }

    /// Returns a node. `size` and `align` are those given to allocate (unused: every node is
    /// alike).
    MEMKIT_ALWAYS_INLINE void
    deallocate(void* p, std::size_t /*size*/,
               std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        deallocate(p);
    }

    /// Returns a node (the counterpart of `allocate()`).
    MEMKIT_ALWAYS_INLINE void deallocate(void* p) noexcept {
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_free(p))) return;
        }
        // The caller may have left the node annotated (a container's spare capacity).
        if constexpr (has_memory_annotations) mark_owned(p, node_size_);
        node* n = ::new (p) node{free_};
        free_ = n;
        ++deallocations_;
        if constexpr (debug_checks) tag(n);
        if constexpr (has_memory_annotations)
            mark_unused(static_cast<std::byte*>(p) + kept_bytes(), node_size_ - kept_bytes());
    }

    /// Fills `out` with nodes, all or nothing: if they cannot all be had, throws out_of_memory
    /// and allocates none. Takes at most one chunk from the parent.
    void allocate_many(std::span<void*> out) {
        const std::size_t n = out.size();
        const std::size_t available = free_count();
        if (n > available && !reserve_nodes(n - available)) fail_exhausted(sat_mul(n, node_size_));
        for (void*& p : out) {
            node* x = free_;
            if (x != nullptr) free_ = x->next;
            else x = refill(); // cannot fail: the nodes are reserved
            if constexpr (has_memory_annotations) mark_allocated(x, node_size_);
            if constexpr (debug_checks) untag(x);
            p = x;
        }
        allocations_ += n;
        if (live_nodes() > peak_) peak_ = live_nodes();
    }

    /// Returns every node in `nodes` (each as by deallocate).
    void deallocate_many(std::span<void* const> nodes) noexcept {
        for (void* p : nodes) deallocate(p);
    }

    /// Makes sure `n` nodes can be allocated without calling the parent again, by taking one
    /// chunk of at least the missing number of nodes. Throws out_of_memory when that would
    /// exceed max_nodes or the parent fails; the pool is then unchanged.
    void reserve(std::size_t n) {
        const std::size_t available = free_count();
        if (n > available && !reserve_nodes(n - available)) fail_exhausted(sat_mul(n, node_size_));
    }

    /// Returns to the parent every chunk none of whose nodes is allocated. Free nodes in the
    /// chunks that stay keep their order in the free list.
    void shrink_to_fit() noexcept {
        while (fresh_ != nullptr) give_back(std::exchange(fresh_, fresh_->next));
        if (free_ == nullptr || used_ == nullptr) return;

        // Sort the chunks by address and hang them in a balanced search tree (the tree lives in
        // the chunk headers: no memory is needed), then count each chunk's free nodes.
        std::size_t count = 0;
        for (chunk* c = used_; c != nullptr; c = c->next) {
            c->free_seen = 0;
            ++count;
        }
        chunk* sorted = sort_by_address(used_, count);
        chunk* cursor = sorted;
        chunk* root = build_tree(cursor, count);
        for (node* n = free_; n != nullptr; n = n->next)
            if (chunk* c = find_chunk(root, n); c != nullptr) ++c->free_seen;

        // A chunk goes when all of its carved nodes are free (only the current chunk, the one
        // the bump pointer is in, has uncarved nodes); from here `free_seen != 0` means "goes".
        for (chunk* c = sorted; c != nullptr; c = c->next) {
            const std::size_t carved = c->end() == bump_end_
                                           ? static_cast<std::size_t>(bump_ - c->begin) / node_size_
                                           : c->nodes;
            c->free_seen = c->free_seen == carved ? 1 : 0;
        }
        node** link = &free_;
        while (*link != nullptr) {
            const chunk* c = find_chunk(root, *link);
            if (c != nullptr && c->free_seen != 0) *link = (*link)->next;
            else link = &(*link)->next;
        }

        used_ = nullptr;
        for (chunk* c = sorted; c != nullptr;) {
            chunk* next = c->next;
            if (c->free_seen != 0) {
                if (c->end() == bump_end_) bump_ = bump_end_ = nullptr;
                give_back(c);
            } else {
                c->next = used_;
                used_ = c;
            }
            c = next;
        }
    }

    /// Makes every node free again and keeps the chunks. Pointers to allocated nodes become
    /// invalid; they count as deallocated in stats().
    void clear() noexcept {
        note_release_all();
        free_ = nullptr;
        while (used_ != nullptr) {
            chunk* c = std::exchange(used_, used_->next);
            c->next = fresh_;
            fresh_ = c;
            if constexpr (has_memory_annotations) mark_unused(c->begin, c->nodes * node_size_);
        }
        bump_ = bump_end_ = nullptr;
    }

    /// Same as clear(): the generic name for "free everything" that memkit adapters forward.
    void reset() noexcept { clear(); }

    /// Returns every chunk to the parent; the pool is as new (statistics counters are kept).
    void release() noexcept {
        note_release_all();
        while (used_ != nullptr) give_back(std::exchange(used_, used_->next));
        while (fresh_ != nullptr) give_back(std::exchange(fresh_, fresh_->next));
        free_ = nullptr;
        bump_ = bump_end_ = nullptr;
        next_chunk_nodes_ = first_chunk_nodes_;
    }

    /// True if `p` is the start of a node this pool has handed out (allocated or free now).
    [[nodiscard]] bool owns(const void* p) const noexcept { return find_node(p) != nullptr; }

    /// True if `n` more nodes can be allocated without exceeding max_nodes (always true when the
    /// pool is not capped; the parent may still fail).
    [[nodiscard]] bool can_allocate(std::size_t n) const noexcept {
        return n <= max_nodes_ - live_nodes();
    }

    /// bytes_in_use = allocated nodes * node_size(); capacity = bytes obtained from the parent;
    /// the peak survives clear() and release().
    [[nodiscard]] allocator_stats stats() const noexcept {
        const std::size_t live = live_nodes();
        const std::size_t peak = peak_ > live ? static_cast<std::size_t>(peak_) : live;
        return {live * node_size_, peak * node_size_, capacity_bytes_, allocations_,
                deallocations_};
    }

    [[nodiscard]] std::size_t max_size() const noexcept { return node_size_; }
    [[nodiscard]] std::size_t node_size() const noexcept { return node_size_; }
    [[nodiscard]] std::size_t node_alignment() const noexcept { return node_align_; }
    /// Nodes that can be allocated without calling the parent.
    [[nodiscard]] std::size_t free_count() const noexcept { return total_nodes_ - live_nodes(); }
    /// Allocated nodes.
    [[nodiscard]] std::size_t size() const noexcept { return live_nodes(); }
    /// Nodes in all chunks.
    [[nodiscard]] std::size_t capacity() const noexcept { return total_nodes_; }
    [[nodiscard]] std::size_t chunk_count() const noexcept {
        std::size_t n = 0;
        for (const chunk* c = used_; c != nullptr; c = c->next) ++n;
        for (const chunk* c = fresh_; c != nullptr; c = c->next) ++n;
        return n;
    }
    [[nodiscard]] const pool_options& options() const noexcept { return opts_; }
    [[nodiscard]] Parent& parent() noexcept { return parent_; }
    [[nodiscard]] const Parent& parent() const noexcept { return parent_; }

private:
    template <class T, allocator P>
    friend class object_pool;

    [[nodiscard]] std::size_t live_nodes() const noexcept {
        return static_cast<std::size_t>(allocations_ - deallocations_);
    }

    static std::size_t sat_mul(std::size_t a, std::size_t b) noexcept {
        std::size_t r = 0;
        return checked_mul(a, b, r) ? r : std::numeric_limits<std::size_t>::max();
    }

    // The free list is empty: carve the next node from the current chunk, a reserved chunk or a
    // new one.
    MEMKIT_NOINLINE node* refill() noexcept {
        if (bump_ == bump_end_) {
            chunk* c = fresh_;
            if (c != nullptr) {
                fresh_ = c->next;
            } else {
                c = new_chunk(next_chunk_nodes_ < max_nodes_ - total_nodes_
                                  ? next_chunk_nodes_
                                  : max_nodes_ - total_nodes_);
                if (c == nullptr) return nullptr;
                grow_next_chunk_nodes();
            }
            c->next = used_;
            used_ = c;
            bump_ = c->begin;
            bump_end_ = c->end();
        }
        std::byte* p = bump_;
        bump_ += node_size_;
        // The peak only needs updating here. A node is carved only when the free list is empty,
        // that is when every carved node is live, so carved nodes never exceed the peak, and
        // live nodes never exceed carved ones: live can pass the old peak only at this point.
        // (clear() makes every chunk uncarved again; allocate_many catches up after its loop.)
        const std::uint64_t live = allocations_ - deallocations_ + 1;
        if (live > peak_) peak_ = live;
        return static_cast<node*>(static_cast<void*>(p));
    }

    // Adds a reserved chunk holding at least `need` more nodes.
    bool reserve_nodes(std::size_t need) noexcept {
        const std::size_t room = max_nodes_ - total_nodes_;
        if (need > room) return false;
        std::size_t nodes = need > next_chunk_nodes_ ? need : next_chunk_nodes_;
        if (nodes > room) nodes = room;
        chunk* c = new_chunk(nodes);
        if (c == nullptr && nodes > need) c = new_chunk(need); // the parent may have less
        if (c == nullptr) return false;
        grow_next_chunk_nodes();
        c->next = fresh_;
        fresh_ = c;
        return true;
    }

    chunk* new_chunk(std::size_t nodes) noexcept {
        if (nodes == 0) return nullptr;
        // Room for the nodes, the header and, when the parent cannot align as strictly as the
        // nodes need, the padding to align by hand.
        std::size_t bytes = 0;
        if (!checked_mul(nodes, node_size_, bytes) ||
            !checked_add(bytes, sizeof(chunk) + (node_align_ - chunk_align_), bytes))
            return nullptr;
        void* raw = parent_.try_allocate(bytes, chunk_align_);
        if (raw == nullptr) return nullptr;
        std::byte* begin = align_up(static_cast<std::byte*>(raw), node_align_);
        total_nodes_ += nodes;
        capacity_bytes_ += bytes;
        if constexpr (has_memory_annotations) mark_unused(begin, nodes * node_size_);
        return ::new (static_cast<void*>(begin + nodes * node_size_))
            chunk{nullptr, nullptr, nullptr, raw, bytes, begin, nodes, 0};
    }

    void give_back(chunk* c) noexcept {
        if constexpr (has_memory_annotations) mark_owned(c->begin, c->nodes * node_size_);
        total_nodes_ -= c->nodes;
        capacity_bytes_ -= c->raw_bytes;
        parent_.deallocate(c->raw, c->raw_bytes, chunk_align_);
    }

    void grow_next_chunk_nodes() noexcept {
        if (next_chunk_nodes_ < max_chunk_nodes_)
            next_chunk_nodes_ =
                next_chunk_nodes_ > max_chunk_nodes_ / 2 ? max_chunk_nodes_ : next_chunk_nodes_ * 2;
    }

    void note_release_all() noexcept {
        const std::uint64_t live = allocations_ - deallocations_;
        if (live > peak_) peak_ = live;
        deallocations_ = allocations_;
    }

    // The chunk whose carved nodes contain `p` at a node boundary, or nullptr.
    const chunk* find_node(const void* p) const noexcept {
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        for (const chunk* c = used_; c != nullptr; c = c->next) {
            const auto begin = reinterpret_cast<std::uintptr_t>(c->begin);
            const auto end =
                reinterpret_cast<std::uintptr_t>(c->end() == bump_end_ ? bump_ : c->end());
            if (a >= begin && a < end) return (a - begin) % node_size_ == 0 ? c : nullptr;
        }
        return nullptr;
    }

    // --- debug checks -------------------------------------------------------------------------

    bool has_tag_word() const noexcept { return node_size_ >= 2 * sizeof(std::uintptr_t); }

    // Bytes at the start of a freed node left addressable: the link and, in debug builds, the
    // tag (nodes are at least one link long, and a tag word exists only in longer ones).
    std::size_t kept_bytes() const noexcept {
        return debug_checks && has_tag_word() ? 2 * sizeof(std::uintptr_t) : sizeof(node);
    }
    static std::uintptr_t tag_of(const void* p) noexcept {
        return reinterpret_cast<std::uintptr_t>(p) ^ free_tag_key;
    }
    void tag(node* n) const noexcept {
        if (has_tag_word()) static_cast<std::uintptr_t*>(static_cast<void*>(n))[1] = tag_of(n);
    }
    void untag(node* n) const noexcept {
        if (has_tag_word()) static_cast<std::uintptr_t*>(static_cast<void*>(n))[1] = 0;
    }

    // True if the node at `p` (one of ours) is on the free list: the tag word makes the walk
    // rare (an allocated node has its tag cleared, so only user data equal to the tag costs one).
    // Without a tag word only the head of the free list is checked.
    [[nodiscard]] bool is_free_node(const void* p) const noexcept {
        if (!has_tag_word()) return p == free_;
        if (static_cast<const std::uintptr_t*>(p)[1] != tag_of(p)) return false;
        for (const node* n = free_; n != nullptr; n = n->next)
            if (n == p) return true;
        return false;
    }

    MEMKIT_NOINLINE bool accept_free(void* p) const noexcept {
        if (find_node(p) == nullptr) {
            report_violation({errc::not_owned, name, p, "pointer is not a node of this pool"});
            return false;
        }
        if (is_free_node(p)) {
            report_violation({errc::double_free, name, p, "node is already free"});
            return false;
        }
        return true;
    }

    // --- shrink_to_fit helpers ----------------------------------------------------------------

    // Merge sort of a singly linked chunk list of `n` chunks by address (via `next`).
    static chunk* sort_by_address(chunk* head, std::size_t n) noexcept {
        if (n <= 1) {
            if (head != nullptr) head->next = nullptr;
            return head;
        }
        const std::size_t half = n / 2;
        chunk* mid = head;
        for (std::size_t i = 1; i < half; ++i) mid = mid->next;
        chunk* second = mid->next;
        mid->next = nullptr;
        chunk* a = sort_by_address(head, half);
        chunk* b = sort_by_address(second, n - half);
        chunk* out = nullptr;
        chunk** tail = &out;
        while (a != nullptr && b != nullptr) {
            chunk*& lower =
                reinterpret_cast<std::uintptr_t>(a) < reinterpret_cast<std::uintptr_t>(b) ? a : b;
            *tail = lower;
            tail = &lower->next;
            lower = lower->next;
        }
        *tail = a != nullptr ? a : b;
        return out;
    }

    // A balanced search tree over the next `n` chunks of a sorted list, advancing `cursor`.
    static chunk* build_tree(chunk*& cursor, std::size_t n) noexcept {
        if (n == 0) return nullptr;
        chunk* left = build_tree(cursor, n / 2);
        chunk* root = cursor;
        cursor = cursor->next;
        root->left = left;
        root->right = build_tree(cursor, n - n / 2 - 1);
        return root;
    }

    static chunk* find_chunk(chunk* root, const void* p) noexcept {
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        while (root != nullptr) {
            if (a < reinterpret_cast<std::uintptr_t>(root->begin)) root = root->left;
            else if (a >= reinterpret_cast<std::uintptr_t>(root->end())) root = root->right;
            else return root;
        }
        return nullptr; // not reached for a node on the free list
    }

    // --- failures -----------------------------------------------------------------------------

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        if (size == 0 || size > node_size_ || !is_pow2(align) || align > node_align_)
            throw_bad_request(name, size, align, node_size_, node_align_);
        fail_exhausted(size);
    }

    [[noreturn]] MEMKIT_NOINLINE void fail_exhausted(std::size_t requested) const {
        const std::size_t live = live_nodes();
        const bool capped = opts_.max_nodes != 0;
        const std::size_t available = capped ? max_nodes_ - live : total_nodes_ - live;
        throw out_of_memory(name, requested, sat_mul(available, node_size_), live * node_size_,
                            capped ? sat_mul(max_nodes_, node_size_) : capacity_bytes_);
    }

    // Hot state first: the allocate/deallocate fast paths touch only the first cache line.
    // The two counters are kept apart: side by side, compilers merge an allocate/deallocate
    // pair's updates into one 16-byte vector read-modify-write, which defeats store forwarding.
    node* free_ = nullptr;
    std::uint64_t allocations_ = 0;
    std::uint64_t peak_ = 0; // in nodes; updated where a node is carved (see refill)
    std::uint64_t deallocations_ = 0;
    std::byte* bump_ = nullptr;     // next uncarved node of the current chunk
    std::byte* bump_end_ = nullptr; // end of the current chunk's nodes
    chunk* used_ = nullptr;         // chunks with carved nodes (the current one among them)
    chunk* fresh_ = nullptr;        // reserved chunks with no node carved yet
    std::size_t node_size_ = 0;
    std::size_t node_align_ = 0;
    std::size_t chunk_align_ = 0; // alignment asked of the parent
    std::size_t max_nodes_ = 0;   // SIZE_MAX when unlimited
    std::size_t total_nodes_ = 0;
    std::size_t capacity_bytes_ = 0;
    std::size_t first_chunk_nodes_ = 0;
    std::size_t max_chunk_nodes_ = 0;
    std::size_t next_chunk_nodes_ = 0;
    [[no_unique_address]] Parent parent_;
    pool_options opts_;
};

using pool = basic_pool<>;

} // namespace memkit
