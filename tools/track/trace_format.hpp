// tools/track/trace_format.hpp - the binary trace written by libmemkit_track.so and read by
// `memkit report`.
//
// A trace is one file per process, in one of two flavors that differ in their magic:
// raw, as libmemkit_track.so writes it while the program runs (cheap to write, robust to crashes),
// and packed, into which `memkit track` converts it once the program has ended (several times
// smaller). The raw flavor is a fixed header and a stream of records, each a tag byte followed by
// LEB128 varints (unsigned, 7 bits per byte, low bits first). Signed quantities are zigzag-encoded
// first. Records are written in the order the events happened in the process: the writer serializes
// them under one lock, so an address freed by one thread and returned by malloc to another always
// appears as free-then-alloc.
//
//   header   magic "MKTRACE\x01" (raw; 8 bytes), then varints: version, pid, ppid,
//            start time (microseconds since the Unix epoch), executable path (string),
//            command line (string, arguments separated by spaces, at most 4 KiB)
//   string   varint length, then that many bytes (no terminator)
//   time     tag 0x01, delta: microseconds since the previous time record (or the start).
//            Written only when the clock moved, so most events carry no time of their own.
//   stack    tag 0x02, id, frame count n, then n zigzag deltas: frame[i] - frame[i-1]
//            (frame[-1] = 0). Frames are return addresses, innermost first, with the frames of
//            the tracking library removed. Each distinct stack is written once, before its
//            first use. Id 0 means "no stack".
//   module   tag 0x03, load bias, lowest and one-past-highest mapped address, path (string):
//            a loaded ELF object, so that an address can be symbolized later as
//            (path, address - bias). Written at start and when a stack holds an address no
//            known module covers (after dlopen).
//   alloc    tag 0x10 + alloc_kind, zigzag(pointer - previous pointer), size, stack id.
//            The "previous pointer" is the pointer of the previous alloc or free record.
//   free     tag 0x20 + free_kind, zigzag(pointer - previous pointer). free(nullptr) is not
//            recorded. realloc is a free (free_kind::realloc) followed by an alloc.
//   end      tag 0x7f, end_reason, value (exit status or signal number), then the delta in
//            microseconds since the previous time record. Absent when the process was killed,
//            or ended with a direct exit_group system call.
//
// The packed flavor is the magic "MKTRACE\x02" followed by one zlib (RFC 1950) stream holding
// the same header fields and records, except that blocks are named by an allocation-info id
// instead of an address - the way heaptrack does it, which removes the least compressible part:
//   info     tag 0x04, alloc_kind (1 byte), size, stack id: defines the next info id (from 1).
//   alloc    tag 0x10, info id.
//   free     tag 0x20 + free_kind, info id of the block released (0: a block the trace never
//            saw allocated).
//
// Loss: the writer buffers trace_buffer_size bytes. exit(), return from main, _exit(), _Exit(),
// execve(), execv(), execvp(), execvpe(), fexecve(),
// abort() and the fatal signals SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (while the program
// keeps the default action) flush the buffer; SIGKILL or a raw exit_group system call loses at
// most one buffer of events.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memkit::track {

inline constexpr unsigned char trace_magic[8] = {'M', 'K', 'T', 'R', 'A', 'C', 'E', 0x01};
inline constexpr unsigned char packed_trace_magic[8] = {'M', 'K', 'T', 'R', 'A', 'C', 'E', 0x02};
inline constexpr std::uint64_t trace_version = 1;
inline constexpr std::size_t trace_buffer_size = 64 * 1024;
/// The most frames kept per allocation (innermost first).
inline constexpr std::size_t max_frames = 24;

enum class tag : std::uint8_t {
    time = 0x01,
    stack = 0x02,
    module = 0x03,
    info = 0x04,  ///< packed traces only
    alloc = 0x10, ///< + alloc_kind
    free = 0x20,  ///< + free_kind
    end = 0x7f,
};

enum class alloc_kind : std::uint8_t {
    malloc = 0,
    calloc,
    realloc,
    reallocarray,
    posix_memalign,
    aligned_alloc,
    memalign,
    valloc,
    pvalloc,
    op_new,
    op_new_array,
    op_new_aligned,
    op_new_array_aligned,
    count_ // not a kind
};

enum class free_kind : std::uint8_t {
    free = 0,
    realloc,
    op_delete,
    op_delete_array,
    count_ // not a kind
};

enum class end_reason : std::uint8_t {
    exit = 0,   ///< exit() or return from main; value: unknown (0)
    quick_exit, ///< _exit() / _Exit(); value: the status
    signal,     ///< a fatal signal; value: the signal number
    exec,       ///< execve() & co. replaced the program; the new one writes its own file
    count_      // not a reason
};

/// The longest encoding of a 64-bit varint.
inline constexpr std::size_t max_varint_size = 10;

inline std::uint64_t zigzag(std::int64_t v) noexcept {
    return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}

inline std::int64_t unzigzag(std::uint64_t v) noexcept {
    return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1);
}

/// Writes v at out (room for max_varint_size bytes) and returns the end of what it wrote.
inline unsigned char* put_varint(unsigned char* out, std::uint64_t v) noexcept {
    while (v >= 0x80) {
        *out++ = static_cast<unsigned char>(v | 0x80);
        v >>= 7;
    }
    *out++ = static_cast<unsigned char>(v);
    return out;
}

/// Reads a varint from [*pos, end). Returns false, leaving *pos alone, when the input ends
/// before the varint does or the varint is longer than max_varint_size bytes.
inline bool get_varint(const unsigned char** pos, const unsigned char* end,
                       std::uint64_t* v) noexcept {
    std::uint64_t r = 0;
    const unsigned char* p = *pos;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (p == end) return false;
        const unsigned char b = *p++;
        r |= static_cast<std::uint64_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *pos = p;
            *v = r;
            return true;
        }
    }
    return false;
}

} // namespace memkit::track
