// memkit/config/memory_system_file.hpp - memory_system configuration from a TOML file, with
// MEMKIT_* environment variables on top, and errors that point at the file, line, column and key.
//
// Part of the separate library memkit::config (CMake target memkit::config, pkg-config
// memkit-config), built when toml++ is available; the core memkit library does not depend on it
// and this header does not include toml++.
//
//   memkit::memory_system_config c = memkit::load_memory_system_config("/etc/app/memkit.toml");
//   memkit::memory_system sys{c};                       // MEMKIT_BUDGET=2GiB still wins
//   std::cout << memkit::to_toml(sys.config());         // the effective configuration
//
// File format. The configuration is the table named by config_load_options::table (default
// `memory_system`; a dotted path such as "services.cache.memory" reaches a nested table; "" is
// the whole document). Other tables of the file are ignored, so the memory system's settings can
// live in an application's own configuration file. Fields are grouped by tier:
//
//   [memory_system]
//   name = "server"             # the budget's name, in its error messages
//   budget = "1GiB"             # hard limit; 0: unlimited
//   soft_budget = "768MiB"      # soft limit; 0: none
//   [memory_system.small]       # size-class pools
//   max = 256                   # requests <= max bytes
//   spacing = "power_of_two"    # or "linear"
//   min_class = 8
//   step = 16                   # class step when spacing is linear
//   nodes_per_chunk = 0         # 0: automatic
//   [memory_system.medium]      # TLSF heap
//   max = "64KiB"
//   region_size = "1MiB"
//   max_total = 0               # 0: unlimited
//   [memory_system.pressure]    # fractions of the budget
//   medium = 0.60
//   high = 0.80
//   critical = 0.95
//
// Each field may also be written flat in the main table under the name of the
// memory_system_config member (`small_max = 256`, `pressure_high = 0.8`), the same names as
// from_key_values() and, upper-cased, the environment variables; writing one field both ways is
// an error. Sizes are TOML integers (bytes, >= 0) or strings with a unit as from_env() accepts
// them ("64KiB", "1 G"; B, K, KiB, M, MiB, G, GiB, powers of 1024). Thresholds are numbers
// (floats, or integers such as 1). spacing and name are strings. The configuration has no
// boolean fields; a boolean is a wrong type like any other.
//
// Precedence: defaults < file < environment. With environment_overrides (the default), every
// variable that memory_system_config::from_env() reads (`<env_prefix>SMALL_MAX`, ..., every field
// except name) replaces the file's value when it is set. The result is validated once, after
// the environment, with memory_system_config::validate().
//
// Errors: every failure throws memkit::config_error (a std::runtime_error) whose what() reads
// "source:line:column: key: message" (line, column and key when known): a missing file, one that
// cannot be read (permission denied) or is a directory (code() = the std::errc), a TOML syntax
// error (toml++'s description), an unknown key or table under the configuration table, a wrong
// type, a negative or malformed size, thresholds out of order and every other validate()
// failure, located at the key that set the offending field, or at the environment variable. An
// empty file, or one without the table, gives the defaults (plus the environment).
//
// Thread-safety: the functions are reentrant; they read the environment through std::getenv
// (or config_load_options::getenv), which must not race with setenv in another thread.
// Complexity: linear in the size of the file.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "memkit/heap/memory_system.hpp"

namespace memkit {

/// How load_memory_system_config() and parse_memory_system_config() read a configuration.
struct config_load_options {
    /// The table holding the configuration: a dotted path of bare keys; "" is the root table.
    std::string table = "memory_system";
    /// Whether `<env_prefix><FIELD>` variables replace the file's values (defaults < file < env).
    bool environment_overrides = true;
    std::string env_prefix = "MEMKIT_";
    /// How variables are read; empty: std::getenv. (Tests and sandboxes pass their own.)
    std::function<const char*(const char*)> getenv;
};

/// A configuration that cannot be loaded. what() is "source[:line[:column]]: [key: ]message".
class config_error : public std::runtime_error {
public:
    /// `line` and `column` are 1-based; 0 when unknown. `key` may be empty.
    config_error(std::string source, std::size_t line, std::size_t column, std::string key,
                 std::string message, std::error_code code);

    /// The file path, the `source_name` given to parse_memory_system_config(), or "environment".
    [[nodiscard]] const std::string& source() const noexcept { return source_; }
    [[nodiscard]] std::size_t line() const noexcept { return line_; }
    [[nodiscard]] std::size_t column() const noexcept { return column_; }
    /// The dotted TOML key ("memory_system.pressure.high") or the environment variable
    /// ("MEMKIT_BUDGET"); empty when the error is not about one key (I/O, syntax).
    [[nodiscard]] const std::string& key() const noexcept { return key_; }
    /// The description without the location.
    [[nodiscard]] const std::string& message() const noexcept { return message_; }
    /// A std::errc for I/O errors (no_such_file_or_directory, permission_denied,
    /// is_a_directory, ...); memkit::errc::invalid_argument for the contents.
    [[nodiscard]] std::error_code code() const noexcept { return code_; }

private:
    std::string source_;
    std::size_t line_;
    std::size_t column_;
    std::string key_;
    std::string message_;
    std::error_code code_;
};

/// Reads and parses `path` (see the file format above). Throws config_error.
[[nodiscard]] memory_system_config
load_memory_system_config(const std::filesystem::path& path,
                          const config_load_options& options = {});

/// Parses TOML text; `source_name` stands for the file in error messages. Throws config_error.
[[nodiscard]] memory_system_config
parse_memory_system_config(std::string_view toml, std::string_view source_name = "<string>",
                           const config_load_options& options = {});

/// The configuration as TOML in the grouped layout above, under `[table]` (no header when
/// `table` is empty); parse_memory_system_config() reads it back to an equal configuration.
/// Sizes that are whole KiB, MiB or GiB are written as strings with that unit.
[[nodiscard]] std::string to_toml(const memory_system_config& config,
                                  std::string_view table = "memory_system");

} // namespace memkit
