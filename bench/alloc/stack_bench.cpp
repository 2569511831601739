// Benchmarks of memkit::stack_allocator (include/memkit/alloc/stack.hpp) on its own pattern,
// "bulk-reversed" (LIFO): push k blocks, writing one byte into each, then pop them in reverse
// order, repeatedly. Peers: memkit::arena, which cannot free single blocks and so takes a mark()
// before the pushes and rewind()s to it instead of popping, and malloc/free freeing in reverse.
// Times are per allocation including its share of the frees; fixed sizes 16, 64 and 256 bytes.
#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "memkit/alloc/arena.hpp"
#include "memkit/alloc/stack.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t depth = 256; // blocks pushed before popping
constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::size_t stack_capacity = std::size_t{1} << 20; // ample for depth * 256 B + headers

template <std::size_t Size>
void lifo_stack(benchmark::State& state) {
    memkit::stack_allocator s{stack_capacity};
    std::vector<void*> ptrs(depth);
    for (auto _ : state) {
        for (std::size_t i = 0; i < depth; ++i) {
            void* p = s.allocate(Size, align);
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (std::size_t i = depth; i-- > 0;) s.deallocate(ptrs[i], Size, align);
    }
    mb::set_allocations(state, depth);
}

template <std::size_t Size>
void lifo_arena(benchmark::State& state) {
    memkit::arena a;
    std::vector<void*> ptrs(depth);
    for (auto _ : state) {
        const auto m = a.mark();
        for (std::size_t i = 0; i < depth; ++i) {
            void* p = a.allocate(Size, align);
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        a.rewind(m);
    }
    mb::set_allocations(state, depth);
}

template <std::size_t Size>
void lifo_malloc(benchmark::State& state) {
    std::vector<void*> ptrs(depth);
    for (auto _ : state) {
        for (std::size_t i = 0; i < depth; ++i) {
            void* p = std::malloc(Size);
            if (p == nullptr) {
                state.SkipWithError("malloc failed");
                return;
            }
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (std::size_t i = depth; i-- > 0;) std::free(ptrs[i]);
    }
    mb::set_allocations(state, depth);
}

template <std::size_t Size>
void register_lifo() {
    const std::string case_name = "stack/bulk-reversed/" + std::to_string(Size);
    mb::add_case({case_name, "memkit::stack_allocator", mb::role::memkit, depth}, lifo_stack<Size>);
    mb::add_case({case_name, "memkit::arena", mb::role::peer, depth}, lifo_arena<Size>);
    mb::add_case({case_name, "malloc", mb::role::peer, depth}, lifo_malloc<Size>);
}

bool register_all() {
    register_lifo<16>();
    register_lifo<64>();
    register_lifo<256>();
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
