// tools/memkit/report/analysis.hpp - the numbers `memkit report` prints, computed from a trace.
//
// analyze() replays the events of a trace: heap size over time and its peak, totals, the
// allocation sites (grouped by the innermost frame, the code that called the allocation
// function) with their share of the peak, the blocks still live at the end grouped by full
// stack (leaks), and a histogram of request sizes. Frees of blocks the trace never saw
// allocated (inherited across fork, or allocated before tracking started) are counted, not
// matched. O(events + stacks) time and memory.
//
//   const memkit::report::analysis a = memkit::report::analyze(t);
//   fmt::print("peak {} bytes at {} us\n", a.peak_bytes, a.peak_time_us);
#pragma once

#include <cstdint>
#include <vector>

#include "trace_reader.hpp"

namespace memkit::report {

/// The allocations made from one code location (the innermost frame of their stacks).
struct site {
    std::uint64_t address = 0; ///< innermost frame; 0 when no stack was recorded
    std::uint32_t stack = 0;   ///< one stack through this site (the first seen)
    std::uint64_t count = 0;
    std::uint64_t bytes = 0;
    std::uint64_t peak_bytes = 0; ///< bytes from this site live at the moment of the peak
    std::uint64_t leaked_count = 0;
    std::uint64_t leaked_bytes = 0;
};

/// Blocks live at the end of the trace with the same stack.
struct leak_group {
    std::uint32_t stack = 0;
    std::uint64_t count = 0;
    std::uint64_t bytes = 0;
};

/// Requests of size in [lo, hi].
struct histogram_bucket {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
    std::uint64_t count = 0;
    std::uint64_t bytes = 0;
};

struct timeline_point {
    std::uint64_t time_us = 0;
    std::uint64_t event = 0; ///< index of the event, an x axis for traces too short to time
    std::uint64_t bytes = 0;
};

struct analysis {
    std::uint64_t allocations = 0;
    std::uint64_t frees = 0;
    std::uint64_t unknown_frees = 0;    ///< frees of blocks the trace never saw allocated
    std::uint64_t mismatched_frees = 0; ///< e.g. new[] released by free or delete
    std::uint64_t bytes_allocated = 0;
    std::uint64_t peak_bytes = 0;
    std::uint64_t peak_blocks = 0;
    std::uint64_t peak_time_us = 0;
    std::uint64_t leaked_count = 0;
    std::uint64_t leaked_bytes = 0;
    double duration_s = 0;
    double allocations_per_s = 0; ///< 0 when the trace is too short to time

    std::vector<site> sites;                 ///< in no particular order
    std::vector<leak_group> leaks;           ///< largest first
    std::vector<histogram_bucket> histogram; ///< non-empty power-of-two buckets, ascending
    std::vector<timeline_point> timeline;    ///< at most timeline_points, plus the peak
};

inline constexpr std::size_t timeline_points = 400;

[[nodiscard]] analysis analyze(const trace& t);

} // namespace memkit::report
