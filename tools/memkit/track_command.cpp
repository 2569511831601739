// `memkit track [-o FILE] -- PROGRAM ARGS...`: runs PROGRAM with libmemkit_track.so preloaded,
// so that every allocation it makes is recorded to FILE (a child process it forks or executes
// writes FILE.<pid>), and exits with the program's exit status (128 + N when signal N killed
// it, 127 when the program cannot be found, 126 when it cannot be executed, as a shell does).
// The output path is checked before the program starts.
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.hpp"
#include "report/trace_reader.hpp"

#ifndef MEMKIT_TRACK_INSTALL_PATH
#define MEMKIT_TRACK_INSTALL_PATH ""
#endif

namespace memkit::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* library_name = "libmemkit_track.so";

struct track_options {
    std::string output;
    std::string library;
    std::vector<std::string> program;
    bool raw = false;
};

// The preload library: --library, $MEMKIT_TRACK_LIBRARY, next to this executable, ../lib*/
// relative to it (an installed tree), then the configured install path.
std::string find_library(const std::string& given) {
    if (!given.empty()) return given;
    if (const char* env = std::getenv("MEMKIT_TRACK_LIBRARY"); env != nullptr && *env != '\0')
        return env;
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const fs::path dir = self.parent_path();
        for (const fs::path& p : {dir / library_name, dir / ".." / "lib" / library_name,
                                  dir / ".." / "lib64" / library_name})
            if (fs::is_regular_file(p, ec)) return p.lexically_normal().string();
    }
    if (fs::is_regular_file(MEMKIT_TRACK_INSTALL_PATH, ec)) return MEMKIT_TRACK_INSTALL_PATH;
    return {};
}

std::string signal_name(int sig) {
    const char* d = strsignal(sig);
    return d != nullptr ? fmt::format("signal {} ({})", sig, d) : fmt::format("signal {}", sig);
}

// The traces of the child processes: TRACE.<pid>, and TRACE.<pid>.<n> for the programs a
// process went on to execute.
std::vector<fs::path> child_traces(const fs::path& trace) {
    std::vector<fs::path> found;
    std::error_code ec;
    const std::string prefix = trace.filename().string() + ".";
    for (const auto& e : fs::directory_iterator(trace.parent_path(), ec)) {
        const std::string name = e.path().filename().string();
        if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
            name.find_first_not_of("0123456789.", prefix.size()) == std::string::npos &&
            name.back() != '.' && name.find(".packing") == std::string::npos)
            found.push_back(e.path());
    }
    return found;
}

// Rewrites a raw trace in the packed form (several times smaller); a damaged trace stays raw, so
// that `memkit report` can still say where the damage is. Returns false when it left the file.
bool pack(const fs::path& path) {
    try {
        const report::trace t = report::read_trace(path.string());
        if (t.packed) return true;
        if (t.damage) {
            fmt::print(stderr, "memkit track: {} is damaged at byte {} ({}); left unpacked\n",
                       path.string(), t.damage->offset, t.damage->reason);
            return false;
        }
        const std::string tmp = path.string() + ".packing";
        report::write_packed(t, tmp);
        fs::rename(tmp, path);
        return true;
    } catch (const std::exception& e) {
        fmt::print(stderr, "memkit track: cannot pack {}: {}; left unpacked\n", path.string(),
                   e.what());
        return false;
    }
}

int run_track(const track_options& opts) {
    if (opts.program.empty()) {
        fmt::print(stderr,
                   "memkit track: no program given (memkit track [-o FILE] -- PROGRAM ARGS...)\n");
        return 2;
    }
    const std::string library = find_library(opts.library);
    if (library.empty() || access(library.c_str(), R_OK) != 0) {
        fmt::print(stderr,
                   "memkit track: cannot find {} (looked next to the memkit executable and in "
                   "'{}'); pass --library or set MEMKIT_TRACK_LIBRARY\n",
                   library.empty() ? library_name : library, MEMKIT_TRACK_INSTALL_PATH);
        return 2;
    }
    const std::string program_base = fs::path(opts.program.front()).filename().string();
    std::string output = opts.output.empty()
                             ? fmt::format("memkit.{}.{}.mktrace", program_base, getpid())
                             : opts.output;
    std::error_code ec;
    const fs::path abs_output = fs::absolute(output, ec);
    if (!ec) output = abs_output.string(); // children that chdir still find it

    // Fail before the program starts rather than after it has run for an hour.
    const int probe = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (probe < 0) {
        fmt::print(stderr, "memkit track: cannot write the trace file '{}': {}\n", output,
                   std::strerror(errno));
        return 2;
    }
    ::close(probe);

    std::vector<char*> argv;
    for (const std::string& a : opts.program) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::string preload = library;
    if (const char* old = std::getenv("LD_PRELOAD"); old != nullptr && *old != '\0')
        preload += fmt::format(":{}", old);

    // Like a shell running a foreground job: Ctrl-C goes to the program, and memkit stays to
    // report how it ended.
    struct sigaction ignore {};
    struct sigaction old_int {};
    struct sigaction old_quit {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGINT, &ignore, &old_int);
    sigaction(SIGQUIT, &ignore, &old_quit);

    std::fflush(nullptr);
    const pid_t child = fork();
    if (child < 0) {
        fmt::print(stderr, "memkit track: fork: {}\n", std::strerror(errno));
        return 2;
    }
    if (child == 0) {
        sigaction(SIGINT, &old_int, nullptr);
        sigaction(SIGQUIT, &old_quit, nullptr);
        setenv("LD_PRELOAD", preload.c_str(), 1);
        setenv("MEMKIT_TRACK_OUTPUT", output.c_str(), 1);
        setenv("MEMKIT_TRACK_ROOT_PID", std::to_string(getpid()).c_str(), 1);
        execvp(argv[0], argv.data());
        const int err = errno;
        if (err == ENOENT)
            fmt::print(stderr, "memkit track: {}: command not found\n", opts.program.front());
        else fmt::print(stderr, "memkit track: {}: {}\n", opts.program.front(), std::strerror(err));
        std::fflush(stderr);
        _exit(err == ENOENT ? 127 : 126);
    }

    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) {
            fmt::print(stderr, "memkit track: waitpid: {}\n", std::strerror(errno));
            return 2;
        }
    }
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);

    int code = 0;
    if (WIFEXITED(status)) {
        code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        code = 128 + WTERMSIG(status);
        fmt::print(stderr, "memkit track: {} was killed by {}\n", opts.program.front(),
                   signal_name(WTERMSIG(status)));
    }

    const auto size = fs::file_size(output, ec);
    if (ec || size == 0) {
        if (code == 126 || code == 127) {
            fs::remove(output, ec); // the program never started
        } else {
            fmt::print(stderr,
                       "memkit track: {} wrote no trace (statically linked, setuid, or it "
                       "overrode LD_PRELOAD)\n",
                       opts.program.front());
        }
        return code;
    }
    const std::vector<fs::path> children = child_traces(output);
    std::uintmax_t packed_size = size;
    if (!opts.raw && report::can_pack()) {
        pack(output);
        for (const fs::path& c : children) pack(c);
        packed_size = fs::file_size(output, ec);
    }
    fmt::print(stderr, "memkit track: trace in {} ({} bytes{}){}; see: memkit report {}\n", output,
               packed_size,
               packed_size != size ? fmt::format(", {} before packing", size) : std::string{},
               children.empty() ? std::string{}
                                : fmt::format(", and {} more from child processes in {}.<pid>",
                                              children.size(), output),
               output);
    return code;
}

} // namespace

command add_track_command(CLI::App& app) {
    auto opts = std::make_shared<track_options>();
    CLI::App* sub = app.add_subcommand(
        "track", "Run a program with every heap allocation recorded (LD_PRELOAD of "
                 "libmemkit_track.so); read the trace with `memkit report`");
    sub->add_option("-o,--output", opts->output,
                    "The trace file (default memkit.PROGRAM.PID.mktrace); child processes "
                    "write FILE.<pid>")
        ->type_name("FILE");
    sub->add_option("--library", opts->library,
                    "The preload library (default: next to memkit, or installed)")
        ->type_name("PATH");
    sub->add_flag("--raw", opts->raw,
                  "Leave the trace as the program wrote it (raw) instead of packing it");
    sub->add_option("program", opts->program,
                    "The program and its arguments; put -- before them when any of them starts "
                    "with '-'")
        ->type_name("PROGRAM ARGS...")
        ->expected(-1);
    return {sub, [opts] { return run_track(*opts); }};
}

} // namespace memkit::cli
