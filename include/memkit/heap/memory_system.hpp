// memkit/heap/memory_system.hpp - one thread-safe allocator that routes requests by size to a
// small, a medium and a large tier, under a byte budget, with plugins and per-tier statistics.
//
// `memory_system` is the composition most programs want without writing it themselves: small
// requests go to size-class pools, medium ones to a TLSF heap, large ones to the system
// allocator, and every request is first charged to a `memory_budget` (hard and soft limits,
// pressure levels). It is built from a plain `memory_system_config` (from code, from `MEMKIT_*`
// environment variables, or from key/value pairs such as those of a configuration file), or with
// the fluent builder:
//
//   auto sys = memkit::memory_system::builder().small(256).medium(65536).budget(1 << 30).build();
//   void* p = sys.allocate(100, 8);                    // small tier; 100 bytes charged
//   sys.deallocate(p, 100, 8);                         // same size and alignment back
//   std::pmr::vector<int> v{sys.as_resource()};        // or as a std::pmr::memory_resource
//
// Routing. A request of `size` bytes goes to the small tier when size <= small_max, to the
// medium tier when small_max < size <= medium_max, else to the large tier. The alignment does not
// change the tier; deallocate(p, size, align) must receive the size and alignment given to
// allocate and routes the same way.
//  * small: a pool_collection (size classes from small_min_class up to small_max, powers of two
//    or linear steps) under a mutex. Alignments a class cannot give are served by the system
//    allocator as direct blocks of the collection, so every power-of-two alignment works.
//  * medium: a growing tlsf_heap under a mutex. Why not an arena: an arena frees only on reset,
//    so a long-running program that allocates and frees medium blocks would grow without bound.
//    Why not more pools: power-of-two classes up to 64 KiB waste up to half of each block and
//    keep a chunk per class alive; TLSF frees and coalesces in O(1) with classes 1/32 of a power
//    of two apart (about 3 % internal waste) and one set of regions for every medium size.
//  * large: system_allocator (malloc / aligned_alloc), no lock of ours.
// The medium tier takes its first region (medium_region_size bytes) at construction. Memory of
// the small and medium tiers stays cached in those tiers after deallocate and goes back to the
// system when the memory_system is destroyed.
//
// Budget. Every allocate first reserves `size` bytes (the request, not the tier's rounded size)
// in the system's memory_budget, which refuses with memory_budget_exceeded (a budget_exceeded,
// so an out_of_memory and a std::bad_alloc) naming the budget, its hard limit, usage and room
// left; nothing is allocated then. deallocate releases the same bytes. budget() gives access to
// the budget, e.g. to register soft-limit callbacks or to change its limits (set_limits).
// A budget of 0 means unlimited (requests are still counted: budget().used()).
//
// Plugins. `memory_plugin`s are registered at construction (builder().plugin(p)) and called in
// registration order: on_init(system) once at the end of the constructor, on_allocation after
// each successful allocate, on_deallocation before each deallocate hands the block back, and
// on_pressure(level) each time the budget's pressure level changes (memory_budget's level
// callbacks: once per change, on the thread whose allocate/deallocate caused it). With no
// plugin, the cost is one predictable branch per call. on_allocation, on_deallocation and
// on_pressure are noexcept; they run without any memkit lock held and may call the system.
//
// Statistics. stats(tier) returns that tier's allocator_stats in O(1) from relaxed atomic
// counters kept by the system: allocations, deallocations, bytes_in_use (requested bytes) and
// peak_bytes; capacity is 0 (the tiers' own capacity is not tracked here). stats() returns the
// three tiers plus the budget's usage and peak. Values read while other threads allocate are
// each exact at some instant, but not necessarily the same instant.
//
// Complexity: allocate and deallocate are O(1): a budget reservation (one atomic add), a routing
// comparison, the tier (pool / TLSF: O(1) under its mutex, which also covers the tier's
// statistics; large: malloc and relaxed atomic adds).
// Thread-safety: every member may be called concurrently from any thread, except construction and
// destruction. The small and medium tiers each serialize on their own mutex; the large tier and
// the budget take no lock. Plugins are called concurrently from the threads that allocate.
// Neither copyable nor movable (the budget's callbacks point at it); builder::build() returns it
// by guaranteed copy elision.
// Failure: allocate throws bad_size for a size of 0 (as_resource() serves 0 as 1 byte),
// invalid_alignment for an alignment that is not a power of two or above max_alignment (1 GiB),
// memory_budget_exceeded when the budget refuses, and out_of_memory when a tier cannot get
// memory (the reservation is given back first). The constructor throws std::invalid_argument from
// config.validate(), and whatever on_init throws. Destroying the system while large blocks are
// still allocated leaks them (small and medium blocks are freed with their tier).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <string>
#include <string_view>
#include <vector>

#include "memkit/alloc/pool_collection.hpp"
#include "memkit/alloc/system.hpp"
#include "memkit/alloc/tlsf.hpp"
#include "memkit/compose/synchronized.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/heap/memory_budget.hpp"
#include "memkit/heap/pressure_level.hpp"

namespace memkit {

/// The configuration of a memory_system: a plain struct. Sizes are bytes; 0 means "none" or
/// "unlimited" where said. Keys of from_key_values() and (upper-cased, after the prefix) the
/// environment variables of from_env() have the names of the fields.
struct memory_system_config {
    std::size_t small_max = 256;              ///< requests <= this go to the small tier (>= 1)
    std::size_t medium_max = 64 * 1024;       ///< requests <= this (and > small_max): medium tier
    /// "power_of_two" or "linear"
    size_class_spacing small_spacing = size_class_spacing::power_of_two;
    std::size_t small_min_class = 8;          ///< smallest size class (>= 1, <= small_max)
    std::size_t small_step = 16;              ///< class step when small_spacing is linear (>= 1)
    std::size_t small_nodes_per_chunk = 0;    ///< nodes per pool chunk; 0: automatic
    std::size_t medium_region_size = 1 << 20; ///< smallest region the TLSF heap takes (>= 4096)
    std::size_t medium_max_total = 0;         ///< most bytes the medium tier takes; 0: unlimited
    std::size_t budget = 0;                   ///< hard limit of the budget; 0: unlimited
    std::size_t soft_budget = 0;              ///< soft limit; 0: none; <= budget when both set
    /// keys pressure_medium, pressure_high, pressure_critical
    pressure_thresholds pressure{};
    std::string name = "memory_system";       ///< the budget's name (in its errors)

    /// The largest small_max: the small tier is for small objects, and its routing table is
    /// bounded.
    static constexpr std::size_t max_small_max = 64 * 1024;

    /// Throws std::invalid_argument whose message starts with the name of the first invalid
    /// field: small_max 0 or above max_small_max, small_max >= medium_max, small_min_class 0 or
    /// above small_max, small_step 0 or more than 256 linear classes, medium_region_size below
    /// 4096, medium_max_total nonzero but below medium_region_size, soft_budget above budget,
    /// pressure thresholds not 0 < medium < high < critical <= 1.
    void validate() const;

    /// Reads the known variables `<prefix>SMALL_MAX`, `<prefix>MEDIUM_MAX`, ... (every field
    /// except name, upper-cased) through `getenv` (std::getenv by default); unset ones keep their
    /// defaults, other variables with the prefix are ignored. Sizes accept the suffixes B, K, KiB,
    /// M, MiB, G, GiB (powers of 1024, case-insensitive, e.g. "64KiB"). Throws
    /// std::invalid_argument naming the variable for a malformed, negative or overflowing value,
    /// then what validate() throws.
    [[nodiscard]] static memory_system_config
    from_env(const char* prefix = "MEMKIT_",
             const std::function<const char*(const char*)>& getenv = {});

    /// Builds a configuration from key/value pairs (field names as keys, name included; values
    /// as in from_env; small_spacing "power_of_two" or "linear"; thresholds as fractions like
    /// "0.6"). Throws
    /// std::invalid_argument naming the key for an unknown key or a malformed value, then what
    /// validate() throws.
    [[nodiscard]] static memory_system_config
    from_key_values(const std::map<std::string, std::string>& values);

    /// Sets one field from its textual value (the parser under from_env and from_key_values);
    /// `where` names the source in error messages. Returns false for an unknown key.
    bool set(std::string_view key, std::string_view value, std::string_view where);

    /// Parses "123", "64KiB", "1 G", ... Throws std::invalid_argument naming `where`.
    [[nodiscard]] static std::size_t parse_size(std::string_view text, std::string_view where);
};

class memory_system;

/// A hook into a memory_system (tracing, metrics, leak detection, cache shrinking). Override
/// what you need; the defaults do nothing. See memory_system.hpp for when each one runs.
class memory_plugin {
public:
    virtual ~memory_plugin() = default;
    [[nodiscard]] virtual std::string_view name() const noexcept { return "memory_plugin"; }
    virtual void on_init(memory_system& /*system*/) {}
    virtual void on_allocation(std::size_t /*size*/, std::size_t /*align*/, void* /*p*/) noexcept {}
    virtual void on_deallocation(std::size_t /*size*/, std::size_t /*align*/,
                                 void* /*p*/) noexcept {}
    virtual void on_pressure(pressure_level /*level*/) noexcept {}
};

/// The tiers of a memory_system.
enum class memory_tier : std::uint8_t { small, medium, large };

/// "small", "medium" or "large".
[[nodiscard]] constexpr std::string_view to_string(memory_tier t) noexcept {
    switch (t) {
    case memory_tier::small: return "small";
    case memory_tier::medium: return "medium";
    case memory_tier::large: return "large";
    }
    return "unknown";
}

/// What memory_system::stats() returns.
struct memory_system_stats {
    allocator_stats small;
    allocator_stats medium;
    allocator_stats large;
    std::size_t budget_used = 0; ///< the budget's usage (including any children of it)
    std::size_t budget_peak = 0;
};

class memory_system {
public:
    static constexpr bool is_thread_safe = true;
    static constexpr std::size_t max_alignment = std::size_t{1} << 30;
    static constexpr const char* name = "memkit::memory_system";

    class builder;

    /// Throws std::invalid_argument from config.validate(), and what on_init throws.
    explicit memory_system(const memory_system_config& config,
                           std::vector<std::shared_ptr<memory_plugin>> plugins = {});
    ~memory_system();

    memory_system(const memory_system&) = delete;
    memory_system& operator=(const memory_system&) = delete;

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        if (MEMKIT_UNLIKELY(size == 0 || !is_pow2(align) || align > max_alignment))
            bad_request(size, align);
        budget_->reserve(size);
        const memory_tier t = tier_for(size);
        void* p = tier_allocate(t, size, align);
        if (MEMKIT_UNLIKELY(has_plugins_)) notify_allocation(size, align, p);
        return p;
    }

    void deallocate(void* p, std::size_t size,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        if (MEMKIT_UNLIKELY(has_plugins_)) notify_deallocation(size, align, p);
        const memory_tier t = tier_for(size);
        tier_counters& c = counters_[static_cast<std::size_t>(t)];
        switch (t) {
        case memory_tier::small:
            small_.with_lock([&](pool_collection& a) noexcept {
                a.deallocate(p, size, align);
                c.count_deallocation_locked(size);
            });
            break;
        case memory_tier::medium:
            medium_.with_lock([&](tlsf_heap& a) noexcept {
                a.deallocate(p, size, align);
                c.count_deallocation_locked(size);
            });
            break;
        case memory_tier::large:
            large_.deallocate(p, size, align);
            c.count_deallocation(size);
            break;
        }
        budget_->release(size);
    }

    /// The tier a request of `size` bytes goes to.
    [[nodiscard]] memory_tier tier_for(std::size_t size) const noexcept {
        if (size <= small_max_) return memory_tier::small;
        if (size <= medium_max_) return memory_tier::medium;
        return memory_tier::large;
    }

    [[nodiscard]] allocator_stats stats(memory_tier t) const noexcept;
    [[nodiscard]] memory_system_stats stats() const noexcept;

    [[nodiscard]] memory_budget& budget() noexcept { return *budget_; }
    [[nodiscard]] const memory_budget& budget() const noexcept { return *budget_; }
    [[nodiscard]] const memory_system_config& config() const noexcept { return config_; }
    [[nodiscard]] std::size_t plugin_count() const noexcept { return plugins_.size(); }

    /// This system as a std::pmr::memory_resource (valid as long as the system). allocate(0) is
    /// served as 1 byte. Two of them compare equal only when they are the same object.
    [[nodiscard]] std::pmr::memory_resource* as_resource() noexcept { return &resource_; }

private:
    // The statistics of one tier. The small and medium tiers update theirs under the tier's
    // mutex, with plain relaxed loads and stores instead of read-modify-writes: each of those is
    // a locked instruction, and the mutex already orders the writers (four of them per
    // allocate/deallocate pair were a third of the hot path's time). Readers need no lock: each
    // counter is one atomic, exact at the instant it is read. The large tier takes no lock, so
    // it uses read-modify-writes.
    struct alignas(cache_line_size) tier_counters {
        std::atomic<std::uint64_t> allocations{0};
        std::atomic<std::uint64_t> deallocations{0};
        std::atomic<std::size_t> bytes{0};
        std::atomic<std::size_t> peak{0};

        void count_allocation_locked(std::size_t size) noexcept {
            allocations.store(allocations.load(std::memory_order_relaxed) + 1,
                              std::memory_order_relaxed);
            const std::size_t now = bytes.load(std::memory_order_relaxed) + size;
            bytes.store(now, std::memory_order_relaxed);
            if (now > peak.load(std::memory_order_relaxed))
                peak.store(now, std::memory_order_relaxed);
        }
        void count_deallocation_locked(std::size_t size) noexcept {
            deallocations.store(deallocations.load(std::memory_order_relaxed) + 1,
                                std::memory_order_relaxed);
            bytes.store(bytes.load(std::memory_order_relaxed) - size, std::memory_order_relaxed);
        }
        void count_allocation(std::size_t size) noexcept {
            allocations.fetch_add(1, std::memory_order_relaxed);
            const std::size_t now = bytes.fetch_add(size, std::memory_order_relaxed) + size;
            if (MEMKIT_UNLIKELY(now > peak.load(std::memory_order_relaxed))) raise_peak(*this, now);
        }
        void count_deallocation(std::size_t size) noexcept {
            deallocations.fetch_add(1, std::memory_order_relaxed);
            bytes.fetch_sub(size, std::memory_order_relaxed);
        }
    };

    class pmr_adapter final : public std::pmr::memory_resource {
    public:
        explicit pmr_adapter(memory_system& s) noexcept : s_(&s) {}

    private:
        void* do_allocate(std::size_t bytes, std::size_t align) override {
            return s_->allocate(bytes == 0 ? 1 : bytes, align);
        }
        void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
            s_->deallocate(p, bytes == 0 ? 1 : bytes, align);
        }
        bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
            return this == &o;
        }
        memory_system* s_;
    };

    // Allocates from tier t and counts the allocation in its statistics.
    void* tier_allocate(memory_tier t, std::size_t size, std::size_t align) {
        tier_counters& c = counters_[static_cast<std::size_t>(t)];
        void* p = nullptr;
        if (t == memory_tier::small) {
            p = small_.with_lock([&](pool_collection& a) noexcept {
                void* q = a.try_allocate(size, align);
                if (MEMKIT_LIKELY(q != nullptr)) c.count_allocation_locked(size);
                return q;
            });
        } else if (t == memory_tier::medium) {
            p = medium_.with_lock([&](tlsf_heap& a) noexcept {
                void* q = a.try_allocate(size, align);
                if (MEMKIT_LIKELY(q != nullptr)) c.count_allocation_locked(size);
                return q;
            });
        } else {
            p = large_.try_allocate(size, align);
            if (MEMKIT_LIKELY(p != nullptr)) c.count_allocation(size);
        }
        if (MEMKIT_UNLIKELY(p == nullptr)) tier_failed(t, size);
        return p;
    }

    MEMKIT_COLD static void raise_peak(tier_counters& c, std::size_t now) noexcept;
    [[noreturn]] MEMKIT_COLD static void bad_request(std::size_t size, std::size_t align);
    [[noreturn]] MEMKIT_COLD void tier_failed(memory_tier t, std::size_t size);
    MEMKIT_NOINLINE void notify_allocation(std::size_t size, std::size_t align, void* p) noexcept;
    MEMKIT_NOINLINE void notify_deallocation(std::size_t size, std::size_t align,
                                             void* p) noexcept;

    const memory_system_config config_;
    const std::size_t small_max_;
    const std::size_t medium_max_;
    const std::vector<std::shared_ptr<memory_plugin>> plugins_;
    const bool has_plugins_;
    std::unique_ptr<memory_budget> budget_;
    synchronized<pool_collection> small_;
    synchronized<tlsf_heap> medium_;
    system_allocator large_;
    tier_counters counters_[3];
    pmr_adapter resource_{*this};
};

/// Fluent construction: every setter fills a memory_system_config (start from `base`), build()
/// validates it and constructs the system.
class memory_system::builder {
public:
    explicit builder(memory_system_config base = {}) : config_(std::move(base)) {}

    /// The small tier: requests up to `max_bytes`, size classes from `min_class`.
    builder& small(std::size_t max_bytes,
                   size_class_spacing spacing = size_class_spacing::power_of_two,
                   std::size_t min_class = 8, std::size_t step = 16) {
        config_.small_max = max_bytes;
        config_.small_spacing = spacing;
        config_.small_min_class = min_class;
        config_.small_step = step;
        return *this;
    }
    /// The medium tier: requests up to `max_bytes`, a TLSF heap growing by `region_size` at
    /// least and taking at most `max_total` bytes (0: unlimited).
    builder& medium(std::size_t max_bytes, std::size_t region_size = 1 << 20,
                    std::size_t max_total = 0) {
        config_.medium_max = max_bytes;
        config_.medium_region_size = region_size;
        config_.medium_max_total = max_total;
        return *this;
    }
    /// The large tier: the system allocator (the only choice today; named for readability).
    builder& large(system_allocator = {}) { return *this; }
    builder& budget(std::size_t bytes) {
        config_.budget = bytes;
        return *this;
    }
    builder& soft_budget(std::size_t bytes) {
        config_.soft_budget = bytes;
        return *this;
    }
    builder& pressure(pressure_thresholds t) {
        config_.pressure = t;
        return *this;
    }
    builder& name(std::string n) {
        config_.name = std::move(n);
        return *this;
    }
    /// Adds a plugin (called after those added before it). Throws std::invalid_argument for null.
    builder& plugin(std::shared_ptr<memory_plugin> p);

    [[nodiscard]] const memory_system_config& config() const noexcept { return config_; }

    /// Throws what memory_system's constructor throws.
    [[nodiscard]] memory_system build() const { return memory_system{config_, plugins_}; }

private:
    memory_system_config config_;
    std::vector<std::shared_ptr<memory_plugin>> plugins_;
};

} // namespace memkit
