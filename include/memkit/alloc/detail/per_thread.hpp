// memkit/alloc/detail/per_thread.hpp - per-instance, per-thread state for the concurrent
// allocators (thread_cache, concurrent_pool, concurrent_arena). Not a public interface.
//
// An owner (one allocator object) embeds a `per_thread_registry`. Each thread that uses the owner
// gets its own state object (a type derived from `per_thread_node`, made by the owner), found on
// the fast path through a thread-local table indexed by the owner's small integer id:
//
//   thread-local table: [id 0] -> {control of owner X, X's state for this thread}
//                       [id 1] -> {control of owner Y, Y's state for this thread} ...
//
// `find()` is two loads and two compares, no lock and no atomic read-modify-write. Ids are reused
// after an owner dies, so an entry also names the owner's control block; an entry whose control
// is not the owner's own is stale and ignored.
//
// Lifetimes, in both orders (what thread-local caches usually get wrong):
//  * A thread exits while the owner lives: a thread_local hook (armed on the thread's first
//    registration) walks the thread's table and, under each owner's control mutex, hands the
//    state to the owner's exit function (which returns cached memory and frees the state).
//  * The owner dies while threads that used it still run: its destructor calls `close()`, which
//    under the same mutex marks the control dead and hands every registered state to the owner
//    (the threads must no longer be calling the owner, as for any object being destroyed). The
//    control block itself is reference-counted by the owner and by every thread-local entry that
//    names it, so a thread exiting later finds it dead and skips it: no use after free.
// The only lock is the control's mutex: taken when a thread registers, exits, or when the owner
// enumerates or closes; never on an allocation fast path. No global lock is held while an owner's
// exit function runs, so an owner whose parent is itself a concurrent allocator cannot deadlock.
//
// After a thread's hook has run (its thread_local objects are being destroyed), `attach` refuses:
// owners then serve that thread without a state (straight from their shared structure).
//
// Thread-safety: find/attach/detach act on the calling thread's own table; for_each and close
// lock the control. Failure: attach returns false when memory for the table is short.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "memkit/core/platform.hpp"

namespace memkit::detail {

/// Base of every per-thread state: the links of the owner's list of states.
struct per_thread_node {
    per_thread_node* prev = nullptr;
    per_thread_node* next = nullptr;
};

/// Shared between an owner and the threads that hold a state of it; outlives both.
struct per_thread_control {
    using exit_fn = void (*)(void* owner, per_thread_node* state) noexcept;

    std::mutex mutex;
    per_thread_node list; // circular, sentinel
    bool alive = true;
    std::atomic<std::size_t> refs{1};
    void* owner;
    exit_fn on_exit;

    per_thread_control(void* o, exit_fn fn) noexcept : owner(o), on_exit(fn) {
        list.prev = list.next = &list;
    }

    void link(per_thread_node* s) noexcept {
        s->prev = &list;
        s->next = list.next;
        list.next->prev = s;
        list.next = s;
    }
    static void unlink(per_thread_node* s) noexcept {
        s->prev->next = s->next;
        s->next->prev = s->prev;
        s->prev = s->next = nullptr;
    }

    void retain() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
    void release() noexcept {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }
};

struct per_thread_entry {
    per_thread_control* control;
    per_thread_node* state;
};

struct per_thread_table {
    per_thread_entry* entries;
    std::uint32_t size;
    bool hook_armed;
    bool exiting;
};

// Constant-initialised with a trivial destructor, so that every access is a plain TLS access
// (no initialisation guard, no wrapper call). The exit work is done by a separate hook object.
inline constinit thread_local per_thread_table tl_table{nullptr, 0, false, false};

/// Small integer ids for owners, lowest free first, reused after an owner dies, so that the
/// thread-local tables stay as small as the number of owners alive at once.
class per_thread_ids {
public:
    static per_thread_ids& instance() {
        // Never destroyed: owners with static storage duration release their ids during static
        // destruction, in an order nobody controls. Reachable, so leak checkers stay quiet.
        static per_thread_ids* ids = new per_thread_ids;
        return *ids;
    }

    std::uint32_t acquire() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (free_.empty()) return next_++;
        std::size_t best = 0;
        for (std::size_t i = 1; i < free_.size(); ++i)
            if (free_[i] < free_[best]) best = i;
        const std::uint32_t id = free_[best];
        free_[best] = free_.back();
        free_.pop_back();
        return id;
    }

    void release(std::uint32_t id) noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        try {
            free_.push_back(id);
        } catch (...) {
            // Out of memory: the id is simply never reused.
        }
    }

private:
    std::mutex mutex_;
    std::vector<std::uint32_t> free_;
    std::uint32_t next_ = 0;
};

// Runs when a thread that registered a state ends (or, for the main thread, at exit()).
inline void run_thread_exit() noexcept {
    per_thread_table& t = tl_table;
    t.exiting = true;
    for (std::uint32_t i = 0; i < t.size; ++i) {
        per_thread_entry& e = t.entries[i];
        per_thread_control* c = e.control;
        if (c == nullptr) continue;
        if (e.state != nullptr) {
            std::lock_guard<std::mutex> lock(c->mutex);
            if (c->alive) {
                per_thread_control::unlink(e.state);
                c->on_exit(c->owner, e.state);
            }
        }
        e = {nullptr, nullptr};
        c->release();
    }
    delete[] t.entries;
    t.entries = nullptr;
    t.size = 0;
}

struct per_thread_exit_hook {
    per_thread_exit_hook() noexcept = default;
    per_thread_exit_hook(const per_thread_exit_hook&) = delete;
    per_thread_exit_hook& operator=(const per_thread_exit_hook&) = delete;
    ~per_thread_exit_hook() { run_thread_exit(); }
};

MEMKIT_NOINLINE inline void arm_thread_exit_hook() noexcept {
    // Constructed (and its destructor registered with the runtime) the first time a thread
    // passes here.
    static thread_local per_thread_exit_hook hook;
    (void)&hook;
    tl_table.hook_armed = true;
}

/// Allocates and constructs a per-thread state on its own cache lines (states of different
/// threads never share a line). nullptr when memory is short.
template <class State, class... Args>
State* make_state(Args&&... args) noexcept {
    void* mem = ::operator new (sizeof(State), std::align_val_t{cache_line_size}, std::nothrow);
    if (mem == nullptr) return nullptr;
    return ::new (mem) State(std::forward<Args>(args)...);
}

template <class State>
void destroy_state(State* s) noexcept {
    s->~State();
    ::operator delete (static_cast<void*>(s), std::align_val_t{cache_line_size});
}

class per_thread_registry {
public:
    using exit_fn = per_thread_control::exit_fn;

    /// `on_exit(owner, state)` is called under the control mutex when a thread that registered
    /// `state` exits while the owner is alive; it must return what the state caches and free it.
    per_thread_registry(void* owner, exit_fn on_exit) : id_(per_thread_ids::instance().acquire()) {
        control_ = new (std::nothrow) per_thread_control(owner, on_exit);
        if (control_ == nullptr) {
            per_thread_ids::instance().release(id_);
            throw std::bad_alloc();
        }
    }

    per_thread_registry(const per_thread_registry&) = delete;
    per_thread_registry& operator=(const per_thread_registry&) = delete;

    /// close() must have been called first if any state was attached (the owner's destructor
    /// does so).
    ~per_thread_registry() {
        per_thread_ids::instance().release(id_);
        control_->release();
    }

    /// The calling thread's state, or nullptr if it has none.
    [[nodiscard]] MEMKIT_ALWAYS_INLINE per_thread_node* find() const noexcept {
        const per_thread_table& t = tl_table;
        if (MEMKIT_LIKELY(id_ < t.size)) {
            const per_thread_entry& e = t.entries[id_];
            if (MEMKIT_LIKELY(e.control == control_)) return e.state;
        }
        return nullptr;
    }

    /// Registers `state` as the calling thread's state. False (nothing registered) when the
    /// thread is exiting or the thread's table cannot grow; the caller keeps `state`.
    [[nodiscard]] bool attach(per_thread_node* state) noexcept {
        per_thread_table& t = tl_table;
        if (t.exiting) return false;
        if (id_ >= t.size && !grow_table(t)) return false;
        if (!t.hook_armed) arm_thread_exit_hook();
        per_thread_entry& e = t.entries[id_];
        if (e.control != nullptr) {
            // Left by a dead owner that had the same id (it closed and forgot the state).
            e.control->release();
            e = {nullptr, nullptr};
        }
        {
            std::lock_guard<std::mutex> lock(control_->mutex);
            control_->link(state);
        }
        control_->retain();
        e = {control_, state};
        return true;
    }

    /// Unregisters the calling thread's state and returns it (the caller frees it), or nullptr.
    [[nodiscard]] per_thread_node* detach() noexcept {
        per_thread_table& t = tl_table;
        if (id_ >= t.size) return nullptr;
        per_thread_entry& e = t.entries[id_];
        if (e.control != control_ || e.state == nullptr) return nullptr;
        per_thread_node* s = e.state;
        {
            std::lock_guard<std::mutex> lock(control_->mutex);
            per_thread_control::unlink(s);
        }
        e = {nullptr, nullptr};
        control_->release();
        return s;
    }

    /// Runs f(state) for every registered state, under the control mutex (threads can neither
    /// register nor exit meanwhile; they can still run their fast paths, so fields that other
    /// threads write must be read atomically).
    template <class F>
    void for_each(F&& f) const {
        std::lock_guard<std::mutex> lock(control_->mutex);
        for (per_thread_node* s = control_->list.next; s != &control_->list; s = s->next) f(s);
    }

    /// for_each for use inside locked(), where the mutex is already held.
    template <class F>
    void for_each_unlocked(F&& f) const {
        for (per_thread_node* s = control_->list.next; s != &control_->list; s = s->next) f(s);
    }

    /// Runs `f` under the control mutex (to keep a thread's exit out of a multi-step update).
    template <class F>
    decltype(auto) locked(F&& f) const {
        std::lock_guard<std::mutex> lock(control_->mutex);
        return f();
    }

    /// Marks the owner dead and hands every registered state to f(state) (which frees it), under
    /// the control mutex. Threads exiting afterwards skip this owner. Idempotent.
    template <class F>
    void close(F&& f) noexcept {
        std::lock_guard<std::mutex> lock(control_->mutex);
        control_->alive = false;
        while (control_->list.next != &control_->list) {
            per_thread_node* s = control_->list.next;
            per_thread_control::unlink(s);
            f(s);
        }
    }

private:
    MEMKIT_NOINLINE bool grow_table(per_thread_table& t) const noexcept {
        std::uint32_t n = t.size < 8 ? 8 : t.size * 2;
        while (n <= id_) n *= 2;
        auto* entries = new (std::nothrow) per_thread_entry[n];
        if (entries == nullptr) return false;
        for (std::uint32_t i = 0; i < n; ++i)
            entries[i] = i < t.size ? t.entries[i] : per_thread_entry{nullptr, nullptr};
        delete[] t.entries;
        t.entries = entries;
        t.size = n;
        return true;
    }

    std::uint32_t id_;
    per_thread_control* control_;
};

/// Adds `n` to a counter that only the calling thread writes (others may read it): a plain load
/// and store, no locked instruction.
MEMKIT_ALWAYS_INLINE void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

} // namespace memkit::detail
