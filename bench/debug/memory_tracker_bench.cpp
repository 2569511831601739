// Benchmarks of memkit::memory_tracker (include/memkit/debug/memory_tracker.hpp) and of stack
// capture (include/memkit/debug/stack_trace.hpp).
//
// What tracking costs: tracked<system_allocator> (every allocation and deallocation recorded in a
// memory_tracker) against the plain system_allocator (malloc/free), without and with stack
// capture. The ratio peer/memkit is below 1 here: its inverse is the overhead factor.
//   memory_tracker/single/64         - allocate one 64-byte block and free it, repeatedly;
//   memory_tracker/bulk/64           - allocate 4096 blocks, then free them in order (the
//                                      tracker's tables hold 4096 live records);
//   memory_tracker/single-stacks/64  - as single, with a stack captured for every allocation.
// What one capture costs: stack_trace::capture (libgcc's _Unwind_Backtrace) against glibc's
// backtrace(), each taking a full stack from 24 frames of recursion below the benchmark body:
//   stack_trace/capture/depth-32.
#include <cstddef>
#include <cstdint>
#include <execinfo.h>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/debug/memory_tracker.hpp"
#include "memkit/debug/stack_trace.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t block_size = 64;
constexpr std::size_t single_rounds = 256;
constexpr std::size_t bulk_count = 4096;

struct plain_system {
    static constexpr const char* name = "memkit::system_allocator";
    memkit::system_allocator a;
    void* allocate() { return a.allocate(block_size); }
    void deallocate(void* p) noexcept { a.deallocate(p, block_size); }
};

template <bool Stacks>
struct tracked_system {
    static constexpr const char* name =
        Stacks ? "memkit::tracked<system_allocator>+stacks" : "memkit::tracked<system_allocator>";
    memkit::memory_tracker t{{.capture_stacks = Stacks}};
    memkit::tracked<memkit::system_allocator> a{t};
    void* allocate() { return a.allocate(block_size); }
    void deallocate(void* p) noexcept { a.deallocate(p, block_size); }
};

template <class Subject>
void single(benchmark::State& state) {
    Subject s;
    for (auto _ : state) {
        for (std::size_t i = 0; i < single_rounds; ++i) {
            void* p = s.allocate();
            mb::touch(p);
            s.deallocate(p);
        }
    }
    mb::set_allocations(state, single_rounds);
}

template <class Subject>
void bulk(benchmark::State& state) {
    Subject s;
    std::vector<void*> ptrs(bulk_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < bulk_count; ++i) {
            void* p = s.allocate();
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (void* p : ptrs) s.deallocate(p);
    }
    mb::set_allocations(state, bulk_count);
}

// A stack of known depth under the capture: `depth` frames of this function.
template <class Capture>
MEMKIT_NOINLINE std::size_t capture_at_depth(int depth, Capture& capture) {
    if (depth > 0) {
        const std::size_t n = capture_at_depth(depth - 1, capture);
        benchmark::DoNotOptimize(n); // not a tail call: the frame stays
        return n;
    }
    return capture();
}

struct unwind_capture {
    static constexpr const char* name = "memkit::stack_trace::capture (_Unwind_Backtrace)";
    std::vector<void*> frames = std::vector<void*>(32);
    std::size_t operator()() { return memkit::stack_trace::capture(frames); }
};

struct glibc_backtrace {
    static constexpr const char* name = "glibc backtrace()";
    std::vector<void*> frames = std::vector<void*>(32);
    std::size_t operator()() {
        return static_cast<std::size_t>(
            ::backtrace(frames.data(), static_cast<int>(frames.size())));
    }
};

template <class Capture>
void capture_case(benchmark::State& state) {
    Capture c;
    std::size_t total = 0;
    for (auto _ : state) total += capture_at_depth(24, c);
    benchmark::DoNotOptimize(total);
    state.counters["frames"] = static_cast<double>(total) / static_cast<double>(state.iterations());
    mb::set_allocations(state, 1);
}

bool register_all() {
    const std::string single_name = "memory_tracker/single/64";
    mb::add_case({single_name, tracked_system<false>::name, mb::role::memkit, single_rounds},
                 single<tracked_system<false>>);
    mb::add_case({single_name, plain_system::name, mb::role::peer, single_rounds},
                 single<plain_system>);

    const std::string bulk_name = "memory_tracker/bulk/64";
    mb::add_case({bulk_name, tracked_system<false>::name, mb::role::memkit, bulk_count},
                 bulk<tracked_system<false>>);
    mb::add_case({bulk_name, plain_system::name, mb::role::peer, bulk_count}, bulk<plain_system>);

    const std::string stacks_name = "memory_tracker/single-stacks/64";
    mb::add_case({stacks_name, tracked_system<true>::name, mb::role::memkit, single_rounds},
                 single<tracked_system<true>>);
    mb::add_case({stacks_name, plain_system::name, mb::role::peer, single_rounds},
                 single<plain_system>);

    const std::string capture_name = "stack_trace/capture/depth-32";
    mb::add_case({capture_name, unwind_capture::name, mb::role::memkit, 1},
                 capture_case<unwind_capture>);
    mb::add_case({capture_name, glibc_backtrace::name, mb::role::peer, 1},
                 capture_case<glibc_backtrace>);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
