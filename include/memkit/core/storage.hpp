// memkit/core/storage.hpp - raw storage for objects whose lifetime is managed by hand.
//
// `aligned_buffer<Size, Align>` replaces the deprecated std::aligned_storage: a byte array with
// the requested size and alignment and a typed `data()` accessor. `uninitialized<T>` holds room
// for one T and leaves construction and destruction to the caller (`emplace`, `destroy`), for
// pools, optional-like members and static singletons that must not run destructors at exit.
//
// Thread-safety: none (plain storage).
//
//   memkit::uninitialized<Widget> w;
//   Widget& x = w.emplace(42);
//   w.destroy();
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace memkit {

template <std::size_t Size, std::size_t Align = alignof(std::max_align_t)>
struct aligned_buffer {
    static_assert(Size > 0, "aligned_buffer needs at least one byte");
    static_assert((Align & (Align - 1)) == 0, "alignment must be a power of two");

    alignas(Align) std::byte bytes[Size];

    static constexpr std::size_t size() noexcept { return Size; }
    static constexpr std::size_t alignment() noexcept { return Align; }

    [[nodiscard]] void* data() noexcept { return bytes; }
    [[nodiscard]] const void* data() const noexcept { return bytes; }

    /// The storage as a T* (the caller guarantees a T lives there). Requires T to fit.
    template <class T>
    [[nodiscard]] T* as() noexcept {
        static_assert(sizeof(T) <= Size && alignof(T) <= Align, "T does not fit this buffer");
        return std::launder(reinterpret_cast<T*>(bytes));
    }
    template <class T>
    [[nodiscard]] const T* as() const noexcept {
        static_assert(sizeof(T) <= Size && alignof(T) <= Align, "T does not fit this buffer");
        return std::launder(reinterpret_cast<const T*>(bytes));
    }
};

/// Storage for one T with manual lifetime. The destructor does not destroy the object.
template <class T>
class uninitialized {
public:
    uninitialized() noexcept = default;
    uninitialized(const uninitialized&) = delete;
    uninitialized& operator=(const uninitialized&) = delete;

    template <class... Args>
    T& emplace(Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args...>) {
        return *std::construct_at(ptr(), std::forward<Args>(args)...);
    }
    void destroy() noexcept { std::destroy_at(get()); }

    [[nodiscard]] T* get() noexcept { return std::launder(ptr()); }
    [[nodiscard]] const T* get() const noexcept { return std::launder(ptr()); }
    T& operator*() noexcept { return *get(); }
    const T& operator*() const noexcept { return *get(); }
    T* operator->() noexcept { return get(); }
    const T* operator->() const noexcept { return get(); }

private:
    T* ptr() noexcept { return reinterpret_cast<T*>(buf_.bytes); }
    const T* ptr() const noexcept { return reinterpret_cast<const T*>(buf_.bytes); }

    aligned_buffer<sizeof(T), alignof(T)> buf_;
};

} // namespace memkit
