#include "memkit/core/error.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

namespace {

using memkit::errc;

static_assert(std::is_error_code_enum_v<errc>);
static_assert(static_cast<int>(errc::out_of_memory) == 1);
static_assert(static_cast<int>(errc::invalid_alignment) == 2);
static_assert(static_cast<int>(errc::bad_size) == 3);
static_assert(static_cast<int>(errc::not_owned) == 4);
static_assert(static_cast<int>(errc::double_free) == 5);
static_assert(static_cast<int>(errc::lifo_violation) == 6);
static_assert(static_cast<int>(errc::limit_exceeded) == 7);
static_assert(static_cast<int>(errc::invalid_argument) == 8);
static_assert(static_cast<int>(errc::budget_exceeded) == 9);
static_assert(static_cast<int>(errc::corruption_detected) == 10);
static_assert(static_cast<int>(errc::still_in_use) == 11);

static_assert(std::is_base_of_v<std::bad_alloc, memkit::out_of_memory>);
static_assert(std::is_nothrow_copy_constructible_v<memkit::out_of_memory>);
static_assert(std::is_nothrow_copy_assignable_v<memkit::out_of_memory>);
static_assert(std::is_base_of_v<std::invalid_argument, memkit::invalid_alignment>);
static_assert(std::is_base_of_v<std::invalid_argument, memkit::bad_size>);
static_assert(std::is_nothrow_copy_constructible_v<memkit::invalid_alignment>);
static_assert(std::is_nothrow_copy_constructible_v<memkit::bad_size>);

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

TEST(ErrorCategory, NameAndMessages) {
    const std::error_category& c = memkit::error_category();
    EXPECT_STREQ(c.name(), "memkit");
    EXPECT_EQ(&c, &memkit::error_category()); // a single instance
    EXPECT_EQ(c.message(1), "out of memory");
    EXPECT_EQ(c.message(2), "invalid alignment");
    EXPECT_EQ(c.message(3), "bad size");
    EXPECT_EQ(c.message(4), "pointer not owned by this allocator");
    EXPECT_EQ(c.message(5), "double free");
    EXPECT_EQ(c.message(6), "deallocation out of LIFO order");
    EXPECT_EQ(c.message(7), "limit exceeded");
    EXPECT_EQ(c.message(8), "invalid argument");
    EXPECT_EQ(c.message(0), "unknown memkit error");
    EXPECT_EQ(c.message(999), "unknown memkit error");
}

TEST(ErrorCode, MakeAndCompare) {
    const std::error_code ec = memkit::make_error_code(errc::lifo_violation);
    EXPECT_EQ(ec.value(), 6);
    EXPECT_EQ(&ec.category(), &memkit::error_category());
    EXPECT_EQ(ec.message(), "deallocation out of LIFO order");
    EXPECT_TRUE(static_cast<bool>(ec));

    std::error_code implicit = errc::limit_exceeded; // errc converts implicitly
    EXPECT_EQ(implicit, errc::limit_exceeded);
    EXPECT_NE(implicit, errc::out_of_memory);
    EXPECT_EQ(implicit, memkit::make_error_code(errc::limit_exceeded));
    implicit = errc::bad_size;
    EXPECT_EQ(implicit.value(), 3);

    // Same value, different category: not equal.
    const std::error_code generic{2, std::generic_category()};
    EXPECT_EQ(std::error_code(errc::invalid_alignment).value(), generic.value());
    EXPECT_NE(std::error_code(errc::invalid_alignment), generic);
    EXPECT_NE(std::error_code(errc::out_of_memory),
              std::make_error_code(std::errc::not_enough_memory));
    EXPECT_FALSE(static_cast<bool>(std::error_code{}));
}

TEST(OutOfMemory, FieldsAndMessage) {
    const memkit::out_of_memory e{"memkit::arena", 100, 20, 4076, 4096};
    EXPECT_STREQ(e.allocator(), "memkit::arena");
    EXPECT_EQ(e.requested(), 100u);
    EXPECT_EQ(e.available(), 20u);
    EXPECT_EQ(e.used(), 4076u);
    EXPECT_EQ(e.capacity(), 4096u);
    EXPECT_EQ(e.code(), errc::out_of_memory);
    EXPECT_STREQ(e.what(), "memkit::arena: out of memory (requested 100 bytes, available 20, "
                           "used 4076, capacity 4096)");
}

TEST(OutOfMemory, UnknownFieldsAndDefaults) {
    const memkit::out_of_memory e{"memkit::system_allocator", 64};
    EXPECT_EQ(e.available(), memkit::out_of_memory::unknown);
    EXPECT_EQ(e.used(), memkit::out_of_memory::unknown);
    EXPECT_EQ(e.capacity(), memkit::out_of_memory::unknown);
    EXPECT_STREQ(e.what(), "memkit::system_allocator: out of memory (requested 64 bytes, "
                           "available ?, used ?, capacity ?)");
    const memkit::out_of_memory anon{nullptr, 1, 0, 0, 0};
    EXPECT_STREQ(anon.allocator(), "memkit");
    EXPECT_TRUE(contains(anon.what(), "memkit: out of memory"));
}

TEST(OutOfMemory, CopiesAndCatchesAsBadAlloc) {
    try {
        throw memkit::out_of_memory("test::alloc", 7, 1, 2, 3);
    } catch (const std::bad_alloc& e) {
        EXPECT_TRUE(contains(e.what(), "test::alloc"));
        const auto* oom = dynamic_cast<const memkit::out_of_memory*>(&e);
        ASSERT_NE(oom, nullptr);
        const memkit::out_of_memory copy = *oom;
        EXPECT_STREQ(copy.what(), oom->what());
        EXPECT_NE(copy.what(), oom->what()); // the message lives inside each object
        EXPECT_EQ(copy.requested(), 7u);
        EXPECT_EQ(copy.capacity(), 3u);
    }
}

TEST(OutOfMemory, LongNamesAreTruncatedSafely) {
    const std::string name(1000, 'x');
    const memkit::out_of_memory e{name.c_str(), 1};
    EXPECT_LT(std::strlen(e.what()), 224u);
    EXPECT_TRUE(contains(e.what(), "xxxx"));
}

TEST(InvalidAlignment, FieldsAndMessage) {
    const memkit::invalid_alignment not_pow2{"memkit::pool", 3, 64};
    EXPECT_EQ(not_pow2.alignment(), 3u);
    EXPECT_EQ(not_pow2.max_alignment(), 64u);
    EXPECT_EQ(not_pow2.code(), errc::invalid_alignment);
    EXPECT_STREQ(not_pow2.what(), "memkit::pool: invalid alignment 3 (not a power of two)");

    const memkit::invalid_alignment zero{"memkit::pool", 0, 64};
    EXPECT_STREQ(zero.what(), "memkit::pool: invalid alignment 0 (not a power of two)");

    const memkit::invalid_alignment too_big{"memkit::stack_allocator", 8192, 4096};
    EXPECT_STREQ(too_big.what(),
                 "memkit::stack_allocator: invalid alignment 8192 (maximum supported is 4096)");
    const std::invalid_argument& base = too_big;
    EXPECT_STREQ(base.what(), too_big.what());
}

TEST(BadSize, FieldsAndMessage) {
    const memkit::bad_size zero{"memkit::arena", 0, 1000};
    EXPECT_EQ(zero.size(), 0u);
    EXPECT_EQ(zero.max_size(), 1000u);
    EXPECT_EQ(zero.code(), errc::bad_size);
    EXPECT_STREQ(zero.what(), "memkit::arena: bad size 0 (zero-size request)");

    const memkit::bad_size big{"memkit::pool", 65, 64};
    EXPECT_STREQ(big.what(), "memkit::pool: bad size 65 (maximum is 64)");
}

TEST(ThrowBadRequest, PicksTheMatchingType) {
    // A bad alignment wins over a bad size.
    EXPECT_THROW(memkit::throw_bad_request("a", 0, 3, 100, 64), memkit::invalid_alignment);
    EXPECT_THROW(memkit::throw_bad_request("a", 8, 0, 100, 64), memkit::invalid_alignment);
    EXPECT_THROW(memkit::throw_bad_request("a", 8, 128, 100, 64), memkit::invalid_alignment);
    EXPECT_THROW(memkit::throw_bad_request("a", 0, 8, 100, 64), memkit::bad_size);
    EXPECT_THROW(memkit::throw_bad_request("a", 101, 8, 100, 64), memkit::bad_size);
    try {
        memkit::throw_bad_request("memkit::x", 500, 16, 100, 64);
    } catch (const memkit::bad_size& e) {
        EXPECT_EQ(e.size(), 500u);
        EXPECT_EQ(e.max_size(), 100u);
        EXPECT_TRUE(contains(e.what(), "memkit::x"));
    }
    try {
        memkit::throw_bad_request("memkit::y", 8, 6, 100, 64);
    } catch (const memkit::invalid_alignment& e) {
        EXPECT_EQ(e.alignment(), 6u);
        EXPECT_EQ(e.max_alignment(), 64u);
        EXPECT_TRUE(contains(e.what(), "memkit::y"));
    }
}

memkit::violation g_seen{};
int g_calls = 0;
void record_a(const memkit::violation& v) {
    g_seen = v;
    ++g_calls;
}
void record_b(const memkit::violation&) { g_calls += 100; }

TEST(ViolationHandler, SetReturnsPreviousAndNullRestoresDefault) {
    const memkit::violation_handler original = memkit::set_violation_handler(&record_a);
    ASSERT_NE(original, nullptr);
    EXPECT_EQ(memkit::set_violation_handler(&record_b), &record_a);
    EXPECT_EQ(memkit::set_violation_handler(&record_a), &record_b);

    int x = 0;
    g_calls = 0;
    memkit::report_violation({errc::double_free, "test::alloc", &x, "freed twice"});
    EXPECT_EQ(g_calls, 1);
    EXPECT_EQ(g_seen.code, errc::double_free);
    EXPECT_STREQ(g_seen.allocator, "test::alloc");
    EXPECT_EQ(g_seen.pointer, &x);
    EXPECT_STREQ(g_seen.detail, "freed twice");

    // nullptr installs the default again: the next exchange hands back the original handler.
    EXPECT_EQ(memkit::set_violation_handler(nullptr), &record_a);
    EXPECT_EQ(memkit::set_violation_handler(&record_b), original);
    EXPECT_EQ(memkit::set_violation_handler(original), &record_b);
}

TEST(ViolationHandlerDeathTest, DefaultHandlerPrintsAndAborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    memkit::set_violation_handler(nullptr);
    int x = 0;
    EXPECT_DEATH(memkit::report_violation(
                     {errc::lifo_violation, "memkit::stack_allocator", &x, "not the top block"}),
                 "memkit: memkit::stack_allocator: deallocation out of LIFO order \\(pointer "
                 ".*\\): not the top block");
    EXPECT_DEATH(memkit::report_violation({errc::not_owned, "memkit::pool", nullptr, nullptr}),
                 "memkit: memkit::pool: pointer not owned by this allocator \\(pointer .*\\)");
}

} // namespace

namespace {

TEST(BudgetExceeded, IsAnOutOfMemoryWithItsOwnCode) {
    const memkit::budget_exceeded e("memkit::budgeted", 100, 40, 960, 1000);
    const memkit::out_of_memory& base = e;
    const std::bad_alloc& bad = e;
    EXPECT_EQ(e.requested(), 100u);
    EXPECT_EQ(e.remaining(), 40u);
    EXPECT_EQ(e.available(), 40u);
    EXPECT_EQ(e.used(), 960u);
    EXPECT_EQ(e.limit(), 1000u);
    EXPECT_EQ(base.code(), memkit::errc::budget_exceeded) << "code() is virtual";
    EXPECT_STREQ(bad.what(), e.what());
    const std::string what = e.what();
    EXPECT_NE(what.find("memkit::budgeted"), std::string::npos);
    EXPECT_NE(what.find("budget exceeded"), std::string::npos);
    EXPECT_NE(what.find("remaining 40 of 1000"), std::string::npos);
    static_assert(std::is_nothrow_copy_constructible_v<memkit::budget_exceeded>);
}

TEST(CorruptionDetected, CarriesTheAddress) {
    int x = 0;
    const memkit::corruption_detected e("memkit::tlsf_heap", &x, "broken boundary tag");
    EXPECT_EQ(e.address(), &x);
    EXPECT_EQ(e.code(), memkit::errc::corruption_detected);
    const std::string what = e.what();
    EXPECT_NE(what.find("memkit::tlsf_heap"), std::string::npos);
    EXPECT_NE(what.find("broken boundary tag"), std::string::npos);
    EXPECT_EQ(memkit::make_error_code(memkit::errc::corruption_detected).message(),
              "heap corruption detected");
    EXPECT_EQ(memkit::make_error_code(memkit::errc::budget_exceeded).message(), "budget exceeded");
    EXPECT_EQ(memkit::make_error_code(memkit::errc::still_in_use).message(), "still in use");
}

} // namespace
