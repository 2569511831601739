// memkit/container/stable_vector.hpp - an unordered container whose elements never move.
//
// `stable_vector<T>` (a "colony" or "hive", as plf::colony and the proposed std::hive, P0447)
// keeps its elements in blocks that are never reallocated: a pointer, reference or iterator to an
// element stays valid until that element is erased, whatever is inserted or erased around it.
// Erasing leaves a hole that a later insertion fills, so erase and insert are O(1) and a
// container under churn (entities, particles, connections, graph nodes that refer to each other by
// pointer) never compacts, never copies and rarely allocates. The price: there is no position
// argument and the order of elements is unspecified. insert fills the lowest free slot of a
// block that has one (the block that most recently gained a hole, or the newest block) and takes
// a new block only when every block is full; iteration visits blocks in the order they were
// activated and slots in address order. That order is deterministic for a given sequence of
// operations and is kept by copies, but it is not insertion order.
//
// Layout. A block is one allocation: a header, an occupancy bitmap (one bit per slot) and the
// slots. Iteration and free-slot search both run on the bitmap:
//   * ++it tests the next slot's bit (one load and a bit test); a clear bit (a hole, or the end
//     of the block) goes to an out-of-line path that skips a whole 64-slot word per
//     std::countr_zero, so a long run of holes costs one instruction per 64 slots;
//   * insert finds a free slot in O(1) with two bit scans: a per-block summary word marks the
//     bitmap words that are full, so std::countr_one of the summary gives the first word with a
//     hole and std::countr_one of that word gives the hole. This bounds a block at 64 * 64 = 4096
//     slots (block_capacity_hard_limits()).
// The alternative, plf::colony's jump-counting skipfield, spends 2 bytes per slot instead of 1
// bit (50% more memory traffic than the elements themselves for ints), needs an intrusive free
// list stored in erased slots (so every slot must hold two indices), and makes erase update the
// ends of skip runs; the bitmap gives the same O(1) bounds with smaller, simpler state, and it
// finds whole runs of live elements cheaply (for_each_segment), which is what makes full
// traversals nearly as fast as over a plain array: every run of adjacent live elements is handed
// over as one contiguous std::span that the compiler can vectorize. (Iterators cannot do that:
// each ++ must look at the bitmap, since another element may be erased between two steps.)
//
// Blocks that become empty are unlinked from iteration and kept as reserved capacity, so churn
// does not allocate; shrink_to_fit() (or trim_capacity()) frees them. New blocks grow
// geometrically: each holds as many slots as the container has elements, clamped to
// block_capacity_limits() (stable_vector_limits, like std::hive_limits; by default from about
// 256 bytes of elements, 8 to 64 slots, up to 64 KiB of elements, at most 4096 slots). A block is
// one allocation, so the allocator's max_size() caps it too (an allocator over a pool of 256-byte
// nodes gets blocks that fit a node, below the limits if need be).
//
// Complexity: insert/emplace O(1) (amortized: a new block is one allocation); erase(it) O(1);
// erase(first, last) O(n); ++/-- amortized O(1), O(1) within a block; begin() O(1) (a scan of
// the first block's bitmap words); clear O(n + blocks); size/capacity O(1); reserve O(new
// blocks); shrink_to_fit O(reserved blocks); get_iterator/is_active/is_valid O(blocks).
// Stability: insert, emplace, reserve and shrink_to_fit invalidate nothing, end() included;
// erase invalidates only iterators, pointers and references to the erased element; clear and
// assignment invalidate everything. Move construction and swap keep iterators (but end()),
// pointers and references valid: they refer to the same elements, now in the other container.
// Exception safety: insert/emplace are strong (a failing allocation or constructor leaves the
// container unchanged); insert of a range or of n copies and copy assignment are basic (what was
// inserted before the failure stays); copy construction cleans up and leaks nothing; erase,
// clear, swap, shrink_to_fit and the destructor never throw (given a non-throwing destructor);
// reserve is strong.
// Errors: insert or reserve beyond max_size() throws std::length_error, as does an insert that
// needs a block when the allocator's max_size() cannot hold a block of one element; limits
// outside block_capacity_hard_limits() or with min > max throw std::length_error (as std::hive
// does); allocation failures propagate the allocator's exception (std::bad_alloc,
// memkit::out_of_memory).
// In debug builds (memkit::debug_checks) erasing a slot that holds no element reports
// errc::invalid_argument to the violation handler (and does nothing if the handler returns), as
// does swap with unequal allocators that do not propagate, which is otherwise undefined.
// Allocator: allocator-aware (std::allocator_traits, POCCA/POCMA/POCS, is_always_equal,
// allocator-extended constructors); blocks are allocated through the allocator rebound to an
// internal storage unit. memkit::pmr::stable_vector<T> uses std::pmr::polymorphic_allocator.
// Thread-safety: not thread-safe; like std containers, concurrent const access is fine.
//
//   memkit::stable_vector<particle> ps;
//   particle* p = &*ps.insert({x, y});     // stays valid while other particles come and go
//   ps.erase(ps.get_iterator(p));          // O(1); the slot is reused by the next insert
#pragma once

#include <algorithm>
#include <bit>
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
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "memkit/core/align.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"

namespace memkit {

/// Minimum and maximum number of element slots in a block of a stable_vector (std::hive_limits).
struct stable_vector_limits {
    std::size_t min;
    std::size_t max;
    friend constexpr bool operator==(stable_vector_limits, stable_vector_limits) = default;
};

template <class T, class Allocator = std::allocator<T>>
class stable_vector {
    using alloc_traits = std::allocator_traits<Allocator>;
    // Elements must be destroyed one by one if T needs it or the allocator's destroy() might.
    // clang-format off
    static constexpr bool allocator_destroys = requires(Allocator& a, T* p) { a.destroy(p); };
    // clang-format on
    static_assert(std::is_same_v<typename alloc_traits::value_type, T>,
                  "stable_vector: Allocator::value_type must be T");
    static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                  "stable_vector: T must be a non-const, non-volatile object type");

    // The part of a block that the end sentinel shares: the links of the circular list of active
    // blocks (the sentinel is its own neighbour when there is none) and the slot count, which is
    // 0 only for the sentinel.
    struct node {
        node* next;
        node* prev;
        std::size_t cap;
    };
    struct block : node {
        block* free_next; // active blocks with at least one free slot
        block* free_prev;
        T* elems;
        std::uint64_t full; // bit w: bitmap word w has no free slot (bits past the last are set)
        std::uint64_t last_pad; // bits of the last bitmap word that lie past cap
        std::size_t last_word;
        std::size_t size;
    };

    static constexpr std::size_t word_bits = 64;
    static constexpr std::size_t bits_offset = align_up(sizeof(block), alignof(std::uint64_t));
    static constexpr std::size_t unit_align = std::max(alignof(T), alignof(block));
    struct alignas(unit_align) unit {
        std::byte bytes[unit_align];
    };
    using unit_alloc = typename alloc_traits::template rebind_alloc<unit>;
    using unit_traits = std::allocator_traits<unit_alloc>;
    static_assert(std::is_same_v<typename unit_traits::pointer, unit*>,
                  "stable_vector: fancy allocator pointers are not supported");

    // The occupancy bitmap follows the header; it has one word more than the slots need, so that
    // reading the word that holds bit `cap` (where ++ lands after the last slot) stays in bounds.
    static std::uint64_t* bits(node* b) noexcept {
        return static_cast<std::uint64_t*>(
            static_cast<void*>(reinterpret_cast<std::byte*>(b) + bits_offset));
    }
    static constexpr std::size_t data_words(std::size_t cap) noexcept {
        return (cap + word_bits - 1) / word_bits;
    }

    // The index of the lowest set bit of x != 0: one tzcnt, without std::countr_zero's test for 0.
    static std::size_t lowest_bit(std::uint64_t x) noexcept {
        return static_cast<std::size_t>(__builtin_ctzll(x));
    }

    static std::size_t first_occupied(node* b) noexcept {
        const std::uint64_t* occ = bits(b);
        std::size_t w = 0;
        while (occ[w] == 0) ++w; // a block in the active list is never empty
        return w * word_bits + static_cast<std::size_t>(std::countr_zero(occ[w]));
    }
    static std::size_t last_occupied(node* b) noexcept {
        const std::uint64_t* occ = bits(b);
        std::size_t w = data_words(b->cap) - 1;
        while (occ[w] == 0) --w;
        return w * word_bits + (word_bits - 1) - static_cast<std::size_t>(std::countl_zero(occ[w]));
    }

public:
    using value_type = T;
    using allocator_type = Allocator;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using reference = T&;
    using const_reference = const T&;
    using pointer = typename alloc_traits::pointer;
    using const_pointer = typename alloc_traits::const_pointer;

    template <bool Const>
    class basic_iterator {
    public:
        using iterator_category = std::bidirectional_iterator_tag;
        using iterator_concept = std::bidirectional_iterator_tag;
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        using pointer = std::conditional_t<Const, const T*, T*>;
        using reference = std::conditional_t<Const, const T&, T&>;

        basic_iterator() noexcept = default;
        // iterator -> const_iterator, implicitly (a template, so never a copy constructor).
        template <bool C, class = std::enable_if_t<Const && !C>>
        basic_iterator(const basic_iterator<C>& o) noexcept // NOLINT(google-explicit-constructor)
            : b_(o.b_), p_(o.p_), i_(o.i_) {}

        [[nodiscard]] reference operator*() const noexcept { return *p_; }
        [[nodiscard]] pointer operator->() const noexcept { return p_; }

        MEMKIT_ALWAYS_INLINE basic_iterator& operator++() noexcept {
            ++i_;
            ++p_;
            const std::uint64_t w = bits(b_)[i_ / word_bits];
            if (MEMKIT_LIKELY(w & (std::uint64_t{1} << (i_ % word_bits)))) return *this; // bt
            *this = next_slow(b_, i_, w);
            return *this;
        }
        basic_iterator operator++(int) noexcept {
            basic_iterator old = *this;
            ++*this;
            return old;
        }
        MEMKIT_ALWAYS_INLINE basic_iterator& operator--() noexcept {
            if (MEMKIT_LIKELY(i_ != 0)) {
                const std::size_t j = i_ - 1;
                if (MEMKIT_LIKELY((bits(b_)[j / word_bits] >> (j % word_bits)) & 1)) {
                    i_ = j;
                    --p_;
                    return *this;
                }
            }
            *this = prev_slow(b_, i_);
            return *this;
        }
        basic_iterator operator--(int) noexcept {
            basic_iterator old = *this;
            --*this;
            return old;
        }

        // Every slot has its own address and end() that of its sentinel, so the address alone
        // identifies a position: one comparison per loop test.
        friend bool operator==(const basic_iterator& a, const basic_iterator& b) noexcept {
            return a.p_ == b.p_;
        }

    private:
        friend class stable_vector;
        template <bool>
        friend class basic_iterator;

        basic_iterator(node* b, T* p, std::size_t i) noexcept : b_(b), p_(p), i_(i) {}

        // The slow paths take and return values, not `this`: an iterator whose address escaped
        // into a call would live in memory, and the hot loop would store it on every step.
        //
        // `word` is the bitmap word that holds slot i, which is free or past the end.
        MEMKIT_NOINLINE static basic_iterator next_slow(node* b, std::size_t i,
                                                        std::uint64_t word) noexcept {
            const std::uint64_t w = word >> (i % word_bits);
            if (w != 0) return at(b, i + static_cast<std::size_t>(std::countr_zero(w)));
            const std::uint64_t* occ = bits(b);
            const std::size_t words = data_words(b->cap);
            for (std::size_t k = i / word_bits + 1; k < words; ++k) {
                if (occ[k] != 0)
                    return at(b,
                              k * word_bits + static_cast<std::size_t>(std::countr_zero(occ[k])));
            }
            node* n = b->next;
            if (n->cap == 0) return end_of(n);
            return at(n, first_occupied(n));
        }

        // Decrementing begin() is undefined, so this never reaches the sentinel.
        MEMKIT_NOINLINE static basic_iterator prev_slow(node* b, std::size_t i) noexcept {
            if (i != 0) {
                const std::uint64_t* occ = bits(b);
                const std::size_t j = i - 1;
                std::size_t k = j / word_bits;
                const std::uint64_t w = occ[k] << (word_bits - 1 - j % word_bits);
                if (w != 0) return at(b, j - static_cast<std::size_t>(std::countl_zero(w)));
                while (k-- > 0) {
                    if (occ[k] != 0)
                        return at(b, k * word_bits + (word_bits - 1) -
                                         static_cast<std::size_t>(std::countl_zero(occ[k])));
                }
            }
            node* n = b->prev;
            return at(n, last_occupied(n));
        }

        // end() of the container whose sentinel is s. Its address stands for the element: it is
        // unique (no slot lives inside the container object) and, unlike nullptr, never makes a
        // dereference look possibly null to the compiler's warnings.
        static basic_iterator end_of(node* s) noexcept {
            return basic_iterator(s, static_cast<T*>(static_cast<void*>(s)), 0);
        }

        // Slot i of block b (not the sentinel).
        static basic_iterator at(node* b, std::size_t i) noexcept {
            return basic_iterator(b, static_cast<block*>(b)->elems + i, i);
        }

        node* b_ = nullptr;
        T* p_ = nullptr; // the element (for end(), the sentinel's address)
        std::size_t i_ = 0;
    };

    using iterator = basic_iterator<false>;
    using const_iterator = basic_iterator<true>;
    using reverse_iterator = std::reverse_iterator<iterator>;
    using const_reverse_iterator = std::reverse_iterator<const_iterator>;

    // --- construction -------------------------------------------------------------------------

    stable_vector() noexcept(noexcept(Allocator())) : stable_vector(Allocator()) {}

    explicit stable_vector(const Allocator& a) noexcept
        : min_cap_(default_limits().min), max_cap_(default_limits().max), alloc_(a) {}

    explicit stable_vector(stable_vector_limits limits, const Allocator& a = Allocator())
        : min_cap_(limits.min), max_cap_(limits.max), alloc_(a) {
        check_limits(limits);
    }

    stable_vector(size_type n, const T& value, const Allocator& a = Allocator())
        : stable_vector(a) {
        insert(n, value);
    }

    template <std::input_iterator It, std::sentinel_for<It> S>
    stable_vector(It first, S last, const Allocator& a = Allocator()) : stable_vector(a) {
        insert(std::move(first), std::move(last));
    }

    stable_vector(std::initializer_list<T> il, const Allocator& a = Allocator())
        : stable_vector(a) {
        insert(il);
    }

    stable_vector(const stable_vector& o)
        : stable_vector(o, alloc_traits::select_on_container_copy_construction(o.alloc_)) {}

    // Delegation makes the object complete before the copy starts, so a throwing copy runs the
    // destructor, which frees what was built so far.
    stable_vector(const stable_vector& o, const std::type_identity_t<Allocator>& a)
        : stable_vector(a) {
        min_cap_ = o.min_cap_;
        max_cap_ = o.max_cap_;
        append_copy(o);
    }

    // The allocator is copied, not moved: a moved-from allocator must still compare equal to its
    // old value, and copying is how every allocator keeps that promise.
    stable_vector(stable_vector&& o) noexcept
        : min_cap_(o.min_cap_), max_cap_(o.max_cap_), alloc_(o.alloc_) {
        adopt(o);
    }

    stable_vector(stable_vector&& o, const std::type_identity_t<Allocator>& a) : stable_vector(a) {
        min_cap_ = o.min_cap_;
        max_cap_ = o.max_cap_;
        if constexpr (alloc_traits::is_always_equal::value) {
            adopt(o);
        } else if (alloc_ == o.alloc_) {
            adopt(o);
        } else {
            reserve(o.size_);
            for (T& x : o) emplace(std::move(x));
        }
    }

    ~stable_vector() { release_all(); }

    stable_vector& operator=(const stable_vector& o) {
        if (this == &o) return *this;
        if constexpr (alloc_traits::propagate_on_container_copy_assignment::value) {
            if (!alloc_traits::is_always_equal::value && !(alloc_ == o.alloc_)) release_all();
            alloc_ = o.alloc_;
        }
        clear();
        min_cap_ = o.min_cap_;
        max_cap_ = o.max_cap_;
        append_copy(o);
        return *this;
    }

    stable_vector& operator=(stable_vector&& o) noexcept(
        alloc_traits::propagate_on_container_move_assignment::value ||
        alloc_traits::is_always_equal::value) {
        if (this == &o) return *this;
        if constexpr (alloc_traits::propagate_on_container_move_assignment::value) {
            release_all();
            alloc_ = o.alloc_;
            min_cap_ = o.min_cap_;
            max_cap_ = o.max_cap_;
            adopt(o);
        } else {
            if (alloc_traits::is_always_equal::value || alloc_ == o.alloc_) {
                release_all();
                min_cap_ = o.min_cap_;
                max_cap_ = o.max_cap_;
                adopt(o);
            } else {
                // Blocks cannot change hands between unequal allocators: move the elements.
                clear();
                min_cap_ = o.min_cap_;
                max_cap_ = o.max_cap_;
                reserve(o.size_);
                for (T& x : o) emplace(std::move(x));
            }
        }
        return *this;
    }

    stable_vector& operator=(std::initializer_list<T> il) {
        clear();
        insert(il);
        return *this;
    }

    [[nodiscard]] allocator_type get_allocator() const noexcept { return alloc_; }

    // --- iteration ----------------------------------------------------------------------------

    [[nodiscard]] iterator begin() noexcept {
        node* f = sentinel_.next;
        return f == &sentinel_ ? end() : iterator::at(f, first_occupied(f));
    }
    [[nodiscard]] const_iterator begin() const noexcept {
        return const_cast<stable_vector*>(this)->begin();
    }
    [[nodiscard]] iterator end() noexcept { return iterator::end_of(&sentinel_); }
    [[nodiscard]] const_iterator end() const noexcept {
        return const_cast<stable_vector*>(this)->end();
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

    /// Calls `f(std::span<T>)` for every maximal run of adjacent live elements, in iteration
    /// order. With few holes the runs are long, and a loop over a span is what the compiler
    /// vectorizes: the fastest way to visit every element. `f` must not insert or erase.
    template <class F>
    void for_each_segment(F&& f) {
        for_each_run(*this, f);
    }
    template <class F>
    void for_each_segment(F&& f) const {
        for_each_run(*this, f);
    }

    // --- size and capacity --------------------------------------------------------------------

    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] size_type size() const noexcept { return size_; }
    /// The allocator's max_size() bounds one block, not the container (see fit_block_capacity).
    [[nodiscard]] size_type max_size() const noexcept {
        return static_cast<size_type>(std::numeric_limits<difference_type>::max()) / sizeof(T);
    }
    /// Slots in every block held, active or reserved.
    [[nodiscard]] size_type capacity() const noexcept { return capacity_; }
    /// Bytes allocated for blocks (headers, bitmaps and slots).
    [[nodiscard]] size_type memory_use() const noexcept { return bytes_; }

    [[nodiscard]] stable_vector_limits block_capacity_limits() const noexcept {
        return {min_cap_, max_cap_};
    }
    [[nodiscard]] static constexpr stable_vector_limits block_capacity_hard_limits() noexcept {
        return {1, word_bits * word_bits};
    }

    /// Allocates empty blocks until capacity() >= n; they are used before any new allocation.
    /// Strong guarantee. Throws std::length_error if n > max_size().
    void reserve(size_type n) {
        if (n > max_size()) throw_length_error("stable_vector::reserve: n > max_size()");
        if (n <= capacity_) return;
        block* fresh = nullptr;
        try {
            while (capacity_ < n) {
                block* b = allocate_block(
                    fit_block_capacity(std::clamp(n - capacity_, min_cap_, max_cap_)));
                b->next = fresh;
                fresh = b;
            }
        } catch (...) {
            while (fresh != nullptr) {
                block* b = fresh;
                fresh = static_cast<block*>(b->next);
                deallocate_block(b);
            }
            throw;
        }
        while (fresh != nullptr) {
            block* b = fresh;
            fresh = static_cast<block*>(b->next);
            b->next = reserved_;
            reserved_ = b;
        }
    }

    /// Frees the reserved blocks (those without elements). Elements never move, so the blocks that
    /// hold any element stay, however sparse. Invalidates no iterator, pointer or reference.
    void shrink_to_fit() noexcept {
        while (reserved_ != nullptr) {
            block* b = reserved_;
            reserved_ = static_cast<block*>(b->next);
            deallocate_block(b);
        }
    }
    /// The std::hive name of shrink_to_fit().
    void trim_capacity() noexcept { shrink_to_fit(); }

    // --- modifiers ----------------------------------------------------------------------------

    /// Constructs an element in a free slot (a hole left by erase first) and returns an iterator
    /// to it. Strong guarantee.
    template <class... Args>
    iterator emplace(Args&&... args) {
        if (MEMKIT_LIKELY(free_ != nullptr)) {
            block* b = free_;
            const std::size_t w = lowest_bit(~b->full);
            const std::size_t i = w * word_bits + lowest_bit(~bits(b)[w]);
            T* p = b->elems + i;
            alloc_traits::construct(alloc_, p, std::forward<Args>(args)...);
            occupy(b, i);
            return iterator(b, p, i);
        }
        return emplace_in_new_block(std::forward<Args>(args)...);
    }
    iterator insert(const T& value) { return emplace(value); }
    iterator insert(T&& value) { return emplace(std::move(value)); }

    /// Inserts n copies of value. Basic guarantee: the copies made before a failure stay.
    void insert(size_type n, const T& value) {
        reserve_more(n);
        for (; n != 0; --n) emplace(value);
    }
    /// Inserts every element of [first, last). Basic guarantee.
    template <std::input_iterator It, std::sentinel_for<It> S>
    void insert(It first, S last) {
        if constexpr (std::sized_sentinel_for<S, It>)
            reserve_more(static_cast<size_type>(std::ranges::distance(first, last)));
        for (; first != last; ++first) emplace(*first);
    }
    void insert(std::initializer_list<T> il) { insert(il.begin(), il.end()); }

    /// Destroys the element at `pos` and returns an iterator to the next one. O(1). A block left
    /// without elements leaves the iteration and is kept as reserved capacity.
    iterator erase(const_iterator pos) noexcept {
        const std::size_t i = pos.i_;
        const std::size_t w = i / word_bits;
        const std::uint64_t bit = std::uint64_t{1} << (i % word_bits);
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(pos.b_ == nullptr || i >= pos.b_->cap ||
                                (bits(pos.b_)[w] & bit) == 0)) {
                report_violation({errc::invalid_argument, "memkit::stable_vector", nullptr,
                                  "erase of a position that holds no element"});
                return unconst(pos);
            }
        }
        block* b = static_cast<block*>(pos.b_);
        T* p = b->elems + i;
        iterator next(b, p, i);
        ++next;
        alloc_traits::destroy(alloc_, p);
        bits(b)[w] &= ~bit;
        b->full &= ~(std::uint64_t{1} << w);
        --size_;
        if (b->size-- == b->cap) link_free(b);
        if (MEMKIT_UNLIKELY(b->size == 0)) retire(b);
        return next;
    }

    /// Erases [first, last); returns `last`. O(distance).
    iterator erase(const_iterator first, const_iterator last) noexcept {
        while (first != last) first = erase(first);
        return unconst(last);
    }

    /// Destroys every element. The blocks are kept as reserved capacity (shrink_to_fit frees them).
    void clear() noexcept {
        node* n = sentinel_.next;
        while (n != &sentinel_) {
            block* b = static_cast<block*>(n);
            n = n->next;
            destroy_elements(b);
            reset_block(b);
            b->next = reserved_;
            reserved_ = b;
        }
        sentinel_.next = sentinel_.prev = &sentinel_;
        free_ = nullptr;
        size_ = 0;
    }

    /// Exchanges the contents. Allocators are swapped if they propagate on swap; otherwise they
    /// must compare equal (a precondition, as for standard containers).
    void swap(stable_vector& o) noexcept {
        if (this == &o) return;
        if constexpr (alloc_traits::propagate_on_container_swap::value) {
            using std::swap;
            swap(alloc_, o.alloc_);
        } else if constexpr (debug_checks && !alloc_traits::is_always_equal::value) {
            if (!(alloc_ == o.alloc_)) {
                report_violation({errc::invalid_argument, "memkit::stable_vector", nullptr,
                                  "swap with unequal allocators that do not propagate"});
                return;
            }
        }
        std::swap(min_cap_, o.min_cap_);
        std::swap(max_cap_, o.max_cap_);
        state mine = detach();
        attach(o.detach());
        o.attach(mine);
    }
    friend void swap(stable_vector& a, stable_vector& b) noexcept { a.swap(b); }

    // --- element lookup -----------------------------------------------------------------------

    /// The iterator to the element at `p`, or end() if `p` is not a live element of this
    /// container. O(blocks).
    [[nodiscard]] iterator get_iterator(const T* p) noexcept {
        const std::less<const T*> before{};
        for (node* n = sentinel_.next; n != &sentinel_; n = n->next) {
            const block* b = static_cast<block*>(n);
            if (before(p, b->elems) || !before(p, b->elems + b->cap)) continue;
            const auto i = static_cast<std::size_t>(p - b->elems);
            if ((bits(n)[i / word_bits] >> (i % word_bits)) & 1) return iterator::at(n, i);
            break;
        }
        return end();
    }
    [[nodiscard]] const_iterator get_iterator(const T* p) const noexcept {
        return const_cast<stable_vector*>(this)->get_iterator(p);
    }

    /// True if `p` points at a live element of this container: inside one of its active blocks, at
    /// an occupied slot. It cannot tell whether that slot still holds the element `p` was taken
    /// from: after an erase, the next insert may reuse the slot. O(blocks).
    [[nodiscard]] bool is_active(const T* p) const noexcept { return get_iterator(p) != end(); }

    /// True if `it` is dereferenceable in this container: it refers to an occupied slot of one of
    /// the container's active blocks. Like is_active, it cannot detect that the element it referred
    /// to was erased and its slot reused. It compares block addresses only, so it is safe to call
    /// with an iterator into a block that was freed. O(blocks).
    [[nodiscard]] bool is_valid(const_iterator it) const noexcept {
        if (it.b_ == nullptr || it.b_ == &sentinel_) return false;
        for (const node* n = sentinel_.next; n != &sentinel_; n = n->next) {
            if (n != it.b_) continue;
            return it.i_ < n->cap &&
                   ((bits(const_cast<node*>(n))[it.i_ / word_bits] >> (it.i_ % word_bits)) & 1);
        }
        return false;
    }

    /// Equal when both hold equal elements in the same iteration order (a copy compares equal to
    /// its source). Containers with the same elements in another order compare unequal; compare
    /// them with std::is_permutation when the order does not matter.
    friend bool operator==(const stable_vector& a, const stable_vector& b) {
        return a.size_ == b.size_ && std::equal(a.begin(), a.end(), b.begin());
    }

private:
    struct state {
        node* first;
        node* last;
        block* free_list;
        block* reserved_list;
        size_type size, capacity, bytes;
    };

    static constexpr stable_vector_limits default_limits() noexcept {
        const std::size_t lo = std::clamp<std::size_t>(256 / sizeof(T), 8, 64);
        const std::size_t hi =
            std::clamp<std::size_t>(65536 / sizeof(T), lo, word_bits * word_bits);
        return {lo, hi};
    }

    static void check_limits(stable_vector_limits l) {
        const stable_vector_limits hard = block_capacity_hard_limits();
        if (l.min > l.max || l.min < hard.min || l.max > hard.max)
            throw_length_error("stable_vector: block capacity limits outside the hard limits");
    }

    [[noreturn]] MEMKIT_COLD static void throw_length_error(const char* what) {
        throw std::length_error(what);
    }

    static iterator unconst(const_iterator c) noexcept {
        iterator it;
        it.b_ = c.b_;
        it.p_ = const_cast<T*>(c.p_);
        it.i_ = c.i_;
        return it;
    }

    // Takes over o's blocks; *this holds none.
    void adopt(stable_vector& o) noexcept { attach(o.detach()); }

    state detach() noexcept {
        state s{sentinel_.next, sentinel_.prev, free_, reserved_, size_, capacity_, bytes_};
        if (s.first == &sentinel_) s.first = s.last = nullptr;
        sentinel_.next = sentinel_.prev = &sentinel_;
        free_ = reserved_ = nullptr;
        size_ = capacity_ = bytes_ = 0;
        return s;
    }

    void attach(const state& s) noexcept {
        if (s.first != nullptr) {
            sentinel_.next = s.first;
            sentinel_.prev = s.last;
            s.first->prev = &sentinel_;
            s.last->next = &sentinel_;
        }
        free_ = s.free_list;
        reserved_ = s.reserved_list;
        size_ = s.size;
        capacity_ = s.capacity;
        bytes_ = s.bytes;
    }

    void release_all() noexcept {
        clear();
        shrink_to_fit();
    }

    void append_copy(const stable_vector& o) {
        reserve_more(o.size_);
        o.for_each_segment([this](std::span<const T> run) {
            for (const T& x : run) emplace(x);
        });
    }

    // Reserve for n more elements, unless that exceeds max_size (then the inserts report it).
    void reserve_more(size_type n) {
        if (n <= max_size() - size_) reserve(size_ + n);
    }

    // Runs are found from the transitions of the bitmap: bit i of `starts` is set where a run
    // begins at slot i, bit i of `stops` where slot i is free and slot i - 1 is not. `open` (0 or
    // 1) carries a run across the word boundary. Runs alternate, so the n-th stop closes the open
    // run or the n-th start. This takes a few instructions per word and per run, without the
    // data-dependent branches of a bit-by-bit scan.
    template <class Self, class F>
    static void for_each_run(Self& self, F& f) {
        using elem = std::conditional_t<std::is_const_v<Self>, const T, T>;
        for (node* n = self.sentinel_.next; n != &self.sentinel_; n = n->next) {
            const block* b = static_cast<block*>(n);
            const std::uint64_t* occ = bits(n);
            const std::size_t words = data_words(b->cap);
            std::uint64_t open = 0;
            std::size_t run_begin = 0;
            for (std::size_t k = 0; k < words; ++k) {
                const std::uint64_t w = occ[k];
                if (w == ~std::uint64_t{0} && open != 0) continue; // the run goes on
                std::uint64_t starts = w & ~(w << 1) & ~open;
                std::uint64_t stops = (~w & (w << 1)) | (~w & open);
                const std::size_t base = k * word_bits;
                while (stops != 0) {
                    if (open == 0) {
                        run_begin = base + static_cast<std::size_t>(std::countr_zero(starts));
                        starts &= starts - 1;
                    }
                    const std::size_t end =
                        base + static_cast<std::size_t>(std::countr_zero(stops));
                    stops &= stops - 1;
                    open = 0;
                    f(std::span<elem>(b->elems + run_begin, end - run_begin));
                }
                // A start left over begins the run that reaches the word's last bit.
                if (starts != 0)
                    run_begin = base + static_cast<std::size_t>(std::countr_zero(starts));
                open = w >> (word_bits - 1);
            }
            if (open != 0) f(std::span<elem>(b->elems + run_begin, words * word_bits - run_begin));
        }
    }

    void occupy(block* b, std::size_t i) noexcept {
        const std::size_t w = i / word_bits;
        std::uint64_t v = bits(b)[w] |= std::uint64_t{1} << (i % word_bits);
        if (w == b->last_word) v |= b->last_pad;
        if (v == ~std::uint64_t{0}) b->full |= std::uint64_t{1} << w;
        ++size_;
        if (++b->size == b->cap) unlink_free(b);
    }

    template <class... Args>
    MEMKIT_NOINLINE iterator emplace_in_new_block(Args&&... args) {
        block* b = reserved_;
        const bool fresh = b == nullptr;
        if (fresh) b = allocate_block(fit_block_capacity(next_block_capacity()));
        try {
            alloc_traits::construct(alloc_, b->elems, std::forward<Args>(args)...);
        } catch (...) {
            if (fresh) deallocate_block(b);
            throw;
        }
        if (!fresh) reserved_ = static_cast<block*>(b->next);
        b->prev = sentinel_.prev;
        b->next = &sentinel_;
        sentinel_.prev->next = b;
        sentinel_.prev = b;
        link_free(b);
        occupy(b, 0);
        return iterator(b, b->elems, 0);
    }

    // Geometric growth: a new block holds as many slots as there are elements (every active
    // block is full when this is called), within the limits and max_size().
    size_type next_block_capacity() const {
        const size_type room = max_size() - size_;
        if (room == 0) throw_length_error("stable_vector: size() would exceed max_size()");
        return std::min(std::clamp(size_, min_cap_, max_cap_), room);
    }

    // A block is one allocation, so the allocator's max_size() (an allocator over a pool of
    // fixed-size nodes reports the node size) caps the slots of a block, below the limits if need
    // be. If not even one slot fits, the container cannot grow: std::length_error.
    size_type fit_block_capacity(size_type cap) const {
        const unit_alloc ua(alloc_);
        const size_type max_units = unit_traits::max_size(ua);
        if (MEMKIT_LIKELY(block_units(cap) <= max_units)) return cap;
        return fit_block_capacity_slow(cap, max_units);
    }

    MEMKIT_COLD static size_type fit_block_capacity_slow(size_type cap, size_type max_units) {
        const size_type max_bytes = max_units > std::numeric_limits<size_type>::max() / unit_align
                                        ? std::numeric_limits<size_type>::max()
                                        : max_units * unit_align;
        while (cap != 0 && block_units(cap) > max_units) {
            const size_type off = elems_offset(cap);
            cap = off >= max_bytes ? 0 : std::min(cap - 1, (max_bytes - off) / sizeof(T));
        }
        if (cap == 0)
            throw_length_error("stable_vector: a block of one element exceeds the allocator's "
                               "max_size()");
        return cap;
    }

    static constexpr std::size_t elems_offset(std::size_t cap) noexcept {
        return align_up(bits_offset + (cap / word_bits + 1) * sizeof(std::uint64_t), alignof(T));
    }

    static std::size_t block_units(std::size_t cap) noexcept {
        // cap <= 4096 and cap <= max_size(), so this cannot overflow.
        return (elems_offset(cap) + cap * sizeof(T) + unit_align - 1) / unit_align;
    }

    block* allocate_block(std::size_t cap) {
        const std::size_t units = block_units(cap);
        unit_alloc ua(alloc_);
        unit* mem = unit_traits::allocate(ua, units);
        std::byte* raw = mem->bytes;
        block* b = ::new (static_cast<void*>(raw)) block{};
        b->cap = cap;
        b->elems = static_cast<T*>(static_cast<void*>(raw + elems_offset(cap)));
        b->last_word = data_words(cap) - 1;
        b->last_pad = cap % word_bits == 0 ? 0 : ~std::uint64_t{0} << (cap % word_bits);
        reset_block(b);
        capacity_ += cap;
        bytes_ += units * unit_align;
        return b;
    }

    void deallocate_block(block* b) noexcept {
        const std::size_t cap = b->cap;
        const std::size_t units = block_units(cap);
        capacity_ -= cap;
        bytes_ -= units * unit_align;
        b->~block();
        unit_alloc ua(alloc_);
        unit_traits::deallocate(ua, static_cast<unit*>(static_cast<void*>(b)), units);
    }

    static void reset_block(block* b) noexcept {
        const std::size_t words = data_words(b->cap);
        std::memset(bits(b), 0, (words + 1) * sizeof(std::uint64_t));
        b->full = words >= word_bits ? 0 : ~std::uint64_t{0} << words;
        b->size = 0;
        b->free_next = b->free_prev = nullptr;
    }

    void destroy_elements(block* b) noexcept {
        if constexpr (!std::is_trivially_destructible_v<T> || allocator_destroys) {
            const std::uint64_t* occ = bits(b);
            const std::size_t words = data_words(b->cap);
            for (std::size_t k = 0; k < words; ++k) {
                for (std::uint64_t w = occ[k]; w != 0; w &= w - 1) {
                    const std::size_t i =
                        k * word_bits + static_cast<std::size_t>(std::countr_zero(w));
                    alloc_traits::destroy(alloc_, b->elems + i);
                }
            }
        }
    }

    // A block that lost its last element leaves the iteration (so that ++ stays O(1) amortized)
    // and waits in the reserved list for the next insert that finds no hole.
    MEMKIT_NOINLINE void retire(block* b) noexcept {
        b->prev->next = b->next;
        b->next->prev = b->prev;
        unlink_free(b);
        reset_block(b);
        b->next = reserved_;
        reserved_ = b;
    }

    void link_free(block* b) noexcept {
        b->free_prev = nullptr;
        b->free_next = free_;
        if (free_ != nullptr) free_->free_prev = b;
        free_ = b;
    }

    void unlink_free(block* b) noexcept {
        if (b->free_prev != nullptr) b->free_prev->free_next = b->free_next;
        else free_ = b->free_next;
        if (b->free_next != nullptr) b->free_next->free_prev = b->free_prev;
        b->free_next = b->free_prev = nullptr;
    }

    node sentinel_{&sentinel_, &sentinel_, 0};
    block* free_ = nullptr;     // active blocks with a free slot, most recently holed first
    block* reserved_ = nullptr; // empty blocks out of the iteration, singly linked through next
    size_type size_ = 0;
    size_type capacity_ = 0;
    size_type bytes_ = 0;
    size_type min_cap_;
    size_type max_cap_;
    [[no_unique_address]] Allocator alloc_;
};

/// Erases every element for which pred is true; returns how many were erased. O(n).
template <class T, class A, class Pred>
typename stable_vector<T, A>::size_type erase_if(stable_vector<T, A>& c, Pred pred) {
    const auto before = c.size();
    for (auto it = c.begin(); it != c.end();) {
        if (pred(std::as_const(*it))) it = c.erase(it);
        else ++it;
    }
    return before - c.size();
}

} // namespace memkit

namespace memkit::pmr {
template <class T>
using stable_vector = memkit::stable_vector<T, std::pmr::polymorphic_allocator<T>>;
} // namespace memkit::pmr
