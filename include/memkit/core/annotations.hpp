// memkit/core/annotations.hpp - telling AddressSanitizer and valgrind which bytes a container or
// an allocator does not use, and which sanitizers a build has.
//
// Containers that keep spare capacity (small_vector, circular buffers) and allocators that hand
// out pieces of larger blocks mark the unused bytes as poisoned, so that ASan reports a read of
// `v.data()[v.size()]` as a container overflow instead of letting it read stale memory. Every
// function here compiles to nothing when the build has no ASan, so they can stay on hot paths.
//
// Allocators (arena, stack_allocator, pool, slab_allocator, tlsf_heap) use the mark_* helpers
// below: memory they hold but have not handed out is unused (poisoned for ASan, no-access for
// valgrind), a block is allocated (addressable, and undefined for valgrind) from allocate to
// deallocate, and the allocator's own words inside free memory (free-list links, boundary tags)
// are either never marked unused or read through read_unused_word, which leaves the marks as it
// found them. The allocators call them under `if constexpr (has_memory_annotations)`, so a build
// without ASan and without MEMKIT_VALGRIND compiles to the same code as one without annotations.
//
// Valgrind: define MEMKIT_VALGRIND=1 (for example `-DMEMKIT_VALGRIND=1` in CMAKE_CXX_FLAGS; a
// CMake option MEMKIT_VALGRIND that adds the definition to the memkit target's interface would
// be the natural switch) to turn the helpers into memcheck client requests from
// <valgrind/memcheck.h>. The requests cost a few instructions each when the program does not
// run under valgrind. With the default, 0, nothing of valgrind is included or emitted.
//
// Thread-safety: the calls change ASan's shadow memory (or valgrind's state) for the given range
// only; two threads may annotate different ranges at once.
//
//   memkit::annotate_contiguous_container(buf, buf + cap, buf + old_size, buf + new_size);
//   memkit::poison_memory(spare, spare_bytes);     // reading it now fails under ASan
//   memkit::unpoison_memory(spare, spare_bytes);   // before handing it out again
#pragma once

#include <cstddef>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEMKIT_HAS_ASAN 1
#endif
#endif
#if !defined(MEMKIT_HAS_ASAN) && defined(__SANITIZE_ADDRESS__)
#define MEMKIT_HAS_ASAN 1
#endif
#ifndef MEMKIT_HAS_ASAN
#define MEMKIT_HAS_ASAN 0
#endif

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MEMKIT_HAS_TSAN 1
#endif
#endif
#if !defined(MEMKIT_HAS_TSAN) && defined(__SANITIZE_THREAD__)
#define MEMKIT_HAS_TSAN 1
#endif
#ifndef MEMKIT_HAS_TSAN
#define MEMKIT_HAS_TSAN 0
#endif

#ifndef MEMKIT_VALGRIND
#define MEMKIT_VALGRIND 0
#endif

#if MEMKIT_HAS_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if MEMKIT_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

#include <cstring>

namespace memkit {

/// True in builds instrumented by AddressSanitizer.
inline constexpr bool has_address_sanitizer = MEMKIT_HAS_ASAN != 0;

/// True in builds instrumented by ThreadSanitizer.
inline constexpr bool has_thread_sanitizer = MEMKIT_HAS_TSAN != 0;

/// True in builds that tell valgrind about memkit's memory (MEMKIT_VALGRIND=1).
inline constexpr bool has_valgrind_annotations = MEMKIT_VALGRIND != 0;

/// True when allocators annotate their memory at all (ASan or valgrind annotations on).
inline constexpr bool has_memory_annotations = has_address_sanitizer || has_valgrind_annotations;

/// Tells ASan that the container whose storage is [begin, end) now uses [begin, new_mid) instead
/// of [begin, old_mid). Accesses to [new_mid, end) are then reported as container overflows.
/// Precondition (ASan's): begin is 8-byte aligned or the container owns the whole granule
/// holding it, and both mids lie in [begin, end). The call is a no-op for an empty range.
inline void annotate_contiguous_container([[maybe_unused]] const void* begin,
                                          [[maybe_unused]] const void* end,
                                          [[maybe_unused]] const void* old_mid,
                                          [[maybe_unused]] const void* new_mid) noexcept {
#if MEMKIT_HAS_ASAN
    if (begin != end && old_mid != new_mid)
        __sanitizer_annotate_contiguous_container(begin, end, old_mid, new_mid);
#endif
}

/// Marks [p, p + size) as not addressable: any access is reported by ASan until it is unpoisoned.
inline void poison_memory([[maybe_unused]] const void* p,
                          [[maybe_unused]] std::size_t size) noexcept {
#if MEMKIT_HAS_ASAN
    __asan_poison_memory_region(p, size);
#endif
}

/// Marks [p, p + size) as addressable again.
inline void unpoison_memory([[maybe_unused]] const void* p,
                            [[maybe_unused]] std::size_t size) noexcept {
#if MEMKIT_HAS_ASAN
    __asan_unpoison_memory_region(p, size);
#endif
}

// --- valgrind client requests (no-ops unless MEMKIT_VALGRIND=1) --------------------------------

/// Tells valgrind that [p, p + size) is a new heap block, as if malloc had returned it: it is
/// addressable, undefined, tracked by the leak checker, and reported by name in error messages.
/// Pair it with annotate_freelike(p).
inline void annotate_malloclike([[maybe_unused]] const void* p,
                                [[maybe_unused]] std::size_t size) noexcept {
#if MEMKIT_VALGRIND
    VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, 0);
#endif
}

/// Tells valgrind that the block annotate_malloclike(p, ...) announced is freed: any later
/// access is an invalid read or write "inside a block free'd".
inline void annotate_freelike([[maybe_unused]] const void* p) noexcept {
#if MEMKIT_VALGRIND
    VALGRIND_FREELIKE_BLOCK(p, 0);
#endif
}

/// Valgrind: any access to [p, p + size) is an error until the range is marked again.
inline void mark_noaccess([[maybe_unused]] const void* p,
                          [[maybe_unused]] std::size_t size) noexcept {
#if MEMKIT_VALGRIND
    (void)VALGRIND_MAKE_MEM_NOACCESS(p, size);
#endif
}

/// Valgrind: [p, p + size) is addressable, its contents undefined (as fresh malloc memory).
inline void mark_undefined([[maybe_unused]] const void* p,
                           [[maybe_unused]] std::size_t size) noexcept {
#if MEMKIT_VALGRIND
    (void)VALGRIND_MAKE_MEM_UNDEFINED(p, size);
#endif
}

/// Valgrind: [p, p + size) is addressable and holds defined values.
inline void mark_defined([[maybe_unused]] const void* p,
                         [[maybe_unused]] std::size_t size) noexcept {
#if MEMKIT_VALGRIND
    (void)VALGRIND_MAKE_MEM_DEFINED(p, size);
#endif
}

// --- what allocators call -------------------------------------------------------------------

/// Memory an allocator holds but has not handed out (free space, freed blocks): poisoned for ASan,
/// no-access for valgrind.
inline void mark_unused(const void* p, std::size_t size) noexcept {
    poison_memory(p, size);
    mark_noaccess(p, size);
}

/// A block handed out by allocate: addressable, contents undefined (for valgrind).
inline void mark_allocated(const void* p, std::size_t size) noexcept {
    unpoison_memory(p, size);
    mark_undefined(p, size);
}

/// Memory the allocator itself is about to read and write (or gives back to its parent):
/// addressable, contents kept as they are.
inline void mark_owned(const void* p, std::size_t size) noexcept {
    unpoison_memory(p, size);
    mark_defined(p, size);
}

/// Reads the word at `p`, which may lie in memory marked unused, and leaves the memory marked as
/// it was: the allocator's own bookkeeping inside free memory (a free-list link, a header that a
/// later free merged away) goes through here so the tools never report it. A plain load when
/// neither ASan nor valgrind annotations are on.
template <class T>
[[nodiscard]] inline T read_unused_word(const T* p) noexcept {
    T v;
#if MEMKIT_HAS_ASAN
    // ASan can only describe a granule as "the first k bytes addressable", so restoring the
    // poison from the first poisoned byte to the end of the word restores the shadow exactly.
    const void* first = __asan_region_is_poisoned(const_cast<T*>(p), sizeof(T));
    if (first != nullptr) __asan_unpoison_memory_region(p, sizeof(T));
    std::memcpy(&v, p, sizeof(T));
    if (first != nullptr) {
        const auto* end = reinterpret_cast<const char*>(p) + sizeof(T);
        __asan_poison_memory_region(
            first, static_cast<std::size_t>(end - static_cast<const char*>(first)));
    }
#elif MEMKIT_VALGRIND
    VALGRIND_DISABLE_ERROR_REPORTING;
    std::memcpy(&v, p, sizeof(T));
    VALGRIND_ENABLE_ERROR_REPORTING;
#else
    v = *p;
#endif
    return v;
}

/// Writes the word at `p`, which may lie in memory marked unused, and leaves the memory marked as
/// it was (the counterpart of read_unused_word). A plain store without annotations.
template <class T>
inline void write_unused_word(T* p, T v) noexcept {
#if MEMKIT_HAS_ASAN
    const void* first = __asan_region_is_poisoned(p, sizeof(T));
    if (first != nullptr) __asan_unpoison_memory_region(p, sizeof(T));
    std::memcpy(p, &v, sizeof(T));
    if (first != nullptr) {
        const auto* end = reinterpret_cast<const char*>(p) + sizeof(T);
        __asan_poison_memory_region(
            first, static_cast<std::size_t>(end - static_cast<const char*>(first)));
    }
#elif MEMKIT_VALGRIND
    VALGRIND_DISABLE_ERROR_REPORTING;
    std::memcpy(p, &v, sizeof(T));
    VALGRIND_ENABLE_ERROR_REPORTING;
#else
    *p = v;
#endif
}

} // namespace memkit
