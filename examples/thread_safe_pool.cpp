// One pool shared by several threads.
//
// memkit::pool is single-threaded, like every memkit building block; memkit::synchronized wraps
// any allocator with a mutex so that threads can share it. Here four workers take order records
// from one shared pool, keep a window of them alive and free them in an order that interleaves
// with the other threads. When they are done, every node is back in the pool.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include <memkit/alloc/pool.hpp>
#include <memkit/compose/synchronized.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "thread_safe_pool: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct order {
    std::uint64_t id;
    double price;
    std::int32_t quantity;
};

constexpr int worker_count = 4;
constexpr int orders_per_worker = 20000;
constexpr std::size_t window = 64; // orders each worker keeps alive at a time

using shared_pool = memkit::synchronized<memkit::pool>;

std::uint64_t run_worker(shared_pool& nodes, int worker) {
    std::deque<order*> open;
    std::uint64_t checksum = 0;
    for (int i = 0; i < orders_per_worker; ++i) {
        void* mem = nodes.allocate(sizeof(order), alignof(order));
        const auto id = static_cast<std::uint64_t>(worker) * orders_per_worker + i;
        open.push_back(::new (mem) order{id, 100.0 + i % 50, i % 10 + 1});
        if (open.size() > window) {
            order* done = open.front();
            open.pop_front();
            checksum += done->id;
            nodes.deallocate(done, sizeof(order), alignof(order));
        }
    }
    for (order* o : open) {
        checksum += o->id;
        nodes.deallocate(o, sizeof(order), alignof(order));
    }
    return checksum;
}

} // namespace

int main() {
    // The pool is built in place inside the wrapper: node size and alignment of an order.
    shared_pool nodes{std::in_place, sizeof(order), alignof(order)};

    std::vector<std::uint64_t> checksums(worker_count);
    std::vector<std::thread> workers;
    workers.reserve(worker_count);
    for (int w = 0; w < worker_count; ++w)
        workers.emplace_back([&nodes, &checksums, w] { checksums[w] = run_worker(nodes, w); });
    for (std::thread& t : workers) t.join();

    std::uint64_t total = 0;
    for (std::uint64_t c : checksums) total += c;
    const std::uint64_t n = std::uint64_t{worker_count} * orders_per_worker;
    require(total == n * (n - 1) / 2, "every order was processed exactly once");

    const memkit::allocator_stats s = nodes.stats();
    std::printf("%d threads processed %llu orders; %llu allocations, %llu deallocations\n",
                worker_count, static_cast<unsigned long long>(n),
                static_cast<unsigned long long>(s.allocations),
                static_cast<unsigned long long>(s.deallocations));
    require(s.allocations == n && s.deallocations == n, "the counts add up across threads");
    require(s.bytes_in_use == 0, "every node went back to the pool");
    require(s.peak_bytes <= worker_count * (window + 1) * nodes.max_size(),
            "no worker ever held more than its window (+1) of orders");

    // with_lock runs several calls as one step, here a look at the pool's own counters.
    const auto [free_nodes, chunks] = nodes.with_lock([](memkit::pool& p) {
        return std::pair{p.free_count(), p.chunk_count()};
    });
    std::printf("pool: %zu free nodes in %zu chunk(s), peak %zu bytes in use\n", free_nodes, chunks,
                s.peak_bytes);
    require(free_nodes > 0 && chunks > 0, "the pool kept its chunks for reuse");
    std::puts("thread_safe_pool: ok");
    return 0;
}
