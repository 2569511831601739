#include "memkit/heap/system_pressure_monitor.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <system_error>

namespace memkit {

namespace {

// The monitor whose polling thread is the current thread, so that stop() and start() called from
// a callback do not join (or wait for) the thread they run on.
thread_local const system_pressure_monitor* current_poller = nullptr;

// A v1 limit at or above this is "no limit": the kernel writes PAGE_COUNTER_MAX pages
// (9223372036854771712 with 4 KiB pages) for an unlimited cgroup.
constexpr std::uint64_t v1_unlimited = std::uint64_t{1} << 62;

constexpr std::size_t max_file_size = std::size_t{16} << 20; // mountinfo on busy hosts is large

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() &&
           (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r'))
        s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        const std::size_t end = s.find(sep, start);
        if (end == std::string_view::npos) {
            out.push_back(s.substr(start));
            break;
        }
        out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

std::vector<std::string_view> words(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
        const std::size_t b = i;
        while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
        if (i > b) out.push_back(s.substr(b, i - b));
    }
    return out;
}

std::optional<std::uint64_t> to_u64(std::string_view s) noexcept {
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

std::optional<double> to_double(std::string_view s) noexcept {
    double v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || s.empty() || !(v >= 0.0))
        return std::nullopt;
    return v;
}

// 'text' quoted for an error message: at most 40 characters, control characters as '?'.
std::string quoted(std::string_view text) {
    std::string q = "'";
    for (char c : text.substr(0, 40)) q += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
    if (text.size() > 40) q += "...";
    return q + "'";
}

std::size_t to_size(std::uint64_t v) noexcept {
    return v > std::numeric_limits<std::size_t>::max() ? std::numeric_limits<std::size_t>::max()
                                                       : static_cast<std::size_t>(v);
}

bool is_directory(const std::string& path) noexcept {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string error_reason(int err) {
    switch (err) {
    case ENOENT: return "no such file";
    case EACCES:
    case EPERM: return "permission denied";
    case ENOTDIR: return "a path component is not a directory";
    case EISDIR: return "is a directory";
    default: return std::generic_category().message(err);
    }
}

// Unescapes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
std::string unescape(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' &&
            s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            out +=
                static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

// Reads files under the root and records in the sample what was used and what was not.
class collector {
public:
    collector(const std::string& root, memory_sample& s) : s_(s) {
        prefix_ = root;
        while (prefix_.size() > 1 && prefix_.back() == '/') prefix_.pop_back();
        if (prefix_ == "/") prefix_.clear();
    }

    [[nodiscard]] std::string full(std::string_view path) const {
        return prefix_ + std::string(path);
    }

    // The content of `path` (a path below the root), or nullopt after recording why not. A
    // missing file is recorded only when `report_missing`.
    std::optional<std::string> text(std::string_view path, bool report_missing = true) {
        const std::string p = full(path);
        const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            const int err = errno;
            if (err != ENOENT || report_missing) problem(p, err);
            return std::nullopt;
        }
        std::string out;
        char buf[4096];
        for (;;) {
            const ssize_t r = ::read(fd, buf, sizeof buf);
            if (r < 0) {
                if (errno == EINTR) continue;
                const int err = errno;
                ::close(fd);
                problem(p, err);
                return std::nullopt;
            }
            if (r == 0) break;
            out.append(buf, static_cast<std::size_t>(r));
            if (out.size() > max_file_size) {
                ::close(fd);
                s_.unavailable.push_back(
                    {p, source_problem::kind::unreadable,
                     "larger than " + std::to_string(max_file_size) + " bytes"});
                return std::nullopt;
            }
        }
        ::close(fd);
        return out;
    }

    void used(std::string_view path) { s_.read.push_back(full(path)); }
    void malformed(std::string_view path, std::string what) {
        s_.unavailable.push_back(
            {full(path), source_problem::kind::malformed, "malformed: " + std::move(what)});
    }
    void missing(std::string_view path, std::string why) {
        s_.unavailable.push_back({full(path), source_problem::kind::missing, std::move(why)});
    }

    // A file holding one number of bytes (or "max" when `allow_max`): nullopt if unusable,
    // optional<...>{nullopt} for "max".
    std::optional<std::optional<std::uint64_t>> bytes(std::string_view path, bool allow_max,
                                                      bool report_missing = true) {
        const auto t = text(path, report_missing);
        if (!t) return std::nullopt;
        const std::string_view v = trim(*t);
        if (allow_max && v == "max") {
            used(path);
            return std::optional<std::uint64_t>{};
        }
        if (const auto n = to_u64(v)) {
            used(path);
            return std::optional<std::uint64_t>{*n};
        }
        malformed(path, std::string("expected a number of bytes") + (allow_max ? " or 'max'" : "") +
                            ", got " + quoted(v));
        return std::nullopt;
    }

    // "key value" lines (memory.stat, memory.events): the values of `keys` that are present.
    std::optional<std::vector<std::pair<std::string_view, std::uint64_t>>>
    key_values(std::string_view path, const std::string& content) {
        std::vector<std::pair<std::string_view, std::uint64_t>> out;
        for (std::string_view line : split(content, '\n')) {
            line = trim(line);
            if (line.empty()) continue;
            const auto w = words(line);
            const auto v = w.size() == 2 ? to_u64(w[1]) : std::nullopt;
            if (!v) {
                malformed(path, "expected 'key value' lines, got " + quoted(line));
                return std::nullopt;
            }
            out.emplace_back(w[0], *v);
        }
        return out;
    }

    std::optional<memory_psi> psi(std::string_view path, bool report_missing) {
        const auto t = text(path, report_missing);
        if (!t) return std::nullopt;
        memory_psi out;
        bool have_some = false;
        for (std::string_view line : split(*t, '\n')) {
            line = trim(line);
            if (line.empty()) continue;
            const auto w = words(line);
            if (w.empty() || (w[0] != "some" && w[0] != "full")) {
                malformed(path, "expected 'some' and 'full' lines, got " + quoted(line));
                return std::nullopt;
            }
            psi_averages a;
            int seen = 0;
            for (std::size_t i = 1; i < w.size(); ++i) {
                const std::size_t eq = w[i].find('=');
                const std::string_view k = w[i].substr(0, eq);
                const std::string_view v =
                    eq == std::string_view::npos ? std::string_view{} : w[i].substr(eq + 1);
                bool ok = false;
                if (k == "total") {
                    const auto n = to_u64(v);
                    ok = n.has_value();
                    if (ok) {
                        a.total_us = *n;
                        seen |= 8;
                    }
                } else {
                    const auto d = to_double(v);
                    double* field = k == "avg10"    ? &a.avg10
                                    : k == "avg60"  ? &a.avg60
                                    : k == "avg300" ? &a.avg300
                                                    : nullptr;
                    ok = field != nullptr && d.has_value();
                    if (ok) {
                        *field = *d;
                        seen |= field == &a.avg10 ? 1 : field == &a.avg60 ? 2 : 4;
                    }
                }
                if (!ok) {
                    malformed(path, quoted(w[i]) + " in the '" + std::string(w[0]) + "' line");
                    return std::nullopt;
                }
            }
            if (seen != 15) {
                malformed(path, "the '" + std::string(w[0]) +
                                    "' line lacks one of avg10, avg60, avg300, total");
                return std::nullopt;
            }
            if (w[0] == "some") {
                out.some = a;
                have_some = true;
            } else {
                out.full = a;
            }
        }
        if (!have_some) {
            malformed(path, "no 'some' line");
            return std::nullopt;
        }
        out.source = full(path);
        used(path);
        return out;
    }

private:
    void problem(const std::string& full_path, int err) {
        s_.unavailable.push_back(
            {full_path,
             err == ENOENT ? source_problem::kind::missing : source_problem::kind::unreadable,
             error_reason(err)});
    }

    memory_sample& s_;
    std::string prefix_;
};

struct mount {
    std::string point; // where it is mounted, e.g. /sys/fs/cgroup/memory
    std::string root;  // the hierarchy path mounted there, e.g. / (or /docker/x in a namespace)
};

struct cgroup_mounts {
    std::optional<mount> v1_memory;
    std::optional<mount> v2;
};

cgroup_mounts find_mounts(collector& c) {
    cgroup_mounts m;
    const auto t = c.text("/proc/self/mountinfo");
    if (!t) {
        m.v1_memory = mount{"/sys/fs/cgroup/memory", "/"};
        m.v2 = mount{"/sys/fs/cgroup", "/"};
        return m;
    }
    for (std::string_view line : split(*t, '\n')) {
        const auto w = words(line);
        const auto dash = std::find(w.begin(), w.end(), std::string_view("-"));
        if (w.size() < 5 || dash == w.end() || w.end() - dash < 4) continue;
        const std::string_view fstype = dash[1];
        const std::string_view super = dash[3];
        if (fstype == "cgroup2" && !m.v2) m.v2 = mount{unescape(w[4]), unescape(w[3])};
        if (fstype == "cgroup" && !m.v1_memory) {
            const auto opts = split(super, ',');
            if (std::find(opts.begin(), opts.end(), std::string_view("memory")) != opts.end())
                m.v1_memory = mount{unescape(w[4]), unescape(w[3])};
        }
    }
    c.used("/proc/self/mountinfo");
    return m;
}

// The directory of the cgroup at hierarchy path `path` below mount `m`; the mount point when the
// cgroup is not visible there (a container without a cgroup namespace).
std::string cgroup_dir(collector& c, const mount& m, const std::string& path) {
    std::string rel;
    if (m.root == "/") rel = path;
    else if (path.compare(0, m.root.size(), m.root) == 0 &&
             (path.size() == m.root.size() || path[m.root.size()] == '/'))
        rel = path.substr(m.root.size());
    std::string dir = m.point;
    if (!rel.empty() && rel != "/") {
        if (dir.back() == '/' && rel.front() == '/') dir.pop_back();
        else if (dir.back() != '/' && rel.front() != '/') dir += '/';
        dir += rel;
    }
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    if (!is_directory(c.full(dir))) dir = m.point;
    return dir;
}

void read_cgroup_v2(collector& c, memory_sample& s, const std::string& dir,
                    const std::string& mount_point) {
    if (const auto cur = c.bytes(dir + "/memory.current", false)) s.cgroup_usage = to_size(**cur);

    std::optional<std::uint64_t> limit; // nullopt: "max" or unreadable
    if (const auto own = c.bytes(dir + "/memory.max", true)) limit = *own;
    // A parent's memory.max binds too. The hierarchy's root has none, so ancestors' missing
    // files are not reported.
    for (std::size_t end = dir.size(); end > mount_point.size();) {
        end = dir.rfind('/', end - 1); // the parent is dir[0, end)
        if (end == std::string::npos || end < mount_point.size()) break;
        const std::string file = dir.substr(0, end) + "/memory.max";
        if (const auto up = c.bytes(file, true, false); up && *up)
            limit = limit ? std::min(*limit, **up) : **up;
    }
    if (limit) s.cgroup_limit = to_size(*limit);

    if (const auto high = c.bytes(dir + "/memory.high", true); high && *high)
        s.cgroup_high = to_size(**high);

    const std::string stat = dir + "/memory.stat";
    if (const auto t = c.text(stat)) {
        if (const auto kv = c.key_values(stat, *t)) {
            for (const auto& [k, v] : *kv)
                if (k == "inactive_file") s.cgroup_inactive_file = to_size(v);
            if (s.cgroup_inactive_file) c.used(stat);
            else c.malformed(stat, "no 'inactive_file' line");
        }
    }
    const std::string events = dir + "/memory.events";
    if (const auto t = c.text(events)) {
        if (const auto kv = c.key_values(events, *t)) {
            cgroup_memory_events e;
            for (const auto& [k, v] : *kv) {
                if (k == "low") e.low = v;
                else if (k == "high") e.high = v;
                else if (k == "max") e.max = v;
                else if (k == "oom") e.oom = v;
                else if (k == "oom_kill") e.oom_kill = v;
            }
            s.cgroup_events = e;
            c.used(events);
        }
    }
    s.psi = c.psi(dir + "/memory.pressure", true);
}

void read_cgroup_v1(collector& c, memory_sample& s, const std::string& dir) {
    if (const auto u = c.bytes(dir + "/memory.usage_in_bytes", false))
        s.cgroup_usage = to_size(**u);
    std::optional<std::uint64_t> limit;
    if (const auto l = c.bytes(dir + "/memory.limit_in_bytes", false)) limit = **l;
    const std::string stat = dir + "/memory.stat";
    if (const auto t = c.text(stat)) {
        if (const auto kv = c.key_values(stat, *t)) {
            bool found = false;
            for (const auto& [k, v] : *kv) {
                if (k == "total_inactive_file") {
                    s.cgroup_inactive_file = to_size(v);
                    found = true;
                }
                // The smallest limit of the cgroup and its ancestors.
                if (k == "hierarchical_memory_limit") limit = limit ? std::min(*limit, v) : v;
            }
            if (found) c.used(stat);
            else c.malformed(stat, "no 'total_inactive_file' line");
        }
    }
    if (limit && *limit < v1_unlimited) s.cgroup_limit = to_size(*limit);
}

void read_cgroup(collector& c, memory_sample& s) {
    const auto t = c.text("/proc/self/cgroup");
    if (!t) return;
    std::optional<std::string> v1_path, v2_path;
    bool any = false;
    for (std::string_view line : split(*t, '\n')) {
        line = trim(line);
        if (line.empty()) continue;
        const std::size_t a = line.find(':');
        const std::size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
        if (b == std::string_view::npos) {
            c.malformed("/proc/self/cgroup",
                        "expected 'id:controllers:path' lines, got " + quoted(line));
            return;
        }
        any = true;
        const std::string_view id = line.substr(0, a);
        const std::string_view controllers = line.substr(a + 1, b - a - 1);
        const std::string path(line.substr(b + 1));
        const auto list = split(controllers, ',');
        if (std::find(list.begin(), list.end(), std::string_view("memory")) != list.end())
            v1_path = path;
        else if (id == "0" && controllers.empty()) v2_path = path;
    }
    if (!any) {
        c.malformed("/proc/self/cgroup", "empty");
        return;
    }
    c.used("/proc/self/cgroup");
    if (!v1_path && !v2_path) {
        c.missing("/proc/self/cgroup", "no memory cgroup (neither a 'memory' nor a '0::' line)");
        return;
    }
    const cgroup_mounts mounts = find_mounts(c);
    const int version = v1_path ? 1 : 2;
    const std::optional<mount>& m = version == 1 ? mounts.v1_memory : mounts.v2;
    if (!m) {
        c.missing("/proc/self/mountinfo",
                  std::string("no cgroup") + (version == 1 ? " v1 memory" : "2") + " mount");
        return;
    }
    if (!is_directory(c.full(m->point))) {
        c.missing(m->point, "cgroup mount point: no such directory");
        return;
    }
    s.cgroup_version = version;
    s.cgroup_path = version == 1 ? *v1_path : *v2_path;
    s.cgroup_dir = cgroup_dir(c, *m, s.cgroup_path);
    if (version == 2) read_cgroup_v2(c, s, s.cgroup_dir, m->point);
    else read_cgroup_v1(c, s, s.cgroup_dir);
}

void read_meminfo(collector& c, memory_sample& s) {
    constexpr std::string_view path = "/proc/meminfo";
    const auto t = c.text(path);
    if (!t) return;
    std::optional<std::uint64_t> total, avail;
    for (std::string_view line : split(*t, '\n')) {
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        const std::string_view key = line.substr(0, colon);
        if (key != "MemTotal" && key != "MemAvailable") continue;
        const auto w = words(line.substr(colon + 1));
        const auto kib = w.size() == 2 && w[1] == "kB" ? to_u64(w[0]) : std::nullopt;
        if (!kib || *kib > (std::numeric_limits<std::uint64_t>::max() >> 10)) {
            c.malformed(path, std::string(key) + ": expected a number of kB, got " +
                                  quoted(trim(line.substr(colon + 1))));
            return;
        }
        (key == "MemTotal" ? total : avail) = *kib * 1024;
    }
    if (!total || !avail) {
        c.malformed(path, std::string("no ") + (total ? "MemAvailable" : "MemTotal") + " line");
        return;
    }
    s.mem_total = to_size(*total);
    s.mem_available = to_size(*avail);
    c.used(path);
}

pressure_level level_of(const memory_sample& s, const pressure_monitor_options& o,
                        double usage_margin, double psi_margin) noexcept {
    const pressure_thresholds shifted{o.thresholds.medium - usage_margin,
                                      o.thresholds.high - usage_margin,
                                      o.thresholds.critical - usage_margin};
    pressure_level l =
        shifted.level_for(static_cast<double>(s.usage), static_cast<double>(s.limit));
    if (s.psi) {
        auto raise = [&l](pressure_level to) { l = std::max(l, to); };
        if (s.psi->some.avg10 >= o.psi.some_avg10_medium - psi_margin)
            raise(pressure_level::medium);
        if (s.psi->full) {
            const double full10 = s.psi->full->avg10;
            if (full10 >= o.psi.full_avg10_high - psi_margin) raise(pressure_level::high);
            if (full10 >= o.psi.full_avg10_critical - psi_margin) raise(pressure_level::critical);
        }
    }
    return l;
}

const pressure_monitor_options& validated(const pressure_monitor_options& o) {
    auto bad = [](const char* what) {
        throw std::invalid_argument(std::string("memkit::system_pressure_monitor: ") + what);
    };
    if (!o.thresholds.valid()) bad("thresholds must satisfy 0 < medium < high < critical <= 1");
    auto nonneg = [](double v) { return v >= 0.0; }; // false for NaN
    if (!nonneg(o.psi.some_avg10_medium) || !nonneg(o.psi.full_avg10_high) ||
        !nonneg(o.psi.full_avg10_critical))
        bad("psi thresholds must be >= 0 (infinity disables a rule)");
    if (!(o.psi.full_avg10_high <= o.psi.full_avg10_critical))
        bad("psi.full_avg10_high must not exceed psi.full_avg10_critical");
    if (!(o.hysteresis >= 0.0 && o.hysteresis < o.thresholds.medium))
        bad("hysteresis must satisfy 0 <= hysteresis < thresholds.medium");
    if (!(o.psi_hysteresis >= 0.0 && std::isfinite(o.psi_hysteresis)))
        bad("psi_hysteresis must be finite and >= 0");
    if (o.root.empty()) bad("root must not be empty (use \"/\")");
    return o;
}

std::string with_mib(std::size_t bytes) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%zu bytes (%.1f MiB)", bytes,
                  static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

} // namespace

const char* to_string(limit_source s) noexcept {
    switch (s) {
    case limit_source::none: return "none";
    case limit_source::cgroup_v2: return "cgroup v2";
    case limit_source::cgroup_v1: return "cgroup v1";
    case limit_source::meminfo: return "meminfo";
    }
    return "unknown";
}

std::string to_string(const memory_sample& s) {
    std::string out = "level " + std::string(to_string(s.level));
    if (s.level != s.usage_level)
        out += " (usage alone: " + std::string(to_string(s.usage_level)) + ", raised by PSI)";
    out += "\n";
    if (s.limit != 0) {
        char pct[32];
        std::snprintf(pct, sizeof pct, "%.1f %%",
                      100.0 * static_cast<double>(s.usage) / static_cast<double>(s.limit));
        out += "limit " + with_mib(s.limit) + " from " + to_string(s.limited_by) + "\nusage " +
               with_mib(s.usage) + ", " + pct + " of the limit\navailable " +
               with_mib(s.available) + "\n";
    } else {
        out += "limit unknown\n";
    }
    if (s.cgroup_version != 0) {
        out += "cgroup v" + std::to_string(s.cgroup_version) + " " + s.cgroup_path + " (" +
               s.cgroup_dir + ")";
        if (s.cgroup_usage) out += ": usage " + std::to_string(*s.cgroup_usage);
        if (s.cgroup_inactive_file)
            out += ", inactive file " + std::to_string(*s.cgroup_inactive_file);
        out +=
            ", limit " + (s.cgroup_limit ? std::to_string(*s.cgroup_limit) : std::string("none"));
        if (s.cgroup_high) out += ", high " + std::to_string(*s.cgroup_high);
        if (s.cgroup_events)
            out += ", events: high " + std::to_string(s.cgroup_events->high) + " max " +
                   std::to_string(s.cgroup_events->max) + " oom " +
                   std::to_string(s.cgroup_events->oom) + " oom_kill " +
                   std::to_string(s.cgroup_events->oom_kill);
        out += "\n";
    }
    if (s.mem_total)
        out += "machine: MemTotal " + with_mib(*s.mem_total) + ", MemAvailable " +
               with_mib(s.mem_available.value_or(0)) + "\n";
    if (s.psi) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "psi: some avg10 %.2f avg60 %.2f avg300 %.2f",
                      s.psi->some.avg10, s.psi->some.avg60, s.psi->some.avg300);
        out += buf;
        if (s.psi->full) {
            std::snprintf(buf, sizeof buf, "; full avg10 %.2f avg60 %.2f avg300 %.2f",
                          s.psi->full->avg10, s.psi->full->avg60, s.psi->full->avg300);
            out += buf;
        }
        out += " (" + s.psi->source + ")\n";
    }
    for (const std::string& r : s.read) out += "read: " + r + "\n";
    for (const source_problem& p : s.unavailable)
        out += "unavailable: " + p.path + ": " + p.reason + "\n";
    return out;
}

system_pressure_monitor::system_pressure_monitor(pressure_monitor_options options)
    : options_(validated(options)) {}

system_pressure_monitor::~system_pressure_monitor() { stop(); }

memory_sample system_pressure_monitor::sample() const {
    memory_sample s;
    s.taken_at = std::chrono::steady_clock::now();
    collector c{options_.root, s};

    struct stat st {};
    const std::string& root = options_.root;
    if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
        ::access(root.c_str(), R_OK | X_OK) != 0) {
        const int err = errno;
        std::string why = "root directory: ";
        if (::stat(root.c_str(), &st) != 0)
            why += err == ENOENT ? "no such directory" : error_reason(err);
        else if (!S_ISDIR(st.st_mode)) why += "not a directory";
        else why += error_reason(err);
        s.unavailable.push_back({root, source_problem::kind::unreadable, std::move(why)});
        return s;
    }

    read_cgroup(c, s);
    read_meminfo(c, s);
    if (!s.psi) s.psi = c.psi("/proc/pressure/memory", true);

    const std::optional<std::size_t> working_set =
        s.cgroup_usage
            ? std::optional<std::size_t>(
                  *s.cgroup_usage - std::min(*s.cgroup_usage, s.cgroup_inactive_file.value_or(0)))
            : std::nullopt;
    if (s.cgroup_limit && working_set && (!s.mem_total || *s.cgroup_limit < *s.mem_total)) {
        s.limited_by = s.cgroup_version == 1 ? limit_source::cgroup_v1 : limit_source::cgroup_v2;
        s.limit = *s.cgroup_limit;
        s.usage = *working_set;
        s.available = s.usage < s.limit ? s.limit - s.usage : 0;
        if (s.mem_available) s.available = std::min(s.available, *s.mem_available);
    } else if (s.mem_total) {
        s.limited_by = limit_source::meminfo;
        s.limit = *s.mem_total;
        s.available = std::min(*s.mem_available, *s.mem_total);
        s.usage = *s.mem_total - s.available;
    } else if (working_set) {
        s.usage = *working_set; // a cgroup without a known limit, on a machine without meminfo
    }
    s.usage_level =
        options_.thresholds.level_for(static_cast<double>(s.usage), static_cast<double>(s.limit));
    s.level = level_of(s, options_, 0.0, 0.0);
    return s;
}

memory_sample system_pressure_monitor::poll() {
    memory_sample s = sample();
    std::shared_ptr<const callback_list> to_run;
    pressure_level from{}, to{};
    {
        const std::lock_guard lock(state_mutex_);
        from = level_.load(std::memory_order_relaxed);
        to = s.level;
        // Falling needs the sample to be below the lower level's thresholds by the margins.
        if (to < from)
            to =
                std::min(from, level_of(s, options_, options_.hysteresis, options_.psi_hysteresis));
        level_.store(to, std::memory_order_relaxed);
        last_ = s;
        if (to != from) to_run = callbacks_;
    }
    if (to_run) {
        const pressure_change change{from, to, s};
        for (const auto& [id, f] : *to_run) f(change);
    }
    return s;
}

pressure_level system_pressure_monitor::level() const noexcept {
    return level_.load(std::memory_order_relaxed);
}

std::optional<memory_sample> system_pressure_monitor::last_sample() const {
    const std::lock_guard lock(state_mutex_);
    return last_;
}

pressure_callback_id
system_pressure_monitor::on_level_change(std::function<void(const pressure_change&)> f) {
    if (!f)
        throw std::invalid_argument(
            "memkit::system_pressure_monitor::on_level_change: empty callback");
    const std::lock_guard lock(state_mutex_);
    // Copied on write so that poll() runs a snapshot without holding the mutex.
    auto grown = callbacks_ ? std::make_shared<callback_list>(*callbacks_)
                            : std::make_shared<callback_list>();
    const pressure_callback_id id = next_id_++;
    grown->emplace_back(id, std::move(f));
    callbacks_ = std::move(grown);
    return id;
}

bool system_pressure_monitor::remove_callback(pressure_callback_id id) {
    const std::lock_guard lock(state_mutex_);
    if (!callbacks_) return false;
    auto shrunk = std::make_shared<callback_list>();
    for (const auto& e : *callbacks_)
        if (e.first != id) shrunk->push_back(e);
    if (shrunk->size() == callbacks_->size()) return false;
    callbacks_ = std::move(shrunk);
    return true;
}

void system_pressure_monitor::run() {
    current_poller = this;
    std::unique_lock lock(wake_mutex_);
    while (!stop_requested_) {
        lock.unlock();
        poll();
        lock.lock();
        wake_.wait_for(lock, interval_, [this] { return stop_requested_ || interval_changed_; });
        interval_changed_ = false;
    }
    current_poller = nullptr;
}

void system_pressure_monitor::start(std::chrono::milliseconds interval) {
    if (interval.count() <= 0)
        throw std::invalid_argument("memkit::system_pressure_monitor::start: interval must be > 0");
    if (current_poller == this) { // from a callback: the polling thread is this one
        {
            const std::lock_guard lock(wake_mutex_);
            interval_ = interval;
            interval_changed_ = true;
            stop_requested_ = false;
        }
        wake_.notify_all();
        return;
    }
    const std::lock_guard life(lifecycle_mutex_);
    bool live = false;
    {
        const std::lock_guard lock(wake_mutex_);
        live = running_ && !stop_requested_;
        if (live) {
            interval_ = interval;
            interval_changed_ = true;
        }
    }
    if (live) {
        wake_.notify_all();
        return;
    }
    if (thread_.joinable()) thread_.join(); // asked to stop from a callback, not joined yet
    {
        const std::lock_guard lock(wake_mutex_);
        interval_ = interval;
        interval_changed_ = false;
        stop_requested_ = false;
        running_ = true;
    }
    try {
        thread_ = std::thread([this] { run(); });
    } catch (...) {
        const std::lock_guard lock(wake_mutex_);
        running_ = false;
        throw;
    }
}

void system_pressure_monitor::stop() {
    {
        const std::lock_guard lock(wake_mutex_);
        stop_requested_ = true;
    }
    wake_.notify_all();
    if (current_poller == this) return; // joined by the next start(), stop() or the destructor
    const std::lock_guard life(lifecycle_mutex_);
    if (thread_.joinable()) thread_.join();
    const std::lock_guard lock(wake_mutex_);
    running_ = false;
}

bool system_pressure_monitor::running() const {
    const std::lock_guard lock(wake_mutex_);
    return running_ && !stop_requested_;
}

} // namespace memkit
