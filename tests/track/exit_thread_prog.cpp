// A program that ends by calling exit(5) from a second thread while main waits for it: two
// leaks, 123 bytes from main (leak_main) and 77 from the thread (leak_thread).
#include <cstdlib>
#include <thread>

namespace {

void* volatile sink = nullptr;

[[gnu::noinline]] void leak_main() { sink = std::malloc(123); }
[[gnu::noinline]] void leak_thread() { sink = std::malloc(77); }

} // namespace

int main() {
    leak_main();
    std::thread t([] {
        leak_thread();
        sink = nullptr;
        std::exit(5);
    });
    t.join();
    return 0; // not reached
}
