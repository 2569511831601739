// memkit/container/detail/synth_three_way.hpp - the standard's synth-three-way, shared by the
// containers' operator<=>.
#pragma once

#include <compare>
#include <concepts>
#include <utility>

namespace memkit::detail {

/// Types that synth_three_way can order: they have <=>, or at least <.
template <class T, class U = T>
concept synth_comparable = std::three_way_comparable_with<T, U> || requires(const T& a, const U& b) {
    { a < b } -> std::convertible_to<bool>;
    { b < a } -> std::convertible_to<bool>;
};

/// synth-three-way of the standard ([expos.only.entity]): <=> where the type has it, else an
/// ordering built from < (a weak ordering, as std::vector's operator<=> does).
struct synth_three_way {
    template <class T, class U>
    requires synth_comparable<T, U>
    constexpr auto operator()(const T& t, const U& u) const {
        if constexpr (std::three_way_comparable_with<T, U>) {
            return t <=> u;
        } else {
            if (t < u) return std::weak_ordering::less;
            if (u < t) return std::weak_ordering::greater;
            return std::weak_ordering::equivalent;
        }
    }
};

template <class T, class U = T>
using synth_three_way_result = decltype(synth_three_way{}(std::declval<const T&>(),
                                                          std::declval<const U&>()));

} // namespace memkit::detail
