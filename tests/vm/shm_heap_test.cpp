// Tests of memkit::shm_heap and memkit::shm_allocator (include/memkit/vm/shm_heap.hpp):
// allocation (alignment, non-overlap, content, reuse, stats, exhaustion), the named-object
// directory, the pmr resource, structures built by a forked child and read by the parent, a
// child killed while holding the robust mutex (EOWNERDEAD recovery), a child that dies leaving
// the heap corrupted, every open/create error with type and message, and threads sharing one
// heap. This file is meant for the ThreadSanitizer run ("concurrency" label: vm/shm_heap_test).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/vm/offset_ptr.hpp"
#include "memkit/vm/shared_memory.hpp"
#include "memkit/vm/shm_heap.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::offset_ptr;
using memkit::shm_errc;
using memkit::shm_error;
using memkit::shm_heap;

std::string unique_name(const char* tag) {
    static std::atomic<int> counter{0};
    return "/memkit-heap-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "-" +
           tag;
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// Runs `body` in a forked child and returns its wait status. The child leaves with _exit, so
// neither gtest nor the sanitizers' exit hooks run there.
template <class F>
int run_child(F body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int rc = 99;
        try {
            rc = body();
        } catch (...) {
            rc = 98;
        }
        ::_exit(rc);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {}
    return status;
}

bool exited_ok(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

constexpr std::size_t heap_size = std::size_t{4} << 20;

static_assert(memkit::allocator<shm_heap>);
static_assert(memkit::owning_allocator<shm_heap>);
static_assert(!std::is_copy_constructible_v<shm_heap>);
static_assert(std::is_nothrow_move_constructible_v<shm_heap>);
static_assert(memkit::allocator_traits<shm_heap>::is_thread_safe);
static_assert(memkit::shm_storable<int>);
static_assert(!memkit::shm_storable<int[4]>);
struct polymorphic {
    virtual ~polymorphic() = default;
};
static_assert(!memkit::shm_storable<polymorphic>);

// --- allocation -------------------------------------------------------------------------

TEST(ShmHeap, AllocatesAlignedNonOverlappingBlocksThatKeepTheirContents) {
    const std::string name = unique_name("alloc");
    auto heap = shm_heap::create(name, heap_size, {.remove_on_destroy = true});
    EXPECT_TRUE(heap.created());
    EXPECT_EQ(heap.size(), heap_size);
    EXPECT_EQ(heap.segment_name(), name);
    struct block {
        unsigned char* p;
        std::size_t n;
        std::size_t align;
    };
    std::vector<block> blocks;
    std::mt19937_64 rng(42);
    const std::size_t aligns[] = {1, 8, 16, 32, 64, 256, 4096};
    for (int i = 0; i < 600; ++i) {
        const std::size_t n = 1 + rng() % 3000;
        const std::size_t a = aligns[rng() % std::size(aligns)];
        auto* p = static_cast<unsigned char*>(heap.allocate(n, a));
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % a, 0u);
        EXPECT_TRUE(heap.owns(p));
        EXPECT_TRUE(heap.owns(p + n - 1));
        EXPECT_GE(heap.usable_size(p), n);
        std::memset(p, static_cast<int>(i & 0xff), n);
        blocks.push_back({p, n, a});
    }
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (const auto& b : blocks) ranges.emplace_back(reinterpret_cast<std::uintptr_t>(b.p), b.n);
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        const auto& b = blocks[i];
        ASSERT_TRUE(std::all_of(b.p, b.p + b.n, [&](unsigned char c) { return c == (i & 0xff); }))
            << "block " << i;
    }
    heap.validate();
    for (const auto& b : blocks) heap.deallocate(b.p, b.n, b.align);
    const auto st = heap.stats();
    EXPECT_EQ(st.allocations, st.deallocations);
    EXPECT_EQ(st.bytes_in_use, 0u);
    EXPECT_GT(st.peak_bytes, 0u);
    EXPECT_GT(st.capacity, heap_size - 16384); // the header takes the rest
    EXPECT_LT(st.capacity, heap_size);
    heap.validate();
    int local = 0;
    EXPECT_FALSE(heap.owns(&local));
    EXPECT_FALSE(heap.owns(heap.base())); // the header is not block area
}

TEST(ShmHeap, ReusesFreedBlocksAndCountsStats) {
    auto heap = shm_heap::create(unique_name("reuse"), heap_size, {.remove_on_destroy = true});
    const auto before = heap.stats();
    void* a = heap.allocate(128);
    void* b = heap.allocate(128);
    EXPECT_NE(a, b);
    auto mid = heap.stats();
    EXPECT_EQ(mid.allocations, before.allocations + 2);
    EXPECT_GE(mid.bytes_in_use, before.bytes_in_use + 256);
    heap.deallocate(a, 128);
    void* c = heap.allocate(128);
    EXPECT_EQ(c, a); // LIFO reuse
    heap.deallocate(b, 128);
    heap.deallocate(c, 128);
    EXPECT_EQ(heap.stats().bytes_in_use, before.bytes_in_use);
    EXPECT_EQ(heap.stats().deallocations, before.deallocations + 3);
    heap.deallocate(nullptr, 1); // ignored
    EXPECT_GT(heap.free_bytes(), heap_size / 2);
    EXPECT_LE(heap.largest_free_block(), heap.free_bytes());
}

TEST(ShmHeap, ExhaustionAndBadRequestsThrowTypedErrors) {
    auto heap = shm_heap::create(unique_name("oom"), 1 << 16, {.remove_on_destroy = true});
    std::vector<void*> live;
    try {
        for (;;) live.push_back(heap.allocate(1000));
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 1000u);
        EXPECT_STREQ(e.allocator(), "memkit::tlsf_heap");
    }
    EXPECT_GT(live.size(), 30u);
    EXPECT_EQ(heap.try_allocate(1000), nullptr);
    EXPECT_THROW((void)heap.allocate(0), memkit::bad_size);
    EXPECT_THROW((void)heap.allocate(16, 3), memkit::invalid_alignment);
    EXPECT_THROW((void)heap.allocate(shm_heap::max_size() + 1), memkit::bad_size);
    EXPECT_EQ(heap.try_allocate(0), nullptr);
    for (void* p : live) heap.deallocate(p, 1000);
    EXPECT_NE(heap.try_allocate(1000), nullptr);
}

TEST(ShmHeap, PmrResourceServesStdContainers) {
    auto heap = shm_heap::create(unique_name("pmr"), heap_size, {.remove_on_destroy = true});
    memkit::pmr::shm_heap_resource r{heap};
    {
        std::pmr::vector<std::uint64_t> v(&r);
        for (std::uint64_t i = 0; i < 20000; ++i) v.push_back(i * i);
        EXPECT_TRUE(heap.owns(v.data()));
        for (std::uint64_t i = 0; i < 20000; ++i) ASSERT_EQ(v[i], i * i);
        std::pmr::vector<std::pmr::vector<int>> nested(&r);
        nested.resize(50);
        for (auto& n : nested) n.assign(100, 7);
        EXPECT_TRUE(heap.owns(nested[49].data()));
        memkit::pmr::shm_heap_resource r2{heap};
        EXPECT_TRUE(r.is_equal(r2));
    }
    EXPECT_EQ(heap.stats().bytes_in_use, 0u);
}

// --- named objects ----------------------------------------------------------------------

struct record {
    std::uint64_t id;
    double value;
    char tag[16];
};

TEST(ShmHeap, FindOrConstructFindAndDestroy) {
    auto heap = shm_heap::create(unique_name("dir"), heap_size, {.remove_on_destroy = true});
    EXPECT_EQ(heap.find<record>("r"), nullptr);
    record* r = heap.find_or_construct<record>("r", record{7, 1.5, "seven"});
    ASSERT_NE(r, nullptr);
    EXPECT_TRUE(heap.owns(r));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(r) % alignof(record), 0u);
    EXPECT_EQ(r->id, 7u);
    EXPECT_EQ(heap.find_or_construct<record>("r", record{8, 0, ""}), r); // not constructed again
    EXPECT_EQ(r->id, 7u);
    EXPECT_EQ(heap.find<record>("r"), r);
    EXPECT_EQ(heap.named_count(), 1u);
    struct alignas(64) wide {
        unsigned char b[64];
    };
    wide* w = heap.find_or_construct<wide>("w");
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(w) % 64, 0u);
    EXPECT_EQ(heap.named_count(), 2u);
    EXPECT_TRUE(heap.destroy<record>("r"));
    EXPECT_FALSE(heap.destroy<record>("r"));
    EXPECT_EQ(heap.find<record>("r"), nullptr);
    EXPECT_EQ(heap.named_count(), 1u);
    EXPECT_TRUE(heap.destroy<wide>("w"));
    EXPECT_EQ(heap.named_count(), 0u);
    heap.validate();
}

TEST(ShmHeap, DirectoryTypeMismatchAndBadNamesAreTypedErrors) {
    const std::string seg = unique_name("dir-err");
    auto heap = shm_heap::create(seg, heap_size, {.remove_on_destroy = true});
    (void)heap.find_or_construct<std::uint64_t>("counter", 5u);
    auto expect_mismatch = [&](auto&& f) {
        try {
            f();
            FAIL() << "a type mismatch must throw";
        } catch (const shm_error& e) {
            EXPECT_EQ(e.code(), shm_errc::type_mismatch);
            EXPECT_TRUE(contains(e.what(), "\"counter\" has size 8")) << e.what();
            EXPECT_TRUE(contains(e.what(), "size 4")) << e.what();
            EXPECT_TRUE(contains(e.what(), seg)) << e.what();
        }
    };
    expect_mismatch([&] { (void)heap.find<std::uint32_t>("counter"); });
    expect_mismatch([&] { (void)heap.find_or_construct<std::uint32_t>("counter", 1u); });
    expect_mismatch([&] { (void)heap.destroy<std::uint32_t>("counter"); });
    EXPECT_EQ(*heap.find<std::uint64_t>("counter"), 5u); // untouched

    for (const std::string& bad : {std::string(), std::string(256, 'n')}) {
        try {
            (void)heap.find_or_construct<int>(bad, 1);
            FAIL() << "an invalid object name must throw";
        } catch (const shm_error& e) {
            EXPECT_EQ(e.code(), shm_errc::invalid_name);
            EXPECT_TRUE(contains(e.what(), "1 to 255 characters")) << e.what();
        }
        EXPECT_THROW((void)heap.find<int>(bad), shm_error);
        EXPECT_THROW((void)heap.destroy<int>(bad), shm_error);
    }
    EXPECT_NE(heap.find_or_construct<int>(std::string(255, 'n'), 1), nullptr);
}

struct throws_on_construct {
    explicit throws_on_construct(int v) {
        if (v < 0) throw std::runtime_error("negative");
        value = v;
    }
    int value = 0;
};

TEST(ShmHeap, ThrowingConstructorLeavesNoEntryAndNoLeak) {
    auto heap = shm_heap::create(unique_name("dir-throw"), heap_size, {.remove_on_destroy = true});
    (void)heap.find_or_construct<int>("warm-up", 0); // creates the bucket array
    const auto before = heap.stats().bytes_in_use;
    EXPECT_THROW((void)heap.find_or_construct<throws_on_construct>("t", -1), std::runtime_error);
    EXPECT_EQ(heap.find<throws_on_construct>("t"), nullptr);
    EXPECT_EQ(heap.stats().bytes_in_use, before);
    EXPECT_EQ(heap.named_count(), 1u);
    EXPECT_EQ(heap.find_or_construct<throws_on_construct>("t", 3)->value, 3);
    heap.validate();
}

TEST(ShmHeap, ManyNamesGrowTheDirectory) {
    auto heap = shm_heap::create(unique_name("dir-many"), heap_size, {.remove_on_destroy = true});
    for (int i = 0; i < 2000; ++i) *heap.find_or_construct<int>("obj-" + std::to_string(i), i) += 0;
    EXPECT_EQ(heap.named_count(), 2000u);
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(*heap.find<int>("obj-" + std::to_string(i)), i);
    heap.validate();
    for (int i = 0; i < 2000; i += 2) ASSERT_TRUE(heap.destroy<int>("obj-" + std::to_string(i)));
    EXPECT_EQ(heap.named_count(), 1000u);
    EXPECT_EQ(heap.find<int>("obj-10"), nullptr);
    EXPECT_EQ(*heap.find<int>("obj-11"), 11);
    heap.validate();
}

// A constructor that allocates from the same heap while find_or_construct holds the lock.
using shm_ints = std::vector<int, memkit::shm_allocator<int>>;

TEST(ShmHeap, ShmAllocatorContainersLiveInTheSegment) {
    auto heap = shm_heap::create(unique_name("alloc-vec"), heap_size, {.remove_on_destroy = true});
    auto* v = heap.find_or_construct<shm_ints>("v", memkit::shm_allocator<int>{heap});
    EXPECT_TRUE(heap.owns(v));
    for (int i = 0; i < 5000; ++i) v->push_back(i);
    EXPECT_TRUE(heap.owns(v->data()));
    EXPECT_EQ(v->get_allocator(), memkit::shm_allocator<int>{heap});
    shm_ints copy(*v); // a process-local vector of shared memory
    EXPECT_EQ(copy.size(), 5000u);
    EXPECT_TRUE(heap.owns(copy.data()));
    copy.clear();
    copy.shrink_to_fit();
    EXPECT_TRUE(heap.destroy<shm_ints>("v"));
    heap.validate();
}

// --- across processes -------------------------------------------------------------------

struct list_node {
    std::uint64_t value;
    offset_ptr<list_node> next;
};

struct list_head {
    offset_ptr<list_node> first;
    std::uint64_t count;
};

TEST(ShmHeap, ForkedChildBuildsStructuresTheParentReads) {
    const std::string name = unique_name("fork-build");
    memkit::shm_remover cleanup(name);
    // The parent keeps its mapping while it forks, so that nothing in the child (a sanitizer's
    // helper thread, say) can take the range before the child maps it itself.
    auto parent_heap = shm_heap::create(name, heap_size);
    const int status = run_child([&]() -> int {
        parent_heap = shm_heap(); // drop the inherited mapping: open by name, like any process
        auto heap = shm_heap::open(name);
        if (heap.created()) return 3;
        auto* head = heap.find_or_construct<list_head>("list", list_head{nullptr, 0});
        std::lock_guard lk(heap);
        for (std::uint64_t i = 0; i < 1000; ++i) {
            auto* n = static_cast<list_node*>(heap.allocate(sizeof(list_node), alignof(list_node)));
            ::new (n) list_node{i * i, head->first};
            head->first = n;
            ++head->count;
        }
        auto* recs = heap.find_or_construct<std::vector<record, memkit::shm_allocator<record>>>(
            "records", memkit::shm_allocator<record>{heap});
        for (std::uint64_t i = 0; i < 300; ++i) recs->push_back(record{i, i * 0.5, "rec"});
        return 0;
    });
    ASSERT_TRUE(exited_ok(status)) << "child status " << status;
    parent_heap = shm_heap(); // and read it through a fresh open

    auto heap = shm_heap::open(name);
    EXPECT_FALSE(heap.created());
    heap.validate();
    auto* head = heap.find<list_head>("list");
    ASSERT_NE(head, nullptr);
    EXPECT_EQ(head->count, 1000u);
    std::uint64_t expect = 999;
    std::uint64_t seen = 0;
    for (list_node* n = head->first.get(); n != nullptr; n = n->next.get(), --expect, ++seen) {
        ASSERT_TRUE(heap.owns(n));
        ASSERT_EQ(n->value, expect * expect);
    }
    EXPECT_EQ(seen, 1000u);
    auto* recs = heap.find<std::vector<record, memkit::shm_allocator<record>>>("records");
    ASSERT_NE(recs, nullptr);
    ASSERT_EQ(recs->size(), 300u);
    for (std::uint64_t i = 0; i < 300; ++i) {
        ASSERT_EQ((*recs)[i].id, i);
        ASSERT_EQ((*recs)[i].value, i * 0.5);
        ASSERT_STREQ((*recs)[i].tag, "rec");
    }
    // The parent can keep growing the child's vector: the allocator inside it works here too.
    recs->push_back(record{300, 0, "parent"});
    EXPECT_EQ(recs->back().id, 300u);
}

TEST(ShmHeap, ForkedChildAndParentAllocateConcurrentlyThroughTheRobustMutex) {
    const std::string name = unique_name("fork-both");
    auto heap = shm_heap::create(name, heap_size, {.remove_on_destroy = true});
    auto* counter = heap.find_or_construct<std::uint64_t>("counter", 0u);
    constexpr int rounds = 2000;
    auto work = [&] {
        for (int i = 0; i < rounds; ++i) {
            void* p = heap.allocate(64);
            std::memset(p, 0xab, 64);
            {
                std::lock_guard lk(heap);
                ++*counter;
            }
            heap.deallocate(p, 64);
        }
    };
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) { // inherits the mapping at the same address
        work();
        ::_exit(0);
    }
    work();
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(exited_ok(status));
    EXPECT_EQ(*counter, 2u * rounds);
    heap.validate();
}

TEST(ShmHeap, ChildKilledHoldingTheMutexIsRecoveredByTheParent) {
    const std::string name = unique_name("robust-kill");
    auto heap = shm_heap::create(name, heap_size, {.remove_on_destroy = true});
    auto* marker = heap.find_or_construct<std::uint64_t>("marker", 0u);
    void* kept = heap.allocate(256);
    std::memset(kept, 0x5c, 256);
    EXPECT_EQ(heap.owner_deaths(), 0u);
    const int status = run_child([&]() -> int {
        heap.lock();
        *marker = 42; // half of an update the parent must be told about
        ::kill(::getpid(), SIGKILL);
        for (;;) ::pause();
    });
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    EXPECT_EQ(WTERMSIG(status), SIGKILL);
    EXPECT_EQ(heap.lock_with_status(), memkit::lock_status::recovered);
    EXPECT_EQ(heap.owner_deaths(), 1u);
    EXPECT_EQ(*marker, 42u);
    heap.unlock();
    // The heap goes on working: lock again (plain), allocate, free, validate.
    EXPECT_EQ(heap.lock_with_status(), memkit::lock_status::acquired);
    heap.unlock();
    EXPECT_TRUE(heap.try_lock());
    heap.unlock();
    void* p = heap.allocate(1000);
    std::memset(p, 1, 1000);
    heap.deallocate(p, 1000);
    EXPECT_TRUE(std::all_of(static_cast<unsigned char*>(kept),
                            static_cast<unsigned char*>(kept) + 256,
                            [](unsigned char c) { return c == 0x5c; }));
    heap.deallocate(kept, 256);
    heap.validate();
    EXPECT_EQ(heap.owner_deaths(), 1u);
}

TEST(ShmHeap, ChildExitingHoldingTheMutexIsRecoveredByAnAllocation) {
    auto heap =
        shm_heap::create(unique_name("robust-exit"), heap_size, {.remove_on_destroy = true});
    const int status = run_child([&]() -> int {
        heap.lock();
        heap.lock(); // recursive: held twice when the process ends
        ::_exit(0);
    });
    ASSERT_TRUE(exited_ok(status));
    // An internal lock (allocate) finds the dead owner, recovers and counts it.
    void* p = heap.allocate(64);
    EXPECT_NE(p, nullptr);
    EXPECT_EQ(heap.owner_deaths(), 1u);
    heap.deallocate(p, 64);
    EXPECT_EQ(heap.lock_with_status(), memkit::lock_status::acquired);
    heap.unlock();
}

TEST(ShmHeap, DeadOwnerThatCorruptedTheHeapMakesItUnusable) {
    const std::string name = unique_name("robust-corrupt");
    auto heap = shm_heap::create(name, heap_size, {.remove_on_destroy = true});
    void* victim = heap.allocate(128);
    const int status = run_child([&]() -> int {
        heap.lock();
        // Scribble over the block's header word, as a crash in the middle of an update might.
        std::memset(static_cast<unsigned char*>(victim) - 8, 0xff, 8);
        ::_exit(0);
    });
    ASSERT_TRUE(exited_ok(status));
    try {
        heap.lock();
        FAIL() << "a corrupted heap must not be locked";
    } catch (const shm_error& e) {
        EXPECT_EQ(e.code(), shm_errc::heap_corrupted);
        EXPECT_TRUE(contains(e.what(), "died holding the lock")) << e.what();
        EXPECT_TRUE(contains(e.what(), name)) << e.what();
    }
    EXPECT_EQ(heap.owner_deaths(), 1u);
    // Every later operation reports it too; the noexcept ones in their own way.
    try {
        (void)heap.allocate(16);
        FAIL() << "allocate on a corrupted heap must throw";
    } catch (const shm_error& e) {
        EXPECT_EQ(e.code(), shm_errc::heap_corrupted);
        EXPECT_TRUE(contains(e.what(), "marked corrupted")) << e.what();
    }
    EXPECT_EQ(heap.try_allocate(16), nullptr);
    EXPECT_THROW((void)heap.find<int>("x"), shm_error);
    EXPECT_THROW((void)heap.try_lock(), shm_error);
    {
        memkit::test::violation_recorder rec;
        heap.deallocate(victim, 128);
        EXPECT_EQ(rec.count(), 1);
        EXPECT_EQ(rec.last().code, memkit::errc::corruption_detected);
    }
}

// --- open / create errors ---------------------------------------------------------------

TEST(ShmHeap, ReopenAfterCloseMapsAtTheSameAddressAndSeesTheData) {
    const std::string name = unique_name("reopen");
    memkit::shm_remover cleanup(name);
    void* base = nullptr;
    {
        auto heap = shm_heap::create(name, heap_size);
        base = heap.base();
        *heap.find_or_construct<int>("answer", 0) = 42;
    }
    EXPECT_TRUE(memkit::shared_memory::exists(name));
    auto heap = shm_heap::open(name);
    EXPECT_EQ(heap.base(), base);
    EXPECT_EQ(*heap.find<int>("answer"), 42);
    // A second open in this process cannot map at the same address; see the next test.
    EXPECT_THROW((void)shm_heap::open_or_create(name, heap_size), shm_error);
}

TEST(ShmHeap, SecondOpenInOneProcessIsAddressUnavailable) {
    const std::string name = unique_name("twice");
    auto heap = shm_heap::create(name, heap_size, {.remove_on_destroy = true});
    for (int op = 0; op < 2; ++op) {
        try {
            auto other = op == 0 ? shm_heap::open(name) : shm_heap::open_or_create(name, heap_size);
            FAIL() << "the heap's address is taken by the first mapping";
        } catch (const shm_error& e) {
            EXPECT_EQ(e.code(), shm_errc::address_unavailable);
            EXPECT_TRUE(contains(e.what(), "taken in this process")) << e.what();
            EXPECT_TRUE(contains(e.what(), name)) << e.what();
            char addr[32];
            std::snprintf(addr, sizeof addr, "%p", heap.base());
            EXPECT_TRUE(contains(e.what(), addr)) << e.what();
        }
    }
}

TEST(ShmHeap, CreateAtAGivenAddress) {
    void* probe = ::mmap(nullptr, heap_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(probe, MAP_FAILED);
    ::munmap(probe, heap_size);
    const std::string name = unique_name("at");
    auto heap = shm_heap::create(name, heap_size, {.remove_on_destroy = true, .address = probe});
    EXPECT_EQ(heap.base(), probe);
    // The same address for another heap is taken: an error, and no segment is left behind.
    const std::string other = unique_name("at-taken");
    try {
        (void)shm_heap::create(other, heap_size, {.address = probe});
        FAIL() << "create at a used address must fail";
    } catch (const shm_error& e) {
        EXPECT_EQ(e.code(), shm_errc::address_unavailable);
        EXPECT_TRUE(contains(e.what(), other)) << e.what();
    }
    EXPECT_FALSE(memkit::shared_memory::exists(other));
}

TEST(ShmHeap, CreateErrors) {
    const std::string name = unique_name("create-err");
    try {
        (void)shm_heap::create(name, 1000);
        FAIL() << "too small";
    } catch (const shm_error& e) {
        EXPECT_EQ(e.code(), shm_errc::invalid_size);
        EXPECT_TRUE(contains(e.what(), "below the minimum")) << e.what();
        EXPECT_TRUE(contains(e.what(), name)) << e.what();
    }
    EXPECT_FALSE(memkit::shared_memory::exists(name));
    EXPECT_NO_THROW(
        (void)shm_heap::create(name, shm_heap::min_size(), {.remove_on_destroy = true}));
    EXPECT_THROW((void)shm_heap::create("bad/name", heap_size), shm_error);
    memkit::shm_remover cleanup(name);
    auto h = shm_heap::create(name, heap_size);
    try {
        (void)shm_heap::create(name, heap_size);
        FAIL() << "create-only";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::file_exists);
        EXPECT_TRUE(contains(e.what(), name));
    }
    try {
        (void)shm_heap::open(unique_name("nope"));
        FAIL() << "missing";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    }
}

TEST(ShmHeap, OpenRejectsForeignVersionedAndUninitializedSegments) {
    const std::string name = unique_name("foreign");
    memkit::shm_remover cleanup(name);
    auto expect_open_error = [&](shm_errc code, const char* text) {
        try {
            (void)shm_heap::open(name, {.open_timeout = std::chrono::milliseconds(30)});
            FAIL() << "open must fail with " << static_cast<int>(code);
        } catch (const shm_error& e) {
            EXPECT_EQ(e.code(), code) << e.what();
            EXPECT_TRUE(contains(e.what(), text)) << e.what();
            EXPECT_TRUE(contains(e.what(), name)) << e.what();
            EXPECT_EQ(e.segment(), name);
        }
    };
    // The first 16 bytes (magic, version, header size) of a real heap.
    std::vector<unsigned char> magic_and_version(16);
    {
        const std::string real = unique_name("real");
        auto heap = shm_heap::create(real, heap_size, {.remove_on_destroy = true});
        std::memcpy(magic_and_version.data(), heap.base(), 16);
    }
    {
        // A segment that is all zeros (never initialized, or its creator died early).
        auto raw = memkit::shared_memory::create(name, heap_size);
        expect_open_error(shm_errc::not_initialized, "not initialized in time");
        // Garbage where the magic should be.
        std::memset(raw.data(), 0x17, 64);
        expect_open_error(shm_errc::bad_magic, "does not hold a memkit heap");
    }
    ASSERT_TRUE(memkit::shared_memory::remove(name));
    {
        // An empty segment (a creator that has not sized it yet, or died before).
        int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
        ASSERT_GE(fd, 0);
        expect_open_error(shm_errc::not_initialized, "still empty");
        ASSERT_EQ(::ftruncate(fd, 12), 0);
        expect_open_error(shm_errc::bad_magic, "too small");
        // The right magic and version in a segment too small for the header.
        ASSERT_EQ(::ftruncate(fd, 100), 0);
        {
            auto raw = memkit::shared_memory::open(name);
            const auto* src = static_cast<const unsigned char*>(magic_and_version.data());
            std::memcpy(raw.data(), src, magic_and_version.size());
        }
        expect_open_error(shm_errc::size_mismatch, "smaller than the heap header");
        ::close(fd);
    }
    ASSERT_TRUE(memkit::shared_memory::remove(name));
    {
        (void)shm_heap::create(name, heap_size);
        auto raw = memkit::shared_memory::open(name);
        auto* words = static_cast<std::uint32_t*>(raw.data());
        words[2] = shm_heap::layout_version + 1; // the version field follows the 8-byte magic
        expect_open_error(shm_errc::bad_version, "heap layout version 2");
        words[2] = shm_heap::layout_version;
        words[3] += 64; // header size: another build's layout
        expect_open_error(shm_errc::bad_version, "this build uses");
        words[3] -= 64;
        static_cast<std::uint64_t*>(raw.data())[3] += 4096; // recorded segment size
        expect_open_error(shm_errc::size_mismatch, "the segment has");
        static_cast<std::uint64_t*>(raw.data())[3] -= 4096;
    }
    EXPECT_NO_THROW((void)shm_heap::open(name));
}

TEST(ShmHeap, OpenOrCreateCreatesOrOpens) {
    const std::string name = unique_name("ooc");
    memkit::shm_remover cleanup(name);
    {
        auto heap = shm_heap::open_or_create(name, heap_size);
        EXPECT_TRUE(heap.created());
        (void)heap.find_or_construct<int>("x", 3);
    }
    auto heap = shm_heap::open_or_create(name, 12345);
    EXPECT_FALSE(heap.created());
    EXPECT_EQ(heap.size(), heap_size);
    EXPECT_EQ(*heap.find<int>("x"), 3);
    heap.set_remove_on_destroy(true);
}

TEST(ShmHeap, MoveTransfersTheHandle) {
    const std::string name = unique_name("move");
    auto a = shm_heap::create(name, heap_size, {.remove_on_destroy = true});
    void* base = a.base();
    shm_heap b(std::move(a));
    EXPECT_FALSE(a); // NOLINT(bugprone-use-after-move)
    EXPECT_TRUE(b);
    EXPECT_EQ(b.base(), base);
    shm_heap c;
    c = std::move(b);
    EXPECT_EQ(c.base(), base);
    EXPECT_NE(c.allocate(10), nullptr);
    { shm_heap sink(std::move(c)); }
    EXPECT_FALSE(memkit::shared_memory::exists(name));
}

// --- threads ----------------------------------------------------------------------------

TEST(ShmHeap, ThreadsShareOneHeap) {
    auto heap = shm_heap::create(unique_name("threads"), std::size_t{16} << 20,
                                 {.remove_on_destroy = true});
    auto* counter = heap.find_or_construct<std::uint64_t>("counter", 0u);
    constexpr int threads = 4;
    const int rounds = 4000 / memkit::test::stress_scale;
    std::atomic<int> errors{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) + 1);
            std::vector<std::pair<unsigned char*, std::size_t>> live;
            for (int i = 0; i < rounds; ++i) {
                if (live.size() < 64 && (rng() & 1) != 0) {
                    const std::size_t n = 1 + rng() % 512;
                    auto* p = static_cast<unsigned char*>(heap.allocate(n, 16));
                    std::memset(p, t, n);
                    live.emplace_back(p, n);
                } else if (!live.empty()) {
                    auto [p, n] = live.back();
                    live.pop_back();
                    if (!std::all_of(p, p + n, [&](unsigned char c) { return c == t; })) ++errors;
                    heap.deallocate(p, n, 16);
                }
                if (i % 16 == 0) {
                    std::lock_guard lk(heap);
                    ++*counter;
                }
                if (i % 64 == 0) {
                    auto* shared = heap.find_or_construct<std::uint64_t>("shared", 0u);
                    std::lock_guard lk(heap);
                    ++*shared;
                }
            }
            for (auto [p, n] : live) heap.deallocate(p, n, 16);
        });
    }
    for (auto& th : pool) th.join();
    EXPECT_EQ(errors.load(), 0);
    const std::uint64_t per_thread = static_cast<std::uint64_t>((rounds + 15) / 16);
    EXPECT_EQ(*counter, per_thread * threads);
    EXPECT_EQ(*heap.find<std::uint64_t>("shared"),
              static_cast<std::uint64_t>((rounds + 63) / 64) * threads);
    EXPECT_EQ(heap.named_count(), 2u);
    heap.validate();
}

} // namespace
