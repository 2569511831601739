#include "memkit/config/memory_system_file.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <system_error>

#include <unistd.h>

#include "memkit/heap/memory_system.hpp"

namespace {

namespace fs = std::filesystem;
using memkit::config_error;
using memkit::config_load_options;
using memkit::load_memory_system_config;
using memkit::memory_system_config;
using memkit::parse_memory_system_config;

constexpr const char* env_vars[] = {"MEMKIT_SMALL_MAX",
                                    "MEMKIT_MEDIUM_MAX",
                                    "MEMKIT_SMALL_SPACING",
                                    "MEMKIT_SMALL_MIN_CLASS",
                                    "MEMKIT_SMALL_STEP",
                                    "MEMKIT_SMALL_NODES_PER_CHUNK",
                                    "MEMKIT_MEDIUM_REGION_SIZE",
                                    "MEMKIT_MEDIUM_MAX_TOTAL",
                                    "MEMKIT_BUDGET",
                                    "MEMKIT_SOFT_BUDGET",
                                    "MEMKIT_PRESSURE_MEDIUM",
                                    "MEMKIT_PRESSURE_HIGH",
                                    "MEMKIT_PRESSURE_CRITICAL",
                                    "MEMKIT_NAME"};

void expect_same(const memory_system_config& a, const memory_system_config& b) {
    EXPECT_EQ(a.small_max, b.small_max);
    EXPECT_EQ(a.medium_max, b.medium_max);
    EXPECT_EQ(a.small_spacing, b.small_spacing);
    EXPECT_EQ(a.small_min_class, b.small_min_class);
    EXPECT_EQ(a.small_step, b.small_step);
    EXPECT_EQ(a.small_nodes_per_chunk, b.small_nodes_per_chunk);
    EXPECT_EQ(a.medium_region_size, b.medium_region_size);
    EXPECT_EQ(a.medium_max_total, b.medium_max_total);
    EXPECT_EQ(a.budget, b.budget);
    EXPECT_EQ(a.soft_budget, b.soft_budget);
    EXPECT_EQ(a.pressure.medium, b.pressure.medium);
    EXPECT_EQ(a.pressure.high, b.pressure.high);
    EXPECT_EQ(a.pressure.critical, b.pressure.critical);
    EXPECT_EQ(a.name, b.name);
}

// Every field away from its default; a valid configuration.
memory_system_config non_default() {
    memory_system_config c;
    c.small_max = 512;
    c.medium_max = 128 * 1024;
    c.small_spacing = memkit::size_class_spacing::linear;
    c.small_min_class = 16;
    c.small_step = 32;
    c.small_nodes_per_chunk = 100;
    c.medium_region_size = 2 << 20;
    c.medium_max_total = 64 << 20;
    c.budget = 1 << 30;
    c.soft_budget = 768 << 20;
    c.pressure = {0.5, 0.7, 0.9};
    c.name = "tenant \"a\"\\b";
    return c;
}

// A directory of its own under the temporary directory, removed with everything in it.
class temp_dir {
public:
    temp_dir() {
        static int counter = 0;
        path_ = fs::temp_directory_path() / ("memkit_config_test_" + std::to_string(::getpid()) +
                                             "_" + std::to_string(++counter));
        fs::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::permissions(path_ / "unreadable.toml", fs::perms::owner_all, ec);
        fs::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    fs::path write(const std::string& name, const std::string& text) const {
        const fs::path p = path_ / name;
        std::ofstream{p, std::ios::binary} << text;
        return p;
    }
    const fs::path& path() const noexcept { return path_; }

private:
    fs::path path_;
};

// The environment may hold MEMKIT_* variables of whoever runs the tests: none of them may leak
// into the results.
class ConfigFile : public ::testing::Test {
protected:
    void SetUp() override {
        for (const char* v : env_vars) ::unsetenv(v);
    }
    void TearDown() override {
        for (const char* v : env_vars) ::unsetenv(v);
    }
    temp_dir dir_;
};

// Runs f, expects a config_error, and returns it for the caller's checks.
template <class F>
config_error expect_error(F&& f) {
    try {
        f();
    } catch (const config_error& e) {
        return e;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "not a config_error: " << e.what();
        throw;
    }
    ADD_FAILURE() << "no exception";
    return config_error{"", 0, 0, "", "", {}};
}

config_error parse_error_of(const std::string& toml, const config_load_options& o = {}) {
    return expect_error([&] { (void)parse_memory_system_config(toml, "t.toml", o); });
}

TEST_F(ConfigFile, EmptyFileGivesTheDefaults) {
    const fs::path p = dir_.write("empty.toml", "");
    expect_same(load_memory_system_config(p), memory_system_config{});
    expect_same(parse_memory_system_config("# only a comment\n\n"), memory_system_config{});
}

TEST_F(ConfigFile, OtherTablesAreIgnoredAndAMissingTableGivesTheDefaults) {
    const char* toml = "[server]\nport = 8080\n[server.memory]\nbudget = 5\n";
    expect_same(parse_memory_system_config(toml), memory_system_config{});
}

TEST_F(ConfigFile, FileRoundTripSetsEveryField) {
    const fs::path p = dir_.write("full.toml", R"(
[memory_system]
name = "tenant \"a\"\\b"
budget = "1GiB"
soft_budget = 805306368

[memory_system.small]
max = 512
spacing = "linear"
min_class = 16
step = "32B"
nodes_per_chunk = 100

[memory_system.medium]
max = "128 KiB"
region_size = "2M"
max_total = "64MiB"

[memory_system.pressure]
medium = 0.5
high = 0.7
critical = 0.9
)");
    const memory_system_config c = load_memory_system_config(p);
    expect_same(c, non_default());
    memkit::memory_system sys{c}; // and it builds a working system
    void* q = sys.allocate(300, 8);
    EXPECT_EQ(sys.tier_for(300), memkit::memory_tier::small);
    EXPECT_EQ(sys.budget().hard_limit(), std::size_t{1} << 30);
    sys.deallocate(q, 300, 8);
}

TEST_F(ConfigFile, ToTomlReadsBackEqual) {
    const memory_system_config c = non_default();
    const std::string text = memkit::to_toml(c);
    EXPECT_NE(text.find("[memory_system.small]\n"), std::string::npos) << text;
    EXPECT_NE(text.find("budget = \"1GiB\"\n"), std::string::npos) << text;
    EXPECT_NE(text.find("nodes_per_chunk = 100\n"), std::string::npos) << text;
    EXPECT_NE(text.find("high = 0.7\n"), std::string::npos) << text;
    expect_same(parse_memory_system_config(text), c);
    expect_same(parse_memory_system_config(memkit::to_toml({})), memory_system_config{});
    // Under another table, or at the root.
    config_load_options o;
    o.table = "app.mem";
    expect_same(parse_memory_system_config(memkit::to_toml(c, "app.mem"), "x", o), c);
    o.table = "";
    expect_same(parse_memory_system_config(memkit::to_toml(c, ""), "x", o), c);
}

TEST_F(ConfigFile, FlatKeysAreTheFieldNames) {
    const memory_system_config c = parse_memory_system_config(
        "[memory_system]\nsmall_max = 128\nmedium_region_size = \"8MiB\"\npressure_high = 0.85\n"
        "small_spacing = \"linear\"\n");
    EXPECT_EQ(c.small_max, 128u);
    EXPECT_EQ(c.medium_region_size, 8u << 20);
    EXPECT_EQ(c.pressure.high, 0.85);
    EXPECT_EQ(c.small_spacing, memkit::size_class_spacing::linear);
}

TEST_F(ConfigFile, ThresholdsAcceptIntegersAndDottedKeysWork) {
    const memory_system_config c =
        parse_memory_system_config("[memory_system]\npressure.critical = 1\nsmall.max = 64\n");
    EXPECT_EQ(c.pressure.critical, 1.0);
    EXPECT_EQ(c.small_max, 64u);
}

TEST_F(ConfigFile, TableOptionSelectsANestedTableOrTheRoot) {
    config_load_options o;
    o.table = "services.cache.memory";
    const memory_system_config c = parse_memory_system_config(
        "[memory_system]\nbudget = 1\n[services.cache.memory]\nbudget = \"2MiB\"\n", "x", o);
    EXPECT_EQ(c.budget, 2u << 20);
    o.table = "";
    EXPECT_EQ(parse_memory_system_config("budget = 7\n[small]\nmax = 32\n", "x", o).small_max, 32u);
    const config_error e = parse_error_of("[services]\ncache = 5\n", [] {
        config_load_options n;
        n.table = "services.cache.memory";
        return n;
    }());
    EXPECT_EQ(e.key(), "services.cache");
    EXPECT_EQ(e.line(), 2u);
    EXPECT_STREQ(e.what(), "t.toml:2:9: services.cache: expected a table, got an integer");
}

TEST_F(ConfigFile, EnvironmentOverridesTheFile) {
    const fs::path p =
        dir_.write("env.toml", "[memory_system]\nbudget = \"1GiB\"\nsoft_budget = \"512MiB\"\n"
                               "[memory_system.pressure]\nhigh = 0.75\n");
    ASSERT_EQ(::setenv("MEMKIT_BUDGET", "2GiB", 1), 0);
    ASSERT_EQ(::setenv("MEMKIT_PRESSURE_CRITICAL", "0.99", 1), 0);
    ASSERT_EQ(::setenv("MEMKIT_NAME", "ignored", 1), 0); // as from_env: name is not read
    memory_system_config c = load_memory_system_config(p);
    EXPECT_EQ(c.budget, std::size_t{2} << 30);        // env beats file
    EXPECT_EQ(c.soft_budget, std::size_t{512} << 20); // file beats default
    EXPECT_EQ(c.pressure.high, 0.75);                 // file
    EXPECT_EQ(c.pressure.critical, 0.99);             // env beats default
    EXPECT_EQ(c.pressure.medium, 0.60);               // default
    EXPECT_EQ(c.name, "memory_system");

    config_load_options off;
    off.environment_overrides = false;
    c = load_memory_system_config(p, off);
    EXPECT_EQ(c.budget, std::size_t{1} << 30);
    EXPECT_EQ(c.pressure.critical, 0.95);

    config_load_options prefixed;
    prefixed.env_prefix = "APP_MEM_";
    ASSERT_EQ(::setenv("APP_MEM_BUDGET", "3GiB", 1), 0);
    c = load_memory_system_config(p, prefixed);
    ::unsetenv("APP_MEM_BUDGET");
    EXPECT_EQ(c.budget, std::size_t{3} << 30);
    EXPECT_EQ(c.pressure.critical, 0.95); // MEMKIT_ is not this prefix

    config_load_options own;
    own.getenv = [](const char* var) -> const char* {
        return std::string_view{var} == "MEMKIT_SMALL_MAX" ? "100" : nullptr;
    };
    c = load_memory_system_config(p, own);
    EXPECT_EQ(c.small_max, 100u);
    EXPECT_EQ(c.budget, std::size_t{1} << 30);
}

TEST_F(ConfigFile, MalformedEnvironmentValueNamesTheVariable) {
    ASSERT_EQ(::setenv("MEMKIT_SMALL_MAX", "lots", 1), 0);
    const config_error e = parse_error_of("");
    EXPECT_EQ(e.source(), "environment");
    EXPECT_EQ(e.key(), "MEMKIT_SMALL_MAX");
    EXPECT_EQ(e.line(), 0u);
    EXPECT_EQ(
        std::string{e.what()}.rfind("environment: MEMKIT_SMALL_MAX: malformed size 'lots'", 0), 0u)
        << e.what();
}

TEST_F(ConfigFile, ValidationErrorFromTheEnvironmentPointsAtTheVariable) {
    ASSERT_EQ(::setenv("MEMKIT_SOFT_BUDGET", "2GiB", 1), 0);
    const config_error e = parse_error_of("[memory_system]\nbudget = \"1GiB\"\n");
    EXPECT_EQ(e.key(), "MEMKIT_SOFT_BUDGET");
    EXPECT_STREQ(e.what(), "environment: MEMKIT_SOFT_BUDGET: 2147483648 is above budget "
                           "(1073741824)");
}

TEST_F(ConfigFile, MissingFile) {
    const fs::path p = dir_.path() / "nope.toml";
    const config_error e = expect_error([&] { (void)load_memory_system_config(p); });
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    EXPECT_EQ(e.source(), p.string());
    EXPECT_EQ(e.line(), 0u);
    EXPECT_EQ(e.key(), "");
    EXPECT_EQ(std::string{e.what()}, p.string() + ": cannot open: No such file or directory");
}

TEST_F(ConfigFile, UnreadableFile) {
    // root reads a file whatever its mode, so the case cannot be produced when running as root.
    if (::geteuid() == 0) GTEST_SKIP() << "running as root: permissions are not enforced";
    const fs::path p = dir_.write("unreadable.toml", "[memory_system]\n");
    fs::permissions(p, fs::perms::none);
    const config_error e = expect_error([&] { (void)load_memory_system_config(p); });
    EXPECT_EQ(e.code(), std::errc::permission_denied);
    EXPECT_EQ(std::string{e.what()}, p.string() + ": cannot open: Permission denied");
}

TEST_F(ConfigFile, Directory) {
    const config_error e = expect_error([&] { (void)load_memory_system_config(dir_.path()); });
    EXPECT_EQ(e.code(), std::errc::is_a_directory);
    EXPECT_EQ(std::string{e.what()}, dir_.path().string() + ": cannot read: Is a directory");
}

TEST_F(ConfigFile, SyntaxError) {
    const fs::path p =
        dir_.write("syntax.toml", "[memory_system]\nbudget = \"1GiB\"\nsmall_max = \n");
    const config_error e = expect_error([&] { (void)load_memory_system_config(p); });
    EXPECT_EQ(e.code(), memkit::errc::invalid_argument);
    EXPECT_EQ(e.source(), p.string());
    EXPECT_EQ(e.line(), 3u);
    EXPECT_GT(e.column(), 0u);
    EXPECT_EQ(e.key(), "");
    const std::string prefix = p.string() + ":3:" + std::to_string(e.column()) + ": ";
    EXPECT_EQ(std::string{e.what()}.rfind(prefix, 0), 0u) << e.what();
    EXPECT_FALSE(e.message().empty());
}

TEST_F(ConfigFile, UnknownKeyIsNamed) {
    config_error e = parse_error_of("[memory_system]\nbudget = 1\nbugdet = 2\n");
    EXPECT_EQ(e.key(), "memory_system.bugdet");
    EXPECT_EQ(e.line(), 3u);
    EXPECT_EQ(e.column(), 1u);
    EXPECT_STREQ(e.what(), "t.toml:3:1: memory_system.bugdet: unknown key (expected name, "
                           "budget, soft_budget, [small], [medium], [pressure])");

    e = parse_error_of("[memory_system.small]\nmax = 64\nmin = 8\n");
    EXPECT_EQ(e.key(), "memory_system.small.min");
    EXPECT_STREQ(e.what(), "t.toml:3:1: memory_system.small.min: unknown key (expected max, "
                           "spacing, min_class, step, nodes_per_chunk)");
}

TEST_F(ConfigFile, TheFirstErrorInTheFileIsReported) {
    // Both keys are unknown; "zeta" comes first in the file though not in name order.
    const config_error e = parse_error_of("[memory_system]\nzeta = 1\nalpha = 2\n");
    EXPECT_EQ(e.key(), "memory_system.zeta");
    EXPECT_EQ(e.line(), 2u);
}

TEST_F(ConfigFile, UnknownTableIsNamed) {
    config_error e = parse_error_of("[memory_system]\nbudget = 1\n[memory_system.tiny]\nmax = 8\n");
    EXPECT_EQ(e.key(), "memory_system.tiny");
    EXPECT_EQ(e.line(), 3u);
    EXPECT_EQ(std::string{e.what()}.rfind("t.toml:3:16: memory_system.tiny: unknown table", 0), 0u)
        << e.what();
    e = parse_error_of("[memory_system.pressure.extra]\nx = 1\n");
    EXPECT_EQ(e.key(), "memory_system.pressure.extra");
    EXPECT_STREQ(e.what(), "t.toml:1:25: memory_system.pressure.extra: unknown table (expected "
                           "medium, high, critical)");
}

TEST_F(ConfigFile, WrongTypes) {
    config_error e = parse_error_of("[memory_system.pressure]\nhigh = \"0.8\"\n");
    EXPECT_EQ(e.key(), "memory_system.pressure.high");
    EXPECT_EQ(e.code(), memkit::errc::invalid_argument);
    EXPECT_STREQ(e.what(), "t.toml:2:1: memory_system.pressure.high: expected a number such as "
                           "0.8, got a string");

    e = parse_error_of("[memory_system]\nbudget = 1.5\n");
    EXPECT_STREQ(e.what(), "t.toml:2:1: memory_system.budget: expected a size (an integer, or a "
                           "string such as \"64MiB\"), got a float");

    e = parse_error_of("[memory_system]\nname = true\n");
    EXPECT_STREQ(e.what(), "t.toml:2:1: memory_system.name: expected a string, got a boolean");

    e = parse_error_of("[memory_system]\nsmall = 5\n");
    EXPECT_STREQ(e.what(), "t.toml:2:1: memory_system.small: expected a table, got an integer");

    e = parse_error_of("memory_system = [1, 2]\n");
    EXPECT_STREQ(e.what(), "t.toml:1:17: memory_system: expected a table, got an array");
}

TEST_F(ConfigFile, NegativeAndMalformedSizes) {
    config_error e = parse_error_of("[memory_system.medium]\nmax_total = -4096\n");
    EXPECT_EQ(e.key(), "memory_system.medium.max_total");
    EXPECT_STREQ(e.what(), "t.toml:2:1: memory_system.medium.max_total: negative size -4096 "
                           "(sizes are bytes, >= 0)");

    e = parse_error_of("[memory_system]\nbudget = \"-1GiB\"\n");
    EXPECT_STREQ(e.what(), "t.toml:2:1: memory_system.budget: negative size '-1GiB'");

    e = parse_error_of("[memory_system]\nbudget = \"12 parsecs\"\n");
    EXPECT_EQ(std::string{e.what()}.rfind("t.toml:2:1: memory_system.budget: malformed size "
                                          "'12 parsecs' (unknown suffix 'parsecs'",
                                          0),
              0u)
        << e.what();

    e = parse_error_of("[memory_system.small]\nspacing = \"fibonacci\"\n");
    EXPECT_STREQ(e.what(), "t.toml:2:1: memory_system.small.spacing: unknown spacing 'fibonacci' "
                           "(expected power_of_two or linear)");
}

TEST_F(ConfigFile, ThresholdsOutOfOrderPointAtTheKey) {
    config_error e =
        parse_error_of("[memory_system.pressure]\nmedium = 0.9\nhigh = 0.8\ncritical = 0.95\n");
    EXPECT_EQ(e.key(), "memory_system.pressure.medium");
    EXPECT_EQ(e.line(), 2u);
    EXPECT_STREQ(e.what(), "t.toml:2:1: memory_system.pressure.medium: must be above 0 and below "
                           "pressure_high");

    e = parse_error_of("[memory_system]\npressure_critical = 1.5\n");
    EXPECT_STREQ(e.what(), "t.toml:2:1: memory_system.pressure_critical: must not be above 1");

    // The offending field kept its default: the error names it, without a line.
    e = parse_error_of("[memory_system.pressure]\nhigh = 0.5\n");
    EXPECT_EQ(e.line(), 0u);
    EXPECT_EQ(e.key(), "memory_system.pressure.medium");
    EXPECT_STREQ(e.what(), "t.toml: memory_system.pressure.medium: must be above 0 and below "
                           "pressure_high (pressure_medium has its default)");
}

TEST_F(ConfigFile, OtherValidationErrorsPointAtTheKey) {
    const config_error e =
        parse_error_of("[memory_system]\nbudget = \"1MiB\"\nsoft_budget = \"2MiB\"\n");
    EXPECT_EQ(e.key(), "memory_system.soft_budget");
    EXPECT_STREQ(e.what(), "t.toml:3:1: memory_system.soft_budget: 2097152 is above budget "
                           "(1048576)");
}

TEST_F(ConfigFile, AFieldSetTwiceIsAnError) {
    const config_error e =
        parse_error_of("[memory_system]\nsmall_max = 64\n[memory_system.small]\nmax = 128\n");
    EXPECT_EQ(e.key(), "memory_system.small.max");
    EXPECT_STREQ(e.what(), "t.toml:4:1: memory_system.small.max: set twice (also as "
                           "memory_system.small_max at t.toml:2:1)");
}

TEST_F(ConfigFile, ConfigErrorIsARuntimeErrorWithItsParts) {
    const config_error e{"a.toml", 3, 7, "memory_system.budget", "bad", {}};
    const std::runtime_error& base = e;
    EXPECT_STREQ(base.what(), "a.toml:3:7: memory_system.budget: bad");
    EXPECT_EQ(e.message(), "bad");
    EXPECT_STREQ(config_error("a.toml", 0, 0, "", "gone", {}).what(), "a.toml: gone");
}

TEST_F(ConfigFile, TheSampleFileLoads) {
    const fs::path sample =
        fs::path{__FILE__}.parent_path().parent_path().parent_path() / "examples" / "memkit.toml";
    ASSERT_TRUE(fs::exists(sample)) << sample;
    const memory_system_config c = load_memory_system_config(sample);
    EXPECT_EQ(c.name, "request-server");
    EXPECT_EQ(c.budget, std::size_t{256} << 20);
    EXPECT_EQ(c.soft_budget, std::size_t{192} << 20);
    EXPECT_EQ(c.small_min_class, 16u);
    EXPECT_EQ(c.medium_region_size, std::size_t{4} << 20);
    EXPECT_EQ(c.medium_max_total, std::size_t{128} << 20);
}

} // namespace
