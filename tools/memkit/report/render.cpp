// Text, JSON and HTML renderings of a trace analysis (render.hpp).
#include "render.hpp"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include "../../track/trace_format.hpp"

namespace memkit::report {
namespace {

namespace mt = memkit::track;

std::uint64_t measure(const site& s, site_order by) {
    switch (by) {
    case site_order::bytes: return s.bytes;
    case site_order::count: return s.count;
    case site_order::peak: return s.peak_bytes;
    }
    return 0;
}

const char* order_name(site_order by) {
    switch (by) {
    case site_order::bytes: return "by_bytes";
    case site_order::count: return "by_count";
    case site_order::peak: return "by_peak";
    }
    return "";
}

std::string start_time(const trace& t) {
    const auto secs = static_cast<std::time_t>(t.start_unix_us / 1000000u);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

std::string end_description(const trace& t) {
    if (!t.complete) return "no end record";
    switch (static_cast<mt::end_reason>(t.end_reason)) {
    case mt::end_reason::exit: return "exit";
    case mt::end_reason::quick_exit: return fmt::format("_exit({})", t.end_value);
    case mt::end_reason::signal: return fmt::format("killed by signal {}", t.end_value);
    case mt::end_reason::exec: return "exec (replaced by another program)";
    case mt::end_reason::count_: break;
    }
    return "?";
}

std::string with_commas(std::uint64_t v) {
    const std::string digits = std::to_string(v);
    std::string s;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) s += ',';
        s += digits[i];
    }
    return s;
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
    return fmt::format("{} {}", with_commas(n), n == 1 ? one : many);
}

const std::vector<std::uint64_t>& stack_of(const trace& t, std::uint32_t id) {
    static const std::vector<std::uint64_t> none;
    return id < t.stacks.size() ? t.stacks[id] : none;
}

nlohmann::json frame_json(const symbolizer& sym, std::uint64_t addr) {
    const frame_info& f = sym.info(addr);
    nlohmann::json j{{"address", fmt::format("{:#x}", addr)}, {"location", sym.describe(addr)}};
    if (!f.function.empty()) j["function"] = f.function;
    if (!f.file.empty()) {
        j["file"] = f.file;
        j["line"] = f.line;
    }
    if (!f.module.empty()) {
        j["module"] = f.module;
        j["offset"] = fmt::format("{:#x}", f.offset);
    }
    return j;
}

} // namespace

std::string human_bytes(std::uint64_t bytes) {
    static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) return fmt::format("{} B", bytes);
    double v = static_cast<double>(bytes);
    std::size_t u = 0;
    while (v >= 1024 && u + 1 < std::size(units)) {
        v /= 1024;
        ++u;
    }
    return fmt::format("{:.1f} {}", v, units[u]);
}

std::string trace_condition(const trace& t) {
    if (t.damage)
        return fmt::format("trace damaged at byte {} of {}: {}; the report covers the {} events "
                           "before that point",
                           t.damage->offset,
                           t.damage->in_decompressed ? std::string("the decompressed data")
                                                     : std::to_string(t.file_size),
                           t.damage->reason, with_commas(t.events.size()));
    if (!t.complete)
        return fmt::format("trace has no end record (the program was killed, or ended with a raw "
                           "exit system call); events still buffered then, at most {} KiB, are "
                           "missing",
                           mt::trace_buffer_size / 1024);
    return {};
}

std::vector<const site*> top_sites(const analysis& a, site_order by, std::size_t top) {
    std::vector<const site*> v;
    for (const site& s : a.sites)
        if (measure(s, by) > 0) v.push_back(&s);
    std::sort(v.begin(), v.end(), [by](const site* x, const site* y) {
        const auto mx = measure(*x, by), my = measure(*y, by);
        return mx != my ? mx > my : x->address < y->address;
    });
    if (v.size() > top) v.resize(top);
    return v;
}

void add_addresses(const trace& t, const analysis& a, const render_options& o, symbolizer& sym) {
    for (site_order by : {site_order::bytes, site_order::count, site_order::peak})
        for (const site* s : top_sites(a, by, o.top)) {
            const auto& st = stack_of(t, s->stack);
            for (std::size_t i = 0; i < st.size() && i < o.frames; ++i) sym.add(st[i]);
        }
    for (std::size_t g = 0; g < a.leaks.size() && g < o.top; ++g) {
        const auto& st = stack_of(t, a.leaks[g].stack);
        for (std::size_t i = 0; i < st.size() && i < o.frames; ++i) sym.add(st[i]);
    }
}

nlohmann::json to_json(const trace& t, const analysis& a, const symbolizer& sym,
                       const render_options& o) {
    using nlohmann::json;
    json j;
    j["trace"] = {
        {"file", t.path},
        {"bytes", t.file_size},
        {"pid", t.pid},
        {"ppid", t.ppid},
        {"executable", t.executable},
        {"command_line", t.command_line},
        {"start_unix_us", t.start_unix_us},
        {"duration_s", a.duration_s},
        {"complete", t.complete},
        {"end", end_description(t)},
        {"packed", t.packed},
        {"damage", t.damage ? json{{"offset", t.damage->offset},
                                   {"in_decompressed", t.damage->in_decompressed},
                                   {"reason", t.damage->reason}}
                            : json(nullptr)},
    };
    j["totals"] = {
        {"allocations", a.allocations},
        {"frees", a.frees},
        {"unknown_frees", a.unknown_frees},
        {"mismatched_frees", a.mismatched_frees},
        {"bytes_allocated", a.bytes_allocated},
        {"allocations_per_s", a.allocations_per_s},
        {"peak_bytes", a.peak_bytes},
        {"peak_blocks", a.peak_blocks},
        {"peak_time_s", static_cast<double>(a.peak_time_us) / 1e6},
    };
    json groups = json::array();
    for (std::size_t g = 0; g < a.leaks.size(); ++g) {
        json frames = json::array();
        if (g < o.top) {
            const auto& st = stack_of(t, a.leaks[g].stack);
            for (std::size_t i = 0; i < st.size() && i < o.frames; ++i)
                frames.push_back(frame_json(sym, st[i]));
        }
        groups.push_back(
            {{"count", a.leaks[g].count}, {"bytes", a.leaks[g].bytes}, {"stack", frames}});
    }
    j["leaks"] = {{"count", a.leaked_count}, {"bytes", a.leaked_bytes}, {"groups", groups}};
    json sites = json::object();
    for (site_order by : {site_order::bytes, site_order::count, site_order::peak}) {
        json list = json::array();
        for (const site* s : top_sites(a, by, o.top))
            list.push_back(
                {{"location", sym.describe(s->address)},
                 {"frame", s->address != 0 ? frame_json(sym, s->address) : json(nullptr)},
                 {"count", s->count},
                 {"bytes", s->bytes},
                 {"peak_bytes", s->peak_bytes},
                 {"leaked_count", s->leaked_count},
                 {"leaked_bytes", s->leaked_bytes}});
        sites[order_name(by)] = list;
    }
    j["top_sites"] = sites;
    json hist = json::array();
    for (const histogram_bucket& b : a.histogram)
        hist.push_back({{"min", b.lo}, {"max", b.hi}, {"count", b.count}, {"bytes", b.bytes}});
    j["size_histogram"] = hist;
    json tl = json::array();
    for (const timeline_point& p : a.timeline)
        tl.push_back({static_cast<double>(p.time_us) / 1e6, p.event, p.bytes});
    j["timeline"] = {{"columns", {"time_s", "event", "bytes"}}, {"points", tl}};
    return j;
}

void print_text(std::FILE* out, const trace& t, const analysis& a, const symbolizer& sym,
                const render_options& o) {
    fmt::print(out, "memkit report: {}\n", t.path);
    fmt::print(out, "  program       {} (pid {}, parent {})\n",
               t.command_line.empty() ? t.executable : t.command_line, t.pid, t.ppid);
    fmt::print(out, "  started       {}, traced for {:.3f} s, ended: {}\n", start_time(t),
               a.duration_s, end_description(t));
    if (const std::string c = trace_condition(t); !c.empty()) fmt::print(out, "  WARNING: {}\n", c);

    fmt::print(out, "\nSummary\n");
    fmt::print(out, "  allocations   {}", with_commas(a.allocations));
    if (a.allocations_per_s > 0)
        fmt::print(out, " ({}/s)", with_commas(static_cast<std::uint64_t>(a.allocations_per_s)));
    fmt::print(out, ", {} requested\n", human_bytes(a.bytes_allocated));
    fmt::print(out, "  frees         {}", with_commas(a.frees));
    if (a.unknown_frees > 0)
        fmt::print(out, " ({} of blocks allocated before tracing)", with_commas(a.unknown_frees));
    if (a.mismatched_frees > 0)
        fmt::print(out, " ({} MISMATCHED: e.g. new[] released by delete)",
                   with_commas(a.mismatched_frees));
    fmt::print(out, "\n");
    fmt::print(out, "  peak heap     {} in {} at {:.3f} s\n", human_bytes(a.peak_bytes),
               plural(a.peak_blocks, "block", "blocks"), static_cast<double>(a.peak_time_us) / 1e6);
    fmt::print(out, "  leaked        {} in {}\n", human_bytes(a.leaked_bytes),
               plural(a.leaked_count, "block", "blocks"));

    const struct {
        site_order by;
        const char* title;
    } tables[] = {{site_order::bytes, "Top sites by bytes allocated"},
                  {site_order::count, "Top sites by number of allocations"},
                  {site_order::peak, "Top sites by contribution to the peak"}};
    for (const auto& tab : tables) {
        fmt::print(out, "\n{}\n", tab.title);
        fmt::print(out, "  {:>12} {:>10} {:>12} {:>12}  {}\n", "bytes", "calls", "at peak",
                   "leaked", "site");
        for (const site* s : top_sites(a, tab.by, o.top))
            fmt::print(out, "  {:>12} {:>10} {:>12} {:>12}  {}\n", human_bytes(s->bytes),
                       with_commas(s->count), human_bytes(s->peak_bytes),
                       human_bytes(s->leaked_bytes), sym.short_location(s->address));
    }

    fmt::print(out, "\nLeaks at exit: {} in {}, from {}\n", human_bytes(a.leaked_bytes),
               plural(a.leaked_count, "block", "blocks"),
               plural(a.leaks.size(), "stack", "stacks"));
    for (std::size_t g = 0; g < a.leaks.size() && g < o.top; ++g) {
        const leak_group& l = a.leaks[g];
        fmt::print(out, "  {} in {} allocated at:\n", human_bytes(l.bytes),
                   plural(l.count, "block", "blocks"));
        const auto& st = stack_of(t, l.stack);
        if (st.empty()) fmt::print(out, "      (no stack recorded)\n");
        for (std::size_t i = 0; i < st.size() && i < o.frames; ++i)
            fmt::print(out, "      #{} {}\n", i, sym.describe(st[i]));
        if (st.size() > o.frames)
            fmt::print(out, "      ... {} more frames\n", st.size() - o.frames);
    }
    if (a.leaks.size() > o.top)
        fmt::print(out, "  ... and {} more stacks (--top)\n", a.leaks.size() - o.top);

    fmt::print(out, "\nRequest sizes\n");
    std::uint64_t most = 1;
    for (const histogram_bucket& b : a.histogram) most = std::max(most, b.count);
    for (const histogram_bucket& b : a.histogram) {
        const auto bar = static_cast<std::size_t>((b.count * 40 + most - 1) / most);
        fmt::print(out, "  {:>10} - {:<10} {:>10}  {}\n", human_bytes(b.lo), human_bytes(b.hi),
                   with_commas(b.count), std::string(bar, '#'));
    }
}

std::string to_html(const trace& t, const analysis& a, const symbolizer& sym,
                    const render_options& o) {
    std::string h;
    auto add = [&h](const std::string& s) { h += s; };
    add("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    add(fmt::format("<title>memkit report: {}</title>\n", html_escape(t.path)));
    add("<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "td.l,th.l{text-align:left;font-family:monospace}.warn{color:#a00;font-weight:bold}"
        "svg{border:1px solid #ccc;background:#fafafa}</style></head><body>\n");
    add(fmt::format("<h1>memkit report</h1>\n<p>Trace <code>{}</code>: <code>{}</code> (pid {}), "
                    "started {}, traced for {:.3f} s, ended: {}.</p>\n",
                    html_escape(t.path),
                    html_escape(t.command_line.empty() ? t.executable : t.command_line), t.pid,
                    start_time(t), a.duration_s, html_escape(end_description(t))));
    if (const std::string c = trace_condition(t); !c.empty())
        add(fmt::format("<p class=\"warn\" id=\"condition\">Warning: {}</p>\n", html_escape(c)));

    add("<h2>Summary</h2>\n<table id=\"summary\">\n");
    auto row = [&](const char* k, const std::string& v) {
        add(fmt::format("<tr><th class=\"l\">{}</th><td>{}</td></tr>\n", k, html_escape(v)));
    };
    row("allocations", with_commas(a.allocations));
    row("allocation rate",
        a.allocations_per_s > 0
            ? fmt::format("{}/s", with_commas(static_cast<std::uint64_t>(a.allocations_per_s)))
            : "-");
    row("bytes allocated", human_bytes(a.bytes_allocated));
    row("frees", with_commas(a.frees));
    row("peak heap", fmt::format("{} in {} at {:.3f} s", human_bytes(a.peak_bytes),
                                 plural(a.peak_blocks, "block", "blocks"),
                                 static_cast<double>(a.peak_time_us) / 1e6));
    row("leaked", fmt::format("{} in {}", human_bytes(a.leaked_bytes),
                              plural(a.leaked_count, "block", "blocks")));
    add("</table>\n");

    // The chart: heap size over time (or over events, for traces too short to time).
    constexpr double w = 800, hgt = 260, left = 70, bottom = 30, top_pad = 10, right = 10;
    const bool by_time = t.duration_us >= 10000;
    double xmax = 1;
    for (const timeline_point& p : a.timeline)
        xmax =
            std::max(xmax, by_time ? static_cast<double>(p.time_us) : static_cast<double>(p.event));
    const double ymax = std::max<double>(1, static_cast<double>(a.peak_bytes));
    auto px = [&](const timeline_point& p) {
        const double x = by_time ? static_cast<double>(p.time_us) : static_cast<double>(p.event);
        return left + x / xmax * (w - left - right);
    };
    auto py = [&](double bytes) { return top_pad + (1 - bytes / ymax) * (hgt - top_pad - bottom); };
    add("<h2>Heap size over time</h2>\n");
    add(fmt::format("<svg id=\"heap-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" "
                    "height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"heap size over "
                    "time\">\n",
                    w, hgt, w, hgt));
    add(fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#888\"/>"
                    "<line x1=\"{0}\" y1=\"{3}\" x2=\"{0}\" y2=\"{1}\" stroke=\"#888\"/>\n",
                    left, hgt - bottom, w - right, top_pad));
    add(fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
                    left - 4, top_pad + 10, html_escape(human_bytes(a.peak_bytes))));
    add(fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">0</text>\n",
                    left - 4, hgt - bottom));
    add(fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
                    w - right, hgt - 8,
                    by_time
                        ? fmt::format("{:.3f} s", xmax / 1e6)
                        : fmt::format("event {}", with_commas(static_cast<std::uint64_t>(xmax)))));
    std::string pts = fmt::format("{:.1f},{:.1f}", left, py(0));
    for (const timeline_point& p : a.timeline)
        pts += fmt::format(" {:.1f},{:.1f}", px(p), py(static_cast<double>(p.bytes)));
    add(fmt::format("<polyline id=\"heap-line\" fill=\"none\" stroke=\"#1f6fb2\" "
                    "stroke-width=\"1.5\" points=\"{}\"/>\n",
                    pts));
    add("</svg>\n");

    const struct {
        site_order by;
        const char* title;
        const char* id;
    } tables[] = {{site_order::bytes, "Top sites by bytes allocated", "sites-bytes"},
                  {site_order::count, "Top sites by number of allocations", "sites-count"},
                  {site_order::peak, "Top sites by contribution to the peak", "sites-peak"}};
    for (const auto& tab : tables) {
        add(fmt::format("<h2>{}</h2>\n<table id=\"{}\"><tr><th>bytes</th><th>calls</th><th>at "
                        "peak</th><th>leaked</th><th class=\"l\">site</th></tr>\n",
                        tab.title, tab.id));
        for (const site* s : top_sites(a, tab.by, o.top))
            add(fmt::format(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>\n",
                human_bytes(s->bytes), with_commas(s->count), human_bytes(s->peak_bytes),
                human_bytes(s->leaked_bytes), html_escape(sym.describe(s->address))));
        add("</table>\n");
    }

    add(fmt::format("<h2>Leaks at exit</h2>\n<p>{} in {}, from {}.</p>\n<table id=\"leaks\">"
                    "<tr><th>bytes</th><th>blocks</th><th class=\"l\">stack</th></tr>\n",
                    human_bytes(a.leaked_bytes), plural(a.leaked_count, "block", "blocks"),
                    plural(a.leaks.size(), "stack", "stacks")));
    for (std::size_t g = 0; g < a.leaks.size() && g < o.top; ++g) {
        const auto& st = stack_of(t, a.leaks[g].stack);
        std::string frames;
        for (std::size_t i = 0; i < st.size() && i < o.frames; ++i)
            frames += fmt::format("#{} {}<br>", i, html_escape(sym.describe(st[i])));
        add(fmt::format("<tr><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>\n",
                        human_bytes(a.leaks[g].bytes), with_commas(a.leaks[g].count), frames));
    }
    add("</table>\n<h2>Request sizes</h2>\n<table id=\"histogram\"><tr><th>from</th><th>to</th>"
        "<th>count</th><th>bytes</th></tr>\n");
    for (const histogram_bucket& b : a.histogram)
        add(fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                        human_bytes(b.lo), human_bytes(b.hi), with_commas(b.count),
                        human_bytes(b.bytes)));
    add("</table>\n</body></html>\n");
    return h;
}

} // namespace memkit::report
