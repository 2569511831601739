// How much would kernel samepage merging save for per-tenant copies of the same table?
//
// A service that keeps one copy of a lookup table per tenant (so tenants can patch theirs)
// holds many identical pages. page_deduplicator measures the saving KSM could give, exactly and
// without root; mark_mergeable hands the pages to KSM, and ksm::status says whether ksmd runs
// and what it has merged so far. This program does not switch KSM on (that is a system-wide
// setting); `echo 1 > /sys/kernel/mm/ksm/run` as root does, or memkit::ksm_run_guard.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <memkit/vm/ksm.hpp>
#include <memkit/vm/virtual_memory.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "ksm: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

} // namespace

int main() {
    namespace ksm = memkit::vm::ksm;
    constexpr std::size_t tenants = 50;
    constexpr std::size_t table_bytes = std::size_t{1} << 20; // 1 MiB per tenant

    memkit::reservation mem{tenants * table_bytes};
    auto* base = static_cast<std::byte*>(mem.commit(0, mem.size()));
    for (std::size_t t = 0; t < tenants; ++t) {
        auto* table = reinterpret_cast<std::uint32_t*>(base + t * table_bytes);
        for (std::size_t i = 0; i < table_bytes / 4; ++i)
            table[i] = static_cast<std::uint32_t>(i * 2654435761u);
    }
    // Ten tenants patch one entry of their copy: one page each stops being shared.
    for (std::size_t t = 0; t < 10; ++t)
        reinterpret_cast<std::uint32_t*>(base + t * table_bytes)[7] = 0;

    const memkit::dedup_report r = memkit::page_deduplicator::scan({base, mem.size()});
    std::printf("%zu pages, %zu distinct, %zu duplicates: merging would save %.1f MiB (%.0f %%)\n",
                r.pages, r.distinct_pages, r.duplicate_pages,
                static_cast<double>(r.saved_bytes()) / (1 << 20), r.saving_ratio() * 100);
    const std::size_t pages_per_table = table_bytes / r.page_size;
    // Distinct: the shared version of every page, plus the one patched page (same for all ten).
    require(r.distinct_pages == pages_per_table + 1, "exact count of distinct pages");
    require(r.saving_ratio() > 0.40, "the seed's 40 % target for similar workloads");

    if (const std::error_code ec = ksm::mark_mergeable({base, mem.size()}))
        std::printf("KSM: cannot mark the tables mergeable: %s\n", ec.message().c_str());
    else std::printf("KSM: %zu MiB marked mergeable\n", mem.size() >> 20);

    const memkit::ksm_status s = ksm::status();
    if (!s.available) {
        std::printf("KSM: not available (%s)\n", s.unreadable.c_str());
    } else {
        const char* run = !s.run                                     ? "unknown"
                          : *s.run == memkit::ksm_run_state::merging ? "merging"
                          : *s.run == memkit::ksm_run_state::stopped ? "stopped"
                                                                     : "unmerging";
        std::printf("KSM: ksmd %s, %llu pages shared, %llu sharing them (system-wide)%s%s\n", run,
                    static_cast<unsigned long long>(s.pages_shared.value_or(0)),
                    static_cast<unsigned long long>(s.pages_sharing.value_or(0)),
                    s.unreadable.empty() ? "" : "; unreadable: ", s.unreadable.c_str());
    }
    return EXIT_SUCCESS;
}
