// memkit::page_deduplicator (portable): exact counting of identical pages.
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "memkit/core/align.hpp"
#include "memkit/vm/ksm.hpp"

namespace memkit {
namespace {

// A wyhash-style page hash: each 64-byte stripe feeds four independent lanes with one 64x64->128
// multiply per 16 bytes, so hashing runs near memory speed. It need not resist adversaries: equal
// hashes are always confirmed with memcmp, so a weak hash can only cost time, never exactness.
__extension__ typedef unsigned __int128 u128;

constexpr std::uint64_t secret0 = 0xa0761d6478bd642fULL;
constexpr std::uint64_t secret1 = 0xe7037ed1a0b428dbULL;
constexpr std::uint64_t secret2 = 0x8ebc6af09c88c6e3ULL;
constexpr std::uint64_t secret3 = 0x589965cc75374cc3ULL;

inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) noexcept {
    const u128 r = static_cast<u128>(a) * b;
    return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

inline std::uint64_t load64(const std::byte* p) noexcept {
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

} // namespace

std::uint64_t page_deduplicator::hash_page(const std::byte* page, std::size_t size,
                                           bool& all_zero) noexcept {
    std::uint64_t h0 = secret0, h1 = secret1, h2 = secret2, h3 = secret3;
    std::uint64_t any = 0;
    for (std::size_t i = 0; i + 64 <= size; i += 64) {
        const std::byte* s = page + i;
        const std::uint64_t w0 = load64(s), w1 = load64(s + 8), w2 = load64(s + 16),
                            w3 = load64(s + 24), w4 = load64(s + 32), w5 = load64(s + 40),
                            w6 = load64(s + 48), w7 = load64(s + 56);
        any |= w0 | w1 | w2 | w3 | w4 | w5 | w6 | w7;
        h0 = mum(w0 ^ secret1, w1 ^ h0);
        h1 = mum(w2 ^ secret2, w3 ^ h1);
        h2 = mum(w4 ^ secret3, w5 ^ h2);
        h3 = mum(w6 ^ secret0, w7 ^ h3);
    }
    all_zero = any == 0;
    return mum(h0 ^ h2 ^ size, h1 ^ h3 ^ secret1) ^ mum(h0 ^ secret2, h3 ^ secret3);
}

page_deduplicator::page_deduplicator(std::size_t page_size) : page_size_(page_size) {
    if (!is_pow2(page_size) || page_size < 64)
        throw std::invalid_argument(
            "memkit::page_deduplicator: page size must be a power of two >= 64");
    report_.page_size = page_size;
}

void page_deduplicator::clear() noexcept {
    slots_.clear();
    groups_.clear();
    report_ = dedup_report{};
    report_.page_size = page_size_;
}

void page_deduplicator::grow() {
    const std::size_t n = slots_.empty() ? 1024 : slots_.size() * 2;
    std::vector<slot> next(n, slot{0, 0});
    const std::size_t mask = n - 1;
    for (const slot& s : slots_) {
        if (s.group == 0) continue;
        std::size_t i = static_cast<std::size_t>(s.hash) & mask;
        while (next[i].group != 0) i = (i + 1) & mask;
        next[i] = s;
    }
    slots_.swap(next);
}

void page_deduplicator::add_page(const std::byte* page) {
    bool zero = false;
    const std::uint64_t h = hash_page(page, page_size_, zero);
    if ((groups_.size() + 1) * 2 > slots_.size()) grow();
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = static_cast<std::size_t>(h) & mask;
    // A different page with the same hash is a new group further along the probe sequence:
    // counts stay exact whatever the hash does.
    while (slots_[i].group != 0) {
        if (slots_[i].hash == h) {
            group& g = groups_[slots_[i].group - 1];
            if (std::memcmp(g.first, page, page_size_) == 0) {
                ++g.count;
                ++report_.pages;
                ++report_.duplicate_pages;
                if (zero) ++report_.zero_pages;
                report_.largest_group = std::max(report_.largest_group, g.count);
                return;
            }
        }
        i = (i + 1) & mask;
    }
    if (groups_.size() >= std::numeric_limits<std::uint32_t>::max() - 1)
        throw std::length_error("memkit::page_deduplicator: too many distinct pages");
    groups_.push_back({page, 1});
    slots_[i] = {h, static_cast<std::uint32_t>(groups_.size())};
    ++report_.pages;
    ++report_.distinct_pages;
    if (zero) ++report_.zero_pages;
    report_.largest_group = std::max<std::size_t>(report_.largest_group, 1);
}

void page_deduplicator::add(std::span<const std::byte> range) {
    if (range.empty()) return;
    const auto lo = reinterpret_cast<std::uintptr_t>(range.data());
    const std::uintptr_t hi = lo + range.size();
    const std::uintptr_t a = (lo + page_size_ - 1) & ~static_cast<std::uintptr_t>(page_size_ - 1);
    const std::uintptr_t b = hi & ~static_cast<std::uintptr_t>(page_size_ - 1);
    if (a >= b || a < lo) {
        report_.skipped_bytes += range.size();
        return;
    }
    report_.skipped_bytes += static_cast<std::size_t>((a - lo) + (hi - b));
    for (const std::byte* p = range.data() + (a - lo); p != range.data() + (b - lo);
         p += page_size_)
        add_page(p);
}

dedup_report page_deduplicator::scan(std::span<const std::byte> range, std::size_t page_size) {
    page_deduplicator d{page_size};
    d.add(range);
    return d.report();
}

} // namespace memkit
