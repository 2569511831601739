// memkit/alloc/concurrent_arena.hpp - a bump-pointer arena that many threads fill at once.
//
// `concurrent_arena` is memkit::arena for parallel phases: every thread that allocates gets its
// own segment (a block from the arena's shared list of blocks) and bumps a pointer through it,
// so parallel allocations neither lock nor share a cache line. Only taking a new block locks the
// arena's mutex (once per block: 4 KiB at first, growing geometrically per thread up to
// `arena_options::max_block_size`). As with arena, deallocate is a no-op and memory comes back
// all at once: reset() keeps every block for the next phase, release() returns them to the
// Parent. Memory allocated by one thread may be used and "freed" by any other; it stays valid
// until reset(), release() or destruction, whichever thread allocated it and even after that
// thread has exited.
//
// Blocks come from the Parent allocator (system_allocator by default) under the mutex, so the
// Parent need not be thread-safe. A request larger than half of the thread's next block gets a
// dedicated block; `max_total` caps the bytes taken from the parent. When a thread exits, the
// unused rest of its segment is left unused until the next reset(). A thread that allocates
// while its thread_local objects are being destroyed is served from a shared segment under the
// mutex.
//
// Complexity: allocate O(1) and lock-free on the fast path; a new block is one lock and (unless
// a block kept by reset() fits) one parent call; deallocate O(1) (no-op); reset O(blocks +
// threads); release O(blocks); owns O(blocks) (for debugging).
// Thread-safety: allocate, try_allocate, deallocate, stats, owns are thread-safe. reset() and
// release() must not run while any other thread uses the arena (join the workers, or end the
// phase with a barrier first); debug builds report errc::still_in_use when reset() or
// release() finds a thread inside allocate, and then do nothing. Not copyable or movable.
// Failure: allocate throws out_of_memory when the parent fails or max_total would be exceeded,
// bad_size for a zero size or one above max_size(), invalid_alignment for an alignment that is
// not a power of two or above max_alignment (64 KiB); try_allocate returns nullptr instead. The
// constructor throws like arena's (std::invalid_argument, bad_size) for bad options. In debug
// builds, deallocating a pointer that is in none of the arena's blocks reports errc::not_owned.
//
//   memkit::concurrent_arena scratch;
//   parallel_for(items, [&](item& i) { i.result = scratch.allocate(i.bytes()); });
//   scratch.reset();                      // after the workers are done
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>
#include <utility>

#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/detail/per_thread.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"

namespace memkit {

template <allocator Parent = system_allocator>
class basic_concurrent_arena {
    struct block {
        block* next;
        std::size_t size; // bytes of the whole block, header included
    };
    static constexpr std::size_t header_size = align_up(sizeof(block), alignof(std::max_align_t));

    struct segment : detail::per_thread_node {
        std::byte* cur = nullptr;
        std::byte* end = nullptr;
        std::atomic<std::uint64_t> bytes{0}; // requested bytes since the last reset
        std::atomic<std::uint64_t> allocations{0};
        std::atomic<std::uint64_t> deallocations{0};
        std::size_t next_block_size = 0;
        std::atomic<bool> busy{false}; // inside allocate (debug builds)
    };

public:
    static constexpr bool is_thread_safe = true;
    static constexpr std::size_t max_alignment = std::size_t{1} << 16;
    static constexpr const char* name = "memkit::concurrent_arena";

    basic_concurrent_arena() : basic_concurrent_arena(arena_options{}) {}

    explicit basic_concurrent_arena(arena_options opts, Parent parent = Parent{})
        : segments_(this, &on_thread_exit), parent_(std::move(parent)), opts_(opts) {
        if (!(opts_.growth_factor >= 1.0))
            throw std::invalid_argument("memkit::concurrent_arena: growth_factor must be >= 1");
        if (opts_.block_size <= header_size || opts_.max_block_size < opts_.block_size)
            throw bad_size(name, opts_.block_size, opts_.max_block_size);
        shared_.next_block_size = opts_.block_size;
    }

    basic_concurrent_arena(const basic_concurrent_arena&) = delete;
    basic_concurrent_arena& operator=(const basic_concurrent_arena&) = delete;

    /// Returns every block to the parent. No other thread may use the arena any more.
    ~basic_concurrent_arena() {
        segments_.close([this](detail::per_thread_node* s) { retire(static_cast<segment*>(s)); });
        release_blocks();
    }

    [[nodiscard]] void* allocate(std::size_t size,
                                                    std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE void*
    try_allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (auto* s = static_cast<segment*>(segments_.find()); MEMKIT_LIKELY(s != nullptr)) {
            if constexpr (debug_checks) s->busy.store(true, std::memory_order_relaxed);
            // The same two-comparison test as arena's fast path (see arena.hpp).
            const auto cur = reinterpret_cast<std::uintptr_t>(s->cur);
            const auto end = reinterpret_cast<std::uintptr_t>(s->end);
            const std::uintptr_t p = (cur + align - 1) & ~static_cast<std::uintptr_t>(align - 1);
            if (MEMKIT_LIKELY(p - cur <= end - cur && size - 1 < end - p &&
                              (align & (align - 1)) == 0)) {
                s->cur = reinterpret_cast<std::byte*>(p + size);
                detail::bump(s->bytes, size);
                detail::bump(s->allocations);
                if constexpr (debug_checks) s->busy.store(false, std::memory_order_relaxed);
                return reinterpret_cast<void*>(p);
            }
            if constexpr (debug_checks) s->busy.store(false, std::memory_order_relaxed);
        }
        return allocate_slow(size, align);
    }

    /// A no-op for the memory (the arena frees in bulk); counted in stats().deallocations.
    void deallocate(void* p, std::size_t /*size*/,
                    std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(p == nullptr || !owns(p))) {
                report_violation(
                    {errc::not_owned, name, p, "pointer is in none of the arena's blocks"});
                return;
            }
        }
        if (auto* s = static_cast<segment*>(segments_.find()); MEMKIT_LIKELY(s != nullptr))
            detail::bump(s->deallocations);
        else retired_deallocations_.fetch_add(1, std::memory_order_relaxed);
    }

    /// Frees every allocation and keeps every block for reuse (by any thread). Must not run
    /// while another thread uses the arena. Allocations count as deallocated in stats().
    void reset() noexcept {
        if (!quiescent("reset() while a thread is inside allocate")) return;
        segments_.locked([this] {
            std::lock_guard<std::mutex> lock(mutex_);
            rewind_all();
            while (used_ != nullptr) {
                block* b = std::exchange(used_, used_->next);
                b->next = spare_;
                spare_ = b;
            }
        });
    }

    /// Same as reset(), and returns every block to the parent. Must not run while another
    /// thread uses the arena.
    void release() noexcept {
        if (!quiescent("release() while a thread is inside allocate")) return;
        segments_.locked([this] {
            std::lock_guard<std::mutex> lock(mutex_);
            rewind_all();
            release_blocks();
        });
    }

    /// True if `p` lies in one of the blocks in use (those given to threads since the last
    /// reset, including parts not handed out yet).
    [[nodiscard]] bool owns(const void* p) const noexcept {
        const auto a = reinterpret_cast<std::uintptr_t>(p);
        std::lock_guard<std::mutex> lock(mutex_);
        for (const block* b = used_; b != nullptr; b = b->next) {
            const auto begin = reinterpret_cast<std::uintptr_t>(b) + header_size;
            if (a - begin < b->size - header_size) return true;
        }
        return false;
    }

    /// bytes_in_use = requested bytes since the last reset (frees do not lower it), peak_bytes =
    /// its maximum, capacity = bytes held from the parent (kept blocks included), allocations
    /// and deallocations over all threads. Exact while no other thread allocates; otherwise
    /// each counter is a recent value.
    [[nodiscard]] allocator_stats stats() const noexcept {
        std::uint64_t bytes = retired_bytes_.load(std::memory_order_relaxed) +
                              shared_.bytes.load(std::memory_order_relaxed);
        std::uint64_t allocations = retired_allocations_.load(std::memory_order_relaxed) +
                                    shared_.allocations.load(std::memory_order_relaxed);
        std::uint64_t deallocations = retired_deallocations_.load(std::memory_order_relaxed) +
                                      shared_.deallocations.load(std::memory_order_relaxed);
        segments_.for_each([&](const detail::per_thread_node* n) {
            const auto* s = static_cast<const segment*>(n);
            bytes += s->bytes.load(std::memory_order_relaxed);
            allocations += s->allocations.load(std::memory_order_relaxed);
            deallocations += s->deallocations.load(std::memory_order_relaxed);
        });
        const std::uint64_t peak = peak_.load(std::memory_order_relaxed);
        return {static_cast<std::size_t>(bytes),
                static_cast<std::size_t>(peak > bytes ? peak : bytes),
                from_parent_.load(std::memory_order_relaxed), allocations, deallocations};
    }

    /// Bytes obtained from the parent (blocks in use and blocks kept by reset()).
    [[nodiscard]] std::size_t capacity() const noexcept {
        return from_parent_.load(std::memory_order_relaxed);
    }

    /// Blocks in use (given to threads since the last reset, dedicated blocks included).
    [[nodiscard]] std::size_t block_count() const noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        std::size_t n = 0;
        for (const block* b = used_; b != nullptr; b = b->next) ++n;
        return n;
    }

    [[nodiscard]] std::size_t max_size() const noexcept {
        const std::size_t cap = opts_.max_total < static_cast<std::size_t>(PTRDIFF_MAX)
                                    ? opts_.max_total
                                    : static_cast<std::size_t>(PTRDIFF_MAX);
        return cap > header_size ? cap - header_size : 0;
    }

    [[nodiscard]] const arena_options& options() const noexcept { return opts_; }

private:
    static std::byte* block_begin(block* b) noexcept {
        return reinterpret_cast<std::byte*>(b) + header_size;
    }
    static std::byte* block_end(block* b) noexcept {
        return reinterpret_cast<std::byte*>(b) + b->size;
    }

    // The calling thread's segment, made on its first call; nullptr when the thread is exiting
    // or memory is short (the caller then uses the shared segment).
    segment* local_segment() noexcept {
        if (auto* s = static_cast<segment*>(segments_.find())) return s;
        auto* s = detail::make_state<segment>();
        if (s == nullptr) return nullptr;
        s->next_block_size = opts_.block_size;
        if (!segments_.attach(s)) {
            detail::destroy_state(s);
            return nullptr;
        }
        return s;
    }

    MEMKIT_NOINLINE void* allocate_slow(std::size_t size, std::size_t align) noexcept {
        if (size == 0 || !is_pow2(align) || align > max_alignment) return nullptr;
        // Worst-case room: the payload plus padding to reach the alignment from a block start.
        const std::size_t pad = align > alignof(std::max_align_t) ? align - 1 : 0;
        std::size_t need = 0;
        if (!checked_add(size, pad, need) || !checked_add(need, header_size, need) ||
            need > static_cast<std::size_t>(PTRDIFF_MAX))
            return nullptr;
        segment* s = local_segment();
        if (s == nullptr) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (void* p = bump(shared_, size, align)) return p;
            return refill_and_bump(shared_, size, align, need);
        }
        if constexpr (debug_checks) s->busy.store(true, std::memory_order_relaxed);
        void* p = bump(*s, size, align); // a new segment, or a segment emptied by reset()
        if (p == nullptr) {
            std::lock_guard<std::mutex> lock(mutex_);
            p = refill_and_bump(*s, size, align, need);
        }
        if constexpr (debug_checks) s->busy.store(false, std::memory_order_relaxed);
        return p;
    }

    static void* bump(segment& s, std::size_t size, std::size_t align) noexcept {
        const auto cur = reinterpret_cast<std::uintptr_t>(s.cur);
        const auto end = reinterpret_cast<std::uintptr_t>(s.end);
        const std::uintptr_t p = (cur + align - 1) & ~static_cast<std::uintptr_t>(align - 1);
        if (p - cur > end - cur || size - 1 >= end - p) return nullptr;
        s.cur = reinterpret_cast<std::byte*>(p + size);
        detail::bump(s.bytes, size);
        detail::bump(s.allocations);
        return reinterpret_cast<void*>(p);
    }

    // Under mutex_: gives `s` a new block (or a dedicated one for a large request) and
    // allocates from it.
    void* refill_and_bump(segment& s, std::size_t size, std::size_t align,
                          std::size_t need) noexcept {
        if (need > s.next_block_size / 2) {
            // Dedicated block: the current segment stays for the small requests.
            block* b = take(need, need);
            if (b == nullptr) return nullptr;
            detail::bump(s.bytes, size);
            detail::bump(s.allocations);
            return align_up(block_begin(b), align);
        }
        block* b = take(need, s.next_block_size);
        if (b == nullptr) return nullptr;
        s.cur = block_begin(b);
        s.end = block_end(b);
        const double next = static_cast<double>(s.next_block_size) * opts_.growth_factor;
        s.next_block_size = next >= static_cast<double>(opts_.max_block_size)
                                ? opts_.max_block_size
                                : static_cast<std::size_t>(next);
        return bump(s, size, align);
    }

    // Under mutex_: a kept block of at least `need` bytes, else a new block of `want` bytes from
    // the parent; linked into the blocks in use.
    block* take(std::size_t need, std::size_t want) noexcept {
        block* b = nullptr;
        for (block** link = &spare_; *link != nullptr; link = &(*link)->next) {
            if ((*link)->size >= need) {
                b = *link;
                *link = b->next;
                break;
            }
        }
        if (b == nullptr) {
            const std::size_t held = from_parent_.load(std::memory_order_relaxed);
            if (want > opts_.max_total - held) {
                if (need > opts_.max_total - held) return nullptr;
                want = need; // what is left under the cap may still hold this request
            }
            void* mem = parent_.try_allocate(want, alignof(std::max_align_t));
            if (mem == nullptr && want > need) {
                want = need;
                mem = parent_.try_allocate(want, alignof(std::max_align_t));
            }
            if (mem == nullptr) return nullptr;
            from_parent_.store(held + want, std::memory_order_relaxed);
            b = ::new (mem) block{nullptr, want};
        }
        b->next = used_;
        used_ = b;
        return b;
    }

    // Under both locks (or from the destructor): every segment empty, counts folded.
    void rewind_all() noexcept {
        std::uint64_t bytes = retired_bytes_.load(std::memory_order_relaxed);
        std::uint64_t allocations = retired_allocations_.load(std::memory_order_relaxed);
        std::uint64_t deallocations = retired_deallocations_.load(std::memory_order_relaxed);
        auto fold = [&](segment& s) {
            bytes += s.bytes.load(std::memory_order_relaxed);
            allocations += s.allocations.load(std::memory_order_relaxed);
            deallocations += s.deallocations.load(std::memory_order_relaxed);
            s.bytes.store(0, std::memory_order_relaxed);
            s.allocations.store(0, std::memory_order_relaxed);
            s.deallocations.store(0, std::memory_order_relaxed);
            s.cur = s.end = nullptr;
            s.next_block_size = opts_.block_size;
        };
        fold(shared_);
        segments_.for_each_unlocked(
            [&](detail::per_thread_node* n) { fold(*static_cast<segment*>(n)); });
        if (bytes > peak_.load(std::memory_order_relaxed))
            peak_.store(bytes, std::memory_order_relaxed);
        retired_bytes_.store(0, std::memory_order_relaxed);
        retired_allocations_.store(allocations, std::memory_order_relaxed);
        // Every allocation counts as freed now (those freed one by one already are).
        retired_deallocations_.store(deallocations > allocations ? deallocations : allocations,
                                     std::memory_order_relaxed);
    }

    void release_blocks() noexcept {
        for (block** list : {&used_, &spare_}) {
            while (*list != nullptr) {
                block* b = std::exchange(*list, (*list)->next);
                parent_.deallocate(b, b->size, alignof(std::max_align_t));
            }
        }
        from_parent_.store(0, std::memory_order_relaxed);
    }

    // Debug builds: false (after reporting) when some thread is inside allocate.
    bool quiescent(const char* what) const noexcept {
        if constexpr (debug_checks) {
            bool busy = false;
            segments_.for_each([&](const detail::per_thread_node* n) {
                busy = busy || static_cast<const segment*>(n)->busy.load(std::memory_order_relaxed);
            });
            if (busy) {
                report_violation({errc::still_in_use, name, nullptr, what});
                return false;
            }
        } else {
            (void)what;
        }
        return true;
    }

    // A thread exits: its counts stay in the totals; the rest of its segment stays unused until
    // the next reset (its blocks are on the arena's list, and what it allocated stays valid).
    void retire(segment* s) noexcept {
        retired_bytes_.fetch_add(s->bytes.load(std::memory_order_relaxed),
                                 std::memory_order_relaxed);
        retired_allocations_.fetch_add(s->allocations.load(std::memory_order_relaxed),
                                       std::memory_order_relaxed);
        retired_deallocations_.fetch_add(s->deallocations.load(std::memory_order_relaxed),
                                         std::memory_order_relaxed);
        detail::destroy_state(s);
    }

    static void on_thread_exit(void* owner, detail::per_thread_node* s) noexcept {
        static_cast<basic_concurrent_arena*>(owner)->retire(static_cast<segment*>(s));
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        if (size == 0 || size > max_size() || !is_pow2(align) || align > max_alignment)
            throw_bad_request(name, size, align, max_size(), max_alignment);
        const std::size_t held = capacity();
        const std::size_t avail = opts_.max_total == std::numeric_limits<std::size_t>::max()
                                      ? out_of_memory::unknown
                                      : (opts_.max_total > held ? opts_.max_total - held : 0);
        throw out_of_memory(name, size, avail, stats().bytes_in_use, held);
    }

    detail::per_thread_registry segments_;
    mutable std::mutex mutex_; // guards the block lists, the parent and shared_
    block* used_ = nullptr;    // blocks given to segments (or dedicated) since the last reset
    block* spare_ = nullptr;   // blocks kept by reset()
    segment shared_;           // for threads that cannot have a segment of their own
    std::atomic<std::size_t> from_parent_{0};
    std::atomic<std::uint64_t> peak_{0};
    std::atomic<std::uint64_t> retired_bytes_{0};
    std::atomic<std::uint64_t> retired_allocations_{0};
    std::atomic<std::uint64_t> retired_deallocations_{0};
    [[no_unique_address]] Parent parent_;
    arena_options opts_;
};

using concurrent_arena = basic_concurrent_arena<>;

} // namespace memkit
