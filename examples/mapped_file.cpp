// A small on-disk price table kept in a memory-mapped file: a 16-byte header (magic, record
// count) followed by fixed-size records. The writer creates the file, fills it through a typed
// span, grows it and flushes only the bytes it changed; a reader then maps it read-only and
// looks records up through small views, without reading the whole file.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <unistd.h>

#include "memkit/vm/mapped_file.hpp"

namespace {

struct header {
    std::uint64_t magic;
    std::uint64_t count;
};
struct record {
    std::uint64_t id;
    double price;
};
static_assert(sizeof(header) == 16 && sizeof(record) == 16);

constexpr std::uint64_t table_magic = 0x31454c4241544b4dULL; // "MKTABLE1"

double price_of(std::uint64_t id) { return 100.0 + static_cast<double>(id % 997) * 0.25; }

header read_header(const memkit::mapped_file& f) {
    header h{};
    std::memcpy(&h, f.data(), sizeof h);
    return h;
}

} // namespace

int main() {
    namespace fs = std::filesystem;
    const fs::path path =
        fs::temp_directory_path() / ("memkit_prices_" + std::to_string(::getpid()) + ".bin");
    int failures = 0;
    try {
        // Writer: a fresh file with room for 1000 records.
        {
            memkit::mapped_file f = memkit::mapped_file::create(
                path, sizeof(header) + 1000 * sizeof(record), {memkit::file_creation::truncate});
            memkit::mapped_view body = f.view(sizeof(header), 1000 * sizeof(record));
            auto records = body.as_span<record>();
            for (std::uint64_t i = 0; i < records.size(); ++i) records[i] = {i, price_of(i)};
            const header h{table_magic, records.size()};
            std::memcpy(f.data(), &h, sizeof h);
            f.flush();

            // Grow to 2500 records: the old mapping (and spans of it) are replaced, the view
            // `body` is a separate mapping and stays valid.
            f.resize(sizeof(header) + 2500 * sizeof(record));
            memkit::mapped_view grown_body = f.view(sizeof(header), 2500 * sizeof(record));
            auto all = grown_body.as_span<record>(); // valid while grown_body lives
            for (std::uint64_t i = 1000; i < all.size(); ++i) all[i] = {i, price_of(i)};
            const header grown{table_magic, all.size()};
            std::memcpy(f.data(), &grown, sizeof grown);
            // Write back only what changed: the header and the new records (rounded to pages
            // inside flush).
            f.flush(0, sizeof(header));
            f.flush(sizeof(header) + 1000 * sizeof(record), 1500 * sizeof(record));
            std::printf("wrote %llu records (%zu bytes); first view still reads id %llu\n",
                        static_cast<unsigned long long>(grown.count), f.size(),
                        static_cast<unsigned long long>(records[999].id));
        }

        // Reader: map read-only, tell the kernel lookups are random, read three records.
        memkit::mapped_file f(path);
        const header h = read_header(f);
        if (h.magic != table_magic || f.size() != sizeof(header) + h.count * sizeof(record)) {
            std::printf("bad table header\n");
            return 1;
        }
        f.advise(memkit::access_advice::random);
        for (std::uint64_t id : {7ULL, 1234ULL, 2499ULL}) {
            const memkit::mapped_view v =
                f.view(sizeof(header) + id * sizeof(record), sizeof(record));
            const record r = v.as_span<const record>()[0];
            std::printf("record %4llu: price %.2f\n", static_cast<unsigned long long>(r.id),
                        r.price);
            if (r.id != id || r.price != price_of(id)) ++failures;
        }

        // Asking for a record past the end is an error, not a read of random memory.
        try {
            (void)f.view(sizeof(header) + h.count * sizeof(record), sizeof(record));
            ++failures;
        } catch (const std::out_of_range& e) {
            std::printf("as expected: %s\n", e.what());
        }
    } catch (const std::system_error& e) {
        std::printf("error: %s\n", e.what());
        ++failures;
    }
    std::error_code ec;
    fs::remove(path, ec);
    std::printf("%s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
