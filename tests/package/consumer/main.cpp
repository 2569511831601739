// A minimal program that uses memkit from an installed prefix. It exits non-zero (with a message)
// when any check fails, and prints "memkit consumer ok" only when all pass.
#include <cstdio>
#include <cstring>
#include <memory_resource>
#include <string_view>
#include <vector>

#include <memkit/memkit.hpp>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "consumer check failed: %s\n", what);
        ++failures;
    }
}

} // namespace

int main() {
    // A header-only allocator and a compiled part of the library (the error messages).
    memkit::system_allocator sys;
    void* p = sys.allocate(64, 64);
    check(memkit::is_aligned(p, 64), "system_allocator honours a 64-byte alignment");
    sys.deallocate(p, 64, 64);
    try {
        (void)sys.allocate(64, 3);
        check(false, "a non-power-of-two alignment throws");
    } catch (const memkit::invalid_alignment& e) {
        check(e.alignment() == 3, "invalid_alignment carries the alignment");
        check(std::strstr(e.what(), "memkit::system_allocator") != nullptr,
              "the message names the allocator");
    }

    // An arena behind std::pmr containers: contents survive and the stats count them.
    memkit::arena a;
    memkit::resource r{a};
    std::pmr::vector<int> v{&r};
    for (int i = 0; i < 1000; ++i) v.push_back(i);
    bool contents_ok = true;
    for (int i = 0; i < 1000; ++i) contents_ok = contents_ok && v[static_cast<std::size_t>(i)] == i;
    check(contents_ok, "a pmr vector on an arena keeps its contents");
    check(a.owns(v.data()), "the vector's buffer comes from the arena");
    check(a.stats().allocations > 0, "the arena counts the vector's allocations");

    // The error category is compiled into the library.
    const std::error_code ec = memkit::errc::out_of_memory;
    check(std::strcmp(ec.category().name(), "memkit") == 0, "the error category is memkit's");

    // A container (header-only) and a compiled heap part: a budget that refuses with its name.
    memkit::small_vector<int, 4> sv{1, 2, 3};
    check(sv.is_inline() && sv.size() == 3 && sv[2] == 3, "small_vector keeps 3 ints inline");
    memkit::memory_budget budget{1000, memkit::memory_budget::unlimited, "consumer"};
    check(budget.try_reserve(900) && !budget.try_reserve(200), "the budget refuses beyond 1000");
    try {
        budget.reserve(200);
        check(false, "reserve beyond the hard limit throws");
    } catch (const memkit::memory_budget_exceeded& e) {
        check(e.budget_name() == std::string_view{"consumer"}, "the error names the budget");
    }
    budget.release(900);
    check(budget.used() == 0, "the budget is balanced after release");

    if (failures != 0) return 1;
    std::puts("memkit consumer ok");
    return 0;
}
