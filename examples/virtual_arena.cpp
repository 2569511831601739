// An append-only event log that never moves, in a virtual_arena.
//
// A log, a trace buffer or a parser's token array grows to a size nobody knows in advance, and
// other structures keep pointers into it. With a std::vector, growth copies everything and
// invalidates those pointers; with a virtual_arena the log is one contiguous range whose address
// space was reserved up front, so it grows in place, page by page; a batch boundary is one
// reset(), and trim() hands the memory back to the OS when the work is done.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include <memkit/vm/virtual_arena.hpp>
#include <memkit/vm/virtual_memory.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "virtual_arena: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

struct event {
    std::uint64_t timestamp;
    std::uint32_t kind;
    std::uint32_t payload_size;
};

constexpr std::size_t mib = std::size_t{1} << 20;

} // namespace

int main() {
    // 1 GiB of address space, committed 1 MiB at a time.
    memkit::virtual_arena log{{.reserve_size = 1024 * mib, .commit_step = mib}};
    std::vector<const event*> errors; // pointers into the log stay valid as it grows

    for (int batch = 0; batch < 3; ++batch) {
        for (std::uint64_t i = 0; i < 400000; ++i) {
            const auto payload = static_cast<std::uint32_t>(8 + i % 57);
            auto* e = static_cast<event*>(log.allocate(sizeof(event) + payload, alignof(event)));
            *e = {i, static_cast<std::uint32_t>(i % 100 == 0), payload};
            std::memset(e + 1, 'x', payload);
            if (e->kind == 1) errors.push_back(e);
        }
        // Events are contiguous: walk the log from its base without any index.
        std::size_t count = 0;
        for (std::byte* p = log.base(); p < log.base() + log.used();) {
            const auto* e = reinterpret_cast<const event*>(p);
            ++count;
            p += memkit::align_up(sizeof(event) + e->payload_size, alignof(event));
        }
        require(count == 400000, "every event is found by walking the log");
        require(errors.front()->timestamp == 0 && errors.back()->timestamp == 399900,
                "pointers taken early are still valid after growth");

        const std::size_t resident = memkit::vm::resident_bytes(log.base(), log.committed());
        std::printf("batch %d: %zu events, %.1f MiB used, %.1f MiB committed, %.1f MiB resident "
                    "of %zu MiB reserved\n",
                    batch, count, static_cast<double>(log.used()) / mib,
                    static_cast<double>(log.committed()) / mib, static_cast<double>(resident) / mib,
                    log.reserved() / mib);

        errors.clear();
        const std::size_t batch_used = log.used();
        log.reset(); // the batch is done; its pages stay committed for the next one
        require(log.committed() >= batch_used, "reset keeps what the batch used");
    }
    log.trim(8 * mib); // quiet period: give everything above 8 MiB back to the OS now
    require(log.committed() == 8 * mib, "trim decommits above the amount kept");
    std::printf("after trim: %.1f MiB committed, %.1f MiB resident\n",
                static_cast<double>(log.committed()) / mib,
                static_cast<double>(memkit::vm::resident_bytes(log.base(), 32 * mib)) / mib);

    // The building block underneath: reserve once, commit region by region.
    memkit::reservation heap{256 * mib};
    auto* first = static_cast<std::byte*>(heap.commit(0, 4 * mib));
    auto* third = static_cast<std::byte*>(heap.commit(8 * mib, 4 * mib));
    std::memset(first, 1, 4 * mib);
    std::memset(third, 3, 4 * mib);
    heap.decommit(0, 4 * mib);
    require(heap.committed() == 4 * mib && third[0] == std::byte{3}, "regions are independent");
    std::printf("reservation: %zu MiB reserved, %zu MiB committed in %zu run(s); transparent huge "
                "pages: %s\n",
                heap.size() / mib, heap.committed() / mib, heap.committed_runs(),
                memkit::to_string(memkit::vm::transparent_huge_page_mode()));
    return EXIT_SUCCESS;
}
