// A sensor thread hands samples to a processing thread through a lock-free ring.
//
// memkit::spsc_ring connects exactly one producer and one consumer without locks: the producer
// pushes samples one by one (spinning briefly when the ring is full), the consumer takes them in
// batches with the bulk pop and keeps running statistics. Nothing is allocated after the ring is
// built, and each side touches the other's cache line only when the ring looks full or empty.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <thread>
#include <vector>

#include <memkit/container/spsc_ring.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "spsc_ring: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct sample {
    std::uint64_t sequence;
    std::int32_t millivolts;
};

constexpr std::uint64_t sample_count = 200000;

} // namespace

int main() {
    memkit::spsc_ring<sample> ring(1000); // rounded up to 1024 slots
    std::printf("ring capacity: %zu samples\n", ring.capacity());

    std::thread sensor([&] {
        for (std::uint64_t i = 0; i < sample_count; ++i) {
            const sample s{i, static_cast<std::int32_t>(i % 1000) - 500};
            while (!ring.try_push(s)) std::this_thread::yield(); // full: let the consumer run
        }
    });

    std::vector<sample> batch(256);
    std::uint64_t received = 0, out_of_order = 0, batches = 0;
    std::int64_t sum = 0;
    std::int32_t peak = 0;
    while (received < sample_count) {
        const std::size_t n = ring.pop(std::span<sample>(batch));
        if (n == 0) {
            std::this_thread::yield();
            continue;
        }
        ++batches;
        for (std::size_t i = 0; i < n; ++i) {
            out_of_order += batch[i].sequence != received++;
            sum += batch[i].millivolts;
            if (batch[i].millivolts > peak) peak = batch[i].millivolts;
        }
    }
    sensor.join();

    std::printf("received %llu samples in %llu batches, mean %.2f mV, peak %d mV\n",
                static_cast<unsigned long long>(received), static_cast<unsigned long long>(batches),
                static_cast<double>(sum) / static_cast<double>(received), peak);
    require(out_of_order == 0, "samples arrive in order, none lost");
    require(sum == -100000 && peak == 499, "the statistics match the generated signal");
    require(ring.empty(), "the ring is drained");
    return 0;
}
