// Fuzzes memkit::pool_collection through the shared driver. The first input byte picks the class
// layout (powers of two, or linear steps that do not align every class) and whether large
// requests are rejected or served by the parent; sizes and alignments up to 4096 exercise the
// routing table, over-aligned requests and direct blocks. Class pools are capped so that
// exhaustion is exercised too; nodes count whole, so only block counts are compared.
#include "fuzz_driver.hpp"
#include "memkit/alloc/pool_collection.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t layout = data[0];
    memkit::pool_collection_options opts{.pool = {.nodes_per_chunk = 8, .max_nodes = 300}};
    if (layout & 1) {
        opts.spacing = memkit::size_class_spacing::linear;
        opts.min_class = 12;
        opts.step = 20;
    }
    opts.max_class = (layout & 2) ? 1024 : 256;
    opts.large = (layout & 4) ? memkit::large_policy::parent : memkit::large_policy::reject;
    memkit::pool_collection c{opts};
    return memkit::fuzz::run(c, data + 1, size - 1,
                             {.max_size = 4096, .max_align = 4096, .exact_bytes_in_use = false});
}
