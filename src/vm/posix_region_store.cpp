// The POSIX (Linux) layer of memkit::region_store: anonymous memory for stores without a file.
// File-backed stores go through memkit::mapped_file and its own platform layer.
#include <cerrno>
#include <cstddef>
#include <system_error>

#include <sys/mman.h>

namespace memkit::detail::region_store_os {

std::error_code map_anonymous(std::size_t size, void*& out) noexcept {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return {errno, std::generic_category()};
    out = p;
    return {};
}

void unmap(void* p, std::size_t size) noexcept {
    if (p != nullptr) ::munmap(p, size);
}

} // namespace memkit::detail::region_store_os
