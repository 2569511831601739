#include "memkit/compose/synchronized.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <random>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/alloc/stack.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/memory_utils.hpp"
#include "memkit/core/traits.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::stack_allocator;
using memkit::synchronized;

// A deliberately thread-unsafe allocator: plain counters that ThreadSanitizer would flag if any
// call ran outside the lock.
class counting_allocator {
public:
    static constexpr const char* name = "test::counting_allocator";
    static constexpr std::size_t max_alignment = 4096;

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        throw memkit::out_of_memory(name, n, 0, bytes_, 0);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (n > limit_) return nullptr;
        void* p = memkit::system_allocator{}.try_allocate(n, align);
        if (p != nullptr) {
            ++allocations_;
            bytes_ += n;
        }
        return p;
    }
    void deallocate(void* p, std::size_t n,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        ++deallocations_;
        bytes_ -= n;
        memkit::system_allocator{}.deallocate(p, n, align);
    }
    [[nodiscard]] std::size_t max_size() const noexcept { return limit_; }

    std::size_t allocations_ = 0, deallocations_ = 0, bytes_ = 0;
    std::size_t limit_ = 1 << 20;
};

// A mutex that records whether it is held, so tests can check that a call ran under it.
// Single-threaded use only: the state is global so the allocator below can see it.
struct probe_mutex {
    void lock() {
        EXPECT_FALSE(held);
        held = true;
        ++locks;
    }
    void unlock() {
        EXPECT_TRUE(held);
        held = false;
    }
    static inline bool held = false;
    static inline int locks = 0;
};

// An allocator whose every member checks that the probe mutex is held while it runs.
struct probed_allocator {
    static constexpr const char* name = "test::probed_allocator";
    mutable int calls = 0;

    void check() const {
        ++calls;
        EXPECT_TRUE(probe_mutex::held);
    }
    void* allocate(std::size_t n, std::size_t align) {
        check();
        return memkit::system_allocator{}.allocate(n, align);
    }
    void* try_allocate(std::size_t n, std::size_t align) noexcept {
        check();
        return memkit::system_allocator{}.try_allocate(n, align);
    }
    void deallocate(void* p, std::size_t n, std::size_t align) noexcept {
        check();
        memkit::system_allocator{}.deallocate(p, n, align);
    }
    bool owns(const void*) const noexcept {
        check();
        return true;
    }
    void reset() { check(); }
    memkit::allocator_stats stats() const noexcept {
        check();
        return {1, 2, 3, 4, 5};
    }
    std::size_t max_size() const noexcept {
        check();
        return 77;
    }
};

using sync_stack = synchronized<stack_allocator>;
using sync_system = synchronized<memkit::system_allocator>;

static_assert(memkit::allocator<sync_stack>);
static_assert(memkit::owning_allocator<sync_stack>);
static_assert(sync_stack::is_thread_safe);
static_assert(synchronized<counting_allocator>::is_thread_safe);
static_assert(synchronized<counting_allocator>::max_alignment == counting_allocator::max_alignment);
static_assert(sync_stack::max_alignment == 4096);
static_assert(std::string_view{sync_stack::name} == "memkit::stack_allocator");
static_assert(std::string_view{sync_system::name} == "memkit::system_allocator");
static_assert(!std::is_copy_constructible_v<sync_stack> && !std::is_copy_assignable_v<sync_stack>);
static_assert(!std::is_move_constructible_v<sync_stack> && !std::is_move_assignable_v<sync_stack>);
static_assert(std::is_same_v<sync_stack::allocator_type, stack_allocator>);
static_assert(std::is_same_v<sync_stack::mutex_type, std::mutex>);
// Optional members are present exactly when the wrapped allocator has them.
static_assert(memkit::allocator_traits<sync_stack>::has_owns);
static_assert(memkit::allocator_traits<sync_stack>::has_reset);
static_assert(memkit::allocator_traits<sync_stack>::has_stats);
static_assert(memkit::allocator_traits<sync_stack>::has_max_size);
static_assert(!memkit::allocator_traits<sync_system>::has_owns);
static_assert(!memkit::allocator_traits<sync_system>::has_reset);
static_assert(!memkit::allocator_traits<sync_system>::has_stats);
static_assert(memkit::allocator_traits<sync_system>::has_max_size);
static_assert(!memkit::allocator_traits<synchronized<counting_allocator>>::has_stats);
// Only a default-constructible A makes a default-constructible synchronized.
static_assert(std::is_default_constructible_v<sync_system>);
static_assert(!std::is_default_constructible_v<sync_stack>);
static_assert(std::is_constructible_v<sync_stack, std::in_place_t, std::size_t>);
static_assert(std::is_constructible_v<sync_stack, stack_allocator>);
static_assert(!std::is_convertible_v<stack_allocator, sync_stack>);

TEST(Synchronized, ForwardsEveryMember) {
    sync_stack s{std::in_place, 4096};
    void* a = s.allocate(100, 64);
    EXPECT_TRUE(memkit::is_aligned(a, 64));
    void* b = s.try_allocate(50);
    ASSERT_NE(b, nullptr);
    EXPECT_TRUE(s.owns(a));
    EXPECT_TRUE(s.owns(b));
    int local = 0;
    EXPECT_FALSE(s.owns(&local));
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{150, 150, 4096, 2, 0}));
    EXPECT_EQ(s.max_size(), 4096u - sizeof(void*));
    s.deallocate(b, 50);
    s.deallocate(a, 100, 64);
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{0, 150, 4096, 2, 2}));
    (void)s.allocate(10);
    s.reset();
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
    EXPECT_EQ(s.with_lock([](stack_allocator& st) { return st.used(); }), 0u);
}

TEST(Synchronized, Constructors) {
    sync_system d;
    void* p = d.allocate(8);
    d.deallocate(p, 8);

    sync_stack from_value{stack_allocator{2048}};
    EXPECT_EQ(from_value.stats().capacity, 2048u);

    std::vector<std::byte> buf(512);
    sync_stack over_buffer{std::in_place, std::span<std::byte>{buf}};
    void* q = over_buffer.allocate(16, 1);
    EXPECT_EQ(q, buf.data() + sizeof(void*));
    over_buffer.deallocate(q, 16, 1);
}

TEST(Synchronized, EveryMemberRunsUnderTheLock) {
    synchronized<probed_allocator, probe_mutex> s;
    static_assert(std::string_view{decltype(s)::name} == "test::probed_allocator");
    const int locks = probe_mutex::locks;
    void* p = s.allocate(8, 8);
    s.deallocate(p, 8, 8);
    p = s.try_allocate(8, 8);
    s.deallocate(p, 8, 8);
    EXPECT_TRUE(s.owns(p));
    s.reset();
    EXPECT_EQ(s.stats(), (memkit::allocator_stats{1, 2, 3, 4, 5}));
    EXPECT_EQ(s.max_size(), 77u);
    EXPECT_FALSE(probe_mutex::held);
    EXPECT_EQ(probe_mutex::locks - locks, 8);
    s.with_lock([](probed_allocator& a) { a.check(); });
    const auto& cs = s;
    const int calls = cs.with_lock([](const probed_allocator& a) {
        a.check();
        return a.calls;
    });
    EXPECT_EQ(calls, 10);
    EXPECT_EQ(probe_mutex::locks - locks, 10);
    EXPECT_FALSE(probe_mutex::held);
}

TEST(Synchronized, ExceptionsLeaveTheLockReleased) {
    sync_stack s{std::in_place, 256};
    EXPECT_THROW((void)s.allocate(1000), memkit::bad_size);
    EXPECT_THROW((void)s.allocate(8, 3), memkit::invalid_alignment);
    (void)s.allocate(200, 1);
    try {
        (void)s.allocate(100, 1);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), 100u);
        EXPECT_EQ(e.capacity(), 256u);
        EXPECT_NE(std::string(e.what()).find("memkit::stack_allocator"), std::string::npos);
    }
    EXPECT_EQ(s.try_allocate(100, 1), nullptr);
    // Every call above released the lock, or this one would deadlock.
    EXPECT_EQ(s.stats().allocations, 1u);
    EXPECT_THROW(s.with_lock([](stack_allocator&) { throw std::runtime_error("boom"); }),
                 std::runtime_error);
    s.reset();
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
}

TEST(Synchronized, WithLockReturnsWhatTheCallableReturns) {
    sync_stack s{std::in_place, 1024};
    void* p = s.with_lock([](stack_allocator& a) { return a.allocate(32); });
    // References come back as references (decltype(auto)), void as void.
    stack_allocator& inner = s.with_lock([](stack_allocator& a) -> stack_allocator& { return a; });
    EXPECT_TRUE(inner.owns(p));
    static_assert(std::is_void_v<decltype(s.with_lock([](stack_allocator&) {}))>);
    const sync_stack& cs = s;
    EXPECT_EQ(cs.with_lock([](const stack_allocator& a) { return a.stats().bytes_in_use; }), 32u);
    s.deallocate(p, 32);
}

TEST(Synchronized, WorksWithOtherMutexTypes) {
    synchronized<stack_allocator, std::shared_mutex> s{std::in_place, 1024};
    void* p = s.allocate(16);
    EXPECT_TRUE(s.owns(p));
    s.deallocate(p, 16);
    synchronized<stack_allocator, std::recursive_mutex> r{std::in_place, 1024};
    // A recursive mutex allows calling back into the wrapper from with_lock.
    r.with_lock([&r](stack_allocator&) {
        void* q = r.allocate(8);
        r.deallocate(q, 8);
    });
    EXPECT_EQ(r.stats().allocations, 1u);
}

TEST(Synchronized, ViolationsOfTheWrappedAllocatorAreReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    sync_stack s{std::in_place, 1024};
    void* a = s.allocate(16);
    void* b = s.allocate(16);
    memkit::test::violation_recorder rec;
    s.deallocate(a, 16);
    EXPECT_EQ(memkit::test::violation_recorder::count(), 1);
    EXPECT_EQ(memkit::test::violation_recorder::last().code, memkit::errc::lifo_violation);
    s.deallocate(b, 16);
    s.deallocate(a, 16);
    EXPECT_EQ(s.stats().bytes_in_use, 0u);
}

// Four threads run LIFO sequences on one shared stack, each sequence under one lock.
TEST(Synchronized, ConcurrentLifoSequencesOnAStack) {
    constexpr int threads = 4;
    constexpr int rounds = 2000;
    sync_stack s{std::in_place, 1 << 16};
    std::atomic<int> failures{0};
    auto worker = [&](int id) {
        std::mt19937 rng{static_cast<unsigned>(id) * 7 + 1};
        for (int i = 0; i < rounds; ++i) {
            const int depth = 1 + static_cast<int>(rng() % 6);
            const bool use_marker = i % 2 == 0;
            const auto seed = static_cast<std::uint8_t>(id * 16 + i);
            s.with_lock([&](stack_allocator& st) {
                const auto m = st.mark();
                const std::size_t used = st.used();
                struct block {
                    void* p;
                    std::size_t size, align;
                } blocks[6];
                for (int k = 0; k < depth; ++k) {
                    const std::size_t n = 1 + rng() % 200;
                    const std::size_t align = std::size_t{1} << (rng() % 7);
                    blocks[k] = {st.allocate(n, align), n, align};
                    memkit::fill_pattern(blocks[k].p, n, static_cast<std::uint8_t>(seed + k));
                }
                for (int k = depth - 1; k >= 0; --k) {
                    if (memkit::verify_pattern(blocks[k].p, blocks[k].size,
                                               static_cast<std::uint8_t>(seed + k)) != nullptr)
                        failures.fetch_add(1);
                    if (!use_marker) st.deallocate(blocks[k].p, blocks[k].size, blocks[k].align);
                }
                if (use_marker) st.unwind(m);
                if (st.used() != used) failures.fetch_add(1);
            });
            // Outside the lock: plain forwarding calls interleave freely with other threads.
            if (!s.owns(&s)) (void)s.stats();
        }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
    for (auto& t : pool) t.join();
    EXPECT_EQ(failures.load(), 0);
    const auto st = s.stats();
    EXPECT_EQ(st.bytes_in_use, 0u);
    EXPECT_EQ(st.allocations, st.deallocations);
    EXPECT_GE(st.allocations, std::uint64_t{threads} * rounds);
    EXPECT_EQ(s.with_lock([](stack_allocator& a) { return a.used(); }), 0u);
}

// Four threads allocate and free through a non-thread-safe counting allocator; the counts must
// come out exact.
TEST(Synchronized, ConcurrentAllocateDeallocateKeepsCountsExact) {
    constexpr int threads = 4;
    constexpr int rounds = 10'000;
    synchronized<counting_allocator> s;
    std::atomic<int> failures{0};
    auto worker = [&](int id) {
        std::mt19937 rng{static_cast<unsigned>(id) + 11};
        std::vector<std::pair<void*, std::size_t>> live;
        for (int i = 0; i < rounds; ++i) {
            const std::size_t n = 1 + rng() % 128;
            void* p = (i % 2 == 0) ? s.allocate(n, 16) : s.try_allocate(n, 16);
            if (p == nullptr) {
                failures.fetch_add(1);
                continue;
            }
            memkit::fill_pattern(p, n, static_cast<std::uint8_t>(id));
            live.emplace_back(p, n);
            if (live.size() == 16 || i + 1 == rounds) {
                for (auto [q, m] : live) {
                    if (memkit::verify_pattern(q, m, static_cast<std::uint8_t>(id)) != nullptr)
                        failures.fetch_add(1);
                    s.deallocate(q, m, 16);
                }
                live.clear();
            }
        }
        (void)s.max_size();
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
    for (auto& t : pool) t.join();
    EXPECT_EQ(failures.load(), 0);
    s.with_lock([](const counting_allocator& a) {
        EXPECT_EQ(a.allocations_, std::size_t{threads} * rounds);
        EXPECT_EQ(a.deallocations_, std::size_t{threads} * rounds);
        EXPECT_EQ(a.bytes_, 0u);
    });
}

TEST(Synchronized, ErrorsOfAPlainAllocatorPropagate) {
    synchronized<counting_allocator> s;
    EXPECT_EQ(s.max_size(), std::size_t{1} << 20);
    EXPECT_EQ(s.try_allocate(2 << 20), nullptr);
    EXPECT_THROW((void)s.allocate(2 << 20), memkit::out_of_memory);
    s.with_lock([](counting_allocator& a) { a.limit_ = 10; });
    EXPECT_EQ(s.max_size(), 10u);
    EXPECT_EQ(s.try_allocate(11), nullptr);
}

} // namespace
