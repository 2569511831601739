#include "memkit/pmr/resource.hpp"

#include <gtest/gtest.h>

#include <list>
#include <memory_resource>
#include <string>
#include <unordered_map>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/system.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::arena;

TEST(Resource, OwningConstructsTheAllocatorInPlace) {
    memkit::resource<arena> r{memkit::arena_options{.block_size = 8192}};
    EXPECT_EQ(r.get().options().block_size, 8192u);
    void* p = r.allocate(100, 32);
    EXPECT_TRUE(memkit::is_aligned(p, 32));
    EXPECT_TRUE(r.get().owns(p));
    r.deallocate(p, 100, 32);
    EXPECT_EQ(r.get().stats().deallocations, 1u);
}

TEST(Resource, LvalueDeducesAReference) {
    arena a;
    memkit::resource r{a};
    static_assert(std::is_same_v<decltype(r), memkit::resource<memkit::allocator_ref<arena>>>);
    void* p = r.allocate(64);
    EXPECT_TRUE(a.owns(p));
    EXPECT_EQ(&r.get().get(), &a);
}

TEST(Resource, ZeroSizeFollowsThePmrContract) {
    memkit::resource<arena> r;
    void* p = r.allocate(0, 8);
    void* q = r.allocate(0, 8);
    EXPECT_NE(p, nullptr);
    EXPECT_NE(p, q) << "distinct zero-size allocations are distinct pointers";
    r.deallocate(p, 0, 8);
    r.deallocate(q, 0, 8);
}

TEST(Resource, Equality) {
    arena a, b;
    memkit::resource ra1{a}, ra2{a}, rb{b};
    EXPECT_TRUE(ra1.is_equal(ra1));
    EXPECT_TRUE(ra1.is_equal(ra2)) << "two handles to one arena are interchangeable";
    EXPECT_FALSE(ra1.is_equal(rb));
    memkit::resource<arena> own1, own2;
    EXPECT_FALSE(own1.is_equal(own2)) << "two owned arenas are different heaps";
    memkit::resource<memkit::system_allocator> s1, s2;
    EXPECT_TRUE(s1.is_equal(s2)) << "stateless allocators are interchangeable";
    EXPECT_FALSE(s1.is_equal(*std::pmr::new_delete_resource()));
}

TEST(Resource, ErrorsPropagateAsExceptions) {
    memkit::resource<arena> r{memkit::arena_options{.block_size = 1024, .max_total = 1024}};
    (void)r.allocate(600);
    EXPECT_THROW((void)r.allocate(600), std::bad_alloc);
    EXPECT_THROW((void)r.allocate(600), memkit::out_of_memory);
    EXPECT_THROW((void)r.allocate(4096), memkit::bad_size) << "above max_size(): bad input";
    // Held in a volatile so that the compiler cannot see (and warn about) the bad constant.
    volatile std::size_t bad_alignment = 3;
    EXPECT_THROW((void)r.allocate(16, bad_alignment), memkit::invalid_alignment);
}

TEST(Resource, StdPmrContainers) {
    arena a;
    memkit::resource r{a};
    std::pmr::vector<std::pmr::string> v{&r};
    for (int i = 0; i < 200; ++i) v.emplace_back(std::to_string(i) + std::string(30, 'x'));
    std::pmr::unordered_map<int, int> m{&r};
    for (int i = 0; i < 1000; ++i) m[i] = -i;
    std::pmr::list<double> l{&r};
    for (int i = 0; i < 100; ++i) l.push_back(i * 0.5);
    EXPECT_EQ(v[150].substr(0, 3), "150");
    EXPECT_EQ(m.at(999), -999);
    EXPECT_EQ(l.back(), 49.5);
    EXPECT_TRUE(a.owns(v.data()));
    EXPECT_TRUE(a.owns(v[0].data()));
}

TEST(Resource, SystemAllocatorOverAlignment) {
    memkit::resource<memkit::system_allocator> r;
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        void* p = r.allocate(100, align);
        EXPECT_TRUE(memkit::is_aligned(p, align));
        r.deallocate(p, 100, align);
    }
}

} // namespace
