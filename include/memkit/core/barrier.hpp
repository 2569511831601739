// memkit/core/barrier.hpp - memory ordering primitives and spin-wait helpers.
//
// `compiler_barrier()` stops the compiler from moving memory accesses across it (no CPU fence);
// `acquire_fence()`, `release_fence()` and `full_fence()` are std::atomic_thread_fence with the
// named order; `cpu_relax()` is the pause hint for spin loops (PAUSE on x86, YIELD on ARM), which
// saves power and frees the sibling hyper-thread while waiting.
//
// Thread-safety: all functions are thread-safe by definition.
//
//   while (!ready.load(std::memory_order_relaxed)) memkit::cpu_relax();
//   memkit::acquire_fence();
#pragma once

#include <atomic>

namespace memkit {

inline void compiler_barrier() noexcept { std::atomic_signal_fence(std::memory_order_seq_cst); }
inline void acquire_fence() noexcept { std::atomic_thread_fence(std::memory_order_acquire); }
inline void release_fence() noexcept { std::atomic_thread_fence(std::memory_order_release); }
inline void full_fence() noexcept { std::atomic_thread_fence(std::memory_order_seq_cst); }

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    asm volatile("yield" ::: "memory");
#else
    compiler_barrier();
#endif
}

} // namespace memkit
