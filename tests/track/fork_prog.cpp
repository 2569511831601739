// Forks: the parent leaks one 100-byte block (leak_parent); the child frees that inherited block
// (a free its own trace never saw allocated), leaks two 50-byte blocks (leak_child) and exits 0.
// The parent exits with the child's status.
#include <cstdio>
#include <cstdlib>
#include <sys/wait.h>
#include <unistd.h>

namespace {

void* volatile sink = nullptr;
void* volatile inherited = nullptr;

[[gnu::noinline]] void leak_parent() { inherited = std::malloc(100); }
[[gnu::noinline]] void leak_child() { sink = std::malloc(50); }

} // namespace

int main() {
    leak_parent();
    const pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        std::free(inherited);
        leak_child();
        leak_child();
        sink = nullptr;
        std::exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 2;
    std::fprintf(stderr, "fork_prog: child %d exited\n", static_cast<int>(pid));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}
