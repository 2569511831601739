// A feature store kept in named regions of one file: a layout read from text declares the
// regions, a writer fills them and flushes, and a second opening (as after a restart) verifies
// the checksums and reads the data in place. Opening with another layout is refused with a
// message that says what differs.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>

#include <unistd.h>

#include "memkit/vm/region_store.hpp"

namespace {

constexpr const char* layout_text = "# name      size\n"
                                    "emotion      64K\n"
                                    "cognition    64K\n"
                                    "intention    32K\n"
                                    "security     4K\n";

float weight(std::size_t region, std::size_t i) {
    return static_cast<float>(region + 1) + static_cast<float>(i) * 0.001f;
}

} // namespace

int main() {
    namespace fs = std::filesystem;
    const fs::path path =
        fs::temp_directory_path() / ("memkit_region_store_example_" + std::to_string(::getpid()));
    fs::remove(path);
    const memkit::region_layout layout = memkit::region_layout::parse(layout_text);

    // Writer: create, fill every region with float weights, flush (durable at return).
    {
        memkit::region_store store = memkit::region_store::create(path, layout);
        store.activate();
        for (std::size_t r = 0; r < layout.size(); ++r) {
            auto region = store.write(layout.regions()[r].name); // exclusive lock, in place
            auto bytes = region.bytes();
            for (std::size_t i = 0; i + sizeof(float) <= bytes.size(); i += sizeof(float)) {
                const float w = weight(r, i / sizeof(float));
                std::memcpy(bytes.data() + i, &w, sizeof w);
            }
        }
        store.flush();
        const auto st = store.stats();
        std::printf(
            "created %s: %zu regions, %zu bytes of data, %zu-byte header, generation %llu\n",
            path.filename().c_str(), st.region_count, st.region_bytes, st.header_bytes,
            static_cast<unsigned long long>(st.generation));
    } // close() on destruction

    // Reader after a "restart": open verifies magic, version, layout and every checksum.
    int failures = 0;
    {
        memkit::region_store store = memkit::region_store::open(path, layout);
        store.activate();
        const memkit::region_id cognition = store.find("cognition"); // resolve once
        auto view = store.read(cognition);                           // shared lock, no copy
        float w = 0;
        std::memcpy(&w, view.data() + 100 * sizeof(float), sizeof w);
        std::printf("cognition[100] = %.3f (expected %.3f)\n", static_cast<double>(w),
                    static_cast<double>(weight(1, 100)));
        if (w != weight(1, 100)) ++failures;
        for (const memkit::region_info& r : store.regions())
            std::printf("  %-10s offset %7zu  size %6zu  crc32c 0x%08x\n", r.name.c_str(), r.offset,
                        r.size, static_cast<unsigned>(r.checksum));
    }

    // Another layout is never silently reused.
    try {
        (void)memkit::region_store::open(path, memkit::region_layout::parse("emotion 128K\n"));
        std::puts("error: a different layout was accepted");
        ++failures;
    } catch (const memkit::region_store_error& e) {
        std::printf("refused (%s): %s\n", memkit::to_string(e.kind()), e.what());
    }

    fs::remove(path);
    return failures == 0 ? 0 : 1;
}
