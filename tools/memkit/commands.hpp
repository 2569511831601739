// tools/memkit/commands.hpp - the subcommands of the `memkit` command-line tool.
//
// Each subcommand lives in its own file and adds itself to the CLI11 application through one
// `add_<name>_command` function, which declares its options and returns the function that runs
// it once the command line has been parsed. main() only wires them together, so a new
// subcommand is one new file plus one line in main.cpp.
//
//   CLI::App app{"memkit"};
//   memkit::cli::command bench = memkit::cli::add_bench_command(app);
//   if (bench.app->parsed()) return bench.run();
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace memkit::cli {

/// A subcommand registered on the application: its CLI11 node and its entry point, which
/// returns the process exit status.
struct command {
    CLI::App* app = nullptr;
    std::function<int()> run;
};

/// `memkit bench`: runs memkit's benchmark cases against their peers and prints the table.
[[nodiscard]] command add_bench_command(CLI::App& app);

/// `memkit track [-o FILE] -- PROGRAM ARGS...`: runs a program with libmemkit_track.so preloaded,
/// recording every heap allocation to a trace file.
[[nodiscard]] command add_track_command(CLI::App& app);

/// `memkit report FILE`: peak, totals, top sites, leaks and sizes of a `memkit track` trace.
[[nodiscard]] command add_report_command(CLI::App& app);

#ifdef MEMKIT_CLI_HAVE_CONFIG
/// `memkit config check FILE`: validates a memory_system TOML file and prints the effective
/// configuration (built with memkit::config, i.e. when toml++ was found).
[[nodiscard]] command add_config_command(CLI::App& app);
#endif

} // namespace memkit::cli
