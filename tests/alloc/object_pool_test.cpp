#include "memkit/alloc/object_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "memkit/core/memory_utils.hpp"
#include "support/test_support.hpp"

namespace {

using memkit::object_pool;
using memkit::object_pool_options;
using memkit::test::counting_parent;
using memkit::test::violation_recorder;

// Counts constructions and destructions, and can be told to throw from its constructor.
struct tracked {
    static inline int live = 0;
    static inline int constructed = 0;
    static inline int destroyed = 0;
    static void zero() { live = constructed = destroyed = 0; }

    int value;
    std::string name;

    tracked() : tracked(0) {}
    explicit tracked(int v, std::string n = "x", bool fail = false) : value(v), name(std::move(n)) {
        if (fail) throw std::runtime_error("constructor failed");
        ++live;
        ++constructed;
    }
    tracked(const tracked&) = delete;
    tracked& operator=(const tracked&) = delete;
    tracked(tracked&&) = delete;
    tracked& operator=(tracked&&) = delete;
    ~tracked() {
        --live;
        ++destroyed;
    }
};

// Reusable: reset() brings it back to a default state; validate() rejects broken objects.
struct connection {
    static inline int live = 0;
    static inline int resets = 0;
    static void zero() { live = resets = 0; }

    std::vector<int> buffer;
    bool broken = false;
    int generation = 0;

    connection() { ++live; }
    explicit connection(int g) : generation(g) { ++live; }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    connection(connection&&) = delete;
    connection& operator=(connection&&) = delete;
    ~connection() { --live; }

    void reset() {
        buffer.clear();
        ++resets;
    }
    [[nodiscard]] bool validate() const { return !broken; }
};

// Reusable, without validate().
struct counter {
    int n = 0;
    void reset() { n = 0; }
};

struct aggregate {
    int a;
    double b;
};

struct alignas(64) wide {
    std::byte bytes[100];
};

static_assert(!object_pool<tracked>::has_reset);
static_assert(!object_pool<tracked>::has_validate);
static_assert(object_pool<connection>::has_reset);
static_assert(object_pool<connection>::has_validate);
static_assert(object_pool<counter>::has_reset);
static_assert(!object_pool<counter>::has_validate);
static_assert(!std::is_copy_constructible_v<object_pool<int>>);
static_assert(!std::is_move_constructible_v<object_pool<int>>);

// NOLINTNEXTLINE(readability-identifier-naming): a GoogleTest suite name
class ObjectPool : public ::testing::Test {
protected:
    void SetUp() override {
        tracked::zero();
        connection::zero();
    }
    void TearDown() override {
        EXPECT_EQ(tracked::live, 0) << "a tracked object leaked or was destroyed twice";
        EXPECT_EQ(connection::live, 0) << "a connection leaked or was destroyed twice";
    }
};

TEST_F(ObjectPool, AcquireConstructsAndReleaseDestroys) {
    object_pool<tracked> pool;
    tracked* a = pool.acquire(1, "one");
    tracked* b = pool.acquire(2);
    EXPECT_EQ(a->value, 1);
    EXPECT_EQ(a->name, "one");
    EXPECT_EQ(b->value, 2);
    EXPECT_EQ(tracked::live, 2);
    EXPECT_EQ(pool.size(), 2u);
    EXPECT_TRUE(pool.owns(a));
    pool.release(a);
    EXPECT_EQ(tracked::live, 1);
    EXPECT_EQ(tracked::destroyed, 1);
    EXPECT_EQ(pool.size(), 1u);
    EXPECT_EQ(pool.retained_count(), 0u);
    tracked* c = pool.acquire(3);
    EXPECT_EQ(c, a) << "the freed node is reused first";
    pool.release(b);
    pool.release(c);
    pool.release(nullptr); // ignored
    EXPECT_EQ(tracked::constructed, 3);
    EXPECT_EQ(tracked::destroyed, 3);
    EXPECT_EQ(pool.size(), 0u);
}

TEST_F(ObjectPool, ManyObjectsDoNotOverlapAndKeepTheirValues) {
    object_pool<tracked> pool{object_pool_options{.objects_per_chunk = 16}};
    std::vector<tracked*> v;
    for (int i = 0; i < 1000; ++i) v.push_back(pool.acquire(i, std::to_string(i)));
    for (std::size_t i = 0; i < v.size(); i += 3) pool.release(std::exchange(v[i], nullptr));
    for (int i = 0; i < 200; ++i) v.push_back(pool.acquire(5000 + i, "again"));
    std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
    for (tracked* t : v) {
        if (t == nullptr) continue;
        ranges.emplace_back(reinterpret_cast<std::uintptr_t>(t), sizeof(tracked));
        EXPECT_TRUE(memkit::is_aligned(t, alignof(tracked)));
        if (t->value < 5000) EXPECT_EQ(t->name, std::to_string(t->value));
        else EXPECT_EQ(t->name, "again");
    }
    EXPECT_TRUE(memkit::test::no_overlap(ranges));
    EXPECT_EQ(pool.size(), ranges.size());
    for (tracked* t : v) pool.release(t);
}

TEST_F(ObjectPool, AggregatesAndOverAlignedTypes) {
    object_pool<aggregate> aggs;
    aggregate* a = aggs.acquire(7, 2.5);
    EXPECT_EQ(a->a, 7);
    EXPECT_EQ(a->b, 2.5);
    aggs.release(a);

    object_pool<wide> wides{object_pool_options{.objects_per_chunk = 3}};
    std::vector<wide*> v;
    for (int i = 0; i < 10; ++i) {
        v.push_back(wides.acquire());
        EXPECT_TRUE(memkit::is_aligned(v.back(), 64));
        memkit::fill_pattern(v.back()->bytes, sizeof(wide::bytes), static_cast<std::uint8_t>(i));
    }
    for (int i = 0; i < 10; ++i)
        EXPECT_EQ(memkit::verify_pattern(v[static_cast<std::size_t>(i)]->bytes, sizeof(wide::bytes),
                                         static_cast<std::uint8_t>(i)),
                  nullptr);
    for (wide* w : v) wides.release(w);
}

TEST_F(ObjectPool, AThrowingConstructorLeaksNothing) {
    counting_parent::counters counters;
    {
        object_pool<tracked, counting_parent> pool{{}, counting_parent{&counters}};
        tracked* a = pool.acquire(1);
        const auto before = pool.stats();
        EXPECT_THROW((void)pool.acquire(2, "boom", true), std::runtime_error);
        EXPECT_EQ(tracked::live, 1);
        EXPECT_EQ(pool.size(), 1u);
        EXPECT_EQ(pool.stats().bytes_in_use, before.bytes_in_use);
        tracked* b = pool.acquire(3);
        EXPECT_EQ(b->value, 3);
        EXPECT_EQ(pool.size(), 2u);
        EXPECT_THROW((void)pool.make_unique(4, "boom", true), std::runtime_error);
        EXPECT_EQ(pool.size(), 2u);
        pool.release(a);
        pool.release(b);
        EXPECT_EQ(pool.stats().bytes_in_use, 0u);
    }
    EXPECT_EQ(counters.live_bytes, 0u);
    EXPECT_EQ(counters.allocations, counters.deallocations);
}

TEST_F(ObjectPool, MakeUniqueReleasesThroughTheDeleter) {
    object_pool<tracked> pool;
    {
        auto p = pool.make_unique(5, "five");
        static_assert(std::is_same_v<decltype(p), object_pool<tracked>::unique_ptr>);
        EXPECT_EQ(p->value, 5);
        EXPECT_EQ(p.get_deleter().pool(), &pool);
        EXPECT_EQ(pool.size(), 1u);
        auto q = pool.make_unique(6);
        q.reset();
        EXPECT_EQ(pool.size(), 1u);
        EXPECT_EQ(tracked::live, 1);
        std::vector<object_pool<tracked>::unique_ptr> many;
        for (int i = 0; i < 50; ++i) many.push_back(pool.make_unique(i));
        EXPECT_EQ(pool.size(), 51u);
        tracked* raw = p.release();
        pool.release(raw);
        EXPECT_EQ(pool.size(), 50u);
    }
    EXPECT_EQ(pool.size(), 0u);
    EXPECT_EQ(tracked::live, 0);
    EXPECT_EQ(tracked::constructed, 52);
    EXPECT_EQ(pool.stats().bytes_in_use, 0u);
}

TEST_F(ObjectPool, ResetObjectsAreRetainedAndReused) {
    object_pool<connection> pool;
    EXPECT_TRUE(pool.reuses_objects());
    connection* c = pool.acquire(1);
    c->buffer.assign(100, 7);
    pool.release(c);
    EXPECT_EQ(connection::resets, 1);
    EXPECT_EQ(connection::live, 1) << "kept constructed, not destroyed";
    EXPECT_EQ(pool.retained_count(), 1u);
    EXPECT_EQ(pool.size(), 0u);

    connection* d = pool.acquire();
    EXPECT_EQ(d, c) << "acquire() hands the retained object back";
    EXPECT_TRUE(d->buffer.empty()) << "after reset()";
    EXPECT_EQ(d->generation, 1) << "not reconstructed";
    EXPECT_EQ(pool.retained_count(), 0u);
    EXPECT_EQ(connection::live, 1);

    connection* e = pool.acquire(); // none retained: constructs
    EXPECT_NE(e, d);
    EXPECT_EQ(connection::live, 2);
    pool.release(e);
    connection* f = pool.acquire(9); // arguments: always constructs
    EXPECT_NE(f, e);
    EXPECT_EQ(f->generation, 9);
    EXPECT_EQ(pool.retained_count(), 1u);
    EXPECT_EQ(connection::live, 3);
    EXPECT_EQ(pool.stats().bytes_in_use, 3 * pool.pool().node_size())
        << "retained objects keep their nodes";
    pool.release(d);
    pool.release(f);
    EXPECT_EQ(pool.retained_count(), 3u);
    EXPECT_EQ(connection::live, 3);
}

TEST_F(ObjectPool, InvalidObjectsAreDestroyedAndCounted) {
    object_pool<connection> pool;
    connection* a = pool.acquire();
    connection* b = pool.acquire();
    a->broken = true;
    const int resets = connection::resets;
    pool.release(a);
    EXPECT_EQ(pool.rejected_count(), 1u);
    EXPECT_EQ(pool.retained_count(), 0u);
    EXPECT_EQ(connection::live, 1);
    EXPECT_EQ(connection::resets, resets) << "a rejected object is not reset";
    pool.release(b);
    EXPECT_EQ(pool.rejected_count(), 1u);
    EXPECT_EQ(pool.retained_count(), 1u);
    connection* c = pool.acquire();
    EXPECT_EQ(c, b);
    EXPECT_FALSE(c->broken);
    connection* d = pool.acquire();
    EXPECT_EQ(d, a) << "the rejected object's node is free again";
    EXPECT_FALSE(d->broken) << "freshly constructed";
    pool.release(c);
    pool.release(d);
}

TEST_F(ObjectPool, ReuseCanBeTurnedOff) {
    object_pool<connection> pool{object_pool_options{.reuse_objects = false}};
    EXPECT_FALSE(pool.reuses_objects());
    connection* a = pool.acquire();
    pool.release(a);
    EXPECT_EQ(connection::live, 0);
    EXPECT_EQ(connection::resets, 0);
    EXPECT_EQ(pool.retained_count(), 0u);
    EXPECT_EQ(pool.pool().node_size(), memkit::align_up(sizeof(connection), alignof(void*)))
        << "no link word without reuse";
}

TEST_F(ObjectPool, TypesWithoutValidateAreAlwaysRetained) {
    object_pool<counter> pool;
    counter* c = pool.acquire();
    c->n = 42;
    pool.release(c);
    EXPECT_EQ(pool.retained_count(), 1u);
    counter* d = pool.acquire();
    EXPECT_EQ(d, c);
    EXPECT_EQ(d->n, 0);
    pool.release(d);
    EXPECT_EQ(pool.rejected_count(), 0u);
}

TEST_F(ObjectPool, DestructorDestroysRetainedObjects) {
    counting_parent::counters counters;
    {
        object_pool<connection, counting_parent> pool{{}, counting_parent{&counters}};
        std::vector<connection*> v;
        for (int i = 0; i < 100; ++i) {
            v.push_back(pool.acquire(i));
            v.back()->buffer.resize(10); // heap memory: a skipped destructor would leak
        }
        for (connection* c : v) pool.release(c);
        EXPECT_EQ(pool.retained_count(), 100u);
        EXPECT_EQ(connection::live, 100);
    }
    EXPECT_EQ(connection::live, 0);
    EXPECT_EQ(counters.live_bytes, 0u);
}

TEST_F(ObjectPool, ClearRetainedAndShrinkToFit) {
    counting_parent::counters counters;
    object_pool<connection, counting_parent> pool{object_pool_options{.objects_per_chunk = 8},
                                                  counting_parent{&counters}};
    std::vector<connection*> v;
    for (int i = 0; i < 40; ++i) v.push_back(pool.acquire());
    for (std::size_t i = 0; i < 32; ++i) pool.release(v[i]);
    EXPECT_EQ(pool.retained_count(), 32u);
    EXPECT_EQ(pool.pool().chunk_count(), 5u);
    pool.clear_retained();
    EXPECT_EQ(pool.retained_count(), 0u);
    EXPECT_EQ(connection::live, 8);
    EXPECT_EQ(pool.stats().bytes_in_use, 8 * pool.pool().node_size());
    for (std::size_t i = 32; i < 36; ++i) pool.release(v[i]);
    EXPECT_EQ(pool.retained_count(), 4u);
    pool.shrink_to_fit();
    EXPECT_EQ(pool.retained_count(), 0u);
    EXPECT_EQ(pool.pool().chunk_count(), 1u);
    EXPECT_EQ(counters.deallocations, 4u);
    for (std::size_t i = 36; i < 40; ++i) pool.release(v[i]);
}

TEST_F(ObjectPool, ReserveAndStats) {
    counting_parent::counters counters;
    object_pool<tracked, counting_parent> pool{{}, counting_parent{&counters}};
    pool.reserve(500);
    EXPECT_EQ(counters.allocations, 1u);
    EXPECT_GE(pool.pool().free_count(), 500u);
    std::vector<tracked*> v;
    for (int i = 0; i < 500; ++i) v.push_back(pool.acquire(i));
    EXPECT_EQ(counters.allocations, 1u);
    const auto s = pool.stats();
    EXPECT_EQ(s.bytes_in_use, 500 * pool.pool().node_size());
    EXPECT_EQ(s.allocations, 500u);
    EXPECT_EQ(s.capacity, counters.live_bytes);
    for (tracked* t : v) pool.release(t);
    EXPECT_EQ(pool.stats().deallocations, 500u);
    EXPECT_EQ(pool.stats().peak_bytes, 500 * pool.pool().node_size());
}

TEST_F(ObjectPool, MaxObjectsIsEnforced) {
    object_pool<tracked> pool{object_pool_options{.max_objects = 3}};
    std::vector<tracked*> v;
    for (int i = 0; i < 3; ++i) v.push_back(pool.acquire(i));
    try {
        (void)pool.acquire(9);
        FAIL() << "no exception";
    } catch (const memkit::out_of_memory& e) {
        EXPECT_EQ(e.requested(), pool.pool().node_size());
        EXPECT_EQ(e.capacity(), 3 * pool.pool().node_size());
    }
    EXPECT_THROW((void)pool.make_unique(9), memkit::out_of_memory);
    EXPECT_EQ(tracked::live, 3);
    pool.release(v.back());
    v.back() = pool.acquire(10);
    for (tracked* t : v) pool.release(t);
}

TEST_F(ObjectPool, ACappedPoolRecyclesRetainedObjectsForNewOnes) {
    object_pool<connection> pool{object_pool_options{.max_objects = 2}};
    connection* a = pool.acquire();
    connection* b = pool.acquire();
    pool.release(a);
    EXPECT_EQ(pool.retained_count(), 1u);
    connection* c = pool.acquire(5); // no free node: the retained object makes room
    EXPECT_EQ(c, a);
    EXPECT_EQ(c->generation, 5);
    EXPECT_EQ(pool.retained_count(), 0u);
    EXPECT_EQ(connection::live, 2);
    EXPECT_THROW((void)pool.acquire(6), memkit::out_of_memory);
    pool.release(b);
    pool.release(c);
}

TEST_F(ObjectPool, ReleasingAForeignPointerIsReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    object_pool<tracked> pool;
    object_pool<tracked> other;
    tracked* mine = pool.acquire(1);
    tracked* theirs = other.acquire(2);
    pool.release(theirs);
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(rec.last().pointer, theirs);
    EXPECT_STREQ(rec.last().allocator, "memkit::object_pool");
    EXPECT_EQ(tracked::live, 2) << "nothing destroyed";
    tracked local{3};
    pool.release(&local);
    EXPECT_EQ(rec.count(), 2);
    EXPECT_EQ(rec.last().code, memkit::errc::not_owned);
    EXPECT_EQ(pool.size(), 1u);
    pool.release(mine);
    other.release(theirs);
    EXPECT_EQ(rec.count(), 2);
}

TEST_F(ObjectPool, ReleasingTwiceIsReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    {
        object_pool<tracked> pool; // objects are destroyed on release
        tracked* a = pool.acquire(1);
        tracked* b = pool.acquire(2);
        pool.release(a);
        pool.release(a);
        EXPECT_EQ(rec.count(), 1);
        EXPECT_EQ(rec.last().code, memkit::errc::double_free);
        EXPECT_EQ(tracked::destroyed, 1);
        pool.release(b);
        EXPECT_EQ(pool.size(), 0u);
    }
    {
        object_pool<connection> pool; // objects are retained on release
        connection* a = pool.acquire();
        connection* b = pool.acquire();
        pool.release(a);
        pool.release(a);
        EXPECT_EQ(rec.count(), 2);
        EXPECT_EQ(rec.last().code, memkit::errc::double_free);
        EXPECT_EQ(pool.retained_count(), 1u);
        b->broken = true;
        pool.release(b); // rejected: destroyed
        pool.release(b);
        EXPECT_EQ(rec.count(), 3);
        EXPECT_EQ(rec.last().code, memkit::errc::double_free);
        EXPECT_EQ(pool.size(), 0u);
        connection* c = pool.acquire();
        EXPECT_EQ(c, a);
        pool.release(c);
        EXPECT_EQ(rec.count(), 3) << "a reacquired object may be released again";
    }
    {
        object_pool<counter> pool; // small reusable objects: the link is the node's 2nd word
        counter* a = pool.acquire();
        pool.release(a);
        pool.release(a);
        EXPECT_EQ(rec.count(), 4);
        EXPECT_EQ(rec.last().code, memkit::errc::double_free);
    }
}

TEST_F(ObjectPool, DestroyingWithLiveObjectsIsReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    {
        object_pool<int> pool;
        int* x = pool.acquire(5);
        EXPECT_EQ(*x, 5);
    }
    EXPECT_EQ(rec.count(), 1);
    EXPECT_EQ(rec.last().code, memkit::errc::still_in_use);
    EXPECT_STREQ(rec.last().allocator, "memkit::object_pool");
}

} // namespace
