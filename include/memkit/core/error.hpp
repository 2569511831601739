// memkit/core/error.hpp - the typed errors every memkit API reports.
//
// Three channels, chosen per API and documented on it:
//  * exceptions from throwing calls (`allocate`): `out_of_memory` (a std::bad_alloc that carries
//    the numbers), `invalid_alignment` and `bad_size` (std::invalid_argument), and
//    std::system_error for OS failures;
//  * `std::error_code` values of `memkit::errc` from non-throwing calls that need a reason;
//  * precondition violations found by debug checks inside noexcept calls (`deallocate` of a
//    pointer the allocator does not own, a double free, a non-LIFO stack free). Those cannot
//    throw, so they go to the violation handler. The default handler prints the violation and
//    aborts; a test or a service may install its own. If the handler returns, the offending call
//    does nothing (the pointer is ignored), so no allocator state is corrupted.
//
// Thread-safety: exception types are immutable values; the violation handler is an atomic.
//
//   try { a.allocate(n, 3); } catch (const memkit::invalid_alignment& e) { log(e.what()); }
//   std::error_code ec = memkit::errc::limit_exceeded;   // category "memkit"
//   memkit::set_violation_handler([](const memkit::violation& v) { count(v.code); });
#pragma once

#include <cstddef>
#include <new>
#include <stdexcept>
#include <system_error>

namespace memkit {

/// Error conditions reported by memkit. Values are stable; 0 means success.
enum class errc : int {
    out_of_memory = 1,  ///< the allocator (or its parent) has no memory for the request
    invalid_alignment,  ///< alignment is not a power of two, or above what the allocator supports
    bad_size,           ///< zero size, a size above max_size(), or an overflowing size computation
    not_owned,          ///< a pointer that this allocator did not hand out
    double_free,        ///< a block freed twice
    lifo_violation,     ///< a stack allocator block freed out of LIFO order
    limit_exceeded,     ///< a configured capacity or maximum would be exceeded
    invalid_argument,   ///< any other argument outside the documented domain
    budget_exceeded,    ///< a byte budget would be exceeded (memkit::budgeted, budgets)
    corruption_detected,  ///< a heap check found a broken boundary tag or free list
    still_in_use, ///< destroyed or reset while blocks, objects or children still depend on it
};

} // namespace memkit

template <>
struct std::is_error_code_enum<memkit::errc> : std::true_type {};

namespace memkit {

/// The "memkit" error category.
[[nodiscard]] const std::error_category& error_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// Thrown when an allocation cannot be satisfied. Carries the request and the allocator's state
/// at the time of failure; values the allocator cannot know are `unknown`.
class out_of_memory : public std::bad_alloc {
public:
    static constexpr std::size_t unknown = static_cast<std::size_t>(-1);

    out_of_memory(const char* allocator, std::size_t requested, std::size_t available = unknown,
                  std::size_t used = unknown, std::size_t capacity = unknown) noexcept;

    [[nodiscard]] const char* what() const noexcept override { return msg_; }
    [[nodiscard]] const char* allocator() const noexcept { return allocator_; }
    [[nodiscard]] std::size_t requested() const noexcept { return requested_; }
    [[nodiscard]] std::size_t available() const noexcept { return available_; }
    [[nodiscard]] std::size_t used() const noexcept { return used_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] virtual std::error_code code() const noexcept {
        return make_error_code(errc::out_of_memory);
    }

protected:
    struct preformatted {};
    /// For derived errors that write their own message (at most 223 characters are kept).
    out_of_memory(preformatted, const char* allocator, std::size_t requested,
                  std::size_t available, std::size_t used, std::size_t capacity,
                  const char* message) noexcept;

private:
    const char* allocator_;  // a string literal: copying the exception never allocates
    std::size_t requested_, available_, used_, capacity_;
    char msg_[224];
};

/// Thrown for an alignment that is not a power of two or exceeds what the allocator supports.
class invalid_alignment : public std::invalid_argument {
public:
    invalid_alignment(const char* allocator, std::size_t alignment, std::size_t max_alignment);
    [[nodiscard]] std::size_t alignment() const noexcept { return alignment_; }
    [[nodiscard]] std::size_t max_alignment() const noexcept { return max_alignment_; }
    [[nodiscard]] std::error_code code() const noexcept { return make_error_code(errc::invalid_alignment); }

private:
    std::size_t alignment_, max_alignment_;
};

/// Thrown for a zero size, a size above the allocator's maximum, or a size computation that
/// overflows (`n * sizeof(T)`).
class bad_size : public std::invalid_argument {
public:
    bad_size(const char* allocator, std::size_t size, std::size_t max_size);
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::size_t max_size() const noexcept { return max_size_; }
    [[nodiscard]] std::error_code code() const noexcept { return make_error_code(errc::bad_size); }

private:
    std::size_t size_, max_size_;
};

/// Thrown when a request would exceed a byte budget (memkit::budgeted). It is an out_of_memory
/// (so a std::bad_alloc: std::pmr callers handle it as usual) whose available() is the budget
/// still unspent; remaining() says the same, limit() is the whole budget.
class budget_exceeded : public out_of_memory {
public:
    budget_exceeded(const char* allocator, std::size_t requested, std::size_t remaining,
                    std::size_t used, std::size_t limit) noexcept;
    [[nodiscard]] std::size_t remaining() const noexcept { return available(); }
    [[nodiscard]] std::size_t limit() const noexcept { return capacity(); }
    [[nodiscard]] std::error_code code() const noexcept override {
        return make_error_code(errc::budget_exceeded);
    }
};

/// Thrown by heap checks (`validate()`) that find a broken boundary tag, free list or header.
/// `address()` is where the damage was found.
class corruption_detected : public std::runtime_error {
public:
    corruption_detected(const char* allocator, const void* address, const char* detail);
    [[nodiscard]] const void* address() const noexcept { return address_; }
    [[nodiscard]] std::error_code code() const noexcept {
        return make_error_code(errc::corruption_detected);
    }

private:
    const void* address_;
};

/// A precondition violation detected by a debug check inside a noexcept function.
struct violation {
    errc code;              ///< not_owned, double_free, lifo_violation, ...
    const char* allocator;  ///< the allocator's name, e.g. "memkit::pool"
    const void* pointer;    ///< the offending pointer, if any
    const char* detail;     ///< a short human-readable explanation
};

using violation_handler = void (*)(const violation&);

/// Installs `h` (nullptr restores the default, which prints to stderr and aborts) and returns the
/// previous handler.
violation_handler set_violation_handler(violation_handler h) noexcept;

/// Reports a violation to the installed handler. Returns only if the handler returns.
void report_violation(const violation& v) noexcept;

/// Throws the exception that matches the request's defect: bad_size for size 0 or size above
/// `max_size`, invalid_alignment for a non-power-of-two alignment or one above `max_align`.
/// Called on the cold path of `allocate` once `try_allocate` has failed its argument check.
[[noreturn]] void throw_bad_request(const char* allocator, std::size_t size, std::size_t align,
                                    std::size_t max_size, std::size_t max_align);

} // namespace memkit

