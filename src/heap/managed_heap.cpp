// memkit/heap/managed_heap.cpp - see include/memkit/heap/managed_heap.hpp.
#include "memkit/heap/managed_heap.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <utility>

namespace memkit {

namespace {
constexpr std::uintptr_t live_key = 0x6d6b6d68'4c495645u;  // "mkmhLIVE"
constexpr std::uintptr_t freed_key = 0x6d6b6d68'46524545u; // "mkmhFREE"
constexpr std::uintptr_t deferred_key = 0x6d6b6d68'51554152u; // "mkmhQUAR"
constexpr std::size_t granule = 16;

std::uintptr_t addr(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p); }
const void* minus(const void* p, std::size_t n) noexcept {
    return reinterpret_cast<const void*>(addr(p) - n); // integer arithmetic: p may be anything
}
} // namespace

// In front of every payload. The tlsf heap writes its free-list links over the first 16 bytes of
// a freed block, so the canary sits last, next to the payload, where a free leaves it alone.
struct managed_heap::header {
    header* prev;
    header* next;
    owner_rec* owner;
    std::size_t size;   // requested
    std::uint32_t pad;  // bytes from the tlsf block's start to the payload
    std::uint32_t align;
    std::uintptr_t canary; // live_key or freed_key, xor the header's address

    void* payload() noexcept { return reinterpret_cast<std::byte*>(this) + sizeof(header); }
    std::byte* raw() noexcept { return static_cast<std::byte*>(payload()) - pad; }
};
static_assert(sizeof(void*) == 8 && sizeof(std::uintptr_t) == 8);

struct managed_heap::owner_rec {
    owner_rec(owner_id i, std::string_view n, std::size_t limit, owner_rec* p)
        : id(i), name(n),
          budget(p != nullptr ? memory_budget{p->budget, limit, memory_budget::unlimited,
                                              std::string(n)}
                              : memory_budget{limit, memory_budget::unlimited, std::string(n)}),
          parent(p), depth(p != nullptr ? p->depth + 1 : 0) {}

    owner_id id;
    std::string name;
    memory_budget budget; // charged with the requested bytes of this owner and its descendants
    owner_rec* parent;
    owner_rec* first_child = nullptr;
    owner_rec* next_sibling = nullptr;
    owner_rec* prev_sibling = nullptr;
    header* blocks = nullptr; // most recent first
    std::size_t self_bytes = 0, self_blocks = 0;
    unsigned depth;
    bool retired = false;
};

namespace {
constexpr std::size_t header_size = 48;
} // namespace

static_assert(sizeof(void*) * 6 == header_size);

managed_heap::managed_heap(managed_heap_options opts)
    : opts_(opts),
      heap_(std::min(opts.region_size, opts.capacity),
            tlsf_options{.growth = true, .region_size = opts.region_size,
                         .max_total = opts.capacity}) {
    static_assert(sizeof(header) == header_size);
    if (!opts_.thresholds.valid())
        throw std::invalid_argument("memkit::managed_heap: pressure thresholds out of order");
    if (!(opts_.pressure_hysteresis >= 0.0 && opts_.pressure_hysteresis < opts_.thresholds.medium))
        throw std::invalid_argument("memkit::managed_heap: pressure_hysteresis outside [0, medium)");
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
    callbacks_ = std::make_shared<const std::vector<std::pair<std::uint64_t, pressure_callback>>>();
    observers_ = std::make_shared<const observer_list>();
    slots_.push_back(std::make_unique<owner_rec>(owner_id{}, "default", unlimited, nullptr));
    generations_.push_back(0);
    owner_count_ = 1;
}

managed_heap::~managed_heap() {
    // The blocks go with the tlsf regions; give their bytes back so that no budget is destroyed
    // holding bytes, then destroy children before parents.
    std::vector<owner_rec*> all;
    for (auto& s : slots_)
        if (s) {
            if (s->self_bytes != 0) s->budget.release(s->self_bytes);
            all.push_back(s.get());
        }
    std::sort(all.begin(), all.end(),
              [](const owner_rec* a, const owner_rec* b) { return a->depth > b->depth; });
    for (owner_rec* o : all) slots_[o->id.value & 0xffffffffu].reset();
}

// --- owners -------------------------------------------------------------------------------

managed_heap::owner_rec& managed_heap::find(owner_id id) const {
    const std::uint64_t idx = id.value & 0xffffffffu;
    const std::uint64_t gen = id.value >> 32;
    if (idx >= slots_.size() || !slots_[idx] || generations_[idx] != gen)
        throw std::invalid_argument("memkit::managed_heap: unknown owner");
    return *slots_[idx];
}

owner_id managed_heap::create_owner(std::string_view owner_name, std::size_t limit,
                                    std::optional<owner_id> parent) {
    std::lock_guard lock(mutex_);
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
        idx = static_cast<std::uint32_t>(slots_.size());
        slots_.emplace_back();
        generations_.push_back(0);
    }
    const owner_id id{(std::uint64_t{generations_[idx]} << 32) | idx};
    auto rec = std::make_unique<owner_rec>(id, owner_name, limit, p);
    if (!free_slots_.empty()) free_slots_.pop_back();
    if (p != nullptr) {
        rec->next_sibling = p->first_child;
        if (p->first_child != nullptr) p->first_child->prev_sibling = rec.get();
        p->first_child = rec.get();
    }
    slots_[idx] = std::move(rec);
    ++owner_count_;
    return id;
}

void managed_heap::maybe_remove(owner_rec* o) noexcept {
    while (o != nullptr && o->retired && o->blocks == nullptr && o->first_child == nullptr) {
        owner_rec* const p = o->parent;
        if (p != nullptr) {
            if (o->prev_sibling != nullptr) o->prev_sibling->next_sibling = o->next_sibling;
            else p->first_child = o->next_sibling;
            if (o->next_sibling != nullptr) o->next_sibling->prev_sibling = o->prev_sibling;
        }
        if (const auto it = std::find(unreferenced_.begin(), unreferenced_.end(), o->id);
            it != unreferenced_.end())
            unreferenced_.erase(it);
        const std::uint64_t idx = o->id.value & 0xffffffffu;
        slots_[idx].reset();
        ++generations_[idx];
        free_slots_.push_back(static_cast<std::uint32_t>(idx));
        --owner_count_;
        o = p;
    }
}

void managed_heap::retire_owner(owner_id id) {
    std::lock_guard lock(mutex_);
    owner_rec& o = find(id);
    if (o.id == owner_id{})
        throw std::invalid_argument("memkit::managed_heap: the default owner cannot be retired");
    if (o.retired) return;
    o.retired = true;
    if (o.blocks != nullptr) unreferenced_.push_back(o.id); // for collect()
    maybe_remove(&o);
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
        std::lock_guard lock(mutex_);
        owner_rec& o = find(id);
        if (MEMKIT_UNLIKELY(observing_)) {
            // Reserve first (this may throw) so that free_subtree can log without failing.
            std::size_t n = 0;
            std::vector<owner_rec*> todo{&o};
            while (!todo.empty()) {
                owner_rec* r = todo.back();
                todo.pop_back();
                n += r->self_blocks;
                for (owner_rec* c = r->first_child; c != nullptr; c = c->next_sibling)
                    todo.push_back(c);
            }
            ev.freed.reserve(n);
            observe(ev);
        }
        freed = free_subtree(o, ev.observers != nullptr ? &ev.freed : nullptr);
        // Retired owners of the subtree that are now empty go away, leaves first.
        std::vector<owner_rec*> order;
        order.push_back(&o);
        for (std::size_t i = 0; i < order.size(); ++i)
            for (owner_rec* c = order[i]->first_child; c != nullptr; c = c->next_sibling)
                order.push_back(c);
        owner_rec* const above = o.parent;
        bool root_gone = false;
        for (auto it = order.rbegin(); it != order.rend(); ++it) {
            owner_rec* r = *it;
            if (r->retired && r->first_child == nullptr) {
                if (r == &o) root_gone = true;
                r->retired = true;
                // Remove r only (its parent is handled in this loop or below).
                owner_rec* const keep_parent = r->parent;
                r->parent = nullptr;
                if (keep_parent != nullptr) {
                    if (r->prev_sibling != nullptr) r->prev_sibling->next_sibling = r->next_sibling;
                    else keep_parent->first_child = r->next_sibling;
                    if (r->next_sibling != nullptr) r->next_sibling->prev_sibling = r->prev_sibling;
                }
                if (const auto u = std::find(unreferenced_.begin(), unreferenced_.end(), r->id);
                    u != unreferenced_.end())
                    unreferenced_.erase(u);
                const std::uint64_t idx = r->id.value & 0xffffffffu;
                slots_[idx].reset();
                ++generations_[idx];
                free_slots_.push_back(static_cast<std::uint32_t>(idx));
                --owner_count_;
            }
        }
        if (root_gone) maybe_remove(above);
        check_pressure(ev);
    }
    if (ev.pending()) deliver(ev);
    return freed;
}

void managed_heap::set_owner_limit(owner_id id, std::size_t limit) {
    std::lock_guard lock(mutex_);
    owner_rec& o = find(id);
    o.budget.set_limits(limit, memory_budget::unlimited);
}

bool managed_heap::owner_exists(owner_id id) const {
    std::lock_guard lock(mutex_);
    const std::uint64_t idx = id.value & 0xffffffffu;
    return idx < slots_.size() && slots_[idx] && generations_[idx] == (id.value >> 32);
}

std::size_t managed_heap::owner_usage(owner_id id) const {
    std::lock_guard lock(mutex_);
    return find(id).budget.used();
}

std::size_t managed_heap::owner_peak(owner_id id) const {
    std::lock_guard lock(mutex_);
    return find(id).budget.peak();
}

std::vector<owner_block> managed_heap::owner_allocations(owner_id id) const {
    std::lock_guard lock(mutex_);
    const owner_rec& o = find(id);
    std::vector<owner_block> out;
    out.reserve(o.self_blocks);
    for (header* h = o.blocks; h != nullptr; h = h->next) out.push_back({h->payload(), h->size});
    return out;
}

owner_stats managed_heap::owner_info(owner_id id) const {
    std::lock_guard lock(mutex_);
    const owner_rec& o = find(id);
    owner_stats s{o.name,       o.budget.used(), o.budget.peak(), o.budget.hard_limit(),
                  o.self_bytes, o.self_blocks,   std::nullopt,    o.retired};
    if (o.parent != nullptr) s.parent = o.parent->id;
    return s;
}

// --- blocks -------------------------------------------------------------------------------

void* managed_heap::allocate_locked(std::size_t size, owner_rec& o, std::size_t align,
                                    pending_event& ev, bool& limit_refused) noexcept {
    if (MEMKIT_UNLIKELY(!o.budget.try_reserve(size))) {
        limit_refused = true;
        ++failures_;
        return nullptr;
    }
    // Above 16, the header goes at the end of `pad` bytes that keep the payload aligned.
    const std::size_t pad = align <= granule ? header_size : std::max<std::size_t>(align, 64);
    void* raw = heap_.try_allocate(pad + size, align <= granule ? granule : align);
    if (MEMKIT_UNLIKELY(raw == nullptr) && (deferred_count_ != 0 || !unreferenced_.empty())) {
        // Reclaim the garbage before reporting the heap full.
        collect_some(std::numeric_limits<std::size_t>::max(), ev);
        raw = heap_.try_allocate(pad + size, align <= granule ? granule : align);
    }
    if (MEMKIT_UNLIKELY(raw == nullptr)) {
        o.budget.release(size);
        ++failures_;
        return nullptr;
    }
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
    if (used_ > peak_) peak_ = used_;
    ++blocks_;
    ++allocations_;
    check_pressure(ev);
    if (MEMKIT_UNLIKELY(level_ == pressure_level::critical) && opts_.collect_on_critical &&
        deferred_count_ != 0)
        collect_some(std::numeric_limits<std::size_t>::max(), ev);
    return h->payload();
}

void* managed_heap::try_allocate(std::size_t size, owner_id owner, std::size_t align) noexcept {
    if (MEMKIT_UNLIKELY(size - 1 >= max_size() || align - 1 >= max_alignment ||
                        (align & (align - 1)) != 0))
        return nullptr;
    pending_event ev;
    void* p;
    {
        std::lock_guard lock(mutex_);
        const std::uint64_t idx = owner.value & 0xffffffffu;
        if (MEMKIT_UNLIKELY(idx >= slots_.size() || !slots_[idx] ||
                            generations_[idx] != (owner.value >> 32) || slots_[idx]->retired))
            return nullptr;
        bool limit_refused = false;
        owner_rec& o = *slots_[idx];
        p = allocate_locked(size, o, align, ev, limit_refused);
        if (MEMKIT_UNLIKELY(observing_)) {
            observe(ev);
            if (p != nullptr) {
                ev.allocated = true;
                ev.block = {o.id, p, size};
            } else {
                ev.failed = true;
                ev.failure = refusal(size, o, align, limit_refused);
            }
        }
    }
    if (MEMKIT_UNLIKELY(ev.pending())) deliver(ev);
    return p;
}

void* managed_heap::allocate(std::size_t size, owner_id owner, std::size_t align) {
    if (MEMKIT_UNLIKELY(size - 1 >= max_size() || align - 1 >= max_alignment ||
                        (align & (align - 1)) != 0))
        throw_bad_request(name, size, align, max_size(), max_alignment);
    pending_event ev;
    void* p;
    {
        std::lock_guard lock(mutex_);
        owner_rec& o = find(owner);
        if (MEMKIT_UNLIKELY(o.retired))
            throw std::invalid_argument("memkit::managed_heap: allocation for a retired owner");
        bool limit_refused = false;
        p = allocate_locked(size, o, align, ev, limit_refused);
        if (MEMKIT_UNLIKELY(p == nullptr)) {
            ev.failed = true;
            ev.failure = refusal(size, o, align, limit_refused);
        }
        if (MEMKIT_UNLIKELY(observing_)) {
            observe(ev);
            if (p != nullptr) {
                ev.allocated = true;
                ev.block = {o.id, p, size};
            }
        }
    }
    // Events first, then the exception, so that neither is lost.
    if (MEMKIT_UNLIKELY(ev.pending())) deliver(ev);
    if (MEMKIT_UNLIKELY(p == nullptr)) throw_refusal(ev.failure);
    return p;
}

heap_out_of_memory_event managed_heap::refusal(std::size_t size, owner_rec& o,
                                               std::size_t align, bool limit_refused) const {
    if (limit_refused) {
        // Budgets change only under our lock, so the level that refused is still over.
        for (owner_rec* r = &o; r != nullptr; r = r->parent) {
            const std::size_t lim = r->budget.hard_limit(), u = r->budget.used();
            if (u > lim || lim - u < size)
                return {o.id, size, align, true, r->id, lim > u ? lim - u : 0, u, lim};
        }
        return {o.id, size, align, true, o.id, 0, o.budget.used(), o.budget.hard_limit()};
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

void managed_heap::release_block(header* h) noexcept {
    h->canary = freed_key ^ addr(h);
    heap_.deallocate(h->raw(), h->pad + h->size, h->align);
}

void managed_heap::free_block(header* h, bool defer) noexcept {
    owner_rec& o = *h->owner;
    if (h->prev != nullptr) h->prev->next = h->next;
    else o.blocks = h->next;
    if (h->next != nullptr) h->next->prev = h->prev;
    const std::size_t size = h->size;
    o.self_bytes -= size;
    --o.self_blocks;
    o.budget.release(size);
    used_ -= size;
    --blocks_;
    ++deallocations_;
    if (!defer) return release_block(h);
    h->canary = deferred_key ^ addr(h);
    h->owner = nullptr;
    h->next = nullptr;
    h->prev = deferred_tail_;
    if (deferred_tail_ != nullptr) deferred_tail_->next = h;
    else deferred_head_ = h;
    deferred_tail_ = h;
    ++deferred_count_;
    deferred_bytes_ += size;
}

collect_result managed_heap::collect_some(std::size_t max_blocks,
                                                        pending_event& ev) noexcept {
    const bool timed = observing_;
    const auto start = timed ? std::chrono::steady_clock::now()
                             : std::chrono::steady_clock::time_point{};
    collect_result r;
    while (deferred_head_ != nullptr && r.blocks < max_blocks) {
        header* h = deferred_head_;
        deferred_head_ = h->next;
        if (deferred_head_ != nullptr) deferred_head_->prev = nullptr;
        else deferred_tail_ = nullptr;
        --deferred_count_;
        deferred_bytes_ -= h->size;
        ++r.blocks;
        r.bytes += h->size;
        release_block(h);
    }
    // "Unreferenced": the blocks of retired owners.
    while (!unreferenced_.empty() && r.blocks < max_blocks) {
        const owner_id id = unreferenced_.back();
        const std::uint64_t idx = id.value & 0xffffffffu;
        owner_rec* o = idx < slots_.size() && slots_[idx] && generations_[idx] == (id.value >> 32)
                           ? slots_[idx].get()
                           : nullptr;
        if (o == nullptr) {
            unreferenced_.pop_back();
            continue;
        }
        while (o->blocks != nullptr && r.blocks < max_blocks) {
            ++r.blocks;
            r.bytes += o->blocks->size;
            free_block(o->blocks, false);
        }
        if (o->blocks == nullptr) {
            unreferenced_.pop_back();
            maybe_remove(o);
        }
    }
    r.complete = deferred_head_ == nullptr && unreferenced_.empty();
    if (MEMKIT_UNLIKELY(timed) && r.blocks != 0) {
        observe(ev);
        ++ev.collections;
        ev.collected_blocks += r.blocks;
        ev.collected_bytes += r.bytes;
        ev.pause += std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::steady_clock::now() - start);
    }
    check_pressure(ev);
    return r;
}

bool managed_heap::should_collect() const {
    std::lock_guard lock(mutex_);
    return deferred_count_ >= opts_.collect_threshold || !unreferenced_.empty();
}

collect_result managed_heap::collect() {
    pending_event ev;
    collect_result r;
    {
        std::lock_guard lock(mutex_);
        r = collect_some(std::numeric_limits<std::size_t>::max(), ev);
    }
    if (ev.pending()) deliver(ev);
    return r;
}

collect_result managed_heap::collect(std::chrono::nanoseconds budget) {
    constexpr std::size_t batch = 32;
    const auto start = std::chrono::steady_clock::now();
    collect_result total;
    while (true) {
        pending_event ev;
        collect_result r;
        {
            std::lock_guard lock(mutex_);
            r = collect_some(batch, ev);
        }
        if (ev.pending()) deliver(ev);
        total.blocks += r.blocks;
        total.bytes += r.bytes;
        total.complete = r.complete;
        if (r.complete || std::chrono::steady_clock::now() - start >= budget) break;
    }
    return total;
}

void managed_heap::deallocate(void* p) {
    if (p == nullptr) return;
    pending_event ev;
    {
        std::lock_guard lock(mutex_);
        // A payload may start at a region's sentinel (the tlsf heap lends a block the first word
        // of the next block), so the header, not the payload, is what must lie in a region:
        // both its first word and the canary's.
        if (MEMKIT_UNLIKELY(addr(p) % granule != 0 || !heap_.owns(minus(p, header_size)) ||
                            !heap_.owns(minus(p, 16))))
            throw invalid_address(p, errc::not_owned,
                                  "memkit::managed_heap: deallocate of a pointer not from this heap");
        auto* h = reinterpret_cast<header*>(static_cast<std::byte*>(p) - header_size);
        if (MEMKIT_UNLIKELY(h->canary != (live_key ^ addr(h)))) {
            if (h->canary == (freed_key ^ addr(h)) || h->canary == (deferred_key ^ addr(h)))
                throw invalid_address(p, errc::double_free,
                                      "memkit::managed_heap: block freed twice");
            throw invalid_address(p, errc::not_owned,
                                  "memkit::managed_heap: deallocate of a pointer that is not the "
                                  "start of a live block");
        }
        owner_rec* const o = h->owner;
        if (MEMKIT_UNLIKELY(observing_)) {
            observe(ev);
            ev.block = {o->id, p, h->size};
        }
        free_block(h, opts_.defer_frees);
        if (MEMKIT_UNLIKELY(o->retired) && o->blocks == nullptr) maybe_remove(o);
        check_pressure(ev);
    }
    if (MEMKIT_UNLIKELY(ev.pending())) deliver(ev);
}

managed_heap::header* managed_heap::checked_block(const void* p) const {
    if (MEMKIT_UNLIKELY(p == nullptr || addr(p) % granule != 0 ||
                        !heap_.owns(minus(p, header_size)) || !heap_.owns(minus(p, 16))))
        throw invalid_address(p, errc::not_owned,
                              "memkit::managed_heap: access through a pointer not from this heap");
    auto* h = reinterpret_cast<header*>(const_cast<std::byte*>(static_cast<const std::byte*>(p)) -
                                        header_size);
    if (MEMKIT_UNLIKELY(h->canary != (live_key ^ addr(h))))
        throw invalid_address(p, errc::not_owned,
                              "memkit::managed_heap: access through a pointer that is not the "
                              "start of a live block");
    return h;
}

void managed_heap::read(const void* p, std::size_t offset, std::span<std::byte> out) const {
    std::lock_guard lock(mutex_);
    const header* h = checked_block(p);
    // Written so that offset + size cannot wrap.
    if (MEMKIT_UNLIKELY(offset > h->size || out.size() > h->size - offset))
        throw protection_violation(p, offset, out.size(), h->size);
    if (!out.empty()) std::memcpy(out.data(), static_cast<const std::byte*>(p) + offset, out.size());
}

void managed_heap::write(void* p, std::size_t offset, std::span<const std::byte> in) {
    std::lock_guard lock(mutex_);
    const header* h = checked_block(p);
    if (MEMKIT_UNLIKELY(offset > h->size || in.size() > h->size - offset))
        throw protection_violation(p, offset, in.size(), h->size);
    if (!in.empty()) std::memcpy(static_cast<std::byte*>(p) + offset, in.data(), in.size());
}

std::size_t managed_heap::size_of(const void* p) noexcept {
    return reinterpret_cast<const header*>(static_cast<const std::byte*>(p) - header_size)->size;
}

owner_id managed_heap::owner_of(const void* p) const {
    std::lock_guard lock(mutex_);
    return reinterpret_cast<const header*>(static_cast<const std::byte*>(p) - header_size)
        ->owner->id;
}

bool managed_heap::owns(const void* p) const {
    std::lock_guard lock(mutex_);
    return heap_.owns(p) || heap_.owns(minus(p, 8));
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
    std::lock_guard lock(mutex_);
    auto next = std::make_shared<observer_list>(*observers_);
    next->push_back(std::move(o));
    observers_ = std::move(next);
    observing_ = true;
}

bool managed_heap::remove_observer(const std::shared_ptr<heap_observer>& o) {
    std::lock_guard lock(mutex_);
    const auto it = std::find(observers_->begin(), observers_->end(), o);
    if (it == observers_->end()) return false;
    auto next = std::make_shared<observer_list>(*observers_);
    next->erase(next->begin() + (it - observers_->begin()));
    observing_ = !next->empty();
    observers_ = std::move(next);
    return true;
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
    std::lock_guard lock(mutex_);
    return level_;
}

std::uint64_t managed_heap::on_pressure_change(pressure_callback f) {
    std::lock_guard lock(mutex_);
    auto next = std::make_shared<std::vector<std::pair<std::uint64_t, pressure_callback>>>(
        *callbacks_);
    const std::uint64_t id = next_callback_id_++;
    next->emplace_back(id, std::move(f));
    callbacks_ = std::move(next);
    return id;
}

bool managed_heap::remove_callback(std::uint64_t id) {
    std::lock_guard lock(mutex_);
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
    std::lock_guard lock(mutex_);
    return used_;
}
std::size_t managed_heap::peak() const {
    std::lock_guard lock(mutex_);
    return peak_;
}
std::size_t managed_heap::heap_bytes() const {
    std::lock_guard lock(mutex_);
    return heap_.stats().bytes_in_use;
}
std::size_t managed_heap::block_count() const {
    std::lock_guard lock(mutex_);
    return blocks_;
}
double managed_heap::fragmentation_ratio() const {
    std::lock_guard lock(mutex_);
    return heap_.fragmentation_ratio();
}

managed_heap_snapshot managed_heap::snapshot() const {
    std::lock_guard lock(mutex_);
    return {used_,          peak_,          heap_.stats().bytes_in_use, heap_.capacity(),
            opts_.capacity, blocks_,        owner_count_,               allocations_,
            deallocations_, failures_,      deferred_count_,            deferred_bytes_,
            heap_.fragmentation_ratio(),    level_};
}

void managed_heap::validate() const {
    std::lock_guard lock(mutex_);
    heap_.validate();
    std::size_t total_bytes = 0, total_blocks = 0, total_heap = 0, owners = 0;
    for (const auto& s : slots_) {
        if (!s) continue;
        ++owners;
        const owner_rec& o = *s;
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
        std::size_t subtree = o.self_bytes;
        for (const owner_rec* c = o.first_child; c != nullptr; c = c->next_sibling) {
            if (c->parent != &o)
                throw corruption_detected(name, c, "owner tree link is broken");
            subtree += c->budget.used();
        }
        if (subtree != o.budget.used())
            throw corruption_detected(name, &o, "owner budget disagrees with its blocks");
        total_bytes += bytes;
        total_blocks += count;
    }
    std::size_t q_blocks = 0, q_bytes = 0;
    const header* q_prev = nullptr;
    for (header* h = deferred_head_; h != nullptr; q_prev = h, h = h->next) {
        if (!heap_.owns(h) || h->canary != (deferred_key ^ addr(h)) ||
            h->prev != q_prev)
            throw corruption_detected(name, h->payload(), "quarantined block header is broken");
        ++q_blocks;
        q_bytes += h->size;
        total_heap += heap_.usable_size(h->raw());
        if (q_blocks > deferred_count_)
            throw corruption_detected(name, h->payload(), "quarantine has a cycle");
    }
    if (q_blocks != deferred_count_ || q_bytes != deferred_bytes_ || q_prev != deferred_tail_)
        throw corruption_detected(name, deferred_head_, "quarantine counters disagree");
    if (total_bytes != used_ || total_blocks != blocks_ || owners != owner_count_ ||
        total_heap != heap_.stats().bytes_in_use)
        throw corruption_detected(name, nullptr, "heap counters disagree with the owner lists");
}

} // namespace memkit
