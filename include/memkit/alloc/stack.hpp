// memkit/alloc/stack.hpp - a LIFO allocator over one fixed, contiguous buffer.
//
// `basic_stack_allocator<Parent>` hands out blocks by bumping a top pointer through a buffer of
// fixed capacity, taken once from Parent at construction or supplied by the caller (a
// std::span<std::byte>, never freed here). Unlike an arena it takes blocks back: every block is
// preceded by an 8-byte header holding the previous top, so freeing the top block restores the
// exact previous top and no alignment padding leaks. Blocks must be freed in reverse order of
// allocation; `mark()` / `unwind(m)` free everything allocated after a marker at once, and
// `reset()` frees everything. Unwinding invalidates the markers taken above the unwind point.
//
// Sanitizers: under ASan (and valgrind with MEMKIT_VALGRIND=1) the free space above the top is
// poisoned; allocate unpoisons the block header and exactly the requested bytes, and
// deallocate, unwind and reset poison what they free, so a read of a freed block or past the
// end of the top block is reported.
//
// Complexity: allocate, deallocate, mark, unwind and reset are O(1); the buffer never grows.
// Thread-safety: none; wrap it in memkit::synchronized to share it.
// Failure: allocate throws memkit::out_of_memory (with available/used/capacity) when the request
// does not fit, memkit::bad_size for size 0 or size > max_size(), memkit::invalid_alignment for
// an alignment that is not a power of two or above max_alignment (4096); try_allocate returns
// nullptr instead. With debug checks on, freeing a block that is not the top one reports
// errc::lifo_violation, a pointer outside the buffer errc::not_owned, and unwinding to a marker
// above the current top errc::lifo_violation; the call then changes nothing.
//
//   memkit::stack_allocator s{64 * 1024};
//   auto m = s.mark();
//   void* p = s.allocate(256, 32);  /* ... */  s.unwind(m);
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>

#include "memkit/alloc/system.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

template <allocator Parent = system_allocator>
class basic_stack_allocator {
public:
    static constexpr bool is_thread_safe = false;
    static constexpr std::size_t max_alignment = 4096;
    static constexpr const char* name = "memkit::stack_allocator";

    /// A saved top of stack. It also keeps the bytes in use and the live block count at the time
    /// of `mark()`, so that stats stay exact after `unwind`.
    class marker {
    public:
        friend bool operator==(const marker&, const marker&) = default;

    private:
        friend class basic_stack_allocator;
        marker(std::byte* top, std::size_t bytes, std::uint64_t live) noexcept
            : top_(top), bytes_in_use_(bytes), live_(live) {}

        std::byte* top_;
        std::size_t bytes_in_use_;
        std::uint64_t live_;
    };

    /// Takes a buffer of `capacity` bytes from `parent`; throws bad_size for capacity 0 and
    /// whatever the parent throws when it has no memory.
    explicit basic_stack_allocator(std::size_t capacity, Parent parent = {})
        : parent_(std::move(parent)) {
        if (capacity == 0) throw bad_size(name, 0, allocator_traits<Parent>::max_size(parent_));
        begin_ = static_cast<std::byte*>(parent_.allocate(capacity, buffer_alignment));
        top_ = begin_;
        end_ = begin_ + capacity;
        owns_buffer_ = true;
        if constexpr (has_memory_annotations) mark_unused(begin_, capacity);
    }

    /// Uses the caller's buffer, which must outlive the allocator and is never freed by it.
    explicit basic_stack_allocator(std::span<std::byte> buffer, Parent parent = {}) noexcept
        : parent_(std::move(parent)), begin_(buffer.data()), top_(buffer.data()),
          end_(buffer.data() + buffer.size()) {
        if constexpr (has_memory_annotations) mark_unused(begin_, buffer.size());
    }

    basic_stack_allocator(const basic_stack_allocator&) = delete;
    basic_stack_allocator& operator=(const basic_stack_allocator&) = delete;

    basic_stack_allocator(basic_stack_allocator&& other) noexcept
        : parent_(std::move(other.parent_)), begin_(std::exchange(other.begin_, nullptr)),
          top_(std::exchange(other.top_, nullptr)), end_(std::exchange(other.end_, nullptr)),
          bytes_in_use_(std::exchange(other.bytes_in_use_, 0)),
          peak_(std::exchange(other.peak_, 0)), allocations_(std::exchange(other.allocations_, 0)),
          deallocations_(std::exchange(other.deallocations_, 0)),
          owns_buffer_(std::exchange(other.owns_buffer_, false)) {}

    basic_stack_allocator& operator=(basic_stack_allocator&& other) noexcept {
        if (this != &other) {
            release_buffer();
            parent_ = std::move(other.parent_);
            begin_ = std::exchange(other.begin_, nullptr);
            top_ = std::exchange(other.top_, nullptr);
            end_ = std::exchange(other.end_, nullptr);
            bytes_in_use_ = std::exchange(other.bytes_in_use_, 0);
            peak_ = std::exchange(other.peak_, 0);
            allocations_ = std::exchange(other.allocations_, 0);
            deallocations_ = std::exchange(other.deallocations_, 0);
            owns_buffer_ = std::exchange(other.owns_buffer_, false);
        }
        return *this;
    }

    ~basic_stack_allocator() { release_buffer(); }

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        // One combined test for size 0, size > capacity, a non-power-of-two alignment and an
        // alignment above the maximum (sizes between max_size() and the capacity fail the fit
        // test below). With size <= capacity, `user + size` cannot wrap.
        const bool bad = (size - 1 >= static_cast<std::size_t>(end_ - begin_)) |
                         ((align & (align - 1)) != 0) | (align - 1 >= max_alignment);
        if (MEMKIT_UNLIKELY(bad)) return nullptr;
        const auto top = reinterpret_cast<std::uintptr_t>(top_);
        const auto user = (top + header_size + align - 1) & ~static_cast<std::uintptr_t>(align - 1);
        if (MEMKIT_UNLIKELY(user + size > reinterpret_cast<std::uintptr_t>(end_))) return nullptr;
        // The header may be unaligned for small alignments; memcpy compiles to a plain store.
        auto* p = top_ + (user - top);
        if constexpr (has_memory_annotations) mark_owned(p - header_size, header_size);
        std::memcpy(p - header_size, &top_, header_size);
        if constexpr (has_memory_annotations) mark_allocated(p, size);
        top_ = p + size;
        bytes_in_use_ += size;
        peak_ = peak_ < bytes_in_use_ ? bytes_in_use_ : peak_;
        ++allocations_;
        return p;
    }

    /// Frees the top block: `p`, `size` and `align` are those of the last live allocation.
    void deallocate(void* p, std::size_t size,
                    std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        auto* b = static_cast<std::byte*>(p);
        if constexpr (debug_checks) {
            if (MEMKIT_UNLIKELY(!is_top_block(b, size))) return report_bad_free(b);
        }
        std::memcpy(&top_, b - header_size, header_size);
        if constexpr (has_memory_annotations)
            mark_unused(top_, static_cast<std::size_t>(b + size - top_)); // b + size: the old top
        bytes_in_use_ -= size;
        ++deallocations_;
    }

    [[nodiscard]] marker mark() const noexcept {
        return marker{top_, bytes_in_use_, allocations_ - deallocations_};
    }

    /// Frees every block allocated after `m` was taken.
    void unwind(marker m) noexcept {
        if constexpr (debug_checks) {
            const auto t = reinterpret_cast<std::uintptr_t>(m.top_);
            if (MEMKIT_UNLIKELY(t < reinterpret_cast<std::uintptr_t>(begin_) ||
                                t > reinterpret_cast<std::uintptr_t>(top_)))
                return report_bad_unwind(m);
        }
        if constexpr (has_memory_annotations)
            mark_unused(m.top_, static_cast<std::size_t>(top_ - m.top_));
        top_ = m.top_;
        bytes_in_use_ = m.bytes_in_use_;
        deallocations_ += (allocations_ - deallocations_) - m.live_;
    }

    /// Frees every block. The peak and the call counters keep counting from construction.
    void reset() noexcept {
        deallocations_ = allocations_;
        if constexpr (has_memory_annotations)
            mark_unused(begin_, static_cast<std::size_t>(top_ - begin_));
        top_ = begin_;
        bytes_in_use_ = 0;
    }

    /// True if `p` points into the buffer.
    [[nodiscard]] bool owns(const void* p) const noexcept {
        const auto v = reinterpret_cast<std::uintptr_t>(p);
        return v >= reinterpret_cast<std::uintptr_t>(begin_) &&
               v < reinterpret_cast<std::uintptr_t>(end_);
    }

    /// Bytes consumed from the buffer, including headers and alignment padding.
    [[nodiscard]] std::size_t used() const noexcept {
        return static_cast<std::size_t>(top_ - begin_);
    }
    [[nodiscard]] std::size_t remaining() const noexcept {
        return static_cast<std::size_t>(end_ - top_);
    }
    [[nodiscard]] std::size_t capacity() const noexcept {
        return static_cast<std::size_t>(end_ - begin_);
    }
    /// The largest request an empty stack could satisfy (capacity minus one block header).
    [[nodiscard]] std::size_t max_size() const noexcept {
        const std::size_t c = capacity();
        return c > header_size ? c - header_size : 0;
    }

    /// bytes_in_use: sum of the sizes of live blocks; peak_bytes: its maximum since
    /// construction; capacity: the buffer size; deallocations include blocks freed by unwind
    /// and reset.
    [[nodiscard]] allocator_stats stats() const noexcept {
        return {bytes_in_use_, peak_, capacity(), allocations_, deallocations_};
    }

    [[nodiscard]] Parent& parent() noexcept { return parent_; }
    [[nodiscard]] const Parent& parent() const noexcept { return parent_; }

private:
    static constexpr std::size_t header_size = sizeof(std::byte*);
    static constexpr std::size_t buffer_alignment = alignof(std::max_align_t);

    bool is_top_block(const std::byte* p, std::size_t size) const noexcept {
        // The top block always ends exactly at top_, and its header lies inside the buffer.
        const auto v = reinterpret_cast<std::uintptr_t>(p);
        return v >= reinterpret_cast<std::uintptr_t>(begin_) + header_size &&
               v < reinterpret_cast<std::uintptr_t>(top_) &&
               v + size == reinterpret_cast<std::uintptr_t>(top_);
    }

    MEMKIT_NOINLINE void report_bad_free(const std::byte* p) const noexcept {
        if (!owns(p))
            report_violation({errc::not_owned, name, p, "pointer outside the stack's buffer"});
        else
            report_violation({errc::lifo_violation, name, p,
                              "deallocate of a block that is not the top of the stack"});
    }

    MEMKIT_NOINLINE void report_bad_unwind(const marker& m) const noexcept {
        const auto v = reinterpret_cast<std::uintptr_t>(m.top_);
        if (v < reinterpret_cast<std::uintptr_t>(begin_) ||
            v > reinterpret_cast<std::uintptr_t>(end_))
            report_violation({errc::not_owned, name, m.top_, "marker from another stack"});
        else
            report_violation(
                {errc::lifo_violation, name, m.top_, "unwind to a marker above the current top"});
    }

    void release_buffer() noexcept {
        // A caller buffer outlives the allocator, and the parent may keep bookkeeping in its
        // own: either way the memory leaves addressable.
        if constexpr (has_memory_annotations) {
            if (begin_ != nullptr) mark_owned(begin_, capacity());
        }
        if (owns_buffer_) parent_.deallocate(begin_, capacity(), buffer_alignment);
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        if (size == 0 || size > max_size() || !is_pow2(align) || align > max_alignment)
            throw_bad_request(name, size, align, max_size(), max_alignment);
        throw out_of_memory(name, size, remaining(), used(), capacity());
    }

    [[no_unique_address]] Parent parent_;
    std::byte* begin_ = nullptr;
    std::byte* top_ = nullptr;
    std::byte* end_ = nullptr;
    std::size_t bytes_in_use_ = 0;
    std::size_t peak_ = 0;
    std::uint64_t allocations_ = 0;
    std::uint64_t deallocations_ = 0;
    bool owns_buffer_ = false;
};

using stack_allocator = basic_stack_allocator<>;

} // namespace memkit
