// memkit/core/annotations.hpp - telling AddressSanitizer which bytes a container does not use,
// and which sanitizers a build has.
//
// Containers that keep spare capacity (small_vector, circular buffers) and allocators that hand
// out pieces of larger blocks mark the unused bytes as poisoned, so that ASan reports a read of
// `v.data()[v.size()]` as a container overflow instead of letting it read stale memory. Every
// function here compiles to nothing when the build has no ASan, so they can stay on hot paths.
//
// Thread-safety: the calls change ASan's shadow memory for the given range only; two threads may
// annotate different ranges at once.
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

#if MEMKIT_HAS_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace memkit {

/// True in builds instrumented by AddressSanitizer.
inline constexpr bool has_address_sanitizer = MEMKIT_HAS_ASAN != 0;

/// True in builds instrumented by ThreadSanitizer.
inline constexpr bool has_thread_sanitizer = MEMKIT_HAS_TSAN != 0;

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

} // namespace memkit
