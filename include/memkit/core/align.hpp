// memkit/core/align.hpp - power-of-two alignment arithmetic.
//
// All functions are constexpr and noexcept. The plain versions (`align_up`, `align_down`) require
// a power-of-two alignment and no overflow (a precondition, not checked); the `checked_` versions
// report overflow by returning false and are what allocators use on untrusted sizes.
//
// Thread-safety: pure functions.
//
//   static_assert(memkit::align_up(13, 8) == 16);
//   std::size_t out;
//   if (!memkit::checked_align_up(n, 64, out)) throw memkit::bad_size(n, "overflow");
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

namespace memkit {

/// True if `x` is a power of two (0 is not).
[[nodiscard]] constexpr bool is_pow2(std::size_t x) noexcept { return x != 0 && (x & (x - 1)) == 0; }

/// Rounds `n` up to a multiple of `align`. Precondition: is_pow2(align), no overflow.
[[nodiscard]] constexpr std::size_t align_up(std::size_t n, std::size_t align) noexcept {
    return (n + align - 1) & ~(align - 1);
}

/// Rounds `n` down to a multiple of `align`. Precondition: is_pow2(align).
[[nodiscard]] constexpr std::size_t align_down(std::size_t n, std::size_t align) noexcept {
    return n & ~(align - 1);
}

/// True if `n` is a multiple of `align`. Precondition: is_pow2(align).
[[nodiscard]] constexpr bool is_aligned(std::size_t n, std::size_t align) noexcept {
    return (n & (align - 1)) == 0;
}

/// True if the address `p` is a multiple of `align`. Precondition: is_pow2(align).
[[nodiscard]] inline bool is_aligned(const void* p, std::size_t align) noexcept {
    return (reinterpret_cast<std::uintptr_t>(p) & (align - 1)) == 0;
}

/// Rounds a pointer up to `align`. Precondition: is_pow2(align), no wrap-around.
template <class T>
[[nodiscard]] inline T* align_up(T* p, std::size_t align) noexcept {
    const auto v = reinterpret_cast<std::uintptr_t>(p);
    return reinterpret_cast<T*>((v + align - 1) & ~static_cast<std::uintptr_t>(align - 1));
}

/// Bytes needed to move `p` up to the next multiple of `align`.
[[nodiscard]] inline std::size_t align_padding(const void* p, std::size_t align) noexcept {
    return static_cast<std::size_t>(-reinterpret_cast<std::uintptr_t>(p)) & (align - 1);
}

/// Overflow-checked align_up: stores the result in `out` and returns true, or returns false if
/// the result does not fit in size_t or `align` is not a power of two.
[[nodiscard]] constexpr bool checked_align_up(std::size_t n, std::size_t align,
                                              std::size_t& out) noexcept {
    if (!is_pow2(align) || n > std::numeric_limits<std::size_t>::max() - (align - 1)) return false;
    out = align_up(n, align);
    return true;
}

/// Overflow-checked multiplication (for `count * sizeof(T)`): false on overflow.
[[nodiscard]] constexpr bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) noexcept {
    return !__builtin_mul_overflow(a, b, &out);
}

/// Overflow-checked addition: false on overflow.
[[nodiscard]] constexpr bool checked_add(std::size_t a, std::size_t b, std::size_t& out) noexcept {
    return !__builtin_add_overflow(a, b, &out);
}

/// Smallest power of two >= n (n = 0 gives 1). Precondition: the result fits in size_t.
[[nodiscard]] constexpr std::size_t next_pow2(std::size_t n) noexcept {
    if (n <= 1) return 1;
    return std::size_t{1} << (std::numeric_limits<std::size_t>::digits - __builtin_clzll(n - 1));
}

} // namespace memkit
