// Tests of memkit::region_store and memkit::region_layout (include/memkit/vm/region_store.hpp):
// layouts and their parser, page alignment and non-overlap, content integrity, the lifecycle and
// every invalid transition, the on-disk format (reopen, layout mismatches, corruption, wrong
// magic or version, truncation), durability across SIGKILL of the writer, the CRC32C used for
// the checksums, and stats. Every error path checks the exception type, kind, code and message.
#include "memkit/vm/region_store.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "memkit/core/align.hpp"

namespace {

namespace fs = std::filesystem;
using memkit::region_error;
using memkit::region_id;
using memkit::region_layout;
using memkit::region_store;
using memkit::region_store_error;
using memkit::region_store_options;
using memkit::region_store_state;

// The guards' accessors must not be callable on temporaries: the span would outlive the lock.
template <class G>
concept has_bytes = requires {
    std::declval<G>().bytes();
};
static_assert(!has_bytes<memkit::region_read_guard>);
static_assert(!has_bytes<memkit::region_write_guard>);
static_assert(has_bytes<memkit::region_read_guard&>);
static_assert(has_bytes<const memkit::region_write_guard&>);
static_assert(!std::is_convertible_v<memkit::region_read_guard, std::span<const std::byte>>);
static_assert(std::is_convertible_v<memkit::region_read_guard&, std::span<const std::byte>>);
static_assert(!std::is_copy_constructible_v<memkit::region_read_guard>);
static_assert(std::is_nothrow_move_constructible_v<memkit::region_read_guard>);
static_assert(!std::is_copy_constructible_v<region_store>);
static_assert(std::is_nothrow_move_constructible_v<region_store>);
static_assert(std::is_nothrow_copy_constructible_v<region_store_error>);
static_assert(std::is_base_of_v<std::system_error, region_store_error>);

const std::size_t page = memkit::page_size();

struct caught {
    region_error kind;
    std::error_code code;
    region_store_state state;
    std::string region;
    std::string what;
};

template <class F>
std::optional<caught> error_of(F&& f) {
    try {
        f();
    } catch (const region_store_error& e) {
        return caught{e.kind(), e.code(), e.state(), e.region(), e.what()};
    }
    return std::nullopt;
}

#define EXPECT_MESSAGE_HAS(err, fragment)                                                          \
    EXPECT_NE((err).what.find(fragment), std::string::npos)                                        \
        << "message: " << (err).what << "\nexpected to contain: " << (fragment)

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = static_cast<std::byte>((i * 31u + seed * 7u) & 0xffu);
    return v;
}

bool equal(std::span<const std::byte> a, std::span<const std::byte> b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

std::span<const std::byte> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

region_layout three() { return region_layout{{"a", 4096}, {"b", 10000}, {"c", 1}}; }
// The same regions, for range-for loops (a temporary's regions() would dangle).
const region_layout& three_specs() {
    static const region_layout l = three();
    return l;
}

class temp_dir : public ::testing::Test {
protected:
    void SetUp() override {
        static int counter = 0;
        dir_ =
            fs::temp_directory_path() / ("memkit_region_store_test_" + std::to_string(::getpid()) +
                                         "_" + std::to_string(counter++));
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    fs::path file(const char* name = "store.mks") const { return dir_ / name; }

    static void patch(const fs::path& p, std::size_t offset, const void* bytes, std::size_t n) {
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        ASSERT_TRUE(f.good());
        f.seekp(static_cast<std::streamoff>(offset));
        f.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(n));
        ASSERT_TRUE(f.good());
    }
    template <class T>
    static void patch_value(const fs::path& p, std::size_t offset, T v) {
        patch(p, offset, &v, sizeof v);
    }
    static std::vector<std::byte> read_all(const fs::path& p) {
        std::ifstream f(p, std::ios::binary);
        std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        std::vector<std::byte> out(c.size());
        std::memcpy(out.data(), c.data(), c.size());
        return out;
    }
    // Recomputes the header checksum after a test patched a header field, so that the check
    // behind it (layout, sizes) is what fails.
    static void fix_header_crc(const fs::path& p) {
        const auto bytes = read_all(p);
        std::uint32_t count;
        std::memcpy(&count, bytes.data() + 20, 4);
        std::uint32_t c = memkit::detail::crc32c(std::span(bytes.data(), 120));
        c = memkit::detail::crc32c(std::span(bytes.data() + 128, std::size_t{count} * 96), c);
        patch_value(p, 120, c);
    }

    // A flushed store with recognisable contents in every region of three().
    void make_filled(const fs::path& p) {
        region_store s = region_store::create(p, three());
        s.activate();
        for (const auto& spec : three_specs().regions())
            s.write(spec.name, 0, pattern(spec.size, static_cast<unsigned>(spec.size)));
        s.flush();
        s.close();
    }
    static void expect_filled(region_store& s) {
        for (const auto& spec : three_specs().regions()) {
            auto r = s.read(spec.name);
            EXPECT_TRUE(equal(r.bytes(), pattern(spec.size, static_cast<unsigned>(spec.size))))
                << "region " << spec.name;
        }
    }

    fs::path dir_;
};

// ----------------------------------------------------------------------------- crc32c

TEST(region_store_crc, known_vectors) {
    using memkit::detail::crc32c;
    using memkit::detail::crc32c_portable;
    EXPECT_EQ(crc32c(as_bytes("123456789")), 0xE3069283u);
    EXPECT_EQ(crc32c_portable(as_bytes("123456789")), 0xE3069283u);
    EXPECT_EQ(crc32c({}), 0u);
    // RFC 3720 (iSCSI) B.4 test vectors.
    std::vector<std::byte> zeros(32, std::byte{0}), ones(32, std::byte{0xff});
    EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
    EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
    EXPECT_EQ(crc32c_portable(zeros), 0x8A9136AAu);
    EXPECT_EQ(crc32c_portable(ones), 0x62A8AB43u);
}

TEST(region_store_crc, hardware_and_portable_agree_and_compose) {
    using memkit::detail::crc32c;
    using memkit::detail::crc32c_portable;
    std::mt19937_64 rng(42);
    std::vector<std::byte> buf(4096 + 64);
    for (auto& b : buf) b = static_cast<std::byte>(rng());
    for (std::size_t start = 0; start < 9; ++start) {
        for (std::size_t len : {0u, 1u, 7u, 8u, 9u, 63u, 64u, 65u, 1000u, 4096u}) {
            const std::span<const std::byte> s(buf.data() + start, len);
            ASSERT_EQ(crc32c(s), crc32c_portable(s)) << start << " " << len;
            const std::size_t cut = len / 3;
            EXPECT_EQ(crc32c(s.subspan(cut), crc32c(s.first(cut))), crc32c(s));
            EXPECT_EQ(crc32c_portable(s.subspan(cut), crc32c_portable(s.first(cut))), crc32c(s));
        }
    }
}

// ----------------------------------------------------------------------------- layouts

TEST(region_layout, builds_in_order) {
    region_layout l;
    l.add("index", 4096).add("blobs", 1 << 20, 64).add("log", 1);
    ASSERT_EQ(l.size(), 3u);
    EXPECT_EQ(l.regions()[0], (memkit::region_spec{"index", 4096, 0}));
    EXPECT_EQ(l.regions()[1], (memkit::region_spec{"blobs", 1 << 20, 64}));
    EXPECT_EQ(l.regions()[2].name, "log");
    EXPECT_TRUE(l.contains("blobs"));
    EXPECT_FALSE(l.contains("blob"));
    EXPECT_EQ(l, (region_layout{{"index", 4096}, {"blobs", 1 << 20, 64}, {"log", 1}}));
}

TEST(region_layout, duplicate_name_is_rejected_and_names_it) {
    region_layout l{{"a", 1}, {"b", 2}};
    const auto e = error_of([&] { l.add("b", 4096); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::duplicate_region);
    EXPECT_EQ(e->code, memkit::errc::invalid_argument);
    EXPECT_EQ(e->region, "b");
    EXPECT_EQ(e->what, "memkit::region_store: duplicate region name \"b\" in the layout");
    EXPECT_EQ(l.size(), 2u) << "a failed add leaves the layout unchanged";

    const auto e2 = error_of([] { region_layout x{{"q", 1}, {"q", 1}}; });
    ASSERT_TRUE(e2);
    EXPECT_EQ(e2->kind, region_error::duplicate_region);
    EXPECT_EQ(e2->region, "q");
}

TEST(region_layout, invalid_regions_are_rejected) {
    region_layout l;
    auto e = error_of([&] { l.add("", 1); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::invalid_layout);
    EXPECT_EQ(e->code, memkit::errc::invalid_argument);
    EXPECT_MESSAGE_HAS(*e, "a region name must not be empty");

    e = error_of([&] { l.add("z", 0); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::invalid_layout);
    EXPECT_EQ(e->code, memkit::errc::bad_size);
    EXPECT_EQ(e->what, "memkit::region_store: region \"z\" has size 0");

    const std::string long_name(64, 'n');
    e = error_of([&] { l.add(long_name, 1); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::invalid_layout);
    EXPECT_MESSAGE_HAS(*e, "has 64 bytes; at most 63 are allowed");
    EXPECT_NO_THROW(l.add(std::string(63, 'n'), 1));

    e = error_of([&] { l.add(std::string_view("a\0b", 3), 1); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->what, "memkit::region_store: region name \"a\\x00b\" contains a NUL character");

    for (std::size_t bad : {std::size_t{3}, std::size_t{48}, page * 2}) {
        e = error_of([&] { l.add("x", 64, bad); });
        ASSERT_TRUE(e) << bad;
        EXPECT_EQ(e->kind, region_error::invalid_layout);
        EXPECT_EQ(e->code, memkit::errc::invalid_alignment);
        EXPECT_EQ(e->region, "x");
        EXPECT_MESSAGE_HAS(*e, "asks for alignment " + std::to_string(bad) +
                                   "; it must be a power of two no larger than the page size (" +
                                   std::to_string(page) + ")");
    }
    EXPECT_NO_THROW(l.add("x", 64, page));
    EXPECT_NO_THROW(l.add("y", 64, 1));
}

TEST(region_layout, parses_name_size_lines) {
    const auto l = region_layout::parse("# the store\n"
                                        "index 4K\n"
                                        "\n"
                                        "   blobs\t1MiB 64   # trailing comment\n"
                                        "log 100\n"
                                        "big 2g\n");
    EXPECT_EQ(
        l,
        (region_layout{
            {"index", 4096}, {"blobs", 1 << 20, 64}, {"log", 100}, {"big", std::size_t{2} << 30}}));
    EXPECT_TRUE(region_layout::parse("").empty());
    EXPECT_TRUE(region_layout::parse("# nothing\n\n").empty());
}

TEST(region_layout, parse_errors_give_the_line) {
    auto e = error_of([] { (void)region_layout::parse("a 1K\nlonely\n"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::invalid_layout);
    EXPECT_EQ(e->what, "memkit::region_store: layout line 2: expected \"name size [alignment]\", "
                       "found 1 fields");

    e = error_of([] { (void)region_layout::parse("a 4X\n"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, memkit::errc::bad_size);
    EXPECT_MESSAGE_HAS(*e, "layout line 1: size \"4X\" of region \"a\" is not a number");

    e = error_of([] { (void)region_layout::parse("a 99999999999999999999\n"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, memkit::errc::bad_size);

    e = error_of([] { (void)region_layout::parse("a 1K\nb 2K\n\na 3K\n"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::duplicate_region);
    EXPECT_EQ(e->region, "a");
    EXPECT_EQ(e->what, "memkit::region_store: layout line 4: duplicate region name \"a\" (first "
                       "declared on line 1)");

    e = error_of([] { (void)region_layout::parse("a 0\n"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, memkit::errc::bad_size);
    EXPECT_EQ(e->what, "memkit::region_store: layout line 1: region \"a\" has size 0");

    e = error_of([] { (void)region_layout::parse("x 1\ny 1K 3\n"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, memkit::errc::invalid_alignment);
    EXPECT_MESSAGE_HAS(*e, "layout line 2: region \"y\" asks for alignment 3");

    e = error_of([] { (void)region_layout::parse("x 1 2 3\n"); });
    ASSERT_TRUE(e);
    EXPECT_MESSAGE_HAS(*e, "found 4 fields");
}

// ----------------------------------------------------------------------------- anonymous store

TEST(region_store_anonymous, regions_are_page_aligned_and_disjoint) {
    const region_layout layout{
        {"one", 1}, {"page", 4096}, {"more", 4097}, {"odd", 10000, 64}, {"pages", 3 * page}};
    region_store s = region_store::anonymous(layout);
    EXPECT_EQ(s.state(), region_store_state::created);
    EXPECT_FALSE(s.file_backed());
    s.activate();
    std::vector<std::pair<const std::byte*, std::size_t>> spans;
    const auto info = s.regions();
    ASSERT_EQ(info.size(), layout.size());
    std::size_t expected_offset = 0;
    for (std::size_t i = 0; i < info.size(); ++i) {
        const auto& spec = layout.regions()[i];
        auto r = s.read(spec.name);
        ASSERT_EQ(r.size(), spec.size);
        EXPECT_TRUE(memkit::is_aligned(r.data(), page)) << spec.name;
        EXPECT_EQ(info[i].name, spec.name);
        EXPECT_EQ(info[i].size, spec.size);
        EXPECT_EQ(info[i].capacity, memkit::align_up(spec.size, page));
        EXPECT_EQ(info[i].offset % page, 0u);
        EXPECT_EQ(info[i].offset, expected_offset) << "regions follow each other page by page";
        expected_offset += info[i].capacity;
        spans.emplace_back(r.data(), info[i].capacity);
        // Zero-copy: every way of reaching the region gives the same address.
        {
            auto by_id = s.read(s.find(spec.name));
            EXPECT_EQ(by_id.data(), r.data());
        }
        r.unlock();
        auto w = s.write(spec.name);
        EXPECT_EQ(w.data(), spans.back().first);
    }
    std::sort(spans.begin(), spans.end());
    for (std::size_t i = 1; i < spans.size(); ++i)
        EXPECT_LE(spans[i - 1].first + spans[i - 1].second, spans[i].first) << "overlap";
}

TEST(region_store_anonymous, zeroed_then_keeps_contents_apart) {
    region_store s = region_store::anonymous(three());
    s.activate();
    for (const auto& spec : three_specs().regions()) {
        auto r = s.read(spec.name);
        EXPECT_TRUE(std::all_of(r.bytes().begin(), r.bytes().end(),
                                [](std::byte b) { return b == std::byte{0}; }));
    }
    // Fill every region completely (by copy and in place), then check nothing bled over.
    s.write("a", 0, pattern(4096, 1));
    {
        auto w = s.write("b");
        const auto p = pattern(10000, 2);
        std::copy(p.begin(), p.end(), w.bytes().begin());
    }
    s.write(s.find("c"), 0, pattern(1, 3));
    {
        auto a = s.read("a");
        auto b = s.read("b");
        auto c = s.read("c");
        EXPECT_TRUE(equal(a.bytes(), pattern(4096, 1)));
        EXPECT_TRUE(equal(b.bytes(), pattern(10000, 2)));
        EXPECT_TRUE(equal(c.bytes(), pattern(1, 3)));
    }
    // Partial writes change exactly the bytes asked for.
    s.write("b", 9990, as_bytes("0123456789"));
    s.write("b", 10000, {}); // an empty write at the end is fine
    auto b = s.read("b");
    auto expected = pattern(10000, 2);
    std::memcpy(expected.data() + 9990, "0123456789", 10);
    EXPECT_TRUE(equal(b.bytes(), expected));
}

TEST(region_store_anonymous, stats_count_bytes_per_region_and_total) {
    region_store_options o;
    o.limit = 64 * page;
    region_store s = region_store::anonymous(three(), o);
    const auto st = s.stats();
    EXPECT_EQ(st.region_count, 3u);
    EXPECT_EQ(st.region_bytes, 4096u + 10000u + 1u);
    const std::size_t reserved =
        memkit::align_up(4096, page) + memkit::align_up(10000, page) + page;
    EXPECT_EQ(st.reserved_bytes, reserved);
    EXPECT_EQ(st.header_bytes, 0u);
    EXPECT_EQ(st.mapped_bytes, reserved);
    EXPECT_EQ(st.limit, 64 * page);
    EXPECT_EQ(st.dirty_regions, 0u);
    s.activate();
    s.write("c", 0, pattern(1, 1));
    EXPECT_EQ(s.stats().dirty_regions, 1u);
    s.flush(); // nothing to write back, but the regions are clean again
    EXPECT_EQ(s.stats().dirty_regions, 0u);
    EXPECT_EQ(s.header_bytes(), 0u);
}

TEST(region_store_anonymous, lifecycle_rejects_invalid_transitions) {
    region_store s = region_store::anonymous(three());
    auto e = error_of([&] { s.write("a", 0, pattern(4, 0)); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::wrong_state);
    EXPECT_EQ(e->code, memkit::errc::invalid_argument);
    EXPECT_EQ(e->state, region_store_state::created);
    EXPECT_EQ(e->region, "a");
    EXPECT_EQ(e->what, "memkit::region_store: cannot write region \"a\": the store is created, "
                       "not active (call activate() first)");
    e = error_of([&] { (void)s.read("b"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::wrong_state);
    EXPECT_MESSAGE_HAS(*e, "cannot read region \"b\": the store is created");
    e = error_of([&] { (void)s.write("b"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::wrong_state);

    s.activate();
    EXPECT_TRUE(s.is_active());
    e = error_of([&] { s.activate(); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::wrong_state);
    EXPECT_EQ(e->state, region_store_state::active);
    EXPECT_EQ(e->region, "");
    EXPECT_EQ(e->what, "memkit::region_store: cannot activate the anonymous store: the store is "
                       "active (it is already active)");

    s.close();
    EXPECT_EQ(s.state(), region_store_state::closed);
    e = error_of([&] { (void)s.read("a"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::wrong_state);
    EXPECT_EQ(e->state, region_store_state::closed);
    EXPECT_EQ(e->what, "memkit::region_store: cannot read region \"a\": the store is closed, not "
                       "active (it was closed)");
    for (auto op :
         {+[](region_store& x) { x.write("a", 0, {}); }, +[](region_store& x) { x.activate(); },
          +[](region_store& x) { x.flush(); }, +[](region_store& x) { x.close(); }}) {
        e = error_of([&] { op(s); });
        ASSERT_TRUE(e);
        EXPECT_EQ(e->kind, region_error::wrong_state);
        EXPECT_EQ(e->state, region_store_state::closed);
        EXPECT_MESSAGE_HAS(*e, "(it was closed)");
    }
    // Metadata stays available after close.
    EXPECT_EQ(s.find("c"), region_id{2});
    EXPECT_EQ(s.regions().size(), 3u);
}

TEST(region_store_anonymous, unknown_region_names_it) {
    region_store s = region_store::anonymous(three());
    s.activate();
    const std::string expected = "memkit::region_store: no region named \"zz\" (regions: a, b, c)";
    for (auto op : {+[](region_store& x) { (void)x.read("zz"); },
                    +[](region_store& x) { (void)x.write("zz"); },
                    +[](region_store& x) { x.write("zz", 0, {}); },
                    +[](region_store& x) { (void)x.find("zz"); }}) {
        const auto e = error_of([&] { op(s); });
        ASSERT_TRUE(e);
        EXPECT_EQ(e->kind, region_error::unknown_region);
        EXPECT_EQ(e->code, memkit::errc::invalid_argument);
        EXPECT_EQ(e->region, "zz");
        EXPECT_EQ(e->what, expected);
    }
    EXPECT_FALSE(s.contains("zz"));
    EXPECT_TRUE(s.contains("b"));
    const auto e = error_of([&] { (void)s.read(region_id{99}); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::unknown_region);
    EXPECT_EQ(e->what, "memkit::region_store: no region with index 99 (the store has 3 regions)");
}

TEST(region_store_anonymous, write_past_the_end_is_rejected) {
    region_store s = region_store::anonymous(three());
    s.activate();
    auto e = error_of([&] { s.write("a", 4090, pattern(10, 0)); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::out_of_range);
    EXPECT_EQ(e->code, memkit::errc::invalid_argument);
    EXPECT_EQ(e->region, "a");
    EXPECT_EQ(e->what, "memkit::region_store: write of 10 bytes at offset 4090 is past the end of "
                       "region \"a\" (4096 bytes)");
    e = error_of([&] { s.write("c", 2, {}); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::out_of_range);
    e = error_of([&] { s.write("c", static_cast<std::size_t>(-1), pattern(2, 0)); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::out_of_range);
    // Nothing was written.
    auto a = s.read("a");
    EXPECT_TRUE(std::all_of(a.bytes().begin(), a.bytes().end(),
                            [](std::byte b) { return b == std::byte{0}; }));
}

TEST(region_store_anonymous, limit_is_enforced_with_total_and_limit_in_the_message) {
    region_store_options o;
    o.limit = 2 * page;
    // Two one-byte regions take one page each: exactly the limit.
    EXPECT_NO_THROW((void)region_store::anonymous(region_layout{{"x", 1}, {"y", 1}}, o));
    auto e = error_of([&] {
        (void)region_store::anonymous(region_layout{{"x", 1}, {"y", 1}, {"z", 1}}, o);
    });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::limit_exceeded);
    EXPECT_EQ(e->code, memkit::errc::limit_exceeded);
    EXPECT_EQ(e->what, "memkit::region_store: the layout needs " + std::to_string(3 * page) +
                           " bytes (3 regions, each rounded up to the " + std::to_string(page) +
                           "-byte page) but the limit is " + std::to_string(2 * page) + " bytes");
    // The default limit is 1 GiB.
    e = error_of([] {
        (void)region_store::anonymous(region_layout{{"big", std::size_t{1} << 30}, {"more", 1}});
    });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::limit_exceeded);
    EXPECT_MESSAGE_HAS(*e, "but the limit is 1073741824 bytes");
    // A total that overflows size_t is still a limit error, not a wrap-around.
    o.limit = static_cast<std::size_t>(-1);
    const std::size_t huge = static_cast<std::size_t>(-1) - 1;
    e = error_of([&] {
        (void)region_store::anonymous(region_layout{{"h", huge}, {"i", huge}}, o);
    });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::limit_exceeded);
    EXPECT_MESSAGE_HAS(*e, "needs more than SIZE_MAX bytes");
}

TEST(region_store_anonymous, empty_layout_is_rejected) {
    const auto e = error_of([] { (void)region_store::anonymous(region_layout{}); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::invalid_layout);
    EXPECT_EQ(e->what, "memkit::region_store: the layout has no regions");
}

TEST(region_store_anonymous, close_with_a_live_guard_is_refused) {
    region_store s = region_store::anonymous(three());
    s.activate();
    {
        auto r = s.read("b");
        const auto e = error_of([&] { s.close(); });
        ASSERT_TRUE(e);
        EXPECT_EQ(e->kind, region_error::still_in_use);
        EXPECT_EQ(e->code, memkit::errc::still_in_use);
        EXPECT_EQ(e->region, "b");
        EXPECT_EQ(e->what, "memkit::region_store: cannot close the anonymous store: region \"b\" "
                           "is still held by a read or write guard");
        EXPECT_TRUE(s.is_active()) << "a refused close leaves the store open";
        EXPECT_EQ(r.size(), 10000u);
    }
    {
        auto w = s.write("c");
        EXPECT_EQ(error_of([&] { s.close(); })->region, "c");
    }
    EXPECT_NO_THROW(s.close());
}

TEST(region_store_anonymous, guards_share_readers_and_move) {
    region_store s = region_store::anonymous(three());
    s.activate();
    auto r1 = s.read("a");
    auto r2 = s.read("a"); // readers share the lock
    EXPECT_EQ(r1.data(), r2.data());
    memkit::region_read_guard moved(std::move(r1));
    EXPECT_FALSE(r1); // NOLINT(bugprone-use-after-move): a moved-from guard is empty
    EXPECT_TRUE(r1.bytes().empty());
    EXPECT_TRUE(moved);
    std::span<const std::byte> view = moved;
    EXPECT_EQ(view.size(), 4096u);
    moved.unlock();
    r2.unlock();
    EXPECT_FALSE(moved);
    auto w = s.write("a"); // both readers released: the exclusive lock is free
    w.bytes()[0] = std::byte{7};
    memkit::region_write_guard w2;
    w2 = std::move(w);
    EXPECT_EQ(w2.size(), 4096u);
    w2.unlock();
    EXPECT_EQ(s.read("a").size(), 4096u);
    auto r = s.read("a");
    EXPECT_EQ(r.bytes()[0], std::byte{7});
}

TEST(region_store_anonymous, moving_the_store_keeps_addresses) {
    region_store s = region_store::anonymous(three());
    s.activate();
    s.write("b", 0, pattern(10000, 9));
    const std::byte* where = nullptr;
    {
        auto w = s.write("b");
        where = w.data();
    }
    region_store t(std::move(s));
    EXPECT_EQ(s.state(), region_store_state::closed); // NOLINT(bugprone-use-after-move)
    EXPECT_FALSE(s.contains("b"));
    EXPECT_TRUE(t.is_active());
    auto b = t.read("b");
    EXPECT_EQ(b.data(), where);
    EXPECT_TRUE(equal(b.bytes(), pattern(10000, 9)));
    b.unlock();
    region_store u = region_store::anonymous(region_layout{{"x", 1}});
    u = std::move(t);
    EXPECT_TRUE(u.contains("b"));
    EXPECT_FALSE(u.contains("x"));
    region_store empty;
    EXPECT_EQ(empty.state(), region_store_state::closed);
    EXPECT_EQ(empty.stats().region_count, 0u);
}

// ----------------------------------------------------------------------------- file-backed store

using region_store_file = temp_dir;

TEST_F(region_store_file, create_write_flush_reopen_gives_the_same_data) {
    const fs::path p = file();
    {
        region_store s = region_store::create(p, three());
        EXPECT_EQ(s.state(), region_store_state::created);
        EXPECT_TRUE(s.file_backed());
        EXPECT_EQ(s.path(), p);
        EXPECT_EQ(s.header_bytes(), page);
        const auto st = s.stats();
        EXPECT_EQ(st.mapped_bytes, page + st.reserved_bytes);
        EXPECT_EQ(fs::file_size(p), st.mapped_bytes);
        EXPECT_EQ(st.generation, 0u);
        // A fresh store's checksums are those of zeros.
        for (const auto& r : s.regions()) {
            const std::vector<std::byte> zeros(r.size);
            EXPECT_EQ(r.checksum, memkit::detail::crc32c(zeros)) << r.name;
            EXPECT_EQ(r.offset % page, 0u);
            EXPECT_GE(r.offset, page);
        }
        s.activate();
        for (const auto& spec : three_specs().regions())
            s.write(spec.name, 0, pattern(spec.size, static_cast<unsigned>(spec.size)));
        EXPECT_EQ(s.stats().dirty_regions, 3u);
        s.flush();
        EXPECT_EQ(s.stats().dirty_regions, 0u);
        EXPECT_EQ(s.stats().generation, 1u);
        for (const auto& r : s.regions())
            EXPECT_EQ(r.checksum,
                      memkit::detail::crc32c(pattern(r.size, static_cast<unsigned>(r.size))));
        s.flush(); // nothing changed: no new generation
        EXPECT_EQ(s.stats().generation, 1u);
        s.close();
    }
    region_store s = region_store::open(p, three());
    EXPECT_EQ(s.state(), region_store_state::loaded);
    EXPECT_EQ(s.stats().generation, 1u);
    auto e = error_of([&] { (void)s.read("a"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->state, region_store_state::loaded);
    EXPECT_EQ(e->what, "memkit::region_store: cannot read region \"a\": the store is loaded, not "
                       "active (call activate() first)");
    s.activate();
    expect_filled(s);
    // The file holds the bytes at the offsets regions() reports.
    const auto bytes = read_all(p);
    for (const auto& r : s.regions())
        EXPECT_TRUE(equal(std::span(bytes.data() + r.offset, r.size),
                          pattern(r.size, static_cast<unsigned>(r.size))));
}

TEST_F(region_store_file, close_and_destructor_flush) {
    const fs::path p = file();
    {
        region_store s = region_store::create(p, three());
        s.activate();
        s.write("b", 0, pattern(10000, 5));
        s.close(); // no flush() call
    }
    {
        region_store s = region_store::open(p, three());
        s.activate();
        auto b = s.read("b");
        EXPECT_TRUE(equal(b.bytes(), pattern(10000, 5)));
        b.unlock();
        s.write("c", 0, pattern(1, 77));
    } // destructor: close() with its flush
    region_store s = region_store::open(p, three());
    s.activate();
    auto c = s.read("c");
    EXPECT_EQ(c.bytes()[0], pattern(1, 77)[0]);
}

TEST_F(region_store_file, open_or_create_creates_then_opens) {
    const fs::path p = file();
    {
        region_store s = region_store::open_or_create(p, three());
        EXPECT_EQ(s.state(), region_store_state::created);
        s.activate();
        s.write("a", 0, pattern(4096, 3));
    }
    region_store s = region_store::open_or_create(p, three());
    EXPECT_EQ(s.state(), region_store_state::loaded);
    s.activate();
    auto a = s.read("a");
    EXPECT_TRUE(equal(a.bytes(), pattern(4096, 3)));
}

TEST_F(region_store_file, os_errors_name_the_path) {
    const fs::path p = file();
    region_store first = region_store::create(p, three());
    try {
        (void)region_store::create(p, three());
        FAIL() << "create over an existing file must fail";
    } catch (const region_store_error&) {
        FAIL() << "an OS error is a plain std::system_error";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::file_exists);
        EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    }
    const fs::path missing = dir_ / "missing.mks";
    try {
        (void)region_store::open(missing, three());
        FAIL() << "open of a missing file must fail";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
        EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(missing));
    // A layout over the limit is refused before any file is made.
    region_store_options o;
    o.limit = page;
    const auto e = error_of([&] { (void)region_store::create(missing, three(), o); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::limit_exceeded);
    EXPECT_FALSE(fs::exists(missing));
}

TEST_F(region_store_file, a_different_layout_is_reported_with_what_differs) {
    const fs::path p = file();
    make_filled(p);
    struct mismatch {
        region_layout layout;
        std::string region;
        std::string message;
    };
    const std::string prefix = "memkit::region_store: \"" + p.string() + "\": ";
    const std::vector<mismatch> cases = {
        {region_layout{{"a", 4096}, {"b", 8192}, {"c", 1}}, "b",
         "region \"b\" has 10000 bytes in the file but 8192 in the layout"},
        {region_layout{{"a", 4096}, {"x", 10000}, {"c", 1}}, "x",
         "region 1 is \"b\" in the file but \"x\" in the layout"},
        {region_layout{{"b", 10000}, {"a", 4096}, {"c", 1}}, "b",
         "region 0 is \"a\" in the file but \"b\" in the layout"},
        {region_layout{{"a", 4096}, {"b", 10000}}, "",
         "the file has 3 regions (a, b, c), the layout 2 (a, b)"},
        {region_layout{{"a", 4096}, {"b", 10000, 64}, {"c", 1}}, "b",
         "region \"b\" has alignment 0 in the file but 64 in the layout"},
    };
    for (const auto& c : cases) {
        const auto e = error_of([&] { (void)region_store::open(p, c.layout); });
        ASSERT_TRUE(e) << c.message;
        EXPECT_EQ(e->kind, region_error::layout_mismatch);
        EXPECT_EQ(e->code, memkit::errc::invalid_argument);
        EXPECT_EQ(e->state, region_store_state::closed);
        EXPECT_EQ(e->region, c.region);
        EXPECT_EQ(e->what, prefix + c.message);
        // open_or_create never replaces a store made for another layout.
        EXPECT_EQ(error_of([&] { (void)region_store::open_or_create(p, c.layout); })->kind,
                  region_error::layout_mismatch);
    }
    // The file was not touched by the failed opens.
    region_store s = region_store::open(p, three());
    s.activate();
    expect_filled(s);
}

TEST_F(region_store_file, page_size_and_layout_hash_are_checked) {
    const fs::path p = file();
    make_filled(p);
    const auto original = read_all(p);
    patch_value<std::uint32_t>(p, 16, static_cast<std::uint32_t>(page * 4));
    fix_header_crc(p);
    auto e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::layout_mismatch);
    EXPECT_MESSAGE_HAS(*e, "the store was made with " + std::to_string(page * 4) +
                               "-byte pages; this system has " + std::to_string(page) +
                               "-byte pages");

    patch(p, 0, original.data(), 128);
    patch_value<std::uint64_t>(p, 40, 0x1234);
    fix_header_crc(p);
    e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::layout_mismatch);
    EXPECT_MESSAGE_HAS(*e, "the layout hash differs (file 0x0000000000001234, layout 0x");
}

TEST_F(region_store_file, not_a_store_is_reported) {
    const fs::path p = file();
    { std::ofstream(p) << "hello, world"; }
    auto e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::not_a_store);
    EXPECT_EQ(e->code, memkit::errc::corruption_detected);
    EXPECT_EQ(e->what, "memkit::region_store: \"" + p.string() +
                           "\": not a region store: the file has 12 bytes, fewer than the "
                           "128-byte header");
    { std::ofstream(p, std::ios::trunc); }
    e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::not_a_store);
    EXPECT_MESSAGE_HAS(*e, "the file has 0 bytes");
    { std::ofstream(p, std::ios::trunc) << std::string(8192, 'x'); }
    e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::not_a_store);
    EXPECT_MESSAGE_HAS(*e, "not a region store: it does not start with the magic \"MEMKITRS\"");
    EXPECT_EQ(fs::file_size(p), 8192u) << "never reused, never rewritten";
}

TEST_F(region_store_file, wrong_version_or_byte_order_is_reported) {
    const fs::path p = file();
    make_filled(p);
    patch_value<std::uint32_t>(p, 8, 2);
    auto e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::unsupported_version);
    EXPECT_EQ(e->code, memkit::errc::invalid_argument);
    EXPECT_MESSAGE_HAS(*e, "the store has format version 2; this build reads version 1");
    patch_value<std::uint32_t>(p, 8, 1);
    patch_value<std::uint32_t>(p, 12, 0x04030201u);
    e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::unsupported_version);
    EXPECT_MESSAGE_HAS(*e, "written on a machine of the other byte order");
}

TEST_F(region_store_file, corrupted_header_is_reported) {
    const fs::path p = file();
    make_filled(p);
    // One flipped bit in the region table (the first byte of region "b"'s name).
    const auto bytes = read_all(p);
    const auto flipped = static_cast<char>(static_cast<unsigned char>(bytes[128 + 96]) ^ 0x01u);
    patch(p, 128 + 96, &flipped, 1);
    auto e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::corrupted);
    EXPECT_EQ(e->code, memkit::errc::corruption_detected);
    EXPECT_MESSAGE_HAS(*e, "the header checksum does not match (stored 0x");
    // Even without checksum verification of the regions, the header is always checked.
    region_store_options o;
    o.verify_checksums = false;
    EXPECT_EQ(error_of([&] { (void)region_store::open(p, three(), o); })->kind,
              region_error::corrupted);
    // Impossible fields behind a valid checksum.
    patch(p, 0, bytes.data(), bytes.size());
    patch_value<std::uint32_t>(p, 20, 0);
    fix_header_crc(p);
    e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::corrupted);
    EXPECT_MESSAGE_HAS(*e, "the header is damaged: 0 regions");
}

TEST_F(region_store_file, corrupted_region_is_reported_by_name) {
    const fs::path p = file();
    make_filled(p);
    std::size_t b_offset = 0;
    std::uint32_t stored = 0;
    {
        region_store s = region_store::open(p, three());
        b_offset = s.regions()[1].offset;
        stored = s.regions()[1].checksum;
    }
    const auto bytes = read_all(p);
    const auto flipped =
        static_cast<char>(static_cast<unsigned char>(bytes[b_offset + 5000]) ^ 0x80u);
    patch(p, b_offset + 5000, &flipped, 1);
    const auto e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::corrupted);
    EXPECT_EQ(e->region, "b");
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(stored));
    EXPECT_MESSAGE_HAS(*e, std::string("region \"b\" does not match its checksum (stored ") + hex +
                               ", computed 0x");
    // Without verification the caller takes the bytes as they are.
    region_store_options o;
    o.verify_checksums = false;
    region_store s = region_store::open(p, three(), o);
    s.activate();
    auto b = s.read("b");
    EXPECT_EQ(b.bytes()[5000], std::byte{static_cast<unsigned char>(flipped)});
}

TEST_F(region_store_file, truncated_or_extended_file_is_reported) {
    const fs::path p = file();
    make_filled(p);
    const auto full = fs::file_size(p);
    fs::resize_file(p, full - page);
    auto e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::corrupted);
    EXPECT_MESSAGE_HAS(*e, "the file has " + std::to_string(full - page) +
                               " bytes; its header says " + std::to_string(full) +
                               " and the layout needs " + std::to_string(full) +
                               " (truncated or extended by someone else?)");
    fs::resize_file(p, full + page);
    EXPECT_EQ(error_of([&] { (void)region_store::open(p, three()); })->kind,
              region_error::corrupted);
    fs::resize_file(p, 100);
    EXPECT_EQ(error_of([&] { (void)region_store::open(p, three()); })->kind,
              region_error::not_a_store);
}

// Dies the way a crash does: no destructor, no flush, no atexit handler runs.
[[noreturn]] void kill_self() {
    ::raise(SIGKILL);
    ::_exit(4); // not reached
}

// Runs `child` in a forked process; `child` must end by calling kill_self() while its store is
// still alive (a store going out of scope would flush in its destructor). The parent waits and
// checks that the child died of SIGKILL (an exception in the child exits with code 3 instead).
template <class F>
void run_and_sigkill(F&& child) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        try {
            child();
        } catch (...) {
            ::_exit(3);
        }
        ::_exit(5); // child returned without kill_self()
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
    ASSERT_EQ(WTERMSIG(status), SIGKILL);
}

TEST_F(region_store_file, flushed_data_survives_sigkill_of_the_writer) {
    const fs::path p = file();
    run_and_sigkill([&] {
        region_store s = region_store::open_or_create(p, three());
        s.activate();
        for (const auto& spec : three_specs().regions())
            s.write(spec.name, 0, pattern(spec.size, static_cast<unsigned>(spec.size)));
        s.flush();
        kill_self();
    });
    region_store s = region_store::open(p, three()); // verifies every checksum
    EXPECT_EQ(s.stats().generation, 1u);
    s.activate();
    expect_filled(s);
}

TEST_F(region_store_file, writes_after_the_last_flush_are_detected) {
    const fs::path p = file();
    make_filled(p);
    run_and_sigkill([&] {
        region_store s = region_store::open(p, three());
        s.activate();
        s.write("b", 100, as_bytes("changed"));
        s.write("c", 0, as_bytes("c")); // pattern(1, 1)[0] is 7, so this changes it
        kill_self();
    });
    const auto e = error_of([&] { (void)region_store::open(p, three()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, region_error::unflushed);
    EXPECT_EQ(e->code, memkit::errc::corruption_detected);
    EXPECT_EQ(e->region, "b");
    EXPECT_MESSAGE_HAS(*e, "the store was written after its last flush (its writer may have "
                           "stopped before flushing): regions \"b\", \"c\" no longer match their "
                           "checksum; open with verify_checksums = false to use the data as it is");
    // Taking the data as it is, then flushing, makes the store consistent again.
    region_store_options o;
    o.verify_checksums = false;
    {
        region_store s = region_store::open(p, three(), o);
        EXPECT_EQ(s.stats().dirty_regions, 3u) << "unknown which changed: all are recomputed";
        s.activate();
        auto b = s.read("b");
        EXPECT_EQ(std::memcmp(b.data() + 100, "changed", 7), 0);
        b.unlock();
        s.flush();
    }
    EXPECT_NO_THROW((void)region_store::open(p, three()));
}

TEST_F(region_store_file, unflushed_writes_that_change_nothing_are_accepted) {
    const fs::path p = file();
    make_filled(p);
    run_and_sigkill([&] {
        region_store s = region_store::open(p, three());
        s.activate();
        s.write("a", 0, pattern(4096, 4096)); // the bytes it already holds
        kill_self();
    });
    region_store s = region_store::open(p, three());
    s.activate();
    expect_filled(s);
}

TEST_F(region_store_file, moved_store_keeps_working) {
    const fs::path p = file();
    region_store s = region_store::create(p, three());
    region_store t = std::move(s);
    EXPECT_FALSE(s.file_backed()); // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(t.path(), p);
    t.activate();
    t.write("a", 0, pattern(4096, 11));
    t.close();
    region_store u = region_store::open(p, three());
    u.activate();
    auto a = u.read("a");
    EXPECT_TRUE(equal(a.bytes(), pattern(4096, 11)));
}

TEST(region_store_names, to_string) {
    EXPECT_STREQ(memkit::to_string(region_store_state::created), "created");
    EXPECT_STREQ(memkit::to_string(region_store_state::loaded), "loaded");
    EXPECT_STREQ(memkit::to_string(region_store_state::active), "active");
    EXPECT_STREQ(memkit::to_string(region_store_state::closed), "closed");
    EXPECT_STREQ(memkit::to_string(region_error::unflushed), "unflushed");
    EXPECT_STREQ(memkit::to_string(region_error::layout_mismatch), "layout_mismatch");
}

} // namespace
