// bench/common/malloc_peer.hpp - the C library's malloc/free as a benchmark subject, with the
// sized `allocate(n)` / `deallocate(p, n)` shape the variable-size cases use.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace memkit::bench {

struct malloc_peer {
    static constexpr const char* name = "malloc";
    void* allocate(std::size_t n) {
        void* p = std::malloc(n);
        if (p == nullptr) throw std::bad_alloc();
        return p;
    }
    void deallocate(void* p, std::size_t /*n*/) noexcept { std::free(p); }
};

} // namespace memkit::bench
