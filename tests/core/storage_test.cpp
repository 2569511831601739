#include "memkit/core/storage.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "memkit/core/align.hpp"

namespace {

using memkit::aligned_buffer;
using memkit::uninitialized;

static_assert(sizeof(aligned_buffer<1, 1>) == 1);
static_assert(alignof(aligned_buffer<1, 1>) == 1);
static_assert(sizeof(aligned_buffer<24>) == 32); // rounded to the default max_align_t
static_assert(alignof(aligned_buffer<24>) == alignof(std::max_align_t));
static_assert(sizeof(aligned_buffer<100, 64>) == 128);
static_assert(alignof(aligned_buffer<100, 64>) == 64);
static_assert(alignof(aligned_buffer<8, 4096>) == 4096);
static_assert(aligned_buffer<100, 64>::size() == 100);
static_assert(aligned_buffer<100, 64>::alignment() == 64);
static_assert(std::is_trivially_default_constructible_v<aligned_buffer<64>>);
static_assert(std::is_trivially_copyable_v<aligned_buffer<64>>);
static_assert(std::is_standard_layout_v<aligned_buffer<64>>);

static_assert(sizeof(uninitialized<std::string>) == sizeof(std::string));
static_assert(alignof(uninitialized<std::string>) == alignof(std::string));
static_assert(sizeof(uninitialized<char>) == 1);
static_assert(alignof(uninitialized<long double>) == alignof(long double));
static_assert(!std::is_copy_constructible_v<uninitialized<int>>);
static_assert(!std::is_copy_assignable_v<uninitialized<int>>);
static_assert(std::is_nothrow_default_constructible_v<uninitialized<std::string>>);
// The destructor never runs T's destructor, so it is trivial even for non-trivial T.
static_assert(std::is_trivially_destructible_v<uninitialized<std::string>>);

// Counts constructions and destructions so tests see exactly what emplace/destroy did.
struct counted {
    static inline int constructed = 0;
    static inline int destroyed = 0;
    int a;
    std::string b;
    counted(int x, std::string y) : a(x), b(std::move(y)) { ++constructed; }
    counted(const counted&) = delete;
    ~counted() { ++destroyed; }
};

// A type whose destructor is observable and that owns no resources, so skipping its destructor
// leaks nothing.
struct tracked {
    static inline int destroyed = 0;
    int value;
    explicit tracked(int v) : value(v) {}
    ~tracked() { ++destroyed; }
};

struct alignas(128) over_aligned {
    unsigned char bytes[3];
};

TEST(AlignedBuffer, DataIsAlignedAndTyped) {
    aligned_buffer<256, 64> buf;
    EXPECT_TRUE(memkit::is_aligned(buf.data(), 64));
    EXPECT_EQ(buf.data(), static_cast<void*>(buf.bytes));
    const auto& cbuf = buf;
    EXPECT_EQ(cbuf.data(), static_cast<const void*>(buf.bytes));

    auto* values = new (buf.data()) std::uint64_t[4]{1, 2, 3, 4};
    EXPECT_EQ(buf.as<std::uint64_t>(), values);
    EXPECT_EQ(*buf.as<std::uint64_t>(), 1u);
    EXPECT_EQ(*cbuf.as<std::uint64_t>(), 1u);
    static_assert(std::is_same_v<decltype(cbuf.as<int>()), const int*>);

    aligned_buffer<sizeof(over_aligned), alignof(over_aligned)> big;
    EXPECT_TRUE(memkit::is_aligned(big.data(), 128));
}

TEST(Uninitialized, EmplaceAndDestroyRunExactlyOnce) {
    counted::constructed = counted::destroyed = 0;
    {
        uninitialized<counted> slot;
        EXPECT_EQ(counted::constructed, 0); // no construction until emplace
        counted& c = slot.emplace(42, "hello");
        EXPECT_EQ(counted::constructed, 1);
        EXPECT_EQ(&c, slot.get());
        EXPECT_EQ(c.a, 42);
        EXPECT_EQ(slot->b, "hello");
        EXPECT_EQ((*slot).a, 42);
        const auto& cs = slot;
        EXPECT_EQ(cs->a, 42);
        EXPECT_EQ((*cs).b, "hello");
        EXPECT_EQ(cs.get(), slot.get());
        slot.destroy();
        EXPECT_EQ(counted::destroyed, 1);

        // The same storage takes a new object.
        slot.emplace(7, "again");
        EXPECT_EQ(counted::constructed, 2);
        EXPECT_EQ(slot->a, 7);
        slot.destroy();
    }
    EXPECT_EQ(counted::destroyed, 2);
}

TEST(Uninitialized, DestructorDoesNotDestroyTheObject) {
    tracked::destroyed = 0;
    {
        uninitialized<tracked> slot;
        EXPECT_EQ(slot.emplace(5).value, 5);
    }
    EXPECT_EQ(tracked::destroyed, 0);
    {
        uninitialized<tracked> slot;
        slot.emplace(6);
        slot.destroy();
    }
    EXPECT_EQ(tracked::destroyed, 1);
}

TEST(Uninitialized, StorageIsAlignedForT) {
    uninitialized<over_aligned> a;
    EXPECT_TRUE(memkit::is_aligned(a.get(), 128));
    a.emplace();
    a->bytes[2] = 9;
    EXPECT_EQ(a->bytes[2], 9);
    a.destroy();
    static_assert(noexcept(a.emplace()));
    uninitialized<counted> c;
    static_assert(!noexcept(c.emplace(1, std::string())));
}

} // namespace
