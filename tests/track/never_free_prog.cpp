// Never frees: 10000 blocks of 16 bytes from leak_16 (one stack), 160000 bytes.
#include <cstdlib>

namespace {

void* volatile sink = nullptr;

[[gnu::noinline]] void leak_16() { sink = std::malloc(16); }

} // namespace

int main() {
    for (int i = 0; i < 10000; ++i) leak_16();
    sink = nullptr;
    return 0;
}
