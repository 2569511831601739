// Fuzzes memkit::stack_allocator through the shared driver: LIFO frees, a small capacity so that
// exhaustion is common.
#include "fuzz_driver.hpp"
#include "memkit/alloc/stack.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    memkit::stack_allocator s{64 * 1024};
    return memkit::fuzz::run(s, data, size, {.max_size = 3000, .lifo = true});
}
