// tools/memkit/report/symbolizer.hpp - turning the return addresses of a trace into
// "function at file:line".
//
// The trace records, for each loaded ELF object, its path and load bias; an address is looked up
// as (path, address - 1 - bias) - minus one so that a return address names the call, not the
// line after it. Lookups run `addr2line -f -C` once per object, on all its addresses at once,
// when resolve() is called. In objects without debug information, a function name is kept only
// when `nm` shows the address inside a sized symbol (addr2line would otherwise name the nearest
// exported symbol, often an unrelated one). Without addr2line, or for objects that no longer
// exist or have no such symbol, a frame is described as "object+0xoffset".
//
//   memkit::report::symbolizer sym(t);
//   sym.add(address);   // every address to be printed
//   sym.resolve();
//   std::string where = sym.describe(address);
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "trace_reader.hpp"

namespace memkit::report {

struct frame_info {
    std::string function; ///< demangled; empty when unknown
    std::string file;     ///< source file; empty when unknown
    unsigned line = 0;
    std::string module;       ///< the ELF object's path; empty when no module covers the address
    std::uint64_t offset = 0; ///< address - bias within module
};

class symbolizer {
public:
    /// `use_addr2line` false: describe frames as object+offset only (fast, for tests).
    explicit symbolizer(const trace& t, bool use_addr2line = true);

    void add(std::uint64_t address);
    void resolve();

    [[nodiscard]] const frame_info& info(std::uint64_t address) const;
    /// "function at file:line", "function in object+0xoff", or "0xaddress".
    [[nodiscard]] std::string describe(std::uint64_t address) const;
    /// Just the function (or object+0xoff) and file:line, for tables.
    [[nodiscard]] std::string short_location(std::uint64_t address) const;

private:
    const trace* trace_;
    bool use_addr2line_;
    std::unordered_map<std::uint64_t, frame_info> frames_;
};

} // namespace memkit::report
