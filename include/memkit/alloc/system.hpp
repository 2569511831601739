// memkit/alloc/system.hpp - the C runtime heap (malloc/free) as a memkit allocator.
//
// `system_allocator` is stateless: every instance is interchangeable. Requests up to
// alignof(std::max_align_t) go to malloc; larger power-of-two alignments go to posix_memalign.
// It is the default parent of every memkit building block.
//
// Complexity: that of the C library's malloc. Thread-safety: thread-safe.
// Failure: allocate throws memkit::out_of_memory (a std::bad_alloc) when malloc fails,
// memkit::bad_size for a zero or too large size, memkit::invalid_alignment for an alignment that
// is not a power of two or above max_alignment; try_allocate returns nullptr in all those cases.
//
//   memkit::system_allocator sys;
//   void* p = sys.allocate(256, 64);
//   sys.deallocate(p, 256, 64);
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "memkit/core/align.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"

namespace memkit {

class system_allocator {
public:
    static constexpr bool is_thread_safe = true;
    /// Largest supported alignment (1 GiB: enough for huge-page aligned buffers).
    static constexpr std::size_t max_alignment = std::size_t{1} << 30;
    static constexpr const char* name = "memkit::system_allocator";

    [[nodiscard]] MEMKIT_MALLOC_LIKE void* allocate(std::size_t size,
                                                    std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(size, align); MEMKIT_LIKELY(p != nullptr)) return p;
        fail(size, align);
    }

    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        if (MEMKIT_UNLIKELY(size - 1 >= max_size())) return nullptr;
        if (MEMKIT_LIKELY(align <= alignof(std::max_align_t) && is_pow2(align)))
            return std::malloc(size);
        return aligned(size, align);
    }

    void deallocate(void* p, std::size_t /*size*/,
                    std::size_t /*align*/ = alignof(std::max_align_t)) noexcept {
        std::free(p);
    }

    [[nodiscard]] static constexpr std::size_t max_size() noexcept {
        return static_cast<std::size_t>(PTRDIFF_MAX);
    }

    friend constexpr bool operator==(system_allocator, system_allocator) noexcept { return true; }

private:
    static MEMKIT_NOINLINE void* aligned(std::size_t size, std::size_t align) noexcept {
        if (!is_pow2(align) || align > max_alignment) return nullptr;
        void* p = nullptr;
        return ::posix_memalign(&p, align, size) == 0 ? p : nullptr;
    }

    [[noreturn]] static MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) {
        if (size == 0 || size > max_size() || !is_pow2(align) || align > max_alignment)
            throw_bad_request(name, size, align, max_size(), max_alignment);
        throw out_of_memory(name, size);
    }
};

} // namespace memkit
