// A bounded cache of variable-size records in a fixed buffer, on a TLSF heap.
//
// Embedded and real-time code often gets one block of memory and must never call malloc: every
// allocation and free has to take a bounded time, whatever the heap has been through. A TLSF
// heap over a caller buffer gives exactly that. Here a cache keeps records of 40 B to 6 KiB in a
// 256 KiB buffer; when a new record does not fit, the oldest records are evicted until it does.
// Freed neighbours merge at once, so evicting a few old records makes room for a large new one.
// Some records grow after they are written (reallocate: in place when the next block is free).
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <span>
#include <vector>

#include <memkit/alloc/tlsf.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "tlsf_heap: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct record {
    char* data;
    std::size_t size;
    unsigned char fill;
};

bool intact(const record& r) {
    for (std::size_t i = 0; i < r.size; ++i)
        if (static_cast<unsigned char>(r.data[i]) != r.fill) return false;
    return true;
}

} // namespace

int main() {
    alignas(16) static std::byte memory[256 * 1024];
    memkit::tlsf_heap heap{std::span{memory}}; // fixed: never grows, never calls malloc

    std::deque<record> cache; // oldest first
    std::mt19937 rng{2024};
    std::size_t evictions = 0, grown_in_place = 0, moved = 0;

    for (int i = 0; i < 20000; ++i) {
        const std::size_t size = rng() % 8 == 0 ? 1024 + rng() % 5120 : 40 + rng() % 400;
        void* p = heap.try_allocate(size);
        while (p == nullptr) { // full: evict the oldest record and try again
            require(!cache.empty(), "an empty cache always has room");
            heap.deallocate(cache.front().data, cache.front().size);
            cache.pop_front();
            ++evictions;
            p = heap.try_allocate(size);
        }
        const auto fill = static_cast<unsigned char>(i);
        std::memset(p, fill, size);
        cache.push_back({static_cast<char*>(p), size, fill});

        // Every tenth record gets an extension of up to 200 bytes.
        if (i % 10 == 0) {
            record& r = cache.back();
            const std::size_t bigger = r.size + 1 + rng() % 200;
            try {
                void* q = heap.reallocate(r.data, r.size, bigger);
                (q == r.data ? grown_in_place : moved) += 1;
                std::memset(static_cast<char*>(q) + r.size, r.fill, bigger - r.size);
                r.data = static_cast<char*>(q);
                r.size = bigger;
            } catch (const memkit::out_of_memory&) { // too full to move it: keep it as it is
            }
        }
    }

    for (const record& r : cache) require(intact(r), "no record was overwritten");
    heap.validate(); // throws memkit::corruption_detected if a block or list were damaged

    const memkit::allocator_stats s = heap.stats();
    std::printf("%zu records live in %zu KiB, %zu evicted, %zu extended in place, %zu moved\n",
                cache.size(), heap.capacity() / 1024, evictions, grown_in_place, moved);
    std::printf("in use %zu B (peak %zu B), free %zu B in %zu blocks, fragmentation %.2f\n",
                s.bytes_in_use, s.peak_bytes, heap.free_bytes(), heap.free_block_count(),
                heap.fragmentation_ratio());
    require(evictions > 0 && grown_in_place > 0, "the workload exercised eviction and growth");
    require(s.peak_bytes > heap.capacity() * 9 / 10, "the heap filled more than 90% of the buffer");

    while (!cache.empty()) {
        heap.deallocate(cache.back().data, cache.back().size);
        cache.pop_back();
    }
    require(heap.free_block_count() == 1, "every free block merged back into one");
    require(heap.fragmentation_ratio() == 0.0, "one free block: no fragmentation");
    require(heap.stats().bytes_in_use == 0, "nothing in use");
    std::puts("tlsf_heap: ok");
    return 0;
}
