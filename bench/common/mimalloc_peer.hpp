// bench/common/mimalloc_peer.hpp - mimalloc as a benchmark peer without replacing malloc.
//
// Debian ships mimalloc only as a shared library that exports malloc and free: linking it would
// make every "malloc" peer (and memkit's own system_allocator) mimalloc. The library is therefore
// loaded at run time with dlopen(RTLD_LOCAL), which keeps the program's malloc glibc's, and only
// mi_malloc/mi_free are looked up.
#pragma once

#include <cstddef>

namespace memkit::bench {

struct mimalloc_api {
    void* (*allocate)(std::size_t size) noexcept;
    void (*deallocate)(void* p) noexcept;
};

/// mimalloc's entry points, or nullptr when libmimalloc.so.2 cannot be loaded (then its peers are
/// reported as skipped).
[[nodiscard]] const mimalloc_api* mimalloc() noexcept;

} // namespace memkit::bench
