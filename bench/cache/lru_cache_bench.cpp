// Benchmarks of memkit::lru_cache and memkit::sharded_lru_cache (include/memkit/cache/).
//
// Keys and values are 64-bit integers; the keys are random 64-bit numbers (fixed seed), as ids
// and content hashes are, hashed with std::hash (the identity) by every subject. 10 000 entries.
//   get-hit/1e4      4096 lookups of random present keys in a warm cache, per iteration. Peers:
//                    std::unordered_map::find (the floor: a lookup that keeps no recency), and
//                    the LRU usually written by hand, a std::list in recency order plus a
//                    std::unordered_map of list iterators (find + splice).
//   put-evict/1e4    a full cache; 4096 insertions of new keys per iteration, each evicting the
//                    least recently used entry. Peer: the hand-written LRU.
//   sharded-get-hit/1e4
//                    as get-hit through memkit::sharded_lru_cache::get (a locked lookup that
//                    returns a copy), one thread: the cost of the sharding and locking, against
//                    an lru_cache behind one std::mutex doing the same. More threads than cores
//                    would measure the scheduler, so there is no multi-threaded case.
// Times are per lookup or per insertion.
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/harness.hpp"
#include "memkit/cache/lru_cache.hpp"
#include "memkit/cache/sharded_lru_cache.hpp"

namespace {

namespace mb = memkit::bench;

using key = std::uint64_t;
using value = std::uint64_t;

constexpr std::size_t entries = 10000;
constexpr std::size_t batch = 4096;
constexpr std::uint64_t key_seed = 0x6c7275; // "lru"

const std::vector<key>& cache_keys() {
    static const std::vector<key> k = [] {
        std::mt19937_64 rng(key_seed);
        std::vector<key> v(entries);
        for (key& x : v) x = rng();
        return v;
    }();
    return k;
}

// The keys looked up, in order: random picks among the cached ones.
const std::vector<key>& lookup_keys() {
    static const std::vector<key> k = [] {
        std::mt19937_64 rng(key_seed + 1);
        std::vector<key> v(batch);
        for (key& x : v) x = cache_keys()[rng() % entries];
        return v;
    }();
    return k;
}

// The LRU cache as it is usually written by hand.
class list_map_lru {
public:
    explicit list_map_lru(std::size_t capacity) : capacity_(capacity) { map_.reserve(capacity); }
    value* get(key k) {
        auto it = map_.find(k);
        if (it == map_.end()) return nullptr;
        items_.splice(items_.begin(), items_, it->second);
        return &it->second->second;
    }
    void put(key k, value v) {
        auto it = map_.find(k);
        if (it != map_.end()) {
            it->second->second = v;
            items_.splice(items_.begin(), items_, it->second);
            return;
        }
        if (map_.size() == capacity_) {
            map_.erase(items_.back().first);
            items_.pop_back();
        }
        items_.emplace_front(k, v);
        map_.emplace(k, items_.begin());
    }

private:
    std::size_t capacity_;
    std::list<std::pair<key, value>> items_;
    std::unordered_map<key, std::list<std::pair<key, value>>::iterator> map_;
};

using memkit_lru = memkit::lru_cache<key, value>;

// Every subject checks for presence and reads the value, so the lookups cannot be dropped.
template <class Cache>
value sum_of_lookups(Cache& c) {
    value sum = 0;
    for (key k : lookup_keys()) {
        const value* p = c.get(k);
        sum += p != nullptr ? *p : 0;
    }
    return sum;
}

template <class Cache>
void fill(Cache& c) {
    for (key k : cache_keys()) c.put(k, k ^ 0x5a5a);
}

void get_hit_memkit(benchmark::State& state) {
    memkit_lru c({.max_entries = entries});
    fill(c);
    for (auto _ : state) benchmark::DoNotOptimize(sum_of_lookups(c));
    mb::set_allocations(state, batch);
}

void get_hit_unordered_map(benchmark::State& state) {
    std::unordered_map<key, value> m;
    m.reserve(entries);
    for (key k : cache_keys()) m.emplace(k, k ^ 0x5a5a);
    for (auto _ : state) {
        value sum = 0;
        for (key k : lookup_keys()) {
            auto it = m.find(k);
            sum += it != m.end() ? it->second : 0;
        }
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, batch);
}

void get_hit_list_map(benchmark::State& state) {
    list_map_lru c(entries);
    for (key k : cache_keys()) c.put(k, k ^ 0x5a5a);
    for (auto _ : state) benchmark::DoNotOptimize(sum_of_lookups(c));
    mb::set_allocations(state, batch);
}

template <class Cache>
void put_evict(benchmark::State& state, Cache& c) {
    fill(c);
    key next = 1; // new keys: cache_keys() are random 64-bit values, these small ones are not
    for (auto _ : state)
        for (std::size_t i = 0; i < batch; ++i, ++next) c.put(next, next);
    mb::set_allocations(state, batch);
}

void put_evict_memkit(benchmark::State& state) {
    memkit_lru c({.max_entries = entries});
    put_evict(state, c);
}

void put_evict_list_map(benchmark::State& state) {
    list_map_lru c(entries);
    put_evict(state, c);
}

void sharded_get_hit(benchmark::State& state) {
    memkit::sharded_lru_cache<key, value> c({.max_entries = entries});
    fill(c);
    for (auto _ : state) {
        value sum = 0;
        for (key k : lookup_keys()) sum += c.get(k).value_or(0);
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, batch);
}

void mutex_lru_get_hit(benchmark::State& state) {
    memkit_lru c({.max_entries = entries});
    std::mutex m;
    fill(c);
    auto get = [&](key k) -> std::optional<value> {
        std::lock_guard<std::mutex> lock(m);
        if (value* v = c.get(k)) return *v;
        return std::nullopt;
    };
    for (auto _ : state) {
        value sum = 0;
        for (key k : lookup_keys()) sum += get(k).value_or(0);
        benchmark::DoNotOptimize(sum);
    }
    mb::set_allocations(state, batch);
}

bool register_all() {
    const char* hit = "lru_cache/get-hit/1e4";
    mb::add_case({hit, "memkit::lru_cache", mb::role::memkit, batch}, get_hit_memkit);
    mb::add_case({hit, "std::unordered_map find (no LRU)", mb::role::peer, batch},
                 get_hit_unordered_map);
    mb::add_case({hit, "std::list+std::unordered_map LRU", mb::role::peer, batch},
                 get_hit_list_map);

    const char* evict = "lru_cache/put-evict/1e4";
    mb::add_case({evict, "memkit::lru_cache", mb::role::memkit, batch}, put_evict_memkit);
    mb::add_case({evict, "std::list+std::unordered_map LRU", mb::role::peer, batch},
                 put_evict_list_map);

    const char* sharded = "lru_cache/sharded-get-hit/1e4";
    mb::add_case({sharded, "memkit::sharded_lru_cache", mb::role::memkit, batch}, sharded_get_hit);
    mb::add_case({sharded, "std::mutex + memkit::lru_cache", mb::role::peer, batch},
                 mutex_lru_get_hit);
    return true;
}

[[maybe_unused]] const bool registered = register_all();

} // namespace
