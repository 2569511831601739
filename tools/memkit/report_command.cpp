// `memkit report FILE`: reads a trace written by `memkit track` (libmemkit_track.so) and prints
// peak heap, totals, allocation rate, the top allocation sites by bytes, by count and by share of
// the peak, the leaks at exit grouped by stack, and a histogram of request sizes; --json for
// programs, --html OUT for a self-contained page with a chart of heap size over time.
//
// Exit status: 0; 2 when the trace is damaged (the report covers what precedes the damage, and
// stderr says at which byte); 1 when the file cannot be read or is not a trace.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "report/analysis.hpp"
#include "report/render.hpp"
#include "report/symbolizer.hpp"
#include "report/trace_reader.hpp"

namespace memkit::cli {
namespace {

struct report_options {
    std::string file;
    std::string html;
    std::string pack;
    bool json = false;
    bool no_symbols = false;
    std::size_t top = 10;
    std::size_t frames = 8;
};

int run_report(const report_options& opts) {
    const report::trace t = report::read_trace(opts.file);
    if (!opts.pack.empty()) {
        // For traces written without `memkit track` (LD_PRELOAD set by hand), which stay raw.
        if (t.damage) {
            fmt::print(stderr, "memkit report: {}: damaged at byte {} ({}); not packed\n",
                       opts.file, t.damage->offset, t.damage->reason);
            return 2;
        }
        report::write_packed(t, opts.pack);
        fmt::print(stderr, "memkit report: packed {} into {}\n", opts.file, opts.pack);
        return 0;
    }
    const report::analysis a = report::analyze(t);
    report::render_options ro;
    ro.top = opts.top;
    ro.frames = opts.frames;
    report::symbolizer sym(t, !opts.no_symbols);
    report::add_addresses(t, a, ro, sym);
    sym.resolve();

    if (const std::string c = report::trace_condition(t); !c.empty())
        fmt::print(stderr, "memkit report: {}: {}\n", opts.file, c);
    if (!opts.html.empty()) {
        std::ofstream out(opts.html, std::ios::binary | std::ios::trunc);
        out << report::to_html(t, a, sym, ro);
        out.close();
        if (!out) {
            fmt::print(stderr, "memkit report: cannot write '{}'\n", opts.html);
            return 1;
        }
        fmt::print(stderr, "memkit report: wrote {}\n", opts.html);
    }
    if (opts.json) {
        fmt::print("{}\n", report::to_json(t, a, sym, ro).dump(2));
    } else if (opts.html.empty()) {
        report::print_text(stdout, t, a, sym, ro);
    }
    return t.damage ? 2 : 0;
}

} // namespace

command add_report_command(CLI::App& app) {
    auto opts = std::make_shared<report_options>();
    CLI::App* sub = app.add_subcommand(
        "report", "Summarize a trace written by `memkit track`: peak heap, totals, top "
                  "allocation sites, leaks at exit, request sizes");
    sub->add_option("file", opts->file, "The trace file")->required()->type_name("FILE");
    sub->add_flag("--json", opts->json, "Print the report as JSON");
    sub->add_option("--html", opts->html,
                    "Also write a self-contained HTML page (chart of heap size over time and "
                    "the tables)")
        ->type_name("OUT");
    sub->add_option("--pack", opts->pack,
                    "Instead of reporting, write the trace in the packed (compressed) form to OUT")
        ->type_name("OUT");
    sub->add_option("--top", opts->top, "Rows per table and leak stacks listed")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    sub->add_option("--frames", opts->frames, "Frames shown per stack")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    sub->add_flag("--no-symbols", opts->no_symbols,
                  "Do not run addr2line: show frames as object+offset");
    return {sub, [opts] {
                try {
                    return run_report(*opts);
                } catch (const std::exception& e) {
                    fmt::print(stderr, "memkit report: {}\n", e.what());
                    return 1;
                }
            }};
}

} // namespace memkit::cli
