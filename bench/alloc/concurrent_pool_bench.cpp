// Benchmarks of memkit::concurrent_pool (include/memkit/alloc/concurrent_pool.hpp), the lock-free
// fixed-size pool, against the thread-safe ways to share a pool: memkit::synchronized<pool> (a
// mutex around memkit's own pool), std::pmr::synchronized_pool_resource (used through its
// concrete type), and malloc/free. Every subject object is shared by all threads of a run.
//
// Patterns, 64-byte nodes, one byte written per block:
//   single-1t / single-2t     - allocate one node and free it at once, repeatedly, on one thread
//                               or on two threads at the same time (the most contended case);
//   bulk-1t / bulk-2t         - allocate N nodes, then free them in allocation order;
//   exchange-2t               - each of two threads allocates N nodes and hands them to the other,
//                               which frees them: every node is freed on another thread.
// Times are CPU time per allocation including its free (averaged over the threads).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "common/handoff.hpp"
#include "common/harness.hpp"
#include "memkit/alloc/concurrent_pool.hpp"
#include "memkit/alloc/pool.hpp"
#include "memkit/compose/synchronized.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t node = 64;
constexpr std::size_t align = alignof(std::max_align_t);
constexpr std::size_t single_rounds = 256;
constexpr std::size_t bulk_count = 1024;
constexpr std::size_t exchange_count = 512;

struct memkit_concurrent {
    static constexpr const char* name = "memkit::concurrent_pool";
    memkit::concurrent_pool p{node, align};
    void* allocate() { return p.allocate(); }
    void deallocate(void* q) noexcept { p.deallocate(q); }
};

struct memkit_synchronized {
    static constexpr const char* name = "memkit::synchronized<pool>";
    memkit::synchronized<memkit::pool> p{std::in_place, node, align};
    void* allocate() { return p.allocate(node, align); }
    void deallocate(void* q) noexcept { p.deallocate(q, node, align); }
};

struct pmr_synchronized {
    static constexpr const char* name = "std::pmr::synchronized_pool_resource";
    std::pmr::synchronized_pool_resource r;
    void* allocate() { return r.allocate(node, align); }
    void deallocate(void* q) noexcept { r.deallocate(q, node, align); }
};

struct c_malloc {
    static constexpr const char* name = "malloc";
    void* allocate() {
        void* q = std::malloc(node);
        if (q == nullptr) throw std::bad_alloc();
        return q;
    }
    void deallocate(void* q) noexcept { std::free(q); }
};

template <class Subject>
struct run_state {
    Subject subject;
    mb::mailbox boxes[2]{mb::mailbox{exchange_count}, mb::mailbox{exchange_count}};
};

template <class Subject>
using shared = mb::shared_run<run_state<Subject>>;

template <class Subject>
void single(benchmark::State& state) {
    shared<Subject>::begin(state);
    for (auto _ : state) {
        Subject& s = shared<Subject>::get().subject;
        for (std::size_t i = 0; i < single_rounds; ++i) {
            void* p = s.allocate();
            mb::touch(p);
            s.deallocate(p);
        }
    }
    shared<Subject>::end(state);
    mb::set_allocations(state, single_rounds);
}

template <class Subject>
void bulk(benchmark::State& state) {
    std::vector<void*> ptrs(bulk_count);
    shared<Subject>::begin(state);
    for (auto _ : state) {
        Subject& s = shared<Subject>::get().subject;
        for (void*& p : ptrs) {
            p = s.allocate();
            mb::touch(p);
        }
        benchmark::ClobberMemory();
        for (void* p : ptrs) s.deallocate(p);
    }
    shared<Subject>::end(state);
    mb::set_allocations(state, bulk_count);
}

template <class Subject>
void exchange(benchmark::State& state) {
    const auto me = static_cast<std::size_t>(state.thread_index());
    shared<Subject>::begin(state);
    for (auto _ : state) {
        run_state<Subject>& rs = shared<Subject>::get();
        mb::mailbox& out = rs.boxes[me];
        mb::mailbox& in = rs.boxes[1 - me];
        out.wait_empty();
        for (void*& p : out.blocks) {
            p = rs.subject.allocate();
            mb::touch(p);
        }
        out.publish();
        in.wait_full();
        for (void* p : in.blocks) rs.subject.deallocate(p);
        in.drained();
    }
    shared<Subject>::end(state);
    mb::set_allocations(state, exchange_count);
}

template <class Subject>
void add(const std::string& pattern, mb::role who) {
    const std::string case_name = "concurrent_pool/" + pattern + "/" + std::to_string(node);
    const std::string_view base = std::string_view{pattern}.substr(0, pattern.find('-'));
    const int threads = pattern.ends_with("-2t") ? 2 : 1;
    benchmark::internal::Benchmark* b = nullptr;
    if (base == "single")
        b = mb::add_case({case_name, Subject::name, who, single_rounds}, single<Subject>);
    else if (base == "bulk")
        b = mb::add_case({case_name, Subject::name, who, bulk_count}, bulk<Subject>);
    else b = mb::add_case({case_name, Subject::name, who, exchange_count}, exchange<Subject>);
    // One thread: no Threads() call, so that the name carries no "/threads:1" suffix.
    if (threads > 1) b->Threads(threads);
}

bool register_all() {
    for (const char* pattern : {"single-1t", "bulk-1t", "single-2t", "bulk-2t", "exchange-2t"}) {
        add<memkit_concurrent>(pattern, mb::role::memkit);
        add<memkit_synchronized>(pattern, mb::role::peer);
        add<pmr_synchronized>(pattern, mb::role::peer);
        add<c_malloc>(pattern, mb::role::peer);
    }
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
