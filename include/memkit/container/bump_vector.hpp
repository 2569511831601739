// memkit/container/bump_vector.hpp - an append-only sequence whose elements never move.
//
// `bump_vector<T>` grows at the back like std::vector, but in chunks that are never reallocated:
// push_back never copies or moves the elements already there, so pointers and references to them
// stay valid for the life of the element (until pop_back, clear or destruction). It is made for
// building a list of things and keeping pointers to them while it grows: parsed records, AST
// nodes, interned strings, the vertices of a mesh under construction. Its default allocator
// takes the chunks from a memkit::arena, where the memory of a whole phase goes away at once:
//
//   memkit::arena a;
//   memkit::bump_vector<record> records{a};         // chunks come from `a`
//   record* r = &records.emplace_back(parse(line));  // stays valid while records grows
//
// Any standard allocator works too: bump_vector<T, std::allocator<T>>, and
// memkit::pmr::bump_vector<T> (std::pmr::polymorphic_allocator). The arena default means that
// bump_vector<T> has no default constructor: it needs the arena it allocates from.
//
// Layout. Chunk k holds B << k elements, where B = first_chunk_capacity (a power of two: about
// 256 bytes of elements, at least 1). The chunks before k hold B * (2^k - 1) elements, so
// element i lives in chunk k = bit_width(i + B) - 1 - log2(B) at offset i + B - (B << k): a
// countl_zero, a shift and a subtraction, with no loop and no search. A fixed table of chunk
// pointers inside the object (max_chunks entries, enough for about 2^48 bytes of elements; the
// object is about 40 pointers large) makes operator[] two loads. The alternative, equal-sized
// chunks with a growing table of pointers (as std::deque), needs a table that reallocates, and
// either many chunks or much waste for small sequences; doubling chunks waste at most half of
// the last chunk, like std::vector, and their number grows only with the logarithm of the size.
// push_back itself does not compute the index: it bumps a cursor through the current chunk and
// takes the slow path once per chunk.
//
// Complexity: push_back/emplace_back O(1) (one allocation per chunk, log2(n / B) in total, and
// no element is ever copied to grow); pop_back, back, front, operator[], at O(1); iterators are
// random access, ++/-- O(1); clear O(n); reserve O(new chunks); shrink_to_fit O(chunks).
// Stability: push_back and emplace_back invalidate only end() iterators; pop_back invalidates
// iterators, pointers and references to the removed element and end(); clear invalidates
// everything. Moving or swapping the container keeps pointers and references valid (the chunks
// change hands) but not iterators, which refer to the chunk table inside the object.
// Memory: clear() destroys the elements and keeps the chunks for reuse; shrink_to_fit() returns
// the chunks that hold no element; the destructor returns every chunk to the allocator (through
// an arena's std_allocator that is a no-op: the arena frees everything when it is reset).
// Exception safety: push_back/emplace_back are strong (a throwing constructor or a failed chunk
// allocation leaves the container unchanged, the new chunk given back); reserve is strong; copy
// construction leaks nothing; copy assignment and range construction are basic; pop_back, clear,
// swap, shrink_to_fit and the destructor never throw (given a non-throwing destructor).
// Errors: at() out of range throws std::out_of_range; growing beyond max_size() (or reserve of
// more) throws std::length_error; allocation failures propagate the allocator's exception
// (memkit::out_of_memory from an arena, std::bad_alloc). A chunk must fit in one allocation of
// the allocator, so max_size() also depends on the allocator's max_size().
// Allocator: allocator-aware (std::allocator_traits, POCCA/POCMA/POCS, is_always_equal,
// allocator-extended constructors). std_allocator propagates on copy, move and swap, so a copy
// assigned bump_vector allocates from the source's arena afterwards.
// Thread-safety: not thread-safe; like std containers, concurrent const access is fine.
#pragma once

#include <algorithm>
#include <bit>
#include <compare>
#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <memory_resource>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "memkit/alloc/arena.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/pmr/std_allocator.hpp"

namespace memkit {

template <class T, class Allocator = std_allocator<T, arena>>
class bump_vector {
    using alloc_traits = std::allocator_traits<Allocator>;
    // Elements must be destroyed one by one if T needs it or the allocator's destroy() might.
    // clang-format off
    static constexpr bool allocator_destroys = requires(Allocator& a, T* p) { a.destroy(p); };
    // clang-format on
    static_assert(std::is_same_v<typename alloc_traits::value_type, T>,
                  "bump_vector: Allocator::value_type must be T");
    static_assert(std::is_same_v<typename alloc_traits::pointer, T*>,
                  "bump_vector: fancy allocator pointers are not supported");
    static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                  "bump_vector: T must be a non-const, non-volatile object type");

public:
    using value_type = T;
    using allocator_type = Allocator;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using reference = T&;
    using const_reference = const T&;
    using pointer = T*;
    using const_pointer = const T*;

    /// Elements in the first chunk; chunk k holds first_chunk_capacity << k.
    static constexpr size_type first_chunk_capacity =
        std::bit_floor(std::clamp<size_type>(256 / sizeof(T), 1, 256));

private:
    static constexpr int first_shift = std::countr_zero(first_chunk_capacity);
    static constexpr size_type element_limit =
        static_cast<size_type>(std::numeric_limits<difference_type>::max()) / sizeof(T);

public:
    /// Size of the chunk table: the chunks hold at most about 2^48 bytes of elements (the address
    /// space of today's 64-bit machines), and never more elements than difference_type counts.
    static constexpr size_type max_chunks = [] {
        const size_type by_count =
            static_cast<size_type>(std::bit_width(element_limit / first_chunk_capacity + 1)) - 1;
        const size_type chunk_bytes = first_chunk_capacity * sizeof(T);
        const auto bytes_shift = static_cast<size_type>(std::bit_width(chunk_bytes) - 1);
        const size_type by_bytes = bytes_shift >= 47 ? 1 : 48 - bytes_shift;
        return std::max<size_type>(1, std::min(by_count, by_bytes));
    }();

private:
    // Index i lives in chunk chunk_of(i), at offset i - chunk_begin(k).
    static constexpr size_type chunk_of(size_type i) noexcept {
        return static_cast<size_type>(std::bit_width(i + first_chunk_capacity)) - 1 -
               static_cast<size_type>(first_shift);
    }
    static constexpr size_type chunk_begin(size_type k) noexcept {
        return (first_chunk_capacity << k) - first_chunk_capacity;
    }
    static constexpr size_type chunk_capacity(size_type k) noexcept {
        return first_chunk_capacity << k;
    }
    // True if index i is the first of its chunk (i + B is a power of two).
    static constexpr bool starts_chunk(size_type i) noexcept {
        const size_type j = i + first_chunk_capacity;
        return (j & (j - 1)) == 0;
    }
    // The address of element i in a table. For i == size() at the start of a chunk that is not
    // allocated (an end() iterator), the chunk is null and the offset 0: the result is nullptr.
    static T* locate(T* const* table, size_type i) noexcept {
        const size_type k = chunk_of(i);
        return table[k] + (i - chunk_begin(k));
    }

public:
    template <bool Const>
    class basic_iterator {
    public:
        using iterator_category = std::random_access_iterator_tag;
        using iterator_concept = std::random_access_iterator_tag;
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        using pointer = std::conditional_t<Const, const T*, T*>;
        using reference = std::conditional_t<Const, const T&, T&>;

        basic_iterator() noexcept = default;
        // iterator -> const_iterator, implicitly (a template, so never a copy constructor).
        template <bool C, class = std::enable_if_t<Const && !C>>
        basic_iterator(const basic_iterator<C>& o) noexcept // NOLINT(google-explicit-constructor)
            : table_(o.table_), p_(o.p_), i_(o.i_) {}

        [[nodiscard]] reference operator*() const noexcept { return *p_; }
        [[nodiscard]] pointer operator->() const noexcept { return p_; }
        [[nodiscard]] reference operator[](difference_type n) const noexcept {
            return *locate(table_, i_ + static_cast<size_type>(n));
        }

        basic_iterator& operator++() noexcept {
            ++i_;
            if (MEMKIT_LIKELY(!starts_chunk(i_))) ++p_;
            else p_ = locate(table_, i_);
            return *this;
        }
        basic_iterator operator++(int) noexcept {
            basic_iterator old = *this;
            ++*this;
            return old;
        }
        basic_iterator& operator--() noexcept {
            const bool first = starts_chunk(i_);
            --i_;
            if (MEMKIT_LIKELY(!first)) --p_;
            else p_ = locate(table_, i_);
            return *this;
        }
        basic_iterator operator--(int) noexcept {
            basic_iterator old = *this;
            --*this;
            return old;
        }
        basic_iterator& operator+=(difference_type n) noexcept {
            i_ += static_cast<size_type>(n);
            p_ = locate(table_, i_);
            return *this;
        }
        basic_iterator& operator-=(difference_type n) noexcept { return *this += -n; }
        [[nodiscard]] friend basic_iterator operator+(basic_iterator it,
                                                      difference_type n) noexcept {
            return it += n;
        }
        [[nodiscard]] friend basic_iterator operator+(difference_type n,
                                                      basic_iterator it) noexcept {
            return it += n;
        }
        [[nodiscard]] friend basic_iterator operator-(basic_iterator it,
                                                      difference_type n) noexcept {
            return it -= n;
        }
        [[nodiscard]] friend difference_type operator-(const basic_iterator& a,
                                                       const basic_iterator& b) noexcept {
            return static_cast<difference_type>(a.i_ - b.i_);
        }
        friend bool operator==(const basic_iterator& a, const basic_iterator& b) noexcept {
            return a.i_ == b.i_;
        }
        friend std::strong_ordering operator<=>(const basic_iterator& a,
                                                const basic_iterator& b) noexcept {
            return a.i_ <=> b.i_;
        }

    private:
        friend class bump_vector;
        template <bool>
        friend class basic_iterator;

        basic_iterator(T* const* table, T* p, size_type i) noexcept : table_(table), p_(p), i_(i) {}

        T* const* table_ = nullptr; // the container's chunk table
        T* p_ = nullptr;            // element i_ (nullptr at the start of a missing chunk)
        size_type i_ = 0;
    };

    using iterator = basic_iterator<false>;
    using const_iterator = basic_iterator<true>;
    using reverse_iterator = std::reverse_iterator<iterator>;
    using const_reverse_iterator = std::reverse_iterator<const_iterator>;

    // --- construction -------------------------------------------------------------------------

    bump_vector() noexcept(noexcept(Allocator())) requires std::default_initializable<Allocator>
        : bump_vector(Allocator()) {}

    /// With the default allocator, `bump_vector<T> v{my_arena};` allocates from `my_arena`.
    explicit bump_vector(const Allocator& a) noexcept : alloc_(a) {}

    bump_vector(size_type n, const T& value, const Allocator& a = Allocator()) : bump_vector(a) {
        reserve(n);
        for (; n != 0; --n) emplace_back(value);
    }

    template <std::input_iterator It, std::sentinel_for<It> S>
    bump_vector(It first, S last, const Allocator& a = Allocator()) : bump_vector(a) {
        append(std::move(first), std::move(last));
    }

    bump_vector(std::initializer_list<T> il, const Allocator& a = Allocator()) : bump_vector(a) {
        append(il.begin(), il.end());
    }

    bump_vector(const bump_vector& o)
        : bump_vector(o, alloc_traits::select_on_container_copy_construction(o.alloc_)) {}

    // Delegation makes the object complete before the copy starts, so a throwing copy runs the
    // destructor, which frees what was built so far.
    bump_vector(const bump_vector& o, const std::type_identity_t<Allocator>& a) : bump_vector(a) {
        append(o.begin(), o.end());
    }

    // The allocator is copied, not moved: a moved-from allocator must still compare equal to its
    // old value, and copying is how every allocator keeps that promise.
    bump_vector(bump_vector&& o) noexcept : alloc_(o.alloc_) { adopt(o); }

    bump_vector(bump_vector&& o, const std::type_identity_t<Allocator>& a) : bump_vector(a) {
        if (alloc_traits::is_always_equal::value || alloc_ == o.alloc_) {
            adopt(o);
        } else {
            reserve(o.size());
            for (T& x : o) emplace_back(std::move(x));
        }
    }

    ~bump_vector() { release_all(); }

    bump_vector& operator=(const bump_vector& o) {
        if (this == &o) return *this;
        if constexpr (alloc_traits::propagate_on_container_copy_assignment::value) {
            if (!alloc_traits::is_always_equal::value && !(alloc_ == o.alloc_)) release_all();
            alloc_ = o.alloc_;
        }
        clear();
        append(o.begin(), o.end());
        return *this;
    }

    bump_vector& operator=(bump_vector&& o) noexcept(
        alloc_traits::propagate_on_container_move_assignment::value ||
        alloc_traits::is_always_equal::value) {
        if (this == &o) return *this;
        if constexpr (alloc_traits::propagate_on_container_move_assignment::value) {
            release_all();
            alloc_ = o.alloc_;
            adopt(o);
        } else {
            if (alloc_traits::is_always_equal::value || alloc_ == o.alloc_) {
                release_all();
                adopt(o);
            } else {
                // Chunks cannot change hands between unequal allocators: move the elements.
                clear();
                reserve(o.size());
                for (T& x : o) emplace_back(std::move(x));
            }
        }
        return *this;
    }

    bump_vector& operator=(std::initializer_list<T> il) {
        clear();
        append(il.begin(), il.end());
        return *this;
    }

    [[nodiscard]] allocator_type get_allocator() const noexcept { return alloc_; }

    // --- element access -----------------------------------------------------------------------

    [[nodiscard]] reference operator[](size_type i) noexcept { return *locate(table_, i); }
    [[nodiscard]] const_reference operator[](size_type i) const noexcept {
        return *locate(table_, i);
    }
    [[nodiscard]] reference at(size_type i) {
        if (i >= size()) throw_out_of_range();
        return (*this)[i];
    }
    [[nodiscard]] const_reference at(size_type i) const {
        if (i >= size()) throw_out_of_range();
        return (*this)[i];
    }
    [[nodiscard]] reference front() noexcept { return *table_[0]; }
    [[nodiscard]] const_reference front() const noexcept { return *table_[0]; }
    // The cursor always stands just past the last element, in the chunk that holds it.
    [[nodiscard]] reference back() noexcept { return cur_[-1]; }
    [[nodiscard]] const_reference back() const noexcept { return cur_[-1]; }

    /// Calls `f(std::span<T>)` for each chunk's elements, in order: a loop over a span is the
    /// fastest traversal (the compiler vectorizes it). `f` must not add or remove elements.
    template <class F>
    void for_each_segment(F&& f) {
        for_each_chunk(*this, f);
    }
    template <class F>
    void for_each_segment(F&& f) const {
        for_each_chunk(*this, f);
    }

    // --- iterators ----------------------------------------------------------------------------

    [[nodiscard]] iterator begin() noexcept { return iterator(table_, table_[0], 0); }
    [[nodiscard]] const_iterator begin() const noexcept {
        return const_iterator(table_, table_[0], 0);
    }
    [[nodiscard]] iterator end() noexcept { return iterator(table_, end_pointer(), size()); }
    [[nodiscard]] const_iterator end() const noexcept {
        return const_iterator(table_, end_pointer(), size());
    }
    [[nodiscard]] const_iterator cbegin() const noexcept { return begin(); }
    [[nodiscard]] const_iterator cend() const noexcept { return end(); }
    [[nodiscard]] reverse_iterator rbegin() noexcept { return reverse_iterator(end()); }
    [[nodiscard]] const_reverse_iterator rbegin() const noexcept {
        return const_reverse_iterator(end());
    }
    [[nodiscard]] reverse_iterator rend() noexcept { return reverse_iterator(begin()); }
    [[nodiscard]] const_reverse_iterator rend() const noexcept {
        return const_reverse_iterator(begin());
    }
    [[nodiscard]] const_reverse_iterator crbegin() const noexcept { return rbegin(); }
    [[nodiscard]] const_reverse_iterator crend() const noexcept { return rend(); }

    // --- size and capacity --------------------------------------------------------------------

    [[nodiscard]] bool empty() const noexcept { return size() == 0; }
    // Not a member: push_back then updates one pointer and nothing else.
    [[nodiscard]] size_type size() const noexcept {
        return end_index_ - static_cast<size_type>(end_ - cur_);
    }
    /// Elements in the allocated chunks.
    [[nodiscard]] size_type capacity() const noexcept { return chunk_begin(chunks_); }
    /// The most elements the chunk table and the allocator allow: chunks that fit in one
    /// allocation (the allocator's max_size()), at most max_chunks of them.
    [[nodiscard]] size_type max_size() const noexcept {
        const size_type per_allocation = alloc_traits::max_size(alloc_);
        if (per_allocation < first_chunk_capacity) return 0;
        const auto fit = static_cast<size_type>(
            std::bit_width(per_allocation / first_chunk_capacity)); // chunks B << k <= it
        return chunk_begin(std::min(fit, max_chunks));
    }

    /// Allocates chunks until capacity() >= n. Strong guarantee. Throws std::length_error if
    /// n > max_size().
    void reserve(size_type n) {
        if (n > max_size()) throw_length_error();
        const size_type had = chunks_;
        try {
            while (capacity() < n) {
                table_[chunks_] = alloc_traits::allocate(alloc_, chunk_capacity(chunks_));
                ++chunks_;
            }
        } catch (...) {
            while (chunks_ > had) {
                --chunks_;
                alloc_traits::deallocate(alloc_, std::exchange(table_[chunks_], nullptr),
                                         chunk_capacity(chunks_));
            }
            throw;
        }
        if (had == 0 && chunks_ != 0) reset_cursor(); // was empty
    }

    /// Returns the chunks that hold no element to the allocator.
    void shrink_to_fit() noexcept {
        const size_type n = size();
        const size_type keep = n == 0 ? 0 : chunk_of(n - 1) + 1;
        while (chunks_ > keep) {
            --chunks_;
            alloc_traits::deallocate(alloc_, std::exchange(table_[chunks_], nullptr),
                                     chunk_capacity(chunks_));
        }
        if (n == 0) {
            cur_ = end_ = nullptr;
            end_index_ = 0;
        }
    }

    // --- modifiers ----------------------------------------------------------------------------

    /// Appends an element; returns a reference to it, valid until it is popped or cleared.
    /// Strong guarantee.
    template <class... Args>
    MEMKIT_ALWAYS_INLINE reference emplace_back(Args&&... args) {
        if (MEMKIT_LIKELY(cur_ != end_)) {
            T* p = cur_;
            alloc_traits::construct(alloc_, p, std::forward<Args>(args)...);
            cur_ = p + 1;
            return *p;
        }
        return emplace_in_next_chunk(std::forward<Args>(args)...);
    }
    MEMKIT_ALWAYS_INLINE void push_back(const T& value) {
        if (MEMKIT_LIKELY(cur_ != end_)) {
            alloc_traits::construct(alloc_, cur_, value);
            ++cur_;
        } else if constexpr (slow_by_value) {
            push_back_slow(value);
        } else {
            emplace_in_next_chunk(value);
        }
    }
    MEMKIT_ALWAYS_INLINE void push_back(T&& value) {
        if (MEMKIT_LIKELY(cur_ != end_)) {
            alloc_traits::construct(alloc_, cur_, std::move(value));
            ++cur_;
        } else if constexpr (slow_by_value) {
            push_back_slow(value);
        } else {
            emplace_in_next_chunk(std::move(value));
        }
    }

    /// Appends every element of [first, last). Basic guarantee: the elements appended before a
    /// failure stay.
    template <std::input_iterator It, std::sentinel_for<It> S>
    void append(It first, S last) {
        if constexpr (std::sized_sentinel_for<S, It>) {
            const auto n = static_cast<size_type>(std::ranges::distance(first, last));
            if (n <= max_size() - size()) reserve(size() + n);
        }
        for (; first != last; ++first) emplace_back(*first);
    }

    /// Destroys the last element. Precondition: !empty().
    void pop_back() noexcept {
        --cur_;
        alloc_traits::destroy(alloc_, cur_);
        const size_type n = size();
        if (n != 0 && starts_chunk(n)) {
            // The chunk is now empty: the cursor moves to the end of the previous one, so that
            // back() is cur_[-1] again.
            const size_type k = chunk_of(n - 1);
            cur_ = end_ = table_[k] + chunk_capacity(k);
            end_index_ = n;
        }
    }

    /// Destroys every element; the chunks are kept for reuse (shrink_to_fit returns them).
    void clear() noexcept {
        destroy_elements();
        reset_cursor();
    }

    /// Exchanges the contents. Allocators are swapped if they propagate on swap; otherwise they
    /// must compare equal (a precondition, as for standard containers; debug builds report a
    /// violation and do nothing).
    void swap(bump_vector& o) noexcept {
        if (this == &o) return;
        if constexpr (alloc_traits::propagate_on_container_swap::value) {
            using std::swap;
            swap(alloc_, o.alloc_);
        } else if constexpr (debug_checks && !alloc_traits::is_always_equal::value) {
            if (!(alloc_ == o.alloc_)) {
                report_violation({errc::invalid_argument, "memkit::bump_vector", nullptr,
                                  "swap with unequal allocators that do not propagate"});
                return;
            }
        }
        std::swap(cur_, o.cur_);
        std::swap(end_, o.end_);
        std::swap(end_index_, o.end_index_);
        std::swap(chunks_, o.chunks_);
        std::swap_ranges(std::begin(table_), std::end(table_), o.table_);
    }
    friend void swap(bump_vector& a, bump_vector& b) noexcept { a.swap(b); }

    friend bool operator==(const bump_vector& a, const bump_vector& b) {
        return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
    }
    friend auto operator<=>(const bump_vector& a,
                            const bump_vector& b) requires std::three_way_comparable<T> {
        return std::lexicographical_compare_three_way(a.begin(), a.end(), b.begin(), b.end());
    }

private:
    [[noreturn]] MEMKIT_COLD static void throw_out_of_range() {
        throw std::out_of_range("bump_vector::at: index out of range");
    }
    [[noreturn]] MEMKIT_COLD static void throw_length_error() {
        throw std::length_error("bump_vector: size() would exceed max_size()");
    }

    // A small trivially copyable value goes to the slow path in registers: passed by reference,
    // the caller would have to store it to memory on every push_back, the fast ones included.
    static constexpr bool slow_by_value =
        std::is_trivially_copyable_v<T> && sizeof(T) <= 2 * sizeof(void*);
    MEMKIT_NOINLINE void push_back_slow(T value) { emplace_in_next_chunk(value); }

    // cur_ == end_: the current chunk is full (or there is none), so size() == end_index_
    // starts a chunk.
    template <class... Args>
    MEMKIT_NOINLINE reference emplace_in_next_chunk(Args&&... args) {
        // (The clamp only tells the compiler that k indexes the table; k <= chunks_ always.)
        const size_type n = end_index_;
        const size_type k = std::min(chunk_of(n), max_chunks);
        const bool fresh = k >= chunks_;
        T* chunk = nullptr;
        if (fresh) {
            if (n >= max_size()) throw_length_error();
            chunk = alloc_traits::allocate(alloc_, chunk_capacity(k));
        } else {
            chunk = table_[k];
        }
        try {
            alloc_traits::construct(alloc_, chunk, std::forward<Args>(args)...);
        } catch (...) {
            if (fresh) alloc_traits::deallocate(alloc_, chunk, chunk_capacity(k));
            throw;
        }
        if (fresh) {
            table_[k] = chunk;
            chunks_ = k + 1;
        }
        cur_ = chunk + 1;
        end_ = chunk + chunk_capacity(k);
        end_index_ = n + chunk_capacity(k);
        return *chunk;
    }

    T* end_pointer() const noexcept {
        // Past the last element, unless that is the first slot of a chunk not yet allocated.
        return cur_ == end_ && end_index_ != 0 ? locate(table_, end_index_) : cur_;
    }

    // For an empty container: the cursor at the start of the first chunk, if there is one.
    void reset_cursor() noexcept {
        cur_ = table_[0];
        end_ = cur_ == nullptr ? nullptr : cur_ + first_chunk_capacity;
        end_index_ = cur_ == nullptr ? 0 : first_chunk_capacity;
    }

    template <class Self, class F>
    static void for_each_chunk(Self& self, F& f) {
        using elem = std::conditional_t<std::is_const_v<Self>, const T, T>;
        size_type left = self.size();
        for (size_type k = 0; left != 0; ++k) {
            const size_type n = std::min(left, chunk_capacity(k));
            f(std::span<elem>(self.table_[k], n));
            left -= n;
        }
    }

    void destroy_elements() noexcept {
        if constexpr (!std::is_trivially_destructible_v<T> || allocator_destroys) {
            size_type left = size();
            for (size_type k = 0; left != 0; ++k) {
                const size_type n = std::min(left, chunk_capacity(k));
                for (T* p = table_[k]; p != table_[k] + n; ++p) alloc_traits::destroy(alloc_, p);
                left -= n;
            }
        }
    }

    void release_all() noexcept {
        destroy_elements();
        reset_cursor();
        shrink_to_fit();
    }

    // Takes over o's chunks; *this holds none.
    void adopt(bump_vector& o) noexcept {
        cur_ = std::exchange(o.cur_, nullptr);
        end_ = std::exchange(o.end_, nullptr);
        end_index_ = std::exchange(o.end_index_, 0);
        chunks_ = std::exchange(o.chunks_, 0);
        std::copy(std::begin(o.table_), std::end(o.table_), table_);
        std::fill(std::begin(o.table_), std::end(o.table_), nullptr);
    }

    T* cur_ = nullptr; // past the last element, in its chunk (or the start of chunk 0 when empty)
    T* end_ = nullptr; // end of the chunk cur_ is in
    size_type end_index_ = 0; // the index end_ stands for: size() == end_index_ - (end_ - cur_)
    size_type chunks_ = 0;    // table_[0, chunks_) are allocated
    // One entry more than max_chunks, always null: locating the index just past the last possible
    // chunk (an end() iterator of a full container) reads it instead of running off the table.
    T* table_[max_chunks + 1] = {};
    [[no_unique_address]] Allocator alloc_;
};

} // namespace memkit

namespace memkit::pmr {
template <class T>
using bump_vector = memkit::bump_vector<T, std::pmr::polymorphic_allocator<T>>;
} // namespace memkit::pmr
