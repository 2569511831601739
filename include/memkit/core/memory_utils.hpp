// memkit/core/memory_utils.hpp - byte-level helpers used by allocators, tests and debug tools.
//
// `secure_zero` clears secrets in a way the optimizer cannot remove (a dead-store memset can be
// deleted; this one cannot). `fill_pattern`/`verify_pattern` write and check a position-dependent
// byte pattern, so a test or a debug allocator detects both overwritten and shifted bytes.
// `is_all_zero` checks a range quickly (word at a time).
//
// Thread-safety: pure functions over caller memory.
//
//   memkit::fill_pattern(p, n, 0xA5);
//   assert(memkit::verify_pattern(p, n, 0xA5) == nullptr);  // nullptr: intact
//   memkit::secure_zero(key, sizeof key);
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace memkit {

/// Sets `n` bytes at `p` to zero; never optimized away.
void secure_zero(void* p, std::size_t n) noexcept;

/// Writes the byte pattern `seed + i * 31` (mod 256) at offset i.
inline void fill_pattern(void* p, std::size_t n, std::uint8_t seed) noexcept {
    auto* b = static_cast<std::uint8_t*>(p);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 31u);
}

/// Returns nullptr if the `n` bytes at `p` hold the pattern written by fill_pattern(p, n, seed),
/// else the address of the first byte that differs.
[[nodiscard]] inline const void* verify_pattern(const void* p, std::size_t n,
                                                std::uint8_t seed) noexcept {
    const auto* b = static_cast<const std::uint8_t*>(p);
    for (std::size_t i = 0; i < n; ++i)
        if (b[i] != static_cast<std::uint8_t>(seed + i * 31u)) return b + i;
    return nullptr;
}

/// Sets every byte to `value` (a constant fill, e.g. a debug "freed" marker).
inline void fill_bytes(void* p, std::size_t n, std::uint8_t value) noexcept { std::memset(p, value, n); }

/// True if every byte in [p, p + n) equals `value`.
[[nodiscard]] bool all_bytes_equal(const void* p, std::size_t n, std::uint8_t value) noexcept;

/// True if every byte in [p, p + n) is zero.
[[nodiscard]] inline bool is_all_zero(const void* p, std::size_t n) noexcept {
    return all_bytes_equal(p, n, 0);
}

} // namespace memkit
