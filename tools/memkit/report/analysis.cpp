// Replaying a trace: heap size, peak, sites, leaks and the size histogram (analysis.hpp).
#include "analysis.hpp"

#include <algorithm>
#include <bit>
#include <unordered_map>

#include "../../track/trace_format.hpp"

namespace memkit::report {
namespace {

namespace mt = memkit::track;

// 0: malloc family (free, realloc), 1: new, 2: new[].
int alloc_family(std::uint8_t kind) {
    switch (static_cast<mt::alloc_kind>(kind)) {
    case mt::alloc_kind::op_new:
    case mt::alloc_kind::op_new_aligned: return 1;
    case mt::alloc_kind::op_new_array:
    case mt::alloc_kind::op_new_array_aligned: return 2;
    default: return 0;
    }
}

int free_family(std::uint8_t kind) {
    switch (static_cast<mt::free_kind>(kind)) {
    case mt::free_kind::op_delete: return 1;
    case mt::free_kind::op_delete_array: return 2;
    default: return 0;
    }
}

std::uint64_t innermost(const trace& t, std::uint32_t stack) {
    return stack < t.stacks.size() && !t.stacks[stack].empty() ? t.stacks[stack].front() : 0;
}

struct live_count {
    std::uint64_t count = 0;
    std::uint64_t bytes = 0;
};

} // namespace

analysis analyze(const trace& t) {
    analysis a;
    a.duration_s = static_cast<double>(t.duration_us) / 1e6;

    // Sites by innermost frame; each stack maps to its site once.
    std::unordered_map<std::uint64_t, std::size_t> site_index;
    std::vector<std::size_t> stack_site(t.stacks.size());
    for (std::uint32_t s = 0; s < t.stacks.size(); ++s) {
        const std::uint64_t addr = innermost(t, s);
        auto [it, fresh] = site_index.try_emplace(addr, a.sites.size());
        if (fresh) a.sites.push_back(site{addr, s, 0, 0, 0, 0, 0});
        stack_site[s] = it->second;
    }
    std::vector<live_count> live_by_stack(t.stacks.size());
    std::vector<histogram_bucket> hist(65);

    std::uint64_t current = 0;
    std::uint64_t blocks = 0;
    std::uint64_t peak_event = 0;
    bool have_peak = false;

    // Timeline: the maximum of each time slice (or event slice for traces too short to time).
    const bool by_time = t.duration_us >= 10000;
    const std::uint64_t span =
        by_time ? t.duration_us : std::max<std::uint64_t>(t.events.size(), 1);
    std::vector<timeline_point> slices(timeline_points);
    std::vector<bool> slice_used(timeline_points, false);

    for (std::uint64_t i = 0; i < t.events.size(); ++i) {
        const event& e = t.events[i];
        if (e.is_alloc) {
            ++a.allocations;
            a.bytes_allocated += e.size;
            current += e.size;
            ++blocks;
            live_count& l = live_by_stack[e.stack];
            ++l.count;
            l.bytes += e.size;
            site& s = a.sites[stack_site[e.stack]];
            ++s.count;
            s.bytes += e.size;
            const unsigned b = e.size == 0 ? 0 : static_cast<unsigned>(std::bit_width(e.size));
            ++hist[b].count;
            hist[b].bytes += e.size;
            if (!have_peak || current > a.peak_bytes) {
                have_peak = true;
                a.peak_bytes = current;
                a.peak_blocks = blocks;
                a.peak_time_us = e.time_us;
                peak_event = i;
            }
        } else {
            ++a.frees;
            if (!e.known) {
                ++a.unknown_frees;
            } else {
                if (alloc_family(e.alloc_kind) != free_family(e.free_kind) &&
                    e.free_kind != static_cast<std::uint8_t>(mt::free_kind::realloc))
                    ++a.mismatched_frees;
                current -= e.size;
                --blocks;
                live_count& l = live_by_stack[e.stack];
                --l.count;
                l.bytes -= e.size;
            }
        }
        const std::uint64_t x = by_time ? e.time_us : i;
        std::size_t s = static_cast<std::size_t>(x * timeline_points / (span + 1));
        if (s >= timeline_points) s = timeline_points - 1;
        if (!slice_used[s] || current >= slices[s].bytes) {
            slices[s] = {e.time_us, i, current};
            slice_used[s] = true;
        }
    }

    for (std::size_t s = 0; s < timeline_points; ++s)
        if (slice_used[s]) a.timeline.push_back(slices[s]);

    for (std::size_t b = 0; b < hist.size(); ++b) {
        if (hist[b].count == 0) continue;
        hist[b].lo = b == 0 ? 0 : std::uint64_t{1} << (b - 1);
        hist[b].hi = b == 0 ? 0 : b == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << b) - 1;
        a.histogram.push_back(hist[b]);
    }

    // Leaks: what is still live, grouped by full stack.
    for (std::uint32_t s = 0; s < live_by_stack.size(); ++s) {
        const live_count& l = live_by_stack[s];
        if (l.count == 0) continue;
        a.leaks.push_back({s, l.count, l.bytes});
        site& st = a.sites[stack_site[s]];
        st.leaked_count += l.count;
        st.leaked_bytes += l.bytes;
        a.leaked_count += l.count;
        a.leaked_bytes += l.bytes;
    }
    std::sort(a.leaks.begin(), a.leaks.end(), [](const leak_group& x, const leak_group& y) {
        return x.bytes != y.bytes ? x.bytes > y.bytes : x.stack < y.stack;
    });

    // Each site's share of the peak: replay up to the peak once more.
    if (have_peak) {
        std::vector<std::uint64_t> site_live(a.sites.size(), 0);
        for (std::uint64_t i = 0; i <= peak_event; ++i) {
            const event& e = t.events[i];
            if (e.is_alloc) site_live[stack_site[e.stack]] += e.size;
            else if (e.known) site_live[stack_site[e.stack]] -= e.size;
        }
        for (std::size_t s = 0; s < a.sites.size(); ++s) a.sites[s].peak_bytes = site_live[s];
    }

    if (t.duration_us > 0) a.allocations_per_s = static_cast<double>(a.allocations) / a.duration_s;
    return a;
}

} // namespace memkit::report
