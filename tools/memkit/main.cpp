// memkit: the command-line front end of the memkit library (bench, track, report, config).
#include <array>
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.hpp"

#ifndef MEMKIT_VERSION
#error "MEMKIT_VERSION must be defined by the build"
#endif

int main(int argc, char** argv) {
    CLI::App app{"memkit - tools for the memkit C++ memory-management library", "memkit"};
    app.set_version_flag("--version", "memkit " MEMKIT_VERSION);
    app.require_subcommand(0, 1);

    const std::array commands{
        memkit::cli::add_bench_command(app),
        memkit::cli::add_track_command(app),
        memkit::cli::add_report_command(app),
#ifdef MEMKIT_CLI_HAVE_CONFIG
        memkit::cli::add_config_command(app),
#endif
    };

    CLI11_PARSE(app, argc, argv);

    try {
        for (const auto& c : commands)
            if (c.app->parsed()) return c.run();
    } catch (const std::exception& e) {
        std::cerr << "memkit: error: " << e.what() << '\n';
        return 1;
    }
    // No subcommand: show what there is rather than doing nothing.
    std::cout << app.help();
    return 1;
}
