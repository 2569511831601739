// Allocates, leaks two 40-byte blocks (leak_40), then crashes with abort(): the trace must still
// be readable up to the crash.
#include <cstdlib>

namespace {

void* volatile sink = nullptr;

[[gnu::noinline]] void leak_40() { sink = std::malloc(40); }

} // namespace

int main() {
    for (int i = 0; i < 500; ++i) {
        sink = std::malloc(64);
        std::free(sink);
    }
    leak_40();
    leak_40();
    sink = nullptr;
    std::abort();
}
