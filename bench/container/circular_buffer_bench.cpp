// Benchmarks of memkit::circular_buffer and memkit::spsc_ring
// (include/memkit/container/circular_buffer.hpp, spsc_ring.hpp) against the containers they
// replace.
//
// circular_buffer, int elements, capacity 1024, against std::deque<int> and
// boost::circular_buffer<int>:
//   push-pop/1024  - steady state: half full, then push_back + front + pop_front, repeatedly
//                    (a FIFO queue); one push and one pop are two element operations;
//   overwrite/1024 - push_back into a full buffer, which drops the front (a last-N history);
//                    std::deque has no such mode and is not a peer here.
// spsc_ring, 64-bit sequence numbers, capacity 1024, one producer and one consumer thread
// (Google Benchmark ->Threads(2): thread 0 pushes, thread 1 pops), against
// boost::lockfree::spsc_queue (runtime capacity) and a std::mutex-protected std::deque:
//   throughput/2-threads        - one element per push and per pop;
//   throughput-bulk64/2-threads - pushes and pops of up to 64 elements at a time.
// The two threads are pinned to two different CPUs (of those the process may use, when there are
// at least two) for the run and unpinned after it: a queue between threads is there to cross
// cores, and left to itself a busy scheduler often time-slices both threads on one core, where
// no cache line ever moves. A side that finds the queue full (or empty) spins briefly, then
// yields, the same for every subject. Each item is one op; the reported time is CPU time averaged
// over the two threads, which is the wall time per item when both threads run (both spin), so
// items/s is the throughput.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#if defined(MEMKIT_BENCH_HAVE_BOOST)
#include <boost/circular_buffer.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#endif

#include "common/handoff.hpp"
#include "common/harness.hpp"
#include "memkit/container/circular_buffer.hpp"
#include "memkit/container/spsc_ring.hpp"
#include "memkit/core/barrier.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t capacity = 1024;
constexpr std::size_t rounds = 1024; // element operations (pairs for push-pop) per iteration

// ---- circular_buffer -------------------------------------------------------------------------

struct memkit_buffer {
    static constexpr const char* name = "memkit::circular_buffer";
    memkit::circular_buffer<int> b{capacity};
    void push_back(int v) { b.push_back(v); }
    int front() const { return b.front(); }
    void pop_front() { b.pop_front(); }
};

struct std_deque {
    static constexpr const char* name = "std::deque";
    std::deque<int> b;
    void push_back(int v) { b.push_back(v); }
    int front() const { return b.front(); }
    void pop_front() { b.pop_front(); }
};

#if defined(MEMKIT_BENCH_HAVE_BOOST)
struct boost_buffer {
    static constexpr const char* name = "boost::circular_buffer";
    boost::circular_buffer<int> b{capacity};
    void push_back(int v) { b.push_back(v); }
    int front() const { return b.front(); }
    void pop_front() { b.pop_front(); }
};
#endif

template <class Subject>
void push_pop(benchmark::State& state) {
    Subject s;
    int v = 0;
    for (std::size_t i = 0; i < capacity / 2; ++i) s.push_back(v++);
    long sum = 0;
    for (auto _ : state) {
        for (std::size_t i = 0; i < rounds; ++i) {
            s.push_back(v++);
            sum += s.front();
            s.pop_front();
        }
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, 2 * rounds);
}

template <class Subject>
void overwrite(benchmark::State& state) {
    Subject s;
    int v = 0;
    for (std::size_t i = 0; i < capacity; ++i) s.push_back(v++);
    for (auto _ : state) {
        for (std::size_t i = 0; i < rounds; ++i) s.push_back(v++);
        benchmark::DoNotOptimize(s.front());
        benchmark::ClobberMemory();
    }
    mb::set_allocations(state, rounds);
}

// ---- spsc_ring
// -----------------------------------------------------------------------------------

using item = std::uint64_t;
constexpr std::size_t batch = 4096; // items per thread per iteration
constexpr std::size_t bulk = 64;

// Spin a little, then give the CPU away: on a loaded machine the partner may not be running.
class backoff {
public:
    void wait() noexcept {
        if (++spins_ < 64) {
            memkit::cpu_relax();
        } else {
            spins_ = 0;
            std::this_thread::yield();
        }
    }
    void reset() noexcept { spins_ = 0; }

private:
    int spins_ = 0;
};

// Pins the calling thread to the `index`-th CPU it may run on, and restores its affinity when
// destroyed (thread 0 is Google Benchmark's main thread). Does nothing with fewer than 2 CPUs.
class pin_to_cpu {
public:
    explicit pin_to_cpu([[maybe_unused]] int index) {
#if defined(__linux__)
        if (pthread_getaffinity_np(pthread_self(), sizeof saved_, &saved_) != 0) return;
        std::vector<int> cpus;
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &saved_)) cpus.push_back(c);
        if (cpus.size() < 2) return;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[static_cast<std::size_t>(index) % cpus.size()], &one);
        pinned_ = pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
#endif
    }
    ~pin_to_cpu() {
#if defined(__linux__)
        if (pinned_) pthread_setaffinity_np(pthread_self(), sizeof saved_, &saved_);
#endif
    }
    pin_to_cpu(const pin_to_cpu&) = delete;
    pin_to_cpu& operator=(const pin_to_cpu&) = delete;

private:
#if defined(__linux__)
    cpu_set_t saved_{};
    bool pinned_ = false;
#endif
};

struct memkit_ring {
    static constexpr const char* name = "memkit::spsc_ring";
    memkit::spsc_ring<item> q{capacity};
    bool try_push(item v) { return q.try_push(v); }
    bool try_pop(item& v) { return q.try_pop(v); }
    std::size_t push(const item* p, std::size_t n) { return q.push(std::span<const item>(p, n)); }
    std::size_t pop(item* p, std::size_t n) { return q.pop(std::span<item>(p, n)); }
};

#if defined(MEMKIT_BENCH_HAVE_BOOST)
struct boost_ring {
    static constexpr const char* name = "boost::lockfree::spsc_queue";
    boost::lockfree::spsc_queue<item> q{capacity};
    bool try_push(item v) { return q.push(v); }
    bool try_pop(item& v) { return q.pop(v); }
    std::size_t push(const item* p, std::size_t n) { return q.push(p, n); }
    std::size_t pop(item* p, std::size_t n) { return q.pop(p, n); }
};
#endif

struct locked_deque {
    static constexpr const char* name = "std::mutex+std::deque";
    std::mutex m;
    std::deque<item> q;
    bool try_push(item v) {
        std::lock_guard lock(m);
        if (q.size() == capacity) return false;
        q.push_back(v);
        return true;
    }
    bool try_pop(item& v) {
        std::lock_guard lock(m);
        if (q.empty()) return false;
        v = q.front();
        q.pop_front();
        return true;
    }
    std::size_t push(const item* p, std::size_t n) {
        std::lock_guard lock(m);
        const std::size_t room = capacity - q.size();
        if (n > room) n = room;
        q.insert(q.end(), p, p + n);
        return n;
    }
    std::size_t pop(item* p, std::size_t n) {
        std::lock_guard lock(m);
        if (n > q.size()) n = q.size();
        for (std::size_t i = 0; i < n; ++i) p[i] = q[i];
        q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(n));
        return n;
    }
};

template <class Subject>
using shared = mb::shared_run<Subject>;

template <class Subject>
void throughput(benchmark::State& state) {
    const pin_to_cpu pin(state.thread_index());
    const bool producer = state.thread_index() == 0;
    item next = 0;
    item sum = 0;
    backoff wait;
    shared<Subject>::begin(state);
    for (auto _ : state) {
        Subject& q = shared<Subject>::get();
        if (producer) {
            for (std::size_t i = 0; i < batch; ++i) {
                while (!q.try_push(next)) wait.wait();
                wait.reset();
                ++next;
            }
        } else {
            for (std::size_t i = 0; i < batch; ++i) {
                item v;
                while (!q.try_pop(v)) wait.wait();
                wait.reset();
                sum += v;
            }
        }
    }
    benchmark::DoNotOptimize(sum);
    shared<Subject>::end(state);
    mb::set_allocations(state, batch);
}

template <class Subject>
void throughput_bulk(benchmark::State& state) {
    const pin_to_cpu pin(state.thread_index());
    const bool producer = state.thread_index() == 0;
    item buf[bulk];
    item next = 0;
    item sum = 0;
    backoff wait;
    shared<Subject>::begin(state);
    for (auto _ : state) {
        Subject& q = shared<Subject>::get();
        std::size_t done = 0;
        while (done < batch) {
            const std::size_t want = batch - done < bulk ? batch - done : bulk;
            std::size_t n;
            if (producer) {
                for (std::size_t i = 0; i < want; ++i) buf[i] = next + i;
                n = q.push(buf, want);
                next += n;
            } else {
                n = q.pop(buf, want);
                for (std::size_t i = 0; i < n; ++i) sum += buf[i];
            }
            if (n == 0) {
                wait.wait();
            } else {
                wait.reset();
                done += n;
            }
        }
    }
    benchmark::DoNotOptimize(sum);
    shared<Subject>::end(state);
    mb::set_allocations(state, batch);
}

template <class Subject>
struct patterns {
    static void push_pop_run(benchmark::State& s) { push_pop<Subject>(s); }
    static void overwrite_run(benchmark::State& s) { overwrite<Subject>(s); }
};

#if defined(MEMKIT_BENCH_HAVE_BOOST)
constexpr bool have_boost = true;
#else
constexpr bool have_boost = false;
#endif
constexpr const char* no_boost = "Boost headers not installed; run scripts/setup";

// Registers a case's subjects one after the other, so that they run back to back.
void register_buffers() {
    const std::string cap = std::to_string(capacity);
    const std::string push_pop_case = "circular_buffer/push-pop/" + cap;
    const std::string overwrite_case = "circular_buffer/overwrite/" + cap;
    mb::add_case({push_pop_case, memkit_buffer::name, mb::role::memkit, 2 * rounds},
                 patterns<memkit_buffer>::push_pop_run);
    mb::add_case({push_pop_case, std_deque::name, mb::role::peer, 2 * rounds},
                 patterns<std_deque>::push_pop_run);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({push_pop_case, boost_buffer::name, mb::role::peer, 2 * rounds},
                 patterns<boost_buffer>::push_pop_run);
#endif
    mb::add_case({overwrite_case, memkit_buffer::name, mb::role::memkit, rounds},
                 patterns<memkit_buffer>::overwrite_run);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({overwrite_case, boost_buffer::name, mb::role::peer, rounds},
                 patterns<boost_buffer>::overwrite_run);
#endif
    if (!have_boost) {
        for (const std::string& c : {push_pop_case, overwrite_case})
            mb::add_skipped(c, "boost::circular_buffer", no_boost);
    }
}

template <template <class> class Run>
void register_ring_case(const std::string& case_name) {
    mb::add_case({case_name, memkit_ring::name, mb::role::memkit, batch}, Run<memkit_ring>::run)
        ->Threads(2);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({case_name, boost_ring::name, mb::role::peer, batch}, Run<boost_ring>::run)
        ->Threads(2);
#else
    mb::add_skipped(case_name, "boost::lockfree::spsc_queue", no_boost);
#endif
    mb::add_case({case_name, locked_deque::name, mb::role::peer, batch}, Run<locked_deque>::run)
        ->Threads(2);
}

template <class Subject>
struct one_at_a_time {
    static void run(benchmark::State& s) { throughput<Subject>(s); }
};
template <class Subject>
struct in_bulk {
    static void run(benchmark::State& s) { throughput_bulk<Subject>(s); }
};

bool register_all() {
    register_buffers();
    register_ring_case<one_at_a_time>("spsc_ring/throughput/2-threads");
    register_ring_case<in_bulk>("spsc_ring/throughput-bulk64/2-threads");
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
