// Fuzzes memkit::tlsf_heap through the shared driver: small regions and a cap on the total, so
// that growth, exhaustion, splitting, coalescing, in-place resizes and moves are all common.
// bytes_in_use counts usable sizes, so only the block counts are compared with the model. The
// heap is also walked with validate() every 16 calls (a corruption throws, which terminates
// inside the noexcept members: the fuzzer reports it as a crash), and once the driver has freed
// every block, each region must be one free block again.
#include "fuzz_driver.hpp"
#include "memkit/alloc/tlsf.hpp"

namespace {

struct validated_heap {
    memkit::tlsf_heap heap{16 * 1024, {.region_size = 8 * 1024, .max_total = 256 * 1024}};
    unsigned calls = 0;

    void checkpoint() {
        if (++calls % 16 == 0) heap.validate();
    }
    void* allocate(std::size_t n, std::size_t a) { return heap.allocate(n, a); }
    void* try_allocate(std::size_t n, std::size_t a) noexcept {
        void* p = heap.try_allocate(n, a);
        checkpoint();
        return p;
    }
    void deallocate(void* p, std::size_t n, std::size_t a) noexcept {
        heap.deallocate(p, n, a);
        checkpoint();
    }
    void* reallocate(void* p, std::size_t old_size, std::size_t new_size, std::size_t a) {
        void* q = heap.reallocate(p, old_size, new_size, a);
        checkpoint();
        return q;
    }
    void reset() { heap.reset(); }
    memkit::allocator_stats stats() const noexcept { return heap.stats(); }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    validated_heap h;
    const int rc = memkit::fuzz::run(
        h, data, size, {.max_size = 20000, .max_align = 4096, .exact_bytes_in_use = false});
    h.heap.validate();
    if (h.heap.stats().bytes_in_use != 0 || h.heap.free_block_count() != h.heap.region_count())
        memkit::fuzz::detail::fail("free blocks did not coalesce back into their regions");
    return rc;
}
