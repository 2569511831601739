// memkit/vm/shared_memory.hpp - named POSIX shared-memory segments (shm_open) and their
// mapping into this process.
//
// A `shared_memory` is a handle on one named segment, which lives in the kernel (on Linux, a
// file in /dev/shm) until it is removed and the last handle and mapping are gone. A handle owns
// the open descriptor and, unless told otherwise, one read-write (or read-only) mapping of the
// whole segment:
//  * `create(name, size)` makes a new segment (create-only: an existing one is an error naming
//    it), sizes it and zero-fills it (the OS does), with permissions 0600 unless
//    shm_options::permissions says otherwise (set with fchmod, so the umask does not change them);
//  * `open(name)` opens an existing one (missing: an error naming it); its size is the segment's;
//  * `open_or_create(name, size)` does either; `created()` says which happened;
//  * `remove(name)` unlinks a name (static; true if it existed); existing handles and mappings
//    stay valid until closed. `shm_options::remove_on_destroy` (or set_remove_on_destroy) makes
//    the handle remove the name when it is destroyed, and `shm_remover` is a scope guard that
//    only removes a name.
//  * `map(address, placement)` maps the segment again (at the kernel's choice, at a hint, or at
//    exactly `address` with MAP_FIXED_NOREPLACE, an error when the range is taken), `unmap()`
//    drops the mapping. Two handles of one name in one process map it twice, at two addresses
//    that see the same bytes: store offsets (memkit::offset_ptr), not pointers, in the segment.
//
// Names: POSIX wants a leading '/', no other '/', and a length limit; here a name is valid when it
// is '/' followed by 1 to 253 characters, none of them '/' or NUL, and is not "/." or "/..". An
// invalid name is rejected before any system call with shm_errc::invalid_name.
//
// Errors: every failure is a std::system_error (or the derived memkit::shm_error) whose what()
// names the segment and the operation, e.g. `shared_memory::create "/jobs": File exists`. OS
// failures carry the errno in std::system_category (so `e.code() == std::errc::file_exists` for
// create-only on an existing name, std::errc::no_such_file_or_directory for open of a missing
// one, std::errc::permission_denied). memkit's own checks throw shm_error with a code of
// memkit::shm_errc (invalid_name, invalid_size, address_unavailable, ...), whose conditions
// compare equal to the nearest std::errc (invalid_argument, file_exists, ...).
// Failure leaves nothing behind: a create that fails after shm_open unlinks the new name.
//
// Beware: if another process shrinks the segment (ftruncate) while it is mapped here, touching
// the lost pages raises SIGBUS; memkit never shrinks a segment.
//
// Complexity: every call is one to three system calls; data() and size() are O(1).
// Thread-safety: a handle is not thread-safe (like std::fstream); the bytes of the segment are
// shared memory: synchronize access to them yourself (memkit::shm_heap carries a process-shared
// mutex). Distinct handles may be used from distinct threads.
//
//   auto seg = memkit::shared_memory::create("/jobs", 1 << 20, {.remove_on_destroy = true});
//   std::memcpy(seg.data(), "hello", 6);
//   auto other = memkit::shared_memory::open("/jobs");   // another process sees "hello"
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace memkit {

/// Errors found by memkit's shared-memory code itself (OS errors use std::system_category).
enum class shm_errc : int {
    invalid_name = 1,    ///< not "/name": see shared_memory's header comment
    invalid_size,        ///< a size of 0, above what the platform maps, or too small for a heap
    bad_magic,           ///< the segment does not hold a memkit heap (wrong magic number)
    bad_version,         ///< a heap with an incompatible layout version
    size_mismatch,       ///< the heap header records a size the segment does not have
    address_unavailable, ///< the address the heap must be mapped at is taken in this process
    not_initialized,     ///< the creator has not finished initializing the heap (or died doing it)
    type_mismatch,       ///< a named object exists with a different size, alignment or count
    heap_corrupted,      ///< a heap check after a dead lock owner found inconsistent metadata
};

/// The "memkit.shm" error category.
[[nodiscard]] const std::error_category& shm_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(shm_errc e) noexcept {
    return {static_cast<int>(e), shm_category()};
}

/// A shared-memory failure: a std::system_error whose message names the segment, and which
/// keeps the name for programs that want it.
class shm_error : public std::system_error {
public:
    shm_error(std::error_code ec, std::string_view segment, std::string_view what);
    /// The segment's name as given by the caller.
    [[nodiscard]] const std::string& segment() const noexcept { return segment_; }

private:
    std::string segment_;
};

} // namespace memkit

template <>
struct std::is_error_code_enum<memkit::shm_errc> : std::true_type {};

namespace memkit {

/// Read-write (the default) or read-only access to a segment.
enum class shm_access : unsigned char { read_write, read_only };

/// Where map() may place the mapping.
enum class map_placement : unsigned char {
    anywhere, ///< the kernel chooses (the address argument is ignored)
    hint,     ///< try the address, accept another one
    exactly,  ///< the address or an error (shm_errc::address_unavailable); never replaces a mapping
};

struct shm_options {
    unsigned permissions = 0600; ///< mode bits of a segment this call creates
    shm_access access = shm_access::read_write;
    bool remove_on_destroy = false; ///< unlink the name when this handle is destroyed
    bool map = true;                ///< map the whole segment at construction (anywhere)
};

class shared_memory {
public:
    /// The longest valid name, the leading '/' included.
    static constexpr std::size_t max_name_length = 254;

    /// An empty handle: no segment (name() is empty, data() null).
    shared_memory() noexcept = default;

    /// Creates the segment `name` of `size` bytes (zero-filled). Throws shm_error when the name
    /// is invalid or size is 0, std::system_error when it exists (errc::file_exists) or the OS
    /// refuses (permissions, no memory). The access option is ignored: a creator writes.
    [[nodiscard]] static shared_memory create(std::string_view name, std::size_t size,
                                              shm_options opts = {});
    /// Opens the existing segment `name`. Throws std::system_error with
    /// errc::no_such_file_or_directory when it does not exist. A segment that another process
    /// has just created may still have size 0 (it sizes it next): it is then left unmapped.
    [[nodiscard]] static shared_memory open(std::string_view name, shm_options opts = {});
    /// Opens `name`, or creates it with `size` bytes when it does not exist (created() says
    /// which). An existing segment keeps its own size, which may differ from `size`.
    [[nodiscard]] static shared_memory open_or_create(std::string_view name, std::size_t size,
                                                      shm_options opts = {});
    /// Unlinks `name`. True if it existed, false if not; throws for an invalid name or another
    /// OS error (permission denied).
    static bool remove(std::string_view name);
    /// True if a segment named `name` exists (and may be opened by this user or not).
    [[nodiscard]] static bool exists(std::string_view name);

    /// Throws shm_error(invalid_name) naming `name` and the rule it breaks; returns otherwise.
    static void validate_name(std::string_view name);

    shared_memory(shared_memory&& o) noexcept;
    shared_memory& operator=(shared_memory&& o) noexcept;
    shared_memory(const shared_memory&) = delete;
    shared_memory& operator=(const shared_memory&) = delete;
    /// Unmaps, closes, and unlinks the name when remove_on_destroy is set.
    ~shared_memory();

    /// Maps the whole segment (replacing this handle's current mapping, if any). With
    /// map_placement::exactly the mapping is at `address` or the call throws shm_error
    /// (address_unavailable, naming the address) and the handle is left unmapped.
    void map(void* address = nullptr, map_placement placement = map_placement::anywhere);
    /// Drops this handle's mapping (the segment and the descriptor stay).
    void unmap() noexcept;

    [[nodiscard]] bool is_mapped() const noexcept { return data_ != nullptr; }
    /// The mapping's first byte, or nullptr when unmapped.
    [[nodiscard]] void* data() const noexcept { return data_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    /// The mapping as bytes (empty when unmapped).
    [[nodiscard]] std::span<std::byte> bytes() const noexcept {
        return data_ != nullptr ? std::span<std::byte>(static_cast<std::byte*>(data_), size_)
                                : std::span<std::byte>();
    }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] bool created() const noexcept { return created_; }
    [[nodiscard]] shm_access access() const noexcept { return access_; }
    [[nodiscard]] bool remove_on_destroy() const noexcept { return remove_on_destroy_; }
    void set_remove_on_destroy(bool on) noexcept { remove_on_destroy_ = on; }
    /// The OS descriptor (-1 for an empty handle); it stays owned by the handle.
    [[nodiscard]] int native_handle() const noexcept { return fd_; }
    /// The mode bits of the segment now (fstat).
    [[nodiscard]] unsigned permissions() const;

    [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }

private:
    enum class mode : unsigned char { create, open, open_or_create };
    static shared_memory make(std::string_view name, std::size_t size, shm_options opts, mode m);
    void close() noexcept;

    std::string name_;
    int fd_ = -1;
    void* data_ = nullptr;
    std::size_t size_ = 0;
    shm_access access_ = shm_access::read_write;
    bool created_ = false;
    bool remove_on_destroy_ = false;
};

/// Removes a segment name when it goes out of scope (whether or not it was ever created);
/// errors on removal are ignored. Tests and short-lived tools use it to clean up on any exit
/// path short of a crash.
class shm_remover {
public:
    explicit shm_remover(std::string name) noexcept : name_(std::move(name)) {}
    shm_remover(const shm_remover&) = delete;
    shm_remover& operator=(const shm_remover&) = delete;
    ~shm_remover();
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

private:
    std::string name_;
};

namespace detail::shm_os {
// The platform layer (src/vm/posix_shared_memory.cpp on POSIX systems). Every function reports
// failure through the errno value it returns (0: success) and never throws.
enum class open_mode : unsigned char { create_exclusive, open_existing };
int open(const std::string& name, open_mode m, bool read_only, unsigned perms, int& fd) noexcept;
int close(int fd) noexcept;
int unlink(const std::string& name) noexcept;
int exists(const std::string& name, bool& yes) noexcept;
int truncate(int fd, std::size_t size) noexcept;
int size(int fd, std::size_t& size) noexcept;
int mode_bits(int fd, unsigned& bits) noexcept;
int map(int fd, std::size_t size, bool read_only, void* address, map_placement p,
        void*& out) noexcept;
int unmap(void* address, std::size_t size) noexcept;

// A process-shared, robust, recursive mutex in caller-provided storage (in a segment).
inline constexpr std::size_t mutex_storage_size = 64;
enum class lock_result : unsigned char { acquired, owner_died, busy, not_recoverable };
int mutex_init(void* storage) noexcept;
lock_result mutex_lock(void* storage, int& err) noexcept;
lock_result mutex_try_lock(void* storage, int& err) noexcept;
int mutex_consistent(void* storage) noexcept;
int mutex_unlock(void* storage) noexcept;
} // namespace detail::shm_os

} // namespace memkit
