// memkit::stack_trace (portable part): demangling and formatting of symbolized frames.
#include "memkit/debug/stack_trace.hpp"

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <ostream>

namespace memkit::stack_trace {

std::string demangle(const char* name) {
    if (name == nullptr) return {};
    int status = 0;
    // __cxa_demangle mallocs its result; free() it through a unique_ptr.
    std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                               &std::free);
    if (status == 0 && out) return std::string(out.get());
    return std::string(name);
}

namespace {

std::string module_basename(const std::string& path) {
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

void format_frame(std::string& out, std::size_t index, const frame& f) {
    for (const inlined_call& c : f.inlined) {
        out += "   inlined: ";
        out += c.function.empty() ? std::string("??") : c.function;
        if (!c.file.empty()) out += " at " + c.file + ":" + std::to_string(c.line);
        out += '\n';
    }
    char head[64];
    std::snprintf(head, sizeof head, "#%zu %p in ", index, f.address);
    out += head;
    out += f.function.empty() ? std::string("??") : f.function;
    if (!f.file.empty()) {
        out += " at ";
        out += f.file;
        if (f.line != 0) {
            out += ':';
            out += std::to_string(f.line);
        }
    }
    if (!f.module.empty()) {
        char off[32];
        std::snprintf(off, sizeof off, "+0x%jx)", static_cast<std::uintmax_t>(f.module_offset));
        out += " (";
        out += module_basename(f.module);
        out += off;
    }
    out += '\n';
}

} // namespace

std::string to_string(std::span<const frame> frames) {
    std::string out;
    for (std::size_t i = 0; i < frames.size(); ++i) format_frame(out, i, frames[i]);
    return out;
}

void print(std::ostream& os, std::span<const frame> frames) { os << to_string(frames); }

} // namespace memkit::stack_trace
