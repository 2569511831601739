// memkit/core/platform.hpp - compiler hints and machine constants.
//
// MEMKIT_LIKELY / MEMKIT_UNLIKELY mark branch probability, MEMKIT_NOINLINE keeps cold paths out of
// hot functions, MEMKIT_ALWAYS_INLINE forces the small fast paths inline. `page_size()` asks the
// OS once and caches the answer; `cache_line_size` is a compile-time constant used for padding.
//
// Thread-safety: every function here is thread-safe.
//
//   struct alignas(memkit::cache_line_size) counter { std::atomic<long> n; };
//   std::size_t pg = memkit::page_size();          // 4096 on most x86-64 Linux systems
//   memkit::prefetch_read(next_node);
#pragma once

#include <cstddef>
#include <new>

// MEMKIT_MALLOC_LIKE promises the compiler that a returned pointer aliases no pointer that
// exists when the function returns. Only an allocator whose memory nobody else can point into
// (the C heap) may use it: blocks carved from a caller's buffer or from chunks the allocator keeps
// pointers to would let the optimizer fold comparisons such as `p == buffer` to false.
#if defined(__GNUC__) || defined(__clang__)
#define MEMKIT_LIKELY(x) (__builtin_expect(!!(x), 1))
#define MEMKIT_UNLIKELY(x) (__builtin_expect(!!(x), 0))
#define MEMKIT_NOINLINE __attribute__((noinline))
#define MEMKIT_ALWAYS_INLINE inline __attribute__((always_inline))
#define MEMKIT_COLD __attribute__((cold, noinline))
#define MEMKIT_MALLOC_LIKE __attribute__((malloc))
#else
#define MEMKIT_LIKELY(x) (x)
#define MEMKIT_UNLIKELY(x) (x)
#define MEMKIT_NOINLINE
#define MEMKIT_ALWAYS_INLINE inline
#define MEMKIT_COLD
#define MEMKIT_MALLOC_LIKE
#endif

// Precondition checks that cost nothing in release builds. They are on when NDEBUG is not
// defined, or when the build sets MEMKIT_CHECKS=1 explicitly (the CMake option MEMKIT_CHECKS).
#ifndef MEMKIT_CHECKS
#ifdef NDEBUG
#define MEMKIT_CHECKS 0
#else
#define MEMKIT_CHECKS 1
#endif
#endif

namespace memkit {

/// True when memkit's debug precondition checks (ownership, LIFO order, double free) are compiled
/// in.
inline constexpr bool debug_checks = MEMKIT_CHECKS != 0;

/// Size of a cache line: the unit of false sharing. x86 lines are 64 bytes; elsewhere the
/// standard's hardware_destructive_interference_size is used when the library has it, else 64.
/// (On x86 the fixed value also keeps the ABI independent of -mtune, which GCC warns about.)
#if defined(__x86_64__) || defined(__i386__) || !defined(__cpp_lib_hardware_interference_size)
inline constexpr std::size_t cache_line_size = 64;
#else
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winterference-size"
inline constexpr std::size_t cache_line_size = std::hardware_destructive_interference_size;
#pragma GCC diagnostic pop
#endif

/// The OS page size in bytes, queried once (sysconf on POSIX).
[[nodiscard]] std::size_t page_size() noexcept;

/// Hints the CPU to bring `p` into cache for reading or writing. Never faults, even on a bad
/// address.
MEMKIT_ALWAYS_INLINE void prefetch_read(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#else
    (void)p;
#endif
}

MEMKIT_ALWAYS_INLINE void prefetch_write(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 1, 3);
#else
    (void)p;
#endif
}

} // namespace memkit
