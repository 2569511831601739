// The portable part of memkit::region_store: layouts, the file format, verification, checksums
// and error messages. Anonymous memory comes from detail::region_store_os
// (src/vm/posix_region_store.cpp); files are mapped with memkit::mapped_file.
#include "memkit/vm/region_store.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <type_traits>

#include "memkit/core/align.hpp"

namespace memkit {

namespace detail::region_store_os {
// Zeroed private anonymous memory of `size` bytes (a page multiple).
std::error_code map_anonymous(std::size_t size, void*& out) noexcept;
void unmap(void* p, std::size_t size) noexcept;
} // namespace detail::region_store_os

namespace {

namespace os = detail::region_store_os;

constexpr const char* prefix = "memkit::region_store: ";
constexpr std::array<char, 8> file_magic = {'M', 'E', 'M', 'K', 'I', 'T', 'R', 'S'};
constexpr std::uint32_t byte_order_mark = 0x01020304u;

// The on-disk header and region table (see the header comment of region_store.hpp). Always read
// and written with memcpy: the mapped bytes are not objects of these types.
struct file_header {
    char magic[8];
    std::uint32_t version;
    std::uint32_t byte_order;
    std::uint32_t page_size;
    std::uint32_t region_count;
    std::uint64_t header_bytes;
    std::uint64_t file_bytes;
    std::uint64_t layout_hash;
    std::uint64_t generation;
    unsigned char reserved[64];
    std::uint32_t header_crc; // CRC32C of [0, offsetof(header_crc)) and the region table
    std::uint32_t dirty;      // not covered: the first write after a flush sets it in place
};
static_assert(sizeof(file_header) == 128 && std::is_trivially_copyable_v<file_header>);
constexpr std::size_t crc_offset = offsetof(file_header, header_crc);
constexpr std::size_t dirty_offset = offsetof(file_header, dirty);
static_assert(dirty_offset % alignof(std::uint32_t) == 0);

struct region_entry {
    char name[64]; // NUL-padded
    std::uint64_t offset;
    std::uint64_t size;
    std::uint64_t alignment;
    std::uint32_t checksum;
    std::uint32_t reserved;
};
static_assert(sizeof(region_entry) == 96 && std::is_trivially_copyable_v<region_entry>);

// Names come from callers and from files: control characters (a NUL would cut the message
// short) are written as \xNN.
std::string in_quotes(std::string_view s) {
    std::string r;
    r.reserve(s.size() + 2);
    r += '"';
    for (const char ch : s) {
        const auto u = static_cast<unsigned char>(ch);
        if (u < 0x20 || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(u));
            r += buf;
        } else {
            r += ch;
        }
    }
    r += '"';
    return r;
}

std::string hex32(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(v));
    return buf;
}

std::string hex64(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
    return buf;
}

[[noreturn]] MEMKIT_COLD void fail(region_error kind, std::error_code code,
                                   region_store_state state, std::string_view region,
                                   const std::string& what) {
    throw region_store_error(kind, code, state, region, prefix + what);
}

[[noreturn]] MEMKIT_COLD void layout_error(region_error kind, errc code, std::string_view region,
                                           const std::string& what) {
    fail(kind, make_error_code(code), region_store_state::created, region, what);
}

std::string names_of(std::span<const std::string> names) {
    std::string r;
    constexpr std::size_t shown = 8;
    for (std::size_t i = 0; i < names.size() && i < shown; ++i) {
        if (i != 0) r += ", ";
        r += names[i];
    }
    if (names.size() > shown) r += ", ... (" + std::to_string(names.size() - shown) + " more)";
    return r;
}

// FNV-1a, 64 bits: the layout hash only has to tell layouts apart, not resist an adversary.
struct fnv64 {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    void bytes(const void* p, std::size_t n) noexcept {
        const auto* b = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ULL;
    }
    void u64(std::uint64_t v) noexcept { bytes(&v, sizeof v); }
};

// CRC32C (Castagnoli, reflected polynomial 0x82f63b78), slicing by 8.
constexpr std::array<std::array<std::uint32_t, 256>, 8> make_crc_tables() {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        t[0][i] = c;
    }
    for (std::size_t i = 0; i < 256; ++i)
        for (std::size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    return t;
}
constexpr auto crc_tables = make_crc_tables();

std::uint32_t crc_portable_raw(const unsigned char* p, std::size_t n, std::uint32_t c) noexcept {
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
        w ^= c;
        c = crc_tables[7][w & 0xff] ^ crc_tables[6][(w >> 8) & 0xff] ^
            crc_tables[5][(w >> 16) & 0xff] ^ crc_tables[4][(w >> 24) & 0xff] ^
            crc_tables[3][(w >> 32) & 0xff] ^ crc_tables[2][(w >> 40) & 0xff] ^
            crc_tables[1][(w >> 48) & 0xff] ^ crc_tables[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n-- > 0) c = (c >> 8) ^ crc_tables[0][(c ^ *p++) & 0xff];
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MEMKIT_REGION_STORE_HW_CRC 1
// SSE4.2's crc32 instruction computes exactly CRC32C: 8 bytes per instruction, about 3 cycles of
// latency, so one dependency chain runs at several GB/s (enough for verifying a store on open).
__attribute__((target("sse4.2"))) std::uint32_t crc_hw_raw(const unsigned char* p, std::size_t n,
                                                           std::uint32_t c) noexcept {
    std::uint64_t c64 = c;
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        c64 = __builtin_ia32_crc32di(c64, w);
        p += 8;
        n -= 8;
    }
    auto c32 = static_cast<std::uint32_t>(c64);
    while (n-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

bool cpu_has_crc() noexcept {
    static const bool has = __builtin_cpu_supports("sse4.2");
    return has;
}
#endif

std::uint32_t crc_of_zeros(std::size_t n) {
    static const std::array<std::byte, 64 * 1024> zeros{};
    std::uint32_t c = 0;
    while (n != 0) {
        const std::size_t k = n < zeros.size() ? n : zeros.size();
        c = detail::crc32c(std::span<const std::byte>(zeros.data(), k), c);
        n -= k;
    }
    return c;
}

// Parses "4096", "4K", "16MiB" ... Returns false on syntax errors or overflow.
bool parse_size(std::string_view tok, std::size_t& out) {
    std::uint64_t v = 0;
    const char* first = tok.data();
    const char* last = tok.data() + tok.size();
    auto [p, ec] = std::from_chars(first, last, v);
    if (ec != std::errc{} || p == first) return false;
    std::string_view suffix(p, static_cast<std::size_t>(last - p));
    unsigned shift = 0;
    if (!suffix.empty()) {
        const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(suffix[0])));
        const std::string_view rest = suffix.substr(1);
        if (rest != "" && rest != "iB" && rest != "IB" && rest != "ib") return false;
        switch (u) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        case 'T': shift = 40; break;
        default: return false;
        }
    }
    if (shift != 0 && v > (std::numeric_limits<std::uint64_t>::max() >> shift)) return false;
    v <<= shift;
    if (v > std::numeric_limits<std::size_t>::max()) return false;
    out = static_cast<std::size_t>(v);
    return true;
}

const char* code_state_hint(region_store_state s) noexcept {
    switch (s) {
    case region_store_state::created:
    case region_store_state::loaded: return "call activate() first";
    case region_store_state::active: return "it is already active";
    case region_store_state::closed: return "it was closed";
    }
    return "";
}

} // namespace

// ----------------------------------------------------------------------------- names and errors

const char* to_string(region_store_state s) noexcept {
    switch (s) {
    case region_store_state::created: return "created";
    case region_store_state::loaded: return "loaded";
    case region_store_state::active: return "active";
    case region_store_state::closed: return "closed";
    }
    return "?";
}

const char* to_string(region_error e) noexcept {
    switch (e) {
    case region_error::wrong_state: return "wrong_state";
    case region_error::unknown_region: return "unknown_region";
    case region_error::duplicate_region: return "duplicate_region";
    case region_error::invalid_layout: return "invalid_layout";
    case region_error::limit_exceeded: return "limit_exceeded";
    case region_error::out_of_range: return "out_of_range";
    case region_error::still_in_use: return "still_in_use";
    case region_error::not_a_store: return "not_a_store";
    case region_error::unsupported_version: return "unsupported_version";
    case region_error::corrupted: return "corrupted";
    case region_error::layout_mismatch: return "layout_mismatch";
    case region_error::unflushed: return "unflushed";
    }
    return "?";
}

region_store_error::region_store_error(region_error kind, std::error_code code,
                                       region_store_state state, std::string_view region,
                                       const std::string& message)
    : std::system_error(code, message),
      text_(std::make_shared<const text>(text{std::string(region), message})), kind_(kind),
      state_(state) {}

namespace detail {

std::uint32_t crc32c_portable(std::span<const std::byte> bytes, std::uint32_t crc) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    return ~crc_portable_raw(p, bytes.size(), ~crc);
}

std::uint32_t crc32c(std::span<const std::byte> bytes, std::uint32_t crc) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
#if defined(MEMKIT_REGION_STORE_HW_CRC)
    if (cpu_has_crc()) return ~crc_hw_raw(p, bytes.size(), ~crc);
#endif
    return ~crc_portable_raw(p, bytes.size(), ~crc);
}

void region_lock::lock_shared_slow() noexcept {
    for (;;) {
        leave(); // back out: the writer must not wait for a reader that is not reading
        std::uint32_t s = state_.load(std::memory_order_relaxed);
        while ((s & writer) != 0) {
            state_.wait(s, std::memory_order_relaxed);
            s = state_.load(std::memory_order_relaxed);
        }
        if ((state_.fetch_add(1, std::memory_order_acquire) & writer) == 0) return;
    }
}

void region_lock::lock() noexcept {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    for (;;) { // take the writer bit (one writer at a time)
        if ((s & writer) != 0) {
            state_.wait(s, std::memory_order_relaxed);
            s = state_.load(std::memory_order_relaxed);
        } else if (state_.compare_exchange_weak(s, s | writer, std::memory_order_acquire,
                                                std::memory_order_relaxed)) {
            break;
        }
    }
    // New readers now back out; wait for those inside to leave.
    for (s = state_.load(std::memory_order_acquire); s != writer;
         s = state_.load(std::memory_order_acquire))
        state_.wait(s, std::memory_order_acquire);
}

} // namespace detail

// ----------------------------------------------------------------------------- region_layout

region_layout::region_layout(std::initializer_list<region_spec> specs) {
    for (const region_spec& s : specs) add(s.name, s.size, s.alignment);
}

bool region_layout::contains(std::string_view name) const noexcept {
    for (const region_spec& s : specs_)
        if (s.name == name) return true;
    return false;
}

region_layout& region_layout::add(std::string_view name, std::size_t size, std::size_t alignment) {
    if (name.empty())
        layout_error(region_error::invalid_layout, errc::invalid_argument, name,
                     "a region name must not be empty");
    if (name.size() > max_name_length)
        layout_error(region_error::invalid_layout, errc::invalid_argument, name,
                     "region name " + in_quotes(name) + " has " + std::to_string(name.size()) +
                         " bytes; at most " + std::to_string(max_name_length) + " are allowed");
    if (name.find('\0') != std::string_view::npos)
        layout_error(region_error::invalid_layout, errc::invalid_argument, name,
                     "region name " + in_quotes(name) + " contains a NUL character");
    if (contains(name))
        layout_error(region_error::duplicate_region, errc::invalid_argument, name,
                     "duplicate region name " + in_quotes(name) + " in the layout");
    if (size == 0)
        layout_error(region_error::invalid_layout, errc::bad_size, name,
                     "region " + in_quotes(name) + " has size 0");
    if (alignment != 0 && (!is_pow2(alignment) || alignment > page_size()))
        layout_error(region_error::invalid_layout, errc::invalid_alignment, name,
                     "region " + in_quotes(name) + " asks for alignment " +
                         std::to_string(alignment) +
                         "; it must be a power of two no larger than the page size (" +
                         std::to_string(page_size()) + ")");
    specs_.push_back(region_spec{std::string(name), size, alignment});
    return *this;
}

region_layout region_layout::parse(std::string_view text) {
    region_layout layout;
    std::vector<std::size_t> lines; // line of each region, for duplicate messages
    std::size_t line_no = 0;
    while (!text.empty()) {
        ++line_no;
        const std::size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        if (const std::size_t hash = line.find('#'); hash != std::string_view::npos)
            line = line.substr(0, hash);
        std::vector<std::string_view> tokens;
        std::size_t i = 0;
        while (i < line.size()) {
            while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
            const std::size_t start = i;
            while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
            if (i > start) tokens.push_back(line.substr(start, i - start));
        }
        if (tokens.empty()) continue;
        const std::string where = "layout line " + std::to_string(line_no) + ": ";
        if (tokens.size() < 2 || tokens.size() > 3)
            layout_error(region_error::invalid_layout, errc::invalid_argument, tokens[0],
                         where + "expected \"name size [alignment]\", found " +
                             std::to_string(tokens.size()) + " fields");
        std::size_t size = 0;
        std::size_t alignment = 0;
        if (!parse_size(tokens[1], size))
            layout_error(region_error::invalid_layout, errc::bad_size, tokens[0],
                         where + "size " + in_quotes(tokens[1]) + " of region " +
                             in_quotes(tokens[0]) +
                             " is not a number with an optional K, M, G or T suffix");
        if (tokens.size() == 3 && !parse_size(tokens[2], alignment))
            layout_error(region_error::invalid_layout, errc::invalid_alignment, tokens[0],
                         where + "alignment " + in_quotes(tokens[2]) + " of region " +
                             in_quotes(tokens[0]) + " is not a number");
        for (std::size_t k = 0; k < layout.specs_.size(); ++k)
            if (layout.specs_[k].name == tokens[0])
                layout_error(region_error::duplicate_region, errc::invalid_argument, tokens[0],
                             where + "duplicate region name " + in_quotes(tokens[0]) +
                                 " (first declared on line " + std::to_string(lines[k]) + ")");
        try {
            layout.add(tokens[0], size, alignment);
        } catch (const region_store_error& e) {
            // Same error, with the line number in front of the message.
            const std::string msg = e.what();
            throw region_store_error(e.kind(), e.code(), e.state(), e.region(),
                                     prefix + where + msg.substr(std::string_view(prefix).size()));
        }
        lines.push_back(line_no);
    }
    return layout;
}

// ----------------------------------------------------------------------------- region_store

region_store::region_store() noexcept = default;

region_store::region_store(region_store&& other) noexcept { steal(other); }

region_store& region_store::operator=(region_store&& other) noexcept {
    if (this != &other) {
        region_store old(std::move(*this)); // closes what *this held when it goes
        steal(other);
    }
    return *this;
}

void region_store::steal(region_store& other) noexcept {
    path_ = std::exchange(other.path_, {});
    layout_ = std::exchange(other.layout_, {});
    index_ = std::exchange(other.index_, {});
    slots_ = std::move(other.slots_);
    meta_ = std::exchange(other.meta_, {});
    count_ = std::exchange(other.count_, 0);
    state_.store(other.state_.exchange(region_store_state::closed));
    file_ = std::move(other.file_);
    anon_ = std::exchange(other.anon_, nullptr);
    mapped_bytes_ = std::exchange(other.mapped_bytes_, 0);
    header_bytes_ = std::exchange(other.header_bytes_, 0);
    reserved_bytes_ = std::exchange(other.reserved_bytes_, 0);
    limit_ = std::exchange(other.limit_, 0);
    generation_ = std::exchange(other.generation_, 0);
}

region_store::~region_store() {
    if (state() == region_store_state::closed) {
        release(); // a store whose create() failed half-way may still hold its mapping
        return;
    }
    try {
        close();
    } catch (...) {
        // A destructor cannot report a failed flush; close() is there for callers who care.
        release();
    }
}

void region_store::plan(const region_layout& layout, const region_store_options& options,
                        bool with_header) {
    if (layout.empty())
        layout_error(region_error::invalid_layout, errc::invalid_argument, "",
                     "the layout has no regions");
    if (layout.size() > std::numeric_limits<std::uint32_t>::max())
        layout_error(region_error::limit_exceeded, errc::limit_exceeded, "",
                     "the layout has " + std::to_string(layout.size()) + " regions; at most " +
                         std::to_string(std::numeric_limits<std::uint32_t>::max()) +
                         " are supported");
    const std::size_t page = page_size();
    constexpr std::size_t max = std::numeric_limits<std::size_t>::max();
    const std::size_t n = layout.size();
    std::size_t reserved = 0;
    bool overflow = false;
    for (const region_spec& s : layout.regions()) {
        std::size_t cap = 0;
        if (!checked_align_up(s.size, page, cap) || cap > max - reserved) {
            overflow = true;
            break;
        }
        reserved += cap;
    }
    if (overflow || reserved > options.limit)
        layout_error(region_error::limit_exceeded, errc::limit_exceeded, "",
                     "the layout needs " +
                         (overflow ? std::string("more than SIZE_MAX") : std::to_string(reserved)) +
                         " bytes (" + std::to_string(n) + " regions, each rounded up to the " +
                         std::to_string(page) + "-byte page) but the limit is " +
                         std::to_string(options.limit) + " bytes");
    const std::size_t table = sizeof(file_header) + n * sizeof(region_entry);
    const std::size_t header = with_header ? align_up(table, page) : 0;
    if (reserved > max - header)
        layout_error(region_error::limit_exceeded, errc::limit_exceeded, "",
                     "the layout's size overflows the address space");

    layout_ = layout;
    count_ = static_cast<std::uint32_t>(n);
    header_bytes_ = header;
    reserved_bytes_ = reserved;
    mapped_bytes_ = header + reserved;
    limit_ = options.limit;
    meta_.assign(n, region_meta{});
    std::size_t offset = header;
    for (std::size_t i = 0; i < n; ++i) {
        const region_spec& s = layout.regions()[i];
        // Alignments never exceed the page (region_layout::add checks), so every region starts
        // on the page after the previous one ends: no overlap, no gaps beyond page rounding.
        meta_[i].offset = offset;
        meta_[i].capacity = align_up(s.size, page);
        offset += meta_[i].capacity;
    }
    slots_ = std::make_unique<detail::region_slot[]>(n);
    index_.clear();
    index_.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        index_.emplace(layout.regions()[i].name, static_cast<std::uint32_t>(i));
}

void region_store::bind_slots(std::byte* base) {
    for (std::size_t i = 0; i < count_; ++i) {
        slots_[i].data = base + meta_[i].offset;
        slots_[i].size = layout_.regions()[i].size;
    }
}

namespace {

std::uint64_t layout_hash(const region_layout& layout, std::span<const std::size_t> offsets,
                          std::size_t page) {
    fnv64 h;
    h.u64(page);
    h.u64(layout.size());
    for (std::size_t i = 0; i < layout.size(); ++i) {
        const region_spec& s = layout.regions()[i];
        h.u64(s.name.size());
        h.bytes(s.name.data(), s.name.size());
        h.u64(s.size);
        h.u64(s.alignment);
        h.u64(offsets[i]);
    }
    return h.h;
}

std::uint32_t header_crc(const std::byte* base, std::size_t count) {
    std::uint32_t c = detail::crc32c(std::span<const std::byte>(base, crc_offset));
    return detail::crc32c(
        std::span<const std::byte>(base + sizeof(file_header), count * sizeof(region_entry)), c);
}

} // namespace

void region_store::write_header() {
    std::byte* base = file_.data();
    std::vector<std::size_t> offsets(count_);
    for (std::size_t i = 0; i < count_; ++i) offsets[i] = meta_[i].offset;
    file_header h{};
    std::memcpy(h.magic, file_magic.data(), sizeof h.magic);
    h.version = format_version;
    h.byte_order = byte_order_mark;
    h.page_size = static_cast<std::uint32_t>(page_size());
    h.region_count = count_;
    h.header_bytes = header_bytes_;
    h.file_bytes = mapped_bytes_;
    h.layout_hash = layout_hash(layout_, offsets, page_size());
    h.generation = generation_;
    for (std::size_t i = 0; i < count_; ++i) {
        const region_spec& s = layout_.regions()[i];
        region_entry e{};
        std::memcpy(e.name, s.name.data(), s.name.size());
        e.offset = meta_[i].offset;
        e.size = s.size;
        e.alignment = s.alignment;
        e.checksum = meta_[i].checksum;
        std::memcpy(base + sizeof(file_header) + i * sizeof(region_entry), &e, sizeof e);
    }
    std::memcpy(base, &h, crc_offset);
    const std::uint32_t crc = header_crc(base, count_);
    std::memcpy(base + crc_offset, &crc, sizeof crc);
    std::atomic_ref<std::uint32_t>(
        *static_cast<std::uint32_t*>(static_cast<void*>(base + dirty_offset)))
        .store(0, std::memory_order_relaxed);
}

void region_store::mark_header_dirty() noexcept {
    if (std::byte* base = file_.data(); base != nullptr)
        std::atomic_ref<std::uint32_t>(
            *static_cast<std::uint32_t*>(static_cast<void*>(base + dirty_offset)))
            .store(1, std::memory_order_relaxed);
}

region_store region_store::create(const std::filesystem::path& path, const region_layout& layout,
                                  const region_store_options& options) {
    region_store s;
    s.plan(layout, options, true);
    mapped_file_options mo;
    mo.disposition = file_creation::create_only;
    mo.permissions = options.permissions;
    s.file_ = mapped_file::create(path, s.mapped_bytes_, mo);
    s.path_ = path;
    s.bind_slots(s.file_.data());
    // The file is new, so every region is zeros: their checksums come from a zero buffer
    // instead of reading (and so allocating page cache for) the sparse file.
    for (std::size_t i = 0; i < s.count_; ++i)
        s.meta_[i].checksum = crc_of_zeros(layout.regions()[i].size);
    s.write_header();
    s.file_.flush(0, s.header_bytes_);
    s.state_.store(region_store_state::created, std::memory_order_release);
    return s;
}

region_store region_store::anonymous(const region_layout& layout,
                                     const region_store_options& options) {
    region_store s;
    s.plan(layout, options, false);
    void* p = nullptr;
    if (auto ec = os::map_anonymous(s.mapped_bytes_, p))
        throw std::system_error(ec, prefix + std::string("cannot map ") +
                                        std::to_string(s.mapped_bytes_) +
                                        " bytes of anonymous memory");
    s.anon_ = static_cast<std::byte*>(p);
    s.bind_slots(s.anon_);
    s.state_.store(region_store_state::created, std::memory_order_release);
    return s;
}

region_store region_store::open(const std::filesystem::path& path, const region_layout& layout,
                                const region_store_options& options) {
    region_store s;
    s.plan(layout, options, true);
    s.file_ = mapped_file(path, map_mode::read_write);
    s.path_ = path;
    s.verify_file(options);
    s.bind_slots(s.file_.data());
    s.state_.store(region_store_state::loaded, std::memory_order_release);
    return s;
}

region_store region_store::open_or_create(const std::filesystem::path& path,
                                          const region_layout& layout,
                                          const region_store_options& options) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) return open(path, layout, options);
    try {
        return create(path, layout, options);
    } catch (const std::system_error& e) {
        // Another process created it between the check and create(): open what it made.
        if (e.code() == std::errc::file_exists) return open(path, layout, options);
        throw;
    }
}

void region_store::verify_file(const region_store_options& options) {
    const std::string where = in_quotes(path_.string());
    const auto corrupt = [&](region_error kind, std::string_view region, const std::string& what) {
        const std::error_code code =
            kind == region_error::layout_mismatch || kind == region_error::unsupported_version
                ? make_error_code(errc::invalid_argument)
                : make_error_code(errc::corruption_detected);
        fail(kind, code, region_store_state::closed, region, where + ": " + what);
    };
    const std::byte* base = file_.data();
    const std::size_t size = file_.size();
    if (size < sizeof(file_header))
        corrupt(region_error::not_a_store, "",
                "not a region store: the file has " + std::to_string(size) +
                    " bytes, fewer than the " + std::to_string(sizeof(file_header)) +
                    "-byte header");
    file_header h;
    std::memcpy(&h, base, sizeof h);
    if (std::memcmp(h.magic, file_magic.data(), sizeof h.magic) != 0)
        corrupt(region_error::not_a_store, "",
                "not a region store: it does not start with the magic \"MEMKITRS\"");
    if (h.byte_order != byte_order_mark)
        corrupt(region_error::unsupported_version, "",
                "the store was written on a machine of the other byte order");
    if (h.version != format_version)
        corrupt(region_error::unsupported_version, "",
                "the store has format version " + std::to_string(h.version) +
                    "; this build reads version " + std::to_string(format_version));
    if (h.region_count == 0 || h.header_bytes > size ||
        h.header_bytes < sizeof(file_header) + std::uint64_t{h.region_count} * sizeof(region_entry))
        corrupt(region_error::corrupted, "",
                "the header is damaged: " + std::to_string(h.region_count) + " regions in a " +
                    std::to_string(h.header_bytes) + "-byte header of a " + std::to_string(size) +
                    "-byte file");
    const std::uint32_t computed_crc = header_crc(base, h.region_count);
    if (computed_crc != h.header_crc)
        corrupt(region_error::corrupted, "",
                "the header checksum does not match (stored " + hex32(h.header_crc) +
                    ", computed " + hex32(computed_crc) + ")");

    // The header is intact: now compare it with the layout, naming the first difference.
    std::vector<region_entry> entries(h.region_count);
    std::vector<std::string> file_names(h.region_count);
    for (std::size_t i = 0; i < h.region_count; ++i) {
        std::memcpy(&entries[i], base + sizeof(file_header) + i * sizeof(region_entry),
                    sizeof(region_entry));
        const char* name = entries[i].name;
        file_names[i].assign(name, std::find(name, name + sizeof entries[i].name, '\0'));
    }
    if (h.page_size != page_size())
        corrupt(region_error::layout_mismatch, "",
                "the store was made with " + std::to_string(h.page_size) +
                    "-byte pages; this system has " + std::to_string(page_size()) + "-byte pages");
    std::vector<std::string> layout_names;
    for (const region_spec& s : layout_.regions()) layout_names.push_back(s.name);
    if (h.region_count != count_)
        corrupt(region_error::layout_mismatch, "",
                "the file has " + std::to_string(h.region_count) + " regions (" +
                    names_of(file_names) + "), the layout " + std::to_string(count_) + " (" +
                    names_of(layout_names) + ")");
    for (std::size_t i = 0; i < count_; ++i) {
        const region_spec& s = layout_.regions()[i];
        const region_entry& e = entries[i];
        if (file_names[i] != s.name)
            corrupt(region_error::layout_mismatch, s.name,
                    "region " + std::to_string(i) + " is " + in_quotes(file_names[i]) +
                        " in the file but " + in_quotes(s.name) + " in the layout");
        if (e.size != s.size)
            corrupt(region_error::layout_mismatch, s.name,
                    "region " + in_quotes(s.name) + " has " + std::to_string(e.size) +
                        " bytes in the file but " + std::to_string(s.size) + " in the layout");
        if (e.alignment != s.alignment)
            corrupt(region_error::layout_mismatch, s.name,
                    "region " + in_quotes(s.name) + " has alignment " +
                        std::to_string(e.alignment) + " in the file but " +
                        std::to_string(s.alignment) + " in the layout");
        if (e.offset != meta_[i].offset)
            corrupt(region_error::layout_mismatch, s.name,
                    "region " + in_quotes(s.name) + " is at offset " + std::to_string(e.offset) +
                        " in the file but " + std::to_string(meta_[i].offset) + " for the layout");
    }
    std::vector<std::size_t> offsets(count_);
    for (std::size_t i = 0; i < count_; ++i) offsets[i] = meta_[i].offset;
    const std::uint64_t expected_hash = layout_hash(layout_, offsets, page_size());
    if (h.layout_hash != expected_hash)
        corrupt(region_error::layout_mismatch, "",
                "the layout hash differs (file " + hex64(h.layout_hash) + ", layout " +
                    hex64(expected_hash) + ")");
    if (h.header_bytes != header_bytes_ || h.file_bytes != mapped_bytes_ || size != mapped_bytes_)
        corrupt(region_error::corrupted, "",
                "the file has " + std::to_string(size) + " bytes; its header says " +
                    std::to_string(h.file_bytes) + " and the layout needs " +
                    std::to_string(mapped_bytes_) + " (truncated or extended by someone else?)");

    for (std::size_t i = 0; i < count_; ++i) meta_[i].checksum = entries[i].checksum;
    generation_ = h.generation;
    const bool dirty =
        std::atomic_ref<const std::uint32_t>(
            *static_cast<const std::uint32_t*>(static_cast<const void*>(base + dirty_offset)))
            .load(std::memory_order_relaxed) != 0;
    if (!options.verify_checksums) {
        // Unknown which regions changed after the last flush: the next flush recomputes all.
        if (dirty)
            for (std::size_t i = 0; i < count_; ++i) slots_[i].dirty = true;
        return;
    }
    std::vector<std::string> differing;
    std::size_t first_bad = count_;
    std::uint32_t first_computed = 0;
    for (std::size_t i = 0; i < count_; ++i) {
        const std::uint32_t c = detail::crc32c(
            std::span<const std::byte>(base + meta_[i].offset, layout_.regions()[i].size));
        if (c != entries[i].checksum) {
            if (first_bad == count_) {
                first_bad = i;
                first_computed = c;
            }
            differing.push_back(in_quotes(layout_.regions()[i].name));
        }
    }
    if (dirty && !differing.empty())
        corrupt(region_error::unflushed, layout_.regions()[first_bad].name,
                "the store was written after its last flush (its writer may have stopped before "
                "flushing): region" +
                    std::string(differing.size() > 1 ? "s " : " ") + names_of(differing) +
                    (differing.size() > 1 ? " no longer match their" : " no longer matches its") +
                    " checksum; open with verify_checksums = false to use the data as it is");
    if (!differing.empty()) {
        const std::string& name = layout_.regions()[first_bad].name;
        corrupt(region_error::corrupted, name,
                "region " + in_quotes(name) + " does not match its checksum (stored " +
                    hex32(entries[first_bad].checksum) + ", computed " + hex32(first_computed) +
                    ")" +
                    (differing.size() > 1
                         ? "; " + std::to_string(differing.size() - 1) + " more regions differ"
                         : std::string()));
    }
    // Dirty but every region matches: the writes after the last flush changed nothing (or were
    // undone), so the data is the flushed data. The next flush clears the word.
}

void region_store::activate() {
    const region_store_state s = state();
    if (s != region_store_state::created && s != region_store_state::loaded)
        throw_state("activate");
    state_.store(region_store_state::active, std::memory_order_release);
}

void region_store::flush() {
    if (state() == region_store_state::closed) throw_state("flush");
    std::lock_guard flushing(flush_mutex_);
    // Shared locks on every region, in index order: writers (one exclusive lock each) finish and
    // wait, readers go on. The checksums then match what is written back.
    std::vector<std::shared_lock<detail::region_lock>> locks;
    locks.reserve(count_);
    for (std::size_t i = 0; i < count_; ++i) locks.emplace_back(slots_[i].lock);
    flush_locked();
}

void region_store::flush_locked() {
    if (!file_backed()) {
        for (std::size_t i = 0; i < count_; ++i) slots_[i].dirty = false;
        return;
    }
    bool any = false;
    for (std::size_t i = 0; i < count_; ++i) {
        detail::region_slot& s = slots_[i];
        if (!s.dirty) continue;
        any = true;
        meta_[i].checksum = detail::crc32c(std::span<const std::byte>(s.data, s.size));
        // Data before header: a header on disk never vouches for data that is not.
        file_.flush(meta_[i].offset, meta_[i].capacity);
    }
    const bool header_dirty =
        std::atomic_ref<std::uint32_t>(
            *static_cast<std::uint32_t*>(static_cast<void*>(file_.data() + dirty_offset)))
            .load(std::memory_order_relaxed) != 0;
    if (!any && !header_dirty) return;
    ++generation_;
    write_header();
    file_.flush(0, header_bytes_);
    for (std::size_t i = 0; i < count_; ++i) slots_[i].dirty = false;
}

void region_store::close() {
    if (state() == region_store_state::closed) throw_state("close");
    for (std::size_t i = 0; i < count_; ++i) {
        if (!slots_[i].lock.try_lock()) {
            for (std::size_t k = 0; k < i; ++k) slots_[k].lock.unlock();
            const std::string& name = layout_.regions()[i].name;
            fail(region_error::still_in_use, make_error_code(errc::still_in_use), state(), name,
                 "cannot close " +
                     (file_backed() ? in_quotes(path_.string())
                                    : std::string("the anonymous store")) +
                     ": region " + in_quotes(name) + " is still held by a read or write guard");
        }
    }
    for (std::size_t i = 0; i < count_; ++i) slots_[i].lock.unlock();
    if (file_backed()) flush();
    release();
}

void region_store::release() noexcept {
    file_.close();
    if (anon_ != nullptr) os::unmap(anon_, mapped_bytes_);
    anon_ = nullptr;
    for (std::size_t i = 0; i < count_; ++i) {
        slots_[i].data = nullptr;
        slots_[i].dirty = false;
    }
    state_.store(region_store_state::closed, std::memory_order_release);
}

std::vector<region_info> region_store::regions() const {
    std::vector<region_info> out;
    out.reserve(count_);
    for (std::size_t i = 0; i < count_; ++i) {
        const region_spec& s = layout_.regions()[i];
        out.push_back(region_info{s.name, meta_[i].offset, s.size, meta_[i].capacity, s.alignment,
                                  meta_[i].checksum});
    }
    return out;
}

region_store_stats region_store::stats() const {
    region_store_stats st;
    st.region_count = count_;
    for (const region_spec& s : layout_.regions()) st.region_bytes += s.size;
    st.reserved_bytes = reserved_bytes_;
    st.header_bytes = header_bytes_;
    st.mapped_bytes = mapped_bytes_;
    st.limit = limit_;
    st.generation = generation_;
    // A snapshot: dirty flags change under the regions' locks, which stats() does not take.
    for (std::size_t i = 0; i < count_; ++i) {
        std::shared_lock lock(slots_[i].lock);
        st.dirty_regions += slots_[i].dirty ? 1 : 0;
    }
    return st;
}

// ----------------------------------------------------------------------------- cold paths

void region_store::throw_unknown(std::string_view name) const {
    std::vector<std::string> names;
    for (const region_spec& s : layout_.regions()) names.push_back(s.name);
    fail(region_error::unknown_region, make_error_code(errc::invalid_argument), state(), name,
         "no region named " + in_quotes(name) +
             (names.empty() ? std::string(" (the store has no regions)")
                            : " (regions: " + names_of(names) + ")"));
}

void region_store::throw_state(const char* op) const {
    const region_store_state s = state();
    fail(region_error::wrong_state, make_error_code(errc::invalid_argument), s, "",
         std::string("cannot ") + op + " " +
             (file_backed() ? in_quotes(path_.string()) : std::string("the anonymous store")) +
             ": the store is " + to_string(s) + " (" + code_state_hint(s) + ")");
}

void region_store::throw_access_error(const char* op, region_id id) const {
    const region_store_state s = state();
    if (id.index >= count_)
        fail(region_error::unknown_region, make_error_code(errc::invalid_argument), s, "",
             "no region with index " + std::to_string(id.index) + " (the store has " +
                 std::to_string(count_) + " regions)");
    const std::string& name = layout_.regions()[id.index].name;
    fail(region_error::wrong_state, make_error_code(errc::invalid_argument), s, name,
         std::string("cannot ") + op + " region " + in_quotes(name) + ": the store is " +
             to_string(s) + ", not active (" + code_state_hint(s) + ")");
}

void region_store::throw_out_of_range(region_id id, std::size_t offset, std::size_t length) const {
    const std::string& name = layout_.regions()[id.index].name;
    fail(region_error::out_of_range, make_error_code(errc::invalid_argument), state(), name,
         "write of " + std::to_string(length) + " bytes at offset " + std::to_string(offset) +
             " is past the end of region " + in_quotes(name) + " (" +
             std::to_string(slots_[id.index].size) + " bytes)");
}

} // namespace memkit
