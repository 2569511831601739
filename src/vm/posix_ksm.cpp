// The Linux half of memkit/vm/ksm.hpp: madvise, prctl, /sys/kernel/mm/ksm and /proc/self.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "memkit/core/align.hpp"
#include "memkit/vm/ksm.hpp"

// Linux 6.4 added the whole-process switch; older headers lack the constants.
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif
#ifndef PR_GET_MEMORY_MERGE
#define PR_GET_MEMORY_MERGE 68
#endif

namespace memkit {
namespace {

constexpr const char* ksm_dir = "/sys/kernel/mm/ksm/";

std::error_code errno_code(int e) noexcept {
    if (e == ENOMEM || e == EAGAIN) return make_error_code(errc::out_of_memory);
    return {e, std::generic_category()};
}

// Reads a sysfs file holding one unsigned number. Returns the errno on failure.
int read_number(const char* path, std::uint64_t& out) noexcept {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    char buf[64];
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    const int e = errno;
    ::close(fd);
    if (n <= 0) return n < 0 ? e : EIO;
    buf[n] = '\0';
    char* end = nullptr;
    out = std::strtoull(buf, &end, 10);
    return end == buf ? EINVAL : 0;
}

int write_number(const char* path, std::uint64_t value) noexcept {
    const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    char buf[32];
    const int len = std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(value));
    const ssize_t n = ::write(fd, buf, static_cast<std::size_t>(len));
    const int e = errno;
    ::close(fd);
    return n == len ? 0 : (n < 0 ? e : EIO);
}

std::string ksm_path(const char* file) { return std::string(ksm_dir) + file; }

// The whole pages inside [p, p + n): KSM works on pages only.
bool inner_pages(std::span<std::byte> range, std::byte*& begin, std::size_t& bytes) noexcept {
    const std::size_t pg = vm::page_size();
    const auto lo = reinterpret_cast<std::uintptr_t>(range.data());
    const std::uintptr_t hi = lo + range.size();
    const std::uintptr_t a = align_up(static_cast<std::size_t>(lo), pg);
    const std::uintptr_t b = align_down(static_cast<std::size_t>(hi), pg);
    if (range.empty() || a >= b || a < lo) return false;
    begin = range.data() + (a - lo);
    bytes = static_cast<std::size_t>(b - a);
    return true;
}

std::error_code advise(std::span<std::byte> range, int advice) noexcept {
    std::byte* p = nullptr;
    std::size_t n = 0;
    if (!inner_pages(range, p, n)) return {};
    if (::madvise(p, n, advice) == 0) return {};
    const int e = errno;
    // madvise reports a kernel built without CONFIG_KSM as EINVAL on a valid, aligned range.
    if (e == EINVAL) return std::make_error_code(std::errc::not_supported);
    return errno_code(e);
}

} // namespace

std::optional<std::size_t> ksm_status::saved_bytes() const noexcept {
    if (!pages_sharing) return std::nullopt;
    return static_cast<std::size_t>(*pages_sharing) * vm::page_size();
}

namespace vm::ksm {

std::error_code mark_mergeable(std::span<std::byte> range) noexcept {
#ifdef MADV_MERGEABLE
    return advise(range, MADV_MERGEABLE);
#else
    (void)range;
    return std::make_error_code(std::errc::not_supported);
#endif
}

std::error_code unmark_mergeable(std::span<std::byte> range) noexcept {
#ifdef MADV_UNMERGEABLE
    return advise(range, MADV_UNMERGEABLE);
#else
    (void)range;
    return std::make_error_code(std::errc::not_supported);
#endif
}

std::error_code set_process_merging(bool enabled) noexcept {
    if (::prctl(PR_SET_MEMORY_MERGE, enabled ? 1UL : 0UL, 0UL, 0UL, 0UL) == 0) return {};
    const int e = errno;
    // Unknown prctl options are EINVAL: a kernel before 6.4 (or without CONFIG_KSM).
    if (e == EINVAL) return std::make_error_code(std::errc::not_supported);
    return errno_code(e);
}

std::optional<bool> process_merging() noexcept {
    const int r = ::prctl(PR_GET_MEMORY_MERGE, 0UL, 0UL, 0UL, 0UL);
    if (r < 0) return std::nullopt;
    return r != 0;
}

ksm_status status() {
    ksm_status s;
    s.available = ::access(ksm_dir, F_OK) == 0;
    if (!s.available) {
        s.unreadable = std::string(ksm_dir) + ": " + std::strerror(errno) +
                       " (kernel without CONFIG_KSM, or /sys not mounted)";
        return s;
    }
    auto field = [&s](const char* name, std::optional<std::uint64_t>& out) {
        std::uint64_t v = 0;
        if (const int e = read_number(ksm_path(name).c_str(), v); e != 0) {
            if (!s.unreadable.empty()) s.unreadable += "; ";
            s.unreadable += std::string(name) + ": " + std::strerror(e);
        } else {
            out = v;
        }
    };
    std::optional<std::uint64_t> run;
    field("run", run);
    if (run && *run <= 2) s.run = static_cast<ksm_run_state>(*run);
    field("pages_shared", s.pages_shared);
    field("pages_sharing", s.pages_sharing);
    field("pages_unshared", s.pages_unshared);
    field("full_scans", s.full_scans);
    return s;
}

std::optional<std::uint64_t> process_merging_pages() noexcept {
    std::uint64_t v = 0;
    if (read_number("/proc/self/ksm_merging_pages", v) != 0) return std::nullopt;
    return v;
}

std::error_code set_run(ksm_run_state state) noexcept {
    const int e = write_number("/sys/kernel/mm/ksm/run", static_cast<std::uint64_t>(state));
    if (e == 0) return {};
    if (e == ENOENT) return std::make_error_code(std::errc::not_supported);
    return errno_code(e);
}

} // namespace vm::ksm

ksm_run_guard::ksm_run_guard(ksm_run_state state, ksm_tuning tuning) noexcept {
    std::uint64_t v = 0;
    if (const int e = read_number("/sys/kernel/mm/ksm/run", v); e != 0) {
        error_ = e == ENOENT ? std::make_error_code(std::errc::not_supported) : errno_code(e);
        return;
    }
    previous_ = static_cast<ksm_run_state>(v <= 2 ? v : 0);
    // Tuning first, so that ksmd starts at the requested speed; each change is undone below.
    auto tune = [this](const char* path, std::optional<unsigned> want,
                       std::optional<unsigned>& saved) {
        if (!want || error_) return;
        std::uint64_t old = 0;
        if (const int e = read_number(path, old); e != 0) {
            error_ = errno_code(e);
            return;
        }
        if (const int e = write_number(path, *want); e != 0) {
            error_ = errno_code(e);
            return;
        }
        saved = static_cast<unsigned>(old);
    };
    tune("/sys/kernel/mm/ksm/pages_to_scan", tuning.pages_to_scan, previous_pages_to_scan_);
    tune("/sys/kernel/mm/ksm/sleep_millisecs", tuning.sleep_millisecs, previous_sleep_);
    if (!error_) error_ = vm::ksm::set_run(state);
    if (error_) {
        // Undo whatever part was applied; the destructor then has nothing left to restore.
        if (previous_pages_to_scan_)
            (void)write_number("/sys/kernel/mm/ksm/pages_to_scan", *previous_pages_to_scan_);
        if (previous_sleep_)
            (void)write_number("/sys/kernel/mm/ksm/sleep_millisecs", *previous_sleep_);
        previous_pages_to_scan_.reset();
        previous_sleep_.reset();
    }
}

ksm_run_guard::~ksm_run_guard() {
    if (error_) return;
    if (previous_) (void)vm::ksm::set_run(*previous_);
    if (previous_pages_to_scan_)
        (void)write_number("/sys/kernel/mm/ksm/pages_to_scan", *previous_pages_to_scan_);
    if (previous_sleep_) (void)write_number("/sys/kernel/mm/ksm/sleep_millisecs", *previous_sleep_);
}

} // namespace memkit
