// memkit/heap/buffer_pool.hpp - a zero-churn pool of byte buffers in power-of-two size classes.
//
// `buffer_pool` hands out byte buffers for I/O and message handling (read a message into a
// buffer, pass it to a worker, give it back) without a trip to malloc per message once the pool
// is warm. `get(n)` returns a `buffer_pool::buffer`: a move-only RAII handle whose destructor (or
// reset()) gives the memory back to the pool, from any thread.
//
// Size classes: powers of two from `min_class_size` (default 64 B) to `max_class_size` (default
// 1 MiB). get(n) rounds n up to its class: size() is n, capacity() the class size. A request
// above max_class_size (up to `max_request_size`) is served straight by the parent with exactly
// n bytes (capacity() == n) and is given back to the parent on return: such buffers are never
// retained. get(0) returns an empty buffer (data() == nullptr, capacity() 0) and counts nothing.
//
// Where free buffers live: each thread keeps, per class, a small stack of free buffers (at most
// `thread_cache_buffers` and `thread_cache_bytes` per class; classes above thread_cache_bytes
// are not cached per thread). get pops from it and put pushes onto it: no lock, no atomic
// read-modify-write. When a thread's stack is empty, get takes up to half a stack from the
// class's shared list (one mutex), and only when that is empty too does it allocate one buffer
// from the parent (a miss). When a thread's stack is full, put moves half of it to the shared
// list. The shared lists hold at most `max_retained_bytes`; buffers that do not fit are released
// to the parent. So the bytes retained are at most max_retained_bytes plus what the threads'
// stacks hold (bounded per thread by the sum over the cached classes of min(thread_cache_buffers *
// class, thread_cache_bytes): 446 KiB with the defaults). With thread_cache_bytes = 0
// every buffer goes through the shared lists and the cap is exact. A thread's stack goes to the
// shared lists when the thread exits (the pool may outlive or die before its threads; see
// alloc/detail/per_thread.hpp, the machinery memkit::thread_cache uses too).
//
// Buffers are handed between threads freely: a buffer returned on another thread than the one
// that got it simply joins the returning thread's stack (every buffer of a class is
// interchangeable), and producer/consumer imbalance is evened out through the shared lists.
//
// Trimming: trim() releases the shared lists and the calling thread's stacks to the parent and
// asks every other thread to release its stacks at its next get or put (a relaxed load on the
// fast path notices). shrink_to(bytes) moves the calling thread's stacks to the shared lists and
// releases shared buffers, largest classes first, until the shared lists hold at most `bytes`;
// other threads' stacks are left alone. on_pressure(level): low does nothing, medium halves the
// shared lists, high empties them (shrink_to(0)), critical calls trim(). reserve(size, count)
// (or options.prealloc) fills the shared lists ahead of time, up to the cap.
//
// Counters (stats()): gets (get calls with n > 0), recycled (gets served from retained buffers),
// allocated (buffers taken from the parent: misses, over-max requests, reserve), returned
// (buffers given back), released (buffers given back to the parent), hit_rate() = recycled /
// gets, bytes_retained (free buffers held), bytes_in_use (class size of live class buffers plus
// the size of live over-max buffers), bytes_held (both). Exact when no other thread is using the
// pool; while threads run, a snapshot that is consistent per counter (each thread's counters are
// read with relaxed loads, so the sums may mix moments).
//
// Alignment: every buffer's data() is aligned to `alignment` (default alignof(std::max_align_t);
// any power of two from alignof(void*) to 4096).
//
// Complexity: get and put O(1); the fast path (a hit in the thread's stack, a put into it) is a
// thread-local lookup and a few loads and stores, around 5 ns. Refill/spill O(stack) under the
// class's mutex; parent calls happen outside every pool lock. stats() O(threads * classes).
// Thread-safety: thread-safe: get, put (buffer destruction), reserve, trim, shrink_to,
// on_pressure and stats from any thread. The parent (a std::pmr::memory_resource, default
// std::pmr::new_delete_resource()) must be thread-safe, since any thread may call it. The pool
// is not copyable or movable.
// Lifetime: the pool must outlive every buffer it handed out (a buffer destroyed after its pool
// is a use after free). In debug builds (memkit::debug_checks) the destructor counts buffers
// still live and reports errc::still_in_use through memkit::report_violation; their memory is
// then left to them (not released).
// Failure: get(n) throws bad_size for n above max_request_size (including sizes that overflow a
// class computation); out_of_memory when the parent fails (a std::bad_alloc from the parent
// becomes memkit::out_of_memory, an out_of_memory from it - budget_exceeded included - passes
// through); the pool is then unchanged. reserve throws bad_size for a size above max_class_size
// and out_of_memory as get (releasing what it took). The constructor throws std::invalid_argument
// for bad class sizes or thread-cache limits and invalid_alignment for a bad alignment.
//
//   memkit::buffer_pool pool;                             // 64 B .. 1 MiB classes
//   auto buf = pool.get(1500);                            // capacity() 2048
//   buf.resize(receive_into(buf.data(), buf.capacity()));   // returned when buf is destroyed
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory_resource>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "memkit/alloc/detail/per_thread.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/heap/pressure_level.hpp"

namespace memkit {

/// Buffers to allocate ahead of time: `count` buffers of the class of `size` bytes.
struct buffer_pool_reserve {
    std::size_t size = 0;
    std::size_t count = 0;
};

struct buffer_pool_options {
    /// The smallest class (a power of two, >= 16).
    std::size_t min_class_size = 64;
    /// The largest class (a power of two, >= min_class_size, <= 1 GiB). Larger requests go
    /// straight to the parent and are not retained.
    std::size_t max_class_size = std::size_t{1} << 20;
    /// Requests above this throw bad_size (>= max_class_size).
    std::size_t max_request_size = static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());
    /// Free bytes the shared lists keep; buffers beyond are released to the parent.
    std::size_t max_retained_bytes = std::size_t{64} << 20;
    /// Alignment of every buffer's data() (a power of two, alignof(void*) .. 4096).
    std::size_t alignment = alignof(std::max_align_t);
    /// Per thread and class: at most this many free buffers ...
    std::size_t thread_cache_buffers = 32;
    /// ... and at most this many bytes (classes above it are not cached per thread; 0: no
    /// per-thread caching at all).
    std::size_t thread_cache_bytes = std::size_t{64} << 10;
    /// Filled into the shared lists by the constructor (up to max_retained_bytes).
    std::vector<buffer_pool_reserve> prealloc;
};

struct buffer_pool_stats {
    std::uint64_t gets = 0;      ///< get() calls with a size above 0
    std::uint64_t recycled = 0;  ///< gets served from retained buffers
    std::uint64_t allocated = 0; ///< buffers taken from the parent (misses, over-max, reserve)
    std::uint64_t returned = 0;  ///< buffers given back to the pool
    std::uint64_t released = 0;  ///< buffers given back to the parent
    std::size_t bytes_retained = 0; ///< free buffers held (shared lists and thread stacks)
    std::size_t bytes_in_use = 0;   ///< live buffers (class sizes; over-max: their size)
    std::size_t bytes_held = 0;     ///< bytes taken from the parent and not yet given back

    /// gets not yet returned.
    [[nodiscard]] std::uint64_t buffers_in_use() const noexcept { return gets - returned; }
    /// recycled / gets (0 before the first get).
    [[nodiscard]] double hit_rate() const noexcept {
        return gets == 0 ? 0.0 : static_cast<double>(recycled) / static_cast<double>(gets);
    }
};

class buffer_pool {
    struct free_node {
        free_node* next;
    };

    static constexpr std::size_t max_classes = 32;

    // One thread's stack of free buffers of one class; only that thread writes it (count is
    // atomic because stats() reads it from other threads).
    struct local_list {
        free_node* head = nullptr;
        std::atomic<std::uint32_t> count{0};
        std::uint32_t limit = 0;
    };

    struct thread_state : detail::per_thread_node {
        std::uint32_t epoch = 0;
        std::atomic<std::uint64_t> hits{0};
        std::atomic<std::uint64_t> misses{0};
        std::atomic<std::uint64_t> returns{0};
        local_list lists[max_classes];
    };

    struct alignas(cache_line_size) shared_list {
        std::mutex mutex;
        free_node* head = nullptr;
        std::atomic<std::size_t> count{0};
    };

public:
    static constexpr const char* name = "memkit::buffer_pool";
    static constexpr std::size_t max_alignment = 4096;

    class buffer;

    buffer_pool() : buffer_pool(buffer_pool_options{}) {}
    /// `parent` must be thread-safe and outlive the pool.
    explicit buffer_pool(buffer_pool_options opts,
                         std::pmr::memory_resource* parent = std::pmr::new_delete_resource());
    buffer_pool(const buffer_pool&) = delete;
    buffer_pool& operator=(const buffer_pool&) = delete;
    /// Releases every retained buffer. No thread may still be using the pool, and every buffer
    /// must have been returned (see the header comment).
    ~buffer_pool();

    /// A buffer of at least `size` bytes (see the header comment for classes and errors).
    [[nodiscard]] MEMKIT_ALWAYS_INLINE buffer get(std::size_t size);

    /// Allocates `count` buffers of the class of `size` into the shared lists, stopping at
    /// max_retained_bytes; returns how many were added. Throws bad_size for size 0 or above
    /// max_class_size, out_of_memory if the parent fails (nothing is then added).
    std::size_t reserve(std::size_t size, std::size_t count);

    /// Releases the shared lists and the calling thread's stacks; other threads release theirs
    /// at their next get or put. Returns the bytes released now.
    std::size_t trim() noexcept;
    /// Moves the calling thread's stacks to the shared lists, then releases shared buffers
    /// (largest classes first) until they hold at most `bytes`. Returns the bytes released.
    std::size_t shrink_to(std::size_t bytes) noexcept;
    /// Reacts to memory pressure: low nothing, medium halves the shared lists, high empties
    /// them, critical trims. Returns the bytes released now.
    std::size_t on_pressure(pressure_level level) noexcept;

    [[nodiscard]] buffer_pool_stats stats() const noexcept;
    /// Free bytes held by the pool (shared lists and every thread's stacks).
    [[nodiscard]] std::size_t retained_bytes() const noexcept { return stats().bytes_retained; }

    /// The capacity get(size) gives: its class size, `size` above max_class_size, 0 for 0.
    [[nodiscard]] std::size_t class_size(std::size_t size) const noexcept {
        if (size == 0 || size > max_class_) return size;
        return min_class_ << class_of(size);
    }
    [[nodiscard]] std::size_t min_class_size() const noexcept { return min_class_; }
    [[nodiscard]] std::size_t max_class_size() const noexcept { return max_class_; }
    [[nodiscard]] const buffer_pool_options& options() const noexcept { return opts_; }
    [[nodiscard]] std::pmr::memory_resource* parent() const noexcept { return parent_; }

private:
    // (n - 1) | (min - 1) makes every n <= min fall into class 0 without a branch.
    [[nodiscard]] MEMKIT_ALWAYS_INLINE std::size_t class_of(std::size_t n) const noexcept {
        return static_cast<std::size_t>(std::bit_width((n - 1) | (min_class_ - 1))) - min_shift_;
    }

    [[nodiscard]] MEMKIT_ALWAYS_INLINE thread_state* fast_state() const noexcept {
        auto* t = static_cast<thread_state*>(registry_.find());
        if (MEMKIT_LIKELY(t != nullptr) &&
            MEMKIT_LIKELY(t->epoch == epoch_.load(std::memory_order_relaxed)))
            return t;
        return nullptr;
    }

    MEMKIT_ALWAYS_INLINE void put(std::byte* p, std::size_t capacity) noexcept;

    buffer get_slow(std::size_t size, std::size_t c);
    buffer get_other(std::size_t size);
    void put_slow(std::byte* p, std::size_t c) noexcept;
    void put_oversize(std::byte* p, std::size_t size) noexcept;

    thread_state* local_state() noexcept;
    void catch_up(thread_state* t) noexcept;
    void* parent_allocate(std::size_t bytes);
    void release_chain(std::size_t c, free_node* chain) noexcept;
    std::size_t release_local(thread_state* t) noexcept;
    void move_local_to_shared(thread_state* t) noexcept;
    void push_shared(std::size_t c, free_node* chain, std::size_t k) noexcept;
    free_node* take_shared(std::size_t c, std::size_t want, std::size_t& got) noexcept;
    std::size_t release_shared(std::size_t c, std::size_t max_nodes) noexcept;
    void retire(thread_state* t, bool to_parent) noexcept;
    static void on_thread_exit(void* owner, detail::per_thread_node* s) noexcept;

    // Read on every call.
    std::size_t min_class_ = 0;
    std::size_t min_shift_ = 0;
    std::size_t max_class_ = 0;
    std::atomic<std::uint32_t> epoch_{0};
    detail::per_thread_registry registry_;
    std::size_t class_count_ = 0;
    std::uint32_t class_limit_[max_classes] = {};
    std::pmr::memory_resource* parent_;
    buffer_pool_options opts_;
    shared_list shared_[max_classes];
    // Written on slow paths.
    alignas(cache_line_size) std::atomic<std::size_t> shared_bytes_{0};
    std::atomic<std::size_t> held_{0};
    std::atomic<std::uint64_t> allocated_{0};
    std::atomic<std::uint64_t> released_{0};
    // Counts of threads without a state, and of retired states.
    std::atomic<std::uint64_t> hits_{0};
    std::atomic<std::uint64_t> misses_{0};
    std::atomic<std::uint64_t> returns_{0};
    std::atomic<std::uint64_t> oversize_gets_{0};
};

/// A byte buffer from a buffer_pool; gives its memory back when destroyed or reset. Move-only.
/// An empty (default-constructed, moved-from or reset) buffer has data() == nullptr and size 0.
class buffer_pool::buffer {
public:
    buffer() noexcept = default;
    buffer(buffer&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), data_(std::exchange(other.data_, nullptr)),
          size_(std::exchange(other.size_, 0)), capacity_(std::exchange(other.capacity_, 0)) {}
    buffer& operator=(buffer&& other) noexcept {
        if (this != &other) {
            reset();
            pool_ = std::exchange(other.pool_, nullptr);
            data_ = std::exchange(other.data_, nullptr);
            size_ = std::exchange(other.size_, 0);
            capacity_ = std::exchange(other.capacity_, 0);
        }
        return *this;
    }
    buffer(const buffer&) = delete;
    buffer& operator=(const buffer&) = delete;
    ~buffer() { reset(); }

    /// Gives the memory back to the pool now; the buffer becomes empty.
    void reset() noexcept {
        if (data_ != nullptr) pool_->put(data_, capacity_);
        pool_ = nullptr;
        data_ = nullptr;
        size_ = 0;
        capacity_ = 0;
    }

    /// Sets size() (e.g. to the bytes actually read); throws bad_size above capacity().
    void resize(std::size_t n) {
        if (n > capacity_) throw bad_size(name, n, capacity_);
        size_ = n;
    }

    [[nodiscard]] std::byte* data() const noexcept { return data_; }
    /// The size asked for (or set by resize).
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    /// The usable bytes: the class size (over-max buffers: the size asked for).
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    explicit operator bool() const noexcept { return data_ != nullptr; }
    /// The first size() bytes.
    [[nodiscard]] std::span<std::byte> span() const noexcept { return {data_, size_}; }
    [[nodiscard]] std::span<const std::byte> as_bytes() const noexcept { return {data_, size_}; }
    [[nodiscard]] std::span<std::byte> as_writable_bytes() const noexcept { return {data_, size_}; }
    /// The pool it goes back to (nullptr when empty).
    [[nodiscard]] buffer_pool* pool() const noexcept { return pool_; }

private:
    friend class buffer_pool;
    buffer(buffer_pool* pool, std::byte* data, std::size_t size, std::size_t capacity) noexcept
        : pool_(pool), data_(data), size_(size), capacity_(capacity) {}

    buffer_pool* pool_ = nullptr;
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

MEMKIT_ALWAYS_INLINE buffer_pool::buffer buffer_pool::get(std::size_t size) {
    // size - 1 wraps for 0, which takes the other path.
    if (MEMKIT_LIKELY(size - 1 < max_class_)) {
        const std::size_t c = class_of(size);
        if (thread_state* t = fast_state(); MEMKIT_LIKELY(t != nullptr)) {
            local_list& l = t->lists[c];
            if (free_node* b = l.head; MEMKIT_LIKELY(b != nullptr)) {
                l.head = b->next;
                l.count.store(l.count.load(std::memory_order_relaxed) - 1,
                              std::memory_order_relaxed);
                detail::bump(t->hits);
                return buffer(this, reinterpret_cast<std::byte*>(b), size, min_class_ << c);
            }
        }
        return get_slow(size, c);
    }
    return get_other(size);
}

MEMKIT_ALWAYS_INLINE void buffer_pool::put(std::byte* p, std::size_t capacity) noexcept {
    if (MEMKIT_LIKELY(capacity <= max_class_)) {
        const std::size_t c = class_of(capacity);
        if (thread_state* t = fast_state(); MEMKIT_LIKELY(t != nullptr)) {
            local_list& l = t->lists[c];
            const std::uint32_t n = l.count.load(std::memory_order_relaxed);
            if (MEMKIT_LIKELY(n < l.limit)) {
                auto* b = ::new (p) free_node;
                b->next = l.head;
                l.head = b;
                l.count.store(n + 1, std::memory_order_relaxed);
                detail::bump(t->returns);
                return;
            }
        }
        return put_slow(p, c);
    }
    put_oversize(p, capacity);
}

} // namespace memkit
