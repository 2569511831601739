// tools/memkit/report/render.hpp - the three forms of `memkit report`: text for people, JSON
// for programs, and a self-contained HTML page (inline SVG chart of heap size over time and the
// tables; no scripts, no network).
//
//   memkit::report::render_options o;            // top 10 sites, 8 frames per leak
//   memkit::report::add_addresses(t, a, o, sym);  // what the renderers will print
//   sym.resolve();
//   memkit::report::print_text(stdout, t, a, sym, o);
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis.hpp"
#include "symbolizer.hpp"
#include "trace_reader.hpp"

namespace memkit::report {

struct render_options {
    std::size_t top = 10;   ///< sites per table, leak groups listed
    std::size_t frames = 8; ///< frames shown per leak stack
};

enum class site_order { bytes, count, peak };

/// The `top` sites by the given measure, largest first (ties: by address).
[[nodiscard]] std::vector<const site*> top_sites(const analysis& a, site_order by, std::size_t top);

/// Adds to sym every address the renderers print.
void add_addresses(const trace& t, const analysis& a, const render_options& o, symbolizer& sym);

[[nodiscard]] nlohmann::json to_json(const trace& t, const analysis& a, const symbolizer& sym,
                                     const render_options& o);
void print_text(std::FILE* out, const trace& t, const analysis& a, const symbolizer& sym,
                const render_options& o);
[[nodiscard]] std::string to_html(const trace& t, const analysis& a, const symbolizer& sym,
                                  const render_options& o);

/// "1.5 KiB", "12 B".
[[nodiscard]] std::string human_bytes(std::uint64_t bytes);
/// One line saying why the trace is incomplete or damaged; empty when it is whole.
[[nodiscard]] std::string trace_condition(const trace& t);

} // namespace memkit::report
