// Eight threads allocate and free concurrently, freeing each other's blocks (a shared array of
// slots), and each leaks exactly one 64-byte block from leak_64(): 8 leaks, 512 bytes.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr int thread_count = 8;
constexpr int iterations = 20000;
constexpr int slot_count = 256;

std::atomic<void*> slots[slot_count];
void* volatile sink = nullptr;

[[gnu::noinline]] void leak_64() { sink = std::malloc(64); }

void work(unsigned seed) {
    for (int i = 0; i < iterations; ++i) {
        seed = seed * 1103515245u + 12345u;
        void* p = std::malloc(16 + (seed >> 16) % 512);
        // The block this replaces was allocated by any of the threads.
        std::free(slots[(seed >> 8) % slot_count].exchange(p));
    }
    leak_64();
}

} // namespace

int main() {
    std::vector<std::thread> threads;
    for (int t = 0; t < thread_count; ++t)
        threads.emplace_back(work, 17u + static_cast<unsigned>(t));
    for (std::thread& t : threads) t.join();
    for (auto& s : slots) std::free(s.exchange(nullptr));
    sink = nullptr;
    std::fprintf(stderr, "threads_prog: %d leaks of 64 bytes\n", thread_count);
    return 0;
}
