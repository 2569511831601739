// A service that takes its memory system's settings from a TOML file (memkit.toml, next to this
// program's source; another path as the first argument), with MEMKIT_* environment variables on
// top, as an operator would tune it without rebuilding. Allocates in every tier, prints the
// effective configuration and the statistics, and shows what a bad file reports.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <memkit/config/memory_system_file.hpp>
#include <memkit/heap/memory_system.hpp>

#ifndef MEMKIT_EXAMPLE_CONFIG
#define MEMKIT_EXAMPLE_CONFIG "memkit.toml"
#endif

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "memory_system_file: check failed: %s\n", what);
        std::exit(1);
    }
}

} // namespace

int main(int argc, char** argv) {
    const char* path = argc > 1 ? argv[1] : MEMKIT_EXAMPLE_CONFIG;

    memkit::memory_system_config config;
    try {
        config = memkit::load_memory_system_config(path);
    } catch (const memkit::config_error& e) {
        std::fprintf(stderr, "%s\n",
                     e.what()); // e.g. "memkit.toml:12:1: memory_system.budget: ..."
        return 1;
    }
    std::printf("loaded %s:\n%s\n", path, memkit::to_toml(config).c_str());

    memkit::memory_system sys{config};
    struct request {
        std::size_t size;
        void* p;
    };
    std::vector<request> live;
    const std::size_t sizes[] = {24, 200, 3000, 40000, std::size_t{1} << 20};
    for (const std::size_t size : sizes) {
        void* p = sys.allocate(size, 16);
        std::memset(p, 0x5a, size); // the memory is ours to use
        live.push_back({size, p});
        std::printf("%8zu bytes -> %s tier\n", size,
                    std::string{memkit::to_string(sys.tier_for(size))}.c_str());
    }
    const memkit::memory_system_stats st = sys.stats();
    std::printf("in use: small %zu, medium %zu, large %zu bytes; budget '%s' used %zu\n",
                st.small.bytes_in_use, st.medium.bytes_in_use, st.large.bytes_in_use,
                sys.budget().name().c_str(), st.budget_used);
    require(st.budget_used == 24 + 200 + 3000 + 40000 + (1u << 20), "the budget counts requests");
    require(st.small.allocations + st.medium.allocations + st.large.allocations == live.size(),
            "every allocation is in one tier");
    for (const request& r : live) sys.deallocate(r.p, r.size, 16);
    require(sys.stats().budget_used == 0, "everything returned");

    // A mistake in a file names the place and the key.
    try {
        (void)memkit::parse_memory_system_config(
            "[memory_system.pressure]\nmedium = 0.9\nhigh = 0.8\n", "tuned.toml");
        require(false, "thresholds out of order are rejected");
    } catch (const memkit::config_error& e) {
        std::printf("a bad file reports: %s\n", e.what());
        require(e.line() == 2 && e.key() == "memory_system.pressure.medium", "error location");
    }
    return 0;
}
