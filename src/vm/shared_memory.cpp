// memkit::shared_memory: name checks, error messages and handle logic. The system calls are in
// posix_shared_memory.cpp (detail::shm_os).
#include "memkit/vm/shared_memory.hpp"

#include <cerrno>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>

#include "memkit/core/platform.hpp"

namespace memkit {

namespace {

class shm_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "memkit.shm"; }
    std::string message(int ev) const override {
        switch (static_cast<shm_errc>(ev)) {
        case shm_errc::invalid_name: return "invalid shared memory name";
        case shm_errc::invalid_size: return "invalid segment size";
        case shm_errc::bad_magic: return "segment does not hold a memkit heap (bad magic)";
        case shm_errc::bad_version: return "heap layout version not supported";
        case shm_errc::size_mismatch: return "heap header and segment size disagree";
        case shm_errc::address_unavailable: return "mapping address unavailable";
        case shm_errc::not_initialized: return "heap not initialized";
        case shm_errc::type_mismatch: return "named object has a different type";
        case shm_errc::heap_corrupted: return "heap corrupted";
        }
        return "unknown shared memory error";
    }
    std::error_condition default_error_condition(int ev) const noexcept override {
        switch (static_cast<shm_errc>(ev)) {
        case shm_errc::invalid_name:
        case shm_errc::invalid_size: return std::errc::invalid_argument;
        case shm_errc::address_unavailable: return std::errc::file_exists;
        default: return {ev, *this};
        }
    }
};

std::string describe(std::string_view segment, std::string_view what) {
    std::string s(what);
    s += " \"";
    s += segment;
    s += '"';
    return s;
}

[[noreturn]] MEMKIT_COLD void throw_os(int err, std::string_view op, std::string_view name) {
    throw shm_error(std::error_code(err, std::system_category()), name, op);
}

} // namespace

const std::error_category& shm_category() noexcept {
    static const shm_category_impl c;
    return c;
}

shm_error::shm_error(std::error_code ec, std::string_view segment, std::string_view what)
    : std::system_error(ec, describe(segment, what)), segment_(segment) {}

void shared_memory::validate_name(std::string_view name) {
    const char* why = nullptr;
    if (name.empty() || name.front() != '/') {
        why = "shared_memory: the name must start with '/'";
    } else if (name.size() == 1) {
        why = "shared_memory: the name needs at least one character after '/'";
    } else if (name.size() > max_name_length) {
        why = "shared_memory: the name is longer than 254 characters";
    } else if (name.find('/', 1) != std::string_view::npos) {
        why = "shared_memory: the name must not contain '/' after the first character";
    } else if (name.find('\0') != std::string_view::npos) {
        why = "shared_memory: the name must not contain a NUL character";
    } else if (name == "/." || name == "/..") {
        why = "shared_memory: the name must not be \"/.\" or \"/..\"";
    }
    if (why != nullptr) throw shm_error(shm_errc::invalid_name, name, why);
}

shared_memory shared_memory::make(std::string_view name, std::size_t size, shm_options opts,
                                  mode m) {
    validate_name(name);
    const char* op = m == mode::create ? "shared_memory::create"
                     : m == mode::open ? "shared_memory::open"
                                       : "shared_memory::open_or_create";
    if (m != mode::open &&
        (size == 0 || size > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())))
        throw shm_error(shm_errc::invalid_size, name,
                        std::string(op) + ": size " + std::to_string(size) +
                            " is not in [1, 2^63)");
    shared_memory s;
    s.name_.assign(name);
    s.remove_on_destroy_ = opts.remove_on_destroy;
    s.access_ = m == mode::create ? shm_access::read_write : opts.access;
    const bool ro = s.access_ == shm_access::read_only;

    int err = 0;
    bool create = m != mode::open;
    for (int attempt = 0;; ++attempt) {
        if (create) {
            err = detail::shm_os::open(s.name_, detail::shm_os::open_mode::create_exclusive, false,
                                       opts.permissions, s.fd_);
            if (err == 0) {
                s.created_ = true;
                break;
            }
            if (err != EEXIST || m == mode::create) throw_os(err, op, name);
        }
        err = detail::shm_os::open(s.name_, detail::shm_os::open_mode::open_existing, ro,
                                   opts.permissions, s.fd_);
        if (err == 0) break;
        // open_or_create: the segment was removed between our two attempts; try again.
        if (err != ENOENT || m == mode::open || attempt == 8) throw_os(err, op, name);
        create = true;
    }
    // From here on, `s` closes (and, when created, s.created_ tells us to unlink) on failure.
    try {
        if (s.created_) {
            if (int e = detail::shm_os::truncate(s.fd_, size); e != 0) throw_os(e, op, name);
            s.size_ = size;
        } else {
            if (int e = detail::shm_os::size(s.fd_, s.size_); e != 0) throw_os(e, op, name);
        }
        if (opts.map && s.size_ != 0) s.map();
    } catch (...) {
        if (s.created_) {
            (void)detail::shm_os::unlink(s.name_);
            s.remove_on_destroy_ = false;
        }
        throw;
    }
    return s;
}

shared_memory shared_memory::create(std::string_view name, std::size_t size, shm_options opts) {
    return make(name, size, opts, mode::create);
}

shared_memory shared_memory::open(std::string_view name, shm_options opts) {
    return make(name, 0, opts, mode::open);
}

shared_memory shared_memory::open_or_create(std::string_view name, std::size_t size,
                                            shm_options opts) {
    return make(name, size, opts, mode::open_or_create);
}

bool shared_memory::remove(std::string_view name) {
    validate_name(name);
    const int e = detail::shm_os::unlink(std::string(name));
    if (e == 0) return true;
    if (e == ENOENT) return false;
    throw_os(e, "shared_memory::remove", name);
}

bool shared_memory::exists(std::string_view name) {
    validate_name(name);
    bool yes = false;
    if (int e = detail::shm_os::exists(std::string(name), yes); e != 0)
        throw_os(e, "shared_memory::exists", name);
    return yes;
}

shared_memory::shared_memory(shared_memory&& o) noexcept
    : name_(std::move(o.name_)), fd_(std::exchange(o.fd_, -1)),
      data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), access_(o.access_),
      created_(std::exchange(o.created_, false)),
      remove_on_destroy_(std::exchange(o.remove_on_destroy_, false)) {
    o.name_.clear();
}

shared_memory& shared_memory::operator=(shared_memory&& o) noexcept {
    if (this != &o) {
        close();
        name_ = std::move(o.name_);
        o.name_.clear();
        fd_ = std::exchange(o.fd_, -1);
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
        access_ = o.access_;
        created_ = std::exchange(o.created_, false);
        remove_on_destroy_ = std::exchange(o.remove_on_destroy_, false);
    }
    return *this;
}

shared_memory::~shared_memory() { close(); }

void shared_memory::close() noexcept {
    unmap();
    if (fd_ >= 0) (void)detail::shm_os::close(fd_);
    if (remove_on_destroy_ && !name_.empty()) (void)detail::shm_os::unlink(name_);
    fd_ = -1;
    size_ = 0;
    created_ = false;
    remove_on_destroy_ = false;
    name_.clear();
}

void shared_memory::map(void* address, map_placement placement) {
    if (fd_ < 0)
        throw shm_error(std::make_error_code(std::errc::bad_file_descriptor), name_,
                        "shared_memory::map: empty handle");
    if (size_ == 0)
        throw shm_error(shm_errc::invalid_size, name_, "shared_memory::map: the segment is empty");
    unmap();
    void* p = nullptr;
    const int e =
        detail::shm_os::map(fd_, size_, access_ == shm_access::read_only, address, placement, p);
    if (e == EEXIST && placement == map_placement::exactly) {
        char buf[96];
        std::snprintf(buf, sizeof buf,
                      "shared_memory::map: the range at %p (%zu bytes) is taken in this process",
                      address, size_);
        throw shm_error(shm_errc::address_unavailable, name_, buf);
    }
    if (e != 0) throw_os(e, "shared_memory::map", name_);
    data_ = p;
}

void shared_memory::unmap() noexcept {
    if (data_ != nullptr) (void)detail::shm_os::unmap(data_, size_);
    data_ = nullptr;
}

unsigned shared_memory::permissions() const {
    unsigned bits = 0;
    if (int e = detail::shm_os::mode_bits(fd_, bits); e != 0)
        throw_os(e, "shared_memory::permissions", name_);
    return bits;
}

shm_remover::~shm_remover() {
    if (!name_.empty()) (void)detail::shm_os::unlink(name_);
}

} // namespace memkit
