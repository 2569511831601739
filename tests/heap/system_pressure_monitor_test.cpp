#include "memkit/heap/system_pressure_monitor.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

namespace fs = std::filesystem;
using memkit::limit_source;
using memkit::memory_sample;
using memkit::pressure_level;
using memkit::pressure_monitor_options;
using memkit::source_problem;
using memkit::system_pressure_monitor;
using kind = memkit::source_problem::kind;

const std::string testdata = (fs::path(__FILE__).parent_path() / "testdata").string();

memory_sample sample_of(const std::string& scenario) {
    pressure_monitor_options o;
    o.root = testdata + "/" + scenario;
    return system_pressure_monitor{o}.sample();
}

std::vector<std::string> prefixed(const std::string& root, std::vector<std::string> paths) {
    for (auto& p : paths) p = root + p;
    return paths;
}

// A writable copy of a scenario, removed at the end of the test.
class scenario_copy {
public:
    explicit scenario_copy(const std::string& scenario) {
        static std::atomic<int> counter{0};
        dir_ = fs::temp_directory_path() /
               ("memkit-pressure-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
        fs::remove_all(dir_);
        fs::copy(testdata + "/" + scenario, dir_, fs::copy_options::recursive);
    }
    ~scenario_copy() {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    scenario_copy(const scenario_copy&) = delete;
    scenario_copy& operator=(const scenario_copy&) = delete;

    [[nodiscard]] std::string root() const { return dir_.string(); }

    // Replaced atomically (write then rename), so a concurrent reader never sees half a file.
    void write(const std::string& path, const std::string& text) const {
        const fs::path target = dir_ / fs::path(path).relative_path();
        const fs::path tmp = target.string() + ".tmp";
        {
            std::ofstream f(tmp);
            f << text;
        }
        fs::rename(tmp, target);
    }

private:
    fs::path dir_;
};

// ---------------------------------------------------------------------------------------------
// Fake trees: exact values

TEST(SystemPressureMonitor, CgroupV2WithLimitInAParentSlice) {
    const std::string root = testdata + "/cgroup_v2_limit";
    const memory_sample s = sample_of("cgroup_v2_limit");
    const std::string dir = "/sys/fs/cgroup/app.slice/service";
    EXPECT_EQ(s.cgroup_version, 2);
    EXPECT_EQ(s.cgroup_path, "/app.slice/service");
    EXPECT_EQ(s.cgroup_dir, dir);
    EXPECT_EQ(s.cgroup_usage, 681'574'400u);
    EXPECT_EQ(s.cgroup_limit, 805'306'368u); // app.slice's 768 MiB, below the service's 1 GiB
    EXPECT_EQ(s.cgroup_high, 734'003'200u);
    EXPECT_EQ(s.cgroup_inactive_file, 52'428'800u);
    ASSERT_TRUE(s.cgroup_events.has_value());
    EXPECT_EQ(s.cgroup_events->low, 0u);
    EXPECT_EQ(s.cgroup_events->high, 12u);
    EXPECT_EQ(s.cgroup_events->max, 3u);
    EXPECT_EQ(s.cgroup_events->oom, 1u);
    EXPECT_EQ(s.cgroup_events->oom_kill, 1u);
    EXPECT_EQ(s.mem_total, 17'179'869'184u);
    EXPECT_EQ(s.mem_available, 8'589'934'592u);

    EXPECT_EQ(s.limited_by, limit_source::cgroup_v2);
    EXPECT_EQ(s.limit, 805'306'368u);
    EXPECT_EQ(s.usage, 629'145'600u); // 650 MiB current - 50 MiB inactive file
    EXPECT_EQ(s.available, 176'160'768u);
    EXPECT_EQ(s.usage_level, pressure_level::medium); // 78.1 %
    EXPECT_EQ(s.level, pressure_level::medium);

    // The cgroup's own PSI, not the machine's (which would make this critical).
    ASSERT_TRUE(s.psi.has_value());
    EXPECT_EQ(s.psi->source, root + dir + "/memory.pressure");
    EXPECT_DOUBLE_EQ(s.psi->some.avg10, 1.5);
    EXPECT_DOUBLE_EQ(s.psi->some.avg60, 0.75);
    EXPECT_DOUBLE_EQ(s.psi->some.avg300, 0.25);
    EXPECT_EQ(s.psi->some.total_us, 123'456u);
    ASSERT_TRUE(s.psi->full.has_value());
    EXPECT_DOUBLE_EQ(s.psi->full->avg10, 0.5);
    EXPECT_EQ(s.psi->full->total_us, 2'345u);

    EXPECT_EQ(s.read,
              prefixed(root, {"/proc/self/cgroup", "/proc/self/mountinfo", dir + "/memory.current",
                              dir + "/memory.max", "/sys/fs/cgroup/app.slice/memory.max",
                              dir + "/memory.high", dir + "/memory.stat", dir + "/memory.events",
                              dir + "/memory.pressure", "/proc/meminfo"}));
    EXPECT_TRUE(s.unavailable.empty());
    EXPECT_GT(s.taken_at.time_since_epoch().count(), 0);
}

TEST(SystemPressureMonitor, CgroupV2WithoutLimitUsesMeminfoAndPsiEscalates) {
    const std::string root = testdata + "/cgroup_v2_max";
    const memory_sample s = sample_of("cgroup_v2_max");
    const std::string dir = "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope";
    EXPECT_EQ(s.cgroup_version, 2);
    EXPECT_EQ(s.cgroup_dir, dir);
    EXPECT_EQ(s.cgroup_usage, 104'857'600u);
    EXPECT_FALSE(s.cgroup_limit.has_value()); // "max" at every level
    EXPECT_FALSE(s.cgroup_high.has_value());
    EXPECT_EQ(s.limited_by, limit_source::meminfo);
    EXPECT_EQ(s.limit, 4'294'967'296u);
    EXPECT_EQ(s.usage, 3'758'096'384u); // MemTotal - MemAvailable
    EXPECT_EQ(s.available, 536'870'912u);
    EXPECT_EQ(s.usage_level, pressure_level::high); // 87.5 %
    EXPECT_EQ(s.level, pressure_level::critical);   // full avg10 45 >= 40
    ASSERT_TRUE(s.psi.has_value());
    EXPECT_EQ(s.psi->source, root + "/proc/pressure/memory");
    EXPECT_DOUBLE_EQ(s.psi->full->avg10, 45.0);
    ASSERT_EQ(s.unavailable.size(), 1u);
    EXPECT_EQ(s.unavailable[0].path, root + dir + "/memory.pressure");
    EXPECT_EQ(s.unavailable[0].what, kind::missing);
    EXPECT_EQ(s.unavailable[0].reason, "no such file");
}

TEST(SystemPressureMonitor, CgroupV2ContainerWithoutMountinfo) {
    const std::string root = testdata + "/cgroup_v2_container";
    const memory_sample s = sample_of("cgroup_v2_container");
    EXPECT_EQ(s.cgroup_version, 2);
    EXPECT_EQ(s.cgroup_path, "/kubepods/pod1/ctr");
    EXPECT_EQ(s.cgroup_dir, "/sys/fs/cgroup"); // the path is not visible: the mount root is read
    EXPECT_EQ(s.limited_by, limit_source::cgroup_v2);
    EXPECT_EQ(s.limit, 268'435'456u);
    EXPECT_EQ(s.usage, 134'217'728u);
    EXPECT_EQ(s.available, 134'217'728u);
    EXPECT_EQ(s.level, pressure_level::low);
    EXPECT_FALSE(s.psi.has_value());
    EXPECT_FALSE(s.cgroup_inactive_file.has_value());
    const std::vector<std::string> missing =
        prefixed(root, {"/proc/self/mountinfo", "/sys/fs/cgroup/memory.high",
                        "/sys/fs/cgroup/memory.stat", "/sys/fs/cgroup/memory.events",
                        "/sys/fs/cgroup/memory.pressure", "/proc/pressure/memory"});
    ASSERT_EQ(s.unavailable.size(), missing.size());
    for (std::size_t i = 0; i < missing.size(); ++i) {
        EXPECT_EQ(s.unavailable[i].path, missing[i]);
        EXPECT_EQ(s.unavailable[i].what, kind::missing);
        EXPECT_EQ(s.unavailable[i].reason, "no such file");
    }
}

TEST(SystemPressureMonitor, CgroupV1OnAHybridHost) {
    const std::string root = testdata + "/cgroup_v1";
    const memory_sample s = sample_of("cgroup_v1");
    const std::string dir = "/sys/fs/cgroup/memory/docker/abc";
    EXPECT_EQ(s.cgroup_version, 1); // the memory controller is on v1
    EXPECT_EQ(s.cgroup_path, "/docker/abc");
    EXPECT_EQ(s.cgroup_dir, dir);
    EXPECT_EQ(s.cgroup_usage, 520'093'696u);
    EXPECT_EQ(s.cgroup_limit, 536'870'912u);
    EXPECT_EQ(s.cgroup_inactive_file, 4'194'304u);
    EXPECT_EQ(s.limited_by, limit_source::cgroup_v1);
    EXPECT_EQ(s.limit, 536'870'912u);
    EXPECT_EQ(s.usage, 515'899'392u);
    EXPECT_EQ(s.available, 20'971'520u);
    EXPECT_EQ(s.usage_level, pressure_level::critical); // 96.1 %
    EXPECT_EQ(s.level, pressure_level::critical);
    ASSERT_TRUE(s.psi.has_value());
    EXPECT_EQ(s.psi->source, root + "/proc/pressure/memory");
    EXPECT_EQ(s.read,
              prefixed(root, {"/proc/self/cgroup", "/proc/self/mountinfo",
                              dir + "/memory.usage_in_bytes", dir + "/memory.limit_in_bytes",
                              dir + "/memory.stat", "/proc/meminfo", "/proc/pressure/memory"}));
    EXPECT_TRUE(s.unavailable.empty());
}

TEST(SystemPressureMonitor, CgroupV1UnlimitedWithoutNamespace) {
    const std::string root = testdata + "/cgroup_v1_unlimited";
    const memory_sample s = sample_of("cgroup_v1_unlimited");
    EXPECT_EQ(s.cgroup_version, 1);
    EXPECT_EQ(s.cgroup_path, "/docker/0123456789ab");
    EXPECT_EQ(s.cgroup_dir, "/sys/fs/cgroup/memory"); // the mount's root is this cgroup
    EXPECT_EQ(s.cgroup_usage, 314'572'800u);
    EXPECT_FALSE(s.cgroup_limit.has_value()); // 9223372036854771712 means no limit
    EXPECT_EQ(s.limited_by, limit_source::meminfo);
    EXPECT_EQ(s.limit, 2'147'483'648u);
    EXPECT_EQ(s.usage, 1'073'741'824u);
    EXPECT_EQ(s.available, 1'073'741'824u);
    EXPECT_EQ(s.level, pressure_level::low);
    ASSERT_EQ(s.unavailable.size(), 1u);
    EXPECT_EQ(s.unavailable[0].path, root + "/proc/pressure/memory");
}

TEST(SystemPressureMonitor, NoCgroupAtAll) {
    const std::string root = testdata + "/no_cgroup";
    const memory_sample s = sample_of("no_cgroup");
    EXPECT_EQ(s.cgroup_version, 0);
    EXPECT_TRUE(s.cgroup_path.empty());
    EXPECT_FALSE(s.cgroup_usage.has_value());
    EXPECT_EQ(s.limited_by, limit_source::meminfo);
    EXPECT_EQ(s.limit, 2'147'483'648u);
    EXPECT_EQ(s.usage, 536'870'912u);
    EXPECT_EQ(s.available, 1'610'612'736u);
    EXPECT_EQ(s.level, pressure_level::low);
    EXPECT_FALSE(s.psi.has_value());
    EXPECT_EQ(s.read, prefixed(root, {"/proc/meminfo"}));
    ASSERT_EQ(s.unavailable.size(), 2u);
    EXPECT_EQ(s.unavailable[0].path, root + "/proc/self/cgroup");
    EXPECT_EQ(s.unavailable[0].reason, "no such file");
    EXPECT_EQ(s.unavailable[1].path, root + "/proc/pressure/memory");
    EXPECT_EQ(s.unavailable[1].what, kind::missing);
}

TEST(SystemPressureMonitor, MalformedFilesAreReportedAndSkipped) {
    const std::string root = testdata + "/malformed";
    const memory_sample s = sample_of("malformed");
    const std::string dir = root + "/sys/fs/cgroup/app";
    EXPECT_EQ(s.cgroup_version, 2);
    EXPECT_FALSE(s.cgroup_usage.has_value());
    EXPECT_FALSE(s.cgroup_limit.has_value());
    EXPECT_FALSE(s.mem_total.has_value());
    EXPECT_FALSE(s.psi.has_value());
    EXPECT_EQ(s.limited_by, limit_source::none);
    EXPECT_EQ(s.limit, 0u);
    EXPECT_EQ(s.usage, 0u);
    EXPECT_EQ(s.level, pressure_level::low);
    EXPECT_EQ(s.read, prefixed(root, {"/proc/self/cgroup", "/proc/self/mountinfo"}));
    const std::vector<std::pair<std::string, std::string>> want{
        {dir + "/memory.current", "malformed: expected a number of bytes, got '12abc'"},
        {dir + "/memory.max", "malformed: expected a number of bytes or 'max', got '-5'"},
        {dir + "/memory.high", "malformed: expected a number of bytes or 'max', got ''"},
        {dir + "/memory.stat", "malformed: expected 'key value' lines, got 'inactive_file x'"},
        {dir + "/memory.events", "malformed: expected 'key value' lines, got 'oom'"},
        {dir + "/memory.pressure", "malformed: 'avg10=abc' in the 'some' line"},
        {root + "/proc/meminfo", "malformed: MemTotal: expected a number of kB, got 'lots kB'"},
        {root + "/proc/pressure/memory",
         "malformed: the 'some' line lacks one of avg10, avg60, avg300, total"},
    };
    ASSERT_EQ(s.unavailable.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(s.unavailable[i].path, want[i].first);
        EXPECT_EQ(s.unavailable[i].what, kind::malformed);
        EXPECT_EQ(s.unavailable[i].reason, want[i].second);
    }
}

TEST(SystemPressureMonitor, MoreMalformedShapes) {
    scenario_copy t{"cgroup_v2_limit"};
    const std::string dir = "/sys/fs/cgroup/app.slice/service";
    t.write("/proc/meminfo", "MemTotal: 100 kB\n"); // no MemAvailable
    t.write("/proc/self/cgroup", "garbage\n");      // not id:controllers:path
    t.write("/proc/pressure/memory", "full avg10=1 avg60=1 avg300=1 total=1\n"); // no some line
    pressure_monitor_options o;
    o.root = t.root();
    const memory_sample s = system_pressure_monitor{o}.sample();
    ASSERT_EQ(s.unavailable.size(), 3u);
    EXPECT_EQ(s.unavailable[0].reason,
              "malformed: expected 'id:controllers:path' lines, got 'garbage'");
    EXPECT_EQ(s.unavailable[1].reason, "malformed: no MemAvailable line");
    EXPECT_EQ(s.unavailable[2].reason, "malformed: no 'some' line");
    EXPECT_EQ(s.limited_by, limit_source::none);

    t.write("/proc/self/cgroup", "3:cpu:/x\n"); // neither memory nor v2
    const memory_sample s2 = system_pressure_monitor{o}.sample();
    ASSERT_FALSE(s2.unavailable.empty());
    EXPECT_EQ(s2.unavailable[0].path, t.root() + "/proc/self/cgroup");
    EXPECT_EQ(s2.unavailable[0].what, kind::missing);
    EXPECT_EQ(s2.unavailable[0].reason, "no memory cgroup (neither a 'memory' nor a '0::' line)");
    EXPECT_EQ(s2.cgroup_version, 0);
}

TEST(SystemPressureMonitor, UnreadableFileIsReported) {
    scenario_copy t{"no_cgroup"};
    fs::create_directories(t.root() + "/proc/pressure/memory"); // a directory: read() fails
    pressure_monitor_options o;
    o.root = t.root();
    const memory_sample s = system_pressure_monitor{o}.sample();
    ASSERT_EQ(s.unavailable.size(), 2u);
    EXPECT_EQ(s.unavailable[1].path, t.root() + "/proc/pressure/memory");
    EXPECT_EQ(s.unavailable[1].what, kind::unreadable);
    EXPECT_EQ(s.unavailable[1].reason, "is a directory");
}

TEST(SystemPressureMonitor, UnreadableRoot) {
    pressure_monitor_options o;
    o.root = testdata + "/does-not-exist";
    memory_sample s = system_pressure_monitor{o}.sample();
    EXPECT_TRUE(s.read.empty());
    ASSERT_EQ(s.unavailable.size(), 1u);
    EXPECT_EQ(s.unavailable[0].path, o.root);
    EXPECT_EQ(s.unavailable[0].what, kind::unreadable);
    EXPECT_EQ(s.unavailable[0].reason, "root directory: no such directory");
    EXPECT_EQ(s.limited_by, limit_source::none);
    EXPECT_EQ(s.level, pressure_level::low);

    o.root = testdata + "/no_cgroup/proc/meminfo"; // a file
    s = system_pressure_monitor{o}.sample();
    ASSERT_EQ(s.unavailable.size(), 1u);
    EXPECT_EQ(s.unavailable[0].reason, "root directory: not a directory");
}

TEST(SystemPressureMonitor, RootWithTrailingSlash) {
    pressure_monitor_options o;
    o.root = testdata + "/no_cgroup/";
    const memory_sample s = system_pressure_monitor{o}.sample();
    EXPECT_EQ(s.read, std::vector<std::string>{testdata + "/no_cgroup/proc/meminfo"});
    EXPECT_EQ(s.limit, 2'147'483'648u);
}

TEST(SystemPressureMonitor, ToStringSummarises) {
    const std::string text = memkit::to_string(sample_of("cgroup_v2_max"));
    EXPECT_NE(text.find("level critical (usage alone: high, raised by PSI)"), std::string::npos)
        << text;
    EXPECT_NE(text.find("limit 4294967296 bytes (4096.0 MiB) from meminfo"), std::string::npos)
        << text;
    EXPECT_NE(text.find("usage 3758096384 bytes (3584.0 MiB), 87.5 % of the limit"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("memory.pressure: no such file"), std::string::npos) << text;
    EXPECT_STREQ(memkit::to_string(limit_source::cgroup_v1), "cgroup v1");
    EXPECT_STREQ(memkit::to_string(limit_source::none), "none");
}

TEST(SystemPressureMonitor, ThresholdsAndPsiRulesAreConfigurable) {
    pressure_monitor_options o;
    o.root = testdata + "/cgroup_v2_max";
    o.thresholds = {0.90, 0.95, 0.99};                                   // 87.5 %: low
    o.psi.full_avg10_critical = std::numeric_limits<double>::infinity(); // disabled
    o.psi.full_avg10_high = 50.0;                                        // 45: not high
    const memory_sample s = system_pressure_monitor{o}.sample();
    EXPECT_EQ(s.usage_level, pressure_level::low);
    EXPECT_EQ(s.level, pressure_level::medium); // some avg10 60 >= 10
}

TEST(SystemPressureMonitor, InvalidOptionsThrow) {
    auto make = [](auto tweak) {
        pressure_monitor_options o;
        tweak(o);
        system_pressure_monitor m{o};
    };
    using O = pressure_monitor_options;
    EXPECT_THROW(make([](O& o) { o.thresholds = {0.8, 0.6, 0.95}; }), std::invalid_argument);
    EXPECT_THROW(make([](O& o) { o.psi.some_avg10_medium = -1; }), std::invalid_argument);
    EXPECT_THROW(make([](O& o) { o.psi.full_avg10_high = std::nan(""); }), std::invalid_argument);
    EXPECT_THROW(make([](O& o) {
                     o.psi.full_avg10_high = 50;
                     o.psi.full_avg10_critical = 40;
                 }),
                 std::invalid_argument);
    EXPECT_THROW(make([](O& o) { o.hysteresis = 0.6; }), std::invalid_argument);
    EXPECT_THROW(make([](O& o) { o.hysteresis = -0.01; }), std::invalid_argument);
    EXPECT_THROW(make([](O& o) { o.psi_hysteresis = std::numeric_limits<double>::infinity(); }),
                 std::invalid_argument);
    EXPECT_THROW(make([](O& o) { o.root.clear(); }), std::invalid_argument);
    EXPECT_NO_THROW(make([](O& o) { o.hysteresis = 0.0; }));

    system_pressure_monitor m{pressure_monitor_options{testdata + "/no_cgroup"}};
    EXPECT_THROW(m.start(std::chrono::milliseconds(0)), std::invalid_argument);
    EXPECT_THROW(m.on_level_change({}), std::invalid_argument);
    EXPECT_FALSE(m.running());
}

// ---------------------------------------------------------------------------------------------
// Tracked level, hysteresis and callbacks (poll() on this thread)

constexpr std::size_t v2_limit = 805'306'368; // cgroup_v2_limit's effective limit

TEST(SystemPressureMonitor, HysteresisOnUsage) {
    scenario_copy t{"cgroup_v2_limit"};
    const std::string dir = "/sys/fs/cgroup/app.slice/service";
    t.write(dir + "/memory.stat", "inactive_file 0\n");
    auto set_fraction = [&](double f) {
        const auto bytes = static_cast<std::size_t>(f * static_cast<double>(v2_limit)) + 1;
        t.write(dir + "/memory.current", std::to_string(bytes) + "\n");
    };
    pressure_monitor_options o;
    o.root = t.root();
    system_pressure_monitor m{o};
    std::vector<std::pair<pressure_level, pressure_level>> changes;
    const std::thread::id self = std::this_thread::get_id();
    m.on_level_change([&](const memkit::pressure_change& c) {
        EXPECT_EQ(std::this_thread::get_id(), self);
        EXPECT_EQ(c.sample.level, m.sample().level);
        changes.emplace_back(c.from, c.to);
    });
    EXPECT_EQ(m.level(), pressure_level::low);
    EXPECT_FALSE(m.last_sample().has_value());

    auto step = [&](double f) {
        set_fraction(f);
        m.poll();
        return m.level();
    };
    EXPECT_EQ(step(0.800), pressure_level::high);
    EXPECT_EQ(step(0.795), pressure_level::high); // medium by thresholds, but not below 78 %
    EXPECT_EQ(step(0.801), pressure_level::high);
    EXPECT_EQ(step(0.781), pressure_level::high);
    EXPECT_EQ(step(0.779), pressure_level::medium);
    EXPECT_EQ(step(0.799), pressure_level::medium); // rising needs the real threshold
    EXPECT_EQ(step(0.585), pressure_level::medium);
    EXPECT_EQ(step(0.579), pressure_level::low);
    EXPECT_EQ(step(0.960), pressure_level::critical);
    EXPECT_EQ(step(0.935), pressure_level::critical);
    EXPECT_EQ(step(0.900), pressure_level::high); // below 93 %, still above 78 %
    EXPECT_EQ(step(0.100), pressure_level::low);
    const std::vector<std::pair<pressure_level, pressure_level>> want{
        {pressure_level::low, pressure_level::high},
        {pressure_level::high, pressure_level::medium},
        {pressure_level::medium, pressure_level::low},
        {pressure_level::low, pressure_level::critical},
        {pressure_level::critical, pressure_level::high},
        {pressure_level::high, pressure_level::low},
    };
    EXPECT_EQ(changes, want);
    ASSERT_TRUE(m.last_sample().has_value());
    EXPECT_EQ(m.last_sample()->level, pressure_level::low);
}

TEST(SystemPressureMonitor, HysteresisOnPsi) {
    scenario_copy t{"cgroup_v2_limit"};
    const std::string dir = "/sys/fs/cgroup/app.slice/service";
    t.write(dir + "/memory.current", "52428800\n"); // working set 0: usage says low
    auto set_some = [&](const char* avg10) {
        t.write(dir + "/memory.pressure", std::string("some avg10=") + avg10 +
                                              " avg60=0.00 avg300=0.00 total=1\n"
                                              "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    };
    pressure_monitor_options o;
    o.root = t.root();
    system_pressure_monitor m{o};
    int changes = 0;
    m.on_level_change([&](const memkit::pressure_change&) { ++changes; });
    auto step = [&](const char* avg10) {
        set_some(avg10);
        (void)m.poll();
        return m.level();
    };
    EXPECT_EQ(step("10.00"), pressure_level::medium);
    EXPECT_EQ(step("9.00"), pressure_level::medium); // needs < 8
    EXPECT_EQ(step("8.00"), pressure_level::medium);
    EXPECT_EQ(step("7.99"), pressure_level::low);
    EXPECT_EQ(step("9.99"), pressure_level::low);
    EXPECT_EQ(changes, 2);
}

TEST(SystemPressureMonitor, RemoveCallback) {
    scenario_copy t{"cgroup_v2_limit"};
    pressure_monitor_options o;
    o.root = t.root();
    system_pressure_monitor m{o};
    int a = 0, b = 0;
    const auto ia = m.on_level_change([&](const memkit::pressure_change&) { ++a; });
    const auto ib = m.on_level_change([&](const memkit::pressure_change&) { ++b; });
    EXPECT_NE(ia, ib);
    m.poll(); // low -> medium
    EXPECT_TRUE(m.remove_callback(ia));
    EXPECT_FALSE(m.remove_callback(ia));
    t.write("/sys/fs/cgroup/app.slice/service/memory.current", "800000000\n");
    m.poll(); // -> critical
    EXPECT_EQ(a, 1);
    EXPECT_EQ(b, 2);
}

// ---------------------------------------------------------------------------------------------
// The polling thread (run under ThreadSanitizer)

class change_log {
public:
    void add(pressure_level from, pressure_level to) {
        {
            const std::lock_guard lock(m_);
            seen_.emplace_back(from, to);
        }
        cv_.notify_all();
    }
    // Waits (at most 10 s) until `n` changes were seen; returns them.
    std::vector<std::pair<pressure_level, pressure_level>> wait_for(std::size_t n) {
        std::unique_lock lock(m_);
        cv_.wait_for(lock, std::chrono::seconds(10), [&] { return seen_.size() >= n; });
        return seen_;
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<std::pair<pressure_level, pressure_level>> seen_;
};

TEST(SystemPressureMonitorThread, DeliversAChangeWhenTheFileIsRewritten) {
    scenario_copy t{"cgroup_v2_limit"};
    pressure_monitor_options o;
    o.root = t.root();
    change_log log; // outlives the monitor, whose thread writes to it
    std::atomic<std::thread::id> callback_thread{};
    system_pressure_monitor m{o};
    m.on_level_change([&](const memkit::pressure_change& c) {
        callback_thread = std::this_thread::get_id();
        log.add(c.from, c.to);
    });
    m.start(std::chrono::milliseconds(5));
    EXPECT_TRUE(m.running());
    auto seen = log.wait_for(1); // the first poll is immediate: 78 % is medium
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0], std::make_pair(pressure_level::low, pressure_level::medium));
    EXPECT_NE(callback_thread.load(), std::this_thread::get_id());

    t.write("/sys/fs/cgroup/app.slice/service/memory.current", "820000000\n"); // 95.3 %
    seen = log.wait_for(2);
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[1], std::make_pair(pressure_level::medium, pressure_level::critical));
    EXPECT_EQ(m.level(), pressure_level::critical);

    // Readers on other threads while the poller runs.
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(m.sample().limit, v2_limit);
        (void)m.last_sample();
        (void)m.level();
    }
    m.stop();
    EXPECT_FALSE(m.running());
    const std::size_t after_stop = log.wait_for(0).size();
    t.write("/sys/fs/cgroup/app.slice/service/memory.current", "100000000\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    EXPECT_EQ(log.wait_for(0).size(), after_stop); // no poll after stop()
}

TEST(SystemPressureMonitorThread, StopIsPromptWhateverTheInterval) {
    system_pressure_monitor m{pressure_monitor_options{testdata + "/no_cgroup"}};
    m.start(std::chrono::hours(1));
    // Wait for the first (immediate) poll, so the thread is in its long wait.
    for (int i = 0; i < 1000 && !m.last_sample(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ASSERT_TRUE(m.last_sample().has_value());
    const auto t0 = std::chrono::steady_clock::now();
    m.stop();
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_LT(took, std::chrono::seconds(2)); // generous: a condition variable, not a sleep
    EXPECT_FALSE(m.running());
    m.stop(); // twice is fine
}

TEST(SystemPressureMonitorThread, RestartAndRetune) {
    scenario_copy t{"cgroup_v2_limit"};
    pressure_monitor_options o;
    o.root = t.root();
    change_log log; // outlives the monitor, whose thread writes to it
    system_pressure_monitor m{o};
    m.on_level_change([&](const memkit::pressure_change& c) { log.add(c.from, c.to); });
    m.stop(); // never started: nothing to do
    m.start(std::chrono::hours(1));
    ASSERT_EQ(log.wait_for(1).size(), 1u);
    t.write("/sys/fs/cgroup/app.slice/service/memory.current", "820000000\n");
    m.start(std::chrono::milliseconds(5)); // already running: the new interval applies at once
    ASSERT_EQ(log.wait_for(2).size(), 2u);
    m.stop();
    t.write("/sys/fs/cgroup/app.slice/service/memory.current", "100000000\n");
    m.start(std::chrono::milliseconds(5)); // a new thread
    const auto seen = log.wait_for(3);
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[2], std::make_pair(pressure_level::critical, pressure_level::low));
} // the destructor stops the thread

TEST(SystemPressureMonitorThread, StopFromACallback) {
    scenario_copy t{"cgroup_v2_limit"};
    pressure_monitor_options o;
    o.root = t.root();
    change_log log; // outlives the monitor, whose thread writes to it
    system_pressure_monitor m{o};
    m.on_level_change([&](const memkit::pressure_change& c) {
        m.stop(); // on the polling thread: asks it to stop, does not join itself
        log.add(c.from, c.to);
    });
    m.start(std::chrono::milliseconds(5));
    ASSERT_EQ(log.wait_for(1).size(), 1u);
    for (int i = 0; i < 1000 && m.running(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_FALSE(m.running());
    m.start(std::chrono::milliseconds(5)); // joins the old thread, starts a new one
    EXPECT_TRUE(m.running() || log.wait_for(0).size() >= 1u);
    m.stop();
    EXPECT_FALSE(m.running());
}

TEST(SystemPressureMonitorThread, ConcurrentPollsAndCallbackChanges) {
    scenario_copy t{"cgroup_v2_limit"};
    pressure_monitor_options o;
    o.root = t.root();
    std::atomic<int> calls{0};
    system_pressure_monitor m{o};
    m.start(std::chrono::milliseconds(1));
    std::vector<std::thread> pool;
    for (int i = 0; i < 3; ++i) {
        pool.emplace_back([&, i] {
            for (int k = 0; k < 30; ++k) {
                const auto id = m.on_level_change([&](const memkit::pressure_change&) { ++calls; });
                if (i == 0)
                    t.write("/sys/fs/cgroup/app.slice/service/memory.current",
                            k % 2 ? "820000000\n" : "100000000\n");
                (void)m.poll();
                EXPECT_TRUE(m.remove_callback(id));
            }
        });
    }
    for (auto& th : pool) th.join();
    m.stop();
    t.write("/sys/fs/cgroup/app.slice/service/memory.current", "100000000\n");
    (void)m.poll();
    EXPECT_EQ(m.level(), pressure_level::low); // 5.9 %: low whatever the previous level
    EXPECT_GE(calls.load(), 0);                // any count: callbacks came and went
}

// ---------------------------------------------------------------------------------------------
// The real machine

TEST(SystemPressureMonitor, RealMachineSampleIsConsistent) {
    system_pressure_monitor m;
    const memory_sample s = m.sample();
    std::cout << memkit::to_string(s);
    EXPECT_FALSE(s.read.empty());
    for (const source_problem& p : s.unavailable) {
        EXPECT_FALSE(p.path.empty());
        EXPECT_FALSE(p.reason.empty());
    }
    if (s.limited_by != limit_source::none) {
        EXPECT_GT(s.limit, 0u);
        EXPECT_LE(s.usage, s.limit);
        EXPECT_LE(s.available, s.limit);
    } else {
        EXPECT_EQ(s.limit, 0u);
        EXPECT_FALSE(s.unavailable.empty()); // it says why it has no limit
    }
    if (s.mem_total) {
        EXPECT_GT(*s.mem_total, 0u);
        EXPECT_LE(*s.mem_available, *s.mem_total);
        EXPECT_LE(s.limit, *s.mem_total);
    }
    if (s.limited_by == limit_source::cgroup_v1 || s.limited_by == limit_source::cgroup_v2) {
        EXPECT_EQ(s.limit, s.cgroup_limit.value_or(0));
        EXPECT_EQ(s.cgroup_version, s.limited_by == limit_source::cgroup_v1 ? 1 : 2);
    }
    EXPECT_EQ(s.usage_level, m.options().thresholds.level_for(static_cast<double>(s.usage),
                                                              static_cast<double>(s.limit)));
    EXPECT_GE(s.level, s.usage_level);
    // Every source is either read or listed as unavailable.
    const std::size_t accounted = s.read.size() + s.unavailable.size();
    EXPECT_GE(accounted, 3u); // cgroup (or its absence), meminfo, PSI
}

} // namespace
