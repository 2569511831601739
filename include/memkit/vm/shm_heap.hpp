// memkit/vm/shm_heap.hpp - a general-purpose heap inside a named shared-memory segment, shared by
// every thread of every process that opens it, with a directory of named objects.
//
// `shm_heap` lays out a shared_memory segment as a header followed by one memkit::tlsf_heap
// region:
//   header: magic number, layout version, segment size, the address every process maps the
//           segment at, the segment's name, a process-shared robust recursive mutex, the
//           dead-owner counter, the named-object directory, and the tlsf_heap object itself;
//   region: the rest of the segment, carved by the tlsf_heap (O(1) allocate and free).
// Every operation takes the mutex, so a heap is thread-safe and process-safe: any number of
// threads in any number of processes may allocate, free and look up names at the same time.
//
// One mapping address for every process. tlsf_heap keeps raw pointers in its blocks, free lists
// and list heads; rewriting it to store offsets would slow the allocator every other user of
// tlsf_heap relies on. So a shm_heap is mapped at the same address in every process: the creator
// maps it where the kernel (or shm_heap_options::address) puts it and records the address in the
// header, and open() maps it there with MAP_FIXED_NOREPLACE. If that range is already used in
// the opening process (a second open of the same heap in one process, or an unlucky library
// mapping) open throws shm_error(address_unavailable) naming the address; a process that must
// open a heap made by an unrelated program should create it at an agreed address far from the
// usual mappings (shm_heap_options::address, e.g. 0x600000000000 on x86-64 without sanitizers).
// Because the address is the same, raw pointers into the heap are valid in every process that
// has it open; memkit's own directory still stores offsets (offset_ptr) so that the segment's
// bytes are position independent where that costs nothing. Processes forked from the creator
// inherit the mapping and need not open anything.
//
// Robust lock. The mutex is PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST (and recursive). If a
// process dies while holding it, the next lock() gets EOWNERDEAD; shm_heap then marks the mutex
// consistent (pthread_mutex_consistent), adds one to owner_deaths() (in the segment, seen by all
// processes), and runs validate() on the heap and directory. If those are intact the heap goes on
// working, and lock_with_status() returns lock_status::recovered to the caller whose lock found
// the dead owner. If not (the owner died in the middle of a heap update), the heap is marked
// corrupted and that and every later operation throws shm_error(heap_corrupted); deallocate,
// which cannot throw, reports errc::corruption_detected to the violation handler instead. Data
// the dead process was writing under the lock is the application's to check: the recovered
// status is the cue.
//
// Named objects. find_or_construct<T>(name, args...) returns the object called `name`,
// constructing it from args first if there is none; find<T>(name) returns it or nullptr;
// destroy<T>(name) runs ~T() and frees it. All three hold the mutex throughout, so concurrent
// find_or_construct calls construct once. The directory records the size and alignment of each
// object and checks them on every lookup (shm_errc::type_mismatch); it cannot tell two types of
// equal size and alignment apart. The rule for T: its bytes must mean the same in every process.
// Good: trivially copyable types without pointers, arrays of those, offset_ptr-linked types,
// containers whose allocator is memkit::shm_allocator (e.g. std::vector<int, shm_allocator<int>>,
// which stores offset_ptrs and an allocator that finds the heap from the segment). Not good:
// types holding process-local pointers or handles (std::string, std::vector with
// std::allocator, file descriptors, std::pmr containers: their memory_resource* is local),
// polymorphic types (their vtable pointer differs between executables; rejected at compile
// time). Constructors may allocate from the same heap (the mutex is recursive); if one throws,
// nothing is left in the directory and the exception propagates.
//
// Also: allocate/try_allocate/deallocate/owns/usable_size/stats/free_bytes (tlsf_heap's
// meaning), memkit::pmr::shm_heap_resource (a std::pmr::memory_resource over a shm_heap handle,
// for process-local containers that use shared memory) and shm_allocator<T> (a standard
// allocator whose pointer type is offset_ptr<T>, for containers that live in the segment).
//
// Complexity: allocate/deallocate O(1) plus one robust-mutex lock and unlock (about 20 ns of
// CPU uncontended on x86-64 Linux, most of a call's cost); find and
// find_or_construct O(1) expected (hash directory, doubling its buckets as it fills) plus O(name
// length); validate O(blocks). create/open: a few system calls; open polls for up to
// shm_heap_options::open_timeout while a concurrent creator is initializing.
// Failure: allocate throws memkit::out_of_memory (a std::bad_alloc) when no block fits (the heap
// never grows; size the segment for the peak), bad_size / invalid_alignment as tlsf_heap does.
// create/open/open_or_create throw shm_error naming the segment: invalid_size (too small for the
// header and one block), bad_magic (not a memkit heap), bad_version (another layout version, or a
// build whose tlsf_heap layout differs), size_mismatch, not_initialized (the creator did not
// finish within open_timeout), address_unavailable (above), and std::system_error codes from
// shared_memory (exists, missing, permission denied). A segment opened by a build with
// different debug checks is fine: the layout does not depend on them.
// Thread-safety: every member of shm_heap is thread-safe except move assignment and destruction
// (a handle, like any object, must not be destroyed while in use). shm_allocator is thread-safe.
//
//   auto heap = memkit::shm_heap::create("/orders", 64 << 20, {.remove_on_destroy = true});
//   auto* count = heap.find_or_construct<std::uint64_t>("count", 0u);
//   { std::scoped_lock lk{heap}; ++*count; }                   // seen by every process
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>

#include "memkit/core/error.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/vm/offset_ptr.hpp"
#include "memkit/vm/shared_memory.hpp"

namespace memkit {

struct shm_heap_options {
    unsigned permissions = 0600;    ///< of a segment this call creates
    bool remove_on_destroy = false; ///< unlink the name when this handle is destroyed
    /// Where the creator maps the segment (nullptr: the kernel chooses). When set, create fails
    /// with shm_errc::address_unavailable if the range is taken. Ignored by open.
    void* address = nullptr;
    /// How long open waits for a concurrent creator to finish initializing the header.
    std::chrono::milliseconds open_timeout{2000};
};

/// What a lock found.
enum class lock_status : unsigned char {
    acquired,  ///< the mutex was free or held by a live owner that released it
    recovered, ///< its previous owner died holding it; the heap passed validate()
};

/// What a type must be to live in a shm_heap's directory (see the header comment).
template <class T>
concept shm_storable = std::is_object_v<T> && !std::is_array_v<T> && !std::is_polymorphic_v<T> &&
                       std::is_nothrow_destructible_v<T>;

namespace detail {
struct shm_heap_header; // the segment's header, defined in src/vm/shm_heap.cpp
void* shm_heap_allocate(shm_heap_header* h, std::size_t size, std::size_t align);
void* shm_heap_try_allocate(shm_heap_header* h, std::size_t size, std::size_t align) noexcept;
void shm_heap_deallocate(shm_heap_header* h, void* p, std::size_t size, std::size_t align) noexcept;
} // namespace detail

class shm_heap {
public:
    static constexpr bool is_thread_safe = true;
    static constexpr std::size_t max_alignment = std::size_t{1} << 30;
    static constexpr const char* name = "memkit::shm_heap";
    /// The layout version written into (and required of) every segment.
    static constexpr std::uint32_t layout_version = 1;

    /// An empty handle (no segment). Only move assignment, destruction and operator bool are
    /// valid on it.
    shm_heap() noexcept = default;

    /// Creates the segment `segment_name` of `size` bytes (header included) and a heap in it.
    [[nodiscard]] static shm_heap create(std::string_view segment_name, std::size_t size,
                                         shm_heap_options opts = {});
    /// Opens the heap in an existing segment, mapping it at the address its creator recorded.
    [[nodiscard]] static shm_heap open(std::string_view segment_name, shm_heap_options opts = {});
    /// Opens the heap, or creates it with `size` bytes when the segment does not exist.
    [[nodiscard]] static shm_heap open_or_create(std::string_view segment_name, std::size_t size,
                                                 shm_heap_options opts = {});
    /// The smallest size create accepts.
    [[nodiscard]] static std::size_t min_size() noexcept;

    shm_heap(shm_heap&& o) noexcept
        : seg_(std::move(o.seg_)), hdr_(std::exchange(o.hdr_, nullptr)) {}
    shm_heap& operator=(shm_heap&& o) noexcept {
        seg_ = std::move(o.seg_);
        hdr_ = std::exchange(o.hdr_, nullptr);
        return *this;
    }
    shm_heap(const shm_heap&) = delete;
    shm_heap& operator=(const shm_heap&) = delete;
    /// Unmaps the segment (the heap and its objects stay in it for other handles).
    ~shm_heap() = default;

    [[nodiscard]] explicit operator bool() const noexcept { return hdr_ != nullptr; }

    // --- allocation ------------------------------------------------------------------------

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        return detail::shm_heap_allocate(hdr_, size, align);
    }
    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        return detail::shm_heap_try_allocate(hdr_, size, align);
    }
    void deallocate(void* p, std::size_t size,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        detail::shm_heap_deallocate(hdr_, p, size, align);
    }
    /// True if `p` lies in the heap's block area (no lock: the bounds never change).
    [[nodiscard]] bool owns(const void* p) const noexcept;
    [[nodiscard]] std::size_t usable_size(const void* p) const;
    [[nodiscard]] allocator_stats stats() const;
    [[nodiscard]] std::size_t free_bytes() const;
    [[nodiscard]] std::size_t largest_free_block() const;
    [[nodiscard]] static constexpr std::size_t max_size() noexcept { return std::size_t{1} << 39; }
    /// Checks every block, free list and directory entry; throws corruption_detected.
    void validate() const;

    // --- the process-shared lock -----------------------------------------------------------

    /// Locks the heap's mutex (recursive: allocate and the directory may be used while holding
    /// it). Throws shm_error(heap_corrupted) when a dead owner left the heap inconsistent.
    void lock() { (void)lock_with_status(); }
    [[nodiscard]] lock_status lock_with_status();
    /// Like lock_with_status, without waiting: false when another thread or process holds it.
    [[nodiscard]] bool try_lock();
    void unlock() noexcept;
    /// How many times a lock of this heap found its owner dead (all processes, since creation).
    [[nodiscard]] std::uint64_t owner_deaths() const noexcept;

    // --- named objects ---------------------------------------------------------------------

    /// The object called `object_name`, constructed from `args` first if there is none.
    /// Throws shm_error(type_mismatch) if it exists with another size or alignment,
    /// shm_error(invalid_name) for an empty name or one above 255 characters, out_of_memory,
    /// and what T's constructor throws (the name then stays free).
    template <shm_storable T, class... Args>
    [[nodiscard]] T* find_or_construct(std::string_view object_name, Args&&... args) {
        auto make = [&](void* where) { ::new (where) T(std::forward<Args>(args)...); };
        return static_cast<T*>(named_find_or_construct(
            object_name, sizeof(T), alignof(T),
            [](void* where, void* ctx) { (*static_cast<decltype(make)*>(ctx))(where); }, &make));
    }
    /// The object called `object_name`, or nullptr. Throws shm_error(type_mismatch).
    template <shm_storable T>
    [[nodiscard]] T* find(std::string_view object_name) const {
        return static_cast<T*>(named_find(object_name, sizeof(T), alignof(T)));
    }
    /// Destroys and frees the object called `object_name`: true if there was one. Throws
    /// shm_error(type_mismatch). Pointers to it held elsewhere dangle.
    template <shm_storable T>
    bool destroy(std::string_view object_name) {
        return named_destroy(object_name, sizeof(T), alignof(T),
                             [](void* p) noexcept { static_cast<T*>(p)->~T(); });
    }
    /// Number of named objects.
    [[nodiscard]] std::size_t named_count() const;

    // --- the segment ------------------------------------------------------------------------

    [[nodiscard]] const std::string& segment_name() const noexcept { return seg_.name(); }
    [[nodiscard]] void* base() const noexcept { return seg_.data(); }
    [[nodiscard]] std::size_t size() const noexcept { return seg_.size(); }
    /// Whether this handle created the segment (open_or_create tells which it did).
    [[nodiscard]] bool created() const noexcept { return seg_.created(); }
    void set_remove_on_destroy(bool on) noexcept { seg_.set_remove_on_destroy(on); }
    [[nodiscard]] detail::shm_heap_header* header() const noexcept { return hdr_; }

    friend bool operator==(const shm_heap& a, const shm_heap& b) noexcept {
        return a.hdr_ == b.hdr_;
    }

private:
    using construct_fn = void (*)(void* where, void* ctx);
    using destroy_fn = void (*)(void* p) noexcept;

    shm_heap(shared_memory seg, detail::shm_heap_header* h) noexcept
        : seg_(std::move(seg)), hdr_(h) {}

    void* named_find_or_construct(std::string_view object_name, std::size_t size, std::size_t align,
                                  construct_fn fn, void* ctx);
    void* named_find(std::string_view object_name, std::size_t size, std::size_t align) const;
    bool named_destroy(std::string_view object_name, std::size_t size, std::size_t align,
                       destroy_fn fn);

    shared_memory seg_;
    detail::shm_heap_header* hdr_ = nullptr;
};

/// A standard allocator over a shm_heap whose pointer type is offset_ptr<T>: a container using
/// it can itself live in the segment and be used from every process that maps the heap. It
/// refers to the heap through the segment (an offset_ptr to the heap's header), not through the
/// process-local shm_heap handle. Allocators of one heap compare equal; copy, move and swap
/// propagate. Thread-safe.
///
///   using shm_vector = std::vector<int, memkit::shm_allocator<int>>;
///   auto* v = heap.find_or_construct<shm_vector>("v", memkit::shm_allocator<int>{heap});
///   v->push_back(42);   // under heap.lock() when other processes use v at the same time
template <class T>
class shm_allocator {
public:
    using value_type = T;
    using pointer = offset_ptr<T>;
    using const_pointer = offset_ptr<const T>;
    using void_pointer = offset_ptr<void>;
    using const_void_pointer = offset_ptr<const void>;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using propagate_on_container_copy_assignment = std::true_type;
    using propagate_on_container_move_assignment = std::true_type;
    using propagate_on_container_swap = std::true_type;
    using is_always_equal = std::false_type;
    template <class U>
    struct rebind {
        using other = shm_allocator<U>;
    };

    explicit shm_allocator(const shm_heap& heap) noexcept : hdr_(heap.header()) {}
    shm_allocator(const shm_allocator&) noexcept = default;
    shm_allocator& operator=(const shm_allocator&) noexcept = default;
    template <class U>
    shm_allocator(const shm_allocator<U>& o) noexcept : hdr_(o.header()) {} // NOLINT: rebind

    [[nodiscard]] pointer allocate(size_type n) {
        if (n > std::numeric_limits<size_type>::max() / sizeof(T))
            throw std::bad_array_new_length();
        return pointer(
            static_cast<T*>(detail::shm_heap_allocate(hdr_.get(), n * sizeof(T), alignof(T))));
    }
    void deallocate(pointer p, size_type n) noexcept {
        detail::shm_heap_deallocate(hdr_.get(), p.get(), n * sizeof(T), alignof(T));
    }

    [[nodiscard]] detail::shm_heap_header* header() const noexcept { return hdr_.get(); }

    template <class U>
    friend bool operator==(const shm_allocator& a, const shm_allocator<U>& b) noexcept {
        return a.header() == b.header();
    }

private:
    offset_ptr<detail::shm_heap_header> hdr_;
};

} // namespace memkit

namespace memkit::pmr {
/// A std::pmr::memory_resource over a shm_heap handle (which must outlive it):
/// `memkit::pmr::shm_heap_resource r{heap}; std::pmr::vector<int> v{&r};`. The resource object and
/// the container live in this process; only the elements are in the segment.
using shm_heap_resource = memkit::resource<memkit::allocator_ref<memkit::shm_heap>>;
} // namespace memkit::pmr
