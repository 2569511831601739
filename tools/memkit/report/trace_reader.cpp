// Decoding and packing of libmemkit_track.so traces (trace_reader.hpp; the format is in
// tools/track/trace_format.hpp).
#include "trace_reader.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>

#if MEMKIT_CLI_HAVE_ZLIB
#include <zlib.h>
#endif

#include "../../track/trace_format.hpp"

namespace memkit::report {
namespace {

namespace mt = memkit::track;

constexpr std::size_t magic_size = sizeof mt::trace_magic;
constexpr std::uint64_t max_string = 1u << 20;
constexpr std::uint64_t max_stack_frames = 4096;

// A cursor over the decoded stream that knows its offset, for damage messages.
class cursor {
public:
    cursor(const unsigned char* begin, const unsigned char* end)
        : begin_(begin), pos_(begin), end_(end) {}

    [[nodiscard]] std::uint64_t offset() const { return static_cast<std::uint64_t>(pos_ - begin_); }
    [[nodiscard]] bool at_end() const { return pos_ == end_; }

    bool byte(std::uint8_t* b) {
        if (pos_ == end_) return false;
        *b = *pos_++;
        return true;
    }
    bool varint(std::uint64_t* v) { return mt::get_varint(&pos_, end_, v); }
    bool string(std::string* s, std::uint64_t max_len) {
        std::uint64_t n = 0;
        const unsigned char* start = pos_;
        if (!varint(&n) || n > max_len || n > static_cast<std::uint64_t>(end_ - pos_)) {
            pos_ = start;
            return false;
        }
        s->assign(reinterpret_cast<const char*>(pos_), static_cast<std::size_t>(n));
        pos_ += n;
        return true;
    }

private:
    const unsigned char* begin_;
    const unsigned char* pos_;
    const unsigned char* end_;
};

struct block {
    std::uint64_t size;
    std::uint32_t stack;
    std::uint8_t kind;
};

bool is_alloc_tag(std::uint8_t tag, bool packed) {
    const auto base = static_cast<std::uint8_t>(mt::tag::alloc);
    if (packed) return tag == base;
    return tag >= base && tag < base + static_cast<std::uint8_t>(mt::alloc_kind::count_);
}

bool is_free_tag(std::uint8_t tag) {
    const auto base = static_cast<std::uint8_t>(mt::tag::free);
    return tag >= base && tag < base + static_cast<std::uint8_t>(mt::free_kind::count_);
}

// Decodes the header fields and records that follow the magic. `base` is the offset of body[0]
// in the file, for damage offsets of raw traces (packed ones count decompressed bytes).
void decode_body(trace& t, const unsigned char* body, std::size_t size, std::uint64_t base) {
    cursor c(body, body + size);
    auto damaged = [&](std::uint64_t at, std::string why) {
        t.damage = damage_info{base + at, t.packed, std::move(why)};
    };
    if (!c.varint(&t.version) || !c.varint(&t.pid) || !c.varint(&t.ppid) ||
        !c.varint(&t.start_unix_us) || !c.string(&t.executable, max_string) ||
        !c.string(&t.command_line, max_string)) {
        damaged(c.offset(), "truncated header");
        return;
    }
    if (t.version != mt::trace_version)
        throw std::runtime_error(fmt::format("{}: trace format version {} (this memkit reads {})",
                                             t.path, t.version, mt::trace_version));

    t.stacks.emplace_back();                       // id 0: no stack
    std::vector<block> infos(1, block{0, 0, 0});   // packed: by info id; 0 is "unknown"
    std::unordered_map<std::uint64_t, block> live; // raw: by address
    if (!t.packed) live.reserve(size / 16);
    std::uint64_t now_us = 0;
    std::uint64_t last_pointer = 0;
    while (!c.at_end()) {
        const std::uint64_t record_at = c.offset();
        std::uint8_t tag = 0;
        (void)c.byte(&tag);
        bool ok = true;
        std::string why;
        if (tag == static_cast<std::uint8_t>(mt::tag::time)) {
            std::uint64_t d = 0;
            ok = c.varint(&d);
            now_us += d;
        } else if (tag == static_cast<std::uint8_t>(mt::tag::stack)) {
            std::uint64_t id = 0, n = 0;
            ok = c.varint(&id) && c.varint(&n);
            if (ok && (id != t.stacks.size() || n > max_stack_frames)) {
                ok = false;
                why = id != t.stacks.size()
                          ? fmt::format("stack id {} out of sequence (expected {})", id,
                                        t.stacks.size())
                          : fmt::format("stack with {} frames", n);
            }
            std::vector<std::uint64_t> frames;
            std::uint64_t prev = 0;
            for (std::uint64_t i = 0; ok && i < n; ++i) {
                std::uint64_t d = 0;
                ok = c.varint(&d);
                prev += static_cast<std::uint64_t>(mt::unzigzag(d));
                frames.push_back(prev);
            }
            if (ok) t.stacks.push_back(std::move(frames));
        } else if (tag == static_cast<std::uint8_t>(mt::tag::module)) {
            module_info m;
            ok = c.varint(&m.bias) && c.varint(&m.lo) && c.varint(&m.hi) &&
                 c.string(&m.path, max_string);
            if (ok) t.modules.push_back(std::move(m));
        } else if (t.packed && tag == static_cast<std::uint8_t>(mt::tag::info)) {
            std::uint8_t kind = 0;
            std::uint64_t sz = 0, stack = 0;
            ok = c.byte(&kind) && c.varint(&sz) && c.varint(&stack);
            if (ok && (kind >= static_cast<std::uint8_t>(mt::alloc_kind::count_) ||
                       stack >= t.stacks.size())) {
                ok = false;
                why = fmt::format("allocation info with kind {} and stack {}", kind, stack);
            }
            if (ok) infos.push_back({sz, static_cast<std::uint32_t>(stack), kind});
        } else if (is_alloc_tag(tag, t.packed)) {
            event e;
            e.is_alloc = true;
            e.time_us = now_us;
            if (t.packed) {
                std::uint64_t id = 0;
                ok = c.varint(&id);
                if (ok && (id == 0 || id >= infos.size())) {
                    ok = false;
                    why = fmt::format("allocation of undefined info {}", id);
                }
                if (ok) {
                    e.size = infos[id].size;
                    e.stack = infos[id].stack;
                    e.alloc_kind = infos[id].kind;
                }
            } else {
                std::uint64_t d = 0, sz = 0, stack = 0;
                ok = c.varint(&d) && c.varint(&sz) && c.varint(&stack);
                if (ok && stack >= t.stacks.size()) {
                    ok = false;
                    why = fmt::format("allocation refers to undefined stack {}", stack);
                }
                if (ok) {
                    last_pointer += static_cast<std::uint64_t>(mt::unzigzag(d));
                    e.size = sz;
                    e.stack = static_cast<std::uint32_t>(stack);
                    e.alloc_kind =
                        static_cast<std::uint8_t>(tag - static_cast<std::uint8_t>(mt::tag::alloc));
                    // An address already live lost its free (made where the tracker could not
                    // see it): the old block was released, so say so before the new one.
                    const auto [it, fresh] =
                        live.try_emplace(last_pointer, block{e.size, e.stack, e.alloc_kind});
                    if (!fresh) {
                        event lost;
                        lost.time_us = now_us;
                        lost.size = it->second.size;
                        lost.stack = it->second.stack;
                        lost.alloc_kind = it->second.kind;
                        t.events.push_back(lost);
                        it->second = {e.size, e.stack, e.alloc_kind};
                    }
                }
            }
            if (ok) t.events.push_back(e);
        } else if (is_free_tag(tag)) {
            event e;
            e.time_us = now_us;
            e.free_kind = static_cast<std::uint8_t>(tag - static_cast<std::uint8_t>(mt::tag::free));
            std::uint64_t v = 0;
            ok = c.varint(&v);
            if (ok && t.packed) {
                if (v >= infos.size()) {
                    ok = false;
                    why = fmt::format("free of undefined info {}", v);
                } else if (v == 0) {
                    e.known = false;
                } else {
                    e.size = infos[v].size;
                    e.stack = infos[v].stack;
                    e.alloc_kind = infos[v].kind;
                }
            } else if (ok) {
                last_pointer += static_cast<std::uint64_t>(mt::unzigzag(v));
                const auto it = live.find(last_pointer);
                if (it == live.end()) {
                    e.known = false;
                } else {
                    e.size = it->second.size;
                    e.stack = it->second.stack;
                    e.alloc_kind = it->second.kind;
                    live.erase(it);
                }
            }
            if (ok) t.events.push_back(e);
        } else if (tag == static_cast<std::uint8_t>(mt::tag::end)) {
            std::uint8_t reason = 0;
            std::uint64_t value = 0, d = 0;
            ok = c.byte(&reason) && c.varint(&value) && c.varint(&d);
            if (ok && reason >= static_cast<std::uint8_t>(mt::end_reason::count_)) {
                ok = false;
                why = fmt::format("unknown end reason {}", reason);
            }
            if (ok) {
                t.complete = true;
                t.end_reason = reason;
                t.end_value = value;
                now_us += d;
                if (!c.at_end()) {
                    damaged(c.offset(), "data after the end record");
                    break;
                }
            }
        } else {
            ok = false;
            why = fmt::format("unknown record tag 0x{:02x}", tag);
        }
        if (!ok) {
            damaged(record_at, why.empty() ? "record cut short (truncated file)" : why);
            break;
        }
    }
    t.duration_us = now_us;
}

#if MEMKIT_CLI_HAVE_ZLIB
// Inflates what it can of [in, in + n); sets *problem (with the file offset where inflation
// stopped) when the stream is corrupt or ends early.
std::vector<unsigned char> inflate_all(const unsigned char* in, std::size_t n,
                                       std::optional<damage_info>* problem) {
    std::vector<unsigned char> out;
    z_stream z{};
    if (inflateInit(&z) != Z_OK) throw std::runtime_error("zlib: inflateInit failed");
    z.next_in = const_cast<unsigned char*>(in);
    z.avail_in = static_cast<uInt>(n);
    int rc = Z_OK;
    while (rc == Z_OK) {
        const std::size_t have = out.size();
        out.resize(have + 256 * 1024);
        z.next_out = out.data() + have;
        z.avail_out = 256 * 1024;
        rc = inflate(&z, Z_NO_FLUSH);
        out.resize(have + (256 * 1024 - z.avail_out));
        if (rc == Z_BUF_ERROR && z.avail_in > 0) rc = Z_OK; // only the output was full
    }
    const std::uint64_t stopped = magic_size + (n - z.avail_in);
    if (rc != Z_STREAM_END) {
        *problem = damage_info{stopped, false,
                               rc == Z_BUF_ERROR
                                   ? std::string("compressed data ends early (truncated file)")
                                   : fmt::format("corrupt compressed data ({})",
                                                 z.msg != nullptr ? z.msg : "zlib error")};
    } else if (z.avail_in > 0) {
        *problem = damage_info{stopped, false, "data after the end of the compressed stream"};
    }
    inflateEnd(&z);
    return out;
}
#endif

} // namespace

trace decode_trace(const std::vector<unsigned char>& bytes, const std::string& path) {
    trace t;
    t.path = path;
    t.file_size = bytes.size();
    if (bytes.empty())
        throw std::runtime_error(fmt::format(
            "{}: empty file: the program wrote no trace (was it statically linked, setuid, or "
            "killed before it started?)",
            path));
    if (bytes.size() < magic_size ||
        std::memcmp(bytes.data(), mt::trace_magic, magic_size - 1) != 0)
        throw std::runtime_error(fmt::format("{}: not a memkit trace (bad magic)", path));
    if (bytes[magic_size - 1] == mt::trace_magic[magic_size - 1]) {
        decode_body(t, bytes.data() + magic_size, bytes.size() - magic_size, magic_size);
        return t;
    }
    if (bytes[magic_size - 1] != mt::packed_trace_magic[magic_size - 1])
        throw std::runtime_error(fmt::format("{}: unknown memkit trace flavor {}", path,
                                             static_cast<int>(bytes[magic_size - 1])));
#if MEMKIT_CLI_HAVE_ZLIB
    t.packed = true;
    std::optional<damage_info> problem;
    const std::vector<unsigned char> body =
        inflate_all(bytes.data() + magic_size, bytes.size() - magic_size, &problem);
    decode_body(t, body.data(), body.size(), 0);
    // A compression problem explains any damage in the records decoded from it.
    if (problem) t.damage = problem;
    return t;
#else
    throw std::runtime_error(
        fmt::format("{}: a packed trace, and this memkit was built without zlib", path));
#endif
}

trace read_trace(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    in.seekg(0, std::ios::beg);
    std::vector<unsigned char> bytes(size > 0 ? static_cast<std::size_t>(size) : 0);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!in) throw std::runtime_error(fmt::format("{}: read error", path));
    return decode_trace(bytes, path);
}

bool can_pack() { return MEMKIT_CLI_HAVE_ZLIB != 0; }

void write_packed(const trace& t, const std::string& path) {
#if MEMKIT_CLI_HAVE_ZLIB
    std::vector<unsigned char> body;
    body.reserve(t.events.size() * 3 + 4096);
    unsigned char tmp[3 * mt::max_varint_size + 2];
    auto put = [&](std::uint64_t v) {
        unsigned char* end = mt::put_varint(tmp, v);
        body.insert(body.end(), &tmp[0], end);
    };
    auto put_string = [&](const std::string& s) {
        put(s.size());
        body.insert(body.end(), s.begin(), s.end());
    };
    put(t.version);
    put(t.pid);
    put(t.ppid);
    put(t.start_unix_us);
    put_string(t.executable);
    put_string(t.command_line);
    for (const module_info& m : t.modules) {
        body.push_back(static_cast<unsigned char>(mt::tag::module));
        put(m.bias);
        put(m.lo);
        put(m.hi);
        put_string(m.path);
    }
    // Stacks are all written up front; each info and its stack before first use.
    for (std::size_t id = 1; id < t.stacks.size(); ++id) {
        body.push_back(static_cast<unsigned char>(mt::tag::stack));
        put(id);
        put(t.stacks[id].size());
        std::uint64_t prev = 0;
        for (std::uint64_t f : t.stacks[id]) {
            put(mt::zigzag(static_cast<std::int64_t>(f - prev)));
            prev = f;
        }
    }
    struct info_key {
        std::uint64_t size;
        std::uint32_t stack;
        std::uint8_t kind;
        bool operator==(const info_key&) const = default;
    };
    struct info_hash {
        std::size_t operator()(const info_key& k) const noexcept {
            std::uint64_t h = k.size * 0x9e3779b97f4a7c15ull;
            h ^= (static_cast<std::uint64_t>(k.stack) << 8 | k.kind) + 0x7f4a7c159e3779b9ull +
                 (h << 6) + (h >> 2);
            return static_cast<std::size_t>(h ^ (h >> 29));
        }
    };
    std::unordered_map<info_key, std::uint64_t, info_hash> info_ids;
    auto info_of = [&](const event& e) {
        const info_key key{e.size, e.stack, e.alloc_kind};
        auto [it, fresh] = info_ids.try_emplace(key, info_ids.size() + 1);
        if (fresh) {
            body.push_back(static_cast<unsigned char>(mt::tag::info));
            body.push_back(e.alloc_kind);
            put(e.size);
            put(e.stack);
        }
        return it->second;
    };
    std::uint64_t now = 0;
    for (const event& e : t.events) {
        if (e.time_us != now) {
            body.push_back(static_cast<unsigned char>(mt::tag::time));
            put(e.time_us - now);
            now = e.time_us;
        }
        if (e.is_alloc) {
            const std::uint64_t id = info_of(e);
            body.push_back(static_cast<unsigned char>(mt::tag::alloc));
            put(id);
        } else {
            const std::uint64_t id = e.known ? info_of(e) : 0;
            body.push_back(
                static_cast<unsigned char>(static_cast<unsigned>(mt::tag::free) + e.free_kind));
            put(id);
        }
    }
    if (t.complete) {
        body.push_back(static_cast<unsigned char>(mt::tag::end));
        body.push_back(t.end_reason);
        put(t.end_value);
        put(t.duration_us - now);
    }

    uLongf out_size = compressBound(static_cast<uLong>(body.size()));
    std::vector<unsigned char> out(magic_size + out_size);
    std::memcpy(out.data(), mt::packed_trace_magic, magic_size);
    if (compress2(out.data() + magic_size, &out_size, body.data(), static_cast<uLong>(body.size()),
                  6) != Z_OK)
        throw std::runtime_error(fmt::format("{}: compression failed", path));
    out.resize(magic_size + out_size);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
    f.close();
    if (!f)
        throw std::runtime_error(fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
#else
    (void)t;
    throw std::runtime_error(fmt::format("{}: this memkit was built without zlib", path));
#endif
}

} // namespace memkit::report
