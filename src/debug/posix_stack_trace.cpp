// memkit::stack_trace (POSIX/ELF part): capture with the libgcc_s unwinder or glibc's
// backtrace(), symbolization with dladdr, the ELF symbol tables and binutils' addr2line.
#include <dlfcn.h>
#include <elf.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <unwind.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "memkit/core/platform.hpp"
#include "memkit/debug/stack_trace.hpp"

extern char** environ;

namespace memkit::stack_trace {
namespace {

struct unwind_state {
    void** out;
    std::size_t capacity;
    std::size_t count;
    std::size_t skip; // caller frames still to drop
    void* anchor;     // return address into capture()'s caller: frame 0
    bool found_anchor;
};

_Unwind_Reason_Code on_frame(struct _Unwind_Context* ctx, void* arg) {
    auto* st = static_cast<unwind_state*>(arg);
    const _Unwind_Ptr ip = _Unwind_GetIP(ctx);
    if (ip == 0) return _URC_END_OF_STACK;
    // Frames up to capture() itself (the unwinder's, and any a sanitizer adds) come first.
    if (!st->found_anchor) {
        if (reinterpret_cast<void*>(ip) != st->anchor) return _URC_NO_REASON;
        st->found_anchor = true;
    }
    if (st->skip > 0) {
        --st->skip;
        return _URC_NO_REASON;
    }
    st->out[st->count++] = reinterpret_cast<void*>(ip);
    return st->count == st->capacity ? _URC_END_OF_STACK : _URC_NO_REASON;
}

// Frames are counted from the caller's, recognised by its return address, so that the result
// does not depend on how many frames the unwinder or a sanitizer interceptor adds below it.
// noinline keeps that return address meaningful.
std::size_t unwind_capture(std::span<void*> frames, std::size_t skip, void* anchor) noexcept {
    unwind_state st{frames.data(), frames.size(), 0, skip, anchor, false};
    _Unwind_Backtrace(&on_frame, &st);
    return st.count;
}

} // namespace

MEMKIT_NOINLINE std::size_t capture(std::span<void*> frames, std::size_t skip) noexcept {
    if (frames.empty()) return 0;
    const std::size_t n = unwind_capture(frames, skip, __builtin_return_address(0));
    asm volatile("" ::: "memory"); // not a tail call: the anchor frame must stay below
    return n;
}

MEMKIT_NOINLINE std::size_t capture_with_backtrace(std::span<void*> frames,
                                                   std::size_t skip) noexcept {
    if (frames.empty()) return 0;
    // backtrace() needs room for the frames below the anchor too; a fixed stack array keeps
    // this allocation-free.
    std::array<void*, max_depth + 16> buf;
    void* const anchor = __builtin_return_address(0);
    const std::size_t want = std::min(frames.size() + skip + 8, buf.size());
    const int got = ::backtrace(buf.data(), static_cast<int>(want));
    if (got <= 0) return 0;
    const auto end = buf.begin() + got;
    auto first = std::find(buf.begin(), end, anchor);
    if (first == end) return 0;
    if (static_cast<std::size_t>(end - first) <= skip) return 0;
    first += static_cast<std::ptrdiff_t>(skip);
    const std::size_t n = std::min(static_cast<std::size_t>(end - first), frames.size());
    std::copy_n(first, n, frames.begin());
    return n;
}

namespace {

std::string self_exe() {
    std::array<char, PATH_MAX> buf{};
    const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
    return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string();
}

// The function symbols (STT_FUNC) of an ELF file, from .symtab (every function, unless the
// file is stripped) or else .dynsym (exported ones): names for the executable's own and static
// functions without any debug information. Values are file addresses, like module_offset.
class elf_functions {
public:
    explicit elf_functions(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return;
        struct stat sb {};
        if (::fstat(fd, &sb) != 0 || sb.st_size < static_cast<off_t>(sizeof(ElfW(Ehdr)))) {
            ::close(fd);
            return;
        }
        const auto size = static_cast<std::size_t>(sb.st_size);
        void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        ::close(fd);
        if (map == MAP_FAILED) return;
        read(static_cast<const unsigned char*>(map), size);
        ::munmap(map, size);
        std::sort(syms_.begin(), syms_.end(),
                  [](const sym& a, const sym& b) { return a.value < b.value; });
    }

    /// The mangled name of the function containing `addr`, or "".
    [[nodiscard]] std::string lookup(std::uintptr_t addr) const {
        auto it = std::upper_bound(syms_.begin(), syms_.end(), addr,
                                   [](std::uintptr_t a, const sym& s) { return a < s.value; });
        while (it != syms_.begin()) {
            --it;
            if (addr < it->value + it->size) return it->name;
            if (addr - it->value > (std::uintptr_t{1} << 24)) break; // far below: give up
        }
        return {};
    }

private:
    struct sym {
        std::uintptr_t value;
        std::uintptr_t size;
        std::string name;
    };

    void read(const unsigned char* base, std::size_t size) {
        ElfW(Ehdr) eh;
        std::memcpy(&eh, base, sizeof eh);
        if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_shentsize != sizeof(ElfW(Shdr)))
            return;
        if (eh.e_shoff == 0 || eh.e_shoff + std::size_t{eh.e_shnum} * sizeof(ElfW(Shdr)) > size)
            return;
        std::vector<ElfW(Shdr)> sections(eh.e_shnum);
        std::memcpy(sections.data(), base + eh.e_shoff, sections.size() * sizeof(ElfW(Shdr)));
        for (const unsigned type : {SHT_SYMTAB, SHT_DYNSYM}) {
            for (const ElfW(Shdr) & sh : sections) {
                if (sh.sh_type != type || sh.sh_link >= sections.size()) continue;
                const ElfW(Shdr)& strtab = sections[sh.sh_link];
                if (sh.sh_offset + sh.sh_size > size || strtab.sh_offset + strtab.sh_size > size ||
                    sh.sh_entsize != sizeof(ElfW(Sym)))
                    continue;
                const std::size_t n = sh.sh_size / sizeof(ElfW(Sym));
                for (std::size_t i = 0; i < n; ++i) {
                    ElfW(Sym) sy;
                    std::memcpy(&sy, base + sh.sh_offset + i * sizeof sy, sizeof sy);
                    if (ELF64_ST_TYPE(sy.st_info) != STT_FUNC || sy.st_size == 0 ||
                        sy.st_name >= strtab.sh_size)
                        continue;
                    const char* name =
                        reinterpret_cast<const char*>(base + strtab.sh_offset + sy.st_name);
                    const std::size_t max = strtab.sh_size - sy.st_name;
                    syms_.push_back(
                        {sy.st_value, sy.st_size, std::string(name, strnlen(name, max))});
                }
            }
            if (!syms_.empty()) return; // .symtab found: .dynsym adds nothing
        }
    }

    std::vector<sym> syms_;
};

// "file:line" or "file:line (discriminator N)"; "??" and line 0 or "?" mean unknown.
void parse_location(std::string loc, inlined_call& c) {
    if (const auto d = loc.find(" (discriminator"); d != std::string::npos) loc.resize(d);
    const auto colon = loc.rfind(':');
    if (colon == std::string::npos) return;
    std::string file = loc.substr(0, colon);
    const std::string num = loc.substr(colon + 1);
    if (file != "??" && !file.empty()) c.file = std::move(file);
    if (!num.empty() && num[0] >= '1' && num[0] <= '9')
        c.line = static_cast<unsigned>(std::strtoul(num.c_str(), nullptr, 10));
}

// Runs `addr2line -C -f -i -a -e module ADDR...` and fills function/file/line of the frames at
// `indices`. The addresses go on the command line in chunks; posix_spawnp avoids a shell, so a
// module path needs no quoting.
void run_addr2line(const std::string& module, const std::vector<std::size_t>& indices,
                   std::vector<frame>& frames) {
    constexpr std::size_t chunk = 256;
    for (std::size_t begin = 0; begin < indices.size(); begin += chunk) {
        const std::size_t end = std::min(indices.size(), begin + chunk);
        std::vector<std::string> args{"addr2line", "-C", "-f", "-i", "-a", "-e", module};
        for (std::size_t i = begin; i < end; ++i) {
            char hex[32];
            std::snprintf(hex, sizeof hex, "0x%jx",
                          static_cast<std::uintmax_t>(frames[indices[i]].module_offset));
            args.emplace_back(hex);
        }
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);

        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) return;
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        pid_t pid = -1;
        const int rc = ::posix_spawnp(&pid, "addr2line", &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(fds[1]);
        if (rc != 0) {
            ::close(fds[0]);
            return; // no addr2line on PATH: dladdr's answers stay
        }
        std::string output;
        std::array<char, 4096> buf;
        for (;;) {
            const ssize_t n = ::read(fds[0], buf.data(), buf.size());
            if (n > 0) output.append(buf.data(), static_cast<std::size_t>(n));
            else if (n < 0 && errno == EINTR) continue;
            else break;
        }
        ::close(fds[0]);
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}

        // Output per address (-a -i): "0xADDR", then one "function" / "file:line" pair per
        // inlined call, innermost first, ending with the function the code physically lies in.
        std::vector<std::string> lines;
        std::size_t pos = 0;
        while (pos < output.size()) {
            const std::size_t nl = output.find('\n', pos);
            const std::size_t stop = nl == std::string::npos ? output.size() : nl;
            lines.push_back(output.substr(pos, stop - pos));
            pos = stop + 1;
        }
        std::size_t li = 0;
        for (std::size_t i = begin; i < end && li < lines.size(); ++i) {
            if (lines[li].rfind("0x", 0) != 0) break; // out of step: stop rather than mislabel
            ++li;
            std::vector<inlined_call> chain;
            while (li + 1 < lines.size() && lines[li].rfind("0x", 0) != 0) {
                inlined_call c;
                if (lines[li] != "??") c.function = lines[li];
                parse_location(lines[li + 1], c);
                chain.push_back(std::move(c));
                li += 2;
            }
            if (chain.empty()) continue;
            frame& f = frames[indices[i]];
            inlined_call& outer = chain.back();
            // The symbol table's name is kept when there is one: for a function with inlined
            // calls addr2line gives only the DWARF short name ("TestBody", not "A::TestBody()").
            if (f.function.empty() && !outer.function.empty())
                f.function = std::move(outer.function);
            f.file = std::move(outer.file);
            f.line = outer.line;
            chain.pop_back();
            f.inlined = std::move(chain);
        }
    }
}

} // namespace

std::vector<frame> symbolize(std::span<void* const> addresses, const symbolize_options& options) {
    std::vector<frame> out(addresses.size());
    std::map<std::string, std::vector<std::size_t>> by_module;
    std::string exe;
    for (std::size_t i = 0; i < addresses.size(); ++i) {
        frame& f = out[i];
        f.address = addresses[i];
        if (f.address == nullptr) continue;
        // A return address may be one past the end of a function that ends in a call
        // (noreturn callees): look up the call instruction instead.
        const auto pc = reinterpret_cast<std::uintptr_t>(f.address) - 1;
        Dl_info info{};
        if (::dladdr(reinterpret_cast<void*>(pc), &info) == 0 || info.dli_fbase == nullptr)
            continue;
        const auto base = reinterpret_cast<std::uintptr_t>(info.dli_fbase);
        // addr2line wants file addresses: relative to the load base for PIE executables and
        // shared objects (ET_DYN), absolute for fixed-address executables (ET_EXEC).
        const auto* ehdr = static_cast<const ElfW(Ehdr)*>(info.dli_fbase);
        f.module_offset = ehdr->e_type == ET_EXEC ? pc : pc - base;
        // glibc names the main program "" (or argv[0]); /proc/self/exe is its real path.
        if (info.dli_fname == nullptr || info.dli_fname[0] == '\0' ||
            std::strchr(info.dli_fname, '/') == nullptr) {
            if (exe.empty()) exe = self_exe();
            f.module = exe;
        } else {
            f.module = info.dli_fname;
        }
        if (info.dli_sname != nullptr) f.function = demangle(info.dli_sname);
        if (!f.module.empty()) by_module[f.module].push_back(i);
    }
    for (auto& [module, indices] : by_module) {
        const elf_functions symbols(module);
        for (std::size_t i : indices) {
            const std::string name = symbols.lookup(out[i].module_offset);
            if (!name.empty()) out[i].function = demangle(name.c_str());
        }
    }
    if (!options.use_addr2line) return out;
    for (auto& [module, indices] : by_module) {
        // Identical addresses (the same call site in many stacks) are resolved once.
        std::vector<std::size_t> unique;
        std::map<std::uintptr_t, std::size_t> first;
        std::vector<std::pair<std::size_t, std::size_t>> copies; // (to, from)
        for (std::size_t i : indices) {
            auto [it, inserted] = first.emplace(out[i].module_offset, i);
            if (inserted) unique.push_back(i);
            else copies.emplace_back(i, it->second);
        }
        run_addr2line(module, unique, out);
        for (auto [to, from] : copies) {
            out[to].function = out[from].function;
            out[to].file = out[from].file;
            out[to].line = out[from].line;
            out[to].inlined = out[from].inlined;
        }
    }
    return out;
}

} // namespace memkit::stack_trace
