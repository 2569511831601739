// Fuzzes memkit::concurrent_pool through the shared driver, one thread at a time: one node size,
// random alignments up to the node alignment, small doubling chunks (so that pointers map back
// to indices across many chunks) and a capped capacity so that exhaustion is exercised too.
#include "fuzz_driver.hpp"
#include "memkit/alloc/concurrent_pool.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    memkit::concurrent_pool p{
        72, 8, memkit::concurrent_pool_options{.nodes_per_chunk = 2, .max_nodes = 700}};
    return memkit::fuzz::run(p, data, size,
                             {.max_size = 72, .max_align = 8, .exact_bytes_in_use = false});
}
