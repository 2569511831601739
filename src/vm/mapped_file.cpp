// The portable part of memkit::mapped_file: argument checks, page arithmetic and error messages.
// System calls go through the detail::mapped_file_os layer (src/vm/posix_mapped_file.cpp).
#include "memkit/vm/mapped_file.hpp"

#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "memkit/core/align.hpp"

namespace memkit {
namespace {

namespace os = detail::mapped_file_os;

constexpr const char* prefix = "memkit::mapped_file: ";

std::string quoted(const std::filesystem::path& p) { return '"' + p.string() + '"'; }

const char* mode_name(map_mode m) noexcept {
    switch (m) {
    case map_mode::read_only: return "read_only";
    case map_mode::read_write: return "read_write";
    case map_mode::copy_on_write: return "copy_on_write";
    }
    return "?";
}

const char* open_purpose(map_mode m) noexcept {
    switch (m) {
    case map_mode::read_only: return "for reading";
    case map_mode::read_write: return "for reading and writing";
    case map_mode::copy_on_write: return "for copy-on-write";
    }
    return "";
}

[[noreturn]] MEMKIT_COLD void fail(std::error_code ec, const std::string& what) {
    throw std::system_error(ec, prefix + what);
}

// Closes the descriptor unless released: the constructors' failure paths must not leak it.
struct fd_guard {
    os::file_handle& h;
    bool armed = true;
    ~fd_guard() {
        if (armed) os::close(h);
    }
};

} // namespace

namespace detail::mapped_file_os {

void throw_span_error(const std::filesystem::path& path, std::size_t view_offset, const void* data,
                      std::size_t size, std::size_t elem_size, std::size_t elem_align) {
    std::string what = std::string(prefix) + "as_span of ";
    if (view_offset != no_view)
        what += "the view at offset " + std::to_string(view_offset) + " of ";
    what += quoted(path) + ": ";
    if (size % elem_size != 0) {
        what += std::to_string(size) + " bytes are not a multiple of the element size " +
                std::to_string(elem_size);
        throw std::system_error(make_error_code(errc::bad_size), what);
    }
    const auto misalignment = reinterpret_cast<std::uintptr_t>(data) % elem_align;
    what += "the data lies " + std::to_string(misalignment) +
            " bytes past a multiple of the element alignment " + std::to_string(elem_align);
    throw std::system_error(make_error_code(errc::invalid_alignment), what);
}

} // namespace detail::mapped_file_os

mapped_file::mapped_file(const std::filesystem::path& path, map_mode mode)
    : path_(path), mode_(mode) {
    os::open_request req;
    req.mode = mode;
    if (auto ec = os::open(path_, req, file_))
        fail(ec, "cannot open " + quoted(path_) + " " + open_purpose(mode));
    fd_guard guard{file_};
    map_whole();
    guard.armed = false;
}

mapped_file mapped_file::create(const std::filesystem::path& path, std::size_t size,
                                const mapped_file_options& options) {
    mapped_file f;
    f.path_ = path;
    f.mode_ = map_mode::read_write;
    os::open_request req;
    req.mode = map_mode::read_write;
    req.create = true;
    req.exclusive = options.disposition == file_creation::create_only;
    req.truncate = options.disposition == file_creation::truncate;
    req.permissions = static_cast<unsigned>(options.permissions) & 07777u;
    if (auto ec = os::open(path, req, f.file_)) fail(ec, "cannot create " + quoted(path));
    // From here the destructor of `f` closes the descriptor if anything throws.
    os::file_status st;
    if (auto ec = os::status(f.file_, st)) fail(ec, "cannot stat " + quoted(path));
    if (st.size < size) {
        if (size > static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()))
            fail(std::make_error_code(std::errc::file_too_large),
                 "cannot create " + quoted(path) + " with " + std::to_string(size) +
                     " bytes: too large for the address space");
        if (auto ec = os::set_size(f.file_, size))
            fail(ec, "cannot set the size of " + quoted(path) + " to " + std::to_string(size) +
                         " bytes");
    }
    f.map_whole();
    return f;
}

void mapped_file::map_whole() {
    os::file_status st;
    if (auto ec = os::status(file_, st)) fail(ec, "cannot stat " + quoted(path_));
    if (st.directory)
        fail(std::make_error_code(std::errc::is_a_directory),
             "cannot map " + quoted(path_) + ": it is a directory");
    if (!st.regular)
        fail(std::make_error_code(std::errc::invalid_argument),
             "cannot map " + quoted(path_) + ": not a regular file");
    if (st.size > static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max()))
        fail(std::make_error_code(std::errc::file_too_large),
             "cannot map " + quoted(path_) + ": the file (" + std::to_string(st.size) +
                 " bytes) is too large for the address space");
    const auto size = static_cast<std::size_t>(st.size);
    if (size == 0) { // POSIX mmap rejects a zero length: an empty file is an empty mapping
        data_ = nullptr;
        size_ = 0;
        return;
    }
    void* p = nullptr;
    if (auto ec = os::map(file_, mode_, 0, size, p)) {
        if (ec == std::errc::not_enough_memory)
            fail(ec, "cannot map " + quoted(path_) + ": the file (" + std::to_string(size) +
                         " bytes) is too large for the address space");
        fail(ec, "cannot map " + quoted(path_) + " (" + std::to_string(size) + " bytes, " +
                     mode_name(mode_) + ")");
    }
    data_ = static_cast<std::byte*>(p);
    size_ = size;
}

mapped_file::mapped_file(mapped_file&& other) noexcept
    : path_(std::move(other.path_)), file_(std::exchange(other.file_, {})),
      data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      mode_(other.mode_), locked_(std::exchange(other.locked_, false)) {
    other.path_.clear();
}

mapped_file& mapped_file::operator=(mapped_file&& other) noexcept {
    if (this != &other) {
        close();
        path_ = std::move(other.path_);
        other.path_.clear();
        file_ = std::exchange(other.file_, {});
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        mode_ = other.mode_;
        locked_ = std::exchange(other.locked_, false);
    }
    return *this;
}

mapped_file::~mapped_file() { close(); }

void mapped_file::close() noexcept {
    if (data_ != nullptr) os::unmap(data_, size_); // also drops an mlock
    os::close(file_);
    data_ = nullptr;
    size_ = 0;
    locked_ = false;
    path_.clear();
}

void mapped_file::check_range(const char* what, std::size_t offset, std::size_t length) const {
    if (offset <= size_ && length <= size_ - offset) return;
    throw std::out_of_range(std::string(prefix) + what + " [" + std::to_string(offset) + ", " +
                            (length > std::numeric_limits<std::size_t>::max() - offset
                                 ? std::string("overflow")
                                 : std::to_string(offset + length)) +
                            ") of " + quoted(path_) + " is past the end (size " +
                            std::to_string(size_) + ")");
}

mapped_view mapped_file::view(std::size_t offset, std::size_t length) const {
    check_range("view", offset, length);
    mapped_view v;
    v.path_ = path_;
    v.mode_ = mode_;
    v.offset_ = offset;
    if (length == 0) return v;
    // mmap wants an offset that is a multiple of the granularity: map from the page that holds
    // `offset` and expose the requested bytes from within it.
    const std::size_t aligned = align_down(offset, os::map_granularity());
    const std::size_t lead = offset - aligned;
    void* p = nullptr;
    if (auto ec = os::map(file_, mode_, aligned, lead + length, p))
        fail(ec, "cannot map the view [" + std::to_string(offset) + ", " +
                     std::to_string(offset + length) + ") of " + quoted(path_));
    v.base_ = p;
    v.mapped_length_ = lead + length;
    v.data_ = static_cast<std::byte*>(p) + lead;
    v.size_ = length;
    return v;
}

void mapped_file::resize(std::size_t new_size) {
    if (!is_open() || mode_ != map_mode::read_write)
        fail(make_error_code(errc::invalid_argument),
             "cannot resize " + quoted(path_) +
                 ": resize needs an open read_write mapping (this "
                 "one is " +
                 (is_open() ? mode_name(mode_) : "closed") + ")");
    if (new_size < size_)
        fail(make_error_code(errc::invalid_argument),
             "cannot resize " + quoted(path_) + " to " + std::to_string(new_size) +
                 " bytes: smaller than its mapped size " + std::to_string(size_) +
                 " (resize only grows)");
    if (new_size == size_) return;
    if (new_size > static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()))
        fail(std::make_error_code(std::errc::file_too_large),
             "cannot resize " + quoted(path_) + " to " + std::to_string(new_size) +
                 " bytes: too large for the address space");
    os::file_status st;
    if (auto ec = os::status(file_, st)) fail(ec, "cannot stat " + quoted(path_));
    if (st.size < new_size) { // someone may have grown it further already: never shorten
        if (auto ec = os::set_size(file_, new_size))
            fail(ec,
                 "cannot resize " + quoted(path_) + " to " + std::to_string(new_size) + " bytes");
    }
    // Map the new size before dropping the old mapping, so that a failure leaves *this intact.
    void* p = nullptr;
    if (auto ec = os::map(file_, mode_, 0, new_size, p)) {
        if (ec == std::errc::not_enough_memory)
            fail(ec, "cannot resize " + quoted(path_) + " to " + std::to_string(new_size) +
                         " bytes: too large for the address space");
        fail(ec, "cannot map " + quoted(path_) + " after resizing it to " +
                     std::to_string(new_size) + " bytes");
    }
    if (locked_) {
        if (auto ec = os::lock(p, new_size)) {
            os::unmap(p, new_size);
            fail(ec, "cannot lock " + std::to_string(new_size) + " bytes of " + quoted(path_) +
                         " in RAM after resizing it");
        }
    }
    if (data_ != nullptr) os::unmap(data_, size_);
    data_ = static_cast<std::byte*>(p);
    size_ = new_size;
}

void mapped_file::flush(flush_mode how) { flush(0, size_, how); }

void mapped_file::flush(std::size_t offset, std::size_t length, flush_mode how) {
    check_range("flush", offset, length);
    // Private and read-only mappings have nothing to write back.
    if (length == 0 || mode_ != map_mode::read_write) return;
    const std::size_t aligned = align_down(offset, os::map_granularity());
    if (auto ec = os::flush(data_ + aligned, offset + length - aligned, how))
        fail(ec, "cannot flush [" + std::to_string(offset) + ", " +
                     std::to_string(offset + length) + ") of " + quoted(path_));
}

void mapped_file::advise(access_advice advice) { advise(0, size_, advice); }

void mapped_file::advise(std::size_t offset, std::size_t length, access_advice advice) {
    check_range("advise", offset, length);
    if (length == 0) return;
    const std::size_t aligned = align_down(offset, os::map_granularity());
    if (auto ec = os::advise(data_ + aligned, offset + length - aligned, advice))
        fail(ec, "cannot advise [" + std::to_string(offset) + ", " +
                     std::to_string(offset + length) + ") of " + quoted(path_));
}

void mapped_file::lock() {
    if (!is_open())
        fail(make_error_code(errc::invalid_argument), "cannot lock a closed mapped_file");
    if (locked_) return;
    if (size_ != 0) {
        if (auto ec = os::lock(data_, size_)) {
            const std::size_t limit = os::lock_limit();
            fail(ec, "cannot lock " + std::to_string(size_) + " bytes of " + quoted(path_) +
                         " in RAM (RLIMIT_MEMLOCK is " +
                         (limit == std::numeric_limits<std::size_t>::max()
                              ? std::string("unlimited")
                              : std::to_string(limit) + " bytes") +
                         ")");
        }
    }
    locked_ = true;
}

void mapped_file::unlock() noexcept {
    if (!locked_) return;
    if (size_ != 0) os::unlock(data_, size_);
    locked_ = false;
}

std::uint64_t mapped_file::file_size() const {
    os::file_status st;
    if (auto ec = os::status(file_, st)) fail(ec, "cannot stat " + quoted(path_));
    return st.size;
}

std::error_code mapped_file::read_checked(std::size_t offset,
                                          std::span<std::byte> dest) const noexcept {
    if (!is_open()) return std::make_error_code(std::errc::bad_file_descriptor);
    if (offset > size_ || dest.size() > size_ - offset)
        return std::make_error_code(std::errc::invalid_argument);
    if (dest.empty()) return {};
    os::file_status st;
    if (auto ec = os::status(file_, st)) return ec;
    // Bytes past the file's current end are either zeros (the rest of the last page) or SIGBUS:
    // neither is the data that was there, so both are refused.
    if (st.size < static_cast<std::uint64_t>(offset) + dest.size())
        return std::make_error_code(std::errc::bad_address);
    std::memcpy(dest.data(), data_ + offset, dest.size());
    return {};
}

// mapped_view

mapped_view::mapped_view(mapped_view&& other) noexcept
    : path_(std::move(other.path_)), base_(std::exchange(other.base_, nullptr)),
      mapped_length_(std::exchange(other.mapped_length_, 0)),
      data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      offset_(std::exchange(other.offset_, 0)), mode_(other.mode_) {
    other.path_.clear();
}

mapped_view& mapped_view::operator=(mapped_view&& other) noexcept {
    if (this != &other) {
        reset();
        path_ = std::move(other.path_);
        other.path_.clear();
        base_ = std::exchange(other.base_, nullptr);
        mapped_length_ = std::exchange(other.mapped_length_, 0);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        offset_ = std::exchange(other.offset_, 0);
        mode_ = other.mode_;
    }
    return *this;
}

mapped_view::~mapped_view() { reset(); }

void mapped_view::reset() noexcept {
    os::unmap(base_, mapped_length_);
    base_ = nullptr;
    mapped_length_ = 0;
    data_ = nullptr;
    size_ = 0;
    offset_ = 0;
    path_.clear();
}

void mapped_view::flush(flush_mode how) {
    if (size_ == 0 || mode_ != map_mode::read_write) return;
    if (auto ec = os::flush(base_, mapped_length_, how))
        fail(ec, "cannot flush the view [" + std::to_string(offset_) + ", " +
                     std::to_string(offset_ + size_) + ") of " + quoted(path_));
}

} // namespace memkit
