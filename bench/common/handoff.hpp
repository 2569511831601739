// bench/common/handoff.hpp - shared pieces of the multi-threaded benchmark cases.
//
// Cases registered with ->Threads(n) run their function on n threads at once. `shared_run<T>`
// holds what those threads share for one run (the allocator under test, the mailboxes): thread 0
// builds it before the timed loop and destroys it after; Google Benchmark's barriers at the start
// and the end of the loop order that with the other threads, which must only touch it inside the
// loop. A `mailbox` hands a batch of blocks from one thread to another (cross-thread frees):
// the sender waits until it is empty, fills it and marks it full; the receiver waits until it is
// full, frees its blocks and marks it empty. Waits spin briefly, then block (std::atomic::wait),
// so that the CPU time of a thread whose partner was descheduled on a busy machine is not
// charged to the allocator under test: the cases report CPU time, which then measures the
// allocator's work and its contention, not the scheduler.
//
// Thread-safety: as described; all threads of a run run the same number of iterations.
#pragma once

#include <atomic>
#include <cstddef>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "memkit/core/barrier.hpp"
#include "memkit/core/platform.hpp"

namespace memkit::bench {

struct alignas(cache_line_size) mailbox {
    std::atomic<int> full{0};
    std::vector<void*> blocks;

    explicit mailbox(std::size_t n) : blocks(n) {}
    void wait_empty() const noexcept { wait_for(0); }
    void wait_full() const noexcept { wait_for(1); }
    void publish() noexcept { set(1); }
    void drained() noexcept { set(0); }

private:
    void wait_for(int want) const noexcept {
        for (int spins = 0; spins < 32; ++spins) {
            if (full.load(std::memory_order_acquire) == want) return;
            cpu_relax();
        }
        for (int now = full.load(std::memory_order_acquire); now != want;
             now = full.load(std::memory_order_acquire))
            full.wait(now, std::memory_order_acquire);
    }
    void set(int value) noexcept {
        full.store(value, std::memory_order_release);
        full.notify_one();
    }
};

/// What the threads of one run share; see the header comment.
template <class T>
class shared_run {
public:
    template <class... Args>
    static void begin(benchmark::State& state, Args&&... args) {
        if (state.thread_index() == 0) slot() = new T(std::forward<Args>(args)...);
    }
    /// Only inside the timed loop.
    static T& get() noexcept { return *slot(); }
    static void end(benchmark::State& state) {
        if (state.thread_index() == 0) {
            delete slot();
            slot() = nullptr;
        }
    }

private:
    static T*& slot() noexcept {
        static T* p = nullptr;
        return p;
    }
};

} // namespace memkit::bench
