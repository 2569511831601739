// bench/common/jemalloc_peer.hpp - jemalloc as a benchmark peer without replacing malloc.
//
// Linking jemalloc into a program replaces malloc and free for all of it (and dlopen of
// libjemalloc.so.2 fails: its initial-exec TLS needs static TLS space that a dlopen'ed library
// cannot get). bench/CMakeLists.txt therefore links jemalloc's static PIC archive together with
// these two functions into one relocatable object and makes every other symbol in it local:
// malloc stays glibc's, and jemalloc is reachable only through the functions below. They exist
// only when libjemalloc_pic.a is installed (MEMKIT_BENCH_HAVE_JEMALLOC).
#pragma once

#include <cstddef>

extern "C" {
/// jemalloc's mallocx(size, 0).
void* memkit_bench_jemalloc_allocate(std::size_t size) noexcept;
/// jemalloc's sdallocx(p, size, 0): a sized free, as memkit's deallocate is.
void memkit_bench_jemalloc_deallocate(void* p, std::size_t size) noexcept;
}
