// Benchmarks of memkit::buddy_allocator (include/memkit/alloc/buddy.hpp) against malloc/free.
//
// Pattern "buddy/shuffled/random-mixed": allocate N blocks of random power-of-two-ish sizes
// from 16 B to 64 KiB (the exponent is uniform in 4..16, the size uniform between the two
// neighbouring powers of two; fixed seed), write one byte into each, then free them in a random
// order (fixed seed). The buddy region (64 MiB) is large enough that no request fails; it is
// taken once per benchmark, so the numbers are the steady state of splitting and merging.
// Times are per allocation including its share of the frees.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#include "memkit/alloc/buddy.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t bulk_count = 1024;
constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::uint64_t sizes_seed = 0x6275646479; // "buddy"
constexpr std::uint64_t shuffle_seed = 0x627564647a;

struct memkit_buddy {
    static constexpr const char* name = "memkit::buddy_allocator";
    memkit::buddy_allocator b{std::size_t{64} << 20};
    void* allocate(std::size_t n) { return b.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { b.deallocate(p, n, align); }
};

using c_malloc = memkit::bench::malloc_peer;

// Log-uniform sizes in 16 B .. 64 KiB. mt19937_64's sequence is fixed by the standard and the
// reduction below uses no library distribution, so every platform sees the same sizes.
const std::vector<std::size_t>& random_mixed() {
    static const std::vector<std::size_t> sizes = [] {
        std::mt19937_64 gen{sizes_seed};
        std::vector<std::size_t> v(bulk_count);
        for (std::size_t& s : v) {
            const unsigned e = 4 + static_cast<unsigned>(gen() % 13); // 2^4 .. 2^16
            const std::size_t lo = (std::size_t{1} << e) / 2;
            s = lo + 1 + static_cast<std::size_t>(gen() % lo);
            if (s < 16) s = 16;
        }
        return v;
    }();
    return sizes;
}

const std::vector<std::size_t>& free_order() {
    static const std::vector<std::size_t> order = mb::shuffled_indices(bulk_count, shuffle_seed);
    return order;
}

template <class Subject>
void shuffled_random_mixed(benchmark::State& state) {
    Subject s;
    const std::vector<std::size_t>& sizes = random_mixed();
    const std::vector<std::size_t>& order = free_order();
    std::vector<void*> ptrs(bulk_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < bulk_count; ++i) {
            void* p = s.allocate(sizes[i]);
            mb::touch(p);
            ptrs[i] = p;
        }
        benchmark::ClobberMemory();
        for (std::size_t i : order) s.deallocate(ptrs[i], sizes[i]);
    }
    mb::set_allocations(state, bulk_count);
}

bool register_all() {
    const std::string case_name = "buddy/shuffled/random-mixed";
    mb::add_case({case_name, memkit_buddy::name, mb::role::memkit, bulk_count},
                 shuffled_random_mixed<memkit_buddy>);
    mb::add_case({case_name, c_malloc::name, mb::role::peer, bulk_count},
                 shuffled_random_mixed<c_malloc>);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
