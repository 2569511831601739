// memkit/alloc/thread_cache.hpp - per-thread caches of free blocks in front of a shared allocator.
//
// `thread_cache<A>` makes a thread-safe allocator A (a memkit::synchronized<...> over a pool
// collection or a pool, memkit::system_allocator, ...) fast for many threads: each thread keeps,
// per size class, magazines of free blocks, so that most allocations and frees touch only memory
// of the calling thread - no lock, no atomic read-modify-write.
//
// Size classes: 16-byte steps up to 256 bytes (16, 32, ..., 256), then powers of two up to
// `thread_cache_options::max_cached_size` (default 32 KiB). A request is rounded up to its class
// and A sees only class sizes, with alignment `thread_cache_options::alignment` (by default
// alignof(std::max_align_t)). Larger requests, and alignments above that, go straight to A with
// the caller's size and alignment; since deallocate receives the same size and alignment, it
// routes the block the same way.
//
// Magazines (Bonwick's design, as in Solaris' kmem and Linux' SLUB per-CPU caches): per class a
// thread has a loaded magazine, from which allocate pops and onto which deallocate pushes, and a
// spare that is either empty or full. A magazine holds up to `max_blocks_per_class` blocks and
// at most `max_bytes_per_class` bytes (but always 2 blocks), linked through the free blocks
// themselves. When the loaded magazine runs empty, the full spare takes its place, else a full
// magazine from the class's shared depot, else half a magazine from A. When it runs full, it
// becomes the spare; a full spare moves to the depot first (or, when the depot already holds
// `max_depot_magazines`, back to A). Moving a magazine is O(1) under the depot's mutex, so threads
// that allocate in bursts, or that free what other threads allocated, exchange whole magazines
// instead of sending every block through A.
//
// A block freed on another thread than the one that allocated it simply goes into the freeing
// thread's magazine of its class. That is correct: every block of a class is a block of the same
// size and alignment from the same shared A, so any thread may hand it out again or return it to
// A, and A only ever sees a deallocate with the size and alignment of its allocate. Producer /
// consumer pairs stay balanced because the consumer's full magazines flow through the depot
// back to the producer.
//
// Lifetimes (thread-local caches that leak or dangle are a common complaint): when a thread
// exits, its magazines are returned to A; when the thread_cache is destroyed, the magazines of
// every thread still alive and the depots are returned to A, and those threads forget the cache
// (a thread that exits later does not touch it). Both orders are safe; see
// alloc/detail/per_thread.hpp. A thread may also return its cache early with flush(), and
// trim() returns the depots. Several thread_caches can be alive at once; each thread has its own
// magazines for each of them.
//
// Complexity: allocate and deallocate O(1); an exchange with the depot O(1) under the class's
// depot mutex; a refill from A or a return to A O(magazine) with one lock of A when A offers
// with_lock (memkit::synchronized does), else one A call per block. The first use on a thread
// allocates that thread's magazines (about 700 bytes) with operator new.
// Memory: a thread caches at most two magazines per class, the depot at most
// max_depot_magazines per class (with the defaults 128 blocks or 32 KiB per magazine, whichever
// is less; most programs use a few classes). stats().capacity says how much A has given.
// Thread-safety: thread-safe (allocate/deallocate/stats/owns/trim from any thread); the
// destructor must not run while other threads are still calling the cache. Not copyable or
// movable.
// Failure: allocate throws bad_size for a size of 0 or above max_size() (A's), invalid_alignment
// for an alignment that is not a power of two or above A's max_alignment, and out_of_memory when
// A cannot supply the block; try_allocate returns nullptr instead. In debug builds
// (memkit::debug_checks) deallocate reports errc::not_owned when A has owns() and disowns the
// block, and errc::double_free when the block is already in one of the calling thread's
// magazines; the call then does nothing. The constructor throws bad_size for a max_cached_size of
// 0 or above 1 MiB, std::invalid_argument for fewer than 2 max_blocks_per_class, and
// invalid_alignment for an alignment option that is not a power of two, below alignof(void*) or
// above A's.
//
//   memkit::thread_cache<memkit::synchronized<memkit::pool>> cache{std::in_place, 64};
//   void* p = cache.allocate(48);              // thread 1
//   cache.deallocate(p, 48);                   // any thread
#pragma once

#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "memkit/alloc/detail/per_thread.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

struct thread_cache_options {
    /// Requests up to this size are cached: up to the largest size class not above it and not
    /// above the shared allocator's max_size() (classes: multiples of 16 up to 256 bytes, then
    /// powers of two; 1 MiB at most). Larger requests go straight to the shared allocator.
    std::size_t max_cached_size = std::size_t{32} << 10;
    /// Blocks a magazine of one class holds at most (>= 2).
    std::size_t max_blocks_per_class = 128;
    /// Bytes a magazine of one class holds at most (but always at least two blocks).
    std::size_t max_bytes_per_class = std::size_t{32} << 10;
    /// Full magazines the shared depot of one class keeps for other threads (0: no depot).
    std::size_t max_depot_magazines = 8;
    /// The alignment asked of the shared allocator for cached blocks; requests with a larger
    /// alignment go straight to it. 0: alignof(std::max_align_t), or the shared allocator's
    /// max_alignment if smaller. Set it to what the shared allocator gives (a pool of 8-aligned
    /// nodes: 8).
    std::size_t alignment = 0;
};

template <allocator A = system_allocator>
class thread_cache {
    static_assert(
        allocator_traits<A>::is_thread_safe,
        "thread_cache needs a thread-safe allocator behind it, e.g. memkit::synchronized<A>");

    using traits = allocator_traits<A>;

    static constexpr std::size_t small_step = 16;
    static constexpr std::size_t small_limit = 256; // 16 classes of 16-byte steps
    static constexpr std::size_t size_limit = std::size_t{1} << 20;
    static constexpr std::size_t max_classes = 16 + 12; // 512 B .. 1 MiB in powers of two
    static constexpr std::size_t default_align = traits::max_alignment < alignof(std::max_align_t)
                                                     ? traits::max_alignment
                                                     : alignof(std::max_align_t);

    struct free_block {
        free_block* next;
        free_block* next_magazine; // in a depot: the next full magazine (first block only)
    };

    // The loaded magazine of one class: allocate pops, deallocate pushes.
    struct magazine {
        free_block* head = nullptr;
        std::atomic<std::uint32_t> count{0}; // written by the owning thread only
        std::uint32_t limit = 0;
    };

    struct thread_state : detail::per_thread_node {
        std::atomic<std::uint64_t> allocations{0};
        std::atomic<std::uint64_t> deallocations{0};
        magazine loaded[max_classes];
        std::atomic<free_block*> spare[max_classes] = {}; // a full magazine, or nullptr
    };

    // Full magazines of one class, shared by all threads.
    struct depot {
        std::mutex mutex;
        free_block* magazines = nullptr; // linked through next_magazine
        std::atomic<std::size_t> count{0};
    };

    // Detects a batch interface on A: memkit::synchronized's with_lock(f) runs f(inner&) under
    // A's lock, so a refill or flush costs one lock instead of one per block.
    static constexpr bool has_with_lock = [] {
        if constexpr (requires { typename A::allocator_type; }) {
            using inner = typename A::allocator_type;
            return allocator<inner> && requires(A & a, void (*f)(inner&)) { a.with_lock(f); };
        } else {
            return false;
        }
    }();

    // A is built from `args`, or from (std::in_place, args) when that is how it is built
    // (memkit::synchronized), so that thread_cache<synchronized<pool>>{std::in_place, 64} works.
    template <class... Args>
    static A make_parent(Args&&... args) {
        if constexpr (std::constructible_from<A, Args&&...>) return A(std::forward<Args>(args)...);
        else return A(std::in_place, std::forward<Args>(args)...);
    }
    template <class... Args>
    static constexpr bool can_make_parent = std::constructible_from<A, Args&&...> ||
                                            std::constructible_from<A, std::in_place_t, Args&&...>;

public:
    using allocator_type = A;
    static constexpr bool is_thread_safe = true;
    static constexpr std::size_t max_alignment = traits::max_alignment;
    static constexpr const char* name = "memkit::thread_cache";

    thread_cache() requires std::default_initializable<A> : thread_cache(thread_cache_options{}) {}

    explicit thread_cache(thread_cache_options opts) requires std::default_initializable<A>
        : registry_(this, &on_thread_exit), a_() {
        configure(opts);
    }

    /// Constructs the shared allocator in place from `args`, or from (std::in_place, args) when
    /// A is built that way (memkit::synchronized, which cannot be moved).
    template <class... Args>
    requires can_make_parent<Args...>
    explicit thread_cache(std::in_place_t, Args&&... args)
        : thread_cache(thread_cache_options{}, std::in_place, std::forward<Args>(args)...) {}

    template <class... Args>
    requires can_make_parent<Args...> thread_cache(thread_cache_options opts, std::in_place_t,
                                                   Args&&... args)
        : registry_(this, &on_thread_exit), a_(make_parent(std::forward<Args>(args)...)) {
        configure(opts);
    }

    thread_cache(thread_cache_options opts, A a) requires std::move_constructible<A>
        : registry_(this, &on_thread_exit), a_(std::move(a)) {
        configure(opts);
    }

    thread_cache(const thread_cache&) = delete;
    thread_cache& operator=(const thread_cache&) = delete;

    /// Returns every thread's cached blocks and the depots to A. No other thread may still be
    /// calling the cache.
    ~thread_cache() {
        registry_.close(
            [this](detail::per_thread_node* s) { retire(static_cast<thread_state*>(s)); });
        trim();
    }

    [[nodiscard]] void* allocate(std::size_t size,
                                                    std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        // size - 1 wraps for 0 and align - 1 for 0, so a zero of either takes the direct path,
        // which rejects it.
        if (MEMKIT_LIKELY(size - 1 < max_cached_ && align - 1 < block_align_ &&
                          (align & (align - 1)) == 0)) {
            const std::size_t c = class_of(size);
            if (auto* t = static_cast<thread_state*>(registry_.find());
                MEMKIT_LIKELY(t != nullptr)) {
                magazine& m = t->loaded[c];
                if (free_block* b = m.head; MEMKIT_LIKELY(b != nullptr)) {
                    m.head = b->next;
                    m.count.store(m.count.load(std::memory_order_relaxed) - 1,
                                  std::memory_order_relaxed);
                    detail::bump(t->allocations);
                    return b;
                }
            }
            return refill(c);
        }
        return allocate_direct(size, align);
    }

    /// Returns a block; `size` and `align` must be those given to allocate. Any thread may free.
    MEMKIT_ALWAYS_INLINE void deallocate(void* p, std::size_t size,
                                         std::size_t align = alignof(std::max_align_t)) noexcept {
        if (MEMKIT_LIKELY(size - 1 < max_cached_ && align - 1 < block_align_ &&
                          (align & (align - 1)) == 0)) {
            const std::size_t c = class_of(size);
            if constexpr (debug_checks) {
                if (MEMKIT_UNLIKELY(!accept_free(p, c))) return;
            }
            if (auto* t = static_cast<thread_state*>(registry_.find());
                MEMKIT_LIKELY(t != nullptr)) {
                magazine& m = t->loaded[c];
                const std::uint32_t n = m.count.load(std::memory_order_relaxed);
                if (MEMKIT_LIKELY(n < m.limit)) {
                    auto* b = ::new (p) free_block; // only the link is written
                    b->next = m.head;
                    m.head = b;
                    m.count.store(n + 1, std::memory_order_relaxed);
                    detail::bump(t->deallocations);
                    return;
                }
            }
            return deallocate_slow(p, c);
        }
        deallocate_direct(p, size, align);
    }

    /// Returns the calling thread's cached blocks to A and forgets its magazines (they are made
    /// again on its next call). Other threads' caches are not touched.
    void flush() noexcept {
        if (auto* t = static_cast<thread_state*>(registry_.detach())) retire(t);
    }

    /// Returns the full magazines kept in the depots to A. Any thread, any time.
    void trim() noexcept {
        for (std::size_t c = 0; c < class_count_; ++c) {
            free_block* list = nullptr;
            {
                std::lock_guard<std::mutex> lock(depots_[c].mutex);
                list = std::exchange(depots_[c].magazines, nullptr);
                depots_[c].count.store(0, std::memory_order_relaxed);
            }
            while (list != nullptr) give_back(c, std::exchange(list, list->next_magazine));
        }
    }

    /// A's answer (thread_cache never hands out memory that A did not give it).
    [[nodiscard]] bool owns(const void* p) const noexcept requires traits::has_owns {
        return a_.owns(p);
    }

    /// allocations / deallocations: calls on every thread; capacity: bytes held from A (cached
    /// blocks included, class sizes for cached requests); bytes_in_use: capacity minus the
    /// cached blocks, so a request counts as its class size (a 20-byte request counts 32);
    /// peak_bytes: the most bytes held from A at once, an upper bound of the in-use peak (an
    /// exact peak would need a shared counter on the fast path). Exact while no other thread
    /// allocates or frees; otherwise each counter is a recent value.
    [[nodiscard]] allocator_stats stats() const noexcept {
        std::uint64_t allocations = retired_allocations_.load(std::memory_order_relaxed);
        std::uint64_t deallocations = retired_deallocations_.load(std::memory_order_relaxed);
        std::size_t cached = depot_bytes();
        registry_.for_each([&](const detail::per_thread_node* n) {
            const auto* t = static_cast<const thread_state*>(n);
            allocations += t->allocations.load(std::memory_order_relaxed);
            deallocations += t->deallocations.load(std::memory_order_relaxed);
            cached += cached_in(*t);
        });
        const std::size_t held = held_.load(std::memory_order_relaxed);
        const std::size_t peak = peak_held_.load(std::memory_order_relaxed);
        return {held > cached ? held - cached : 0, peak > held ? peak : held, held, allocations,
                deallocations};
    }

    /// Bytes in the magazines of all threads and in the depots (free blocks held back from A).
    [[nodiscard]] std::size_t cached_bytes() const noexcept {
        std::size_t cached = depot_bytes();
        registry_.for_each([&](const detail::per_thread_node* n) {
            cached += cached_in(*static_cast<const thread_state*>(n));
        });
        return cached;
    }

    /// Bytes in the depots' full magazines.
    [[nodiscard]] std::size_t depot_bytes() const noexcept {
        std::size_t bytes = 0;
        for (std::size_t c = 0; c < class_count_; ++c)
            bytes += depots_[c].count.load(std::memory_order_relaxed) * class_limit_[c] *
                     class_bytes_[c];
        return bytes;
    }

    [[nodiscard]] std::size_t max_size() const noexcept { return traits::max_size(a_); }
    /// Requests up to this size are served from the magazines.
    [[nodiscard]] std::size_t max_cached_size() const noexcept { return max_cached_; }
    /// The size class (the size A sees) of a request of `size` bytes, or 0 if it is not cached.
    [[nodiscard]] std::size_t class_size(std::size_t size) const noexcept {
        return size - 1 < max_cached_ ? class_bytes_[class_of(size)] : 0;
    }
    [[nodiscard]] const thread_cache_options& options() const noexcept { return opts_; }
    /// The shared allocator.
    [[nodiscard]] A& get() noexcept { return a_; }
    [[nodiscard]] const A& get() const noexcept { return a_; }

private:
    static constexpr std::size_t class_of(std::size_t size) noexcept {
        if (size <= small_limit) return (size - 1) / small_step;
        return 16 + static_cast<std::size_t>(std::bit_width(size - 1)) - 9;
    }

    void configure(thread_cache_options opts) {
        opts_ = opts;
        if (opts.max_cached_size == 0 || opts.max_cached_size > size_limit)
            throw bad_size(name, opts.max_cached_size, size_limit);
        if (opts.max_blocks_per_class < 2 ||
            opts.max_blocks_per_class > std::numeric_limits<std::uint32_t>::max())
            throw std::invalid_argument("memkit::thread_cache: max_blocks_per_class must be >= 2");
        block_align_ = opts.alignment == 0 ? default_align : opts.alignment;
        if (!is_pow2(block_align_) || block_align_ < alignof(free_block) ||
            block_align_ > max_alignment)
            throw invalid_alignment(name, block_align_, max_alignment);
        // The largest class boundary within both the option and what A can serve.
        std::size_t limit = opts.max_cached_size;
        const std::size_t a_max = traits::max_size(a_);
        if (a_max < limit) limit = a_max;
        max_cached_ = 0;
        class_count_ = 0;
        for (std::size_t c = 0; c < max_classes; ++c) {
            const std::size_t bytes = c < 16 ? (c + 1) * small_step : std::size_t{512} << (c - 16);
            if (bytes > limit) break;
            class_bytes_[c] = bytes;
            std::size_t blocks = opts.max_bytes_per_class / bytes;
            if (blocks > opts.max_blocks_per_class) blocks = opts.max_blocks_per_class;
            if (blocks < 2) blocks = 2;
            class_limit_[c] = static_cast<std::uint32_t>(blocks);
            max_cached_ = bytes;
            class_count_ = c + 1;
        }
    }

    std::size_t cached_in(const thread_state& t) const noexcept {
        std::size_t bytes = 0;
        for (std::size_t c = 0; c < class_count_; ++c) {
            std::size_t blocks = t.loaded[c].count.load(std::memory_order_relaxed);
            if (t.spare[c].load(std::memory_order_relaxed) != nullptr) blocks += class_limit_[c];
            bytes += blocks * class_bytes_[c];
        }
        return bytes;
    }

    // --- the shared allocator -----------------------------------------------------------------

    // Runs f(x) where x is A itself or, when A can lock once for several calls, the allocator
    // inside A's lock.
    template <class F>
    void with_parent(F&& f) noexcept {
        if constexpr (has_with_lock)
            a_.with_lock([&](typename A::allocator_type& inner) { f(inner); });
        else f(a_);
    }

    void add_held(std::size_t bytes) noexcept {
        const std::size_t now = held_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
        std::size_t peak = peak_held_.load(std::memory_order_relaxed);
        while (now > peak &&
               !peak_held_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {}
    }

    void count_shared(bool allocation) noexcept {
        (allocation ? retired_allocations_ : retired_deallocations_)
            .fetch_add(1, std::memory_order_relaxed);
    }

    // The calling thread's state, made on its first call. nullptr when the thread is exiting or
    // memory is short: the caller then goes to A directly.
    thread_state* local_state() noexcept {
        if (auto* t = static_cast<thread_state*>(registry_.find())) return t;
        auto* t = detail::make_state<thread_state>();
        if (t == nullptr) return nullptr;
        for (std::size_t c = 0; c < class_count_; ++c) t->loaded[c].limit = class_limit_[c];
        if (!registry_.attach(t)) {
            detail::destroy_state(t);
            return nullptr;
        }
        return t;
    }

    // The loaded magazine of class c is empty: load the spare, a magazine from the depot, or
    // half a magazine from A.
    MEMKIT_NOINLINE void* refill(std::size_t c) noexcept {
        const std::size_t bytes = class_bytes_[c];
        thread_state* t = local_state();
        if (t == nullptr) {
            void* p = a_.try_allocate(bytes, block_align_);
            if (p != nullptr) {
                add_held(bytes);
                count_shared(true);
            }
            return p;
        }
        magazine& m = t->loaded[c];
        if (m.head == nullptr) {
            if (free_block* full = t->spare[c].load(std::memory_order_relaxed)) {
                t->spare[c].store(nullptr, std::memory_order_relaxed);
                m.head = full;
                m.count.store(m.limit, std::memory_order_relaxed);
            } else if (free_block* from_depot = take_from_depot(c)) {
                m.head = from_depot;
                m.count.store(m.limit, std::memory_order_relaxed);
            } else if (!fill_from_parent(c, m)) {
                return nullptr;
            }
        }
        free_block* b = m.head;
        m.head = b->next;
        m.count.store(m.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        detail::bump(t->allocations);
        return b;
    }

    // Takes half a magazine of blocks from A, under one lock of A when it can.
    bool fill_from_parent(std::size_t c, magazine& m) noexcept {
        const std::size_t bytes = class_bytes_[c];
        const std::uint32_t want = m.limit / 2;
        free_block* head = nullptr;
        std::uint32_t got = 0;
        with_parent([&](auto& x) {
            for (; got < want; ++got) {
                void* p = x.try_allocate(bytes, block_align_);
                if (p == nullptr) break;
                head = ::new (p) free_block{head, nullptr};
            }
        });
        if (got == 0) return false;
        add_held(got * bytes);
        m.head = head;
        m.count.store(got, std::memory_order_relaxed);
        return true;
    }

    // The loaded magazine of class c is full (or the thread has none): it becomes the spare,
    // after a full spare has gone to the depot (or to A).
    MEMKIT_NOINLINE void deallocate_slow(void* p, std::size_t c) noexcept {
        thread_state* t = local_state();
        if (t == nullptr) {
            a_.deallocate(p, class_bytes_[c], block_align_);
            held_.fetch_sub(class_bytes_[c], std::memory_order_relaxed);
            count_shared(false);
            return;
        }
        magazine& m = t->loaded[c];
        if (m.count.load(std::memory_order_relaxed) >= m.limit) {
            if (free_block* full = t->spare[c].load(std::memory_order_relaxed)) park(c, full);
            t->spare[c].store(m.head, std::memory_order_relaxed);
            m.head = nullptr;
            m.count.store(0, std::memory_order_relaxed);
        }
        m.head = ::new (p) free_block{m.head, nullptr};
        m.count.store(m.count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        detail::bump(t->deallocations);
    }

    free_block* take_from_depot(std::size_t c) noexcept {
        depot& d = depots_[c];
        if (d.count.load(std::memory_order_relaxed) == 0) return nullptr; // no lock when empty
        std::lock_guard<std::mutex> lock(d.mutex);
        free_block* full = d.magazines;
        if (full != nullptr) {
            d.magazines = full->next_magazine;
            d.count.store(d.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        }
        return full;
    }

    // A full magazine of class c goes to the depot, or to A when the depot has enough.
    void park(std::size_t c, free_block* full) noexcept {
        depot& d = depots_[c];
        {
            std::lock_guard<std::mutex> lock(d.mutex);
            const std::size_t n = d.count.load(std::memory_order_relaxed);
            if (n < opts_.max_depot_magazines) {
                full->next_magazine = d.magazines;
                d.magazines = full;
                d.count.store(n + 1, std::memory_order_relaxed);
                return;
            }
        }
        give_back(c, full);
    }

    // Returns a list of free blocks of class c to A.
    void give_back(std::size_t c, free_block* list) noexcept {
        const std::size_t bytes = class_bytes_[c];
        std::size_t returned = 0;
        with_parent([&](auto& x) {
            while (list != nullptr) {
                free_block* next = list->next;
                x.deallocate(list, bytes, block_align_);
                returned += bytes;
                list = next;
            }
        });
        held_.fetch_sub(returned, std::memory_order_relaxed);
    }

    MEMKIT_NOINLINE void* allocate_direct(std::size_t size, std::size_t align) noexcept {
        if (size == 0 || !is_pow2(align) || align > max_alignment) return nullptr;
        void* p = a_.try_allocate(size, align);
        if (p == nullptr) return nullptr;
        add_held(size);
        if (auto* t = local_state()) detail::bump(t->allocations);
        else count_shared(true);
        return p;
    }

    MEMKIT_NOINLINE void deallocate_direct(void* p, std::size_t size, std::size_t align) noexcept {
        if constexpr (debug_checks) {
            if constexpr (traits::has_owns) {
                if (MEMKIT_UNLIKELY(!a_.owns(p))) {
                    report_violation({errc::not_owned, name, p, "block was not allocated here"});
                    return;
                }
            }
        }
        a_.deallocate(p, size, align);
        held_.fetch_sub(size, std::memory_order_relaxed);
        if (auto* t = local_state()) detail::bump(t->deallocations);
        else count_shared(false);
    }

    // Returns a state's blocks to A, folds its counters into the totals and frees it (thread
    // exit, flush, or destruction of the cache).
    void retire(thread_state* t) noexcept {
        for (std::size_t c = 0; c < class_count_; ++c) {
            if (free_block* list = t->loaded[c].head) give_back(c, list);
            if (free_block* full = t->spare[c].load(std::memory_order_relaxed)) give_back(c, full);
        }
        retired_allocations_.fetch_add(t->allocations.load(std::memory_order_relaxed),
                                       std::memory_order_relaxed);
        retired_deallocations_.fetch_add(t->deallocations.load(std::memory_order_relaxed),
                                         std::memory_order_relaxed);
        detail::destroy_state(t);
    }

    static void on_thread_exit(void* owner, detail::per_thread_node* s) noexcept {
        static_cast<thread_cache*>(owner)->retire(static_cast<thread_state*>(s));
    }

    // --- debug checks -------------------------------------------------------------------------

    MEMKIT_NOINLINE bool accept_free(const void* p, std::size_t c) const noexcept {
        if (p == nullptr) {
            report_violation({errc::not_owned, name, p, "null pointer"});
            return false;
        }
        if constexpr (traits::has_owns) {
            if (!a_.owns(p)) {
                report_violation({errc::not_owned, name, p, "block was not allocated here"});
                return false;
            }
        }
        if (const auto* t = static_cast<const thread_state*>(registry_.find())) {
            for (const free_block* list :
                 {t->loaded[c].head, t->spare[c].load(std::memory_order_relaxed)}) {
                for (const free_block* b = list; b != nullptr; b = b->next) {
                    if (b == p) {
                        report_violation({errc::double_free, name, p, "block is already free"});
                        return false;
                    }
                }
            }
        }
        return true;
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        if (size == 0 || size > max_size() || !is_pow2(align) || align > max_alignment)
            throw_bad_request(name, size, align, max_size(), max_alignment);
        const std::size_t held = held_.load(std::memory_order_relaxed);
        throw out_of_memory(name, size, out_of_memory::unknown, stats().bytes_in_use, held);
    }

    // Read on every call (A comes after them: it may be large and is rarely touched).
    std::size_t max_cached_ = 0;
    std::size_t block_align_ = 0;
    detail::per_thread_registry registry_;
    std::size_t class_count_ = 0;
    std::size_t class_bytes_[max_classes] = {};
    std::uint32_t class_limit_[max_classes] = {};
    A a_;
    depot depots_[max_classes];
    // Written in batches.
    alignas(cache_line_size) std::atomic<std::size_t> held_{0};
    std::atomic<std::size_t> peak_held_{0};
    std::atomic<std::uint64_t> retired_allocations_{0};
    std::atomic<std::uint64_t> retired_deallocations_{0};
    thread_cache_options opts_;
};

} // namespace memkit
