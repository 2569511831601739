// memkit/alloc/concurrent_pool.hpp - a lock-free pool of fixed-size nodes for many threads.
//
// `concurrent_pool` serves blocks of one size, like memkit::pool, but any number of threads may
// allocate and free at the same time, and a node freed by one thread can be allocated by any
// other (producer/consumer hand-offs, work queues, message nodes). Free nodes form a Treiber
// stack: allocate pops the top node with one compare-and-swap, deallocate pushes with one.
//
// ABA protection. A pop reads the top node, reads its successor, and swaps the top for the
// successor; if meanwhile the node was popped, others were popped and the node was pushed back,
// a plain pointer swap would succeed and install a successor that is in use (the ABA problem).
// The top of the stack is therefore one 64-bit word holding a 32-bit node index and a 32-bit
// generation that every successful pop and push increments, so such a swap fails. A 16-byte
// compare-and-swap of pointer + counter is not used: with g++ 12 and clang++ 14 std::atomic of
// 16 bytes is not lock-free without -mcx16 and libatomic (g++ never inlines cmpxchg16b for it),
// and packing a counter into the high bits of a pointer breaks with 57-bit address spaces and
// with pointer tagging (ARM TBI/MTE, HWASan). An index is portable and leaves 32 bits of
// generation: a pop can only be fooled if its thread sleeps between two instructions while
// exactly a multiple of 2^32 other operations complete.
//
// Nodes live in chunks taken from the Parent allocator. Chunk k holds twice as many nodes as
// chunk k-1 (the first holds `concurrent_pool_options::nodes_per_chunk`, rounded up to a power of
// two), so an index maps to its chunk with a bit scan, and a pointer to its index by checking the
// chunks from the newest (which holds half of all nodes) back. Chunks are added under a mutex
// taken only when every node is in use; a new chunk is carved lazily by an atomic counter, never
// threaded into the free list. Memory of a chunk is never returned to the parent while threads
// use the pool (only release() and the destructor return it, and both require that no thread
// does), so a thread that read a stale top of the stack can always read that node's link word
// without faulting: it may read garbage (the node is in use), but then the generation has
// changed and its swap fails. That is why the generation tag is enough.
//
// Statistics are per-thread counters (plain stores, summed by stats()), so counting costs no
// shared write; nodes freed by threads that have exited are still counted.
//
// Complexity: allocate and deallocate are lock-free, O(1) plus, for deallocate, a scan of the
// chunks that is 1-2 steps on average (at most 33). Growing takes a mutex and one parent call.
// Every operation writes the top of the stack, so under heavy contention its cache line moves
// between cores on each call; threads that allocate and free in bursts do better with a
// memkit::thread_cache<concurrent_pool> in front (batches of nodes stay on one thread).
// Thread-safety: allocate, try_allocate, deallocate, owns, stats, reserve are thread-safe;
// reset(), release() and destruction require that no other thread uses the pool meanwhile. The
// Parent is called only under the growth mutex, so it need not be thread-safe. Not movable.
// Failure: allocate throws out_of_memory when max_nodes is reached or the parent fails (with
// requested bytes, bytes available under the cap, bytes in use, and capacity: max_nodes *
// node_size when capped, else the bytes held from the parent); bad_size for a size of 0 or above
// node_size(); invalid_alignment for an alignment that is not a power of two or above
// node_alignment(). try_allocate returns nullptr instead. The constructor throws bad_size for a
// node size of 0 or above 2 GiB and invalid_alignment for a node alignment that is not a power
// of two or above 4096. Debug builds (memkit::debug_checks) report errc::not_owned for a pointer
// that is not a node of the pool and errc::double_free for a node freed twice (nodes of 16 bytes
// or more carry a tag word while free); the call then does nothing.
//
//   memkit::concurrent_pool nodes{sizeof(message), alignof(message)};
//   void* p = nodes.allocate();          // any thread
//   nodes.deallocate(p);                 // any thread, not necessarily the same
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <new>
#include <utility>

#include "memkit/alloc/detail/per_thread.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

struct concurrent_pool_options {
    /// Nodes in the first chunk, rounded up to a power of two; each further chunk doubles.
    /// 0: about one page of nodes (at least 8).
    std::size_t nodes_per_chunk = 0;
    /// 0: unlimited (up to 2^32 - 2 nodes); else the pool never holds more nodes.
    std::size_t max_nodes = 0;
};

template <allocator Parent = system_allocator>
class basic_concurrent_pool {
    static constexpr std::uint32_t no_node = 0xffffffffu;
    static constexpr std::size_t index_limit = 0xfffffffeu; // nodes addressable by an index
    static constexpr std::size_t max_chunks = 33;
    static constexpr std::size_t min_auto_chunk_nodes = 8;
    static constexpr std::size_t max_node_size = std::size_t{1} << 31;
    static constexpr std::size_t parent_max_alignment = allocator_traits<Parent>::max_alignment;
    static constexpr std::uintptr_t free_tag_key =
        static_cast<std::uintptr_t>(0x6d656d6b69742e63ULL);

    struct chunk {
        std::atomic<std::byte*> begin{nullptr}; // first node
        std::atomic<std::size_t> bytes{0};      // nodes * node size
        void* raw = nullptr;                    // what the parent returned
        std::size_t raw_bytes = 0;              // what was asked of the parent
    };

    struct thread_counts : detail::per_thread_node {
        std::atomic<std::uint64_t> allocations{0};
        std::atomic<std::uint64_t> deallocations{0};
    };

public:
    static constexpr bool is_thread_safe = true;
    static constexpr std::size_t max_alignment = 4096;
    static constexpr const char* name = "memkit::concurrent_pool";

    /// A pool of nodes of at least `node_size` bytes aligned to at least `node_align`.
    explicit basic_concurrent_pool(std::size_t node_size,
                                   std::size_t node_align = alignof(std::max_align_t),
                                   concurrent_pool_options opts = {}, Parent parent = Parent{})
        : parent_(std::move(parent)), opts_(opts), counters_(this, &on_thread_exit) {
        if (!is_pow2(node_align) || node_align > max_alignment)
            throw invalid_alignment(name, node_align, max_alignment);
        if (node_size == 0 || node_size > max_node_size)
            throw bad_size(name, node_size, max_node_size);
        node_align_ = node_align < alignof(std::uint64_t) ? alignof(std::uint64_t) : node_align;
        node_size_ = align_up(node_size < sizeof(std::uint64_t) ? sizeof(std::uint64_t) : node_size,
                              node_align_);
        chunk_align_ = node_align_ < parent_max_alignment ? node_align_ : parent_max_alignment;
        div_magic_ = ~std::uint64_t{0} / node_size_ + 1;
        limit_ = opts.max_nodes == 0 || opts.max_nodes > index_limit ? index_limit : opts.max_nodes;
        std::size_t first = opts.nodes_per_chunk;
        if (first == 0) {
            const std::size_t n = page_size() / node_size_;
            first = n < min_auto_chunk_nodes ? min_auto_chunk_nodes : std::bit_floor(n);
        }
        if (first > (index_limit + 1) / 2) first = (index_limit + 1) / 2;
        first_shift_ = static_cast<unsigned>(std::countr_zero(std::bit_ceil(first)));
    }

    basic_concurrent_pool(const basic_concurrent_pool&) = delete;
    basic_concurrent_pool& operator=(const basic_concurrent_pool&) = delete;

    /// Returns every chunk to the parent. No other thread may use the pool any more.
    ~basic_concurrent_pool() {
        counters_.close([this](detail::per_thread_node* s) { retire(s); });
        release_chunks();
    }

    /// One node for a block of `size` <= node_size() bytes aligned to `align` <= node_alignment().
    [[nodiscard]] void* allocate(std::size_t size,
                                                    std::size_t align = alignof(std::max_align_t)) {
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
        std::byte* n = pop();
        if (MEMKIT_UNLIKELY(n == nullptr)) {
            n = carve();
            if (n == nullptr) return nullptr;
        }
        if constexpr (debug_checks) untag(n);
        count(&thread_counts::allocations);
        return n;
    }

    /// Returns a node; `size` and `align` are those given to allocate (every node is alike).
    MEMKIT_ALWAYS_INLINE void
    deallocate(void* p, std::size_t /*size*/,
               std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        deallocate(p);
    }

    /// Returns a node (the counterpart of `allocate()`), from any thread.
    MEMKIT_ALWAYS_INLINE void deallocate(void* p) noexcept {
        std::uint32_t i = 0;
        if (MEMKIT_UNLIKELY(!index_of(p, i))) {
            if constexpr (debug_checks)
                report_violation({errc::not_owned, name, p, "pointer is not a node of this pool"});
            return;
        }
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_free(p))) return;
            tag(p);
        }
        push(i, p);
        count(&thread_counts::deallocations);
    }

    /// Makes sure `n` nodes that were never used can be allocated without calling the parent
    /// (nodes on the free list come on top). Throws out_of_memory when that would exceed
    /// max_nodes or the parent fails; chunks added before the failure stay.
    void reserve(std::size_t n) {
        for (;;) {
            const std::uint64_t cap = capacity_.load(std::memory_order_acquire);
            const std::uint64_t carved = carved_.load(std::memory_order_relaxed);
            if (cap >= carved && cap - carved >= n) return;
            if (!grow(cap)) fail_exhausted(sat_mul(n, node_size_));
        }
    }

    /// Makes every node free again and keeps the chunks. Pointers to allocated nodes become
    /// invalid; they count as deallocated in stats(). No other thread may use the pool meanwhile.
    void reset() noexcept {
        note_release_all();
        const std::uint64_t h = head_.load(std::memory_order_relaxed);
        head_.store(pack(no_node, generation(h) + 1), std::memory_order_relaxed);
        carved_.store(0, std::memory_order_relaxed);
    }

    /// Same as reset(), and returns every chunk to the parent (statistics counters are kept).
    /// No other thread may use the pool meanwhile.
    void release() noexcept {
        reset();
        release_chunks();
    }

    /// True if `p` is the start of a node in one of the pool's chunks (allocated, free, or not
    /// handed out yet).
    [[nodiscard]] bool owns(const void* p) const noexcept {
        std::uint32_t i = 0;
        return index_of(p, i) && at(i) == p;
    }

    /// bytes_in_use = allocated nodes * node_size(); capacity = bytes held from the parent;
    /// peak_bytes = the most nodes ever carved from the chunks (nodes that were in use at once,
    /// or slightly more when threads raced for the last free node) * node_size(). Exact when no
    /// other thread is allocating or freeing; otherwise each counter is a recent value.
    [[nodiscard]] allocator_stats stats() const noexcept {
        std::uint64_t allocations = retired_allocations_.load(std::memory_order_relaxed);
        std::uint64_t deallocations = retired_deallocations_.load(std::memory_order_relaxed);
        counters_.for_each([&](const detail::per_thread_node* n) {
            const auto* s = static_cast<const thread_counts*>(n);
            allocations += s->allocations.load(std::memory_order_relaxed);
            deallocations += s->deallocations.load(std::memory_order_relaxed);
        });
        // Counters of different threads are read one after another, so a free counted on one
        // thread may be seen before the allocation counted on another.
        const auto live = static_cast<std::size_t>(
            allocations >= deallocations ? allocations - deallocations : 0);
        std::size_t peak = peak_nodes_.load(std::memory_order_relaxed);
        const auto carved = static_cast<std::size_t>(carved_.load(std::memory_order_relaxed));
        if (carved > peak) peak = carved;
        if (live > peak) peak = live;
        return {live * node_size_, peak * node_size_,
                capacity_bytes_.load(std::memory_order_relaxed), allocations, deallocations};
    }

    [[nodiscard]] std::size_t max_size() const noexcept { return node_size_; }
    [[nodiscard]] std::size_t node_size() const noexcept { return node_size_; }
    [[nodiscard]] std::size_t node_alignment() const noexcept { return node_align_; }
    /// Nodes in all chunks.
    [[nodiscard]] std::size_t capacity() const noexcept {
        return static_cast<std::size_t>(capacity_.load(std::memory_order_acquire));
    }
    [[nodiscard]] std::size_t chunk_count() const noexcept {
        return chunk_count_.load(std::memory_order_acquire);
    }
    /// The most nodes the pool will hold (max_nodes, or 2^32 - 2 when unlimited).
    [[nodiscard]] std::size_t max_nodes() const noexcept { return limit_; }
    [[nodiscard]] const concurrent_pool_options& options() const noexcept { return opts_; }
    [[nodiscard]] Parent& parent() noexcept { return parent_; }

private:
    static constexpr std::uint64_t pack(std::uint32_t index, std::uint32_t gen) noexcept {
        return (std::uint64_t{gen} << 32) | index;
    }
    static constexpr std::uint32_t index(std::uint64_t h) noexcept {
        return static_cast<std::uint32_t>(h);
    }
    static constexpr std::uint32_t generation(std::uint64_t h) noexcept {
        return static_cast<std::uint32_t>(h >> 32);
    }

    static std::size_t sat_mul(std::size_t a, std::size_t b) noexcept {
        std::size_t r = 0;
        return checked_mul(a, b, r) ? r : std::numeric_limits<std::size_t>::max();
    }

    // Index of the first node of chunk k, and its node count before capping: chunk 0 holds
    // 2^first_shift_ nodes, chunk k > 0 holds 2^(first_shift_ + k - 1), starting at that index.
    [[nodiscard]] std::size_t chunk_first(std::size_t k) const noexcept {
        return k == 0 ? 0 : std::size_t{1} << (first_shift_ + k - 1);
    }
    [[nodiscard]] std::size_t chunk_nodes(std::size_t k) const noexcept {
        return std::size_t{1} << (first_shift_ + (k == 0 ? 0 : k - 1));
    }

    // The node with index i (whose chunk is published: the index came from the stack or from
    // the carve counter, both of which happen after the chunk's publication).
    [[nodiscard]] MEMKIT_ALWAYS_INLINE std::byte* at(std::uint32_t i) const noexcept {
        const std::uint32_t q = i >> first_shift_;
        const auto k = static_cast<unsigned>(std::bit_width(q));
        const std::size_t first = std::size_t{std::bit_floor(q)} << first_shift_;
        return chunks_[k].begin.load(std::memory_order_relaxed) + (i - first) * node_size_;
    }

    // The index of the node at p; false when p is in none of the chunks (or, in debug builds,
    // not at a node boundary).
    [[nodiscard]] MEMKIT_ALWAYS_INLINE bool index_of(const void* p,
                                                     std::uint32_t& out) const noexcept {
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        for (std::size_t k = chunk_count_.load(std::memory_order_acquire); k-- > 0;) {
            const std::uintptr_t off = a - reinterpret_cast<std::uintptr_t>(
                                               chunks_[k].begin.load(std::memory_order_relaxed));
            if (off < chunks_[k].bytes.load(std::memory_order_relaxed)) {
                const std::size_t q = divide(off);
                if constexpr (debug_checks) {
                    if (q * node_size_ != off) return false;
                }
                out = static_cast<std::uint32_t>(chunk_first(k) + q);
                return true;
            }
        }
        return false;
    }

    // off / node_size_ without a division instruction: for 32-bit dividends the high half of
    // off * ceil(2^64 / d) is the exact quotient (Lemire, Kaser and Kurz, "Faster remainder by
    // direct computation", 2019). Larger offsets (chunks over 4 GiB) divide.
    [[nodiscard]] MEMKIT_ALWAYS_INLINE std::size_t divide(std::uintptr_t off) const noexcept {
#if defined(__SIZEOF_INT128__)
        if (MEMKIT_LIKELY((off >> 32) == 0)) {
            __extension__ using u128 = unsigned __int128;
            return static_cast<std::size_t>((u128{div_magic_} * off) >> 64);
        }
#endif
        return off / node_size_;
    }

    // The link word of a free node. A popping thread may read it after another thread popped
    // the node and its new owner wrote into it: the value is then discarded (the generation
    // changed, the swap fails), and the memory is readable because chunks are never returned
    // while the pool lives. That read races with the owner's writes by design, so
    // ThreadSanitizer is told not to watch this one load.
#if MEMKIT_HAS_TSAN
    __attribute__((no_sanitize("thread"), noinline)) static std::uint32_t
    load_link(const std::byte* n) noexcept {
        return *reinterpret_cast<const std::uint32_t*>(n);
    }
#else
    static MEMKIT_ALWAYS_INLINE std::uint32_t load_link(const std::byte* n) noexcept {
        return __atomic_load_n(reinterpret_cast<const std::uint32_t*>(n), __ATOMIC_RELAXED);
    }
#endif
    static MEMKIT_ALWAYS_INLINE void store_link(void* n, std::uint32_t next) noexcept {
        __atomic_store_n(static_cast<std::uint32_t*>(n), next, __ATOMIC_RELAXED);
    }

    MEMKIT_ALWAYS_INLINE std::byte* pop() noexcept {
        std::uint64_t h = head_.load(std::memory_order_acquire);
        while (index(h) != no_node) {
            std::byte* n = at(index(h));
            const std::uint32_t next = load_link(n);
            if (head_.compare_exchange_weak(h, pack(next, generation(h) + 1),
                                            std::memory_order_acq_rel, std::memory_order_acquire))
                return n;
        }
        return nullptr;
    }

    MEMKIT_ALWAYS_INLINE void push(std::uint32_t i, void* n) noexcept {
        std::uint64_t h = head_.load(std::memory_order_relaxed);
        do {
            store_link(n, index(h));
        } while (!head_.compare_exchange_weak(
            h, pack(i, generation(h) + 1), std::memory_order_release, std::memory_order_relaxed));
    }

    // The free list is empty: take a never-used node, growing the pool when there is none.
    MEMKIT_NOINLINE std::byte* carve() noexcept {
        for (;;) {
            const std::uint64_t cap = capacity_.load(std::memory_order_acquire);
            std::uint64_t c = carved_.load(std::memory_order_relaxed);
            while (c < cap) {
                if (carved_.compare_exchange_weak(c, c + 1, std::memory_order_relaxed))
                    return at(static_cast<std::uint32_t>(c));
            }
            // Another thread may have freed a node meanwhile.
            if (std::byte* n = pop()) return n;
            if (!grow(cap)) return pop();
        }
    }

    // Adds the next chunk unless another thread already did (capacity no longer `seen`).
    // False when max_nodes is reached or the parent fails.
    MEMKIT_NOINLINE bool grow(std::uint64_t seen) noexcept {
        std::lock_guard<std::mutex> lock(grow_mutex_);
        if (capacity_.load(std::memory_order_relaxed) != seen) return true;
        const std::size_t k = chunk_count_.load(std::memory_order_relaxed);
        const std::size_t first = chunk_first(k);
        if (k >= max_chunks || first >= limit_) return false;
        std::size_t nodes = chunk_nodes(k);
        if (nodes > limit_ - first) nodes = limit_ - first;
        std::size_t bytes = 0;
        if (!checked_mul(nodes, node_size_, bytes)) return false;
        const std::size_t raw_bytes = bytes + (node_align_ - chunk_align_);
        void* raw = parent_.try_allocate(raw_bytes, chunk_align_);
        if (raw == nullptr) return false;
        chunk& c = chunks_[k];
        c.raw = raw;
        c.raw_bytes = raw_bytes;
        c.begin.store(align_up(static_cast<std::byte*>(raw), node_align_),
                      std::memory_order_relaxed);
        c.bytes.store(bytes, std::memory_order_relaxed);
        capacity_bytes_.store(capacity_bytes_.load(std::memory_order_relaxed) + raw_bytes,
                              std::memory_order_relaxed);
        chunk_count_.store(k + 1, std::memory_order_release);
        capacity_.store(first + nodes, std::memory_order_release);
        return true;
    }

    void release_chunks() noexcept {
        const std::size_t n = chunk_count_.load(std::memory_order_relaxed);
        for (std::size_t k = 0; k < n; ++k) {
            chunk& c = chunks_[k];
            parent_.deallocate(c.raw, c.raw_bytes, chunk_align_);
            c.raw = nullptr;
            c.raw_bytes = 0;
            c.begin.store(nullptr, std::memory_order_relaxed);
            c.bytes.store(0, std::memory_order_relaxed);
        }
        chunk_count_.store(0, std::memory_order_relaxed);
        capacity_.store(0, std::memory_order_relaxed);
        capacity_bytes_.store(0, std::memory_order_relaxed);
    }

    // --- statistics ---------------------------------------------------------------------------

    MEMKIT_ALWAYS_INLINE void count(std::atomic<std::uint64_t> thread_counts::*field) noexcept {
        if (auto* s = static_cast<thread_counts*>(counters_.find()); MEMKIT_LIKELY(s != nullptr))
            detail::bump(s->*field);
        else count_slow(field);
    }

    MEMKIT_NOINLINE void count_slow(std::atomic<std::uint64_t> thread_counts::*field) noexcept {
        auto* s = detail::make_state<thread_counts>();
        if (s != nullptr && counters_.attach(s)) {
            detail::bump(s->*field);
            return;
        }
        if (s != nullptr) detail::destroy_state(s);
        // No state for this thread (it is exiting, or memory is short): count in the shared total.
        (field == &thread_counts::allocations ? retired_allocations_ : retired_deallocations_)
            .fetch_add(1, std::memory_order_relaxed);
    }

    // Folds a state's counts into the totals and frees it (thread exit or pool destruction).
    void retire(detail::per_thread_node* n) noexcept {
        auto* s = static_cast<thread_counts*>(n);
        retired_allocations_.fetch_add(s->allocations.load(std::memory_order_relaxed),
                                       std::memory_order_relaxed);
        retired_deallocations_.fetch_add(s->deallocations.load(std::memory_order_relaxed),
                                         std::memory_order_relaxed);
        detail::destroy_state(s);
    }

    static void on_thread_exit(void* owner, detail::per_thread_node* s) noexcept {
        static_cast<basic_concurrent_pool*>(owner)->retire(s);
    }

    void note_release_all() noexcept {
        const allocator_stats s = stats();
        const std::uint64_t carved = carved_.load(std::memory_order_relaxed);
        if (carved > peak_nodes_.load(std::memory_order_relaxed))
            peak_nodes_.store(carved, std::memory_order_relaxed);
        retired_deallocations_.fetch_add(s.allocations - s.deallocations,
                                         std::memory_order_relaxed);
    }

    // --- debug checks -------------------------------------------------------------------------

    bool has_tag_word() const noexcept { return node_size_ >= 2 * sizeof(std::uintptr_t); }
    static std::uintptr_t tag_of(const void* p) noexcept {
        return reinterpret_cast<std::uintptr_t>(p) ^ free_tag_key;
    }
    void tag(void* n) const noexcept {
        if (has_tag_word()) static_cast<std::uintptr_t*>(n)[1] = tag_of(n);
    }
    void untag(void* n) const noexcept {
        if (has_tag_word()) static_cast<std::uintptr_t*>(n)[1] = 0;
    }

    // A node carrying its free tag is on the free list (or user data equal to the tag, which
    // the walk rules out; the walk is only correct while no other thread pops, which is the
    // best a debug check can do on a lock-free list). Without a tag word only the top is checked.
    MEMKIT_NOINLINE bool accept_free(const void* p) const noexcept {
        std::uint32_t top = index(head_.load(std::memory_order_acquire));
        bool is_free = false;
        if (!has_tag_word()) {
            is_free = top != no_node && at(top) == p;
        } else if (static_cast<const std::uintptr_t*>(p)[1] == tag_of(p)) {
            for (std::size_t steps = 0; top != no_node && steps <= limit_; ++steps) {
                const std::byte* n = at(top);
                if (n == p) {
                    is_free = true;
                    break;
                }
                top = load_link(n);
            }
        }
        if (is_free) report_violation({errc::double_free, name, p, "node is already free"});
        return !is_free;
    }

    // --- failures -----------------------------------------------------------------------------

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        if (size == 0 || size > node_size_ || !is_pow2(align) || align > node_align_)
            throw_bad_request(name, size, align, node_size_, node_align_);
        fail_exhausted(size);
    }

    [[noreturn]] MEMKIT_NOINLINE void fail_exhausted(std::size_t requested) const {
        const allocator_stats s = stats();
        const std::size_t live = s.bytes_in_use / node_size_;
        const bool capped = opts_.max_nodes != 0;
        const std::size_t held = capacity();
        const std::size_t available = capped ? limit_ - live : (held > live ? held - live : 0);
        throw out_of_memory(name, requested, sat_mul(available, node_size_), s.bytes_in_use,
                            capped ? sat_mul(limit_, node_size_) : s.capacity);
    }

    // The top of the stack is written by every operation of every thread: it has a cache line
    // to itself, so that it does not drag the read-mostly fields below along with it.
    alignas(cache_line_size) std::atomic<std::uint64_t> head_{pack(no_node, 0)};
    alignas(cache_line_size) std::atomic<std::uint64_t> carved_{0}; // nodes ever handed out
    std::atomic<std::uint64_t> capacity_{0};                        // nodes in the chunks
    // Read by every operation, written when a chunk is added.
    alignas(cache_line_size) std::atomic<std::size_t> chunk_count_{0};
    std::size_t node_size_ = 0;
    std::size_t node_align_ = 0;
    std::uint64_t div_magic_ = 0;
    unsigned first_shift_ = 0;
    chunk chunks_[max_chunks];
    // Cold.
    std::size_t chunk_align_ = 0;
    std::size_t limit_ = 0;
    std::atomic<std::size_t> capacity_bytes_{0};
    std::atomic<std::uint64_t> peak_nodes_{0};
    std::atomic<std::uint64_t> retired_allocations_{0};
    std::atomic<std::uint64_t> retired_deallocations_{0};
    std::mutex grow_mutex_;
    [[no_unique_address]] Parent parent_;
    concurrent_pool_options opts_;
    detail::per_thread_registry counters_;
};

using concurrent_pool = basic_concurrent_pool<>;

} // namespace memkit
