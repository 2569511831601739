// A minimal program that uses memkit from an installed prefix.
#include <cstdio>
#include <memkit/alloc/system.hpp>
#include <memkit/core/error.hpp>

int main() {
    memkit::system_allocator sys;
    void* p = sys.allocate(64, 64);
    sys.deallocate(p, 64, 64);
    try {
        (void)sys.allocate(64, 3);
    } catch (const memkit::invalid_alignment&) {
        std::puts("memkit consumer ok");
        return 0;
    }
    return 1;
}
