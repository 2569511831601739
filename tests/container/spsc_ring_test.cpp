#include "memkit/container/spsc_ring.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <memory>
#include <memory_resource>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/pmr/std_allocator.hpp"
#include "support/container_support.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::spsc_ring;
using memkit::test::counted;
using memkit::test::counted_state;
using memkit::test::failing_allocator;
using memkit::test::for_each_failure_point;
using memkit::test::live_object_guard;
using memkit::test::violation_recorder;

static_assert(!std::is_copy_constructible_v<spsc_ring<int>>);
static_assert(!std::is_move_constructible_v<spsc_ring<int>>);
static_assert(alignof(spsc_ring<int>) >= memkit::cache_line_size);
static_assert(std::is_same_v<memkit::pmr::spsc_ring<int>,
                             spsc_ring<int, std::pmr::polymorphic_allocator<int>>>);

// The consumer's view of the head element, for tests that know the ring is not empty.
template <class Ring>
auto& head_of(Ring& r) {
    auto* p = r.front();
    if (p == nullptr) throw std::logic_error("the ring is empty");
    return *p;
}

// ---- single-threaded semantics ---------------------------------------------------------------

TEST(SpscRing, CapacityIsRoundedUpToAPowerOfTwo) {
    EXPECT_EQ(spsc_ring<int>(0).capacity(), 1u);
    EXPECT_EQ(spsc_ring<int>(1).capacity(), 1u);
    EXPECT_EQ(spsc_ring<int>(3).capacity(), 4u);
    EXPECT_EQ(spsc_ring<int>(1000).capacity(), 1024u);
    EXPECT_EQ(spsc_ring<int>(1024).capacity(), 1024u);
    const spsc_ring<int> r(8);
    EXPECT_TRUE(memkit::is_pow2(r.max_size()));
    EXPECT_THROW((void)spsc_ring<int>(std::numeric_limits<std::size_t>::max()), std::length_error);
    EXPECT_THROW((void)spsc_ring<int>(r.max_size() + 1), std::length_error);
}

TEST(SpscRing, FifoUntilFullThenEmpty) {
    spsc_ring<int> r(4);
    EXPECT_TRUE(r.empty());
    EXPECT_EQ(r.size_approx(), 0u);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(r.try_push(i));
    EXPECT_FALSE(r.try_push(99));
    EXPECT_FALSE(r.try_emplace(99));
    EXPECT_EQ(r.size_approx(), 4u);
    int v = -1;
    for (int i = 0; i < 4; ++i) {
        ASSERT_TRUE(r.try_pop(v));
        EXPECT_EQ(v, i);
    }
    EXPECT_FALSE(r.try_pop(v));
    EXPECT_EQ(r.try_pop(), std::nullopt);
    EXPECT_EQ(r.front(), nullptr);
    EXPECT_TRUE(r.empty());
}

TEST(SpscRing, RejectedRvalueIsNotConsumed) {
    spsc_ring<std::string> r(1);
    EXPECT_TRUE(r.try_push(std::string("first")));
    std::string s(50, 'x');
    EXPECT_FALSE(r.try_push(std::move(s)));
    EXPECT_EQ(s, std::string(50, 'x'));
    auto up = std::make_unique<int>(5);
    spsc_ring<std::unique_ptr<int>> u(1);
    EXPECT_TRUE(u.try_emplace(new int(1)));
    EXPECT_FALSE(u.try_push(std::move(up)));
    ASSERT_NE(up, nullptr);
    EXPECT_EQ(*head_of(u), 1);
}

// Neither copyable nor movable: only in-place construction and front()/pop() can handle it.
struct pinned {
    explicit pinned(int a, int b) : sum(a + b) {}
    pinned(const pinned&) = delete;
    pinned& operator=(const pinned&) = delete;
    int sum;
};

TEST(SpscRing, EmplacesInPlaceAndConsumesInPlace) {
    spsc_ring<pinned> r(2);
    EXPECT_TRUE(r.try_emplace(1, 2));
    EXPECT_TRUE(r.try_emplace(3, 4));
    EXPECT_FALSE(r.try_emplace(5, 6));
    ASSERT_NE(r.front(), nullptr);
    EXPECT_EQ(head_of(r).sum, 3);
    r.pop();
    EXPECT_EQ(head_of(r).sum, 7);
    r.pop();
    EXPECT_EQ(r.front(), nullptr);
}

TEST(SpscRing, WrapsAroundManyTimes) {
    spsc_ring<std::uint64_t> r(8);
    std::uint64_t next_in = 0, next_out = 0;
    for (int round = 0; round < 1000; ++round) {
        const int n = 1 + round % 8;
        for (int i = 0; i < n; ++i) ASSERT_TRUE(r.try_push(next_in++));
        for (int i = 0; i < n - (round % 2); ++i) {
            auto v = r.try_pop();
            ASSERT_TRUE(v.has_value());
            ASSERT_EQ(*v, next_out++);
        }
        while (auto v = r.try_pop()) ASSERT_EQ(*v, next_out++);
    }
    EXPECT_EQ(next_in, next_out);
}

template <class T>
void bulk_round_trip() {
    spsc_ring<T> r(8);
    std::vector<T> in;
    for (int i = 0; i < 12; ++i) in.push_back(T(i));
    // 5 in, 3 out: the ring's contents start at slot 3, so the next bulk push wraps.
    EXPECT_EQ(r.push(std::span<const T>(in.data(), 5)), 5u);
    std::vector<T> out(12);
    EXPECT_EQ(r.pop(std::span<T>(out.data(), 3)), 3u);
    EXPECT_EQ(r.push(std::span<const T>(in.data() + 5, 7)), 6u); // only 6 fit
    EXPECT_EQ(r.size_approx(), 8u);
    EXPECT_EQ(r.push(std::span<const T>(in)), 0u);
    EXPECT_EQ(r.pop(std::span<T>(out.data() + 3, 9)), 8u);
    for (int i = 0; i < 11; ++i)
        EXPECT_EQ(out[static_cast<std::size_t>(i)], in[static_cast<std::size_t>(i)]);
    EXPECT_EQ(r.pop(std::span<T>(out)), 0u);
    // To an output iterator, with a limit.
    EXPECT_EQ(r.push(std::span<const T>(in)), 8u);
    std::vector<T> got;
    EXPECT_EQ(r.pop(std::back_inserter(got), 5), 5u);
    EXPECT_EQ(r.pop(std::back_inserter(got), 100), 3u);
    ASSERT_EQ(got.size(), 8u);
    for (std::size_t i = 0; i < 8; ++i) EXPECT_EQ(got[i], in[i]);
}

TEST(SpscRing, BulkPushAndPopTrivialElements) { bulk_round_trip<int>(); }
TEST(SpscRing, BulkPushAndPopStrings) {
    struct str : std::string {
        str() = default;
        explicit str(int i)
            : std::string(std::to_string(i) + " a long string that lives on the heap") {}
    };
    bulk_round_trip<str>();
}

TEST(SpscRing, ElementsAreNotDefaultConstructedAndAllAreDestroyed) {
    live_object_guard guard;
    const long before = counted_state::live;
    {
        spsc_ring<counted> r(64);
        EXPECT_EQ(counted_state::live, before); // no element exists yet
        for (int i = 0; i < 40; ++i) ASSERT_TRUE(r.try_emplace(i));
        EXPECT_EQ(counted_state::live, before + 40);
        for (int i = 0; i < 15; ++i) ASSERT_TRUE(r.try_pop().has_value());
        EXPECT_EQ(counted_state::live, before + 25); // popped ones destroyed
        counted sink;
        ASSERT_TRUE(r.try_pop(sink));
        EXPECT_EQ(sink.value(), 15);
        r.pop();
        EXPECT_EQ(counted_state::live, before + 1 + 23);
        const std::vector<counted> more(10, counted(7));
        EXPECT_EQ(r.push(std::span<const counted>(more)), 10u);
        std::vector<counted> out(5);
        EXPECT_EQ(r.pop(std::span<counted>(out)), 5u);
        EXPECT_EQ(out[0].value(), 17);
    }
    EXPECT_EQ(counted_state::live, before); // the destructor destroyed the rest
}

// ---- exception safety
// ----------------------------------------------------------------------------

TEST(SpscRing, ThrowingConstructorPushesNothing) {
    live_object_guard guard;
    spsc_ring<counted> r(4);
    r.try_emplace(1);
    const counted v(2);
    for_each_failure_point(
        [&](long k) {
            counted_state::fail_at(k);
            ASSERT_TRUE(r.try_push(v));
        },
        [&] { ASSERT_EQ(r.size_approx(), 1u); });
    EXPECT_EQ(r.size_approx(), 2u);
}

TEST(SpscRing, BulkPushIsAllOrNothingOnAThrow) {
    live_object_guard guard;
    spsc_ring<counted> r(8);
    for (int i = 0; i < 6; ++i) r.try_emplace(i);
    for (int i = 0; i < 6; ++i) (void)r.try_pop(); // the next push wraps
    const std::vector<counted> items{10, 11, 12, 13, 14};
    const long live_before = counted_state::live;
    const long points = for_each_failure_point(
        [&](long k) {
            counted_state::fail_at(k);
            ASSERT_EQ(r.push(std::span<const counted>(items)), 5u);
        },
        [&] {
            ASSERT_TRUE(r.empty());
            ASSERT_EQ(counted_state::live, live_before);
        });
    EXPECT_EQ(points, 5);
    std::vector<counted> got;
    EXPECT_EQ(r.pop(std::back_inserter(got), 10), 5u);
    EXPECT_EQ(got, items);
}

TEST(SpscRing, ThrowingMoveOutLeavesTheElement) {
    live_object_guard guard;
    spsc_ring<counted> r(4);
    r.try_emplace(1);
    r.try_emplace(2);
    counted out(0);
    counted_state::fail_at(1);
    EXPECT_THROW(r.try_pop(out), memkit::test::injected_failure);
    EXPECT_EQ(r.size_approx(), 2u);
    EXPECT_EQ(head_of(r).value(), 1);
    // Bulk: the first element moves, the second throws: one popped, one left.
    std::vector<counted> dst(2);
    counted_state::fail_at(2);
    EXPECT_THROW((void)r.pop(std::span<counted>(dst)), memkit::test::injected_failure);
    EXPECT_EQ(dst[0].value(), 1);
    EXPECT_EQ(r.size_approx(), 1u);
    EXPECT_EQ(head_of(r).value(), 2);
}

// ---- allocators
// ----------------------------------------------------------------------------------

TEST(SpscRing, AllocatesOnceFromTheGivenAllocator) {
    failing_allocator<std::string> a;
    {
        spsc_ring<std::string, failing_allocator<std::string>> r(100, a);
        EXPECT_EQ(a.state().allocations, 1);
        for (int i = 0; i < 1000; ++i) {
            ASSERT_TRUE(r.try_push(std::string(40, 'q')));
            ASSERT_TRUE(r.try_pop().has_value());
        }
        r.try_push("left behind, destroyed by the destructor");
        EXPECT_EQ(a.state().allocations, 1);
        EXPECT_EQ(r.get_allocator(), a);
    }
    EXPECT_EQ(a.state().live_blocks, 0);
    a.state().fail_at(1);
    EXPECT_THROW((spsc_ring<std::string, failing_allocator<std::string>>(8, a)), std::bad_alloc);
    EXPECT_EQ(a.state().live_blocks, 0);
}

TEST(SpscRing, WorksWithArenaAndPmr) {
    memkit::arena ar;
    spsc_ring<int, memkit::std_allocator<int, memkit::arena>> r(16, ar);
    r.try_push(3);
    EXPECT_TRUE(ar.owns(r.front()));
    std::pmr::monotonic_buffer_resource res;
    memkit::pmr::spsc_ring<std::pmr::string> p(4, &res);
    p.try_emplace("a string long enough not to fit in the small-string buffer");
    EXPECT_EQ(head_of(p).get_allocator().resource(), &res);
}

struct alignas(64) wide {
    std::uint64_t v;
};

TEST(SpscRing, OverAlignedElements) {
    spsc_ring<wide> r(5);
    for (std::uint64_t i = 0; i < 20; ++i) {
        ASSERT_TRUE(r.try_push(wide{i}));
        ASSERT_EQ(reinterpret_cast<std::uintptr_t>(r.front()) % 64, 0u);
        ASSERT_EQ(r.try_pop()->v, i);
    }
}

TEST(SpscRing, PopOnEmptyIsAReportedViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    spsc_ring<int> r(2);
    r.pop();
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::invalid_argument);
    EXPECT_TRUE(r.try_push(1));
    EXPECT_EQ(head_of(r), 1);
}

// ---- two threads
// -----------------------------------------------------------------------------------

constexpr std::uint64_t sequence_length = 1'000'000;

TEST(SpscRing, TwoThreadsMoveAMillionSequenceNumbersInOrder) {
    spsc_ring<std::uint64_t> r(1024);
    std::thread producer([&] {
        for (std::uint64_t i = 0; i < sequence_length; ++i)
            while (!r.try_push(i)) std::this_thread::yield();
    });
    std::uint64_t expected = 0, mismatches = 0;
    while (expected < sequence_length) {
        std::uint64_t v;
        if (r.try_pop(v)) {
            mismatches += v != expected;
            ++expected;
        } else {
            std::this_thread::yield();
        }
    }
    producer.join();
    EXPECT_EQ(mismatches, 0u);
    EXPECT_TRUE(r.empty());
}

TEST(SpscRing, TwoThreadsMoveStringsInOrder) {
    constexpr std::uint64_t n = sequence_length / 4;
    spsc_ring<std::string> r(256);
    std::thread producer([&] {
        for (std::uint64_t i = 0; i < n; ++i) {
            std::string s = std::to_string(i) + (i % 3 == 0 ? std::string(40, 'h') : "");
            while (!r.try_push(std::move(s))) std::this_thread::yield();
        }
    });
    std::uint64_t got = 0, mismatches = 0;
    while (got < n) {
        if (std::optional<std::string> s = r.try_pop()) {
            const std::string want =
                std::to_string(got) + (got % 3 == 0 ? std::string(40, 'h') : "");
            mismatches += *s != want;
            ++got;
        } else {
            std::this_thread::yield();
        }
    }
    producer.join();
    EXPECT_EQ(mismatches, 0u);
}

TEST(SpscRing, TwoThreadsBulkTransfer) {
    spsc_ring<std::uint64_t> r(64);
    std::thread producer([&] {
        std::vector<std::uint64_t> batch(50);
        std::uint64_t next = 0;
        while (next < sequence_length) {
            const std::size_t want = static_cast<std::size_t>(
                std::min<std::uint64_t>(1 + next % 50, sequence_length - next));
            for (std::size_t i = 0; i < want; ++i) batch[i] = next + i;
            const std::size_t pushed = r.push(std::span<const std::uint64_t>(batch.data(), want));
            next += pushed;
            if (pushed == 0) std::this_thread::yield();
        }
    });
    std::vector<std::uint64_t> out(37);
    std::uint64_t expected = 0, mismatches = 0;
    while (expected < sequence_length) {
        const std::size_t n = r.pop(std::span<std::uint64_t>(out));
        for (std::size_t i = 0; i < n; ++i) mismatches += out[i] != expected++;
        if (n == 0) std::this_thread::yield();
    }
    producer.join();
    EXPECT_EQ(mismatches, 0u);
    EXPECT_EQ(r.size_approx(), 0u);
}

// Counts live objects with an atomic, so that construction on one thread and destruction on the
// other are both counted without a data race.
struct tracked {
    static inline std::atomic<long> live{0};
    explicit tracked(std::uint64_t v) : value(v) { live.fetch_add(1, std::memory_order_relaxed); }
    tracked(const tracked& o) : value(o.value) { live.fetch_add(1, std::memory_order_relaxed); }
    tracked& operator=(const tracked&) = default;
    ~tracked() { live.fetch_sub(1, std::memory_order_relaxed); }
    std::uint64_t value;
    std::vector<int> payload = std::vector<int>(3, 1); // a heap block per element
};

TEST(SpscRing, TwoThreadsDestroyEveryElementExactlyOnce) {
    constexpr std::uint64_t n = 100'000;
    {
        spsc_ring<tracked> r(128);
        std::thread producer([&] {
            for (std::uint64_t i = 0; i < n; ++i)
                while (!r.try_emplace(i)) std::this_thread::yield();
        });
        std::uint64_t got = 0, mismatches = 0;
        while (got < n - 100) { // leave some for the destructor
            if (tracked* t = r.front()) {
                mismatches += t->value != got;
                ++got;
                r.pop();
            } else {
                std::this_thread::yield();
            }
        }
        producer.join();
        EXPECT_EQ(mismatches, 0u);
        EXPECT_EQ(r.size_approx(), 100u);
        EXPECT_EQ(tracked::live.load(), 100);
    }
    EXPECT_EQ(tracked::live.load(), 0);
}

} // namespace
