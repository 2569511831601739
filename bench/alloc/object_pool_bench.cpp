// Benchmarks of memkit::object_pool (include/memkit/alloc/object_pool.hpp): typed objects
// constructed and destroyed through the pool, against boost::object_pool (its typed pool:
// construct/destroy; destroy keeps the free list in address order, which is part of what it
// costs) and new/delete.
//
// Patterns, for a 64-byte particle-like object whose constructor writes every field:
//   single - acquire one object and release it at once, repeatedly ("object_pool/single/64");
//   bulk   - acquire N objects, then release them in acquisition order.
// Each subject is built once per benchmark and keeps its memory between rounds (steady state).
// Times are per object, including its share of the releases.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#if defined(MEMKIT_BENCH_HAVE_BOOST)
#include <boost/pool/object_pool.hpp>
#endif

#include "common/harness.hpp"
#include "memkit/alloc/object_pool.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t single_rounds = 256;
constexpr std::size_t bulk_count = 1024;

struct particle {
    explicit particle(int i) noexcept : id(i) {
        for (int k = 0; k < 3; ++k) pos[k] = vel[k] = static_cast<double>(i + k);
    }
    double pos[3];
    double vel[3];
    float life = 1.0f;
    int id;
};
static_assert(sizeof(particle) == 56 || sizeof(particle) == 64);

struct memkit_objects {
    static constexpr const char* name = "memkit::object_pool";
    memkit::object_pool<particle> pool;
    particle* make(int i) { return pool.acquire(i); }
    void destroy(particle* p) noexcept { pool.release(p); }
};

#if defined(MEMKIT_BENCH_HAVE_BOOST)
struct boost_objects {
    static constexpr const char* name = "boost::object_pool";
    boost::object_pool<particle> pool;
    particle* make(int i) { return pool.construct(i); }
    void destroy(particle* p) noexcept { pool.destroy(p); }
};
#endif

struct new_delete {
    static constexpr const char* name = "new/delete";
    particle* make(int i) { return new particle(i); }
    void destroy(particle* p) noexcept { delete p; }
};

template <class Subject>
void single(benchmark::State& state) {
    Subject s;
    for (auto _ : state) {
        for (std::size_t i = 0; i < single_rounds; ++i) {
            particle* p = s.make(static_cast<int>(i));
            benchmark::DoNotOptimize(p);
            s.destroy(p);
        }
    }
    mb::set_allocations(state, single_rounds);
}

template <class Subject>
void bulk(benchmark::State& state) {
    Subject s;
    std::vector<particle*> objects(bulk_count);
    for (auto _ : state) {
        for (std::size_t i = 0; i < bulk_count; ++i) {
            objects[i] = s.make(static_cast<int>(i));
            benchmark::DoNotOptimize(objects[i]);
        }
        benchmark::ClobberMemory();
        for (particle* p : objects) s.destroy(p);
    }
    mb::set_allocations(state, bulk_count);
}


template <template <class> class Pattern>
void register_pattern(const char* pattern, std::size_t ops) {
    const std::string case_name =
        std::string("object_pool/") + pattern + "/" + std::to_string(sizeof(particle));
    mb::add_case({case_name, memkit_objects::name, mb::role::memkit, ops},
                 Pattern<memkit_objects>::run);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({case_name, boost_objects::name, mb::role::peer, ops},
                 Pattern<boost_objects>::run);
#else
    mb::add_skipped(case_name, "boost::object_pool", "Boost headers not installed; run scripts/setup");
#endif
    mb::add_case({case_name, new_delete::name, mb::role::peer, ops}, Pattern<new_delete>::run);
}

template <class Subject>
struct single_pattern {
    static void run(benchmark::State& s) { single<Subject>(s); }
};
template <class Subject>
struct bulk_pattern {
    static void run(benchmark::State& s) { bulk<Subject>(s); }
};

bool register_all() {
    register_pattern<single_pattern>("single", single_rounds);
    register_pattern<bulk_pattern>("bulk", bulk_count);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
