// A request server simulation on memkit::managed_heap: each request is an owner with a 64 KiB
// limit under a per-tenant owner; its buffers are charged to it; one request asks for more than
// its limit and is refused; every request is cleaned up at once with free_owner. Prints the
// per-request accounting and the heap's statistics; returns non-zero if a check fails.
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

#include "memkit/heap/managed_heap.hpp"

int main() {
    constexpr std::size_t KiB = 1024;
    memkit::managed_heap heap{memkit::managed_heap_options{.capacity = std::size_t{16} << 20}};
    int pressure_changes = 0;
    heap.on_pressure_change([&](const memkit::heap_pressure_event& e) {
        ++pressure_changes;
        std::printf("pressure %s -> %s\n", std::string(to_string(e.from)).c_str(),
                    std::string(to_string(e.to)).c_str());
    });

    const memkit::owner_id tenant = heap.create_owner("tenant-acme", 256 * KiB);
    int failures = 0;
    for (int r = 0; r < 5; ++r) {
        const memkit::owner_id req =
            heap.create_owner("request-" + std::to_string(r), 64 * KiB, tenant);
        try {
            // Parse buffer, a few temporary objects, a response body.
            void* input = heap.allocate(4 * KiB, req);
            std::memset(input, 'x', 4 * KiB);
            for (int i = 0; i < 10; ++i) (void)heap.allocate(512, req, 64);
            const std::size_t body = r == 3 ? 100 * KiB : 16 * KiB; // request 3 is too large
            std::memset(heap.allocate(body, req), 'y', body);
            std::printf("request-%d: %zu bytes in %zu blocks (tenant %zu)\n", r,
                        heap.owner_usage(req), heap.owner_allocations(req).size(),
                        heap.owner_usage(tenant));
        } catch (const memkit::owner_limit_exceeded& e) {
            ++failures;
            std::printf("request-%d refused by the limit of %s: %s\n", r,
                        heap.owner_info(e.limiting_owner()).name.c_str(), e.what());
        }
        const std::size_t peak = heap.owner_peak(req);
        const std::size_t freed = heap.free_owner(req); // the request is done: one call
        heap.retire_owner(req);
        std::printf("request-%d: freed %zu bytes, peak %zu\n", r, freed, peak);
        if (heap.owner_exists(req) || heap.owner_usage(tenant) != 0) return 1;
    }

    heap.validate();
    const memkit::managed_heap_snapshot s = heap.snapshot();
    std::printf("heap: used %zu, peak %zu, blocks %zu, owners %zu, allocations %llu, "
                "refused %llu, capacity %zu\n",
                s.used, s.peak, s.blocks, s.owners,
                static_cast<unsigned long long>(s.allocations),
                static_cast<unsigned long long>(s.failed_allocations), s.capacity);
    const bool ok = failures == 1 && s.used == 0 && s.blocks == 0 && s.owners == 2 &&
                    s.failed_allocations == 1 && pressure_changes == 0 &&
                    s.peak == 4 * KiB + 10 * 512 + 16 * KiB;
    std::printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
