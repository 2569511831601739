// memkit/heap/managed_heap.hpp - a thread-safe heap with per-owner accounting, owner limits that
// form a tree, pressure levels, deferred frees with collection strategies and O(1) statistics.
//
// `managed_heap` hands out blocks from a memkit::tlsf_heap whose regions are committed as needed
// inside one range of address space reserved at construction (memkit::reservation, of the
// configured capacity: 1 GiB by default; managed_heap_options), so the heap never takes more than
// its capacity from the system and its memory stays in one range. Every block
// belongs to an *owner*: a request, a query, a tenant or a subsystem, named by an `owner_id`. As
// with PostgreSQL's memory contexts, an owner's blocks can be released all at once with
// free_owner(); as with ClickHouse's MemoryTracker, owners form a tree whose limits count against
// their ancestors.
//
//   memkit::managed_heap heap;                                      // capacity 1 GiB
//   auto req = heap.create_owner("request-42", 64 << 10);           // at most 64 KiB
//   void* p = heap.allocate(1000, req);  /* ... */  heap.free_owner(req);  heap.retire_owner(req);
//
// Blocks. Each block has a 48-byte header in front of its payload: the links of its owner's
// intrusive doubly linked list, the owner, the requested size and a canary word that also records
// whether the block is live, quarantined or free. So deallocate(p) needs no size and is O(1),
// free_owner is O(blocks of the owner and its descendants), and a double free is recognised.
// Payloads are aligned to `align` (any power of two up to 4096 is tested; above 16, up to `align`
// bytes of padding go in front of the header). Regions are committed in the reservation, and
// decommitted when the tlsf heap gives one back, through one private pair of functions
// (acquire_region / release_region); a pointer is checked against the regions with a binary
// search over them (O(log regions)). Reserving costs address space only: no memory is committed
// and nothing counts against overcommit limits until a region is used.
//
// Accounting. used() and owner usage count the *requested* bytes of live blocks. heap_bytes() is
// what those blocks (and quarantined ones) occupy in the tlsf heap (header, alignment padding and
// size rounding included); it is what the capacity limits, and what pressure and out_of_memory
// report. owner_usage(id) is the owner's own bytes plus those of its descendants (what its limit
// applies to); owner_info(id).self_bytes counts its own blocks only. owner_peak(id) is the
// highest owner_usage(id) so far. An owner's limit refuses a block when the owner, or any
// ancestor, would go above its limit. The counters are plain integers kept under the heap's
// lock: a charge walks from the owner to the root once to check the limits and once to add.
//
// Owners. The default owner (`owner_id{}`, named "default", unlimited) always exists.
// create_owner(name, limit, parent) adds an owner (limit `unlimited` = none). free_owner(id) frees
// every block of the owner AND of its descendants (the owners stay) and returns the requested
// bytes freed. retire_owner(id) says the owner is finished: it can no longer allocate; when it
// holds no blocks (live or quarantined) and has no children it is removed at once, otherwise when
// the last of its blocks is freed (by deallocate, free_owner or a collection) and its last child
// is removed. Once an owner is retired its blocks are garbage: a collection (another thread's,
// or an automatic one) may free them at any time, so the caller must not use or free them. A
// removed owner's id is never valid again (ids carry a generation). Owner lookup is
// O(1): the low 32 bits of an id index a dense table of slots.
//
// Pressure. The level is heap_bytes() / capacity measured with pressure_thresholds (60/80/95 % by
// default). It rises as soon as a threshold is reached, and falls only when heap_bytes() drops
// below the threshold minus `pressure_hysteresis` (2 % of the capacity by default), so a usage
// hovering around a threshold is reported once. Each change is reported once, as one event from
// the old level to the new one (a jump from low to critical is one event). Callbacks run on the
// thread that caused the change, after the heap's lock has been released, so they may call any
// member of the heap; changes caused by different threads may be delivered in either order.
// time_at_level(l) (and snapshot().time_at_level) is how long the heap has spent at each level
// since it was created, read in O(1) from the options' clock (steady_clock unless one is given).
//
// Collection. With `defer_frees`, deallocate and free_owner put blocks in their owner's
// quarantine instead of giving them back to the tlsf heap: the owner and used() stop counting
// them at once (so an owner may allocate again within its limit), but heap_bytes() and the
// pressure level still do until a collection returns them. A quarantined block freed again is a
// double free. should_collect() is true from `collect_threshold` quarantined blocks (1000) or
// when a retired owner still holds blocks. A collection frees what its collect_strategy selects:
//   collect_strategy::all()                every quarantined block and every block of a retired
//                                          owner (the default_strategy unless the options say);
//   collect_strategy::owners_above(bytes)  the quarantined blocks of each owner whose
//                                          owner_usage() is above `bytes` when it is visited;
//   collect_strategy::owner(id)            the quarantined blocks of `id` (its own, not its
//                                          descendants'), and its live blocks if it is retired;
//   collect_strategy::unreferenced()       every block, live or quarantined, of retired owners
//                                          (a finished request whose handle was dropped is
//                                          reclaimed without being named), which also removes
//                                          those owners once they are empty.
// collect() and collect(budget) use options().default_strategy; collect(strategy) frees all that
// the strategy selects in one pause; collect(strategy, budget) does it in batches of 32 steps (a
// step frees one block, or passes over one owner that owners_above does not select), releasing
// the lock between batches, and stops once the budget has passed (a zero budget still does one
// batch): no lock hold of a budgeted collection is longer than one batch, and the call returns
// at most one batch after its budget. Blocks quarantined by other threads while it runs may be
// left for the next call. owners_above walks the owners with a quarantine in one pass that goes
// on across calls with the same threshold (so repeated budgeted calls finish it; complete means
// the pass has seen every owner); a call with another threshold starts a new pass.
// force_collect() is collect(collect_strategy::all()) whatever the default strategy, the
// threshold or the automatic-collection interval say: the call for "free everything that can be
// freed, now".
// Automatic collections: (1) before reporting out_of_memory the heap collects everything
// (strategy all) and tries again; (2) with `auto_collect` (on by default), an allocation that
// leaves the level at or above `auto_collect_level` (high) while something is collectable runs
// collect(default_strategy, collect_budget) (1 ms by default) before it returns, at most once per
// `auto_collect_interval` (5 s by default; the first one is not delayed); (3) with
// `collect_on_critical` (on by default), an allocation that reaches critical while something is
// collectable collects everything (strategy all) at once, under the allocation's lock and
// whatever the interval says: critical is the emergency that the interval must not delay. Both
// (2) and (3) count in automatic_collections and restart the interval.
//
// Complexity: allocate, try_allocate and deallocate are O(1) plus one step per level of the
// owner's depth (plain integer updates under the lock) and, for deallocate, the O(log regions)
// pointer check. create_owner and retire_owner are O(1) (amortised). free_owner is O(blocks freed
// + descendants); collect(strategy) O(blocks freed + owners visited); owner_allocations O(blocks
// of the owner). used, peak, heap_bytes, capacity, block_count, level and time_at_level are O(1);
// fragmentation_ratio() and snapshot() cost tlsf_heap::largest_free_block (O(blocks in the
// largest size class)). validate() is O(blocks + owners).
// Measured (docs/heap.md): an allocate + deallocate pair with owner accounting two levels deep,
// single thread, costs about as much as a pair on tlsf_heap behind a std::mutex, 1.7x the same
// heap behind spin_lock and 2.1x a raw tlsf_heap pair: the owner lists, limits, header
// and checks are most of the difference; the lock adds about 4 ns per pair.
//
// Events. An observer (a class derived from `heap_observer`, registered with add_observer) is told
// of every block allocated (on_allocated) and freed (on_deallocated: by deallocate, or one call
// per block by free_owner; with defer_frees at the free, when the owner stops counting it), of
// every refused allocation (on_out_of_memory, also for try_allocate; `limit` says whether an
// owner's limit or the capacity refused), of every pressure change (on_pressure_changed, with the
// same event as the callbacks: a rise to high or critical is the heap's warning) and of every
// collection that freed something (on_collected: blocks, requested bytes and how long the heap's
// lock was held for it; a budgeted collection reports each batch; the live blocks of retired
// owners that a collection frees are reported there, not one by one through on_deallocated).
// Observers run on the calling thread after the heap's lock has been released, so they may call
// the heap; within one call the order is on_collected, on_allocated / on_deallocated,
// on_out_of_memory, on_pressure_changed (after the pressure callbacks); events of different
// threads may arrive in either order (an on_deallocated may even precede the on_allocated of the
// same block). An observer must not throw (events are delivered from noexcept code). A removed
// observer may still receive the events of calls that were in flight when it was removed. With
// no observer registered the cost is one predictable branch on a bool read under the lock.
// counting_observer counts the events; json_lines_observer writes each as one JSON line.
//
// Guards and checked access. `heap_guard` (managed_heap::guard, from allocate_guarded) owns one
// block and frees it when destroyed. read(p, offset, out) / write(p, offset, in) copy bytes from /
// into the live block that starts at `p` after checking [offset, offset + size) against the
// block's requested size: a range outside it throws protection_violation and touches nothing.
// They hold the heap's lock while copying, so a concurrent deallocate cannot free the block
// under them.
//
// Thread-safety: every member may be called concurrently from any thread. One lock guards the
// tlsf heap and the owner table. It is memkit::spin_lock (core/spin_lock.hpp): a
// waiter spins briefly, then yields its time slice until the lock is free. Taking and releasing
// it costs one atomic exchange and one plain release store, about half of what a std::mutex costs
// (whose unlock is a second atomic operation); it never sleeps in the kernel, so callers that
// would hold it long must not: the heap holds it for O(1) work per allocation or free, for one
// batch of a budgeted collection, and for O(blocks) in free_owner, an unbudgeted collection and
// validate(). It is never held while a pressure callback or an observer runs (the options' clock
// is read under it). Destruction must not race with other calls.
//
// Failure:
//  * allocate throws memkit::out_of_memory (allocator() "memkit::managed_heap", requested = size,
//    available = the largest request that could still succeed, used = heap_bytes(), capacity =
//    the configured capacity) when the heap is full; the heap stays usable and nothing is
//    charged. try_allocate returns nullptr instead (also for the cases below).
//  * owner_limit_exceeded (a memkit::budget_exceeded) when the owner's limit, or an ancestor's,
//    refuses; owner() is the owner asked for, limiting_owner() the one whose limit refused, and
//    limit()/used()/remaining() are that owner's.
//  * bad_size for size 0 or above max_size(); invalid_alignment for an alignment that is not a
//    power of two or is above max_alignment (4096).
//  * std::invalid_argument for an unknown (never created or removed) owner id (also from
//    collect_strategy::owner), and for allocating for a retired owner or creating a child of one.
//  * deallocate of a pointer the heap did not hand out throws invalid_address with code()
//    errc::not_owned; of a block already freed, invalid_address with errc::double_free (a freed
//    block whose memory was handed out again may go unnoticed, as in any heap). The heap is then
//    unchanged. deallocate(nullptr) does nothing.
//  * read / write of a pointer that is not the start of a live block of this heap throw
//    invalid_address (errc::not_owned); of a range outside the block, protection_violation.
//  * validate() throws corruption_detected at the first inconsistency of the tlsf heap, an owner
//    list or quarantine (a broken link, a header whose canary, owner or size is wrong) or the
//    counters.
//  * The options' clock must not throw (it is called from noexcept code).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "memkit/alloc/tlsf.hpp"
#include "memkit/core/barrier.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/heap/memory_budget.hpp"
#include "memkit/core/spin_lock.hpp"
#include "memkit/heap/pressure_level.hpp"
#include "memkit/vm/virtual_memory.hpp"

namespace memkit {

/// Names an owner of a managed_heap. owner_id{} is the heap's default owner.
struct owner_id {
    std::uint64_t value = 0;
    friend constexpr bool operator==(owner_id, owner_id) = default;
    friend constexpr auto operator<=>(owner_id, owner_id) = default;
};

/// Thrown when an owner's limit (or an ancestor's) refuses an allocation. An out_of_memory, so a
/// std::bad_alloc; code() is errc::budget_exceeded.
class owner_limit_exceeded : public budget_exceeded {
public:
    owner_limit_exceeded(owner_id owner, owner_id limiting_owner, std::size_t requested,
                         std::size_t remaining, std::size_t used, std::size_t limit) noexcept
        : budget_exceeded("memkit::managed_heap", requested, remaining, used, limit),
          owner_(owner), limiting_(limiting_owner) {}
    /// The owner the allocation was for.
    [[nodiscard]] owner_id owner() const noexcept { return owner_; }
    /// The owner whose limit refused: owner() or one of its ancestors.
    [[nodiscard]] owner_id limiting_owner() const noexcept { return limiting_; }

private:
    owner_id owner_, limiting_;
};

/// Thrown by managed_heap::deallocate for a pointer it did not hand out (code() not_owned) or a
/// block freed twice (code() double_free).
class invalid_address : public std::invalid_argument {
public:
    invalid_address(const void* address, errc code, const char* what)
        : std::invalid_argument(what), address_(address), code_(code) {}
    [[nodiscard]] const void* address() const noexcept { return address_; }
    [[nodiscard]] std::error_code code() const noexcept { return make_error_code(code_); }

private:
    const void* address_;
    errc code_;
};

/// Thrown by managed_heap::read / write for a range outside the block: nothing was copied.
class protection_violation : public std::out_of_range {
public:
    protection_violation(const void* address, std::size_t offset, std::size_t length,
                         std::size_t block_size)
        : std::out_of_range("memkit::managed_heap: access outside the block"),
          address_(address), offset_(offset), length_(length), block_size_(block_size) {}
    /// The start of the block.
    [[nodiscard]] const void* address() const noexcept { return address_; }
    [[nodiscard]] std::size_t offset() const noexcept { return offset_; }
    [[nodiscard]] std::size_t length() const noexcept { return length_; }
    /// The block's requested size.
    [[nodiscard]] std::size_t block_size() const noexcept { return block_size_; }

private:
    const void* address_;
    std::size_t offset_, length_, block_size_;
};

/// Which blocks a collection frees (see "Collection" in the header comment). A small value type:
/// make one with a named factory. A default-constructed strategy is all().
class collect_strategy {
public:
    enum class kind : std::uint8_t { all, owners_above, owner, unreferenced };

    constexpr collect_strategy() noexcept = default;
    /// Every quarantined block and every block of a retired owner.
    [[nodiscard]] static constexpr collect_strategy all() noexcept { return {}; }
    /// The quarantined blocks of the owners whose owner_usage() is above `bytes`.
    [[nodiscard]] static constexpr collect_strategy owners_above(std::size_t bytes) noexcept {
        return collect_strategy{kind::owners_above, bytes, {}};
    }
    /// The quarantined blocks of `id`, and its live blocks if it is retired. A collection with an
    /// id that is not (or no longer) an owner throws std::invalid_argument.
    [[nodiscard]] static constexpr collect_strategy owner(owner_id id) noexcept {
        return collect_strategy{kind::owner, 0, id};
    }
    /// Every block, live or quarantined, of retired owners.
    [[nodiscard]] static constexpr collect_strategy unreferenced() noexcept {
        return collect_strategy{kind::unreferenced, 0, {}};
    }

    [[nodiscard]] constexpr kind which() const noexcept { return kind_; }
    /// owners_above: the usage an owner must exceed (0 otherwise).
    [[nodiscard]] constexpr std::size_t bytes() const noexcept { return bytes_; }
    /// owner: the owner (owner_id{} otherwise).
    [[nodiscard]] constexpr owner_id target() const noexcept { return id_; }
    friend constexpr bool operator==(const collect_strategy&, const collect_strategy&) = default;

private:
    constexpr collect_strategy(kind k, std::size_t b, owner_id id) noexcept
        : kind_(k), bytes_(b), id_(id) {}
    kind kind_ = kind::all;
    std::size_t bytes_ = 0;
    owner_id id_{};
};

/// "all", "owners_above", "owner" or "unreferenced".
[[nodiscard]] constexpr std::string_view to_string(collect_strategy::kind k) noexcept {
    switch (k) {
    case collect_strategy::kind::all: return "all";
    case collect_strategy::kind::owners_above: return "owners_above";
    case collect_strategy::kind::owner: return "owner";
    case collect_strategy::kind::unreferenced: return "unreferenced";
    }
    return "unknown";
}

struct managed_heap_options {
    std::size_t capacity = std::size_t{1} << 30;   ///< bytes taken from the system at most
    std::size_t region_size = std::size_t{1} << 20; ///< smallest region taken when growing
    pressure_thresholds thresholds{};              ///< where the pressure levels start
    double pressure_hysteresis = 0.02; ///< fraction of capacity to drop below a threshold
    bool defer_frees = false;          ///< deallocate puts blocks in a quarantine (collect())
    std::size_t collect_threshold = 1000; ///< should_collect() from this many deferred blocks
    /// Reaching critical collects everything at once, without waiting for the interval.
    bool collect_on_critical = true;
    /// What collect(), collect(budget) and the automatic collections free.
    collect_strategy default_strategy = collect_strategy::all();
    /// Reaching auto_collect_level runs collect(default_strategy, collect_budget), at most once
    /// per auto_collect_interval.
    bool auto_collect = true;
    pressure_level auto_collect_level = pressure_level::high;
    std::chrono::nanoseconds auto_collect_interval = std::chrono::seconds{5};
    /// The time budget of an automatic collection.
    std::chrono::nanoseconds collect_budget = std::chrono::milliseconds{1};
    /// The clock of time_at_level and of auto_collect_interval (null: steady_clock::now). Must
    /// not throw. Budgeted collections always measure their budget with steady_clock.
    std::function<std::chrono::steady_clock::time_point()> clock{};
};

/// What a collection freed.
struct collect_result {
    std::size_t blocks = 0; ///< blocks given back to the tlsf heap
    std::size_t bytes = 0;  ///< their requested bytes
    bool complete = true;   ///< false when a time budget stopped it with work left
};

/// A change of a managed_heap's pressure level.
struct heap_pressure_event {
    pressure_level from;
    pressure_level to;
    std::size_t heap_bytes; ///< heap_bytes() when the change was found
    std::size_t capacity;
};

/// A refused allocation (heap_observer::on_out_of_memory): the details of the exception that
/// allocate throws, also for try_allocate.
struct heap_out_of_memory_event {
    owner_id owner;          ///< the owner asked for
    std::size_t requested;   ///< the requested size
    std::size_t alignment;
    bool limit;              ///< true: an owner's limit refused; false: the capacity
    owner_id limiting_owner; ///< limit: the owner whose limit refused (owner or an ancestor)
    std::size_t available;   ///< limit: that owner's remaining bytes; else the largest request
                             ///< that could still succeed
    std::size_t used;        ///< limit: that owner's usage; else heap_bytes()
    std::size_t capacity;    ///< limit: that owner's limit; else the configured capacity
};

/// Receives a managed_heap's events (add_observer). Every member does nothing by default; see
/// "Events" in the header comment for when they are called. Members must not throw.
class heap_observer {
public:
    virtual ~heap_observer() = default;
    virtual void on_allocated(owner_id /*owner*/, void* /*ptr*/, std::size_t /*size*/) {}
    virtual void on_deallocated(owner_id /*owner*/, void* /*ptr*/, std::size_t /*size*/) {}
    virtual void on_out_of_memory(const heap_out_of_memory_event& /*details*/) {}
    /// A rise to high or critical is the heap's warning that it is close to full.
    virtual void on_pressure_changed(const heap_pressure_event& /*event*/) {}
    /// `pause`: how long the heap's lock was held for this collection.
    virtual void on_collected(std::size_t /*blocks*/, std::size_t /*bytes*/,
                              std::chrono::nanoseconds /*pause*/) {}

protected:
    heap_observer() = default;
    heap_observer(const heap_observer&) = default;
    heap_observer& operator=(const heap_observer&) = default;
};

/// Counts a managed_heap's events (relaxed atomic counters; safe to read at any time).
class counting_observer final : public heap_observer {
public:
    void on_allocated(owner_id, void*, std::size_t size) override {
        allocated_.fetch_add(1, std::memory_order_relaxed);
        allocated_bytes_.fetch_add(size, std::memory_order_relaxed);
    }
    void on_deallocated(owner_id, void*, std::size_t size) override {
        deallocated_.fetch_add(1, std::memory_order_relaxed);
        deallocated_bytes_.fetch_add(size, std::memory_order_relaxed);
    }
    void on_out_of_memory(const heap_out_of_memory_event&) override {
        out_of_memory_.fetch_add(1, std::memory_order_relaxed);
    }
    void on_pressure_changed(const heap_pressure_event& e) override {
        pressure_changed_.fetch_add(1, std::memory_order_relaxed);
        if (e.to > e.from && e.to >= pressure_level::high)
            warnings_.fetch_add(1, std::memory_order_relaxed);
    }
    void on_collected(std::size_t, std::size_t, std::chrono::nanoseconds) override {
        collected_.fetch_add(1, std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t allocated() const noexcept { return load(allocated_); }
    [[nodiscard]] std::uint64_t allocated_bytes() const noexcept { return load(allocated_bytes_); }
    [[nodiscard]] std::uint64_t deallocated() const noexcept { return load(deallocated_); }
    [[nodiscard]] std::uint64_t deallocated_bytes() const noexcept {
        return load(deallocated_bytes_);
    }
    [[nodiscard]] std::uint64_t out_of_memory() const noexcept { return load(out_of_memory_); }
    [[nodiscard]] std::uint64_t pressure_changed() const noexcept {
        return load(pressure_changed_);
    }
    /// Pressure changes that rose to high or critical.
    [[nodiscard]] std::uint64_t warnings() const noexcept { return load(warnings_); }
    [[nodiscard]] std::uint64_t collected() const noexcept { return load(collected_); }

private:
    static std::uint64_t load(const std::atomic<std::uint64_t>& a) noexcept {
        return a.load(std::memory_order_relaxed);
    }
    std::atomic<std::uint64_t> allocated_{0}, allocated_bytes_{0}, deallocated_{0},
        deallocated_bytes_{0}, out_of_memory_{0}, pressure_changed_{0}, warnings_{0},
        collected_{0};
};

/// Writes each event as one JSON object on its own line to a std::ostream (which must outlive
/// the observer); a mutex keeps lines whole when threads report at once. Numbers are written as
/// decimal integers (addresses and owner ids included), levels as "low" ... "critical":
///   {"event":"allocated","owner":0,"address":140123,"size":100}
///   {"event":"deallocated","owner":0,"address":140123,"size":100}
///   {"event":"out_of_memory","owner":4294967297,"requested":4096,"alignment":16,
///    "reason":"owner_limit","limiting_owner":1,"available":100,"used":900,"capacity":1000}
///   {"event":"pressure_changed","from":"low","to":"high","heap_bytes":850000,
///    "capacity":1000000,"severity":"warning"}     (severity "info" unless it rose to >= high)
///   {"event":"collected","blocks":32,"bytes":4096,"pause_ns":1500}
/// A failing stream is not reported (events are delivered from noexcept code).
class json_lines_observer final : public heap_observer {
public:
    explicit json_lines_observer(std::ostream& out) noexcept : out_(&out) {}
    void on_allocated(owner_id owner, void* ptr, std::size_t size) override;
    void on_deallocated(owner_id owner, void* ptr, std::size_t size) override;
    void on_out_of_memory(const heap_out_of_memory_event& details) override;
    void on_pressure_changed(const heap_pressure_event& event) override;
    void on_collected(std::size_t blocks, std::size_t bytes,
                      std::chrono::nanoseconds pause) override;

private:
    void emit(const std::string& line) noexcept;
    std::ostream* out_;
    std::mutex mutex_;
};

class managed_heap;

/// Owns one block of a managed_heap and frees it when destroyed (unless released). Move-only.
/// The heap must outlive the guard, and the block must not be freed by other means (deallocate,
/// free_owner) while the guard owns it: release() it first. Not thread-safe itself (like any
/// object), while the heap it refers to is.
class heap_guard {
public:
    heap_guard() noexcept = default;
    /// Allocates `size` bytes for `owner`; throws as managed_heap::allocate.
    heap_guard(managed_heap& heap, std::size_t size, owner_id owner = {},
               std::size_t align = alignof(std::max_align_t));
    heap_guard(heap_guard&& other) noexcept
        : heap_(std::exchange(other.heap_, nullptr)), ptr_(std::exchange(other.ptr_, nullptr)),
          size_(std::exchange(other.size_, 0)) {}
    heap_guard& operator=(heap_guard&& other) noexcept {
        if (this != &other) {
            reset();
            heap_ = std::exchange(other.heap_, nullptr);
            ptr_ = std::exchange(other.ptr_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }
    heap_guard(const heap_guard&) = delete;
    heap_guard& operator=(const heap_guard&) = delete;
    ~heap_guard() { reset(); }

    /// The block (nullptr when empty: default-constructed, moved from or released).
    [[nodiscard]] void* get() const noexcept { return ptr_; }
    /// The block's requested size (0 when empty).
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] explicit operator bool() const noexcept { return ptr_ != nullptr; }
    /// Gives up ownership: returns the block, which the caller must now free; the guard is empty.
    [[nodiscard]] void* release() noexcept {
        heap_ = nullptr;
        size_ = 0;
        return std::exchange(ptr_, nullptr);
    }
    /// Frees the block now (if any); the guard is empty.
    void reset() noexcept;

private:
    managed_heap* heap_ = nullptr;
    void* ptr_ = nullptr;
    std::size_t size_ = 0;
};

/// One block of an owner (owner_allocations).
struct owner_block {
    void* pointer;
    std::size_t size; ///< the requested size
};

/// What owner_info() reports about one owner.
struct owner_stats {
    std::string name;
    std::size_t usage;       ///< own bytes plus descendants' (what the limit applies to)
    std::size_t peak;        ///< the highest usage so far
    std::size_t limit;       ///< memory_budget::unlimited when none
    std::size_t self_bytes;  ///< requested bytes of the owner's own live blocks
    std::size_t self_blocks; ///< the owner's own live blocks
    std::optional<owner_id> parent;
    bool retired;
    std::size_t deferred_blocks = 0; ///< the owner's blocks waiting in its quarantine
    std::size_t deferred_bytes = 0;  ///< their requested bytes
};

/// A consistent copy of the heap's statistics (taken under the lock).
struct managed_heap_snapshot {
    std::size_t used;       ///< requested bytes of live blocks
    std::size_t peak;       ///< the highest used so far
    std::size_t heap_bytes; ///< bytes the live blocks occupy in the tlsf heap
    std::size_t reserved;   ///< bytes of regions committed (of the reserved address space)
    std::size_t capacity;   ///< the configured capacity
    std::size_t blocks;     ///< live blocks
    std::size_t owners;     ///< owners that exist (the default one included)
    std::uint64_t allocations;
    std::uint64_t deallocations;
    std::uint64_t failed_allocations; ///< refused by capacity or by a limit
    std::size_t deferred_blocks;      ///< freed blocks waiting in the quarantine
    std::size_t deferred_bytes;       ///< their requested bytes
    double fragmentation_ratio;       ///< tlsf_heap::fragmentation_ratio
    pressure_level level;
    std::uint64_t automatic_collections = 0; ///< collections the heap started by itself
    /// Time spent at each level (index: pressure_level), the current stay included.
    std::array<std::chrono::nanoseconds, 4> time_at_level{};
};

class managed_heap {
public:
    static constexpr bool is_thread_safe = true;
    static constexpr std::size_t max_alignment = 4096;
    static constexpr const char* name = "memkit::managed_heap";
    static constexpr std::size_t unlimited = memory_budget::unlimited;
    using pressure_callback = std::function<void(const heap_pressure_event&)>;
    using guard = heap_guard;

    /// Reserves `capacity` bytes of address space (plus a page per possible region) and commits a
    /// first region of min(region_size, capacity) bytes. Throws std::invalid_argument for invalid
    /// thresholds or hysteresis, bad_size for a capacity too small for one region (or too large
    /// for the address space), out_of_memory when the system refuses the reservation.
    explicit managed_heap(managed_heap_options opts = {});
    ~managed_heap();
    managed_heap(const managed_heap&) = delete;
    managed_heap& operator=(const managed_heap&) = delete;

    // --- blocks ---------------------------------------------------------------------------
    [[nodiscard]] void* allocate(std::size_t size, owner_id owner = {},
                                 std::size_t align = alignof(std::max_align_t));
    [[nodiscard]] void* try_allocate(std::size_t size, owner_id owner = {},
                                     std::size_t align = alignof(std::max_align_t)) noexcept;
    /// Frees the block at `p` (nullptr: nothing). Throws invalid_address (see above).
    void deallocate(void* p);
    /// The requested size of the live block at `p` (precondition: a live block of this heap).
    [[nodiscard]] static std::size_t size_of(const void* p) noexcept;
    /// The owner of the live block at `p` (same precondition).
    [[nodiscard]] owner_id owner_of(const void* p) const;
    /// True if `p` lies in one of the heap's regions; true for every payload it hands out.
    [[nodiscard]] bool owns(const void* p) const;
    [[nodiscard]] static constexpr std::size_t max_size() noexcept { return std::size_t{1} << 39; }
    /// A block owned by the returned guard; throws as allocate.
    [[nodiscard]] guard allocate_guarded(std::size_t size, owner_id owner = {},
                                         std::size_t align = alignof(std::max_align_t));
    /// Copies out.size() bytes from offset `offset` of the live block that starts at `p` into
    /// `out`. Throws invalid_address (p is not such a block) or protection_violation (the range
    /// is not inside the block's requested size); nothing is copied then.
    void read(const void* p, std::size_t offset, std::span<std::byte> out) const;
    /// Copies `in` into the block at `p` from offset `offset`; throws as read.
    void write(void* p, std::size_t offset, std::span<const std::byte> in);

    // --- owners ---------------------------------------------------------------------------
    owner_id create_owner(std::string_view owner_name, std::size_t limit = unlimited,
                          std::optional<owner_id> parent = std::nullopt);
    /// Frees every block of `id` and of its descendants; returns the requested bytes freed.
    std::size_t free_owner(owner_id id);
    /// Marks `id` finished (see the header comment).
    void retire_owner(owner_id id);
    /// Changes the owner's limit (it may go below the usage: later allocations then fail).
    void set_owner_limit(owner_id id, std::size_t limit);
    [[nodiscard]] bool owner_exists(owner_id id) const;
    [[nodiscard]] std::size_t owner_usage(owner_id id) const;
    [[nodiscard]] std::size_t owner_peak(owner_id id) const;
    [[nodiscard]] std::vector<owner_block> owner_allocations(owner_id id) const;
    [[nodiscard]] owner_stats owner_info(owner_id id) const;

    // --- pressure -------------------------------------------------------------------------
    [[nodiscard]] pressure_level level() const;
    /// Registers `f` for every later level change; returns an id for remove_callback.
    std::uint64_t on_pressure_change(pressure_callback f);
    bool remove_callback(std::uint64_t id);

    // --- events ---------------------------------------------------------------------------
    /// Registers `o` for every later event (see "Events"). Throws std::invalid_argument for null.
    void add_observer(std::shared_ptr<heap_observer> o);
    /// Unregisters `o`; false if it was not registered.
    bool remove_observer(const std::shared_ptr<heap_observer>& o);

    // --- collection ---------------------------------------------------------------------
    /// True when the quarantines hold collect_threshold blocks or more, or a retired owner
    /// still holds blocks.
    [[nodiscard]] bool should_collect() const;
    /// collect(options().default_strategy): everything the default strategy selects, at once.
    collect_result collect();
    /// collect(options().default_strategy, budget).
    collect_result collect(std::chrono::nanoseconds budget);
    /// Frees every block that `strategy` selects, in one pause. Throws std::invalid_argument for
    /// collect_strategy::owner of an id that is not an owner.
    collect_result collect(const collect_strategy& strategy);
    /// Like collect(strategy), in batches of 32 steps with the lock released between them; stops
    /// once `budget` has passed (at least one batch). complete says whether the strategy found
    /// nothing more to free; call again to go on.
    collect_result collect(const collect_strategy& strategy, std::chrono::nanoseconds budget);
    /// Frees every block that can be freed now (strategy all), whatever the default strategy,
    /// the threshold or the automatic-collection interval say.
    collect_result force_collect();

    // --- statistics -----------------------------------------------------------------------
    [[nodiscard]] std::size_t used() const;
    [[nodiscard]] std::size_t peak() const;
    [[nodiscard]] std::size_t heap_bytes() const;
    [[nodiscard]] std::size_t capacity() const noexcept { return opts_.capacity; }
    [[nodiscard]] std::size_t block_count() const;
    [[nodiscard]] double fragmentation_ratio() const;
    [[nodiscard]] managed_heap_snapshot snapshot() const;
    /// How long the heap has been at `level` (the current stay included), by the options' clock.
    [[nodiscard]] std::chrono::nanoseconds time_at_level(pressure_level level) const;
    [[nodiscard]] const managed_heap_options& options() const noexcept { return opts_; }
    /// Checks the tlsf heap, every owner list and the counters; throws corruption_detected.
    void validate() const;

private:
    struct owner_rec;
    struct header;
    using clock_type = std::chrono::steady_clock;
    using observer_list = std::vector<std::shared_ptr<heap_observer>>;
    struct observed_block {
        owner_id owner;
        void* pointer;
        std::size_t size;
    };
    struct pending_event {
        bool any = false; // a pressure change
        heap_pressure_event event{};
        std::shared_ptr<const std::vector<std::pair<std::uint64_t, pressure_callback>>> callbacks;
        // Set, with what follows, only while observers are registered.
        std::shared_ptr<const observer_list> observers;
        bool allocated = false;
        observed_block block{};             // allocated, or the one block deallocate freed
        std::vector<observed_block> freed;  // deallocate, free_owner
        std::size_t collections = 0, collected_blocks = 0, collected_bytes = 0;
        std::chrono::nanoseconds pause{};
        bool failed = false;
        heap_out_of_memory_event failure{};
        bool auto_collect = false; // run collect(default_strategy, collect_budget) afterwards
        [[nodiscard]] bool pending() const noexcept { return any || observers != nullptr; }
    };
    // The tlsf heap's parent: every region comes from acquire_region and goes back through
    // release_region.
    class region_source {
    public:
        static constexpr std::size_t max_alignment = 16;
        explicit region_source(managed_heap* h) noexcept : heap_(h) {}
        [[nodiscard]] void* allocate(std::size_t size, std::size_t align);
        [[nodiscard]] void* try_allocate(std::size_t size, std::size_t align) noexcept;
        void deallocate(void* p, std::size_t size, std::size_t align) noexcept;

    private:
        managed_heap* heap_;
    };
    struct region_span {
        std::uintptr_t begin, end;
    };
    struct slot {
        std::unique_ptr<owner_rec> rec;
        std::uint32_t generation = 0; // bumped when the owner is removed
    };

    // The one place where memory is taken from, and given back to, the system.
    [[nodiscard]] void* acquire_region(std::size_t bytes) noexcept;
    void release_region(void* p, std::size_t bytes) noexcept;
    void give_back_range(std::size_t offset, std::size_t span) noexcept;
    [[nodiscard]] bool in_regions(std::uintptr_t lo, std::uintptr_t hi) const noexcept;

    [[nodiscard]] owner_rec* lookup(owner_id id) const noexcept; // lock held
    owner_rec& find(owner_id id) const; // throws std::invalid_argument; lock held
    [[nodiscard]] header* live_header(const void* p) const noexcept; // lock held
    [[nodiscard]] bool charge(owner_rec& o, std::size_t size) noexcept;
    void uncharge(owner_rec& o, std::size_t size) noexcept;
    [[nodiscard]] void* commit_block(void* raw, std::size_t pad, std::size_t size,
                                     std::size_t align, owner_rec& o) noexcept;
    [[nodiscard]] bool quiet() const noexcept;
    void* allocate_fast(std::size_t size, owner_id owner, std::size_t align) noexcept;
    MEMKIT_COLD void after_level_change(bool allocation) noexcept;
    void* allocate_slow(std::size_t size, owner_id owner, std::size_t align, bool throwing);
    void* allocate_locked(std::size_t size, owner_rec& o, std::size_t align, pending_event& ev,
                          bool& limit_refused) noexcept;
    void after_allocation(pending_event& ev) noexcept; // lock held
    void finish(pending_event& ev) noexcept;            // lock NOT held
    void deallocate_slow(void* p);
    void free_block(header* h, bool defer) noexcept;        // lock held
    void release_deferred(owner_rec& o, collect_result& r) noexcept; // pops one; lock held
    std::size_t free_subtree(owner_rec& o, std::vector<observed_block>* log) noexcept; // lock held
    bool remove_if_done(owner_rec* o) noexcept;             // lock held
    void settle(owner_rec* o) noexcept;                     // lock held
    void retired_unlink(owner_rec& o) noexcept;
    void dirty_link(owner_rec& o) noexcept;
    void dirty_unlink(owner_rec& o) noexcept;
    [[nodiscard]] bool collectable() const noexcept {
        return deferred_count_ != 0 || retired_head_ != nullptr;
    }
    void check_pressure(pending_event& ev) noexcept;        // lock held
    void recompute_pressure_bounds() noexcept;              // lock held
    [[nodiscard]] clock_type::time_point now() const noexcept;
    static void deliver(pending_event& ev) noexcept;        // lock NOT held
    MEMKIT_COLD heap_out_of_memory_event refusal(std::size_t size, owner_rec& o,
                                                 std::size_t align, bool limit_refused) const;
    [[noreturn]] MEMKIT_COLD static void throw_refusal(const heap_out_of_memory_event& d);
    void observe(pending_event& ev) const noexcept; // lock held
    header* checked_block(const void* p) const; // lock held; throws invalid_address
    [[nodiscard]] std::size_t available_locked() const noexcept;
    void release_block(header* h) noexcept;                 // to the tlsf heap; lock held
    collect_result collect_some(const collect_strategy& s, std::size_t max_steps,
                                pending_event& ev) noexcept;
    collect_result collect_budgeted(const collect_strategy& s, std::chrono::nanoseconds budget);
    collect_result collect_all_at_once(const collect_strategy& s);

    managed_heap_options opts_;
    mutable spin_lock lock_;
    // The heap's address space: `capacity` bytes reserved at construction, committed region by
    // region (top_: the end of the highest region taken; free_ranges_: ranges given back below
    // it, reused first fit).
    reservation space_;
    std::size_t top_ = 0;
    std::vector<region_span> free_ranges_;
    std::vector<region_span> regions_; // sorted by address; capacity reserved up front
    basic_tlsf_heap<region_source> heap_;
    std::vector<slot> slots_; // index = low 32 bits of the id
    std::vector<std::uint32_t> free_slots_;
    std::size_t owner_count_ = 0;
    std::size_t used_ = 0, peak_ = 0, blocks_ = 0;
    std::uint64_t allocations_ = 0, deallocations_ = 0, failures_ = 0;
    // Pressure: the level, and the heap_bytes at which it goes up (>= up_) or down (< down_).
    pressure_level level_ = pressure_level::low;
    std::size_t up_ = 0, down_ = 0;
    std::size_t bounds_[3] = {}; // bytes at which medium, high, critical start
    std::size_t hysteresis_bytes_ = 0;
    // From this level on an allocation may have to collect (auto_collect, collect_on_critical);
    // 4 when neither is on.
    unsigned action_level_ = 4;
    clock_type::time_point level_since_{};
    std::array<std::chrono::nanoseconds, 4> level_time_{};
    // Quarantines: each owner keeps a FIFO of its deferred blocks; the owners whose FIFO is not
    // empty form the "dirty" list, and the retired owners that still hold blocks (live or
    // deferred) the "retired" list.
    std::size_t deferred_count_ = 0, deferred_bytes_ = 0;
    owner_rec* dirty_head_ = nullptr;
    owner_rec* dirty_tail_ = nullptr;
    owner_rec* retired_head_ = nullptr;
    std::uint64_t collect_epoch_ = 0;
    // The owners_above pass in progress (see collect_some).
    bool above_open_ = false;
    std::size_t above_bytes_ = 0;
    std::uint64_t above_epoch_ = 0;
    bool auto_collected_ = false; // last_auto_collect_ is meaningful
    clock_type::time_point last_auto_collect_{};
    std::uint64_t automatic_collections_ = 0;
    std::uint64_t next_callback_id_ = 1;
    std::shared_ptr<const std::vector<std::pair<std::uint64_t, pressure_callback>>> callbacks_;
    bool observing_ = false; // observers_ is not empty
    std::shared_ptr<const observer_list> observers_;
};

inline heap_guard::heap_guard(managed_heap& heap, std::size_t size, owner_id owner,
                              std::size_t align)
    : heap_(&heap), ptr_(heap.allocate(size, owner, align)), size_(size) {}

inline void heap_guard::reset() noexcept {
    // A guard holds a block only together with its heap; testing both keeps the moved-from
    // state (both null) obviously safe, also to the compiler's null-pointer analysis.
    if (ptr_ != nullptr && heap_ != nullptr) heap_->deallocate(std::exchange(ptr_, nullptr));
    heap_ = nullptr;
    size_ = 0;
}

inline heap_guard managed_heap::allocate_guarded(std::size_t size, owner_id owner,
                                                 std::size_t align) {
    return heap_guard{*this, size, owner, align};
}

} // namespace memkit
