// Symbolizing trace addresses with addr2line, one process per ELF object (symbolizer.hpp).
#include "symbolizer.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

namespace memkit::report {
namespace {

std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

std::string trim_line(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
}

bool read_line(std::FILE* f, std::string* out) {
    out->clear();
    char buf[4096];
    while (std::fgets(buf, sizeof buf, f) != nullptr) {
        *out += buf;
        if (!out->empty() && out->back() == '\n') break;
    }
    if (out->empty()) return false;
    *out = trim_line(*out);
    return true;
}

// "file:line", "file:line (discriminator 2)", "??:0", "??:?".
void parse_location(const std::string& s, frame_info& f) {
    std::string loc = s.substr(0, s.find(" ("));
    const auto colon = loc.rfind(':');
    if (colon == std::string::npos) return;
    const std::string file = loc.substr(0, colon);
    if (file == "??" || file.empty()) return;
    f.file = file;
    f.line = static_cast<unsigned>(std::strtoul(loc.c_str() + colon + 1, nullptr, 10));
}

// Runs addr2line on one object for the given file offsets; fills infos in the same order.
void run_addr2line(const std::string& object, const std::vector<std::uint64_t>& offsets,
                   std::vector<frame_info*>& infos) {
    char tmpl[] = "/tmp/memkit-report-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) return;
    std::string input;
    for (std::uint64_t o : offsets) input += fmt::format("{:#x}\n", o);
    const bool written =
        ::write(fd, input.data(), input.size()) == static_cast<ssize_t>(input.size());
    ::close(fd);
    if (written) {
        const std::string cmd = fmt::format("addr2line -f -C -e {} < {} 2>/dev/null",
                                            shell_quote(object), shell_quote(tmpl));
        if (std::FILE* p = popen(cmd.c_str(), "r")) {
            std::string fn, loc;
            for (frame_info* f : infos) {
                if (!read_line(p, &fn) || !read_line(p, &loc)) break;
                if (fn != "??") f->function = fn;
                parse_location(loc, *f);
            }
            pclose(p);
        }
    }
    ::unlink(tmpl);
}

// The [start, end) ranges of the sized symbols of an object (its symbol table if it has one,
// and its dynamic symbols), from `nm`, sorted.
std::vector<std::pair<std::uint64_t, std::uint64_t>> symbol_ranges(const std::string& object) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    for (const char* flags : {"", "-D "}) {
        const std::string cmd =
            fmt::format("nm {}-S --defined-only {} 2>/dev/null", flags, shell_quote(object));
        std::FILE* p = popen(cmd.c_str(), "r");
        if (p == nullptr) continue;
        std::string line;
        while (read_line(p, &line)) {
            char* end = nullptr;
            const std::uint64_t start = std::strtoull(line.c_str(), &end, 16);
            if (end == nullptr || *end != ' ') continue;
            char* end2 = nullptr;
            const std::uint64_t size = std::strtoull(end + 1, &end2, 16);
            // "addr size type name": a sized symbol; "addr type name" has no size.
            if (end2 == end + 1 || end2 == nullptr || *end2 != ' ' || end2 - (end + 1) < 8)
                continue;
            if (size > 0) ranges.emplace_back(start, start + size);
        }
        pclose(p);
    }
    std::sort(ranges.begin(), ranges.end());
    return ranges;
}

bool inside_symbol(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& ranges,
                   std::uint64_t offset) {
    auto it =
        std::upper_bound(ranges.begin(), ranges.end(), std::make_pair(offset, ~std::uint64_t{0}));
    // Ranges may nest or overlap (aliases); look back over those starting at or before offset.
    for (int i = 0; it != ranges.begin() && i < 16; ++i) {
        --it;
        if (offset < it->second) return true;
    }
    return false;
}

std::string base_name(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

} // namespace

symbolizer::symbolizer(const trace& t, bool use_addr2line)
    : trace_(&t), use_addr2line_(use_addr2line) {}

void symbolizer::add(std::uint64_t address) { frames_.try_emplace(address); }

void symbolizer::resolve() {
    std::map<std::string, std::pair<std::vector<std::uint64_t>, std::vector<frame_info*>>> jobs;
    for (auto& [addr, f] : frames_) {
        // The most recent module covering the address (a later dlopen may reuse a range).
        for (auto m = trace_->modules.rbegin(); m != trace_->modules.rend(); ++m) {
            if (addr >= m->lo && addr < m->hi) {
                f.module = m->path;
                f.offset = addr - m->bias;
                break;
            }
        }
        if (f.module.empty() || !use_addr2line_) continue;
        auto& job = jobs[f.module];
        job.first.push_back(f.offset == 0 ? 0 : f.offset - 1);
        job.second.push_back(&f);
    }
    for (auto& [object, job] : jobs) {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(object, ec)) continue;
        run_addr2line(object, job.first, job.second);
        // Without debug information addr2line names the nearest symbol before the address,
        // which in a stripped object is often an unrelated exported function: keep a name
        // only if that address lies inside a symbol.
        bool unverified = false;
        for (const frame_info* f : job.second)
            unverified |= f->file.empty() && !f->function.empty();
        if (!unverified) continue;
        const auto ranges = symbol_ranges(object);
        for (std::size_t i = 0; i < job.second.size(); ++i) {
            frame_info& f = *job.second[i];
            if (f.file.empty() && !f.function.empty() && !inside_symbol(ranges, job.first[i]))
                f.function.clear();
        }
    }
}

const frame_info& symbolizer::info(std::uint64_t address) const {
    static const frame_info unknown;
    const auto it = frames_.find(address);
    return it == frames_.end() ? unknown : it->second;
}

std::string symbolizer::describe(std::uint64_t address) const {
    if (address == 0) return "(no stack recorded)";
    const frame_info& f = info(address);
    std::string what = !f.function.empty() ? f.function
                       : !f.module.empty() ? fmt::format("{}+{:#x}", base_name(f.module), f.offset)
                                           : fmt::format("{:#x}", address);
    if (!f.file.empty()) return fmt::format("{} at {}:{}", what, f.file, f.line);
    if (!f.function.empty() && !f.module.empty())
        return fmt::format("{} in {}", what, base_name(f.module));
    return what;
}

std::string symbolizer::short_location(std::uint64_t address) const {
    if (address == 0) return "(no stack recorded)";
    const frame_info& f = info(address);
    std::string what = !f.function.empty() ? f.function
                       : !f.module.empty() ? fmt::format("{}+{:#x}", base_name(f.module), f.offset)
                                           : fmt::format("{:#x}", address);
    if (!f.file.empty()) return fmt::format("{} ({}:{})", what, base_name(f.file), f.line);
    if (!f.function.empty() && !f.module.empty())
        return fmt::format("{} ({})", what, base_name(f.module));
    return what;
}

} // namespace memkit::report
