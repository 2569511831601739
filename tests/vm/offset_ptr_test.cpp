// Tests of memkit::offset_ptr (include/memkit/vm/offset_ptr.hpp): null, copy semantics
// (offsets recomputed), arithmetic, comparisons, conversions, iterator and pointer_traits
// conformance, standard and memkit containers of offset_ptrs, and a linked structure read
// through two mappings of one shared segment at different addresses.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <memory_resource>
#include <numeric>
#include <random>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "memkit/alloc/arena.hpp"
#include "memkit/container/small_vector.hpp"
#include "memkit/pmr/resource.hpp"
#include "memkit/vm/offset_ptr.hpp"
#include "memkit/vm/shared_memory.hpp"

namespace {

using memkit::offset_ptr;

// --- compile-time properties ---------------------------------------------------------------

static_assert(sizeof(offset_ptr<int>) == sizeof(void*));
static_assert(std::contiguous_iterator<offset_ptr<int>>);
static_assert(std::contiguous_iterator<offset_ptr<const int>>);
static_assert(std::random_access_iterator<offset_ptr<double>>);
static_assert(std::is_same_v<std::iter_reference_t<offset_ptr<int>>, int&>);
static_assert(std::is_same_v<std::iter_value_t<offset_ptr<const int>>, int>);
static_assert(std::totally_ordered<offset_ptr<int>>);
static_assert(std::sized_sentinel_for<offset_ptr<int>, offset_ptr<int>>);
// Copies must recompute the offset: never trivially copyable.
static_assert(!std::is_trivially_copyable_v<offset_ptr<int>>);
static_assert(std::is_nothrow_copy_constructible_v<offset_ptr<int>>);
static_assert(std::is_nothrow_copy_assignable_v<offset_ptr<int>>);
// pointer_traits: rebind, pointer_to, element_type.
static_assert(std::is_same_v<std::pointer_traits<offset_ptr<int>>::rebind<char>, offset_ptr<char>>);
static_assert(std::is_same_v<std::pointer_traits<offset_ptr<int>>::element_type, int>);
static_assert(
    std::is_same_v<std::pointer_traits<offset_ptr<int>>::difference_type, std::ptrdiff_t>);
// Conversions follow the raw pointers': derived -> base, T -> const T, T -> void implicitly;
// base -> derived and void -> T only explicitly; nothing from const to non-const.
struct base_t {
    int b = 1;
};
struct derived_t : base_t {
    int d = 2;
};
static_assert(std::is_convertible_v<offset_ptr<derived_t>, offset_ptr<base_t>>);
static_assert(std::is_convertible_v<offset_ptr<int>, offset_ptr<const int>>);
static_assert(std::is_convertible_v<offset_ptr<int>, offset_ptr<void>>);
static_assert(!std::is_convertible_v<offset_ptr<base_t>, offset_ptr<derived_t>>);
static_assert(std::is_constructible_v<offset_ptr<derived_t>, offset_ptr<base_t>>);
static_assert(std::is_constructible_v<offset_ptr<int>, offset_ptr<void>>);
static_assert(!std::is_constructible_v<offset_ptr<int>, offset_ptr<const int>>);
static_assert(std::is_convertible_v<int*, offset_ptr<int>>);
static_assert(std::is_convertible_v<std::nullptr_t, offset_ptr<int>>);
// void pointers hold addresses only.
template <class P>
concept has_arithmetic = requires(P p) {
    ++p;
    p + 1;
};
static_assert(!has_arithmetic<offset_ptr<void>>);
static_assert(has_arithmetic<offset_ptr<int>>);

// constexpr null construction and tests.
constexpr offset_ptr<int> constexpr_null{};
static_assert(!constexpr_null && constexpr_null.is_null() && constexpr_null.offset() == 1);
constexpr offset_ptr<int> constexpr_nullptr{nullptr};
static_assert(constexpr_nullptr.is_null());

// --- basic behaviour -----------------------------------------------------------------------

TEST(OffsetPtr, NullIsOffsetOneAndComparesAsNull) {
    offset_ptr<int> p;
    EXPECT_EQ(p.get(), nullptr);
    EXPECT_FALSE(p);
    EXPECT_TRUE(p == nullptr);
    EXPECT_EQ(p.offset(), 1);
    offset_ptr<int> q = nullptr;
    EXPECT_EQ(p, q);
    int x = 0;
    q = &x;
    EXPECT_TRUE(q);
    EXPECT_NE(p, q);
    EXPECT_LT(p, q); // null orders first, as nullptr does
    q = nullptr;
    EXPECT_TRUE(q.is_null());
    offset_ptr<int> r(static_cast<int*>(nullptr));
    EXPECT_TRUE(r.is_null());
}

TEST(OffsetPtr, StoresTheDistanceFromItself) {
    std::array<int, 8> a{};
    offset_ptr<int> p(&a[3]);
    EXPECT_EQ(p.get(), &a[3]);
    EXPECT_EQ(p.offset(),
              reinterpret_cast<std::intptr_t>(&a[3]) - reinterpret_cast<std::intptr_t>(&p));
    *p = 42;
    EXPECT_EQ(a[3], 42);
    EXPECT_EQ(p[1], 0);
    p[1] = 7;
    EXPECT_EQ(a[4], 7);
}

TEST(OffsetPtr, CopyRecomputesTheOffsetForTheCopysAddress) {
    int target = 5;
    struct holder {
        char pad[40];
        offset_ptr<int> p;
    };
    holder h1{};
    h1.p = &target;
    std::vector<holder> many(10);
    for (auto& h : many) h.p = h1.p; // copy assignment
    for (auto& h : many) {
        EXPECT_EQ(h.p.get(), &target);
        EXPECT_NE(h.p.offset(), h1.p.offset());
    }
    offset_ptr<int> copy(h1.p); // copy construction
    EXPECT_EQ(copy.get(), &target);
    // What memcpy would do instead: the same offset from another address points elsewhere.
    offset_ptr<int> raw_copy;
    std::memcpy(static_cast<void*>(&raw_copy), &h1.p, sizeof raw_copy);
    EXPECT_NE(raw_copy.get(), &target);
    // Self-assignment keeps the target.
    offset_ptr<int>& self = copy;
    copy = self;
    EXPECT_EQ(copy.get(), &target);
}

TEST(OffsetPtr, ArithmeticAndComparisonsFollowRawPointers) {
    std::array<long, 16> a{};
    std::iota(a.begin(), a.end(), 0L);
    offset_ptr<long> p(a.data());
    offset_ptr<long> e(a.data() + a.size());
    EXPECT_EQ(e - p, 16);
    EXPECT_EQ(*(p + 5), 5);
    EXPECT_EQ(*(5 + p), 5);
    EXPECT_EQ(*(e - 1), 15);
    offset_ptr<long> q = p;
    EXPECT_EQ(*++q, 1);
    EXPECT_EQ(*q++, 1);
    EXPECT_EQ(*q, 2);
    EXPECT_EQ(*--q, 1);
    EXPECT_EQ(*q--, 1);
    EXPECT_EQ(q, p);
    q += 10;
    EXPECT_EQ(*q, 10);
    q -= 3;
    EXPECT_EQ(*q, 7);
    EXPECT_LT(p, q);
    EXPECT_GT(e, q);
    EXPECT_LE(p, p);
    EXPECT_EQ(p <=> q, std::strong_ordering::less);
    // Mixed comparisons with raw pointers.
    EXPECT_TRUE(q == &a[7]);
    EXPECT_TRUE(q != &a[8]);
    EXPECT_TRUE(q < &a[8]);
    long count = 0;
    for (offset_ptr<long> it = p; it != e; ++it) count += *it;
    EXPECT_EQ(count, 120);
}

TEST(OffsetPtr, ConversionsAndCasts) {
    derived_t d;
    offset_ptr<derived_t> pd(&d);
    offset_ptr<base_t> pb = pd;
    EXPECT_EQ(pb.get(), static_cast<base_t*>(&d));
    EXPECT_EQ(pb->b, 1);
    offset_ptr<derived_t> back(pb); // explicit: base -> derived
    EXPECT_EQ(back.get(), &d);
    EXPECT_EQ(memkit::static_pointer_cast<derived_t>(pb)->d, 2);
    offset_ptr<void> pv = pd;
    EXPECT_EQ(pv.get(), static_cast<void*>(&d));
    offset_ptr<const derived_t> pc = pd;
    EXPECT_EQ(memkit::const_pointer_cast<derived_t>(pc).get(), &d);
    EXPECT_EQ(memkit::reinterpret_pointer_cast<unsigned char>(pv).get(),
              reinterpret_cast<unsigned char*>(&d));
    offset_ptr<derived_t> null_d;
    offset_ptr<base_t> null_b = null_d;
    EXPECT_TRUE(null_b.is_null());
    EXPECT_EQ(std::to_address(pd), &d);
    EXPECT_EQ(std::pointer_traits<offset_ptr<derived_t>>::pointer_to(d).get(), &d);
    int x = 3, y = 4;
    offset_ptr<int> px(&x), py(&y);
    swap(px, py);
    EXPECT_EQ(px.get(), &y);
    EXPECT_EQ(py.get(), &x);
}

TEST(OffsetPtr, StandardAlgorithmsAndRangesRunThroughIt) {
    std::vector<int> data(1000);
    std::mt19937_64 rng(7);
    for (int& v : data) v = static_cast<int>(rng() % 100000);
    std::vector<int> expected = data;
    std::sort(expected.begin(), expected.end());
    offset_ptr<int> first(data.data()), last(data.data() + data.size());
    std::sort(first, last);
    EXPECT_TRUE(std::equal(first, last, expected.begin()));
    EXPECT_EQ(std::ranges::distance(first, last), 1000);
    // contiguous: a span can be made from the iterator and a count.
    std::span<int> s(first, 1000);
    EXPECT_EQ(s.data(), data.data());
    EXPECT_EQ(*std::ranges::max_element(first, last), expected.back());
    EXPECT_TRUE(std::ranges::is_sorted(first, last));
    EXPECT_EQ(std::lower_bound(first, last, expected[500]) - first,
              std::lower_bound(expected.begin(), expected.end(), expected[500]) - expected.begin());
}

// A container of offset_ptrs: growth copies them to new addresses through the copy
// constructor, which must keep their targets.
struct node {
    int value = 0;
    offset_ptr<node> next;
};

TEST(OffsetPtr, StdVectorOfOffsetPtrsSurvivesReallocation) {
    std::vector<node> nodes(200);
    std::vector<offset_ptr<node>> ptrs;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        nodes[i].value = static_cast<int>(i);
        ptrs.emplace_back(&nodes[i]); // reallocates many times
    }
    for (std::size_t i = 0; i < ptrs.size(); ++i) EXPECT_EQ(ptrs[i]->value, static_cast<int>(i));
    ptrs.erase(ptrs.begin() + 10, ptrs.begin() + 20); // shifts by assignment
    EXPECT_EQ(ptrs[10]->value, 20);
    ptrs.insert(ptrs.begin(), offset_ptr<node>(&nodes[199]));
    EXPECT_EQ(ptrs.front()->value, 199);
    EXPECT_EQ(ptrs[11]->value, 20);
}

TEST(OffsetPtr, PmrAndMemkitContainersOfOffsetPtrNodes) {
    memkit::arena a;
    memkit::resource r{a};
    std::pmr::vector<node> nodes(&r);
    nodes.resize(100);
    // A singly linked list threaded through the nodes with offset_ptrs.
    for (std::size_t i = 0; i + 1 < nodes.size(); ++i) {
        nodes[i].value = static_cast<int>(i);
        nodes[i].next = &nodes[i + 1];
    }
    nodes.back().value = 99;
    std::pmr::vector<offset_ptr<node>> heads(&r);
    memkit::small_vector<offset_ptr<node>, 4> small;
    for (int k = 0; k < 50; ++k) {
        heads.push_back(&nodes[static_cast<std::size_t>(k)]);
        small.push_back(&nodes[static_cast<std::size_t>(k)]); // leaves the inline buffer
    }
    for (int k = 0; k < 50; ++k) {
        int n = 0;
        for (node* p = heads[static_cast<std::size_t>(k)].get(); p != nullptr; p = p->next.get())
            ++n;
        EXPECT_EQ(n, 100 - k);
        EXPECT_EQ(small[static_cast<std::size_t>(k)]->value, k);
    }
    // Copying the whole node array elsewhere keeps the list intact inside the copy only if the
    // links are relative: offset_ptr copies recompute, so the copy's links point at the
    // original nodes, like raw pointers. (Relocating whole structures is what mappings do.)
    std::pmr::vector<node> copy(nodes, &r);
    EXPECT_EQ(copy[0].next.get(), &nodes[1]);
}

// --- two mappings of one segment ------------------------------------------------------------

std::string unique_name(const char* tag) {
    static int counter = 0;
    return "/memkit-optr-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "-" +
           tag;
}

struct list_node {
    std::uint64_t value;
    offset_ptr<list_node> next;
    offset_ptr<list_node> prev;
};

TEST(OffsetPtr, LinkedListBuiltInOneMappingIsValidInAnother) {
    const std::string name = unique_name("two-maps");
    memkit::shm_remover cleanup(name);
    auto a = memkit::shared_memory::create(name, 1 << 16);
    auto b = memkit::shared_memory::open(name);
    ASSERT_NE(a.data(), b.data()) << "two handles must map the segment twice";

    // Build a doubly linked list of 500 nodes in scrambled slot order through mapping A.
    auto* slots_a = static_cast<list_node*>(a.data());
    std::vector<std::size_t> order(500);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::shuffle(order.begin(), order.end(), std::mt19937_64(11));
    offset_ptr<list_node>* head_a = ::new (a.data()) offset_ptr<list_node>();
    list_node* base_a = reinterpret_cast<list_node*>(static_cast<char*>(a.data()) + 64);
    (void)slots_a;
    list_node* prev = nullptr;
    for (std::size_t i = 0; i < order.size(); ++i) {
        list_node* n = ::new (base_a + order[i]) list_node{i * 3, nullptr, prev};
        if (prev != nullptr) prev->next = n;
        else *head_a = n;
        prev = n;
    }

    // Walk it through mapping B: every link must land inside B, not A.
    const auto* lo_b = static_cast<const char*>(b.data());
    auto* head_b = std::launder(reinterpret_cast<offset_ptr<list_node>*>(b.data()));
    std::uint64_t expect = 0;
    list_node* last_b = nullptr;
    for (list_node* n = head_b->get(); n != nullptr; n = n->next.get()) {
        const auto* c = reinterpret_cast<const char*>(n);
        ASSERT_TRUE(c >= lo_b && c < lo_b + b.size());
        ASSERT_EQ(n->value, expect);
        ASSERT_EQ(n->prev.get(), last_b);
        expect += 3;
        last_b = n;
    }
    EXPECT_EQ(expect, 1500u);

    // A change made through B (relinking, i.e. writing new offsets) is seen through A.
    list_node* second_b = head_b->get()->next.get();
    *head_b = second_b;
    second_b->prev = nullptr;
    EXPECT_EQ(head_a->get()->value, 3u);
    EXPECT_EQ(head_a->get()->prev.get(), nullptr);
    // The stored offsets are the same bytes in both mappings.
    EXPECT_EQ(head_a->offset(), head_b->offset());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
}

TEST(OffsetPtr, RemappingAtAnotherAddressKeepsLinks) {
    const std::string name = unique_name("remap");
    memkit::shm_remover cleanup(name);
    auto seg = memkit::shared_memory::create(name, 1 << 14);
    auto* arr = static_cast<node*>(seg.data());
    for (int i = 0; i < 100; ++i) {
        ::new (arr + i) node{i, nullptr};
        if (i > 0) arr[i - 1].next = arr + i;
    }
    void* old_address = seg.data();
    // Map again elsewhere (the old mapping is kept alive by a second handle so the kernel
    // cannot hand back the same range), then walk through the new address only.
    auto keep = memkit::shared_memory::open(name);
    auto moved = memkit::shared_memory::open(name);
    seg.unmap();
    ASSERT_NE(moved.data(), old_address);
    int n = 0;
    for (node* p = static_cast<node*>(moved.data()); p != nullptr; p = p->next.get()) {
        ASSERT_EQ(p->value, n);
        ++n;
    }
    EXPECT_EQ(n, 100);
}

} // namespace
