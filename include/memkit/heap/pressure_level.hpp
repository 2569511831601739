// memkit/heap/pressure_level.hpp - how close a heap, a budget or the whole system is to its limit.
//
// One scale shared by managed_heap, memory_budget, system_pressure_monitor and the caches that
// shrink under pressure. The default thresholds are 60 / 80 / 95 % of the limit; each producer
// lets them be configured (pressure_thresholds) and reports a change once per crossing.
//
//   if (level >= memkit::pressure_level::high) cache.shrink_to(cache.bytes() / 2);
#pragma once

#include <cstdint>
#include <string_view>

namespace memkit {

/// Ordered: comparisons (`level >= pressure_level::high`) read as expected.
enum class pressure_level : std::uint8_t { low, medium, high, critical };

/// Fractions of a limit at which each level starts. Valid when 0 < medium < high < critical <= 1.
struct pressure_thresholds {
    double medium = 0.60;
    double high = 0.80;
    double critical = 0.95;

    [[nodiscard]] constexpr bool valid() const noexcept {
        return 0.0 < medium && medium < high && high < critical && critical <= 1.0;
    }
    /// The level for `used` bytes out of `limit` (low when limit is 0).
    [[nodiscard]] constexpr pressure_level level_for(double used, double limit) const noexcept {
        if (limit <= 0.0) return pressure_level::low;
        const double f = used / limit;
        if (f >= critical) return pressure_level::critical;
        if (f >= high) return pressure_level::high;
        if (f >= medium) return pressure_level::medium;
        return pressure_level::low;
    }
};

/// "low", "medium", "high" or "critical".
[[nodiscard]] constexpr std::string_view to_string(pressure_level l) noexcept {
    switch (l) {
    case pressure_level::low: return "low";
    case pressure_level::medium: return "medium";
    case pressure_level::high: return "high";
    case pressure_level::critical: return "critical";
    }
    return "unknown";
}

} // namespace memkit
