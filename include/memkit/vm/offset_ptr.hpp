// memkit/vm/offset_ptr.hpp - a pointer stored as the distance from its own address, so that it
// stays valid when the memory holding it is mapped at another address (another process, or a
// second mapping of the same shared segment in this one).
//
// `offset_ptr<T>` keeps `target - this` in one std::ptrdiff_t. A structure whose internal links
// are offset_ptrs (a linked list, a tree, an array of records pointing at each other) can be
// built in a shared segment by one process and walked by another that maps the segment anywhere.
// Both the pointer and its target must lie in the same mapping for that to hold: an offset_ptr
// in the segment pointing at a process-local object (or the reverse) is only meaningful in the
// process that stored it.
//
//  * Copying recomputes the offset for the copy's own address: copy construction and assignment
//    store `source.get() - &copy`. Never copy an offset_ptr with memcpy (it is deliberately not
//    trivially copyable, so std containers and algorithms never do).
//  * Null is the offset 1 (as in Boost.Interprocess): it would point into the offset_ptr itself,
//    where no other object can be. An offset_ptr cannot point at itself plus one byte.
//  * It models a random-access iterator (std::random_access_iterator for object types) and a
//    contiguous one (std::contiguous_iterator: std::to_address works), so std algorithms and
//    ranges run over arrays in a segment through it; std::pointer_traits (pointer_to, rebind)
//    works, so an allocator can use it as its `pointer` type. `offset_ptr<void>` and
//    `offset_ptr<const void>` hold addresses only.
//  * Comparisons and ordering compare the addresses pointed to (nullptr compares lowest);
//    mixed comparisons with T* and nullptr work.
//  * The offset is computed through std::uintptr_t, never by subtracting unrelated pointers.
//
// Complexity: every operation is O(1): one add or subtract on top of a raw pointer's cost.
// constexpr: construction from nullptr, default construction and is-null tests; the address
// arithmetic cannot be constant-evaluated (it depends on where the object lives).
// Thread-safety: like a raw pointer: concurrent reads are fine, a write concurrent with any
// other access is a data race. Exceptions: none; every member is noexcept.
// Failure behaviour: dereferencing null or a pointer into a mapping that is gone is undefined,
// as for T*.
//
//   struct node { int value; memkit::offset_ptr<node> next; };   // lives in a shared segment
//   node* a = new (seg.data()) node{1, nullptr};
//   node* b = new (a + 1) node{2, nullptr};  a->next = b;         // valid at any mapping address
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <type_traits>

namespace memkit {

template <class T>
class offset_ptr;

namespace detail {
template <class T>
struct offset_ptr_reference {
    using type = T&;
};
template <class T>
requires std::is_void_v<T>
struct offset_ptr_reference<T> {
    using type = void;
};
} // namespace detail

template <class T>
class offset_ptr {
    // The distance from `this` to the target; `null_offset` for a null pointer.
    static constexpr std::ptrdiff_t null_offset = 1;

public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    using difference_type = std::ptrdiff_t;
    using pointer = T*;
    using reference = typename detail::offset_ptr_reference<T>::type;
    using iterator_category = std::random_access_iterator_tag;
    using iterator_concept = std::contiguous_iterator_tag;

    constexpr offset_ptr() noexcept = default;
    constexpr offset_ptr(std::nullptr_t) noexcept {} // NOLINT: implicit, as for T*

    offset_ptr(T* p) noexcept : off_(offset_to(p)) {} // NOLINT: implicit, as for T*

    offset_ptr(const offset_ptr& o) noexcept : off_(offset_to(o.get())) {}

    // clang-format off
    /// From an offset_ptr<U> whose U* converts implicitly to T* (derived to base, T to const T,
    /// T to void).
    template <class U>
        requires(!std::is_same_v<U, T> && std::is_convertible_v<U*, T*>)
    offset_ptr(const offset_ptr<U>& o) noexcept // NOLINT: implicit, as for U* -> T*
        : off_(offset_to(static_cast<T*>(o.get()))) {}

    /// Explicit conversions that static_cast allows (base to derived, void to T).
    template <class U>
        requires(!std::is_convertible_v<U*, T*> && requires(U* u) { static_cast<T*>(u); })
    explicit offset_ptr(const offset_ptr<U>& o) noexcept
        : off_(offset_to(static_cast<T*>(o.get()))) {}
    // clang-format on

    offset_ptr& operator=(const offset_ptr& o) noexcept {
        off_ = offset_to(o.get());
        return *this;
    }
    offset_ptr& operator=(T* p) noexcept {
        off_ = offset_to(p);
        return *this;
    }
    offset_ptr& operator=(std::nullptr_t) noexcept {
        off_ = null_offset;
        return *this;
    }
    template <class U>
    requires(!std::is_same_v<U, T> && std::is_convertible_v<U*, T*>) offset_ptr&
    operator=(const offset_ptr<U>& o) noexcept {
        off_ = offset_to(static_cast<T*>(o.get()));
        return *this;
    }

    ~offset_ptr() = default;

    /// The raw pointer, valid in this process at this mapping.
    [[nodiscard]] T* get() const noexcept {
        if (off_ == null_offset) return nullptr;
        return reinterpret_cast<T*>(self() + static_cast<std::uintptr_t>(off_));
    }

    /// The stored distance (for diagnostics and tests).
    [[nodiscard]] constexpr std::ptrdiff_t offset() const noexcept { return off_; }

    [[nodiscard]] constexpr bool is_null() const noexcept { return off_ == null_offset; }
    constexpr explicit operator bool() const noexcept { return off_ != null_offset; }

    template <class U = T>
    requires(!std::is_void_v<U>) [[nodiscard]] U& operator*() const noexcept { return *get(); }
    [[nodiscard]] T* operator->() const noexcept { return get(); }
    template <class U = T>
    requires(!std::is_void_v<U>) [[nodiscard]] U& operator[](difference_type i) const noexcept {
        return get()[i];
    }

    /// For std::pointer_traits<offset_ptr<T>>::pointer_to.
    template <class U = T>
    requires(!std::is_void_v<U>) [[nodiscard]] static offset_ptr pointer_to(U& r) noexcept {
        return offset_ptr(std::addressof(r));
    }

    // Arithmetic moves the target; the offset changes by the same number of bytes.
    offset_ptr& operator+=(difference_type n) noexcept requires(!std::is_void_v<T>) {
        off_ += n * static_cast<difference_type>(sizeof(T));
        return *this;
    }
    offset_ptr& operator-=(difference_type n) noexcept requires(!std::is_void_v<T>) {
        off_ -= n * static_cast<difference_type>(sizeof(T));
        return *this;
    }
    offset_ptr& operator++() noexcept requires(!std::is_void_v<T>) { return *this += 1; }
    offset_ptr& operator--() noexcept requires(!std::is_void_v<T>) { return *this -= 1; }
    offset_ptr operator++(int) noexcept requires(!std::is_void_v<T>) {
        offset_ptr old(*this);
        *this += 1;
        return old;
    }
    offset_ptr operator--(int) noexcept requires(!std::is_void_v<T>) {
        offset_ptr old(*this);
        *this -= 1;
        return old;
    }
    [[nodiscard]] friend offset_ptr operator+(const offset_ptr& p, difference_type n) noexcept
        requires(!std::is_void_v<T>) {
        return offset_ptr(p.get() + n);
    }
    [[nodiscard]] friend offset_ptr operator+(difference_type n, const offset_ptr& p) noexcept
        requires(!std::is_void_v<T>) {
        return offset_ptr(p.get() + n);
    }
    [[nodiscard]] friend offset_ptr operator-(const offset_ptr& p, difference_type n) noexcept
        requires(!std::is_void_v<T>) {
        return offset_ptr(p.get() - n);
    }
    [[nodiscard]] friend difference_type operator-(const offset_ptr& a,
                                                   const offset_ptr& b) noexcept
        requires(!std::is_void_v<T>) {
        return a.get() - b.get();
    }

    [[nodiscard]] friend bool operator==(const offset_ptr& a, const offset_ptr& b) noexcept {
        return a.get() == b.get();
    }
    [[nodiscard]] friend std::strong_ordering operator<=>(const offset_ptr& a,
                                                          const offset_ptr& b) noexcept {
        return std::compare_three_way{}(a.get(), b.get());
    }
    [[nodiscard]] friend bool operator==(const offset_ptr& a, std::nullptr_t) noexcept {
        return a.is_null();
    }
    [[nodiscard]] friend bool operator==(const offset_ptr& a, const T* b) noexcept {
        return a.get() == b;
    }
    [[nodiscard]] friend std::strong_ordering operator<=>(const offset_ptr& a,
                                                          const T* b) noexcept {
        return std::compare_three_way{}(a.get(), b);
    }

    friend void swap(offset_ptr& a, offset_ptr& b) noexcept {
        T* pa = a.get();
        a = b.get();
        b = pa;
    }

private:
    std::uintptr_t self() const noexcept { return reinterpret_cast<std::uintptr_t>(this); }

    std::ptrdiff_t offset_to(T* p) const noexcept {
        if (p == nullptr) return null_offset;
        // Unsigned wrap-around arithmetic, then reinterpreted: defined for any two addresses.
        return static_cast<std::ptrdiff_t>(
            reinterpret_cast<std::uintptr_t>(const_cast<std::remove_cv_t<T>*>(p)) - self());
    }

    std::ptrdiff_t off_ = null_offset;
};

/// static_cast / const_cast / reinterpret_cast for offset_ptr, as std:: provides for shared_ptr.
template <class T, class U>
[[nodiscard]] offset_ptr<T> static_pointer_cast(const offset_ptr<U>& p) noexcept {
    return offset_ptr<T>(static_cast<T*>(p.get()));
}
template <class T, class U>
[[nodiscard]] offset_ptr<T> const_pointer_cast(const offset_ptr<U>& p) noexcept {
    return offset_ptr<T>(const_cast<T*>(p.get()));
}
template <class T, class U>
[[nodiscard]] offset_ptr<T> reinterpret_pointer_cast(const offset_ptr<U>& p) noexcept {
    return offset_ptr<T>(reinterpret_cast<T*>(p.get()));
}

} // namespace memkit

/// std::to_address(offset_ptr) (and so std::contiguous_iterator) without dereferencing.
template <class T>
struct std::pointer_traits<memkit::offset_ptr<T>> {
    using pointer = memkit::offset_ptr<T>;
    using element_type = T;
    using difference_type = std::ptrdiff_t;
    template <class U>
    using rebind = memkit::offset_ptr<U>;

    template <class U = T>
    requires(!std::is_void_v<U>) [[nodiscard]] static pointer pointer_to(U& r) noexcept {
        return pointer::pointer_to(r);
    }
    [[nodiscard]] static T* to_address(const pointer& p) noexcept { return p.get(); }
};
