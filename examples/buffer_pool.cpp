// A network-style loop over memkit::buffer_pool: the I/O thread "reads" messages of varying
// sizes into pooled buffers and hands them to a worker thread, which parses them and drops them,
// so every buffer goes back to the pool from another thread than the one that got it. After a
// short warm-up nearly every get is served from retained buffers instead of malloc.
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "memkit/heap/buffer_pool.hpp"

namespace {

// Bounded, as a real pipeline is (backpressure): at most `limit` messages wait for the worker.
struct message_queue {
    static constexpr std::size_t limit = 64;
    std::mutex m;
    std::condition_variable cv;
    std::deque<memkit::buffer_pool::buffer> q;
    bool closed = false;

    void push(memkit::buffer_pool::buffer b) {
        {
            std::unique_lock lock(m);
            cv.wait(lock, [&] { return q.size() < limit; });
            q.push_back(std::move(b));
        }
        cv.notify_all();
    }
    bool pop(memkit::buffer_pool::buffer& out) {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return !q.empty() || closed; });
        if (q.empty()) return false;
        out = std::move(q.front());
        q.pop_front();
        lock.unlock();
        cv.notify_all();
        return true;
    }
    void close() {
        {
            std::lock_guard lock(m);
            closed = true;
        }
        cv.notify_all();
    }
};

// Stands in for recv(): fills the buffer with a length-prefixed payload, returns the bytes read.
std::size_t fake_recv(std::byte* data, std::size_t capacity, std::mt19937& rng) {
    std::uniform_int_distribution<std::size_t> len(8, capacity);
    const std::size_t n = len(rng);
    const auto body = static_cast<std::uint32_t>(n - 4);
    std::memcpy(data, &body, 4);
    std::memset(data + 4, 'x', n - 4);
    return n;
}

} // namespace

int main() {
    memkit::buffer_pool_options opts;
    opts.max_retained_bytes = 4 << 20;  // keep at most 4 MiB of idle buffers
    opts.prealloc = {{2048, 32}};       // warm start for typical MTU-sized messages
    memkit::buffer_pool pool(opts);

    message_queue queue;
    std::uint64_t parsed = 0, bad = 0;
    std::thread worker([&] {
        memkit::buffer_pool::buffer msg;
        while (queue.pop(msg)) {
            std::uint32_t body = 0;
            std::memcpy(&body, msg.data(), 4);
            if (body + 4 != msg.size() || msg.data()[msg.size() - 1] != std::byte{'x'}) ++bad;
            ++parsed;
            msg.reset(); // back to the pool from the worker thread
        }
    });

    std::mt19937 rng(42);
    std::uniform_int_distribution<int> kind(0, 99);
    constexpr int messages = 20000;
    for (int i = 0; i < messages; ++i) {
        // Mostly small messages, some MTU-sized, a few large uploads.
        const std::size_t max_len = kind(rng) < 70 ? 512 : kind(rng) < 95 ? 1500 : 64 * 1024;
        auto buf = pool.get(max_len);
        buf.resize(fake_recv(buf.data(), max_len, rng));
        queue.push(std::move(buf));
    }
    queue.close();
    worker.join();

    const memkit::buffer_pool_stats s = pool.stats();
    std::printf("messages parsed:   %llu (%llu malformed)\n",
                static_cast<unsigned long long>(parsed), static_cast<unsigned long long>(bad));
    std::printf("buffers got:       %llu, from the parent: %llu, recycled: %llu\n",
                static_cast<unsigned long long>(s.gets), static_cast<unsigned long long>(s.allocated),
                static_cast<unsigned long long>(s.recycled));
    std::printf("hit rate:          %.1f %%\n", 100.0 * s.hit_rate());
    std::printf("bytes retained:    %zu, in use: %zu\n", s.bytes_retained, s.bytes_in_use);

    const bool ok = parsed == messages && bad == 0 && s.returned == s.gets && s.bytes_in_use == 0 &&
                    s.hit_rate() > 0.9;
    std::printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
