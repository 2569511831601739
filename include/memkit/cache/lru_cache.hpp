// memkit/cache/lru_cache.hpp - a least-recently-used cache bounded in entries and in bytes.
//
// `lru_cache<K, V>` keeps the values that were used most recently and drops the others when a
// limit is reached: the number of entries (`max_entries`) and the bytes they are charged
// (`max_bytes`). Each entry is charged `size_of(key, value)`, a function given in the options
// (default: sizeof(K) + sizeof(V)), computed when the value is stored. An insertion first removes
// expired entries (oldest write first), then least-recently-used ones, until both limits hold with
// the new entry counted. An entry whose charge alone exceeds the byte limit (or any entry when
// max_entries is 0) is rejected: the call reports it and the cache is unchanged, except that
// put/insert_or_assign of a key that is present remove the old value (reason `replaced`) so the
// cache never serves a value its caller has overwritten. A rejected rvalue is not moved from by
// put/insert_or_assign; try_emplace and get_or_compute build the value before they can charge it.
//
// Options (lru_cache_options<K, V>, an aggregate): max_entries, max_bytes, ttl (expire-after-
// write, 0: never; an entry older than ttl is a miss; it is removed when it is looked up, when an
// insertion needs room, or by purge_expired()), clock (a function returning
// steady_clock::time_point, for tests; empty: steady_clock::now), size_of, on_evict (called with
// the key, the value moved out and an eviction_reason each time a value leaves the cache,
// replaced values included; never by the destructor) and pressure (the fraction of max_bytes
// kept at each pressure level).
//
// Lookups: get(key) returns a V* (nullptr on a miss) and makes the entry most recently used;
// peek(key) and contains(key) neither reorder nor count. get_or_compute(key, fn) returns the
// cached value or calls fn (as fn(key) or fn()) on a miss only and stores what it returns; if fn
// throws, nothing is stored and the exception propagates. fn may use the cache (recursive
// memoization works): the entry is added after fn returns. With a transparent Hash and KeyEqual
// (`using is_transparent = void;` in both) lookups take any key type they accept.
//
// Pointer and reference validity: a pointer returned by get/peek/insert_or_assign/try_emplace or
// the reference from get_or_compute stays valid until that entry is removed. Any insertion may
// evict it; erase, clear, shrink_to, purge_expired, set_max_*, on_pressure may remove it; lookups
// (get, peek, contains) never remove another entry than the one looked up. Entries never move in
// memory. If get_or_compute's value is rejected, the reference is to a value held outside the
// cache until the next insertion, clear() or destruction.
//
// Pressure: on_pressure(memkit::pressure_level) lowers the byte limit in effect to
// `pressure.<level> * max_bytes` (of bytes() at the first restricting call when max_bytes is
// unlimited) and evicts down to it (reason `shrunk`); the limit stays lowered until a level whose
// fraction is 1 (low, medium by default) restores max_bytes. Wire a monitor with
// `monitor.on_level_change([&](memkit::pressure_level l) { cache.on_pressure(l); });`.
// shrink_to(bytes) is a one-off eviction down to a byte target.
//
// Stats (cache_stats, O(1)): hits and misses of get/get_or_compute, insertions (new entries),
// updates (values replaced in place), rejections, removals by reason, evictions() (capacity,
// bytes, expired, shrunk: the entries the cache dropped on its own), hit_rate(). Always:
// size() == insertions - (sum of removals - updates).
//
// Design: an open-addressing index (linear probing, Robin Hood insertion, backward-shift
// deletion, load at most 3/4) of {hash, node*} slots over nodes that each hold the key, the
// value and the links of an intrusive doubly-linked recency list (and of a write-order list when
// ttl is set). A get hit is one hash, usually one slot and one node load, and six pointer writes
// to move the node to the front; it never allocates. Each insertion
// allocates one node from Allocator (rebound), except that the node freed by the last eviction is
// kept and reused, so a full cache that evicts one entry per insertion does not allocate.
//
// Complexity: get, peek, contains, put, try_emplace, erase, get_or_compute: O(1) average (the
// index grows by doubling, amortized O(1)); each eviction O(1); purge_expired O(expired);
// clear O(n); shrink_to, set_max_*, on_pressure O(evicted). Memory: one node per entry (the key,
// the value and 7 words) plus 16 to 43 bytes of index per entry (16-byte slots, load 3/8..3/4).
// Exception safety: a throwing hash, key comparison, size_of, allocation or K/V constructor
// leaves the entries as they were (strong guarantee; only an expired entry the call came across
// may be gone, which no lookup could have returned). An update of a present key whose V
// assignment throws keeps the old value when on_evict is set (it is moved back) and otherwise
// leaves it as V's assignment does. on_evict must not throw (it is called from noexcept code:
// an exception terminates) and must not call the same cache. Move-only: a moved-from cache is
// empty (assign to it or destroy it); a move assignment drops the target's entries without
// callbacks.
// Thread-safety: not thread-safe, not even get (it reorders the list); use one cache per thread,
// a lock, or memkit::sharded_lru_cache. peek/contains/size/bytes/stats on a const cache may run
// concurrently with each other.
// Failure: the constructor throws std::invalid_argument for a negative ttl or invalid pressure
// fractions (each in [0, 1], non-increasing from low to critical); allocation failures throw
// what Allocator throws (std::bad_alloc).
//
//   memkit::lru_cache<std::string, std::string> cache({.max_entries = 1000, .max_bytes = 1 << 20});
//   cache.put("k", "v");
//   if (std::string* v = cache.get("k")) use(*v);
#pragma once

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <memory_resource>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <utility>

#include "memkit/core/platform.hpp"
#include "memkit/heap/pressure_level.hpp"

namespace memkit {

/// Why a value left a cache (the on_evict callback's third argument).
enum class eviction_reason : std::uint8_t {
    capacity, ///< least recently used, removed to respect max_entries
    bytes,    ///< least recently used, removed to respect the byte limit
    expired,  ///< older than the ttl
    erased,   ///< erase()
    cleared,  ///< clear()
    shrunk,   ///< shrink_to(), on_pressure(), set_max_bytes(), set_max_entries()
    replaced, ///< the old value of put/insert_or_assign on a present key
};
inline constexpr std::size_t eviction_reason_count = 7;

/// "capacity", "bytes", "expired", "erased", "cleared", "shrunk" or "replaced".
[[nodiscard]] constexpr std::string_view to_string(eviction_reason r) noexcept {
    switch (r) {
    case eviction_reason::capacity: return "capacity";
    case eviction_reason::bytes: return "bytes";
    case eviction_reason::expired: return "expired";
    case eviction_reason::erased: return "erased";
    case eviction_reason::cleared: return "cleared";
    case eviction_reason::shrunk: return "shrunk";
    case eviction_reason::replaced: return "replaced";
    }
    return "unknown";
}

/// Counters of a cache. Lookups are get/get_or_compute (and visit in sharded_lru_cache); peek,
/// contains and try_emplace are not counted.
struct cache_stats {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t insertions = 0; ///< entries added under a new key
    std::uint64_t updates = 0;    ///< values replaced in place (also counted as removals(replaced))
    std::uint64_t rejections = 0; ///< values refused: larger than the byte limit, or max_entries 0
    std::array<std::uint64_t, eviction_reason_count> by_reason{}; ///< values removed, per reason

    [[nodiscard]] constexpr std::uint64_t removals(eviction_reason r) const noexcept {
        return by_reason[static_cast<std::size_t>(r)];
    }
    /// Entries the cache dropped on its own: capacity + bytes + expired + shrunk.
    [[nodiscard]] constexpr std::uint64_t evictions() const noexcept {
        return removals(eviction_reason::capacity) + removals(eviction_reason::bytes) +
               removals(eviction_reason::expired) + removals(eviction_reason::shrunk);
    }
    [[nodiscard]] constexpr std::uint64_t lookups() const noexcept { return hits + misses; }
    /// hits / (hits + misses); 0 before the first lookup.
    [[nodiscard]] constexpr double hit_rate() const noexcept {
        const std::uint64_t n = lookups();
        return n == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(n);
    }
    constexpr cache_stats& operator+=(const cache_stats& o) noexcept {
        hits += o.hits;
        misses += o.misses;
        insertions += o.insertions;
        updates += o.updates;
        rejections += o.rejections;
        for (std::size_t i = 0; i < eviction_reason_count; ++i) by_reason[i] += o.by_reason[i];
        return *this;
    }
    friend constexpr bool operator==(const cache_stats&, const cache_stats&) = default;
};

/// The fraction of max_bytes a cache keeps at each pressure level (on_pressure).
struct cache_pressure_policy {
    double low = 1.0;
    double medium = 1.0;
    double high = 0.5;
    double critical = 0.25;

    [[nodiscard]] constexpr double fraction(pressure_level l) const noexcept {
        switch (l) {
        case pressure_level::low: return low;
        case pressure_level::medium: return medium;
        case pressure_level::high: return high;
        case pressure_level::critical: return critical;
        }
        return 1.0;
    }
    /// Each fraction in [0, 1] and none above the one of a lower level.
    [[nodiscard]] constexpr bool valid() const noexcept {
        return 0.0 <= critical && critical <= high && high <= medium && medium <= low && low <= 1.0;
    }
};

/// Configuration of lru_cache and sharded_lru_cache. An aggregate: use designated initializers.
template <class K, class V>
struct lru_cache_options {
    using clock_type = std::chrono::steady_clock;
    static constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();

    std::size_t max_entries = unlimited;
    std::size_t max_bytes = unlimited;
    /// Expire-after-write; zero: entries never expire. Must not be negative. (A plain duration
    /// rather than an optional: GCC 12 reports false maybe-uninitialized warnings on the latter.)
    clock_type::duration ttl{};
    /// The current time, read only when ttl is set; empty: steady_clock::now.
    std::function<clock_type::time_point()> clock{};
    /// The bytes an entry is charged; empty: sizeof(K) + sizeof(V).
    std::function<std::size_t(const K&, const V&)> size_of{};
    /// Called with every value that leaves the cache; must not throw nor call the cache.
    std::function<void(const K&, V&&, eviction_reason)> on_evict{};
    cache_pressure_policy pressure{};
};

template <class K, class V, class Hash, class KeyEqual, class Allocator>
class sharded_lru_cache;

template <class K, class V, class Hash = std::hash<K>, class KeyEqual = std::equal_to<K>,
          class Allocator = std::allocator<std::pair<const K, V>>>
class lru_cache {
    struct links {
        links* prev;
        links* next;
    };
    struct node;
    struct slot {
        std::size_t hash; // mixed hash; meaningful only when n != nullptr
        node* n;          // nullptr: empty
    };
    using node_alloc = typename std::allocator_traits<Allocator>::template rebind_alloc<node>;
    using node_traits = std::allocator_traits<node_alloc>;
    using slot_alloc = typename std::allocator_traits<Allocator>::template rebind_alloc<slot>;
    using slot_traits = std::allocator_traits<slot_alloc>;

    static constexpr bool transparent = requires {
        typename Hash::is_transparent;
        typename KeyEqual::is_transparent;
    };
    // Lookups by another type than K (dependent on Q, as a constraint of a member template).
    template <class Q>
    static constexpr bool heterogeneous = transparent && !std::is_same_v<Q, K>;

public:
    using key_type = K;
    using mapped_type = V;
    using hasher = Hash;
    using key_equal = KeyEqual;
    using allocator_type = Allocator;
    using size_type = std::size_t;
    using options = lru_cache_options<K, V>;
    using clock_type = typename options::clock_type;
    static constexpr std::size_t unlimited = options::unlimited;

    explicit lru_cache(options opts = {}, const Hash& hash = Hash(),
                       const KeyEqual& equal = KeyEqual(), const Allocator& alloc = Allocator())
        : hash_(hash), eq_(equal), alloc_(alloc), max_entries_(opts.max_entries),
          max_bytes_(opts.max_bytes), byte_limit_(opts.max_bytes), clock_(std::move(opts.clock)),
          size_of_(std::move(opts.size_of)), on_evict_(std::move(opts.on_evict)),
          policy_(opts.pressure) {
        if (opts.ttl.count() < 0)
            throw std::invalid_argument("memkit::lru_cache: options.ttl must not be negative");
        ttl_ = opts.ttl.count();
        if (!policy_.valid())
            throw std::invalid_argument(
                "memkit::lru_cache: options.pressure fractions must lie in [0, 1] and not grow "
                "from low to critical");
    }

    lru_cache(const lru_cache&) = delete;
    lru_cache& operator=(const lru_cache&) = delete;

    /// The other cache is left empty; its options are unspecified (assign to it or destroy it).
    lru_cache(lru_cache&& other) noexcept
        : hash_(std::move(other.hash_)), eq_(std::move(other.eq_)),
          alloc_(std::move(other.alloc_)) {
        take_state_(other);
    }

    /// Removes every entry of this cache (without callbacks) and takes the other's. With an
    /// allocator that neither propagates nor compares equal, the entries are moved one by one
    /// into nodes of this cache's allocator.
    lru_cache& operator=(lru_cache&& other) noexcept(
        std::allocator_traits<Allocator>::propagate_on_container_move_assignment::value ||
        std::allocator_traits<Allocator>::is_always_equal::value) {
        if (this == &other) return *this;
        destroy_all_();
        release_table_();
        release_spare_();
        hash_ = std::move(other.hash_);
        eq_ = std::move(other.eq_);
        if constexpr (std::allocator_traits<
                          Allocator>::propagate_on_container_move_assignment::value) {
            alloc_ = std::move(other.alloc_);
            take_state_(other);
        } else if constexpr (std::allocator_traits<Allocator>::is_always_equal::value) {
            take_state_(other);
        } else if (alloc_ == other.alloc_) {
            take_state_(other);
        } else {
            move_entries_from_(other);
        }
        return *this;
    }

    ~lru_cache() {
        destroy_all_();
        release_table_();
        release_spare_();
    }

    // ---- lookups -------------------------------------------------------------------------

    /// The value of `key` made most recently used, or nullptr (a miss; an expired entry is
    /// removed). Counts a hit or a miss. Never allocates.
    V* get(const K& key) { return get_h_(key, mix(hash_(key))); }
    template <class Q>
    V* get(const Q& key) requires heterogeneous<Q> {
        return get_h_(key, mix(hash_(key)));
    }

    /// The value of `key` without reordering or counting; nullptr if absent or expired.
    [[nodiscard]] const V* peek(const K& key) const { return peek_h_(key, mix(hash_(key))); }
    template <class Q>
    [[nodiscard]] const V* peek(const Q& key) const requires heterogeneous<Q> {
        return peek_h_(key, mix(hash_(key)));
    }
    [[nodiscard]] V* peek(const K& key) { return const_cast<V*>(std::as_const(*this).peek(key)); }
    template <class Q>
    [[nodiscard]] V* peek(const Q& key) requires heterogeneous<Q> {
        return const_cast<V*>(std::as_const(*this).peek(key));
    }

    [[nodiscard]] bool contains(const K& key) const { return peek(key) != nullptr; }
    template <class Q>
    [[nodiscard]] bool contains(const Q& key) const requires heterogeneous<Q> {
        return peek(key) != nullptr;
    }

    // ---- insertion -----------------------------------------------------------------------

    /// Stores `value` under `key` (inserting or replacing) as the most recently used entry.
    /// False if it was rejected (see the header comment); `value` is then not moved from.
    template <class M>
    bool put(const K& key, M&& value) {
        return insert_or_assign(key, std::forward<M>(value)).first != nullptr;
    }
    template <class M>
    bool put(K&& key, M&& value) {
        return insert_or_assign(std::move(key), std::forward<M>(value)).first != nullptr;
    }

    /// As put; returns {the stored value, true if a new entry was inserted}, or {nullptr,
    /// false} when rejected.
    template <class M>
    std::pair<V*, bool> insert_or_assign(const K& key, M&& value) {
        return assign_h_(key, mix(hash_(key)), std::forward<M>(value));
    }
    template <class M>
    std::pair<V*, bool> insert_or_assign(K&& key, M&& value) {
        const std::size_t h = mix(hash_(key));
        return assign_h_(std::move(key), h, std::forward<M>(value));
    }

    /// If `key` is present (and not expired): makes it most recently used and returns {it,
    /// false}. Otherwise constructs V from `args` and inserts it: {it, true}, or {nullptr, false}
    /// if the new entry is rejected (the arguments may have been moved from).
    template <class... Args>
    std::pair<V*, bool> try_emplace(const K& key, Args&&... args) {
        return emplace_h_(key, mix(hash_(key)), std::forward<Args>(args)...);
    }
    template <class... Args>
    std::pair<V*, bool> try_emplace(K&& key, Args&&... args) {
        const std::size_t h = mix(hash_(key));
        return emplace_h_(std::move(key), h, std::forward<Args>(args)...);
    }

    /// The cached value of `key` (a hit), or, on a miss, the value `fn(key)` (or `fn()`) returns,
    /// stored as the most recently used entry. fn runs only on a miss; if it throws nothing is
    /// stored. A value that is rejected is still returned (held until the next insertion).
    template <class F>
    V& get_or_compute(const K& key, F&& fn) {
        return compute_h_(key, mix(hash_(key)), fn);
    }
    template <class F>
    V& get_or_compute(K&& key, F&& fn) {
        const std::size_t h = mix(hash_(key));
        return compute_h_(std::move(key), h, fn);
    }

    // ---- removal -------------------------------------------------------------------------

    /// Removes `key` (reason erased). False if it was absent; an expired entry is removed as
    /// expired and false is returned.
    bool erase(const K& key) { return erase_h_(key, mix(hash_(key))); }
    template <class Q>
    bool erase(const Q& key) requires heterogeneous<Q> {
        return erase_h_(key, mix(hash_(key)));
    }

    /// Removes every entry, least recently used first (reason cleared), and releases the index
    /// and the kept node.
    void clear() noexcept {
        drop_spill_();
        while (head_.prev != &head_) remove_(lru_(), eviction_reason::cleared);
        release_table_();
        release_spare_();
    }

    /// Removes every expired entry (oldest write first). Returns how many were removed.
    std::size_t purge_expired() noexcept {
        if (ttl_ == 0) return 0;
        const rep now = now_();
        std::size_t n = 0;
        while (oldest_ != nullptr && oldest_->expires <= now) {
            remove_(oldest_, eviction_reason::expired);
            ++n;
        }
        return n;
    }

    /// Evicts (expired entries first, then least recently used; reason shrunk) until bytes() <=
    /// target. The limits are unchanged. Returns the bytes released.
    std::size_t shrink_to(std::size_t target) noexcept {
        const std::size_t before = bytes_;
        evict_until_(max_entries_, target, true);
        compact_table_();
        return before - bytes_;
    }

    /// Applies the pressure policy for `level` (see the header comment). Returns the bytes
    /// released.
    std::size_t on_pressure(pressure_level level) noexcept {
        const double f = policy_.fraction(level);
        level_ = level;
        if (f >= 1.0) {
            restricted_ = false;
            byte_limit_ = max_bytes_;
            return 0;
        }
        if (!restricted_) pressure_base_ = max_bytes_ != unlimited ? max_bytes_ : bytes_;
        restricted_ = true;
        byte_limit_ = std::min(max_bytes_, scaled_(pressure_base_, f));
        return shrink_to(byte_limit_);
    }

    /// Changes the limits; entries above them are evicted at once (reason shrunk).
    void set_max_bytes(std::size_t b) noexcept {
        max_bytes_ = b;
        if (!restricted_) {
            byte_limit_ = b;
        } else {
            const double f = policy_.fraction(level_);
            if (b != unlimited) pressure_base_ = b;
            byte_limit_ = std::min(b, scaled_(pressure_base_, f));
        }
        evict_until_(max_entries_, byte_limit_, true);
        compact_table_();
    }
    void set_max_entries(std::size_t n) noexcept {
        max_entries_ = n;
        evict_until_(max_entries_, byte_limit_, true);
        compact_table_();
    }

    /// Makes room in the index for `n` entries without rehashing.
    void reserve(std::size_t n) {
        if (n * 4 > capacity_ * 3) rehash_(table_size_for_(n));
    }

    // ---- observers -----------------------------------------------------------------------

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    /// The sum of the charges of the entries.
    [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }
    [[nodiscard]] std::size_t max_entries() const noexcept { return max_entries_; }
    /// The configured byte limit.
    [[nodiscard]] std::size_t max_bytes() const noexcept { return max_bytes_; }
    /// The byte limit in effect: max_bytes, lowered while on_pressure restricts it.
    [[nodiscard]] std::size_t byte_limit() const noexcept { return byte_limit_; }
    /// The level of the last on_pressure call (low before any).
    [[nodiscard]] pressure_level pressure() const noexcept { return level_; }
    [[nodiscard]] std::optional<typename clock_type::duration> ttl() const noexcept {
        if (ttl_ == 0) return std::nullopt;
        return typename clock_type::duration(ttl_);
    }
    [[nodiscard]] const cache_stats& stats() const noexcept { return stats_; }
    void reset_stats() noexcept { stats_ = {}; }
    [[nodiscard]] double hit_rate() const noexcept { return stats_.hit_rate(); }

    /// Calls fn(key, value) for each live (unexpired) entry, most recently used first.
    template <class F>
    void for_each(F&& fn) const {
        const rep now = ttl_ != 0 ? now_() : 0;
        for (const links* l = head_.next; l != &head_; l = l->next) {
            const node* n = static_cast<const node*>(l);
            if (ttl_ != 0 && n->expires <= now) continue;
            fn(std::as_const(n->key), std::as_const(n->value));
        }
    }

    [[nodiscard]] allocator_type get_allocator() const { return allocator_type(alloc_); }
    [[nodiscard]] hasher hash_function() const { return hash_; }
    [[nodiscard]] key_equal key_eq() const { return eq_; }

private:
    template <class, class, class, class, class>
    friend class sharded_lru_cache;

    using rep = typename clock_type::rep;

    struct node : links {
        template <class KA, class... VA>
        node(std::size_t h, KA&& k, VA&&... v)
            : links{nullptr, nullptr}, hash(h), key(std::forward<KA>(k)),
              value(std::forward<VA>(v)...) {}
        // For get_or_compute: the value is initialised from fn's prvalue, without a move.
        struct compute_tag {};
        template <class KA, class F>
        node(compute_tag, std::size_t h, KA&& k, F& fn)
            : links{nullptr, nullptr}, hash(h), key(std::forward<KA>(k)), value(invoke_(fn, key)) {}

        template <class F>
        static V invoke_(F& fn, const K& k) {
            if constexpr (std::is_invocable_v<F&, const K&>) return std::invoke(fn, k);
            else return std::invoke(fn);
        }

        node* older = nullptr; // write order, only when a ttl is set
        node* newer = nullptr;
        std::size_t hash;
        std::size_t charge = 0;
        rep expires = 0;
        K key;
        V value;
    };

    static constexpr std::size_t min_table = 16;

    // Fibonacci hashing after folding the high half in: the index takes the top bits, so
    // identity hashes of small integers (std::hash<int>) spread over the whole table.
    static std::size_t mix(std::size_t h) noexcept {
        if constexpr (sizeof(std::size_t) >= 8) {
            h ^= h >> 32;
            return h * static_cast<std::size_t>(0x9E3779B97F4A7C15ull);
        } else {
            h ^= h >> 16;
            return h * static_cast<std::size_t>(0x9E3779B9u);
        }
    }

    // ---- hot paths -----------------------------------------------------------------------

    template <class Q>
    MEMKIT_ALWAYS_INLINE node* find_(const Q& key, std::size_t h) const {
        for (std::size_t i = h >> shift_;; i = (i + 1) & mask_) {
            const slot& s = slots_[i];
            if (s.n == nullptr) return nullptr;
            // No Robin Hood early exit for misses: at load <= 3/4 it saves misses about as
            // many instructions as it costs hits, and hits are what a cache is for.
            if (s.hash == h && eq_(s.n->key, key)) return s.n;
        }
    }

    MEMKIT_ALWAYS_INLINE void promote_(node* n) noexcept {
        if (head_.next == n) return;
        n->prev->next = n->next;
        n->next->prev = n->prev;
        n->prev = &head_;
        n->next = head_.next;
        head_.next->prev = n;
        head_.next = n;
    }

    [[nodiscard]] bool expired_(const node* n) const { return n->expires <= now_(); }

    template <class Q>
    V* get_h_(const Q& key, std::size_t h) {
        node* n = find_(key, h);
        if (MEMKIT_UNLIKELY(n == nullptr)) {
            ++stats_.misses;
            return nullptr;
        }
        if (ttl_ != 0 && MEMKIT_UNLIKELY(expired_(n))) {
            remove_(n, eviction_reason::expired);
            ++stats_.misses;
            return nullptr;
        }
        promote_(n);
        ++stats_.hits;
        return &n->value;
    }

    template <class Q>
    const V* peek_h_(const Q& key, std::size_t h) const {
        const node* n = find_(key, h);
        if (n == nullptr || (ttl_ != 0 && expired_(n))) return nullptr;
        return &n->value;
    }

    // A present entry, after removing it if it expired.
    template <class Q>
    node* find_live_(const Q& key, std::size_t h) {
        node* n = find_(key, h);
        if (n != nullptr && ttl_ != 0 && expired_(n)) {
            remove_(n, eviction_reason::expired);
            return nullptr;
        }
        return n;
    }

    template <class KA, class M>
    std::pair<V*, bool> assign_h_(KA&& key, std::size_t h, M&& value) {
        if constexpr (!std::is_same_v<std::remove_cvref_t<M>, V>) {
            return assign_h_(std::forward<KA>(key), h, V(std::forward<M>(value)));
        } else {
            drop_spill_();
            node* n = find_live_(key, h);
            const std::size_t c = charge_(key, value);
            if (n != nullptr) return update_(n, c, std::forward<M>(value));
            if (!fits_(c)) return reject_();
            ensure_slot_();
            node* fresh = make_node_(h, std::forward<KA>(key), std::forward<M>(value));
            link_new_(fresh, c);
            return {&fresh->value, true};
        }
    }

    template <class M>
    std::pair<V*, bool> update_(node* n, std::size_t c, M&& value) {
        if (!fits_(c)) {
            remove_(n, eviction_reason::replaced);
            return reject_();
        }
        if (on_evict_) {
            V old(std::move(n->value));
            try {
                n->value = std::forward<M>(value);
            } catch (...) {
                n->value = std::move(old);
                throw;
            }
            note_update_(n, c);
            on_evict_(std::as_const(n->key), std::move(old), eviction_reason::replaced);
        } else {
            n->value = std::forward<M>(value);
            note_update_(n, c);
        }
        evict_until_(max_entries_, byte_limit_, false);
        return {&n->value, false};
    }

    void note_update_(node* n, std::size_t c) noexcept {
        bytes_ = bytes_ - n->charge + c;
        n->charge = c;
        promote_(n);
        if (ttl_ != 0) {
            unlink_write_(n);
            n->expires = now_() + ttl_;
            link_write_(n);
        }
        ++stats_.updates;
        ++stats_.by_reason[static_cast<std::size_t>(eviction_reason::replaced)];
    }

    template <class KA, class... Args>
    std::pair<V*, bool> emplace_h_(KA&& key, std::size_t h, Args&&... args) {
        drop_spill_();
        if (node* n = find_live_(key, h)) {
            promote_(n);
            return {&n->value, false};
        }
        node* fresh = make_node_(h, std::forward<KA>(key), std::forward<Args>(args)...);
        if (!charge_and_link_(fresh)) {
            free_node_(fresh);
            return {nullptr, false};
        }
        return {&fresh->value, true};
    }

    template <class KA, class F>
    V& compute_h_(KA&& key, std::size_t h, F& fn) {
        if (node* n = find_live_(key, h)) {
            promote_(n);
            ++stats_.hits;
            return n->value;
        }
        ++stats_.misses;
        drop_spill_();
        node* fresh = make_node_(typename node::compute_tag{}, h, std::forward<KA>(key), fn);
        // fn may have used the cache, even stored this key.
        if (node* n = find_(fresh->key, h)) {
            free_node_(fresh);
            promote_(n);
            return n->value;
        }
        drop_spill_();
        if (!charge_and_link_(fresh)) {
            spill_ = fresh;
            return fresh->value;
        }
        return fresh->value;
    }

    // Charges a constructed, unlinked node and links it. On rejection returns false and leaves
    // the node to the caller; if charging or growing the index throws, the node is freed.
    bool charge_and_link_(node* n) {
        std::size_t c;
        try {
            c = charge_(n->key, n->value);
            if (fits_(c)) ensure_slot_();
        } catch (...) {
            free_node_(n);
            throw;
        }
        if (!fits_(c)) {
            ++stats_.rejections;
            return false;
        }
        link_new_(n, c);
        return true;
    }

    template <class Q>
    bool erase_h_(const Q& key, std::size_t h) {
        node* n = find_live_(key, h);
        if (n == nullptr) return false;
        remove_(n, eviction_reason::erased);
        return true;
    }

    // ---- insertion helpers ---------------------------------------------------------------

    std::size_t charge_(const K& key, const V& value) const {
        if (size_of_) return size_of_(key, value);
        return sizeof(K) + sizeof(V);
    }

    [[nodiscard]] bool fits_(std::size_t c) const noexcept {
        return max_entries_ != 0 && c <= byte_limit_;
    }

    std::pair<V*, bool> reject_() noexcept {
        ++stats_.rejections;
        return {nullptr, false};
    }

    template <class... Args>
    node* make_node_(Args&&... args) {
        node* n = allocate_node_();
        try {
            node_traits::construct(alloc_, n, std::forward<Args>(args)...);
        } catch (...) {
            release_storage_(n);
            throw;
        }
        return n;
    }

    node* allocate_node_() {
        if (spare_ != nullptr) return std::exchange(spare_, nullptr);
        return node_traits::allocate(alloc_, 1);
    }

    // Gives storage back, keeping one node for the next insertion.
    void release_storage_(node* n) noexcept {
        if (spare_ == nullptr) spare_ = n;
        else node_traits::deallocate(alloc_, n, 1);
    }

    void free_node_(node* n) noexcept {
        node_traits::destroy(alloc_, n);
        release_storage_(n);
    }

    void drop_spill_() noexcept {
        if (MEMKIT_UNLIKELY(spill_ != nullptr)) free_node_(std::exchange(spill_, nullptr));
    }

    // Links a node that fits, after making room for it. The index has room (ensure_slot_).
    void link_new_(node* n, std::size_t c) noexcept {
        evict_until_(max_entries_ - 1, byte_limit_ - c, false);
        n->charge = c;
        insert_slot_(n);
        n->prev = &head_;
        n->next = head_.next;
        head_.next->prev = n;
        head_.next = n;
        if (ttl_ != 0) {
            n->expires = now_() + ttl_;
            link_write_(n);
        }
        ++size_;
        bytes_ += c;
        ++stats_.insertions;
    }

    // Removes entries until size_ <= entries and bytes_ <= byte_target: expired ones first
    // (oldest write first), then the least recently used, with reason capacity or bytes (or
    // shrunk when `shrink`).
    void evict_until_(std::size_t entries, std::size_t byte_target, bool shrink) noexcept {
        if (MEMKIT_LIKELY(size_ <= entries && bytes_ <= byte_target)) return;
        evict_slow_(entries, byte_target, shrink);
    }

    MEMKIT_NOINLINE void evict_slow_(std::size_t entries, std::size_t byte_target,
                                     bool shrink) noexcept {
        if (ttl_ != 0) {
            const rep now = now_();
            while ((size_ > entries || bytes_ > byte_target) && oldest_ != nullptr &&
                   oldest_->expires <= now)
                remove_(oldest_, eviction_reason::expired);
        }
        while (size_ > entries || bytes_ > byte_target) {
            const eviction_reason r = shrink            ? eviction_reason::shrunk
                                      : size_ > entries ? eviction_reason::capacity
                                                        : eviction_reason::bytes;
            remove_(lru_(), r);
        }
    }

    node* lru_() const noexcept { return static_cast<node*>(head_.prev); }

    void remove_(node* n, eviction_reason r) noexcept {
        erase_slot_(n);
        n->prev->next = n->next;
        n->next->prev = n->prev;
        if (ttl_ != 0) unlink_write_(n);
        --size_;
        bytes_ -= n->charge;
        ++stats_.by_reason[static_cast<std::size_t>(r)];
        if (on_evict_) on_evict_(std::as_const(n->key), std::move(n->value), r);
        free_node_(n);
    }

    void link_write_(node* n) noexcept {
        n->older = newest_;
        n->newer = nullptr;
        if (newest_ != nullptr) newest_->newer = n;
        else oldest_ = n;
        newest_ = n;
    }
    void unlink_write_(node* n) noexcept {
        (n->older != nullptr ? n->older->newer : oldest_) = n->newer;
        (n->newer != nullptr ? n->newer->older : newest_) = n->older;
    }

    rep now_() const { return (clock_ ? clock_() : clock_type::now()).time_since_epoch().count(); }

    static std::size_t scaled_(std::size_t base, double f) noexcept {
        const double v = static_cast<double>(base) * f;
        if (v >= static_cast<double>(unlimited)) return unlimited;
        return static_cast<std::size_t>(v);
    }

    // ---- index ---------------------------------------------------------------------------

    // The empty index every cache starts with: lookups find an empty slot at once, and the
    // first insertion replaces it (capacity_ 0 forces the growth). Never written.
    static slot* empty_table_() noexcept {
        static slot table[2] = {};
        return table;
    }

    void ensure_slot_() {
        if (MEMKIT_UNLIKELY((size_ + 1) * 4 > capacity_ * 3)) grow_();
    }

    MEMKIT_NOINLINE void grow_() { rehash_(capacity_ == 0 ? min_table : capacity_ * 2); }

    static std::size_t table_size_for_(std::size_t n) noexcept {
        std::size_t cap = min_table;
        while (n * 4 > cap * 3) cap *= 2;
        return cap;
    }

    // Strong guarantee: throws only from the allocation, before anything changes.
    void rehash_(std::size_t cap) {
        slot_alloc sa(alloc_);
        slot* t = slot_traits::allocate(sa, cap);
        for (std::size_t i = 0; i < cap; ++i) t[i] = slot{0, nullptr};
        release_table_();
        slots_ = t;
        capacity_ = cap;
        mask_ = cap - 1;
        shift_ = static_cast<unsigned>(std::numeric_limits<std::size_t>::digits) -
                 static_cast<unsigned>(std::countr_zero(cap));
        for (links* l = head_.next; l != &head_; l = l->next) insert_slot_(static_cast<node*>(l));
    }

    // After large evictions: gives back an index that is mostly empty. Failure to allocate the
    // smaller one keeps the larger.
    void compact_table_() noexcept {
        if (size_ == 0) {
            release_table_();
            return;
        }
        if (capacity_ <= min_table || size_ * 8 >= capacity_) return;
        try {
            rehash_(table_size_for_(size_));
        } catch (...) {}
    }

    void release_table_() noexcept {
        if (capacity_ != 0) {
            slot_alloc sa(alloc_);
            slot_traits::deallocate(sa, slots_, capacity_);
        }
        slots_ = empty_table_();
        capacity_ = 0;
        mask_ = 1;
        shift_ = static_cast<unsigned>(std::numeric_limits<std::size_t>::digits) - 1;
    }

    void release_spare_() noexcept {
        if (spare_ != nullptr) node_traits::deallocate(alloc_, std::exchange(spare_, nullptr), 1);
    }

    void insert_slot_(node* n) noexcept {
        slot cur{n->hash, n};
        std::size_t i = cur.hash >> shift_;
        for (std::size_t dist = 0;; ++dist, i = (i + 1) & mask_) {
            slot& s = slots_[i];
            if (s.n == nullptr) {
                s = cur;
                return;
            }
            const std::size_t d = (i - (s.hash >> shift_)) & mask_;
            if (d < dist) {
                std::swap(cur, s);
                dist = d;
            }
        }
    }

    void erase_slot_(const node* n) noexcept {
        std::size_t i = n->hash >> shift_;
        while (slots_[i].n != n) i = (i + 1) & mask_;
        // Backward shift: pull each following displaced slot one step nearer its home.
        for (std::size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
            const slot& s = slots_[j];
            if (s.n == nullptr || ((j - (s.hash >> shift_)) & mask_) == 0) break;
            slots_[i] = s;
            i = j;
        }
        slots_[i] = slot{0, nullptr};
    }

    // ---- whole-cache helpers -------------------------------------------------------------

    void destroy_all_() noexcept {
        drop_spill_();
        for (links* l = head_.prev; l != &head_;) { // prev links: see move_entries_from_
            node* n = static_cast<node*>(l);
            l = l->prev;
            node_traits::destroy(alloc_, n);
            node_traits::deallocate(alloc_, n, 1);
        }
        head_.prev = head_.next = &head_;
        oldest_ = newest_ = nullptr;
        size_ = 0;
        bytes_ = 0;
    }

    void take_config_(lru_cache& o) noexcept {
        max_entries_ = o.max_entries_;
        max_bytes_ = o.max_bytes_;
        byte_limit_ = o.byte_limit_;
        ttl_ = o.ttl_;
        clock_ = std::move(o.clock_);
        size_of_ = std::move(o.size_of_);
        on_evict_ = std::move(o.on_evict_);
        policy_ = o.policy_;
        level_ = o.level_;
        pressure_base_ = o.pressure_base_;
        restricted_ = o.restricted_;
        stats_ = std::exchange(o.stats_, cache_stats{});
    }

    // Takes the other's nodes and index (same allocator), leaving it empty.
    void take_state_(lru_cache& o) noexcept {
        take_config_(o);
        if (o.head_.next != &o.head_) {
            head_ = o.head_;
            head_.next->prev = &head_;
            head_.prev->next = &head_;
            o.head_.prev = o.head_.next = &o.head_;
        }
        oldest_ = std::exchange(o.oldest_, nullptr);
        newest_ = std::exchange(o.newest_, nullptr);
        size_ = std::exchange(o.size_, 0);
        bytes_ = std::exchange(o.bytes_, 0);
        slots_ = o.slots_;
        capacity_ = o.capacity_;
        mask_ = o.mask_;
        shift_ = o.shift_;
        o.slots_ = empty_table_();
        o.capacity_ = 0;
        o.mask_ = 1;
        o.shift_ = static_cast<unsigned>(std::numeric_limits<std::size_t>::digits) - 1;
        spill_ = std::exchange(o.spill_, nullptr);
        spare_ = std::exchange(o.spare_, nullptr);
    }

    // Moves the other's entries into nodes of this allocator (unequal allocators), least
    // recently used first so that the recency order is kept; expiry times and the write order
    // are kept. Each source node's `next` link is reused to point at its copy, so the source is
    // destroyed through its `prev` links. If an allocation fails, both caches end up empty.
    void move_entries_from_(lru_cache& o) {
        take_config_(o);
        try {
            reserve(o.size_);
            for (links* l = o.head_.prev; l != &o.head_; l = l->prev) {
                node* src = static_cast<node*>(l);
                node* n = make_node_(src->hash, std::move(src->key), std::move(src->value));
                n->charge = src->charge;
                n->expires = src->expires;
                insert_slot_(n);
                n->prev = &head_;
                n->next = head_.next;
                head_.next->prev = n;
                head_.next = n;
                ++size_;
                bytes_ += n->charge;
                src->next = n;
            }
        } catch (...) {
            destroy_all_();
            release_table_();
            o.destroy_all_();
            o.release_table_();
            throw;
        }
        if (ttl_ != 0)
            for (node* w = o.oldest_; w != nullptr; w = w->newer)
                link_write_(static_cast<node*>(w->next));
        o.destroy_all_();
        o.release_table_();
        o.release_spare_();
    }

    [[no_unique_address]] Hash hash_;
    [[no_unique_address]] KeyEqual eq_;
    [[no_unique_address]] node_alloc alloc_;

    slot* slots_ = empty_table_();
    std::size_t capacity_ = 0; // 0: the shared empty table
    std::size_t mask_ = 1;
    unsigned shift_ = static_cast<unsigned>(std::numeric_limits<std::size_t>::digits) - 1;

    links head_{&head_, &head_}; // recency: head_.next most recent, head_.prev least
    node* oldest_ = nullptr;     // write order (ttl only)
    node* newest_ = nullptr;
    std::size_t size_ = 0;
    std::size_t bytes_ = 0;

    std::size_t max_entries_;
    std::size_t max_bytes_;
    std::size_t byte_limit_;
    rep ttl_ = 0; // 0: no expiry
    std::function<typename clock_type::time_point()> clock_;
    std::function<std::size_t(const K&, const V&)> size_of_;
    std::function<void(const K&, V&&, eviction_reason)> on_evict_;
    cache_pressure_policy policy_;
    pressure_level level_ = pressure_level::low;
    std::size_t pressure_base_ = 0; // what the fractions apply to while restricted_
    bool restricted_ = false;       // a pressure level with a fraction below 1 is in effect

    node* spare_ = nullptr; // storage of the last freed node, for the next insertion
    node* spill_ = nullptr; // a rejected get_or_compute value, alive until the next insertion
    cache_stats stats_{};
};

namespace pmr {
/// An lru_cache whose nodes and index come from a std::pmr::memory_resource.
template <class K, class V, class Hash = std::hash<K>, class KeyEqual = std::equal_to<K>>
using lru_cache =
    memkit::lru_cache<K, V, Hash, KeyEqual, std::pmr::polymorphic_allocator<std::pair<const K, V>>>;
} // namespace pmr

} // namespace memkit
