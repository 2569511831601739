// Fuzzes memkit::buddy_allocator through the shared driver: a 256 KiB region, sizes up to 16 KiB
// and every alignment up to 4096, so that splits, merges, in-place resizes, moves and exhaustion
// all happen. The first input byte picks the minimum block (16, 32, 64 or 128 bytes). Once the
// driver has freed every block, the side table and free lists must be consistent and the region
// one free block again.
#include "fuzz_driver.hpp"
#include "memkit/alloc/buddy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::size_t min_block = std::size_t{16} << (size == 0 ? 0 : data[0] % 4);
    memkit::buddy_allocator heap{256 * 1024, {.min_block = min_block}};
    const int rc =
        memkit::fuzz::run(heap, data + (size != 0), size - (size != 0), {.max_size = 16384});
    heap.validate(); // throws (and so crashes the run) on an inconsistency
    if (heap.largest_free_block() != heap.region_size()) memkit::fuzz::detail::fail("not merged");
    return rc;
}
