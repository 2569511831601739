// memkit/alloc/object_pool.hpp - a typed pool that constructs, destroys and recycles objects.
//
// `object_pool<T>` hands out constructed objects from a memkit::basic_pool: `acquire(args...)`
// constructs a T in a free node, `release(p)` destroys it and returns the node, and
// `make_unique(args...)` wraps the object in a std::unique_ptr whose deleter releases it to the
// pool. If T's constructor throws, the node goes back to the pool and the exception propagates.
//
// Reuse without destruction: when T has a `void reset()` member and
// `object_pool_options::reuse_objects` is true (the default), release() calls reset() and keeps
// the object constructed in a list of retained objects instead of destroying it; acquire() with
// no arguments hands a retained object back before constructing a new one (acquire with arguments
// always constructs). When T also has `bool validate() const`, release() first asks it: an object
// that fails is destroyed instead of retained and counted in rejected_count(). reset() and
// validate() must not throw (release is noexcept). Each retained object's node carries one extra
// pointer after the object to link the list; types without reset() pay nothing. Retained objects
// are destroyed by clear_retained(), shrink_to_fit() and the destructor, and one is recycled when
// a capped pool (max_objects) has no free node for a new object.
//
// Objects still acquired when the pool is destroyed are a precondition violation: debug builds
// report errc::still_in_use, and their memory is freed without running their destructors.
// Releasing a pointer that is not one of the pool's objects reports errc::not_owned and releasing
// an object twice reports errc::double_free (debug builds); the call then does nothing.
// The pool is neither copyable nor movable, because the unique_ptr deleters refer to it.
//
// Complexity: acquire/release O(1) plus T's constructor/destructor (or reset/validate); a new
// chunk is a parent call. Thread-safety: not thread-safe.
// Failure: acquire and make_unique throw out_of_memory when max_objects is reached (and no
// retained object can be recycled) or the parent fails, and whatever T's constructor throws.
//
//   memkit::object_pool<message> messages;
//   auto m = messages.make_unique(topic, payload);   // returned to the pool when m dies
//   message* raw = messages.acquire(); messages.release(raw);
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"

namespace memkit {

struct object_pool_options {
    std::size_t objects_per_chunk = 0; ///< 0: automatic (as pool_options::nodes_per_chunk)
    std::size_t max_objects = 0;       ///< 0: unlimited; counts live and retained objects
    bool reuse_objects = true;         ///< retain reset() objects (only for T with reset())
};

template <class T, allocator Parent = system_allocator>
class object_pool {
    static_assert(std::is_object_v<T> && !std::is_array_v<T> && !std::is_const_v<T>,
                  "object_pool holds non-const, non-array object types");
    static_assert(alignof(T) <= basic_pool<Parent>::max_alignment,
                  "object_pool supports alignments up to 4096");
    static_assert(sizeof(T*) == sizeof(std::uintptr_t), "the link word holds a pointer or a tag");

public:
    using value_type = T;
    using pool_type = basic_pool<Parent>;

    static constexpr bool is_thread_safe = false;
    static constexpr const char* name = "memkit::object_pool";
    /// T has `void reset()`: released objects can be kept for reuse.
    static constexpr bool has_reset = requires(T & t) {
        { t.reset() } -> std::same_as<void>;
    };
    /// T has `bool validate() const`: checked before an object is retained.
    static constexpr bool has_validate = requires(const T& t) {
        { t.validate() } -> std::convertible_to<bool>;
    };

    /// Releases an object to the pool it came from (the deleter of `unique_ptr`).
    class deleter {
    public:
        deleter() noexcept = default;
        explicit deleter(object_pool* p) noexcept : pool_(p) {}
        void operator()(T* p) const noexcept { pool_->release(p); }
        [[nodiscard]] object_pool* pool() const noexcept { return pool_; }

    private:
        object_pool* pool_ = nullptr;
    };
    using unique_ptr = std::unique_ptr<T, deleter>;

    object_pool() : object_pool(object_pool_options{}) {}

    explicit object_pool(object_pool_options opts, Parent parent = Parent{})
        : pool_(node_size_for(has_reset && opts.reuse_objects), alignof(T),
                pool_options{opts.objects_per_chunk, opts.max_objects}, std::move(parent)),
          reuse_(has_reset && opts.reuse_objects) {}

    object_pool(const object_pool&) = delete;
    object_pool& operator=(const object_pool&) = delete;
    object_pool(object_pool&&) = delete;
    object_pool& operator=(object_pool&&) = delete;

    /// Destroys the retained objects and returns all memory to the parent. Objects still
    /// acquired are a precondition violation (see the header comment).
    ~object_pool() {
        clear_retained();
        if constexpr (debug_checks) {
            if (size() != 0)
                report_violation({errc::still_in_use, name, nullptr,
                                  "object_pool destroyed while objects are still acquired"});
        }
    }

    /// A constructed object: T(args...) (or T{args...} for an aggregate), or with no arguments a
    /// retained object if there is one.
    template <class... Args>
    [[nodiscard]] T* acquire(Args&&... args) {
        if constexpr (sizeof...(Args) == 0 && has_reset) {
            if (retained_ != nullptr) return take_retained();
        }
        void* mem = pool_.try_allocate();
        if (MEMKIT_UNLIKELY(mem == nullptr)) mem = allocate_slow();
        T* p = nullptr;
        if constexpr (std::is_nothrow_constructible_v<T, Args...>) {
            p = construct(mem, std::forward<Args>(args)...);
        } else {
            try {
                p = construct(mem, std::forward<Args>(args)...);
            } catch (...) {
                pool_.deallocate(mem);
                throw;
            }
        }
        if constexpr (debug_checks) mark_live(p);
        return p;
    }

    /// Destroys `p` (or resets and retains it, see the header comment). nullptr is ignored.
    void release(T* p) noexcept {
        if (p == nullptr) return;
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!accept_release(p))) return;
        }
        if constexpr (has_reset) {
            if (reuse_) {
                if (is_valid(*p)) {
                    p->reset();
                    store_next(p, retained_);
                    retained_ = p;
                    ++retained_count_;
                    return;
                }
                ++rejected_;
                if constexpr (debug_checks) store_word(p, 0);
            }
        }
        std::destroy_at(p);
        pool_.deallocate(p);
    }

    /// acquire(args...) owned by a unique_ptr that releases the object to this pool.
    template <class... Args>
    [[nodiscard]] unique_ptr make_unique(Args&&... args) {
        return unique_ptr(acquire(std::forward<Args>(args)...), deleter{this});
    }

    /// Makes room for `n` new objects without calling the parent again (see basic_pool::reserve).
    void reserve(std::size_t n) { pool_.reserve(n); }

    /// Destroys every retained object and returns its node to the pool.
    void clear_retained() noexcept {
        while (retained_ != nullptr) {
            T* p = retained_;
            retained_ = load_next(p);
            std::destroy_at(p);
            pool_.deallocate(p);
        }
        retained_count_ = 0;
    }

    /// clear_retained(), then returns every chunk without objects to the parent.
    void shrink_to_fit() noexcept {
        clear_retained();
        pool_.shrink_to_fit();
    }

    /// True if `p` points at a node of this pool.
    [[nodiscard]] bool owns(const T* p) const noexcept { return pool_.owns(p); }

    /// The pool's statistics: bytes_in_use covers the nodes of live and retained objects.
    [[nodiscard]] allocator_stats stats() const noexcept { return pool_.stats(); }

    /// Objects acquired and not yet released.
    /// (Derived from the pool's live nodes, which include retained objects, so that acquire and
    /// release keep no counter of their own.)
    [[nodiscard]] std::size_t size() const noexcept { return pool_.size() - retained_count_; }
    /// Objects kept constructed for reuse.
    [[nodiscard]] std::size_t retained_count() const noexcept { return retained_count_; }
    /// Released objects destroyed because validate() returned false.
    [[nodiscard]] std::size_t rejected_count() const noexcept { return rejected_; }
    /// True when released objects are reset and retained.
    [[nodiscard]] bool reuses_objects() const noexcept { return reuse_; }

    [[nodiscard]] const pool_type& pool() const noexcept { return pool_; }

private:
    // The retained-list link (or, in debug builds, the live marker) follows the object.
    static constexpr std::size_t link_offset = align_up(sizeof(T), alignof(std::uintptr_t));
    static constexpr std::size_t link_size = sizeof(std::uintptr_t);
    // An acquired object's link word holds its address mixed with this value (debug builds), so
    // releasing a retained or destroyed object is caught.
    static constexpr std::uintptr_t live_key = static_cast<std::uintptr_t>(0x6f626a2e6c697665ULL);

    static constexpr std::size_t node_size_for(bool linked) noexcept {
        return linked ? link_offset + link_size : sizeof(T);
    }

    template <class... Args>
    static T* construct(void* mem, Args&&... args) {
        if constexpr (std::is_constructible_v<T, Args...>)
            return ::new (mem) T(std::forward<Args>(args)...);
        else return ::new (mem) T{std::forward<Args>(args)...};
    }

    static bool is_valid(const T& x) noexcept {
        if constexpr (has_validate) return static_cast<bool>(x.validate());
        else return true;
    }

    // The link word is read and written with memcpy: it lies in the node's bytes after the
    // object, where no object of its own lives.
    static T* load_next(const T* p) noexcept {
        T* next = nullptr;
        std::memcpy(&next, reinterpret_cast<const std::byte*>(p) + link_offset, link_size);
        return next;
    }
    static void store_next(T* p, T* next) noexcept {
        std::memcpy(reinterpret_cast<std::byte*>(p) + link_offset, &next, link_size);
    }
    // The word may lie in a released object, which the pool's parent may have poisoned.
    static std::uintptr_t load_word(const T* p) noexcept {
        return read_unused_word(reinterpret_cast<const std::uintptr_t*>(
            reinterpret_cast<const std::byte*>(p) + link_offset));
    }
    static void store_word(T* p, std::uintptr_t v) noexcept {
        std::memcpy(reinterpret_cast<std::byte*>(p) + link_offset, &v, sizeof v);
    }
    static std::uintptr_t live_marker(const T* p) noexcept {
        return reinterpret_cast<std::uintptr_t>(p) ^ live_key;
    }

    T* take_retained() noexcept {
        T* p = retained_;
        retained_ = load_next(p);
        --retained_count_;
        if constexpr (debug_checks) mark_live(p);
        return p;
    }

    void mark_live(T* p) noexcept {
        if (reuse_) store_word(p, live_marker(p));
    }

    // The pool has no free node: recycle a retained object's node, or throw the pool's error.
    MEMKIT_NOINLINE void* allocate_slow() {
        if (retained_ != nullptr) {
            T* p = retained_;
            retained_ = load_next(p);
            --retained_count_;
            std::destroy_at(p);
            return p;
        }
        return pool_.allocate();
    }

    MEMKIT_NOINLINE bool accept_release(T* p) const noexcept {
        if (!pool_.owns(p)) {
            report_violation({errc::not_owned, name, p, "object is not from this pool"});
            return false;
        }
        const bool released = reuse_ ? load_word(p) != live_marker(p) : pool_.is_free_node(p);
        if (released) {
            report_violation({errc::double_free, name, p, "object is already released"});
            return false;
        }
        return true;
    }

    pool_type pool_;
    T* retained_ = nullptr;
    std::size_t retained_count_ = 0;
    std::size_t rejected_ = 0;
    bool reuse_ = false;
};

} // namespace memkit
