// Benchmarks of memkit::intrusive_list (include/memkit/container/intrusive_list.hpp) against
// boost::intrusive::list (safe-mode base hook, constant-time size: the same contract) and
// std::list<T*> (a list of pointers to the same objects, as code without an intrusive list writes
// it; erasing an object needs its std::list iterator, kept in a side table).
//
// 1024 objects of 64 bytes live in a vector for the whole benchmark; the lists only link them.
//   push-erase/1024 - push_back every object, then erase them one by one, by object, in a fixed
//                     random order (seeded); a push and an erase are one op each;
//   lru-touch/1024  - all objects linked; move a random object (fixed sequence) to the front,
//                     as an LRU cache does on every hit.
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <vector>

#if defined(MEMKIT_BENCH_HAVE_BOOST)
#include <boost/intrusive/list.hpp>
#endif

#include "common/harness.hpp"
#include "memkit/container/intrusive_list.hpp"

namespace {

namespace mb = memkit::bench;

constexpr std::size_t count = 1024;
constexpr std::uint64_t order_seed = 0x696c697374; // "ilist"

const std::vector<std::size_t>& erase_order() {
    static const std::vector<std::size_t> order = mb::shuffled_indices(count, order_seed);
    return order;
}

const std::vector<std::size_t>& touch_order() {
    static const std::vector<std::size_t> order =
        mb::random_sizes(count, 0, count - 1, order_seed + 1);
    return order;
}

struct payload {
    std::uint64_t id = 0;
    char bytes[40] = {};
};

struct memkit_item : memkit::intrusive_list_hook<> {
    payload p;
};

struct memkit_subject {
    static constexpr const char* name = "memkit::intrusive_list";
    std::vector<memkit_item> items = std::vector<memkit_item>(count);
    memkit::intrusive_list<memkit_item> list;
    void push_back(std::size_t i) { list.push_back(items[i]); }
    void erase(std::size_t i) { list.erase(items[i]); }
    void to_front(std::size_t i) { list.splice(list.begin(), list, list.iterator_to(items[i])); }
    std::uint64_t front_id() const { return list.front().p.id; }
};

#if defined(MEMKIT_BENCH_HAVE_BOOST)
struct boost_item : boost::intrusive::list_base_hook<> {
    payload p;
};

struct boost_subject {
    static constexpr const char* name = "boost::intrusive::list";
    std::vector<boost_item> items = std::vector<boost_item>(count);
    boost::intrusive::list<boost_item> list;
    void push_back(std::size_t i) { list.push_back(items[i]); }
    void erase(std::size_t i) { list.erase(list.iterator_to(items[i])); }
    void to_front(std::size_t i) { list.splice(list.begin(), list, list.iterator_to(items[i])); }
    std::uint64_t front_id() const { return list.front().p.id; }
    ~boost_subject() { list.clear(); }
};
#endif

struct std_subject {
    static constexpr const char* name = "std::list<T*>";
    std::vector<payload> items = std::vector<payload>(count);
    std::vector<std::list<payload*>::iterator> where =
        std::vector<std::list<payload*>::iterator>(count);
    std::list<payload*> list;
    void push_back(std::size_t i) { where[i] = list.insert(list.end(), &items[i]); }
    void erase(std::size_t i) { list.erase(where[i]); }
    void to_front(std::size_t i) { list.splice(list.begin(), list, where[i]); }
    std::uint64_t front_id() const { return list.front()->id; }
};

template <class Subject>
void push_erase(benchmark::State& state) {
    Subject s;
    const auto& order = erase_order();
    for (auto _ : state) {
        for (std::size_t i = 0; i < count; ++i) s.push_back(i);
        benchmark::DoNotOptimize(s.front_id());
        for (std::size_t i : order) s.erase(i);
        benchmark::ClobberMemory();
    }
    mb::set_allocations(state, 2 * count);
}

template <class Subject>
void lru_touch(benchmark::State& state) {
    Subject s;
    for (std::size_t i = 0; i < count; ++i) s.push_back(i);
    const auto& order = touch_order();
    for (auto _ : state) {
        for (std::size_t i : order) s.to_front(i);
        benchmark::DoNotOptimize(s.front_id());
    }
    mb::set_allocations(state, count);
}

// Registers one case for memkit and every peer, one after the other, so they run back to back.
template <template <class> class Run>
void register_case(const std::string& case_name, std::size_t ops) {
    mb::add_case({case_name, memkit_subject::name, mb::role::memkit, ops},
                 Run<memkit_subject>::run);
#if defined(MEMKIT_BENCH_HAVE_BOOST)
    mb::add_case({case_name, boost_subject::name, mb::role::peer, ops}, Run<boost_subject>::run);
#else
    mb::add_skipped(case_name, "boost::intrusive::list",
                    "Boost headers not installed; run scripts/setup");
#endif
    mb::add_case({case_name, std_subject::name, mb::role::peer, ops}, Run<std_subject>::run);
}

template <class Subject>
struct push_erase_pattern {
    static void run(benchmark::State& s) { push_erase<Subject>(s); }
};
template <class Subject>
struct lru_touch_pattern {
    static void run(benchmark::State& s) { lru_touch<Subject>(s); }
};

bool register_all() {
    const std::string n = std::to_string(count);
    register_case<push_erase_pattern>("intrusive_list/push-erase/" + n, 2 * count);
    register_case<lru_touch_pattern>("intrusive_list/lru-touch/" + n, count);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
