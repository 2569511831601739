#include "memkit/core/memory_utils.hpp"

#include <cstring>

namespace memkit {

void secure_zero(void* p, std::size_t n) noexcept {
    // A volatile function pointer hides the call from the optimizer, and the empty asm with a
    // memory clobber tells it the zeroed bytes are observed, so the dead store is never removed.
    static void* (*volatile const memset_v)(void*, int, std::size_t) = &std::memset;
    memset_v(p, 0, n);
    asm volatile("" : : "r"(p) : "memory");
}

bool all_bytes_equal(const void* p, std::size_t n, std::uint8_t value) noexcept {
    const auto* b = static_cast<const unsigned char*>(p);
    std::size_t i = 0;
    // Head byte by byte until word aligned, then a word at a time.
    for (; i < n && (reinterpret_cast<std::uintptr_t>(b + i) & (sizeof(std::uint64_t) - 1)); ++i)
        if (b[i] != value) return false;
    const std::uint64_t word = 0x0101010101010101ULL * value;
    for (; i + sizeof(std::uint64_t) <= n; i += sizeof(std::uint64_t)) {
        std::uint64_t w = 0;
        std::memcpy(&w, b + i, sizeof w);
        if (w != word) return false;
    }
    for (; i < n; ++i)
        if (b[i] != value) return false;
    return true;
}

} // namespace memkit
