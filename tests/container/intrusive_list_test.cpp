#include "memkit/container/intrusive_list.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <memory>
#include <random>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/test_support.hpp"

namespace {

using memkit::intrusive_list;
using memkit::intrusive_list_hook;
using memkit::link_mode;
using memkit::member_hook;
using memkit::test::violation_recorder;

struct by_age {};
struct by_priority {};

// An element in up to three lists at once: two tagged base hooks and a member hook.
struct job : intrusive_list_hook<>, intrusive_list_hook<by_age> {
    explicit job(int k = 0, int s = 0) : key(k), serial(s) {}
    int key;
    int serial;
    intrusive_list_hook<by_priority> member;
};

using job_list = intrusive_list<job>;
using age_list = intrusive_list<job, intrusive_list_hook<by_age>>;
using member_list =
    intrusive_list<job, member_hook<job, intrusive_list_hook<by_priority>, &job::member>>;

struct cached : intrusive_list_hook<void, link_mode::auto_unlink> {
    explicit cached(int v) : value(v) {}
    int value;
};
using cache_list = intrusive_list<cached, intrusive_list_hook<void, link_mode::auto_unlink>>;

static_assert(std::bidirectional_iterator<job_list::iterator>);
static_assert(std::bidirectional_iterator<job_list::const_iterator>);
static_assert(std::bidirectional_iterator<job_list::reverse_iterator>);
static_assert(!std::random_access_iterator<job_list::iterator>);
static_assert(std::ranges::bidirectional_range<job_list>);
static_assert(std::ranges::bidirectional_range<const member_list>);
static_assert(std::ranges::common_range<age_list>);
static_assert(std::is_convertible_v<job_list::iterator, job_list::const_iterator>);
static_assert(!std::is_convertible_v<job_list::const_iterator, job_list::iterator>);
static_assert(std::is_same_v<std::ranges::range_reference_t<const job_list>, const job&>);
static_assert(!std::is_copy_constructible_v<job_list>);
static_assert(std::is_nothrow_move_constructible_v<job_list>);
static_assert(std::is_nothrow_move_assignable_v<job_list>);
static_assert(job_list::constant_time_size);
static_assert(!cache_list::constant_time_size);
static_assert(std::is_copy_constructible_v<job>); // hooks do not stop copying the element

template <class List>
std::vector<int> keys(const List& l) {
    std::vector<int> v;
    for (const auto& x : l) v.push_back(x.key);
    return v;
}

std::vector<job> make_jobs(int n) {
    std::vector<job> v;
    v.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) v.emplace_back(i, i);
    return v;
}

// ---- basics -------------------------------------------------------------------------------------

TEST(IntrusiveList, PushPopAndIterateBothWays) {
    auto jobs = make_jobs(5);
    job_list l;
    EXPECT_TRUE(l.empty());
    EXPECT_EQ(l.begin(), l.end());
    l.push_back(jobs[2]);
    l.push_back(jobs[3]);
    l.push_front(jobs[1]);
    l.push_front(jobs[0]);
    EXPECT_EQ(l.size(), 4u);
    EXPECT_EQ(keys(l), (std::vector<int>{0, 1, 2, 3}));
    EXPECT_EQ(&l.front(), &jobs[0]);
    EXPECT_EQ(&l.back(), &jobs[3]);
    std::vector<int> backwards;
    for (auto it = l.rbegin(); it != l.rend(); ++it) backwards.push_back(it->key);
    EXPECT_EQ(backwards, (std::vector<int>{3, 2, 1, 0}));
    l.pop_front();
    l.pop_back();
    EXPECT_EQ(keys(l), (std::vector<int>{1, 2}));
    EXPECT_FALSE(jobs[0].intrusive_list_hook<>::is_linked());
    EXPECT_TRUE(jobs[1].intrusive_list_hook<>::is_linked());
    EXPECT_FALSE(jobs[1].intrusive_list_hook<by_age>::is_linked()); // another hook
}

TEST(IntrusiveList, InsertAndEraseAnywhere) {
    auto jobs = make_jobs(6);
    job_list l;
    for (int i : {0, 2, 4}) l.push_back(jobs[static_cast<std::size_t>(i)]);
    auto it = l.insert(std::next(l.begin()), jobs[1]);
    EXPECT_EQ(&*it, &jobs[1]);
    l.insert(l.end(), jobs[5]);
    l.insert(l.iterator_to(jobs[4]), jobs[3]);
    EXPECT_EQ(keys(l), (std::vector<int>{0, 1, 2, 3, 4, 5}));
    it = l.erase(l.iterator_to(jobs[2]));
    EXPECT_EQ(&*it, &jobs[3]);
    it = l.erase(jobs[5]); // by element, O(1)
    EXPECT_EQ(it, l.end());
    l.remove(jobs[0]);
    EXPECT_EQ(keys(l), (std::vector<int>{1, 3, 4}));
    EXPECT_EQ(l.size(), 3u);
    it = l.erase(std::next(l.begin()), l.end());
    EXPECT_EQ(it, l.end());
    EXPECT_EQ(keys(l), std::vector<int>{1});
    for (int i : {0, 2, 3, 4, 5})
        EXPECT_FALSE(jobs[static_cast<std::size_t>(i)].intrusive_list_hook<>::is_linked());
}

TEST(IntrusiveList, ClearAndDestructorUnlinkWithoutDestroying) {
    auto jobs = make_jobs(4);
    {
        job_list l;
        for (job& j : jobs) l.push_back(j);
        l.clear();
        EXPECT_TRUE(l.empty());
        EXPECT_EQ(l.size(), 0u);
        for (job& j : jobs) EXPECT_FALSE(j.intrusive_list_hook<>::is_linked());
        for (job& j : jobs) l.push_back(j); // reusable after clear
    }
    for (job& j : jobs) EXPECT_FALSE(j.intrusive_list_hook<>::is_linked());
    EXPECT_EQ(jobs[3].key, 3); // untouched
}

TEST(IntrusiveList, ElementsOwnedByAnyoneAndNeverCopied) {
    job on_stack(1);
    auto on_heap = std::make_unique<job>(2);
    job_list l;
    l.push_back(on_stack);
    l.push_back(*on_heap);
    job copy = on_stack; // a copy is not linked
    EXPECT_FALSE(copy.intrusive_list_hook<>::is_linked());
    copy = *on_heap; // assignment keeps each object's own links
    EXPECT_FALSE(copy.intrusive_list_hook<>::is_linked());
    EXPECT_TRUE(on_heap->intrusive_list_hook<>::is_linked());
    EXPECT_EQ(&*l.iterator_to(*on_heap), on_heap.get());
    l.clear();
}

// ---- several lists, member hooks ----------------------------------------------------------------

TEST(IntrusiveList, OneElementInSeveralListsThroughTags) {
    auto jobs = make_jobs(4);
    job_list fifo;
    age_list ages;
    member_list prio;
    for (job& j : jobs) fifo.push_back(j);
    for (job& j : jobs) ages.push_front(j);
    prio.push_back(jobs[2]);
    prio.push_back(jobs[0]);
    EXPECT_EQ(keys(fifo), (std::vector<int>{0, 1, 2, 3}));
    EXPECT_EQ(keys(ages), (std::vector<int>{3, 2, 1, 0}));
    EXPECT_EQ(keys(prio), (std::vector<int>{2, 0}));
    ages.erase(jobs[2]);
    EXPECT_EQ(keys(fifo), (std::vector<int>{0, 1, 2, 3}));
    EXPECT_EQ(keys(prio), (std::vector<int>{2, 0}));
    EXPECT_EQ(keys(ages), (std::vector<int>{3, 1, 0}));
    EXPECT_TRUE(jobs[2].member.is_linked());
    EXPECT_FALSE(jobs[2].intrusive_list_hook<by_age>::is_linked());
}

TEST(IntrusiveList, MemberHookMapsBackToTheElement) {
    auto jobs = make_jobs(3);
    member_list l;
    for (job& j : jobs) l.push_back(j);
    int n = 0;
    for (job& j : l) {
        EXPECT_EQ(&j, &jobs[static_cast<std::size_t>(n)]);
        EXPECT_EQ(j.serial, n);
        ++n;
    }
    EXPECT_EQ(&*l.iterator_to(jobs[1]), &jobs[1]);
    EXPECT_EQ(&*std::prev(l.end()), &jobs[2]);
    l.erase(jobs[1]);
    EXPECT_EQ(keys(l), (std::vector<int>{0, 2}));
}

// A member hook that is not the first member, in a type with a virtual function.
struct widget {
    virtual ~widget() = default;
    virtual int id() const { return 7; }
    char padding[13] = {};
    int value = 0;
    intrusive_list_hook<> hook;
};

TEST(IntrusiveList, MemberHookInAPolymorphicType) {
    std::vector<widget> ws(3);
    for (int i = 0; i < 3; ++i) ws[static_cast<std::size_t>(i)].value = i * 10;
    intrusive_list<widget, member_hook<widget, intrusive_list_hook<>, &widget::hook>> l;
    for (widget& w : ws) l.push_front(w);
    std::vector<int> got;
    for (const widget& w : l) got.push_back(w.value + w.id());
    EXPECT_EQ(got, (std::vector<int>{27, 17, 7}));
    l.clear();
}

// ---- auto-unlink -----------------------------------------------------------------------------

TEST(IntrusiveList, AutoUnlinkRemovesDestroyedElements) {
    cache_list l;
    auto a = std::make_unique<cached>(1);
    auto b = std::make_unique<cached>(2);
    auto c = std::make_unique<cached>(3);
    l.push_back(*a);
    l.push_back(*b);
    l.push_back(*c);
    EXPECT_EQ(l.size(), 3u); // O(n) for auto_unlink lists
    b.reset();
    EXPECT_EQ(l.size(), 2u);
    std::vector<int> got;
    for (const cached& x : l) got.push_back(x.value);
    EXPECT_EQ(got, (std::vector<int>{1, 3}));
    a->unlink();
    EXPECT_FALSE(a->is_linked());
    a->unlink(); // unlinking an unlinked hook does nothing
    EXPECT_EQ(&l.front(), c.get());
    c.reset();
    EXPECT_TRUE(l.empty());
    EXPECT_EQ(l.size(), 0u);
}

TEST(IntrusiveList, AutoUnlinkListDestroyedFirst) {
    cached x(1), y(2);
    {
        cache_list l;
        l.push_back(x);
        l.push_back(y);
    }
    EXPECT_FALSE(x.is_linked());
    EXPECT_FALSE(y.is_linked());
}

// ---- debug checks ----------------------------------------------------------------------------

TEST(IntrusiveList, DoubleInsertIsAReportedViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    auto jobs = make_jobs(2);
    job_list l, other;
    l.push_back(jobs[0]);
    l.push_back(jobs[0]);
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::invalid_argument);
    other.push_front(jobs[0]); // already in another list through the same hook
    EXPECT_EQ(violation_recorder::count(), 2);
    (void)l.insert(l.begin(), jobs[0]);
    EXPECT_EQ(violation_recorder::count(), 3);
    EXPECT_EQ(l.size(), 1u); // every bad insertion was ignored
    EXPECT_TRUE(other.empty());
    l.push_back(jobs[1]);
    EXPECT_EQ(keys(l), (std::vector<int>{0, 1}));
}

TEST(IntrusiveList, DestroyingALinkedSafeHookIsAReportedViolation) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    job a(1), c(3);
    job_list l;
    l.push_back(a);
    {
        job b(2);
        l.push_back(b);
        l.push_back(c);
    } // b dies linked: reported, and unlinked so that the list stays walkable
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(violation_recorder::last().code, memkit::errc::still_in_use);
    EXPECT_EQ(keys(l), (std::vector<int>{1, 3}));
    l.clear();
}

TEST(IntrusiveList, EraseOfUnlinkedAndPopOfEmptyAreReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    job a(1);
    job_list l;
    l.pop_front();
    l.pop_back();
    EXPECT_EQ(violation_recorder::count(), 2);
    EXPECT_EQ(l.erase(a), l.end());
    EXPECT_EQ(violation_recorder::count(), 3);
    EXPECT_EQ(l.erase(l.end()), l.end());
    EXPECT_EQ(violation_recorder::count(), 4);
    EXPECT_TRUE(l.empty());
}

// ---- splice, swap, move ------------------------------------------------------------------------

TEST(IntrusiveList, SpliceWholeListOneElementAndRanges) {
    auto jobs = make_jobs(10);
    job_list a, b;
    for (int i = 0; i < 5; ++i) a.push_back(jobs[static_cast<std::size_t>(i)]);
    for (int i = 5; i < 10; ++i) b.push_back(jobs[static_cast<std::size_t>(i)]);

    a.splice(a.iterator_to(jobs[2]), b, b.iterator_to(jobs[7])); // one element across lists
    EXPECT_EQ(keys(a), (std::vector<int>{0, 1, 7, 2, 3, 4}));
    EXPECT_EQ(keys(b), (std::vector<int>{5, 6, 8, 9}));
    EXPECT_EQ(a.size(), 6u);
    EXPECT_EQ(b.size(), 4u);

    a.splice(a.begin(), a, a.iterator_to(jobs[4])); // within one list
    EXPECT_EQ(keys(a), (std::vector<int>{4, 0, 1, 7, 2, 3}));
    a.splice(a.iterator_to(jobs[0]), a, a.iterator_to(jobs[4])); // already in place
    EXPECT_EQ(keys(a), (std::vector<int>{4, 0, 1, 7, 2, 3}));

    a.splice(a.end(), b, std::next(b.begin()), b.end()); // range across lists: counts it
    EXPECT_EQ(keys(a), (std::vector<int>{4, 0, 1, 7, 2, 3, 6, 8, 9}));
    EXPECT_EQ(keys(b), std::vector<int>{5});
    EXPECT_EQ(a.size(), 9u);
    EXPECT_EQ(b.size(), 1u);

    a.splice(a.begin(), a, a.iterator_to(jobs[2]), a.end()); // range within one list
    EXPECT_EQ(keys(a), (std::vector<int>{2, 3, 6, 8, 9, 4, 0, 1, 7}));
    EXPECT_EQ(a.size(), 9u);

    b.splice(b.begin(), a, a.begin(), a.iterator_to(jobs[8]), 3); // told the length: O(1)
    EXPECT_EQ(keys(b), (std::vector<int>{2, 3, 6, 5}));
    EXPECT_EQ(b.size(), 4u);
    EXPECT_EQ(a.size(), 6u);

    b.splice(b.iterator_to(jobs[5]), a); // the whole list
    EXPECT_EQ(keys(b), (std::vector<int>{2, 3, 6, 8, 9, 4, 0, 1, 7, 5}));
    EXPECT_TRUE(a.empty());
    EXPECT_EQ(a.size(), 0u);
    EXPECT_EQ(b.size(), 10u);
    a.splice(a.end(), b, b.end(), b.end()); // empty range
    EXPECT_TRUE(a.empty());
}

TEST(IntrusiveList, SpliceWithAWrongLengthIsReported) {
    MEMKIT_SKIP_WITHOUT_CHECKS();
    violation_recorder rec;
    auto jobs = make_jobs(3);
    job_list a, b;
    for (job& j : jobs) a.push_back(j);
    b.splice(b.end(), a, a.begin(), a.end(), 2);
    EXPECT_EQ(violation_recorder::count(), 1);
    EXPECT_EQ(a.size(), 3u);
    EXPECT_TRUE(b.empty());
}

TEST(IntrusiveList, SwapAndMoveKeepElementsAndIterators) {
    auto jobs = make_jobs(5);
    job_list a, b;
    for (int i = 0; i < 3; ++i) a.push_back(jobs[static_cast<std::size_t>(i)]);
    b.push_back(jobs[3]);
    auto it = a.iterator_to(jobs[1]);
    swap(a, b);
    EXPECT_EQ(keys(a), std::vector<int>{3});
    EXPECT_EQ(keys(b), (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(&*it, &jobs[1]); // still valid, now into b
    EXPECT_EQ(&*++it, &jobs[2]);
    EXPECT_EQ(++it, b.end());
    job_list empty;
    a.swap(empty);
    EXPECT_TRUE(a.empty());
    EXPECT_EQ(keys(empty), std::vector<int>{3});

    job_list moved(std::move(b));
    EXPECT_TRUE(b.empty()); // NOLINT(bugprone-use-after-move): a moved-from list is empty
    EXPECT_EQ(moved.size(), 3u);
    EXPECT_EQ(keys(moved), (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(&*std::prev(moved.end()), &jobs[2]);
    moved = std::move(empty); // unlinks 0, 1, 2
    EXPECT_FALSE(jobs[0].intrusive_list_hook<>::is_linked());
    EXPECT_EQ(keys(moved), std::vector<int>{3});
    b.push_back(jobs[4]); // a moved-from list is usable
    EXPECT_EQ(b.size(), 1u);
}

// ---- algorithms
// ----------------------------------------------------------------------------------

TEST(IntrusiveList, SortIsStable) {
    std::mt19937_64 rng(0x5047);
    for (int n : {0, 1, 2, 3, 7, 64, 1000, 4099}) {
        std::vector<job> jobs;
        jobs.reserve(static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) jobs.emplace_back(static_cast<int>(rng() % 10), i);
        job_list l;
        for (job& j : jobs) l.push_back(j);
        l.sort([](const job& x, const job& y) { return x.key < y.key; });
        std::vector<std::pair<int, int>> got, want;
        for (const job& j : l) got.emplace_back(j.key, j.serial);
        for (const job& j : jobs) want.emplace_back(j.key, j.serial);
        std::stable_sort(want.begin(), want.end(),
                         [](const auto& x, const auto& y) { return x.first < y.first; });
        ASSERT_EQ(got, want) << "n = " << n;
        ASSERT_EQ(l.size(), static_cast<std::size_t>(n));
        // prev links were rebuilt too
        std::vector<std::pair<int, int>> back;
        for (auto it = l.rbegin(); it != l.rend(); ++it) back.emplace_back(it->key, it->serial);
        std::reverse(back.begin(), back.end());
        ASSERT_EQ(back, want);
        l.clear();
    }
}

bool operator<(const job& a, const job& b) { return a.key < b.key; }

TEST(IntrusiveList, MergeReverseRemoveIf) {
    std::vector<job> jobs;
    for (int k : {1, 3, 3, 5}) jobs.emplace_back(k, static_cast<int>(jobs.size()));
    for (int k : {0, 3, 4, 6}) jobs.emplace_back(k, static_cast<int>(jobs.size()));
    job_list a, b;
    for (std::size_t i = 0; i < 4; ++i) a.push_back(jobs[i]);
    for (std::size_t i = 4; i < 8; ++i) b.push_back(jobs[i]);
    a.merge(b); // std::less<> through operator<
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(a.size(), 8u);
    std::vector<int> serials;
    for (const job& j : a) serials.push_back(j.serial);
    EXPECT_EQ(serials, (std::vector<int>{4, 0, 1, 2, 5, 6, 3, 7})); // a's 3s before b's 3
    a.reverse();
    EXPECT_EQ(keys(a), (std::vector<int>{6, 5, 4, 3, 3, 3, 1, 0}));
    EXPECT_EQ(&*std::prev(a.end()), &jobs[4]);
    EXPECT_EQ(a.remove_if([](const job& j) { return j.key == 3; }), 3u);
    EXPECT_EQ(keys(a), (std::vector<int>{6, 5, 4, 1, 0}));
    EXPECT_EQ(a.size(), 5u);
    EXPECT_FALSE(jobs[1].intrusive_list_hook<>::is_linked());
    a.clear();
}

TEST(IntrusiveList, WorksWithStdAlgorithmsAndRanges) {
    auto jobs = make_jobs(6);
    job_list l;
    for (job& j : jobs) l.push_back(j);
    EXPECT_EQ(std::ranges::distance(l), 6);
    auto it = std::ranges::find_if(l, [](const job& j) { return j.key == 4; });
    EXPECT_EQ(&*it, &jobs[4]);
    EXPECT_EQ(std::ranges::count_if(l, [](const job& j) { return j.key % 2 == 1; }), 3);
    std::vector<int> odd;
    std::ranges::copy_if(keys(l), std::back_inserter(odd), [](int k) { return k % 2 == 1; });
    EXPECT_EQ(odd, (std::vector<int>{1, 3, 5}));
    EXPECT_EQ(std::ranges::next(std::ranges::begin(l), 2)->key, 2);
    EXPECT_EQ(std::ranges::prev(std::ranges::end(std::as_const(l)))->key, 5);
    l.clear();
}

// ---- differential test against std::list<T*>
// ------------------------------------------------------

TEST(IntrusiveList, DifferentialAgainstStdListOfPointers) {
    constexpr int pool_size = 300;
    std::vector<job> pool;
    pool.reserve(pool_size);
    for (int i = 0; i < pool_size; ++i) pool.emplace_back(i % 17, i);
    job_list lists[2];
    std::list<job*> models[2];
    std::vector<int> where(pool_size, -1); // which list each element is in

    std::mt19937_64 rng(0x1157);
    auto model_pos = [&](int li, std::size_t i) {
        auto it = models[li].begin();
        std::advance(it, static_cast<std::ptrdiff_t>(i));
        return it;
    };
    auto list_pos = [&](int li, std::size_t i) {
        auto it = lists[li].begin();
        std::advance(it, static_cast<std::ptrdiff_t>(i));
        return it;
    };
    auto by_key = [](const job& x, const job& y) { return x.key < y.key; };
    auto check = [&] {
        for (int li = 0; li < 2; ++li) {
            ASSERT_EQ(lists[li].size(), models[li].size());
            ASSERT_TRUE(std::ranges::equal(lists[li], models[li],
                                           [](const job& a, const job* b) { return &a == b; }));
            ASSERT_TRUE(std::equal(lists[li].rbegin(), lists[li].rend(), models[li].rbegin(),
                                   models[li].rend(),
                                   [](const job& a, const job* b) { return &a == b; }));
        }
    };

    for (int step = 0; step < 100000; ++step) {
        const std::uint64_t r = rng();
        const int li = static_cast<int>((r >> 4) & 1);
        auto& l = lists[li];
        auto& m = models[li];
        const std::size_t e = (r >> 8) % pool_size;
        job& x = pool[e];
        switch (r % 12) {
        case 0:
        case 1: // push at either end, or insert in the middle, an element that is free
            if (where[e] == -1) {
                const std::size_t at = m.empty() ? 0 : (r >> 20) % (m.size() + 1);
                if (r % 2 == 0 && at == 0) {
                    l.push_front(x);
                    m.push_front(&x);
                } else if (at == m.size()) {
                    l.push_back(x);
                    m.push_back(&x);
                } else {
                    auto it = l.insert(list_pos(li, at), x);
                    ASSERT_EQ(&*it, &x);
                    m.insert(model_pos(li, at), &x);
                }
                where[e] = li;
            }
            break;
        case 2:
        case 3: // erase by element
            if (where[e] != -1) {
                const int owner = where[e];
                auto next = lists[owner].erase(x);
                auto mit = std::find(models[owner].begin(), models[owner].end(), &x);
                auto mnext = models[owner].erase(mit);
                ASSERT_EQ(next == lists[owner].end(), mnext == models[owner].end());
                if (mnext != models[owner].end()) {
                    ASSERT_EQ(&*next, *mnext);
                }
                where[e] = -1;
            }
            break;
        case 4: // pop at either end
            if (!m.empty()) {
                job* gone = (r >> 30) % 2 == 0 ? m.front() : m.back();
                if (gone == m.front()) {
                    l.pop_front();
                    m.pop_front();
                } else {
                    l.pop_back();
                    m.pop_back();
                }
                where[static_cast<std::size_t>(gone->serial)] = -1;
            }
            break;
        case 5: // move one element (possibly to the other list) through splice
            if (where[e] != -1) {
                const int from = where[e];
                const std::size_t at = m.empty() ? 0 : (r >> 20) % (m.size() + 1);
                auto mpos = model_pos(li, at);
                auto lpos = list_pos(li, at);
                auto src = std::find(models[from].begin(), models[from].end(), &x);
                l.splice(lpos, lists[from], lists[from].iterator_to(x));
                m.splice(mpos, models[from], src);
                where[e] = li;
            }
            break;
        case 6: // splice a range from the other list
            if (!models[1 - li].empty()) {
                auto& om = models[1 - li];
                const std::size_t f = (r >> 20) % om.size();
                const std::size_t n = (r >> 40) % (om.size() - f + 1);
                const std::size_t at = m.empty() ? 0 : (r >> 50) % (m.size() + 1);
                auto mf = model_pos(1 - li, f), ml = model_pos(1 - li, f + n);
                for (auto it = mf; it != ml; ++it)
                    where[static_cast<std::size_t>((*it)->serial)] = li;
                if ((r >> 60) % 2 == 0)
                    l.splice(list_pos(li, at), lists[1 - li], list_pos(1 - li, f),
                             list_pos(1 - li, f + n));
                else
                    l.splice(list_pos(li, at), lists[1 - li], list_pos(1 - li, f),
                             list_pos(1 - li, f + n), n);
                m.splice(model_pos(li, at), om, mf, ml);
            }
            break;
        case 7: // sort (stable, like std::list::sort) or reverse
            if ((r >> 20) % 8 == 0) {
                l.sort(by_key);
                m.sort([](const job* a, const job* b) { return a->key < b->key; });
            } else if ((r >> 20) % 8 == 1) {
                l.reverse();
                m.reverse();
            }
            break;
        case 8: // iterator_to
            if (where[e] != -1) {
                auto it = lists[where[e]].iterator_to(x);
                ASSERT_EQ(&*it, &x);
                auto mit = std::find(models[where[e]].begin(), models[where[e]].end(), &x);
                ++it;
                ++mit;
                ASSERT_EQ(it == lists[where[e]].end(), mit == models[where[e]].end());
            }
            break;
        case 9: // whole-list splice, swap, or (rarely) clear
            if ((r >> 20) % 16 == 0) {
                l.splice(l.begin(), lists[1 - li]);
                m.splice(m.begin(), models[1 - li]);
                for (job* p : m) where[static_cast<std::size_t>(p->serial)] = li;
            } else if ((r >> 20) % 16 == 1) {
                lists[0].swap(lists[1]);
                models[0].swap(models[1]);
                for (int k = 0; k < 2; ++k)
                    for (job* p : models[k]) where[static_cast<std::size_t>(p->serial)] = k;
            } else if ((r >> 20) % 64 == 2) {
                for (job* p : m) where[static_cast<std::size_t>(p->serial)] = -1;
                l.clear();
                m.clear();
            }
            break;
        case 10: // remove_if
            if ((r >> 20) % 16 == 0) {
                const int k = static_cast<int>((r >> 30) % 17);
                const auto n = l.remove_if([k](const job& j) { return j.key == k; });
                std::size_t mn = 0;
                for (job* p : m)
                    if (p->key == k) {
                        where[static_cast<std::size_t>(p->serial)] = -1;
                        ++mn;
                    }
                m.remove_if([k](const job* p) { return p->key == k; });
                ASSERT_EQ(n, mn);
            }
            break;
        default: // remove by identity
            if (where[e] == li) {
                l.remove(x);
                m.remove(&x);
                where[e] = -1;
            }
            break;
        }
        ASSERT_EQ(x.intrusive_list_hook<>::is_linked(), where[e] != -1);
        if (step % 64 == 0) check();
    }
    check();
    lists[0].clear();
    lists[1].clear();
}

} // namespace
