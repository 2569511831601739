#include "memkit/heap/managed_heap.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <span>
#include <sstream>

#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using memkit::managed_heap;
using memkit::managed_heap_options;
using memkit::owner_id;
using memkit::pressure_level;

constexpr std::size_t KiB = 1024, MiB = 1024 * KiB;

managed_heap_options small_heap(std::size_t capacity = MiB) {
    managed_heap_options o;
    o.capacity = capacity;
    o.region_size = MiB;
    return o;
}

void expect_empty(const managed_heap& h) {
    EXPECT_NO_THROW(h.validate());
    EXPECT_EQ(h.used(), 0u);
    EXPECT_EQ(h.heap_bytes(), 0u);
    EXPECT_EQ(h.block_count(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Blocks

TEST(ManagedHeap, DefaultOwnerAndBasicAccounting) {
    managed_heap h;
    EXPECT_EQ(h.capacity(), std::size_t{1} << 30);
    void* a = h.allocate(100);
    void* b = h.allocate(300);
    EXPECT_EQ(h.used(), 400u);
    EXPECT_EQ(h.block_count(), 2u);
    EXPECT_EQ(managed_heap::size_of(a), 100u);
    EXPECT_EQ(h.owner_of(b), owner_id{});
    EXPECT_EQ(h.owner_usage(owner_id{}), 400u);
    EXPECT_GE(h.heap_bytes(), 400u + 2 * 48);
    h.validate();
    h.deallocate(a);
    EXPECT_EQ(h.used(), 300u);
    EXPECT_EQ(h.peak(), 400u);
    h.deallocate(b);
    h.deallocate(nullptr);
    expect_empty(h);
    const auto s = h.snapshot();
    EXPECT_EQ(s.allocations, 2u);
    EXPECT_EQ(s.deallocations, 2u);
    EXPECT_EQ(s.owners, 1u);
    EXPECT_EQ(s.level, pressure_level::low);
}

TEST(ManagedHeap, AlignmentOfEveryPowerOfTwoUpTo4096) {
    managed_heap h{small_heap(4 * MiB)};
    const owner_id o = h.create_owner("aligned");
    std::vector<void*> blocks;
    for (std::size_t a = 1; a <= managed_heap::max_alignment; a *= 2) {
        for (std::size_t size : {std::size_t{1}, std::size_t{24}, a, 3 * a + 5}) {
            void* p = h.allocate(size, o, a);
            ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % a, 0u) << "align " << a;
            std::memset(p, static_cast<int>(a & 0xff), size);
            blocks.push_back(p);
        }
    }
    h.validate();
    for (void* p : blocks) h.deallocate(p);
    expect_empty(h);
}

TEST(ManagedHeap, BlocksThatEndAtTheRegionEnd) {
    // 1023 blocks of one byte fill a 64 KiB region exactly; the last payload starts where the
    // region's end marker is (the tlsf heap lends each block the next block's first word).
    managed_heap_options o;
    o.capacity = 64 * KiB;
    o.region_size = 64 * KiB;
    managed_heap h{o};
    std::vector<void*> blocks;
    while (void* p = h.try_allocate(1)) {
        ASSERT_TRUE(h.owns(p));
        *static_cast<unsigned char*>(p) = 0x5a;
        blocks.push_back(p);
    }
    EXPECT_EQ(blocks.size(), 1023u);
    h.validate();
    for (void* p : blocks) h.deallocate(p);
    expect_empty(h);
}

TEST(ManagedHeap, BadRequests) {
    managed_heap h{small_heap()};
    EXPECT_THROW((void)h.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)h.allocate(managed_heap::max_size() + 1), memkit::bad_size);
    EXPECT_THROW((void)h.allocate(16, {}, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)h.allocate(16, {}, 8192), memkit::invalid_alignment);
    EXPECT_EQ(h.try_allocate(0), nullptr);
    EXPECT_EQ(h.try_allocate(16, {}, 3), nullptr);
    EXPECT_THROW((void)h.allocate(16, owner_id{12345}), std::invalid_argument);
    EXPECT_EQ(h.try_allocate(16, owner_id{12345}), nullptr);
    expect_empty(h);
}

TEST(ManagedHeap, ContentIntegrityAndNoOverlapAcrossOwners) {
    managed_heap h{small_heap(16 * MiB)};
    const owner_id owners[3] = {h.create_owner("a"), h.create_owner("b"),
                                h.create_owner("c", memkit::memory_budget::unlimited,
                                               h.create_owner("parent"))};
    std::mt19937_64 rng{42};
    struct blk {
        unsigned char* p;
        std::size_t size;
        unsigned char fill;
        owner_id owner;
    };
    std::vector<blk> live;
    for (int i = 0; i < 3000; ++i) {
        if (!live.empty() && rng() % 3 == 0) {
            const std::size_t k = rng() % live.size();
            for (std::size_t j = 0; j < live[k].size; ++j) ASSERT_EQ(live[k].p[j], live[k].fill);
            h.deallocate(live[k].p);
            live[k] = live.back();
            live.pop_back();
            continue;
        }
        const std::size_t size = 1 + rng() % 2000;
        const owner_id o = owners[rng() % 3];
        auto* p = static_cast<unsigned char*>(h.allocate(size, o, std::size_t{1} << (rng() % 8)));
        const auto fill = static_cast<unsigned char>(i);
        std::memset(p, fill, size);
        live.push_back({p, size, fill, o});
    }
    std::sort(live.begin(), live.end(), [](const blk& a, const blk& b) { return a.p < b.p; });
    std::size_t total = 0;
    for (std::size_t i = 0; i < live.size(); ++i) {
        if (i + 1 < live.size()) {
            ASSERT_LE(live[i].p + live[i].size, live[i + 1].p);
        }
        for (std::size_t j = 0; j < live[i].size; ++j) ASSERT_EQ(live[i].p[j], live[i].fill);
        EXPECT_EQ(h.owner_of(live[i].p), live[i].owner);
        total += live[i].size;
    }
    EXPECT_EQ(h.used(), total);
    h.validate();
    for (const owner_id o : owners) h.free_owner(o);
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(ManagedHeap, InvalidPointerAndDoubleFree) {
    managed_heap h{small_heap()};
    int on_stack = 0;
    try {
        h.deallocate(&on_stack);
        FAIL() << "no throw";
    } catch (const memkit::invalid_address& e) {
        EXPECT_EQ(e.code(), memkit::errc::not_owned);
        EXPECT_EQ(e.address(), &on_stack);
    }
    auto* p = static_cast<std::byte*>(h.allocate(256));
    try {
        h.deallocate(p + 64); // inside a live block, not its start
        FAIL() << "no throw";
    } catch (const memkit::invalid_address& e) {
        EXPECT_EQ(e.code(), memkit::errc::not_owned);
    }
    EXPECT_THROW(h.deallocate(p + 1), memkit::invalid_address); // misaligned
    EXPECT_EQ(h.used(), 256u);
    h.validate();
    h.deallocate(p);
    try {
        h.deallocate(p);
        FAIL() << "no throw";
    } catch (const memkit::invalid_address& e) {
        EXPECT_EQ(e.code(), memkit::errc::double_free);
        EXPECT_EQ(e.address(), p);
    }
    expect_empty(h);
    // Still usable.
    void* q = h.allocate(256);
    h.deallocate(q);
    expect_empty(h);
}

TEST(ManagedHeap, OutOfMemoryAtCapacityIsDetailedAndRecoverable) {
    managed_heap h{small_heap(MiB)};
    const owner_id o = h.create_owner("big");
    std::vector<void*> blocks;
    bool thrown = false;
    for (int i = 0; i < 8 && !thrown; ++i) {
        try {
            blocks.push_back(h.allocate(200 * KiB, o));
        } catch (const memkit::out_of_memory& e) {
            thrown = true;
            EXPECT_STREQ(e.allocator(), "memkit::managed_heap");
            EXPECT_EQ(e.requested(), 200 * KiB);
            EXPECT_EQ(e.capacity(), MiB);
            EXPECT_EQ(e.used(), h.heap_bytes());
            EXPECT_LT(e.available(), 200 * KiB);
            EXPECT_EQ(e.code(), memkit::errc::out_of_memory);
        }
    }
    ASSERT_TRUE(thrown);
    EXPECT_EQ(blocks.size(), 5u);
    EXPECT_EQ(h.used(), 5 * 200 * KiB);
    EXPECT_EQ(h.owner_usage(o), 5 * 200 * KiB); // the refused request charged nothing
    EXPECT_EQ(h.try_allocate(200 * KiB, o), nullptr);
    EXPECT_EQ(h.snapshot().failed_allocations, 2u);
    h.validate();
    h.deallocate(blocks.back());
    blocks.back() = h.allocate(200 * KiB, o);
    EXPECT_EQ(h.used(), 5 * 200 * KiB);
    EXPECT_EQ(h.free_owner(o), 5 * 200 * KiB);
    expect_empty(h);
}

TEST(ManagedHeap, GrowsInRegionsUpToCapacity) {
    managed_heap h{small_heap(4 * MiB)};
    EXPECT_EQ(h.snapshot().reserved, MiB);
    void* big = h.allocate(2 * MiB);  // larger than a region
    void* more = h.allocate(MiB / 2); // fits the first region
    EXPECT_GT(h.snapshot().reserved, 2 * MiB);
    EXPECT_LE(h.snapshot().reserved, 4 * MiB);
    EXPECT_THROW((void)h.allocate(2 * MiB), memkit::out_of_memory);
    h.deallocate(big);
    h.deallocate(more);
    expect_empty(h);
}

TEST(ManagedHeap, RegionsAreCommittedInOneReservedRange) {
    // 64 MiB of address space is reserved at construction; memory is committed region by region,
    // so the resident size follows what was used, and every block lies in the reserved range.
    managed_heap h{small_heap(64 * MiB)};
    std::vector<void*> blocks;
    for (int i = 0; i < 12; ++i) blocks.push_back(h.allocate(MiB / 2 + 1000));
    const auto [lo, hi] = std::minmax_element(blocks.begin(), blocks.end(),
                                              [](void* a, void* b) {
                                                  return reinterpret_cast<std::uintptr_t>(a) <
                                                         reinterpret_cast<std::uintptr_t>(b);
                                              });
    const auto span = reinterpret_cast<std::uintptr_t>(*hi) - reinterpret_cast<std::uintptr_t>(*lo);
    EXPECT_LT(span, 64 * MiB + 4 * MiB) << "blocks outside one reserved range";
    const std::size_t committed = h.snapshot().reserved;
    EXPECT_GE(committed, 6 * MiB);
    EXPECT_LT(committed, 64 * MiB);
    // Touch every block: the pages that back them are resident, the rest of the range is not.
    for (void* p : blocks) std::memset(p, 0xAB, MiB / 2 + 1000);
    const std::size_t page = memkit::vm::page_size();
    const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(*lo) / page * page;
    const std::uintptr_t last = (reinterpret_cast<std::uintptr_t>(*hi) + MiB) / page * page;
    const std::size_t resident =
        memkit::vm::resident_bytes(reinterpret_cast<const void*>(first), last - first);
    EXPECT_GE(resident, 6 * MiB);
    EXPECT_LE(resident, committed + MiB);
    for (void* p : blocks) h.deallocate(p);
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Owners

TEST(ManagedHeap, ExactPerOwnerUsageAndPeak) {
    managed_heap h{small_heap()};
    const owner_id a = h.create_owner("a"), b = h.create_owner("b");
    void* a1 = h.allocate(100, a);
    void* a2 = h.allocate(250, a);
    void* b1 = h.allocate(1000, b);
    EXPECT_EQ(h.owner_usage(a), 350u);
    EXPECT_EQ(h.owner_usage(b), 1000u);
    EXPECT_EQ(h.owner_usage(owner_id{}), 0u);
    h.deallocate(a1);
    void* a3 = h.allocate(50, a);
    EXPECT_EQ(h.owner_usage(a), 300u);
    EXPECT_EQ(h.owner_peak(a), 350u);
    EXPECT_EQ(h.owner_peak(b), 1000u);
    auto list = h.owner_allocations(a);
    std::sort(list.begin(), list.end(), [](auto x, auto y) { return x.size < y.size; });
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0].pointer, a3);
    EXPECT_EQ(list[0].size, 50u);
    EXPECT_EQ(list[1].pointer, a2);
    EXPECT_EQ(list[1].size, 250u);
    const auto info = h.owner_info(a);
    EXPECT_EQ(info.name, "a");
    EXPECT_EQ(info.self_blocks, 2u);
    EXPECT_EQ(info.self_bytes, 300u);
    EXPECT_FALSE(info.parent.has_value());
    EXPECT_EQ(info.limit, managed_heap::unlimited);
    EXPECT_EQ(h.used(), 1300u);
    h.deallocate(b1);
    EXPECT_EQ(h.free_owner(a), 300u);
    expect_empty(h);
}

TEST(ManagedHeap, OwnerCleanupFreesEverythingIncludingDescendants) {
    managed_heap h{small_heap(8 * MiB)};
    const owner_id root = h.create_owner("query");
    const owner_id child = h.create_owner("stage", managed_heap::unlimited, root);
    const owner_id grandchild = h.create_owner("op", managed_heap::unlimited, child);
    const owner_id other = h.create_owner("other");
    std::size_t expected = 0;
    for (std::size_t i = 1; i <= 1000; ++i) {
        const owner_id o = i % 3 == 0 ? root : i % 3 == 1 ? child : grandchild;
        (void)h.allocate(i, o, i % 2 == 0 ? 64 : 16);
        expected += i;
    }
    void* kept = h.allocate(777, other);
    EXPECT_EQ(h.owner_usage(root), expected);
    EXPECT_EQ(h.owner_info(root).self_blocks, 333u);
    h.validate();
    EXPECT_EQ(h.free_owner(root), expected);
    EXPECT_EQ(h.owner_usage(root), 0u);
    EXPECT_EQ(h.owner_usage(grandchild), 0u);
    EXPECT_EQ(h.owner_peak(root), expected);
    EXPECT_EQ(h.used(), 777u);
    EXPECT_EQ(h.block_count(), 1u);
    h.validate();
    EXPECT_TRUE(h.owner_exists(grandchild)); // owners stay after free_owner
    h.deallocate(kept);
    expect_empty(h);
    EXPECT_EQ(h.free_owner(root), 0u);
}

TEST(ManagedHeap, OwnerTreeLimits) {
    managed_heap h{small_heap()};
    const owner_id parent = h.create_owner("user", 1000);
    const owner_id c1 = h.create_owner("q1", 800, parent);
    const owner_id c2 = h.create_owner("q2", managed_heap::unlimited, parent);
    void* p1 = h.allocate(600, c1);
    void* p2 = h.allocate(300, c2);
    EXPECT_EQ(h.owner_usage(parent), 900u); // children count against the parent
    try {
        (void)h.allocate(200, c2);
        FAIL() << "no throw";
    } catch (const memkit::owner_limit_exceeded& e) {
        EXPECT_EQ(e.owner(), c2);
        EXPECT_EQ(e.limiting_owner(), parent);
        EXPECT_EQ(e.limit(), 1000u);
        EXPECT_EQ(e.used(), 900u);
        EXPECT_EQ(e.remaining(), 100u);
        EXPECT_EQ(e.requested(), 200u);
        EXPECT_EQ(e.code(), memkit::errc::budget_exceeded);
    }
    try {
        (void)h.allocate(250, c1); // c1: 600 + 250 > 800
        FAIL() << "no throw";
    } catch (const memkit::owner_limit_exceeded& e) {
        EXPECT_EQ(e.owner(), c1);
        EXPECT_EQ(e.limiting_owner(), c1);
        EXPECT_EQ(e.limit(), 800u);
        EXPECT_EQ(e.remaining(), 200u);
    }
    EXPECT_THROW((void)h.allocate(101, parent), memkit::budget_exceeded);
    EXPECT_EQ(h.try_allocate(101, parent), nullptr);
    void* p3 = h.allocate(100, parent); // exactly at the limit
    EXPECT_EQ(h.owner_usage(parent), 1000u);
    EXPECT_EQ(h.owner_usage(c1), 600u);
    EXPECT_EQ(h.owner_usage(c2), 300u);
    EXPECT_EQ(h.used(), 1000u);
    h.validate();
    h.deallocate(p1);
    h.set_owner_limit(parent, 2000);
    void* p4 = h.allocate(800, c1);
    EXPECT_EQ(h.owner_usage(parent), 1200u);
    h.deallocate(p2);
    h.deallocate(p3);
    h.deallocate(p4);
    expect_empty(h);
}

TEST(ManagedHeap, RetiredOwnersAreRemovedWhenEmpty) {
    managed_heap h{small_heap()};
    const owner_id a = h.create_owner("a");
    h.retire_owner(a); // empty: removed at once
    EXPECT_FALSE(h.owner_exists(a));
    EXPECT_THROW((void)h.owner_usage(a), std::invalid_argument);

    const owner_id b = h.create_owner("b"); // reuses a's slot with a new generation
    EXPECT_NE(a, b);
    EXPECT_TRUE(h.owner_exists(b));
    EXPECT_FALSE(h.owner_exists(a));
    void* p = h.allocate(64, b);
    h.retire_owner(b);
    EXPECT_TRUE(h.owner_exists(b)); // still holds a block
    EXPECT_TRUE(h.owner_info(b).retired);
    EXPECT_THROW((void)h.allocate(64, b), std::invalid_argument);
    EXPECT_EQ(h.try_allocate(64, b), nullptr);
    EXPECT_THROW((void)h.create_owner("child", managed_heap::unlimited, b), std::invalid_argument);
    h.deallocate(p);
    EXPECT_FALSE(h.owner_exists(b));

    // A retired parent goes when its last child does; free_owner removes retired descendants.
    const owner_id parent = h.create_owner("parent");
    const owner_id child = h.create_owner("child", 1000, parent);
    (void)h.allocate(10, child);
    (void)h.allocate(20, parent);
    h.retire_owner(child);
    h.retire_owner(parent);
    EXPECT_EQ(h.snapshot().owners, 3u);
    EXPECT_EQ(h.free_owner(parent), 30u);
    EXPECT_FALSE(h.owner_exists(child));
    EXPECT_FALSE(h.owner_exists(parent));
    EXPECT_EQ(h.snapshot().owners, 1u);
    EXPECT_THROW(h.retire_owner(owner_id{}), std::invalid_argument);
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Pressure

TEST(ManagedHeap, PressureTransitionsAreExactAndReportedOncePerCrossing) {
    managed_heap_options opts = small_heap(MiB);
    opts.pressure_hysteresis = 0.02;
    managed_heap h{opts};
    std::vector<std::pair<pressure_level, pressure_level>> events;
    h.on_pressure_change([&](const memkit::heap_pressure_event& e) {
        EXPECT_EQ(e.capacity, MiB);
        events.emplace_back(e.from, e.to);
    });
    const owner_id o = h.create_owner("load");
    std::vector<void*> blocks;
    blocks.push_back(h.allocate(968, o));
    const std::size_t f = h.heap_bytes(); // footprint of one block
    ASSERT_GE(f, 968u + 48);
    const double cap = static_cast<double>(MiB);
    auto bound = [&](double t) { return static_cast<std::size_t>(std::ceil(t * cap)); };
    auto blocks_for = [&](std::size_t bytes) { return (bytes + f - 1) / f; };
    const std::size_t n_medium = blocks_for(bound(0.60)), n_high = blocks_for(bound(0.80)),
                      n_critical = blocks_for(bound(0.95));
    const auto hyst = static_cast<std::size_t>(0.02 * cap);

    auto grow_to = [&](std::size_t n) {
        while (blocks.size() < n) blocks.push_back(h.allocate(968, o));
        ASSERT_EQ(h.heap_bytes(), n * f);
    };
    auto shrink_to = [&](std::size_t n) {
        while (blocks.size() > n) {
            h.deallocate(blocks.back());
            blocks.pop_back();
        }
    };
    grow_to(n_medium - 1);
    EXPECT_TRUE(events.empty());
    EXPECT_EQ(h.level(), pressure_level::low);
    grow_to(n_medium);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0], std::make_pair(pressure_level::low, pressure_level::medium));
    // Hovering around the threshold reports nothing more.
    for (int i = 0; i < 5; ++i) {
        shrink_to(n_medium - 1);
        grow_to(n_medium);
    }
    EXPECT_EQ(events.size(), 1u);
    EXPECT_EQ(h.level(), pressure_level::medium);
    grow_to(n_high);
    grow_to(n_critical - 1);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[1], std::make_pair(pressure_level::medium, pressure_level::high));
    grow_to(n_critical);
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[2], std::make_pair(pressure_level::high, pressure_level::critical));
    EXPECT_EQ(h.snapshot().level, pressure_level::critical);
    // Down: below the critical threshold minus the hysteresis.
    const std::size_t n_leave_critical = (bound(0.95) - hyst - 1) / f; // largest n with n*f < b-h
    shrink_to(n_leave_critical + 1);
    EXPECT_EQ(events.size(), 3u);
    shrink_to(n_leave_critical);
    ASSERT_EQ(events.size(), 4u);
    EXPECT_EQ(events[3], std::make_pair(pressure_level::critical, pressure_level::high));
    // free_owner drops to low in one event.
    h.free_owner(o);
    blocks.clear();
    ASSERT_EQ(events.size(), 5u);
    EXPECT_EQ(events[4], std::make_pair(pressure_level::high, pressure_level::low));
    EXPECT_EQ(h.level(), pressure_level::low);
    expect_empty(h);
}

TEST(ManagedHeap, PressureCallbackMayCallTheHeapAndCanBeRemoved) {
    managed_heap h{small_heap(MiB)};
    int calls = 0;
    const auto id = h.on_pressure_change([&](const memkit::heap_pressure_event& e) {
        ++calls;
        if (e.to >= pressure_level::high) (void)h.snapshot(); // no deadlock
    });
    void* p = h.allocate(900 * KiB);
    EXPECT_EQ(calls, 1);
    h.deallocate(p);
    EXPECT_EQ(calls, 2);
    EXPECT_TRUE(h.remove_callback(id));
    EXPECT_FALSE(h.remove_callback(id));
    p = h.allocate(900 * KiB);
    h.deallocate(p);
    EXPECT_EQ(calls, 2);
}

TEST(ManagedHeap, InvalidOptions) {
    managed_heap_options o = small_heap();
    o.thresholds.high = 0.5;
    EXPECT_THROW(managed_heap{o}, std::invalid_argument);
    o = small_heap();
    o.pressure_hysteresis = 0.7;
    EXPECT_THROW(managed_heap{o}, std::invalid_argument);
    o = small_heap();
    o.capacity = 32;
    EXPECT_THROW(managed_heap{o}, memkit::bad_size);
}

TEST(ManagedHeap, ValidateDetectsABrokenHeader) {
    managed_heap h{small_heap()};
    auto* p = static_cast<std::byte*>(h.allocate(64));
    std::uint64_t saved;
    std::memcpy(&saved, p - 8, 8);
    const std::uint64_t junk = 0;
    std::memcpy(p - 8, &junk, 8); // the canary in front of the payload
    EXPECT_THROW(h.validate(), memkit::corruption_detected);
    std::memcpy(p - 8, &saved, 8);
    h.validate();
    h.deallocate(p);
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Deferred frees and collection

managed_heap_options deferring(std::size_t capacity, std::size_t threshold = 1000) {
    managed_heap_options o = small_heap(capacity);
    o.defer_frees = true;
    o.collect_threshold = threshold;
    return o;
}

TEST(ManagedHeapCollection, DeferredFreesWaitInTheQuarantine) {
    managed_heap h{deferring(MiB, 5)};
    const owner_id o = h.create_owner("o");
    std::vector<void*> blocks;
    for (std::size_t i = 1; i <= 10; ++i) blocks.push_back(h.allocate(100 * i, o));
    const std::size_t full = h.heap_bytes();
    for (std::size_t i = 0; i < 4; ++i) h.deallocate(blocks[i]); // 100+200+300+400
    EXPECT_EQ(h.used(), 5500u - 1000u);
    EXPECT_EQ(h.owner_usage(o), 4500u); // the owner no longer holds them
    EXPECT_EQ(h.owner_allocations(o).size(), 6u);
    EXPECT_EQ(h.heap_bytes(), full); // the memory is not back yet
    auto s = h.snapshot();
    EXPECT_EQ(s.deferred_blocks, 4u);
    EXPECT_EQ(s.deferred_bytes, 1000u);
    EXPECT_FALSE(h.should_collect());
    h.validate();
    try {
        h.deallocate(blocks[0]);
        FAIL() << "no throw";
    } catch (const memkit::invalid_address& e) {
        EXPECT_EQ(e.code(), memkit::errc::double_free);
    }
    h.deallocate(blocks[4]);
    EXPECT_TRUE(h.should_collect());
    const memkit::collect_result r = h.collect();
    EXPECT_EQ(r.blocks, 5u);
    EXPECT_EQ(r.bytes, 1500u);
    EXPECT_TRUE(r.complete);
    EXPECT_FALSE(h.should_collect());
    EXPECT_LT(h.heap_bytes(), full);
    h.validate();
    EXPECT_EQ(h.free_owner(o), 4000u); // deferred as well
    EXPECT_EQ(h.snapshot().deferred_blocks, 5u);
    EXPECT_EQ(h.collect().blocks, 5u);
    expect_empty(h);
}

TEST(ManagedHeapCollection, UnreferencedBlocksOfRetiredOwnersAreCollected) {
    managed_heap h{small_heap()};
    const owner_id done = h.create_owner("finished-request");
    const owner_id alive = h.create_owner("running-request");
    for (int i = 0; i < 50; ++i) (void)h.allocate(64, done);
    void* keep = h.allocate(64, alive);
    EXPECT_FALSE(h.should_collect());
    h.retire_owner(done); // its handle was dropped without freeing
    EXPECT_TRUE(h.should_collect());
    EXPECT_TRUE(h.owner_exists(done));
    const memkit::collect_result r = h.collect();
    EXPECT_EQ(r.blocks, 50u);
    EXPECT_EQ(r.bytes, 50u * 64);
    EXPECT_FALSE(h.owner_exists(done));
    EXPECT_FALSE(h.should_collect());
    EXPECT_EQ(h.used(), 64u);
    h.validate();
    h.deallocate(keep);
    expect_empty(h);
}

TEST(ManagedHeapCollection, IncrementalCollectionRespectsItsBudget) {
    managed_heap h{deferring(64 * MiB)};
    std::vector<void*> blocks;
    for (int i = 0; i < 20000; ++i) blocks.push_back(h.allocate(32));
    for (void* p : blocks) h.deallocate(p);
    EXPECT_TRUE(h.should_collect());
    // A zero budget still makes progress: one batch of 32 blocks.
    memkit::collect_result r = h.collect(std::chrono::nanoseconds{0});
    EXPECT_EQ(r.blocks, 32u);
    EXPECT_FALSE(r.complete);
    std::size_t total = r.blocks, calls = 0;
    const auto budget = std::chrono::microseconds{200};
    std::chrono::nanoseconds longest{0};
    do {
        const auto t0 = std::chrono::steady_clock::now();
        r = h.collect(budget);
        longest = std::max(longest, std::chrono::steady_clock::now() - t0);
        total += r.blocks;
        ++calls;
    } while (!r.complete);
    EXPECT_EQ(total, 20000u);
    EXPECT_GE(calls, 1u);
    // Generous margin (sanitizers, a loaded machine): one batch over the budget plus scheduling.
    EXPECT_LT(longest, budget + std::chrono::milliseconds{50});
    expect_empty(h);
}

TEST(ManagedHeapCollection, FullHeapCollectsBeforeFailing) {
    managed_heap_options o = deferring(MiB);
    o.collect_on_critical = false;
    managed_heap h{o};
    std::vector<void*> blocks;
    for (int i = 0; i < 4; ++i) blocks.push_back(h.allocate(200 * KiB));
    for (void* p : blocks) h.deallocate(p);
    EXPECT_EQ(h.snapshot().deferred_blocks, 4u);
    void* big = h.allocate(900 * KiB); // fits only once the quarantine is collected
    EXPECT_EQ(h.snapshot().deferred_blocks, 0u);
    h.deallocate(big);
    (void)h.collect();
    expect_empty(h);
}

TEST(ManagedHeapCollection, CriticalPressureCollectsTheQuarantine) {
    managed_heap h{deferring(MiB)};
    std::vector<pressure_level> levels;
    h.on_pressure_change([&](const memkit::heap_pressure_event& e) { levels.push_back(e.to); });
    void* a = h.allocate(500 * KiB);
    void* b = h.allocate(300 * KiB);
    h.deallocate(a); // deferred: heap_bytes stays at ~78 %
    EXPECT_EQ(h.level(), pressure_level::medium);
    void* c = h.allocate(200 * KiB); // ~98 %: critical, which collects a
    EXPECT_EQ(h.snapshot().deferred_blocks, 0u);
    EXPECT_EQ(h.level(), pressure_level::low);
    const std::vector<pressure_level> expected = {pressure_level::medium, pressure_level::low};
    EXPECT_EQ(levels, expected); // critical and back within one call: one net event
    h.deallocate(b);
    h.deallocate(c);
    (void)h.collect();
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Events

// Records every event as a short string, in order.
class recording_observer final : public memkit::heap_observer {
public:
    void on_allocated(owner_id o, void* p, std::size_t size) override {
        log.push_back("alloc " + std::to_string(o.value) + " " + std::to_string(size));
        pointers.push_back(p);
    }
    void on_deallocated(owner_id o, void* p, std::size_t size) override {
        log.push_back("free " + std::to_string(o.value) + " " + std::to_string(size));
        pointers.push_back(p);
    }
    void on_out_of_memory(const memkit::heap_out_of_memory_event& d) override {
        log.push_back(std::string("oom ") + (d.limit ? "limit " : "capacity ") +
                      std::to_string(d.requested));
        failures.push_back(d);
    }
    void on_pressure_changed(const memkit::heap_pressure_event& e) override {
        log.push_back("pressure " + std::string(to_string(e.from)) + " " +
                      std::string(to_string(e.to)));
    }
    void on_collected(std::size_t blocks, std::size_t bytes, std::chrono::nanoseconds pause) override {
        log.push_back("collected " + std::to_string(blocks) + " " + std::to_string(bytes));
        EXPECT_GE(pause.count(), 0);
    }
    std::vector<std::string> log;
    std::vector<void*> pointers;
    std::vector<memkit::heap_out_of_memory_event> failures;
};

TEST(ManagedHeapEvents, ExactEventsInOrderForAScriptedSequence) {
    managed_heap h{small_heap(MiB)};
    auto rec = std::make_shared<recording_observer>();
    auto counts = std::make_shared<memkit::counting_observer>();
    h.add_observer(rec);
    h.add_observer(counts);
    const owner_id o = h.create_owner("o");
    const owner_id lim = h.create_owner("lim", 250);
    const std::string os = std::to_string(o.value), ls = std::to_string(lim.value);

    void* a = h.allocate(100, o);
    void* b = h.allocate(200, o);
    EXPECT_EQ(h.try_allocate(300, lim), nullptr);                 // the owner's limit
    EXPECT_THROW((void)h.allocate(300, lim), memkit::owner_limit_exceeded);
    EXPECT_EQ(h.try_allocate(2 * MiB, o), nullptr);               // the capacity
    EXPECT_THROW((void)h.allocate(2 * MiB, o), memkit::out_of_memory);
    h.deallocate(a);
    void* p = h.allocate(900 * KiB, o);                           // low -> high: the warning
    h.deallocate(p);                                              // high -> low
    EXPECT_EQ(h.free_owner(o), 200u);                             // b
    EXPECT_THROW(h.deallocate(b), memkit::invalid_address);      // no event for a refused free
    h.deallocate(nullptr);                                        // nor for nullptr

    const std::vector<std::string> want = {
        "alloc " + os + " 100",       "alloc " + os + " 200",
        "oom limit 300",              "oom limit 300",
        "oom capacity 2097152",       "oom capacity 2097152",
        "free " + os + " 100",        "alloc " + os + " 921600",
        "pressure low high",          "free " + os + " 921600",
        "pressure high low",          "free " + os + " 200"};
    EXPECT_EQ(rec->log, want);
    ASSERT_EQ(rec->pointers.size(), 6u);
    EXPECT_EQ(rec->pointers[0], a);
    EXPECT_EQ(rec->pointers[1], b);
    EXPECT_EQ(rec->pointers[2], a);
    EXPECT_EQ(rec->pointers[3], p);
    EXPECT_EQ(rec->pointers[5], b);

    ASSERT_EQ(rec->failures.size(), 4u);
    const auto& f = rec->failures[0];
    EXPECT_EQ(f.owner, lim);
    EXPECT_EQ(f.limiting_owner, lim);
    EXPECT_EQ(f.requested, 300u);
    EXPECT_EQ(f.alignment, alignof(std::max_align_t));
    EXPECT_EQ(f.available, 250u);
    EXPECT_EQ(f.used, 0u);
    EXPECT_EQ(f.capacity, 250u);
    const auto& c = rec->failures[2];
    EXPECT_FALSE(c.limit);
    EXPECT_EQ(c.owner, o);
    EXPECT_EQ(c.requested, 2 * MiB);
    EXPECT_EQ(c.capacity, MiB);
    EXPECT_LT(c.available, MiB);

    EXPECT_EQ(counts->allocated(), 3u);
    EXPECT_EQ(counts->allocated_bytes(), 100u + 200u + 900 * KiB);
    EXPECT_EQ(counts->deallocated(), 3u);
    EXPECT_EQ(counts->deallocated_bytes(), 100u + 200u + 900 * KiB);
    EXPECT_EQ(counts->out_of_memory(), 4u);
    EXPECT_EQ(counts->pressure_changed(), 2u);
    EXPECT_EQ(counts->warnings(), 1u);
    EXPECT_EQ(counts->collected(), 0u);
    expect_empty(h);
}

TEST(ManagedHeapEvents, FreeOwnerReportsEveryBlockOfTheSubtree) {
    managed_heap h{small_heap(MiB)};
    auto rec = std::make_shared<recording_observer>();
    h.add_observer(rec);
    const owner_id parent = h.create_owner("parent");
    const owner_id child = h.create_owner("child", managed_heap::unlimited, parent);
    (void)h.allocate(10, parent);
    (void)h.allocate(20, child);
    (void)h.allocate(30, child);
    rec->log.clear();
    EXPECT_EQ(h.free_owner(parent), 60u);
    const std::string ps = std::to_string(parent.value), cs = std::to_string(child.value);
    // The owner's blocks first, then its descendants', each owner's most recent first.
    EXPECT_EQ(rec->log, (std::vector<std::string>{"free " + ps + " 10", "free " + cs + " 30",
                                                   "free " + cs + " 20"}));
    expect_empty(h);
}

TEST(ManagedHeapEvents, CollectionsAreReported) {
    managed_heap_options opts = small_heap(MiB);
    opts.defer_frees = true;
    managed_heap h{opts};
    auto rec = std::make_shared<recording_observer>();
    h.add_observer(rec);
    void* x = h.allocate(64);
    void* y = h.allocate(32);
    h.deallocate(x); // reported now: the owner stops counting it
    h.deallocate(y);
    const owner_id r = h.create_owner("request");
    (void)h.allocate(16, r);
    h.retire_owner(r);
    EXPECT_EQ(h.collect().blocks, 3u); // the quarantine and the retired owner's block
    EXPECT_EQ(h.collect().blocks, 0u); // nothing freed: no event
    const std::string rs = std::to_string(r.value);
    EXPECT_EQ(rec->log, (std::vector<std::string>{"alloc 0 64", "alloc 0 32", "free 0 64",
                                                   "free 0 32", "alloc " + rs + " 16",
                                                   "collected 3 112"}));
    // An incremental collection reports each batch of 32.
    rec->log.clear();
    for (int i = 0; i < 40; ++i) h.deallocate(h.allocate(8));
    rec->log.clear();
    const auto res = h.collect(std::chrono::hours(1));
    EXPECT_EQ(res.blocks, 40u);
    EXPECT_EQ(rec->log, (std::vector<std::string>{"collected 32 256", "collected 8 64"}));
    expect_empty(h);
}

TEST(ManagedHeapEvents, HighPressureWarningReachesObserversAndCallbacksFirst) {
    managed_heap h{small_heap(MiB)};
    std::vector<std::string> order;
    h.on_pressure_change([&](const memkit::heap_pressure_event&) { order.push_back("callback"); });
    struct obs final : memkit::heap_observer {
        std::vector<std::string>* order;
        std::vector<memkit::heap_pressure_event> events;
        explicit obs(std::vector<std::string>* o) : order(o) {}
        void on_pressure_changed(const memkit::heap_pressure_event& e) override {
            order->push_back("observer");
            events.push_back(e);
        }
    };
    auto o = std::make_shared<obs>(&order);
    h.add_observer(o);
    void* p = h.allocate(990 * KiB); // straight to critical: one event
    ASSERT_EQ(o->events.size(), 1u);
    EXPECT_EQ(o->events[0].from, pressure_level::low);
    EXPECT_EQ(o->events[0].to, pressure_level::critical);
    EXPECT_EQ(o->events[0].heap_bytes, h.heap_bytes());
    EXPECT_EQ(o->events[0].capacity, MiB);
    EXPECT_EQ(order, (std::vector<std::string>{"callback", "observer"}));
    h.deallocate(p);
    ASSERT_EQ(o->events.size(), 2u);
    EXPECT_EQ(o->events[1].to, pressure_level::low);
}

TEST(ManagedHeapEvents, RemovalAndTheNoObserverPath) {
    managed_heap h{small_heap(MiB)};
    auto counts = std::make_shared<memkit::counting_observer>();
    EXPECT_THROW(h.add_observer(nullptr), std::invalid_argument);
    EXPECT_FALSE(h.remove_observer(counts));
    h.add_observer(counts);
    h.deallocate(h.allocate(10));
    EXPECT_TRUE(h.remove_observer(counts));
    EXPECT_FALSE(h.remove_observer(counts));
    // Without observers everything behaves as before and nothing is reported.
    void* p = h.allocate(20);
    EXPECT_EQ(h.try_allocate(2 * MiB), nullptr);
    h.deallocate(p);
    (void)h.allocate(900 * KiB);
    EXPECT_EQ(h.free_owner(owner_id{}), 900 * KiB);
    EXPECT_EQ(counts->allocated(), 1u);
    EXPECT_EQ(counts->deallocated(), 1u);
    EXPECT_EQ(counts->out_of_memory(), 0u);
    EXPECT_EQ(counts->pressure_changed(), 0u);
    const auto s = h.snapshot();
    EXPECT_EQ(s.allocations, 3u);
    EXPECT_EQ(s.deallocations, 3u);
    EXPECT_EQ(s.failed_allocations, 1u);
    expect_empty(h);
    // The same observer twice is told twice; removing it removes one registration.
    h.add_observer(counts);
    h.add_observer(counts);
    h.deallocate(h.allocate(10));
    EXPECT_EQ(counts->allocated(), 3u);
    EXPECT_TRUE(h.remove_observer(counts));
    h.deallocate(h.allocate(10));
    EXPECT_EQ(counts->allocated(), 4u);
}

TEST(ManagedHeapEvents, ObserversMayCallTheHeap) {
    managed_heap h{small_heap(MiB)};
    struct reentrant final : memkit::heap_observer {
        managed_heap* heap;
        std::vector<std::size_t> used;
        explicit reentrant(managed_heap* hp) : heap(hp) {}
        void on_allocated(owner_id, void*, std::size_t) override { used.push_back(heap->used()); }
        void on_deallocated(owner_id, void*, std::size_t) override {
            used.push_back(heap->used());
        }
    };
    auto o = std::make_shared<reentrant>(&h);
    h.add_observer(o);
    void* p = h.allocate(100);
    h.deallocate(p);
    EXPECT_EQ(o->used, (std::vector<std::size_t>{100, 0}));
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

TEST(ManagedHeapEvents, JsonLinesHaveOneObjectPerEvent) {
    managed_heap_options opts = small_heap(MiB);
    opts.defer_frees = true;
    managed_heap h{opts};
    std::ostringstream out;
    h.add_observer(std::make_shared<memkit::json_lines_observer>(out));
    const owner_id lim = h.create_owner("lim", 50);
    void* p = h.allocate(100);
    EXPECT_EQ(h.try_allocate(60, lim), nullptr);
    h.deallocate(p);
    (void)h.collect();
    void* big = h.allocate(900 * KiB);
    h.deallocate(big);
    (void)h.collect();
    const auto lines = lines_of(out.str());
    ASSERT_EQ(lines.size(), 9u) << out.str();
    for (const auto& l : lines) {
        ASSERT_FALSE(l.empty());
        EXPECT_EQ(l.front(), '{') << l;
        EXPECT_EQ(l.back(), '}') << l;
        EXPECT_EQ(l.find('\n'), std::string::npos);
        EXPECT_EQ(std::count(l.begin(), l.end(), '{'), 1) << l;
    }
    const std::string addr = std::to_string(reinterpret_cast<std::uintptr_t>(p));
    EXPECT_EQ(lines[0], "{\"event\":\"allocated\",\"owner\":0,\"address\":" + addr +
                            ",\"size\":100}");
    EXPECT_EQ(lines[1].rfind("{\"event\":\"out_of_memory\",\"owner\":" +
                                 std::to_string(lim.value) +
                                 ",\"requested\":60,\"alignment\":16,\"reason\":\"owner_limit\","
                                 "\"limiting_owner\":" + std::to_string(lim.value) +
                                 ",\"available\":50,\"used\":0,\"capacity\":50}",
                             0),
              0u)
        << lines[1];
    EXPECT_EQ(lines[2], "{\"event\":\"deallocated\",\"owner\":0,\"address\":" + addr +
                            ",\"size\":100}");
    EXPECT_EQ(lines[3].rfind("{\"event\":\"collected\",\"blocks\":1,\"bytes\":100,\"pause_ns\":", 0),
              0u)
        << lines[3];
    EXPECT_NE(lines[4].find("\"event\":\"allocated\""), std::string::npos);
    EXPECT_NE(lines[4].find("\"size\":921600}"), std::string::npos);
    EXPECT_NE(lines[5].find("{\"event\":\"pressure_changed\",\"from\":\"low\",\"to\":\"high\","
                            "\"heap_bytes\":"),
              std::string::npos)
        << lines[5];
    EXPECT_NE(lines[5].find(",\"capacity\":1048576,\"severity\":\"warning\"}"), std::string::npos)
        << lines[5];
    EXPECT_NE(lines[6].find("\"event\":\"deallocated\""), std::string::npos);
    // The deferred block still counted in heap_bytes until collected: the drop comes after.
    EXPECT_NE(lines[7].find("\"event\":\"collected\",\"blocks\":1,\"bytes\":921600"),
              std::string::npos)
        << lines[7];
    EXPECT_EQ(lines[8], "{\"event\":\"pressure_changed\",\"from\":\"high\",\"to\":\"low\","
                        "\"heap_bytes\":0,\"capacity\":1048576,\"severity\":\"info\"}");
}

// ---------------------------------------------------------------------------------------------
// heap_guard

TEST(ManagedHeapGuard, FreesOnDestruction) {
    managed_heap h{small_heap(MiB)};
    const owner_id o = h.create_owner("g", 1000);
    {
        managed_heap::guard g = h.allocate_guarded(300, o);
        ASSERT_NE(g.get(), nullptr);
        EXPECT_TRUE(static_cast<bool>(g));
        EXPECT_EQ(g.size(), 300u);
        EXPECT_EQ(managed_heap::size_of(g.get()), 300u);
        EXPECT_EQ(h.owner_of(g.get()), o);
        EXPECT_EQ(h.owner_usage(o), 300u);
        memkit::heap_guard g2{h, 64};
        EXPECT_EQ(h.owner_usage(owner_id{}), 64u);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(memkit::heap_guard{h, 8, o, 256}.get()) % 256,
                  0u);
    }
    expect_empty(h);
    // A refused allocation throws and leaves nothing behind.
    EXPECT_THROW(memkit::heap_guard(h, 2000, o), memkit::owner_limit_exceeded);
    EXPECT_THROW((void)h.allocate_guarded(0, o), memkit::bad_size);
    expect_empty(h);
    const memkit::heap_guard empty;
    EXPECT_EQ(empty.get(), nullptr);
    EXPECT_EQ(empty.size(), 0u);
}

TEST(ManagedHeapGuard, MoveTransfersOwnership) {
    static_assert(!std::is_copy_constructible_v<memkit::heap_guard>);
    static_assert(!std::is_copy_assignable_v<memkit::heap_guard>);
    static_assert(std::is_nothrow_move_constructible_v<memkit::heap_guard>);
    static_assert(std::is_nothrow_move_assignable_v<memkit::heap_guard>);
    managed_heap h{small_heap(MiB)};
    memkit::heap_guard a{h, 100};
    void* const pa = a.get();
    memkit::heap_guard b{std::move(a)};
    EXPECT_EQ(a.get(), nullptr); // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(a.size(), 0u);     // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(b.get(), pa);
    EXPECT_EQ(b.size(), 100u);
    EXPECT_EQ(h.block_count(), 1u);
    memkit::heap_guard c{h, 200};
    c = std::move(b); // frees c's block
    EXPECT_EQ(c.get(), pa);
    EXPECT_EQ(h.block_count(), 1u);
    EXPECT_EQ(h.used(), 100u);
    auto& self = c;
    c = std::move(self);
    EXPECT_EQ(c.get(), pa);
    std::vector<memkit::heap_guard> v;
    for (int i = 0; i < 20; ++i) v.emplace_back(h, 10); // moves on growth
    EXPECT_EQ(h.block_count(), 21u);
    v.clear();
    c.reset();
    EXPECT_EQ(c.get(), nullptr);
    expect_empty(h);
}

TEST(ManagedHeapGuard, ReleaseGivesUpOwnership) {
    managed_heap h{small_heap(MiB)};
    void* p = nullptr;
    {
        memkit::heap_guard g = h.allocate_guarded(50);
        p = g.release();
        EXPECT_EQ(g.get(), nullptr);
        EXPECT_EQ(g.size(), 0u);
    }
    EXPECT_EQ(h.used(), 50u);
    h.deallocate(p);
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Bounds-checked read / write

std::vector<std::byte> bytes(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
    return v;
}

TEST(ManagedHeapAccess, InBoundsRoundTrip) {
    managed_heap h{small_heap(MiB)};
    constexpr std::size_t n = 100;
    void* p = h.allocate(n);
    const auto in = bytes(n, 7);
    h.write(p, 0, in);
    EXPECT_EQ(std::memcmp(p, in.data(), n), 0);
    std::vector<std::byte> out(n);
    h.read(p, 0, out);
    EXPECT_EQ(out, in);
    // A piece in the middle, and ranges that end exactly at the end.
    const auto mid = bytes(10, 99);
    h.write(p, 45, mid);
    std::vector<std::byte> got(10);
    h.read(p, 45, got);
    EXPECT_EQ(got, mid);
    std::vector<std::byte> tail(4);
    h.read(p, n - 4, tail);
    EXPECT_EQ(tail, std::vector<std::byte>(in.end() - 4, in.end()));
    h.write(p, n - 4, std::span<const std::byte>(mid).first(4));
    h.read(p, n - 4, tail);
    EXPECT_EQ(tail, std::vector<std::byte>(mid.begin(), mid.begin() + 4));
    h.read(p, n, std::span<std::byte>{});  // empty at the end: fine
    h.write(p, n, std::span<const std::byte>{});
    h.read(p, 0, std::span<std::byte>(out)); // the whole block
    EXPECT_EQ(std::memcmp(out.data(), p, n), 0);
    h.deallocate(p);
    expect_empty(h);
}

TEST(ManagedHeapAccess, OutOfBoundsThrowsAndTouchesNothing) {
    managed_heap h{small_heap(MiB)};
    constexpr std::size_t n = 64;
    void* p = h.allocate(n);
    const auto in = bytes(n, 3);
    h.write(p, 0, in);
    std::vector<std::byte> buf(n + 1, std::byte{0x5a});
    const std::vector<std::byte> untouched = buf;
    auto check = [&](std::size_t offset, std::size_t len) {
        SCOPED_TRACE(testing::Message() << "offset " << offset << " length " << len);
        try {
            h.read(p, offset, std::span<std::byte>(buf).first(len));
            ADD_FAILURE() << "read did not throw";
        } catch (const memkit::protection_violation& e) {
            EXPECT_EQ(e.address(), p);
            EXPECT_EQ(e.offset(), offset);
            EXPECT_EQ(e.length(), len);
            EXPECT_EQ(e.block_size(), n);
            const std::out_of_range& base = e; // what callers of std containers catch
            EXPECT_NE(std::string(base.what()).find("outside the block"), std::string::npos);
        }
        EXPECT_EQ(buf, untouched);
        EXPECT_THROW(h.write(p, offset, std::span<const std::byte>(buf).first(len)),
                     memkit::protection_violation);
        EXPECT_EQ(std::memcmp(p, in.data(), n), 0); // the block is unchanged
    };
    check(n + 1, 0);      // offset past the end, nothing to copy
    check(n, 1);          // starts exactly at the end
    check(n - 3, 4);      // one byte too many
    check(0, n + 1);      // longer than the block
    check(1, n);          // the whole size but shifted by one
    constexpr std::size_t max = std::numeric_limits<std::size_t>::max();
    check(max, 2);        // offset + length wraps to 1
    check(max - 2, 4);    // offset + length wraps to 1
    check(max - n + 1, n); // offset + length wraps to 0
    h.deallocate(p);
    expect_empty(h);
}

TEST(ManagedHeapAccess, PointerMustBeTheStartOfALiveBlock) {
    managed_heap h{small_heap(MiB)};
    void* p = h.allocate(64);
    std::vector<std::byte> buf(4);
    auto code_of = [&](const void* q) {
        try {
            h.read(q, 0, buf);
        } catch (const memkit::invalid_address& e) {
            EXPECT_EQ(e.address(), q);
            return e.code();
        }
        return std::error_code{};
    };
    alignas(64) std::byte outside[64] = {};
    EXPECT_EQ(code_of(outside), memkit::errc::not_owned);
    EXPECT_EQ(code_of(nullptr), memkit::errc::not_owned);
    EXPECT_EQ(code_of(static_cast<std::byte*>(p) + 16), memkit::errc::not_owned); // interior
    EXPECT_EQ(code_of(static_cast<std::byte*>(p) + 1), memkit::errc::not_owned);
    EXPECT_THROW(h.write(outside, 0, buf), memkit::invalid_address);
    h.deallocate(p);
    EXPECT_EQ(code_of(p), memkit::errc::not_owned); // freed
    EXPECT_THROW(h.write(p, 0, buf), memkit::invalid_address);
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Concurrency (run under ThreadSanitizer)

TEST(ManagedHeapConcurrency, EightThreadsMixedOwners) {
    managed_heap h{small_heap(64 * MiB)};
    const owner_id shared = h.create_owner("shared", 16 * MiB);
    constexpr int threads = 8, ops = 3000;
    std::vector<std::thread> pool;
    std::vector<std::size_t> limit_failures(threads);
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) + 1);
            const owner_id mine = h.create_owner("thread", 256 * KiB, shared);
            std::vector<std::pair<unsigned char*, std::size_t>> live;
            for (int i = 0; i < ops; ++i) {
                const auto r = rng() % 10;
                if (r < 4 && !live.empty()) {
                    const std::size_t k = rng() % live.size();
                    ASSERT_EQ(live[k].first[0], static_cast<unsigned char>(t));
                    h.deallocate(live[k].first);
                    live[k] = live.back();
                    live.pop_back();
                } else if (r == 9 && i % 100 == 0) {
                    h.free_owner(mine);
                    live.erase(std::remove_if(live.begin(), live.end(),
                                              [&](auto& b) { return b.second == 1; }),
                               live.end());
                } else {
                    const bool own = rng() % 2 == 0;
                    const std::size_t size = 1 + rng() % 4096;
                    void* p = h.try_allocate(size, own ? mine : shared, 16);
                    if (p == nullptr) {
                        ++limit_failures[static_cast<std::size_t>(t)];
                        continue;
                    }
                    static_cast<unsigned char*>(p)[0] = static_cast<unsigned char>(t);
                    live.emplace_back(static_cast<unsigned char*>(p), own ? 1 : 0);
                }
            }
            for (auto& b : live) h.deallocate(b.first);
            EXPECT_EQ(h.owner_usage(mine), 0u);
            h.retire_owner(mine);
        });
    }
    for (auto& th : pool) th.join();
    EXPECT_EQ(h.owner_usage(shared), 0u);
    EXPECT_LE(h.owner_peak(shared), 16 * MiB);
    EXPECT_EQ(h.snapshot().owners, 2u); // default + shared; the thread owners were removed
    expect_empty(h);
}

TEST(ManagedHeapConcurrency, ConcurrentStatsAndValidate) {
    managed_heap h{small_heap(16 * MiB)};
    std::atomic<bool> stop{false};
    std::thread reader([&] {
        while (!stop.load()) {
            const auto s = h.snapshot();
            EXPECT_LE(s.used, s.heap_bytes);
            h.validate();
        }
    });
    std::vector<std::thread> writers;
    for (int t = 0; t < 3; ++t)
        writers.emplace_back([&] {
            const owner_id o = h.create_owner("w");
            for (int i = 0; i < 500; ++i) {
                void* p = h.allocate(static_cast<std::size_t>(i % 300) + 1, o);
                if (i % 2 == 0) h.deallocate(p);
            }
            h.free_owner(o);
            h.retire_owner(o);
        });
    for (auto& w : writers) w.join();
    stop = true;
    reader.join();
    expect_empty(h);
}

TEST(ManagedHeapConcurrency, DeferredFreesWithAConcurrentCollector) {
    managed_heap h{deferring(32 * MiB, 100)};
    std::atomic<bool> stop{false};
    std::thread collector([&] {
        while (!stop.load()) {
            if (h.should_collect()) (void)h.collect(std::chrono::microseconds{100});
        }
    });
    std::vector<std::thread> workers;
    for (int t = 0; t < 4; ++t)
        workers.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) + 100);
            const owner_id o = h.create_owner("worker", 4 * MiB);
            std::vector<void*> live;
            for (int i = 0; i < 2000; ++i) {
                if (!live.empty() && rng() % 2 == 0) {
                    h.deallocate(live.back());
                    live.pop_back();
                } else {
                    live.push_back(h.allocate(1 + rng() % 1024, o));
                }
            }
            h.retire_owner(o); // the rest is reclaimed by the collector
        });
    for (auto& w : workers) w.join();
    stop = true;
    collector.join();
    (void)h.collect();
    EXPECT_EQ(h.snapshot().owners, 1u);
    expect_empty(h);
}

TEST(ManagedHeapConcurrency, ObserversWithConcurrentAllocationsAndRegistration) {
    managed_heap h{small_heap(64 * MiB)};
    auto counts = std::make_shared<memkit::counting_observer>();
    std::ostringstream json;
    auto lines = std::make_shared<memkit::json_lines_observer>(json);
    h.add_observer(counts);
    h.add_observer(lines);
    constexpr int threads = 4, ops = 2000;
    std::atomic<bool> stop{false};
    std::thread churn([&] { // registers and removes another observer all the time
        auto other = std::make_shared<memkit::counting_observer>();
        while (!stop.load()) {
            h.add_observer(other);
            EXPECT_TRUE(h.remove_observer(other));
        }
    });
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            // (std::string{"t"} += ...: GCC 12 reports a false -Wrestrict for "t" + string.)
            const owner_id o = h.create_owner(std::string{"t"} += std::to_string(t));
            std::vector<void*> mine;
            for (int i = 0; i < ops; ++i) {
                mine.push_back(h.allocate(static_cast<std::size_t>(16 + (i % 7) * 8), o));
                if (i % 3 == 2) {
                    h.deallocate(mine.back());
                    mine.pop_back();
                }
                if (i % 500 == 499) {
                    memkit::heap_guard g{h, 32, o};
                    h.write(g.get(), 0, std::as_bytes(std::span<const int>(&i, 1)));
                }
            }
            (void)h.free_owner(o);
        });
    }
    for (auto& th : pool) th.join();
    stop = true;
    churn.join();
    constexpr std::uint64_t allocations = std::uint64_t{threads} * (ops + ops / 500);
    EXPECT_EQ(counts->allocated(), allocations);
    EXPECT_EQ(counts->deallocated(), allocations);
    EXPECT_EQ(counts->allocated_bytes(), counts->deallocated_bytes());
    EXPECT_EQ(lines_of(json.str()).size(), 2 * allocations);
    expect_empty(h);
}

} // namespace
