// A workload for measuring tracking overhead: N (argument 1, default 1000000) allocations of
// 8 to 1031 bytes, each replacing one of 4096 live blocks, all freed at the end (no leaks).
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
    const long n = argc > 1 ? std::atol(argv[1]) : 1000000;
    constexpr int live = 4096;
    static void* slots[live];
    unsigned seed = 1;
    for (long i = 0; i < n; ++i) {
        seed = seed * 1103515245u + 12345u;
        const unsigned s = (seed >> 8) % live;
        std::free(slots[s]);
        slots[s] = std::malloc(8 + (seed >> 16) % 1024);
    }
    for (void*& p : slots) {
        std::free(p);
        p = nullptr;
    }
    std::fprintf(stderr, "churn_prog: %ld allocations\n", n);
    return 0;
}
