#include "memkit/pmr/std_allocator.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/system.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::arena;
template <class T>
using arena_alloc = memkit::std_allocator<T, arena>;

TEST(StdAllocator, MeetsAllocatorRequirements) {
    using A = arena_alloc<int>;
    using traits = std::allocator_traits<A>;
    static_assert(std::is_same_v<traits::value_type, int>);
    static_assert(std::is_same_v<traits::rebind_alloc<double>, arena_alloc<double>>);
    static_assert(traits::propagate_on_container_copy_assignment::value);
    static_assert(traits::propagate_on_container_move_assignment::value);
    static_assert(traits::propagate_on_container_swap::value);
    static_assert(!traits::is_always_equal::value);
    static_assert(std::is_nothrow_copy_constructible_v<A>);
    arena a;
    A x{a};
    arena_alloc<double> y{x};
    EXPECT_TRUE(x == y);
    EXPECT_EQ(&y.get(), &a);
    arena b;
    EXPECT_TRUE(x != A{b});
}

TEST(StdAllocator, AllocatesAlignedFromTheAllocator) {
    arena a;
    struct alignas(64) wide {
        char c[64];
    };
    memkit::std_allocator<wide, arena> alloc{a};
    wide* p = alloc.allocate(3);
    EXPECT_TRUE(memkit::is_aligned(p, 64));
    EXPECT_TRUE(a.owns(p));
    EXPECT_EQ(a.stats().bytes_in_use, 3 * sizeof(wide));
    alloc.deallocate(p, 3);
    EXPECT_EQ(a.stats().deallocations, 1u);
}

TEST(StdAllocator, OverflowIsBadSize) {
    arena a;
    memkit::std_allocator<std::uint64_t, arena> alloc{a};
    EXPECT_THROW((void)alloc.allocate(std::numeric_limits<std::size_t>::max() / 4), memkit::bad_size);
    EXPECT_LE(alloc.max_size(), std::numeric_limits<std::size_t>::max() / 8);
    EXPECT_EQ(a.stats().allocations, 0u);
}

TEST(StdAllocator, StandardContainers) {
    arena a;
    std::vector<int, arena_alloc<int>> v{a};
    for (int i = 0; i < 5000; ++i) v.push_back(i);
    std::deque<std::string, arena_alloc<std::string>> d{a};
    for (int i = 0; i < 100; ++i) d.push_front(std::to_string(i));
    std::list<int, arena_alloc<int>> l{a};
    l.assign(100, 7);
    using str = std::basic_string<char, std::char_traits<char>, arena_alloc<char>>;
    str s{"a string long enough to leave the small-string buffer", a};
    EXPECT_EQ(v[4999], 4999);
    EXPECT_EQ(d.front(), "99");
    EXPECT_EQ(l.size(), 100u);
    EXPECT_TRUE(a.owns(v.data()));
    EXPECT_TRUE(a.owns(s.data()));
}

TEST(StdAllocator, PropagatesOnAssignmentAndSwap) {
    arena a, b;
    std::vector<int, arena_alloc<int>> va({1, 2, 3}, a);
    std::vector<int, arena_alloc<int>> vb({4, 5}, b);
    vb = va;  // copy assignment propagates: vb now allocates from a
    EXPECT_EQ(&vb.get_allocator().get(), &a);
    EXPECT_TRUE(a.owns(vb.data()));
    std::vector<int, arena_alloc<int>> vc({9}, b);
    vc.swap(va);
    EXPECT_EQ(&vc.get_allocator().get(), &a);
    EXPECT_EQ(&va.get_allocator().get(), &b);
    std::vector<int, arena_alloc<int>> vd{b};
    vd = std::move(vc);
    EXPECT_EQ(&vd.get_allocator().get(), &a);
    EXPECT_EQ(vd, (std::vector<int, arena_alloc<int>>({1, 2, 3}, a)));
}

TEST(StdAllocator, SystemAllocatorBacked) {
    memkit::system_allocator sys;
    std::vector<std::string, memkit::std_allocator<std::string, memkit::system_allocator>> v{sys};
    for (int i = 0; i < 1000; ++i) v.emplace_back(50, 'q');
    EXPECT_EQ(v.back(), std::string(50, 'q'));
}

} // namespace
