// The POSIX (Linux) half of memkit/vm/virtual_memory.hpp: every system call of the virtual memory
// layer is here. The portable half (src/vm/virtual_memory.cpp: reservation, errors) is written
// against the vm:: functions only.
#include "memkit/vm/virtual_memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "memkit/core/align.hpp"
#include "memkit/core/platform.hpp"

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

namespace memkit::vm {
namespace {

// ENOMEM and EAGAIN are the kernel's "no memory / address space / map count left": that is an
// allocation failure (memkit::out_of_memory). Everything else keeps its errno.
std::error_code from_errno(int e) noexcept {
    if (e == ENOMEM || e == EAGAIN) return make_error_code(errc::out_of_memory);
    return {e, std::generic_category()};
}

int prot_of(page_access a) noexcept {
    switch (a) {
    case page_access::none: return PROT_NONE;
    case page_access::read: return PROT_READ;
    case page_access::read_write: return PROT_READ | PROT_WRITE;
    case page_access::read_execute: return PROT_READ | PROT_EXEC;
    }
    return PROT_NONE;
}

// Reads a "Name:   123 kB" line of /proc/meminfo; the value in the file's unit (kB or pages).
std::optional<std::size_t> meminfo_value(const char* key) noexcept {
    std::FILE* f = std::fopen("/proc/meminfo", "re");
    if (f == nullptr) return std::nullopt;
    const std::size_t key_len = std::strlen(key);
    char line[256];
    std::optional<std::size_t> result;
    while (std::fgets(line, sizeof line, f) != nullptr) {
        if (std::strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
            char* end = nullptr;
            const unsigned long long v = std::strtoull(line + key_len + 1, &end, 10);
            if (end != line + key_len + 1) result = static_cast<std::size_t>(v);
            break;
        }
    }
    std::fclose(f);
    return result;
}

std::optional<std::string> read_small_file(const char* path) noexcept {
    std::FILE* f = std::fopen(path, "re");
    if (f == nullptr) return std::nullopt;
    char buf[512];
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    try {
        return std::string(buf, n);
    } catch (...) {
        return std::nullopt;
    }
}

struct maps_entry {
    std::uintptr_t begin = 0, end = 0;
    char perms[5] = {};
};

// Parses the header line of a /proc/self/maps or smaps entry ("begin-end perms offset ...").
bool parse_maps_header(const std::string& line, maps_entry& e) noexcept {
    unsigned long long b = 0, en = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%llx-%llx %4s", &b, &en, perms) != 3) return false;
    e.begin = static_cast<std::uintptr_t>(b);
    e.end = static_cast<std::uintptr_t>(en);
    std::memcpy(e.perms, perms, sizeof perms);
    return true;
}

} // namespace

std::size_t page_size() noexcept { return memkit::page_size(); }

std::size_t huge_page_size() noexcept {
    static const std::size_t size = []() -> std::size_t {
        if (auto kb = meminfo_value("Hugepagesize"); kb && *kb != 0) return *kb * 1024;
        if (auto s = read_small_file("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")) {
            char* end = nullptr;
            const unsigned long long v = std::strtoull(s->c_str(), &end, 10);
            if (end != s->c_str() && is_pow2(static_cast<std::size_t>(v)))
                return static_cast<std::size_t>(v);
        }
        return 0;
    }();
    return size;
}

thp_mode transparent_huge_page_mode() noexcept {
    const auto s = read_small_file("/sys/kernel/mm/transparent_hugepage/enabled");
    if (!s) return thp_mode::unknown;
    if (s->find("[always]") != std::string::npos) return thp_mode::always;
    if (s->find("[madvise]") != std::string::npos) return thp_mode::madvise;
    if (s->find("[never]") != std::string::npos) return thp_mode::never;
    return thp_mode::unknown;
}

std::optional<std::size_t> free_explicit_huge_pages() noexcept {
    return meminfo_value("HugePages_Free");
}

void* try_reserve(std::size_t bytes, std::size_t alignment, std::error_code& ec) noexcept {
    ec.clear();
    const std::size_t pg = page_size();
    if (alignment != 0 && !is_pow2(alignment)) {
        ec = make_error_code(errc::invalid_alignment);
        return nullptr;
    }
    if (alignment < pg) alignment = pg;
    std::size_t size = 0, span = 0;
    if (bytes == 0 || !checked_align_up(bytes, pg, size) ||
        !checked_add(size, alignment - pg, span) || span > static_cast<std::size_t>(PTRDIFF_MAX)) {
        ec = make_error_code(errc::bad_size);
        return nullptr;
    }
    // PROT_NONE + MAP_NORESERVE: address space only. Nothing is charged against the commit limit,
    // so even a terabyte succeeds under heuristic overcommit, and nothing is resident.
    void* m = ::mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        ec = from_errno(errno);
        return nullptr;
    }
    if (span == size) return m;
    // Over-reserved by alignment - page: unmap the misaligned head and the unused tail.
    auto* raw = static_cast<std::byte*>(m);
    std::byte* aligned = align_up(raw, alignment);
    const auto head = static_cast<std::size_t>(aligned - raw);
    const std::size_t tail = span - head - size;
    if (head != 0) ::munmap(raw, head);
    if (tail != 0) ::munmap(aligned + size, tail);
    return aligned;
}

void* map_explicit_huge_pages(std::size_t bytes, std::error_code& ec) noexcept {
    ec.clear();
#ifdef MAP_HUGETLB
    const std::size_t hps = huge_page_size();
    if (hps == 0) {
        ec = std::make_error_code(std::errc::not_supported);
        return nullptr;
    }
    std::size_t size = 0;
    if (bytes == 0 || !checked_align_up(bytes, hps, size)) {
        ec = make_error_code(errc::bad_size);
        return nullptr;
    }
    // No MAP_NORESERVE: the kernel reserves the huge pages now, so a short pool fails here with
    // ENOMEM instead of killing the process with SIGBUS at the first touch of a missing page.
    void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (m == MAP_FAILED) {
        ec = from_errno(errno);
        return nullptr;
    }
    return m;
#else
    (void)bytes;
    ec = std::make_error_code(std::errc::not_supported);
    return nullptr;
#endif
}

std::error_code try_commit(void* p, std::size_t bytes) noexcept {
    if (auto ec = detail::check_range(p, bytes, page_size())) return ec;
    if (::mprotect(p, bytes, PROT_READ | PROT_WRITE) != 0) return from_errno(errno);
    return {};
}

std::error_code try_decommit(void* p, std::size_t bytes) noexcept {
    if (auto ec = detail::check_range(p, bytes, page_size())) return ec;
    // DONTNEED frees the pages now (RSS drops at once, a recommit reads zeros); PROT_NONE then
    // makes stale pointers fault instead of reading fresh zero pages.
    if (::madvise(p, bytes, MADV_DONTNEED) != 0) return from_errno(errno);
    if (::mprotect(p, bytes, PROT_NONE) != 0) return from_errno(errno);
    return {};
}

std::error_code try_protect(void* p, std::size_t bytes, page_access access) noexcept {
    if (auto ec = detail::check_range(p, bytes, page_size())) return ec;
    if (::mprotect(p, bytes, prot_of(access)) != 0) return from_errno(errno);
    return {};
}

std::error_code populate(void* p, std::size_t bytes) noexcept {
    if (auto ec = detail::check_range(p, bytes, page_size())) return ec;
#ifdef MADV_POPULATE_WRITE
    if (::madvise(p, bytes, MADV_POPULATE_WRITE) == 0) return {};
    const int e = errno;
    // EINVAL: a kernel before 5.14 does not know the advice.
    if (e == EINVAL) return std::make_error_code(std::errc::not_supported);
    return from_errno(e);
#else
    return std::make_error_code(std::errc::not_supported);
#endif
}

void release(void* p, std::size_t bytes) noexcept {
    if (p == nullptr && bytes == 0) return;
    std::size_t rounded = bytes;
    if (detail::check_range(p, rounded, page_size()) || ::munmap(p, rounded) != 0) {
        if constexpr (debug_checks)
            report_violation({errc::invalid_argument, "memkit::vm::release", p,
                              "range is not page-aligned or was not reserved"});
    }
}

huge_page_status advise_transparent_huge_pages(void* p, std::size_t bytes) noexcept {
#ifdef MADV_HUGEPAGE
    if (detail::check_range(p, bytes, page_size())) return huge_page_status::huge_pages_unavailable;
    if (transparent_huge_page_mode() == thp_mode::never)
        return huge_page_status::huge_pages_unavailable;
    if (::madvise(p, bytes, MADV_HUGEPAGE) != 0) return huge_page_status::huge_pages_unavailable;
    return huge_page_status::transparent;
#else
    (void)p;
    (void)bytes;
    return huge_page_status::huge_pages_unavailable;
#endif
}

std::size_t resident_bytes(const void* p, std::size_t bytes) {
    const std::size_t pg = page_size();
    if (auto ec = detail::check_range(p, bytes, pg))
        detail::throw_error(ec, "memkit::vm::resident_bytes", p, bytes);
    // mincore fills one byte per page: walk big ranges (a terabyte reservation) in slices.
    constexpr std::size_t slice_pages = std::size_t{1} << 16;
    std::vector<unsigned char> vec(std::min(bytes / pg, slice_pages));
    std::size_t resident = 0;
    auto* cur = static_cast<std::byte*>(const_cast<void*>(p));
    for (std::size_t left = bytes / pg; left != 0;) {
        const std::size_t n = std::min(left, slice_pages);
        if (::mincore(cur, n * pg, vec.data()) != 0)
            throw std::system_error(errno, std::generic_category(), "memkit::vm::resident_bytes");
        for (std::size_t i = 0; i < n; ++i) resident += vec[i] & 1u;
        cur += n * pg;
        left -= n;
    }
    return resident * pg;
}

std::optional<page_access> access_of(const void* p) {
    std::ifstream maps("/proc/self/maps");
    if (!maps) return std::nullopt;
    const auto addr = reinterpret_cast<std::uintptr_t>(p);
    std::string line;
    while (std::getline(maps, line)) {
        maps_entry e;
        if (!parse_maps_header(line, e) || addr < e.begin || addr >= e.end) continue;
        const bool r = e.perms[0] == 'r', w = e.perms[1] == 'w', x = e.perms[2] == 'x';
        if (!r && !w && !x) return page_access::none;
        if (w) return page_access::read_write;
        if (x) return page_access::read_execute;
        return page_access::read;
    }
    return std::nullopt;
}

std::optional<std::size_t> anon_huge_bytes(const void* p, std::size_t bytes) {
    std::ifstream smaps("/proc/self/smaps");
    if (!smaps) return std::nullopt;
    const auto lo = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t hi = lo + bytes;
    std::string line;
    std::size_t total = 0;
    bool inside = false;
    while (std::getline(smaps, line)) {
        maps_entry e;
        // Field lines ("Rss:  4 kB") never parse as a header: their first token has no '-'.
        if (parse_maps_header(line, e)) {
            inside = e.begin < hi && e.end > lo;
        } else if (inside && line.rfind("AnonHugePages:", 0) == 0) {
            total += static_cast<std::size_t>(std::strtoull(line.c_str() + 14, nullptr, 10)) * 1024;
        }
    }
    return total;
}

} // namespace memkit::vm
