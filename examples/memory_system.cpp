// One memory system for a whole service: small objects from pools, medium buffers from a TLSF
// heap, large ones from the system allocator, all under one budget, with a plugin that logs
// pressure changes. Built once from a configuration (as a configuration file or the MEMKIT_*
// environment would give it) and once with the builder; prints the per-tier statistics.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include <memkit/heap/memory_system.hpp>

namespace {

constexpr std::size_t KiB = 1024, MiB = KiB * KiB;

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "memory_system: check failed: %s\n", what);
        std::exit(1);
    }
}

struct pressure_logger : memkit::memory_plugin {
    int changes = 0;
    void on_init(memkit::memory_system& s) override {
        std::printf("plugin: attached to '%s'\n", s.config().name.c_str());
    }
    void on_pressure(memkit::pressure_level l) noexcept override {
        ++changes;
        std::printf("plugin: pressure is now %s\n", std::string{memkit::to_string(l)}.c_str());
    }
};

void print(const char* title, const memkit::memory_system& s) {
    const memkit::memory_system_stats st = s.stats();
    std::printf("%s (budget used %zu, peak %zu)\n", title, st.budget_used, st.budget_peak);
    const memkit::allocator_stats* tiers[] = {&st.small, &st.medium, &st.large};
    const char* names[] = {"small", "medium", "large"};
    for (int i = 0; i < 3; ++i)
        std::printf("  %-6s allocations %4llu  in use %8zu B  peak %8zu B\n", names[i],
                    static_cast<unsigned long long>(tiers[i]->allocations),
                    tiers[i]->bytes_in_use, tiers[i]->peak_bytes);
}

} // namespace

int main() {
    // 1. From a configuration: key/value pairs as a configuration file would give them.
    const auto config = memkit::memory_system_config::from_key_values(
        {{"small_max", "512"}, {"medium_max", "128KiB"}, {"budget", "8MiB"}, {"name", "api"}});
    memkit::memory_system from_config{config};
    {
        std::pmr::vector<std::pmr::string> names{from_config.as_resource()};
        for (int i = 0; i < 1000; ++i)
            names.emplace_back("customer-record-number-" + std::to_string(i));
        require(names[999] == "customer-record-number-999", "contents");
        print("from config, 1000 strings live:", from_config);
    }
    require(from_config.budget().used() == 0, "everything returned");

    // 2. With the builder, a plugin and a tight budget.
    auto logger = std::make_shared<pressure_logger>();
    auto sys = memkit::memory_system::builder()
                   .small(256)
                   .medium(64 * KiB)
                   .large()
                   .budget(4 * MiB)
                   .soft_budget(3 * MiB)
                   .name("worker")
                   .plugin(logger)
                   .build();
    void* small = sys.allocate(48, 16);
    void* medium = sys.allocate(20 * KiB, 64);
    void* large = sys.allocate(3 * MiB, 4096);
    print("builder, one block per tier:", sys);
    require(sys.stats(memkit::memory_tier::large).bytes_in_use == 3 * MiB, "large tier");

    try {
        (void)sys.allocate(2 * MiB);
        require(false, "the budget should refuse");
    } catch (const memkit::memory_budget_exceeded& e) {
        std::printf("refused: %s\n", e.what());
        require(e.remaining() == 4 * MiB - 48 - 20 * KiB - 3 * MiB, "remaining");
    }
    sys.deallocate(large, 3 * MiB, 4096);
    sys.deallocate(medium, 20 * KiB, 64);
    sys.deallocate(small, 48, 16);
    print("builder, after freeing:", sys);
    require(logger->changes == 2, "two pressure changes (up to medium, back to low)");
    return 0;
}
