// memkit/container/intrusive_list.hpp - a doubly linked list through hooks inside the elements.
//
// `intrusive_list<T, Hook>` links objects that live elsewhere (in a pool, an arena, a vector, on
// the stack) without allocating: each element carries the two link pointers in a hook, so
// insertion and removal never fail, and an element can be erased in O(1) knowing only its
// address. The list does not own its elements: it never constructs or destroys them, and its
// destructor (and clear()) only unlinks them.
//
// The hook is `intrusive_list_hook<Tag, Mode>`, either as a base class of T
//   struct job : memkit::intrusive_list_hook<> {...};          memkit::intrusive_list<job> l;
// or as a member, named with member_hook
//   struct job { memkit::intrusive_list_hook<> hook; };
//   using job_hook = memkit::member_hook<job, memkit::intrusive_list_hook<>, &job::hook>;
//   memkit::intrusive_list<job, job_hook> l;
// An element is in at most one list per hook; to be in several lists at once it carries several
// hooks, told apart by a Tag type (`intrusive_list_hook<by_age>`, `intrusive_list_hook<by_lru>`,
// then `intrusive_list<job, intrusive_list_hook<by_age>>`) or by being members.
//
// Link modes. A hook knows whether it is linked (is_linked(); a copied hook starts unlinked and
// assignment leaves the links alone).
//   link_mode::safe (default)  - the list keeps a count: size() is O(1). Linking an element that
//       is already linked, or destroying a hook that is still linked, is a precondition
//       violation: debug builds report errc::invalid_argument (a double link) or
//       errc::still_in_use (a linked hook destroyed) to the violation handler and then
//       ignore the insertion / unlink the dying element (so the list stays walkable, though its
//       count is then off by one). Release builds do not check.
//   link_mode::auto_unlink     - destroying a linked element unlinks it silently, and
//       hook.unlink() removes an element from whatever list holds it. As the list cannot see
//       those removals it keeps no count: size() walks the list, O(n) (as Boost.Intrusive,
//       which forbids constant-time size with auto-unlink hooks).
//
// Complexity: push/pop at both ends, insert, erase(pos), erase(element), remove(element),
// iterator_to, splice of a whole list or one element, swap, empty: O(1). size: O(1) (safe) or
// O(n) (auto_unlink). clear, destructor, reverse, remove_if, merge: O(n). sort: O(n log n),
// stable, no allocation. splice of a range: O(distance) with a counted (safe) list from another
// list, to keep the count (as std::list); O(1) within one list, with auto_unlink hooks, or with
// the overload that is told the count.
// Stability: elements never move; iterators and references stay valid until the element is
// unlinked (splice, swap and move keep them valid, now into the other list). end() belongs to the
// list object: moving or swapping a list changes which end() its elements lead to.
// Exception safety: nothing here throws except user comparators and predicates: sort requires a
// comparator that does not throw (it is noexcept); merge and remove_if give the basic guarantee.
// Thread-safety: not thread-safe; like std containers, concurrent const access is fine. An
// auto_unlink hook's destructor writes to its neighbours: destroy such elements under the same
// lock as the list.
// Requirements: hooks are reached from T by static_cast (base hooks, public and non-virtual
// inheritance) or by the member pointer (member hooks, whose offset is read from the pointer
// to member as Boost.Intrusive does: Itanium and MSVC layouts). The list is movable, not
// copyable (copying would need the elements to be in two lists at once).
//
//   std::vector<job> jobs(3);  memkit::intrusive_list<job> queue;   // declare the list last
//   for (job& j : jobs) queue.push_back(j);
//   queue.erase(jobs[1]);                                             // O(1), by address
#pragma once

#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <type_traits>
#include <utility>

#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"

namespace memkit {

/// What a hook does when it is destroyed while linked; see the header comment.
enum class link_mode : unsigned char { safe, auto_unlink };

template <class T, class Hook>
class intrusive_list;

namespace detail {

struct list_node {
    list_node* next_ = nullptr; // nullptr: not linked
    list_node* prev_ = nullptr;
};

inline void unlink_node(list_node* n) noexcept {
    n->prev_->next_ = n->next_;
    n->next_->prev_ = n->prev_;
    n->next_ = n->prev_ = nullptr;
}

} // namespace detail

/// The links an element carries, as a base class or a member. `Tag` tells apart several hooks
/// of one element; `Mode` is the link mode.
template <class Tag = void, link_mode Mode = link_mode::safe>
class intrusive_list_hook {
public:
    using tag = Tag;
    static constexpr link_mode mode = Mode;

    intrusive_list_hook() noexcept = default;
    /// A copy of a linked element is a new, unlinked object.
    intrusive_list_hook(const intrusive_list_hook&) noexcept {}
    /// Assignment copies the element's value, not its place in a list.
    intrusive_list_hook& operator=(const intrusive_list_hook&) noexcept { return *this; }

    ~intrusive_list_hook() {
        if (!is_linked()) return;
        if constexpr (Mode == link_mode::auto_unlink) {
            detail::unlink_node(&node_);
        } else if constexpr (MEMKIT_CHECKS) {
            report_violation({errc::still_in_use, "memkit::intrusive_list", this,
                              "an element was destroyed while still in a list"});
            detail::unlink_node(&node_);
        }
    }

    [[nodiscard]] bool is_linked() const noexcept { return node_.next_ != nullptr; }

    /// Removes the element from the list that holds it, if any (auto_unlink hooks only: a safe
    /// list must see every removal to keep its count).
    void unlink() noexcept
        requires(Mode == link_mode::auto_unlink)
    {
        if (is_linked()) detail::unlink_node(&node_);
    }

private:
    template <class, class>
    friend class intrusive_list;
    detail::list_node node_;
};

/// Names a hook that is a member of T: `member_hook<T, intrusive_list_hook<>, &T::hook>`.
template <class T, class HookType, HookType T::*Member>
struct member_hook {
    using hook_type = HookType;
    static HookType& to_hook(T& v) noexcept { return v.*Member; }
    static T& to_value(HookType& h) noexcept {
        // The offset of the member, read from the pointer to member (Itanium ABI: the offset as
        // a ptrdiff_t; MSVC: an int offset first).
        constexpr auto member = Member;
        std::ptrdiff_t offset = 0;
        if constexpr (sizeof(member) == sizeof(std::ptrdiff_t)) {
            std::memcpy(&offset, &member, sizeof offset);
        } else {
            static_assert(sizeof(member) >= sizeof(int), "unknown pointer-to-member layout");
            int off = 0;
            std::memcpy(&off, &member, sizeof off);
            offset = off;
        }
        return *reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(&h) -
                                     static_cast<std::uintptr_t>(offset));
    }
};

/// Names a hook that is a base class of T; a bare intrusive_list_hook<...> means the same.
template <class HookType>
struct base_hook {
    using hook_type = HookType;
};

namespace detail {

template <class T, class Hook>
struct hook_access; // Hook: intrusive_list_hook<...>, base_hook<...> or member_hook<...>

template <class T, class Tag, link_mode Mode>
struct hook_access<T, intrusive_list_hook<Tag, Mode>> {
    using hook_type = intrusive_list_hook<Tag, Mode>;
    static_assert(std::is_base_of_v<hook_type, T>,
                  "T must derive from the hook (or name a member hook with member_hook)");
    static hook_type& to_hook(T& v) noexcept { return static_cast<hook_type&>(v); }
    static T& to_value(hook_type& h) noexcept { return static_cast<T&>(h); }
};

template <class T, class HookType>
struct hook_access<T, base_hook<HookType>> : hook_access<T, HookType> {};

template <class T, class HookType, HookType T::*Member>
struct hook_access<T, member_hook<T, HookType, Member>> : member_hook<T, HookType, Member> {};

} // namespace detail

template <class T, class Hook = intrusive_list_hook<>>
class intrusive_list {
    using access = detail::hook_access<T, Hook>;
    using hook_type = typename access::hook_type;
    using node = detail::list_node;
    static_assert(std::is_standard_layout_v<hook_type>);

    template <bool Const>
    class basic_iterator;

public:
    using value_type = T;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using reference = T&;
    using const_reference = const T&;
    using pointer = T*;
    using const_pointer = const T*;
    using iterator = basic_iterator<false>;
    using const_iterator = basic_iterator<true>;
    using reverse_iterator = std::reverse_iterator<iterator>;
    using const_reverse_iterator = std::reverse_iterator<const_iterator>;

    /// True when size() is O(1) (safe hooks); false with auto_unlink hooks.
    static constexpr bool constant_time_size = hook_type::mode == link_mode::safe;

    intrusive_list() noexcept { reset_head(); }
    intrusive_list(const intrusive_list&) = delete;
    intrusive_list& operator=(const intrusive_list&) = delete;
    /// Takes over `other`'s elements in O(1); `other` becomes empty.
    intrusive_list(intrusive_list&& other) noexcept {
        reset_head();
        take(other);
    }
    /// Unlinks this list's elements, then takes over `other`'s.
    intrusive_list& operator=(intrusive_list&& other) noexcept {
        if (this != &other) {
            clear();
            take(other);
        }
        return *this;
    }
    /// Unlinks every element (none is destroyed).
    ~intrusive_list() { clear(); }

    // ---- iterators -----------------------------------------------------------------------

    [[nodiscard]] iterator begin() noexcept { return iterator(head_.next_); }
    [[nodiscard]] iterator end() noexcept { return iterator(&head_); }
    [[nodiscard]] const_iterator begin() const noexcept { return const_iterator(head_.next_); }
    [[nodiscard]] const_iterator end() const noexcept { return const_iterator(sentinel()); }
    [[nodiscard]] const_iterator cbegin() const noexcept { return begin(); }
    [[nodiscard]] const_iterator cend() const noexcept { return end(); }
    [[nodiscard]] reverse_iterator rbegin() noexcept { return reverse_iterator(end()); }
    [[nodiscard]] reverse_iterator rend() noexcept { return reverse_iterator(begin()); }
    [[nodiscard]] const_reverse_iterator rbegin() const noexcept {
        return const_reverse_iterator(end());
    }
    [[nodiscard]] const_reverse_iterator rend() const noexcept {
        return const_reverse_iterator(begin());
    }
    [[nodiscard]] const_reverse_iterator crbegin() const noexcept { return rbegin(); }
    [[nodiscard]] const_reverse_iterator crend() const noexcept { return rend(); }

    /// The iterator to `v`, which must be in this list. O(1).
    [[nodiscard]] iterator iterator_to(T& v) noexcept { return iterator(node_of(v)); }
    [[nodiscard]] const_iterator iterator_to(const T& v) const noexcept {
        return const_iterator(node_of(const_cast<T&>(v)));
    }

    // ---- size ----------------------------------------------------------------------------

    [[nodiscard]] bool empty() const noexcept { return head_.next_ == &head_; }
    /// O(1) for safe hooks, O(n) for auto_unlink hooks.
    [[nodiscard]] size_type size() const noexcept {
        if constexpr (constant_time_size) {
            return count_;
        } else {
            size_type n = 0;
            for (const node* p = head_.next_; p != &head_; p = p->next_) ++n;
            return n;
        }
    }
    [[nodiscard]] static constexpr size_type max_size() noexcept {
        return static_cast<size_type>(std::numeric_limits<difference_type>::max());
    }

    // ---- element access (preconditions: not empty) ---------------------------------------

    [[nodiscard]] reference front() noexcept { return value_of(head_.next_); }
    [[nodiscard]] const_reference front() const noexcept { return value_of(head_.next_); }
    [[nodiscard]] reference back() noexcept { return value_of(head_.prev_); }
    [[nodiscard]] const_reference back() const noexcept { return value_of(head_.prev_); }

    // ---- insertion (precondition: the element is not linked through this hook) -----------

    void push_front(T& v) noexcept { link(head_.next_, node_of(v)); }
    void push_back(T& v) noexcept { link(&head_, node_of(v)); }
    /// Links `v` before `pos`; returns its iterator.
    iterator insert(const_iterator pos, T& v) noexcept {
        node* n = node_of(v);
        link(pos.n_, n);
        return iterator(n);
    }

    // ---- removal (unlinks; never destroys) -----------------------------------------------

    void pop_front() noexcept {
        if (MEMKIT_CHECKS && empty()) return report("pop_front on an empty list", this);
        unlink(head_.next_);
    }
    void pop_back() noexcept {
        if (MEMKIT_CHECKS && empty()) return report("pop_back on an empty list", this);
        unlink(head_.prev_);
    }
    /// Unlinks the element at `pos` (not end()); returns the iterator after it.
    iterator erase(const_iterator pos) noexcept {
        node* n = pos.n_;
        if (MEMKIT_CHECKS && (n == &head_ || n->next_ == nullptr)) {
            report("erase of end() or of an unlinked element", this);
            return end();
        }
        node* next = n->next_;
        unlink(n);
        return iterator(next);
    }
    /// Unlinks [first, last); returns `last`.
    iterator erase(const_iterator first, const_iterator last) noexcept {
        while (first != last) first = erase(first);
        return iterator(last.n_);
    }
    /// Unlinks `v`, which must be in this list, in O(1); returns the iterator after it.
    iterator erase(T& v) noexcept { return erase(const_iterator(node_of(v))); }
    /// Unlinks `v`, which must be in this list, in O(1). Unlike std::list::remove this removes
    /// one object by identity, not every element equal to it.
    void remove(T& v) noexcept { (void)erase(v); }
    /// Unlinks every element for which `pred` is true; returns how many.
    template <class Pred>
    size_type remove_if(Pred pred) {
        size_type n = 0;
        for (node* p = head_.next_; p != &head_;) {
            node* next = p->next_;
            if (pred(std::as_const(value_of(p)))) {
                unlink(p);
                ++n;
            }
            p = next;
        }
        return n;
    }
    /// Unlinks every element. O(n): each hook is reset so that it knows it is free.
    void clear() noexcept {
        for (node* p = head_.next_; p != &head_;) {
            node* next = p->next_;
            p->next_ = p->prev_ = nullptr;
            p = next;
        }
        reset_head();
        count_ = 0;
    }

    // ---- splice, swap --------------------------------------------------------------------

    /// Moves every element of `other` before `pos`. O(1).
    void splice(const_iterator pos, intrusive_list& other) noexcept {
        if (&other == this || other.empty()) return;
        const size_type n = other.count_;
        transfer(pos.n_, other.head_.next_, other.head_.prev_);
        count_ += n;
        other.count_ = 0;
    }
    void splice(const_iterator pos, intrusive_list&& other) noexcept { splice(pos, other); }

    /// Moves the element at `it` (in `other`, which may be *this) before `pos`. O(1).
    void splice(const_iterator pos, intrusive_list& other, const_iterator it) noexcept {
        node* n = it.n_;
        if (n == pos.n_) return;
        transfer(pos.n_, n, n);
        other.count_ -= 1;
        count_ += 1;
    }

    /// Moves [first, last) of `other` before `pos` (which must not be in the range). O(1) within
    /// one list or without a count; otherwise O(distance), to keep the counts.
    void splice(const_iterator pos, intrusive_list& other, const_iterator first,
                const_iterator last) noexcept {
        if (first == last) return;
        size_type n = 0;
        if constexpr (constant_time_size) {
            if (&other != this) n = static_cast<size_type>(std::distance(first, last));
        }
        splice_range(pos, other, first, last, n);
    }
    /// As above with the caller telling the range's length `n`: O(1). Debug builds check n.
    void splice(const_iterator pos, intrusive_list& other, const_iterator first,
                const_iterator last, size_type n) noexcept {
        if constexpr (MEMKIT_CHECKS) {
            if (static_cast<size_type>(std::distance(first, last)) != n)
                return report("splice told a wrong range length", this);
        }
        if (first == last) return;
        splice_range(pos, other, first, last, &other == this ? 0 : n);
    }

    /// Exchanges the elements of two lists in O(1).
    void swap(intrusive_list& other) noexcept {
        if (this == &other) return;
        intrusive_list tmp(std::move(other));
        other.take(*this);
        take(tmp);
    }
    friend void swap(intrusive_list& a, intrusive_list& b) noexcept { a.swap(b); }

    // ---- algorithms ----------------------------------------------------------------------

    /// Reverses the order of the elements. O(n).
    void reverse() noexcept {
        node* p = &head_;
        do {
            std::swap(p->next_, p->prev_);
            p = p->prev_; // the old next
        } while (p != &head_);
    }

    /// Stable merge sort, O(n log n) comparisons, no allocation. `comp` must not throw.
    template <class Compare = std::less<>>
    void sort(Compare comp = Compare()) noexcept {
        if (head_.next_ == head_.prev_) return; // 0 or 1 elements
        // Work on a null-terminated chain of next_ pointers; prev_ is rebuilt at the end.
        // bins[i] holds a sorted run of 2^i elements, older elements in higher bins.
        head_.prev_->next_ = nullptr;
        node* chain = head_.next_;
        node* bins[std::numeric_limits<size_type>::digits] = {};
        std::size_t used = 0;
        while (chain != nullptr) {
            node* run = chain;
            chain = chain->next_;
            run->next_ = nullptr;
            std::size_t i = 0;
            for (; i < used && bins[i] != nullptr; ++i) {
                run = merge_chains(bins[i], run, comp);
                bins[i] = nullptr;
            }
            bins[i] = run;
            if (i == used) ++used;
        }
        node* sorted = nullptr;
        for (std::size_t i = 0; i < used; ++i) {
            if (bins[i] != nullptr)
                sorted = sorted == nullptr ? bins[i] : merge_chains(bins[i], sorted, comp);
        }
        node* prev = &head_;
        for (node* p = sorted; p != nullptr; p = p->next_) {
            prev->next_ = p;
            p->prev_ = prev;
            prev = p;
        }
        prev->next_ = &head_;
        head_.prev_ = prev;
    }

    /// Merges the sorted list `other` into this sorted list; stable (of equal elements, this
    /// list's come first). `other` becomes empty. O(n + m).
    template <class Compare = std::less<>>
    void merge(intrusive_list& other, Compare comp = Compare()) {
        if (&other == this) return;
        node* pos = head_.next_;
        while (!other.empty()) {
            node* n = other.head_.next_;
            const T& v = value_of(n);
            while (pos != &head_ && !comp(v, std::as_const(value_of(pos)))) pos = pos->next_;
            transfer(pos, n, n);
            other.count_ -= 1;
            count_ += 1;
        }
    }
    template <class Compare = std::less<>>
    void merge(intrusive_list&& other, Compare comp = Compare()) {
        merge(other, std::move(comp));
    }

private:
    static node* node_of(T& v) noexcept { return &access::to_hook(v).node_; }
    // node_ is the only data member of the standard-layout hook: the two are interconvertible.
    static T& value_of(node* n) noexcept {
        return access::to_value(*reinterpret_cast<hook_type*>(n));
    }
    static const T& value_of(const node* n) noexcept { return value_of(const_cast<node*>(n)); }
    [[nodiscard]] node* sentinel() const noexcept { return const_cast<node*>(&head_); }

    void reset_head() noexcept { head_.next_ = head_.prev_ = &head_; }

    void link(node* pos, node* n) noexcept {
        if (MEMKIT_CHECKS && n->next_ != nullptr)
            return report("inserting an element that is already linked", n);
        n->prev_ = pos->prev_;
        n->next_ = pos;
        pos->prev_->next_ = n;
        pos->prev_ = n;
        ++count_;
    }
    void unlink(node* n) noexcept {
        detail::unlink_node(n);
        --count_;
    }

    // Moves the chain [first, last] (inclusive, linked) before `pos`, which is not in it. Every
    // pointer is read before any is written: the stores may alias the loads, and reading them
    // afterwards would make the compiler (and the CPU) wait for each store in turn.
    static void transfer(node* pos, node* first, node* last) noexcept {
        node* const after = last->next_;
        if (after == pos) return; // already there (and pos->prev_ is `last`)
        node* const before = first->prev_;
        node* const pos_prev = pos->prev_;
        before->next_ = after;
        after->prev_ = before;
        pos_prev->next_ = first;
        first->prev_ = pos_prev;
        last->next_ = pos;
        pos->prev_ = last;
    }

    void splice_range(const_iterator pos, intrusive_list& other, const_iterator first,
                      const_iterator last, size_type n) noexcept {
        transfer(pos.n_, first.n_, last.n_->prev_);
        other.count_ -= n;
        count_ += n;
    }

    void take(intrusive_list& other) noexcept {
        if (other.empty()) {
            reset_head();
        } else {
            head_.next_ = other.head_.next_;
            head_.prev_ = other.head_.prev_;
            head_.next_->prev_ = &head_;
            head_.prev_->next_ = &head_;
            other.reset_head();
        }
        count_ = other.count_;
        other.count_ = 0;
    }

    template <class Compare>
    static node* merge_chains(node* a, node* b, Compare& comp) noexcept {
        node dummy;
        node* tail = &dummy;
        while (a != nullptr && b != nullptr) {
            if (comp(std::as_const(value_of(b)), std::as_const(value_of(a)))) {
                tail->next_ = b;
                b = b->next_;
            } else {
                tail->next_ = a;
                a = a->next_;
            }
            tail = tail->next_;
        }
        tail->next_ = a != nullptr ? a : b;
        return dummy.next_;
    }

    static void report(const char* what, const void* where) noexcept {
        report_violation({errc::invalid_argument, "memkit::intrusive_list", where, what});
    }

    node head_;           // sentinel: head_.next_ is the front, head_.prev_ the back
    size_type count_ = 0; // the element count; meaningless (and unread) with auto_unlink hooks
};

/// Bidirectional iterator over an intrusive_list: a pointer to an element's links.
template <class T, class Hook>
template <bool Const>
class intrusive_list<T, Hook>::basic_iterator {
public:
    using iterator_concept = std::bidirectional_iterator_tag;
    using iterator_category = std::bidirectional_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = std::conditional_t<Const, const T*, T*>;
    using reference = std::conditional_t<Const, const T&, T&>;

    basic_iterator() noexcept = default;
    // Implicit, as in the std containers: iterator -> const_iterator.
    template <bool OtherConst>
        requires(Const && !OtherConst)
    basic_iterator(const basic_iterator<OtherConst>& other) noexcept // NOLINT
        : n_(other.n_) {}

    [[nodiscard]] reference operator*() const noexcept { return intrusive_list::value_of(n_); }
    [[nodiscard]] pointer operator->() const noexcept { return &intrusive_list::value_of(n_); }

    basic_iterator& operator++() noexcept {
        n_ = n_->next_;
        return *this;
    }
    basic_iterator operator++(int) noexcept {
        basic_iterator old = *this;
        n_ = n_->next_;
        return old;
    }
    basic_iterator& operator--() noexcept {
        n_ = n_->prev_;
        return *this;
    }
    basic_iterator operator--(int) noexcept {
        basic_iterator old = *this;
        n_ = n_->prev_;
        return old;
    }
    [[nodiscard]] friend bool operator==(const basic_iterator& a,
                                         const basic_iterator& b) noexcept {
        return a.n_ == b.n_;
    }

private:
    friend class intrusive_list;
    friend class basic_iterator<!Const>;
    explicit basic_iterator(detail::list_node* n) noexcept : n_(n) {}

    detail::list_node* n_ = nullptr;
};

} // namespace memkit
