// memkit/heap/managed_heap.cpp - see include/memkit/heap/managed_heap.hpp.
#include "memkit/heap/managed_heap.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <utility>

#include "memkit/alloc/system.hpp"
#include "memkit/core/annotations.hpp"

namespace memkit {

namespace {
constexpr std::uintptr_t live_key = 0x6d6b6d68'4c495645u;  // "mkmhLIVE"
constexpr std::uintptr_t freed_key = 0x6d6b6d68'46524545u; // "mkmhFREE"
constexpr std::uintptr_t deferred_key = 0x6d6b6d68'51554152u; // "mkmhQUAR"
constexpr std::size_t granule = 16;
constexpr std::size_t header_size = 48;
constexpr std::size_t batch_steps = 32; // of a budgeted collection

std::uintptr_t addr(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p); }

using lock_guard = std::lock_guard<spin_lock>;
} // namespace

// In front of every payload. The tlsf heap writes its free-list links over the first 16 bytes of
// a freed block, so the canary sits last, next to the payload, where a free leaves it alone.
struct managed_heap::header {
    header* prev;
    header* next;
    owner_rec* owner; // also while quarantined
    std::size_t size;   // requested
    std::uint32_t pad;  // bytes from the tlsf block's start to the payload
    std::uint32_t align;
    std::uintptr_t canary; // live_key, deferred_key or freed_key, xor the header's address

    void* payload() noexcept { return reinterpret_cast<std::byte*>(this) + sizeof(header); }
    std::byte* raw() noexcept { return static_cast<std::byte*>(payload()) - pad; }
};
static_assert(sizeof(void*) == 8 && sizeof(std::uintptr_t) == 8);
static_assert(sizeof(void*) * 6 == header_size);

struct managed_heap::owner_rec {
    owner_rec(owner_id i, std::string_view n, std::size_t lim, owner_rec* p)
        : parent(p), limit(lim), id(i), depth(p != nullptr ? p->depth + 1 : 0), name(n) {}

    // What allocate and deallocate touch comes first: one cache line.
    header* blocks = nullptr; // live, most recent first
    owner_rec* parent;
    std::size_t limit;
    std::size_t usage = 0, peak = 0; // own and descendants' requested bytes
    std::size_t self_bytes = 0, self_blocks = 0;
    bool retired = false;
    bool in_retired_list = false;
    owner_id id;
    unsigned depth;
    owner_rec* first_child = nullptr;
    owner_rec* next_sibling = nullptr;
    owner_rec* prev_sibling = nullptr;
    header* deferred_head = nullptr; // the quarantine, oldest first
    header* deferred_tail = nullptr;
    owner_rec* dirty_prev = nullptr; // the dirty list (deferred_head != nullptr)
    owner_rec* dirty_next = nullptr;
    owner_rec* retired_prev = nullptr; // the retired list (retired, holding blocks)
    owner_rec* retired_next = nullptr;
    std::size_t deferred_bytes = 0, deferred_blocks = 0;
    std::uint64_t epoch = 0; // owners_above: passed over by the collection of that epoch
    std::string name;

    [[nodiscard]] bool holds_blocks() const noexcept {
        return blocks != nullptr || deferred_head != nullptr;
    }
};

// --- regions ------------------------------------------------------------------------------

void* managed_heap::acquire_region(std::size_t bytes) noexcept {
    // Whole pages of the reservation: a range given back earlier (first fit), else the top.
    const std::size_t page = space_.granularity();
    const std::size_t span = (bytes + page - 1) / page * page;
    if (span < bytes) return nullptr;
    const std::uintptr_t base = addr(space_.data());
    std::size_t offset = space_.size();
    auto reuse = std::find_if(free_ranges_.begin(), free_ranges_.end(),
                              [span](const region_span& f) { return f.end - f.begin >= span; });
    if (reuse != free_ranges_.end()) {
        offset = reuse->begin - base;
    } else if (space_.size() - top_ >= span) {
        offset = top_;
    } else {
        return nullptr; // the capacity's address space is used up
    }
    if (space_.try_commit(offset, span)) return nullptr;
    if (reuse != free_ranges_.end()) {
        if (reuse->end - reuse->begin == span) free_ranges_.erase(reuse);
        else reuse->begin += span;
    } else {
        top_ += span;
    }
    void* p = space_.data() + offset;
    const region_span r{addr(p), addr(p) + bytes};
    const auto at = std::lower_bound(regions_.begin(), regions_.end(), r,
                                     [](const region_span& a, const region_span& b) {
                                         return a.begin < b.begin;
                                     });
    try { // room for the usual number of regions was reserved up front
        regions_.insert(at, r);
    } catch (...) { // no room to record it: as if the system had refused
        give_back_range(offset, span);
        return nullptr;
    }
    return p;
}

// Decommits [offset, offset + span) and makes it available again: the top moves down over it
// (and over free ranges just below it), otherwise it joins the free ranges.
void managed_heap::give_back_range(std::size_t offset, std::size_t span) noexcept {
    (void)space_.try_decommit(offset, span);
    const std::uintptr_t base = addr(space_.data());
    if (offset + span == top_) {
        top_ = offset;
        for (bool merged = true; merged;) {
            merged = false;
            for (auto it = free_ranges_.begin(); it != free_ranges_.end(); ++it) {
                if (it->end - base == top_) {
                    top_ = it->begin - base;
                    free_ranges_.erase(it);
                    merged = true;
                    break;
                }
            }
        }
        return;
    }
    try {
        free_ranges_.push_back({base + offset, base + offset + span});
    } catch (...) { // cannot record it: the range stays reserved (and decommitted) unused
    }
}

void managed_heap::release_region(void* p, std::size_t bytes) noexcept {
    const auto it = std::find_if(regions_.begin(), regions_.end(),
                                 [p](const region_span& r) { return r.begin == addr(p); });
    if (it != regions_.end()) regions_.erase(it);
    const std::size_t page = space_.granularity();
    give_back_range(space_.offset_of(p), (bytes + page - 1) / page * page);
}

MEMKIT_ALWAYS_INLINE bool managed_heap::in_regions(std::uintptr_t lo,
                                                 std::uintptr_t hi) const noexcept {
    if (MEMKIT_LIKELY(regions_.size() == 1))
        return lo >= regions_[0].begin && lo < regions_[0].end && hi <= regions_[0].end;
    // The last region that starts at or below lo must also hold hi.
    const auto it = std::upper_bound(regions_.begin(), regions_.end(), lo,
                                     [](std::uintptr_t v, const region_span& r) {
                                         return v < r.begin;
                                     });
    if (it == regions_.begin()) return false;
    const region_span& r = *(it - 1);
    return lo < r.end && hi <= r.end;
}

void* managed_heap::region_source::allocate(std::size_t size, std::size_t align) {
    if (void* p = try_allocate(size, align)) return p;
    throw out_of_memory(managed_heap::name, size, 0, 0, 0);
}

void* managed_heap::region_source::try_allocate(std::size_t size, std::size_t /*align*/) noexcept {
    return heap_->acquire_region(size);
}

void managed_heap::region_source::deallocate(void* p, std::size_t size,
                                             std::size_t /*align*/) noexcept {
    heap_->release_region(p, size);
}

namespace {
// Regions after the first are at least region_size bytes, and all of them together at most the
// capacity; the table grows past this (rare, tiny regions) when it must.
std::size_t max_regions(const managed_heap_options& o) {
    const std::size_t smallest = std::max<std::size_t>(std::min(o.region_size, o.capacity), 1);
    return std::min<std::size_t>(o.capacity / smallest + 2, 4096);
}
// The capacity plus a page per possible region: each region is rounded up to whole pages, and
// the capacity limits the regions' bytes, not their rounding. Saturates (the reservation then
// refuses a size no address space can hold).
std::size_t reservation_size(const managed_heap_options& o) {
    const std::size_t slack = max_regions(o) * vm::page_size();
    return o.capacity > static_cast<std::size_t>(-1) - slack ? static_cast<std::size_t>(-1)
                                                             : o.capacity + slack;
}
} // namespace

// --- construction -------------------------------------------------------------------------

managed_heap::managed_heap(managed_heap_options opts)
    : opts_(std::move(opts)),
      space_(reservation_size(opts_)),
      regions_([this] {
          std::vector<region_span> v;
          v.reserve(max_regions(opts_));
          return v;
      }()),
      heap_(std::min(opts_.region_size, opts_.capacity),
            tlsf_options{.growth = true, .region_size = opts_.region_size,
                         .max_total = opts_.capacity},
            region_source{this}) {
    static_assert(sizeof(header) == header_size);
    if (!opts_.thresholds.valid())
        throw std::invalid_argument("memkit::managed_heap: pressure thresholds out of order");
    if (!(opts_.pressure_hysteresis >= 0.0 && opts_.pressure_hysteresis < opts_.thresholds.medium))
        throw std::invalid_argument("memkit::managed_heap: pressure_hysteresis outside [0, medium)");
    if (opts_.auto_collect_interval.count() < 0 || opts_.collect_budget.count() < 0)
        throw std::invalid_argument(
            "memkit::managed_heap: auto_collect_interval and collect_budget must not be negative");
    const double cap = static_cast<double>(opts_.capacity);
    const double t[3] = {opts_.thresholds.medium, opts_.thresholds.high, opts_.thresholds.critical};
    for (int i = 0; i < 3; ++i) {
        // The smallest byte count at which level_for() reaches level i + 1.
        const auto want = static_cast<pressure_level>(i + 1);
        auto b = static_cast<std::size_t>(std::ceil(t[i] * cap));
        while (b > 0 && opts_.thresholds.level_for(static_cast<double>(b - 1), cap) >= want) --b;
        while (opts_.thresholds.level_for(static_cast<double>(b), cap) < want) ++b;
        bounds_[i] = b;
    }
    hysteresis_bytes_ = static_cast<std::size_t>(opts_.pressure_hysteresis * cap);
    recompute_pressure_bounds();
    if (opts_.collect_on_critical) action_level_ = 3;
    if (opts_.auto_collect)
        action_level_ = std::min(action_level_, static_cast<unsigned>(opts_.auto_collect_level));
    level_since_ = now();
    callbacks_ = std::make_shared<const std::vector<std::pair<std::uint64_t, pressure_callback>>>();
    observers_ = std::make_shared<const observer_list>();
    slots_.push_back({std::make_unique<owner_rec>(owner_id{}, "default", unlimited, nullptr), 0});
    owner_count_ = 1;
}

// The blocks go with the regions (released by the tlsf heap's destructor through
// release_region); the owner records with the slots.
managed_heap::~managed_heap() = default;

managed_heap::clock_type::time_point managed_heap::now() const noexcept {
    return opts_.clock ? opts_.clock() : clock_type::now();
}

// --- owners -------------------------------------------------------------------------------

managed_heap::owner_rec* managed_heap::lookup(owner_id id) const noexcept {
    const std::uint64_t idx = id.value & 0xffffffffu;
    if (MEMKIT_UNLIKELY(idx >= slots_.size())) return nullptr;
    const slot& s = slots_[idx];
    return s.generation == (id.value >> 32) ? s.rec.get() : nullptr;
}

managed_heap::owner_rec& managed_heap::find(owner_id id) const {
    owner_rec* o = lookup(id);
    if (o == nullptr) throw std::invalid_argument("memkit::managed_heap: unknown owner");
    return *o;
}

owner_id managed_heap::create_owner(std::string_view owner_name, std::size_t limit,
                                    std::optional<owner_id> parent) {
    lock_guard lock(lock_);
    owner_rec* p = nullptr;
    if (parent) {
        p = &find(*parent);
        if (p->retired)
            throw std::invalid_argument("memkit::managed_heap: parent owner is retired");
    }
    std::uint32_t idx;
    if (!free_slots_.empty()) {
        idx = free_slots_.back();
    } else {
        if (slots_.size() >= 0xffffffffu)
            throw std::length_error("memkit::managed_heap: too many owners");
        // Room for every slot in free_slots_, so that removing an owner never allocates.
        free_slots_.reserve(slots_.size() + 1);
        idx = static_cast<std::uint32_t>(slots_.size());
        slots_.emplace_back();
    }
    const owner_id id{(std::uint64_t{slots_[idx].generation} << 32) | idx};
    auto rec = std::make_unique<owner_rec>(id, owner_name, limit, p);
    if (!free_slots_.empty()) free_slots_.pop_back();
    if (p != nullptr) {
        rec->next_sibling = p->first_child;
        if (p->first_child != nullptr) p->first_child->prev_sibling = rec.get();
        p->first_child = rec.get();
    }
    slots_[idx].rec = std::move(rec);
    ++owner_count_;
    return id;
}

void managed_heap::retired_unlink(owner_rec& o) noexcept {
    if (!o.in_retired_list) return;
    if (o.retired_prev != nullptr) o.retired_prev->retired_next = o.retired_next;
    else retired_head_ = o.retired_next;
    if (o.retired_next != nullptr) o.retired_next->retired_prev = o.retired_prev;
    o.retired_prev = o.retired_next = nullptr;
    o.in_retired_list = false;
}

void managed_heap::dirty_link(owner_rec& o) noexcept {
    o.dirty_next = nullptr;
    o.dirty_prev = dirty_tail_;
    if (dirty_tail_ != nullptr) dirty_tail_->dirty_next = &o;
    else dirty_head_ = &o;
    dirty_tail_ = &o;
}

void managed_heap::dirty_unlink(owner_rec& o) noexcept {
    if (o.dirty_prev != nullptr) o.dirty_prev->dirty_next = o.dirty_next;
    else dirty_head_ = o.dirty_next;
    if (o.dirty_next != nullptr) o.dirty_next->dirty_prev = o.dirty_prev;
    else dirty_tail_ = o.dirty_prev;
    o.dirty_prev = o.dirty_next = nullptr;
}

bool managed_heap::remove_if_done(owner_rec* o) noexcept {
    if (!o->retired || o->holds_blocks()) return false;
    retired_unlink(*o);
    if (o->first_child != nullptr) return false;
    if (owner_rec* const p = o->parent; p != nullptr) {
        if (o->prev_sibling != nullptr) o->prev_sibling->next_sibling = o->next_sibling;
        else p->first_child = o->next_sibling;
        if (o->next_sibling != nullptr) o->next_sibling->prev_sibling = o->prev_sibling;
    }
    const std::uint64_t idx = o->id.value & 0xffffffffu;
    slots_[idx].rec.reset();
    ++slots_[idx].generation;
    // The slot table only grows with create_owner, which reserved room for this push.
    free_slots_.push_back(static_cast<std::uint32_t>(idx));
    --owner_count_;
    return true;
}

void managed_heap::settle(owner_rec* o) noexcept {
    while (o != nullptr) {
        owner_rec* const p = o->parent;
        if (!remove_if_done(o)) return;
        o = p;
    }
}

void managed_heap::retire_owner(owner_id id) {
    lock_guard lock(lock_);
    owner_rec& o = find(id);
    if (o.id == owner_id{})
        throw std::invalid_argument("memkit::managed_heap: the default owner cannot be retired");
    if (o.retired) return;
    o.retired = true;
    if (o.holds_blocks()) { // for the unreferenced strategy
        o.retired_prev = nullptr;
        o.retired_next = retired_head_;
        if (retired_head_ != nullptr) retired_head_->retired_prev = &o;
        retired_head_ = &o;
        o.in_retired_list = true;
    }
    settle(&o);
}

std::size_t managed_heap::free_subtree(owner_rec& root,
                                       std::vector<observed_block>* log) noexcept {
    std::size_t freed = 0;
    // Depth-first over the subtree without recursion: descend through first_child, move on
    // through next_sibling, climb back through parent.
    owner_rec* o = &root;
    while (true) {
        while (o->blocks != nullptr) {
            freed += o->blocks->size;
            if (log != nullptr) log->push_back({o->id, o->blocks->payload(), o->blocks->size});
            free_block(o->blocks, opts_.defer_frees);
        }
        if (o->first_child != nullptr) {
            o = o->first_child;
            continue;
        }
        while (o != &root && o->next_sibling == nullptr) o = o->parent;
        if (o == &root) break;
        o = o->next_sibling;
    }
    return freed;
}

std::size_t managed_heap::free_owner(owner_id id) {
    pending_event ev;
    std::size_t freed;
    {
        lock_guard lock(lock_);
        owner_rec& o = find(id);
        // The subtree, parents before children (this may throw, before anything changed).
        std::vector<owner_rec*> order;
        order.push_back(&o);
        std::size_t n = 0;
        for (std::size_t i = 0; i < order.size(); ++i) {
            n += order[i]->self_blocks;
            for (owner_rec* c = order[i]->first_child; c != nullptr; c = c->next_sibling)
                order.push_back(c);
        }
        if (MEMKIT_UNLIKELY(observing_)) {
            ev.freed.reserve(n); // so that free_subtree can log without failing
            observe(ev);
        }
        freed = free_subtree(o, ev.observers != nullptr ? &ev.freed : nullptr);
        // Retired owners of the subtree that are now empty go away, leaves first; then the
        // retired ancestors that this emptied.
        owner_rec* const above = o.parent;
        bool root_gone = false;
        for (auto it = order.rbegin(); it != order.rend(); ++it) {
            const bool is_root = *it == &o;
            if (remove_if_done(*it) && is_root) root_gone = true;
        }
        if (root_gone) settle(above);
        check_pressure(ev);
    }
    if (ev.pending()) deliver(ev);
    return freed;
}

void managed_heap::set_owner_limit(owner_id id, std::size_t limit) {
    lock_guard lock(lock_);
    find(id).limit = limit;
}

bool managed_heap::owner_exists(owner_id id) const {
    lock_guard lock(lock_);
    return lookup(id) != nullptr;
}

std::size_t managed_heap::owner_usage(owner_id id) const {
    lock_guard lock(lock_);
    return find(id).usage;
}

std::size_t managed_heap::owner_peak(owner_id id) const {
    lock_guard lock(lock_);
    return find(id).peak;
}

std::vector<owner_block> managed_heap::owner_allocations(owner_id id) const {
    lock_guard lock(lock_);
    const owner_rec& o = find(id);
    std::vector<owner_block> out;
    out.reserve(o.self_blocks);
    for (header* h = o.blocks; h != nullptr; h = h->next) out.push_back({h->payload(), h->size});
    return out;
}

owner_stats managed_heap::owner_info(owner_id id) const {
    lock_guard lock(lock_);
    const owner_rec& o = find(id);
    owner_stats s{o.name,       o.usage,       o.peak,       o.limit,
                  o.self_bytes, o.self_blocks, std::nullopt, o.retired,
                  o.deferred_blocks, o.deferred_bytes};
    if (o.parent != nullptr) s.parent = o.parent->id;
    return s;
}

// --- blocks -------------------------------------------------------------------------------

// Checks every level first, so that a refusal changes nothing (peaks included).
MEMKIT_ALWAYS_INLINE bool managed_heap::charge(owner_rec& o, std::size_t size) noexcept {
    for (const owner_rec* r = &o; r != nullptr; r = r->parent) {
        const std::size_t room = r->limit > r->usage ? r->limit - r->usage : 0;
        if (MEMKIT_UNLIKELY(size > room)) return false;
    }
    for (owner_rec* r = &o; r != nullptr; r = r->parent) {
        r->usage += size;
        r->peak = r->usage > r->peak ? r->usage : r->peak;
    }
    return true;
}

MEMKIT_ALWAYS_INLINE void managed_heap::uncharge(owner_rec& o, std::size_t size) noexcept {
    for (owner_rec* r = &o; r != nullptr; r = r->parent) r->usage -= size;
}

MEMKIT_ALWAYS_INLINE void* managed_heap::commit_block(void* raw, std::size_t pad,
                                                      std::size_t size, std::size_t align,
                                                      owner_rec& o) noexcept {
    auto* h = reinterpret_cast<header*>(static_cast<std::byte*>(raw) + pad - header_size);
    h->prev = nullptr;
    h->next = o.blocks;
    if (o.blocks != nullptr) o.blocks->prev = h;
    o.blocks = h;
    h->owner = &o;
    h->size = size;
    h->pad = static_cast<std::uint32_t>(pad);
    h->align = static_cast<std::uint32_t>(align);
    h->canary = live_key ^ addr(h);
    o.self_bytes += size;
    ++o.self_blocks;
    used_ += size;
    peak_ = used_ > peak_ ? used_ : peak_;
    ++blocks_;
    ++allocations_;
    return h->payload();
}

// Nothing unusual can happen: no observer, and no level from which an allocation may collect
// (or nothing to collect).
MEMKIT_ALWAYS_INLINE bool managed_heap::quiet() const noexcept {
    return !observing_ && (static_cast<unsigned>(level_) < action_level_ || !collectable());
}

// The common case in one short critical section; nullptr sends the caller to allocate_slow,
// which starts over (nothing has changed then).
MEMKIT_ALWAYS_INLINE void* managed_heap::allocate_fast(std::size_t size, owner_id owner,
                                                       std::size_t align) noexcept {
    lock_.lock();
    owner_rec* const o = lookup(owner);
    // (Two tests: with charge() inside the unlikely one, GCC moves the charge to a cold clone.)
    if (MEMKIT_UNLIKELY(!quiet() || o == nullptr || o->retired)) {
        lock_.unlock();
        return nullptr;
    }
    const bool charged = charge(*o, size);
    if (MEMKIT_UNLIKELY(!charged)) {
        lock_.unlock();
        return nullptr;
    }
    // Above 16, the header goes at the end of `pad` bytes that keep the payload aligned.
    const bool small = align <= granule;
    const std::size_t pad = small ? header_size : std::max<std::size_t>(align, 64);
    void* const raw = heap_.try_allocate(pad + size, small ? granule : align);
    if (MEMKIT_UNLIKELY(raw == nullptr)) {
        uncharge(*o, size);
        lock_.unlock();
        return nullptr;
    }
    void* const p = commit_block(raw, pad, size, align, *o);
    const bool level_rose = heap_.stats().bytes_in_use >= up_;
    lock_.unlock();
    if (MEMKIT_UNLIKELY(level_rose)) after_level_change(true);
    return p;
}

// A fast path moved heap_bytes across a threshold: report the new level (and, after an
// allocation, collect if the level calls for it). Another thread may have moved the level since;
// this reports what it is now.
void managed_heap::after_level_change(bool allocation) noexcept {
    pending_event ev;
    {
        lock_guard lock(lock_);
        if (allocation) after_allocation(ev);
        else check_pressure(ev);
    }
    finish(ev);
}

void* managed_heap::allocate_locked(std::size_t size, owner_rec& o, std::size_t align,
                                    pending_event& ev, bool& limit_refused) noexcept {
    if (MEMKIT_UNLIKELY(!charge(o, size))) {
        limit_refused = true;
        ++failures_;
        return nullptr;
    }
    const bool small = align <= granule;
    const std::size_t pad = small ? header_size : std::max<std::size_t>(align, 64);
    void* raw = heap_.try_allocate(pad + size, small ? granule : align);
    if (MEMKIT_UNLIKELY(raw == nullptr) && collectable()) {
        // Reclaim the garbage before reporting the heap full.
        collect_some(collect_strategy::all(), std::numeric_limits<std::size_t>::max(), ev);
        raw = heap_.try_allocate(pad + size, small ? granule : align);
    }
    if (MEMKIT_UNLIKELY(raw == nullptr)) {
        uncharge(o, size);
        ++failures_;
        return nullptr;
    }
    void* const p = commit_block(raw, pad, size, align, o);
    after_allocation(ev);
    return p;
}

// After a successful allocation, lock held: the pressure level, and the automatic collections.
void managed_heap::after_allocation(pending_event& ev) noexcept {
    check_pressure(ev);
    if (MEMKIT_LIKELY(static_cast<unsigned>(level_) < action_level_ || !collectable())) return;
    if (level_ == pressure_level::critical && opts_.collect_on_critical) {
        // The emergency: everything, now, whatever the interval.
        collect_some(collect_strategy::all(), std::numeric_limits<std::size_t>::max(), ev);
        auto_collected_ = true;
        last_auto_collect_ = now();
        ++automatic_collections_;
        return;
    }
    if (!opts_.auto_collect || level_ < opts_.auto_collect_level) return;
    const auto t = now();
    if (auto_collected_ && t - last_auto_collect_ < opts_.auto_collect_interval) return;
    auto_collected_ = true;
    last_auto_collect_ = t;
    ++automatic_collections_;
    ev.auto_collect = true; // budgeted, after the lock is released
}

void managed_heap::finish(pending_event& ev) noexcept {
    if (ev.pending()) deliver(ev);
    if (MEMKIT_UNLIKELY(ev.auto_collect)) {
        try {
            (void)collect_budgeted(opts_.default_strategy, opts_.collect_budget);
        } catch (...) { // NOLINT(bugprone-empty-catch): owner(id) of a removed owner: nothing
        }
    }
}

void* managed_heap::allocate_slow(std::size_t size, owner_id owner, std::size_t align,
                                  bool throwing) {
    pending_event ev;
    void* p;
    {
        lock_guard lock(lock_);
        owner_rec* const o = lookup(owner);
        if (MEMKIT_UNLIKELY(o == nullptr || o->retired)) {
            if (!throwing) return nullptr;
            if (o == nullptr) throw std::invalid_argument("memkit::managed_heap: unknown owner");
            throw std::invalid_argument("memkit::managed_heap: allocation for a retired owner");
        }
        bool limit_refused = false;
        p = allocate_locked(size, *o, align, ev, limit_refused);
        if (MEMKIT_UNLIKELY(p == nullptr)) {
            ev.failed = true;
            ev.failure = refusal(size, *o, align, limit_refused);
        }
        if (MEMKIT_UNLIKELY(observing_)) {
            observe(ev);
            if (p != nullptr) {
                ev.allocated = true;
                ev.block = {o->id, p, size};
            }
        }
    }
    // Events first, then the exception, so that neither is lost.
    finish(ev);
    if (MEMKIT_UNLIKELY(p == nullptr) && throwing) throw_refusal(ev.failure);
    return p;
}

void* managed_heap::try_allocate(std::size_t size, owner_id owner, std::size_t align) noexcept {
    if (MEMKIT_UNLIKELY(size - 1 >= max_size() || align - 1 >= max_alignment ||
                        (align & (align - 1)) != 0))
        return nullptr;
    if (void* p = allocate_fast(size, owner, align); MEMKIT_LIKELY(p != nullptr)) return p;
    try {
        return allocate_slow(size, owner, align, false);
    } catch (...) { // std::bad_alloc while recording an event: report the failure as nullptr
        return nullptr;
    }
}

void* managed_heap::allocate(std::size_t size, owner_id owner, std::size_t align) {
    if (MEMKIT_UNLIKELY(size - 1 >= max_size() || align - 1 >= max_alignment ||
                        (align & (align - 1)) != 0))
        throw_bad_request(name, size, align, max_size(), max_alignment);
    if (void* p = allocate_fast(size, owner, align); MEMKIT_LIKELY(p != nullptr)) return p;
    return allocate_slow(size, owner, align, true);
}

heap_out_of_memory_event managed_heap::refusal(std::size_t size, owner_rec& o,
                                               std::size_t align, bool limit_refused) const {
    if (limit_refused) {
        // Usage changes only under our lock, so the level that refused is still over.
        for (owner_rec* r = &o; r != nullptr; r = r->parent) {
            const std::size_t lim = r->limit, u = r->usage;
            if (u > lim || lim - u < size)
                return {o.id, size, align, true, r->id, lim > u ? lim - u : 0, u, lim};
        }
        return {o.id, size, align, true, o.id, 0, o.usage, o.limit};
    }
    return {o.id,         size, align, false, owner_id{}, available_locked(),
            heap_.stats().bytes_in_use, opts_.capacity};
}

void managed_heap::throw_refusal(const heap_out_of_memory_event& d) {
    if (d.limit)
        throw owner_limit_exceeded(d.owner, d.limiting_owner, d.requested, d.available, d.used,
                                   d.capacity);
    throw out_of_memory(name, d.requested, d.available, d.used, d.capacity);
}

std::size_t managed_heap::available_locked() const noexcept {
    // A new region costs the tlsf heap 64 bytes of its own.
    constexpr std::size_t region_cost = 64;
    const std::size_t reserved = heap_.capacity();
    const std::size_t room = opts_.capacity > reserved ? opts_.capacity - reserved : 0;
    const std::size_t largest =
        std::max(heap_.largest_free_block(), room > region_cost ? room - region_cost : 0);
    return largest > header_size ? largest - header_size : 0;
}

MEMKIT_ALWAYS_INLINE void managed_heap::release_block(header* h) noexcept {
    h->canary = freed_key ^ addr(h);
    heap_.deallocate(h->raw(), h->pad + h->size, h->align <= granule ? granule : h->align);
}

MEMKIT_ALWAYS_INLINE void managed_heap::free_block(header* h, bool defer) noexcept {
    owner_rec& o = *h->owner;
    if (h->prev != nullptr) h->prev->next = h->next;
    else o.blocks = h->next;
    if (h->next != nullptr) h->next->prev = h->prev;
    const std::size_t size = h->size;
    o.self_bytes -= size;
    --o.self_blocks;
    uncharge(o, size);
    used_ -= size;
    --blocks_;
    ++deallocations_;
    if (!defer) return release_block(h);
    h->canary = deferred_key ^ addr(h);
    h->next = nullptr;
    h->prev = o.deferred_tail;
    if (o.deferred_tail != nullptr) o.deferred_tail->next = h;
    else {
        o.deferred_head = h;
        dirty_link(o);
    }
    o.deferred_tail = h;
    ++o.deferred_blocks;
    o.deferred_bytes += size;
    ++deferred_count_;
    deferred_bytes_ += size;
}

// The oldest block of o's quarantine goes back to the tlsf heap.
void managed_heap::release_deferred(owner_rec& o, collect_result& r) noexcept {
    header* const h = o.deferred_head;
    o.deferred_head = h->next;
    if (o.deferred_head != nullptr) o.deferred_head->prev = nullptr;
    else {
        o.deferred_tail = nullptr;
        dirty_unlink(o);
    }
    --o.deferred_blocks;
    o.deferred_bytes -= h->size;
    --deferred_count_;
    deferred_bytes_ -= h->size;
    ++r.blocks;
    r.bytes += h->size;
    release_block(h);
}

// The live block whose payload starts at p, or nullptr. The whole header must lie in one region
// (a payload may start at a region's end marker: the tlsf heap lends each block the first word
// of the next), so that reading it is safe whatever p is.
MEMKIT_ALWAYS_INLINE managed_heap::header* managed_heap::live_header(const void* p) const noexcept {
    const std::uintptr_t a = addr(p);
    if (MEMKIT_UNLIKELY(a % granule != 0 || a < header_size || !in_regions(a - header_size, a)))
        return nullptr;
    auto* h = reinterpret_cast<header*>(a - header_size);
    // A freed block's header is memory the tlsf heap may have poisoned for AddressSanitizer.
    return MEMKIT_LIKELY(read_unused_word(&h->canary) == (live_key ^ addr(h))) ? h : nullptr;
}

void managed_heap::deallocate(void* p) {
    if (p == nullptr) return;
    lock_.lock();
    header* const h = live_header(p);
    if (MEMKIT_LIKELY(h != nullptr && !observing_)) {
        owner_rec* const o = h->owner;
        free_block(h, opts_.defer_frees);
        if (MEMKIT_UNLIKELY(o->retired)) settle(o);
        const bool level_fell = heap_.stats().bytes_in_use < down_;
        lock_.unlock();
        if (MEMKIT_UNLIKELY(level_fell)) after_level_change(false);
        return;
    }
    lock_.unlock();
    deallocate_slow(p); // an observer to tell, or an error to report
}

void managed_heap::deallocate_slow(void* p) {
    pending_event ev;
    {
        lock_guard lock(lock_);
        header* const h = live_header(p);
        if (MEMKIT_UNLIKELY(h == nullptr)) {
            const std::uintptr_t a = addr(p);
            if (a % granule == 0 && a >= header_size && in_regions(a - header_size, a)) {
                const auto* g = reinterpret_cast<const header*>(a - header_size);
                const std::uintptr_t canary = read_unused_word(&g->canary); // may be poisoned
                if (canary == (freed_key ^ addr(g)) || canary == (deferred_key ^ addr(g)))
                    throw invalid_address(p, errc::double_free,
                                          "memkit::managed_heap: block freed twice");
                throw invalid_address(p, errc::not_owned,
                                      "memkit::managed_heap: deallocate of a pointer that is not "
                                      "the start of a live block");
            }
            throw invalid_address(p, errc::not_owned,
                                  "memkit::managed_heap: deallocate of a pointer not from this heap");
        }
        owner_rec* const o = h->owner;
        if (MEMKIT_UNLIKELY(observing_)) {
            observe(ev);
            ev.block = {o->id, p, h->size};
        }
        free_block(h, opts_.defer_frees);
        if (MEMKIT_UNLIKELY(o->retired)) settle(o);
        check_pressure(ev);
    }
    if (MEMKIT_UNLIKELY(ev.pending())) deliver(ev);
}

managed_heap::header* managed_heap::checked_block(const void* p) const {
    header* const h = live_header(p);
    if (MEMKIT_UNLIKELY(h == nullptr))
        throw invalid_address(p, errc::not_owned,
                              "memkit::managed_heap: access through a pointer that is not the "
                              "start of a live block of this heap");
    return h;
}

void managed_heap::read(const void* p, std::size_t offset, std::span<std::byte> out) const {
    lock_guard lock(lock_);
    const header* h = checked_block(p);
    // Written so that offset + size cannot wrap.
    if (MEMKIT_UNLIKELY(offset > h->size || out.size() > h->size - offset))
        throw protection_violation(p, offset, out.size(), h->size);
    if (!out.empty()) std::memcpy(out.data(), static_cast<const std::byte*>(p) + offset, out.size());
}

void managed_heap::write(void* p, std::size_t offset, std::span<const std::byte> in) {
    lock_guard lock(lock_);
    const header* h = checked_block(p);
    if (MEMKIT_UNLIKELY(offset > h->size || in.size() > h->size - offset))
        throw protection_violation(p, offset, in.size(), h->size);
    if (!in.empty()) std::memcpy(static_cast<std::byte*>(p) + offset, in.data(), in.size());
}

std::size_t managed_heap::size_of(const void* p) noexcept {
    return reinterpret_cast<const header*>(static_cast<const std::byte*>(p) - header_size)->size;
}

owner_id managed_heap::owner_of(const void* p) const {
    lock_guard lock(lock_);
    return reinterpret_cast<const header*>(static_cast<const std::byte*>(p) - header_size)
        ->owner->id;
}

bool managed_heap::owns(const void* p) const {
    lock_guard lock(lock_);
    // heap_.owns: the block area of a region; a payload may also start on a region's end marker.
    return heap_.owns(p) || heap_.owns(reinterpret_cast<const void*>(addr(p) - 8));
}

// --- pressure -----------------------------------------------------------------------------

void managed_heap::recompute_pressure_bounds() noexcept {
    const auto l = static_cast<unsigned>(level_);
    up_ = l < 3 ? bounds_[l] : std::numeric_limits<std::size_t>::max();
    if (l == 0) {
        down_ = 0; // heap_bytes < 0: never
    } else {
        const std::size_t b = bounds_[l - 1];
        down_ = b > hysteresis_bytes_ ? b - hysteresis_bytes_ : 1;
    }
}

void managed_heap::check_pressure(pending_event& ev) noexcept {
    const std::size_t bytes = heap_.stats().bytes_in_use;
    if (MEMKIT_LIKELY(bytes < up_ && bytes >= down_)) return;
    const pressure_level from = level_;
    auto l = static_cast<unsigned>(level_);
    if (bytes >= up_) {
        while (l < 3 && bytes >= bounds_[l]) ++l;
    } else {
        while (l > 0) {
            const std::size_t b = bounds_[l - 1];
            const std::size_t down = b > hysteresis_bytes_ ? b - hysteresis_bytes_ : 1;
            if (bytes >= down) break;
            --l;
        }
    }
    level_ = static_cast<pressure_level>(l);
    recompute_pressure_bounds();
    if (level_ == from) return;
    const auto t = now();
    level_time_[static_cast<unsigned>(from)] +=
        std::chrono::duration_cast<std::chrono::nanoseconds>(t - level_since_);
    level_since_ = t;
    if (ev.any) { // a second change in one call (free_owner): report one from the first origin
        ev.event.to = level_;
        ev.event.heap_bytes = bytes;
        return;
    }
    ev.any = true;
    ev.event = {from, level_, bytes, opts_.capacity};
    ev.callbacks = callbacks_;
}

void managed_heap::observe(pending_event& ev) const noexcept {
    if (ev.observers == nullptr) ev.observers = observers_;
}

void managed_heap::deliver(pending_event& ev) noexcept {
    const bool pressure = ev.any && ev.event.from != ev.event.to;
    if (pressure)
        for (const auto& [id, f] : *ev.callbacks) f(ev.event);
    if (ev.observers == nullptr) return;
    for (const auto& o : *ev.observers) {
        if (ev.collections != 0) o->on_collected(ev.collected_blocks, ev.collected_bytes, ev.pause);
        if (ev.allocated) o->on_allocated(ev.block.owner, ev.block.pointer, ev.block.size);
        else if (ev.block.pointer != nullptr)
            o->on_deallocated(ev.block.owner, ev.block.pointer, ev.block.size);
        for (const observed_block& b : ev.freed) o->on_deallocated(b.owner, b.pointer, b.size);
        if (ev.failed) o->on_out_of_memory(ev.failure);
        if (pressure) o->on_pressure_changed(ev.event);
    }
}

void managed_heap::add_observer(std::shared_ptr<heap_observer> o) {
    if (o == nullptr) throw std::invalid_argument("memkit::managed_heap: null observer");
    lock_guard lock(lock_);
    auto next = std::make_shared<observer_list>(*observers_);
    next->push_back(std::move(o));
    observers_ = std::move(next);
    observing_ = true;
}

bool managed_heap::remove_observer(const std::shared_ptr<heap_observer>& o) {
    lock_guard lock(lock_);
    const auto it = std::find(observers_->begin(), observers_->end(), o);
    if (it == observers_->end()) return false;
    auto next = std::make_shared<observer_list>(*observers_);
    next->erase(next->begin() + (it - observers_->begin()));
    observing_ = !next->empty();
    observers_ = std::move(next);
    return true;
}

// --- collection ---------------------------------------------------------------------------

collect_result managed_heap::collect_some(const collect_strategy& s, std::size_t max_steps,
                                          pending_event& ev) noexcept {
    const bool timed = observing_;
    const auto start = timed ? clock_type::now() : clock_type::time_point{};
    collect_result r;
    std::size_t steps = 0;
    // Frees o's live blocks (o is retired: they are garbage).
    const auto take_live = [&](owner_rec& o) {
        while (o.blocks != nullptr && steps < max_steps) {
            ++steps;
            ++r.blocks;
            r.bytes += o.blocks->size;
            free_block(o.blocks, false);
        }
    };
    const auto take_deferred = [&](owner_rec& o) {
        while (o.deferred_head != nullptr && steps < max_steps) {
            ++steps;
            release_deferred(o, r);
        }
    };
    switch (s.which()) {
    case collect_strategy::kind::all:
        while (dirty_head_ != nullptr && steps < max_steps) {
            owner_rec& o = *dirty_head_;
            take_deferred(o); // leaves the dirty list once its quarantine is empty
            if (o.deferred_head == nullptr) settle(&o);
        }
        while (retired_head_ != nullptr && steps < max_steps) {
            owner_rec& o = *retired_head_;
            take_live(o);
            if (!o.holds_blocks()) settle(&o); // leaves the retired list (or goes)
        }
        r.complete = dirty_head_ == nullptr && retired_head_ == nullptr;
        break;
    case collect_strategy::kind::unreferenced:
        while (retired_head_ != nullptr && steps < max_steps) {
            owner_rec& o = *retired_head_;
            take_deferred(o);
            take_live(o);
            if (!o.holds_blocks()) settle(&o);
        }
        r.complete = retired_head_ == nullptr;
        break;
    case collect_strategy::kind::owner: {
        owner_rec* const o = lookup(s.target());
        if (o == nullptr) break; // gone: nothing left to do (complete)
        take_deferred(*o);
        if (o->retired) take_live(*o);
        r.complete = o->deferred_head == nullptr && (!o->retired || o->blocks == nullptr);
        if (!o->holds_blocks()) settle(o);
        break;
    }
    case collect_strategy::kind::owners_above: {
        // A pass over the owners with a quarantine: those passed over move to the tail, marked
        // with the pass's epoch, so meeting a marked owner at the head means the pass has seen
        // every owner. A pass goes on across calls with the same threshold (a budgeted
        // collection, or repeated ones), so that each call resumes where the last one stopped.
        if (!above_open_ || above_bytes_ != s.bytes()) {
            above_epoch_ = ++collect_epoch_;
            above_bytes_ = s.bytes();
            above_open_ = true;
        }
        const std::uint64_t epoch = above_epoch_;
        while (dirty_head_ != nullptr && dirty_head_->epoch != epoch && steps < max_steps) {
            owner_rec& o = *dirty_head_;
            if (o.usage > s.bytes()) {
                take_deferred(o);
                if (o.deferred_head == nullptr) settle(&o);
            } else {
                ++steps;
                o.epoch = epoch;
                if (dirty_tail_ != &o) {
                    dirty_unlink(o);
                    dirty_link(o);
                }
            }
        }
        r.complete = dirty_head_ == nullptr || dirty_head_->epoch == epoch;
        if (r.complete) above_open_ = false;
        break;
    }
    }
    if (MEMKIT_UNLIKELY(timed) && r.blocks != 0) {
        observe(ev);
        ++ev.collections;
        ev.collected_blocks += r.blocks;
        ev.collected_bytes += r.bytes;
        ev.pause += std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - start);
    }
    check_pressure(ev);
    return r;
}

bool managed_heap::should_collect() const {
    lock_guard lock(lock_);
    return deferred_count_ >= opts_.collect_threshold || retired_head_ != nullptr;
}

collect_result managed_heap::collect_all_at_once(const collect_strategy& s) {
    pending_event ev;
    collect_result r;
    {
        lock_guard lock(lock_);
        if (s.which() == collect_strategy::kind::owner) (void)find(s.target());
        r = collect_some(s, std::numeric_limits<std::size_t>::max(), ev);
    }
    if (ev.pending()) deliver(ev);
    return r;
}

collect_result managed_heap::collect_budgeted(const collect_strategy& s,
                                              std::chrono::nanoseconds budget) {
    const auto start = clock_type::now();
    collect_result total;
    for (bool first = true;; first = false) {
        pending_event ev;
        collect_result r;
        {
            lock_guard lock(lock_);
            if (first && s.which() == collect_strategy::kind::owner) (void)find(s.target());
            r = collect_some(s, batch_steps, ev);
        }
        if (ev.pending()) deliver(ev);
        total.blocks += r.blocks;
        total.bytes += r.bytes;
        total.complete = r.complete;
        if (r.complete || clock_type::now() - start >= budget) break;
    }
    return total;
}

collect_result managed_heap::collect() { return collect_all_at_once(opts_.default_strategy); }

collect_result managed_heap::collect(std::chrono::nanoseconds budget) {
    return collect_budgeted(opts_.default_strategy, budget);
}

collect_result managed_heap::collect(const collect_strategy& strategy) {
    return collect_all_at_once(strategy);
}

collect_result managed_heap::collect(const collect_strategy& strategy,
                                     std::chrono::nanoseconds budget) {
    return collect_budgeted(strategy, budget);
}

collect_result managed_heap::force_collect() {
    return collect_all_at_once(collect_strategy::all());
}

// --- json_lines_observer -------------------------------------------------------------------

void json_lines_observer::emit(const std::string& line) noexcept {
    try {
        std::lock_guard lock(mutex_);
        *out_ << line << '\n';
    } catch (...) { // NOLINT(bugprone-empty-catch): a failing sink must not stop the heap
    }
}

namespace {
std::string num(std::uint64_t v) { return std::to_string(v); }
std::string block_line(const char* event, owner_id owner, const void* ptr, std::size_t size) {
    return std::string("{\"event\":\"") + event + "\",\"owner\":" + num(owner.value) +
           ",\"address\":" + num(addr(ptr)) + ",\"size\":" + num(size) + "}";
}
} // namespace

void json_lines_observer::on_allocated(owner_id owner, void* ptr, std::size_t size) {
    try { emit(block_line("allocated", owner, ptr, size)); } catch (...) {} // NOLINT
}

void json_lines_observer::on_deallocated(owner_id owner, void* ptr, std::size_t size) {
    try { emit(block_line("deallocated", owner, ptr, size)); } catch (...) {} // NOLINT
}

void json_lines_observer::on_out_of_memory(const heap_out_of_memory_event& d) {
    try {
        emit("{\"event\":\"out_of_memory\",\"owner\":" + num(d.owner.value) +
             ",\"requested\":" + num(d.requested) + ",\"alignment\":" + num(d.alignment) +
             ",\"reason\":\"" + (d.limit ? "owner_limit" : "capacity") +
             "\",\"limiting_owner\":" + num(d.limiting_owner.value) +
             ",\"available\":" + num(d.available) + ",\"used\":" + num(d.used) +
             ",\"capacity\":" + num(d.capacity) + "}");
    } catch (...) { // NOLINT
    }
}

void json_lines_observer::on_pressure_changed(const heap_pressure_event& e) {
    try {
        const bool warning = e.to > e.from && e.to >= pressure_level::high;
        emit("{\"event\":\"pressure_changed\",\"from\":\"" + std::string(to_string(e.from)) +
             "\",\"to\":\"" + std::string(to_string(e.to)) + "\",\"heap_bytes\":" +
             num(e.heap_bytes) + ",\"capacity\":" + num(e.capacity) + ",\"severity\":\"" +
             (warning ? "warning" : "info") + "\"}");
    } catch (...) { // NOLINT
    }
}

void json_lines_observer::on_collected(std::size_t blocks, std::size_t bytes,
                                       std::chrono::nanoseconds pause) {
    try {
        emit("{\"event\":\"collected\",\"blocks\":" + num(blocks) + ",\"bytes\":" +
             num(bytes) + ",\"pause_ns\":" +
             num(static_cast<std::uint64_t>(std::max<std::int64_t>(pause.count(), 0))) + "}");
    } catch (...) { // NOLINT
    }
}

pressure_level managed_heap::level() const {
    lock_guard lock(lock_);
    return level_;
}

std::uint64_t managed_heap::on_pressure_change(pressure_callback f) {
    lock_guard lock(lock_);
    auto next = std::make_shared<std::vector<std::pair<std::uint64_t, pressure_callback>>>(
        *callbacks_);
    const std::uint64_t id = next_callback_id_++;
    next->emplace_back(id, std::move(f));
    callbacks_ = std::move(next);
    return id;
}

bool managed_heap::remove_callback(std::uint64_t id) {
    lock_guard lock(lock_);
    auto next = std::make_shared<std::vector<std::pair<std::uint64_t, pressure_callback>>>(
        *callbacks_);
    const auto it = std::find_if(next->begin(), next->end(),
                                 [id](const auto& e) { return e.first == id; });
    if (it == next->end()) return false;
    next->erase(it);
    callbacks_ = std::move(next);
    return true;
}

// --- statistics ---------------------------------------------------------------------------

std::size_t managed_heap::used() const {
    lock_guard lock(lock_);
    return used_;
}
std::size_t managed_heap::peak() const {
    lock_guard lock(lock_);
    return peak_;
}
std::size_t managed_heap::heap_bytes() const {
    lock_guard lock(lock_);
    return heap_.stats().bytes_in_use;
}
std::size_t managed_heap::block_count() const {
    lock_guard lock(lock_);
    return blocks_;
}
double managed_heap::fragmentation_ratio() const {
    lock_guard lock(lock_);
    return heap_.fragmentation_ratio();
}

std::chrono::nanoseconds managed_heap::time_at_level(pressure_level l) const {
    lock_guard lock(lock_);
    auto d = level_time_[static_cast<unsigned>(l) & 3];
    if (l == level_)
        d += std::chrono::duration_cast<std::chrono::nanoseconds>(now() - level_since_);
    return d;
}

managed_heap_snapshot managed_heap::snapshot() const {
    lock_guard lock(lock_);
    managed_heap_snapshot s{used_,          peak_,          heap_.stats().bytes_in_use,
                            heap_.capacity(), opts_.capacity, blocks_,
                            owner_count_,   allocations_,   deallocations_,
                            failures_,      deferred_count_, deferred_bytes_,
                            heap_.fragmentation_ratio(), level_, automatic_collections_,
                            level_time_};
    s.time_at_level[static_cast<unsigned>(level_)] +=
        std::chrono::duration_cast<std::chrono::nanoseconds>(now() - level_since_);
    return s;
}

void managed_heap::validate() const {
    lock_guard lock(lock_);
    heap_.validate();
    std::size_t total_bytes = 0, total_blocks = 0, total_heap = 0, owners = 0;
    std::size_t q_blocks = 0, q_bytes = 0, dirty = 0, retired_holding = 0;
    for (const slot& sl : slots_) {
        if (!sl.rec) continue;
        ++owners;
        const owner_rec& o = *sl.rec;
        std::size_t bytes = 0, count = 0;
        const header* prev = nullptr;
        for (header* h = o.blocks; h != nullptr; prev = h, h = h->next) {
            if (!heap_.owns(h) || h->canary != (live_key ^ addr(h)))
                throw corruption_detected(name, h->payload(), "block header canary is broken");
            if (h->owner != &o || h->prev != prev)
                throw corruption_detected(name, h->payload(), "owner list link is broken");
            if (h->pad < header_size || h->size == 0 || h->size > max_size())
                throw corruption_detected(name, h->payload(), "block header fields out of range");
            if (heap_.usable_size(h->raw()) < h->pad + h->size)
                throw corruption_detected(name, h->payload(), "block smaller than its header says");
            bytes += h->size;
            ++count;
            total_heap += heap_.usable_size(h->raw());
            if (count > blocks_)
                throw corruption_detected(name, h->payload(), "owner list has a cycle");
        }
        if (bytes != o.self_bytes || count != o.self_blocks)
            throw corruption_detected(name, o.blocks, "owner counters disagree with its list");
        std::size_t d_bytes = 0, d_count = 0;
        prev = nullptr;
        for (header* h = o.deferred_head; h != nullptr; prev = h, h = h->next) {
            if (!heap_.owns(h) || h->canary != (deferred_key ^ addr(h)) || h->prev != prev ||
                h->owner != &o)
                throw corruption_detected(name, h->payload(), "quarantined block header is broken");
            d_bytes += h->size;
            ++d_count;
            total_heap += heap_.usable_size(h->raw());
            if (d_count > deferred_count_)
                throw corruption_detected(name, h->payload(), "quarantine has a cycle");
        }
        if (d_bytes != o.deferred_bytes || d_count != o.deferred_blocks || prev != o.deferred_tail)
            throw corruption_detected(name, o.deferred_head, "quarantine counters disagree");
        q_blocks += d_count;
        q_bytes += d_bytes;
        if (d_count != 0) ++dirty;
        if (o.in_retired_list != (o.retired && o.holds_blocks()))
            throw corruption_detected(name, &o, "retired owner list disagrees with the owner");
        if (o.in_retired_list) ++retired_holding;
        std::size_t subtree = o.self_bytes;
        for (const owner_rec* c = o.first_child; c != nullptr; c = c->next_sibling) {
            if (c->parent != &o)
                throw corruption_detected(name, c, "owner tree link is broken");
            subtree += c->usage;
        }
        if (subtree != o.usage || o.peak < o.usage)
            throw corruption_detected(name, &o, "owner usage disagrees with its blocks");
        total_bytes += bytes;
        total_blocks += count;
    }
    std::size_t listed = 0;
    for (const owner_rec* o = dirty_head_; o != nullptr; o = o->dirty_next)
        if (++listed > dirty || o->deferred_head == nullptr)
            throw corruption_detected(name, o, "list of owners with a quarantine is broken");
    if (listed != dirty)
        throw corruption_detected(name, dirty_head_, "list of owners with a quarantine is broken");
    listed = 0;
    for (const owner_rec* o = retired_head_; o != nullptr; o = o->retired_next)
        if (++listed > retired_holding)
            throw corruption_detected(name, o, "list of retired owners is broken");
    if (listed != retired_holding)
        throw corruption_detected(name, retired_head_, "list of retired owners is broken");
    if (q_blocks != deferred_count_ || q_bytes != deferred_bytes_)
        throw corruption_detected(name, nullptr, "quarantine counters disagree");
    if (total_bytes != used_ || total_blocks != blocks_ || owners != owner_count_ ||
        total_heap != heap_.stats().bytes_in_use)
        throw corruption_detected(name, nullptr, "heap counters disagree with the owner lists");
}

} // namespace memkit
