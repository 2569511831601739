#include "memkit/heap/buffer_pool.hpp"

#include <algorithm>
#include <new>
#include <stdexcept>

namespace memkit {

namespace {
bool is_power_of_two(std::size_t n) noexcept { return n != 0 && (n & (n - 1)) == 0; }
} // namespace

buffer_pool::buffer_pool(buffer_pool_options opts, std::pmr::memory_resource* parent)
    : registry_(this, &on_thread_exit), parent_(parent), opts_(std::move(opts)) {
    if (parent_ == nullptr) throw std::invalid_argument("memkit::buffer_pool: parent is null");
    if (!is_power_of_two(opts_.min_class_size) || opts_.min_class_size < 16)
        throw std::invalid_argument(
            "memkit::buffer_pool: min_class_size must be a power of two >= 16");
    if (!is_power_of_two(opts_.max_class_size) || opts_.max_class_size < opts_.min_class_size ||
        opts_.max_class_size > (std::size_t{1} << 30))
        throw std::invalid_argument("memkit::buffer_pool: max_class_size must be a power of two "
                                    "from min_class_size to 1 GiB");
    if (opts_.max_request_size < opts_.max_class_size)
        throw std::invalid_argument(
            "memkit::buffer_pool: max_request_size must be >= max_class_size");
    if (opts_.thread_cache_buffers > 65536)
        throw std::invalid_argument("memkit::buffer_pool: thread_cache_buffers must be <= 65536");
    if (!is_power_of_two(opts_.alignment) || opts_.alignment < alignof(free_node) ||
        opts_.alignment > max_alignment)
        throw invalid_alignment(name, opts_.alignment, max_alignment);

    min_class_ = opts_.min_class_size;
    min_shift_ = static_cast<std::size_t>(std::countr_zero(min_class_));
    max_class_ = opts_.max_class_size;
    class_count_ = static_cast<std::size_t>(std::countr_zero(max_class_)) - min_shift_ + 1;
    for (std::size_t c = 0; c < class_count_; ++c) {
        const std::size_t limit = std::min(opts_.thread_cache_buffers,
                                           opts_.thread_cache_bytes / (min_class_ << c));
        class_limit_[c] = static_cast<std::uint32_t>(limit);
    }
    try {
        for (const buffer_pool_reserve& r : opts_.prealloc) reserve(r.size, r.count);
    } catch (...) {
        for (std::size_t c = 0; c < class_count_; ++c) release_shared(c, static_cast<std::size_t>(-1));
        throw;
    }
}

buffer_pool::~buffer_pool() {
    registry_.close([this](detail::per_thread_node* s) {
        retire(static_cast<thread_state*>(s), true);
    });
    for (std::size_t c = 0; c < class_count_; ++c) release_shared(c, static_cast<std::size_t>(-1));
    if constexpr (debug_checks) {
        const buffer_pool_stats s = stats();
        if (s.buffers_in_use() != 0)
            report_violation({errc::still_in_use, name, nullptr,
                              "buffer_pool destroyed while buffers are still in use"});
    }
}

// --- thread states ---------------------------------------------------------------------------

buffer_pool::thread_state* buffer_pool::local_state() noexcept {
    auto* t = static_cast<thread_state*>(registry_.find());
    if (t != nullptr) {
        catch_up(t);
        return t;
    }
    t = detail::make_state<thread_state>();
    if (t == nullptr) return nullptr;
    t->epoch = epoch_.load(std::memory_order_relaxed);
    for (std::size_t c = 0; c < class_count_; ++c) t->lists[c].limit = class_limit_[c];
    if (!registry_.attach(t)) {
        detail::destroy_state(t);
        return nullptr;
    }
    return t;
}

// A trim() happened since the thread last looked: release its stacks.
void buffer_pool::catch_up(thread_state* t) noexcept {
    const std::uint32_t e = epoch_.load(std::memory_order_relaxed);
    if (t->epoch != e) {
        release_local(t);
        t->epoch = e;
    }
}

std::size_t buffer_pool::release_local(thread_state* t) noexcept {
    std::size_t bytes = 0;
    for (std::size_t c = 0; c < class_count_; ++c) {
        local_list& l = t->lists[c];
        if (l.head == nullptr) continue;
        bytes += l.count.load(std::memory_order_relaxed) * (min_class_ << c);
        release_chain(c, std::exchange(l.head, nullptr));
        l.count.store(0, std::memory_order_relaxed);
    }
    return bytes;
}

void buffer_pool::move_local_to_shared(thread_state* t) noexcept {
    for (std::size_t c = 0; c < class_count_; ++c) {
        local_list& l = t->lists[c];
        if (l.head == nullptr) continue;
        push_shared(c, std::exchange(l.head, nullptr), l.count.load(std::memory_order_relaxed));
        l.count.store(0, std::memory_order_relaxed);
    }
}

void buffer_pool::retire(thread_state* t, bool to_parent) noexcept {
    if (to_parent) release_local(t);
    else move_local_to_shared(t);
    hits_.fetch_add(t->hits.load(std::memory_order_relaxed), std::memory_order_relaxed);
    misses_.fetch_add(t->misses.load(std::memory_order_relaxed), std::memory_order_relaxed);
    returns_.fetch_add(t->returns.load(std::memory_order_relaxed), std::memory_order_relaxed);
    detail::destroy_state(t);
}

void buffer_pool::on_thread_exit(void* owner, detail::per_thread_node* s) noexcept {
    static_cast<buffer_pool*>(owner)->retire(static_cast<thread_state*>(s), false);
}

// --- the parent ------------------------------------------------------------------------------

void* buffer_pool::parent_allocate(std::size_t bytes) {
    void* p = nullptr;
    try {
        p = parent_->allocate(bytes, opts_.alignment);
    } catch (const out_of_memory&) {
        throw;
    } catch (const std::bad_alloc&) {
        const std::size_t held = held_.load(std::memory_order_relaxed);
        throw out_of_memory(name, bytes, out_of_memory::unknown, held, held);
    }
    held_.fetch_add(bytes, std::memory_order_relaxed);
    allocated_.fetch_add(1, std::memory_order_relaxed);
    return p;
}

void buffer_pool::release_chain(std::size_t c, free_node* chain) noexcept {
    const std::size_t bytes = min_class_ << c;
    std::uint64_t n = 0;
    while (chain != nullptr) {
        free_node* next = chain->next;
        parent_->deallocate(chain, bytes, opts_.alignment);
        chain = next;
        ++n;
    }
    held_.fetch_sub(n * bytes, std::memory_order_relaxed);
    released_.fetch_add(n, std::memory_order_relaxed);
}

// --- shared lists ----------------------------------------------------------------------------

// Keeps as many of the k nodes of `chain` as the cap allows, releases the rest.
void buffer_pool::push_shared(std::size_t c, free_node* chain, std::size_t k) noexcept {
    const std::size_t bytes = min_class_ << c;
    const std::size_t cap = opts_.max_retained_bytes;
    std::size_t fit = 0;
    std::size_t cur = shared_bytes_.load(std::memory_order_relaxed);
    do {
        fit = cur >= cap ? 0 : std::min(k, (cap - cur) / bytes);
    } while (fit != 0 && !shared_bytes_.compare_exchange_weak(cur, cur + fit * bytes,
                                                              std::memory_order_relaxed));
    if (fit != 0) {
        free_node* last = chain;
        for (std::size_t i = 1; i < fit; ++i) last = last->next;
        free_node* rest = last->next;
        shared_list& s = shared_[c];
        {
            std::lock_guard<std::mutex> lock(s.mutex);
            last->next = s.head;
            s.head = chain;
            s.count.store(s.count.load(std::memory_order_relaxed) + fit,
                          std::memory_order_relaxed);
        }
        chain = rest;
    }
    if (chain != nullptr) release_chain(c, chain);
}

buffer_pool::free_node* buffer_pool::take_shared(std::size_t c, std::size_t want,
                                                 std::size_t& got) noexcept {
    got = 0;
    shared_list& s = shared_[c];
    if (s.count.load(std::memory_order_relaxed) == 0) return nullptr; // no lock when empty
    free_node* chain = nullptr;
    {
        std::lock_guard<std::mutex> lock(s.mutex);
        std::size_t n = s.count.load(std::memory_order_relaxed);
        if (n == 0) return nullptr;
        chain = s.head;
        free_node* last = chain;
        got = 1;
        while (got < want && last->next != nullptr) {
            last = last->next;
            ++got;
        }
        s.head = last->next;
        last->next = nullptr;
        s.count.store(n - got, std::memory_order_relaxed);
    }
    shared_bytes_.fetch_sub(got * (min_class_ << c), std::memory_order_relaxed);
    return chain;
}

std::size_t buffer_pool::release_shared(std::size_t c, std::size_t max_nodes) noexcept {
    if (max_nodes == 0) return 0;
    std::size_t got = 0;
    free_node* chain = take_shared(c, max_nodes, got);
    if (chain == nullptr) return 0;
    release_chain(c, chain);
    return got * (min_class_ << c);
}

// --- slow paths ------------------------------------------------------------------------------

buffer_pool::buffer buffer_pool::get_slow(std::size_t size, std::size_t c) {
    const std::size_t bytes = min_class_ << c;
    thread_state* t = local_state();
    if (t != nullptr) {
        // The stack is normally empty here (the fast path missed, or catch_up just released
        // it); then half a stack comes from the shared list, so that one lock serves several gets.
        local_list& l = t->lists[c];
        if (free_node* b = l.head) {
            l.head = b->next;
            l.count.store(l.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
            detail::bump(t->hits);
            return buffer(this, reinterpret_cast<std::byte*>(b), size, bytes);
        }
        const std::size_t want = l.limit > 2 ? l.limit / 2 : 1;
        std::size_t got = 0;
        if (free_node* chain = take_shared(c, want, got)) {
            l.head = chain->next;
            l.count.store(static_cast<std::uint32_t>(got - 1), std::memory_order_relaxed);
            detail::bump(t->hits);
            return buffer(this, reinterpret_cast<std::byte*>(chain), size, bytes);
        }
        void* p = parent_allocate(bytes);
        detail::bump(t->misses);
        return buffer(this, static_cast<std::byte*>(p), size, bytes);
    }
    std::size_t got = 0;
    if (free_node* b = take_shared(c, 1, got)) {
        hits_.fetch_add(1, std::memory_order_relaxed);
        return buffer(this, reinterpret_cast<std::byte*>(b), size, bytes);
    }
    void* p = parent_allocate(bytes);
    misses_.fetch_add(1, std::memory_order_relaxed);
    return buffer(this, static_cast<std::byte*>(p), size, bytes);
}

buffer_pool::buffer buffer_pool::get_other(std::size_t size) {
    if (size == 0) return buffer();
    if (size > opts_.max_request_size) throw bad_size(name, size, opts_.max_request_size);
    void* p = parent_allocate(size);
    oversize_gets_.fetch_add(1, std::memory_order_relaxed);
    return buffer(this, static_cast<std::byte*>(p), size, size);
}

void buffer_pool::put_slow(std::byte* p, std::size_t c) noexcept {
    auto* node = ::new (p) free_node{nullptr};
    thread_state* t = local_state();
    if (t == nullptr) {
        returns_.fetch_add(1, std::memory_order_relaxed);
        push_shared(c, node, 1);
        return;
    }
    detail::bump(t->returns);
    local_list& l = t->lists[c];
    if (l.limit == 0) return push_shared(c, node, 1);
    std::uint32_t n = l.count.load(std::memory_order_relaxed);
    if (n >= l.limit) {
        // Keep the newest half (warm in this core's cache), move the rest to the shared list.
        const std::uint32_t keep = l.limit / 2;
        free_node* last_kept = nullptr;
        free_node* spill = l.head;
        for (std::uint32_t i = 0; i < keep; ++i) {
            last_kept = spill;
            spill = spill->next;
        }
        if (last_kept != nullptr) last_kept->next = nullptr;
        else l.head = nullptr;
        push_shared(c, spill, n - keep);
        n = keep;
    }
    node->next = l.head;
    l.head = node;
    l.count.store(n + 1, std::memory_order_relaxed);
}

void buffer_pool::put_oversize(std::byte* p, std::size_t size) noexcept {
    parent_->deallocate(p, size, opts_.alignment);
    held_.fetch_sub(size, std::memory_order_relaxed);
    released_.fetch_add(1, std::memory_order_relaxed);
    returns_.fetch_add(1, std::memory_order_relaxed);
}

// --- management ------------------------------------------------------------------------------

std::size_t buffer_pool::reserve(std::size_t size, std::size_t count) {
    if (size == 0 || size > max_class_) throw bad_size(name, size, max_class_);
    const std::size_t c = class_of(size);
    const std::size_t bytes = min_class_ << c;
    // Claim room under the cap first, so that concurrent returns cannot push the lists over it.
    const std::size_t cap = opts_.max_retained_bytes;
    std::size_t n = 0;
    std::size_t cur = shared_bytes_.load(std::memory_order_relaxed);
    do {
        n = cur >= cap ? 0 : std::min(count, (cap - cur) / bytes);
    } while (n != 0 &&
             !shared_bytes_.compare_exchange_weak(cur, cur + n * bytes, std::memory_order_relaxed));
    if (n == 0) return 0;
    free_node* chain = nullptr;
    std::size_t made = 0;
    try {
        for (; made < n; ++made) {
            void* p = parent_->allocate(bytes, opts_.alignment);
            chain = ::new (p) free_node{chain};
        }
    } catch (...) {
        while (chain != nullptr) {
            free_node* next = chain->next;
            parent_->deallocate(chain, bytes, opts_.alignment);
            chain = next;
        }
        shared_bytes_.fetch_sub(n * bytes, std::memory_order_relaxed);
        try {
            throw;
        } catch (const out_of_memory&) {
            throw;
        } catch (const std::bad_alloc&) {
            const std::size_t held = held_.load(std::memory_order_relaxed);
            throw out_of_memory(name, bytes, out_of_memory::unknown, held, held);
        }
    }
    held_.fetch_add(n * bytes, std::memory_order_relaxed);
    allocated_.fetch_add(n, std::memory_order_relaxed);
    free_node* last = chain;
    while (last->next != nullptr) last = last->next;
    shared_list& s = shared_[c];
    std::lock_guard<std::mutex> lock(s.mutex);
    last->next = s.head;
    s.head = chain;
    s.count.store(s.count.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    return n;
}

std::size_t buffer_pool::trim() noexcept {
    epoch_.fetch_add(1, std::memory_order_relaxed);
    std::size_t bytes = 0;
    if (auto* t = static_cast<thread_state*>(registry_.find())) {
        bytes += release_local(t);
        t->epoch = epoch_.load(std::memory_order_relaxed);
    }
    for (std::size_t c = 0; c < class_count_; ++c)
        bytes += release_shared(c, static_cast<std::size_t>(-1));
    return bytes;
}

std::size_t buffer_pool::shrink_to(std::size_t target) noexcept {
    if (auto* t = static_cast<thread_state*>(registry_.find())) {
        catch_up(t);
        move_local_to_shared(t);
    }
    std::size_t bytes = 0;
    for (std::size_t c = class_count_; c-- > 0;) {
        const std::size_t cur = shared_bytes_.load(std::memory_order_relaxed);
        if (cur <= target) break;
        const std::size_t size = min_class_ << c;
        bytes += release_shared(c, (cur - target + size - 1) / size);
    }
    return bytes;
}

std::size_t buffer_pool::on_pressure(pressure_level level) noexcept {
    switch (level) {
    case pressure_level::low: return 0;
    case pressure_level::medium:
        return shrink_to(shared_bytes_.load(std::memory_order_relaxed) / 2);
    case pressure_level::high: return shrink_to(0);
    case pressure_level::critical: return trim();
    }
    return 0;
}

buffer_pool_stats buffer_pool::stats() const noexcept {
    std::uint64_t hits = hits_.load(std::memory_order_relaxed);
    std::uint64_t misses = misses_.load(std::memory_order_relaxed);
    std::uint64_t returns = returns_.load(std::memory_order_relaxed);
    std::size_t retained = shared_bytes_.load(std::memory_order_relaxed);
    registry_.for_each([&](const detail::per_thread_node* node) {
        const auto* t = static_cast<const thread_state*>(node);
        hits += t->hits.load(std::memory_order_relaxed);
        misses += t->misses.load(std::memory_order_relaxed);
        returns += t->returns.load(std::memory_order_relaxed);
        for (std::size_t c = 0; c < class_count_; ++c)
            retained += t->lists[c].count.load(std::memory_order_relaxed) * (min_class_ << c);
    });
    buffer_pool_stats s;
    s.gets = hits + misses + oversize_gets_.load(std::memory_order_relaxed);
    s.recycled = hits;
    s.allocated = allocated_.load(std::memory_order_relaxed);
    s.returned = returns;
    s.released = released_.load(std::memory_order_relaxed);
    s.bytes_held = held_.load(std::memory_order_relaxed);
    s.bytes_retained = retained;
    s.bytes_in_use = s.bytes_held > retained ? s.bytes_held - retained : 0;
    return s;
}

} // namespace memkit
