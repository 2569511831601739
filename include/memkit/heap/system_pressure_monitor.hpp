// memkit/heap/system_pressure_monitor.hpp - how close this process's container or machine is to
// running out of memory, from cgroup v2 / v1, PSI and /proc/meminfo.
//
// `system_pressure_monitor` reads the kernel's view of memory for the process's own cgroup and for
// the machine, and turns it into one `pressure_level` (pressure_level.hpp). sample() reads the
// files once and returns a `memory_sample`; start(interval) polls on a background thread and runs
// on_level_change callbacks when the level changes. It works everywhere: inside a container with
// no cgroup files, on a kernel without PSI, or pointed at a copy of /proc and /sys (the `root`
// option), it reports what it could read and, for every file it could not, the path and why.
//
//   memkit::system_pressure_monitor mon;          // reads "/"
//   memkit::memory_sample s = mon.sample();       // s.usage, s.limit, s.level, s.unavailable
//   mon.on_level_change([&](const memkit::pressure_change& c) {
//       if (c.to >= memkit::pressure_level::high) cache.shrink();
//   });
//   mon.start(std::chrono::milliseconds(500));    // polls until stop() or the destructor
//
// Sources (all paths are under options.root, default "/"):
//  * /proc/self/cgroup names the process's cgroup; /proc/self/mountinfo says where the cgroup
//    hierarchies are mounted (without it: /sys/fs/cgroup for v2, /sys/fs/cgroup/memory for v1).
//    The memory controller's hierarchy is used: v1 when /proc/self/cgroup has a "memory" line
//    (also in hybrid mode, where v2 is mounted without the memory controller), else v2 ("0::").
//    If the cgroup's own directory does not exist under the mount (a container without a cgroup
//    namespace sees its host path but has its own cgroup mounted at the root), the mount point
//    itself is read.
//  * cgroup v2: memory.current, memory.max (the smallest of the cgroup's and every ancestor's up
//    to the mount point: a parent slice's limit binds too), memory.high, memory.stat
//    (inactive_file), memory.events, memory.pressure (the cgroup's own PSI).
//  * cgroup v1: memory.usage_in_bytes, memory.limit_in_bytes, memory.stat (total_inactive_file,
//    hierarchical_memory_limit). A v1 limit of 2^62 bytes or more means "no limit" (the kernel
//    writes 9223372036854771712).
//  * /proc/pressure/memory: PSI ("some" and "full" avg10/avg60/avg300 and total stall time), used
//    when the cgroup has no memory.pressure.
//  * /proc/meminfo: MemTotal and MemAvailable.
//
// What a sample means:
//  * limit: the cgroup's limit when it has one below MemTotal and its usage could be read
//    (limited_by = cgroup_v2/v1), else MemTotal (limited_by = meminfo); 0 when neither could be
//    read (limited_by = none).
//  * usage: against a cgroup limit, the cgroup's working set: its usage minus its inactive file
//    cache (which the kernel reclaims before it fails an allocation; this is what `docker stats`
//    and the kubelet report). Against MemTotal, MemTotal - MemAvailable for the whole machine.
//  * available: limit - usage, and never more than MemAvailable when that is known.
//  * usage_level: thresholds.level_for(usage, limit). level: usage_level raised by PSI:
//        some avg10 >= psi.some_avg10_medium (default 10 %)  -> at least medium
//        full avg10 >= psi.full_avg10_high   (default 10 %)  -> at least high
//        full avg10 >= psi.full_avg10_critical (default 40 %) -> critical
//    (avg10 is the share of the last 10 seconds in which some / all non-idle tasks were stalled
//    waiting for memory; PSI never lowers the level; an infinite threshold disables a rule).
//
// Hysteresis. The level tracked by poll() and the polling thread (level(), on_level_change) rises
// as soon as a sample reaches a higher level, but falls only when the sample would also be at
// that lower level with every threshold moved down by a margin: `hysteresis` (default 0.02, i.e.
// 2 % of the limit) for the usage thresholds and `psi_hysteresis` (default 2 percentage points)
// for the PSI rules. With the default 80 % high threshold, the level becomes high at 80 % and
// returns to medium below 78 %; a usage oscillating around 80 % is reported once. Each change is
// reported once, with the previous and the new level. The tracked level starts at low, so a
// first poll that finds a higher level reports a change from low.
//
// Errors: a file that does not exist is not an error, nor is an unreadable or malformed one: each
// is listed in memory_sample::unavailable (path, kind, reason, e.g. "/sys/fs/cgroup/x/memory.max:
// no such file" or "malformed: expected a number of bytes, got '12abc'") and the sample is built
// from the rest. A root that is not a readable directory gives a sample with nothing read and one
// `unreadable` entry for the root. Invalid options throw std::invalid_argument at construction;
// start() with a zero or negative interval throws std::invalid_argument.
//
// Thread-safety: every member function may be called from any thread. sample() is const and
// touches no shared state. poll() and the polling thread update the tracked level under a mutex
// and run callbacks after releasing it, on the polling thread (or the thread that called poll());
// a callback may call any member, including stop() (which then only asks the thread to stop;
// it is joined by the next start(), stop() or the destructor). Callbacks must not throw (a
// callback that throws on the polling thread terminates the program). stop() wakes the thread
// through a condition variable, so it returns as soon as a poll in progress ends, whatever the
// interval. The destructor stops the thread; it must not run on the polling thread.
//
// Cost: sample() opens and parses 6-12 small files, about 0.05-0.15 ms (the kernel generates
// memory.stat and /proc/meminfo on each read); poll every 100 ms to a few seconds, never on an
// allocation path.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "memkit/heap/pressure_level.hpp"

namespace memkit {

/// One line of a PSI file: the share (in percent) of the last 10, 60 and 300 seconds during which
/// tasks were stalled on memory, and the total stall time in microseconds.
struct psi_averages {
    double avg10 = 0.0;
    double avg60 = 0.0;
    double avg300 = 0.0;
    std::uint64_t total_us = 0;
};

/// Memory PSI. `full` is absent on kernels that report only "some".
struct memory_psi {
    psi_averages some;
    std::optional<psi_averages> full;
    std::string source; ///< the file it came from
};

/// cgroup v2 memory.events counters (the number of times each event happened).
struct cgroup_memory_events {
    std::uint64_t low = 0, high = 0, max = 0, oom = 0, oom_kill = 0;
};

/// Which limit a sample's level is measured against.
enum class limit_source : std::uint8_t { none, cgroup_v2, cgroup_v1, meminfo };

/// "none", "cgroup v2", "cgroup v1" or "meminfo".
[[nodiscard]] const char* to_string(limit_source s) noexcept;

/// A file that could not be used for a sample, and why.
struct source_problem {
    enum class kind : std::uint8_t {
        missing,    ///< no such file (not an error: e.g. no cgroup, no PSI)
        unreadable, ///< exists but could not be read (permission, not a directory, ...)
        malformed,  ///< read, but its content is not what the kernel writes
    };
    std::string path;
    kind what = kind::missing;
    std::string reason; ///< e.g. "no such file", "malformed: expected a number of bytes, got 'x'"
};

/// What one sample() found. Byte counts are 0 where unknown (see limited_by and unavailable).
struct memory_sample {
    std::chrono::steady_clock::time_point taken_at{};

    std::size_t usage = 0;     ///< bytes in use against `limit`
    std::size_t limit = 0;     ///< the effective limit; 0 when unknown
    std::size_t available = 0; ///< bytes that can still be used
    limit_source limited_by = limit_source::none;

    pressure_level usage_level = pressure_level::low; ///< from usage / limit alone
    pressure_level level = pressure_level::low;       ///< usage_level raised by PSI

    int cgroup_version = 0;  ///< 1, 2, or 0 when no cgroup was found
    std::string cgroup_path; ///< as in /proc/self/cgroup, e.g. "/user.slice/app.service"
    std::string cgroup_dir;  ///< the directory the cgroup files were read from
    std::optional<std::size_t> cgroup_usage;         ///< memory.current / memory.usage_in_bytes
    std::optional<std::size_t> cgroup_limit;         ///< effective cgroup limit, if limited
    std::optional<std::size_t> cgroup_high;          ///< memory.high (v2), if set
    std::optional<std::size_t> cgroup_inactive_file; ///< reclaimable file cache in usage
    std::optional<cgroup_memory_events> cgroup_events;

    std::optional<std::size_t> mem_total;     ///< MemTotal
    std::optional<std::size_t> mem_available; ///< MemAvailable
    std::optional<memory_psi> psi;

    std::vector<std::string> read;           ///< every file that was read and used
    std::vector<source_problem> unavailable; ///< every file that could not be used, and why
};

/// A multi-line, human-readable summary of a sample (for logs and the examples).
[[nodiscard]] std::string to_string(const memory_sample& s);

/// PSI rules that raise a sample's level (percentages, 0..100; infinity disables a rule).
/// Valid when every value is >= 0 (not NaN) and full_avg10_high <= full_avg10_critical.
struct psi_escalation {
    double some_avg10_medium = 10.0;
    double full_avg10_high = 10.0;
    double full_avg10_critical = 40.0;
};

struct pressure_monitor_options {
    std::string root = "/"; ///< where /proc and /sys are looked up (tests use a fake tree)
    pressure_thresholds thresholds{};
    psi_escalation psi{};
    double hysteresis = 0.02;    ///< fraction of the limit, 0 <= h < thresholds.medium
    double psi_hysteresis = 2.0; ///< PSI percentage points, >= 0
};

/// What an on_level_change callback receives.
struct pressure_change {
    pressure_level from;
    pressure_level to;
    const memory_sample& sample; ///< the sample that caused the change
};

using pressure_callback_id = std::uint64_t;

class system_pressure_monitor {
public:
    /// Throws std::invalid_argument for invalid thresholds, PSI rules or hysteresis margins.
    explicit system_pressure_monitor(pressure_monitor_options options = {});
    ~system_pressure_monitor();
    system_pressure_monitor(const system_pressure_monitor&) = delete;
    system_pressure_monitor& operator=(const system_pressure_monitor&) = delete;

    /// Reads every source once. Does not change the tracked level or run callbacks.
    [[nodiscard]] memory_sample sample() const;
    /// sample(), then updates the tracked level (with hysteresis) and runs the callbacks on this
    /// thread if it changed. What the polling thread does at every interval.
    memory_sample poll();

    /// The tracked level: low until the first poll.
    [[nodiscard]] pressure_level level() const noexcept;
    /// The sample of the last poll, if any.
    [[nodiscard]] std::optional<memory_sample> last_sample() const;

    /// Runs `f` for each change of the tracked level. Throws std::invalid_argument if empty.
    pressure_callback_id on_level_change(std::function<void(const pressure_change&)> f);
    /// Unregisters a callback; false if `id` is not registered. A callback may still run once
    /// on a thread that had already started notifying.
    bool remove_callback(pressure_callback_id id);

    /// Starts polling every `interval` (the first poll is immediate). If already polling, the new
    /// interval takes effect at once. Throws std::invalid_argument for interval <= 0, and
    /// std::system_error if the thread cannot be created.
    void start(std::chrono::milliseconds interval);
    /// Stops polling and joins the thread (see the header comment for stop() in a callback).
    void stop();
    [[nodiscard]] bool running() const;

    [[nodiscard]] const pressure_monitor_options& options() const noexcept { return options_; }

private:
    using callback = std::function<void(const pressure_change&)>;
    using callback_list = std::vector<std::pair<pressure_callback_id, callback>>;

    void run();

    const pressure_monitor_options options_;

    mutable std::mutex state_mutex_; // tracked level, last sample, callbacks
    std::atomic<pressure_level> level_{pressure_level::low}; // written under state_mutex_
    std::optional<memory_sample> last_;
    std::shared_ptr<const callback_list> callbacks_;
    pressure_callback_id next_id_ = 1;

    std::mutex lifecycle_mutex_; // start/stop/destructor: one at a time owns thread_
    std::thread thread_;
    mutable std::mutex wake_mutex_; // the polling thread's wait
    std::condition_variable wake_;
    std::chrono::milliseconds interval_{0};
    bool stop_requested_ = false;
    bool interval_changed_ = false;
    bool running_ = false;
};

} // namespace memkit
