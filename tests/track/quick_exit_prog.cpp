// Leaks three 10-byte blocks (leak_10) after 1000 freed allocations, then ends with _exit(3):
// no destructors and no atexit handlers run.
#include <cstdlib>
#include <unistd.h>

namespace {

void* volatile sink = nullptr;

[[gnu::noinline]] void leak_10() { sink = std::malloc(10); }

} // namespace

int main() {
    for (int i = 0; i < 1000; ++i) {
        sink = std::malloc(32);
        std::free(sink);
    }
    for (int i = 0; i < 3; ++i) leak_10();
    sink = nullptr;
    _exit(3);
}
