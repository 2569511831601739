#include "memkit/debug/memory_tracker.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory_resource>
#include <sstream>
#include <string>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/traits.hpp"
#include "memkit/pmr/resource.hpp"

namespace {

using memkit::memory_tracker;
using memkit::system_allocator;
using memkit::tracked;
using memkit::tracker_stats;

static_assert(memkit::allocator<tracked<system_allocator>>);
static_assert(memkit::allocator_traits<tracked<system_allocator>>::is_thread_safe);
static_assert(memkit::allocator_traits<tracked<system_allocator>>::has_max_size);
static_assert(!memkit::allocator_traits<tracked<system_allocator>>::has_owns);
static_assert(memkit::owning_allocator<tracked<memkit::arena>>);
static_assert(!memkit::allocator_traits<tracked<memkit::arena>>::is_thread_safe);

// Violations are recorded instead of aborting; the tracker then ignores the bad call.
struct violations {
    static inline int count = 0;
    static inline memkit::errc last{};
    static inline const void* pointer = nullptr;
    static void handler(const memkit::violation& v) {
        ++count;
        last = v.code;
        pointer = v.pointer;
    }
};

class handler_guard {
public:
    handler_guard() : old_(memkit::set_violation_handler(&violations::handler)) {
        violations::count = 0;
        violations::last = {};
        violations::pointer = nullptr;
    }
    ~handler_guard() { memkit::set_violation_handler(old_); }
    handler_guard(const handler_guard&) = delete;
    handler_guard& operator=(const handler_guard&) = delete;

private:
    memkit::violation_handler old_;
};

// The function a source_location names: the full signature with std::source_location, the bare
// name with memkit's fallback (clang 14 with libstdc++ 12).
bool names_function(const std::string& function_name, const std::string& test_name) {
#if defined(__cpp_lib_source_location)
    return function_name.find(test_name) != std::string::npos;
#else
    (void)test_name;
    return function_name == "TestBody";
#endif
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

TEST(MemoryTracker, CountsAreExact) {
    memory_tracker t;
    tracked<system_allocator> a{t};
    EXPECT_EQ(t.stats(), tracker_stats{});
    void* p10 = a.allocate(10);
    void* p20 = a.allocate(20, 64);
    void* p30 = a.allocate(30);
    EXPECT_EQ(t.stats(), (tracker_stats{60, 3, 60, 3, 0, 60}));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p20) % 64, 0u);
    a.deallocate(p20, 20, 64);
    EXPECT_EQ(t.stats(), (tracker_stats{40, 2, 60, 3, 1, 60}));
    void* p100 = a.allocate(100);
    EXPECT_EQ(t.stats(), (tracker_stats{140, 3, 140, 4, 1, 160}));
    a.deallocate(p10, 10);
    a.deallocate(p30, 30);
    a.deallocate(p100, 100);
    EXPECT_EQ(t.stats(), (tracker_stats{0, 0, 140, 4, 4, 160}));
    EXPECT_TRUE(t.find_leaks().empty());
}

TEST(MemoryTracker, ManyBlocksGrowTheTablesAndAllComeBack) {
    memory_tracker t;
    tracked<system_allocator> a{t};
    std::vector<void*> blocks;
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < 20000; ++i) {
        const std::size_t n = 1 + i % 97;
        blocks.push_back(a.allocate(n));
        bytes += n;
    }
    EXPECT_EQ(t.stats().current_blocks, 20000u);
    EXPECT_EQ(t.stats().current_bytes, bytes);
    for (std::size_t i = 0; i < blocks.size(); ++i) EXPECT_TRUE(t.is_live(blocks[i]));
    // Free every other block first: backward-shift deletion must keep the rest findable.
    for (std::size_t i = 0; i < blocks.size(); i += 2) a.deallocate(blocks[i], 1 + i % 97);
    for (std::size_t i = 1; i < blocks.size(); i += 2) ASSERT_TRUE(t.is_live(blocks[i])) << i;
    for (std::size_t i = 0; i < blocks.size(); i += 2) ASSERT_FALSE(t.is_live(blocks[i])) << i;
    for (std::size_t i = 1; i < blocks.size(); i += 2) a.deallocate(blocks[i], 1 + i % 97);
    EXPECT_EQ(t.stats().current_blocks, 0u);
    EXPECT_EQ(t.stats().current_bytes, 0u);
    EXPECT_EQ(t.stats().peak_bytes, bytes);
}

TEST(MemoryTracker, LeaksHaveSizesLinesAndTypes) {
    memory_tracker t;
    tracked<system_allocator> a{t};
    void* freed = a.allocate(8);
    const unsigned line48 = __LINE__ + 1;
    void* p = a.allocate(48);
    const unsigned line16 = __LINE__ + 1;
    void* q = a.allocate(16, 16, "widget");
    const unsigned line24 = __LINE__ + 1;
    void* r = MEMKIT_TRACK(a, 24);
    a.deallocate(freed, 8);

    const auto leaks = t.find_leaks();
    ASSERT_EQ(leaks.size(), 3u);
    EXPECT_EQ(leaks[0].pointer, p);
    EXPECT_EQ(leaks[0].size, 48u);
    EXPECT_EQ(leaks[0].alignment, alignof(std::max_align_t));
    EXPECT_EQ(leaks[0].location.line(), line48);
    EXPECT_TRUE(ends_with(leaks[0].location.file_name(), "memory_tracker_test.cpp"));
    EXPECT_TRUE(names_function(leaks[0].location.function_name(), "LeaksHaveSizesLinesAndTypes"))
        << leaks[0].location.function_name();
    EXPECT_EQ(leaks[0].type_name, nullptr);
    EXPECT_EQ(leaks[0].sequence, 1u);
    EXPECT_TRUE(leaks[0].stack.empty());
    EXPECT_EQ(leaks[1].pointer, q);
    EXPECT_EQ(leaks[1].size, 16u);
    EXPECT_EQ(leaks[1].alignment, 16u);
    EXPECT_EQ(leaks[1].location.line(), line16);
    EXPECT_STREQ(leaks[1].type_name, "widget");
    EXPECT_EQ(leaks[2].pointer, r);
    EXPECT_EQ(leaks[2].size, 24u);
    EXPECT_EQ(leaks[2].location.line(), line24);
    EXPECT_LE(leaks[0].time, leaks[1].time);
    EXPECT_LE(leaks[1].time, leaks[2].time);

    EXPECT_EQ(t.find_leaks(3).size(), 1u); // since sequence 3: only r
    a.deallocate(p, 48);
    a.deallocate(q, 16, 16);
    a.deallocate(r, 24);
}

TEST(MemoryTracker, LeakGroupsByCallSite) {
    memory_tracker t;
    tracked<system_allocator> a{t};
    std::vector<void*> blocks;
    unsigned loop_line = 0;
    for (std::size_t i = 1; i <= 5; ++i) {
        loop_line = __LINE__ + 1;
        blocks.push_back(a.allocate(i * 10));
    }
    const unsigned big_line = __LINE__ + 1;
    void* big = a.allocate(1000);

    const auto groups = t.leak_groups();
    ASSERT_EQ(groups.size(), 2u);
    EXPECT_EQ(groups[0].bytes, 1000u); // largest first
    EXPECT_EQ(groups[0].blocks, 1u);
    EXPECT_EQ(groups[0].location.line(), big_line);
    EXPECT_EQ(groups[1].bytes, 150u);
    EXPECT_EQ(groups[1].blocks, 5u);
    EXPECT_EQ(groups[1].location.line(), loop_line);
    EXPECT_EQ(groups[1].first_sequence, 0u);

    const std::string text = t.report();
    EXPECT_NE(text.find("in use: 1150 bytes in 6 blocks"), std::string::npos) << text;
    EXPECT_NE(text.find("leaks: 1150 bytes in 6 blocks, 2 groups by call site"), std::string::npos)
        << text;
    EXPECT_NE(text.find("150 bytes in 5 blocks allocated at "), std::string::npos) << text;
    EXPECT_NE(text.find("memory_tracker_test.cpp:" + std::to_string(loop_line)), std::string::npos)
        << text;
    memkit::report_options one;
    one.max_groups = 1;
    EXPECT_NE(t.report(one).find("... 1 more group"), std::string::npos);

    for (std::size_t i = 0; i < blocks.size(); ++i) a.deallocate(blocks[i], (i + 1) * 10);
    a.deallocate(big, 1000);
    EXPECT_NE(t.report().find("leaks: 0 bytes in 0 blocks\n"), std::string::npos) << t.report();
}

// noinline: these frames must appear in the captured stacks under their own names.
MEMKIT_NOINLINE void* leaky_function(tracked<system_allocator>& a, std::size_t n) {
    void* p = a.allocate(n);
    asm volatile("" ::: "memory");
    return p;
}

MEMKIT_NOINLINE void* other_leaky_function(tracked<system_allocator>& a, std::size_t n) {
    void* p = a.allocate(n);
    asm volatile("" ::: "memory");
    return p;
}

MEMKIT_NOINLINE void* call_leaky(tracked<system_allocator>& a, std::size_t n, bool other) {
    void* p = other ? other_leaky_function(a, n) : leaky_function(a, n);
    asm volatile("" ::: "memory");
    return p;
}

TEST(MemoryTracker, StacksAreCapturedInternedAndSymbolized) {
    memory_tracker t{{.capture_stacks = true, .stack_depth = 16}};
    EXPECT_TRUE(t.capture_stacks());
    tracked<system_allocator> a{t};
    std::vector<void*> blocks;
    // One call site for all three (an unrolled loop would give each copy its own address).
#if defined(__clang__)
#pragma nounroll
#elif defined(__GNUC__)
#pragma GCC unroll 1
#endif
    for (int i = 0; i < 3; ++i) blocks.push_back(call_leaky(a, 32, false));
    blocks.push_back(call_leaky(a, 64, true));

    const auto leaks = t.find_leaks();
    ASSERT_EQ(leaks.size(), 4u);
    for (const auto& r : leaks) {
        ASSERT_FALSE(r.stack.empty());
        EXPECT_LE(r.stack.size(), 16u);
    }
    EXPECT_EQ(leaks[0].stack, leaks[1].stack); // the same path: the same stack
    EXPECT_NE(leaks[0].stack, leaks[3].stack);

    // By call site the loop's blocks and the other one differ by location; by stack as well.
    const auto groups = t.leak_groups(memkit::leak_grouping::stack);
    ASSERT_EQ(groups.size(), 2u);
    EXPECT_EQ(groups[0].bytes, 96u);
    EXPECT_EQ(groups[0].blocks, 3u);
    EXPECT_EQ(groups[1].bytes, 64u);

    const auto frames = memkit::stack_trace::symbolize(groups[0].stack);
    const std::string text = memkit::stack_trace::to_string(frames);
    // Frame 0 is the allocating function: tracked::allocate is always inlined into it.
    EXPECT_NE(frames[0].function.find("leaky_function"), std::string::npos) << text;
    EXPECT_NE(text.find("call_leaky"), std::string::npos) << text;
    EXPECT_NE(text.find("StacksAreCapturedInternedAndSymbolized"), std::string::npos) << text;

    memkit::report_options o;
    o.grouping = memkit::leak_grouping::stack;
    const std::string report = t.report(o);
    EXPECT_NE(report.find("2 groups by stack"), std::string::npos) << report;
    EXPECT_NE(report.find("other_leaky_function"), std::string::npos) << report;
    o.symbolize = false;
    EXPECT_EQ(t.report(o).find("call_leaky"), std::string::npos); // raw addresses only

    t.set_capture_stacks(false);
    void* plain = a.allocate(8);
    EXPECT_TRUE(t.find_leaks(4).at(0).stack.empty());
    a.deallocate(plain, 8);

    for (std::size_t i = 0; i < 3; ++i) a.deallocate(blocks[i], 32);
    a.deallocate(blocks[3], 64);
}

TEST(MemoryTracker, JsonReportParsesAndHasTheFields) {
    memory_tracker t{{.capture_stacks = true, .name = "json \"tracker\""}};
    tracked<system_allocator> a{t};
    // A type name with every character class JSON must escape, and invalid UTF-8.
    static const char weird[] = "we\"ird\\type\n\t\x01 caf\xc3\xa9 \xff end";
    const unsigned line = __LINE__ + 1;
    void* p = a.allocate(40, 8, weird);
    void* q = a.allocate(8);
    a.deallocate(q, 8);

    memkit::report_options o;
    o.format = memkit::report_format::json;
    const std::string text = t.report(o);
    const auto j = nlohmann::json::parse(text);
    EXPECT_EQ(j.at("tracker"), "json \"tracker\"");
    EXPECT_EQ(j.at("current_bytes"), 40);
    EXPECT_EQ(j.at("current_blocks"), 1);
    EXPECT_EQ(j.at("peak_bytes"), 48);
    EXPECT_EQ(j.at("allocations"), 2);
    EXPECT_EQ(j.at("deallocations"), 1);
    EXPECT_EQ(j.at("bytes_allocated"), 48);
    const auto& leaks = j.at("leaks");
    EXPECT_EQ(leaks.at("bytes"), 40);
    EXPECT_EQ(leaks.at("blocks"), 1);
    EXPECT_EQ(leaks.at("grouping"), "call_site");
    EXPECT_EQ(leaks.at("groups_omitted"), 0);
    ASSERT_EQ(leaks.at("groups").size(), 1u);
    const auto& g = leaks.at("groups")[0];
    EXPECT_EQ(g.at("bytes"), 40);
    EXPECT_EQ(g.at("blocks"), 1);
    EXPECT_EQ(g.at("line"), line);
    EXPECT_GT(g.at("column").get<unsigned>(), 0u);
    EXPECT_TRUE(ends_with(g.at("file").get<std::string>(), "memory_tracker_test.cpp"));
    EXPECT_TRUE(names_function(g.at("function"), "JsonReportParsesAndHasTheFields"));
    EXPECT_EQ(g.at("type"), "we\"ird\\type\n\t\x01 caf\xc3\xa9 \xef\xbf\xbd end");
    EXPECT_EQ(g.at("first_sequence"), 0);
    ASSERT_FALSE(g.at("stack").empty());
    const auto& f0 = g.at("stack")[0];
    for (const char* key : {"address", "function", "module", "offset", "file", "line", "inlined"})
        EXPECT_TRUE(f0.contains(key)) << key;
    EXPECT_NE(f0.at("function").get<std::string>().find("JsonReportParsesAndHasTheFields"),
              std::string::npos)
        << f0.dump();
#if !defined(NDEBUG)
    EXPECT_EQ(f0.at("line"), line); // the debug build has -g: file:line comes from DWARF
#endif

    // The ostream overload writes the same thing.
    std::ostringstream os;
    t.report(os, o);
    EXPECT_EQ(os.str(), text);
    a.deallocate(p, 40, 8);
    const auto empty = nlohmann::json::parse(t.report(o));
    EXPECT_EQ(empty.at("leaks").at("groups").size(), 0u);
    EXPECT_TRUE(empty.at("leaks").at("groups").is_array());
}

TEST(MemoryTracker, UnknownPointerIsNotOwnedAndIsNotPassedOn) {
    handler_guard guard;
    memory_tracker t;
    tracked<system_allocator> a{t};
    void* foreign = std::malloc(32);
    a.deallocate(foreign, 32); // would free it if passed on; we free it below
    EXPECT_EQ(violations::count, 1);
    EXPECT_EQ(violations::last, memkit::errc::not_owned);
    EXPECT_EQ(violations::pointer, foreign);
    EXPECT_EQ(t.stats().deallocations, 0u);
    std::free(foreign);
    EXPECT_TRUE(t.record_deallocation(nullptr));
    EXPECT_EQ(violations::count, 1);
}

TEST(MemoryTracker, DoubleFreeIsReported) {
    handler_guard guard;
    memory_tracker t;
    tracked<system_allocator> a{t};
    void* keep = a.allocate(64); // keeps malloc from reusing p's address below
    void* p = a.allocate(64);
    a.deallocate(p, 64);
    EXPECT_EQ(violations::count, 0);
    a.deallocate(p, 64); // not passed on to free(): the process survives
    EXPECT_EQ(violations::count, 1);
    EXPECT_EQ(violations::last, memkit::errc::double_free);
    EXPECT_EQ(violations::pointer, p);
    EXPECT_EQ(t.stats().deallocations, 1u);
    a.deallocate(keep, 64);
}

TEST(MemoryTracker, WrongSizeIsReportedAndTheBlockStaysLive) {
    handler_guard guard;
    memory_tracker t;
    tracked<system_allocator> a{t};
    void* p = a.allocate(64);
    a.deallocate(p, 65);
    EXPECT_EQ(violations::last, memkit::errc::invalid_argument);
    EXPECT_TRUE(t.is_live(p));
    EXPECT_EQ(t.stats().current_bytes, 64u);
    a.deallocate(p, 64);
    EXPECT_FALSE(t.is_live(p));
    EXPECT_EQ(violations::count, 1);
}

TEST(MemoryTracker, RecordingALiveBlockTwiceIsCorruption) {
    handler_guard guard;
    memory_tracker t;
    alignas(16) static unsigned char buf[64];
    t.record_allocation(buf, 64);
    t.record_allocation(buf, 32);
    EXPECT_EQ(violations::last, memkit::errc::corruption_detected);
    EXPECT_EQ(t.stats(), (tracker_stats{32, 1, 64, 2, 1, 96}));
    EXPECT_TRUE(t.record_deallocation(buf, 32));
    EXPECT_EQ(t.stats().current_blocks, 0u);
    t.record_allocation(nullptr, 8); // ignored
    EXPECT_EQ(t.stats().allocations, 2u);
}

TEST(MemoryTracker, TryAllocateRecordsAndFailureRecordsNothing) {
    memory_tracker t;
    tracked<system_allocator> a{t};
    const unsigned line = __LINE__ + 1;
    void* p = a.try_allocate(16);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(t.find_leaks().at(0).location.line(), line);
    EXPECT_EQ(a.try_allocate(0), nullptr); // system_allocator refuses size 0
    EXPECT_EQ(a.try_allocate(16, 3), nullptr);
    EXPECT_THROW((void)a.allocate(16, 3), memkit::invalid_alignment);
    EXPECT_EQ(t.stats().allocations, 1u);
    a.deallocate(p, 16);
}

TEST(MemoryTracker, WrapsAnOwningAllocator) {
    memory_tracker t;
    tracked<memkit::arena> a{t};
    void* p = a.allocate(100);
    EXPECT_TRUE(a.owns(p));
    int local = 0;
    EXPECT_FALSE(a.owns(&local));
    EXPECT_EQ(a.get().stats().bytes_in_use, 100u);
    EXPECT_EQ(&a.tracker(), &t);
    a.deallocate(p, 100);
    EXPECT_EQ(t.stats().current_blocks, 0u);
}

TEST(MemoryTracker, DefaultTrackerIsTheGlobalInstance) {
    memory_tracker& g = memory_tracker::instance();
    EXPECT_EQ(&g, &memory_tracker::instance());
    EXPECT_STREQ(g.name(), "memkit::memory_tracker");
    const tracker_stats before = g.stats();
    tracked<system_allocator> a;
    EXPECT_EQ(&a.tracker(), &g);
    void* p = a.allocate(77);
    EXPECT_EQ(g.stats().allocations, before.allocations + 1);
    EXPECT_EQ(g.stats().current_bytes, before.current_bytes + 77);
    a.deallocate(p, 77);
    EXPECT_EQ(g.stats().current_bytes, before.current_bytes);
    EXPECT_TRUE(tracked<system_allocator>{} == a);
    memory_tracker other;
    EXPECT_FALSE(tracked<system_allocator>{other} == a);
}

TEST(ScopedTracker, MeasuresAllocationsPeakAndLeaksOfTheScope) {
    memory_tracker t;
    tracked<system_allocator> a{t};
    void* before = a.allocate(1000);
    void* leaked = nullptr;
    unsigned leak_line = 0;
    {
        memkit::scoped_tracker scope{t};
        EXPECT_EQ(scope.allocations(), 0u);
        EXPECT_EQ(scope.peak_bytes(), 0u);
        void* x = a.allocate(300);
        void* y = a.allocate(200);
        a.deallocate(x, 300);
        a.deallocate(y, 200);
        leak_line = __LINE__ + 1;
        leaked = a.allocate(50);
        a.deallocate(before, 1000); // an older block freed inside the scope
        EXPECT_EQ(scope.allocations(), 3u);
        EXPECT_EQ(scope.deallocations(), 3u);
        EXPECT_EQ(scope.bytes_allocated(), 550u);
        EXPECT_EQ(scope.net_bytes(), -950);
        EXPECT_EQ(scope.peak_bytes(), 500u); // x and y live together
        EXPECT_EQ(scope.leaked_blocks(), 1u);
        EXPECT_EQ(scope.leaked_bytes(), 50u);
        const auto leaks = scope.leaks();
        ASSERT_EQ(leaks.size(), 1u);
        EXPECT_EQ(leaks[0].pointer, leaked);
        EXPECT_EQ(leaks[0].location.line(), leak_line);
        EXPECT_EQ(&scope.tracker(), &t);

        const std::string text = scope.report();
        EXPECT_NE(text.find("3 allocations, 550 bytes; 3 deallocations"), std::string::npos)
            << text;
        EXPECT_NE(text.find("peak above start: 500 bytes"), std::string::npos) << text;
        EXPECT_NE(text.find("leaks: 50 bytes in 1 block, 1 group"), std::string::npos) << text;
        memkit::report_options o;
        o.format = memkit::report_format::json;
        const auto j = nlohmann::json::parse(scope.report(o));
        EXPECT_EQ(j.at("scope"), true);
        EXPECT_EQ(j.at("allocations"), 3);
        EXPECT_EQ(j.at("net_bytes"), -950);
        EXPECT_EQ(j.at("peak_bytes"), 500);
        EXPECT_EQ(j.at("leaks").at("bytes"), 50);
    }
    EXPECT_EQ(t.stats().peak_bytes, 1500u);
    a.deallocate(leaked, 50);
}

TEST(ScopedTracker, NestedScopesKeepTheirOwnPeaks) {
    memory_tracker t;
    tracked<system_allocator> a{t};
    memkit::scoped_tracker outer{t};
    void* big = a.allocate(4000);
    a.deallocate(big, 4000);
    {
        memkit::scoped_tracker inner{t};
        void* small = a.allocate(100);
        EXPECT_EQ(inner.peak_bytes(), 100u);
        a.deallocate(small, 100);
    }
    // The inner scope must not hide the outer's earlier, higher peak.
    EXPECT_EQ(outer.peak_bytes(), 4000u);
    EXPECT_EQ(outer.allocations(), 2u);
    EXPECT_EQ(outer.leaked_blocks(), 0u);
}

TEST(MemoryTracker, PmrContainersThroughResource) {
    memory_tracker t;
    memkit::resource<tracked<system_allocator>> r{t};
    {
        std::pmr::vector<int> v{&r};
        for (int i = 0; i < 1000; ++i) v.push_back(i);
        std::pmr::string s{"a string long enough to need the heap, not the SSO", &r};
        EXPECT_GT(t.stats().allocations, 2u);
        EXPECT_GE(t.stats().current_bytes, 1000 * sizeof(int) + s.size());
        const auto leaks = t.find_leaks();
        ASSERT_EQ(leaks.size(), 2u);
        EXPECT_EQ(leaks[0].size, v.capacity() * sizeof(int));
        // Recorded through the resource: the call site is memkit::resource's.
        EXPECT_TRUE(ends_with(leaks[0].location.file_name(), "resource.hpp"));
    }
    const tracker_stats s = t.stats();
    EXPECT_EQ(s.current_bytes, 0u);
    EXPECT_EQ(s.current_blocks, 0u);
    EXPECT_EQ(s.allocations, s.deallocations);
}

} // namespace
