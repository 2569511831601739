#include "memkit/heap/managed_heap.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <random>
#include <stdexcept>
#include <thread>
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

} // namespace
