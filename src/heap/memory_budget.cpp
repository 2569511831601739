#include "memkit/heap/memory_budget.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace memkit {

namespace detail {
budget_name_copy::budget_name_copy(std::string_view name) noexcept {
    const std::size_t n = std::min(name.size(), text_size - 1);
    std::memcpy(text, name.data(), n);
    text[n] = '\0';
}
} // namespace detail

memory_budget_exceeded::memory_budget_exceeded(std::string_view budget_name, std::size_t requested,
                                               std::size_t remaining, std::size_t used,
                                               std::size_t limit) noexcept
    : budget_name_copy(budget_name),
      budget_exceeded(budget_name_copy::text, requested, remaining, used, limit) {}

// The base's allocator() must point into this copy, not into `other`, hence the re-formatting.
memory_budget_exceeded::memory_budget_exceeded(const memory_budget_exceeded& other) noexcept
    : budget_name_copy(other), budget_exceeded(budget_name_copy::text, other.requested(),
                                               other.remaining(), other.used(), other.limit()) {}

namespace {

pressure_thresholds checked(const pressure_thresholds& t) {
    if (!t.valid())
        throw std::invalid_argument(
            "memkit::memory_budget: pressure thresholds must satisfy 0 < medium < high < "
            "critical <= 1");
    return t;
}

// The smallest usage u with t.level_for(u, hard) >= level, computed with the same floating-point
// arithmetic as level_for so that level() and pressure_thresholds agree byte for byte.
std::size_t boundary(const pressure_thresholds& t, double fraction, pressure_level level,
                     std::size_t hard) noexcept {
    if (hard == 0 || hard == memory_budget::unlimited) return memory_budget::unlimited;
    const double limit = static_cast<double>(hard);
    const double guess = std::ceil(fraction * limit);
    if (!(guess < 18446744073709549568.0)) return memory_budget::unlimited; // above size_t
    std::size_t u = static_cast<std::size_t>(guess);
    auto reaches = [&](std::size_t v) {
        return t.level_for(static_cast<double>(v), limit) >= level;
    };
    // ceil() is within a few units of the answer; the loops are bounded because, for very large
    // limits, neighbouring integers map to the same double and would never stop moving.
    for (int i = 0; i < 8 && u > 0 && reaches(u - 1); ++i) --u;
    for (int i = 0; i < 8 && !reaches(u) && u < memory_budget::unlimited; ++i) ++u;
    return u;
}

} // namespace

memory_budget::memory_budget(std::size_t hard_limit, std::size_t soft_limit, std::string name,
                             pressure_thresholds thresholds)
    : parent_(nullptr), thresholds_(checked(thresholds)), name_(std::move(name)) {
    store_limits(hard_limit, soft_limit);
    reported_.store(state_at(0), std::memory_order_relaxed);
}

memory_budget::memory_budget(memory_budget& parent, std::size_t hard_limit, std::size_t soft_limit,
                             std::string name, pressure_thresholds thresholds)
    : parent_(&parent), thresholds_(checked(thresholds)), name_(std::move(name)) {
    store_limits(hard_limit, soft_limit);
    reported_.store(state_at(0), std::memory_order_relaxed);
    parent.children_.fetch_add(1, std::memory_order_relaxed);
}

memory_budget::~memory_budget() {
    const std::size_t held = used();
    if constexpr (debug_checks) {
        if (children() != 0)
            report_violation({errc::still_in_use, "memkit::memory_budget", this,
                              "budget destroyed while child budgets are still alive"});
        if (held != 0)
            report_violation({errc::still_in_use, "memkit::memory_budget", this,
                              "budget destroyed with bytes still reserved"});
    }
    if (parent_ != nullptr) {
        // Nothing could release these bytes through this budget any more.
        if (held != 0) parent_->release(held);
        parent_->children_.fetch_sub(1, std::memory_order_relaxed);
    }
}

void memory_budget::store_limits(std::size_t hard, std::size_t soft) noexcept {
    const std::size_t medium =
        boundary(thresholds_, thresholds_.medium, pressure_level::medium, hard);
    const std::size_t high = boundary(thresholds_, thresholds_.high, pressure_level::high, hard);
    const std::size_t critical =
        boundary(thresholds_, thresholds_.critical, pressure_level::critical, hard);
    // A concurrent charge may see a mix of old and new values (documented); lowering `lowest`
    // first and raising it last narrows the window in which it could skip a crossing check.
    const std::size_t lowest = std::min({soft, medium, high, critical});
    if (lowest < limits_.lowest.load(std::memory_order_relaxed))
        limits_.lowest.store(lowest, std::memory_order_relaxed);
    limits_.hard.store(hard, std::memory_order_relaxed);
    limits_.soft.store(soft, std::memory_order_relaxed);
    limits_.medium.store(medium, std::memory_order_relaxed);
    limits_.high.store(high, std::memory_order_relaxed);
    limits_.critical.store(critical, std::memory_order_relaxed);
    limits_.lowest.store(lowest, std::memory_order_relaxed);
}

std::size_t memory_budget::remaining() const noexcept {
    std::size_t room = unlimited;
    for (const memory_budget* b = this; b != nullptr; b = b->parent_) {
        const std::size_t u = b->used(), h = b->hard_limit();
        room = std::min(room, u < h ? h - u : 0);
    }
    return room;
}

pressure_level memory_budget::level_at(std::size_t used) const noexcept {
    if (used >= limits_.critical.load(std::memory_order_relaxed)) return pressure_level::critical;
    if (used >= limits_.high.load(std::memory_order_relaxed)) return pressure_level::high;
    if (used >= limits_.medium.load(std::memory_order_relaxed)) return pressure_level::medium;
    return pressure_level::low;
}

void memory_budget::raise_peak(std::size_t now) noexcept {
    std::size_t p = peak_.load(std::memory_order_relaxed);
    while (now > p && !peak_.compare_exchange_weak(p, now, std::memory_order_relaxed)) {}
}

memory_budget::refusal memory_budget::refuse(memory_budget* by, std::size_t used, std::size_t n,
                                             bool crossed, bool undo_by) noexcept {
    // Each undone add may have passed a boundary, and so may the add itself; the check after
    // both finds the reported state unchanged unless other threads changed the usage meanwhile.
    if (undo_by) {
        const std::size_t before = by->used_.fetch_sub(n, std::memory_order_relaxed);
        const std::size_t top = used <= unlimited - n ? used + n : unlimited;
        if (by->crosses(used, top) || by->crosses(before - n, before)) by->reconcile();
    }
    for (memory_budget* b = this; b != by; b = b->parent_) {
        const std::size_t before = b->used_.fetch_sub(n, std::memory_order_relaxed);
        if (crossed || b->crosses(before - n, before)) b->reconcile();
    }
    return {by, used};
}

memory_budget::refusal memory_budget::charge_rest(memory_budget* b, std::size_t old,
                                                  std::size_t n) noexcept {
    bool crossed = false; // rare, so levels are not told apart: each compares its state
    for (;;) {
        const std::size_t now = old + n;
        if (now > b->peak()) b->raise_peak(now);
        crossed = b->crosses(old, now) || crossed;
        b = b->parent_;
        if (b == nullptr) break;
        const std::size_t hard = b->hard_limit();
        if (n > hard) return refuse(b, b->used(), n, crossed, false);
        old = b->used_.fetch_add(n, std::memory_order_relaxed);
        if (old > hard - n) return refuse(b, old, n, crossed, true);
    }
    if (crossed) reconcile_all();
    return {};
}

void memory_budget::release_rest(memory_budget* b, std::size_t old, std::size_t n) noexcept {
    bool crossed = false;
    for (;;) {
        crossed = b->crosses(old - n, old) || crossed;
        b = b->parent_;
        if (b == nullptr) break;
        old = b->used_.fetch_sub(n, std::memory_order_relaxed);
        if (old < n) {
            b->over_release(n);
            break;
        }
    }
    if (crossed) reconcile_all();
}

void memory_budget::reconcile_all() noexcept {
    for (memory_budget* b = this; b != nullptr; b = b->parent_) b->reconcile();
}

std::uint8_t memory_budget::state_at(std::size_t used) const noexcept {
    const bool above_soft = used >= soft_limit();
    return static_cast<std::uint8_t>(static_cast<unsigned>(level_at(used)) |
                                     (above_soft ? 4u : 0u));
}

void memory_budget::reconcile() noexcept {
    std::uint8_t seen = reported_.load(std::memory_order_acquire);
    for (;;) {
        const std::size_t now = used();
        const std::uint8_t want = state_at(now);
        if (want == seen) return;
        // Whoever swaps the reported state reports the change; a loser re-reads and re-checks.
        if (!reported_.compare_exchange_strong(seen, want, std::memory_order_acq_rel)) continue;

        const bool soft_up = (seen & 4u) == 0 && (want & 4u) != 0;
        const auto from = static_cast<pressure_level>(seen & 3u);
        const auto to = static_cast<pressure_level>(want & 3u);
        std::shared_ptr<const std::vector<callback_list<soft_limit_event>::entry>> soft_cbs;
        std::shared_ptr<const std::vector<callback_list<budget_level_event>::entry>> level_cbs;
        {
            const std::lock_guard lock(mutex_);
            if (soft_up) soft_cbs = soft_callbacks_.entries;
            if (from != to) level_cbs = level_callbacks_.entries;
        }
        if (soft_cbs) {
            const soft_limit_event e{*this, now, soft_limit()};
            for (const auto& [id, f] : *soft_cbs) f(e);
        }
        if (level_cbs) {
            const budget_level_event e{*this, from, to, now, hard_limit()};
            for (const auto& [id, f] : *level_cbs) f(e);
        }
        seen = want;
    }
}

void memory_budget::over_release(std::size_t n) noexcept {
    used_.fetch_add(n, std::memory_order_relaxed);
    if constexpr (debug_checks)
        report_violation({errc::invalid_argument, "memkit::memory_budget", this,
                          "release of more bytes than the budget holds"});
}

void memory_budget::throw_exceeded(const refusal& r, std::size_t n) {
    const std::size_t limit = r.by->hard_limit();
    const std::size_t left = r.used < limit ? limit - r.used : 0;
    throw memory_budget_exceeded(r.by->name_, n, left, r.used, limit);
}

void memory_budget::set_limits(std::size_t hard_limit, std::size_t soft_limit) {
    {
        const std::lock_guard lock(mutex_);
        store_limits(hard_limit, soft_limit);
    }
    reconcile();
}

namespace {
// The lists are copied on write so that reconcile() can run a snapshot without holding the mutex.
template <class List, class F>
budget_callback_id add_callback(List& list, budget_callback_id& next_id, F f) {
    using vector = std::vector<typename List::entry>;
    auto grown =
        list.entries ? std::make_shared<vector>(*list.entries) : std::make_shared<vector>();
    const budget_callback_id id = next_id++;
    grown->emplace_back(id, std::move(f));
    list.entries = std::move(grown);
    return id;
}

template <class List>
bool erase_callback(List& list, budget_callback_id id) {
    if (!list.entries) return false;
    const auto& v = *list.entries;
    const auto it = std::find_if(v.begin(), v.end(), [id](const auto& e) { return e.first == id; });
    if (it == v.end()) return false;
    auto shrunk = std::make_shared<std::vector<typename List::entry>>();
    for (const auto& e : v)
        if (e.first != id) shrunk->push_back(e);
    list.entries = std::move(shrunk);
    return true;
}
} // namespace

budget_callback_id memory_budget::on_soft_limit(std::function<void(const soft_limit_event&)> f) {
    if (!f) throw std::invalid_argument("memkit::memory_budget::on_soft_limit: empty callback");
    const std::lock_guard lock(mutex_);
    return add_callback(soft_callbacks_, next_id_, std::move(f));
}

budget_callback_id
memory_budget::on_level_change(std::function<void(const budget_level_event&)> f) {
    if (!f) throw std::invalid_argument("memkit::memory_budget::on_level_change: empty callback");
    const std::lock_guard lock(mutex_);
    return add_callback(level_callbacks_, next_id_, std::move(f));
}

bool memory_budget::remove_callback(budget_callback_id id) {
    const std::lock_guard lock(mutex_);
    return erase_callback(soft_callbacks_, id) || erase_callback(level_callbacks_, id);
}

void budget_handle::throw_exceeded(std::size_t requested) const {
    memory_budget* refusing = budget_;
    for (memory_budget* b = budget_; b != nullptr; b = b->parent()) {
        const std::size_t used = b->used(), limit = b->hard_limit(); // this level only
        if (used > limit || limit - used < requested) {
            refusing = b;
            break;
        }
    }
    const std::size_t used = refusing->used();
    const std::size_t limit = refusing->hard_limit();
    throw memory_budget_exceeded(refusing->name(), requested, used < limit ? limit - used : 0,
                                 used, limit);
}

void budget_handle::over_refund(std::size_t n) noexcept {
    charged_.fetch_add(n, std::memory_order_relaxed);
    if constexpr (debug_checks)
        report_violation({errc::invalid_argument, "memkit::budget_handle", this,
                          "refund of more bytes than the handle charged"});
}

} // namespace memkit
