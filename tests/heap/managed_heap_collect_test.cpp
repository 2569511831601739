// managed_heap: collection strategies, force_collect, automatic collection with its minimum
// interval, time at each pressure level, the pause bound of budgeted collections, and a
// concurrent stress test of all of them (run under ThreadSanitizer).
#include "memkit/heap/managed_heap.hpp"

#include <gtest/gtest.h>

#include "memkit/core/annotations.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using memkit::collect_result;
using memkit::collect_strategy;
using memkit::managed_heap;
using memkit::managed_heap_options;
using memkit::owner_id;
using memkit::pressure_level;
using namespace std::chrono_literals;

constexpr std::size_t KiB = 1024, MiB = 1024 * KiB;

managed_heap_options deferring(std::size_t capacity = 4 * MiB) {
    managed_heap_options o;
    o.capacity = capacity;
    o.region_size = MiB;
    o.defer_frees = true;
    o.auto_collect = false;
    o.collect_on_critical = false;
    return o;
}

// A clock the test moves by hand.
struct manual_clock {
    std::chrono::steady_clock::time_point now{std::chrono::seconds{1000}};
    std::function<std::chrono::steady_clock::time_point()> fn() {
        return [this] { return now; };
    }
};

void expect_empty(const managed_heap& h) {
    EXPECT_NO_THROW(h.validate());
    EXPECT_EQ(h.used(), 0u);
    EXPECT_EQ(h.heap_bytes(), 0u);
    EXPECT_EQ(h.block_count(), 0u);
    EXPECT_EQ(h.snapshot().deferred_blocks, 0u);
}

// Allocates `count` blocks of `size` for `o` and frees them into the quarantine.
void defer_blocks(managed_heap& h, owner_id o, std::size_t count, std::size_t size) {
    std::vector<void*> v;
    for (std::size_t i = 0; i < count; ++i) v.push_back(h.allocate(size, o));
    for (void* p : v) h.deallocate(p);
}

struct quarantine {
    std::size_t blocks, bytes;
    friend bool operator==(const quarantine&, const quarantine&) = default;
};
quarantine of(const managed_heap& h, owner_id o) {
    const auto s = h.owner_info(o);
    return {s.deferred_blocks, s.deferred_bytes};
}
std::ostream& operator<<(std::ostream& os, const quarantine& q) {
    return os << "{" << q.blocks << " blocks, " << q.bytes << " bytes}";
}

// A heap with three running owners and one retired owner, all with quarantined blocks:
//   big    usage 8000 (one live block), 10 deferred blocks of 100 bytes;
//   mid    usage 3000, 20 deferred blocks of 50 bytes;
//   small  usage 100, 30 deferred blocks of 10 bytes;
//   done   retired with 2 live blocks of 500 bytes and 5 deferred blocks of 40 bytes.
struct scene {
    managed_heap h;
    owner_id big, mid, small, done;
    std::vector<void*> live;
    explicit scene(managed_heap_options o = deferring()) : h(std::move(o)) {
        big = h.create_owner("big");
        mid = h.create_owner("mid");
        small = h.create_owner("small");
        done = h.create_owner("done");
        live.push_back(h.allocate(8000, big));
        live.push_back(h.allocate(3000, mid));
        live.push_back(h.allocate(100, small));
        defer_blocks(h, big, 10, 100);
        defer_blocks(h, mid, 20, 50);
        defer_blocks(h, small, 30, 10);
        defer_blocks(h, done, 5, 40);
        (void)h.allocate(500, done);
        (void)h.allocate(500, done);
        h.retire_owner(done);
    }
    void finish() {
        for (void* p : live) h.deallocate(p);
        (void)h.force_collect();
        expect_empty(h);
    }
};

// ---------------------------------------------------------------------------------------------
// Strategies

TEST(ManagedHeapStrategy, FactoriesAndDefaults) {
    static_assert(collect_strategy{} == collect_strategy::all());
    constexpr auto a = collect_strategy::owners_above(4096);
    static_assert(a.which() == collect_strategy::kind::owners_above && a.bytes() == 4096);
    constexpr auto o = collect_strategy::owner(owner_id{7});
    static_assert(o.which() == collect_strategy::kind::owner && o.target() == owner_id{7});
    static_assert(collect_strategy::unreferenced().which() ==
                  collect_strategy::kind::unreferenced);
    static_assert(to_string(collect_strategy::kind::owners_above) == "owners_above");
    const managed_heap_options defaults;
    EXPECT_EQ(defaults.default_strategy, collect_strategy::all());
    EXPECT_EQ(defaults.auto_collect_interval, 5s);
    EXPECT_EQ(defaults.collect_budget, 1ms);
    EXPECT_EQ(defaults.auto_collect_level, pressure_level::high);
    EXPECT_TRUE(defaults.auto_collect);
    EXPECT_TRUE(defaults.collect_on_critical);
}

TEST(ManagedHeapStrategy, SceneIsAsDescribed) {
    scene s;
    EXPECT_EQ(s.h.owner_usage(s.big), 8000u);
    EXPECT_EQ(of(s.h, s.big), (quarantine{10, 1000}));
    EXPECT_EQ(of(s.h, s.mid), (quarantine{20, 1000}));
    EXPECT_EQ(of(s.h, s.small), (quarantine{30, 300}));
    EXPECT_EQ(of(s.h, s.done), (quarantine{5, 200}));
    EXPECT_EQ(s.h.snapshot().deferred_blocks, 65u);
    EXPECT_EQ(s.h.snapshot().deferred_bytes, 2500u);
    EXPECT_TRUE(s.h.owner_info(s.done).retired);
    EXPECT_TRUE(s.h.should_collect()); // a retired owner holds blocks
    s.h.validate();
    s.finish();
}

TEST(ManagedHeapStrategy, AllFreesEveryQuarantineAndEveryRetiredOwner) {
    scene s;
    const collect_result r = s.h.collect(collect_strategy::all());
    EXPECT_EQ(r.blocks, 65u + 2);
    EXPECT_EQ(r.bytes, 2500u + 1000);
    EXPECT_TRUE(r.complete);
    for (const owner_id o : {s.big, s.mid, s.small}) EXPECT_EQ(of(s.h, o), (quarantine{0, 0}));
    EXPECT_FALSE(s.h.owner_exists(s.done)); // emptied, so removed
    EXPECT_EQ(s.h.used(), 11100u);
    EXPECT_EQ(s.h.snapshot().owners, 4u);
    EXPECT_FALSE(s.h.should_collect());
    s.h.validate();
    EXPECT_EQ(s.h.collect(collect_strategy::all()).blocks, 0u);
    s.finish();
}

TEST(ManagedHeapStrategy, OwnersAboveSelectsByUsage) {
    scene s;
    const std::size_t heap_before = s.h.heap_bytes();
    collect_result r = s.h.collect(collect_strategy::owners_above(3000)); // big only (8000)
    EXPECT_EQ(r.blocks, 10u);
    EXPECT_EQ(r.bytes, 1000u);
    EXPECT_TRUE(r.complete);
    EXPECT_LT(s.h.heap_bytes(), heap_before);
    EXPECT_EQ(of(s.h, s.big), (quarantine{0, 0}));
    EXPECT_EQ(of(s.h, s.mid), (quarantine{20, 1000})); // usage 3000 is not above 3000
    EXPECT_EQ(of(s.h, s.small), (quarantine{30, 300}));
    EXPECT_EQ(of(s.h, s.done), (quarantine{5, 200}));   // usage 1000
    s.h.validate();
    r = s.h.collect(collect_strategy::owners_above(999)); // mid (3000), done (1000)
    EXPECT_EQ(r.blocks, 25u);
    EXPECT_EQ(r.bytes, 1200u);
    EXPECT_EQ(of(s.h, s.mid), (quarantine{0, 0}));
    EXPECT_EQ(of(s.h, s.done), (quarantine{0, 0}));
    EXPECT_EQ(s.h.owner_info(s.done).self_blocks, 2u); // live blocks are not its business
    EXPECT_EQ(of(s.h, s.small), (quarantine{30, 300}));
    EXPECT_EQ(s.h.snapshot().deferred_blocks, 30u);
    EXPECT_EQ(s.h.snapshot().deferred_bytes, 300u);
    s.h.validate();
    // Nobody above a huge threshold: nothing, and complete.
    r = s.h.collect(collect_strategy::owners_above(std::size_t{1} << 40));
    EXPECT_EQ(r.blocks, 0u);
    EXPECT_TRUE(r.complete);
    s.finish();
}

TEST(ManagedHeapStrategy, OwnerTargetsOneOwnerOnly) {
    scene s;
    collect_result r = s.h.collect(collect_strategy::owner(s.mid));
    EXPECT_EQ(r.blocks, 20u);
    EXPECT_EQ(r.bytes, 1000u);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(of(s.h, s.mid), (quarantine{0, 0}));
    EXPECT_EQ(of(s.h, s.big), (quarantine{10, 1000}));
    EXPECT_EQ(of(s.h, s.small), (quarantine{30, 300}));
    EXPECT_EQ(s.h.owner_usage(s.mid), 3000u); // live blocks of a running owner stay
    // A retired owner: its quarantine and its live blocks; then it goes.
    r = s.h.collect(collect_strategy::owner(s.done));
    EXPECT_EQ(r.blocks, 7u);
    EXPECT_EQ(r.bytes, 1200u);
    EXPECT_FALSE(s.h.owner_exists(s.done));
    s.h.validate();
    // Unknown or removed ids are refused, by both forms, and change nothing.
    const auto before = s.h.snapshot();
    EXPECT_THROW((void)s.h.collect(collect_strategy::owner(s.done)), std::invalid_argument);
    EXPECT_THROW((void)s.h.collect(collect_strategy::owner(owner_id{999}), 1ms),
                 std::invalid_argument);
    EXPECT_EQ(s.h.snapshot().deferred_blocks, before.deferred_blocks);
    s.finish();
}

TEST(ManagedHeapStrategy, OwnerDoesNotReachDescendants) {
    managed_heap h{deferring()};
    const owner_id parent = h.create_owner("parent");
    const owner_id child = h.create_owner("child", managed_heap::unlimited, parent);
    defer_blocks(h, parent, 3, 64);
    defer_blocks(h, child, 4, 64);
    EXPECT_EQ(h.collect(collect_strategy::owner(parent)).blocks, 3u);
    EXPECT_EQ(of(h, child), (quarantine{4, 256}));
    EXPECT_EQ(h.collect(collect_strategy::owner(child)).blocks, 4u);
    expect_empty(h);
}

TEST(ManagedHeapStrategy, UnreferencedTakesOnlyRetiredOwners) {
    scene s;
    const collect_result r = s.h.collect(collect_strategy::unreferenced());
    EXPECT_EQ(r.blocks, 7u); // 5 deferred + 2 live of "done"
    EXPECT_EQ(r.bytes, 1200u);
    EXPECT_TRUE(r.complete);
    EXPECT_FALSE(s.h.owner_exists(s.done));
    EXPECT_EQ(of(s.h, s.big), (quarantine{10, 1000}));
    EXPECT_EQ(of(s.h, s.mid), (quarantine{20, 1000}));
    EXPECT_EQ(of(s.h, s.small), (quarantine{30, 300}));
    EXPECT_EQ(s.h.snapshot().deferred_blocks, 60u);
    EXPECT_EQ(s.h.used(), 11100u);
    EXPECT_FALSE(s.h.should_collect()); // 60 < 1000 and no retired owner holds blocks
    s.h.validate();
    s.finish();
}

TEST(ManagedHeapStrategy, RetiredOwnerWithAQuarantineStaysUntilCollected) {
    managed_heap h{deferring()};
    const owner_id o = h.create_owner("request");
    defer_blocks(h, o, 3, 100);
    h.retire_owner(o);
    EXPECT_TRUE(h.owner_exists(o)); // its blocks still sit in the quarantine
    EXPECT_TRUE(h.should_collect());
    EXPECT_THROW((void)h.allocate(10, o), std::invalid_argument);
    EXPECT_EQ(h.collect(collect_strategy::unreferenced()).blocks, 3u);
    EXPECT_FALSE(h.owner_exists(o));
    EXPECT_EQ(h.snapshot().owners, 1u);
    expect_empty(h);
}

TEST(ManagedHeapStrategy, RetiredParentGoesWithItsLastChild) {
    managed_heap h{deferring()};
    const owner_id parent = h.create_owner("parent");
    const owner_id child = h.create_owner("child", managed_heap::unlimited, parent);
    defer_blocks(h, parent, 2, 32);
    (void)h.allocate(32, child);
    h.retire_owner(child);
    h.retire_owner(parent);
    EXPECT_EQ(h.collect(collect_strategy::owner(parent)).blocks, 2u);
    EXPECT_TRUE(h.owner_exists(parent)); // the child is still there
    EXPECT_EQ(h.collect(collect_strategy::unreferenced()).blocks, 1u);
    EXPECT_FALSE(h.owner_exists(child));
    EXPECT_FALSE(h.owner_exists(parent));
    expect_empty(h);
}

TEST(ManagedHeapStrategy, BudgetedCollectionsResumeAndFinishExactly) {
    managed_heap h{deferring(16 * MiB)};
    // 40 owners below the threshold (usage 100) and 3 above (usage 20000), each with 40
    // quarantined blocks of 16 bytes: owners_above(10000) must pass over 40 owners.
    std::vector<owner_id> below, above;
    std::vector<void*> live;
    for (int i = 0; i < 43; ++i) {
        const bool big = i % 14 == 13;
        const owner_id o = h.create_owner(big ? "above" : "below");
        (big ? above : below).push_back(o);
        live.push_back(h.allocate(big ? 20000 : 100, o));
        defer_blocks(h, o, 40, 16);
    }
    ASSERT_EQ(above.size(), 3u);
    std::size_t total = 0, bytes = 0, calls = 0;
    collect_result r;
    do {
        r = h.collect(collect_strategy::owners_above(10000), 0ns); // one batch per call
        EXPECT_LE(r.blocks, 32u);
        total += r.blocks;
        bytes += r.bytes;
        ASSERT_LT(++calls, 100u);
    } while (!r.complete);
    EXPECT_EQ(total, 120u);
    EXPECT_EQ(bytes, 120u * 16);
    EXPECT_GE(calls, (120u + 40u) / 32u); // each batch is at most 32 steps
    for (const owner_id o : above) EXPECT_EQ(of(h, o), (quarantine{0, 0}));
    for (const owner_id o : below) EXPECT_EQ(of(h, o), (quarantine{40, 640}));
    h.validate();
    // The same for all(), and for a collection with a real budget.
    std::size_t rest = 0;
    do {
        r = h.collect(collect_strategy::all(), 0ns);
        EXPECT_LE(r.blocks, 32u);
        rest += r.blocks;
    } while (!r.complete);
    EXPECT_EQ(rest, 40u * 40);
    for (void* p : live) h.deallocate(p);
    r = h.collect(collect_strategy::all(), 1s);
    EXPECT_EQ(r.blocks, 43u);
    EXPECT_TRUE(r.complete);
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// collect() and force_collect()

TEST(ManagedHeapStrategy, CollectUsesTheDefaultStrategyAndForceCollectTakesEverything) {
    managed_heap_options o = deferring();
    o.default_strategy = collect_strategy::unreferenced();
    scene s{o};
    EXPECT_FALSE(s.h.snapshot().deferred_blocks >= o.collect_threshold);
    collect_result r = s.h.collect(); // the retired owner only
    EXPECT_EQ(r.blocks, 7u);
    EXPECT_EQ(s.h.snapshot().deferred_blocks, 60u);
    EXPECT_EQ(s.h.collect(1s).blocks, 0u); // nothing more for unreferenced
    // force_collect ignores the default strategy and the threshold (60 < 1000).
    EXPECT_FALSE(s.h.should_collect());
    r = s.h.force_collect();
    EXPECT_EQ(r.blocks, 60u);
    EXPECT_EQ(r.bytes, 2300u);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(s.h.snapshot().deferred_blocks, 0u);
    s.finish();
}

TEST(ManagedHeapStrategy, ForceCollectIgnoresTheAutomaticInterval) {
    manual_clock clock;
    managed_heap_options o = deferring(MiB);
    o.auto_collect = true;
    o.auto_collect_interval = std::chrono::hours{1};
    o.clock = clock.fn();
    managed_heap h{o};
    const owner_id a = h.create_owner("a");
    void* keep = h.allocate(400 * KiB, a);
    void* b = h.allocate(300 * KiB, a);
    h.deallocate(b);
    void* c = h.allocate(150 * KiB, a); // high: the first automatic collection takes b
    EXPECT_EQ(h.snapshot().automatic_collections, 1u);
    EXPECT_EQ(h.snapshot().deferred_blocks, 0u);
    h.deallocate(c);
    EXPECT_EQ(h.snapshot().deferred_blocks, 1u);
    EXPECT_EQ(h.force_collect().blocks, 1u); // the interval does not apply
    EXPECT_EQ(h.snapshot().automatic_collections, 1u); // and it is not automatic
    h.deallocate(keep);
    EXPECT_EQ(h.force_collect().blocks, 1u);
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Automatic collection

// Capacity 1 MiB: medium from 629146 heap bytes, high from 838861, critical from 996148; the
// level falls 20971 bytes (2 %) below a threshold.
TEST(ManagedHeapAutoCollect, HighPressureCollectsAtMostOncePerInterval) {
    manual_clock clock;
    managed_heap_options o = deferring(MiB);
    o.auto_collect = true; // level high, interval 5 s, budget 1 ms
    o.clock = clock.fn();
    managed_heap h{o};
    std::vector<std::pair<pressure_level, pressure_level>> events;
    h.on_pressure_change([&](const memkit::heap_pressure_event& e) {
        events.emplace_back(e.from, e.to);
    });
    const owner_id req = h.create_owner("request");
    void* a = h.allocate(400 * KiB, req);
    void* b = h.allocate(300 * KiB, req); // ~68 %: medium
    h.deallocate(b);                      // quarantined: heap_bytes stays
    EXPECT_EQ(h.level(), pressure_level::medium);
    void* c = h.allocate(150 * KiB, req); // ~83 %: high, which collects b
    EXPECT_EQ(h.snapshot().automatic_collections, 1u);
    EXPECT_EQ(h.snapshot().deferred_blocks, 0u);
    EXPECT_EQ(h.level(), pressure_level::low); // ~54 %
    h.deallocate(c);
    void* d = h.allocate(300 * KiB, req); // high again, but within the interval: no collection
    EXPECT_EQ(h.level(), pressure_level::high);
    EXPECT_EQ(h.snapshot().automatic_collections, 1u);
    EXPECT_EQ(h.snapshot().deferred_blocks, 1u);
    clock.now += 4999ms;
    void* e = h.allocate(KiB, req); // still within the interval
    EXPECT_EQ(h.snapshot().deferred_blocks, 1u);
    clock.now += 1ms; // 5 s since the last automatic collection
    void* f = h.allocate(KiB, req);
    EXPECT_EQ(h.snapshot().automatic_collections, 2u);
    EXPECT_EQ(h.snapshot().deferred_blocks, 0u);
    EXPECT_EQ(h.level(), pressure_level::medium); // ~69 %
    const std::vector<std::pair<pressure_level, pressure_level>> expected = {
        {pressure_level::low, pressure_level::medium},
        {pressure_level::medium, pressure_level::high}, // c
        {pressure_level::high, pressure_level::low},    // its collection
        {pressure_level::low, pressure_level::high},    // d
        {pressure_level::high, pressure_level::medium}, // f's collection
    };
    EXPECT_EQ(events, expected);
    for (void* p : {a, d, e, f}) h.deallocate(p);
    (void)h.force_collect();
    expect_empty(h);
}

TEST(ManagedHeapAutoCollect, ZeroIntervalCollectsEveryTime) {
    managed_heap_options o = deferring(MiB);
    o.auto_collect = true;
    o.auto_collect_level = pressure_level::medium;
    o.auto_collect_interval = 0ns;
    managed_heap h{o};
    void* big = h.allocate(700 * KiB); // medium
    for (int i = 0; i < 5; ++i) {
        h.deallocate(h.allocate(100)); // the free is quarantined ...
        void* p = h.allocate(100);     // ... and this allocation collects it
        EXPECT_EQ(h.snapshot().deferred_blocks, 0u);
        h.deallocate(p);
    }
    // Every allocation at medium with something to collect: the first one of the first loop
    // found the quarantine empty.
    EXPECT_EQ(h.snapshot().automatic_collections, 9u);
    h.deallocate(big);
    (void)h.force_collect();
    expect_empty(h);
}

TEST(ManagedHeapAutoCollect, UsesTheDefaultStrategy) {
    managed_heap_options o = deferring(MiB);
    o.auto_collect = true;
    o.auto_collect_interval = 0ns;
    o.default_strategy = collect_strategy::unreferenced();
    managed_heap h{o};
    const owner_id run = h.create_owner("running"), done = h.create_owner("done");
    defer_blocks(h, run, 4, 1000);
    (void)h.allocate(1000, done);
    h.retire_owner(done);
    void* big = h.allocate(850 * KiB, run); // high: collects the retired owner only
    EXPECT_FALSE(h.owner_exists(done));
    EXPECT_EQ(of(h, run), (quarantine{4, 4000}));
    h.deallocate(big);
    (void)h.force_collect();
    expect_empty(h);
}

TEST(ManagedHeapAutoCollect, CriticalDoesNotWaitForTheInterval) {
    manual_clock clock;
    managed_heap_options o = deferring(MiB);
    o.auto_collect = true;
    o.collect_on_critical = true;
    o.auto_collect_interval = std::chrono::hours{1};
    o.clock = clock.fn();
    managed_heap h{o};
    void* a = h.allocate(400 * KiB);
    void* b = h.allocate(300 * KiB);
    h.deallocate(b);
    void* c = h.allocate(150 * KiB); // high: first automatic collection (takes b)
    EXPECT_EQ(h.snapshot().automatic_collections, 1u);
    h.deallocate(c);
    void* d = h.allocate(300 * KiB); // high, within the interval: c stays quarantined
    EXPECT_EQ(h.snapshot().deferred_blocks, 1u);
    EXPECT_EQ(h.level(), pressure_level::high);
    void* e = h.allocate(140 * KiB); // ~99 %: critical, which collects c at once
    EXPECT_EQ(h.snapshot().automatic_collections, 2u);
    EXPECT_EQ(h.snapshot().deferred_blocks, 0u);
    EXPECT_EQ(h.level(), pressure_level::high); // ~82 %: not below 78 %
    for (void* p : {a, d, e}) h.deallocate(p);
    (void)h.force_collect();
    expect_empty(h);
}

TEST(ManagedHeapAutoCollect, OffMeansNeverUnlessTheHeapIsFull) {
    managed_heap h{deferring(MiB)}; // auto_collect and collect_on_critical off
    void* a = h.allocate(400 * KiB);
    void* b = h.allocate(500 * KiB);
    h.deallocate(b);
    void* c = h.allocate(100 * KiB); // ~96 %: critical, nothing collected
    EXPECT_EQ(h.level(), pressure_level::critical);
    EXPECT_EQ(h.snapshot().deferred_blocks, 1u);
    EXPECT_EQ(h.snapshot().automatic_collections, 0u);
    void* d = h.allocate(400 * KiB); // does not fit: the heap collects before failing
    EXPECT_EQ(h.snapshot().deferred_blocks, 0u);
    for (void* p : {a, c, d}) h.deallocate(p);
    (void)h.force_collect();
    expect_empty(h);
}

TEST(ManagedHeapAutoCollect, NegativeDurationsAreRejected) {
    managed_heap_options o = deferring();
    o.auto_collect_interval = -1s;
    EXPECT_THROW(managed_heap{o}, std::invalid_argument);
    o = deferring();
    o.collect_budget = -1ns;
    EXPECT_THROW(managed_heap{o}, std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Time at each pressure level

TEST(ManagedHeapLevelTime, ExactDurationsFromTheClock) {
    manual_clock clock;
    managed_heap_options o;
    o.capacity = MiB;
    o.region_size = MiB;
    o.clock = clock.fn();
    managed_heap h{o};
    using memkit::pressure_level;
    auto at = [&](pressure_level l) { return h.time_at_level(l); };
    clock.now += 3s;
    EXPECT_EQ(at(pressure_level::low), 3s);
    void* a = h.allocate(700 * KiB); // medium
    clock.now += 2s;
    void* b = h.allocate(150 * KiB); // high
    clock.now += 1s;
    EXPECT_EQ(at(pressure_level::low), 3s);
    EXPECT_EQ(at(pressure_level::medium), 2s);
    EXPECT_EQ(at(pressure_level::high), 1s); // the current stay counts
    EXPECT_EQ(at(pressure_level::critical), 0s);
    const auto s = h.snapshot();
    EXPECT_EQ(s.time_at_level[0], 3s);
    EXPECT_EQ(s.time_at_level[1], 2s);
    EXPECT_EQ(s.time_at_level[2], 1s);
    EXPECT_EQ(s.time_at_level[3], 0s);
    h.deallocate(b); // back to medium
    clock.now += 4s;
    h.deallocate(a); // low
    clock.now += 5s;
    EXPECT_EQ(at(pressure_level::low), 8s);
    EXPECT_EQ(at(pressure_level::medium), 6s);
    EXPECT_EQ(at(pressure_level::high), 1s);
    expect_empty(h);
}

TEST(ManagedHeapLevelTime, RealClockAddsUp) {
    managed_heap h{deferring(MiB)};
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(2ms);
    const auto s = h.snapshot();
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(s.time_at_level[0], 2ms);
    EXPECT_LE(s.time_at_level[0], elapsed + 1s); // (constructed a moment before t0)
    EXPECT_EQ(s.time_at_level[1] + s.time_at_level[2] + s.time_at_level[3], 0ns);
}

// ---------------------------------------------------------------------------------------------
// Pauses

class pause_recorder final : public memkit::heap_observer {
public:
    void on_collected(std::size_t blocks, std::size_t, std::chrono::nanoseconds pause) override {
        pauses.push_back(pause); // the collecting thread only
        batches.fetch_add(1);
        EXPECT_LE(blocks, 32u);
    }
    std::vector<std::chrono::nanoseconds> pauses;
    std::atomic<std::size_t> batches{0};
};

std::chrono::nanoseconds median(std::vector<std::chrono::nanoseconds> v) {
    if (v.empty()) return std::chrono::nanoseconds{0};
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
}

TEST(ManagedHeapPause, BudgetedCollectionNeverHoldsTheLockLongerThanItsBudget) {
    managed_heap h{deferring(64 * MiB)};
    const owner_id o = h.create_owner("load");
    defer_blocks(h, o, 50000, 64);
    auto rec = std::make_shared<pause_recorder>();
    h.add_observer(rec);
    // Meanwhile another thread allocates and frees, so that the lock is contended.
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> probe_rounds{0};
    std::thread probe([&] {
        const owner_id mine = h.create_owner("probe");
        while (!stop.load()) {
            void* p = h.allocate(32, mine);
            h.deallocate(p);
            probe_rounds.fetch_add(1);
            std::this_thread::yield();
        }
    });
    const auto budget = 1ms;
    std::vector<std::chrono::nanoseconds> calls;
    collect_result r;
    std::size_t total = 0;
    do {
        const auto t0 = std::chrono::steady_clock::now();
        r = h.collect(collect_strategy::owner(o), budget);
        calls.push_back(std::chrono::steady_clock::now() - t0);
        total += r.blocks;
    } while (!r.complete);
    stop = true;
    probe.join();
    // The structural guarantee, independent of timing: the work went in batches of at most 32
    // blocks (checked in the recorder), each one lock hold. (A fast build may finish everything
    // within one call's budget.)
    EXPECT_EQ(total, 50000u);
    EXPECT_GE(rec->batches.load(), 50000u / 32);
    // The time bound, robust to a loaded machine and to sanitizers: the typical lock hold stays
    // well inside the budget and the typical call ends about when its budget does. A preempted
    // thread can make any single pause long, so the maxima are not asserted; ThreadSanitizer's
    // runtime slows everything, so there only the counts above are checked.
    if constexpr (!memkit::has_thread_sanitizer) {
        EXPECT_LT(median(rec->pauses), budget);
        EXPECT_LT(median(calls), budget + 20ms);
    }
    h.remove_observer(rec);
    (void)h.force_collect();
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Corruption

TEST(ManagedHeapStrategy, ValidateDetectsABrokenQuarantinedHeader) {
    managed_heap h{deferring()};
    auto* p = static_cast<std::byte*>(h.allocate(64));
    h.deallocate(p);
    std::uint64_t saved;
    std::memcpy(&saved, p - 8, 8);
    const std::uint64_t junk = 0;
    std::memcpy(p - 8, &junk, 8);
    EXPECT_THROW(h.validate(), memkit::corruption_detected);
    std::memcpy(p - 8, &saved, 8);
    h.validate();
    try {
        h.deallocate(p);
        FAIL() << "no throw";
    } catch (const memkit::invalid_address& e) {
        EXPECT_EQ(e.code(), memkit::errc::double_free);
    }
    (void)h.force_collect();
    expect_empty(h);
}

// ---------------------------------------------------------------------------------------------
// Concurrency (run under ThreadSanitizer)

TEST(ManagedHeapCollectConcurrency, EightThreadsWithLimitsDeferredFreesAndCollectors) {
    managed_heap_options o = deferring(64 * MiB);
    o.auto_collect = true;
    o.auto_collect_interval = 1ms;
    o.collect_on_critical = true;
    o.collect_threshold = 64;
    managed_heap h{o};
    const owner_id tenant = h.create_owner("tenant", 24 * MiB);
    constexpr int workers = 6, ops = 1500;
    std::atomic<int> running{workers};
    std::atomic<std::size_t> refused{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < workers; ++t) {
        pool.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) + 7);
            const owner_id mine = h.create_owner("worker", 512 * KiB, tenant);
            owner_id request = h.create_owner("request", 64 * KiB, mine);
            std::vector<std::pair<unsigned char*, owner_id>> live;
            for (int i = 0; i < ops; ++i) {
                const auto r = rng() % 16;
                if (r < 6 && !live.empty()) {
                    const std::size_t k = rng() % live.size();
                    ASSERT_EQ(live[k].first[0], static_cast<unsigned char>(t));
                    h.deallocate(live[k].first);
                    live[k] = live.back();
                    live.pop_back();
                } else if (r == 6) {
                    // The request is done: drop it without freeing (the collectors reclaim it).
                    std::erase_if(live, [&](const auto& b) { return b.second == request; });
                    h.retire_owner(request);
                    request = h.create_owner("request", 64 * KiB, mine);
                } else if (r == 7 && i % 50 == 0) {
                    (void)h.free_owner(mine); // the worker's blocks and its request's
                    live.clear();
                } else {
                    const owner_id who = rng() % 2 == 0 ? mine : request;
                    void* p = h.try_allocate(1 + rng() % 2048, who, std::size_t{16} << (rng() % 3));
                    if (p == nullptr) {
                        refused.fetch_add(1);
                        continue;
                    }
                    static_cast<unsigned char*>(p)[0] = static_cast<unsigned char>(t);
                    live.emplace_back(static_cast<unsigned char*>(p), who);
                }
            }
            // Free first: once retired, an owner's blocks belong to the collectors.
            for (auto& b : live) h.deallocate(b.first);
            h.retire_owner(request);
            EXPECT_EQ(h.owner_info(mine).self_blocks, 0u);
            h.retire_owner(mine);
            running.fetch_sub(1);
        });
    }
    // Two collectors with different strategies, budgeted and not.
    pool.emplace_back([&] {
        int round = 0;
        while (running.load() > 0) {
            switch (round++ % 4) {
            case 0: (void)h.collect(collect_strategy::owners_above(4 * KiB), 50us); break;
            case 1: (void)h.collect(collect_strategy::unreferenced(), 50us); break;
            case 2: (void)h.collect(collect_strategy::all(), 20us); break;
            default: (void)h.collect(collect_strategy::owner(tenant)); break;
            }
            std::this_thread::yield();
        }
    });
    pool.emplace_back([&] {
        while (running.load() > 0) {
            if (h.should_collect()) (void)h.force_collect();
            const auto s = h.snapshot();
            EXPECT_LE(s.used, s.heap_bytes);
            EXPECT_LE(h.owner_usage(tenant), 24 * MiB);
            std::this_thread::sleep_for(100us);
        }
    });
    for (auto& th : pool) th.join();
    // What the collectors had no time left for: requests dropped without freeing.
    (void)h.force_collect();
    EXPECT_EQ(h.owner_usage(tenant), 0u);
    EXPECT_LE(h.owner_peak(tenant), 24 * MiB);
    EXPECT_EQ(h.snapshot().owners, 2u); // default + tenant; every worker and request removed
    expect_empty(h);
}

} // namespace
