#include "common/mimalloc_peer.hpp"

#include <dlfcn.h>

namespace memkit::bench {

const mimalloc_api* mimalloc() noexcept {
    static const mimalloc_api* const api = []() -> const mimalloc_api* {
        void* lib = ::dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
        if (lib == nullptr) return nullptr;
        static mimalloc_api found{};
        // dlsym returns an object pointer; converting it to a function pointer is what POSIX
        // specifies for dlsym's results.
        found.allocate = reinterpret_cast<void* (*)(std::size_t) noexcept>(::dlsym(lib, "mi_malloc"));
        found.deallocate = reinterpret_cast<void (*)(void*) noexcept>(::dlsym(lib, "mi_free"));
        if (found.allocate == nullptr || found.deallocate == nullptr) return nullptr;
        return &found;
    }();
    return api;
}

} // namespace memkit::bench
