// Benchmarks of memkit::thread_cache (include/memkit/alloc/thread_cache.hpp) with two threads,
// against general-purpose allocators built for threads: glibc malloc (with its own per-thread
// tcache), mimalloc (mi_malloc/mi_free) and jemalloc (mallocx/sdallocx, from a private copy that
// does not replace malloc: see common/jemalloc_peer.hpp).
//
// memkit's subject is thread_cache over memkit::synchronized<size_class_pools>: one memkit::pool
// per size class behind one mutex, the shared structure a thread cache is meant to front (the
// mutex is taken once per batch of blocks, never per block).
//
// Patterns, each on two threads (Google Benchmark ->Threads(2)), one byte written per block:
//   local-2t             - each thread allocates N blocks, then frees them itself;
//   exchange-2t          - each thread allocates N blocks and hands them to the other thread,
//                          which frees them: every block is freed on another thread;
//   producer-consumer-2t - thread 0 only allocates, thread 1 only frees (two mailboxes in turn).
// Sizes: fixed 64 bytes, and random-small (16..256 bytes from a fixed seed, the same for all).
// Times are CPU time per allocation including its free, averaged over the two threads.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "common/mimalloc_peer.hpp"

#include "common/handoff.hpp"
#include "common/harness.hpp"
#include "common/malloc_peer.hpp"
#if defined(MEMKIT_BENCH_HAVE_JEMALLOC)
#include "common/jemalloc_peer.hpp"
#endif
#include "memkit/alloc/pool.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/alloc/thread_cache.hpp"
#include "memkit/compose/synchronized.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t batch = 512;                        // blocks per thread per iteration
constexpr std::uint64_t random_small_seed = 0x7463616368; // "tcach"

// One memkit::pool per size class of thread_cache (16-byte steps to 256, then powers of two to
// 32 KiB); larger requests go to malloc. Not thread-safe: it is used behind synchronized.
class size_class_pools {
public:
    static constexpr std::size_t max_alignment = alignof(std::max_align_t);
    static constexpr std::size_t max_pooled = 32768;

    size_class_pools() {
        pools_.reserve(23);
        for (std::size_t c = 0; c < 23; ++c) pools_.emplace_back(bytes_of(c));
    }

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        throw std::bad_alloc();
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (n - 1 >= max_pooled) return memkit::system_allocator{}.try_allocate(n, align);
        return pools_[class_of(n)].try_allocate(n, align);
    }
    void deallocate(void* p, std::size_t n,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        if (n - 1 >= max_pooled) memkit::system_allocator{}.deallocate(p, n, align);
        else pools_[class_of(n)].deallocate(p);
    }
    [[nodiscard]] std::size_t max_size() const noexcept {
        return memkit::system_allocator::max_size();
    }

private:
    static std::size_t bytes_of(std::size_t c) noexcept {
        return c < 16 ? (c + 1) * 16 : std::size_t{512} << (c - 16);
    }
    static std::size_t class_of(std::size_t n) noexcept {
        if (n <= 256) return (n - 1) / 16;
        return 16 + static_cast<std::size_t>(64 - __builtin_clzll(n - 1)) - 9;
    }
    std::vector<memkit::pool> pools_;
};

// Each subject as the two operations the patterns need. A subject object is shared by both
// threads of a run.
struct memkit_cache {
    static constexpr const char* name = "memkit::thread_cache";
    memkit::thread_cache<memkit::synchronized<size_class_pools>> cache;
    void* allocate(std::size_t n) { return cache.allocate(n); }
    void deallocate(void* p, std::size_t n) noexcept { cache.deallocate(p, n); }
};

using c_malloc = memkit::bench::malloc_peer;

struct mimalloc_peer {
    static constexpr const char* name = "mimalloc";
    void* allocate(std::size_t n) {
        void* p = mb::mimalloc()->allocate(n);
        if (p == nullptr) throw std::bad_alloc();
        return p;
    }
    void deallocate(void* p, std::size_t /*n*/) noexcept { mb::mimalloc()->deallocate(p); }
};

#if defined(MEMKIT_BENCH_HAVE_JEMALLOC)
struct jemalloc_peer {
    static constexpr const char* name = "jemalloc";
    void* allocate(std::size_t n) {
        void* p = memkit_bench_jemalloc_allocate(n);
        if (p == nullptr) throw std::bad_alloc();
        return p;
    }
    void deallocate(void* p, std::size_t n) noexcept { memkit_bench_jemalloc_deallocate(p, n); }
};
#endif

const std::vector<std::size_t>& sizes_for(std::size_t fixed) {
    static const std::vector<std::size_t> random =
        mb::random_sizes(batch, 16, 256, random_small_seed);
    static const std::vector<std::size_t> sixty_four(batch, 64);
    return fixed == 0 ? random : sixty_four;
}

template <class Subject>
struct run_state {
    Subject subject;
    mb::mailbox boxes[2]{mb::mailbox{batch}, mb::mailbox{batch}};
};

template <class Subject>
using shared = mb::shared_run<run_state<Subject>>;

template <class Subject>
void fill(Subject& s, std::vector<void*>& out, const std::vector<std::size_t>& sizes) {
    for (std::size_t i = 0; i < batch; ++i) {
        void* p = s.allocate(sizes[i]);
        mb::touch(p);
        out[i] = p;
    }
}

template <class Subject>
void drain(Subject& s, const std::vector<void*>& blocks, const std::vector<std::size_t>& sizes) {
    for (std::size_t i = 0; i < batch; ++i) s.deallocate(blocks[i], sizes[i]);
}

template <class Subject, std::size_t Size>
void local(benchmark::State& state) {
    const auto& sizes = sizes_for(Size);
    std::vector<void*> mine(batch);
    shared<Subject>::begin(state);
    for (auto _ : state) {
        Subject& s = shared<Subject>::get().subject;
        fill(s, mine, sizes);
        benchmark::ClobberMemory();
        drain(s, mine, sizes);
    }
    shared<Subject>::end(state);
    mb::set_allocations(state, batch);
}

template <class Subject, std::size_t Size>
void exchange(benchmark::State& state) {
    const auto& sizes = sizes_for(Size);
    const auto me = static_cast<std::size_t>(state.thread_index());
    shared<Subject>::begin(state);
    for (auto _ : state) {
        run_state<Subject>& rs = shared<Subject>::get();
        mb::mailbox& out = rs.boxes[me];
        mb::mailbox& in = rs.boxes[1 - me];
        out.wait_empty();
        fill(rs.subject, out.blocks, sizes);
        out.publish();
        in.wait_full();
        drain(rs.subject, in.blocks, sizes);
        in.drained();
    }
    shared<Subject>::end(state);
    mb::set_allocations(state, batch);
}

template <class Subject, std::size_t Size>
void producer_consumer(benchmark::State& state) {
    const auto& sizes = sizes_for(Size);
    const bool producer = state.thread_index() == 0;
    std::size_t turn = 0;
    shared<Subject>::begin(state);
    for (auto _ : state) {
        run_state<Subject>& rs = shared<Subject>::get();
        mb::mailbox& box = rs.boxes[turn++ & 1];
        if (producer) {
            box.wait_empty();
            fill(rs.subject, box.blocks, sizes);
            box.publish();
        } else {
            box.wait_full();
            drain(rs.subject, box.blocks, sizes);
            box.drained();
        }
    }
    shared<Subject>::end(state);
    // Each block is allocated by one thread and freed by the other: the two threads' CPU time
    // together is the cost of `batch` blocks per iteration, the average over the threads half.
    mb::set_allocations(state, batch / 2);
}

template <class Subject, std::size_t Size>
struct patterns {
    static void local_run(benchmark::State& s) { local<Subject, Size>(s); }
    static void exchange_run(benchmark::State& s) { exchange<Subject, Size>(s); }
    static void producer_consumer_run(benchmark::State& s) { producer_consumer<Subject, Size>(s); }
};

template <class Subject, std::size_t Size>
void add(const std::string& case_name, const char* pattern, mb::role who) {
    using p = patterns<Subject, Size>;
    const std::string_view pat{pattern};
    auto* fn = pat == "local-2t"      ? &p::local_run
               : pat == "exchange-2t" ? &p::exchange_run
                                      : &p::producer_consumer_run;
    const std::size_t ops = pat == "producer-consumer-2t" ? batch / 2 : batch;
    mb::add_case({case_name, Subject::name, who, ops}, fn)->Threads(2);
}

// Size 0 stands for random-small.
template <std::size_t Size>
void register_size() {
    const std::string size_name = Size == 0 ? "random-small" : std::to_string(Size);
    for (const char* pattern : {"local-2t", "exchange-2t", "producer-consumer-2t"}) {
        const std::string case_name = std::string("thread_cache/") + pattern + "/" + size_name;
        add<memkit_cache, Size>(case_name, pattern, mb::role::memkit);
        add<c_malloc, Size>(case_name, pattern, mb::role::peer);
        if (mb::mimalloc() != nullptr)
            add<mimalloc_peer, Size>(case_name, pattern, mb::role::peer);
        else
            mb::add_skipped(case_name, "mimalloc", "libmimalloc.so.2 not installed; run scripts/setup");
#if defined(MEMKIT_BENCH_HAVE_JEMALLOC)
        add<jemalloc_peer, Size>(case_name, pattern, mb::role::peer);
#else
        mb::add_skipped(case_name, "jemalloc", "libjemalloc_pic.a (libjemalloc-dev) not installed");
#endif
    }
}

bool register_all() {
    register_size<64>();
    register_size<0>();
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
