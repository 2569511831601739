// A program with exactly three leaks (100, 200 and 300 bytes, from three functions) after
// exercising every allocation function the tracker interposes, each with its matching release.
// Output goes to unbuffered stderr, so that stdio allocates no buffer that would stay live.
// --no-pvalloc skips pvalloc, which valgrind does not support.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <malloc.h>

namespace {

// volatile: the compiler may not elide an allocation whose pointer escapes through it.
void* volatile sink = nullptr;

[[gnu::noinline]] void leak_100() { sink = std::malloc(100); }
[[gnu::noinline]] void leak_200() { sink = std::calloc(2, 100); }
[[gnu::noinline]] void leak_300() { sink = new char[300]; }

[[gnu::noinline]] int exercise(bool use_pvalloc) {
    int failures = 0;
    auto check = [&](const void* p) {
        sink = const_cast<void*>(p);
        if (p == nullptr) ++failures;
    };
    void* p = std::malloc(10);
    check(p);
    p = std::realloc(p, 1000);
    check(p);
    if (malloc_usable_size(p) < 1000) ++failures;
    std::free(p);
    p = reallocarray(nullptr, 10, 10);
    check(p);
    std::free(p);
    void* a = nullptr;
    if (posix_memalign(&a, 64, 64) != 0) ++failures;
    check(a);
    std::free(a);
    a = aligned_alloc(128, 256);
    check(a);
    std::free(a);
    a = memalign(64, 100);
    check(a);
    std::free(a);
    a = valloc(10);
    check(a);
    std::free(a);
    if (use_pvalloc) {
        a = pvalloc(10);
        check(a);
        std::free(a);
    }
    int* i = new int(1);
    check(i);
    delete i;
    int* arr = new int[10];
    check(arr);
    delete[] arr;
    struct alignas(64) over {
        char c[64];
    };
    over* o = new over;
    check(o);
    delete o;
    over* oa = new over[3];
    check(oa);
    delete[] oa;
    int* nt = new (std::nothrow) int(2);
    check(nt);
    delete nt;
    std::free(std::calloc(0, 0));
    std::free(nullptr);
    return failures;
}

} // namespace

int main(int argc, char** argv) {
    const int failures = exercise(!(argc > 1 && std::strcmp(argv[1], "--no-pvalloc") == 0));
    leak_100();
    leak_200();
    leak_300();
    sink = nullptr;
    std::fprintf(stderr, "leaks_prog: 3 leaks (600 bytes), %d failures\n", failures);
    return failures == 0 ? 0 : 1;
}
