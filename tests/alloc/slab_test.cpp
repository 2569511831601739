#include "memkit/alloc/slab.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <memory_resource>
#include <new>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::slab_allocator;
using memkit::slab_cache_stats;
using memkit::slab_options;
using memkit::test::counting_parent;
using memkit::test::violation_recorder;

static_assert(memkit::allocator<slab_allocator>);
static_assert(memkit::owning_allocator<slab_allocator>);
static_assert(memkit::allocator_traits<slab_allocator>::has_stats);
static_assert(memkit::allocator_traits<slab_allocator>::has_reset);
static_assert(memkit::allocator_traits<slab_allocator>::has_max_size);
static_assert(memkit::allocator_traits<slab_allocator>::has_reallocate);
static_assert(!memkit::allocator_traits<slab_allocator>::is_thread_safe);
static_assert(memkit::allocator_traits<slab_allocator>::max_alignment == 4096);
static_assert(std::string_view{slab_allocator::name} == "memkit::slab_allocator");
static_assert(
    std::is_same_v<slab_allocator, memkit::basic_slab_allocator<memkit::system_allocator>>);
static_assert(!std::is_copy_constructible_v<slab_allocator>);
static_assert(!std::is_copy_assignable_v<slab_allocator>);
static_assert(std::is_nothrow_move_constructible_v<slab_allocator>);
static_assert(std::is_nothrow_move_assignable_v<slab_allocator>);

// counting_parent, saying that it aligns to any size (posix_memalign does): slabs are then
// taken with exactly slab_size bytes.
class aligning_parent : public counting_parent {
public:
    static constexpr std::size_t max_alignment = std::size_t{1} << 20;
    using counting_parent::counting_parent;
};
using counted_slab = memkit::basic_slab_allocator<aligning_parent>;

constexpr slab_options page_slabs{.slab_size = 4096};
// A 4096-byte slab ends in a 128-byte header (a whole number of cache lines): 56 bytes of
// fields and a 32-byte bitmap.
constexpr std::size_t room = 4096 - 128;

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
std::byte* bytes(void* p) { return static_cast<std::byte*>(p); }

// --- size classes -------------------------------------------------------------------------------

TEST(SlabAllocator, DefaultClassesUpToAnEighthOfTheSlab) {
    slab_allocator s{page_slabs};
    const std::vector<std::size_t> expect{16, 32, 48, 64, 80, 96, 112, 128, 192, 256, 384, 512};
    ASSERT_EQ(s.class_count(), expect.size());
    for (std::size_t i = 0; i < expect.size(); ++i) {
        EXPECT_EQ(s.class_size(i), expect[i]);
        EXPECT_EQ(s.cache_stats(i).object_size, expect[i]);
        EXPECT_EQ(s.cache_stats(i).objects_per_slab, room / expect[i]);
    }
    EXPECT_EQ(s.max_size(), 512u);
    EXPECT_EQ(s.supported_alignment(), 512u);
    EXPECT_EQ(s.slab_size(), 4096u);
    EXPECT_EQ(s.retained_empty(), 4u);
    EXPECT_EQ(s.class_index(1), 0u);
    EXPECT_EQ(s.class_index(16), 0u);
    EXPECT_EQ(s.class_index(17), 1u);
    EXPECT_EQ(s.class_index(100), 6u);
    EXPECT_EQ(s.class_index(128), 7u);
    EXPECT_EQ(s.class_index(129), 8u);
    EXPECT_EQ(s.class_index(257), 10u);
    EXPECT_EQ(s.class_index(512), 11u);
    EXPECT_EQ(s.class_index(513), slab_allocator::npos);
    EXPECT_EQ(s.class_index(0), slab_allocator::npos);
    EXPECT_EQ(s.class_index(40, 64), 3u) << "48 is only 16-aligned";
    EXPECT_EQ(s.class_index(100, 128), 7u);
    EXPECT_EQ(s.class_index(8, 512), 11u);
    EXPECT_EQ(s.class_index(8, 1024), slab_allocator::npos);
    EXPECT_EQ(s.class_index(8, 3), slab_allocator::npos);
    EXPECT_THROW((void)s.cache_stats(12), std::out_of_range);
    EXPECT_EQ(s.slab_count(), 0u) << "slabs are taken on demand";
}

TEST(SlabAllocator, DefaultSlabIsAPage) {
    slab_allocator s;
    EXPECT_EQ(s.slab_size(), memkit::page_size());
    EXPECT_EQ(s.max_size(), memkit::page_size() / 8);
}

TEST(SlabAllocator, LargerSlabsHaveLargerClasses) {
    slab_allocator s{{.slab_size = 1 << 16}};
    EXPECT_EQ(s.max_size(), 8192u);
    EXPECT_EQ(s.class_size(s.class_count() - 1), 8192u);
    EXPECT_EQ(s.class_size(s.class_index(700)), 768u);
    EXPECT_EQ(s.class_size(s.class_index(5000)), 6144u);
    EXPECT_EQ(s.supported_alignment(), 4096u);
}

TEST(SlabAllocator, MaxObjectSizeBoundsTheClasses) {
    slab_allocator s{{.slab_size = 4096, .max_object_size = 1000}};
    EXPECT_EQ(s.max_size(), 1008u) << "the last class is the maximum rounded up to 16";
    EXPECT_EQ(s.class_size(s.class_count() - 2), 768u);
    slab_allocator tiny{{.slab_size = 4096, .max_object_size = 20}};
    EXPECT_EQ(tiny.class_count(), 2u);
    EXPECT_EQ(tiny.max_size(), 32u);
}

TEST(SlabAllocator, CustomClasses) {
    const std::array<std::size_t, 3> classes{32, 96, 240};
    slab_allocator s{{.slab_size = 4096, .size_classes = classes}};
    ASSERT_EQ(s.class_count(), 3u);
    EXPECT_EQ(s.max_size(), 240u);
    EXPECT_EQ(s.class_index(1), 0u);
    EXPECT_EQ(s.class_index(33), 1u);
    EXPECT_EQ(s.class_index(100), 2u);
    EXPECT_EQ(s.supported_alignment(), 32u);
    EXPECT_EQ(s.class_index(40, 32), 1u);
    EXPECT_EQ(s.class_index(100, 32), slab_allocator::npos) << "240 is only 16-aligned";
    EXPECT_EQ(s.try_allocate(100, 32), nullptr);
    EXPECT_THROW((void)s.allocate(100, 32), memkit::invalid_alignment);
    void* p = s.allocate(90, 32);
    EXPECT_TRUE(memkit::is_aligned(p, 32));
    EXPECT_EQ(s.cache_stats(1).objects_in_use, 1u);
    s.deallocate(p, 90, 32);
}

TEST(SlabAllocator, ConstructorRejectsBadConfigurations) {
    for (std::size_t ss :
         {std::size_t{256}, std::size_t{1000}, std::size_t{3 << 10}, std::size_t{1} << 25})
        EXPECT_THROW(slab_allocator{{.slab_size = ss}}, memkit::bad_size) << ss;
    EXPECT_THROW((slab_allocator{{.slab_size = 4096, .max_object_size = 4096}}), memkit::bad_size);
    const auto bad_list = [](std::initializer_list<std::size_t> l) {
        const std::vector<std::size_t> v(l);
        return slab_allocator{{.slab_size = 4096, .size_classes = v}};
    };
    EXPECT_THROW(bad_list({16, 16}), memkit::bad_size);
    EXPECT_THROW(bad_list({64, 32}), memkit::bad_size);
    EXPECT_THROW(bad_list({24}), memkit::bad_size);
    EXPECT_THROW(bad_list({0, 16}), memkit::bad_size);
    EXPECT_THROW(bad_list({16, 4096}), memkit::bad_size);
    std::vector<std::size_t> many(256);
    for (std::size_t i = 0; i < many.size(); ++i) many[i] = 16 * (i + 1);
    EXPECT_THROW((slab_allocator{{.slab_size = 1 << 16, .size_classes = many}}), memkit::bad_size);
    many.pop_back();
    slab_allocator most{{.slab_size = 1 << 16, .size_classes = many}};
    EXPECT_EQ(most.class_count(), 255u);
    EXPECT_EQ(most.class_index(4080), 254u);
    // The smallest slab works.
    slab_allocator small{{.slab_size = 512}};
    EXPECT_EQ(small.max_size(), 64u);
    void* p = small.allocate(64);
    small.deallocate(p, 64);
}

TEST(SlabAllocator, ParentFailureWhileBuildingTheClassTable) {
    aligning_parent::counters c;
    c.fail_after = 0;
    EXPECT_THROW((counted_slab{page_slabs, aligning_parent{&c}}), memkit::out_of_memory);
}

// --- placement, alignment, contents --------------------------------------------------------------

TEST(SlabAllocator, EveryAlignmentUpTo4096) {
    slab_allocator s{{.slab_size = 1 << 16}};
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t size : {std::size_t{1}, std::size_t{7}, std::size_t{100}, align}) {
            std::vector<void*> ps;
            for (int i = 0; i < 3; ++i) {
                void* p = s.allocate(size, align);
                EXPECT_TRUE(memkit::is_aligned(p, align)) << "align " << align << " size " << size;
                EXPECT_TRUE(s.owns(p));
                memkit::fill_pattern(p, size, static_cast<std::uint8_t>(align + i));
                ps.push_back(p);
            }
            for (int i = 0; i < 3; ++i) {
                EXPECT_EQ(memkit::verify_pattern(ps[static_cast<std::size_t>(i)], size,
                                                 static_cast<std::uint8_t>(align + i)),
                          nullptr);
                s.deallocate(ps[static_cast<std::size_t>(i)], size, align);
            }
        }
    }
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
    s.validate();
}

TEST(SlabAllocator, AlignmentsAboveTheMostAlignedClassAreRefused) {
    slab_allocator s{page_slabs};
    for (std::size_t align = 1; align <= 512; align *= 2) {
        void* p = s.allocate(24, align);
        EXPECT_TRUE(memkit::is_aligned(p, align));
        s.deallocate(p, 24, align);
    }
    for (std::size_t align : {std::size_t{0}, std::size_t{3}, std::size_t{24}, std::size_t{1024},
                              std::size_t{8192}, SIZE_MAX}) {
        EXPECT_EQ(s.try_allocate(24, align), nullptr);
        try {
            (void)s.allocate(24, align);
            FAIL() << "no exception for alignment " << align;
        } catch (const memkit::invalid_alignment& e) {
            EXPECT_EQ(e.alignment(), align);
            EXPECT_EQ(e.max_alignment(), 512u);
            EXPECT_EQ(e.code(), memkit::errc::invalid_alignment);
            EXPECT_NE(std::string(e.what()).find("memkit::slab_allocator"), std::string::npos);
        }
    }
    EXPECT_EQ(s.stats().allocations, 10u);
}

TEST(SlabAllocator, ObjectsAreCarvedInAddressOrderFromTheSlabStart) {
    slab_allocator s{page_slabs};
    void* a = s.allocate(64);
    EXPECT_TRUE(memkit::is_aligned(a, 4096)) << "the first object is the slab's first byte";
    void* b = s.allocate(50);
    void* c = s.allocate(64);
    EXPECT_EQ(b, bytes(a) + 64);
    EXPECT_EQ(c, bytes(a) + 128);
    void* d = s.allocate(10); // another class, another slab
    EXPECT_TRUE(memkit::is_aligned(d, 4096));
    EXPECT_EQ(s.slab_count(), 2u);
    s.deallocate(b, 50);
    EXPECT_EQ(s.allocate(64), b) << "a freed object is handed out first";
    s.reset();
}

TEST(SlabAllocator, LiveObjectsDoNotOverlapAndKeepTheirContents) {
    slab_allocator s{page_slabs};
    std::mt19937 rng(5);
    struct block {
        void* p;
        std::size_t size;
        std::uint8_t seed;
    };
    std::vector<block> live;
    for (int i = 0; i < 5000; ++i) {
        const std::size_t size = 1 + rng() % 512;
        void* p = s.allocate(size);
        memkit::fill_pattern(p, size, static_cast<std::uint8_t>(i));
        live.push_back({p, size, static_cast<std::uint8_t>(i)});
        if (rng() % 4 == 0) {
            const std::size_t k = rng() % live.size();
            ASSERT_EQ(memkit::verify_pattern(live[k].p, live[k].size, live[k].seed), nullptr);
            s.deallocate(live[k].p, live[k].size);
            live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
        }
    }
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (const block& x : live) {
        EXPECT_EQ(memkit::verify_pattern(x.p, x.size, x.seed), nullptr);
        ranges.emplace_back(addr(x.p), s.class_size(s.class_index(x.size)));
    }
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    s.validate();
    for (const block& x : live) s.deallocate(x.p, x.size);
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
    s.validate();
}

// --- statistics and slab lists
// --------------------------------------------------------------------

TEST(SlabAllocator, StatsAreExact) {
    slab_allocator s{page_slabs};
    void* a = s.allocate(100);
    void* b = s.allocate(10, 64);
    void* c = s.allocate(500);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{610, 610, 3 * 4096, 3, 0}));
    s.deallocate(b, 10, 64);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{600, 610, 3 * 4096, 3, 1}))
        << "the emptied slab is retained by its cache";
    s.deallocate(a, 100);
    s.deallocate(c, 500);
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
    EXPECT_EQ(s.stats().peak_bytes, 610u);
    EXPECT_EQ(s.stats().deallocations, 3u);

    const auto before = s.stats();
    EXPECT_EQ(s.try_allocate(0), nullptr);
    EXPECT_EQ(s.try_allocate(513), nullptr);
    EXPECT_EQ(s.try_allocate(8, 3), nullptr);
    EXPECT_EQ(s.stats(), before);
}

TEST(SlabAllocator, SlabsMoveBetweenPartialFullAndEmpty) {
    slab_allocator s{{.slab_size = 4096, .retained_empty = 1}};
    const std::size_t ci = s.class_index(64);
    const std::size_t per = s.cache_stats(ci).objects_per_slab;
    ASSERT_EQ(per, room / 64);
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 0, 0, 0, 0}));

    std::vector<void*> first;
    first.push_back(s.allocate(64));
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 1, 0, 0, 1}));
    while (first.size() < per) first.push_back(s.allocate(64));
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 0, 1, 0, per})) << "full";

    void* second = s.allocate(64);
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 1, 1, 0, per + 1}));
    EXPECT_EQ(s.slab_count(), 2u);

    s.deallocate(first[10], 64); // the full slab gets a free object
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 2, 0, 0, per}));
    EXPECT_EQ(s.allocate(64), first[10]) << "the slab that was freed into is first on the list";
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 1, 1, 0, per + 1}));

    s.deallocate(second, 64); // the second slab empties and is retained
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 0, 1, 1, per}));
    EXPECT_EQ(s.slab_count(), 2u);
    for (void* p : first) s.deallocate(p, 64); // full -> partial -> empty, beyond the retained one
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 0, 0, 1, 0}));
    EXPECT_EQ(s.slab_count(), 1u);
    s.validate();

    void* again = s.allocate(64); // the retained slab is reused: no new slab
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 1, 0, 0, 1}));
    EXPECT_EQ(s.slab_count(), 1u);
    s.deallocate(again, 64);
}

TEST(SlabAllocator, AllocatingAndFreeingOneObjectMovesNoSlab) {
    aligning_parent::counters c;
    counted_slab s{{.slab_size = 4096, .retained_empty = 1}, aligning_parent{&c}};
    const std::size_t ci = s.class_index(64);
    const std::size_t per = s.cache_stats(ci).objects_per_slab;
    void* first = s.allocate(64);
    s.deallocate(first, 64);
    const std::size_t calls = c.allocations;
    for (int i = 0; i < 1000; ++i) {
        void* p = s.allocate(64);
        EXPECT_EQ(p, first);
        EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 1, 0, 0, 1}));
        s.deallocate(p, 64);
        // The idle allocation slab is reported as empty, and counts against the budget.
        ASSERT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 0, 0, 1, 0}));
    }
    EXPECT_EQ(c.allocations, calls);
    EXPECT_EQ(c.deallocations, 0u);
    EXPECT_EQ(s.slab_count(), 1u);
    s.validate();
    s.shrink_to_fit();
    EXPECT_EQ(s.slab_count(), 0u);
    EXPECT_EQ(s.cache_stats(ci), (slab_cache_stats{64, per, 0, 0, 0, 0}));
}

TEST(SlabAllocator, EmptySlabsBeyondTheRetainedCountGoBackToTheParent) {
    aligning_parent::counters c;
    counted_slab s{{.slab_size = 4096, .retained_empty = 2}, aligning_parent{&c}};
    const std::size_t setup_calls = c.allocations; // the class table
    EXPECT_EQ(setup_calls, 1u);
    const std::size_t per = s.cache_stats(s.class_index(64)).objects_per_slab;
    std::vector<void*> objs;
    for (std::size_t i = 0; i < 5 * per; ++i) objs.push_back(s.allocate(64));
    EXPECT_EQ(s.slab_count(), 5u);
    EXPECT_EQ(c.allocations, setup_calls + 1 + 5) << "the slab set, then five slabs";
    EXPECT_EQ(s.stats().capacity, 5u * 4096u);

    for (void* p : objs) s.deallocate(p, 64);
    EXPECT_EQ(s.cache_stats(s.class_index(64)).empty_slabs, 2u);
    EXPECT_EQ(s.slab_count(), 2u);
    EXPECT_EQ(c.deallocations, 3u) << "three slabs went back, two are retained";
    EXPECT_EQ(s.stats().capacity, 2u * 4096u);

    // Retained slabs serve the next burst without parent calls.
    const std::size_t calls = c.allocations;
    objs.clear();
    for (std::size_t i = 0; i < 2 * per; ++i) objs.push_back(s.allocate(64));
    EXPECT_EQ(c.allocations, calls);
    for (void* p : objs) s.deallocate(p, 64);

    s.shrink_to_fit();
    EXPECT_EQ(s.slab_count(), 0u);
    EXPECT_EQ(c.deallocations, 5u);
    EXPECT_EQ(s.stats().capacity, 0u);
    s.validate();
}

TEST(SlabAllocator, RetainingNoEmptySlabReturnsEachAtOnce) {
    aligning_parent::counters c;
    counted_slab s{{.slab_size = 4096, .retained_empty = 0}, aligning_parent{&c}};
    for (int i = 0; i < 3; ++i) {
        void* p = s.allocate(32);
        EXPECT_EQ(s.slab_count(), 1u);
        s.deallocate(p, 32);
        EXPECT_EQ(s.slab_count(), 0u);
    }
    EXPECT_EQ(c.deallocations, 3u);
    EXPECT_EQ(c.allocations, 1u + 1u + 3u); // class table, slab set, three slabs
}

TEST(SlabAllocator, ParentThatAlignsLessGetsAlignedByHand) {
    counting_parent::counters c; // counting_parent advertises only alignof(max_align_t)
    memkit::basic_slab_allocator<counting_parent> s{page_slabs, counting_parent{&c}};
    std::vector<void*> objs;
    for (int i = 0; i < 300; ++i) {
        void* p = s.allocate(64, 64);
        EXPECT_TRUE(memkit::is_aligned(p, 64));
        EXPECT_TRUE(s.owns(p));
        objs.push_back(p);
    }
    EXPECT_EQ(s.slab_count(), 5u);
    EXPECT_EQ(s.stats().capacity, 5u * (2 * 4096 - alignof(std::max_align_t)));
    s.validate();
    for (void* p : objs) s.deallocate(p, 64, 64);
    s.release();
    EXPECT_EQ(s.slab_count(), 0u);
}

// --- owns ---------------------------------------------------------------------------------------

TEST(SlabAllocator, OwnsInteriorPointersButNotForeignOnes) {
    slab_allocator s{page_slabs};
    slab_allocator other{page_slabs};
    void* p = s.allocate(100); // 112-byte class
    void* q = other.allocate(100);
    EXPECT_TRUE(s.owns(p));
    EXPECT_TRUE(s.owns(bytes(p) + 1));
    EXPECT_TRUE(s.owns(bytes(p) + 111));
    EXPECT_TRUE(s.owns(bytes(p) + 112)) << "a not yet carved object of the same slab";
    EXPECT_TRUE(s.owns(bytes(p) + room - 1));
    EXPECT_FALSE(s.owns(bytes(p) + room)) << "the slab header";
    EXPECT_FALSE(s.owns(bytes(p) + 4095));
    EXPECT_FALSE(s.owns(q));
    EXPECT_FALSE(other.owns(p));
    EXPECT_FALSE(s.owns(nullptr));
    int local = 0;
    EXPECT_FALSE(s.owns(&local));
    void* heap = std::malloc(64);
    EXPECT_FALSE(s.owns(heap));
    std::free(heap);
    s.deallocate(p, 100);
    EXPECT_TRUE(s.owns(p)) << "a free object in a retained slab";
    s.release();
    EXPECT_FALSE(s.owns(p)) << "the slab went back";
    other.deallocate(q, 100);
}

TEST(SlabAllocator, OwnsStaysExactWithManySlabs) {
    slab_allocator s{{.slab_size = 4096, .retained_empty = 0}};
    std::vector<void*> objs;
    for (int i = 0; i < 20000; ++i) objs.push_back(s.allocate(512));
    EXPECT_GT(s.slab_count(), 2000u);
    for (void* p : objs) ASSERT_TRUE(s.owns(p));
    // Free every other slab's objects so that the slab set deletes from the middle of probes.
    const std::size_t per = s.cache_stats(s.class_index(512)).objects_per_slab;
    std::vector<void*> kept;
    for (std::size_t i = 0; i < objs.size(); ++i) {
        if ((i / per) % 2 == 0) s.deallocate(objs[i], 512);
        else kept.push_back(objs[i]);
    }
    for (void* p : kept) ASSERT_TRUE(s.owns(p));
    for (std::size_t i = 0; i < objs.size(); i += per) {
        if ((i / per) % 2 == 0) {
            ASSERT_FALSE(s.owns(objs[i]));
        }
    }
    s.validate();
    for (void* p : kept) s.deallocate(p, 512);
    EXPECT_EQ(s.slab_count(), 0u);
}

// --- errors --------------------------------------------------------------------------------------

TEST(SlabAllocator, BadSizeErrors) {
    slab_allocator s{page_slabs};
    for (std::size_t size : {std::size_t{0}, std::size_t{513}, std::size_t{4096}, SIZE_MAX}) {
        EXPECT_EQ(s.try_allocate(size), nullptr);
        try {
            (void)s.allocate(size);
            FAIL() << "no exception for size " << size;
        } catch (const memkit::bad_size& e) {
            EXPECT_EQ(e.size(), size);
            EXPECT_EQ(e.max_size(), 512u);
            EXPECT_EQ(e.code(), memkit::errc::bad_size);
            EXPECT_NE(std::string(e.what()).find("memkit::slab_allocator"), std::string::npos);
        }
    }
    EXPECT_EQ(s.stats().allocations, 0u);
    EXPECT_EQ(s.slab_count(), 0u);
}

TEST(SlabAllocator, ParentFailureIsOutOfMemory) {
    aligning_parent::counters c;
    counted_slab s{page_slabs, aligning_parent{&c}};
    c.fail_after = c.allocations + 2; // the slab set and one slab
    std::vector<void*> objs;
    const std::size_t per = s.cache_stats(s.class_index(256)).objects_per_slab;
    for (std::size_t i = 0; i < per; ++i) objs.push_back(s.allocate(256));
    EXPECT_EQ(s.try_allocate(256), nullptr);
    try {
        (void)s.allocate(200);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 200u);
        EXPECT_EQ(e.available(), 0u);
        EXPECT_EQ(e.used(), per * 256);
        EXPECT_EQ(e.capacity(), 4096u);
        EXPECT_STREQ(e.allocator(), "memkit::slab_allocator");
    }
    EXPECT_EQ(s.stats().allocations, per);
    s.validate();
    s.deallocate(objs.back(), 256);
    EXPECT_EQ(s.allocate(256), objs.back()) << "a free object needs no parent call";
    for (void* p : objs) s.deallocate(p, 256);
}

TEST(SlabAllocator, FreeingAForeignOrInteriorPointerIsReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    slab_allocator s{page_slabs};
    slab_allocator other{page_slabs};
    void* a = s.allocate(64);
    void* x = other.allocate(64);
    const auto before = s.stats();
    s.deallocate(x, 64);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.last().pointer, x);
    EXPECT_STREQ(rec.last().allocator, "memkit::slab_allocator");
    int local = 0;
    s.deallocate(&local, sizeof local);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    s.deallocate(nullptr, 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    s.deallocate(bytes(a) + 8, 8); // inside a live object
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    s.deallocate(bytes(a) + 64, 64); // the next object, not carved yet
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.count(), 5);
    EXPECT_EQ(s.stats(), before);
    s.validate();
    s.deallocate(a, 64);
    other.deallocate(x, 64);
    EXPECT_EQ(rec.count(), 5);
}

TEST(SlabAllocator, DoubleFreeIsReportedAndIgnored) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    slab_allocator s{page_slabs};
    void* a = s.allocate(32);
    void* b = s.allocate(32);
    void* c = s.allocate(32);
    s.deallocate(a, 32);
    s.deallocate(b, 32);
    s.deallocate(a, 32); // not at the head of the slab's free list
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(rec.last().pointer, a);
    s.deallocate(b, 32); // at the head
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    EXPECT_EQ(s.stats().deallocations, 2u);
    s.validate();
    EXPECT_EQ(s.allocate(32), b);
    EXPECT_EQ(s.allocate(32), a);
    EXPECT_NE(s.allocate(32), a) << "the free list holds each object once";
    s.deallocate(c, 32);
    EXPECT_EQ(s.try_allocate(32), c);
    EXPECT_FALSE(s.resize_in_place(bytes(c) + 16, 32, 16));
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(s.reallocate(bytes(c) + 16, 32, 16), nullptr);
    EXPECT_EQ(rec.count(), 4);
    s.reset();
}

// --- validate -----------------------------------------------------------------------------------

TEST(SlabAllocator, ValidateDetectsABrokenFreeList) {
    slab_allocator s{page_slabs};
    void* a = s.allocate(48);
    void* b = s.allocate(48);
    void* c = s.allocate(48);
    s.deallocate(b, 48); // b's first word links to the next free object (none)
    s.validate();
    void* saved = nullptr;
    std::memcpy(&saved, b, sizeof saved);

    int outside = 0;
    void* bad = &outside;
    std::memcpy(b, &bad, sizeof bad); // a use-after-free write over the link
    try {
        s.validate();
        FAIL() << "no exception";
    } catch (const memkit::corruption_detected& e) {
        EXPECT_EQ(e.address(), &outside);
        EXPECT_EQ(e.code(), memkit::errc::corruption_detected);
        EXPECT_NE(std::string(e.what()).find("memkit::slab_allocator"), std::string::npos);
    }
    void* misaligned = bytes(a) + 8;
    std::memcpy(b, &misaligned, sizeof misaligned);
    EXPECT_THROW(s.validate(), memkit::corruption_detected);
    void* self = b;
    std::memcpy(b, &self, sizeof self); // a cycle
    EXPECT_THROW(s.validate(), memkit::corruption_detected);

    std::memcpy(b, &saved, sizeof saved);
    s.validate();
    s.deallocate(a, 48);
    s.deallocate(c, 48);
    s.validate();
}

TEST(SlabAllocator, ValidateDetectsABrokenSlabHeader) {
    slab_allocator s{page_slabs};
    void* a = s.allocate(48);
    void* b = s.allocate(48);
    // The header sits at the end of the slab; its in-use count follows five pointers and the
    // carved count.
    std::byte* header = bytes(a) + room;
    std::uint32_t in_use = 0;
    std::memcpy(&in_use, header + 5 * sizeof(void*) + 4, sizeof in_use);
    ASSERT_EQ(in_use, 2u);
    const std::uint32_t wrong = 3;
    std::memcpy(header + 5 * sizeof(void*) + 4, &wrong, sizeof wrong);
    EXPECT_THROW(s.validate(), memkit::corruption_detected);
    std::memcpy(header + 5 * sizeof(void*) + 4, &in_use, sizeof in_use);
    s.validate();
    s.deallocate(a, 48);
    s.deallocate(b, 48);
}

// --- resizing ------------------------------------------------------------------------------------

TEST(SlabAllocator, ResizeInPlaceWithinTheClass) {
    slab_allocator s{page_slabs};
    void* p = s.allocate(70); // 80-byte class
    EXPECT_TRUE(s.resize_in_place(p, 70, 80));
    EXPECT_TRUE(s.resize_in_place(p, 80, 1));
    EXPECT_EQ(s.stats().bytes_in_use, 1u);
    EXPECT_FALSE(s.resize_in_place(p, 1, 81));
    EXPECT_FALSE(s.resize_in_place(p, 1, 0));
    EXPECT_EQ(s.stats().bytes_in_use, 1u);
    EXPECT_EQ(s.stats().peak_bytes, 80u);
    s.deallocate(p, 1);
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
}

TEST(SlabAllocator, ReallocateMovesToAnotherClass) {
    slab_allocator s{page_slabs};
    void* filler = s.allocate(384); // the first object of a slab is aligned to everything
    void* p = s.allocate(40);
    memkit::fill_pattern(p, 40, 6);
    EXPECT_EQ(s.reallocate(p, 40, 48), p);
    void* q = s.reallocate(p, 48, 300);
    EXPECT_NE(q, p);
    EXPECT_EQ(memkit::verify_pattern(q, 40, 6), nullptr);
    EXPECT_EQ(s.cache_stats(s.class_index(48)).objects_in_use, 0u);
    EXPECT_EQ(s.cache_stats(s.class_index(300)).objects_in_use, 2u) << "q and the filler";
    EXPECT_EQ(q, bytes(filler) + 384);
    EXPECT_EQ(s.stats().bytes_in_use, 684u);
    void* r = s.reallocate(q, 300, 10); // fits the 384-byte class: stays
    EXPECT_EQ(r, q);
    EXPECT_EQ(s.stats().bytes_in_use, 394u);
    void* t = s.reallocate(r, 10, 100, 256); // offset 384 is not 256-aligned: moves
    EXPECT_NE(t, r);
    EXPECT_TRUE(memkit::is_aligned(t, 256));
    EXPECT_EQ(memkit::verify_pattern(t, 10, 6), nullptr);
    const auto before = s.stats();
    EXPECT_THROW((void)s.reallocate(t, 100, 600, 256), memkit::bad_size);
    EXPECT_THROW((void)s.reallocate(t, 100, 0, 256), memkit::bad_size);
    EXPECT_EQ(s.stats(), before);
    EXPECT_EQ(memkit::verify_pattern(t, 10, 6), nullptr);
    void* n = s.reallocate(nullptr, 0, 16);
    EXPECT_TRUE(s.owns(n));
    s.deallocate(n, 16);
    s.deallocate(t, 100, 256);
    s.deallocate(filler, 384);
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
}

// --- reset, release, move ------------------------------------------------------------------------

TEST(SlabAllocator, ResetFreesEverythingAndKeepsTheRetainedSlabs) {
    aligning_parent::counters c;
    counted_slab s{{.slab_size = 4096, .retained_empty = 1}, aligning_parent{&c}};
    for (int i = 0; i < 500; ++i) (void)s.allocate(64);
    for (int i = 0; i < 10; ++i) (void)s.allocate(200);
    const std::size_t slabs = s.slab_count();
    EXPECT_EQ(slabs, 9u + 1u);
    const std::size_t returned_before = c.deallocations; // the slab set grew once
    s.reset();
    EXPECT_EQ(s.slab_count(), 2u) << "one empty slab per cache that had slabs";
    EXPECT_EQ(c.deallocations - returned_before, slabs - 2);
    const auto st = s.stats();
    EXPECT_EQ(st.bytes_in_use, 0u);
    EXPECT_EQ(st.allocations, 510u);
    EXPECT_EQ(st.deallocations, 510u);
    EXPECT_EQ(st.peak_bytes, 500u * 64u + 2000u);
    EXPECT_EQ(s.cache_stats(s.class_index(64)), (slab_cache_stats{64, room / 64, 0, 0, 1, 0}));
    s.validate();
    void* p = s.allocate(64);
    EXPECT_TRUE(memkit::is_aligned(p, 4096)) << "the retained slab is carved from its start again";
    s.release();
    EXPECT_EQ(s.slab_count(), 0u);
    EXPECT_EQ(c.allocations - c.deallocations, 2u) << "only the class table and slab set remain";
    void* q = s.allocate(64); // still usable
    s.deallocate(q, 64);
}

TEST(SlabAllocator, DestructorReturnsEverything) {
    aligning_parent::counters c;
    {
        counted_slab s{page_slabs, aligning_parent{&c}};
        for (int i = 0; i < 1000; ++i) (void)s.allocate(16 + static_cast<std::size_t>(i) % 400);
    }
    EXPECT_EQ(c.allocations, c.deallocations);
    EXPECT_EQ(c.live_bytes, 0u);
}

TEST(SlabAllocator, MoveTransfersEverything) {
    aligning_parent::counters c;
    counted_slab a{page_slabs, aligning_parent{&c}};
    void* p = a.allocate(100);
    memkit::fill_pattern(p, 100, 2);
    const auto st = a.stats();
    counted_slab b{std::move(a)};
    EXPECT_EQ(b.stats(), st);
    EXPECT_TRUE(b.owns(p));
    EXPECT_FALSE(a.owns(p)); // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(a.class_count(), 0u);
    EXPECT_EQ(a.try_allocate(16), nullptr);
    EXPECT_THROW((void)a.allocate(16), memkit::bad_size);
    b.validate();

    counted_slab d{page_slabs, aligning_parent{&c}};
    void* q = d.allocate(16);
    (void)q;
    const std::size_t live = c.allocations - c.deallocations;
    d = std::move(b);
    EXPECT_EQ(c.allocations - c.deallocations, live - 3) << "d's table, slab set and slab";
    EXPECT_TRUE(d.owns(p));
    EXPECT_EQ(memkit::verify_pattern(p, 100, 2), nullptr);
    d.deallocate(p, 100);
    counted_slab& alias = d;
    d = std::move(alias);
    EXPECT_EQ(d.class_count(), 12u);
    a = std::move(d);
    void* r = a.allocate(16);
    a.deallocate(r, 16);
    a.validate();
}

// --- standard containers ------------------------------------------------------------------------

TEST(SlabAllocator, ServesPmrContainersThroughResource) {
    slab_allocator s{page_slabs};
    {
        memkit::resource r{s};
        std::pmr::list<int> l{&r};
        for (int i = 0; i < 1000; ++i) l.push_back(i);
        std::pmr::map<int, double> m{&r};
        for (int i = 0; i < 1000; ++i) m.emplace(i, i * 1.5);
        EXPECT_EQ(m.at(500), 750.0);
        l.remove_if([](int x) { return x % 3 != 0; });
        EXPECT_EQ(l.size(), 334u);
        std::pmr::vector<char> v{&r};
        v.reserve(512);
        EXPECT_THROW(v.reserve(513), memkit::bad_size) << "above the largest class";
        s.validate();
    }
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
}

TEST(SlabAllocator, ServesStdContainersThroughStdAllocator) {
    slab_allocator s{page_slabs};
    {
        std::set<long, std::less<>, memkit::std_allocator<long, slab_allocator>> set{s};
        for (long i = 0; i < 2000; ++i) set.insert(i * 7 % 1000);
        EXPECT_EQ(set.size(), 1000u);
        std::list<std::string, memkit::std_allocator<std::string, slab_allocator>> l{s};
        for (int i = 0; i < 100; ++i) l.emplace_back("value");
        EXPECT_EQ(l.size(), 100u);
        EXPECT_EQ(s.stats().allocations - s.stats().deallocations, 1100u);
    }
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
}

// --- randomized ---------------------------------------------------------------------------------

TEST(SlabAllocator, RandomizedAgainstAShadowModel) {
    slab_allocator s{{.slab_size = 8192, .retained_empty = 2}};
    std::mt19937_64 rng(0x51ab);
    struct block {
        void* p;
        std::size_t size;
        std::size_t align;
        std::size_t cls;
        std::uint8_t seed;
    };
    std::vector<block> live;
    std::vector<std::size_t> per_class(s.class_count());
    std::size_t requested = 0;
    // The first 24 bytes and up to 24 more at the end carry a pattern.
    auto write = [](const block& x) {
        const std::size_t head = std::min<std::size_t>(x.size, 24);
        const std::size_t tail = std::min<std::size_t>(x.size - head, 24);
        memkit::fill_pattern(x.p, head, x.seed);
        memkit::fill_pattern(bytes(x.p) + x.size - tail, tail, static_cast<std::uint8_t>(~x.seed));
    };
    auto intact = [](const block& x) {
        const std::size_t head = std::min<std::size_t>(x.size, 24);
        const std::size_t tail = std::min<std::size_t>(x.size - head, 24);
        return memkit::verify_pattern(x.p, head, x.seed) == nullptr &&
               memkit::verify_pattern(bytes(x.p) + x.size - tail, tail,
                                      static_cast<std::uint8_t>(~x.seed)) == nullptr;
    };
    auto check_all = [&] {
        const auto st = s.stats();
        ASSERT_EQ(st.bytes_in_use, requested);
        ASSERT_EQ(st.allocations - st.deallocations, live.size());
        std::size_t slabs = 0;
        for (std::size_t i = 0; i < s.class_count(); ++i) {
            const slab_cache_stats cs = s.cache_stats(i);
            ASSERT_EQ(cs.objects_in_use, per_class[i]) << "class " << i;
            ASSERT_LE(cs.empty_slabs, 2u);
            ASSERT_LE(cs.objects_in_use, (cs.partial_slabs + cs.full_slabs) * cs.objects_per_slab);
            slabs += cs.partial_slabs + cs.full_slabs + cs.empty_slabs;
        }
        ASSERT_EQ(slabs, s.slab_count());
        ASSERT_EQ(st.capacity, slabs * 8192);
        std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
        for (const block& x : live) {
            ASSERT_TRUE(intact(x));
            ASSERT_TRUE(s.owns(x.p));
            ranges.emplace_back(addr(x.p), s.class_size(x.cls));
        }
        ASSERT_TRUE(memkit::test::no_overlap(ranges));
        s.validate();
    };

    constexpr int ops = 1'000'000;
    for (int op = 0; op < ops; ++op) {
        const std::uint64_t r = rng();
        const std::size_t target = ((op >> 15) & 1) ? 6000 : 500;
        const unsigned kind = static_cast<unsigned>(r % 32);
        if (kind < 16 && (live.size() < target || live.empty())) {
            const std::size_t size = 1 + static_cast<std::size_t>(r >> 8) % s.max_size();
            const std::size_t align = (r >> 40) % 8 == 0 ? std::size_t{1} << ((r >> 44) % 11) : 16;
            void* p = s.try_allocate(size, align);
            if (p == nullptr) {
                ASSERT_EQ(s.class_index(size, align), slab_allocator::npos);
                continue;
            }
            ASSERT_TRUE(memkit::is_aligned(p, align));
            block x{p, size, align, s.class_index(size, align), static_cast<std::uint8_t>(r >> 56)};
            write(x);
            live.push_back(x);
            ++per_class[x.cls];
            requested += size;
        } else if (kind < 30 && !live.empty()) {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            ASSERT_TRUE(intact(live[i]));
            s.deallocate(live[i].p, live[i].size, live[i].align);
            --per_class[live[i].cls];
            requested -= live[i].size;
            live[i] = live.back();
            live.pop_back();
        } else if (kind == 30 && !live.empty()) {
            const std::size_t i = static_cast<std::size_t>(r >> 20) % live.size();
            block& x = live[i];
            ASSERT_TRUE(intact(x));
            const std::size_t size = 1 + static_cast<std::size_t>(r >> 32) % s.max_size();
            void* q = nullptr;
            try {
                q = s.reallocate(x.p, x.size, size, x.align);
            } catch (const memkit::invalid_alignment&) {
                ASSERT_TRUE(intact(x));
                continue;
            }
            ASSERT_TRUE(memkit::is_aligned(q, x.align));
            const std::size_t keep = std::min<std::size_t>({x.size, size, 24});
            ASSERT_EQ(memkit::verify_pattern(q, keep, x.seed), nullptr);
            if (q != x.p) {
                --per_class[x.cls];
                x.cls = s.class_index(size, x.align);
                ++per_class[x.cls];
            }
            requested = requested - x.size + size;
            x.p = q;
            x.size = size;
            write(x);
        } else if (kind == 31 && r % 1024 == 0) {
            s.reset();
            live.clear();
            std::fill(per_class.begin(), per_class.end(), 0);
            requested = 0;
        }
        if (op % 100'000 == 99'999) {
            check_all();
            if (HasFatalFailure()) return;
        }
    }
    check_all();
    EXPECT_GT(s.stats().allocations, 400'000u) << "the model exercised the allocator";
    for (const block& x : live) s.deallocate(x.p, x.size, x.align);
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
    s.validate();
}

} // namespace
