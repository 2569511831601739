// memkit/container/small_vector.hpp - a vector that keeps its first N elements inside itself.
//
// `small_vector<T, N, Allocator>` is a std::vector with room for N elements in the object itself:
// while size() <= N nothing is allocated, and beyond that the elements move to a heap buffer from
// the allocator, exactly like a std::vector. Use it where vectors are usually short (the operands
// of an instruction, the tokens of a line, the children of a node): building, reading and
// destroying a small_vector of a few elements costs a few stores and no call to the allocator.
// `small_vector_base<T, Allocator>` is the size-erased part (LLVM's SmallVectorImpl): it has the
// whole interface, so `void f(memkit::small_vector_base<int>& v)` accepts a small_vector of any N
// and the inline capacity stays out of function signatures. The interface is std::vector's, plus
// `is_inline()`, `inline_capacity()` and `static_capacity`.
//
// Layout. The object is a 24-byte header {T* data, size, capacity, inline capacity} (32 bytes
// when sizeof(T) < 4, see below), the allocator when it is not empty ([[no_unique_address]]), then
// the inline buffer. The base finds the buffer from its own address: it starts at the header's
// size rounded up to max(alignof(T), alignof(header)), which a static_assert in small_vector
// checks against offsetof. The buffer's alignment is never below the header's, so the derived
// class cannot place it in the header's tail padding, and it is always 8-byte aligned (what
// AddressSanitizer needs to annotate it). The inline capacity is stored so that the base can go
// back to the inline buffer (shrink_to_fit, a moved-from vector, swap) without knowing N.
// Sizes are 32-bit (at most 2^32 - 1 elements, 16 GiB of 4-byte elements) unless sizeof(T) < 4,
// where 64-bit sizes keep byte buffers above 4 GiB possible (the same choice as LLVM); the
// interface uses std::size_t throughout. When N is omitted it is chosen so that the whole object
// is 64 bytes with std::allocator (small_vector<int> holds 10 ints, small_vector<char> 32 chars),
// at least 1; sizeof(T) above 256 asks for an explicit N (as LLVM). N = 0 is allowed: a
// std::vector with the same interface.
//
// Growth doubles the capacity (at least to what is needed): fewer reallocations than x1.5 and
// capacities that stay on the size classes of malloc-like allocators; the "x1.5 lets the
// allocator reuse freed blocks" argument needs an allocator that coalesces neighbours, which the
// heap buffers of a small_vector rarely meet. Growth and every other rare path are out of line;
// push_back is a compare, a construction and an increment. (For small trivially copyable
// elements only the allocation is out of line, in a function that never sees the vector's
// address, so that a loop of push_backs keeps data pointer, size and capacity in registers.)
// Trivially copyable elements (with an allocator that does not customise construct/destroy) are
// relocated with memcpy; others with std::move_if_noexcept, so a throwing move constructor falls
// back to copying.
//
// Complexity: as std::vector. push_back/emplace_back amortized O(1); insert/erase O(n) in the
// elements after the position; swap O(1) when both vectors are on the heap, otherwise O(n) in the
// inline elements; move O(1) from a heap vector, O(n) from an inline one; shrink_to_fit O(n).
// Stability: iterators are pointers. Anything that changes capacity invalidates every iterator,
// pointer and reference (including the move from inline storage to the heap and back: a
// reference to an inline element never survives growth); insert/erase invalidate from the
// position on; push_back within capacity invalidates only end(). Unlike std::vector, a move or
// swap of an inline vector moves the elements themselves: pointers into the source's inline
// buffer do not follow them.
// Exception safety (as std::vector, and stronger where it costs nothing): push_back,
// emplace_back, reserve, resize, shrink_to_fit, insert and emplace at the end, insert or emplace
// anywhere when it has to reallocate (but not of an input-iterator range in the middle), and
// assign into a new buffer are strong (a failing allocation or constructor leaves the vector
// unchanged), given that T's move constructor does not throw or T is copyable. insert/emplace in
// the middle without reallocation, erase, copy and move assignment and assign within capacity
// are basic: the vector stays valid, holds live elements and leaks nothing, but its contents are
// unspecified. A swap between an inline and a heap vector is strong; a swap between
// two inline vectors is basic if T's swap or move throws. Copy construction cleans up and
// rethrows. pop_back, clear and the destructor do not throw.
// Errors: at() beyond size() throws std::out_of_range; a size beyond max_size() (reserve, resize,
// insert, assign, construction) throws std::length_error; allocation failures propagate the
// allocator's exception (std::bad_alloc, memkit::out_of_memory). In debug builds
// (memkit::debug_checks), operator[], front, back, pop_back on an empty vector, an iterator
// outside [begin, end] given to insert/erase, and swap between unequal allocators that do not
// propagate (undefined in the standard, a precondition here) report errc::invalid_argument to the
// violation handler; if it returns, pop_back and swap do nothing and the others go ahead.
// Allocator: allocator-aware (std::allocator_traits construct/destroy, POCCA/POCMA/POCS,
// is_always_equal, select_on_container_copy_construction, allocator-extended constructors). A
// move from a heap vector takes its buffer when the allocators are equal or propagate on move
// assignment; otherwise elements are moved one by one. After any move the source is empty.
// Fancy pointers are not supported (allocator_traits<A>::pointer must be T*).
// memkit::pmr::small_vector<T, N> uses std::pmr::polymorphic_allocator<T>.
// AddressSanitizer: the unused part of the inline buffer and of heap buffers is poisoned, so
// reading v.data()[v.size()] is reported as a container overflow; while the elements are on the
// heap the whole inline buffer is poisoned, which also catches pointers kept across growth. Heap
// buffers are annotated when they start on an 8-byte boundary and either end on one or come from
// std::allocator (a shared last granule of an arena could otherwise be poisoned for a neighbour).
// An object must therefore be destroyed before its memory is reused, as any object with a
// destructor. Nothing of this exists in builds without ASan; the layout is the same in all builds.
// Thread-safety: not thread-safe; like std containers, concurrent const access is fine.
//
//   memkit::small_vector<int, 8> v{1, 2, 3};          // inline: no allocation
//   v.push_back(4);
//   void sum(const memkit::small_vector_base<int>& xs); // takes any N
#pragma once

#include <algorithm>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <memory_resource>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "memkit/container/detail/synth_three_way.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"

namespace memkit {

template <class T, class Allocator = std::allocator<T>>
class small_vector_base;

namespace detail {

// 32-bit sizes keep the header small; byte-sized elements get 64-bit sizes so that buffers above
// 4 GiB stay possible. They are stored as enumerations rather than integers: the compiler then
// knows that a store of an int, unsigned or size_t element cannot change the size or capacity
// (type-based alias analysis), and keeps them in registers across a loop of push_backs instead
// of reloading them after every element.
enum class small_vector_size32 : std::uint32_t {};
enum class small_vector_size64 : std::uint64_t {};
template <class T>
using small_vector_size_t = std::conditional_t<(sizeof(T) < 4 && sizeof(void*) >= 8),
                                               small_vector_size64, small_vector_size32>;

template <class A, class T>
concept allocator_customizes_construct = requires(A& a, T* p, T&& v) {
    a.construct(p, static_cast<T&&>(v));
};
template <class A, class T>
concept allocator_customizes_destroy = requires(A& a, T* p) {
    a.destroy(p);
};

template <class A>
inline constexpr bool is_polymorphic_allocator = false;
template <class U>
inline constexpr bool is_polymorphic_allocator<std::pmr::polymorphic_allocator<U>> = true;

// True when allocator_traits<A>::construct(a, p, T&&) and destroy(a, p) are placement new and a
// destructor call: then trivially copyable elements may be copied with memcpy and left
// undestroyed. polymorphic_allocator's construct differs only for uses-allocator types.
template <class A, class T>
inline constexpr bool allocator_constructs_plainly = std::is_same_v<A, std::allocator<T>> ||
                                                     (is_polymorphic_allocator<A> &&
                                                      !std::uses_allocator_v<T, A>) ||
                                                     (!allocator_customizes_construct<A, T> &&
                                                      !allocator_customizes_destroy<A, T>);

// An iterator in the sense of the iterator-pair constructors of the standard containers
// ("qualifies as an input iterator"), which keeps (count, value) calls with two ints away.
// clang-format off
template <class It>
concept legacy_input_iterator =
    requires { typename std::iterator_traits<It>::iterator_category; } &&
    std::derived_from<typename std::iterator_traits<It>::iterator_category,
                      std::input_iterator_tag>;
// clang-format on

// Multi-pass by the legacy category: C++20 std::move_iterator<T*> is only a std::input_iterator
// but still random access by category, and the containers may take its distance first.
template <class It>
inline constexpr bool legacy_forward_iterator =
    std::derived_from<typename std::iterator_traits<It>::iterator_category,
                      std::forward_iterator_tag>;

// `count` times the same value, as a forward iterator: lets insert(pos, n, value) share the
// range code.
template <class T>
class repeat_iterator {
public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = const T*;
    using reference = const T&;

    repeat_iterator() = default;
    repeat_iterator(const T* v, difference_type i) noexcept : v_(v), i_(i) {}
    reference operator*() const noexcept { return *v_; }
    pointer operator->() const noexcept { return v_; }
    repeat_iterator& operator++() noexcept {
        ++i_;
        return *this;
    }
    repeat_iterator operator++(int) noexcept {
        repeat_iterator r = *this;
        ++i_;
        return r;
    }
    friend bool operator==(const repeat_iterator& a, const repeat_iterator& b) noexcept {
        return a.i_ == b.i_;
    }

private:
    const T* v_ = nullptr;
    difference_type i_ = 0;
};

// Where small_vector<T, N, A> keeps its inline buffer, computed from the header alone.
template <class T, class A>
struct small_vector_layout {
    static constexpr std::size_t alignment() noexcept {
        return alignof(T) > alignof(small_vector_base<T, A>) ? alignof(T)
                                                             : alignof(small_vector_base<T, A>);
    }
    static constexpr std::size_t inline_offset() noexcept {
        return align_up(sizeof(small_vector_base<T, A>), alignment());
    }
};

template <class T, std::size_t N, std::size_t Align>
struct small_vector_storage {
    alignas(Align) std::byte bytes[N * sizeof(T)];
};
// No buffer, but the alignment, so that the object still ends at the (empty) buffer's address:
// an inline vector with N = 0 points there, one past the end of the object, like any inline
// vector points at its buffer. is_inline() is then one comparison for every N.
template <class T, std::size_t Align>
struct alignas(Align) small_vector_storage<T, 0, Align> {};

} // namespace detail

/// The default inline capacity of small_vector<T>: as many elements as fit in a 64-byte object
/// with allocator A (at least one), as LLVM's CalculateSmallVectorDefaultInlinedElements.
template <class T, class A = std::allocator<T>>
inline constexpr std::size_t default_small_vector_capacity = [] {
    static_assert(sizeof(T) <= 256,
                  "small_vector<T> with a large T: give the inline capacity N explicitly");
    constexpr std::size_t object_size = 64;
    constexpr std::size_t header = detail::small_vector_layout<T, A>::inline_offset();
    constexpr std::size_t fit = header >= object_size ? 0 : (object_size - header) / sizeof(T);
    return fit == 0 ? std::size_t{1} : fit;
}();

template <class T, class Allocator>
class small_vector_base {
    using alloc_traits = std::allocator_traits<Allocator>;
    using size_storage = detail::small_vector_size_t<T>;
    using layout = detail::small_vector_layout<T, Allocator>;

    static constexpr bool pocca = alloc_traits::propagate_on_container_copy_assignment::value;
    static constexpr bool pocma = alloc_traits::propagate_on_container_move_assignment::value;
    static constexpr bool pocs = alloc_traits::propagate_on_container_swap::value;
    static constexpr bool always_equal = alloc_traits::is_always_equal::value;
    static constexpr bool plain_alloc = detail::allocator_constructs_plainly<Allocator, T>;
    static constexpr bool memcpy_relocatable = std::is_trivially_copyable_v<T> && plain_alloc;
    static constexpr bool trivial_destroy = std::is_trivially_destructible_v<T> && plain_alloc;
    static constexpr bool small_trivial = memcpy_relocatable && sizeof(T) <= 2 * sizeof(void*);

    static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                  "small_vector elements must be non-const, non-volatile object types");
    static_assert(std::is_same_v<typename alloc_traits::value_type, T>,
                  "Allocator::value_type must be T");
    static_assert(std::is_same_v<typename alloc_traits::pointer, T*>,
                  "small_vector does not support fancy pointers");

public:
    using value_type = T;
    using allocator_type = Allocator;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using reference = T&;
    using const_reference = const T&;
    using pointer = T*;
    using const_pointer = const T*;
    using iterator = T*;
    using const_iterator = const T*;
    using reverse_iterator = std::reverse_iterator<iterator>;
    using const_reverse_iterator = std::reverse_iterator<const_iterator>;

    // Copies and moves go through small_vector, which owns the inline buffer; assignment works
    // between any two inline capacities.
    small_vector_base(const small_vector_base&) = delete;

    small_vector_base& operator=(const small_vector_base& other) {
        if (this == &other) return *this;
        if constexpr (pocca) {
            if (!always_equal && !(alloc_ == other.alloc_)) clear_and_release();
            alloc_ = other.alloc_;
        }
        assign_forward(other.begin_, other.size());
        return *this;
    }

    /// Takes other's heap buffer when the allocators allow it, else moves element by element.
    /// `other` is empty afterwards.
    small_vector_base& operator=(small_vector_base&& other) {
        if (this == &other) return *this;
        if (!other.is_inline() && (pocma || always_equal || alloc_ == other.alloc_)) {
            clear_and_release();
            if constexpr (pocma) alloc_ = other.alloc_; // copied: `other` keeps allocating
            steal(other);
            return *this;
        }
        if constexpr (pocma) {
            if (!always_equal && !(alloc_ == other.alloc_)) clear_and_release();
            alloc_ = other.alloc_;
        }
        assign_forward(std::make_move_iterator(other.begin_), other.size());
        other.clear();
        return *this;
    }

    small_vector_base& operator=(std::initializer_list<T> il) {
        assign_forward(il.begin(), il.size());
        return *this;
    }

    void assign(size_type n, const T& value) {
        if (n > capacity()) {
            check_size(n);
            replace_with_new_buffer(n, n, [&](T* dst) {
                construct_n(dst, n, [&](T* p) { alloc_traits::construct(alloc_, p, value); });
            });
            return;
        }
        [[maybe_unused]] spare_scope scope(*this);
        // Filling first keeps `value` alive if it is one of the elements.
        std::fill_n(begin_, std::min<size_type>(n, size()), value);
        if (n > size()) {
            for (T* p = begin_ + size(); size() < n; ++p) {
                alloc_traits::construct(alloc_, p, value);
                set_size(size() + 1);
            }
        } else {
            destroy_range(begin_ + n, begin_ + size());
            set_size(n);
        }
    }

    /// Precondition: [first, last) is not a range of this vector.
    template <detail::legacy_input_iterator It>
    void assign(It first, It last) {
        if constexpr (detail::legacy_forward_iterator<It>) {
            const auto n = std::distance(first, last);
            assign_forward(first, static_cast<size_type>(n));
        } else {
            T* p = begin_;
            T* const e = begin_ + size();
            for (; p != e && first != last; ++p, ++first) *p = *first;
            if (p != e) {
                erase_at_end(p);
                return;
            }
            for (; first != last; ++first) emplace_back(*first);
        }
    }

    void assign(std::initializer_list<T> il) { assign_forward(il.begin(), il.size()); }

    [[nodiscard]] allocator_type get_allocator() const noexcept { return alloc_; }

    // --- element access ------------------------------------------------------------------------

    [[nodiscard]] reference at(size_type i) {
        if (MEMKIT_UNLIKELY(i >= size())) throw_out_of_range();
        return begin_[i];
    }
    [[nodiscard]] const_reference at(size_type i) const {
        if (MEMKIT_UNLIKELY(i >= size())) throw_out_of_range();
        return begin_[i];
    }
    [[nodiscard]] reference operator[](size_type i) noexcept {
        if constexpr (debug_checks) check_index(i);
        return begin_[i];
    }
    [[nodiscard]] const_reference operator[](size_type i) const noexcept {
        if constexpr (debug_checks) check_index(i);
        return begin_[i];
    }
    [[nodiscard]] reference front() noexcept { return (*this)[0]; }
    [[nodiscard]] const_reference front() const noexcept { return (*this)[0]; }
    [[nodiscard]] reference back() noexcept { return (*this)[size() - 1]; }
    [[nodiscard]] const_reference back() const noexcept { return (*this)[size() - 1]; }
    [[nodiscard]] T* data() noexcept { return begin_; }
    [[nodiscard]] const T* data() const noexcept { return begin_; }

    // --- iterators -----------------------------------------------------------------------------

    [[nodiscard]] iterator begin() noexcept { return begin_; }
    [[nodiscard]] const_iterator begin() const noexcept { return begin_; }
    [[nodiscard]] const_iterator cbegin() const noexcept { return begin_; }
    [[nodiscard]] iterator end() noexcept { return begin_ + size(); }
    [[nodiscard]] const_iterator end() const noexcept { return begin_ + size(); }
    [[nodiscard]] const_iterator cend() const noexcept { return begin_ + size(); }
    [[nodiscard]] reverse_iterator rbegin() noexcept { return reverse_iterator(end()); }
    [[nodiscard]] const_reverse_iterator rbegin() const noexcept {
        return const_reverse_iterator(end());
    }
    [[nodiscard]] const_reverse_iterator crbegin() const noexcept { return rbegin(); }
    [[nodiscard]] reverse_iterator rend() noexcept { return reverse_iterator(begin()); }
    [[nodiscard]] const_reverse_iterator rend() const noexcept {
        return const_reverse_iterator(begin());
    }
    [[nodiscard]] const_reverse_iterator crend() const noexcept { return rend(); }

    // --- capacity ------------------------------------------------------------------------------

    [[nodiscard]] bool empty() const noexcept { return size() == 0; }
    [[nodiscard]] size_type size() const noexcept { return static_cast<size_type>(size_); }
    [[nodiscard]] size_type capacity() const noexcept { return static_cast<size_type>(capacity_); }
    /// The N of the small_vector this object is: how many elements fit without allocating.
    [[nodiscard]] size_type inline_capacity() const noexcept {
        return static_cast<size_type>(inline_capacity_);
    }
    /// True while the elements live in the inline buffer (no heap buffer is held). With N = 0,
    /// true exactly when nothing is allocated (data() then points past the object).
    [[nodiscard]] bool is_inline() const noexcept { return begin_ == inline_data(); }

    [[nodiscard]] size_type max_size() const noexcept {
        constexpr size_type by_size_type =
            std::numeric_limits<std::underlying_type_t<size_storage>>::max();
        constexpr size_type by_difference =
            static_cast<size_type>(std::numeric_limits<difference_type>::max()) / sizeof(T);
        const size_type by_alloc = alloc_traits::max_size(alloc_);
        return std::min({by_size_type, by_difference, by_alloc});
    }

    /// Strong guarantee. Throws std::length_error beyond max_size().
    void reserve(size_type n) {
        if (n <= capacity()) return;
        check_size(n);
        reallocate(n);
    }

    /// Moves the elements back into the inline buffer when they fit, else into a heap buffer of
    /// exactly size() elements. Strong guarantee.
    void shrink_to_fit() {
        if (is_inline()) return;
        if (size() <= inline_capacity()) {
            move_to_inline();
        } else if (size() < capacity()) {
            reallocate(size());
        }
    }

    // --- modifiers -----------------------------------------------------------------------------

    void clear() noexcept {
        destroy_range(begin_, begin_ + size());
        annotate(size(), 0);
        set_size(0);
    }

    iterator insert(const_iterator pos, const T& value) { return emplace(pos, value); }

    iterator insert(const_iterator pos, T&& value) {
        const size_type idx = index_of(pos);
        if (idx == size()) {
            emplace_back(std::move(value));
        } else if (size() == capacity()) {
            // An rvalue argument is assumed not to alias an element, as the standard allows.
            realloc_insert(idx, 1, grow_capacity(size() + 1),
                           [&](T* dst) { alloc_traits::construct(alloc_, dst, std::move(value)); });
        } else {
            insert_one_in_place(idx, std::move(value));
        }
        return begin_ + idx;
    }

    iterator insert(const_iterator pos, size_type n, const T& value) {
        const size_type idx = index_of(pos);
        if (n == 0) return begin_ + idx;
        if (idx == size() || n > capacity() - size()) {
            // Appending or reallocating constructs the copies before any element moves, so
            // `value` may be an element.
            insert_forward(idx, detail::repeat_iterator<T>(&value, 0), n);
        } else {
            temporary_value tmp(*this, value);
            insert_forward(idx, detail::repeat_iterator<T>(&tmp.get(), 0), n);
        }
        return begin_ + idx;
    }

    /// Precondition: [first, last) is not a range of this vector.
    template <detail::legacy_input_iterator It>
    iterator insert(const_iterator pos, It first, It last) {
        const size_type idx = index_of(pos);
        if constexpr (detail::legacy_forward_iterator<It>) {
            const auto n = static_cast<size_type>(std::distance(first, last));
            if (n != 0) insert_forward(idx, first, n);
        } else {
            const size_type old_size = size();
            try {
                for (; first != last; ++first) emplace_back(*first);
            } catch (...) {
                erase_at_end(begin_ + old_size);
                throw;
            }
            std::rotate(begin_ + idx, begin_ + old_size, begin_ + size());
        }
        return begin_ + idx;
    }

    iterator insert(const_iterator pos, std::initializer_list<T> il) {
        return insert(pos, il.begin(), il.end());
    }

    /// The arguments may refer to elements of this vector.
    template <class... Args>
    iterator emplace(const_iterator pos, Args&&... args) {
        const size_type idx = index_of(pos);
        if (idx == size()) {
            emplace_back(std::forward<Args>(args)...);
        } else if (size() == capacity()) {
            realloc_insert(idx, 1, grow_capacity(size() + 1), [&](T* dst) {
                alloc_traits::construct(alloc_, dst, std::forward<Args>(args)...);
            });
        } else {
            temporary_value tmp(*this, std::forward<Args>(args)...);
            insert_one_in_place(idx, std::move(tmp.get()));
        }
        return begin_ + idx;
    }

    iterator erase(const_iterator pos) { return erase(pos, pos + 1); }

    iterator erase(const_iterator first, const_iterator last) {
        T* const f = begin_ + index_of(first);
        if constexpr (debug_checks) check_range(first, last);
        T* const l = begin_ + (last - begin_);
        if (f != l) erase_at_end(std::move(l, begin_ + size(), f));
        return f;
    }

    void push_back(const T& value) { emplace_back(value); }
    void push_back(T&& value) { emplace_back(std::move(value)); }

    /// The arguments may refer to elements of this vector.
    template <class... Args>
    reference emplace_back(Args&&... args) {
        // The size is read once, before the construction: after it, a store of a char element
        // (which may alias anything) or a constructor the compiler cannot see would force a
        // reload onto every push_back's critical path.
        const size_type n = size();
        if (MEMKIT_LIKELY(n < capacity())) {
            T* const p = begin_ + n;
            [[maybe_unused]] spare_scope scope(*this);
            alloc_traits::construct(alloc_, p, std::forward<Args>(args)...);
            set_size(n + 1);
            return *p;
        }
        if constexpr (small_trivial && std::is_constructible_v<T, Args&&...>) {
            return grow_trivially_and_push_back(T(std::forward<Args>(args)...));
        } else {
            return grow_and_emplace_back(std::forward<Args>(args)...);
        }
    }

    void pop_back() noexcept {
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(empty())) {
                report_precondition(nullptr, "pop_back on an empty small_vector");
                return;
            }
        }
        destroy_range(begin_ + size() - 1, begin_ + size());
        annotate(size(), size() - 1);
        set_size(size() - 1);
    }

    /// Strong guarantee when growing.
    void resize(size_type n) {
        if (n <= size()) {
            erase_at_end(begin_ + n);
        } else {
            append_n(n - size(), [&](T* p) { alloc_traits::construct(alloc_, p); });
        }
    }

    void resize(size_type n, const T& value) {
        if (n <= size()) {
            erase_at_end(begin_ + n);
        } else {
            append_n(n - size(), [&](T* p) { alloc_traits::construct(alloc_, p, value); });
        }
    }

    /// Swaps contents (and allocators, if they propagate on swap) with a vector of any inline
    /// capacity. O(1) when both are on the heap. Precondition: the allocators are equal or
    /// propagate on swap.
    void swap(small_vector_base& other) {
        if (this == &other) return;
        if constexpr (!pocs && !always_equal) {
            if constexpr (debug_checks) {
                if (MEMKIT_UNLIKELY(!(alloc_ == other.alloc_))) {
                    report_precondition(this, "swap of small_vectors with unequal allocators "
                                              "that do not propagate");
                    return;
                }
            }
        }
        const bool this_heap = !is_inline();
        const bool other_heap = !other.is_inline();
        if (this_heap && other_heap) {
            std::swap(begin_, other.begin_);
            std::swap(size_, other.size_);
            std::swap(capacity_, other.capacity_);
            swap_allocators(other);
        } else if (!this_heap && !other_heap) {
            swap_inline(other);
        } else if (this_heap) {
            swap_heap_with_inline(*this, other);
        } else {
            swap_heap_with_inline(other, *this);
        }
    }

    friend void swap(small_vector_base& a, small_vector_base& b) { a.swap(b); }

    friend bool operator==(const small_vector_base& a,
                           const small_vector_base& b) requires std::equality_comparable<T> {
        return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
    }

    friend auto operator<=>(const small_vector_base& a,
                            const small_vector_base& b) requires detail::synth_comparable<T> {
        return std::lexicographical_compare_three_way(a.begin(), a.end(), b.begin(), b.end(),
                                                      detail::synth_three_way{});
    }

protected:
    small_vector_base(size_type n_inline, const Allocator& a) noexcept
        : begin_(nullptr), size_(size_storage{0}), capacity_(static_cast<size_storage>(n_inline)),
          inline_capacity_(static_cast<size_storage>(n_inline)), alloc_(a) {
        begin_ = inline_data();
        annotate_inline(inline_capacity(), 0);
    }

    // Also runs when a small_vector constructor throws, so the constructors just fill the vector
    // and leave the cleanup here.
    ~small_vector_base() {
        destroy_range(begin_, begin_ + size());
        if (is_inline()) {
            annotate_inline(size(), inline_capacity());
        } else {
            annotate(size(), capacity());
            alloc_traits::deallocate(alloc_, begin_, capacity());
            annotate_inline(0, inline_capacity());
        }
    }

    // Whether [first, first + n) can be copied into raw storage with memcpy.
    template <class It>
    static constexpr bool memcpy_source() noexcept {
        if constexpr (!plain_alloc || !std::is_trivially_copyable_v<T>) {
            return false;
        } else if constexpr (std::is_same_v<It, T*> || std::is_same_v<It, const T*>) {
            return std::is_trivially_copy_constructible_v<T>;
        } else if constexpr (std::is_same_v<It, std::move_iterator<T*>>) {
            return std::is_trivially_move_constructible_v<T>;
        } else {
            return false;
        }
    }

    void set_size(size_type n) noexcept { size_ = static_cast<size_storage>(n); }

    // For small_vector's move constructor, which may not touch another object's private parts
    // through a base reference. A copy, not a move: the source stays usable after the move and
    // keeps allocating through its allocator (a moved-from stateful allocator may be empty).
    static const Allocator& allocator_of(const small_vector_base& v) noexcept { return v.alloc_; }

    // Constructor bodies of small_vector: the vector is empty and inline.
    template <class Make>
    void init_n(size_type n, Make make) {
        init_capacity(n);
        [[maybe_unused]] spare_scope scope(*this);
        construct_n(begin_, n, make);
        set_size(n);
    }

    template <class It>
    void init_range(It first, It last) {
        if constexpr (detail::legacy_forward_iterator<It>) {
            const auto n = static_cast<size_type>(std::distance(first, last));
            init_capacity(n);
            [[maybe_unused]] spare_scope scope(*this);
            copy_construct_n(first, n, begin_);
            set_size(n);
        } else {
            for (; first != last; ++first) emplace_back(*first);
        }
    }

    void init_value_n(size_type n) {
        init_n(n, [&](T* p) { alloc_traits::construct(alloc_, p); });
    }

    void init_fill_n(size_type n, const T& value) {
        init_n(n, [&](T* p) { alloc_traits::construct(alloc_, p, value); });
    }

    // Move construction: takes other's heap buffer when this vector's allocator can free it,
    // else moves the elements. `other` is left empty.
    void init_move(small_vector_base& other) {
        if (!other.is_inline() && (always_equal || alloc_ == other.alloc_)) {
            steal(other);
            return;
        }
        init_range(std::make_move_iterator(other.begin_),
                   std::make_move_iterator(other.begin_ + other.size()));
        other.clear();
    }

private:
    // --- AddressSanitizer annotations ----------------------------------------------------------
    // Invariant in ASan builds: the spare capacity of the current buffer is poisoned, and so is
    // the whole inline buffer while the elements are on the heap. Every function that changes
    // size_ or the buffer keeps it; nothing here exists in other builds.

    static constexpr std::size_t asan_granule = 8;

    static bool annotatable([[maybe_unused]] const T* b, [[maybe_unused]] size_type cap,
                            [[maybe_unused]] bool inline_buffer) noexcept {
        if constexpr (has_address_sanitizer) {
            if (b == nullptr || cap == 0 || !is_aligned(b, asan_granule)) return false;
            // The inline buffer's storage is a whole number of granules of this object. A heap
            // block's last granule is its own when the block ends on a granule boundary or
            // comes from operator new (the rest of the granule is the block's redzone); an arena
            // may have put a neighbour there.
            if (inline_buffer) return layout::alignment() >= asan_granule;
            return std::is_same_v<Allocator, std::allocator<T>> ||
                   is_aligned(b + cap, asan_granule);
        } else {
            return false;
        }
    }

    static void annotate_buffer([[maybe_unused]] const T* b, [[maybe_unused]] size_type cap,
                                [[maybe_unused]] size_type old_n, [[maybe_unused]] size_type new_n,
                                [[maybe_unused]] bool inline_buffer) noexcept {
        if constexpr (has_address_sanitizer) {
            if (old_n == new_n || !annotatable(b, cap, inline_buffer)) return;
            // The inline buffer is annotated up to the end of its storage, rounded to a granule:
            // a "full" buffer then leaves its last granule entirely addressable, as the object
            // needs it to be when it is destroyed and its memory reused.
            const auto* bytes = reinterpret_cast<const std::byte*>(b);
            const std::byte* end = inline_buffer ? bytes + align_up(cap * sizeof(T), asan_granule)
                                                 : bytes + cap * sizeof(T);
            const auto mid = [&](size_type n) -> const void* {
                return n == cap ? static_cast<const void*>(end) : static_cast<const void*>(b + n);
            };
            annotate_contiguous_container(b, end, mid(old_n), mid(new_n));
        }
    }

    // The current buffer now uses new_n elements instead of old_n.
    void annotate([[maybe_unused]] size_type old_n,
                  [[maybe_unused]] size_type new_n) const noexcept {
        if constexpr (has_address_sanitizer)
            annotate_buffer(begin_, capacity(), old_n, new_n, is_inline());
    }

    void annotate_inline([[maybe_unused]] size_type old_n,
                         [[maybe_unused]] size_type new_n) const noexcept {
        if constexpr (has_address_sanitizer)
            annotate_buffer(inline_data(), inline_capacity(), old_n, new_n, true);
    }

    // While alive, the whole current buffer is addressable, so elements can be constructed in
    // the spare capacity; on exit (normal or by an exception) the part after size_ is poisoned
    // again. The buffer must not change inside the scope.
    class asan_spare_scope {
    public:
        explicit asan_spare_scope(small_vector_base& v) noexcept : v_(v) {
            v_.annotate(v_.size(), v_.capacity());
        }
        ~asan_spare_scope() { v_.annotate(v_.capacity(), v_.size()); }
        asan_spare_scope(const asan_spare_scope&) = delete;
        asan_spare_scope& operator=(const asan_spare_scope&) = delete;

    private:
        small_vector_base& v_;
    };
    struct no_spare_scope {
        explicit no_spare_scope(small_vector_base&) noexcept {}
    };
    using spare_scope = std::conditional_t<has_address_sanitizer, asan_spare_scope, no_spare_scope>;

    // --- buffers -------------------------------------------------------------------------------

    void set_capacity(size_type n) noexcept { capacity_ = static_cast<size_storage>(n); }

    [[nodiscard]] T* inline_data() const noexcept {
        // The buffer lives in small_vector, right after this header (checked there with
        // offsetof; with N = 0 it is the end of the object); const_cast because a const vector
        // still owns mutable storage.
        auto* self = const_cast<std::byte*>(reinterpret_cast<const std::byte*>(this));
        return static_cast<T*>(static_cast<void*>(self + layout::inline_offset()));
    }

    // Frees the current buffer (or poisons the inline one) once its elements are gone; size_
    // still says how far it is annotated.
    void release_buffer() noexcept {
        if (is_inline()) {
            annotate_inline(size(), 0);
        } else {
            annotate(size(), capacity());
            alloc_traits::deallocate(alloc_, begin_, capacity());
        }
    }

    // Switches to a new heap buffer that already holds new_size elements.
    void replace_buffer(T* nb, size_type new_cap, size_type new_size) noexcept {
        release_buffer();
        begin_ = nb;
        set_capacity(new_cap);
        set_size(new_size);
        annotate_buffer(nb, new_cap, new_cap, new_size, false);
    }

    void clear_and_release() noexcept {
        destroy_range(begin_, begin_ + size());
        release_buffer();
        begin_ = inline_data();
        capacity_ = inline_capacity_;
        set_size(0);
    }

    // Precondition: this vector is inline and empty, `other` is on the heap and its buffer can
    // be freed through this vector's allocator. The annotations stay right: this inline buffer
    // is already fully poisoned, other's inline buffer was poisoned while it was on the heap.
    void steal(small_vector_base& other) noexcept {
        begin_ = other.begin_;
        size_ = other.size_;
        capacity_ = other.capacity_;
        other.begin_ = other.inline_data();
        other.set_size(0);
        other.capacity_ = other.inline_capacity_;
    }

    void swap_allocators([[maybe_unused]] small_vector_base& other) noexcept {
        if constexpr (pocs) {
            using std::swap;
            swap(alloc_, other.alloc_);
        }
    }

    // A freshly allocated buffer, freed unless released.
    class buffer_guard {
    public:
        buffer_guard(Allocator& a, size_type cap)
            : a_(a), p_(alloc_traits::allocate(a, cap)), cap_(cap) {}
        ~buffer_guard() {
            if (p_ != nullptr) alloc_traits::deallocate(a_, p_, cap_);
        }
        buffer_guard(const buffer_guard&) = delete;
        buffer_guard& operator=(const buffer_guard&) = delete;
        [[nodiscard]] T* get() const noexcept { return p_; }
        T* release() noexcept { return std::exchange(p_, nullptr); }

    private:
        Allocator& a_;
        T* p_;
        size_type cap_;
    };

    // Constructed elements, destroyed unless dismissed.
    class range_guard {
    public:
        range_guard(small_vector_base& v, T* first, T* last) noexcept
            : v_(v), first_(first), last_(last) {}
        ~range_guard() {
            if (first_ != nullptr) v_.destroy_range(first_, last_);
        }
        range_guard(const range_guard&) = delete;
        range_guard& operator=(const range_guard&) = delete;
        void dismiss() noexcept { first_ = nullptr; }

    private:
        small_vector_base& v_;
        T* first_;
        T* last_;
    };

    // An element built with the vector's allocator (so uses-allocator construction applies)
    // outside the buffer: what emplace and insert in the middle shift in, when the arguments
    // could be elements that the shift moves.
    class temporary_value {
    public:
        template <class... Args>
        explicit temporary_value(small_vector_base& v, Args&&... args) : v_(v) {
            alloc_traits::construct(v_.alloc_, ptr(), std::forward<Args>(args)...);
        }
        ~temporary_value() { alloc_traits::destroy(v_.alloc_, ptr()); }
        temporary_value(const temporary_value&) = delete;
        temporary_value& operator=(const temporary_value&) = delete;
        [[nodiscard]] T& get() noexcept { return *ptr(); }

    private:
        T* ptr() noexcept { return std::launder(static_cast<T*>(static_cast<void*>(&buf_))); }
        small_vector_base& v_;
        alignas(T) std::byte buf_[sizeof(T)];
    };

    void destroy_range([[maybe_unused]] T* first, [[maybe_unused]] T* last) noexcept {
        if constexpr (!trivial_destroy) {
            for (; first != last; ++first) alloc_traits::destroy(alloc_, first);
        }
    }

    // Constructs n elements at dst with make(p); on an exception destroys them and rethrows.
    template <class Make>
    void construct_n(T* dst, size_type n, Make&& make) {
        size_type i = 0;
        try {
            for (; i != n; ++i) make(dst + i);
        } catch (...) {
            destroy_range(dst, dst + i);
            throw;
        }
    }

    // Constructs n elements at dst from [first, first + n); on an exception destroys them.
    template <class It>
    void copy_construct_n(It first, size_type n, T* dst) {
        if constexpr (memcpy_source<It>()) {
            const T* src;
            if constexpr (std::is_same_v<It, std::move_iterator<T*>>) {
                src = first.base();
            } else {
                src = first;
            }
            if (n != 0)
                std::memcpy(static_cast<void*>(dst), static_cast<const void*>(src), n * sizeof(T));
        } else {
            construct_n(dst, n, [&](T* p) { alloc_traits::construct(alloc_, p, *first++); });
        }
    }

    // A constructor's buffer for n elements: the inline one, or exactly n from the allocator.
    void init_capacity(size_type n) {
        if (n > capacity()) {
            check_size(n);
            replace_buffer(alloc_traits::allocate(alloc_, n), n, 0);
        }
    }

    // Moves (copies, when T's move may throw and T is copyable) n elements to raw storage at
    // dst, leaving the sources to be destroyed by the caller. On an exception nothing is left
    // constructed at dst.
    void relocate(T* src, size_type n, T* dst) {
        if constexpr (memcpy_relocatable) {
            if (n != 0)
                std::memcpy(static_cast<void*>(dst), static_cast<const void*>(src), n * sizeof(T));
        } else {
            construct_n(dst, n, [&](T* p) {
                alloc_traits::construct(alloc_, p, std::move_if_noexcept(src[p - dst]));
            });
        }
    }

    [[nodiscard]] size_type grow_capacity(size_type required) const {
        const size_type limit = max_size();
        if (MEMKIT_UNLIKELY(required > limit)) throw_length_error();
        const size_type cap = capacity();
        const size_type doubled = cap > limit / 2 ? limit : 2 * cap;
        return doubled > required ? doubled : required;
    }

    void check_size(size_type n) const {
        if (MEMKIT_UNLIKELY(n > max_size())) throw_length_error();
    }

    // Room for n more elements, or std::length_error.
    size_type size_after_adding(size_type n) const {
        if (MEMKIT_UNLIKELY(n > max_size() - size())) throw_length_error();
        return size() + n;
    }

    // The one reallocation routine: a new buffer of new_cap elements holding the old elements
    // with n new ones, built by construct_new(dst) (which cleans up after itself), at index idx.
    // Strong guarantee: the new elements are built first, while arguments that refer to old
    // elements are still valid, and the old buffer is untouched until everything succeeded.
    template <class ConstructNew>
    MEMKIT_NOINLINE void realloc_insert(size_type idx, size_type n, size_type new_cap,
                                        ConstructNew&& construct_new) {
        buffer_guard nb(alloc_, new_cap);
        T* const dst = nb.get();
        construct_new(dst + idx);
        range_guard new_elements(*this, dst + idx, dst + idx + n);
        relocate(begin_, idx, dst);
        range_guard prefix(*this, dst, dst + idx);
        relocate(begin_ + idx, size() - idx, dst + idx + n);
        prefix.dismiss();
        new_elements.dismiss();
        destroy_range(begin_, begin_ + size());
        replace_buffer(nb.release(), new_cap, size() + n);
    }

    MEMKIT_NOINLINE void reallocate(size_type new_cap) {
        realloc_insert(size(), 0, new_cap, [](T*) noexcept {});
    }

    // Replaces the contents with `new_size` elements built by construct_new in a new buffer.
    // Strong guarantee.
    template <class ConstructNew>
    MEMKIT_NOINLINE void replace_with_new_buffer(size_type new_cap, size_type new_size,
                                                 ConstructNew&& construct_new) {
        buffer_guard nb(alloc_, new_cap);
        construct_new(nb.get());
        destroy_range(begin_, begin_ + size());
        replace_buffer(nb.release(), new_cap, new_size);
    }

    template <class... Args>
    MEMKIT_COLD T& grow_and_emplace_back(Args&&... args) {
        const size_type n = size();
        realloc_insert(n, 1, grow_capacity(n + 1), [&](T* dst) {
            alloc_traits::construct(alloc_, dst, std::forward<Args>(args)...);
        });
        return begin_[n];
    }

    // push_back's growth for small trivially copyable elements. Only the allocation is out of
    // line, in a static function that never sees the vector's address, and the value comes by
    // value: a call that receives `this` (or a reference to the caller's variable) would make
    // every iteration of a push_back loop reload data pointer, size and capacity from memory,
    // where now they stay in registers.
    struct grown_buffer {
        T* data;
        size_type capacity;
    };

    MEMKIT_COLD static grown_buffer allocate_grown(Allocator a, size_type n, size_type cap,
                                                   size_type limit) {
        if (MEMKIT_UNLIKELY(n >= limit)) throw_length_error();
        const size_type doubled = cap > limit / 2 ? limit : 2 * cap;
        const size_type new_cap = doubled > n ? doubled : n + 1;
        return {alloc_traits::allocate(a, new_cap), new_cap};
    }

    MEMKIT_ALWAYS_INLINE T& grow_trivially_and_push_back(T value) {
        const size_type n = size();
        const grown_buffer g = allocate_grown(alloc_, n, capacity(), max_size());
        if (n != 0) {
            std::memcpy(static_cast<void*>(g.data), static_cast<const void*>(begin_),
                        n * sizeof(T));
        }
        alloc_traits::construct(alloc_, g.data + n, value);
        replace_buffer(g.data, g.capacity, n + 1);
        return g.data[n];
    }

    MEMKIT_NOINLINE void move_to_inline() {
        T* const ib = inline_data();
        annotate_inline(0, inline_capacity());
        try {
            relocate(begin_, size(), ib);
        } catch (...) {
            annotate_inline(inline_capacity(), 0);
            throw;
        }
        destroy_range(begin_, begin_ + size());
        annotate(size(), capacity());
        alloc_traits::deallocate(alloc_, begin_, capacity());
        begin_ = ib;
        capacity_ = inline_capacity_;
        annotate_inline(inline_capacity(), size());
    }

    // Appends n elements built by make(p). Strong guarantee.
    template <class Make>
    void append_n(size_type n, Make&& make) {
        if (n == 0) return;
        if (n <= capacity() - size()) {
            [[maybe_unused]] spare_scope scope(*this);
            construct_n(begin_ + size(), n, make);
            set_size(size() + n);
        } else {
            realloc_insert(size(), n, grow_capacity(size_after_adding(n)),
                           [&](T* dst) { construct_n(dst, n, make); });
        }
    }

    // Inserts the n elements of [first, first + n) at idx.
    template <class FwdIt>
    void insert_forward(size_type idx, FwdIt first, size_type n) {
        if (n > capacity() - size()) {
            realloc_insert(idx, n, grow_capacity(size_after_adding(n)),
                           [&](T* dst) { copy_construct_n(first, n, dst); });
            return;
        }
        if (idx == size()) {
            [[maybe_unused]] spare_scope scope(*this);
            copy_construct_n(first, n, begin_ + size());
            set_size(size() + n);
            return;
        }
        // In place, as libstdc++: the tail is moved into the spare capacity, the rest shifted
        // by assignment, and the hole assigned. size_ grows with every construction, so an
        // exception leaves only live elements behind (basic guarantee).
        [[maybe_unused]] spare_scope scope(*this);
        T* const pos = begin_ + idx;
        T* const old_end = begin_ + size();
        const size_type after = size() - idx;
        if (after > n) {
            for (T* src = old_end - n; src != old_end; ++src) {
                alloc_traits::construct(alloc_, begin_ + size(), std::move(*src));
                set_size(size() + 1);
            }
            std::move_backward(pos, old_end - n, old_end);
            for (T* p = pos; p != pos + n; ++p, ++first) *p = *first;
        } else {
            FwdIt mid = std::next(first, static_cast<difference_type>(after));
            for (FwdIt it = mid; size() != idx + n; ++it) {
                alloc_traits::construct(alloc_, begin_ + size(), *it);
                set_size(size() + 1);
            }
            for (T* src = pos; src != old_end; ++src) {
                alloc_traits::construct(alloc_, begin_ + size(), std::move(*src));
                set_size(size() + 1);
            }
            for (T* p = pos; p != old_end; ++p, ++first) *p = *first;
        }
    }

    // Precondition: idx < size() < capacity(); `x` is not an element.
    void insert_one_in_place(size_type idx, T&& x) {
        [[maybe_unused]] spare_scope scope(*this);
        T* const old_end = begin_ + size();
        alloc_traits::construct(alloc_, old_end, std::move(old_end[-1]));
        set_size(size() + 1);
        std::move_backward(begin_ + idx, old_end - 1, old_end);
        begin_[idx] = std::move(x);
    }

    // Replaces the contents with the n elements of [first, first + n).
    template <class It>
    void assign_forward(It first, size_type n) {
        if (n > capacity()) {
            check_size(n);
            replace_with_new_buffer(n, n, [&](T* dst) { copy_construct_n(first, n, dst); });
            return;
        }
        [[maybe_unused]] spare_scope scope(*this);
        const size_type common = std::min(n, size());
        for (T* p = begin_; p != begin_ + common; ++p, ++first) *p = *first;
        if (n > size()) {
            copy_construct_n(first, n - size(), begin_ + size());
            set_size(n);
        } else {
            destroy_range(begin_ + n, begin_ + size());
            set_size(n);
        }
    }

    void erase_at_end(T* new_end) noexcept {
        const auto n = static_cast<size_type>(new_end - begin_);
        destroy_range(new_end, begin_ + size());
        annotate(size(), n);
        set_size(n);
    }

    // Both inline. Whichever cannot hold the other's elements moves to the heap first, and the
    // swap becomes a heap/inline one.
    void swap_inline(small_vector_base& other) {
        if (other.size() > capacity()) {
            reserve(other.size());
            swap_heap_with_inline(*this, other);
            return;
        }
        if (size() > other.capacity()) {
            other.reserve(size());
            swap_heap_with_inline(other, *this);
            return;
        }
        small_vector_base& longer = size() >= other.size() ? *this : other;
        small_vector_base& shorter = size() >= other.size() ? other : *this;
        const size_type common = shorter.size();
        std::swap_ranges(longer.begin_, longer.begin_ + common, shorter.begin_);
        {
            [[maybe_unused]] spare_scope scope(shorter);
            for (T* src = longer.begin_ + common; src != longer.begin_ + longer.size(); ++src) {
                alloc_traits::construct(shorter.alloc_, shorter.begin_ + shorter.size(),
                                        std::move(*src));
                shorter.set_size(shorter.size() + 1);
            }
        }
        longer.erase_at_end(longer.begin_ + common);
        swap_allocators(other);
    }

    // `heap` holds a heap buffer, `in` is inline: `in` takes the buffer, `heap` takes in's
    // elements, into its inline buffer when they fit, else into a new buffer from in's
    // allocator (the one `heap` has after the swap). Strong guarantee.
    static void swap_heap_with_inline(small_vector_base& heap, small_vector_base& in) {
        const size_type n = in.size();
        if (n <= heap.inline_capacity()) {
            T* const ib = heap.inline_data();
            heap.annotate_inline(0, heap.inline_capacity());
            try {
                in.relocate(in.begin_, n, ib);
            } catch (...) {
                heap.annotate_inline(heap.inline_capacity(), 0);
                throw;
            }
            in.destroy_range(in.begin_, in.begin_ + n);
            in.annotate_inline(n, 0);
            in.begin_ = heap.begin_;
            in.size_ = heap.size_;
            in.capacity_ = heap.capacity_;
            heap.begin_ = ib;
            heap.set_size(n);
            heap.capacity_ = heap.inline_capacity_;
            heap.annotate_inline(heap.inline_capacity(), n);
        } else {
            buffer_guard nb(in.alloc_, n);
            in.relocate(in.begin_, n, nb.get());
            in.destroy_range(in.begin_, in.begin_ + n);
            in.annotate_inline(n, 0);
            in.begin_ = heap.begin_;
            in.size_ = heap.size_;
            in.capacity_ = heap.capacity_;
            heap.begin_ = nb.release();
            heap.set_size(n);
            heap.set_capacity(n);
        }
        heap.swap_allocators(in);
    }

    size_type index_of(const_iterator pos) const noexcept {
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(pos < begin_ || pos > begin_ + size()))
                report_precondition(pos, "iterator outside [begin, end] of this small_vector");
        }
        return static_cast<size_type>(pos - begin_);
    }

    void check_range(const_iterator first, const_iterator last) const noexcept {
        if (MEMKIT_UNLIKELY(last < first || last > begin_ + size()))
            report_precondition(last, "invalid iterator range for this small_vector");
    }

    void check_index(size_type i) const noexcept {
        if (MEMKIT_UNLIKELY(i >= size()))
            report_precondition(begin_ + i, "small_vector index out of range");
    }

    MEMKIT_COLD static void report_precondition(const void* p, const char* what) noexcept {
        report_violation({errc::invalid_argument, "memkit::small_vector", p, what});
    }

    [[noreturn]] MEMKIT_COLD static void throw_length_error() {
        throw std::length_error("memkit::small_vector: size would exceed max_size()");
    }

    [[noreturn]] MEMKIT_COLD static void throw_out_of_range() {
        throw std::out_of_range("memkit::small_vector::at: index out of range");
    }

    T* begin_;
    size_storage size_;
    size_storage capacity_;
    size_storage inline_capacity_;
    [[no_unique_address]] Allocator alloc_;
};

/// A vector with inline storage for N elements; see the top of this file.
template <class T, std::size_t N = default_small_vector_capacity<T>,
          class Allocator = std::allocator<T>>
class small_vector : public small_vector_base<T, Allocator> {
    using base = small_vector_base<T, Allocator>;
    using alloc_traits = std::allocator_traits<Allocator>;
    using layout = detail::small_vector_layout<T, Allocator>;

public:
    using typename base::allocator_type;
    using typename base::const_iterator;
    using typename base::const_pointer;
    using typename base::const_reference;
    using typename base::const_reverse_iterator;
    using typename base::difference_type;
    using typename base::iterator;
    using typename base::pointer;
    using typename base::reference;
    using typename base::reverse_iterator;
    using typename base::size_type;
    using typename base::value_type;

    /// The inline capacity N.
    static constexpr size_type static_capacity = N;

    small_vector() noexcept(noexcept(Allocator())) : base(N, Allocator()) {}
    explicit small_vector(const Allocator& a) noexcept : base(N, a) {}

    /// n value-initialized elements.
    explicit small_vector(size_type n, const Allocator& a = Allocator()) : base(N, a) {
        this->init_value_n(n);
    }
    small_vector(size_type n, const T& value, const Allocator& a = Allocator()) : base(N, a) {
        this->init_fill_n(n, value);
    }
    template <detail::legacy_input_iterator It>
    small_vector(It first, It last, const Allocator& a = Allocator()) : base(N, a) {
        this->init_range(first, last);
    }
    small_vector(std::initializer_list<T> il, const Allocator& a = Allocator()) : base(N, a) {
        this->init_range(il.begin(), il.end());
    }

    small_vector(const small_vector& other)
        : base(N, alloc_traits::select_on_container_copy_construction(other.get_allocator())) {
        if constexpr (copy_whole_inline_buffer) {
            // A fixed-size copy of the whole buffer is a few vector moves; copying size()
            // elements is a call to memcpy. The bytes past size() are unused storage, so copying
            // them is harmless (but ASan builds take the ordinary path: they are poisoned).
            if (other.is_inline()) {
                std::memcpy(storage_.bytes, other.storage_.bytes, sizeof(storage_.bytes));
                this->set_size(other.size());
                return;
            }
        }
        this->init_range(other.begin(), other.end());
    }
    small_vector(const small_vector& other, const std::type_identity_t<Allocator>& a) : base(N, a) {
        this->init_range(other.begin(), other.end());
    }
    /// A copy of a small_vector of any inline capacity.
    small_vector(const base& other) // NOLINT(google-explicit-constructor): as a copy
        : base(N, alloc_traits::select_on_container_copy_construction(other.get_allocator())) {
        this->init_range(other.begin(), other.end());
    }

    /// Takes other's heap buffer, or moves its inline elements. `other` is left empty.
    small_vector(small_vector&& other) noexcept(std::is_nothrow_move_constructible_v<T>)
        : base(N, base::allocator_of(other)) {
        this->init_move(other);
    }
    small_vector(small_vector&& other, const std::type_identity_t<Allocator>& a) : base(N, a) {
        this->init_move(other);
    }
    /// A move from a small_vector of any inline capacity (its heap buffer is taken as it is).
    small_vector(base&& other) // NOLINT(google-explicit-constructor): as a move
        : base(N, base::allocator_of(other)) {
        this->init_move(other);
    }

    ~small_vector() {
        {
            // The base computes the inline buffer's address from its own layout; this is where
            // the compiler actually put it (with N = 0: the end of the object). offsetof on a class
            // that is not standard-layout is conditionally supported, and supported by GCC and
            // Clang for classes without virtual bases.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
#endif
            static_assert(N == 0 ? sizeof(small_vector) == layout::inline_offset()
                                 : offsetof(small_vector, storage_) == layout::inline_offset(),
                          "small_vector: the inline buffer is not where the base expects it");
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
        }
    }

    small_vector& operator=(const small_vector& other) {
        base::operator=(other);
        return *this;
    }
    small_vector& operator=(small_vector&& other) {
        base::operator=(std::move(other));
        return *this;
    }
    small_vector& operator=(const base& other) {
        base::operator=(other);
        return *this;
    }
    small_vector& operator=(base&& other) {
        base::operator=(std::move(other));
        return *this;
    }
    small_vector& operator=(std::initializer_list<T> il) {
        base::operator=(il);
        return *this;
    }

    using base::swap; // with a small_vector_base of any inline capacity
    void swap(small_vector& other) { base::swap(other); }
    friend void swap(small_vector& a, small_vector& b) { a.swap(b); }

private:
    static constexpr bool copy_whole_inline_buffer = base::template memcpy_source<const T*>() &&
                                                     N != 0 && N * sizeof(T) <= 128 &&
                                                     !has_address_sanitizer;

    [[no_unique_address]] detail::small_vector_storage<T, N, layout::alignment()> storage_;
};

/// Erases every element equal to `value`; returns how many were erased. Found by ADL
/// (`erase(v, x)`), like std::erase for standard containers.
template <class T, class A, class U>
typename small_vector_base<T, A>::size_type erase(small_vector_base<T, A>& v, const U& value) {
    const auto it = std::remove(v.begin(), v.end(), value);
    const auto n = static_cast<typename small_vector_base<T, A>::size_type>(v.end() - it);
    v.erase(it, v.end());
    return n;
}

/// Erases every element for which `pred` is true; returns how many were erased.
template <class T, class A, class Pred>
typename small_vector_base<T, A>::size_type erase_if(small_vector_base<T, A>& v, Pred pred) {
    const auto it = std::remove_if(v.begin(), v.end(), std::ref(pred));
    const auto n = static_cast<typename small_vector_base<T, A>::size_type>(v.end() - it);
    v.erase(it, v.end());
    return n;
}

} // namespace memkit

namespace memkit::pmr {
template <class T>
using small_vector_base = memkit::small_vector_base<T, std::pmr::polymorphic_allocator<T>>;
template <class T,
          std::size_t N = default_small_vector_capacity<T, std::pmr::polymorphic_allocator<T>>>
using small_vector = memkit::small_vector<T, N, std::pmr::polymorphic_allocator<T>>;
} // namespace memkit::pmr
