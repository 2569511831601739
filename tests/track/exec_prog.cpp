// Replaces itself with exec: a failed execv first (recording must go on), then one 11-byte
// leak (leak_before_exec) and execv of itself with --after-exec, whose image leaks one 22-byte
// block (leak_after_exec) and exits 0. The first image's trace ends with an exec record; the
// second image (same pid) writes its own trace.
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace {

void* volatile sink = nullptr;

[[gnu::noinline]] void leak_before_exec() { sink = std::malloc(11); }
[[gnu::noinline]] void leak_after_exec() { sink = std::malloc(22); }

} // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--after-exec") == 0) {
        leak_after_exec();
        sink = nullptr;
        return 0;
    }
    char* none[] = {const_cast<char*>("/nonexistent/program"), nullptr};
    if (execv(none[0], none) == 0) return 2; // not reached: fails with ENOENT
    leak_before_exec();
    sink = nullptr;
    char* again[] = {argv[0], const_cast<char*>("--after-exec"), nullptr};
    execv("/proc/self/exe", again);
    return 3; // exec failed
}
