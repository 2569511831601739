#include "memkit/core/platform.hpp"

#include <unistd.h>

namespace memkit {

std::size_t page_size() noexcept {
    static const std::size_t size = [] {
        long v = ::sysconf(_SC_PAGESIZE);
        return v > 0 ? static_cast<std::size_t>(v) : std::size_t{4096};
    }();
    return size;
}

} // namespace memkit
