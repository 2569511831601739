// A request server simulation on memkit::managed_heap: each request is an owner with a 64 KiB
// limit under a per-tenant owner; its buffers are charged to it; one request asks for more than
// its limit and is refused; every request is cleaned up at once with free_owner. A
// counting_observer sees every event; a heap_guard holds a scratch buffer that read/write access
// with bounds checks. A second heap defers its frees: finished requests are dropped without
// freeing and reclaimed by collection strategies (unreferenced, owners_above, force_collect).
// Prints the per-request accounting, the event counts, what each collection freed and the
// heaps' statistics; returns non-zero if a check fails.
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "memkit/heap/managed_heap.hpp"

int main() {
    constexpr std::size_t KiB = 1024;
    memkit::managed_heap heap{memkit::managed_heap_options{.capacity = std::size_t{16} << 20}};
    auto events = std::make_shared<memkit::counting_observer>();
    heap.add_observer(events);
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

    // A scratch buffer freed at the end of its scope, written and read with bounds checks.
    bool caught = false;
    {
        memkit::managed_heap::guard scratch = heap.allocate_guarded(64, tenant);
        const char msg[] = "hello";
        heap.write(scratch.get(), 0, std::as_bytes(std::span(msg)));
        char back[sizeof msg] = {};
        heap.read(scratch.get(), 0, std::as_writable_bytes(std::span(back)));
        std::printf("scratch: %s\n", back);
        try {
            heap.write(scratch.get(), 60, std::as_bytes(std::span(msg))); // 6 bytes at 60 of 64
        } catch (const memkit::protection_violation& e) {
            caught = true;
            std::printf("refused write of %zu bytes at offset %zu of a %zu-byte block\n",
                        e.length(), e.offset(), e.block_size());
        }
    }
    std::printf("events: %llu allocated, %llu deallocated, %llu refused, %llu pressure changes\n",
                static_cast<unsigned long long>(events->allocated()),
                static_cast<unsigned long long>(events->deallocated()),
                static_cast<unsigned long long>(events->out_of_memory()),
                static_cast<unsigned long long>(events->pressure_changed()));

    heap.validate();
    const memkit::managed_heap_snapshot s = heap.snapshot();
    std::printf("heap: used %zu, peak %zu, blocks %zu, owners %zu, allocations %llu, "
                "refused %llu, capacity %zu\n",
                s.used, s.peak, s.blocks, s.owners,
                static_cast<unsigned long long>(s.allocations),
                static_cast<unsigned long long>(s.failed_allocations), s.capacity);
    const bool ok = failures == 1 && caught && events->allocated() == s.allocations &&
                    events->deallocated() == s.deallocations && events->out_of_memory() == 1 &&
                    events->pressure_changed() == 0 && s.allocations == 4 * 12 + 11 + 1 &&
                    s.used == 0 && s.blocks == 0 && s.owners == 2 &&
                    s.failed_allocations == 1 && pressure_changes == 0 &&
                    s.peak == 4 * KiB + 10 * 512 + 16 * KiB;

    // Deferred frees: blocks wait in their owner's quarantine until a collection runs.
    memkit::managed_heap lazy{memkit::managed_heap_options{.capacity = std::size_t{16} << 20,
                                                           .defer_frees = true}};
    const memkit::owner_id cache = lazy.create_owner("cache");
    const memkit::owner_id log = lazy.create_owner("log");
    std::vector<void*> entries;
    for (int i = 0; i < 100; ++i) entries.push_back(lazy.allocate(1 * KiB, cache));
    for (int i = 0; i < 60; ++i) lazy.deallocate(entries[static_cast<std::size_t>(i)]);
    for (int i = 0; i < 10; ++i) lazy.deallocate(lazy.allocate(64, log));
    for (int r = 0; r < 3; ++r) { // finished requests dropped without freeing their blocks
        const memkit::owner_id req = lazy.create_owner("request-" + std::to_string(r));
        for (int i = 0; i < 4; ++i) (void)lazy.allocate(512, req);
        lazy.retire_owner(req);
    }
    const memkit::collect_result dropped = lazy.collect(memkit::collect_strategy::unreferenced());
    std::printf("unreferenced: %zu blocks, %zu bytes\n", dropped.blocks, dropped.bytes);
    const memkit::collect_result big = lazy.collect(
        memkit::collect_strategy::owners_above(16 * KiB), std::chrono::milliseconds{1});
    std::printf("owners above 16 KiB: %zu blocks, %zu bytes (log keeps %zu quarantined)\n",
                big.blocks, big.bytes, lazy.owner_info(log).deferred_blocks);
    const memkit::collect_result rest = lazy.force_collect();
    std::printf("force_collect: %zu blocks\n", rest.blocks);
    for (std::size_t i = 60; i < entries.size(); ++i) lazy.deallocate(entries[i]);
    (void)lazy.force_collect();
    lazy.validate();
    const memkit::managed_heap_snapshot ls = lazy.snapshot();
    std::printf("lazy heap: %zu owners, %zu quarantined, %lld us at low pressure\n", ls.owners,
                ls.deferred_blocks,
                static_cast<long long>(
                    std::chrono::duration_cast<std::chrono::microseconds>(ls.time_at_level[0])
                        .count()));
    const bool lazy_ok = dropped.blocks == 12 && dropped.bytes == 12 * 512 &&
                         big.blocks == 60 && big.bytes == 60 * KiB && rest.blocks == 10 &&
                         ls.owners == 3 && ls.deferred_blocks == 0 && ls.used == 0 &&
                         ls.heap_bytes == 0;

    std::printf("%s\n", ok && lazy_ok ? "ok" : "FAILED");
    return ok && lazy_ok ? 0 : 1;
}
