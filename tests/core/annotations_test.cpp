// Tests for memkit/core/annotations.hpp and for the sanitizer annotations of the allocators:
// under AddressSanitizer a use of memory that a memkit allocator holds but has not handed out
// (a freed node or block, the free tail of an arena block) must be reported just as with malloc.
#include "memkit/core/annotations.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/slab.hpp"
#include "memkit/alloc/stack.hpp"
#include "memkit/alloc/tlsf.hpp"

#if MEMKIT_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

namespace {

constexpr const char* asan_report = "use-after-poison|heap-use-after-free|AddressSanitizer";

// Reads one byte the compiler cannot drop or reorder.
[[gnu::noinline]] std::uint8_t touch(const void* p) {
    return *static_cast<const volatile std::uint8_t*>(p);
}
[[gnu::noinline]] void scribble(void* p) { *static_cast<volatile std::uint8_t*>(p) = 0x5a; }

// ASan's view of memory; without ASan nothing is poisoned (the checks below are then skipped).
bool poisoned([[maybe_unused]] const void* p) {
#if MEMKIT_HAS_ASAN
    return __asan_address_is_poisoned(p) != 0;
#else
    return false;
#endif
}
bool addressable([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
#if MEMKIT_HAS_ASAN
    return __asan_region_is_poisoned(const_cast<void*>(p), n) == nullptr;
#else
    return true;
#endif
}
constexpr bool asan = memkit::has_address_sanitizer;

#define MEMKIT_SKIP_WITHOUT_ASAN()                                                                 \
    do {                                                                                           \
        if constexpr (!memkit::has_address_sanitizer)                                              \
            GTEST_SKIP() << "this build has no AddressSanitizer: poisoning is compiled out";       \
    } while (false)

class AnnotationsDeathTest : public ::testing::Test {
protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

} // namespace

TEST(Annotations, FlagsAgreeWithTheBuild) {
    EXPECT_EQ(memkit::has_memory_annotations,
              memkit::has_address_sanitizer || memkit::has_valgrind_annotations);
    EXPECT_EQ(memkit::has_valgrind_annotations, MEMKIT_VALGRIND != 0);
}

TEST(Annotations, UnusedWordAccessLeavesThePoisonInPlace) {
    alignas(16) std::array<std::uintptr_t, 4> words{1, 2, 3, 4};
    memkit::mark_unused(words.data(), sizeof words);
    EXPECT_EQ(memkit::read_unused_word(&words[1]), 2u);
    memkit::write_unused_word(&words[2], std::uintptr_t{42});
    EXPECT_EQ(memkit::read_unused_word(&words[2]), 42u);
    if (asan) {
        for (auto& w : words) EXPECT_TRUE(poisoned(&w)) << &w - words.data();
    }
    memkit::mark_owned(words.data(), sizeof words);
    EXPECT_EQ(words[2], 42u); // contents survive the marks
    EXPECT_EQ(words[3], 4u);
}

TEST(Annotations, PartiallyPoisonedWordKeepsItsAddressablePrefix) {
    alignas(16) std::array<std::uint8_t, 16> bytes{};
    memkit::mark_unused(bytes.data() + 3, bytes.size() - 3); // bytes 0..2 stay addressable
    const auto* word = reinterpret_cast<const std::uint64_t*>(bytes.data());
    (void)memkit::read_unused_word(word);
    if (asan) {
        EXPECT_FALSE(poisoned(bytes.data() + 2));
        EXPECT_TRUE(poisoned(bytes.data() + 3));
    }
    memkit::mark_owned(bytes.data(), bytes.size());
}

// --- what stays addressable: the allocators' own accesses never trip ------------------------

TEST(Annotations, AllocatedBytesAreAddressableAndFreeMemoryIsNot) {
    memkit::pool pool{64, 16, memkit::pool_options{.nodes_per_chunk = 8}};
    void* a = pool.allocate();
    std::memset(a, 1, 64);
    void* b = pool.allocate();
    pool.deallocate(a);
    if (asan) {
        EXPECT_TRUE(addressable(b, 64));
        EXPECT_FALSE(addressable(a, 64));
        EXPECT_FALSE(poisoned(a)); // the link stays readable
        EXPECT_TRUE(poisoned(static_cast<std::byte*>(a) + 16));
    }
    void* c = pool.allocate(); // pops `a` again through the poisoned link
    EXPECT_EQ(c, a);
    std::memset(c, 2, 64);
    pool.deallocate(b);
    pool.deallocate(c);
    pool.shrink_to_fit(); // walks the free list through partly poisoned nodes
    EXPECT_EQ(pool.chunk_count(), 0u);
}

TEST(Annotations, ArenaTailIsPoisonedUntilHandedOut) {
    memkit::arena a{memkit::arena_options{.block_size = 1024}};
    auto* p = static_cast<std::byte*>(a.allocate(40, 8));
    std::memset(p, 3, 40);
    if (asan) {
        EXPECT_TRUE(addressable(p, 40));
        EXPECT_TRUE(poisoned(p + 40));
        EXPECT_TRUE(poisoned(p + 200));
    }
    auto m = a.mark();
    auto* q = static_cast<std::byte*>(a.allocate(100, 8));
    std::memset(q, 4, 100);
    a.rewind(m);
    if (asan) {
        EXPECT_TRUE(poisoned(q));
    }
    a.reset();
    if (asan) {
        EXPECT_TRUE(poisoned(p));
    }
}

TEST(Annotations, CallerBuffersAreLeftAddressable) {
    alignas(16) std::array<std::byte, 2048> buf{};
    {
        memkit::arena a{std::span{buf}};
        (void)a.allocate(64);
    }
    {
        memkit::stack_allocator s{std::span{buf}};
        (void)s.allocate(64);
    }
    {
        memkit::tlsf_heap h{std::span{buf}};
        (void)h.allocate(64);
    }
    if (asan) {
        EXPECT_TRUE(addressable(buf.data(), buf.size()));
    }
    std::memset(buf.data(), 0, buf.size()); // would be reported if any poison were left
}

TEST(Annotations, TlsfSlackIsPoisonedAndResizeMovesTheBoundary) {
    memkit::tlsf_heap h{1 << 16};
    auto* p = static_cast<std::byte*>(h.allocate(20));
    const std::size_t usable = h.usable_size(p);
    ASSERT_GT(usable, 20u);
    std::memset(p, 5, 20);
    if (asan) {
        EXPECT_TRUE(poisoned(p + 20));
    }
    ASSERT_TRUE(h.resize_in_place(p, 20, usable));
    std::memset(p, 6, usable);
    ASSERT_TRUE(h.resize_in_place(p, usable, 8));
    if (asan) {
        EXPECT_TRUE(poisoned(p + 8));
    }
    EXPECT_EQ(p[0], std::byte{6}); // kept
    h.deallocate(p, 8);
    h.validate();
    h.reset();
    h.validate();
}

TEST(Annotations, SlabObjectsAreAddressableForTheRequestedBytes) {
    memkit::slab_allocator s;
    auto* p = static_cast<std::byte*>(s.allocate(40));
    std::memset(p, 7, 40);
    if (asan) {
        EXPECT_TRUE(poisoned(p + 40));
    }
    ASSERT_TRUE(s.resize_in_place(p, 40, 48));
    std::memset(p, 8, 48);
    s.deallocate(p, 48);
    if (asan) {
        EXPECT_FALSE(poisoned(p)); // the free-list link
        EXPECT_TRUE(poisoned(p + 8));
    }
    void* q = s.allocate(40);
    EXPECT_EQ(q, p);
    s.validate();
    s.deallocate(q, 40);
}

// --- death tests: ASan reports bugs inside memkit memory -------------------------------------

TEST_F(AnnotationsDeathTest, ReadOfFreedPoolNode) {
    MEMKIT_SKIP_WITHOUT_ASAN();
    memkit::pool pool{32, 16};
    void* keep = pool.allocate(); // the freed node is not the only one
    void* p = pool.allocate();
    std::memset(p, 1, 32);
    pool.deallocate(p);
    // Past the words the pool keeps in a free node (its link, and its tag in debug builds).
    EXPECT_DEATH(touch(static_cast<std::byte*>(p) + 24), asan_report);
    EXPECT_DEATH(touch(static_cast<std::byte*>(p) + 31), asan_report);
    pool.deallocate(keep);
}

TEST_F(AnnotationsDeathTest, ArenaOverflowIntoTheUnusedTail) {
    MEMKIT_SKIP_WITHOUT_ASAN();
    memkit::arena a{memkit::arena_options{.block_size = 4096}};
    auto* p = static_cast<std::byte*>(a.allocate(64, 16));
    std::memset(p, 1, 64);
    EXPECT_DEATH(touch(p + 64), asan_report);
    EXPECT_DEATH(scribble(p + 100), asan_report);
}

TEST_F(AnnotationsDeathTest, ArenaReadAfterRewind) {
    MEMKIT_SKIP_WITHOUT_ASAN();
    memkit::arena a;
    std::byte* p = nullptr;
    {
        memkit::arena::scope s{a};
        p = static_cast<std::byte*>(a.allocate(128));
        std::memset(p, 1, 128);
    }
    EXPECT_DEATH(touch(p), asan_report);
}

TEST_F(AnnotationsDeathTest, ReadOfFreedTlsfBlock) {
    MEMKIT_SKIP_WITHOUT_ASAN();
    memkit::tlsf_heap h{1 << 16};
    void* keep = h.allocate(256);
    auto* p = static_cast<std::byte*>(h.allocate(256));
    void* after = h.allocate(256); // keeps `p` from merging into the big free block
    std::memset(p, 1, 256);
    h.deallocate(p, 256);
    EXPECT_DEATH(touch(p + 64), asan_report);
    EXPECT_DEATH(touch(p + 255), asan_report);
    EXPECT_DEATH(scribble(p + 200), asan_report);
    h.deallocate(after, 256);
    h.deallocate(keep, 256);
}

TEST_F(AnnotationsDeathTest, TlsfOverflowIntoTheSlack) {
    MEMKIT_SKIP_WITHOUT_ASAN();
    memkit::tlsf_heap h{1 << 16};
    auto* p = static_cast<std::byte*>(h.allocate(20));
    EXPECT_DEATH(scribble(p + 20), asan_report);
    h.deallocate(p, 20);
}

TEST_F(AnnotationsDeathTest, ReadOfFreedStackBlock) {
    MEMKIT_SKIP_WITHOUT_ASAN();
    memkit::stack_allocator s{4096};
    void* keep = s.allocate(32);
    auto* p = static_cast<std::byte*>(s.allocate(64));
    std::memset(p, 1, 64);
    s.deallocate(p, 64);
    EXPECT_DEATH(touch(p), asan_report);
    EXPECT_DEATH(touch(p + 63), asan_report);
    const auto m = s.mark();
    auto* q = static_cast<std::byte*>(s.allocate(16));
    s.unwind(m);
    EXPECT_DEATH(touch(q), asan_report);
    s.deallocate(keep, 32);
}

TEST_F(AnnotationsDeathTest, ReadOfFreedSlabObject) {
    MEMKIT_SKIP_WITHOUT_ASAN();
    memkit::slab_allocator s;
    void* keep = s.allocate(48);
    auto* p = static_cast<std::byte*>(s.allocate(48));
    s.deallocate(p, 48);
    EXPECT_DEATH(touch(p + 8), asan_report); // past the free-list link
    EXPECT_DEATH(touch(p + 47), asan_report);
    s.deallocate(keep, 48);
}

// --- valgrind: a build with -DMEMKIT_VALGRIND=1 run under `valgrind --tool=memcheck` ----------
//
// Counts memcheck's errors around each step: the allocators' own bookkeeping must add none, and
// a read of freed memory must add one. Skipped unless both hold (the default build has no
// valgrind annotations; running the test binary outside valgrind counts nothing).

#if MEMKIT_VALGRIND
namespace {
unsigned valgrind_errors() { return static_cast<unsigned>(VALGRIND_COUNT_ERRORS); }
} // namespace

TEST(AnnotationsValgrind, AllocatorBookkeepingIsSilentAndUseAfterFreeIsReported) {
    if (RUNNING_ON_VALGRIND == 0) GTEST_SKIP() << "not running under valgrind";
    const unsigned start = valgrind_errors();

    memkit::pool pool{64, 16, memkit::pool_options{.nodes_per_chunk = 8}};
    void* a = pool.allocate();
    void* b = pool.allocate();
    std::memset(a, 1, 64);
    std::memset(b, 1, 64);
    pool.deallocate(a);
    pool.deallocate(b);
    void* c = pool.allocate(); // pops through a no-access link
    pool.deallocate(c);
    pool.shrink_to_fit();

    memkit::arena ar{memkit::arena_options{.block_size = 1024}};
    auto* x = static_cast<std::byte*>(ar.allocate(40));
    std::memset(x, 2, 40);
    ar.reset();

    memkit::tlsf_heap h{1 << 16};
    void* t1 = h.allocate(100);
    void* t2 = h.allocate(300);
    h.deallocate(t1, 100);
    h.deallocate(t2, 300);
    h.validate();

    memkit::slab_allocator sl;
    void* s1 = sl.allocate(40);
    sl.deallocate(s1, 40);
    sl.validate();

    memkit::stack_allocator st{4096};
    void* k = st.allocate(64);
    st.deallocate(k, 64);
    EXPECT_EQ(valgrind_errors(), start) << "the allocators tripped on their own annotations";

    memkit::pool p2{64, 16};
    void* keep = p2.allocate();
    void* freed = p2.allocate();
    p2.deallocate(freed);
    (void)touch(static_cast<std::byte*>(freed) + 24); // a deliberate invalid read
    EXPECT_EQ(valgrind_errors(), start + 1) << "memcheck missed a read of a freed pool node";
    (void)touch(x); // and of arena memory freed by reset()
    EXPECT_EQ(valgrind_errors(), start + 2) << "memcheck missed a read of freed arena memory";
    p2.deallocate(keep);
}
#endif
