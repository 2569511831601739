// `memkit config check FILE`: loads a memory_system configuration file the way a program does
// (memkit::load_memory_system_config: the file, then the MEMKIT_* environment) and prints the
// effective configuration as TOML, or the error (file:line:column: key: message) with status 1.
#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "memkit/config/memory_system_file.hpp"

namespace memkit::cli {
namespace {

struct config_options {
    std::string file;
    std::string table = "memory_system";
    bool no_env = false;
};

int run_check(const config_options& opts) {
    config_load_options load;
    load.table = opts.table;
    load.environment_overrides = !opts.no_env;
    try {
        const memory_system_config c = load_memory_system_config(opts.file, load);
        std::cout << "# " << opts.file << ": valid; the effective configuration"
                  << (opts.no_env ? "" : " (file, then the MEMKIT_* environment)") << ":\n"
                  << to_toml(c, opts.table);
        return 0;
    } catch (const config_error& e) {
        std::cerr << "memkit config: " << e.what() << '\n';
        return 1;
    }
}

} // namespace

command add_config_command(CLI::App& app) {
    auto opts = std::make_shared<config_options>();
    CLI::App* sub =
        app.add_subcommand("config", "Work with memory_system configuration files (TOML)");
    sub->require_subcommand(0, 1);
    CLI::App* check = sub->add_subcommand(
        "check", "Load FILE as a program would (the file, then the MEMKIT_* environment) and "
                 "print the effective configuration, or the error with exit status 1");
    check->add_option("file", opts->file, "The TOML file")->required()->type_name("FILE");
    check
        ->add_option("--table", opts->table,
                     "The table holding the configuration (a dotted path; \"\": the whole file)")
        ->capture_default_str();
    check->add_flag("--no-env", opts->no_env, "Ignore MEMKIT_* environment variables");
    return {sub, [opts, sub, check] {
                if (check->parsed()) return run_check(*opts);
                std::cout << sub->help();
                return 1;
            }};
}

} // namespace memkit::cli
