#include "memkit/core/memory_utils.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

TEST(Pattern, FillWritesThePositionDependentBytes) {
    std::array<std::uint8_t, 300> buf{};
    memkit::fill_pattern(buf.data(), buf.size(), 0xA5);
    for (std::size_t i = 0; i < buf.size(); ++i)
        ASSERT_EQ(buf[i], static_cast<std::uint8_t>(0xA5 + i * 31u)) << i;
    EXPECT_EQ(memkit::verify_pattern(buf.data(), buf.size(), 0xA5), nullptr);
    // Neighbouring bytes differ, so a shifted copy of the pattern does not verify.
    EXPECT_NE(memkit::verify_pattern(buf.data() + 1, buf.size() - 1, 0xA5), nullptr);
    EXPECT_NE(memkit::verify_pattern(buf.data(), buf.size(), 0xA6), nullptr);
}

TEST(Pattern, VerifyReturnsTheFirstChangedByte) {
    std::vector<std::uint8_t> buf(257);
    for (std::size_t at = 0; at < buf.size(); at += 17) {
        memkit::fill_pattern(buf.data(), buf.size(), 7);
        buf[at] ^= 0x01;
        EXPECT_EQ(memkit::verify_pattern(buf.data(), buf.size(), 7), buf.data() + at);
        buf[buf.size() - 1] ^= 0x80; // a later change does not hide the first one
        EXPECT_EQ(memkit::verify_pattern(buf.data(), buf.size(), 7), buf.data() + at);
    }
    memkit::fill_pattern(buf.data(), buf.size(), 7);
    buf.back() = static_cast<std::uint8_t>(buf.back() + 1);
    EXPECT_EQ(memkit::verify_pattern(buf.data(), buf.size(), 7), buf.data() + buf.size() - 1);
    EXPECT_EQ(memkit::verify_pattern(buf.data(), buf.size() - 1, 7), nullptr);
}

TEST(Pattern, EmptyRangesVerify) {
    std::uint8_t b = 0;
    memkit::fill_pattern(&b, 0, 1);
    EXPECT_EQ(b, 0);
    EXPECT_EQ(memkit::verify_pattern(&b, 0, 1), nullptr);
}

TEST(FillBytes, SetsEveryByte) {
    std::array<std::uint8_t, 40> buf{};
    memkit::fill_bytes(buf.data() + 3, 30, 0xDD);
    for (std::size_t i = 0; i < buf.size(); ++i)
        EXPECT_EQ(buf[i], (i >= 3 && i < 33) ? 0xDD : 0x00) << i;
}

// Every start offset within a word and every length 0..40, so the byte-wise head, the word loop
// and the byte-wise tail are all exercised, with a differing byte at every position.
TEST(AllBytesEqual, EveryHeadAndTail) {
    alignas(16) std::array<std::uint8_t, 64> buf;
    for (std::uint8_t value : {std::uint8_t{0x00}, std::uint8_t{0x5A}, std::uint8_t{0xFF}}) {
        for (std::size_t offset = 0; offset < 8; ++offset) {
            for (std::size_t len = 0; len <= 40; ++len) {
                buf.fill(static_cast<std::uint8_t>(~value)); // outside the range differs
                std::memset(buf.data() + offset, value, len);
                const std::uint8_t* p = buf.data() + offset;
                ASSERT_TRUE(memkit::all_bytes_equal(p, len, value)) << offset << " " << len;
                EXPECT_EQ(memkit::is_all_zero(p, len), value == 0 || len == 0);
                for (std::size_t bad = 0; bad < len; ++bad) {
                    buf[offset + bad] = static_cast<std::uint8_t>(value ^ 0x10);
                    ASSERT_FALSE(memkit::all_bytes_equal(p, len, value))
                        << "offset " << offset << " len " << len << " bad " << bad;
                    buf[offset + bad] = value;
                }
            }
        }
    }
}

TEST(AllBytesEqual, LargeRanges) {
    std::vector<std::uint8_t> buf(1 << 16, 0);
    EXPECT_TRUE(memkit::is_all_zero(buf.data(), buf.size()));
    buf[40000] = 1;
    EXPECT_FALSE(memkit::is_all_zero(buf.data(), buf.size()));
    EXPECT_TRUE(memkit::is_all_zero(buf.data(), 40000));
    EXPECT_TRUE(memkit::is_all_zero(buf.data() + 40001, buf.size() - 40001));
}

TEST(SecureZero, ClearsExactlyTheRange) {
    std::array<std::uint8_t, 64> secret;
    secret.fill(0xAB);
    memkit::secure_zero(secret.data() + 8, 40);
    EXPECT_TRUE(memkit::is_all_zero(secret.data() + 8, 40));
    EXPECT_TRUE(memkit::all_bytes_equal(secret.data(), 8, 0xAB));
    EXPECT_TRUE(memkit::all_bytes_equal(secret.data() + 48, 16, 0xAB));
    memkit::secure_zero(secret.data(), 0);
    EXPECT_EQ(secret[0], 0xAB);
}

TEST(SecureZero, ClearsHeapMemoryBeforeItIsFreed) {
    // The classic case a plain memset may lose: clearing a buffer that is freed right after.
    auto* heap = new std::uint8_t[128];
    std::memset(heap, 0x77, 128);
    memkit::secure_zero(heap, 128);
    EXPECT_TRUE(memkit::is_all_zero(heap, 128));
    delete[] heap;
}

} // namespace
