// memkit/debug/stack_trace.hpp - capturing the call stack cheaply, symbolizing it later.
//
// Two steps, kept apart because they cost very different amounts:
//  * capture(frames, skip) writes the return addresses of the calling thread's stack into a
//    caller-provided array. It allocates nothing, takes no lock and makes no system call, so it
//    may run inside an allocator or a malloc interposer (the only cost is walking the frames).
//    It uses the DWARF unwinder of libgcc_s (_Unwind_Backtrace), which reads the .eh_frame unwind
//    tables that every x86-64 and AArch64 object has by default: unlike a frame-pointer walk it
//    is correct in code built with -fomit-frame-pointer. glibc 2.35 and later give the unwinder a
//    lock-free lookup of the unwind tables (_dl_find_object).
//    capture_with_backtrace() does the same through glibc's backtrace(); it is kept for
//    comparison (bench/debug/memory_tracker_bench.cpp measures both; _Unwind_Backtrace is the
//    faster) and because glibc's first call to backtrace() loads libgcc_s with dlopen, which
//    allocates - capture() has no such first-call cost.
//  * symbolize(frames) turns addresses into readable frames, and is meant for the moment a
//    report is printed. dladdr() gives the module (executable or shared object) and the
//    address's offset in it; the module's ELF symbol table (.symtab, read once per module per
//    call; .dynsym when the file is stripped) gives the containing function's name, including
//    the executable's own and static functions, with no debug information needed. When
//    `options.use_addr2line` is set (the default) and binutils' `addr2line` is on PATH, one
//    addr2line process per module (started with posix_spawnp, no shell) adds file:line and the
//    chain of inlined calls from DWARF debug information where the module has it (-g). Without
//    addr2line the result still has names and module+offset, which `addr2line -e MODULE OFFSET`
//    can resolve offline. Names are demangled (abi::__cxa_demangle).
//
// Frame 0 of a capture is the function that called capture(); `skip` drops that many more
// frames. The addresses are return addresses (the instruction after each call): symbolize()
// looks up address - 1 so that file:line names the call, not the next statement.
//
// Complexity: capture O(depth) (about 120 ns per frame on x86-64, 10% less than backtrace());
// symbolize O(frames) plus one addr2line run per module (tens of milliseconds with large debug
// info). Thread-safety: every function is thread-safe. Failure: capture returns the number of
// frames it could read (0 when no unwinder is available); symbolize never throws anything but
// std::bad_alloc - what it cannot resolve stays empty (function "", line 0).
//
//   std::array<void*, 32> buf;
//   std::size_t n = memkit::stack_trace::capture(buf);          // no allocation, no lock
//   std::cerr << memkit::stack_trace::to_string(memkit::stack_trace::symbolize({buf.data(), n}));
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

namespace memkit::stack_trace {

/// The most frames a capture is expected to need; capture() itself has no limit other than the
/// size of the span it is given.
inline constexpr std::size_t max_depth = 128;

/// Writes the return addresses of the calling thread's stack into `frames`, starting `skip`
/// frames above the caller of capture() (skip 0: frames[0] is in the caller). Returns the number
/// written (at most frames.size()). Async-signal-unsafe, but allocation- and lock-free.
std::size_t capture(std::span<void*> frames, std::size_t skip = 0) noexcept;

/// Same contract as capture(), through glibc's backtrace() (whose first call allocates).
std::size_t capture_with_backtrace(std::span<void*> frames, std::size_t skip = 0) noexcept;

/// A call that the compiler inlined into a frame's function (known from DWARF only).
struct inlined_call {
    std::string function; ///< the inlined function
    std::string file;     ///< where the code of the address lies in it
    unsigned line = 0;
};

/// One symbolized frame. function/file/line name the function the code physically lies in and
/// the line in it (for inlined code: the line of the outermost inlined call).
struct frame {
    void* address = nullptr; ///< the captured return address
    std::string function;    ///< demangled function name; empty when unknown
    std::string module;      ///< path of the executable or shared object; empty when unknown
    std::uintptr_t module_offset = 0; ///< address - 1 relative to the module (what addr2line takes)
    std::string file;                 ///< source file from debug information; empty when unknown
    unsigned line = 0;                ///< source line; 0 when unknown
    /// Calls inlined at this address, innermost first (from addr2line -i; empty without it).
    std::vector<inlined_call> inlined;
};

struct symbolize_options {
    /// Run `addr2line` (when it is on PATH) for file:line and inlined calls. Off: no child
    /// process; names from the symbol tables and module+offset only.
    bool use_addr2line = true;
};

/// Resolves `addresses` (as captured) into frames, in the same order. May allocate and start
/// child processes; call it when a report is printed, not on a hot path.
[[nodiscard]] std::vector<frame> symbolize(std::span<void* const> addresses,
                                           const symbolize_options& options = {});

/// Demangles an Itanium C++ ABI symbol name; returns `name` unchanged when it is not one.
[[nodiscard]] std::string demangle(const char* name);

/// One line per frame: "#0 0x55d0c8a1b2c3 in f(int) at f.cpp:12 (prog+0x12c3)", preceded by
/// one "   inlined: g() at g.hpp:3" line per inlined call, innermost first.
[[nodiscard]] std::string to_string(std::span<const frame> frames);
void print(std::ostream& os, std::span<const frame> frames);

} // namespace memkit::stack_trace
