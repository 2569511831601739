// memkit/vm/region_store.hpp - named, page-aligned memory regions in one mapped file (or in
// anonymous memory), with a checked on-disk format, a lifecycle, and locked zero-copy access.
//
// A `region_store` holds a fixed set of named regions declared by a `region_layout` (name, size
// and optionally an alignment, built in code or parsed from "name size" lines). Every region
// starts on its own page, no two regions overlap, and the sum of their page-rounded sizes is
// capped by `region_store_options::limit`. The store is either backed by a file (mapped with
// memkit::mapped_file, so the data persists and is shared with every other mapping of the file)
// or anonymous (private memory that disappears with the store). Readers get the region's bytes
// in place, with no copy: `read()` returns a guard that holds the region's shared lock and
// exposes a `std::span<const std::byte>`; writers copy in with `write(name, offset, bytes)` or
// edit in place through the guard that `write(name)` returns, under the region's exclusive lock.
// The models are LMDB's file layout (a header with a magic, a version and checksums, verified
// before anything is trusted) and Boost.Interprocess's managed_mapped_file.
//
//   memkit::region_layout layout; layout.add("index", 64 << 10).add("blobs", 8 << 20);
//   auto store = memkit::region_store::open_or_create("/var/lib/app/data.mks", layout);
//   store.activate(); store.write("index", 0, bytes); store.flush();   // durable at return
//
// Lifecycle (region_store_state):
//   created  - made by create() (a new file of zeros) or anonymous();
//   loaded   - made by open() from an existing file whose header and checksums were verified;
//   active   - after activate(): the only state in which read() and write() are allowed;
//   closed   - after close() (which flushes a file-backed store first).
// open_or_create() yields created or loaded, whichever it did. Calls outside their states throw
// region_store_error with kind() == region_error::wrong_state and state() == the current state:
// read or write before activate() or after close(), activate() twice or after close(), flush()
// or close() after close(). Metadata (find, contains, regions, stats, layout) works in every
// state. The destructor closes an open store and swallows a failing flush (call close() or
// flush() first to see such errors).
//
// File format (version 1; fields in the machine's byte order, which the byte-order mark checks):
//   [0, 128)            file header: magic "MEMKITRS", format version, byte-order mark, page
//                       size, region count, header size, file size, 64-bit layout hash, flush
//                       generation, CRC32C of the header and region table, and a "dirty" word;
//   [128, ...)          region table: per region its name (up to 63 bytes), offset, size,
//                       alignment and the CRC32C of its contents at the last flush;
//   header_bytes()      (a page multiple) first region, then each region at the next offset that
//                       is a multiple of the page size and of its alignment.
// flush() writes back the regions written since the last flush, recomputes their checksums,
// clears the dirty word and writes the header (msync MS_SYNC: on the device at return). The first
// write after a flush sets the dirty word in the mapped header, so a file whose writer stopped
// between a write and the next flush (crashed, killed, power loss) is recognised on open. Data
// written before a flush() survives the writing process being killed (SIGKILL) and, once flush()
// returned, a power loss.
//
// Verification on open (every failure is a region_store_error; nothing is ever silently reused):
//   not_a_store         the file is shorter than a header or does not start with the magic;
//   unsupported_version another format version or the other byte order;
//   corrupted           header checksum mismatch, impossible header fields, a file shorter than
//                       the header says, or (with verify_checksums) a region whose contents do
//                       not match its checksum; the message names the region and both values;
//   layout_mismatch     the file was made for another layout: the message says what differs
//                       (region count, a name, a size, an alignment, an offset or the page size);
//   unflushed           (with verify_checksums) the dirty word is set: the store was written
//                       after its last flush; the message lists the regions whose contents no
//                       longer match. Open with verify_checksums = false to take the data as is.
//
// Errors: region_store_error derives from std::system_error. kind() says what happened,
// state() the store's state at the time, region() the region concerned (or ""), code() is a
// memkit::errc value, and what() is the message alone (no code description appended):
//   kind                 code                 when
//   wrong_state          invalid_argument     call not allowed in the current state
//   unknown_region       invalid_argument     no region of that name: `no region named "x"
//                                             (regions: a, b)`, or a region_id out of range
//   duplicate_region     invalid_argument     a layout names a region twice
//   invalid_layout       bad_size             size 0, a size that does not parse
//                        invalid_alignment    alignment not a power of two or above the page
//                        invalid_argument     name empty, over 63 bytes or with a NUL; a line
//                                             with the wrong number of fields; no regions
//   limit_exceeded       limit_exceeded       the layout's page-rounded total exceeds
//                                             options.limit (the message gives both)
//   out_of_range         invalid_argument     write(name, offset, bytes) past the region's end
//   still_in_use         still_in_use         close() while a read or write guard is alive
//   layout_mismatch,     invalid_argument     see "Verification on open"
//   unsupported_version
//   not_a_store,         corruption_detected  see "Verification on open"
//   corrupted, unflushed
// Parser errors start with "layout line N: ". Messages quote names with control characters
// written as \xNN.
// Operating-system failures (missing file, permission denied, no space) propagate as the
// std::system_error of memkit::mapped_file, whose message names the path. A failed call leaves
// the store as it was (a failed create may leave the file it created).
//
// Concurrency: any number of threads may call read(), write() and flush() at the same time.
// Each region has its own reader-writer lock (detail::region_lock, one atomic word on its own
// cache line): readers share it, writers exclude everyone. An uncontended read is a hash lookup
// (by name) or an index (by region_id) plus one atomic read-modify-write of the lock, well under
// a microsecond (see bench/vm/region_store_bench.cpp).
//  * Why not a seqlock: its readers must validate after reading, which a span handed to the
//    caller cannot do, and reading bytes that a writer is changing is a data race in C++. The
//    guard keeps the read correct for as long as the caller uses the span.
//  * The lock prefers writers: a writer waits only for the readers already inside, so a region
//    read without pause still gets written (std::shared_mutex on glibc prefers readers and
//    starves the writer in that case). Readers wait while a writer is queued or inside.
//  * flush() takes every region's lock shared, in index order: it waits for writers and holds
//    off new ones while it runs, without stopping readers.
//  * The locks live in the region_store object, not in the file: two stores over the same file
//    (in one process or in two) do not synchronise, and each keeps its own dirty flags, so a
//    store file must have one writer at a time (another process that maps it sees the writes at
//    once, without locking).
//  * Lifecycle calls (activate, close, move, destruction) must not run concurrently with anything
//    else on the store. A thread that holds a guard must not call flush() or close() (flush would
//    wait for itself; close throws still_in_use), nor take a second guard of the same region.
//
// Complexity: create is O(regions + header) plus the checksum of the empty regions (a zero
// buffer, no page touched); open is O(regions) for the header and O(total bytes) for the
// checksums when verify_checksums is set (CRC32C, hardware-accelerated where the CPU has SSE4.2);
// read/write by region_id O(1), by name one hash lookup; write(name, offset, bytes) O(bytes);
// flush O(bytes of the regions written since the last flush) plus the msync.
//
// Pointer stability: a region's bytes stay at the same address from create/open until close()
// or destruction (moving the store keeps them). Spans from a guard are valid while the guard
// lives; guard methods are deleted on rvalues so that `store.read(n).bytes()` cannot escape its
// lock. Accessing a file-backed region after another process truncated the file raises SIGBUS
// (see mapped_file).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"
#include "memkit/vm/mapped_file.hpp"

namespace memkit {

/// The lifecycle states of a region_store (see the header comment).
enum class region_store_state : std::uint8_t { created, loaded, active, closed };

/// "created", "loaded", "active" or "closed".
[[nodiscard]] const char* to_string(region_store_state s) noexcept;

/// What a region_store_error reports (see the table in the header comment).
enum class region_error : std::uint8_t {
    wrong_state,
    unknown_region,
    duplicate_region,
    invalid_layout,
    limit_exceeded,
    out_of_range,
    still_in_use,
    not_a_store,
    unsupported_version,
    corrupted,
    layout_mismatch,
    unflushed,
};

/// "wrong_state", "unknown_region", ...
[[nodiscard]] const char* to_string(region_error e) noexcept;

/// The exception every region_store and region_layout failure throws (except the OS errors of
/// mapped_file). Copying it never throws.
class region_store_error : public std::system_error {
public:
    region_store_error(region_error kind, std::error_code code, region_store_state state,
                       std::string_view region, const std::string& message);

    /// The message alone (std::system_error would append the code's generic description).
    [[nodiscard]] const char* what() const noexcept override { return text_->message.c_str(); }
    [[nodiscard]] region_error kind() const noexcept { return kind_; }
    /// The store's state when the error happened: created for layout errors (there is no store
    /// yet), closed for failures of create() and open() (the store never opened).
    [[nodiscard]] region_store_state state() const noexcept { return state_; }
    /// The region concerned, or "" when none is.
    [[nodiscard]] const std::string& region() const noexcept { return text_->region; }

private:
    struct text {
        std::string region;
        std::string message;
    };
    std::shared_ptr<const text> text_; // shared: copies stay noexcept
    region_error kind_;
    region_store_state state_;
};

/// One region of a layout. alignment 0 means the page size; any other value must be a power of
/// two no larger than the page size (regions always start on a page).
struct region_spec {
    std::string name;
    std::size_t size = 0;
    std::size_t alignment = 0;

    friend bool operator==(const region_spec&, const region_spec&) = default;
};

/// An ordered list of uniquely named regions. Order matters: it fixes the regions' offsets, so
/// a file opened with the same regions in another order is a layout_mismatch.
///
///   memkit::region_layout l{{"index", 4096}, {"blobs", 1 << 20}};
///   l.add("log", 64 << 10);
///   auto l2 = memkit::region_layout::parse("index 4K\nblobs 1M\n# comment\nlog 64K 4096\n");
class region_layout {
public:
    /// Longest region name in bytes (the file's region table has 64 bytes per name).
    static constexpr std::size_t max_name_length = 63;

    region_layout() = default;
    /// Adds each spec in order; throws like add().
    region_layout(std::initializer_list<region_spec> specs);

    /// Appends a region. Throws region_store_error: duplicate_region if the name is taken,
    /// invalid_layout for an empty or too long name, a name with a NUL, size 0 or a bad alignment.
    region_layout& add(std::string_view name, std::size_t size, std::size_t alignment = 0);

    /// Parses one region per line: `name size [alignment]`, separated by blanks. Sizes and
    /// alignments are decimal with an optional binary suffix (K, M, G, T, or KiB, MiB, GiB, TiB).
    /// Blank lines and text after '#' are ignored. Errors are those of add() plus invalid_layout
    /// for a line that does not parse; every message gives the line number.
    [[nodiscard]] static region_layout parse(std::string_view text);

    [[nodiscard]] std::span<const region_spec> regions() const noexcept { return specs_; }
    [[nodiscard]] std::size_t size() const noexcept { return specs_.size(); }
    [[nodiscard]] bool empty() const noexcept { return specs_.empty(); }
    [[nodiscard]] bool contains(std::string_view name) const noexcept;

    friend bool operator==(const region_layout&, const region_layout&) = default;

private:
    std::vector<region_spec> specs_;
};

/// Options of the region_store factories.
struct region_store_options {
    /// Upper bound on the sum of the regions' page-rounded sizes (the header is not counted).
    std::size_t limit = std::size_t{1} << 30;
    /// open(): verify every region's checksum and refuse a store that was not flushed after its
    /// last write. false: only the header, the layout and the file size are checked, in O(regions).
    bool verify_checksums = true;
    /// Permissions of a newly created file (the process umask applies).
    std::filesystem::perms permissions =
        std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;
};

/// Where a region lies and how big it is (region_store::regions()).
struct region_info {
    std::string name;
    std::size_t offset = 0;     ///< from the start of the file (anonymous: of the mapping)
    std::size_t size = 0;       ///< as declared
    std::size_t capacity = 0;   ///< size rounded up to the page: the bytes it occupies
    std::size_t alignment = 0;  ///< as declared (0: page)
    std::uint32_t checksum = 0; ///< CRC32C at the last flush, or at open (file-backed only)
};

/// Totals of a region_store (region_store::stats()).
struct region_store_stats {
    std::size_t region_count = 0;
    std::size_t region_bytes = 0;   ///< sum of declared sizes
    std::size_t reserved_bytes = 0; ///< sum of page-rounded sizes: what the limit applies to
    std::size_t header_bytes = 0;   ///< 0 for an anonymous store
    std::size_t mapped_bytes = 0;   ///< header + regions: the file's (or mapping's) size
    std::size_t limit = 0;
    std::uint64_t generation = 0;  ///< number of flushes that wrote the header (file-backed)
    std::size_t dirty_regions = 0; ///< written since the last flush
};

/// A region resolved once with find(), for lookups without hashing. Valid for the store that
/// made it (a region_id of another store is not checked beyond its index range).
struct region_id {
    std::uint32_t index = 0;
    friend bool operator==(region_id, region_id) = default;
};

namespace detail {

/// The per-region reader-writer lock: one atomic word, readers counted in the low 31 bits, bit 31
/// held by the writer from the moment it asks. It prefers writers: once a writer has set its bit,
/// new readers back out and wait, and the writer waits only for the readers already inside.
/// (std::shared_mutex on glibc prefers readers, so a region that is read without pause never
/// lets its writer in; the concurrency test starved that way.) An uncontended lock_shared is one
/// fetch_add, unlock_shared one fetch_sub; waiting uses std::atomic::wait (a futex on Linux).
/// Meets the SharedLockable requirements, so std::shared_lock and std::unique_lock work with it.
class region_lock {
public:
    void lock_shared() noexcept {
        if (MEMKIT_LIKELY((state_.fetch_add(1, std::memory_order_acquire) & writer) == 0)) return;
        lock_shared_slow();
    }
    [[nodiscard]] bool try_lock_shared() noexcept {
        if ((state_.fetch_add(1, std::memory_order_acquire) & writer) == 0) return true;
        leave();
        return false;
    }
    void unlock_shared() noexcept { leave(); }

    void lock() noexcept;
    [[nodiscard]] bool try_lock() noexcept {
        std::uint32_t expected = 0;
        return state_.compare_exchange_strong(expected, writer, std::memory_order_acquire,
                                              std::memory_order_relaxed);
    }
    void unlock() noexcept {
        // Readers that are backing out may still be counted: only the writer bit goes.
        state_.fetch_sub(writer, std::memory_order_release);
        state_.notify_all();
    }

private:
    static constexpr std::uint32_t writer = std::uint32_t{1} << 31;

    void leave() noexcept {
        // The last reader out while a writer waits wakes it.
        if (state_.fetch_sub(1, std::memory_order_release) - 1 == writer) state_.notify_all();
    }
    MEMKIT_NOINLINE void lock_shared_slow() noexcept;

    std::atomic<std::uint32_t> state_{0};
};

// One region's runtime state, on its own cache line so that readers of neighbouring regions do
// not bounce each other's lock.
struct alignas(cache_line_size) region_slot {
    std::byte* data = nullptr;
    std::size_t size = 0;
    mutable region_lock lock;
    bool dirty = false; // guarded by `lock`: set under the exclusive lock, cleared by flush
};

/// CRC32C (Castagnoli) of `bytes`, continuing from `crc` (0 to start): hardware instructions
/// where the CPU has them, else the portable version. crc32c("123456789") == 0xE3069283.
[[nodiscard]] std::uint32_t crc32c(std::span<const std::byte> bytes,
                                   std::uint32_t crc = 0) noexcept;
/// The table-driven version (slicing by 8), for tests and for CPUs without CRC instructions.
[[nodiscard]] std::uint32_t crc32c_portable(std::span<const std::byte> bytes,
                                            std::uint32_t crc = 0) noexcept;

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

} // namespace detail

/// A region's bytes under its shared lock (region_store::read). Move-only; unlocks when
/// destroyed or on unlock(). Accessors are deleted on rvalues: the span must not outlive the lock.
class region_read_guard {
public:
    region_read_guard() noexcept = default;
    region_read_guard(region_read_guard&& o) noexcept
        : lock_(std::exchange(o.lock_, nullptr)), bytes_(std::exchange(o.bytes_, {})) {}
    region_read_guard& operator=(region_read_guard&& o) noexcept {
        if (this != &o) {
            unlock();
            lock_ = std::exchange(o.lock_, nullptr);
            bytes_ = std::exchange(o.bytes_, {});
        }
        return *this;
    }
    ~region_read_guard() { unlock(); }

    [[nodiscard]] std::span<const std::byte> bytes() const& noexcept { return bytes_; }
    void bytes() const&& = delete;
    [[nodiscard]] const std::byte* data() const& noexcept { return bytes_.data(); }
    void data() const&& = delete;
    [[nodiscard]] std::size_t size() const noexcept { return bytes_.size(); }
    // NOLINTNEXTLINE(google-explicit-constructor): a guard reads as the span it guards
    operator std::span<const std::byte>() const& noexcept { return bytes_; }
    operator std::span<const std::byte>() const&& = delete;
    [[nodiscard]] explicit operator bool() const noexcept { return lock_ != nullptr; }

    /// Releases the lock early; the guard becomes empty.
    void unlock() noexcept {
        if (lock_ != nullptr) {
            std::exchange(lock_, nullptr)->unlock_shared();
            bytes_ = {};
        }
    }

private:
    friend class region_store;
    explicit region_read_guard(const detail::region_slot& s) noexcept
        : lock_(&s.lock), bytes_(s.data, s.size) {}
    detail::region_lock* lock_ = nullptr;
    std::span<const std::byte> bytes_;
};

/// A region's bytes under its exclusive lock (region_store::write(name)): edit them in place.
/// Move-only; unlocks when destroyed or on unlock().
class region_write_guard {
public:
    region_write_guard() noexcept = default;
    region_write_guard(region_write_guard&& o) noexcept
        : lock_(std::exchange(o.lock_, nullptr)), bytes_(std::exchange(o.bytes_, {})) {}
    region_write_guard& operator=(region_write_guard&& o) noexcept {
        if (this != &o) {
            unlock();
            lock_ = std::exchange(o.lock_, nullptr);
            bytes_ = std::exchange(o.bytes_, {});
        }
        return *this;
    }
    ~region_write_guard() { unlock(); }

    [[nodiscard]] std::span<std::byte> bytes() const& noexcept { return bytes_; }
    void bytes() const&& = delete;
    [[nodiscard]] std::byte* data() const& noexcept { return bytes_.data(); }
    void data() const&& = delete;
    [[nodiscard]] std::size_t size() const noexcept { return bytes_.size(); }
    [[nodiscard]] explicit operator bool() const noexcept { return lock_ != nullptr; }

    void unlock() noexcept {
        if (lock_ != nullptr) {
            std::exchange(lock_, nullptr)->unlock();
            bytes_ = {};
        }
    }

private:
    friend class region_store;
    explicit region_write_guard(detail::region_slot& s) noexcept
        : lock_(&s.lock), bytes_(s.data, s.size) {}
    detail::region_lock* lock_ = nullptr;
    std::span<std::byte> bytes_;
};

/// A set of named regions in a mapped file or anonymous memory. See the header comment.
class region_store {
public:
    /// The on-disk format version this build writes and reads.
    static constexpr std::uint32_t format_version = 1;

    /// A new file at `path` (which must not exist: std::system_error file_exists otherwise) with
    /// every region zeroed and a valid header. State: created.
    [[nodiscard]] static region_store create(const std::filesystem::path& path,
                                             const region_layout& layout,
                                             const region_store_options& options = {});
    /// An existing store file, verified against `layout` (see the header comment), mapped
    /// read_write (the file needs write permission). State: loaded.
    [[nodiscard]] static region_store open(const std::filesystem::path& path,
                                           const region_layout& layout,
                                           const region_store_options& options = {});
    /// open() if `path` exists, else create().
    [[nodiscard]] static region_store open_or_create(const std::filesystem::path& path,
                                                     const region_layout& layout,
                                                     const region_store_options& options = {});
    /// Private anonymous memory, zeroed; flush() does nothing. State: created.
    [[nodiscard]] static region_store anonymous(const region_layout& layout,
                                                const region_store_options& options = {});

    /// A closed store with no regions.
    region_store() noexcept;
    region_store(const region_store&) = delete;
    region_store& operator=(const region_store&) = delete;
    /// Moves the mapping and the regions (their addresses do not change). Precondition: no
    /// guard is alive and no other thread uses either store. The moved-from store is closed.
    region_store(region_store&& other) noexcept;
    region_store& operator=(region_store&& other) noexcept;
    ~region_store();

    /// created or loaded -> active. Throws wrong_state otherwise.
    void activate();
    /// Writes back what changed since the last flush and updates the header (see the header
    /// comment). Nothing to write for an anonymous store. Throws wrong_state when closed.
    void flush();
    /// Flushes (file-backed), unmaps and becomes closed. Throws wrong_state when already closed,
    /// still_in_use when a guard is alive (the store then stays open).
    void close();

    [[nodiscard]] region_store_state state() const noexcept {
        return state_.load(std::memory_order_acquire);
    }
    [[nodiscard]] bool is_active() const noexcept { return state() == region_store_state::active; }
    [[nodiscard]] bool file_backed() const noexcept { return !path_.empty(); }
    /// The file's path ("" for an anonymous store).
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    [[nodiscard]] const region_layout& layout() const noexcept { return layout_; }

    /// The region called `name`. Throws unknown_region.
    [[nodiscard]] region_id find(std::string_view name) const {
        const auto it = index_.find(name);
        if (MEMKIT_UNLIKELY(it == index_.end())) throw_unknown(name);
        return region_id{it->second};
    }
    [[nodiscard]] bool contains(std::string_view name) const noexcept {
        return index_.find(name) != index_.end();
    }

    /// The region's bytes under its shared lock. Throws wrong_state unless active,
    /// unknown_region for a name that is not in the layout.
    [[nodiscard]] region_read_guard read(region_id id) const {
        const detail::region_slot& s = checked_slot("read", id);
        s.lock.lock_shared();
        return region_read_guard(s);
    }
    [[nodiscard]] region_read_guard read(std::string_view name) const { return read(find(name)); }

    /// The region's bytes under its exclusive lock, for editing in place. Marks it dirty.
    /// Throws like read().
    [[nodiscard]] region_write_guard write(region_id id) {
        detail::region_slot& s = checked_slot("write", id);
        s.lock.lock();
        mark_dirty(s);
        return region_write_guard(s);
    }
    [[nodiscard]] region_write_guard write(std::string_view name) { return write(find(name)); }

    /// Copies `bytes` into the region at `offset` under its exclusive lock. Throws like read(),
    /// and out_of_range if offset + bytes.size() exceeds the region's size.
    void write(region_id id, std::size_t offset, std::span<const std::byte> bytes) {
        detail::region_slot& s = checked_slot("write", id);
        if (MEMKIT_UNLIKELY(offset > s.size || bytes.size() > s.size - offset))
            throw_out_of_range(id, offset, bytes.size());
        std::unique_lock lock(s.lock);
        mark_dirty(s);
        if (!bytes.empty()) std::memcpy(s.data + offset, bytes.data(), bytes.size());
    }
    void write(std::string_view name, std::size_t offset, std::span<const std::byte> bytes) {
        write(find(name), offset, bytes);
    }

    /// Every region in layout order, with its offset, capacity and last known checksum.
    [[nodiscard]] std::vector<region_info> regions() const;
    [[nodiscard]] region_store_stats stats() const;
    /// Bytes before the first region (0 for an anonymous store).
    [[nodiscard]] std::size_t header_bytes() const noexcept { return header_bytes_; }

private:
    struct region_meta {
        std::size_t offset = 0;
        std::size_t capacity = 0;
        std::uint32_t checksum = 0;
    };

    [[nodiscard]] const detail::region_slot& checked_slot(const char* op, region_id id) const {
        if (MEMKIT_UNLIKELY(state() != region_store_state::active || id.index >= count_))
            throw_access_error(op, id);
        return slots_[id.index];
    }
    [[nodiscard]] detail::region_slot& checked_slot(const char* op, region_id id) {
        return const_cast<detail::region_slot&>(std::as_const(*this).checked_slot(op, id));
    }
    void mark_dirty(detail::region_slot& s) noexcept {
        if (!s.dirty) {
            s.dirty = true;
            mark_header_dirty();
        }
    }
    void mark_header_dirty() noexcept;

    [[noreturn]] MEMKIT_COLD void throw_unknown(std::string_view name) const;
    [[noreturn]] MEMKIT_COLD void throw_access_error(const char* op, region_id id) const;
    [[noreturn]] MEMKIT_COLD void throw_out_of_range(region_id id, std::size_t offset,
                                                     std::size_t length) const;
    [[noreturn]] MEMKIT_COLD void throw_state(const char* op) const;

    void plan(const region_layout& layout, const region_store_options& options, bool with_header);
    void bind_slots(std::byte* base);
    void write_header();
    void verify_file(const region_store_options& options);
    void flush_locked();
    void release() noexcept;
    void steal(region_store& other) noexcept;

    std::filesystem::path path_;
    region_layout layout_;
    std::unordered_map<std::string, std::uint32_t, detail::string_hash, std::equal_to<>> index_;
    std::unique_ptr<detail::region_slot[]> slots_;
    std::vector<region_meta> meta_;
    std::uint32_t count_ = 0;
    std::atomic<region_store_state> state_{region_store_state::closed};
    mapped_file file_;          // file-backed stores
    std::byte* anon_ = nullptr; // anonymous stores
    std::size_t mapped_bytes_ = 0;
    std::size_t header_bytes_ = 0;
    std::size_t reserved_bytes_ = 0;
    std::size_t limit_ = 0;
    std::uint64_t generation_ = 0;
    std::mutex flush_mutex_; // one flush at a time (not moved: a moved-to store has its own)
};

} // namespace memkit
