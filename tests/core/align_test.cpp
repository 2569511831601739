#include "memkit/core/align.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <limits>

namespace {

constexpr std::size_t max = std::numeric_limits<std::size_t>::max();

// Everything is usable in constant expressions.
static_assert(!memkit::is_pow2(0));
static_assert(memkit::is_pow2(1) && memkit::is_pow2(2) && memkit::is_pow2(4096));
static_assert(!memkit::is_pow2(3) && !memkit::is_pow2(6) && !memkit::is_pow2(4097));
static_assert(memkit::is_pow2(std::size_t{1} << 63) && !memkit::is_pow2(max));

static_assert(memkit::align_up(0, 8) == 0);
static_assert(memkit::align_up(1, 8) == 8);
static_assert(memkit::align_up(8, 8) == 8);
static_assert(memkit::align_up(13, 8) == 16);
static_assert(memkit::align_up(13, 1) == 13);
static_assert(memkit::align_up(4097, 4096) == 8192);

static_assert(memkit::align_down(0, 8) == 0);
static_assert(memkit::align_down(15, 8) == 8);
static_assert(memkit::align_down(16, 8) == 16);
static_assert(memkit::align_down(max, 4096) == max - 4095);

static_assert(memkit::is_aligned(std::size_t{0}, 64));
static_assert(memkit::is_aligned(std::size_t{128}, 64));
static_assert(!memkit::is_aligned(std::size_t{96}, 64));
static_assert(memkit::is_aligned(std::size_t{7}, 1));

static_assert(memkit::next_pow2(0) == 1);
static_assert(memkit::next_pow2(1) == 1);
static_assert(memkit::next_pow2(2) == 2);
static_assert(memkit::next_pow2(3) == 4);
static_assert(memkit::next_pow2(4097) == 8192);
static_assert(memkit::next_pow2((std::size_t{1} << 63) - 1) == std::size_t{1} << 63);
static_assert(memkit::next_pow2(std::size_t{1} << 63) == std::size_t{1} << 63);

constexpr std::size_t checked_align(std::size_t n, std::size_t a) {
    std::size_t out = 0;
    return memkit::checked_align_up(n, a, out) ? out : 0;
}
static_assert(checked_align(13, 8) == 16);
static_assert(checked_align(max - 7, 8) == max - 7);
static_assert(checked_align(max - 6, 8) == 0); // would overflow
static_assert(checked_align(13, 6) == 0);      // not a power of two

constexpr std::size_t checked_product(std::size_t a, std::size_t b) {
    std::size_t out = 0;
    return memkit::checked_mul(a, b, out) ? out : 0;
}
static_assert(checked_product(6, 7) == 42);
static_assert(checked_product(max, 1) == max);
static_assert(checked_product(max, 2) == 0);

constexpr std::size_t checked_sum(std::size_t a, std::size_t b) {
    std::size_t out = 0;
    return memkit::checked_add(a, b, out) ? out : 0;
}
static_assert(checked_sum(40, 2) == 42);
static_assert(checked_sum(max, 0) == max);
static_assert(checked_sum(max, 1) == 0);

TEST(Align, CheckedAlignUpOverflowAndResult) {
    std::size_t out = 123;
    EXPECT_TRUE(memkit::checked_align_up(0, 64, out));
    EXPECT_EQ(out, 0u);
    EXPECT_TRUE(memkit::checked_align_up(65, 64, out));
    EXPECT_EQ(out, 128u);
    EXPECT_TRUE(memkit::checked_align_up(max, 1, out));
    EXPECT_EQ(out, max);
    EXPECT_TRUE(memkit::checked_align_up(max - 4095, 4096, out));
    EXPECT_EQ(out, max - 4095);

    out = 5;
    EXPECT_FALSE(memkit::checked_align_up(max - 4094, 4096, out));
    EXPECT_FALSE(memkit::checked_align_up(max, 2, out));
    EXPECT_FALSE(memkit::checked_align_up(1, (std::size_t{1} << 63) | 1, out));
    EXPECT_FALSE(memkit::checked_align_up(8, 0, out));
    EXPECT_FALSE(memkit::checked_align_up(8, 12, out));
    EXPECT_EQ(out, 5u); // untouched on failure
}

TEST(Align, CheckedMulAndAdd) {
    std::size_t out = 0;
    EXPECT_TRUE(memkit::checked_mul(0, max, out));
    EXPECT_EQ(out, 0u);
    EXPECT_TRUE(memkit::checked_mul(std::size_t{1} << 32, (std::size_t{1} << 31) - 1, out));
    EXPECT_EQ(out, (std::size_t{1} << 63) - (std::size_t{1} << 32));
    EXPECT_FALSE(memkit::checked_mul(std::size_t{1} << 32, std::size_t{1} << 32, out));
    EXPECT_FALSE(memkit::checked_mul(max / 3 + 1, 3, out));
    EXPECT_TRUE(memkit::checked_mul(max / 3, 3, out));
    EXPECT_EQ(out, max / 3 * 3);

    EXPECT_TRUE(memkit::checked_add(max - 10, 10, out));
    EXPECT_EQ(out, max);
    EXPECT_FALSE(memkit::checked_add(max - 10, 11, out));
    EXPECT_FALSE(memkit::checked_add(max, max, out));
}

TEST(Align, NextPow2) {
    for (unsigned k = 1; k < 63; ++k) {
        const std::size_t p = std::size_t{1} << k;
        EXPECT_EQ(memkit::next_pow2(p), p);
        EXPECT_EQ(memkit::next_pow2(p - 1), k == 1 ? 1u : p);
        EXPECT_EQ(memkit::next_pow2(p + 1), p << 1);
    }
    for (std::size_t n = 1; n < 5000; ++n) {
        const std::size_t p = memkit::next_pow2(n);
        EXPECT_TRUE(memkit::is_pow2(p));
        EXPECT_GE(p, n);
        EXPECT_LT(p / 2, n);
    }
}

TEST(Align, PointerAlignUpAndPadding) {
    alignas(4096) static unsigned char buf[8192];
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t off = 0; off <= 130; ++off) {
            unsigned char* p = buf + off;
            unsigned char* q = memkit::align_up(p, align);
            const std::size_t pad = memkit::align_padding(p, align);
            EXPECT_EQ(q, p + pad);
            EXPECT_TRUE(memkit::is_aligned(q, align));
            EXPECT_LT(pad, align);
            EXPECT_EQ(pad, memkit::align_up(off, align) - off);
            EXPECT_EQ(memkit::is_aligned(p, align), pad == 0);
        }
    }
    // Const and typed pointers keep their type.
    const int* cp = reinterpret_cast<const int*>(buf + 4);
    const int* aligned = memkit::align_up(cp, 64);
    EXPECT_EQ(reinterpret_cast<const unsigned char*>(aligned), buf + 64);
    EXPECT_EQ(memkit::align_up(static_cast<void*>(buf), 4096), static_cast<void*>(buf));
    EXPECT_EQ(memkit::align_padding(nullptr, 64), 0u);
}

TEST(Align, RuntimeValuesMatchTheDefinition) {
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t n = 0; n < 3 * align + 3; n += 1 + align / 16) {
            const std::size_t up = memkit::align_up(n, align);
            const std::size_t down = memkit::align_down(n, align);
            EXPECT_EQ(up % align, 0u);
            EXPECT_EQ(down % align, 0u);
            EXPECT_TRUE(up >= n && up - n < align);
            EXPECT_TRUE(down <= n && n - down < align);
            EXPECT_EQ(memkit::is_aligned(n, align), n % align == 0);
        }
    }
}

} // namespace
