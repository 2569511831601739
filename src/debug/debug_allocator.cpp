// The parts of memkit/debug/debug_allocator.hpp that do not depend on the wrapped allocator:
// the messages. They run only when something is wrong, so they stay out of the template.
#include "memkit/debug/debug_allocator.hpp"

#include <algorithm>
#include <cstdio>
#include <new>
#include <utility>
#include <vector>

namespace memkit::detail {

void describe_damage(char* out, std::size_t cap, debug_damage kind, std::size_t block_size,
                     std::ptrdiff_t offset, unsigned found, unsigned expected) noexcept {
    if (kind == debug_damage::use_after_free) {
        std::snprintf(out, cap,
                      "use after free: %zu-byte block modified after it was freed, first at "
                      "offset %td: 0x%02x, expected 0x%02x",
                      block_size, offset, found, expected);
        return;
    }
    std::snprintf(
        out, cap, "%s fence of %zu-byte block damaged at offset %td: 0x%02x, expected 0x%02x",
        kind == debug_damage::front_fence ? "front" : "back", block_size, offset, found, expected);
}

void describe_bad_free(char* out, std::size_t cap, errc code, std::size_t size, std::size_t align,
                       std::size_t allocated_size, std::size_t allocated_align) noexcept {
    switch (code) {
    case errc::double_free:
        std::snprintf(out, cap, "%zu-byte block freed twice", allocated_size);
        return;
    case errc::bad_size:
        std::snprintf(out, cap, "deallocate with size %zu of a block allocated with size %zu", size,
                      allocated_size);
        return;
    case errc::invalid_alignment:
        std::snprintf(out, cap,
                      "deallocate with alignment %zu of a block allocated with alignment %zu",
                      align, allocated_align);
        return;
    default:
        std::snprintf(out, cap,
                      "deallocate (size %zu) of a pointer that is not a block of this allocator "
                      "(never allocated here, or already given back to the wrapped allocator)",
                      size);
        return;
    }
}

void describe_leaks(char* out, std::size_t cap, std::size_t count, std::size_t bytes,
                    std::span<const debug_block> listed) noexcept {
    if (cap == 0) return;
    int n = std::snprintf(out, cap, "%zu block%s (%zu bytes) still allocated at destruction", count,
                          count == 1 ? "" : "s", bytes);
    std::size_t used = n < 0 ? 0 : static_cast<std::size_t>(n);
    const char* sep = ": ";
    for (const debug_block& b : listed) {
        if (used >= cap) break;
        n = std::snprintf(out + used, cap - used, "%s#%llu %p (%zu bytes)", sep,
                          static_cast<unsigned long long>(b.serial), b.address, b.size);
        used += n < 0 ? 0 : static_cast<std::size_t>(n);
        sep = ", ";
    }
    if (listed.size() < count && used < cap)
        std::snprintf(out + used, cap - used, "%sand %zu more", listed.empty() ? "" : ", ",
                      count - listed.size());
}

void block_table::grow() {
    const std::size_t capacity = std::max<std::size_t>(slots_.size() * 2, 64);
    std::vector<block_entry> old(capacity); // may throw: the table is unchanged
    old.swap(slots_);
    mask_ = capacity - 1;
    shift_ = static_cast<unsigned>(64 - __builtin_ctzll(capacity));
    count_ = 0;
    for (const block_entry& e : old) {
        if (e.user == nullptr) continue;
        std::size_t i = home(e.user);
        while (slots_[i].user != nullptr) i = (i + 1) & mask_;
        slots_[i] = e;
        ++count_;
    }
}

bool address_ring::grow() noexcept {
    const std::size_t capacity = std::max<std::size_t>(ring_.size() * 2, 64);
    std::vector<const void*> bigger;
    try {
        bigger.resize(capacity);
    } catch (...) {
        return false;
    }
    for (std::size_t i = 0; i < count_; ++i) bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
    ring_.swap(bigger);
    head_ = 0;
    return true;
}

} // namespace memkit::detail
