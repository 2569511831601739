// How memkit reports errors, and how to handle each kind.
//
//  * allocate() throws: memkit::out_of_memory (a std::bad_alloc that says how much was asked
//    for, how much was left, used and available in total), memkit::bad_size and
//    memkit::invalid_alignment (both std::invalid_argument).
//  * try_allocate() never throws: it returns nullptr for every one of those failures.
//  * Misuse inside noexcept calls (freeing a pointer out of order, twice, or to the wrong
//    allocator) is a precondition violation. Debug builds check it and call the violation
//    handler, which aborts by default; a program may install its own (to log, count, or fail a
//    test) and the offending call then changes nothing.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <system_error>

#include <memkit/alloc/arena.hpp>
#include <memkit/alloc/stack.hpp>
#include <memkit/alloc/system.hpp>
#include <memkit/core/error.hpp>

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "errors: check failed: %s\n", what);
        std::exit(EXIT_FAILURE);
    }
}

void out_of_memory_carries_the_numbers() {
    memkit::stack_allocator small{1024};
    void* first = small.allocate(600);
    try {
        (void)small.allocate(600); // the stack has about 400 bytes left
        require(false, "the second request does not fit");
    } catch (const memkit::out_of_memory& e) {
        std::printf("out_of_memory: %s\n", e.what());
        require(e.requested() == 600, "requested() is the failed request");
        require(e.capacity() == 1024, "capacity() is the stack's buffer size");
        require(e.available() < 600 && e.used() >= 600, "available() and used() explain why");
        require(e.code() == memkit::errc::out_of_memory, "code() is errc::out_of_memory");
    }
    small.deallocate(first, 600);

    // Code that only knows the standard library still catches it as std::bad_alloc.
    memkit::arena capped{memkit::arena_options{.block_size = 4096, .max_total = 8192}};
    try {
        (void)capped.allocate(6000);
        (void)capped.allocate(6000); // would take the arena past max_total
        require(false, "max_total is enforced");
    } catch (const std::bad_alloc& e) {
        std::printf("std::bad_alloc:  %s\n", e.what());
    }
}

void invalid_arguments_are_invalid_argument() {
    memkit::system_allocator sys;
    try {
        (void)sys.allocate(64, 24); // not a power of two
        require(false, "alignment 24 is rejected");
    } catch (const memkit::invalid_alignment& e) {
        std::printf("invalid_alignment: %s\n", e.what());
        require(e.alignment() == 24, "alignment() is the rejected value");
    }

    memkit::arena a;
    try {
        (void)a.allocate(64, std::size_t{1} << 20); // above the arena's max_alignment
        require(false, "an alignment above max_alignment is rejected");
    } catch (const memkit::invalid_alignment& e) {
        require(e.max_alignment() == memkit::arena::max_alignment,
                "max_alignment() says the limit");
    }

    try {
        (void)a.allocate(0);
        require(false, "size 0 is rejected");
    } catch (const std::invalid_argument& e) { // memkit::bad_size is a std::invalid_argument
        std::printf("bad_size: %s\n", e.what());
    }
}

void try_allocate_returns_nullptr() {
    memkit::stack_allocator small{1024};
    require(small.try_allocate(4096) == nullptr, "too large: nullptr");
    require(small.try_allocate(16, 3) == nullptr, "bad alignment: nullptr");
    require(small.try_allocate(0) == nullptr, "size 0: nullptr");
    void* p = small.try_allocate(512);
    require(p != nullptr, "a request that fits succeeds");
    small.deallocate(p, 512);
    std::puts("try_allocate: nullptr for every failure, no exception");
}

// The handler is a plain function pointer, so what it records goes to a global.
memkit::errc last_violation{};
int violations = 0;

void record_violation(const memkit::violation& v) {
    last_violation = v.code;
    ++violations;
    std::printf("violation in %s: %s (%s)\n", v.allocator,
                std::error_code{v.code}.message().c_str(), v.detail);
}

void violations_go_to_the_handler() {
    if constexpr (!memkit::debug_checks) {
        // Release builds compile the checks out: misuse there is undefined, not reported.
        std::puts("debug checks are off in this build: violation handling is not shown");
        return;
    }
    const memkit::violation_handler previous = memkit::set_violation_handler(&record_violation);

    memkit::stack_allocator s{1024};
    void* a = s.allocate(64);
    void* b = s.allocate(64);
    const std::size_t used = s.used();
    s.deallocate(a, 64); // wrong: b is on top
    require(violations == 1 && last_violation == memkit::errc::lifo_violation,
            "a non-LIFO free is reported as errc::lifo_violation");
    require(s.used() == used, "the offending call changed nothing");
    s.deallocate(b, 64);
    s.deallocate(a, 64); // the right order works

    memkit::set_violation_handler(previous);
}

} // namespace

int main() {
    out_of_memory_carries_the_numbers();
    invalid_arguments_are_invalid_argument();
    try_allocate_returns_nullptr();
    violations_go_to_the_handler();
    std::puts("errors: ok");
    return 0;
}
