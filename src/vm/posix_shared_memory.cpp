// POSIX implementation of the shared-memory platform layer (memkit/vm/shared_memory.hpp,
// namespace detail::shm_os): shm_open and friends, mmap, and the robust process-shared mutex.
// Everything here returns an errno value and never throws; the callers build the messages.
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <new>

#include "memkit/vm/shared_memory.hpp"

namespace memkit::detail::shm_os {

namespace {
// Restarts a call interrupted by a signal.
template <class F>
int retry(F f) noexcept {
    int r;
    do {
        r = f();
    } while (r == -1 && errno == EINTR);
    return r;
}
} // namespace

int open(const std::string& name, open_mode m, bool read_only, unsigned perms, int& fd) noexcept {
    int flags = read_only ? O_RDONLY : O_RDWR;
    if (m == open_mode::create_exclusive) flags |= O_CREAT | O_EXCL;
    flags |= O_CLOEXEC;
    fd = retry([&] { return ::shm_open(name.c_str(), flags, static_cast<mode_t>(perms)); });
    if (fd < 0) return errno;
    if (m == open_mode::create_exclusive) {
        // shm_open applies the umask; the caller asked for exactly these bits.
        if (::fchmod(fd, static_cast<mode_t>(perms)) != 0) {
            const int e = errno;
            ::close(fd);
            ::shm_unlink(name.c_str());
            fd = -1;
            return e;
        }
    }
    return 0;
}

int close(int fd) noexcept { return ::close(fd) == 0 ? 0 : errno; }

int unlink(const std::string& name) noexcept { return ::shm_unlink(name.c_str()) == 0 ? 0 : errno; }

int exists(const std::string& name, bool& yes) noexcept {
    // Opening read-only may be refused (EACCES) for a segment that exists.
    const int fd = ::shm_open(name.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd >= 0) {
        ::close(fd);
        yes = true;
        return 0;
    }
    if (errno == ENOENT) {
        yes = false;
        return 0;
    }
    if (errno == EACCES) {
        yes = true;
        return 0;
    }
    return errno;
}

int truncate(int fd, std::size_t size) noexcept {
    if (size > static_cast<std::size_t>(INT64_MAX)) return EFBIG;
    return retry([&] { return ::ftruncate(fd, static_cast<off_t>(size)); }) == 0 ? 0 : errno;
}

int size(int fd, std::size_t& out) noexcept {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno;
    out = static_cast<std::size_t>(st.st_size);
    return 0;
}

int mode_bits(int fd, unsigned& bits) noexcept {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno;
    bits = static_cast<unsigned>(st.st_mode) & 07777u;
    return 0;
}

int map(int fd, std::size_t size, bool read_only, void* address, map_placement p,
        void*& out) noexcept {
    out = nullptr;
    const int prot = read_only ? PROT_READ : PROT_READ | PROT_WRITE;
    int flags = MAP_SHARED;
    if (p == map_placement::anywhere) address = nullptr;
#ifdef MAP_FIXED_NOREPLACE
    if (p == map_placement::exactly) flags |= MAP_FIXED_NOREPLACE;
#endif
    void* r = ::mmap(address, size, prot, flags, fd, 0);
    if (r == MAP_FAILED) return errno;
    // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address as a hint.
    if (p == map_placement::exactly && r != address) {
        ::munmap(r, size);
        return EEXIST;
    }
    out = r;
    return 0;
}

int unmap(void* address, std::size_t size) noexcept {
    return ::munmap(address, size) == 0 ? 0 : errno;
}

static_assert(sizeof(pthread_mutex_t) <= mutex_storage_size);
static_assert(alignof(pthread_mutex_t) <= 16);

namespace {
pthread_mutex_t* as_mutex(void* storage) noexcept {
    return std::launder(static_cast<pthread_mutex_t*>(storage));
}

lock_result classify(int r, int& err) noexcept {
    err = r;
    switch (r) {
    case 0: return lock_result::acquired;
    case EOWNERDEAD: return lock_result::owner_died;
    case EBUSY: return lock_result::busy;
    default: return lock_result::not_recoverable; // ENOTRECOVERABLE, or err says why
    }
}
} // namespace

int mutex_init(void* storage) noexcept {
    pthread_mutexattr_t attr;
    if (int r = ::pthread_mutexattr_init(&attr); r != 0) return r;
    int r = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (r == 0) r = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    // Recursive: a thread holding the heap lock for a compound update may allocate.
    if (r == 0) r = ::pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    if (r == 0) r = ::pthread_mutex_init(::new (storage) pthread_mutex_t, &attr);
    ::pthread_mutexattr_destroy(&attr);
    return r;
}

lock_result mutex_lock(void* storage, int& err) noexcept {
    return classify(::pthread_mutex_lock(as_mutex(storage)), err);
}

lock_result mutex_try_lock(void* storage, int& err) noexcept {
    return classify(::pthread_mutex_trylock(as_mutex(storage)), err);
}

int mutex_consistent(void* storage) noexcept {
    return ::pthread_mutex_consistent(as_mutex(storage));
}

int mutex_unlock(void* storage) noexcept { return ::pthread_mutex_unlock(as_mutex(storage)); }

} // namespace memkit::detail::shm_os
