// What memkit::managed_heap (include/memkit/heap/managed_heap.hpp) costs.
//
// Case managed_heap/alloc-free/random-small: per allocation next to the heap it is built on and
// to glibc malloc:
//   memkit::tlsf_heap                          - the raw single-threaded tlsf heap (no lock, no
//                                                accounting): the floor;
//   memkit::synchronized<tlsf_heap>            - the same heap behind one std::mutex: the same
//                                                thread-safety as the managed heap;
//   memkit::synchronized<tlsf_heap, spin_lock> - the same heap behind the managed heap's own lock
//                                                (memkit::spin_lock): what that lock
//                                                alone costs, so the rest of the difference is
//                                                the accounting;
//   malloc                                     - glibc malloc/free.
// 1024 live blocks of 16..256 bytes (fixed-seed sizes); each step frees a random block
// (fixed-seed xorshift) and allocates a new one into its slot. The managed heap spreads the
// blocks over 8 owners (each with a limit that is never reached, under a common parent owner),
// so every pair charges and releases two owner levels, links and unlinks the block in its
// owner's list and checks the pressure level. Time per (free + allocate) pair, one thread; the
// subjects keep their memory between iterations (steady state).
//
// Case managed_heap/collect/1e6-deferred: 1e6 blocks of 16..256 bytes are allocated and freed
// in a fixed-seed random order into the quarantine (defer_frees; untimed), then collected (timed):
//   memkit::managed_heap collect(1ms)  - collect(budget) with the 1 ms budget, called
//                                        until complete (the incremental collection);
//   memkit::managed_heap collect()     - one unbudgeted collection: a single pause;
//   memkit::tlsf_heap                  - the raw heap freeing the same blocks in the same order:
//                                        the floor.
// Time per block collected. Counters (Google Benchmark's user counters, printed by memkit-bench;
// `memkit bench` shows only the times): pause_p50_us, pause_p99_us and pause_max_us, the median,
// 99th percentile and longest of the times the heap's lock was held for one batch (from
// on_collected); call_p50_us, call_p99_us and call_max_us, the same for whole collect calls;
// calls, the collect calls per collection. Pauses are wall-clock times: on a loaded machine the
// longest ones include the time the collecting thread was preempted.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#include "memkit/alloc/tlsf.hpp"
#include "memkit/compose/synchronized.hpp"
#include "memkit/heap/managed_heap.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::size_t live = 1024;
constexpr std::size_t pairs = 1024; // replacements per benchmark iteration
constexpr std::size_t sequence_length = std::size_t{1} << 16;
constexpr std::uint64_t size_seed = 0x6d686561; // "mhea"
constexpr std::uint64_t order_seed = 0x6f72646572;
constexpr std::size_t owners = 8;

struct memkit_managed {
    static constexpr const char* name = "memkit::managed_heap";
    memkit::managed_heap h{memkit::managed_heap_options{.capacity = std::size_t{256} << 20,
                                                        .region_size = std::size_t{64} << 20}};
    std::vector<memkit::owner_id> ids;
    std::size_t next_owner = 0;
    memkit_managed() {
        const memkit::owner_id parent = h.create_owner("service", std::size_t{128} << 20);
        for (std::size_t i = 0; i < owners; ++i)
            ids.push_back(h.create_owner("request", std::size_t{16} << 20, parent));
    }
    void* allocate(std::size_t n) {
        next_owner = (next_owner + 1) % owners;
        return h.allocate(n, ids[next_owner], align);
    }
    void deallocate(void* p, std::size_t /*n*/) { h.deallocate(p); }
};

struct memkit_tlsf {
    static constexpr const char* name = "memkit::tlsf_heap";
    memkit::tlsf_heap h{std::size_t{64} << 20,
                        memkit::tlsf_options{.region_size = std::size_t{64} << 20}};
    void* allocate(std::size_t n) { return h.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { h.deallocate(p, n, align); }
};

template <class Mutex>
struct locked_tlsf {
    static constexpr const char* name = std::is_same_v<Mutex, std::mutex>
                                            ? "memkit::synchronized<tlsf_heap>"
                                            : "memkit::synchronized<tlsf_heap, spin_lock>";
    memkit::synchronized<memkit::tlsf_heap, Mutex> h{
        std::in_place, std::size_t{64} << 20,
        memkit::tlsf_options{.region_size = std::size_t{64} << 20}};
    void* allocate(std::size_t n) { return h.allocate(n, align); }
    void deallocate(void* p, std::size_t n) noexcept { h.deallocate(p, n, align); }
};

template <class Subject>
void alloc_free(benchmark::State& state) {
    static const std::vector<std::size_t> sz = mb::random_sizes(sequence_length, 16, 256, size_seed);
    Subject s;
    std::vector<void*> ptrs(live);
    std::vector<std::size_t> size_of(live);
    for (std::size_t i = 0; i < live; ++i) {
        size_of[i] = sz[i];
        ptrs[i] = s.allocate(size_of[i]);
        mb::touch(ptrs[i]);
    }
    std::size_t next = live;
    std::uint64_t x = order_seed;
    for (auto _ : state) {
        for (std::size_t k = 0; k < pairs; ++k) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            const auto i = static_cast<std::size_t>(((x >> 32) * live) >> 32);
            s.deallocate(ptrs[i], size_of[i]);
            const std::size_t n = sz[next++ % sz.size()];
            void* p = s.allocate(n);
            mb::touch(p);
            ptrs[i] = p;
            size_of[i] = n;
        }
    }
    for (std::size_t i = 0; i < live; ++i) s.deallocate(ptrs[i], size_of[i]);
    mb::set_allocations(state, pairs);
}

template <class Subject>
void add(mb::role who) {
    mb::add_case({"managed_heap/alloc-free/random-small", Subject::name, who, pairs},
                 [](benchmark::State& s) { alloc_free<Subject>(s); });
}

// --- collection pauses ----------------------------------------------------------------------

constexpr std::size_t deferred_blocks = 1'000'000;
constexpr const char* collect_case = "managed_heap/collect/1e6-deferred";

// Records how long each collection batch held the heap's lock.
class pause_log final : public memkit::heap_observer {
public:
    void on_collected(std::size_t, std::size_t, std::chrono::nanoseconds pause) override {
        pauses.push_back(pause);
    }
    std::vector<std::chrono::nanoseconds> pauses;
};

double percentile_us(std::vector<std::chrono::nanoseconds> v, double q) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    return static_cast<double>(v[std::min(i, v.size() - 1)].count()) / 1000.0;
}

const std::vector<std::size_t>& collect_sizes() {
    static const std::vector<std::size_t> sz =
        mb::random_sizes(deferred_blocks, 16, 256, size_seed);
    return sz;
}

const std::vector<std::size_t>& collect_order() {
    static const std::vector<std::size_t> order = mb::shuffled_indices(deferred_blocks, order_seed);
    return order;
}

void collect_managed(benchmark::State& state, bool budgeted) {
    const auto& sz = collect_sizes();
    const auto& order = collect_order();
    memkit::managed_heap h{memkit::managed_heap_options{.capacity = std::size_t{1} << 30,
                                                        .region_size = std::size_t{64} << 20,
                                                        .defer_frees = true,
                                                        .auto_collect = false}};
    const memkit::owner_id owner = h.create_owner("request");
    std::vector<void*> ptrs(deferred_blocks);
    std::vector<std::chrono::nanoseconds> pauses, calls;
    std::size_t call_count = 0;
    for (auto _ : state) {
        state.PauseTiming();
        for (std::size_t i = 0; i < deferred_blocks; ++i) {
            ptrs[i] = h.allocate(sz[i], owner);
            mb::touch(ptrs[i]);
        }
        for (const std::size_t i : order) h.deallocate(ptrs[i]);
        auto log = std::make_shared<pause_log>();
        log->pauses.reserve(deferred_blocks / 16);
        h.add_observer(log);
        state.ResumeTiming();
        if (budgeted) {
            memkit::collect_result r;
            do {
                const auto t0 = std::chrono::steady_clock::now();
                r = h.collect(std::chrono::milliseconds{1});
                calls.push_back(std::chrono::steady_clock::now() - t0);
                ++call_count;
            } while (!r.complete);
        } else {
            const auto t0 = std::chrono::steady_clock::now();
            (void)h.collect();
            calls.push_back(std::chrono::steady_clock::now() - t0);
            ++call_count;
        }
        state.PauseTiming();
        h.remove_observer(log);
        pauses.insert(pauses.end(), log->pauses.begin(), log->pauses.end());
        state.ResumeTiming();
    }
    state.counters["pause_p50_us"] = percentile_us(pauses, 0.5);
    state.counters["pause_max_us"] = percentile_us(pauses, 1.0);
    state.counters["pause_p99_us"] = percentile_us(pauses, 0.99);
    state.counters["call_p50_us"] = percentile_us(calls, 0.5);
    state.counters["call_max_us"] = percentile_us(calls, 1.0);
    state.counters["call_p99_us"] = percentile_us(calls, 0.99);
    const auto iterations = std::max<std::int64_t>(state.iterations(), 1);
    state.counters["calls"] = static_cast<double>(call_count) / static_cast<double>(iterations);
    mb::set_allocations(state, deferred_blocks);
}

void collect_tlsf(benchmark::State& state) {
    const auto& sz = collect_sizes();
    const auto& order = collect_order();
    memkit::tlsf_heap h{std::size_t{64} << 20,
                        memkit::tlsf_options{.region_size = std::size_t{64} << 20}};
    std::vector<void*> ptrs(deferred_blocks);
    for (auto _ : state) {
        state.PauseTiming();
        for (std::size_t i = 0; i < deferred_blocks; ++i) {
            ptrs[i] = h.allocate(sz[i], align);
            mb::touch(ptrs[i]);
        }
        state.ResumeTiming();
        for (const std::size_t i : order) h.deallocate(ptrs[i], sz[i], align);
    }
    mb::set_allocations(state, deferred_blocks);
}

bool register_all() {
    add<memkit_managed>(mb::role::memkit);
    add<memkit_tlsf>(mb::role::peer);
    add<locked_tlsf<std::mutex>>(mb::role::peer);
    add<locked_tlsf<memkit::spin_lock>>(mb::role::peer);
    add<mb::malloc_peer>(mb::role::peer);

    mb::add_case({collect_case, "memkit::managed_heap collect(1ms)", mb::role::memkit,
                  deferred_blocks},
                 [](benchmark::State& s) { collect_managed(s, true); });
    mb::add_case({collect_case, "memkit::managed_heap collect()", mb::role::peer, deferred_blocks},
                 [](benchmark::State& s) { collect_managed(s, false); });
    mb::add_case({collect_case, "memkit::tlsf_heap", mb::role::peer, deferred_blocks},
                 collect_tlsf);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
