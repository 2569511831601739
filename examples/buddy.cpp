// A fixed budget of staging memory on a buddy allocator.
//
// A renderer uploads textures through a staging area of fixed size: each upload needs a buffer
// of a power-of-two-ish size for a few frames, then gives it back. A buddy allocator serves that
// from one region with no per-block headers, aligns every buffer to its own size (up to 4 KiB)
// for free, and merges freed buffers with their buddies so that the region never stays
// shattered: once the uploads are done it is one block again. Its statistics say how much of the
// region went to rounding (internal fragmentation) and how large the next buffer may be.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>

#include <memkit/alloc/buddy.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "buddy: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct upload {
    void* buffer;
    std::size_t size;
    int frames_left;
};

} // namespace

int main() {
    memkit::buddy_allocator staging{4 << 20}; // 4 MiB, 64-byte minimum blocks
    require(staging.largest_free_block() == (4u << 20), "a new region is one free block");

    // Mip chains: a level is a quarter of the previous one, down to 64 bytes, plus a small
    // header; each upload stays in flight for three frames.
    std::deque<upload> in_flight;
    std::size_t uploads = 0;
    std::size_t refused = 0;
    double worst_fragmentation = 0.0;
    for (int frame = 0; frame < 60; ++frame) {
        for (std::size_t level = 256 * 1024; level >= 64; level /= 4) {
            const std::size_t size = level + 48; // pixel data and its header
            void* p = staging.try_allocate(size, 256);
            if (p == nullptr) {
                ++refused; // the staging area is full this frame: the upload waits
                continue;
            }
            require(reinterpret_cast<std::uintptr_t>(p) % 256 == 0, "buffers are 256-aligned");
            std::memset(p, frame, size);
            in_flight.push_back({p, size, 3});
            ++uploads;
        }
        if (staging.internal_fragmentation() > worst_fragmentation)
            worst_fragmentation = staging.internal_fragmentation();
        for (upload& u : in_flight) --u.frames_left;
        while (!in_flight.empty() && in_flight.front().frames_left == 0) {
            staging.deallocate(in_flight.front().buffer, in_flight.front().size, 256);
            in_flight.pop_front();
        }
    }
    std::printf("%zu uploads, %zu deferred; %zu bytes requested in %zu bytes of blocks now\n",
                uploads, refused, staging.stats().bytes_in_use, staging.allocated_bytes());
    std::printf("worst internal fragmentation %.1f%%, largest free block %zu bytes\n",
                100.0 * worst_fragmentation, staging.largest_free_block());
    // Every level is a power of two plus 48 bytes: nearly half of each block is rounding.
    require(worst_fragmentation > 0.4 && worst_fragmentation < 0.5, "rounding costs about half");
    staging.validate();

    while (!in_flight.empty()) {
        staging.deallocate(in_flight.front().buffer, in_flight.front().size, 256);
        in_flight.pop_front();
    }
    require(staging.largest_free_block() == (4u << 20), "freed buffers merged back into one");

    // Sized to fit: requests of exactly a power of two lose nothing, and a buffer can grow in
    // place while the buddies above it are free.
    void* exact = staging.allocate(64 * 1024, 4096);
    require(staging.internal_fragmentation() == 0.0, "exact powers of two lose nothing");
    require(staging.resize_in_place(exact, 64 * 1024, 256 * 1024, 4096), "grows in place");
    staging.deallocate(exact, 256 * 1024, 4096);

    std::puts("buddy: ok");
    return 0;
}
