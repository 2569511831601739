// memkit/container/detail/flat_common.hpp - what flat_map and flat_set share: the sorted_unique
// and sorted_equivalent tags, the binary searches over the key container, the plan of a bulk
// insertion (sort the new part once, drop duplicates once) and synth-three-way.
//
// The tags are public (memkit::sorted_unique, memkit::sorted_equivalent), as in C++23's <flat_map>:
// passing one promises that the input is already sorted (and, for sorted_unique, free of
// equivalent keys), so construction and insertion skip the sort. Builds with MEMKIT_CHECKS verify
// the promise and throw std::invalid_argument when it is broken.
//
// Thread-safety: stateless helpers; the tags are empty constants.
//
//   memkit::flat_map<int, int> m{memkit::sorted_unique, {{1, 10}, {2, 20}}};
//   memkit::flat_set<int> s{memkit::sorted_unique, {1, 2, 3}};
//   memkit::flat_multiset<int> ms{memkit::sorted_equivalent, {1, 1, 2}};
#pragma once

#include <algorithm>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "memkit/container/detail/synth_three_way.hpp"
#include "memkit/core/platform.hpp"

namespace memkit {

/// Tag: the input is sorted by the comparator and holds no two equivalent keys.
struct sorted_unique_t {
    explicit sorted_unique_t() = default;
};
inline constexpr sorted_unique_t sorted_unique{};

/// Tag: the input is sorted by the comparator (equivalent keys may repeat).
struct sorted_equivalent_t {
    explicit sorted_equivalent_t() = default;
};
inline constexpr sorted_equivalent_t sorted_equivalent{};

namespace detail {

/// A comparator that accepts keys of other types (std::less<>, std::ranges::less ...).
template <class Compare>
concept transparent_compare = requires {
    typename Compare::is_transparent;
};

/// True when `Compare` on these key types is one plain `<` or `>` of numbers or pointers, so
/// that a binary search may compute the next probe with a conditional move instead of a branch
/// the CPU cannot predict (random lookups mispredict half of the branches of a branchy search).
template <class Compare, class Key, class K>
inline constexpr bool branchless_search = (std::is_arithmetic_v<Key> || std::is_pointer_v<Key>)&&(
    std::is_arithmetic_v<K> ||
    std::is_pointer_v<K>)&&(std::is_same_v<Compare, std::less<Key>> ||
                            std::is_same_v<Compare, std::less<>> ||
                            std::is_same_v<Compare, std::greater<Key>> ||
                            std::is_same_v<Compare, std::greater<>> ||
                            std::is_same_v<Compare, std::ranges::less> ||
                            std::is_same_v<Compare, std::ranges::greater>);

/// Index of the first element of [first, first + n) that is not before `key` (Upper == false:
/// lower_bound) or that `key` is before (Upper == true: upper_bound).
template <bool Upper, class It, class K, class Compare>
MEMKIT_ALWAYS_INLINE std::size_t bound_index(It first, std::size_t n, const K& key,
                                             const Compare& comp) {
    using key_type = std::iter_value_t<It>;
    if constexpr (std::contiguous_iterator<It> &&
                  branchless_search<Compare, key_type, std::remove_cvref_t<K>>) {
        // Invariant: the answer lies in [base, base + n]. Each step halves n without a branch
        // on the data; the last probe decides between base and base + 1.
        const key_type* const begin = std::to_address(first);
        const key_type* base = begin;
        if (n == 0) return 0;
        while (n > 1) {
            const std::size_t half = n / 2;
            bool right;
            if constexpr (Upper) right = !comp(key, base[half]);
            else right = comp(base[half], key);
            base = right ? base + half : base;
            n -= half;
        }
        bool past;
        if constexpr (Upper) past = !comp(key, *base);
        else past = comp(*base, key);
        return static_cast<std::size_t>(base - begin) + static_cast<std::size_t>(past);
    } else {
        const auto last = first + static_cast<std::iter_difference_t<It>>(n);
        It it;
        if constexpr (Upper) it = std::upper_bound(first, last, key, comp);
        else it = std::lower_bound(first, last, key, comp);
        return static_cast<std::size_t>(it - first);
    }
}

/// True when [first, last) is sorted by `comp` and, when Unique, holds no equivalent neighbours.
template <bool Unique, class It, class Compare>
bool is_sorted_for(It first, It last, const Compare& comp) {
    if constexpr (Unique)
        return std::adjacent_find(
                   first, last, [&](const auto& a, const auto& b) { return !comp(a, b); }) == last;
    else return std::is_sorted(first, last, comp);
}

[[noreturn]] MEMKIT_COLD inline void throw_not_sorted(const char* who) {
    throw std::invalid_argument(std::string(who) +
                                ": input promised sorted (sorted_unique / sorted_equivalent) "
                                "is not sorted, or holds equivalent keys");
}

[[noreturn]] MEMKIT_COLD inline void throw_size_mismatch(const char* who) {
    throw std::invalid_argument(std::string(who) + ": key and mapped containers differ in size");
}

[[noreturn]] MEMKIT_COLD inline void throw_key_not_found(const char* who) {
    throw std::out_of_range(std::string(who) + "::at: key not found");
}

/// Throws std::invalid_argument when a sorted_* promise is broken, in MEMKIT_CHECKS builds only
/// (the check is O(n)).
template <bool Unique, class It, class Compare>
void check_sorted([[maybe_unused]] const char* who, [[maybe_unused]] It first,
                  [[maybe_unused]] It last, [[maybe_unused]] const Compare& comp) {
#if MEMKIT_CHECKS
    if (!is_sorted_for<Unique>(first, last, comp)) throw_not_sorted(who);
#endif
}

/// +1 when `Compare` orders integers ascending by value (std::less and friends), -1 when
/// descending (std::greater), 0 when it is anything else: then only the comparator itself knows
/// the order.
template <class Compare, class Key>
inline constexpr int integer_order =
    !std::is_integral_v<Key> || std::is_same_v<Key, bool> ? 0
    : std::is_same_v<Compare, std::less<Key>> || std::is_same_v<Compare, std::less<>> ||
            std::is_same_v<Compare, std::ranges::less>
        ? 1
    : std::is_same_v<Compare, std::greater<Key>> || std::is_same_v<Compare, std::greater<>> ||
            std::is_same_v<Compare, std::ranges::greater>
        ? -1
        : 0;

/// Fills `order` with the indices of tail[0, m) stably sorted by integer key, by a least
/// significant digit radix sort (one byte per pass; passes where every key has the same byte
/// are skipped). O(m) per pass instead of O(m log m) comparisons with indirect loads; used for
/// bulk insertions of integer keys. When Unique, keeps only the first index of each key.
template <bool Unique, int Order, class It>
void radix_order(It tail, std::size_t m, std::vector<std::size_t>& order) {
    using key_type = std::iter_value_t<It>;
    using ukey = std::make_unsigned_t<key_type>;
    constexpr int bytes = static_cast<int>(sizeof(ukey));
    struct item {
        ukey k;
        std::uint32_t i;
    };
    std::vector<item> a(m), b(m);
    std::vector<std::size_t> counts(static_cast<std::size_t>(bytes) * 256, 0);
    for (std::size_t i = 0; i < m; ++i) {
        auto u = static_cast<ukey>(tail[static_cast<std::iter_difference_t<It>>(i)]);
        // Map the key so that unsigned order is the comparator's order.
        if constexpr (std::is_signed_v<key_type>)
            u ^= static_cast<ukey>(ukey{1} << (8 * bytes - 1));
        if constexpr (Order < 0) u = static_cast<ukey>(~u);
        a[i] = item{u, static_cast<std::uint32_t>(i)};
        for (int p = 0; p < bytes; ++p)
            ++counts[static_cast<std::size_t>(p) * 256 + ((u >> (8 * p)) & 0xffu)];
    }
    for (int p = 0; p < bytes; ++p) {
        std::size_t* c = counts.data() + static_cast<std::size_t>(p) * 256;
        if (c[(a[0].k >> (8 * p)) & 0xffu] == m) continue; // one value of this byte: no-op pass
        std::size_t sum = 0;
        for (std::size_t d = 0; d < 256; ++d) {
            const std::size_t n = c[d];
            c[d] = sum;
            sum += n;
        }
        for (const item& x : a) b[c[(x.k >> (8 * p)) & 0xffu]++] = x;
        a.swap(b);
    }
    order.resize(m);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < m; ++i) {
        if (Unique && kept != 0 && a[i].k == a[i - 1].k) continue;
        order[kept++] = a[i].i;
    }
    order.resize(kept);
}

/// Below this many new elements, sorting indices by comparisons beats a radix sort's fixed
/// cost (256 counters per key byte).
inline constexpr std::size_t radix_threshold = 512;

/// The order in which the new elements tail[0, m) of a bulk insertion enter the container
/// head[0, n) (sorted): their indices, stably sorted by key. When Unique, an element is dropped
/// when its key is equivalent to an earlier new element's or to a key of the head, which keeps
/// the first of equal keys as std::map::insert does. Scratch memory comes from the global heap,
/// as std::stable_sort's does. Strong guarantee: the head and the tail are not modified.
/// Cost: O(m log m) comparisons to sort (none when Sorted), and min(n + m, m log n) to filter.
template <bool Unique, bool Sorted, class It, class Compare>
std::vector<std::size_t> merge_plan(It head, std::size_t n, It tail, std::size_t m,
                                    const Compare& comp) {
    std::vector<std::size_t> order;
    auto key = [&](std::size_t i) -> decltype(auto) {
        return tail[static_cast<std::iter_difference_t<It>>(i)];
    };
    constexpr int int_order = integer_order<Compare, std::iter_value_t<It>>;
    bool deduplicated = false;
    if constexpr (!Sorted && int_order != 0) {
        if (m >= radix_threshold && m <= 0xffffffffu) {
            radix_order<Unique, int_order>(tail, m, order);
            deduplicated = true;
        }
    }
    if (!deduplicated) {
        order.resize(m);
        std::iota(order.begin(), order.end(), std::size_t{0});
        if constexpr (!Sorted) {
            std::stable_sort(order.begin(), order.end(),
                             [&](std::size_t a, std::size_t b) { return comp(key(a), key(b)); });
        }
    }
    if constexpr (Unique) {
        // Drop repeats within the new elements, then those already in the head. A linear scan
        // of the head costs n + m comparisons, one binary search per element m log n: use the
        // cheaper one.
        std::size_t kept = order.size();
        if (!deduplicated) {
            kept = 0;
            for (std::size_t i = 0; i < m; ++i) {
                if (kept != 0 && !comp(key(order[kept - 1]), key(order[i]))) continue;
                order[kept++] = order[i];
            }
            order.resize(kept);
        }
        if (n != 0 && kept != 0) {
            std::size_t log_n = 1;
            while ((std::size_t{1} << log_n) < n && log_n < 63) ++log_n;
            const bool scan = n + kept < kept * log_n;
            std::size_t h = 0, out = 0;
            for (std::size_t i = 0; i < kept; ++i) {
                const auto& k = key(order[i]);
                if (scan) {
                    while (h < n && comp(head[static_cast<std::iter_difference_t<It>>(h)], k)) ++h;
                } else {
                    h = bound_index<false>(head, n, k, comp);
                }
                if (h < n && !comp(k, head[static_cast<std::iter_difference_t<It>>(h)])) continue;
                order[out++] = order[i];
            }
            order.resize(out);
        }
    }
    return order;
}

/// Element-wise three-way comparison of two random-access sequences of equal element type.
template <class R, class It>
R lexicographic_three_way(It a, std::size_t na, It b, std::size_t nb) {
    const std::size_t n = na < nb ? na : nb;
    for (std::size_t i = 0; i < n; ++i, ++a, ++b) {
        if (auto c = synth_three_way{}(*a, *b); c != 0) return c;
    }
    return na <=> nb;
}

/// Calls `undo` when a scope is left by an exception (unless dismissed).
template <class F>
class on_exception {
public:
    explicit on_exception(F f) noexcept : f_(std::move(f)) {}
    on_exception(const on_exception&) = delete;
    on_exception& operator=(const on_exception&) = delete;
    ~on_exception() {
        if (armed_ && std::uncaught_exceptions() > count_) f_();
    }
    void dismiss() noexcept { armed_ = false; }

private:
    F f_;
    int count_ = std::uncaught_exceptions();
    bool armed_ = true;
};

/// True when `C` has the allocator-aware container interface.
template <class C>
concept has_allocator = requires(const C& c) {
    typename C::allocator_type;
    c.get_allocator();
};

/// Something that looks like an allocator (for deduction guides, which must not take an
/// allocator for a comparator).
template <class A>
concept allocator_like = requires(A& a) {
    typename A::value_type;
    a.allocate(std::size_t{1});
};

template <class T>
inline constexpr bool is_std_pair = false;
template <class A, class B>
inline constexpr bool is_std_pair<std::pair<A, B>> = true;

/// `c.reserve(n)` where the container has it.
template <class C>
void reserve_if_possible(C& c, std::size_t n) {
    if constexpr (requires { c.reserve(n); }) c.reserve(n);
}

} // namespace detail
} // namespace memkit
