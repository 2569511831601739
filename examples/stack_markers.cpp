// Nested temporary work on a stack allocator.
//
// Recursive algorithms need scratch space whose lifetime nests exactly like the calls: the
// buffer of an inner call dies before the buffer of its caller. A stack allocator serves that in
// O(1) from one fixed buffer, and a marker taken on entry frees everything the call (and its
// callees) allocated with a single unwind on exit. Here a merge sort takes its merge buffers
// from the stack; afterwards the stack is empty again and its peak shows the real scratch need.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include <memkit/alloc/stack.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "stack_markers: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

void merge_sort(std::span<int> v, memkit::stack_allocator& scratch) {
    if (v.size() < 2) return;
    const auto entry = scratch.mark(); // everything this call allocates dies with it

    const std::size_t half = v.size() / 2;
    merge_sort(v.first(half), scratch);
    merge_sort(v.subspan(half), scratch);

    auto* merged = static_cast<int*>(scratch.allocate(v.size() * sizeof(int), alignof(int)));
    std::merge(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(half),
               v.begin() + static_cast<std::ptrdiff_t>(half), v.end(), merged);
    std::memcpy(v.data(), merged, v.size() * sizeof(int));

    scratch.unwind(entry);
}

// Blocks can also be freed one by one, newest first, with the size they were allocated with.
void lifo_frees(memkit::stack_allocator& scratch) {
    void* outer = scratch.allocate(256, 64);
    void* inner = scratch.allocate(32);
    require(memkit::is_aligned(outer, 64), "the stack honours the requested alignment");
    scratch.deallocate(inner, 32);
    scratch.deallocate(outer, 256, 64);
}

} // namespace

int main() {
    std::vector<int> data(10000);
    std::mt19937 rng{42};
    for (int& x : data) x = static_cast<int>(rng() % 100000);

    memkit::stack_allocator scratch{128 * 1024};
    merge_sort(data, scratch);

    const memkit::allocator_stats s = scratch.stats();
    std::printf("sorted %zu ints: %llu scratch buffers, peak %zu bytes of %zu\n", data.size(),
                static_cast<unsigned long long>(s.allocations), s.peak_bytes, scratch.capacity());
    require(std::is_sorted(data.begin(), data.end()), "the data is sorted");
    require(scratch.used() == 0 && s.bytes_in_use == 0, "every marker was unwound");
    require(s.allocations == s.deallocations, "unwind counts the blocks it frees");
    // Each call takes its merge buffer only after both halves have unwound theirs, so at no
    // time do two buffers coexist: the peak is the top-level buffer of n ints.
    require(s.peak_bytes == data.size() * sizeof(int), "peak scratch is one buffer of n ints");

    lifo_frees(scratch);
    require(scratch.used() == 0, "LIFO frees restore the exact previous top");
    std::puts("stack_markers: ok");
    return 0;
}
