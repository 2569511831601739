// Fuzzes memkit::pool through the shared driver: one node size, random alignments up to the
// node alignment, a capped capacity so that exhaustion is exercised too.
#include "fuzz_driver.hpp"
#include "memkit/alloc/pool.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    memkit::pool p{96, 32, memkit::pool_options{.nodes_per_chunk = 16, .max_nodes = 1000}};
    return memkit::fuzz::run(p, data, size,
                             {.max_size = 96, .max_align = 32, .exact_bytes_in_use = false});
}
