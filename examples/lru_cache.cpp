// A byte-budgeted cache of decoded images that shrinks under memory pressure.
//
// Decoding is expensive, so decoded images are kept in a memkit::lru_cache bounded by the bytes
// their pixels take (a size function), not by their count: a few large images and many small
// ones share one budget. An eviction callback counts what leaves and why. When the system reports
// memory pressure (here simulated; in a service, a pressure monitor's callback), the cache keeps
// half its budget while the pressure lasts. The second part serves the same images from several
// threads through a memkit::sharded_lru_cache, whose get_or_compute decodes each miss once even
// when threads ask for the same image at the same time.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <memkit/cache/lru_cache.hpp>
#include <memkit/cache/sharded_lru_cache.hpp>
#include <memkit/heap/pressure_level.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "lru_cache: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct image {
    int width = 0, height = 0;
    std::vector<std::uint8_t> pixels; // RGBA
};

std::atomic<int> decodes{0};

// Stands in for a PNG decoder: image i is 32..96 pixels square, filled from its name.
image decode(const std::string& name) {
    ++decodes;
    const int i = std::stoi(name.substr(4)); // "img-<i>"
    const int side = 32 + (i * 37) % 65;
    image im{side, side, std::vector<std::uint8_t>(static_cast<std::size_t>(side * side) * 4)};
    for (std::size_t p = 0; p < im.pixels.size(); ++p)
        im.pixels[p] = static_cast<std::uint8_t>(p + static_cast<std::size_t>(i));
    return im;
}

// What an entry costs: its pixels, the image header and the key.
std::size_t image_bytes(const std::string& name, const image& im) {
    return name.size() + sizeof(image) + im.pixels.size();
}

// Requests skewed towards a few popular images, as real traffic is.
std::vector<std::string> requests(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::string> v;
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t r = rng() % 100;
        const std::uint64_t id = r < 70 ? rng() % 20 : rng() % 300;
        v.push_back("img-" + std::to_string(id));
    }
    return v;
}

} // namespace

int main() {
    constexpr std::size_t budget = 1 << 20; // 1 MiB of decoded pixels
    std::array<std::size_t, memkit::eviction_reason_count> evicted{};
    memkit::lru_cache<std::string, image> cache({
        .max_bytes = budget,
        .size_of = image_bytes,
        .on_evict = [&](const std::string&, image&&,
                        memkit::eviction_reason why) { ++evicted[static_cast<std::size_t>(why)]; },
    });

    std::uint64_t checksum = 0;
    for (const std::string& name : requests(20000, 1)) {
        const image& im = cache.get_or_compute(name, decode);
        checksum += im.pixels[static_cast<std::size_t>(im.width)];
    }
    const memkit::cache_stats& s = cache.stats();
    std::printf("served 20000 requests: %d decodes, hit rate %.1f %%, %zu images in %zu bytes\n",
                decodes.load(), 100.0 * s.hit_rate(), cache.size(), cache.bytes());
    std::printf("evicted for bytes: %zu (checksum %llu)\n",
                evicted[static_cast<std::size_t>(memkit::eviction_reason::bytes)],
                static_cast<unsigned long long>(checksum));
    require(cache.bytes() <= budget, "the byte budget holds");
    require(s.hits + s.misses == 20000, "every request is a hit or a miss");
    require(static_cast<std::uint64_t>(decodes.load()) == s.misses, "one decode per miss");

    // Memory pressure: keep half the budget until it passes. A monitor would call this from its
    // level-change callback: monitor.on_level_change([&](auto l) { cache.on_pressure(l); });
    const std::size_t released = cache.on_pressure(memkit::pressure_level::high);
    std::printf("pressure high: released %zu bytes, limit now %zu, holding %zu\n", released,
                cache.byte_limit(), cache.bytes());
    require(cache.bytes() <= budget / 2, "high pressure halves the cache");
    for (const std::string& name : requests(2000, 2)) (void)cache.get_or_compute(name, decode);
    require(cache.bytes() <= budget / 2, "the lowered limit holds for new entries");
    cache.on_pressure(memkit::pressure_level::low);
    require(cache.byte_limit() == budget, "the budget returns when the pressure passes");

    // Several threads, one shared cache. Store shared_ptr so that a copy out is cheap.
    memkit::sharded_lru_cache<std::string, std::shared_ptr<const image>> shared(
        {.max_bytes = budget,
         .size_of = [](const std::string& k, const std::shared_ptr<const image>& im) {
             return image_bytes(k, *im);
         }});
    decodes = 0;
    std::vector<std::thread> workers;
    std::atomic<std::uint64_t> served{0};
    for (int t = 0; t < 4; ++t) {
        workers.emplace_back([&, t] {
            for (const std::string& name : requests(5000, 10 + static_cast<std::uint64_t>(t))) {
                std::shared_ptr<const image> im =
                    shared.get_or_compute(name, [](const std::string& n) {
                        return std::make_shared<const image>(decode(n));
                    });
                if (im->width >= 32) ++served;
            }
        });
    }
    for (std::thread& w : workers) w.join();
    const memkit::cache_stats st = shared.stats();
    std::printf("4 threads, %zu shards: %llu requests, %d decodes, hit rate %.1f %%, %zu bytes\n",
                shared.shard_count(), static_cast<unsigned long long>(served.load()),
                decodes.load(), 100.0 * st.hit_rate(), shared.bytes());
    require(served.load() == 20000, "every request got its image");
    require(shared.bytes() <= budget, "the shared budget holds");
    require(st.hits + st.misses == 20000, "every request counted once");
    return 0;
}
