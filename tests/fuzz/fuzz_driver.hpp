// The shared libFuzzer driver for memkit's allocators.
//
// `memkit::fuzz::run(a, data, size, options)` reads the fuzzer's bytes as a program of allocator
// operations - allocate (size, alignment), deallocate, reallocate, reset - and runs it against
// `a` while a shadow model keeps every live block, its size and the pattern written into it.
// After every few operations and at the end it checks what any correct allocator must satisfy:
// every block is aligned as requested, no two live blocks overlap, every block still holds its
// pattern (nothing else wrote into it), and the allocator's stats agree with the model. A
// violation calls __builtin_trap(), which libFuzzer (and the replay runner) reports as a crash
// with the input that caused it. Optional members (reset, reallocate, stats) are used when the
// allocator has them (memkit::allocator_traits).
//
//   extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
//       memkit::arena a;
//       return memkit::fuzz::run(a, data, size, {.max_size = 8192});
//   }
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/traits.hpp"

namespace memkit::fuzz {

struct options {
    std::size_t max_size = 4096;   ///< largest request size (sizes are 1..max_size)
    std::size_t max_align = 4096;  ///< largest alignment requested (a power of two)
    std::size_t min_align = 1;     ///< smallest alignment requested (a power of two)
    std::size_t max_live = 2048;   ///< allocations beyond this many live blocks are skipped
    bool lifo = false;             ///< frees must be in LIFO order (stack allocators)
    bool use_reset = true;         ///< call reset() when the allocator has it
    /// stats().bytes_in_use equals the sum of the live requested sizes (false for allocators
    /// that count whole nodes or rounded blocks; then only the block counts are compared).
    bool exact_bytes_in_use = true;
    /// stats().allocations - stats().deallocations equals the number of live blocks.
    bool exact_counts = true;
    /// deallocate really frees (false for monotonic allocators: frees are no-ops).
    bool frees_reclaim = true;
};

namespace detail {

[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "memkit fuzz driver: %s\n", what);
    __builtin_trap();
}

struct block {
    unsigned char* p;
    std::size_t size;
    std::size_t align;
    std::uint8_t seed;
};

// Patterns cover the first and the last bytes of a block (up to 64 each), which catches
// overlapping neighbours and stray writes without making large blocks expensive.
inline constexpr std::size_t checked_span = 64;

inline void write(const block& b) {
    const std::size_t head = std::min(b.size, checked_span);
    fill_pattern(b.p, head, b.seed);
    if (b.size > head) {
        const std::size_t tail = std::min(b.size - head, checked_span);
        fill_pattern(b.p + b.size - tail, tail, static_cast<std::uint8_t>(b.seed ^ 0x5a));
    }
}

inline void verify(const block& b, std::size_t size) {
    const std::size_t head = std::min(size, checked_span);
    if (verify_pattern(b.p, head, b.seed) != nullptr) fail("block contents changed (head)");
    if (size == b.size && b.size > head) {
        const std::size_t tail = std::min(b.size - head, checked_span);
        if (verify_pattern(b.p + b.size - tail, tail, static_cast<std::uint8_t>(b.seed ^ 0x5a)) !=
            nullptr)
            fail("block contents changed (tail)");
    }
}

class reader {
public:
    reader(const std::uint8_t* d, std::size_t n) noexcept : d_(d), n_(n) {}
    [[nodiscard]] bool empty() const noexcept { return i_ >= n_; }
    std::uint8_t byte() noexcept { return i_ < n_ ? d_[i_++] : 0; }
    std::uint16_t u16() noexcept {
        const auto lo = byte();
        return static_cast<std::uint16_t>(lo | (byte() << 8));
    }

private:
    const std::uint8_t* d_;
    std::size_t n_;
    std::size_t i_ = 0;
};

} // namespace detail

template <class A>
int run(A& a, const std::uint8_t* data, std::size_t size, const options& o = {}) {
    using traits = allocator_traits<A>;
    using detail::block;
    std::vector<block> live;
    detail::reader in(data, size);
    std::size_t bytes = 0;
    unsigned align_steps = 0;
    for (std::size_t al = o.min_align; al < o.max_align; al *= 2) ++align_steps;

    auto check_all = [&] {
        std::vector<block> sorted = live;
        std::sort(sorted.begin(), sorted.end(),
                  [](const block& x, const block& y) { return x.p < y.p; });
        for (std::size_t i = 0; i < sorted.size(); ++i) {
            detail::verify(sorted[i], sorted[i].size);
            if (i > 0 && sorted[i - 1].p + sorted[i - 1].size > sorted[i].p)
                detail::fail("live blocks overlap");
        }
        if constexpr (traits::has_stats) {
            const auto s = a.stats();
            if (o.exact_bytes_in_use && o.frees_reclaim && s.bytes_in_use != bytes)
                detail::fail("stats().bytes_in_use differs from the live bytes");
            if (o.exact_counts && o.frees_reclaim && s.allocations - s.deallocations != live.size())
                detail::fail("stats() allocations - deallocations differs from the live blocks");
            if (s.peak_bytes < s.bytes_in_use) detail::fail("peak below bytes in use");
        }
    };

    auto free_block = [&](std::size_t i) {
        const block b = live[i];
        detail::verify(b, b.size);
        a.deallocate(b.p, b.size, b.align);
        bytes -= b.size;
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    };

    std::size_t ops = 0;
    while (!in.empty()) {
        const std::uint8_t op = in.byte() % 16;
        if (op < 8) {  // allocate
            const std::size_t sz = 1 + in.u16() % o.max_size;
            const std::size_t al = o.min_align << (in.byte() % (align_steps + 1));
            if (live.size() >= o.max_live) continue;
            void* p = a.try_allocate(sz, al);
            if (p == nullptr) continue;  // a full allocator may refuse; that is not an error
            if (!is_aligned(p, al)) detail::fail("misaligned block");
            block b{static_cast<unsigned char*>(p), sz, al, static_cast<std::uint8_t>(ops * 37)};
            detail::write(b);
            live.push_back(b);
            bytes += sz;
        } else if (op < 13) {  // deallocate
            if (live.empty()) continue;
            const std::size_t pick = in.u16();
            free_block(o.lifo ? live.size() - 1 : pick % live.size());
        } else if (op < 15) {  // reallocate
            if constexpr (traits::has_reallocate) {
                if (live.empty() || o.lifo) continue;
                const std::size_t i = in.u16() % live.size();
                const std::size_t sz = 1 + in.u16() % o.max_size;
                block& b = live[i];
                void* q = nullptr;
                try {
                    q = a.reallocate(b.p, b.size, sz, b.align);
                } catch (...) {
                    detail::verify(b, b.size);  // a failed reallocate leaves the block intact
                    continue;
                }
                if (!is_aligned(q, b.align)) detail::fail("misaligned block after reallocate");
                block moved{static_cast<unsigned char*>(q), sz, b.align, b.seed};
                // The head of the common prefix survived (the old tail may lie past the new end).
                const std::size_t kept = std::min({b.size, sz, detail::checked_span});
                if (verify_pattern(moved.p, kept, b.seed) != nullptr)
                    detail::fail("block contents changed by reallocate");
                bytes = bytes - b.size + sz;
                b = moved;
                detail::write(b);
            }
        } else {  // reset
            if constexpr (traits::has_reset) {
                if (!o.use_reset || in.byte() % 4 != 0) continue;
                a.reset();
                live.clear();
                bytes = 0;
                if constexpr (traits::has_stats) {
                    if (o.exact_bytes_in_use && a.stats().bytes_in_use != 0)
                        detail::fail("bytes in use after reset");
                }
            }
        }
        if (++ops % 32 == 0) check_all();
    }
    check_all();
    while (!live.empty()) free_block(o.lifo ? live.size() - 1 : 0);
    if constexpr (traits::has_stats) {
        if (o.exact_bytes_in_use && o.frees_reclaim && a.stats().bytes_in_use != 0)
            detail::fail("bytes in use after freeing everything");
    }
    return 0;
}

} // namespace memkit::fuzz
