// memkit/debug/debug_allocator.hpp - catches overruns, use after free, double frees, wrong-size
// frees and leaks in the memory of any memkit allocator.
//
// `debug_allocator<A>` wraps an allocator A (held by value, like the composition blocks) and
// checks every block that passes through it:
//  * Fences: `fence_size` bytes (default 16) of `fence_pattern` (0xFD) before and after every
//    block. The block itself keeps the requested alignment: the front fence takes
//    align_up(fence_size, align) bytes, the back fence starts at the block's last byte + 1, so an
//    off-by-one write lands in it. Fences are checked by deallocate, when a block leaves the
//    quarantine, and by verify().
//  * Fill patterns (`fill`, on by default): a new block is filled with `alloc_pattern` (0xCD) so
//    that reads of uninitialised memory show up as 0xCDCD..., a freed one with `free_pattern`
//    (0xDD).
//  * Quarantine: a freed block goes back to A only after `quarantine_blocks` (256) blocks or
//    `quarantine_bytes` (1 MiB) of later frees have pushed it out (FIFO). When it leaves, and at
//    every verify(), its bytes must still be `free_pattern`: a modified byte is a use after free,
//    reported with the offset of the first modified byte. 0 for either limit turns it off.
//  * A table of every block it handed out (live, quarantined, or condemned - see below), so that
//    deallocate recognises a pointer it never handed out (errc::not_owned), a block freed twice
//    (errc::double_free), and a size or alignment other than the one allocated (errc::bad_size,
//    errc::invalid_alignment), and so that the destructor can report leaks.
//  * Leak check: the destructor reports the blocks still live - their count, bytes, and address,
//    size and allocation number (#1 is the first allocation) of the first `leak_report_limit` -
//    through `on_leak` when it is set, else as an errc::still_in_use violation; then it checks the
//    quarantine and returns every block to A.
//  * AddressSanitizer: in ASan builds the fences and quarantined blocks are poisoned
//    (memkit::poison_memory), so ASan stops the program at the faulty access itself, with a stack
//    trace, instead of the later check reporting it.
//
// Reporting. verify() throws memkit::corruption_detected (errc::corruption_detected) for the first
// damaged block it finds; address() is the block and what() names the block's address, its size,
// what is damaged, and the first damaged byte (offsets are from the block's address; for a front
// fence, the damaged byte nearest the block):
//   memkit::debug_allocator: heap corruption detected at 0x5581c0: front fence of 100-byte
//   block damaged at offset -1: 0x41, expected 0xfd
//   ... at 0x5581c0: use after free: 64-byte block modified after it was freed, first at
//   offset 12: 0x41, expected 0xdd
// deallocate and quarantine exits (which happen inside deallocate and the destructor) are
// noexcept: they send the same text to memkit::report_violation as errc::corruption_detected.
// Each damaged block is reported once. It is then condemned: deliberately leaked - never given
// back to A nor reused while the debug_allocator lives, so the damage cannot spread into the
// blocks of other users - and freeing it again reports a double free; the destructor does return
// it to A (so that leak checkers such as LeakSanitizer stay quiet). Bad frees follow memkit's
// rule (core/error.hpp): the default violation handler prints and aborts; if an installed handler
// returns, the offending deallocate does nothing.
//
// Besides the allocator interface: verify(); owns(p) (live, quarantined and condemned blocks);
// live_blocks() (oldest first); stats() (allocator_stats: bytes as requested, capacity from A's
// stats()); diagnostics() (debug_stats: live, quarantined, condemned, corruptions, violations);
// reset() when A has one (forgets every block without checks or leak report, then resets A);
// max_size() (A's less the fences); options(); get() (A).
//
// Complexity: allocate, try_allocate, deallocate O(1) expected plus O(size) fills and A's cost;
// a deallocate that pushes blocks out of the quarantine also checks them, O(their bytes);
// verify() O(blocks + their bytes); live_blocks() O(n log n); the destructor O(blocks + bytes).
//
// Cost: per block, align_up(fence_size, align) + fence_size bytes of fences and a 32-byte entry
// in an open-addressing table kept at most half full (64 to 128 bytes a block); per call, one
// table operation (a multiply and a short probe; no allocation except when the table doubles),
// one uncontended lock over a thread-safe A, and O(size) for the fills and the quarantine check
// (the fences are O(fence_size)). Memory held in quarantine is not available to A. In a Release
// build debug_allocator<system_allocator> takes about 3 to 7 times malloc's time per allocation
// and free, 2 times with fills and quarantine off (docs/diagnostics.md has the measurements).
// Nothing of it exists in a program that does not instantiate it; `debug_or<A>` is
// debug_allocator<A> when MEMKIT_CHECKS is on and A otherwise.
//
// Thread-safety: that of A (is_thread_safe is A's). Over a thread-safe A the bookkeeping - the
// table, the quarantine, the counters, the fills and checks of freed blocks - is guarded by an
// internal std::mutex, so every member may be called from any thread (verify() included);
// A.allocate and the release of an unquarantined block run outside it, the release of blocks
// leaving the quarantine inside it. The violation handler and on_leak are called with the mutex
// released. Over an A that is not thread-safe there is no mutex (the caller serialises every call,
// as it must for A). Not copyable or movable (it is the only record of its blocks).
//
// Failure: allocate throws bad_size (size 0, or the size with the fences overflows),
// invalid_alignment (not a power of two, or above A's max_alignment), A's exceptions, and
// out_of_memory when the table cannot grow (the block then goes back to A); try_allocate returns
// nullptr in all those cases. deallocate never throws.
//
//   memkit::debug_allocator<memkit::system_allocator> dbg;
//   void* p = dbg.allocate(100); static_cast<char*>(p)[100] = 1;  // one byte too far
//   dbg.verify();  // throws: "... back fence of 100-byte block damaged at offset 100: ..."
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/annotations.hpp"
#include "memkit/core/concepts.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/core/stats.hpp"
#include "memkit/core/traits.hpp"

namespace memkit {

/// One block of a debug_allocator, as reported by live_blocks() and the leak check.
struct debug_block {
    const void* address = nullptr; ///< the pointer allocate returned
    std::size_t size = 0;          ///< as requested
    std::size_t alignment = 0;     ///< as requested
    std::uint64_t serial = 0;      ///< allocation number: 1 for the allocator's first block
};

/// What the leak check found when a debug_allocator was destroyed.
struct leak_report {
    std::size_t blocks = 0;              ///< live blocks at destruction
    std::size_t bytes = 0;               ///< their requested bytes
    std::span<const debug_block> listed; ///< the first leak_report_limit of them, oldest first
    std::string_view text;               ///< the same as one line of text (what the violation says)
};

/// Runtime settings of a debug_allocator.
struct debug_options {
    std::size_t fence_size = 16; ///< fence bytes on each side; 0: no fences
    bool fill = true;            ///< fill new and freed blocks (needed for use-after-free checks)
    unsigned char alloc_pattern = 0xCD;  ///< new blocks
    unsigned char free_pattern = 0xDD;   ///< freed blocks
    unsigned char fence_pattern = 0xFD;  ///< fences
    std::size_t quarantine_blocks = 256; ///< freed blocks held back from A; 0: no quarantine
    std::size_t quarantine_bytes = std::size_t{1} << 20; ///< freed bytes held back; 0: none
    std::size_t leak_report_limit = 8;                   ///< leaked blocks listed one by one
    /// Receives the leak report instead of the violation handler (called only when there are
    /// leaks; exceptions it throws are swallowed, the destructor being noexcept).
    std::function<void(const leak_report&)> on_leak = {};
};

/// Counters of a debug_allocator (a consistent snapshot).
struct debug_stats {
    std::size_t live_blocks = 0;
    std::size_t live_bytes = 0;
    std::size_t peak_bytes = 0; ///< maximum of live_bytes
    std::size_t quarantined_blocks = 0;
    std::size_t quarantined_bytes = 0;
    std::size_t condemned_blocks = 0; ///< damaged blocks withheld from A
    std::size_t condemned_bytes = 0;
    std::uint64_t allocations = 0;
    std::uint64_t deallocations = 0; ///< accepted deallocate calls
    std::uint64_t corruptions = 0;   ///< damaged blocks found (fences or use after free)
    std::uint64_t violations = 0;    ///< rejected deallocate calls (not owned, double, size)

    friend bool operator==(const debug_stats&, const debug_stats&) = default;
};

namespace detail {

// Index of the first byte of [p, p + n) that is not `value`, or n.
[[nodiscard]] inline std::size_t first_mismatch(const unsigned char* p, std::size_t n,
                                                unsigned char value) noexcept {
    const std::uint64_t word = 0x0101010101010101ULL * value;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w = 0;
        std::memcpy(&w, p + i, 8);
        if (w != word) break;
    }
    for (; i < n; ++i)
        if (p[i] != value) return i;
    return n;
}

// Index of the last byte of [p, p + n) that is not `value`, or n.
[[nodiscard]] inline std::size_t last_mismatch(const unsigned char* p, std::size_t n,
                                               unsigned char value) noexcept {
    const std::uint64_t word = 0x0101010101010101ULL * value;
    std::size_t i = n;
    for (; i >= 8; i -= 8) {
        std::uint64_t w = 0;
        std::memcpy(&w, p + i - 8, 8);
        if (w != word) break;
    }
    while (i > 0) {
        --i;
        if (p[i] != value) return i;
    }
    return n;
}

// The messages, which do not depend on A (src/debug/debug_allocator.cpp). Each writes a
// NUL-terminated text of at most `cap` bytes; offsets are relative to the block's address.
enum class debug_damage { front_fence, back_fence, use_after_free };
void describe_damage(char* out, std::size_t cap, debug_damage kind, std::size_t block_size,
                     std::ptrdiff_t offset, unsigned found, unsigned expected) noexcept;
void describe_bad_free(char* out, std::size_t cap, errc code, std::size_t size, std::size_t align,
                       std::size_t allocated_size, std::size_t allocated_align) noexcept;
// "N blocks (B bytes) still allocated at destruction: #s 0x.. (n bytes), ..., and M more".
void describe_leaks(char* out, std::size_t cap, std::size_t count, std::size_t bytes,
                    std::span<const debug_block> listed) noexcept;

enum class block_state : std::uint8_t { live, quarantined, condemned };

// The lock of a debug_allocator over an allocator that is not thread-safe: every call must be
// serialised by the caller anyway, so a real mutex would buy nothing.
struct no_lock {
    void lock() noexcept {}
    void unlock() noexcept {}
    bool try_lock() noexcept { return true; }
};

// What a debug_allocator knows of one block (32 bytes).
struct block_entry {
    std::byte* user = nullptr; // the block's address; nullptr marks an empty slot
    std::size_t size = 0;
    std::uint64_t serial = 0;
    std::uint8_t align_log2 = 0;
    block_state state = block_state::live;
    bool damaged = false; // reported once; later checks stay silent

    [[nodiscard]] std::size_t align() const noexcept { return std::size_t{1} << align_log2; }
};

// The blocks of a debug_allocator by address: open addressing with linear probing, a
// power-of-two capacity kept at most half full, Fibonacci hashing (a multiply, no division) and
// deletion by backward shift (no tombstones). It replaces a node-based hash map, which would cost
// a malloc, a free and a division per block. Entries move on erase and growth: keep addresses,
// not entry pointers, across those.
class block_table {
public:
    [[nodiscard]] block_entry* find(const void* p) noexcept {
        if (count_ == 0) return nullptr;
        for (std::size_t i = home(p);; i = (i + 1) & mask_) {
            block_entry& e = slots_[i];
            if (e.user == p) return &e;
            if (e.user == nullptr) return nullptr;
        }
    }
    [[nodiscard]] const block_entry* find(const void* p) const noexcept {
        return const_cast<block_table*>(this)->find(p);
    }
    /// Adds a block that is not in the table. Throws std::bad_alloc when the table cannot grow.
    void insert(const block_entry& e) {
        if (MEMKIT_UNLIKELY((count_ + 1) * 2 > slots_.size())) grow();
        std::size_t i = home(e.user);
        while (slots_[i].user != nullptr) i = (i + 1) & mask_;
        slots_[i] = e;
        ++count_;
    }
    void erase(block_entry& e) noexcept {
        std::size_t hole = static_cast<std::size_t>(&e - slots_.data());
        for (std::size_t j = (hole + 1) & mask_; slots_[j].user != nullptr; j = (j + 1) & mask_) {
            // Entry j may fill the hole unless its home lies cyclically in (hole, j].
            const std::size_t k = home(slots_[j].user);
            const bool stays = hole < j ? (hole < k && k <= j) : (hole < k || k <= j);
            if (!stays) {
                slots_[hole] = slots_[j];
                hole = j;
            }
        }
        slots_[hole] = block_entry{};
        --count_;
    }
    template <class F>
    void for_each(F&& f) {
        for (block_entry& e : slots_)
            if (e.user != nullptr) f(e);
    }
    template <class F>
    void for_each(F&& f) const {
        for (const block_entry& e : slots_)
            if (e.user != nullptr) f(e);
    }
    void clear() noexcept {
        for (block_entry& e : slots_) e = block_entry{};
        count_ = 0;
    }
    [[nodiscard]] std::size_t size() const noexcept { return count_; }

private:
    [[nodiscard]] std::size_t home(const void* p) const noexcept {
        const auto h = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(p)) *
                       0x9E3779B97F4A7C15ULL;
        return static_cast<std::size_t>(h >> shift_);
    }
    void grow(); // doubles the capacity (at least 64 slots); strong guarantee

    std::vector<block_entry> slots_;
    std::size_t mask_ = 0;
    std::size_t count_ = 0;
    unsigned shift_ = 63;
};

// The quarantine's FIFO of block addresses: a ring buffer that doubles when full.
class address_ring {
public:
    /// Appends `p`; false (nothing changed) when the ring is full and cannot grow.
    [[nodiscard]] bool push(const void* p) noexcept {
        if (MEMKIT_UNLIKELY(count_ == ring_.size()) && !grow()) return false;
        ring_[(head_ + count_) & (ring_.size() - 1)] = p;
        ++count_;
        return true;
    }
    [[nodiscard]] const void* pop() noexcept {
        const void* p = ring_[head_];
        head_ = (head_ + 1) & (ring_.size() - 1);
        --count_;
        return p;
    }
    [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
    void clear() noexcept { head_ = count_ = 0; }

private:
    bool grow() noexcept; // doubles the capacity (at least 64); false when out of memory

    std::vector<const void*> ring_; // a power-of-two size
    std::size_t head_ = 0;
    std::size_t count_ = 0;
};

} // namespace detail

template <allocator A>
class debug_allocator {
    using traits = allocator_traits<A>;
    using entry = detail::block_entry;
    using block_state = detail::block_state;
    using mutex_type = std::conditional_t<traits::is_thread_safe, std::mutex, detail::no_lock>;

public:
    using allocator_type = A;
    static constexpr bool is_thread_safe = traits::is_thread_safe;
    static constexpr std::size_t max_alignment = traits::max_alignment;
    static constexpr const char* name = "memkit::debug_allocator";

    debug_allocator() requires std::default_initializable<A> : a_() {}
    explicit debug_allocator(debug_options opts) requires std::default_initializable<A>
        : opts_(std::move(opts)), a_() {}
    explicit debug_allocator(A a, debug_options opts = {})
        : opts_(std::move(opts)), a_(std::move(a)) {}
    /// Constructs the wrapped allocator in place from `args`.
    template <class... Args>
    requires std::constructible_from<A, Args&&...>
    explicit debug_allocator(std::in_place_t, Args&&... args) : a_(std::forward<Args>(args)...) {}
    /// Options, and the wrapped allocator constructed in place from `args`.
    template <class... Args>
    requires std::constructible_from<A, Args&&...>
    debug_allocator(debug_options opts, std::in_place_t, Args&&... args)
        : opts_(std::move(opts)), a_(std::forward<Args>(args)...) {}

    debug_allocator(const debug_allocator&) = delete;
    debug_allocator& operator=(const debug_allocator&) = delete;

    /// Checks the quarantine and reports leaks, then returns every block to A.
    ~debug_allocator() { shutdown(); }

    [[nodiscard]] void* allocate(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
        std::size_t total = 0;
        if (MEMKIT_UNLIKELY(!valid(size, align) || !inner_size(size, align, total)))
            fail(size, align);
        void* user = adopt(a_.allocate(total, align), size, align);
        if (MEMKIT_UNLIKELY(user == nullptr)) throw out_of_memory(name, size);
        return user;
    }

    [[nodiscard]] void* try_allocate(std::size_t size,
                                     std::size_t align = alignof(std::max_align_t)) noexcept {
        std::size_t total = 0;
        if (MEMKIT_UNLIKELY(!valid(size, align) || !inner_size(size, align, total))) return nullptr;
        void* inner = a_.try_allocate(total, align);
        return inner != nullptr ? adopt(inner, size, align) : nullptr;
    }

    void deallocate(void* p, std::size_t size,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        std::unique_lock lock(m_);
        entry* e = table_.find(p);
        if (MEMKIT_UNLIKELY(e == nullptr || e->state != block_state::live || e->size != size ||
                            e->align() != align)) {
            reject(lock, e, p, size, align);
            return;
        }
        --live_blocks_;
        live_bytes_ -= size;
        ++deallocations_;
        unpoison_fences(*e);
        if (MEMKIT_UNLIKELY(!fences_intact(*e))) {
            if (e->damaged) condemn(*e); // verify() has reported it
            else condemn_and_report(lock, *e, false);
            return;
        }
        if (opts_.fill) std::memset(e->user, opts_.free_pattern, size);
        if (MEMKIT_UNLIKELY(!quarantine(*e))) {
            const entry gone = *e;
            table_.erase(*e);
            lock.unlock();
            release(gone);
            return;
        }
        if (q_blocks_ > opts_.quarantine_blocks || q_bytes_ > opts_.quarantine_bytes)
            drain(lock, opts_.quarantine_blocks, opts_.quarantine_bytes);
    }

    /// Checks the fences of every live and quarantined block and the fill of every quarantined
    /// one. Throws corruption_detected for the first damaged block (which is then counted in
    /// corruptions; it stays where it is: a live block is still the caller's to free). Returns
    /// the number of blocks checked. O(live + quarantined blocks + their fences and bytes).
    std::size_t verify() {
        char text[256];
        const void* bad = nullptr;
        std::size_t checked = 0;
        {
            std::lock_guard lock(m_);
            table_.for_each([&](entry& e) {
                if (bad != nullptr || e.state == block_state::condemned) return;
                ++checked;
                const bool freed = e.state == block_state::quarantined;
                if (freed) unpoison_block(e);
                else unpoison_fences(e);
                const bool ok = describe_if_damaged(e, freed, text, sizeof text);
                if (freed) poison_block(e);
                else poison_fences(e);
                if (!ok) {
                    note_damage(e);
                    bad = e.user;
                }
            });
        }
        if (bad != nullptr) throw corruption_detected(name, bad, text);
        return checked;
    }

    /// True for every block this allocator handed out and has not given back to A (live,
    /// quarantined or condemned).
    [[nodiscard]] bool owns(const void* p) const noexcept {
        std::lock_guard lock(m_);
        return table_.find(p) != nullptr;
    }

    /// The live blocks, oldest first. O(n log n); allocates.
    [[nodiscard]] std::vector<debug_block> live_blocks() const {
        std::vector<debug_block> out;
        {
            std::lock_guard lock(m_);
            out.reserve(live_blocks_);
            table_.for_each([&](const entry& e) {
                if (e.state == block_state::live)
                    out.push_back({e.user, e.size, e.align(), e.serial});
            });
        }
        std::sort(out.begin(), out.end(),
                  [](const debug_block& x, const debug_block& y) { return x.serial < y.serial; });
        return out;
    }

    /// Bytes in use as requested; capacity is A's (0 when A keeps no stats).
    [[nodiscard]] allocator_stats stats() const noexcept {
        std::size_t capacity = 0;
        if constexpr (traits::has_stats) capacity = a_.stats().capacity;
        std::lock_guard lock(m_);
        return {live_bytes_, peak_bytes_, capacity, allocations_, deallocations_};
    }

    [[nodiscard]] debug_stats diagnostics() const noexcept {
        std::lock_guard lock(m_);
        return {live_blocks_,      live_bytes_,     peak_bytes_,   q_blocks_,
                q_bytes_,          condemned_blocks_, condemned_bytes_, allocations_,
                deallocations_,    corruptions_,    violations_};
    }

    /// Forgets every block without checks or leak report, then resets A.
    void reset() requires traits::has_reset {
        std::lock_guard lock(m_);
        table_.for_each([&](const entry& e) { unpoison_block(e); });
        table_.clear();
        quarantine_.clear();
        q_blocks_ = q_bytes_ = live_blocks_ = live_bytes_ = 0;
        condemned_blocks_ = condemned_bytes_ = 0;
        a_.reset();
    }

    /// A's max_size() less the fences at the default alignment.
    [[nodiscard]] std::size_t max_size() const noexcept {
        const std::size_t limit = traits::max_size(a_);
        std::size_t extra = 0;
        if (!overhead(alignof(std::max_align_t), extra)) return 0;
        return limit > extra ? limit - extra : 0;
    }

    [[nodiscard]] const debug_options& options() const noexcept { return opts_; }
    [[nodiscard]] A& get() noexcept { return a_; }
    [[nodiscard]] const A& get() const noexcept { return a_; }

private:
    // Fence bytes in front of a block of alignment `align`: the front fence grows to a multiple
    // of the alignment so that the block stays aligned.
    [[nodiscard]] std::size_t room(std::size_t align) const noexcept {
        return opts_.fence_size == 0 ? 0 : align_up(opts_.fence_size, align);
    }
    [[nodiscard]] bool overhead(std::size_t align, std::size_t& out) const noexcept {
        std::size_t front = 0;
        if (opts_.fence_size != 0 && !checked_align_up(opts_.fence_size, align, front))
            return false;
        return checked_add(front, opts_.fence_size, out);
    }
    [[nodiscard]] bool inner_size(std::size_t size, std::size_t align,
                                  std::size_t& out) const noexcept {
        std::size_t extra = 0;
        return overhead(align, extra) && checked_add(size, extra, out);
    }
    [[nodiscard]] static bool valid(std::size_t size, std::size_t align) noexcept {
        return size != 0 && is_pow2(align) && align <= max_alignment;
    }
    [[nodiscard]] std::byte* inner(const entry& e) const noexcept {
        return e.user - room(e.align());
    }
    [[nodiscard]] std::size_t total(const entry& e) const noexcept {
        return room(e.align()) + e.size + opts_.fence_size;
    }

    // Fills a fresh block of A and enters it in the table; nullptr (the block back in A) when
    // the table cannot grow.
    void* adopt(void* raw, std::size_t size, std::size_t align) noexcept {
        const std::size_t front = room(align);
        std::byte* user = static_cast<std::byte*>(raw) + front;
        std::memset(raw, opts_.fence_pattern, front);
        if (opts_.fill) std::memset(user, opts_.alloc_pattern, size);
        std::memset(user + size, opts_.fence_pattern, opts_.fence_size);
        entry e;
        e.user = user;
        e.size = size;
        e.align_log2 = static_cast<std::uint8_t>(__builtin_ctzll(align));
        poison_fences(e);
        try {
            std::lock_guard lock(m_);
            e.serial = ++serial_;
            table_.insert(e);
            ++live_blocks_;
            live_bytes_ += size;
            if (live_bytes_ > peak_bytes_) peak_bytes_ = live_bytes_;
            ++allocations_;
        } catch (...) {
            release(e);
            return nullptr;
        }
        return user;
    }

    void release(const entry& e) noexcept {
        unpoison_block(e);
        a_.deallocate(inner(e), total(e), e.align());
    }

    [[nodiscard]] bool fences_intact(const entry& e) const noexcept {
        const auto* front = reinterpret_cast<const unsigned char*>(inner(e));
        const std::size_t n = room(e.align());
        const auto* back = reinterpret_cast<const unsigned char*>(e.user) + e.size;
        return detail::first_mismatch(front, n, opts_.fence_pattern) == n &&
               detail::first_mismatch(back, opts_.fence_size, opts_.fence_pattern) ==
                   opts_.fence_size;
    }

    // Checks a block (its memory unpoisoned); on damage writes the message and returns false.
    MEMKIT_NOINLINE bool describe_if_damaged(const entry& e, bool freed, char* out,
                                             std::size_t cap) const noexcept {
        const auto* front = reinterpret_cast<const unsigned char*>(inner(e));
        const std::size_t n = room(e.align());
        const unsigned fence = opts_.fence_pattern;
        if (const std::size_t i = detail::last_mismatch(front, n, opts_.fence_pattern); i != n) {
            detail::describe_damage(out, cap, detail::debug_damage::front_fence, e.size,
                                    -static_cast<std::ptrdiff_t>(n - i), front[i], fence);
            return false;
        }
        const auto* user = reinterpret_cast<const unsigned char*>(e.user);
        const std::size_t f = opts_.fence_size;
        if (const std::size_t i = detail::first_mismatch(user + e.size, f, opts_.fence_pattern);
            i != f) {
            detail::describe_damage(out, cap, detail::debug_damage::back_fence, e.size,
                                    static_cast<std::ptrdiff_t>(e.size + i), user[e.size + i],
                                    fence);
            return false;
        }
        if (freed && opts_.fill) {
            if (const std::size_t i = detail::first_mismatch(user, e.size, opts_.free_pattern);
                i != e.size) {
                detail::describe_damage(out, cap, detail::debug_damage::use_after_free, e.size,
                                        static_cast<std::ptrdiff_t>(i), user[i],
                                        opts_.free_pattern);
                return false;
            }
        }
        return true;
    }

    void note_damage(entry& e) noexcept {
        if (!e.damaged) ++corruptions_;
        e.damaged = true;
    }

    // Withholds a damaged block from A for good and reports it (called under the lock, which it
    // releases).
    MEMKIT_COLD void condemn_and_report(std::unique_lock<mutex_type>& lock, entry& e,
                                        bool freed) noexcept {
        char text[256];
        if (describe_if_damaged(e, freed, text, sizeof text)) text[0] = '\0';
        note_damage(e);
        condemn(e);
        const void* block = e.user;
        lock.unlock();
        report_violation({errc::corruption_detected, name, block, text});
    }

    void condemn(entry& e) noexcept {
        e.state = block_state::condemned;
        ++condemned_blocks_;
        condemned_bytes_ += e.size;
        poison_block(e);
    }

    // Puts a freed block in the quarantine; false when it is off or its ring cannot grow.
    bool quarantine(entry& e) noexcept {
        if (opts_.quarantine_blocks == 0 || opts_.quarantine_bytes == 0) return false;
        if (!quarantine_.push(e.user)) return false;
        e.state = block_state::quarantined;
        ++q_blocks_;
        q_bytes_ += e.size;
        poison_block(e);
        return true;
    }

    // Moves the oldest blocks out of the quarantine until it holds at most `max_blocks` blocks
    // and `max_bytes` bytes, checking each and giving the intact ones back to A. Stops at the
    // first damaged block not yet reported and reports it (releasing the lock); returns with the
    // lock held otherwise.
    void drain(std::unique_lock<mutex_type>& lock, std::size_t max_blocks,
               std::size_t max_bytes) noexcept {
        while (!quarantine_.empty() && (q_blocks_ > max_blocks || q_bytes_ > max_bytes)) {
            entry* found = table_.find(quarantine_.pop());
            if (MEMKIT_UNLIKELY(found == nullptr)) continue; // cannot happen: reset() empties both
            entry& e = *found;
            --q_blocks_;
            q_bytes_ -= e.size;
            unpoison_block(e);
            if (MEMKIT_UNLIKELY(e.damaged || !fences_intact(e) ||
                                (opts_.fill && detail::first_mismatch(
                                                   reinterpret_cast<const unsigned char*>(e.user),
                                                   e.size, opts_.free_pattern) != e.size))) {
                if (e.damaged) {
                    condemn(e); // verify() has reported it
                    continue;
                }
                condemn_and_report(lock, e, true);
                return;
            }
            const entry gone = e;
            table_.erase(e);
            release(gone);
        }
    }

    // A deallocate that does not match a live block: report and leave everything as it is.
    MEMKIT_COLD void reject(std::unique_lock<mutex_type>& lock, const entry* e, const void* p,
                            std::size_t size, std::size_t align) noexcept {
        char text[200];
        errc code = errc::not_owned;
        if (e == nullptr) {
            detail::describe_bad_free(text, sizeof text, code, size, align, 0, 0);
        } else {
            if (e->state != block_state::live) code = errc::double_free;
            else if (e->size != size) code = errc::bad_size;
            else code = errc::invalid_alignment;
            detail::describe_bad_free(text, sizeof text, code, size, align, e->size, e->align());
            if (e->state == block_state::condemned) {
                const std::size_t len = std::strlen(text);
                std::snprintf(text + len, sizeof text - len, " (it failed its checks when freed)");
            }
        }
        ++violations_;
        lock.unlock();
        report_violation({code, name, p, text});
    }

    void shutdown() noexcept {
        std::unique_lock lock(m_);
        // The quarantine first: a use after free found now is still worth reporting.
        while (!quarantine_.empty()) {
            drain(lock, 0, 0);
            if (!lock.owns_lock()) lock.lock();
        }
        if (live_blocks_ != 0) {
            const std::size_t blocks = live_blocks_;
            const std::size_t bytes = live_bytes_;
            lock.unlock();
            report_leaks(blocks, bytes);
            lock.lock();
        }
        table_.for_each([&](const entry& e) { release(e); });
        table_.clear();
    }

    MEMKIT_COLD void report_leaks(std::size_t blocks, std::size_t bytes) noexcept {
        char text[1024];
        const void* first = nullptr;
        try {
            const std::vector<debug_block> all = live_blocks();
            const std::size_t n = std::min(all.size(), opts_.leak_report_limit);
            const std::span<const debug_block> listed(all.data(), n);
            detail::describe_leaks(text, sizeof text, blocks, bytes, listed);
            if (!all.empty()) first = all.front().address;
            if (opts_.on_leak) {
                opts_.on_leak(leak_report{blocks, bytes, listed, text});
                return;
            }
        } catch (...) {
            // No memory for the list, or on_leak threw: still say how much leaked.
            if (opts_.on_leak) return;
            detail::describe_leaks(text, sizeof text, blocks, bytes, {});
        }
        report_violation({errc::still_in_use, name, first, text});
    }

    void poison_fences([[maybe_unused]] const entry& e) const noexcept {
        if constexpr (has_address_sanitizer) {
            poison_memory(inner(e), room(e.align()));
            poison_memory(e.user + e.size, opts_.fence_size);
        }
    }
    void unpoison_fences([[maybe_unused]] const entry& e) const noexcept {
        if constexpr (has_address_sanitizer) {
            unpoison_memory(inner(e), room(e.align()));
            unpoison_memory(e.user + e.size, opts_.fence_size);
        }
    }
    void poison_block([[maybe_unused]] const entry& e) const noexcept {
        if constexpr (has_address_sanitizer) poison_memory(inner(e), total(e));
    }
    void unpoison_block([[maybe_unused]] const entry& e) const noexcept {
        if constexpr (has_address_sanitizer) unpoison_memory(inner(e), total(e));
    }

    [[noreturn]] MEMKIT_NOINLINE void fail(std::size_t size, std::size_t align) const {
        const std::size_t limit = max_size();
        if (size == 0 || !is_pow2(align) || align > max_alignment || size > limit)
            throw_bad_request(name, size, align, limit, max_alignment);
        throw bad_size(name, size, limit); // the total with the fences overflows
    }

    debug_options opts_;
    [[no_unique_address]] mutable mutex_type m_;
    detail::block_table table_;
    detail::address_ring quarantine_;
    std::size_t q_blocks_ = 0;
    std::size_t q_bytes_ = 0;
    std::size_t live_blocks_ = 0;
    std::size_t live_bytes_ = 0;
    std::size_t peak_bytes_ = 0;
    std::size_t condemned_blocks_ = 0;
    std::size_t condemned_bytes_ = 0;
    std::uint64_t serial_ = 0;
    std::uint64_t allocations_ = 0;
    std::uint64_t deallocations_ = 0;
    std::uint64_t corruptions_ = 0;
    std::uint64_t violations_ = 0;
    [[no_unique_address]] A a_;
};

/// debug_allocator<A> in builds with memkit's debug checks on (MEMKIT_CHECKS, the default
/// without NDEBUG), plain A otherwise: `memkit::debug_or<memkit::pool> nodes{...};`. Code using
/// it must not copy or move the allocator (debug_allocator cannot be).
template <allocator A>
using debug_or = std::conditional_t<debug_checks, debug_allocator<A>, A>;

} // namespace memkit
