// Fuzzes memkit::slab_allocator through the shared driver: page-sized slabs with the default
// classes (16 .. 512 bytes) and every alignment up to 512. The first input byte picks how many
// empty slabs a cache retains (0 .. 2), so that slabs come and go and the idle-slab budget is
// exercised. Once the driver has freed every object, the caches must be consistent, hold no
// object and no more empty slabs than retained, and shrink_to_fit must return them all.
#include "fuzz_driver.hpp"
#include "memkit/alloc/slab.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::size_t retained = size == 0 ? 0 : data[0] % 3;
    memkit::slab_allocator slabs{{.slab_size = 4096, .retained_empty = retained}};
    const int rc = memkit::fuzz::run(slabs, data + (size != 0), size - (size != 0),
                                     {.max_size = 512, .max_align = 512});
    slabs.validate(); // throws (and so crashes the run) on an inconsistency
    for (std::size_t i = 0; i < slabs.class_count(); ++i) {
        const memkit::slab_cache_stats c = slabs.cache_stats(i);
        if (c.objects_in_use != 0 || c.partial_slabs + c.full_slabs != 0 ||
            c.empty_slabs > retained)
            memkit::fuzz::detail::fail("slabs left behind");
    }
    slabs.shrink_to_fit();
    if (slabs.slab_count() != 0) memkit::fuzz::detail::fail("shrink_to_fit kept a slab");
    return rc;
}
