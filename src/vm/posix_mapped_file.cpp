// The POSIX (Linux) layer of memkit::mapped_file: every system call it makes is here, so that
// another platform needs only another file with the same detail::mapped_file_os functions.
#include "memkit/vm/mapped_file.hpp"

#include <cerrno>
#include <climits>
#include <cstdint>
#include <limits>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#include <unistd.h>

namespace memkit::detail::mapped_file_os {
namespace {

std::error_code last_error() noexcept { return {errno, std::generic_category()}; }

int protection(map_mode mode) noexcept {
    return mode == map_mode::read_only ? PROT_READ : PROT_READ | PROT_WRITE;
}

} // namespace

std::error_code open(const std::filesystem::path& path, const open_request& req,
                     file_handle& out) noexcept {
    // copy_on_write needs only read access: its writes never reach the file. O_NONBLOCK keeps
    // open() of a FIFO from waiting for a writer (it is rejected as non-regular right after);
    // on a regular file it changes nothing.
    int flags =
        (req.mode == map_mode::read_write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    if (req.create) flags |= O_CREAT;
    if (req.exclusive) flags |= O_EXCL;
    if (req.truncate) flags |= O_TRUNC;
    int fd;
    do {
        fd = ::open(path.c_str(), flags, static_cast<mode_t>(req.permissions));
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return last_error();
    out.fd = fd;
    return {};
}

void close(file_handle& h) noexcept {
    if (h.fd >= 0) ::close(h.fd); // close(2) is not retried on EINTR: Linux has freed the fd
    h.fd = -1;
}

std::error_code status(file_handle h, file_status& out) noexcept {
    struct stat st {};
    if (::fstat(h.fd, &st) != 0) return last_error();
    out.size = st.st_size > 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    out.regular = S_ISREG(st.st_mode);
    out.directory = S_ISDIR(st.st_mode);
    return {};
}

std::error_code set_size(file_handle h, std::uint64_t size) noexcept {
    if (size > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
        return std::make_error_code(std::errc::file_too_large);
    int rc;
    do {
        rc = ::ftruncate(h.fd, static_cast<off_t>(size));
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? std::error_code{} : last_error();
}

std::size_t map_granularity() noexcept {
    static const std::size_t granularity = [] {
        const long v = ::sysconf(_SC_PAGESIZE);
        return v > 0 ? static_cast<std::size_t>(v) : std::size_t{4096};
    }();
    return granularity;
}

std::error_code map(file_handle h, map_mode mode, std::uint64_t offset, std::size_t length,
                    void*& out) noexcept {
    if (offset > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
        return std::make_error_code(std::errc::value_too_large);
    const int flags = mode == map_mode::copy_on_write ? MAP_PRIVATE : MAP_SHARED;
    void* p = ::mmap(nullptr, length, protection(mode), flags, h.fd, static_cast<off_t>(offset));
    if (p == MAP_FAILED) return last_error();
    out = p;
    return {};
}

void unmap(void* addr, std::size_t length) noexcept {
    if (addr != nullptr) ::munmap(addr, length);
}

std::error_code flush(void* addr, std::size_t length, flush_mode mode) noexcept {
    if (::msync(addr, length, mode == flush_mode::sync ? MS_SYNC : MS_ASYNC) != 0)
        return last_error();
    return {};
}

std::error_code advise(void* addr, std::size_t length, access_advice advice) noexcept {
    int a = MADV_NORMAL;
    switch (advice) {
    case access_advice::normal: a = MADV_NORMAL; break;
    case access_advice::sequential: a = MADV_SEQUENTIAL; break;
    case access_advice::random: a = MADV_RANDOM; break;
    case access_advice::will_need: a = MADV_WILLNEED; break;
    case access_advice::dont_need: a = MADV_DONTNEED; break;
    }
    if (::madvise(addr, length, a) != 0) return last_error();
    return {};
}

// On Linux the system calls are made directly: the sanitizer runtimes replace mlock/munlock with
// no-ops that always succeed, which would hide RLIMIT_MEMLOCK failures in the builds that run the
// tests. Locking one mapping is harmless under a sanitizer (only mlockall would pin its shadow).
std::error_code lock(void* addr, std::size_t length) noexcept {
#if defined(__linux__) && defined(SYS_mlock)
    if (::syscall(SYS_mlock, addr, length) != 0) return last_error();
#else
    if (::mlock(addr, length) != 0) return last_error();
#endif
    return {};
}

void unlock(void* addr, std::size_t length) noexcept {
#if defined(__linux__) && defined(SYS_munlock)
    ::syscall(SYS_munlock, addr, length);
#else
    ::munlock(addr, length);
#endif
}

std::size_t lock_limit() noexcept {
    struct rlimit rl {};
    if (::getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return std::numeric_limits<std::size_t>::max();
    return static_cast<std::size_t>(rl.rlim_cur);
}

} // namespace memkit::detail::mapped_file_os
