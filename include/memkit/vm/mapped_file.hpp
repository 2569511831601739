// memkit/vm/mapped_file.hpp - a file mapped into memory, with views, flushing, advice and locking.
//
// `mapped_file` maps a whole regular file into the address space: reads and writes are plain
// memory accesses, with no copy into a buffer and no system call per access. It opens a path as
// `read_only`, `read_write` or `copy_on_write` (writes stay in this process and never reach the
// file), or creates one with a size; it can grow the file (`resize`), write dirty pages back
// (`flush`, sync or async, the whole mapping or a range), pass access hints to the kernel
// (`advise`), pin the pages in RAM (`lock`) and hand out typed spans (`as_span<T>`).
// `mapped_view` maps any byte range [offset, offset + length) of the same file on its own: the
// page alignment that mmap needs is handled inside, and the view exposes exactly the bytes asked
// for. The models are mio and Boost.Interprocess (file_mapping + mapped_region).
//
//   memkit::mapped_file f = memkit::mapped_file::create("/tmp/table.bin", 1 << 20);
//   std::span<std::uint64_t> slots = f.as_span<std::uint64_t>();   // 131072 slots, zeroed
//   slots[7] = 42; f.flush();                                       // on disk at return
//
// Modes:
//  * read_only: PROT_READ, shared. Writing through data() raises SIGSEGV.
//  * read_write: PROT_READ | PROT_WRITE, shared: stores reach the page cache at once (visible to
//    every other mapping and to read(2) of the file) and the disk at the next flush or whenever
//    the kernel writes back. The file must be opened with write permission.
//  * copy_on_write: private. Stores change this process's copy only; the file needs only read
//    permission and is never modified. Until a page is first written, changes made to the file by
//    others may or may not show through (POSIX leaves it unspecified; Linux shows them).
//
// Creation (`create(path, size, options)`, always read_write):
//  * file_creation::create_only fails with std::errc::file_exists if the path exists;
//  * file_creation::open_or_create (default) creates a missing file with `size` zero bytes; an
//    existing one keeps its contents and is extended with zeros to `size` if it is shorter (it is
//    never shortened);
//  * file_creation::truncate empties an existing file, then sizes it to `size` (all zeros).
//  A new file gets `options.permissions` (0644 by default), minus the process umask.
//
// Empty files map as empty, not as an error: size() == 0, data() == nullptr (no mmap is made,
// since POSIX mmap rejects a zero length), every span and view of it is empty, flush, advise and
// lock do nothing, and resize can grow it.
//
// Complexity: opening, view() and resize() are O(1) system calls (open, fstat, mmap); pages are
// loaded lazily, one minor page fault on the first touch of a cached page (the kernel maps its
// neighbours in the same fault), a read from disk if it is not cached; advise(will_need) or lock()
// load them up front. After that an access is a plain load or store. flush is O(dirty pages in
// the range); closing is O(mapped pages).
//
// Pointer stability: data(), bytes() and every span from as_span() stay valid until resize(),
// move-assignment over the object or its destruction. resize() maps the file again, usually at
// another address, so it invalidates all of them. Views are separate mappings: a mapped_view
// stays valid after resize(), after the mapped_file is moved or destroyed, and shows the same
// bytes (in copy_on_write mode a view is a second private copy: stores made through the file's
// mapping are not visible in it and vice versa). data(), bytes() and as_span() are deleted on
// rvalues: `mapped_file(p).bytes()` or `f.view(0, n).as_span<T>()` would outlive their mapping.
//
// Truncation by someone else (SIGBUS): if another process (or another descriptor in this one)
// shortens the file while it is mapped, any access to a mapped page that now lies entirely
// past the end of the file raises SIGBUS, and the bytes between the new end and the end of its
// page read as zeros. No mapping library can turn that signal into an exception safely. When the
// file may be truncated concurrently, read through `read_checked(offset, dest)`: it asks the OS
// for the current file size (fstat) first and returns std::errc::bad_address instead of touching
// bytes that are gone. This narrows the window to the time between that check and the copy; it
// does not close it. Where truncation must be tolerated completely, coordinate the writers (file
// locks, an agreed protocol) or read with pread(2).
//
// Errors: everything the OS refuses is a std::system_error whose code is the errno
// (std::generic_category) and whose what() names the operation and the path, e.g.
// `memkit::mapped_file: cannot open "/data/x.bin" for reading: No such file or directory`:
//  * a missing file: std::errc::no_such_file_or_directory;
//  * permission denied: std::errc::permission_denied;
//  * a directory: std::errc::is_a_directory; any other non-regular file (FIFO, device, socket):
//    std::errc::invalid_argument;
//  * a file too large for the address space: std::errc::not_enough_memory (mmap's ENOMEM) or,
//    above PTRDIFF_MAX bytes, std::errc::file_too_large; the message says "too large for the
//    address space" and gives the size;
//  * lock() beyond RLIMIT_MEMLOCK: std::errc::not_enough_memory, or std::errc::operation_not_
//    permitted when the limit is 0; the message gives the limit.
// Misuse is reported with memkit::errc codes, also as std::system_error with the path in the
// message: as_span<T>() over a size that is not a multiple of sizeof(T) (errc::bad_size) or at an
// address not aligned to alignof(T) (errc::invalid_alignment), resize() to a smaller size or on
// a mapping that is not read_write (errc::invalid_argument). A range past the end (view, flush
// or advise of [offset, offset + length) with offset + length > size()) throws std::out_of_range,
// like at() in the standard containers; its message names the path, the range and the size.
// A failed call leaves the object unchanged (a failed resize may have extended the file already;
// a failed create may leave the file it created).
//
// Thread-safety: not thread-safe for mutation (resize, lock/unlock, move-assignment, closing):
// like the standard containers, concurrent const access is fine, and any number of threads may
// read (or write disjoint bytes of) the mapped memory at the same time. Synchronising accesses
// to the same bytes is the caller's job, as with any shared memory.
// Move-only: a moved-from mapped_file is closed (is_open() == false, size() == 0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>

#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"

namespace memkit {

/// How a file is mapped (see the header comment for what each means).
enum class map_mode { read_only, read_write, copy_on_write };

/// What create() does with a path that exists or does not.
enum class file_creation {
    create_only,    ///< fail with std::errc::file_exists if the path exists
    open_or_create, ///< create if missing; keep an existing file's contents, growing it to size
    truncate,       ///< create if missing; empty an existing file, then size it
};

/// Options of mapped_file::create.
struct mapped_file_options {
    file_creation disposition = file_creation::open_or_create;
    /// Permissions of a newly created file (the process umask is applied by the OS).
    std::filesystem::perms permissions =
        std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
        std::filesystem::perms::group_read | std::filesystem::perms::others_read;
};

/// Whether flush() waits for the write-back (msync MS_SYNC) or only schedules it (MS_ASYNC).
enum class flush_mode { sync, async };

/// Access pattern hints for advise() (madvise). `dont_need` on a copy_on_write mapping discards
/// the private changes of the range: the pages are read from the file again on next access.
enum class access_advice { normal, sequential, random, will_need, dont_need };

namespace detail::mapped_file_os {

// The platform layer: one implementation per OS (src/vm/posix_mapped_file.cpp for POSIX). Every
// function reports failure through its return value (an errno-style std::error_code) so that the
// portable part (src/vm/mapped_file.cpp) writes every message the same way.
struct file_handle {
    int fd = -1;
};
struct open_request {
    map_mode mode = map_mode::read_only;
    bool create = false;
    bool exclusive = false; // with create: fail if the path exists
    bool truncate = false;
    unsigned permissions = 0644;
};
struct file_status {
    std::uint64_t size = 0;
    bool regular = false;
    bool directory = false;
};

std::error_code open(const std::filesystem::path& path, const open_request& req,
                     file_handle& out) noexcept;
void close(file_handle& h) noexcept;
std::error_code status(file_handle h, file_status& out) noexcept;
std::error_code set_size(file_handle h, std::uint64_t size) noexcept;
/// The alignment a mapping offset must have (the page size on POSIX; 64 KiB on Windows).
std::size_t map_granularity() noexcept;
std::error_code map(file_handle h, map_mode mode, std::uint64_t offset, std::size_t length,
                    void*& out) noexcept;
void unmap(void* addr, std::size_t length) noexcept;
std::error_code flush(void* addr, std::size_t length, flush_mode mode) noexcept;
std::error_code advise(void* addr, std::size_t length, access_advice advice) noexcept;
std::error_code lock(void* addr, std::size_t length) noexcept;
void unlock(void* addr, std::size_t length) noexcept;
/// The soft RLIMIT_MEMLOCK in bytes, or SIZE_MAX when unlimited or unknown.
std::size_t lock_limit() noexcept;

// The cold path of as_span: throws std::system_error (errc::bad_size or invalid_alignment) with
// the path, and the view's offset unless view_offset is no_view.
inline constexpr std::size_t no_view = static_cast<std::size_t>(-1);
[[noreturn]] MEMKIT_COLD void throw_span_error(const std::filesystem::path& path,
                                               std::size_t view_offset, const void* data,
                                               std::size_t size, std::size_t elem_size,
                                               std::size_t elem_align);

} // namespace detail::mapped_file_os

class mapped_view;

/// A regular file mapped into memory. See the header comment for modes, errors and stability.
class mapped_file {
public:
    /// A closed mapping (is_open() == false).
    mapped_file() noexcept = default;

    /// Opens and maps an existing file.
    explicit mapped_file(const std::filesystem::path& path, map_mode mode = map_mode::read_only);

    /// Same as the constructor.
    [[nodiscard]] static mapped_file open(const std::filesystem::path& path,
                                          map_mode mode = map_mode::read_only) {
        return mapped_file(path, mode);
    }

    /// Creates (or opens, per options.disposition) a file of `size` bytes and maps it read_write.
    [[nodiscard]] static mapped_file create(const std::filesystem::path& path, std::size_t size,
                                            const mapped_file_options& options = {});

    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;
    mapped_file(mapped_file&& other) noexcept;
    mapped_file& operator=(mapped_file&& other) noexcept;
    ~mapped_file();

    /// Unmaps and closes (unflushed writes of a read_write mapping still reach the file: the page
    /// cache keeps them). No-op when closed.
    void close() noexcept;

    [[nodiscard]] bool is_open() const noexcept { return file_.fd >= 0; }
    [[nodiscard]] map_mode mode() const noexcept { return mode_; }
    [[nodiscard]] bool writable() const noexcept { return mode_ != map_mode::read_only; }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

    /// The first mapped byte; nullptr when the file is empty or the object is closed.
    [[nodiscard]] std::byte* data() & noexcept { return data_; }
    [[nodiscard]] const std::byte* data() const& noexcept { return data_; }
    void data() && = delete; // the mapping dies with a temporary: no dangling pointers
    /// Bytes mapped: the file's size when it was mapped (or last resized).
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::span<std::byte> bytes() & noexcept { return {data_, size_}; }
    [[nodiscard]] std::span<const std::byte> bytes() const& noexcept { return {data_, size_}; }
    void bytes() && = delete;

    /// The whole mapping as elements of T. Throws std::system_error (errc::bad_size) if size()
    /// is not a multiple of sizeof(T), (errc::invalid_alignment) if data() is not aligned to
    /// alignof(T) (possible only when alignof(T) exceeds the page size).
    template <class T>
    [[nodiscard]] std::span<T> as_span() & {
        static_assert(std::is_trivially_copyable_v<T>,
                      "mapped bytes can only be trivially copyable");
        return {static_cast<T*>(checked_span(data_, size_, sizeof(T), alignof(T))),
                size_ / sizeof(T)};
    }
    template <class T>
    [[nodiscard]] std::span<const T> as_span() const& {
        static_assert(std::is_trivially_copyable_v<T>,
                      "mapped bytes can only be trivially copyable");
        return {static_cast<const T*>(checked_span(data_, size_, sizeof(T), alignof(T))),
                size_ / sizeof(T)};
    }
    template <class T>
    void as_span() && = delete; // a span of a temporary's mapping would dangle

    /// Maps [offset, offset + length) on its own (see mapped_view). Throws std::out_of_range if
    /// offset + length > size(), std::system_error if the OS refuses the mapping.
    [[nodiscard]] mapped_view view(std::size_t offset, std::size_t length) const;

    /// Grows the file to `new_size` bytes (zeros) and maps it again: invalidates data(), bytes()
    /// and spans (views stay valid). Keeps the lock if the mapping was locked. read_write only.
    /// Equal size: no-op. Throws std::system_error (errc::invalid_argument) for a smaller size or
    /// another mode; (errno) when the file cannot grow or be mapped.
    void resize(std::size_t new_size);

    /// Writes dirty pages back to the file: flush_mode::sync returns when they are on the device,
    /// async only starts the write-back. The range form rounds [offset, offset + length) out to
    /// whole pages. Nothing to do for read_only and copy_on_write mappings (they return at once).
    void flush(flush_mode how = flush_mode::sync);
    void flush(std::size_t offset, std::size_t length, flush_mode how = flush_mode::sync);

    /// Tells the kernel how the mapping (or a range of it, rounded out to pages) will be used.
    void advise(access_advice advice);
    void advise(std::size_t offset, std::size_t length, access_advice advice);

    /// Pins every page of the mapping in RAM (mlock), loading them first. Throws std::system_error
    /// with std::errc::not_enough_memory / operation_not_permitted when RLIMIT_MEMLOCK is too
    /// small (the message gives the limit). unlock() is a no-op if not locked.
    void lock();
    void unlock() noexcept;
    [[nodiscard]] bool locked() const noexcept { return locked_; }

    /// The file's size now, asked from the OS (it differs from size() if the file changed).
    [[nodiscard]] std::uint64_t file_size() const;

    /// Copies dest.size() bytes at `offset` into `dest` after checking with the OS that the file
    /// still holds them, so that a file truncated by someone else gives an error instead of
    /// SIGBUS (see the header comment for the window this leaves). Returns {} on success,
    /// std::errc::invalid_argument if the range is past size(), std::errc::bad_address if it is
    /// past the file's current end, or the OS error of fstat.
    [[nodiscard]] std::error_code read_checked(std::size_t offset,
                                               std::span<std::byte> dest) const noexcept;

private:
    friend class mapped_view;

    void* checked_span(void* p, std::size_t size, std::size_t elem_size,
                       std::size_t elem_align) const {
        if (MEMKIT_UNLIKELY(size % elem_size != 0 ||
                            reinterpret_cast<std::uintptr_t>(p) % elem_align != 0))
            detail::mapped_file_os::throw_span_error(path_, detail::mapped_file_os::no_view, p,
                                                     size, elem_size, elem_align);
        return p;
    }
    void map_whole();
    void check_range(const char* what, std::size_t offset, std::size_t length) const;

    std::filesystem::path path_;
    detail::mapped_file_os::file_handle file_;
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    map_mode mode_ = map_mode::read_only;
    bool locked_ = false;
};

/// A mapping of the byte range [offset, offset + length) of a file, made by mapped_file::view().
/// It holds its own page-aligned mapping (from offset rounded down to the mapping granularity)
/// and exposes exactly the requested bytes; it does not need the mapped_file to stay alive.
/// data() is aligned only as much as `offset` is (a view at offset 3 has data() % 4 == 3 when
/// the page is 4-aligned), which as_span<T>() checks. Move-only; a moved-from view is empty.
///
///   memkit::mapped_view v = file.view(1000, 24);   // maps page 0, exposes bytes 1000..1023
///   std::memcpy(&header, v.data(), v.size());
class mapped_view {
public:
    mapped_view() noexcept = default;
    mapped_view(const mapped_view&) = delete;
    mapped_view& operator=(const mapped_view&) = delete;
    mapped_view(mapped_view&& other) noexcept;
    mapped_view& operator=(mapped_view&& other) noexcept;
    ~mapped_view();

    [[nodiscard]] std::byte* data() & noexcept { return data_; }
    [[nodiscard]] const std::byte* data() const& noexcept { return data_; }
    void data() && = delete; // the mapping dies with a temporary: no dangling pointers
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    /// Offset of data() in the file.
    [[nodiscard]] std::size_t offset() const noexcept { return offset_; }
    [[nodiscard]] map_mode mode() const noexcept { return mode_; }
    [[nodiscard]] std::span<std::byte> bytes() & noexcept { return {data_, size_}; }
    [[nodiscard]] std::span<const std::byte> bytes() const& noexcept { return {data_, size_}; }
    void bytes() && = delete;

    /// The view as elements of T; same checks and errors as mapped_file::as_span.
    template <class T>
    [[nodiscard]] std::span<T> as_span() & {
        static_assert(std::is_trivially_copyable_v<T>,
                      "mapped bytes can only be trivially copyable");
        return {static_cast<T*>(checked_span(data_, sizeof(T), alignof(T))), size_ / sizeof(T)};
    }
    template <class T>
    [[nodiscard]] std::span<const T> as_span() const& {
        static_assert(std::is_trivially_copyable_v<T>,
                      "mapped bytes can only be trivially copyable");
        return {static_cast<const T*>(checked_span(data_, sizeof(T), alignof(T))),
                size_ / sizeof(T)};
    }
    template <class T>
    void as_span() && = delete; // a span of a temporary's mapping would dangle

    /// Writes the view's dirty pages back (see mapped_file::flush). No-op unless read_write.
    void flush(flush_mode how = flush_mode::sync);

    /// Unmaps; the view becomes empty.
    void reset() noexcept;

private:
    friend class mapped_file;

    void* checked_span(void* p, std::size_t elem_size, std::size_t elem_align) const {
        if (MEMKIT_UNLIKELY(size_ % elem_size != 0 ||
                            reinterpret_cast<std::uintptr_t>(p) % elem_align != 0))
            detail::mapped_file_os::throw_span_error(path_, offset_, p, size_, elem_size,
                                                     elem_align);
        return p;
    }

    std::filesystem::path path_; // for error messages
    void* base_ = nullptr;       // the page-aligned mapping
    std::size_t mapped_length_ = 0;
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t offset_ = 0;
    map_mode mode_ = map_mode::read_only;
};

} // namespace memkit
