// memkit/cache/sharded_lru_cache.hpp - a thread-safe LRU cache: lru_caches behind one lock each.
//
// `sharded_lru_cache<K, V>` splits the keys over N shards (a power of two) by a mix of their
// hash; each shard is an lru_cache with its own std::mutex, on its own cache lines, so threads
// that touch different shards do not contend. The limits are divided: shard i gets max_entries / N
// and max_bytes / N (the remainder goes to the first shards), so the totals always hold, LRU
// order is exact within a shard and approximate across the cache, and an entry larger than its
// shard's share of max_bytes is rejected. The same options as lru_cache (lru_cache_options) apply
// to every shard; the callbacks (clock, size_of, on_evict) may be called from several threads at
// once, and on_evict runs under its shard's lock: it must not call this cache.
//
// Shard count: the constructor's `shards` (a power of two), or 0 for the default: the power of
// two at least 2 x hardware_concurrency, between 4 and 64, halved while a shard would get fewer
// than 16 entries of max_entries. Choose fewer shards when entries are large relative to
// max_bytes.
//
// Values leave the cache by copy: get and peek return std::optional<V> (a pointer into a shard
// would dangle as soon as another thread evicts the entry); visit(key, fn) runs fn(V&) under the
// shard's lock, without a copy (fn must not call the cache). For large values, store
// std::shared_ptr<const T>.
//
// get_or_compute(key, fn) computes outside the lock, once per key: the first caller that misses
// registers the key as in flight, releases the lock and calls fn; callers that miss on the same
// key meanwhile wait for that result instead of computing it again, and the rest of the shard
// stays available. So a slow fn (a disk read, a decode) blocks only the callers of its own key,
// and fn does not run twice for one miss. The computed value is stored unless a put stored the
// key during the computation (the put wins); every caller gets the computed value, even when
// the cache rejects it. If fn throws, its exception propagates to its own caller only; the
// callers that waited then retry, one computing at a time (a transient failure costs the others
// nothing; a persistent one is tried once per caller). Waiters are not handed the same exception
// object: one object rethrown in several threads is a source of races in catch handlers.
// fn may use the cache for other keys; calling get_or_compute for the same key from inside fn
// deadlocks.
//
// Stats are aggregated over the shards (each shard read under its lock, so the sum is not one
// atomic snapshot while other threads run); every get, visit and get_or_compute counts exactly one
// hit or miss (a caller that waited for another's computation counts a miss).
//
// Complexity: as lru_cache per operation, plus one uncontended lock; size, bytes, stats, clear,
// shrink_to, on_pressure, set_max_*: O(N) locks plus the work in each shard.
// Thread-safety: every member function is thread-safe, except construction and destruction.
// Failure: the constructor throws std::invalid_argument for a shard count that is not a power of
// two (or above 4096) and for the option errors of lru_cache; allocation failures propagate
// std::bad_alloc; an exception from fn propagates to the caller that called fn.
//
//   memkit::sharded_lru_cache<std::string, std::string> cache({.max_bytes = 64 << 20});
//   cache.put("k", "v");
//   std::optional<std::string> v = cache.get("k");
#pragma once

#include <algorithm>
#include <bit>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/cache/lru_cache.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/heap/pressure_level.hpp"

namespace memkit {

template <class K, class V, class Hash = std::hash<K>, class KeyEqual = std::equal_to<K>,
          class Allocator = std::allocator<std::pair<const K, V>>>
class sharded_lru_cache {
public:
    using key_type = K;
    using mapped_type = V;
    using hasher = Hash;
    using key_equal = KeyEqual;
    using allocator_type = Allocator;
    using cache_type = lru_cache<K, V, Hash, KeyEqual, Allocator>;
    using options = lru_cache_options<K, V>;
    static constexpr std::size_t unlimited = options::unlimited;
    static constexpr std::size_t max_shards = 4096;

private:
    static constexpr bool transparent = requires {
        typename Hash::is_transparent;
        typename KeyEqual::is_transparent;
    };
    // Lookups by another type than K (dependent on Q, as a constraint of a member template).
    template <class Q>
    static constexpr bool heterogeneous = transparent && !std::is_same_v<Q, K>;

public:
    explicit sharded_lru_cache(options opts = {}, std::size_t shards = 0, const Hash& hash = Hash(),
                               const KeyEqual& equal = KeyEqual(),
                               const Allocator& alloc = Allocator())
        : hash_(hash), eq_(equal), max_entries_(opts.max_entries), max_bytes_(opts.max_bytes) {
        if (shards == 0) shards = default_shard_count(opts.max_entries);
        if (!std::has_single_bit(shards) || shards > max_shards)
            throw std::invalid_argument(
                "memkit::sharded_lru_cache: the shard count must be a power of two <= 4096");
        count_ = shards;
        void* raw = ::operator new (count_ * sizeof(shard), std::align_val_t{alignof(shard)});
        shards_ = static_cast<shard*>(raw);
        std::size_t built = 0;
        try {
            for (; built < count_; ++built) {
                options o = opts;
                o.max_entries = share_(opts.max_entries, built);
                o.max_bytes = share_(opts.max_bytes, built);
                ::new (static_cast<void*>(shards_ + built)) shard(std::move(o), hash, equal, alloc);
            }
        } catch (...) {
            destroy_shards_(built);
            throw;
        }
    }

    sharded_lru_cache(const sharded_lru_cache&) = delete;
    sharded_lru_cache& operator=(const sharded_lru_cache&) = delete;

    ~sharded_lru_cache() { destroy_shards_(count_); }

    /// The default shard count for a cache of `max_entries` (see the header comment).
    [[nodiscard]] static std::size_t default_shard_count(std::size_t max_entries) noexcept {
        const std::size_t hw = std::max<std::size_t>(std::thread::hardware_concurrency(), 1);
        std::size_t n = std::clamp<std::size_t>(std::bit_ceil(2 * hw), 4, 64);
        while (n > 1 && max_entries != unlimited && max_entries / n < 16) n /= 2;
        return n;
    }

    // ---- lookups -------------------------------------------------------------------------

    /// A copy of the value of `key` (made most recently used in its shard), or nullopt. Counts a
    /// hit or a miss.
    std::optional<V> get(const K& key) { return get_(key); }
    template <class Q>
    std::optional<V> get(const Q& key) requires heterogeneous<Q> {
        return get_(key);
    }

    /// Calls fn(V&) under the shard's lock if `key` is present (made most recently used); returns
    /// whether it was. Counts a hit or a miss. fn must not call this cache.
    template <class F>
    bool visit(const K& key, F&& fn) {
        return visit_(key, fn);
    }
    template <class Q, class F>
    bool visit(const Q& key, F&& fn) requires heterogeneous<Q> {
        return visit_(key, fn);
    }

    /// A copy of the value of `key` without reordering or counting, or nullopt.
    [[nodiscard]] std::optional<V> peek(const K& key) const { return peek_(key); }
    template <class Q>
    [[nodiscard]] std::optional<V> peek(const Q& key) const requires heterogeneous<Q> {
        return peek_(key);
    }

    [[nodiscard]] bool contains(const K& key) const { return contains_(key); }
    template <class Q>
    [[nodiscard]] bool contains(const Q& key) const requires heterogeneous<Q> {
        return contains_(key);
    }

    // ---- insertion -----------------------------------------------------------------------

    /// Stores `value` under `key` (inserting or replacing). False if rejected (larger than the
    /// shard's byte limit); `value` is then not moved from.
    template <class M>
    bool put(const K& key, M&& value) {
        const std::size_t h = hash_(key);
        shard& s = shard_for_(h);
        std::lock_guard<std::mutex> lock(s.mutex);
        return s.cache.assign_h_(key, cache_type::mix(h), std::forward<M>(value)).first != nullptr;
    }
    template <class M>
    bool put(K&& key, M&& value) {
        const std::size_t h = hash_(key);
        shard& s = shard_for_(h);
        std::lock_guard<std::mutex> lock(s.mutex);
        return s.cache.assign_h_(std::move(key), cache_type::mix(h), std::forward<M>(value))
                   .first != nullptr;
    }

    /// Inserts V(args...) if `key` is absent. True if inserted; false if present (it is made most
    /// recently used) or rejected.
    template <class... Args>
    bool try_emplace(const K& key, Args&&... args) {
        const std::size_t h = hash_(key);
        shard& s = shard_for_(h);
        std::lock_guard<std::mutex> lock(s.mutex);
        return s.cache.emplace_h_(key, cache_type::mix(h), std::forward<Args>(args)...).second;
    }

    /// The cached value of `key`, or the value fn(key) (or fn()) computes, stored and returned
    /// (see the header comment for the concurrency rules).
    template <class F>
    V get_or_compute(const K& key, F&& fn) {
        const std::size_t h = hash_(key);
        const std::size_t mh = cache_type::mix(h);
        shard& s = shard_for_(h);
        std::unique_lock<std::mutex> lock(s.mutex);
        if (V* v = s.cache.get_h_(key, mh)) return *v; // the one counted lookup
        while (std::shared_ptr<flight> other = find_flight_(s, key, mh)) {
            other->done_cv.wait(lock, [&] { return other->done; });
            if (other->value) return *other->value;
            // That computation failed: look again (uncounted), then wait for another or compute.
            if (auto* n = s.cache.find_live_(key, mh)) {
                s.cache.promote_(n);
                return n->value;
            }
        }
        auto f = std::make_shared<flight>(mh, &key);
        s.flights.push_back(f);
        lock.unlock();
        std::optional<V> result;
        try {
            result.emplace(cache_type::node::invoke_(fn, key));
            lock.lock();
            s.cache.emplace_h_(key, mh, std::as_const(*result));
        } catch (...) {
            if (!lock.owns_lock()) lock.lock();
            land_(s, f, nullptr);
            throw;
        }
        land_(s, f, &*result);
        return std::move(*result);
    }

    // ---- removal -------------------------------------------------------------------------

    bool erase(const K& key) { return erase_(key); }
    template <class Q>
    bool erase(const Q& key) requires heterogeneous<Q> {
        return erase_(key);
    }

    /// Clears every shard (reason cleared).
    void clear() {
        for_each_shard_([](cache_type& c) { c.clear(); });
    }

    /// Removes every expired entry; returns how many.
    std::size_t purge_expired() {
        std::size_t n = 0;
        for_each_shard_([&](cache_type& c) { n += c.purge_expired(); });
        return n;
    }

    /// Evicts until each shard holds at most its share of `target` bytes (so bytes() <= target).
    /// Returns the bytes released.
    std::size_t shrink_to(std::size_t target) {
        std::size_t n = 0;
        for (std::size_t i = 0; i < count_; ++i) {
            std::lock_guard<std::mutex> lock(shards_[i].mutex);
            n += shards_[i].cache.shrink_to(share_(target, i));
        }
        return n;
    }

    /// Applies the pressure policy in every shard; returns the bytes released.
    std::size_t on_pressure(pressure_level level) {
        std::size_t n = 0;
        for_each_shard_([&](cache_type& c) { n += c.on_pressure(level); });
        std::lock_guard<std::mutex> lock(config_mutex_);
        level_ = level;
        return n;
    }

    /// Divides the new limit over the shards (evicting with reason shrunk where needed).
    void set_max_bytes(std::size_t b) {
        {
            std::lock_guard<std::mutex> lock(config_mutex_);
            max_bytes_ = b;
        }
        for (std::size_t i = 0; i < count_; ++i) {
            std::lock_guard<std::mutex> lock(shards_[i].mutex);
            shards_[i].cache.set_max_bytes(share_(b, i));
        }
    }
    void set_max_entries(std::size_t n) {
        {
            std::lock_guard<std::mutex> lock(config_mutex_);
            max_entries_ = n;
        }
        for (std::size_t i = 0; i < count_; ++i) {
            std::lock_guard<std::mutex> lock(shards_[i].mutex);
            shards_[i].cache.set_max_entries(share_(n, i));
        }
    }

    // ---- observers -----------------------------------------------------------------------

    [[nodiscard]] std::size_t size() const {
        std::size_t n = 0;
        for_each_shard_([&](const cache_type& c) { n += c.size(); });
        return n;
    }
    [[nodiscard]] std::size_t bytes() const {
        std::size_t n = 0;
        for_each_shard_([&](const cache_type& c) { n += c.bytes(); });
        return n;
    }
    /// The sum of the shards' byte limits in effect (lowered under pressure).
    [[nodiscard]] std::size_t byte_limit() const {
        std::size_t n = 0;
        for_each_shard_([&](const cache_type& c) {
            n = c.byte_limit() == unlimited || n == unlimited ? unlimited : n + c.byte_limit();
        });
        return n;
    }
    [[nodiscard]] std::size_t max_entries() const {
        std::lock_guard<std::mutex> lock(config_mutex_);
        return max_entries_;
    }
    [[nodiscard]] std::size_t max_bytes() const {
        std::lock_guard<std::mutex> lock(config_mutex_);
        return max_bytes_;
    }
    [[nodiscard]] pressure_level pressure() const {
        std::lock_guard<std::mutex> lock(config_mutex_);
        return level_;
    }
    [[nodiscard]] std::size_t shard_count() const noexcept { return count_; }

    /// The sum of the shards' counters.
    [[nodiscard]] cache_stats stats() const {
        cache_stats total;
        for_each_shard_([&](const cache_type& c) { total += c.stats(); });
        return total;
    }
    void reset_stats() {
        for_each_shard_([](cache_type& c) { c.reset_stats(); });
    }
    [[nodiscard]] double hit_rate() const { return stats().hit_rate(); }

    [[nodiscard]] hasher hash_function() const { return hash_; }
    [[nodiscard]] key_equal key_eq() const { return eq_; }

private:
    // A computation in progress (get_or_compute): callers that miss on the same key wait on it.
    struct flight {
        flight(std::size_t h, const K* k) noexcept : hash(h), key(k) {}
        std::size_t hash; // mixed, as in the shard's index
        const K* key;     // the computing caller's key, alive while listed
        std::condition_variable done_cv;
        bool done = false;
        std::optional<V> value; // the result, when it succeeded and someone waits for it
    };

    struct alignas(cache_line_size) shard {
        shard(options o, const Hash& h, const KeyEqual& e, const Allocator& a)
            : cache(std::move(o), h, e, a) {}
        std::mutex mutex;
        cache_type cache;
        std::vector<std::shared_ptr<flight>> flights;
    };

    // A second mix, independent of the index's (which takes the top bits of mix(h)), so the keys
    // of one shard still spread over its whole index.
    shard& shard_for_(std::size_t h) const noexcept {
        std::uint64_t x = static_cast<std::uint64_t>(h);
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        return shards_[static_cast<std::size_t>(x >> 40) & (count_ - 1)];
    }

    std::size_t share_(std::size_t total, std::size_t i) const noexcept {
        if (total == unlimited) return unlimited;
        return total / count_ + (i < total % count_ ? 1 : 0);
    }

    template <class Q>
    std::shared_ptr<flight> find_flight_(const shard& s, const Q& key, std::size_t mh) const {
        for (const std::shared_ptr<flight>& f : s.flights)
            if (f->hash == mh && eq_(*f->key, key)) return f;
        return nullptr;
    }

    // Ends a flight (under the shard's lock): unlists it, hands the value (nullptr: failed) to
    // the waiters and wakes them. If copying the value for them fails, they retry as after a
    // failed computation.
    void land_(shard& s, const std::shared_ptr<flight>& f, const V* value) noexcept {
        s.flights.erase(std::find(s.flights.begin(), s.flights.end(), f));
        if (value != nullptr && f.use_count() > 1) { // waiters hold the other references
            try {
                f->value.emplace(*value);
            } catch (...) {}
        }
        f->done = true;
        f->done_cv.notify_all();
    }

    template <class Q>
    std::optional<V> get_(const Q& key) {
        const std::size_t h = hash_(key);
        shard& s = shard_for_(h);
        std::lock_guard<std::mutex> lock(s.mutex);
        if (V* v = s.cache.get_h_(key, cache_type::mix(h))) return *v;
        return std::nullopt;
    }

    template <class Q, class F>
    bool visit_(const Q& key, F& fn) {
        const std::size_t h = hash_(key);
        shard& s = shard_for_(h);
        std::lock_guard<std::mutex> lock(s.mutex);
        V* v = s.cache.get_h_(key, cache_type::mix(h));
        if (v == nullptr) return false;
        fn(*v);
        return true;
    }

    template <class Q>
    std::optional<V> peek_(const Q& key) const {
        const std::size_t h = hash_(key);
        shard& s = shard_for_(h);
        std::lock_guard<std::mutex> lock(s.mutex);
        if (const V* v = s.cache.peek_h_(key, cache_type::mix(h))) return *v;
        return std::nullopt;
    }

    template <class Q>
    bool contains_(const Q& key) const {
        const std::size_t h = hash_(key);
        shard& s = shard_for_(h);
        std::lock_guard<std::mutex> lock(s.mutex);
        return s.cache.peek_h_(key, cache_type::mix(h)) != nullptr;
    }

    template <class Q>
    bool erase_(const Q& key) {
        const std::size_t h = hash_(key);
        shard& s = shard_for_(h);
        std::lock_guard<std::mutex> lock(s.mutex);
        return s.cache.erase_h_(key, cache_type::mix(h));
    }

    template <class F>
    void for_each_shard_(F&& fn) const {
        for (std::size_t i = 0; i < count_; ++i) {
            std::lock_guard<std::mutex> lock(shards_[i].mutex);
            fn(std::as_const(shards_[i].cache));
        }
    }
    template <class F>
    void for_each_shard_(F&& fn) {
        for (std::size_t i = 0; i < count_; ++i) {
            std::lock_guard<std::mutex> lock(shards_[i].mutex);
            fn(shards_[i].cache);
        }
    }

    void destroy_shards_(std::size_t n) noexcept {
        for (std::size_t i = n; i-- > 0;) shards_[i].~shard();
        ::operator delete (static_cast<void*>(shards_), std::align_val_t{alignof(shard)});
    }

    [[no_unique_address]] Hash hash_;
    [[no_unique_address]] KeyEqual eq_;
    shard* shards_ = nullptr;
    std::size_t count_ = 0;
    mutable std::mutex config_mutex_; // the totals below, for the observers
    std::size_t max_entries_;
    std::size_t max_bytes_;
    pressure_level level_ = pressure_level::low;
};

} // namespace memkit
