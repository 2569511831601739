// Per-thread caches in front of one shared pool: a producer/consumer pipeline.
//
// Producers build messages in blocks from a memkit::thread_cache; consumers, on other threads,
// read them and free them. Each thread allocates and frees from its own magazines without a
// lock; the shared pool behind the cache (a memkit::synchronized<pool>) is locked only when a
// magazine runs empty or full, and full magazines travel from the consumers back to the
// producers through the cache's depot. When the threads exit, their magazines go back to the
// pool: nothing stays behind in dead threads. A second part puts the cache in front of a
// lock-free memkit::concurrent_pool and a parallel phase on a memkit::concurrent_arena.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include <memkit/alloc/concurrent_arena.hpp>
#include <memkit/alloc/concurrent_pool.hpp>
#include <memkit/alloc/pool.hpp>
#include <memkit/alloc/thread_cache.hpp>
#include <memkit/compose/synchronized.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "thread_cache: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct message {
    std::uint64_t id;
    std::uint64_t checksum;
    char text[40];
};
static_assert(sizeof(message) == 56);

constexpr int producers = 2;
constexpr int consumers = 2;
constexpr int per_producer = 50000;

// A small blocking queue of messages between the threads.
class mailbox {
public:
    void push(message* m) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            queue_.push_back(m);
        }
        ready_.notify_one();
    }
    void close_one_producer() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            --open_producers_;
        }
        ready_.notify_all();
    }
    message* pop() {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [&] { return !queue_.empty() || open_producers_ == 0; });
        if (queue_.empty()) return nullptr;
        message* m = queue_.front();
        queue_.pop_front();
        return m;
    }

private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<message*> queue_;
    int open_producers_ = producers;
};

std::uint64_t checksum_of(std::uint64_t id) { return id * 0x9e3779b97f4a7c15ULL; }

template <class Cache>
std::uint64_t run_pipeline(Cache& cache) {
    mailbox box;
    std::atomic<std::uint64_t> received{0};
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            for (int i = 0; i < per_producer; ++i) {
                void* mem = cache.allocate(sizeof(message), alignof(message));
                const auto id = static_cast<std::uint64_t>(p) * per_producer + i;
                auto* m = ::new (mem) message{id, checksum_of(id), {}};
                std::snprintf(m->text, sizeof m->text, "message %llu",
                              static_cast<unsigned long long>(id));
                box.push(m);
            }
            box.close_one_producer();
        });
    }
    for (int c = 0; c < consumers; ++c) {
        threads.emplace_back([&] {
            while (message* m = box.pop()) {
                if (m->checksum != checksum_of(m->id) || std::strncmp(m->text, "message ", 8) != 0)
                    ++bad;
                ++received;
                // Freed on another thread than the one that allocated it: it goes into this
                // thread's magazine, which is just as good a home for it.
                cache.deallocate(m, sizeof(message), alignof(message));
            }
        });
    }
    for (std::thread& t : threads) t.join();
    require(bad.load() == 0, "every message arrived intact");
    return received.load();
}

} // namespace

int main() {
    constexpr std::uint64_t total = std::uint64_t{producers} * per_producer;

    // Part 1: per-thread caches in front of a pool of 64-byte nodes behind a mutex.
    memkit::thread_cache<memkit::synchronized<memkit::pool>> cache{std::in_place, 64};
    require(run_pipeline(cache) == total, "every message was received");
    memkit::allocator_stats s = cache.stats();
    std::printf("pool + thread_cache: %llu messages, %llu allocations, %llu frees, %zu bytes "
                "held from the pool at most\n",
                static_cast<unsigned long long>(total),
                static_cast<unsigned long long>(s.allocations),
                static_cast<unsigned long long>(s.deallocations), s.peak_bytes);
    require(s.allocations == total && s.deallocations == total, "the counts add up");
    require(s.bytes_in_use == 0, "no message is still allocated");
    // The worker threads have exited, and their magazines went back to the pool with them; only
    // the shared depot still holds full magazines, ready for the next threads. trim() returns them.
    require(cache.cached_bytes() == cache.depot_bytes(), "dead threads keep nothing cached");
    cache.trim();
    const std::size_t live_nodes = cache.get().with_lock([](memkit::pool& p) { return p.size(); });
    std::printf("pool + thread_cache: %zu nodes allocated from the pool after trim()\n",
                live_nodes);
    require(live_nodes == 0, "every node is back in the pool");

    // Part 2: the same pipeline with the cache in front of a lock-free pool.
    memkit::thread_cache<memkit::concurrent_pool> lock_free{std::in_place, 64};
    require(run_pipeline(lock_free) == total, "every message was received (lock-free pool)");
    lock_free.trim();
    require(lock_free.get().stats().bytes_in_use == 0, "every node is back in the lock-free pool");

    // Part 3: a parallel phase of scratch allocations on a concurrent arena, then one reset.
    memkit::concurrent_arena scratch;
    std::vector<std::thread> workers;
    std::atomic<std::uint64_t> sum{0};
    for (int w = 0; w < 4; ++w) {
        workers.emplace_back([&, w] {
            std::uint64_t local = 0;
            for (int i = 0; i < 1000; ++i) {
                auto* values = static_cast<std::uint32_t*>(
                    scratch.allocate(16 * sizeof(std::uint32_t), alignof(std::uint32_t)));
                for (std::uint32_t k = 0; k < 16; ++k)
                    values[k] = static_cast<std::uint32_t>(w + k);
                for (std::uint32_t k = 0; k < 16; ++k) local += values[k];
            }
            sum += local;
        });
    }
    for (std::thread& t : workers) t.join();
    // Each worker adds (16 w + 120) 1000 times.
    require(sum.load() == 1000 * (16 * (0 + 1 + 2 + 3) + 4 * 120), "the scratch data was intact");
    require(scratch.stats().allocations == 4000, "the arena counted every thread's allocations");
    scratch.reset(); // the workers are done
    require(scratch.stats().bytes_in_use == 0, "reset freed the phase");
    std::puts("thread_cache: ok");
    return 0;
}
