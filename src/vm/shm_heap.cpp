// memkit::shm_heap: the segment header, the robust lock protocol, the named-object directory and
// create/open. The mutex and mapping system calls are in posix_shared_memory.cpp.
#include "memkit/vm/shm_heap.hpp"

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "memkit/alloc/tlsf.hpp"
#include "memkit/core/align.hpp"
#include "memkit/core/platform.hpp"

namespace memkit::detail {

namespace {
constexpr std::uint64_t heap_magic = 0x6d656d6b69742d68; // "memkit-h"
constexpr std::uint32_t state_ready = 0;
constexpr std::uint32_t state_corrupted = 1;
constexpr std::size_t max_object_name = 255;
constexpr std::size_t first_bucket_count = 16;
} // namespace

// One directory entry; the name's bytes follow it in the same block.
struct dir_entry {
    offset_ptr<dir_entry> next;
    offset_ptr<void> object;
    std::uint64_t hash;
    std::uint64_t size;
    std::uint64_t align;
    std::uint64_t name_length;

    [[nodiscard]] char* name() noexcept { return reinterpret_cast<char*>(this + 1); }
    [[nodiscard]] std::string_view name_view() noexcept {
        return {name(), static_cast<std::size_t>(name_length)};
    }
};

// The first bytes of every segment. magic and version stay at offsets 0 and 8 in every future
// layout, so that any build can tell a foreign or newer segment from a damaged one.
struct alignas(64) shm_heap_header {
    std::atomic<std::uint64_t> magic; // written last by the creator (release)
    std::uint32_t version;            // shm_heap::layout_version
    std::uint32_t header_size;        // sizeof(shm_heap_header)
    std::uint64_t heap_object_size;   // sizeof(tlsf_heap) of the creating build
    std::uint64_t segment_size;
    std::uint64_t base_address;       // every process maps the segment here
    std::uint64_t region_size;        // bytes after the header, given to the tlsf_heap
    std::atomic<std::uint32_t> state; // state_ready or state_corrupted
    std::atomic<std::uint64_t> owner_deaths;
    char name[shared_memory::max_name_length + 2];
    alignas(16) unsigned char mutex[shm_os::mutex_storage_size];
    // Directory: a hash table of chains; guarded by the mutex.
    offset_ptr<offset_ptr<dir_entry>> buckets;
    std::uint64_t bucket_count;
    std::uint64_t entry_count;
    alignas(64) unsigned char heap_storage[sizeof(tlsf_heap)];

    [[nodiscard]] tlsf_heap& heap() noexcept {
        return *std::launder(reinterpret_cast<tlsf_heap*>(heap_storage));
    }
    [[nodiscard]] std::byte* region() noexcept {
        return reinterpret_cast<std::byte*>(this) + sizeof(shm_heap_header);
    }
};

static_assert(sizeof(shm_heap_header) % 64 == 0);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "shm_heap needs address-free (lock-free) atomics in shared memory");

namespace {

[[noreturn]] MEMKIT_COLD void throw_heap(shm_heap_header* h, shm_errc e, const std::string& what) {
    throw shm_error(e, h->name, what);
}

// Throws corruption_detected at the first inconsistent directory entry.
void validate_directory(shm_heap_header* h) {
    tlsf_heap& heap = h->heap();
    if (h->bucket_count == 0) {
        if (h->entry_count != 0 || h->buckets)
            throw corruption_detected(shm_heap::name, h, "directory has entries but no buckets");
        return;
    }
    if (!is_pow2(h->bucket_count) || !heap.owns(h->buckets.get()))
        throw corruption_detected(shm_heap::name, h, "directory bucket array damaged");
    std::uint64_t seen = 0;
    for (std::uint64_t i = 0; i < h->bucket_count; ++i) {
        for (dir_entry* e = h->buckets.get()[i].get(); e != nullptr; e = e->next.get()) {
            if (++seen > h->entry_count || !heap.owns(e) || !heap.owns(e->object.get()) ||
                (e->hash & (h->bucket_count - 1)) != i || e->name_length == 0 ||
                e->name_length > max_object_name)
                throw corruption_detected(shm_heap::name, e, "directory entry damaged");
        }
    }
    if (seen != h->entry_count)
        throw corruption_detected(shm_heap::name, h, "directory entry count disagrees");
}

void validate_locked(shm_heap_header* h) {
    h->heap().validate();
    validate_directory(h);
}

// After EOWNERDEAD: the mutex is ours; make it usable again and check what the dead owner left.
lock_status recover(shm_heap_header* h) {
    if (int e = shm_os::mutex_consistent(h->mutex); e != 0) {
        (void)shm_os::mutex_unlock(h->mutex);
        throw shm_error(std::error_code(e, std::system_category()), h->name,
                        "shm_heap: pthread_mutex_consistent failed");
    }
    h->owner_deaths.fetch_add(1, std::memory_order_relaxed);
    try {
        validate_locked(h);
    } catch (const corruption_detected& c) {
        h->state.store(state_corrupted, std::memory_order_relaxed);
        (void)shm_os::mutex_unlock(h->mutex);
        throw_heap(h, shm_errc::heap_corrupted,
                   std::string("shm_heap: a process died holding the lock and left the heap "
                               "inconsistent (") +
                       c.what() + ")");
    }
    return lock_status::recovered;
}

MEMKIT_COLD lock_status lock_slow(shm_heap_header* h, shm_os::lock_result r, int err) {
    if (r == shm_os::lock_result::owner_died) return recover(h);
    throw shm_error(std::error_code(err, std::system_category()), h->name,
                    "shm_heap: cannot lock the heap mutex");
}

MEMKIT_COLD void fail_corrupted(shm_heap_header* h) {
    (void)shm_os::mutex_unlock(h->mutex);
    throw_heap(h, shm_errc::heap_corrupted,
               "shm_heap: the heap was marked corrupted after a process died holding its lock");
}

lock_status lock_header(shm_heap_header* h) {
    int err = 0;
    const shm_os::lock_result r = shm_os::mutex_lock(h->mutex, err);
    const lock_status s = MEMKIT_LIKELY(r == shm_os::lock_result::acquired) ? lock_status::acquired
                                                                            : lock_slow(h, r, err);
    if (MEMKIT_UNLIKELY(h->state.load(std::memory_order_relaxed) != state_ready)) fail_corrupted(h);
    return s;
}

// The non-throwing lock of try_allocate and deallocate: false when the heap cannot be used.
bool lock_header_noexcept(shm_heap_header* h) noexcept {
    try {
        (void)lock_header(h);
        return true;
    } catch (...) {
        return false;
    }
}

class header_lock {
public:
    explicit header_lock(shm_heap_header* h) : h_(h) { (void)lock_header(h); }
    ~header_lock() { (void)shm_os::mutex_unlock(h_->mutex); }
    header_lock(const header_lock&) = delete;
    header_lock& operator=(const header_lock&) = delete;

private:
    shm_heap_header* h_;
};

std::uint64_t hash_name(std::string_view s) noexcept {
    std::uint64_t x = 0xcbf29ce484222325; // FNV-1a
    for (const char c : s) {
        x ^= static_cast<unsigned char>(c);
        x *= 0x100000001b3;
    }
    return x;
}

void check_object_name(shm_heap_header* h, std::string_view object_name) {
    if (object_name.empty() || object_name.size() > max_object_name)
        throw_heap(h, shm_errc::invalid_name,
                   "shm_heap: an object name must have 1 to 255 characters, not " +
                       std::to_string(object_name.size()));
}

dir_entry* lookup(shm_heap_header* h, std::string_view object_name, std::uint64_t hash) {
    if (h->bucket_count == 0) return nullptr;
    for (dir_entry* e = h->buckets.get()[hash & (h->bucket_count - 1)].get(); e != nullptr;
         e = e->next.get())
        if (e->hash == hash && e->name_view() == object_name) return e;
    return nullptr;
}

void check_type(shm_heap_header* h, dir_entry* e, std::size_t size, std::size_t align) {
    if (e->size == size && e->align == align) return;
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "shm_heap: object \"%.*s\" has size %" PRIu64 " and alignment %" PRIu64
                  ", requested as size %zu and alignment %zu",
                  static_cast<int>(e->name_length > 40 ? 40 : e->name_length), e->name(), e->size,
                  e->align, size, align);
    throw_heap(h, shm_errc::type_mismatch, buf);
}

// Doubles the bucket array when the table is full; keeps the old one if there is no memory.
void grow_directory(shm_heap_header* h) {
    tlsf_heap& heap = h->heap();
    if (h->bucket_count != 0 && h->entry_count < h->bucket_count) return;
    const std::uint64_t n = h->bucket_count == 0 ? first_bucket_count : h->bucket_count * 2;
    void* raw =
        heap.try_allocate(n * sizeof(offset_ptr<dir_entry>), alignof(offset_ptr<dir_entry>));
    if (raw == nullptr) {
        if (h->bucket_count != 0) return;
        throw out_of_memory(shm_heap::name, n * sizeof(offset_ptr<dir_entry>),
                            heap.largest_free_block(), heap.stats().bytes_in_use, heap.capacity());
    }
    auto* fresh = static_cast<offset_ptr<dir_entry>*>(raw);
    for (std::uint64_t i = 0; i < n; ++i) ::new (fresh + i) offset_ptr<dir_entry>();
    for (std::uint64_t i = 0; i < h->bucket_count; ++i) {
        for (dir_entry* e = h->buckets.get()[i].get(); e != nullptr;) {
            dir_entry* next = e->next.get();
            offset_ptr<dir_entry>& head = fresh[e->hash & (n - 1)];
            e->next = head;
            head = e;
            e = next;
        }
    }
    if (h->bucket_count != 0)
        heap.deallocate(h->buckets.get(), h->bucket_count * sizeof(offset_ptr<dir_entry>),
                        alignof(offset_ptr<dir_entry>));
    h->buckets = fresh;
    h->bucket_count = n;
}

std::size_t header_size() noexcept { return sizeof(shm_heap_header); }

// The header fields open() checks, copied out of a temporary mapping.
struct header_probe {
    std::uint64_t magic = 0;
    std::uint32_t version = 0;
    std::uint32_t header_size = 0;
    std::uint64_t heap_object_size = 0;
    std::uint64_t segment_size = 0;
    std::uint64_t base_address = 0;
    bool complete = false; // the segment holds a whole header
};

header_probe probe(const shared_memory& seg) {
    const std::size_t n =
        seg.size() < sizeof(shm_heap_header) ? seg.size() : sizeof(shm_heap_header);
    void* p = nullptr;
    if (int e = shm_os::map(seg.native_handle(), n, true, nullptr, map_placement::anywhere, p);
        e != 0)
        throw shm_error(std::error_code(e, std::system_category()), seg.name(),
                        "shm_heap::open: cannot map the header");
    const auto* h = static_cast<const shm_heap_header*>(p);
    header_probe r;
    r.magic = h->magic.load(std::memory_order_acquire);
    r.version = h->version;
    r.complete = n == sizeof(shm_heap_header);
    if (r.complete) {
        r.header_size = h->header_size;
        r.heap_object_size = h->heap_object_size;
        r.segment_size = h->segment_size;
        r.base_address = h->base_address;
    }
    (void)shm_os::unmap(p, n);
    return r;
}

void wait_a_little() { std::this_thread::sleep_for(std::chrono::milliseconds(1)); }

} // namespace

void* shm_heap_allocate(shm_heap_header* h, std::size_t size, std::size_t align) {
    header_lock lk(h);
    return h->heap().allocate(size, align);
}

void* shm_heap_try_allocate(shm_heap_header* h, std::size_t size, std::size_t align) noexcept {
    if (!lock_header_noexcept(h)) return nullptr;
    void* p = h->heap().try_allocate(size, align);
    (void)shm_os::mutex_unlock(h->mutex);
    return p;
}

void shm_heap_deallocate(shm_heap_header* h, void* p, std::size_t size,
                         std::size_t align) noexcept {
    if (p == nullptr) return;
    if (MEMKIT_UNLIKELY(!lock_header_noexcept(h))) {
        report_violation({errc::corruption_detected, shm_heap::name, p,
                          "deallocate on a heap that cannot be locked (corrupted)"});
        return;
    }
    h->heap().deallocate(p, size, align);
    (void)shm_os::mutex_unlock(h->mutex);
}

} // namespace memkit::detail

namespace memkit {

using detail::shm_heap_header;

std::size_t shm_heap::min_size() noexcept {
    return detail::header_size() + tlsf_heap::min_region_size;
}

shm_heap shm_heap::create(std::string_view segment_name, std::size_t size, shm_heap_options opts) {
    shared_memory::validate_name(segment_name);
    if (size < min_size())
        throw shm_error(shm_errc::invalid_size, segment_name,
                        "shm_heap::create: size " + std::to_string(size) +
                            " is below the minimum of " + std::to_string(min_size()) +
                            " bytes (header and one block)");
    shared_memory seg = shared_memory::create(segment_name, size,
                                              {.permissions = opts.permissions,
                                               .remove_on_destroy = opts.remove_on_destroy,
                                               .map = false});
    try {
        seg.map(opts.address,
                opts.address != nullptr ? map_placement::exactly : map_placement::anywhere);
        auto* h = ::new (seg.data()) shm_heap_header{};
        h->version = layout_version;
        h->header_size = static_cast<std::uint32_t>(sizeof(shm_heap_header));
        h->heap_object_size = sizeof(tlsf_heap);
        h->segment_size = size;
        h->base_address = reinterpret_cast<std::uintptr_t>(seg.data());
        h->region_size = size - sizeof(shm_heap_header);
        h->state.store(detail::state_ready, std::memory_order_relaxed);
        h->owner_deaths.store(0, std::memory_order_relaxed);
        std::memcpy(h->name, segment_name.data(), segment_name.size());
        h->name[segment_name.size()] = '\0';
        if (int e = detail::shm_os::mutex_init(h->mutex); e != 0)
            throw shm_error(std::error_code(e, std::system_category()), segment_name,
                            "shm_heap::create: cannot initialize the process-shared mutex");
        ::new (h->heap_storage) tlsf_heap(std::span<std::byte>(h->region(), h->region_size));
        h->magic.store(detail::heap_magic, std::memory_order_release);
        return shm_heap(std::move(seg), h);
    } catch (...) {
        seg.set_remove_on_destroy(true); // nobody can use a half-made heap
        throw;
    }
}

shm_heap shm_heap::open(std::string_view segment_name, shm_heap_options opts) {
    shared_memory::validate_name(segment_name);
    const auto deadline = std::chrono::steady_clock::now() + opts.open_timeout;
    const shm_options so{.remove_on_destroy = false, .map = false};
    for (;;) {
        // Reopened on every try: a creator may still be sizing the segment.
        shared_memory seg = shared_memory::open(segment_name, so);
        const bool late = std::chrono::steady_clock::now() >= deadline;
        if (seg.size() < sizeof(std::uint64_t) * 2) {
            if (seg.size() != 0)
                throw shm_error(shm_errc::bad_magic, segment_name,
                                "shm_heap::open: the segment (" + std::to_string(seg.size()) +
                                    " bytes) is too small to hold a memkit heap");
            if (late)
                throw shm_error(shm_errc::not_initialized, segment_name,
                                "shm_heap::open: the segment is still empty (its creator did "
                                "not size it in time)");
            detail::wait_a_little();
            continue;
        }
        // Reads the header through a small temporary read-only mapping, dropped before the real
        // mapping is made at the recorded address (which it might otherwise overlap).
        const detail::header_probe hp = detail::probe(seg);
        if (hp.magic == 0) {
            if (late)
                throw shm_error(shm_errc::not_initialized, segment_name,
                                "shm_heap::open: the heap header was not initialized in time "
                                "(is this a memkit heap, and is its creator alive?)");
            detail::wait_a_little();
            continue;
        }
        char buf[200];
        if (hp.magic != detail::heap_magic) {
            std::snprintf(buf, sizeof buf,
                          "shm_heap::open: the segment does not hold a memkit heap (magic "
                          "0x%016" PRIx64 ", expected 0x%016" PRIx64 ")",
                          hp.magic, detail::heap_magic);
            throw shm_error(shm_errc::bad_magic, segment_name, buf);
        }
        if (hp.version != layout_version) {
            std::snprintf(buf, sizeof buf,
                          "shm_heap::open: heap layout version %" PRIu32
                          ", this build reads version %" PRIu32,
                          hp.version, layout_version);
            throw shm_error(shm_errc::bad_version, segment_name, buf);
        }
        if (!hp.complete) {
            std::snprintf(buf, sizeof buf,
                          "shm_heap::open: the segment (%zu bytes) is smaller than the heap "
                          "header (%zu bytes)",
                          seg.size(), sizeof(shm_heap_header));
            throw shm_error(shm_errc::size_mismatch, segment_name, buf);
        }
        if (hp.header_size != sizeof(shm_heap_header) || hp.heap_object_size != sizeof(tlsf_heap)) {
            std::snprintf(buf, sizeof buf,
                          "shm_heap::open: header of %" PRIu32 " bytes and heap object of %" PRIu64
                          " bytes, this build uses %zu and %zu",
                          hp.header_size, hp.heap_object_size, sizeof(shm_heap_header),
                          sizeof(tlsf_heap));
            throw shm_error(shm_errc::bad_version, segment_name, buf);
        }
        if (hp.segment_size != seg.size()) {
            std::snprintf(buf, sizeof buf,
                          "shm_heap::open: the header records %" PRIu64
                          " bytes, the segment has %zu",
                          hp.segment_size, seg.size());
            throw shm_error(shm_errc::size_mismatch, segment_name, buf);
        }
        auto* base = reinterpret_cast<void*>(static_cast<std::uintptr_t>(hp.base_address));
        try {
            seg.map(base, map_placement::exactly);
        } catch (const shm_error& e) {
            if (e.code() != shm_errc::address_unavailable) throw;
            std::snprintf(buf, sizeof buf,
                          "shm_heap::open: the heap must be mapped at %p (%zu bytes), and that "
                          "range is taken in this process (already open here?)",
                          base, seg.size());
            throw shm_error(shm_errc::address_unavailable, segment_name, buf);
        }
        seg.set_remove_on_destroy(opts.remove_on_destroy);
        auto* hh = static_cast<shm_heap_header*>(seg.data());
        return shm_heap(std::move(seg), hh);
    }
}

shm_heap shm_heap::open_or_create(std::string_view segment_name, std::size_t size,
                                  shm_heap_options opts) {
    for (int attempt = 0;; ++attempt) {
        try {
            return create(segment_name, size, opts);
        } catch (const std::system_error& e) {
            if (e.code() != std::error_code(EEXIST, std::system_category())) throw;
        }
        try {
            return open(segment_name, opts);
        } catch (const std::system_error& e) {
            // Removed between the two calls: create again.
            if (e.code() != std::error_code(ENOENT, std::system_category()) || attempt == 8) throw;
        }
    }
}

bool shm_heap::owns(const void* p) const noexcept {
    const auto v = reinterpret_cast<std::uintptr_t>(p);
    const auto lo = reinterpret_cast<std::uintptr_t>(hdr_->region());
    return v >= lo && v < lo + hdr_->region_size && hdr_->heap().owns(p);
}

std::size_t shm_heap::usable_size(const void* p) const {
    detail::header_lock lk(hdr_);
    return hdr_->heap().usable_size(p);
}

allocator_stats shm_heap::stats() const {
    detail::header_lock lk(hdr_);
    return hdr_->heap().stats();
}

std::size_t shm_heap::free_bytes() const {
    detail::header_lock lk(hdr_);
    return hdr_->heap().free_bytes();
}

std::size_t shm_heap::largest_free_block() const {
    detail::header_lock lk(hdr_);
    return hdr_->heap().largest_free_block();
}

void shm_heap::validate() const {
    detail::header_lock lk(hdr_);
    detail::validate_locked(hdr_);
}

lock_status shm_heap::lock_with_status() { return detail::lock_header(hdr_); }

bool shm_heap::try_lock() {
    int err = 0;
    const auto r = detail::shm_os::mutex_try_lock(hdr_->mutex, err);
    if (r == detail::shm_os::lock_result::busy) return false;
    if (r != detail::shm_os::lock_result::acquired) (void)detail::lock_slow(hdr_, r, err);
    if (hdr_->state.load(std::memory_order_relaxed) != detail::state_ready)
        detail::fail_corrupted(hdr_);
    return true;
}

void shm_heap::unlock() noexcept { (void)detail::shm_os::mutex_unlock(hdr_->mutex); }

std::uint64_t shm_heap::owner_deaths() const noexcept {
    return hdr_->owner_deaths.load(std::memory_order_relaxed);
}

std::size_t shm_heap::named_count() const {
    detail::header_lock lk(hdr_);
    return static_cast<std::size_t>(hdr_->entry_count);
}

void* shm_heap::named_find_or_construct(std::string_view object_name, std::size_t size,
                                        std::size_t align, construct_fn fn, void* ctx) {
    detail::check_object_name(hdr_, object_name);
    detail::header_lock lk(hdr_);
    const std::uint64_t hash = detail::hash_name(object_name);
    if (detail::dir_entry* e = detail::lookup(hdr_, object_name, hash)) {
        detail::check_type(hdr_, e, size, align);
        return e->object.get();
    }
    tlsf_heap& heap = hdr_->heap();
    detail::grow_directory(hdr_);
    const std::size_t entry_bytes = sizeof(detail::dir_entry) + object_name.size();
    void* raw_entry = heap.allocate(entry_bytes, alignof(detail::dir_entry));
    void* object = nullptr;
    try {
        object = heap.allocate(size, align);
        fn(object, ctx); // may allocate from this heap: the mutex is recursive
    } catch (...) {
        if (object != nullptr) heap.deallocate(object, size, align);
        heap.deallocate(raw_entry, entry_bytes, alignof(detail::dir_entry));
        throw;
    }
    auto* e = ::new (raw_entry) detail::dir_entry{};
    e->object = object;
    e->hash = hash;
    e->size = size;
    e->align = align;
    e->name_length = object_name.size();
    std::memcpy(e->name(), object_name.data(), object_name.size());
    offset_ptr<detail::dir_entry>& head = hdr_->buckets.get()[hash & (hdr_->bucket_count - 1)];
    e->next = head;
    head = e;
    ++hdr_->entry_count;
    return object;
}

void* shm_heap::named_find(std::string_view object_name, std::size_t size,
                           std::size_t align) const {
    detail::check_object_name(hdr_, object_name);
    detail::header_lock lk(hdr_);
    detail::dir_entry* e = detail::lookup(hdr_, object_name, detail::hash_name(object_name));
    if (e == nullptr) return nullptr;
    detail::check_type(hdr_, e, size, align);
    return e->object.get();
}

bool shm_heap::named_destroy(std::string_view object_name, std::size_t size, std::size_t align,
                             destroy_fn fn) {
    detail::check_object_name(hdr_, object_name);
    detail::header_lock lk(hdr_);
    const std::uint64_t hash = detail::hash_name(object_name);
    detail::dir_entry* e = detail::lookup(hdr_, object_name, hash);
    if (e == nullptr) return false;
    detail::check_type(hdr_, e, size, align);
    // Unlink first: a destructor that looks the name up must not find a dying object.
    offset_ptr<detail::dir_entry>* link = &hdr_->buckets.get()[hash & (hdr_->bucket_count - 1)];
    while (link->get() != e) link = &link->get()->next;
    *link = e->next;
    --hdr_->entry_count;
    void* object = e->object.get();
    fn(object);
    tlsf_heap& heap = hdr_->heap();
    heap.deallocate(object, size, align);
    heap.deallocate(e, sizeof(detail::dir_entry) + e->name_length, alignof(detail::dir_entry));
    return true;
}

} // namespace memkit
