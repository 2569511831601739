// memkit/container/circular_buffer.hpp - a fixed-capacity ring of elements, open at both ends.
//
// `circular_buffer<T>` keeps at most capacity() elements in one block allocated at construction
// (never reallocated by pushes and pops). Elements are pushed and popped at both ends, like a
// std::deque with a size limit, and accessed by index or random-access iterator. What happens when
// a push meets a full buffer is the buffer's `full_policy`, chosen at construction (and changeable
// with set_policy):
//   overwrite (default) - push_back drops the front element, push_front drops the back one: the
//                         buffer keeps the newest `capacity()` elements (last-N logs, histories);
//   reject              - push_back / push_front throw memkit::buffer_full, and
//                         try_push_back / try_push_front return false; neither touches the value,
//                         so a rejected rvalue is not moved from.
// try_push_* and try_emplace_* never overwrite, whatever the policy. A buffer of capacity 0
// rejects every push (there is nothing to overwrite). The capacity can be any number: indices wrap
// with a compare, not a division. as_spans() gives the contents as two contiguous parts (the older
// part first), linearize() rotates the storage so that they are one span. Also: erase of one
// element or a range (moves the shorter side), set_capacity / rset_capacity (reallocate, keeping
// the front / the back elements), ==, <=>, swap. Not provided: insert in the middle and resize.
//
// Complexity: push/pop/emplace at either end, operator[], at, front, back: O(1); erase: O(min of
// the distances to either end); linearize: O(size) (O(1) when already contiguous); copy, clear,
// set_capacity, comparisons: O(size).
// Stability: storage never moves except in set_capacity, rset_capacity, copy/move assignment and
// swap, so references and pointers to an element stay valid until that element is popped, erased
// or overwritten (or moved by linearize). Iterators are logical positions: push_front, pop_front,
// overwrite, erase, linearize and whatever moves the storage invalidate all iterators; push_back
// and pop_back only end() and the popped element's.
// Exception safety: pushes are strong (a throwing constructor leaves the buffer unchanged); an
// overwriting push on a full buffer assigns the new value to the slot of the dropped element, so
// it is as strong as T's assignment (construct-then-move-assign for emplace). Copy construction
// and copy assignment are strong and leak nothing. set_capacity / rset_capacity are strong: they
// move the elements if T's move cannot throw, else copy them (basic for a move-only T whose move
// can throw). linearize is noexcept when T's move constructor and swap are, else it copies into a
// new block (strong). erase is basic unless T's move assignment cannot throw (as std::deque).
// Failure: push_back / push_front / emplace_* on a full `reject` buffer throw memkit::buffer_full
// (a std::length_error, code() errc::limit_exceeded) and change nothing; at() throws
// std::out_of_range; a capacity above max_size() throws std::length_error; the allocator's
// exceptions propagate. pop_* on an empty buffer is a precondition violation: debug builds report
// errc::invalid_argument to the violation handler and then do nothing. front(), back() and
// operator[] out of range are undefined behaviour, as in the standard containers.
// Allocator: any standard Allocator (raw pointers); propagation on copy / move assignment and swap
// follows allocator_traits; swap with unequal allocators that do not propagate is a precondition
// violation (undefined in the standard, reported in debug builds). memkit::pmr::circular_buffer
// uses std::pmr::polymorphic_allocator. In ASan builds unused slots are poisoned.
// Thread-safety: not thread-safe; like std containers, concurrent const access is fine. For one
// producer and one consumer thread, use memkit::spsc_ring.
//
//   memkit::circular_buffer<std::string> last{3};          // overwrite policy
//   for (auto s : {"a", "b", "c", "d"}) last.push_back(s);  // keeps b, c, d
//   auto [older, newer] = last.as_spans();
#pragma once

#include <algorithm>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <memory_resource>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include "memkit/core/annotations.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"

namespace memkit {

/// What a push does when the buffer is full.
enum class full_policy : unsigned char {
    overwrite, ///< drop the element at the other end to make room
    reject,    ///< fail: push_* throws buffer_full, try_push_* returns false
};

/// Thrown by push_back / push_front / emplace_* on a full circular_buffer whose policy is
/// `reject` (or whose capacity is 0). The buffer and the value are unchanged.
class buffer_full : public std::length_error {
public:
    explicit buffer_full(std::size_t capacity)
        : std::length_error("memkit::circular_buffer: push into a full buffer (capacity " +
                            std::to_string(capacity) + ")"),
          capacity_(capacity) {}
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::error_code code() const noexcept {
        return make_error_code(errc::limit_exceeded);
    }

private:
    std::size_t capacity_;
};

template <class T, class Allocator = std::allocator<T>>
class circular_buffer {
    using alloc_traits = std::allocator_traits<Allocator>;
    static_assert(std::is_same_v<typename alloc_traits::value_type, T>,
                  "Allocator::value_type must be T");
    static_assert(std::is_same_v<typename alloc_traits::pointer, T*>,
                  "allocators with fancy pointers are not supported");
    static_assert(std::is_nothrow_destructible_v<T>, "T's destructor must not throw");

    template <bool Const>
    class basic_iterator;

public:
    using value_type = T;
    using allocator_type = Allocator;
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

    // ---- construction --------------------------------------------------------------------

    /// An empty buffer of capacity 0 (every push is rejected until set_capacity).
    circular_buffer() noexcept(noexcept(Allocator())) : circular_buffer(Allocator()) {}
    explicit circular_buffer(const Allocator& alloc) noexcept : alloc_(alloc) {}

    /// An empty buffer that holds up to `capacity` elements (allocated here, once).
    explicit circular_buffer(size_type capacity, full_policy policy = full_policy::overwrite,
                             const Allocator& alloc = Allocator())
        : policy_(policy), alloc_(alloc) {
        buf_ = allocate_storage(alloc_, capacity);
        cap_ = capacity;
    }
    circular_buffer(size_type capacity, const Allocator& alloc)
        : circular_buffer(capacity, full_policy::overwrite, alloc) {}

    /// A buffer of `capacity` holding `init`, pushed back in order under `policy` (with
    /// overwrite, only the last `capacity` values are kept; with reject, more values than the
    /// capacity throw buffer_full).
    circular_buffer(size_type capacity, std::initializer_list<T> init,
                    full_policy policy = full_policy::overwrite,
                    const Allocator& alloc = Allocator())
        : circular_buffer(capacity, policy, alloc) {
        if (init.size() > capacity && policy == full_policy::reject) throw_full(capacity);
        // Only the values that survive are constructed.
        const auto skip = init.size() > capacity ? init.size() - capacity : size_type{0};
        for (auto it = init.begin() + skip; it != init.end(); ++it) unchecked_emplace_back(*it);
    }

    circular_buffer(const circular_buffer& other)
        : circular_buffer(other,
                          alloc_traits::select_on_container_copy_construction(other.alloc_)) {}

    circular_buffer(const circular_buffer& other, const std::type_identity_t<Allocator>& alloc)
        : circular_buffer(other.cap_, other.policy_, alloc) {
        // The delegated constructor has finished, so the destructor releases a partial copy.
        for (const T& v : other) unchecked_emplace_back(v);
    }

    circular_buffer(circular_buffer&& other) noexcept
        : buf_(other.buf_), cap_(other.cap_), head_(other.head_), tail_(other.tail_),
          size_(other.size_), policy_(other.policy_), alloc_(other.alloc_) {
        other.forget_storage();
    }

    /// Steals `other`'s block when the allocators are equal; otherwise allocates with `alloc` and
    /// moves the elements one by one (`other` keeps its moved-from elements).
    circular_buffer(circular_buffer&& other, const std::type_identity_t<Allocator>& alloc)
        : policy_(other.policy_), alloc_(alloc) {
        if (alloc_traits::is_always_equal::value || alloc_ == other.alloc_) {
            take_storage(other);
        } else {
            buf_ = allocate_storage(alloc_, other.cap_);
            cap_ = other.cap_;
            try {
                for (T& v : other) unchecked_emplace_back(std::move(v));
            } catch (...) {
                release_storage();
                throw;
            }
        }
    }

    ~circular_buffer() { release_storage(); }

    /// Copies the elements, the capacity and the policy. Strong: builds the copy first.
    circular_buffer& operator=(const circular_buffer& other) {
        if (this == &other) return *this;
        constexpr bool pocca = alloc_traits::propagate_on_container_copy_assignment::value;
        circular_buffer copy(other, pocca ? other.alloc_ : alloc_);
        release_storage();
        if constexpr (pocca) alloc_ = other.alloc_;
        take_storage(copy);
        policy_ = other.policy_;
        return *this;
    }

    /// O(1) when the allocator propagates or the allocators are equal; otherwise the elements
    /// are moved one by one into a block from this buffer's allocator.
    circular_buffer& operator=(circular_buffer&& other) noexcept(
        alloc_traits::propagate_on_container_move_assignment::value ||
        alloc_traits::is_always_equal::value) {
        if (this == &other) return *this;
        if constexpr (alloc_traits::propagate_on_container_move_assignment::value) {
            release_storage();
            alloc_ = other.alloc_;
            take_storage(other);
        } else if (alloc_traits::is_always_equal::value || alloc_ == other.alloc_) {
            release_storage();
            take_storage(other);
        } else {
            circular_buffer moved(std::move(other), alloc_);
            release_storage();
            take_storage(moved);
        }
        policy_ = other.policy_;
        return *this;
    }

    [[nodiscard]] allocator_type get_allocator() const noexcept { return alloc_; }

    // ---- policy and capacity -------------------------------------------------------------

    [[nodiscard]] full_policy policy() const noexcept { return policy_; }
    void set_policy(full_policy p) noexcept { policy_ = p; }

    [[nodiscard]] size_type size() const noexcept { return size_; }
    [[nodiscard]] size_type capacity() const noexcept { return cap_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] bool full() const noexcept { return size_ == cap_; }
    [[nodiscard]] size_type max_size() const noexcept { return max_size_of(alloc_); }

    /// Reallocates to `new_capacity`, keeping the first (oldest) min(size(), new_capacity)
    /// elements. Strong guarantee (elements are moved if that cannot throw, else copied).
    void set_capacity(size_type new_capacity) {
        if (new_capacity != cap_) reallocate(new_capacity, false);
    }
    /// Reallocates to `new_capacity`, keeping the last (newest) min(size(), new_capacity)
    /// elements. Strong guarantee.
    void rset_capacity(size_type new_capacity) {
        if (new_capacity != cap_) reallocate(new_capacity, true);
    }

    // ---- element access ------------------------------------------------------------------

    [[nodiscard]] reference operator[](size_type i) noexcept { return *slot(i); }
    [[nodiscard]] const_reference operator[](size_type i) const noexcept { return *slot(i); }
    [[nodiscard]] reference at(size_type i) {
        if (i >= size_) throw_out_of_range(i, size_);
        return *slot(i);
    }
    [[nodiscard]] const_reference at(size_type i) const {
        if (i >= size_) throw_out_of_range(i, size_);
        return *slot(i);
    }
    [[nodiscard]] reference front() noexcept { return buf_[head_]; }
    [[nodiscard]] const_reference front() const noexcept { return buf_[head_]; }
    [[nodiscard]] reference back() noexcept { return *slot(size_ - 1); }
    [[nodiscard]] const_reference back() const noexcept { return *slot(size_ - 1); }

    /// The elements as two contiguous parts: `first` holds the older elements (from the front),
    /// `second` the rest; `second` is empty when the contents do not wrap.
    [[nodiscard]] std::pair<std::span<T>, std::span<T>> as_spans() noexcept {
        const size_type n1 = first_part();
        return {std::span<T>(buf_ + head_, n1), std::span<T>(buf_, size_ - n1)};
    }
    [[nodiscard]] std::pair<std::span<const T>, std::span<const T>> as_spans() const noexcept {
        const size_type n1 = first_part();
        return {std::span<const T>(buf_ + head_, n1), std::span<const T>(buf_, size_ - n1)};
    }
    [[nodiscard]] bool is_linearized() const noexcept { return head_ + size_ <= cap_; }

    /// Moves the elements so that they are contiguous, front first, and returns them. Nothing
    /// moves when they already are. See the header comment for its exception guarantee.
    std::span<T> linearize() noexcept(nothrow_rotate) {
        if (is_linearized()) return {buf_ + head_, size_};
        if constexpr (nothrow_rotate) {
            // Layout [B | gap | A], A = the front part at head_. Slide A left to close the gap
            // (each destination is free when written), giving [B A]; then rotate to [A B].
            const size_type nb = head_ + size_ - cap_;
            const size_type na = cap_ - head_;
            if (head_ != nb) {
                for (size_type i = 0; i < na; ++i) {
                    T* src = buf_ + head_ + i;
                    T* dst = buf_ + nb + i;
                    construct_slot(dst, std::move(*src));
                    destroy_slot(src);
                }
            }
            std::rotate(buf_, buf_ + nb, buf_ + size_);
            head_ = 0;
            tail_ = size_ == cap_ ? 0 : size_;
        } else {
            reallocate(cap_, false);
        }
        return {buf_ + head_, size_};
    }

    // ---- iterators -----------------------------------------------------------------------

    [[nodiscard]] iterator begin() noexcept { return iterator(this, 0); }
    [[nodiscard]] iterator end() noexcept { return iterator(this, size_); }
    [[nodiscard]] const_iterator begin() const noexcept { return const_iterator(this, 0); }
    [[nodiscard]] const_iterator end() const noexcept { return const_iterator(this, size_); }
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

    // ---- pushes (policy applies) ---------------------------------------------------------

    void push_back(const T& value) { emplace_back_impl<true>(value); }
    void push_back(T&& value) { emplace_back_impl<true>(std::move(value)); }
    template <class... Args>
    reference emplace_back(Args&&... args) {
        return emplace_back_impl<false>(std::forward<Args>(args)...);
    }

    void push_front(const T& value) { emplace_front_impl<true>(value); }
    void push_front(T&& value) { emplace_front_impl<true>(std::move(value)); }
    template <class... Args>
    reference emplace_front(Args&&... args) {
        return emplace_front_impl<false>(std::forward<Args>(args)...);
    }

    // ---- pushes that never overwrite: false when full, the value untouched ---------------

    bool try_push_back(const T& value) { return try_emplace_back(value); }
    bool try_push_back(T&& value) { return try_emplace_back(std::move(value)); }
    template <class... Args>
    bool try_emplace_back(Args&&... args) {
        if (size_ == cap_) return false;
        unchecked_emplace_back(std::forward<Args>(args)...);
        return true;
    }
    bool try_push_front(const T& value) { return try_emplace_front(value); }
    bool try_push_front(T&& value) { return try_emplace_front(std::move(value)); }
    template <class... Args>
    bool try_emplace_front(Args&&... args) {
        if (size_ == cap_) return false;
        unchecked_emplace_front(std::forward<Args>(args)...);
        return true;
    }

    // ---- removal -------------------------------------------------------------------------

    void pop_front() noexcept {
        if (MEMKIT_CHECKS && size_ == 0) return report_empty("pop_front on an empty buffer");
        destroy_slot(buf_ + head_);
        head_ = next(head_);
        --size_;
    }
    void pop_back() noexcept {
        if (MEMKIT_CHECKS && size_ == 0) return report_empty("pop_back on an empty buffer");
        tail_ = prev(tail_);
        destroy_slot(buf_ + tail_);
        --size_;
    }

    /// Destroys every element; the capacity stays.
    void clear() noexcept {
        destroy_all();
        head_ = tail_ = 0;
    }

    /// Removes the element at `pos`; returns an iterator to the element that followed it.
    iterator erase(const_iterator pos) { return erase(pos, pos + 1); }

    /// Removes [first, last), moving whichever side of the range is shorter; returns an iterator
    /// to the element that followed the range.
    iterator erase(const_iterator first, const_iterator last) {
        const auto f = static_cast<size_type>(first - cbegin());
        const auto l = static_cast<size_type>(last - cbegin());
        const size_type n = l - f;
        if (n == 0) return iterator(this, f);
        if (f < size_ - l) {
            std::move_backward(begin(), begin() + static_cast<difference_type>(f),
                               begin() + static_cast<difference_type>(l));
            for (size_type i = 0; i < n; ++i) pop_front();
        } else {
            std::move(begin() + static_cast<difference_type>(l), end(),
                      begin() + static_cast<difference_type>(f));
            for (size_type i = 0; i < n; ++i) pop_back();
        }
        return iterator(this, f);
    }

    /// Exchanges contents, capacities and policies in O(1). The allocators are swapped when they
    /// propagate on swap; otherwise they must compare equal (precondition).
    void swap(circular_buffer& other) noexcept {
        if constexpr (alloc_traits::propagate_on_container_swap::value) {
            using std::swap;
            swap(alloc_, other.alloc_);
        } else if (MEMKIT_CHECKS && !alloc_traits::is_always_equal::value &&
                   !(alloc_ == other.alloc_)) {
            report_violation({errc::invalid_argument, "memkit::circular_buffer", this,
                              "swap of buffers with unequal allocators that do not propagate"});
            return;
        }
        std::swap(buf_, other.buf_);
        std::swap(cap_, other.cap_);
        std::swap(head_, other.head_);
        std::swap(tail_, other.tail_);
        std::swap(size_, other.size_);
        std::swap(policy_, other.policy_);
    }
    friend void swap(circular_buffer& a, circular_buffer& b) noexcept { a.swap(b); }

    // ---- comparisons (elements only; capacity and policy do not take part) ---------------

    friend bool operator==(const circular_buffer& a, const circular_buffer& b)
        requires std::equality_comparable<T>
    {
        return a.size_ == b.size_ && std::equal(a.begin(), a.end(), b.begin());
    }
    friend auto operator<=>(const circular_buffer& a, const circular_buffer& b)
        requires std::three_way_comparable<T>
    {
        return std::lexicographical_compare_three_way(a.begin(), a.end(), b.begin(), b.end());
    }

private:
    static constexpr bool nothrow_rotate =
        std::is_nothrow_move_constructible_v<T> && std::is_nothrow_swappable_v<T>;

    // Index arithmetic: every physical index is < cap_, so a sum of two is < 2 * cap_ and one
    // compare brings it back.
    [[nodiscard]] T* slot(size_type logical) const noexcept {
        const size_type i = head_ + logical;
        return buf_ + (i >= cap_ ? i - cap_ : i);
    }
    [[nodiscard]] size_type next(size_type i) const noexcept { return i + 1 == cap_ ? 0 : i + 1; }
    [[nodiscard]] size_type prev(size_type i) const noexcept { return i == 0 ? cap_ - 1 : i - 1; }
    [[nodiscard]] size_type first_part() const noexcept {
        return cap_ - head_ < size_ ? cap_ - head_ : size_;
    }

    static size_type max_size_of(const Allocator& a) noexcept {
        const size_type by_type =
            static_cast<size_type>(std::numeric_limits<difference_type>::max()) / sizeof(T);
        const size_type by_alloc = alloc_traits::max_size(a);
        return by_type < by_alloc ? by_type : by_alloc;
    }

    static T* allocate_storage(Allocator& a, size_type n) {
        if (n == 0) return nullptr;
        if (n > max_size_of(a)) throw_length_error(n);
        T* p = alloc_traits::allocate(a, n);
        poison_memory(p, n * sizeof(T));
        return p;
    }

    // The slot helpers keep ASan's view in step: a slot is addressable only while it holds an
    // element (with small T, neighbours share a granule and the check is coarser, never wrong).
    template <class... Args>
    void construct_slot(T* p, Args&&... args) {
        unpoison_memory(p, sizeof(T));
        if constexpr (has_address_sanitizer) {
            try {
                alloc_traits::construct(alloc_, p, std::forward<Args>(args)...);
            } catch (...) {
                poison_memory(p, sizeof(T));
                throw;
            }
        } else {
            alloc_traits::construct(alloc_, p, std::forward<Args>(args)...);
        }
    }
    void destroy_slot(T* p) noexcept {
        alloc_traits::destroy(alloc_, p);
        poison_memory(p, sizeof(T));
    }

    void destroy_all() noexcept {
        if constexpr (!std::is_trivially_destructible_v<T> || has_address_sanitizer) {
            for (size_type i = 0; i < size_; ++i) destroy_slot(slot(i));
        }
        size_ = 0;
    }
    void release_storage() noexcept {
        destroy_all();
        if (buf_ != nullptr) {
            unpoison_memory(buf_, cap_ * sizeof(T));
            alloc_traits::deallocate(alloc_, buf_, cap_);
        }
        forget_storage();
    }
    void forget_storage() noexcept {
        buf_ = nullptr;
        cap_ = head_ = tail_ = size_ = 0;
    }
    void take_storage(circular_buffer& other) noexcept {
        buf_ = other.buf_;
        cap_ = other.cap_;
        head_ = other.head_;
        tail_ = other.tail_;
        size_ = other.size_;
        other.forget_storage();
    }

    // Precondition of both: not full.
    template <class... Args>
    T* unchecked_emplace_back(Args&&... args) {
        T* p = buf_ + tail_;
        construct_slot(p, std::forward<Args>(args)...);
        tail_ = next(tail_);
        ++size_;
        return p;
    }
    template <class... Args>
    void unchecked_emplace_front(Args&&... args) {
        const size_type h = prev(head_);
        construct_slot(buf_ + h, std::forward<Args>(args)...);
        head_ = h;
        ++size_;
    }

    // Pushes: the common case is inline; a full buffer either overwrites (inline too: in a
    // steady-state overwrite buffer it is the common case) or throws from a cold function.
    template <bool IsValue, class... Args>
    reference emplace_back_impl(Args&&... args) {
        if (size_ != cap_) return *unchecked_emplace_back(std::forward<Args>(args)...);
        if (policy_ == full_policy::reject || cap_ == 0) throw_full(cap_);
        // Full (tail_ == head_): the front slot becomes the back. Assignment (not destroy +
        // construct) keeps the buffer intact if it throws, and handles a value that aliases an
        // element.
        T& dst = buf_[head_];
        overwrite<IsValue>(dst, true, std::forward<Args>(args)...);
        head_ = tail_ = next(head_);
        return dst;
    }

    template <bool IsValue, class... Args>
    reference emplace_front_impl(Args&&... args) {
        if (size_ != cap_) {
            unchecked_emplace_front(std::forward<Args>(args)...);
            return buf_[head_];
        }
        if (policy_ == full_policy::reject || cap_ == 0) throw_full(cap_);
        // Full: the back slot (just before the front) becomes the front.
        const size_type h = prev(head_);
        T& dst = buf_[h];
        overwrite<IsValue>(dst, false, std::forward<Args>(args)...);
        head_ = tail_ = h;
        return dst;
    }

    // Assigns the pushed value to `dst`, the slot of the element being dropped. `at_front`: dst is
    // the front slot (push_back), else the back slot (push_front).
    template <bool IsValue, class... Args>
    void overwrite(T& dst, [[maybe_unused]] bool at_front, Args&&... args) {
        if constexpr (IsValue && (std::is_assignable_v<T&, Args&&> && ...)) {
            ((dst = std::forward<Args>(args)), ...);
        } else if constexpr (std::is_move_assignable_v<T>) {
            T tmp(std::forward<Args>(args)...);
            dst = std::move(tmp);
        } else {
            // Not assignable: construct aside, then replace. A throwing move loses only the
            // element that was being dropped anyway, and the buffer shrinks around its slot.
            T tmp(std::forward<Args>(args)...);
            destroy_slot(&dst);
            try {
                construct_slot(&dst, std::move(tmp));
            } catch (...) {
                if (at_front) head_ = next(head_);
                else tail_ = static_cast<size_type>(&dst - buf_);
                --size_;
                throw;
            }
        }
    }

    void reallocate(size_type new_capacity, bool keep_back) {
        T* nbuf = allocate_storage(alloc_, new_capacity);
        const size_type keep = size_ < new_capacity ? size_ : new_capacity;
        const size_type from = keep_back ? size_ - keep : 0;
        size_type done = 0;
        try {
            for (; done < keep; ++done) {
                T* dst = nbuf + done;
                unpoison_memory(dst, sizeof(T));
                alloc_traits::construct(alloc_, dst, std::move_if_noexcept(*slot(from + done)));
            }
        } catch (...) {
            for (size_type i = 0; i < done; ++i) alloc_traits::destroy(alloc_, nbuf + i);
            if (nbuf != nullptr) {
                unpoison_memory(nbuf, new_capacity * sizeof(T));
                alloc_traits::deallocate(alloc_, nbuf, new_capacity);
            }
            throw;
        }
        release_storage();
        buf_ = nbuf;
        cap_ = new_capacity;
        size_ = keep;
        head_ = 0;
        tail_ = keep == new_capacity ? 0 : keep;
    }

    static void report_empty(const char* what) noexcept {
        report_violation({errc::invalid_argument, "memkit::circular_buffer", nullptr, what});
    }
    [[noreturn]] MEMKIT_COLD static void throw_full(size_type capacity) {
        throw buffer_full(capacity);
    }
    [[noreturn]] MEMKIT_COLD static void throw_out_of_range(size_type i, size_type n) {
        char msg[128];
        std::snprintf(msg, sizeof msg, "memkit::circular_buffer::at: index %zu >= size %zu", i, n);
        throw std::out_of_range(msg);
    }
    [[noreturn]] MEMKIT_COLD static void throw_length_error(size_type n) {
        char msg[128];
        std::snprintf(msg, sizeof msg, "memkit::circular_buffer: capacity %zu above max_size()", n);
        throw std::length_error(msg);
    }

    T* buf_ = nullptr;
    size_type cap_ = 0;
    // Physical indices of the front element and of the slot after the back one (equal when the
    // buffer is full or empty). size_ tells those apart; tail_ is redundant with head_ + size_
    // but saves a push_back the addition and the wrap-around.
    size_type head_ = 0;
    size_type tail_ = 0;
    size_type size_ = 0;
    full_policy policy_ = full_policy::overwrite;
    [[no_unique_address]] Allocator alloc_;
};

/// Random-access iterator: a logical position in a buffer (0 = front).
template <class T, class Allocator>
template <bool Const>
class circular_buffer<T, Allocator>::basic_iterator {
    using buffer_ptr = std::conditional_t<Const, const circular_buffer*, circular_buffer*>;

public:
    using iterator_concept = std::random_access_iterator_tag;
    using iterator_category = std::random_access_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = std::conditional_t<Const, const T*, T*>;
    using reference = std::conditional_t<Const, const T&, T&>;

    basic_iterator() noexcept = default;
    // Implicit, as in the std containers: iterator -> const_iterator.
    template <bool OtherConst>
        requires(Const && !OtherConst)
    basic_iterator(const basic_iterator<OtherConst>& other) noexcept // NOLINT
        : b_(other.b_), i_(other.i_) {}

    [[nodiscard]] reference operator*() const noexcept { return *b_->slot(i_); }
    [[nodiscard]] pointer operator->() const noexcept { return b_->slot(i_); }
    [[nodiscard]] reference operator[](difference_type n) const noexcept {
        return *b_->slot(i_ + static_cast<size_type>(n));
    }

    basic_iterator& operator++() noexcept {
        ++i_;
        return *this;
    }
    basic_iterator operator++(int) noexcept {
        basic_iterator old = *this;
        ++i_;
        return old;
    }
    basic_iterator& operator--() noexcept {
        --i_;
        return *this;
    }
    basic_iterator operator--(int) noexcept {
        basic_iterator old = *this;
        --i_;
        return old;
    }
    basic_iterator& operator+=(difference_type n) noexcept {
        i_ += static_cast<size_type>(n);
        return *this;
    }
    basic_iterator& operator-=(difference_type n) noexcept {
        i_ -= static_cast<size_type>(n);
        return *this;
    }
    [[nodiscard]] friend basic_iterator operator+(basic_iterator it, difference_type n) noexcept {
        return it += n;
    }
    [[nodiscard]] friend basic_iterator operator+(difference_type n, basic_iterator it) noexcept {
        return it += n;
    }
    [[nodiscard]] friend basic_iterator operator-(basic_iterator it, difference_type n) noexcept {
        return it -= n;
    }
    [[nodiscard]] friend difference_type operator-(const basic_iterator& a,
                                                   const basic_iterator& b) noexcept {
        return static_cast<difference_type>(a.i_) - static_cast<difference_type>(b.i_);
    }
    [[nodiscard]] friend bool operator==(const basic_iterator& a,
                                         const basic_iterator& b) noexcept {
        return a.i_ == b.i_;
    }
    [[nodiscard]] friend std::strong_ordering operator<=>(const basic_iterator& a,
                                                          const basic_iterator& b) noexcept {
        return a.i_ <=> b.i_;
    }

private:
    friend class circular_buffer;
    friend class basic_iterator<!Const>;
    basic_iterator(buffer_ptr b, size_type i) noexcept : b_(b), i_(i) {}

    buffer_ptr b_ = nullptr;
    size_type i_ = 0;
};

namespace pmr {
template <class T>
using circular_buffer = memkit::circular_buffer<T, std::pmr::polymorphic_allocator<T>>;
} // namespace pmr

} // namespace memkit
