// What a memkit::memory_budget (include/memkit/heap/memory_budget.hpp) costs per reservation, next
// to the cheapest and the most common ways to count bytes shared by threads:
//   std::atomic<size_t>   - fetch_add then fetch_sub on one counter per level, with no limit
//                           check at all: the floor any thread-safe counter pays;
//   std::mutex counter    - one mutex around a counter per level, with the limit checks.
// The memkit subject checks the hard limit of every level (a compare-and-swap loop per level),
// keeps the peak and watches for soft-limit and pressure-level crossings (none is crossed here).
//
// Patterns, 64-byte reservations, one pair = try_reserve(64) then release(64) on the leaf:
//   reserve-release/depth-1     - a root budget alone;
//   reserve-release/depth-3     - a leaf under two ancestors (query -> user -> server): every
//                                 pair updates three levels;
//   reserve-release/depth-3-2t  - two threads, each with its own leaf under a shared user and
//                                 server (the shared levels' cache lines move between cores).
// Times are CPU time per pair (averaged over the threads).
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "common/handoff.hpp"
#include "common/harness.hpp"
#include "memkit/heap/memory_budget.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t pairs = 256;
constexpr std::size_t bytes = 64;
constexpr std::size_t limit = std::size_t{1} << 30;

// Depth 1: the root alone, shared by the threads. Depth 3: root and middle shared, one leaf per
// thread. Soft limits and thresholds are set but never crossed.
struct memkit_budget {
    static constexpr const char* name = "memkit::memory_budget";
    memkit::memory_budget root{limit, limit / 4 * 3, "server"};
    std::unique_ptr<memkit::memory_budget> middle;
    std::unique_ptr<memkit::memory_budget> leaves[2];

    explicit memkit_budget(int depth) {
        memkit::memory_budget* parent = &root;
        if (depth == 3) {
            middle = std::make_unique<memkit::memory_budget>(root, limit, limit, "user");
            parent = middle.get();
        }
        if (depth > 1)
            for (auto& l : leaves)
                l = std::make_unique<memkit::memory_budget>(*parent, limit, limit, "query");
    }
    memkit::memory_budget& leaf(int t) { return leaves[0] ? *leaves[t] : root; }
    bool reserve(int t) { return leaf(t).try_reserve(bytes); }
    void release(int t) { leaf(t).release(bytes); }
};

struct atomic_floor {
    static constexpr const char* name = "std::atomic<size_t>";
    struct alignas(memkit::cache_line_size) counter {
        std::atomic<std::size_t> n{0};
    };
    counter shared[2]; // root, middle
    counter leaves[2];
    int depth;

    explicit atomic_floor(int d) : depth(d) {}
    bool reserve(int t) {
        if (depth > 1) leaves[t].n.fetch_add(bytes, std::memory_order_relaxed);
        if (depth > 2) shared[1].n.fetch_add(bytes, std::memory_order_relaxed);
        shared[0].n.fetch_add(bytes, std::memory_order_relaxed);
        return true;
    }
    void release(int t) {
        if (depth > 1) leaves[t].n.fetch_sub(bytes, std::memory_order_relaxed);
        if (depth > 2) shared[1].n.fetch_sub(bytes, std::memory_order_relaxed);
        shared[0].n.fetch_sub(bytes, std::memory_order_relaxed);
    }
};

struct mutex_counter {
    static constexpr const char* name = "std::mutex counter";
    std::mutex m;
    std::size_t used[4] = {}; // root, middle, leaf 0, leaf 1
    int depth;

    explicit mutex_counter(int d) : depth(d) {}
    // Depth 1 uses the root only; depth 3 the root, the middle and the thread's leaf.
    bool reserve(int t) {
        const std::lock_guard lock(m);
        const int levels[3] = {0, 1, 2 + t};
        for (int i = 0; i < depth; ++i)
            if (bytes > limit - used[levels[i]]) return false;
        for (int i = 0; i < depth; ++i) used[levels[i]] += bytes;
        return true;
    }
    void release(int t) {
        const std::lock_guard lock(m);
        const int levels[3] = {0, 1, 2 + t};
        for (int i = 0; i < depth; ++i) used[levels[i]] -= bytes;
    }
};

template <class Subject>
void reserve_release(benchmark::State& state, int depth) {
    const int me = state.thread_index();
    mb::shared_run<Subject>::begin(state, depth);
    for (auto _ : state) {
        Subject& s = mb::shared_run<Subject>::get();
        for (std::size_t i = 0; i < pairs; ++i) {
            const bool ok = s.reserve(me);
            benchmark::DoNotOptimize(ok);
            s.release(me);
        }
    }
    mb::shared_run<Subject>::end(state);
    mb::set_allocations(state, pairs);
}

template <class Subject>
void add(const std::string& pattern, int depth, int threads, mb::role who) {
    auto* b = mb::add_case({"budget/reserve-release/" + pattern, Subject::name, who, pairs},
                           [depth](benchmark::State& s) { reserve_release<Subject>(s, depth); });
    if (threads > 1) b->Threads(threads);
}

bool register_all() {
    struct shape {
        const char* pattern;
        int depth, threads;
    };
    for (const shape& s :
         {shape{"depth-1", 1, 1}, shape{"depth-3", 3, 1}, shape{"depth-3-2t", 3, 2}}) {
        add<memkit_budget>(s.pattern, s.depth, s.threads, mb::role::memkit);
        add<atomic_floor>(s.pattern, s.depth, s.threads, mb::role::peer);
        add<mutex_counter>(s.pattern, s.depth, s.threads, mb::role::peer);
    }
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
