// The two entry points of the benchmarks' private copy of jemalloc (see jemalloc_peer.hpp).
// Every other symbol of that copy, jemalloc's own malloc and free included, is made local.
#include "jemalloc_peer.hpp"

#include <jemalloc/jemalloc.h>

extern "C" {

void* memkit_bench_jemalloc_allocate(std::size_t size) noexcept { return mallocx(size, 0); }

void memkit_bench_jemalloc_deallocate(void* p, std::size_t size) noexcept { sdallocx(p, size, 0); }
}
