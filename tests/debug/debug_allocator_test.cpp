#include "memkit/debug/debug_allocator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory_resource>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/test_support.hpp"
#include "support/tracker.hpp"

namespace {

using memkit::debug_allocator;
using memkit::debug_options;
using memkit::errc;
using memkit::system_allocator;
using memkit::test::counting_parent;
using memkit::test::tracker;

using sys_debug = debug_allocator<system_allocator>;
using counted_debug = debug_allocator<counting_parent>;

static_assert(memkit::allocator<sys_debug>);
static_assert(memkit::owning_allocator<sys_debug>);
static_assert(sys_debug::is_thread_safe);
static_assert(!debug_allocator<tracker<>>::is_thread_safe);
static_assert(sys_debug::max_alignment == system_allocator::max_alignment);
static_assert(debug_allocator<tracker<>>::max_alignment == 4096);
static_assert(memkit::allocator_traits<sys_debug>::has_stats);
static_assert(memkit::allocator_traits<sys_debug>::has_max_size);
static_assert(!memkit::allocator_traits<sys_debug>::has_reset);
static_assert(memkit::allocator_traits<debug_allocator<memkit::arena>>::has_reset);
static_assert(!std::is_copy_constructible_v<sys_debug> && !std::is_move_constructible_v<sys_debug>);
static_assert(
    std::is_same_v<memkit::debug_or<system_allocator>,
                   std::conditional_t<memkit::debug_checks, sys_debug, system_allocator>>);

// Records every violation with a copy of its text (the detail pointer of a violation is valid
// only during the call).
struct recorded {
    errc code;
    const void* pointer;
    std::string allocator;
    std::string detail;
};
class recorder {
public:
    recorder() noexcept { previous_ = memkit::set_violation_handler(&record); }
    ~recorder() {
        memkit::set_violation_handler(previous_);
        log().clear();
    }
    recorder(const recorder&) = delete;
    recorder& operator=(const recorder&) = delete;
    static std::vector<recorded>& log() {
        static std::vector<recorded> v;
        return v;
    }

private:
    static void record(const memkit::violation& v) {
        log().push_back({v.code, v.pointer, v.allocator, v.detail != nullptr ? v.detail : ""});
    }
    memkit::violation_handler previous_;
};

// Writes one byte of the allocator's own memory on purpose. Under ASan that byte is poisoned (a
// fence or a quarantined block), so it is unpoisoned first: these tests check the allocator's own
// detection, and the death tests at the end check ASan's.
void scribble(void* block, std::ptrdiff_t offset, unsigned char value) {
    auto* b = static_cast<unsigned char*>(block) + offset;
    memkit::unpoison_memory(b, 1);
    *b = value;
}
unsigned char peek(const void* block, std::ptrdiff_t offset) {
    const auto* b = static_cast<const unsigned char*>(block) + offset;
    memkit::unpoison_memory(b, 1);
    return *b;
}

std::string corruption_text(const void* block, const std::string& detail) {
    char head[128];
    std::snprintf(head, sizeof head,
                  "memkit::debug_allocator: heap corruption detected at %p: ", block);
    return head + detail;
}
std::string ptr(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%p", p);
    return buf;
}

bool all_bytes(const void* p, std::size_t n, unsigned char v) {
    const auto* b = static_cast<const unsigned char*>(p);
    return std::all_of(b, b + n, [v](unsigned char c) { return c == v; });
}

// --- layout, alignment, contents --------------------------------------------------------------

TEST(DebugAllocator, EveryAlignmentFrom1To4096KeepsBlocksAlignedAndFenced) {
    debug_allocator<tracker<>> d;
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    std::vector<std::tuple<void*, std::size_t, std::size_t>> blocks;
    for (std::size_t align = 1; align <= 4096; align *= 2) {
        for (std::size_t size : {std::size_t{1}, std::size_t{7}, std::size_t{64}, std::size_t{100},
                                 std::size_t{1000}}) {
            void* p = d.allocate(size, align);
            ASSERT_TRUE(memkit::is_aligned(p, align)) << "align " << align << " size " << size;
            EXPECT_TRUE(all_bytes(p, size, 0xCD));
            for (std::ptrdiff_t i = 1; i <= 16; ++i) EXPECT_EQ(peek(p, -i), 0xFD);
            for (std::size_t i = 0; i < 16; ++i)
                EXPECT_EQ(peek(p, static_cast<std::ptrdiff_t>(size + i)), 0xFD);
            std::memset(p, static_cast<int>(align % 251), size);
            ranges.emplace_back(reinterpret_cast<std::uintptr_t>(p), size);
            blocks.emplace_back(p, size, align);
        }
    }
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    EXPECT_EQ(d.verify(), blocks.size());
    for (auto [p, size, align] : blocks) {
        EXPECT_TRUE(all_bytes(p, size, static_cast<unsigned char>(align % 251)));
        d.deallocate(p, size, align);
    }
    EXPECT_EQ(d.diagnostics().live_blocks, 0u);
}

TEST(DebugAllocator, FrontFenceGrowsToTheAlignmentAndIsCheckedWhole) {
    recorder rec;
    debug_allocator<tracker<>> d;
    void* p = d.allocate(10, 4096);
    EXPECT_EQ(d.get().stats().bytes_in_use, 4096u + 10 + 16);
    scribble(p, -4096, 0x00); // the first byte of the front room, far from the block
    d.deallocate(p, 10, 4096);
    ASSERT_EQ(rec.log().size(), 1u);
    EXPECT_EQ(rec.log()[0].detail,
              "front fence of 10-byte block damaged at offset -4096: 0x00, expected 0xfd");
}

TEST(DebugAllocator, ContentIntegrityUnderRandomTraffic) {
    sys_debug d{debug_options{.quarantine_blocks = 64, .quarantine_bytes = 64 * 1024}};
    std::mt19937_64 rng(7);
    struct live {
        unsigned char* p;
        std::size_t size;
        std::size_t align;
        unsigned char tag;
    };
    std::vector<live> blocks;
    for (int step = 0; step < 20000; ++step) {
        if (blocks.empty() || rng() % 3 != 0) {
            const std::size_t size = 1 + rng() % 300;
            const auto tag = static_cast<unsigned char>(rng());
            const std::size_t align = std::size_t{1} << (rng() % 7);
            auto* p = static_cast<unsigned char*>(d.allocate(size, align));
            ASSERT_TRUE(memkit::is_aligned(p, align));
            std::memset(p, tag, size);
            blocks.push_back({p, size, align, tag});
        } else {
            const std::size_t i = rng() % blocks.size();
            ASSERT_TRUE(all_bytes(blocks[i].p, blocks[i].size, blocks[i].tag)) << step;
            d.deallocate(blocks[i].p, blocks[i].size, blocks[i].align);
            blocks[i] = blocks.back();
            blocks.pop_back();
        }
        if (step % 5000 == 0) d.verify();
    }
    for (const auto& b : blocks) EXPECT_TRUE(all_bytes(b.p, b.size, b.tag));
    EXPECT_EQ(d.diagnostics().live_blocks, blocks.size());
    for (const auto& b : blocks) d.deallocate(b.p, b.size, b.align);
}

TEST(DebugAllocator, FillPatternsAreConfigurableAndCanBeTurnedOff) {
    {
        sys_debug d{debug_options{
            .fence_size = 8, .alloc_pattern = 0x11, .free_pattern = 0x22, .fence_pattern = 0x33}};
        auto* p = static_cast<unsigned char*>(d.allocate(40, 8));
        EXPECT_TRUE(all_bytes(p, 40, 0x11));
        for (std::ptrdiff_t i = 1; i <= 8; ++i) EXPECT_EQ(peek(p, -i), 0x33);
        for (std::ptrdiff_t i = 40; i < 48; ++i) EXPECT_EQ(peek(p, i), 0x33);
        d.deallocate(p, 40, 8); // into the quarantine: still ours, filled
        for (std::ptrdiff_t i = 0; i < 40; ++i) EXPECT_EQ(peek(p, i), 0x22);
    }
    {
        sys_debug d{debug_options{.fill = false}};
        auto* p = static_cast<unsigned char*>(d.allocate(32));
        std::memset(p, 0x5A, 32);
        d.deallocate(p, 32);
        for (std::ptrdiff_t i = 0; i < 32; ++i) EXPECT_EQ(peek(p, i), 0x5A) << "no free fill";
        scribble(p, 3, 0x00); // without a fill there is nothing to check: no report
        EXPECT_EQ(d.verify(), 1u);
    }
}

TEST(DebugAllocator, WithoutFencesBlocksAreExactlyTheRequest) {
    debug_allocator<tracker<>> d{tracker<>{}, debug_options{.fence_size = 0}};
    void* p = d.allocate(100, 64);
    EXPECT_EQ(d.get().stats().bytes_in_use, 100u);
    EXPECT_TRUE(memkit::is_aligned(p, 64));
    d.deallocate(p, 100, 64);
    EXPECT_EQ(d.verify(), 1u);
}

TEST(DebugAllocator, BlockTableMatchesAStdSetOverRandomOperations) {
    // The table is only ever keyed by addresses; these are never dereferenced.
    memkit::detail::block_table table;
    std::set<std::uintptr_t> model;
    std::mt19937_64 rng(42);
    for (int step = 0; step < 100000; ++step) {
        const std::uintptr_t key = 0x10000 + 16 * (rng() % 4096);
        auto* p = reinterpret_cast<std::byte*>(key);
        memkit::detail::block_entry* e = table.find(p);
        ASSERT_EQ(e != nullptr, model.contains(key)) << step;
        if (e == nullptr) {
            memkit::detail::block_entry fresh;
            fresh.user = p;
            fresh.size = key / 16;
            table.insert(fresh);
            model.insert(key);
        } else {
            ASSERT_EQ(e->size, key / 16);
            table.erase(*e);
            model.erase(key);
        }
        ASSERT_EQ(table.size(), model.size());
        if (step % 10000 == 0) {
            std::size_t seen = 0;
            table.for_each([&](const memkit::detail::block_entry& x) {
                ++seen;
                EXPECT_TRUE(model.contains(reinterpret_cast<std::uintptr_t>(x.user)));
            });
            ASSERT_EQ(seen, model.size());
        }
    }
}

TEST(DebugAllocator, ManyLiveBlocks) {
    sys_debug d{debug_options{.quarantine_blocks = 0}};
    std::vector<void*> blocks(20000);
    for (auto& p : blocks) p = d.allocate(8);
    std::mt19937_64 rng(3);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    for (std::size_t i = 0; i < blocks.size() / 2; ++i) d.deallocate(blocks[i], 8);
    for (std::size_t i = blocks.size() / 2; i < blocks.size(); ++i) ASSERT_TRUE(d.owns(blocks[i]));
    EXPECT_EQ(d.verify(), blocks.size() / 2);
    for (std::size_t i = blocks.size() / 2; i < blocks.size(); ++i) d.deallocate(blocks[i], 8);
    EXPECT_EQ(d.diagnostics().live_blocks, 0u);
    EXPECT_EQ(d.diagnostics().violations, 0u);
}

// --- quarantine --------------------------------------------------------------------------------

TEST(DebugAllocator, QuarantineHoldsBlocksFifoUpToTheBlockLimit) {
    counting_parent::counters c;
    counted_debug d{counting_parent{&c}, debug_options{.quarantine_blocks = 3}};
    void* p[5];
    for (auto& x : p) x = d.allocate(50);
    for (int i = 0; i < 3; ++i) d.deallocate(p[i], 50);
    EXPECT_EQ(c.deallocations, 0u);
    EXPECT_EQ(d.diagnostics().quarantined_blocks, 3u);
    EXPECT_EQ(d.diagnostics().quarantined_bytes, 150u);
    EXPECT_TRUE(d.owns(p[0]));
    d.deallocate(p[3], 50); // pushes p[0], the oldest, back to the parent
    EXPECT_EQ(c.deallocations, 1u);
    EXPECT_FALSE(d.owns(p[0]));
    EXPECT_TRUE(d.owns(p[1]));
    d.deallocate(p[4], 50);
    EXPECT_EQ(c.deallocations, 2u);
    EXPECT_FALSE(d.owns(p[1]));
    EXPECT_EQ(d.diagnostics().quarantined_blocks, 3u);
}

TEST(DebugAllocator, QuarantineByteLimitAndOff) {
    counting_parent::counters c;
    {
        counted_debug d{counting_parent{&c}, debug_options{.quarantine_bytes = 1000}};
        void* a = d.allocate(400);
        void* b = d.allocate(400);
        void* e = d.allocate(400);
        d.deallocate(a, 400);
        d.deallocate(b, 400);
        EXPECT_EQ(c.deallocations, 0u);
        d.deallocate(e, 400); // 1200 > 1000: a leaves
        EXPECT_EQ(c.deallocations, 1u);
        EXPECT_EQ(d.diagnostics().quarantined_bytes, 800u);
        void* big = d.allocate(5000);
        d.deallocate(big, 5000); // larger than the whole quarantine: everything leaves
        EXPECT_EQ(c.deallocations, 4u);
        EXPECT_EQ(d.diagnostics().quarantined_blocks, 0u);
    }
    {
        counted_debug d{counting_parent{&c}, debug_options{.quarantine_blocks = 0}};
        const std::size_t before = c.deallocations;
        d.deallocate(d.allocate(10), 10);
        EXPECT_EQ(c.deallocations, before + 1);
    }
    EXPECT_EQ(c.live_bytes, 0u);
}

TEST(DebugAllocator, BlocksAreReusedOnlyAfterLeavingTheQuarantine) {
    // A pool hands back its most recently freed node first, so reuse is visible.
    debug_allocator<memkit::pool> d{debug_options{.quarantine_blocks = 2}, std::in_place, 64, 16};
    void* a = d.allocate(16, 16);
    d.deallocate(a, 16, 16);
    void* b = d.allocate(16, 16);
    EXPECT_NE(a, b) << "a is in quarantine";
    void* e = d.allocate(16, 16);
    EXPECT_NE(a, e);
    d.deallocate(b, 16, 16);
    d.deallocate(e, 16, 16); // quarantine holds 3 > 2: a goes back to the pool
    void* again = d.allocate(16, 16);
    EXPECT_EQ(again, a);
    EXPECT_TRUE(all_bytes(again, 16, 0xCD)) << "refilled when reused";
    d.deallocate(again, 16, 16);
}

// --- statistics --------------------------------------------------------------------------------

TEST(DebugAllocator, StatisticsCountEverything) {
    recorder rec;
    counted_debug d{counting_parent{}, debug_options{.quarantine_blocks = 2}};
    void* a = d.allocate(100);
    void* b = d.allocate(200);
    void* e = d.allocate(300);
    EXPECT_EQ(d.stats(), (memkit::allocator_stats{600, 600, 0, 3, 0}));
    d.deallocate(b, 200);
    d.deallocate(b, 200); // double free: rejected
    d.deallocate(a, 100);
    void* f = d.allocate(50);
    const memkit::debug_stats s = d.diagnostics();
    EXPECT_EQ(s.live_blocks, 2u);
    EXPECT_EQ(s.live_bytes, 350u);
    EXPECT_EQ(s.peak_bytes, 600u);
    EXPECT_EQ(s.quarantined_blocks, 2u);
    EXPECT_EQ(s.quarantined_bytes, 300u);
    EXPECT_EQ(s.condemned_blocks, 0u);
    EXPECT_EQ(s.allocations, 4u);
    EXPECT_EQ(s.deallocations, 2u);
    EXPECT_EQ(s.corruptions, 0u);
    EXPECT_EQ(s.violations, 1u);
    scribble(e, 300, 0x00);
    d.deallocate(e, 300);
    EXPECT_EQ(d.diagnostics().condemned_blocks, 1u);
    EXPECT_EQ(d.diagnostics().condemned_bytes, 300u);
    EXPECT_EQ(d.diagnostics().corruptions, 1u);
    EXPECT_EQ(d.stats(), (memkit::allocator_stats{50, 600, 0, 4, 3}));
    d.deallocate(f, 50);
    EXPECT_EQ(d.live_blocks().size(), 0u);
}

TEST(DebugAllocator, LiveBlocksAreListedOldestFirst) {
    sys_debug d;
    void* a = d.allocate(1);
    void* b = d.allocate(2, 64);
    void* e = d.allocate(3);
    d.deallocate(b, 2, 64);
    const auto live = d.live_blocks();
    ASSERT_EQ(live.size(), 2u);
    EXPECT_EQ(live[0].address, a);
    EXPECT_EQ(live[0].size, 1u);
    EXPECT_EQ(live[0].serial, 1u);
    EXPECT_EQ(live[1].address, e);
    EXPECT_EQ(live[1].serial, 3u);
    d.deallocate(a, 1);
    d.deallocate(e, 3);
}

// --- fences --------------------------------------------------------------------------------------

TEST(DebugAllocator, FrontFenceDamageIsReportedOnFreeAndTheBlockIsCondemned) {
    recorder rec;
    counting_parent::counters c;
    {
        counted_debug d{counting_parent{&c}};
        void* p = d.allocate(100);
        scribble(p, -1, 0x41);
        d.deallocate(p, 100);
        ASSERT_EQ(rec.log().size(), 1u);
        EXPECT_EQ(rec.log()[0].code, errc::corruption_detected);
        EXPECT_EQ(rec.log()[0].pointer, p);
        EXPECT_EQ(rec.log()[0].allocator, "memkit::debug_allocator");
        EXPECT_EQ(rec.log()[0].detail,
                  "front fence of 100-byte block damaged at offset -1: 0x41, expected 0xfd");
        EXPECT_EQ(c.deallocations, 0u) << "a damaged block is not given back";
        EXPECT_TRUE(d.owns(p));
        // Not reused: new blocks never land on it.
        for (int i = 0; i < 50; ++i) {
            void* q = d.allocate(100);
            EXPECT_NE(q, p);
            d.deallocate(q, 100);
        }
        d.deallocate(p, 100); // again: a double free
        ASSERT_EQ(rec.log().size(), 2u);
        EXPECT_EQ(rec.log()[1].code, errc::double_free);
        EXPECT_EQ(rec.log()[1].detail,
                  "100-byte block freed twice (it failed its checks when freed)");
        EXPECT_EQ(d.verify(), 50u) << "condemned blocks are not checked again";
    }
    EXPECT_EQ(c.live_bytes, 0u) << "the destructor returns condemned blocks";
    EXPECT_EQ(rec.log().size(), 2u);
}

TEST(DebugAllocator, BackFenceDamageMakesVerifyThrowWithTheExactMessage) {
    recorder rec;
    sys_debug d;
    void* ok = d.allocate(8);
    void* p = d.allocate(100);
    scribble(p, 100, 0x41); // one byte too far
    scribble(p, 103, 0x42);
    try {
        d.verify();
        FAIL() << "verify() did not throw";
    } catch (const memkit::corruption_detected& e) {
        EXPECT_EQ(std::string(e.what()),
                  corruption_text(p, "back fence of 100-byte block damaged at offset 100: 0x41, "
                                     "expected 0xfd"));
        EXPECT_EQ(e.address(), p);
        EXPECT_EQ(e.code(), memkit::make_error_code(errc::corruption_detected));
    }
    EXPECT_EQ(d.diagnostics().corruptions, 1u);
    EXPECT_THROW(d.verify(), memkit::corruption_detected) << "still damaged";
    EXPECT_EQ(d.diagnostics().corruptions, 1u) << "counted once per block";
    d.deallocate(p, 100); // already reported by verify(): condemned without a second report
    EXPECT_EQ(rec.log().size(), 0u);
    EXPECT_EQ(d.diagnostics().condemned_blocks, 1u);
    EXPECT_EQ(d.verify(), 1u);
    d.deallocate(ok, 8);
}

TEST(DebugAllocator, FrontFenceDamageFromVerifyNamesTheByteNearestTheBlock) {
    sys_debug d;
    void* p = d.allocate(24, 8);
    scribble(p, -16, 0x01);
    scribble(p, -3, 0x02);
    try {
        d.verify();
        FAIL();
    } catch (const memkit::corruption_detected& e) {
        EXPECT_EQ(std::string(e.what()),
                  corruption_text(p, "front fence of 24-byte block damaged at offset -3: 0x02, "
                                     "expected 0xfd"));
    }
    recorder rec;
    d.deallocate(p, 24, 8);
    EXPECT_EQ(rec.log().size(), 0u);
}

// --- use after free ----------------------------------------------------------------------------

TEST(DebugAllocator, UseAfterFreeIsFoundWhenTheBlockLeavesTheQuarantine) {
    recorder rec;
    counting_parent::counters c;
    {
        counted_debug d{counting_parent{&c}, debug_options{.quarantine_blocks = 1}};
        void* a = d.allocate(64);
        void* b = d.allocate(64);
        d.deallocate(a, 64);
        scribble(a, 12, 0x41); // write through a dangling pointer
        scribble(a, 40, 0x42);
        d.deallocate(b, 64); // a leaves the quarantine
        ASSERT_EQ(rec.log().size(), 1u);
        EXPECT_EQ(rec.log()[0].code, errc::corruption_detected);
        EXPECT_EQ(rec.log()[0].pointer, a);
        EXPECT_EQ(rec.log()[0].detail,
                  "use after free: 64-byte block modified after it was freed, first at offset 12: "
                  "0x41, expected 0xdd");
        EXPECT_EQ(c.deallocations, 0u) << "a is condemned, b still in quarantine";
        EXPECT_EQ(d.diagnostics().condemned_blocks, 1u);
        EXPECT_EQ(d.diagnostics().quarantined_blocks, 1u);
    }
    EXPECT_EQ(c.live_bytes, 0u);
}

TEST(DebugAllocator, UseAfterFreeIsFoundByVerify) {
    recorder rec;
    sys_debug d;
    void* a = d.allocate(64);
    d.deallocate(a, 64);
    scribble(a, 63, 0x00);
    try {
        d.verify();
        FAIL();
    } catch (const memkit::corruption_detected& e) {
        EXPECT_EQ(std::string(e.what()),
                  corruption_text(a, "use after free: 64-byte block modified after it was "
                                     "freed, first at offset 63: 0x00, expected 0xdd"));
    }
    EXPECT_EQ(d.diagnostics().corruptions, 1u);
    EXPECT_EQ(rec.log().size(), 0u);
}

TEST(DebugAllocator, FenceDamageOfAFreedBlockIsFoundWhenItLeaves) {
    recorder rec;
    sys_debug d{debug_options{.quarantine_blocks = 1}};
    void* a = d.allocate(10);
    d.deallocate(a, 10);
    scribble(a, 12, 0x07); // past the end of a freed block: its back fence
    d.deallocate(d.allocate(10), 10);
    ASSERT_EQ(rec.log().size(), 1u);
    EXPECT_EQ(rec.log()[0].detail,
              "back fence of 10-byte block damaged at offset 12: 0x07, expected 0xfd");
}

TEST(DebugAllocator, DestructorChecksTheQuarantine) {
    recorder rec;
    {
        sys_debug d;
        void* a = d.allocate(32);
        d.deallocate(a, 32);
        scribble(a, 0, 0x99);
    }
    ASSERT_EQ(rec.log().size(), 1u);
    EXPECT_EQ(rec.log()[0].code, errc::corruption_detected);
}

// --- bad frees -----------------------------------------------------------------------------------

TEST(DebugAllocator, DoubleFreeIsReportedAndChangesNothing) {
    recorder rec;
    counting_parent::counters c;
    counted_debug d{counting_parent{&c}};
    void* p = d.allocate(24);
    d.deallocate(p, 24);
    const auto before = d.diagnostics();
    d.deallocate(p, 24);
    ASSERT_EQ(rec.log().size(), 1u);
    EXPECT_EQ(rec.log()[0].code, errc::double_free);
    EXPECT_EQ(rec.log()[0].pointer, p);
    EXPECT_EQ(rec.log()[0].detail, "24-byte block freed twice");
    auto after = d.diagnostics();
    EXPECT_EQ(after.violations, before.violations + 1);
    after.violations = before.violations;
    EXPECT_EQ(after, before);
    EXPECT_EQ(c.deallocations, 0u);
}

TEST(DebugAllocator, ForeignPointersAndBlocksAlreadyGivenBackAreNotOwned) {
    recorder rec;
    sys_debug d{debug_options{.quarantine_blocks = 0}};
    int local = 0;
    d.deallocate(&local, sizeof local);
    ASSERT_EQ(rec.log().size(), 1u);
    EXPECT_EQ(rec.log()[0].code, errc::not_owned);
    EXPECT_EQ(rec.log()[0].pointer, &local);
    EXPECT_EQ(rec.log()[0].detail,
              "deallocate (size 4) of a pointer that is not a block of this allocator (never "
              "allocated here, or already given back to the wrapped allocator)");
    void* p = d.allocate(8);
    d.deallocate(p, 8); // no quarantine: straight back to malloc
    EXPECT_FALSE(d.owns(p));
    EXPECT_FALSE(d.owns(&local));
    d.deallocate(p, 8);
    ASSERT_EQ(rec.log().size(), 2u);
    EXPECT_EQ(rec.log()[1].code, errc::not_owned);
    EXPECT_EQ(d.diagnostics().violations, 2u);
}

TEST(DebugAllocator, WrongSizeOrAlignmentIsReportedAndTheBlockStaysLive) {
    recorder rec;
    debug_allocator<tracker<>> d;
    void* p = d.allocate(100, 64);
    d.deallocate(p, 50, 64);
    ASSERT_EQ(rec.log().size(), 1u);
    EXPECT_EQ(rec.log()[0].code, errc::bad_size);
    EXPECT_EQ(rec.log()[0].detail, "deallocate with size 50 of a block allocated with size 100");
    d.deallocate(p, 100, 16);
    ASSERT_EQ(rec.log().size(), 2u);
    EXPECT_EQ(rec.log()[1].code, errc::invalid_alignment);
    EXPECT_EQ(rec.log()[1].detail,
              "deallocate with alignment 16 of a block allocated with alignment 64");
    EXPECT_EQ(d.diagnostics().live_blocks, 1u);
    d.deallocate(p, 100, 64);
    EXPECT_EQ(rec.log().size(), 2u);
    EXPECT_EQ(d.diagnostics().live_blocks, 0u);
}

TEST(DebugAllocatorDeathTest, DefaultHandlerAbortsOnADoubleFree) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            sys_debug d;
            void* p = d.allocate(8);
            d.deallocate(p, 8);
            d.deallocate(p, 8);
        },
        "memkit::debug_allocator: double free .*8-byte block freed twice");
}

// --- leaks ---------------------------------------------------------------------------------------

TEST(DebugAllocator, LeaksAreReportedAtDestructionWithExactCounts) {
    recorder rec;
    counting_parent::counters c;
    void* a = nullptr;
    void* b = nullptr;
    {
        counted_debug d{counting_parent{&c}};
        a = d.allocate(100);
        b = d.allocate(200, 8);
        void* freed = d.allocate(5);
        d.deallocate(freed, 5);
    }
    ASSERT_EQ(rec.log().size(), 1u);
    EXPECT_EQ(rec.log()[0].code, errc::still_in_use);
    EXPECT_EQ(rec.log()[0].pointer, a);
    EXPECT_EQ(rec.log()[0].detail, "2 blocks (300 bytes) still allocated at destruction: #1 " +
                                       ptr(a) + " (100 bytes), #2 " + ptr(b) + " (200 bytes)");
    EXPECT_EQ(c.live_bytes, 0u) << "leaked blocks go back to the parent";
    EXPECT_EQ(c.deallocations, c.allocations);
}

TEST(DebugAllocator, LeakReportListsAtMostTheLimitAndGoesToTheCallback) {
    recorder rec;
    std::size_t blocks = 0, bytes = 0;
    std::vector<memkit::debug_block> listed;
    std::string text;
    std::vector<void*> leaked;
    {
        debug_options o;
        o.leak_report_limit = 3;
        o.on_leak = [&](const memkit::leak_report& r) {
            blocks = r.blocks;
            bytes = r.bytes;
            listed.assign(r.listed.begin(), r.listed.end());
            text = r.text;
        };
        sys_debug d{o};
        for (std::size_t i = 1; i <= 10; ++i) leaked.push_back(d.allocate(i * 10));
    }
    EXPECT_EQ(rec.log().size(), 0u) << "the callback replaces the violation";
    EXPECT_EQ(blocks, 10u);
    EXPECT_EQ(bytes, 550u);
    ASSERT_EQ(listed.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(listed[i].address, leaked[i]);
        EXPECT_EQ(listed[i].size, (i + 1) * 10);
        EXPECT_EQ(listed[i].serial, i + 1);
    }
    EXPECT_EQ(text, "10 blocks (550 bytes) still allocated at destruction: #1 " + ptr(leaked[0]) +
                        " (10 bytes), #2 " + ptr(leaked[1]) + " (20 bytes), #3 " + ptr(leaked[2]) +
                        " (30 bytes), and 7 more");
}

TEST(DebugAllocator, AThrowingLeakCallbackIsSwallowedAndTheBlocksStillGoBack) {
    recorder rec;
    counting_parent::counters c;
    {
        debug_options o;
        o.on_leak = [](const memkit::leak_report&) { throw std::runtime_error("logger down"); };
        counted_debug d{counting_parent{&c}, o};
        (void)d.allocate(10);
    }
    EXPECT_EQ(rec.log().size(), 0u);
    EXPECT_EQ(c.live_bytes, 0u);
}

TEST(DebugAllocator, NoLeakNoReport) {
    recorder rec;
    {
        sys_debug d;
        d.deallocate(d.allocate(10), 10);
    }
    EXPECT_EQ(rec.log().size(), 0u);
}

// --- errors --------------------------------------------------------------------------------------

TEST(DebugAllocator, BadRequestsAndParentFailures) {
    counting_parent::counters c;
    counted_debug d{counting_parent{&c}};
    EXPECT_THROW((void)d.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)d.allocate(8, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)d.allocate(static_cast<std::size_t>(-8)), memkit::bad_size);
    EXPECT_EQ(d.try_allocate(0, 8), nullptr);
    EXPECT_EQ(d.try_allocate(8, 3), nullptr);
    c.fail_after = 0;
    EXPECT_THROW((void)d.allocate(8), memkit::out_of_memory);
    EXPECT_EQ(d.try_allocate(8, 8), nullptr);
    EXPECT_EQ(d.diagnostics(), memkit::debug_stats{});
    c.fail_after = static_cast<std::size_t>(-1);
    void* p = d.try_allocate(8, 8);
    ASSERT_NE(p, nullptr);
    d.deallocate(p, 8, 8);
    EXPECT_EQ(d.max_size(), static_cast<std::size_t>(-1) - 32);
    EXPECT_EQ(sys_debug{}.max_size(), system_allocator::max_size() - 32);
}

// --- adapters and other parents ------------------------------------------------------------------

TEST(DebugAllocator, WorksUnderPmrContainers) {
    recorder rec;
    {
        memkit::resource<sys_debug> r;
        {
            std::pmr::vector<int> v{&r};
            for (int i = 0; i < 1000; ++i) v.push_back(i);
            std::pmr::vector<std::pmr::string> words{&r};
            for (int i = 0; i < 100; ++i)
                words.emplace_back("a string long enough to need the heap, number " +
                                   std::to_string(i));
            EXPECT_GT(r.get().diagnostics().live_blocks, 100u);
            EXPECT_EQ(r.get().verify(),
                      r.get().diagnostics().live_blocks + r.get().diagnostics().quarantined_blocks);
            for (int i = 0; i < 1000; ++i) EXPECT_EQ(v[static_cast<std::size_t>(i)], i);
        }
        EXPECT_EQ(r.get().diagnostics().live_blocks, 0u);
        EXPECT_EQ(r.get().diagnostics().violations, 0u);
    }
    EXPECT_EQ(rec.log().size(), 0u);
}

TEST(DebugAllocator, WorksUnderStdAllocator) {
    sys_debug d;
    {
        std::vector<double, memkit::std_allocator<double, sys_debug>> v{d};
        v.assign(500, 2.5);
        EXPECT_EQ(d.diagnostics().live_bytes, 500 * sizeof(double));
    }
    EXPECT_EQ(d.diagnostics().live_blocks, 0u);
}

TEST(DebugAllocator, ResetForgetsEverythingOverAnArena) {
    recorder rec;
    debug_allocator<memkit::arena> d;
    for (int i = 0; i < 100; ++i) (void)d.allocate(40);
    void* p = d.allocate(8);
    d.deallocate(p, 8);
    d.reset();
    EXPECT_EQ(d.diagnostics().live_blocks, 0u);
    EXPECT_EQ(d.diagnostics().quarantined_blocks, 0u);
    EXPECT_FALSE(d.owns(p));
    void* q = d.allocate(8);
    d.deallocate(q, 8);
    EXPECT_EQ(rec.log().size(), 0u);
}

// --- threads (run under TSan too) ----------------------------------------------------------------

TEST(DebugAllocator, ThreadsShareOneDebugAllocator) {
    sys_debug d{debug_options{.quarantine_blocks = 32}};
    constexpr int threads = 4;
    const int rounds = 4000 / memkit::test::stress_scale;
    std::atomic<bool> bad{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t));
            std::vector<std::pair<unsigned char*, std::size_t>> mine;
            for (int i = 0; i < rounds; ++i) {
                const std::size_t size = 1 + rng() % 200;
                auto* p = static_cast<unsigned char*>(d.allocate(size));
                std::memset(p, t + 1, size);
                mine.emplace_back(p, size);
                if (mine.size() > 16) {
                    auto [q, n] = mine.front();
                    if (!all_bytes(q, n, static_cast<unsigned char>(t + 1))) bad = true;
                    d.deallocate(q, n);
                    mine.erase(mine.begin());
                }
                if (t == 0 && i % 500 == 0) (void)d.verify();
            }
            for (auto [q, n] : mine) d.deallocate(q, n);
        });
    }
    for (auto& th : workers) th.join();
    EXPECT_FALSE(bad.load());
    const auto s = d.diagnostics();
    EXPECT_EQ(s.live_blocks, 0u);
    EXPECT_EQ(s.allocations, static_cast<std::uint64_t>(threads * rounds));
    EXPECT_EQ(s.deallocations, s.allocations);
    EXPECT_EQ(s.corruptions + s.violations, 0u);
}

// --- AddressSanitizer
// ------------------------------------------------------------------------------

TEST(DebugAllocatorDeathTest, AsanStopsAWriteIntoAFence) {
    if (!memkit::has_address_sanitizer) GTEST_SKIP() << "needs an ASan build";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    sys_debug d;
    auto* p = static_cast<volatile unsigned char*>(d.allocate(100));
    EXPECT_DEATH(p[100] = 1, "AddressSanitizer: use-after-poison");
    EXPECT_DEATH(p[-1] = 1, "AddressSanitizer: use-after-poison");
    d.deallocate(const_cast<unsigned char*>(p), 100);
}

TEST(DebugAllocatorDeathTest, AsanStopsAReadOfAQuarantinedBlock) {
    if (!memkit::has_address_sanitizer) GTEST_SKIP() << "needs an ASan build";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    sys_debug d;
    auto* p = static_cast<volatile unsigned char*>(d.allocate(64));
    d.deallocate(const_cast<unsigned char*>(p), 64);
    EXPECT_DEATH((void)p[10], "AddressSanitizer: use-after-poison");
}

} // namespace
