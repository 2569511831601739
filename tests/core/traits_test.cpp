// Tests of core/concepts.hpp and core/traits.hpp: the allocator concepts, allocator_traits'
// detection and defaults, and allocator_ref.
#include "memkit/core/traits.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "memkit/core/concepts.hpp"
#include "memkit/core/stats.hpp"

namespace {

// --- hand-written types for the concepts -----------------------------------------------------

// The required part only.
struct minimal {
    void* allocate(std::size_t n, std::size_t) { return std::malloc(n); }
    void* try_allocate(std::size_t n, std::size_t) noexcept { return std::malloc(n); }
    void deallocate(void* p, std::size_t, std::size_t) noexcept { std::free(p); }
};

// Every optional member, with non-default constants.
struct full {
    static constexpr bool is_thread_safe = true;
    static constexpr std::size_t max_alignment = 4096;
    std::size_t live = 0;
    int resets = 0;

    void* allocate(std::size_t n, std::size_t) {
        ++live;
        return std::malloc(n);
    }
    void* try_allocate(std::size_t n, std::size_t) noexcept {
        ++live;
        return std::malloc(n);
    }
    void deallocate(void* p, std::size_t, std::size_t) noexcept {
        --live;
        std::free(p);
    }
    bool owns(const void* p) const noexcept { return p == this; }
    void reset() { ++resets; }
    memkit::allocator_stats stats() const noexcept { return {live, 0, 0, 0, 0}; }
    std::size_t max_size() const noexcept { return 1234; }
};

struct try_allocate_may_throw {
    void* allocate(std::size_t, std::size_t);
    void* try_allocate(std::size_t, std::size_t); // not noexcept
    void deallocate(void*, std::size_t, std::size_t) noexcept;
};
struct deallocate_may_throw {
    void* allocate(std::size_t, std::size_t);
    void* try_allocate(std::size_t, std::size_t) noexcept;
    void deallocate(void*, std::size_t, std::size_t); // not noexcept
};
struct returns_typed_pointer {
    int* allocate(std::size_t, std::size_t);
    void* try_allocate(std::size_t, std::size_t) noexcept;
    void deallocate(void*, std::size_t, std::size_t) noexcept;
};
struct no_try_allocate {
    void* allocate(std::size_t, std::size_t);
    void deallocate(void*, std::size_t, std::size_t) noexcept;
};
struct no_deallocate {
    void* allocate(std::size_t, std::size_t);
    void* try_allocate(std::size_t, std::size_t) noexcept;
};
struct unsized_deallocate {
    void* allocate(std::size_t, std::size_t);
    void* try_allocate(std::size_t, std::size_t) noexcept;
    void deallocate(void*) noexcept;
};

// Optional members with the wrong shape.
struct odd_members : minimal {
    static constexpr int is_thread_safe = 1;           // converted to bool
    static constexpr unsigned max_alignment = 64;      // converted to size_t
    int owns(const void*) const noexcept { return 1; } // not bool: not detected
    void reset(int);                                   // needs an argument: not detected
    int stats() const noexcept { return 0; }           // not allocator_stats: not detected
    int max_size() const noexcept { return 99; }       // convertible to size_t: detected
};
struct owns_may_throw : minimal {
    bool owns(const void*) const { return false; }
};
struct mutable_owns : minimal {
    bool owns(const void*) noexcept { return false; } // not const: not detected
};

static_assert(memkit::allocator<minimal>);
static_assert(memkit::allocator<full>);
static_assert(!memkit::allocator<try_allocate_may_throw>);
static_assert(!memkit::allocator<deallocate_may_throw>);
static_assert(!memkit::allocator<returns_typed_pointer>);
static_assert(!memkit::allocator<no_try_allocate>);
static_assert(!memkit::allocator<no_deallocate>);
static_assert(!memkit::allocator<unsized_deallocate>);
static_assert(!memkit::allocator<int>);

static_assert(!memkit::owning_allocator<minimal>);
static_assert(memkit::owning_allocator<full>);
static_assert(!memkit::owning_allocator<owns_may_throw>);
static_assert(!memkit::owning_allocator<odd_members>);
static_assert(!memkit::owning_allocator<mutable_owns>);

using min_traits = memkit::allocator_traits<minimal>;
using full_traits = memkit::allocator_traits<full>;
using odd_traits = memkit::allocator_traits<odd_members>;

static_assert(!min_traits::has_owns && !min_traits::has_reset && !min_traits::has_stats &&
              !min_traits::has_max_size);
static_assert(full_traits::has_owns && full_traits::has_reset && full_traits::has_stats &&
              full_traits::has_max_size);
static_assert(!odd_traits::has_owns && !odd_traits::has_reset && !odd_traits::has_stats);
static_assert(odd_traits::has_max_size);
static_assert(memkit::allocator_traits<owns_may_throw>::has_owns); // detection ignores noexcept
static_assert(!memkit::allocator_traits<mutable_owns>::has_owns);

static_assert(!min_traits::is_thread_safe);
static_assert(min_traits::max_alignment == alignof(std::max_align_t));
static_assert(full_traits::is_thread_safe);
static_assert(full_traits::max_alignment == 4096);
static_assert(odd_traits::is_thread_safe);
static_assert(odd_traits::max_alignment == 64);
static_assert(std::is_same_v<decltype(full_traits::max_alignment), const std::size_t>);

// --- allocator_ref ---------------------------------------------------------------------------

using full_ref = memkit::allocator_ref<full>;
using min_ref = memkit::allocator_ref<minimal>;

static_assert(memkit::allocator<full_ref>);
static_assert(memkit::allocator<min_ref>);
static_assert(memkit::owning_allocator<full_ref>);
static_assert(!memkit::owning_allocator<min_ref>);
static_assert(!memkit::allocator_traits<min_ref>::has_owns);
static_assert(full_ref::is_thread_safe && !min_ref::is_thread_safe);
static_assert(full_ref::max_alignment == 4096);
static_assert(min_ref::max_alignment == alignof(std::max_align_t));
static_assert(std::is_trivially_copyable_v<full_ref>);
static_assert(sizeof(full_ref) == sizeof(void*));
static_assert(std::is_convertible_v<full&, full_ref>); // implicit: it is a handle
static_assert(!std::is_default_constructible_v<full_ref>);

TEST(AllocatorTraits, MaxSizeUsesTheMemberOrFallsBack) {
    const minimal m;
    const full f;
    const odd_members o;
    EXPECT_EQ(min_traits::max_size(m), std::numeric_limits<std::size_t>::max());
    EXPECT_EQ(full_traits::max_size(f), 1234u);
    EXPECT_EQ(odd_traits::max_size(o), 99u);
    static_assert(noexcept(min_traits::max_size(m)));
}

TEST(AllocatorRef, ForwardsToTheReferent) {
    full f;
    full_ref r{f};
    EXPECT_EQ(&r.get(), &f);

    void* p = r.allocate(16, 8);
    EXPECT_EQ(f.live, 1u);
    void* q = r.try_allocate(32, 8);
    EXPECT_EQ(f.live, 2u);
    r.deallocate(p, 16, 8);
    r.deallocate(q, 32, 8);
    EXPECT_EQ(f.live, 0u);

    // Default alignment arguments.
    p = r.allocate(8);
    q = r.try_allocate(8);
    r.deallocate(p, 8);
    r.deallocate(q, 8);
    EXPECT_EQ(f.live, 0u);

    EXPECT_TRUE(r.owns(&f));
    EXPECT_FALSE(r.owns(&r));
    EXPECT_EQ(r.max_size(), 1234u);
}

TEST(AllocatorRef, MaxSizeFallsBackWithoutTheMember) {
    minimal m;
    min_ref r{m};
    EXPECT_EQ(r.max_size(), std::numeric_limits<std::size_t>::max());
    void* p = r.allocate(4, 4);
    r.deallocate(p, 4, 4);
}

TEST(AllocatorRef, CopiesShareTheReferentAndCompareByIt) {
    full a, b;
    full_ref ra{a};
    full_ref ra2 = ra;
    full_ref rb{b};
    EXPECT_TRUE(ra == ra2);
    EXPECT_FALSE(ra == rb);
    EXPECT_TRUE(ra != rb);
    void* p = ra.allocate(8, 8);
    ra2.deallocate(p, 8, 8); // any copy may free what another handed out
    EXPECT_EQ(a.live, 0u);
    EXPECT_EQ(b.live, 0u);
    rb = ra;
    EXPECT_TRUE(rb == ra);
    EXPECT_EQ(&rb.get(), &a);
}

} // namespace
