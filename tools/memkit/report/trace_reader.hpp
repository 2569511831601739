// tools/memkit/report/trace_reader.hpp - reading a libmemkit_track.so trace into memory, and
// packing it.
//
// read_trace() decodes a whole file, raw (as the preload library writes it) or packed (as
// `memkit track` leaves it; format: tools/track/trace_format.hpp). Frees come out matched with
// the block they release (its size, stack and allocation kind), so that nothing downstream needs
// addresses. A damaged trace is not an error: decoding stops at the first byte that cannot be
// understood, and the trace keeps everything before it together with the offset and the reason
// (trace::damage). Only a file that cannot be read, or that is not a trace at all (wrong magic or
// version), throws std::runtime_error.
//
// write_packed() writes a trace in the packed form: blocks are named by an allocation-info id
// (kind, size, stack) instead of their address, and the stream is deflate-compressed, which
// makes traces several times smaller than raw ones.
//
//   memkit::report::trace t = memkit::report::read_trace("prog.mktrace");
//   if (t.damage) std::cerr << "damaged at byte " << t.damage->offset << '\n';
//   for (const auto& e : t.events) ...
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace memkit::report {

struct module_info {
    std::uint64_t bias = 0; ///< load bias: file address = runtime address - bias
    std::uint64_t lo = 0;   ///< lowest mapped address
    std::uint64_t hi = 0;   ///< one past the highest mapped address
    std::string path;
};

/// One allocation or deallocation, in the order the program made them. A free carries the
/// size, stack and kind of the block it releases, unless the trace never saw that block
/// allocated (known == false).
struct event {
    std::uint64_t size = 0;
    std::uint64_t time_us = 0;   ///< since the start of the trace
    std::uint32_t stack = 0;     ///< 0: no stack
    std::uint8_t alloc_kind = 0; ///< memkit::track::alloc_kind of the block
    std::uint8_t free_kind = 0;  ///< memkit::track::free_kind, frees only
    bool is_alloc = false;
    bool known = true;
};

struct damage_info {
    std::uint64_t offset = 0;     ///< byte offset of the first thing that could not be decoded
    bool in_decompressed = false; ///< offset counts bytes of the decompressed stream
    std::string reason;
};

struct trace {
    std::string path;
    std::uint64_t file_size = 0;
    bool packed = false;
    std::uint64_t version = 0;
    std::uint64_t pid = 0;
    std::uint64_t ppid = 0;
    std::uint64_t start_unix_us = 0;
    std::string executable;
    std::string command_line;

    std::vector<module_info> modules;               ///< in the order they were recorded
    std::vector<std::vector<std::uint64_t>> stacks; ///< by id; stacks[0] is empty
    std::vector<event> events;

    bool complete = false;       ///< an end record was read
    std::uint8_t end_reason = 0; ///< memkit::track::end_reason, when complete
    std::uint64_t end_value = 0; ///< exit status or signal, when complete
    std::uint64_t duration_us = 0;
    std::optional<damage_info> damage;
};

/// Reads the trace at path; throws std::runtime_error when it cannot be opened or is not a
/// memkit trace.
[[nodiscard]] trace read_trace(const std::string& path);

/// Decodes a trace held in memory (path only names it in messages).
[[nodiscard]] trace decode_trace(const std::vector<unsigned char>& bytes, const std::string& path);

/// True when this build can write packed traces (zlib was found).
[[nodiscard]] bool can_pack();

/// Writes t to path in the packed form; throws std::runtime_error on failure.
void write_packed(const trace& t, const std::string& path);

} // namespace memkit::report
