// Fuzzes memkit::arena through the shared driver: small blocks so that allocations cross block
// boundaries and get dedicated blocks; frees are no-ops, reset() rewinds everything.
#include "fuzz_driver.hpp"
#include "memkit/alloc/arena.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    memkit::arena a{memkit::arena_options{.block_size = 1024, .max_block_size = 16384}};
    return memkit::fuzz::run(a, data, size,
                             {.max_size = 6000, .max_align = 4096, .frees_reclaim = false});
}
