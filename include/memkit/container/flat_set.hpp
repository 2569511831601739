// memkit/container/flat_set.hpp - sorted sets on one sequence container: flat_set and
// flat_multiset, with the interface of C++23's std::flat_set / std::flat_multiset.
//
// The keys live sorted in one sequence container (std::vector<Key> by default): lookups are
// binary searches over dense memory (branchless for number and pointer keys under std::less /
// std::greater), iteration is a walk through an array, and the set costs no memory per element
// beyond the key. Use it for sets that are built in bulk and then read, or iterated often; use
// std::set when single-element inserts and erases in large sets dominate, or when references
// must stay valid across changes.
//
// Interface (as std::flat_set): container_type, extract() && / replace(container),
// key_comp()/value_comp(), the sorted_unique (flat_set) and sorted_equivalent (flat_multiset)
// tags, find / contains / count / lower_bound / upper_bound / equal_range, emplace /
// emplace_hint / insert (value, hint, range, initializer_list, sorted range) / insert_range, erase
// (iterator, range, key), erase_if, swap, clear, == and <=>. Lookups, erase(key) and (flat_set)
// insert(K&&) have heterogeneous overloads when Compare::is_transparent. Not provided:
// std::from_range_t constructors (C++23).
//
// Iterators: iterator and const_iterator are both the container's const_iterator (random access;
// contiguous for std::vector): elements cannot be modified in place, as that could break the
// order.
//
// Complexity (n elements, m inserted):
//   lookup                               O(log n) comparisons
//   insert / emplace / erase one element O(log n) comparisons + O(n) element moves
//   emplace_hint with a correct hint     O(1) comparisons + O(n) moves
//   insert a range, construct from one   O(n + m log m): appended, sorted once (stable; a radix
//                                        sort for integer keys under std::less / std::greater),
//                                        merged in one backward pass; flat_set drops duplicates
//                                        once, keeping the first of equal keys (as std::set)
//   insert(sorted_unique, range)         O(n + m)
// Iterator and reference stability: like std::vector's. Every insertion and erasure invalidates
// all iterators and references; lookups invalidate nothing.
//
// Exception safety:
//  - Single-element insertion gives the strong guarantee when Key has a non-throwing move
//    constructor and move assignment (and the container gives the standard sequence-container
//    guarantee, as std::vector and std::deque do). Otherwise an exception thrown while the
//    container shifts elements leaves the set empty (the standard's rule).
//  - Range insertion and construction: strong guarantee for failures while the new elements are
//    copied in, sorted or checked against the set. A comparator or Key move assignment that
//    throws during the final merge leaves the set empty.
//  - erase: nothrow when Key has a non-throwing move assignment; otherwise a throw leaves the set
//    empty. erase_if: if the predicate throws, elements already removed stay removed.
//  - Copy and move assignment, replace(): if the container operation throws, the set is empty.
//    Move construction and extract() leave the source empty.
// A set is never left unsorted (or, for flat_set, with equivalent keys).
//
// Errors: a sorted_unique / sorted_equivalent input that is not sorted (or, for flat_set, holds
// equal keys) throws std::invalid_argument in MEMKIT_CHECKS builds and is undefined otherwise;
// growth beyond max_size() throws std::length_error; allocation failures propagate
// std::bad_alloc (memkit::out_of_memory from memkit allocators).
//
// Allocators: memory comes from the container. Allocator-extended constructors exist when the
// container uses the allocator (std::uses_allocator, which is specialized for the sets too);
// memkit::pmr::flat_set<K> uses std::pmr::vector. Bulk insertion takes temporary scratch memory
// proportional to m (the sort order and the new keys) from the global heap, as std::stable_sort
// does. Swapping sets
// whose containers have unequal allocators that do not propagate on swap is undefined.
//
// Thread-safety: not thread-safe; like std containers, concurrent const access is fine.
//
//   memkit::flat_set<int> s{5, 1, 3, 1};   // {1, 3, 5}
//   s.insert({4, 2});                      // sorted and merged once
//   bool has = s.contains(3);
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

namespace memkit {

namespace detail {

/// The implementation shared by flat_set (Multi == false) and flat_multiset (Multi == true).
template <class Key, class Compare, class KeyContainer, bool Multi>
class flat_set_base {
    static_assert(std::is_same_v<Key, typename KeyContainer::value_type>,
                  "memkit::flat_set: KeyContainer::value_type must be Key");
    static_assert(std::random_access_iterator<typename KeyContainer::iterator>,
                  "memkit::flat_set: the container must have random access iterators");

    static constexpr const char* name_ = Multi ? "memkit::flat_multiset" : "memkit::flat_set";

    template <class Alloc>
    static constexpr bool uses_alloc_ = std::uses_allocator_v<KeyContainer, Alloc>;

    static constexpr bool nothrow_shift_ =
        std::is_nothrow_move_constructible_v<Key> && std::is_nothrow_move_assignable_v<Key>;

public:
    using key_type = Key;
    using value_type = Key;
    using key_compare = Compare;
    using value_compare = Compare;
    using reference = value_type&;
    using const_reference = const value_type&;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using iterator = typename KeyContainer::const_iterator;
    using const_iterator = typename KeyContainer::const_iterator;
    using reverse_iterator = std::reverse_iterator<iterator>;
    using const_reverse_iterator = std::reverse_iterator<const_iterator>;
    using container_type = KeyContainer;
    /// sorted_unique_t for flat_set, sorted_equivalent_t for flat_multiset.
    using sorted_tag = std::conditional_t<Multi, sorted_equivalent_t, sorted_unique_t>;
    /// What insert/emplace return: pair<iterator, bool> (flat_set) or iterator (flat_multiset).
    using insert_return_type = std::conditional_t<Multi, iterator, std::pair<iterator, bool>>;

    // --- construction -------------------------------------------------------------------

    flat_set_base() : flat_set_base(key_compare()) {}
    explicit flat_set_base(const key_compare& comp) : c_(), compare_(comp) {}

    template <class Alloc>
    requires uses_alloc_<Alloc>
    explicit flat_set_base(const Alloc& a) : flat_set_base(key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(const key_compare& comp, const Alloc& a)
        : c_(std::make_obj_using_allocator<container_type>(a)), compare_(comp) {}

    /// Takes the container as it is, then sorts it (stable) and, for flat_set, drops all but
    /// the first of equal keys.
    explicit flat_set_base(container_type cont, const key_compare& comp = key_compare())
        : c_(std::move(cont)), compare_(comp) {
        merge_tail_<false>(0);
    }

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(const container_type& cont, const Alloc& a)
        : flat_set_base(cont, key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(const container_type& cont, const key_compare& comp,
                                              const Alloc& a)
        : c_(std::make_obj_using_allocator<container_type>(a, cont)), compare_(comp) {
        merge_tail_<false>(0);
    }

    /// Takes a container that is already sorted (and unique, for flat_set).
    flat_set_base(sorted_tag, container_type cont, const key_compare& comp = key_compare())
        : c_(std::move(cont)), compare_(comp) {
        check_sorted<!Multi>(name_, c_.begin(), c_.end(), compare_);
    }

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(sorted_tag s, const container_type& cont,
                                              const Alloc& a)
        : flat_set_base(s, cont, key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(sorted_tag, const container_type& cont,
                                              const key_compare& comp, const Alloc& a)
        : c_(std::make_obj_using_allocator<container_type>(a, cont)), compare_(comp) {
        check_sorted<!Multi>(name_, c_.begin(), c_.end(), compare_);
    }

    template <std::input_iterator InputIt>
    flat_set_base(InputIt first, InputIt last, const key_compare& comp = key_compare())
        : c_(), compare_(comp) {
        insert(first, last);
    }

    template <std::input_iterator InputIt, class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(InputIt first, InputIt last, const Alloc& a)
        : flat_set_base(key_compare(), a) {
        insert(first, last);
    }

    template <std::input_iterator InputIt, class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(InputIt first, InputIt last, const key_compare& comp,
                                              const Alloc& a)
        : flat_set_base(comp, a) {
        insert(first, last);
    }

    template <std::input_iterator InputIt>
    flat_set_base(sorted_tag s, InputIt first, InputIt last,
                  const key_compare& comp = key_compare())
        : c_(), compare_(comp) {
        insert(s, first, last);
    }

    template <std::input_iterator InputIt, class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(sorted_tag s, InputIt first, InputIt last,
                                              const Alloc& a)
        : flat_set_base(key_compare(), a) {
        insert(s, first, last);
    }

    template <std::input_iterator InputIt, class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(sorted_tag s, InputIt first, InputIt last,
                                              const key_compare& comp, const Alloc& a)
        : flat_set_base(comp, a) {
        insert(s, first, last);
    }

    flat_set_base(std::initializer_list<value_type> il, const key_compare& comp = key_compare())
        : flat_set_base(il.begin(), il.end(), comp) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(std::initializer_list<value_type> il, const Alloc& a)
        : flat_set_base(il.begin(), il.end(), key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(std::initializer_list<value_type> il,
                                              const key_compare& comp, const Alloc& a)
        : flat_set_base(il.begin(), il.end(), comp, a) {}

    flat_set_base(sorted_tag s, std::initializer_list<value_type> il,
                  const key_compare& comp = key_compare())
        : flat_set_base(s, il.begin(), il.end(), comp) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(sorted_tag s, std::initializer_list<value_type> il,
                                              const Alloc& a)
        : flat_set_base(s, il.begin(), il.end(), key_compare(), a) {}

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(sorted_tag s, std::initializer_list<value_type> il,
                                              const key_compare& comp, const Alloc& a)
        : flat_set_base(s, il.begin(), il.end(), comp, a) {}

    flat_set_base(const flat_set_base&) = default;

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(const flat_set_base& o, const Alloc& a)
        : c_(std::make_obj_using_allocator<container_type>(a, o.c_)), compare_(o.compare_) {}

    /// Leaves `o` empty (a moved-from container may still hold moved-from keys).
    flat_set_base(flat_set_base&& o) noexcept(
        std::is_nothrow_move_constructible_v<container_type>&&
            std::is_nothrow_copy_constructible_v<key_compare>) try
        : c_(std::move(o.c_)), compare_(o.compare_) {
        o.clear();
    } catch (...) {
        o.clear();
    }

    template <class Alloc>
    requires uses_alloc_<Alloc> flat_set_base(flat_set_base&& o, const Alloc& a)
    try : c_(std::make_obj_using_allocator<container_type>(a, std::move(o.c_))),
        compare_(o.compare_) {
        o.clear();
    } catch (...) {
        o.clear();
    }

    flat_set_base& operator=(const flat_set_base& o) {
        if (this != &o) {
            detail::on_exception undo{[this] { clear(); }};
            c_ = o.c_;
            compare_ = o.compare_;
            undo.dismiss();
        }
        return *this;
    }

    flat_set_base&
    operator=(flat_set_base&& o) noexcept(std::is_nothrow_move_assignable_v<container_type>&&
                                              std::is_nothrow_copy_assignable_v<key_compare>) {
        if (this != &o) {
            detail::on_exception undo{[this, &o] {
                clear();
                o.clear();
            }};
            c_ = std::move(o.c_);
            compare_ = o.compare_;
            undo.dismiss();
            o.clear();
        }
        return *this;
    }

    ~flat_set_base() = default;

    // --- iterators ----------------------------------------------------------------------

    iterator begin() const noexcept { return c_.cbegin(); }
    iterator end() const noexcept { return c_.cend(); }
    reverse_iterator rbegin() const noexcept { return reverse_iterator(end()); }
    reverse_iterator rend() const noexcept { return reverse_iterator(begin()); }
    const_iterator cbegin() const noexcept { return begin(); }
    const_iterator cend() const noexcept { return end(); }
    const_reverse_iterator crbegin() const noexcept { return rbegin(); }
    const_reverse_iterator crend() const noexcept { return rend(); }

    // --- capacity -----------------------------------------------------------------------

    [[nodiscard]] bool empty() const noexcept { return c_.empty(); }
    [[nodiscard]] size_type size() const noexcept { return c_.size(); }
    [[nodiscard]] size_type max_size() const noexcept { return c_.max_size(); }

    // --- modifiers ----------------------------------------------------------------------

    template <class... Args>
    requires std::is_constructible_v<value_type, Args...>
        insert_return_type emplace(Args&&... args) {
        if constexpr (sizeof...(Args) == 1 &&
                      (std::is_same_v<std::remove_cvref_t<Args>, value_type> && ...)) {
            return insert_(std::forward<Args>(args)...);
        } else {
            value_type t(std::forward<Args>(args)...);
            return insert_(std::move(t));
        }
    }

    /// Inserts at `hint` when that keeps the order (O(1) comparisons), else where it belongs.
    template <class... Args>
    requires std::is_constructible_v<value_type, Args...> iterator emplace_hint(const_iterator hint,
                                                                                Args&&... args) {
        value_type t(std::forward<Args>(args)...);
        return iter_at_(hinted_insert_(index_of_(hint), std::move(t)));
    }

    insert_return_type insert(const value_type& x) { return insert_(x); }
    insert_return_type insert(value_type&& x) { return insert_(std::move(x)); }
    /// Heterogeneous insertion: looks `x` up as it is and builds a key only when inserting.
    template <class K>
    requires(!Multi && transparent_compare<Compare> && std::is_constructible_v<value_type, K> &&
             !std::is_convertible_v<K&&, const_iterator>) std::pair<iterator, bool> insert(K&& x) {
        return insert_(std::forward<K>(x));
    }
    iterator insert(const_iterator hint, const value_type& x) {
        return iter_at_(hinted_insert_(index_of_(hint), x));
    }
    iterator insert(const_iterator hint, value_type&& x) {
        return iter_at_(hinted_insert_(index_of_(hint), std::move(x)));
    }
    template <class K>
    requires(!Multi && transparent_compare<Compare> &&
             std::is_constructible_v<value_type, K>) iterator insert(const_iterator hint, K&& x) {
        return iter_at_(hinted_insert_(index_of_(hint), std::forward<K>(x)));
    }

    /// Appends the range, sorts the new part once and merges it in (O(n + m log m)). flat_set
    /// keeps the first of equal keys, existing elements first.
    template <std::input_iterator InputIt>
    void insert(InputIt first, InputIt last) {
        insert_range_<false>(std::move(first), std::move(last));
    }
    /// As insert(first, last) for a range already sorted (and unique, for flat_set): O(n + m).
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

    /// Moves the container out; the set is empty afterwards, even if the move throws.
    container_type extract() && {
        struct clear_at_exit {
            flat_set_base* self;
            ~clear_at_exit() { self->clear(); }
        } guard{this};
        return std::move(c_);
    }

    /// Takes `cont` as the new contents. Precondition: sorted (and unique, for flat_set),
    /// checked in MEMKIT_CHECKS builds.
    void replace(container_type&& cont) {
        check_sorted<!Multi>(name_, cont.begin(), cont.end(), compare_);
        detail::on_exception undo{[this] { clear(); }};
        c_ = std::move(cont);
        undo.dismiss();
    }

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
    requires(transparent_compare<Compare> && !std::is_convertible_v<K&&, const_iterator>) size_type
        erase(K&& k) {
        return erase_key_(k);
    }

    void swap(flat_set_base& o) noexcept(
        std::is_nothrow_swappable_v<container_type>&& std::is_nothrow_swappable_v<key_compare>) {
        std::ranges::swap(compare_, o.compare_);
        std::ranges::swap(c_, o.c_);
    }

    void clear() noexcept { c_.clear(); }

    // --- observers ----------------------------------------------------------------------

    key_compare key_comp() const { return compare_; }
    value_compare value_comp() const { return compare_; }

    // --- lookup -------------------------------------------------------------------------

    iterator find(const key_type& k) const { return iter_at_(find_index_(k)); }
    template <class K>
    requires transparent_compare<Compare> iterator find(const K& k)
    const { return iter_at_(find_index_(k)); }

    size_type count(const key_type& k) const { return count_(k); }
    template <class K>
    requires transparent_compare<Compare> size_type count(const K& k)
    const { return count_(k); }

    bool contains(const key_type& k) const { return find_index_(k) != size(); }
    template <class K>
    requires transparent_compare<Compare>
    bool contains(const K& k) const { return find_index_(k) != size(); }

    iterator lower_bound(const key_type& k) const { return iter_at_(lower_index_(k)); }
    template <class K>
    requires transparent_compare<Compare> iterator lower_bound(const K& k)
    const { return iter_at_(lower_index_(k)); }

    iterator upper_bound(const key_type& k) const { return iter_at_(upper_index_(k)); }
    template <class K>
    requires transparent_compare<Compare> iterator upper_bound(const K& k)
    const { return iter_at_(upper_index_(k)); }

    std::pair<iterator, iterator> equal_range(const key_type& k) const {
        const auto [i, j] = equal_indices_(k);
        return {iter_at_(i), iter_at_(j)};
    }
    template <class K>
    requires transparent_compare<Compare> std::pair<iterator, iterator> equal_range(const K& k)
    const {
        const auto [i, j] = equal_indices_(k);
        return {iter_at_(i), iter_at_(j)};
    }

    // --- comparison ---------------------------------------------------------------------

    friend bool operator==(const flat_set_base& x, const flat_set_base& y) {
        return x.size() == y.size() && std::ranges::equal(x.c_, y.c_);
    }

    // A template, so that a set of a type without ordering can still be instantiated.
    template <class K = key_type>
    friend synth_three_way_result<K> operator<=>(const flat_set_base& x, const flat_set_base& y) {
        return lexicographic_three_way<synth_three_way_result<K>>(x.c_.begin(), x.size(),
                                                                  y.c_.begin(), y.size());
    }

    friend void swap(flat_set_base& x, flat_set_base& y) noexcept(noexcept(x.swap(y))) {
        x.swap(y);
    }

protected:
    void assign_(std::initializer_list<value_type> il) {
        clear();
        insert(il);
    }

private:
    iterator iter_at_(size_type i) const noexcept {
        return c_.cbegin() + static_cast<difference_type>(i);
    }
    size_type index_of_(const_iterator it) const noexcept {
        return static_cast<size_type>(it - c_.cbegin());
    }
    const key_type& key_at_(size_type i) const {
        return c_.cbegin()[static_cast<difference_type>(i)];
    }

    template <class K>
    size_type lower_index_(const K& k) const {
        return bound_index<false>(c_.cbegin(), size(), k, compare_);
    }
    template <class K>
    size_type upper_index_(const K& k) const {
        return bound_index<true>(c_.cbegin(), size(), k, compare_);
    }
    template <class K>
    size_type find_index_(const K& k) const {
        const size_type n = size(), i = lower_index_(k);
        return i != n && !compare_(k, key_at_(i)) ? i : n;
    }
    template <class K>
    std::pair<size_type, size_type> equal_indices_(const K& k) const {
        const size_type i = lower_index_(k);
        if constexpr (Multi) {
            const auto rest = c_.cbegin() + static_cast<difference_type>(i);
            return {i, i + bound_index<true>(rest, size() - i, k, compare_)};
        } else {
            const bool found = i != size() && !compare_(k, key_at_(i));
            return {i, found ? i + 1 : i};
        }
    }
    template <class K>
    size_type count_(const K& k) const {
        const auto [i, j] = equal_indices_(k);
        return j - i;
    }

    template <class Arg>
    size_type insert_at_(size_type i, Arg&& x) {
        const auto d = static_cast<difference_type>(i);
        if constexpr (nothrow_shift_) {
            c_.emplace(c_.begin() + d, std::forward<Arg>(x));
        } else {
            detail::on_exception undo{[this] { clear(); }};
            c_.emplace(c_.begin() + d, std::forward<Arg>(x));
            undo.dismiss();
        }
        return i;
    }

    template <class Arg>
    insert_return_type insert_(Arg&& x) {
        if constexpr (Multi) {
            return iter_at_(insert_at_(upper_index_(x), std::forward<Arg>(x)));
        } else {
            const size_type i = lower_index_(x);
            if (i != size() && !compare_(x, key_at_(i))) return {iter_at_(i), false};
            return {iter_at_(insert_at_(i, std::forward<Arg>(x))), true};
        }
    }

    template <class Arg>
    size_type hinted_insert_(size_type h, Arg&& x) {
        const size_type n = size();
        if constexpr (Multi) {
            const bool after_prev = h == 0 || !compare_(x, key_at_(h - 1));
            const bool before_next = h == n || !compare_(key_at_(h), x);
            size_type i = h;
            if (!after_prev) i = bound_index<true>(c_.cbegin(), h, x, compare_);
            else if (!before_next)
                i = h + bound_index<false>(c_.cbegin() + static_cast<difference_type>(h), n - h, x,
                                           compare_);
            return insert_at_(i, std::forward<Arg>(x));
        } else {
            if ((h == 0 || compare_(key_at_(h - 1), x)) && (h == n || compare_(x, key_at_(h))))
                return insert_at_(h, std::forward<Arg>(x));
            const size_type i = lower_index_(x);
            if (i != n && !compare_(x, key_at_(i))) return i;
            return insert_at_(i, std::forward<Arg>(x));
        }
    }

    template <bool Sorted, class It, class Sent>
    void insert_range_(It first, Sent last) {
        const size_type n = size();
        {
            detail::on_exception undo{[this, n] { truncate_(n); }};
            if constexpr (std::sized_sentinel_for<Sent, It> || std::forward_iterator<It>) {
                const auto m = static_cast<size_type>(std::ranges::distance(first, last));
                reserve_if_possible(c_, n + m);
            }
            for (; first != last; ++first) c_.emplace_back(*first);
            undo.dismiss();
        }
        merge_tail_<Sorted>(n);
    }

    void truncate_(size_type n) noexcept {
        c_.erase(c_.begin() + static_cast<difference_type>(n), c_.end());
    }

    /// Merges the unsorted elements [n, size()) into the sorted [0, n).
    template <bool Sorted>
    void merge_tail_(size_type n) {
        const size_type total = size();
        if (total == n) return;
        const size_type m = total - n;
        const auto kb = c_.begin();
        const auto dn = static_cast<difference_type>(n);
        std::vector<size_type> order;
        std::vector<key_type> new_keys;
        {
            detail::on_exception undo{[this, n] { truncate_(n); }};
            if constexpr (Sorted) check_sorted<!Multi>(name_, kb + dn, c_.end(), compare_);
            order = merge_plan<!Multi, Sorted>(kb, n, kb + dn, m, compare_);
            if (order.size() == m && in_place_(n, order)) {
                undo.dismiss();
                return;
            }
            new_keys.reserve(order.size());
            for (const size_type j : order)
                new_keys.push_back(std::move(kb[dn + static_cast<difference_type>(j)]));
            undo.dismiss();
        }
        detail::on_exception undo{[this] { clear(); }};
        truncate_(n + order.size());
        const auto kb2 = c_.begin();
        auto i = dn;
        auto j = static_cast<difference_type>(new_keys.size());
        auto w = dn + j;
        while (j > 0) {
            --w;
            if (i > 0 && compare_(new_keys[static_cast<size_type>(j - 1)], kb2[i - 1])) {
                --i;
                kb2[w] = std::move(kb2[i]);
            } else {
                --j;
                kb2[w] = std::move(new_keys[static_cast<size_type>(j)]);
            }
        }
        undo.dismiss();
    }

    bool in_place_(size_type n, const std::vector<size_type>& order) const {
        for (size_type j = 0; j < order.size(); ++j)
            if (order[j] != j) return false;
        if (n == 0 || order.empty()) return true;
        const key_type& last_old = key_at_(n - 1);
        const key_type& first_new = key_at_(n);
        return Multi ? !compare_(first_new, last_old) : compare_(last_old, first_new);
    }

    void erase_indices_(size_type i, size_type j) {
        const auto di = static_cast<difference_type>(i), dj = static_cast<difference_type>(j);
        if constexpr (nothrow_shift_) {
            c_.erase(c_.begin() + di, c_.begin() + dj);
        } else {
            detail::on_exception undo{[this] { clear(); }};
            c_.erase(c_.begin() + di, c_.begin() + dj);
            undo.dismiss();
        }
    }

    template <class K>
    size_type erase_key_(const K& k) {
        const auto [i, j] = equal_indices_(k);
        if (i != j) erase_indices_(i, j);
        return j - i;
    }

    container_type c_;
    [[no_unique_address]] key_compare compare_;
};

/// erase_if for flat_set and flat_multiset: one compaction pass. If `pred` throws, the elements
/// already removed stay removed and the rest is kept.
template <class Set, class Pred>
typename Set::size_type flat_set_erase_if(Set& s, Pred& pred) {
    using size_type = typename Set::size_type;
    auto c = std::move(s).extract();
    const size_type n = c.size();
    auto kb = c.begin();
    size_type w = 0, r = 0;
    auto compact = [&](bool test) {
        for (; r < n; ++r) {
            const auto dr = static_cast<std::ptrdiff_t>(r);
            if (test && pred(std::as_const(kb[dr]))) continue;
            if (w != r) kb[static_cast<std::ptrdiff_t>(w)] = std::move(kb[dr]);
            ++w;
        }
    };
    auto finish = [&] {
        c.erase(c.begin() + static_cast<std::ptrdiff_t>(w), c.end());
        s.replace(std::move(c));
    };
    try {
        compact(true);
    } catch (...) {
        compact(false);
        finish();
        throw;
    }
    finish();
    return n - w;
}

} // namespace detail

/// A sorted set of unique keys on a sequence container (C++23 std::flat_set).
template <class Key, class Compare = std::less<Key>, class KeyContainer = std::vector<Key>>
class flat_set : public detail::flat_set_base<Key, Compare, KeyContainer, false> {
    using base_ = detail::flat_set_base<Key, Compare, KeyContainer, false>;

public:
    using base_::base_;
    flat_set() = default;
    // Declared here as well as inherited: class template argument deduction from a braced list
    // looks for an initializer-list constructor of the class itself.
    flat_set(std::initializer_list<Key> il, const Compare& comp = Compare()) : base_(il, comp) {}
    flat_set& operator=(std::initializer_list<Key> il) {
        this->assign_(il);
        return *this;
    }
    friend void swap(flat_set& x, flat_set& y) noexcept(noexcept(x.swap(y))) { x.swap(y); }
};

/// A sorted set that allows equivalent keys (C++23 std::flat_multiset).
template <class Key, class Compare = std::less<Key>, class KeyContainer = std::vector<Key>>
class flat_multiset : public detail::flat_set_base<Key, Compare, KeyContainer, true> {
    using base_ = detail::flat_set_base<Key, Compare, KeyContainer, true>;

public:
    using base_::base_;
    flat_multiset() = default;
    // Declared here as well as inherited: class template argument deduction from a braced list
    // looks for an initializer-list constructor of the class itself.
    flat_multiset(std::initializer_list<Key> il, const Compare& comp = Compare())
        : base_(il, comp) {}
    flat_multiset& operator=(std::initializer_list<Key> il) {
        this->assign_(il);
        return *this;
    }
    friend void swap(flat_multiset& x, flat_multiset& y) noexcept(noexcept(x.swap(y))) {
        x.swap(y);
    }
};

/// Removes every element for which pred(const Key&) is true; returns how many. O(n).
template <class Key, class Compare, class KC, class Pred>
typename flat_set<Key, Compare, KC>::size_type erase_if(flat_set<Key, Compare, KC>& s, Pred pred) {
    return detail::flat_set_erase_if(s, pred);
}
template <class Key, class Compare, class KC, class Pred>
typename flat_multiset<Key, Compare, KC>::size_type erase_if(flat_multiset<Key, Compare, KC>& s,
                                                             Pred pred) {
    return detail::flat_set_erase_if(s, pred);
}

// Deduction guides (the common subset of the standard's).
template <class KC, class Compare = std::less<typename KC::value_type>>
requires(!std::input_iterator<KC> && !detail::allocator_like<Compare>)
    flat_set(KC, Compare = Compare())
->flat_set<typename KC::value_type, Compare, KC>;
template <class KC, class Compare = std::less<typename KC::value_type>>
requires(!detail::allocator_like<Compare>) flat_set(sorted_unique_t, KC, Compare = Compare())
->flat_set<typename KC::value_type, Compare, KC>;
template <std::input_iterator It, class Compare = std::less<std::iter_value_t<It>>>
requires(!detail::allocator_like<Compare>) flat_set(It, It, Compare = Compare())
->flat_set<std::iter_value_t<It>, Compare>;
template <std::input_iterator It, class Compare = std::less<std::iter_value_t<It>>>
requires(!detail::allocator_like<Compare>) flat_set(sorted_unique_t, It, It, Compare = Compare())
->flat_set<std::iter_value_t<It>, Compare>;
template <class Key, class Compare = std::less<Key>>
requires(!detail::allocator_like<Compare>) flat_set(std::initializer_list<Key>, Compare = Compare())
->flat_set<Key, Compare>;
template <class Key, class Compare = std::less<Key>>
requires(!detail::allocator_like<Compare>)
    flat_set(sorted_unique_t, std::initializer_list<Key>, Compare = Compare())
->flat_set<Key, Compare>;

template <class KC, class Compare = std::less<typename KC::value_type>>
requires(!std::input_iterator<KC> && !detail::allocator_like<Compare>)
    flat_multiset(KC, Compare = Compare())
->flat_multiset<typename KC::value_type, Compare, KC>;
template <std::input_iterator It, class Compare = std::less<std::iter_value_t<It>>>
requires(!detail::allocator_like<Compare>) flat_multiset(It, It, Compare = Compare())
->flat_multiset<std::iter_value_t<It>, Compare>;
template <class Key, class Compare = std::less<Key>>
requires(!detail::allocator_like<Compare>)
    flat_multiset(std::initializer_list<Key>, Compare = Compare())
->flat_multiset<Key, Compare>;

namespace pmr {
/// flat_set on a std::pmr::vector.
template <class Key, class Compare = std::less<Key>>
using flat_set = memkit::flat_set<Key, Compare, std::pmr::vector<Key>>;
template <class Key, class Compare = std::less<Key>>
using flat_multiset = memkit::flat_multiset<Key, Compare, std::pmr::vector<Key>>;
} // namespace pmr

} // namespace memkit

template <class Key, class Compare, class KC, class Alloc>
struct std::uses_allocator<memkit::flat_set<Key, Compare, KC>, Alloc>
    : std::bool_constant<std::uses_allocator_v<KC, Alloc>> {};
template <class Key, class Compare, class KC, class Alloc>
struct std::uses_allocator<memkit::flat_multiset<Key, Compare, KC>, Alloc>
    : std::bool_constant<std::uses_allocator_v<KC, Alloc>> {};
