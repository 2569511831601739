// memkit/container/flat_map.hpp - sorted associative containers on two sequences: flat_map and
// flat_multimap, with the interface of C++23's std::flat_map / std::flat_multimap.
//
// The keys live in one sorted sequence container (std::vector<Key> by default) and the mapped
// values in a second one (std::vector<T>), at the same index. A lookup binary-searches only the
// keys, which are packed densely, so it touches a fraction of the cache lines that a node-based
// std::map or a vector of pairs touches; for number and pointer keys under std::less/greater the
// search is branchless. Use it for maps that are read far more often than they are changed, that
// are built in bulk, or that must be iterated quickly and stored compactly; use std::map when
// single-element inserts and erases in large maps dominate, or when references must stay valid.
//
// Interface (as std::flat_map): key_container_type, mapped_container_type, `containers` (struct
// {keys, values}), keys()/values(), extract() && / replace(keys, values), key_comp()/value_comp(),
// the sorted_unique (flat_map) and sorted_equivalent (flat_multimap) tags, find / contains /
// count / lower_bound / upper_bound / equal_range, at / operator[] / try_emplace /
// insert_or_assign (flat_map only), emplace / emplace_hint / insert (value, hint, range,
// initializer_list, sorted range) / insert_range, erase (iterator, range, key), erase_if, swap,
// clear, == and <=>. Every lookup has a heterogeneous overload when Compare::is_transparent
// (std::less<>): a flat_map<std::string, V, std::less<>> is searched with a std::string_view or
// a const char* without building a string. Not provided: std::from_range_t constructors (C++23).
//
// Iterators are random access (they model std::random_access_iterator for every Key and T,
// move-only ones included) with proxy references: value_type is std::pair<Key, T>, reference is
// a std::pair<const Key&, T&> (const_reference a std::pair<const Key&, const T&>; both are
// classes derived from those pairs, see detail::pair_ref), and `it->second` works through an
// arrow proxy. iterator_concept and iterator_category are both
// random_access_iterator_tag (the category as in libc++, so that std::prev, std::advance and
// std::distance work in O(1) although the reference is not a language reference).
//
// Complexity (n elements, m inserted):
//   lookup                               O(log n) comparisons, keys only
//   insert / emplace / erase one element O(log n) comparisons + O(n) element moves
//   emplace_hint / try_emplace(hint)     O(1) comparisons with a correct hint + O(n) moves
//   insert a range, construct from one   O(n + m log m): the new elements are appended, sorted
//                                        once (stable; a radix sort for integer keys under
//                                        std::less / std::greater) and merged in one backward
//                                        pass; for flat_map duplicates are dropped once, keeping
//                                        the first of equal keys (as std::map)
//   insert(sorted_unique, range)         O(n + m) (no sort)
//   iteration                            O(1) per step, two parallel arrays
// Iterator and reference stability: like std::vector's. Every insertion and erasure invalidates
// all iterators and references (elements may move); lookups and assignment through values()
// invalidate nothing. swap exchanges the containers, so iterators refer to the other map.
//
// Exception safety:
//  - Single-element insertion (insert, emplace, emplace_hint, try_emplace, insert_or_assign,
//    operator[]) gives the strong guarantee when Key and T have non-throwing move constructors
//    and move assignments (and the containers give the standard sequence-container guarantee, as
//    std::vector and std::deque do): a failed allocation or a throwing Key/T constructor leaves
//    the map unchanged. Otherwise, an exception thrown while the containers shift elements
//    leaves the map empty (the standard's rule: the two containers must never disagree).
//  - insert_or_assign on an existing key: the guarantee of T's assignment; the keys never change.
//  - Range insertion and construction: strong guarantee for failures while the new elements are
//    copied in, sorted or checked against the map (allocation, element constructors, the
//    comparator). A comparator or a Key/T move assignment that throws during the final merge
//    leaves the map empty.
//  - erase: nothrow when Key and T have non-throwing move assignments; otherwise a throw leaves
//    the map empty. erase_if: if the predicate throws, elements already removed stay removed and
//    the others are kept (sorted and unique as before).
//  - Copy and move assignment, replace(): if a container operation throws, the map is empty.
//    Move construction and extract() leave the source empty.
// A map is never left with keys and values of different lengths, or with unsorted keys.
//
// Errors: at() throws std::out_of_range for a missing key; constructors and replace() taking a
// key container and a mapped container of different sizes throw std::invalid_argument; a
// sorted_unique / sorted_equivalent input that is not sorted (or, for flat_map, holds equal keys)
// throws std::invalid_argument in MEMKIT_CHECKS builds (debug) and is undefined otherwise; growth
// beyond max_size() throws std::length_error (from the containers); allocation failures
// propagate std::bad_alloc (memkit::out_of_memory from memkit allocators).
//
// Allocators: memory comes from the two containers, so the map is as allocator-aware as they
// are. Allocator-extended constructors `(..., const Alloc&)` exist when both containers use an
// Alloc (std::uses_allocator), and construct both containers with it (uses-allocator
// construction, so std::pmr::vector<std::pmr::string> keys share the resource). std::uses_allocator
// is specialized, so a flat_map inside a std::pmr container gets that container's resource.
// memkit::pmr::flat_map<K, V> uses std::pmr::vector for both. Bulk insertion takes temporary
// scratch memory proportional to m (the sort order and the new elements) from the global heap,
// as std::stable_sort does. Swapping maps whose containers have unequal allocators that do not propagate on swap is
// undefined (a precondition, as for standard containers).
//
// Thread-safety: not thread-safe; like std containers, concurrent const access is fine.
//
//   memkit::flat_map<std::string, int, std::less<>> m{{"b", 2}, {"a", 1}};  // sorted on build
//   m["c"] = 3;                                                              // one insertion
//   if (auto it = m.find(std::string_view{"a"}); it != m.end()) use(it->second);
#pragma once

#include <algorithm>
#include <compare>
#include <concepts>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <memory_resource>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/container/detail/flat_common.hpp"
#include "memkit/core/platform.hpp"

// GCC 12 at -O2 and above reports "potential null pointer dereference" inside libstdc++'s
// vector::emplace when the allocator's allocate() is not known to return non-null (pmr): a false
// positive in the standard library's code that the system-header exemption does not catch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#endif

namespace memkit {

namespace detail {

/// The reference type of flat_map's iterators: a std::pair<const Key&, T&> (or, for
/// const_iterator, std::pair<const Key&, const T&>), as in C++23, and usable as one (it derives
/// from it, and supports structured bindings and std::get). It is a class of its own only so that
/// it can have a std::basic_common_reference with std::pair<Key, T>: C++20's std::pair has none,
/// and without it a proxy iterator does not model std::indirectly_readable (for const_iterator
/// never, for iterator not when T is move-only).
template <class KRef, class VRef>
struct pair_ref : std::pair<KRef, VRef> {
    using base_type = std::pair<KRef, VRef>;

    pair_ref(KRef k, VRef v) noexcept : base_type(k, v) {}

    /// reference -> const_reference.
    template <class K2, class V2>
    requires(!std::is_same_v<pair_ref<K2, V2>, pair_ref> && std::is_convertible_v<K2, KRef> &&
             std::is_convertible_v<V2, VRef>) pair_ref(const pair_ref<K2, V2>& o)
    noexcept // NOLINT(google-explicit-constructor)
        : base_type(o.first, o.second) {}

    /// A reference to the members of a value_type (pair<Key, T>).
    template <class K, class V>
    requires(std::is_convertible_v<K&, KRef>&& std::is_convertible_v<V&, VRef>)
        pair_ref(std::pair<K, V>& p)
    noexcept // NOLINT(google-explicit-constructor)
        : base_type(p.first, p.second) {}
    template <class K, class V>
    requires(std::is_convertible_v<const K&, KRef>&& std::is_convertible_v<const V&, VRef>)
        pair_ref(const std::pair<K, V>& p)
    noexcept // NOLINT(google-explicit-constructor)
        : base_type(p.first, p.second) {}
};

/// What `it->` returns for an iterator whose reference is a prvalue pair: it keeps the pair alive
/// for the duration of the member access.
template <class Reference>
struct arrow_proxy {
    Reference r;
    Reference* operator->() noexcept { return std::addressof(r); }
};

/// The iterator of flat_map / flat_multimap: a key iterator and a mapped iterator moved in
/// lockstep. MappedIter is the mapped container's iterator (for `iterator`) or const_iterator.
template <class KeyIter, class MappedIter>
class flat_map_iterator {
public:
    using iterator_concept = std::random_access_iterator_tag;
    // Strictly a Cpp17InputIterator (the reference is not a language reference), but tagged as
    // random access, as libc++ does for std::flat_map: with input_iterator_tag, std::prev and
    // std::advance(it, -n) would loop for ever and std::distance would be linear.
    using iterator_category = std::random_access_iterator_tag;
    using value_type = std::pair<std::iter_value_t<KeyIter>, std::iter_value_t<MappedIter>>;
    using reference = pair_ref<std::iter_reference_t<KeyIter>, std::iter_reference_t<MappedIter>>;
    using difference_type = std::iter_difference_t<KeyIter>;
    using pointer = arrow_proxy<reference>;

    flat_map_iterator() = default;

    /// iterator -> const_iterator.
    template <class OtherMapped>
    requires(!std::is_same_v<OtherMapped, MappedIter> &&
             std::is_convertible_v<const OtherMapped&, MappedIter>)
        flat_map_iterator(const flat_map_iterator<KeyIter, OtherMapped>& o) // NOLINT
        : k_(o.k_), v_(o.v_) {}

    reference operator*() const { return reference{*k_, *v_}; }
    pointer operator->() const { return pointer{**this}; }
    reference operator[](difference_type n) const { return reference{k_[n], v_[n]}; }

    flat_map_iterator& operator++() {
        ++k_;
        ++v_;
        return *this;
    }
    flat_map_iterator operator++(int) {
        flat_map_iterator t = *this;
        ++*this;
        return t;
    }
    flat_map_iterator& operator--() {
        --k_;
        --v_;
        return *this;
    }
    flat_map_iterator operator--(int) {
        flat_map_iterator t = *this;
        --*this;
        return t;
    }
    flat_map_iterator& operator+=(difference_type n) {
        k_ += n;
        v_ += n;
        return *this;
    }
    flat_map_iterator& operator-=(difference_type n) {
        k_ -= n;
        v_ -= n;
        return *this;
    }
    friend flat_map_iterator operator+(flat_map_iterator it, difference_type n) { return it += n; }
    friend flat_map_iterator operator+(difference_type n, flat_map_iterator it) { return it += n; }
    friend flat_map_iterator operator-(flat_map_iterator it, difference_type n) { return it -= n; }
    friend difference_type operator-(const flat_map_iterator& a, const flat_map_iterator& b) {
        return a.k_ - b.k_;
    }
    friend bool operator==(const flat_map_iterator& a, const flat_map_iterator& b) {
        return a.k_ == b.k_;
    }
    friend std::strong_ordering operator<=>(const flat_map_iterator& a,
                                            const flat_map_iterator& b) {
        return (a.k_ - b.k_) <=> 0;
    }

    /// The underlying key and mapped iterators.
    [[nodiscard]] KeyIter key_iterator() const { return k_; }
    [[nodiscard]] MappedIter mapped_iterator() const { return v_; }

private:
    template <class, class>
    friend class flat_map_iterator;
    template <class, class, class, class, class, bool>
    friend class flat_map_base;

    flat_map_iterator(KeyIter k, MappedIter v) : k_(std::move(k)), v_(std::move(v)) {}

    KeyIter k_{};
    MappedIter v_{};
};

/// The implementation shared by flat_map (Multi == false) and flat_multimap (Multi == true).
template <class Key, class T, class Compare, class KeyContainer, class MappedContainer, bool Multi>
class flat_map_base {
    static_assert(std::is_same_v<Key, typename KeyContainer::value_type>,
                  "memkit::flat_map: KeyContainer::value_type must be Key");
    static_assert(std::is_same_v<T, typename MappedContainer::value_type>,
                  "memkit::flat_map: MappedContainer::value_type must be T");
    static_assert(std::random_access_iterator<typename KeyContainer::iterator> &&
                      std::random_access_iterator<typename MappedContainer::iterator>,
                  "memkit::flat_map: the containers must have random access iterators");

    static constexpr const char* name_ = Multi ? "memkit::flat_multimap" : "memkit::flat_map";

    template <class Alloc>
    static constexpr bool uses_alloc_ =
        std::uses_allocator_v<KeyContainer, Alloc>&& std::uses_allocator_v<MappedContainer, Alloc>;

    // Shifting elements inside the containers cannot throw: single-element insertion can then
    // undo itself (strong guarantee) and erasure cannot fail.
    static constexpr bool nothrow_shift_ =
        std::is_nothrow_move_constructible_v<Key> && std::is_nothrow_move_assignable_v<Key> &&
        std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>;

public:
    using key_type = Key;
    using mapped_type = T;
    using value_type = std::pair<key_type, mapped_type>;
    using key_compare = Compare;
    /// A std::pair<const Key&, T&> (a class derived from it: see detail::pair_ref).
    using reference = pair_ref<const key_type&, mapped_type&>;
    /// A std::pair<const Key&, const T&> (a class derived from it).
    using const_reference = pair_ref<const key_type&, const mapped_type&>;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using iterator = flat_map_iterator<typename KeyContainer::const_iterator,
                                       typename MappedContainer::iterator>;
    using const_iterator = flat_map_iterator<typename KeyContainer::const_iterator,
                                             typename MappedContainer::const_iterator>;
    using reverse_iterator = std::reverse_iterator<iterator>;
    using const_reverse_iterator = std::reverse_iterator<const_iterator>;
    using key_container_type = KeyContainer;
    using mapped_container_type = MappedContainer;
    /// sorted_unique_t for flat_map, sorted_equivalent_t for flat_multimap.
    using sorted_tag = std::conditional_t<Multi, sorted_equivalent_t, sorted_unique_t>;
    /// What insert/emplace return: pair<iterator, bool> (flat_map) or iterator (flat_multimap).
    using insert_return_type = std::conditional_t<Multi, iterator, std::pair<iterator, bool>>;

    /// Orders values (pairs) by their keys.
    class value_compare {
    public:
        bool operator()(const_reference x, const_reference y) const {
            return comp_(x.first, y.first);
        }

    private:
        friend class flat_map_base;
        explicit value_compare(key_compare c) : comp_(std::move(c)) {}
        key_compare comp_;
    };

    /// The two sequences, as extract() returns them and replace() takes them.
    struct containers {
        key_container_type keys;
        mapped_container_type values;
    };

    // --- construction -------------------------------------------------------------------

    flat_map_base() : flat_map_base(key_compare()) {}
    explicit flat_map_base(const key_compare& comp) : c_(), compare_(comp) {}

    template <class Alloc>
    requires uses_alloc_<Alloc>
    explicit flat_map_base(const Alloc& a) : flat_map_base(key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(const key_compare& comp, const Alloc& a)
        : c_{std::make_obj_using_allocator<key_container_type>(a),
             std::make_obj_using_allocator<mapped_container_type>(a)},
          compare_(comp) {}

    /// Takes the containers as they are, then sorts them by key (stable) and, for flat_map,
    /// drops all but the first of equal keys.
    flat_map_base(key_container_type key_cont, mapped_container_type mapped_cont,
                  const key_compare& comp = key_compare())
        : c_{std::move(key_cont), std::move(mapped_cont)}, compare_(comp) {
        adopt_unsorted_();
    }

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(const key_container_type& key_cont,
                                              const mapped_container_type& mapped_cont,
                                              const Alloc& a)
        : flat_map_base(key_cont, mapped_cont, key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(const key_container_type& key_cont,
                                              const mapped_container_type& mapped_cont,
                                              const key_compare& comp, const Alloc& a)
        : c_{std::make_obj_using_allocator<key_container_type>(a, key_cont),
             std::make_obj_using_allocator<mapped_container_type>(a, mapped_cont)},
          compare_(comp) {
        adopt_unsorted_();
    }

    /// Takes containers that are already sorted (and unique, for flat_map).
    flat_map_base(sorted_tag, key_container_type key_cont, mapped_container_type mapped_cont,
                  const key_compare& comp = key_compare())
        : c_{std::move(key_cont), std::move(mapped_cont)}, compare_(comp) {
        adopt_sorted_();
    }

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(sorted_tag s, const key_container_type& key_cont,
                                              const mapped_container_type& mapped_cont,
                                              const Alloc& a)
        : flat_map_base(s, key_cont, mapped_cont, key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(sorted_tag, const key_container_type& key_cont,
                                              const mapped_container_type& mapped_cont,
                                              const key_compare& comp, const Alloc& a)
        : c_{std::make_obj_using_allocator<key_container_type>(a, key_cont),
             std::make_obj_using_allocator<mapped_container_type>(a, mapped_cont)},
          compare_(comp) {
        adopt_sorted_();
    }

    template <std::input_iterator InputIt>
    flat_map_base(InputIt first, InputIt last, const key_compare& comp = key_compare())
        : c_(), compare_(comp) {
        insert(first, last);
    }

    template <std::input_iterator InputIt, class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(InputIt first, InputIt last, const Alloc& a)
        : flat_map_base(key_compare(), a) {
        insert(first, last);
    }

    template <std::input_iterator InputIt, class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(InputIt first, InputIt last, const key_compare& comp,
                                              const Alloc& a)
        : flat_map_base(comp, a) {
        insert(first, last);
    }

    template <std::input_iterator InputIt>
    flat_map_base(sorted_tag s, InputIt first, InputIt last,
                  const key_compare& comp = key_compare())
        : c_(), compare_(comp) {
        insert(s, first, last);
    }

    template <std::input_iterator InputIt, class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(sorted_tag s, InputIt first, InputIt last,
                                              const Alloc& a)
        : flat_map_base(key_compare(), a) {
        insert(s, first, last);
    }

    template <std::input_iterator InputIt, class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(sorted_tag s, InputIt first, InputIt last,
                                              const key_compare& comp, const Alloc& a)
        : flat_map_base(comp, a) {
        insert(s, first, last);
    }

    flat_map_base(std::initializer_list<value_type> il, const key_compare& comp = key_compare())
        : flat_map_base(il.begin(), il.end(), comp) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(std::initializer_list<value_type> il, const Alloc& a)
        : flat_map_base(il.begin(), il.end(), key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(std::initializer_list<value_type> il,
                                              const key_compare& comp, const Alloc& a)
        : flat_map_base(il.begin(), il.end(), comp, a) {}

    flat_map_base(sorted_tag s, std::initializer_list<value_type> il,
                  const key_compare& comp = key_compare())
        : flat_map_base(s, il.begin(), il.end(), comp) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(sorted_tag s, std::initializer_list<value_type> il,
                                              const Alloc& a)
        : flat_map_base(s, il.begin(), il.end(), key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(sorted_tag s, std::initializer_list<value_type> il,
                                              const key_compare& comp, const Alloc& a)
        : flat_map_base(s, il.begin(), il.end(), comp, a) {}

    flat_map_base(const flat_map_base&) = default;

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(const flat_map_base& o, const Alloc& a)
        : c_{std::make_obj_using_allocator<key_container_type>(a, o.c_.keys),
             std::make_obj_using_allocator<mapped_container_type>(a, o.c_.values)},
          compare_(o.compare_) {}

    /// Leaves `o` empty (a moved-from container may hold moved-from keys, or keys and values of
    /// different lengths, if only one of the moves succeeded).
    flat_map_base(flat_map_base&& o) noexcept(
        std::is_nothrow_move_constructible_v<key_container_type>&&
            std::is_nothrow_move_constructible_v<mapped_container_type>&&
                std::is_nothrow_copy_constructible_v<key_compare>) try
        : c_(std::move(o.c_)), compare_(o.compare_) {
        o.clear();
    } catch (...) {
        o.clear();
    }

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_map_base(flat_map_base&& o, const Alloc& a)
    try : c_{std::make_obj_using_allocator<key_container_type>(a, std::move(o.c_.keys)),
             std::make_obj_using_allocator<mapped_container_type>(a, std::move(o.c_.values))},
        compare_(o.compare_) {
        o.clear();
    } catch (...) {
        o.clear();
    }

    flat_map_base& operator=(const flat_map_base& o) {
        if (this != &o) {
            detail::on_exception undo{[this] { clear(); }};
            c_.keys = o.c_.keys;
            c_.values = o.c_.values;
            compare_ = o.compare_;
            undo.dismiss();
        }
        return *this;
    }

    flat_map_base& operator=(flat_map_base&& o) noexcept(
        std::is_nothrow_move_assignable_v<key_container_type>&& std::is_nothrow_move_assignable_v<
            mapped_container_type>&& std::is_nothrow_copy_assignable_v<key_compare>) {
        if (this != &o) {
            detail::on_exception undo{[this, &o] {
                clear();
                o.clear();
            }};
            c_.keys = std::move(o.c_.keys);
            c_.values = std::move(o.c_.values);
            compare_ = o.compare_;
            undo.dismiss();
            o.clear();
        }
        return *this;
    }

    ~flat_map_base() = default;

    // --- iterators ----------------------------------------------------------------------

    iterator begin() noexcept { return iter_at_(0); }
    const_iterator begin() const noexcept { return citer_at_(0); }
    iterator end() noexcept { return iter_at_(size()); }
    const_iterator end() const noexcept { return citer_at_(size()); }
    reverse_iterator rbegin() noexcept { return reverse_iterator(end()); }
    const_reverse_iterator rbegin() const noexcept { return const_reverse_iterator(end()); }
    reverse_iterator rend() noexcept { return reverse_iterator(begin()); }
    const_reverse_iterator rend() const noexcept { return const_reverse_iterator(begin()); }
    const_iterator cbegin() const noexcept { return begin(); }
    const_iterator cend() const noexcept { return end(); }
    const_reverse_iterator crbegin() const noexcept { return rbegin(); }
    const_reverse_iterator crend() const noexcept { return rend(); }

    // --- capacity -----------------------------------------------------------------------

    [[nodiscard]] bool empty() const noexcept { return c_.keys.empty(); }
    [[nodiscard]] size_type size() const noexcept { return c_.keys.size(); }
    [[nodiscard]] size_type max_size() const noexcept {
        const size_type k = c_.keys.max_size(), v = c_.values.max_size();
        return k < v ? k : v;
    }

    // --- element access (flat_map) ------------------------------------------------------

    mapped_type& operator[](const key_type& k) requires(!Multi) {
        return value_at_(try_emplace_(k).first);
    }
    mapped_type& operator[](key_type&& k) requires(!Multi) {
        return value_at_(try_emplace_(std::move(k)).first);
    }
    template <class K>
    requires(!Multi && transparent_compare<Compare> &&
             std::is_constructible_v<key_type, K>) mapped_type&
    operator[](K&& k) {
        return value_at_(try_emplace_(std::forward<K>(k)).first);
    }

    mapped_type& at(const key_type& k) requires(!Multi) { return value_at_(found_or_throw_(k)); }
    const mapped_type& at(const key_type& k) const requires(!Multi) {
        return c_.values[found_or_throw_(k)];
    }
    template <class K>
    requires(!Multi && transparent_compare<Compare>) mapped_type& at(const K& k) {
        return value_at_(found_or_throw_(k));
    }
    template <class K>
    requires(!Multi && transparent_compare<Compare>) const mapped_type& at(const K& k) const {
        return c_.values[found_or_throw_(k)];
    }

    // --- modifiers ----------------------------------------------------------------------

    template <class... Args>
    requires std::is_constructible_v<value_type, Args...>
        insert_return_type emplace(Args&&... args) {
        value_type t(std::forward<Args>(args)...);
        if constexpr (Multi) {
            const size_type i = upper_index_(t.first);
            return iter_at_(insert_at_(i, std::move(t.first), std::move(t.second)));
        } else {
            auto [i, inserted] = try_emplace_(std::move(t.first), std::move(t.second));
            return {iter_at_(i), inserted};
        }
    }

    /// Inserts at `hint` when that keeps the keys sorted (O(1) comparisons), else where the key
    /// belongs.
    template <class... Args>
    requires std::is_constructible_v<value_type, Args...> iterator emplace_hint(const_iterator hint,
                                                                                Args&&... args) {
        value_type t(std::forward<Args>(args)...);
        return iter_at_(hinted_insert_(index_of_(hint), std::move(t.first), std::move(t.second)));
    }

    insert_return_type insert(const value_type& x) { return emplace(x); }
    insert_return_type insert(value_type&& x) { return emplace(std::move(x)); }
    template <class P>
    requires std::is_constructible_v<value_type, P> insert_return_type insert(P&& x) {
        return emplace(std::forward<P>(x));
    }
    iterator insert(const_iterator hint, const value_type& x) { return emplace_hint(hint, x); }
    iterator insert(const_iterator hint, value_type&& x) {
        return emplace_hint(hint, std::move(x));
    }
    template <class P>
    requires std::is_constructible_v<value_type, P> iterator insert(const_iterator hint, P&& x) {
        return emplace_hint(hint, std::forward<P>(x));
    }

    /// Appends the range, sorts the new part once and merges it in (O(n + m log m)). flat_map
    /// keeps the first of equal keys, existing elements first.
    template <std::input_iterator InputIt>
    void insert(InputIt first, InputIt last) {
        insert_range_<false>(std::move(first), std::move(last));
    }
    /// As insert(first, last) for a range already sorted (and unique, for flat_map): O(n + m).
    template <std::input_iterator InputIt>
    void insert(sorted_tag, InputIt first, InputIt last) {
        insert_range_<true>(std::move(first), std::move(last));
    }
    void insert(std::initializer_list<value_type> il) { insert(il.begin(), il.end()); }
    void insert(sorted_tag s, std::initializer_list<value_type> il) {
        insert(s, il.begin(), il.end());
    }
    template <std::ranges::input_range R>
    void insert_range(R&& rg) {
        insert_range_<false>(std::ranges::begin(rg), std::ranges::end(rg));
    }

    template <class... Args>
    requires(!Multi && std::is_constructible_v<mapped_type, Args...>)
        std::pair<iterator, bool> try_emplace(const key_type& k, Args&&... args) {
        auto [i, inserted] = try_emplace_(k, std::forward<Args>(args)...);
        return {iter_at_(i), inserted};
    }
    template <class... Args>
    requires(!Multi && std::is_constructible_v<mapped_type, Args...>)
        std::pair<iterator, bool> try_emplace(key_type&& k, Args&&... args) {
        auto [i, inserted] = try_emplace_(std::move(k), std::forward<Args>(args)...);
        return {iter_at_(i), inserted};
    }
    template <class K, class... Args>
    requires(!Multi && transparent_compare<Compare> && std::is_constructible_v<key_type, K> &&
             std::is_constructible_v<mapped_type, Args...> &&
             !std::is_convertible_v<K&&, const_iterator> && !std::is_convertible_v<K&&, iterator>)
        std::pair<iterator, bool> try_emplace(K&& k, Args&&... args) {
        auto [i, inserted] = try_emplace_(std::forward<K>(k), std::forward<Args>(args)...);
        return {iter_at_(i), inserted};
    }
    template <class... Args>
    requires(!Multi && std::is_constructible_v<mapped_type, Args...>) iterator
        try_emplace(const_iterator hint, const key_type& k, Args&&... args) {
        return iter_at_(hinted_try_emplace_(index_of_(hint), k, std::forward<Args>(args)...));
    }
    template <class... Args>
    requires(!Multi && std::is_constructible_v<mapped_type, Args...>) iterator
        try_emplace(const_iterator hint, key_type&& k, Args&&... args) {
        return iter_at_(
            hinted_try_emplace_(index_of_(hint), std::move(k), std::forward<Args>(args)...));
    }
    template <class K, class... Args>
    requires(!Multi && transparent_compare<Compare> && std::is_constructible_v<key_type, K> &&
             std::is_constructible_v<mapped_type, Args...>) iterator
        try_emplace(const_iterator hint, K&& k, Args&&... args) {
        return iter_at_(
            hinted_try_emplace_(index_of_(hint), std::forward<K>(k), std::forward<Args>(args)...));
    }

    template <class M>
    requires(!Multi && std::is_assignable_v<mapped_type&, M> &&
             std::is_constructible_v<mapped_type, M>)
        std::pair<iterator, bool> insert_or_assign(const key_type& k, M&& obj) {
        return insert_or_assign_(k, std::forward<M>(obj));
    }
    template <class M>
    requires(!Multi && std::is_assignable_v<mapped_type&, M> &&
             std::is_constructible_v<mapped_type, M>)
        std::pair<iterator, bool> insert_or_assign(key_type&& k, M&& obj) {
        return insert_or_assign_(std::move(k), std::forward<M>(obj));
    }
    template <class K, class M>
    requires(!Multi && transparent_compare<Compare> && std::is_constructible_v<key_type, K> &&
             std::is_assignable_v<mapped_type&, M> && std::is_constructible_v<mapped_type, M>)
        std::pair<iterator, bool> insert_or_assign(K&& k, M&& obj) {
        return insert_or_assign_(std::forward<K>(k), std::forward<M>(obj));
    }
    template <class M>
    requires(!Multi && std::is_assignable_v<mapped_type&, M> &&
             std::is_constructible_v<mapped_type, M>) iterator
        insert_or_assign(const_iterator, const key_type& k, M&& obj) {
        return insert_or_assign_(k, std::forward<M>(obj)).first;
    }
    template <class M>
    requires(!Multi && std::is_assignable_v<mapped_type&, M> &&
             std::is_constructible_v<mapped_type, M>) iterator
        insert_or_assign(const_iterator, key_type&& k, M&& obj) {
        return insert_or_assign_(std::move(k), std::forward<M>(obj)).first;
    }
    template <class K, class M>
    requires(!Multi && transparent_compare<Compare> && std::is_constructible_v<key_type, K> &&
             std::is_assignable_v<mapped_type&, M> &&
             std::is_constructible_v<mapped_type, M>) iterator
        insert_or_assign(const_iterator, K&& k, M&& obj) {
        return insert_or_assign_(std::forward<K>(k), std::forward<M>(obj)).first;
    }

    iterator erase(iterator pos) { return erase(const_iterator(pos)); }
    iterator erase(const_iterator pos) {
        const size_type i = index_of_(pos);
        erase_indices_(i, i + 1);
        return iter_at_(i);
    }
    iterator erase(const_iterator first, const_iterator last) {
        const size_type i = index_of_(first);
        erase_indices_(i, index_of_(last));
        return iter_at_(i);
    }
    size_type erase(const key_type& k) { return erase_key_(k); }
    template <class K>
    requires(transparent_compare<Compare> && !std::is_convertible_v<K&&, iterator> &&
             !std::is_convertible_v<K&&, const_iterator>) size_type erase(K&& k) {
        return erase_key_(k);
    }

    void swap(flat_map_base& o) noexcept(std::is_nothrow_swappable_v<key_container_type>&&
                                             std::is_nothrow_swappable_v<mapped_container_type>&&
                                                 std::is_nothrow_swappable_v<key_compare>) {
        std::ranges::swap(compare_, o.compare_);
        std::ranges::swap(c_.keys, o.c_.keys);
        std::ranges::swap(c_.values, o.c_.values);
    }

    void clear() noexcept {
        c_.keys.clear();
        c_.values.clear();
    }

    /// Moves the containers out; the map is empty afterwards, even if a move throws.
    containers extract() && {
        struct clear_at_exit {
            flat_map_base* self;
            ~clear_at_exit() { self->clear(); }
        } guard{this};
        return std::move(c_);
    }

    /// Takes `key_cont` and `mapped_cont` as the new contents. Preconditions: equal sizes
    /// (checked: std::invalid_argument) and keys sorted (and unique, for flat_map; checked in
    /// MEMKIT_CHECKS builds).
    void replace(key_container_type&& key_cont, mapped_container_type&& mapped_cont) {
        if (key_cont.size() != mapped_cont.size()) throw_size_mismatch(name_);
        check_sorted<!Multi>(name_, key_cont.begin(), key_cont.end(), compare_);
        detail::on_exception undo{[this] { clear(); }};
        c_.keys = std::move(key_cont);
        c_.values = std::move(mapped_cont);
        undo.dismiss();
    }

    // --- observers ----------------------------------------------------------------------

    key_compare key_comp() const { return compare_; }
    value_compare value_comp() const { return value_compare(compare_); }
    const key_container_type& keys() const noexcept { return c_.keys; }
    const mapped_container_type& values() const noexcept { return c_.values; }

    // --- lookup -------------------------------------------------------------------------

    iterator find(const key_type& k) { return iter_at_(find_index_(k)); }
    const_iterator find(const key_type& k) const { return citer_at_(find_index_(k)); }
    template <class K>
    requires transparent_compare<Compare> iterator find(const K& k) {
        return iter_at_(find_index_(k));
    }
    template <class K>
    requires transparent_compare<Compare> const_iterator find(const K& k)
    const { return citer_at_(find_index_(k)); }

    size_type count(const key_type& k) const { return count_(k); }
    template <class K>
    requires transparent_compare<Compare> size_type count(const K& k)
    const { return count_(k); }

    bool contains(const key_type& k) const { return find_index_(k) != size(); }
    template <class K>
    requires transparent_compare<Compare>
    bool contains(const K& k) const { return find_index_(k) != size(); }

    iterator lower_bound(const key_type& k) { return iter_at_(lower_index_(k)); }
    const_iterator lower_bound(const key_type& k) const { return citer_at_(lower_index_(k)); }
    template <class K>
    requires transparent_compare<Compare> iterator lower_bound(const K& k) {
        return iter_at_(lower_index_(k));
    }
    template <class K>
    requires transparent_compare<Compare> const_iterator lower_bound(const K& k)
    const { return citer_at_(lower_index_(k)); }

    iterator upper_bound(const key_type& k) { return iter_at_(upper_index_(k)); }
    const_iterator upper_bound(const key_type& k) const { return citer_at_(upper_index_(k)); }
    template <class K>
    requires transparent_compare<Compare> iterator upper_bound(const K& k) {
        return iter_at_(upper_index_(k));
    }
    template <class K>
    requires transparent_compare<Compare> const_iterator upper_bound(const K& k)
    const { return citer_at_(upper_index_(k)); }

    std::pair<iterator, iterator> equal_range(const key_type& k) {
        const auto [i, j] = equal_indices_(k);
        return {iter_at_(i), iter_at_(j)};
    }
    std::pair<const_iterator, const_iterator> equal_range(const key_type& k) const {
        const auto [i, j] = equal_indices_(k);
        return {citer_at_(i), citer_at_(j)};
    }
    template <class K>
    requires transparent_compare<Compare> std::pair<iterator, iterator> equal_range(const K& k) {
        const auto [i, j] = equal_indices_(k);
        return {iter_at_(i), iter_at_(j)};
    }
    template <class K>
    requires transparent_compare<Compare> std::pair<const_iterator, const_iterator>
    equal_range(const K& k)
    const {
        const auto [i, j] = equal_indices_(k);
        return {citer_at_(i), citer_at_(j)};
    }

    // --- comparison ---------------------------------------------------------------------

    friend bool operator==(const flat_map_base& x, const flat_map_base& y) {
        return x.size() == y.size() && std::ranges::equal(x.c_.keys, y.c_.keys) &&
               std::ranges::equal(x.c_.values, y.c_.values);
    }

    // A template, so that a map of types without ordering can still be instantiated.
    template <class K = key_type, class M = mapped_type>
    friend std::common_comparison_category_t<synth_three_way_result<K>, synth_three_way_result<M>>
    operator<=>(const flat_map_base& x, const flat_map_base& y) {
        const size_type n = x.size() < y.size() ? x.size() : y.size();
        auto xk = x.c_.keys.begin(), yk = y.c_.keys.begin();
        auto xv = x.c_.values.begin(), yv = y.c_.values.begin();
        for (size_type i = 0; i < n; ++i, ++xk, ++yk, ++xv, ++yv) {
            if (auto c = synth_three_way{}(*xk, *yk); c != 0) return c;
            if (auto c = synth_three_way{}(*xv, *yv); c != 0) return c;
        }
        return x.size() <=> y.size();
    }

    friend void swap(flat_map_base& x, flat_map_base& y) noexcept(noexcept(x.swap(y))) {
        x.swap(y);
    }

protected:
    void assign_(std::initializer_list<value_type> il) {
        clear();
        insert(il);
    }

private:
    // --- positions ----------------------------------------------------------------------

    iterator iter_at_(size_type i) noexcept {
        const auto d = static_cast<difference_type>(i);
        return iterator(c_.keys.cbegin() + d, c_.values.begin() + d);
    }
    const_iterator citer_at_(size_type i) const noexcept {
        const auto d = static_cast<difference_type>(i);
        return const_iterator(c_.keys.cbegin() + d, c_.values.cbegin() + d);
    }
    size_type index_of_(const const_iterator& it) const noexcept {
        return static_cast<size_type>(it.k_ - c_.keys.cbegin());
    }
    const key_type& key_at_(size_type i) const {
        return c_.keys.cbegin()[static_cast<difference_type>(i)];
    }
    mapped_type& value_at_(size_type i) {
        return c_.values.begin()[static_cast<difference_type>(i)];
    }

    // --- search -------------------------------------------------------------------------

    template <class K>
    size_type lower_index_(const K& k) const {
        return bound_index<false>(c_.keys.cbegin(), size(), k, compare_);
    }
    template <class K>
    size_type upper_index_(const K& k) const {
        return bound_index<true>(c_.keys.cbegin(), size(), k, compare_);
    }
    template <class K>
    size_type find_index_(const K& k) const {
        const size_type n = size(), i = lower_index_(k);
        return i != n && !compare_(k, key_at_(i)) ? i : n;
    }
    template <class K>
    size_type found_or_throw_(const K& k) const {
        const size_type i = find_index_(k);
        if (MEMKIT_UNLIKELY(i == size())) throw_key_not_found(name_);
        return i;
    }
    template <class K>
    std::pair<size_type, size_type> equal_indices_(const K& k) const {
        if constexpr (Multi) {
            const size_type i = lower_index_(k);
            const size_type n = size();
            // The upper bound lies at or after the lower bound: search only the rest.
            const auto rest = c_.keys.cbegin() + static_cast<difference_type>(i);
            return {i, i + bound_index<true>(rest, n - i, k, compare_)};
        } else {
            const size_type i = lower_index_(k);
            const bool found = i != size() && !compare_(k, key_at_(i));
            return {i, found ? i + 1 : i};
        }
    }
    template <class K>
    size_type count_(const K& k) const {
        if constexpr (Multi) {
            const auto [i, j] = equal_indices_(k);
            return j - i;
        } else {
            return find_index_(k) != size() ? 1 : 0;
        }
    }

    // --- insertion ----------------------------------------------------------------------

    /// Inserts the key made from `k` and the value made from `margs` at index i.
    template <class KArg, class... MArgs>
    size_type insert_at_(size_type i, KArg&& k, MArgs&&... margs) {
        const auto d = static_cast<difference_type>(i);
        if constexpr (nothrow_shift_) {
            // A standard sequence container has no effect when an insertion throws for any
            // reason but a throwing move, so one erase undoes the key if the value fails.
            c_.keys.emplace(c_.keys.begin() + d, std::forward<KArg>(k));
            detail::on_exception undo{[this, d] { c_.keys.erase(c_.keys.begin() + d); }};
            c_.values.emplace(c_.values.begin() + d, std::forward<MArgs>(margs)...);
            undo.dismiss();
        } else {
            detail::on_exception undo{[this] { clear(); }};
            c_.keys.emplace(c_.keys.begin() + d, std::forward<KArg>(k));
            c_.values.emplace(c_.values.begin() + d, std::forward<MArgs>(margs)...);
            undo.dismiss();
        }
        return i;
    }

    template <class K, class... MArgs>
    std::pair<size_type, bool> try_emplace_(K&& k, MArgs&&... margs) {
        const size_type i = lower_index_(k);
        if (i != size() && !compare_(k, key_at_(i))) return {i, false};
        return {insert_at_(i, std::forward<K>(k), std::forward<MArgs>(margs)...), true};
    }

    template <class K, class... MArgs>
    size_type hinted_try_emplace_(size_type h, K&& k, MArgs&&... margs) {
        const size_type n = size();
        if ((h == 0 || compare_(key_at_(h - 1), k)) && (h == n || compare_(k, key_at_(h))))
            return insert_at_(h, std::forward<K>(k), std::forward<MArgs>(margs)...);
        return try_emplace_(std::forward<K>(k), std::forward<MArgs>(margs)...).first;
    }

    size_type hinted_insert_(size_type h, key_type&& k, mapped_type&& v) {
        if constexpr (Multi) {
            // As close to the hint as the order allows (std::multimap's rule).
            const size_type n = size();
            const bool after_prev = h == 0 || !compare_(k, key_at_(h - 1));
            const bool before_next = h == n || !compare_(key_at_(h), k);
            size_type i = h;
            if (!after_prev) i = bound_index<true>(c_.keys.cbegin(), h, k, compare_);
            else if (!before_next)
                i = h + bound_index<false>(c_.keys.cbegin() + static_cast<difference_type>(h),
                                           n - h, k, compare_);
            return insert_at_(i, std::move(k), std::move(v));
        } else {
            return hinted_try_emplace_(h, std::move(k), std::move(v));
        }
    }

    template <class K, class M>
    std::pair<iterator, bool> insert_or_assign_(K&& k, M&& obj) {
        const size_type i = lower_index_(k);
        if (i != size() && !compare_(k, key_at_(i))) {
            value_at_(i) = std::forward<M>(obj);
            return {iter_at_(i), false};
        }
        return {iter_at_(insert_at_(i, std::forward<K>(k), std::forward<M>(obj))), true};
    }

    // --- bulk insertion -----------------------------------------------------------------

    template <bool Sorted, class It, class Sent>
    void insert_range_(It first, Sent last) {
        const size_type n = size();
        {
            detail::on_exception undo{[this, n] { truncate_(n); }};
            if constexpr (std::sized_sentinel_for<Sent, It> || std::forward_iterator<It>) {
                const auto m = static_cast<size_type>(std::ranges::distance(first, last));
                reserve_if_possible(c_.keys, n + m);
                reserve_if_possible(c_.values, n + m);
            }
            for (; first != last; ++first) append_(*first);
            undo.dismiss();
        }
        merge_tail_<Sorted>(n);
    }

    template <class E>
    void append_(E&& e) {
        using elem = std::remove_cvref_t<E>;
        if constexpr (is_std_pair<elem> &&
                      std::is_constructible_v<key_type, decltype(std::get<0>(std::declval<E>()))>) {
            c_.keys.emplace_back(std::get<0>(std::forward<E>(e)));
            c_.values.emplace_back(std::get<1>(std::forward<E>(e)));
        } else {
            value_type t(std::forward<E>(e));
            c_.keys.emplace_back(std::move(t.first));
            c_.values.emplace_back(std::move(t.second));
        }
    }

    /// Erases [n, size()) from both containers (which may differ in length by one while a range
    /// is being appended).
    void truncate_(size_type n) noexcept {
        const auto d = static_cast<difference_type>(n);
        c_.keys.erase(c_.keys.begin() + d, c_.keys.end());
        c_.values.erase(c_.values.begin() + d, c_.values.end());
    }

    /// Merges the unsorted elements [n, size()) into the sorted [0, n).
    template <bool Sorted>
    void merge_tail_(size_type n) {
        const size_type total = size();
        if (total == n) return;
        const size_type m = total - n;
        const auto kb = c_.keys.begin();
        const auto vb = c_.values.begin();
        const auto dn = static_cast<difference_type>(n);
        std::vector<size_type> order;
        std::vector<key_type> new_keys;
        std::vector<mapped_type> new_values;
        {
            // Until the head [0, n) is written to, failing is undone by dropping the tail.
            detail::on_exception undo{[this, n] { truncate_(n); }};
            if constexpr (Sorted) check_sorted<!Multi>(name_, kb + dn, c_.keys.end(), compare_);
            order = merge_plan<!Multi, Sorted>(kb, n, kb + dn, m, compare_);
            if (order.size() == m && in_place_(n, order)) {
                undo.dismiss();
                return;
            }
            new_keys.reserve(order.size());
            new_values.reserve(order.size());
            for (const size_type j : order) {
                const auto d = dn + static_cast<difference_type>(j);
                new_keys.push_back(std::move(kb[d]));
                new_values.push_back(std::move(vb[d]));
            }
            undo.dismiss();
        }
        detail::on_exception undo{[this] { clear(); }};
        truncate_(n + order.size());
        // Backward merge: the largest remaining element goes to the last free slot, so nothing
        // is overwritten before it has been moved. On equal keys (flat_multimap) the new element
        // goes after the existing ones.
        const auto kb2 = c_.keys.begin();
        const auto vb2 = c_.values.begin();
        auto i = dn;
        auto j = static_cast<difference_type>(new_keys.size());
        auto w = dn + j;
        while (j > 0) {
            --w;
            if (i > 0 && compare_(new_keys[static_cast<size_type>(j - 1)], kb2[i - 1])) {
                --i;
                kb2[w] = std::move(kb2[i]);
                vb2[w] = std::move(vb2[i]);
            } else {
                --j;
                kb2[w] = std::move(new_keys[static_cast<size_type>(j)]);
                vb2[w] = std::move(new_values[static_cast<size_type>(j)]);
            }
        }
        undo.dismiss();
    }

    /// True when the new elements, in their current order, already continue the sorted head.
    bool in_place_(size_type n, const std::vector<size_type>& order) const {
        for (size_type j = 0; j < order.size(); ++j)
            if (order[j] != j) return false;
        if (n == 0 || order.empty()) return true;
        const key_type& last_old = key_at_(n - 1);
        const key_type& first_new = key_at_(n);
        return Multi ? !compare_(first_new, last_old) : compare_(last_old, first_new);
    }

    void adopt_unsorted_() {
        if (c_.keys.size() != c_.values.size()) throw_size_mismatch(name_);
        merge_tail_<false>(0);
    }
    void adopt_sorted_() {
        if (c_.keys.size() != c_.values.size()) throw_size_mismatch(name_);
        check_sorted<!Multi>(name_, c_.keys.begin(), c_.keys.end(), compare_);
    }

    // --- erasure ------------------------------------------------------------------------

    void erase_indices_(size_type i, size_type j) {
        const auto di = static_cast<difference_type>(i), dj = static_cast<difference_type>(j);
        if constexpr (nothrow_shift_) {
            c_.keys.erase(c_.keys.begin() + di, c_.keys.begin() + dj);
            c_.values.erase(c_.values.begin() + di, c_.values.begin() + dj);
        } else {
            detail::on_exception undo{[this] { clear(); }};
            c_.keys.erase(c_.keys.begin() + di, c_.keys.begin() + dj);
            c_.values.erase(c_.values.begin() + di, c_.values.begin() + dj);
            undo.dismiss();
        }
    }

    template <class K>
    size_type erase_key_(const K& k) {
        const auto [i, j] = equal_indices_(k);
        if (i != j) erase_indices_(i, j);
        return j - i;
    }

    containers c_;
    [[no_unique_address]] key_compare compare_;
};

/// erase_if for flat_map and flat_multimap: one compaction pass over both containers. If `pred`
/// throws, the elements already removed stay removed and the rest is kept.
template <class Map, class Pred>
typename Map::size_type flat_map_erase_if(Map& m, Pred& pred) {
    using size_type = typename Map::size_type;
    using const_reference = typename Map::const_reference;
    auto c = std::move(m).extract();
    const size_type n = c.keys.size();
    auto kb = c.keys.begin();
    auto vb = c.values.begin();
    size_type w = 0, r = 0;
    auto compact = [&](bool test) {
        for (; r < n; ++r) {
            const auto dr = static_cast<std::ptrdiff_t>(r);
            if (test && pred(const_reference(kb[dr], std::as_const(vb[dr])))) continue;
            if (w != r) {
                const auto dw = static_cast<std::ptrdiff_t>(w);
                kb[dw] = std::move(kb[dr]);
                vb[dw] = std::move(vb[dr]);
            }
            ++w;
        }
    };
    auto finish = [&] {
        c.keys.erase(c.keys.begin() + static_cast<std::ptrdiff_t>(w), c.keys.end());
        c.values.erase(c.values.begin() + static_cast<std::ptrdiff_t>(w), c.values.end());
        m.replace(std::move(c.keys), std::move(c.values));
    };
    try {
        compact(true);
    } catch (...) {
        compact(false); // keep what the predicate has not seen; the map stays sorted
        finish();
        throw;
    }
    finish();
    return n - w;
}

template <class Iter>
using iter_key_t = std::remove_const_t<typename std::iter_value_t<Iter>::first_type>;
template <class Iter>
using iter_mapped_t = typename std::iter_value_t<Iter>::second_type;

} // namespace detail

/// A sorted map with unique keys on a key sequence and a mapped sequence (C++23 std::flat_map).
template <class Key, class T, class Compare = std::less<Key>, class KeyContainer = std::vector<Key>,
          class MappedContainer = std::vector<T>>
class flat_map
    : public detail::flat_map_base<Key, T, Compare, KeyContainer, MappedContainer, false> {
    using base_ = detail::flat_map_base<Key, T, Compare, KeyContainer, MappedContainer, false>;

public:
    using base_::base_;
    flat_map() = default;
    // Declared here as well as inherited: class template argument deduction from a braced list
    // of pairs looks for an initializer-list constructor of the class itself.
    flat_map(std::initializer_list<typename base_::value_type> il,
             const typename base_::key_compare& comp = typename base_::key_compare())
        : base_(il, comp) {}
    flat_map& operator=(std::initializer_list<typename base_::value_type> il) {
        this->assign_(il);
        return *this;
    }
    friend void swap(flat_map& x, flat_map& y) noexcept(noexcept(x.swap(y))) { x.swap(y); }
};

/// A sorted map with equivalent keys allowed (C++23 std::flat_multimap).
template <class Key, class T, class Compare = std::less<Key>, class KeyContainer = std::vector<Key>,
          class MappedContainer = std::vector<T>>
class flat_multimap
    : public detail::flat_map_base<Key, T, Compare, KeyContainer, MappedContainer, true> {
    using base_ = detail::flat_map_base<Key, T, Compare, KeyContainer, MappedContainer, true>;

public:
    using base_::base_;
    flat_multimap() = default;
    // Declared here as well as inherited: class template argument deduction from a braced list
    // of pairs looks for an initializer-list constructor of the class itself.
    flat_multimap(std::initializer_list<typename base_::value_type> il,
                  const typename base_::key_compare& comp = typename base_::key_compare())
        : base_(il, comp) {}
    flat_multimap& operator=(std::initializer_list<typename base_::value_type> il) {
        this->assign_(il);
        return *this;
    }
    friend void swap(flat_multimap& x, flat_multimap& y) noexcept(noexcept(x.swap(y))) {
        x.swap(y);
    }
};

/// Removes every element for which pred(const_reference) is true; returns how many. O(n).
template <class Key, class T, class Compare, class KC, class MC, class Pred>
typename flat_map<Key, T, Compare, KC, MC>::size_type erase_if(flat_map<Key, T, Compare, KC, MC>& m,
                                                               Pred pred) {
    return detail::flat_map_erase_if(m, pred);
}
template <class Key, class T, class Compare, class KC, class MC, class Pred>
typename flat_multimap<Key, T, Compare, KC, MC>::size_type
erase_if(flat_multimap<Key, T, Compare, KC, MC>& m, Pred pred) {
    return detail::flat_map_erase_if(m, pred);
}

// Deduction guides (the common subset of the standard's).
template <class KC, class MC, class Compare = std::less<typename KC::value_type>>
requires(!std::input_iterator<KC> && !detail::allocator_like<MC> &&
         !detail::allocator_like<Compare>) flat_map(KC, MC, Compare = Compare())
->flat_map<typename KC::value_type, typename MC::value_type, Compare, KC, MC>;
template <class KC, class MC, class Alloc>
requires(std::uses_allocator_v<KC, Alloc>&& std::uses_allocator_v<MC, Alloc>)
    flat_map(KC, MC, Alloc)
->flat_map<typename KC::value_type, typename MC::value_type, std::less<typename KC::value_type>, KC,
           MC>;
template <class KC, class MC, class Compare = std::less<typename KC::value_type>>
requires(!detail::allocator_like<Compare>) flat_map(sorted_unique_t, KC, MC, Compare = Compare())
->flat_map<typename KC::value_type, typename MC::value_type, Compare, KC, MC>;
template <std::input_iterator It, class Compare = std::less<detail::iter_key_t<It>>>
requires(!detail::allocator_like<Compare>) flat_map(It, It, Compare = Compare())
->flat_map<detail::iter_key_t<It>, detail::iter_mapped_t<It>, Compare>;
template <std::input_iterator It, class Compare = std::less<detail::iter_key_t<It>>>
requires(!detail::allocator_like<Compare>) flat_map(sorted_unique_t, It, It, Compare = Compare())
->flat_map<detail::iter_key_t<It>, detail::iter_mapped_t<It>, Compare>;
template <class Key, class T, class Compare = std::less<Key>>
requires(!detail::allocator_like<Compare>)
    flat_map(std::initializer_list<std::pair<Key, T>>, Compare = Compare())
->flat_map<Key, T, Compare>;
template <class Key, class T, class Compare = std::less<Key>>
requires(!detail::allocator_like<Compare>)
    flat_map(sorted_unique_t, std::initializer_list<std::pair<Key, T>>, Compare = Compare())
->flat_map<Key, T, Compare>;

template <class KC, class MC, class Compare = std::less<typename KC::value_type>>
requires(!std::input_iterator<KC> && !detail::allocator_like<MC> &&
         !detail::allocator_like<Compare>) flat_multimap(KC, MC, Compare = Compare())
->flat_multimap<typename KC::value_type, typename MC::value_type, Compare, KC, MC>;
template <class KC, class MC, class Compare = std::less<typename KC::value_type>>
requires(!detail::allocator_like<Compare>)
    flat_multimap(sorted_equivalent_t, KC, MC, Compare = Compare())
->flat_multimap<typename KC::value_type, typename MC::value_type, Compare, KC, MC>;
template <std::input_iterator It, class Compare = std::less<detail::iter_key_t<It>>>
requires(!detail::allocator_like<Compare>) flat_multimap(It, It, Compare = Compare())
->flat_multimap<detail::iter_key_t<It>, detail::iter_mapped_t<It>, Compare>;
template <class Key, class T, class Compare = std::less<Key>>
requires(!detail::allocator_like<Compare>)
    flat_multimap(std::initializer_list<std::pair<Key, T>>, Compare = Compare())
->flat_multimap<Key, T, Compare>;

namespace pmr {
/// flat_map whose keys and values are std::pmr::vectors on one memory resource.
template <class Key, class T, class Compare = std::less<Key>>
using flat_map = memkit::flat_map<Key, T, Compare, std::pmr::vector<Key>, std::pmr::vector<T>>;
template <class Key, class T, class Compare = std::less<Key>>
using flat_multimap =
    memkit::flat_multimap<Key, T, Compare, std::pmr::vector<Key>, std::pmr::vector<T>>;
} // namespace pmr

} // namespace memkit

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// pair_ref is tuple-like (structured bindings, std::get, std::views::keys / values) ...
template <class KRef, class VRef>
struct std::tuple_size<memkit::detail::pair_ref<KRef, VRef>>
    : std::integral_constant<std::size_t, 2> {};
template <class KRef, class VRef>
struct std::tuple_element<0, memkit::detail::pair_ref<KRef, VRef>> {
    using type = KRef;
};
template <class KRef, class VRef>
struct std::tuple_element<1, memkit::detail::pair_ref<KRef, VRef>> {
    using type = VRef;
};

// ... and has a common reference with the value type: a pair_ref to the more const of the two
// (what C++23 gives std::pair<const K&, T&> and std::pair<K, T>).
template <class KRef, class VRef, class K, class V, template <class> class TQual,
          template <class> class UQual>
requires requires {
    typename std::common_reference_t<KRef, UQual<K>>;
    typename std::common_reference_t<VRef, UQual<V>>;
}
struct std::basic_common_reference<memkit::detail::pair_ref<KRef, VRef>, std::pair<K, V>, TQual,
                                   UQual> {
    using type = memkit::detail::pair_ref<std::common_reference_t<KRef, UQual<K>>,
                                          std::common_reference_t<VRef, UQual<V>>>;
};
template <class K, class V, class KRef, class VRef, template <class> class TQual,
          template <class> class UQual>
requires requires {
    typename std::common_reference_t<KRef, TQual<K>>;
    typename std::common_reference_t<VRef, TQual<V>>;
}
struct std::basic_common_reference<std::pair<K, V>, memkit::detail::pair_ref<KRef, VRef>, TQual,
                                   UQual> {
    using type = memkit::detail::pair_ref<std::common_reference_t<KRef, TQual<K>>,
                                          std::common_reference_t<VRef, TQual<V>>>;
};

// A flat map uses an allocator when both of its containers do (as std::flat_map).
template <class Key, class T, class Compare, class KC, class MC, class Alloc>
struct std::uses_allocator<memkit::flat_map<Key, T, Compare, KC, MC>, Alloc>
    : std::bool_constant<std::uses_allocator_v<KC, Alloc> && std::uses_allocator_v<MC, Alloc>> {};
template <class Key, class T, class Compare, class KC, class MC, class Alloc>
struct std::uses_allocator<memkit::flat_multimap<Key, T, Compare, KC, MC>, Alloc>
    : std::bool_constant<std::uses_allocator_v<KC, Alloc> && std::uses_allocator_v<MC, Alloc>> {};
