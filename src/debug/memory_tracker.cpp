// memkit::memory_tracker: sharded block tables, interned stacks, reports.
#include "memkit/debug/memory_tracker.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <ostream>
#include <sstream>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "memkit/core/error.hpp"

#if defined(__linux__)
#include <time.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace memkit {
namespace {

constexpr std::size_t shard_bits = 6;
constexpr std::size_t shard_count = std::size_t{1} << shard_bits;
constexpr std::size_t stack_shard_bits = 4;
constexpr std::size_t stack_shard_count = std::size_t{1} << stack_shard_bits;
constexpr std::size_t freed_ring_size = 128; // recent frees per shard, for double-free reports

// murmur3's finalizer: every input bit reaches the high bits (the shard) and the low bits (the
// slot), which a plain multiply would not give for 16-byte aligned pointers.
inline std::uint64_t mix(std::uint64_t h) noexcept {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

inline std::uint64_t hash_pointer(const void* p) noexcept {
    return mix(reinterpret_cast<std::uintptr_t>(p));
}

// The allocation time: the coarse monotonic clock (the same epoch as steady_clock, a resolution
// of a few milliseconds) costs a quarter of a precise clock read, on every allocation.
std::int64_t now_ns() noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
    timespec ts;
    if (::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
#endif
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// A test-and-test-and-set lock: one atomic exchange to take it and a plain release store to
// give it back (a std::mutex costs two read-modify-writes). Critical sections are a few dozen
// instructions and 64 shards make contention rare; a waiter yields its time slice after a
// short spin, so a preempted holder does not burn the waiters' CPU.
class spin_lock {
public:
    void lock() noexcept {
        for (unsigned spins = 0; locked_.exchange(true, std::memory_order_acquire);) {
            while (locked_.load(std::memory_order_relaxed)) {
                if (++spins < 64) pause();
                else std::this_thread::yield();
            }
        }
    }
    void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
    static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#endif
    }
    std::atomic<bool> locked_{false};
};

struct entry {
    const void* ptr = nullptr; // nullptr: empty slot
    std::size_t size = 0;
    std::size_t align = 0;
    const char* type = nullptr;
    source_location loc;
    std::int64_t time_ns = 0;
    std::uint64_t seq = 0;
    std::uint32_t stack_id = 0; // 0: no stack
};

// Open addressing with linear probing; deletion shifts the following run back, so there are no
// tombstones and probe lengths stay short at the 70% maximum load.
class block_table {
public:
    [[nodiscard]] entry* find(const void* p, std::uint64_t h) noexcept {
        if (count_ == 0) return nullptr;
        for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
            if (slots_[i].ptr == p) return &slots_[i];
            if (slots_[i].ptr == nullptr) return nullptr;
        }
    }
    /// Makes room for one more entry; false when memory for a larger table is unavailable.
    [[nodiscard]] bool reserve_one() noexcept {
        if ((count_ + 1) * 10 <= capacity_ * 7) return true;
        return grow();
    }
    /// Precondition: reserve_one() succeeded and e.ptr is not present.
    void insert(const entry& e, std::uint64_t h) noexcept {
        std::size_t i = h & mask_;
        while (slots_[i].ptr != nullptr) i = (i + 1) & mask_;
        slots_[i] = e;
        ++count_;
    }
    void erase(entry* e) noexcept {
        std::size_t hole = static_cast<std::size_t>(e - slots_.get());
        for (std::size_t i = (hole + 1) & mask_; slots_[i].ptr != nullptr; i = (i + 1) & mask_) {
            const std::size_t home = hash_pointer(slots_[i].ptr) & mask_;
            // Move slot i into the hole unless its home lies cyclically in (hole, i].
            if (((i - home) & mask_) >= ((i - hole) & mask_)) {
                slots_[hole] = slots_[i];
                hole = i;
            }
        }
        slots_[hole] = entry{};
        --count_;
    }
    template <class F>
    void for_each(F&& f) const {
        for (std::size_t i = 0; i < capacity_; ++i)
            if (slots_[i].ptr != nullptr) f(slots_[i]);
    }
    [[nodiscard]] std::size_t size() const noexcept { return count_; }

private:
    MEMKIT_NOINLINE bool grow() noexcept {
        const std::size_t cap = capacity_ == 0 ? 16 : capacity_ * 2;
        std::unique_ptr<entry[]> fresh(new (std::nothrow) entry[cap]);
        if (!fresh) return false;
        std::unique_ptr<entry[]> old = std::move(slots_);
        const std::size_t old_cap = capacity_;
        slots_ = std::move(fresh);
        capacity_ = cap;
        mask_ = cap - 1;
        count_ = 0;
        for (std::size_t i = 0; i < old_cap; ++i)
            if (old[i].ptr != nullptr) insert(old[i], hash_pointer(old[i].ptr));
        return true;
    }

    std::unique_ptr<entry[]> slots_;
    std::size_t capacity_ = 0;
    std::size_t mask_ = 0;
    std::size_t count_ = 0;
};

// Counts that only change under the shard's lock are kept per shard (written with a plain
// load and store, read without the lock by stats()), so that an allocation performs two atomic
// read-modify-writes on shared lines (the sequence number and the bytes in use), not five.
struct alignas(cache_line_size) shard {
    mutable spin_lock m;
    block_table table;
    std::atomic<std::uint64_t> deallocations{0};
    std::atomic<std::uint64_t> bytes_allocated{0};
    std::atomic<std::size_t> blocks{0};
    std::size_t freed_next = 0;
    std::array<const void*, freed_ring_size> freed{};

    static void add(std::atomic<std::uint64_t>& c, std::uint64_t v) noexcept {
        c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
    }
};

// Stacks are interned: each distinct stack is stored once, records keep a 32-bit id
// ((index << stack_shard_bits | shard) + 1).
struct alignas(cache_line_size) stack_shard {
    mutable std::mutex m;
    std::vector<void*> frames;                                   // all stacks, concatenated
    std::vector<std::pair<std::uint32_t, std::uint32_t>> stacks; // (offset, depth)
    std::unordered_map<std::uint64_t, std::uint32_t> by_hash;    // hash -> index
};

std::uint64_t hash_frames(void* const* f, std::size_t n) noexcept {
    std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    for (std::size_t i = 0; i < n; ++i) h = mix(h ^ reinterpret_cast<std::uintptr_t>(f[i]));
    return h;
}

} // namespace

struct memory_tracker::impl {
    explicit impl(const tracker_options& o)
        : name(o.name != nullptr ? o.name : "memkit::memory_tracker"),
          depth(std::clamp<std::size_t>(o.stack_depth, 1, stack_trace::max_depth)),
          capture(o.capture_stacks) {}

    shard& shard_of(std::uint64_t h) noexcept { return shards[h >> (64 - shard_bits)]; }
    const shard& shard_of(std::uint64_t h) const noexcept { return shards[h >> (64 - shard_bits)]; }

    std::uint32_t intern(void* const* f, std::size_t n) noexcept {
        if (n == 0) return 0;
        const std::uint64_t h = hash_frames(f, n);
        const std::size_t si = h & (stack_shard_count - 1);
        stack_shard& s = stacks[si];
        std::lock_guard lock(s.m);
        try {
            // A hash collision between different stacks probes the next hash value.
            for (std::uint64_t key = h;; ++key) {
                auto it = s.by_hash.find(key);
                if (it == s.by_hash.end()) {
                    const auto index = static_cast<std::uint32_t>(s.stacks.size());
                    if (index >= (std::uint32_t{1} << (32 - stack_shard_bits)) - 2) return 0;
                    s.frames.insert(s.frames.end(), f, f + n);
                    s.stacks.emplace_back(static_cast<std::uint32_t>(s.frames.size() - n),
                                          static_cast<std::uint32_t>(n));
                    s.by_hash.emplace(key, index);
                    return ((index << stack_shard_bits) | static_cast<std::uint32_t>(si)) + 1;
                }
                const auto [off, len] = s.stacks[it->second];
                if (len == n && std::equal(f, f + n, s.frames.begin() + off))
                    return ((it->second << stack_shard_bits) | static_cast<std::uint32_t>(si)) + 1;
            }
        } catch (...) {
            return 0; // no memory for the stack: the record goes without one
        }
    }

    std::vector<void*> stack(std::uint32_t id) const {
        if (id == 0) return {};
        const std::uint32_t v = id - 1;
        const stack_shard& s = stacks[v & (stack_shard_count - 1)];
        std::lock_guard lock(s.m);
        const auto [off, len] = s.stacks[v >> stack_shard_bits];
        return {s.frames.begin() + off, s.frames.begin() + off + len};
    }

    static void raise(std::atomic<std::size_t>& peak, std::size_t v) noexcept {
        std::size_t cur = peak.load(std::memory_order_relaxed);
        while (v > cur && !peak.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {}
    }

    std::vector<entry> snapshot(std::uint64_t since) const {
        std::vector<entry> out;
        for (const shard& s : shards) {
            std::lock_guard lock(s.m);
            s.table.for_each([&](const entry& e) {
                if (e.seq >= since) out.push_back(e);
            });
        }
        std::sort(out.begin(), out.end(),
                  [](const entry& a, const entry& b) { return a.seq < b.seq; });
        return out;
    }

    const char* name;
    std::size_t depth;
    std::atomic<bool> capture;
    // Updated together on every allocation: one cache line. allocations is also the next
    // sequence number.
    alignas(cache_line_size) std::atomic<std::size_t> current_bytes{0};
    std::atomic<std::size_t> peak_bytes{0};
    std::atomic<std::size_t> scope_peak{0};
    std::atomic<std::uint64_t> allocations{0};
    std::array<shard, shard_count> shards;
    std::array<stack_shard, stack_shard_count> stacks;
};

memory_tracker::memory_tracker(tracker_options options) : impl_(std::make_unique<impl>(options)) {}

memory_tracker::~memory_tracker() = default;

memory_tracker& memory_tracker::instance() {
    // Never destroyed: static destructors that free tracked blocks run after it would be.
    alignas(memory_tracker) static unsigned char storage[sizeof(memory_tracker)];
    static memory_tracker* const t = new (storage) memory_tracker();
    return *t;
}

// Inlined into both public entry points so that capture(…, 1) starts at their caller.
// The block arrives as an integer: it is never read, and GCC must not think it is (a const
// pointer argument counts as a read of the freshly allocated, uninitialized block).
MEMKIT_ALWAYS_INLINE bool memory_tracker::record(std::uintptr_t address, std::size_t size,
                                                 std::size_t align, const char* type_name,
                                                 const source_location& location) noexcept {
    if (address == 0) return true;
    const void* const p = reinterpret_cast<const void*>(address);
    impl& m = *impl_;
    entry e{p, size, align, type_name, location, now_ns(), 0, 0};
    if (m.capture.load(std::memory_order_relaxed)) {
        std::array<void*, stack_trace::max_depth> frames;
        const std::size_t n = stack_trace::capture({frames.data(), m.depth}, 1);
        e.stack_id = m.intern(frames.data(), n);
    }
    const std::uint64_t h = hash_pointer(p);
    shard& s = m.shard_of(h);
    bool duplicate = false;
    {
        std::lock_guard lock(s.m);
        if (entry* old = s.table.find(p, h)) {
            // The allocator handed out a block that is live: count the old one as freed.
            duplicate = true;
            m.current_bytes.fetch_sub(old->size, std::memory_order_relaxed);
            shard::add(s.deallocations, 1);
            s.blocks.store(s.blocks.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
            s.table.erase(old);
        } else if (!s.table.reserve_one()) {
            return false;
        }
        e.seq = m.allocations.fetch_add(1, std::memory_order_relaxed);
        s.table.insert(e, h);
        shard::add(s.bytes_allocated, size);
        s.blocks.store(s.blocks.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        const std::size_t now = m.current_bytes.fetch_add(size, std::memory_order_relaxed) + size;
        impl::raise(m.peak_bytes, now);
        impl::raise(m.scope_peak, now);
    }
    if (MEMKIT_UNLIKELY(duplicate))
        report_violation({errc::corruption_detected, m.name, p,
                          "allocation of a block that is already live (missed deallocation?)"});
    return true;
}

void memory_tracker::record_allocation(const void* p, std::size_t size, std::size_t align,
                                       const char* type_name, source_location location) {
    if (!record(reinterpret_cast<std::uintptr_t>(p), size, align, type_name, location))
        throw std::bad_alloc();
}

bool memory_tracker::try_record_allocation(const void* p, std::size_t size, std::size_t align,
                                           const char* type_name,
                                           source_location location) noexcept {
    const bool ok = record(reinterpret_cast<std::uintptr_t>(p), size, align, type_name, location);
    // An empty asm after the call keeps it out of tail position, so this frame stays on the
    // stack that capture() sees.
    asm volatile("" ::: "memory");
    return ok;
}

bool memory_tracker::record_deallocation(const void* p, std::size_t size) noexcept {
    if (p == nullptr) return true;
    impl& m = *impl_;
    const std::uint64_t h = hash_pointer(p);
    shard& s = m.shard_of(h);
    errc code{};
    const char* detail = nullptr;
    {
        std::lock_guard lock(s.m);
        if (entry* e = s.table.find(p, h)) {
            if (size != 0 && size != e->size) {
                code = errc::invalid_argument;
                detail = "deallocation size differs from the allocated size";
            } else {
                m.current_bytes.fetch_sub(e->size, std::memory_order_relaxed);
                shard::add(s.deallocations, 1);
                s.blocks.store(s.blocks.load(std::memory_order_relaxed) - 1,
                               std::memory_order_relaxed);
                s.table.erase(e);
                s.freed[s.freed_next] = p;
                s.freed_next = (s.freed_next + 1) % freed_ring_size;
                return true;
            }
        } else if (std::find(s.freed.begin(), s.freed.end(), p) != s.freed.end()) {
            code = errc::double_free;
            detail = "block already freed";
        } else {
            code = errc::not_owned;
            detail = "deallocation of a block this tracker never recorded";
        }
    }
    report_violation({code, m.name, p, detail});
    return false;
}

tracker_stats memory_tracker::stats() const noexcept {
    const impl& m = *impl_;
    tracker_stats st;
    st.allocations = m.allocations.load(std::memory_order_relaxed);
    st.current_bytes = m.current_bytes.load(std::memory_order_relaxed);
    st.peak_bytes = m.peak_bytes.load(std::memory_order_relaxed);
    for (const shard& s : m.shards) {
        st.current_blocks += s.blocks.load(std::memory_order_relaxed);
        st.deallocations += s.deallocations.load(std::memory_order_relaxed);
        st.bytes_allocated += s.bytes_allocated.load(std::memory_order_relaxed);
    }
    return st;
}

bool memory_tracker::is_live(const void* p) const noexcept {
    if (p == nullptr) return false;
    const std::uint64_t h = hash_pointer(p);
    shard& s = impl_->shard_of(h);
    std::lock_guard lock(s.m);
    return s.table.find(p, h) != nullptr;
}

std::vector<allocation_record> memory_tracker::find_leaks(std::uint64_t since_sequence) const {
    const std::vector<entry> live = impl_->snapshot(since_sequence);
    std::vector<allocation_record> out;
    out.reserve(live.size());
    for (const entry& e : live) {
        out.push_back({e.ptr, e.size, e.align, e.type, e.loc,
                       std::chrono::steady_clock::time_point(std::chrono::nanoseconds(e.time_ns)),
                       e.seq, impl_->stack(e.stack_id)});
    }
    return out;
}

std::vector<leak_group> memory_tracker::leak_groups(leak_grouping grouping,
                                                    std::uint64_t since_sequence) const {
    const std::vector<entry> live = impl_->snapshot(since_sequence);
    std::vector<leak_group> groups;
    std::vector<std::uint32_t> group_stack; // the first record's stack id, per group
    // Keys: the stack id, or the call site for call_site grouping and records without a stack.
    using site_key = std::tuple<std::string_view, std::uint32_t, std::uint32_t, std::string_view>;
    std::map<site_key, std::size_t> by_site;
    std::unordered_map<std::uint32_t, std::size_t> by_stack;
    for (const entry& e : live) { // oldest first: each group's first record defines it
        std::size_t* slot = nullptr;
        if (grouping == leak_grouping::stack && e.stack_id != 0) {
            auto [it, inserted] = by_stack.try_emplace(e.stack_id, groups.size());
            slot = &it->second;
            (void)inserted;
        } else {
            auto [it, inserted] = by_site.try_emplace(
                site_key{e.loc.file_name(), e.loc.line(), e.loc.column(), e.loc.function_name()},
                groups.size());
            slot = &it->second;
            (void)inserted;
        }
        if (*slot == groups.size()) {
            leak_group g;
            g.location = e.loc;
            g.type_name = e.type;
            g.first_sequence = e.seq;
            groups.push_back(std::move(g));
            group_stack.push_back(e.stack_id);
        }
        leak_group& g = groups[*slot];
        g.bytes += e.size;
        ++g.blocks;
    }
    for (std::size_t i = 0; i < groups.size(); ++i) groups[i].stack = impl_->stack(group_stack[i]);
    std::stable_sort(groups.begin(), groups.end(), [](const leak_group& a, const leak_group& b) {
        return a.bytes != b.bytes ? a.bytes > b.bytes : a.first_sequence < b.first_sequence;
    });
    return groups;
}

void memory_tracker::set_capture_stacks(bool on) noexcept {
    impl_->capture.store(on, std::memory_order_relaxed);
}
bool memory_tracker::capture_stacks() const noexcept {
    return impl_->capture.load(std::memory_order_relaxed);
}
const char* memory_tracker::name() const noexcept { return impl_->name; }

std::size_t memory_tracker::begin_scope() noexcept {
    return impl_->scope_peak.exchange(impl_->current_bytes.load(std::memory_order_relaxed),
                                      std::memory_order_relaxed);
}
std::size_t memory_tracker::scope_peak() const noexcept {
    return impl_->scope_peak.load(std::memory_order_relaxed);
}
void memory_tracker::end_scope(std::size_t saved_peak) noexcept {
    impl::raise(impl_->scope_peak, saved_peak);
}

// ---- reports -----------------------------------------------------------------------------

namespace {

// JSON string: escapes quotes, backslashes and control characters; bytes that are not valid
// UTF-8 become U+FFFD so that the output is always valid JSON.
void json_string(std::string& out, std::string_view s) {
    out += '"';
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
            ++i;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default: {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            }
            }
            ++i;
        } else if (c < 0x80) {
            out += static_cast<char>(c);
            ++i;
        } else {
            // Length and validity of a UTF-8 sequence (no overlongs, no surrogates, <= U+10FFFF).
            std::size_t len = 0;
            std::uint32_t cp = 0;
            if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
            else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
            else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
            bool ok = len != 0 && i + len <= s.size();
            for (std::size_t k = 1; ok && k < len; ++k) {
                const auto cc = static_cast<unsigned char>(s[i + k]);
                ok = (cc & 0xc0) == 0x80;
                cp = (cp << 6) | (cc & 0x3f);
            }
            if (ok) {
                ok = !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10ffff)) &&
                     !(cp >= 0xd800 && cp <= 0xdfff);
            }
            if (ok) {
                out.append(s.substr(i, len));
                i += len;
            } else {
                out += "\\ufffd";
                ++i;
            }
        }
    }
    out += '"';
}

void json_key(std::string& out, const char* key) {
    json_string(out, key);
    out += ':';
}

void json_number(std::string& out, std::uint64_t v) { out += std::to_string(v); }

std::string hex(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%jx",
                  static_cast<std::uintmax_t>(reinterpret_cast<std::uintptr_t>(p)));
    return buf;
}

std::string plural(std::uint64_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

struct leak_section {
    std::vector<leak_group> groups; // all of them
    std::size_t shown = 0;
    std::size_t bytes = 0;
    std::size_t blocks = 0;
    std::vector<std::vector<stack_trace::frame>> symbols; // per shown group, when symbolized
};

leak_section collect(const memory_tracker& t, const report_options& o) {
    leak_section s;
    s.groups = t.leak_groups(o.grouping, o.since_sequence);
    for (const leak_group& g : s.groups) {
        s.bytes += g.bytes;
        s.blocks += g.blocks;
    }
    s.shown = std::min(s.groups.size(), o.max_groups);
    if (o.symbolize) {
        // One symbolize() call for every shown stack: addr2line runs once per module.
        std::vector<void*> all;
        for (std::size_t i = 0; i < s.shown; ++i)
            all.insert(all.end(), s.groups[i].stack.begin(), s.groups[i].stack.end());
        if (!all.empty()) {
            std::vector<stack_trace::frame> frames = stack_trace::symbolize(all, o.symbols);
            std::size_t at = 0;
            for (std::size_t i = 0; i < s.shown; ++i) {
                const std::size_t n = s.groups[i].stack.size();
                s.symbols.emplace_back(frames.begin() + static_cast<std::ptrdiff_t>(at),
                                       frames.begin() + static_cast<std::ptrdiff_t>(at + n));
                at += n;
            }
        }
    }
    return s;
}

void text_leaks(std::string& out, const leak_section& s, const report_options& o) {
    out += "leaks: " + plural(s.bytes, "byte") + " in " + plural(s.blocks, "block");
    if (s.blocks == 0) {
        out += '\n';
        return;
    }
    out += ", " + plural(s.groups.size(), "group") + " by " +
           (o.grouping == leak_grouping::stack ? "stack" : "call site") + "\n";
    for (std::size_t i = 0; i < s.shown; ++i) {
        const leak_group& g = s.groups[i];
        out += "  " + plural(g.bytes, "byte") + " in " + plural(g.blocks, "block") +
               " allocated at " + g.location.file_name() + ":" + std::to_string(g.location.line()) +
               " in " + g.location.function_name();
        if (g.type_name != nullptr) out += std::string(" (type ") + g.type_name + ")";
        out += '\n';
        if (i < s.symbols.size()) {
            std::string frames = stack_trace::to_string(s.symbols[i]);
            std::size_t pos = 0;
            while (pos < frames.size()) {
                const std::size_t nl = frames.find('\n', pos);
                out += "    " + frames.substr(pos, nl - pos + 1);
                pos = nl + 1;
            }
        } else {
            for (std::size_t k = 0; k < g.stack.size(); ++k)
                out += "    #" + std::to_string(k) + " " + hex(g.stack[k]) + "\n";
        }
    }
    if (s.shown < s.groups.size())
        out += "  ... " + plural(s.groups.size() - s.shown, "more group") + "\n";
}

void json_leaks(std::string& out, const leak_section& s, const report_options& o) {
    out += "\"leaks\":{";
    json_key(out, "bytes");
    json_number(out, s.bytes);
    out += ',';
    json_key(out, "blocks");
    json_number(out, s.blocks);
    out += ',';
    json_key(out, "grouping");
    json_string(out, o.grouping == leak_grouping::stack ? "stack" : "call_site");
    out += ',';
    json_key(out, "groups_omitted");
    json_number(out, s.groups.size() - s.shown);
    out += ",\"groups\":[";
    for (std::size_t i = 0; i < s.shown; ++i) {
        const leak_group& g = s.groups[i];
        if (i != 0) out += ',';
        out += '{';
        json_key(out, "bytes");
        json_number(out, g.bytes);
        out += ',';
        json_key(out, "blocks");
        json_number(out, g.blocks);
        out += ',';
        json_key(out, "file");
        json_string(out, g.location.file_name());
        out += ',';
        json_key(out, "line");
        json_number(out, g.location.line());
        out += ',';
        json_key(out, "column");
        json_number(out, g.location.column());
        out += ',';
        json_key(out, "function");
        json_string(out, g.location.function_name());
        out += ',';
        json_key(out, "type");
        if (g.type_name != nullptr) json_string(out, g.type_name);
        else out += "null";
        out += ',';
        json_key(out, "first_sequence");
        json_number(out, g.first_sequence);
        out += ",\"stack\":[";
        for (std::size_t k = 0; k < g.stack.size(); ++k) {
            if (k != 0) out += ',';
            out += '{';
            json_key(out, "address");
            json_string(out, hex(g.stack[k]));
            if (i < s.symbols.size()) {
                const stack_trace::frame& f = s.symbols[i][k];
                out += ',';
                json_key(out, "function");
                json_string(out, f.function);
                out += ',';
                json_key(out, "module");
                json_string(out, f.module);
                out += ',';
                json_key(out, "offset");
                json_number(out, f.module_offset);
                out += ',';
                json_key(out, "file");
                json_string(out, f.file);
                out += ',';
                json_key(out, "line");
                json_number(out, f.line);
                out += ",\"inlined\":[";
                for (std::size_t c = 0; c < f.inlined.size(); ++c) {
                    if (c != 0) out += ',';
                    out += '{';
                    json_key(out, "function");
                    json_string(out, f.inlined[c].function);
                    out += ',';
                    json_key(out, "file");
                    json_string(out, f.inlined[c].file);
                    out += ',';
                    json_key(out, "line");
                    json_number(out, f.inlined[c].line);
                    out += '}';
                }
                out += ']';
            }
            out += '}';
        }
        out += "]}";
    }
    out += "]}";
}

std::string tracker_report(const memory_tracker& t, const report_options& o) {
    const tracker_stats st = t.stats();
    const leak_section leaks = collect(t, o);
    std::string out;
    if (o.format == report_format::json) {
        out += '{';
        json_key(out, "tracker");
        json_string(out, t.name());
        out += ',';
        json_key(out, "current_bytes");
        json_number(out, st.current_bytes);
        out += ',';
        json_key(out, "current_blocks");
        json_number(out, st.current_blocks);
        out += ',';
        json_key(out, "peak_bytes");
        json_number(out, st.peak_bytes);
        out += ',';
        json_key(out, "allocations");
        json_number(out, st.allocations);
        out += ',';
        json_key(out, "deallocations");
        json_number(out, st.deallocations);
        out += ',';
        json_key(out, "bytes_allocated");
        json_number(out, st.bytes_allocated);
        out += ',';
        json_leaks(out, leaks, o);
        out += "}\n";
    } else {
        out += std::string(t.name()) + " report\n";
        out += "  in use: " + plural(st.current_bytes, "byte") + " in " +
               plural(st.current_blocks, "block") + "\n";
        out += "  peak: " + plural(st.peak_bytes, "byte") + "\n";
        out += "  total: " + plural(st.allocations, "allocation") + ", " +
               plural(st.deallocations, "deallocation") + ", " +
               plural(st.bytes_allocated, "byte") + " allocated\n";
        text_leaks(out, leaks, o);
    }
    return out;
}

} // namespace

std::string memory_tracker::report(const report_options& options) const {
    return tracker_report(*this, options);
}

void memory_tracker::report(std::ostream& os, const report_options& options) const {
    os << tracker_report(*this, options);
}

// ---- scoped_tracker ----------------------------------------------------------------------

scoped_tracker::scoped_tracker(memory_tracker& tracker)
    : tracker_(&tracker), start_(tracker.stats()), saved_peak_(tracker.begin_scope()) {}

scoped_tracker::~scoped_tracker() { tracker_->end_scope(saved_peak_); }

std::uint64_t scoped_tracker::allocations() const noexcept {
    return tracker_->stats().allocations - start_.allocations;
}
std::uint64_t scoped_tracker::deallocations() const noexcept {
    return tracker_->stats().deallocations - start_.deallocations;
}
std::uint64_t scoped_tracker::bytes_allocated() const noexcept {
    return tracker_->stats().bytes_allocated - start_.bytes_allocated;
}
std::ptrdiff_t scoped_tracker::net_bytes() const noexcept {
    return static_cast<std::ptrdiff_t>(tracker_->stats().current_bytes) -
           static_cast<std::ptrdiff_t>(start_.current_bytes);
}
std::size_t scoped_tracker::peak_bytes() const noexcept {
    const std::size_t peak = tracker_->scope_peak();
    return peak > start_.current_bytes ? peak - start_.current_bytes : 0;
}
std::vector<allocation_record> scoped_tracker::leaks() const {
    return tracker_->find_leaks(start_.allocations);
}
std::size_t scoped_tracker::leaked_blocks() const { return leaks().size(); }
std::size_t scoped_tracker::leaked_bytes() const {
    std::size_t n = 0;
    for (const allocation_record& r : leaks()) n += r.size;
    return n;
}

std::string scoped_tracker::report(report_options options) const {
    options.since_sequence = start_.allocations;
    const leak_section leaks = collect(*tracker_, options);
    std::string out;
    if (options.format == report_format::json) {
        out += '{';
        json_key(out, "tracker");
        json_string(out, tracker_->name());
        out += ',';
        json_key(out, "scope");
        out += "true,";
        json_key(out, "allocations");
        json_number(out, allocations());
        out += ',';
        json_key(out, "deallocations");
        json_number(out, deallocations());
        out += ',';
        json_key(out, "bytes_allocated");
        json_number(out, bytes_allocated());
        out += ',';
        json_key(out, "net_bytes");
        out += std::to_string(net_bytes());
        out += ',';
        json_key(out, "peak_bytes");
        json_number(out, peak_bytes());
        out += ',';
        json_leaks(out, leaks, options);
        out += "}\n";
    } else {
        out += std::string(tracker_->name()) + " scope report\n";
        out += "  allocated: " + plural(allocations(), "allocation") + ", " +
               plural(bytes_allocated(), "byte") + "; " + plural(deallocations(), "deallocation") +
               "\n";
        out += "  net: " + std::to_string(net_bytes()) +
               " bytes; peak above start: " + plural(peak_bytes(), "byte") + "\n";
        text_leaks(out, leaks, options);
    }
    return out;
}

} // namespace memkit
