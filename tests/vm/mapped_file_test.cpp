// Tests for memkit::mapped_file and memkit::mapped_view: content integrity in both directions
// (mapping vs read(2)/write(2)), every mode and creation disposition, resize, flush and advise of
// ranges, views at unaligned offsets, typed spans, locking, the checked read path under a
// concurrent truncation, and every error path (type, code and message). Each test works in its
// own temporary directory, removed afterwards.
#include "memkit/vm/mapped_file.hpp"

#include <gtest/gtest.h>

#include "memkit/core/align.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using memkit::access_advice;
using memkit::file_creation;
using memkit::flush_mode;
using memkit::map_mode;
using memkit::mapped_file;
using memkit::mapped_file_options;
using memkit::mapped_view;

static_assert(!std::is_copy_constructible_v<mapped_file>);
static_assert(!std::is_copy_assignable_v<mapped_file>);
static_assert(std::is_nothrow_move_constructible_v<mapped_file>);
static_assert(std::is_nothrow_move_assignable_v<mapped_file>);
static_assert(!std::is_copy_constructible_v<mapped_view>);
static_assert(!std::is_copy_assignable_v<mapped_view>);
static_assert(std::is_nothrow_move_constructible_v<mapped_view>);
static_assert(std::is_nothrow_move_assignable_v<mapped_view>);

// Spans and pointers into a temporary's mapping would dangle: the rvalue overloads are deleted.
template <class M>
concept spannable = requires(M&& m) {
    std::forward<M>(m).template as_span<int>();
};
template <class M>
concept byte_accessible = requires(M&& m) {
    std::forward<M>(m).bytes();
};
static_assert(spannable<mapped_file&> && spannable<const mapped_file&>);
static_assert(spannable<mapped_view&> && spannable<const mapped_view&>);
static_assert(!spannable<mapped_file> && !spannable<mapped_view>);
static_assert(byte_accessible<mapped_view&> && !byte_accessible<mapped_view>);
static_assert(byte_accessible<const mapped_file&> && !byte_accessible<mapped_file>);

const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

// A deterministic byte pattern that differs at every offset within a few pages.
std::vector<std::byte> pattern(std::size_t n, unsigned seed = 1) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = static_cast<std::byte>((i * 131 + seed * 17 + (i >> 8)) & 0xff);
    return v;
}

// Plain POSIX I/O, independent of the code under test.
void write_file(const fs::path& p, const std::vector<std::byte>& bytes) {
    const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        ASSERT_GT(n, 0) << std::strerror(errno);
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
}

std::vector<std::byte> read_file(const fs::path& p) {
    std::vector<std::byte> out;
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    std::byte buf[8192];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.insert(out.end(), buf, buf + n);
    }
    ::close(fd);
    return out;
}

void pwrite_at(const fs::path& p, std::size_t offset, const std::vector<std::byte>& bytes) {
    const int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
              static_cast<ssize_t>(bytes.size()));
    ::close(fd);
}

bool equal_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Runs `body` in a forked child and returns its exit status: 0 passed, 77 skipped (the reason on
// stderr), anything else failed. With `as_nobody`, a root parent's child first switches to the
// unprivileged user 65534, so that permission bits and RLIMIT_MEMLOCK apply to it.
template <class Body>
int run_in_child(bool as_nobody, Body body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        if (as_nobody && ::geteuid() == 0) {
            if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
                std::fprintf(stderr, "cannot switch to uid 65534: %s\n", std::strerror(errno));
                std::_Exit(77);
            }
        }
        int rc = 1;
        try {
            rc = body();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child: unexpected exception: %s\n", e.what());
        }
        std::fflush(nullptr);
        std::_Exit(rc); // no atexit handlers, no leak check of the parent's copy in the child
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define CHILD_CHECK(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::fprintf(stderr, "child check failed at line %d: %s\n", __LINE__, #cond);          \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define CHILD_FAIL(msg)                                                                            \
    do {                                                                                           \
        std::fprintf(stderr, "child failure at line %d: %s\n", __LINE__, msg);                     \
        return 1;                                                                                  \
    } while (0)

class MappedFile : public testing::Test {
protected:
    void SetUp() override {
        static std::atomic<unsigned> counter{0};
        const auto* info = testing::UnitTest::GetInstance()->current_test_info();
        dir_ = fs::temp_directory_path() /
               ("memkit_mapped_file_" + std::string(info->name()) + "_" +
                std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
        fs::remove_all(dir_, ec);
    }
    fs::path file(const char* name) const { return dir_ / name; }

    fs::path dir_;
};

// Asserts that `stmt` throws std::system_error with `expected_code` and every string that follows
// in what().
#define EXPECT_SYSTEM_ERROR(stmt, expected_code, ...)                                              \
    do {                                                                                           \
        try {                                                                                      \
            stmt;                                                                                  \
            ADD_FAILURE() << #stmt " did not throw";                                               \
        } catch (const std::system_error& e) {                                                     \
            EXPECT_EQ(e.code(), expected_code) << e.what();                                        \
            for (const std::string& part : std::vector<std::string>{__VA_ARGS__})                  \
                EXPECT_NE(std::string(e.what()).find(part), std::string::npos)                     \
                    << "\"" << part << "\" not in: " << e.what();                                  \
        }                                                                                          \
    } while (0)

#define EXPECT_OUT_OF_RANGE(stmt, ...)                                                             \
    do {                                                                                           \
        try {                                                                                      \
            stmt;                                                                                  \
            ADD_FAILURE() << #stmt " did not throw";                                               \
        } catch (const std::out_of_range& e) {                                                     \
            for (const std::string& part : std::vector<std::string>{__VA_ARGS__})                  \
                EXPECT_NE(std::string(e.what()).find(part), std::string::npos)                     \
                    << "\"" << part << "\" not in: " << e.what();                                  \
        }                                                                                          \
    } while (0)

// --- content integrity ----------------------------------------------------------------------

TEST_F(MappedFile, ReadOnlyMappingShowsWhatWriteWrote) {
    const auto p = file("data.bin");
    const auto bytes = pattern(3 * page + 123);
    write_file(p, bytes);

    mapped_file f(p);
    EXPECT_TRUE(f.is_open());
    EXPECT_EQ(f.mode(), map_mode::read_only);
    EXPECT_FALSE(f.writable());
    EXPECT_EQ(f.path(), p);
    ASSERT_EQ(f.size(), bytes.size());
    EXPECT_FALSE(f.empty());
    EXPECT_TRUE(memkit::is_aligned(f.data(), page));
    EXPECT_TRUE(equal_bytes(f.bytes(), bytes));
    EXPECT_EQ(f.file_size(), bytes.size());
}

TEST_F(MappedFile, StoresThroughReadWriteMappingAreSeenByRead) {
    const auto p = file("data.bin");
    write_file(p, std::vector<std::byte>(2 * page + 7));
    const auto bytes = pattern(2 * page + 7, 5);

    mapped_file f = mapped_file::open(p, map_mode::read_write);
    EXPECT_TRUE(f.writable());
    std::memcpy(f.data(), bytes.data(), bytes.size());
    // A shared mapping writes into the page cache: read(2) sees the bytes before any flush.
    EXPECT_TRUE(equal_bytes(read_file(p), bytes));
    f.flush();
    f.close();
    EXPECT_FALSE(f.is_open());
    EXPECT_TRUE(equal_bytes(read_file(p), bytes));
}

TEST_F(MappedFile, WritesThroughTheFileAreSeenByTheMapping) {
    const auto p = file("data.bin");
    write_file(p, pattern(4 * page));
    const mapped_file f(p);
    const auto update = pattern(page + 10, 9);
    pwrite_at(p, page - 5, update);
    auto expected = pattern(4 * page);
    std::copy(update.begin(), update.end(),
              expected.begin() + static_cast<std::ptrdiff_t>(page - 5));
    EXPECT_TRUE(equal_bytes(f.bytes(), expected));
}

TEST_F(MappedFile, CopyOnWriteNeverReachesTheFile) {
    const auto p = file("data.bin");
    const auto original = pattern(2 * page + 1);
    write_file(p, original);
    ::chmod(p.c_str(), 0444); // copy_on_write needs only read permission

    mapped_file cow(p, map_mode::copy_on_write);
    EXPECT_TRUE(cow.writable());
    mapped_file reader(p);
    std::memset(cow.data(), 0xAB, cow.size());
    cow.flush();
    cow.flush(0, 10, flush_mode::async);
    EXPECT_EQ(cow.data()[page], std::byte{0xAB});
    // The private copy is invisible to other mappings and to read(2), now and after closing.
    EXPECT_TRUE(equal_bytes(reader.bytes(), original));
    EXPECT_TRUE(equal_bytes(read_file(p), original));
    cow.close();
    EXPECT_TRUE(equal_bytes(read_file(p), original));
}

TEST_F(MappedFile, ConcurrentReadersSeeTheSameBytes) {
    const auto p = file("data.bin");
    const auto bytes = pattern(16 * page);
    write_file(p, bytes);
    const mapped_file f(p);
    const auto expected = std::accumulate(
        bytes.begin(), bytes.end(), std::uint64_t{0},
        [](std::uint64_t s, std::byte b) { return s + std::to_integer<unsigned>(b); });
    std::vector<std::uint64_t> sums(4);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < sums.size(); ++t)
        threads.emplace_back([&, t] {
            std::uint64_t s = 0;
            for (std::byte b : f.bytes()) s += std::to_integer<unsigned>(b);
            sums[t] = s;
        });
    for (auto& th : threads) th.join();
    for (auto s : sums) EXPECT_EQ(s, expected);
}

// --- creation -------------------------------------------------------------------------------

TEST_F(MappedFile, CreateOnlyMakesAZeroedFileWithDefaultPermissions) {
    const auto p = file("new.bin");
    mapped_file f = mapped_file::create(p, 5000, {file_creation::create_only});
    EXPECT_EQ(f.mode(), map_mode::read_write);
    ASSERT_EQ(f.size(), 5000u);
    EXPECT_TRUE(std::all_of(f.bytes().begin(), f.bytes().end(),
                            [](std::byte b) { return b == std::byte{0}; }));
    EXPECT_EQ(fs::file_size(p), 5000u);

    const mode_t mask = ::umask(0);
    ::umask(mask);
    struct stat st {};
    ASSERT_EQ(::stat(p.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644u & ~mask);
}

TEST_F(MappedFile, CreateHonoursPermissions) {
    const auto p = file("private.bin");
    const auto f = mapped_file::create(
        p, 10, {file_creation::create_only, fs::perms::owner_read | fs::perms::owner_write});
    struct stat st {};
    ASSERT_EQ(::stat(p.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(MappedFile, CreateOnlyRefusesAnExistingFile) {
    const auto p = file("exists.bin");
    const auto bytes = pattern(100);
    write_file(p, bytes);
    EXPECT_SYSTEM_ERROR((void)mapped_file::create(p, 10, {file_creation::create_only}),
                        std::make_error_code(std::errc::file_exists), p.string(),
                        "memkit::mapped_file: cannot create");
    EXPECT_TRUE(equal_bytes(read_file(p), bytes)); // untouched
}

TEST_F(MappedFile, OpenOrCreateKeepsContentsAndOnlyGrows) {
    const auto p = file("data.bin");
    const auto bytes = pattern(100);
    write_file(p, bytes);
    {
        mapped_file f = mapped_file::create(p, 300); // default: open_or_create
        ASSERT_EQ(f.size(), 300u);
        EXPECT_TRUE(equal_bytes(f.bytes().first(100), bytes));
        EXPECT_TRUE(std::all_of(f.bytes().begin() + 100, f.bytes().end(),
                                [](std::byte b) { return b == std::byte{0}; }));
    }
    {
        mapped_file f = mapped_file::create(p, 50, {file_creation::open_or_create});
        EXPECT_EQ(f.size(), 300u); // never shortened
        EXPECT_TRUE(equal_bytes(f.bytes().first(100), bytes));
    }
    {
        mapped_file f = mapped_file::create(file("fresh.bin"), 64, {file_creation::open_or_create});
        EXPECT_EQ(f.size(), 64u);
    }
}

TEST_F(MappedFile, TruncateDiscardsContents) {
    const auto p = file("data.bin");
    write_file(p, pattern(3 * page));
    mapped_file f = mapped_file::create(p, 100, {file_creation::truncate});
    ASSERT_EQ(f.size(), 100u);
    EXPECT_TRUE(std::all_of(f.bytes().begin(), f.bytes().end(),
                            [](std::byte b) { return b == std::byte{0}; }));
    EXPECT_EQ(fs::file_size(p), 100u);
}

TEST_F(MappedFile, CreateWithSizeZeroGivesAnEmptyMapping) {
    mapped_file f = mapped_file::create(file("zero.bin"), 0, {file_creation::create_only});
    EXPECT_TRUE(f.is_open());
    EXPECT_TRUE(f.empty());
    EXPECT_EQ(f.data(), nullptr);
}

// --- empty files ----------------------------------------------------------------------------

TEST_F(MappedFile, EmptyFileMapsAsEmpty) {
    const auto p = file("empty.bin");
    write_file(p, {});
    for (map_mode m : {map_mode::read_only, map_mode::read_write, map_mode::copy_on_write}) {
        mapped_file f(p, m);
        EXPECT_TRUE(f.is_open());
        EXPECT_EQ(f.size(), 0u);
        EXPECT_EQ(f.data(), nullptr);
        EXPECT_TRUE(f.bytes().empty());
        EXPECT_TRUE(f.as_span<std::uint64_t>().empty());
        EXPECT_TRUE(f.view(0, 0).empty());
        f.flush();
        f.advise(access_advice::sequential);
        f.lock();
        EXPECT_TRUE(f.locked());
        f.unlock();
        std::byte b{};
        EXPECT_EQ(f.read_checked(0, std::span<std::byte>(&b, 0)), std::error_code{});
        EXPECT_OUT_OF_RANGE((void)f.view(0, 1), "view [0, 1)", p.string(), "size 0");
    }
    mapped_file f(p, map_mode::read_write);
    f.resize(10);
    ASSERT_NE(f.data(), nullptr);
    f.data()[9] = std::byte{7};
    f.close();
    const auto back = read_file(p);
    ASSERT_EQ(back.size(), 10u);
    EXPECT_EQ(back[9], std::byte{7});
}

// --- resize ---------------------------------------------------------------------------------

TEST_F(MappedFile, ResizeKeepsDataAndZeroFillsTheGrowth) {
    const auto p = file("data.bin");
    const auto bytes = pattern(page + 100);
    mapped_file f = mapped_file::create(p, bytes.size(), {file_creation::create_only});
    std::memcpy(f.data(), bytes.data(), bytes.size());
    mapped_view before = f.view(10, 200); // a separate mapping: survives the resize

    const std::size_t grown = 5 * page + 3;
    f.resize(grown);
    ASSERT_EQ(f.size(), grown);
    EXPECT_EQ(fs::file_size(p), grown);
    EXPECT_TRUE(equal_bytes(f.bytes().first(bytes.size()), bytes));
    EXPECT_TRUE(std::all_of(f.bytes().begin() + static_cast<std::ptrdiff_t>(bytes.size()),
                            f.bytes().end(), [](std::byte b) { return b == std::byte{0}; }));
    f.data()[grown - 1] = std::byte{0x42};
    f.flush(grown - 1, 1);
    EXPECT_EQ(read_file(p)[grown - 1], std::byte{0x42});
    EXPECT_TRUE(equal_bytes(before.bytes(), std::span(bytes).subspan(10, 200)));

    f.resize(grown); // same size: nothing happens
    EXPECT_EQ(f.size(), grown);
}

TEST_F(MappedFile, ResizeKeepsTheLock) {
    const auto p = file("data.bin");
    mapped_file f = mapped_file::create(p, page);
    try {
        f.lock();
    } catch (const std::system_error& e) {
        GTEST_SKIP() << "mlock is not permitted here: " << e.what();
    }
    f.resize(4 * page);
    EXPECT_TRUE(f.locked());
    f.unlock();
    EXPECT_FALSE(f.locked());
}

TEST_F(MappedFile, ResizeErrors) {
    const auto p = file("data.bin");
    write_file(p, pattern(1000));
    mapped_file rw(p, map_mode::read_write);
    EXPECT_SYSTEM_ERROR(rw.resize(999), make_error_code(memkit::errc::invalid_argument), p.string(),
                        "cannot resize", "999 bytes", "smaller than its mapped size 1000",
                        "resize only grows");
    EXPECT_EQ(rw.size(), 1000u);
    EXPECT_SYSTEM_ERROR(rw.resize(std::numeric_limits<std::size_t>::max()),
                        std::make_error_code(std::errc::file_too_large), p.string(),
                        "too large for the address space");
    EXPECT_EQ(rw.size(), 1000u);

    mapped_file ro(p);
    EXPECT_SYSTEM_ERROR(ro.resize(2000), make_error_code(memkit::errc::invalid_argument),
                        p.string(), "needs an open read_write mapping", "read_only");
    mapped_file cow(p, map_mode::copy_on_write);
    EXPECT_SYSTEM_ERROR(cow.resize(2000), make_error_code(memkit::errc::invalid_argument),
                        "copy_on_write");
    mapped_file closed;
    EXPECT_SYSTEM_ERROR(closed.resize(1), make_error_code(memkit::errc::invalid_argument),
                        "closed");
    EXPECT_EQ(fs::file_size(p), 1000u);
}

// --- flush and advise -----------------------------------------------------------------------

TEST_F(MappedFile, FlushRangesArePageAlignedInternally) {
    const auto p = file("data.bin");
    mapped_file f = mapped_file::create(p, 4 * page + 50);
    const auto bytes = pattern(page + 20, 3);
    std::memcpy(f.data() + page + 1, bytes.data(), bytes.size());
    // msync rejects an unaligned address (EINVAL): these succeed only if flush rounds down.
    f.flush(page + 1, bytes.size());
    f.flush(page + 1, bytes.size(), flush_mode::async);
    f.flush(4 * page + 49, 1);
    f.flush(3, 0);
    f.flush(flush_mode::async);
    const auto back = read_file(p);
    EXPECT_TRUE(equal_bytes(std::span(back).subspan(page + 1, bytes.size()), bytes));

    EXPECT_OUT_OF_RANGE(f.flush(4 * page, 51), "flush [" + std::to_string(4 * page) + ", ",
                        p.string(), "past the end", "size " + std::to_string(4 * page + 50));
    EXPECT_OUT_OF_RANGE(f.flush(1, std::numeric_limits<std::size_t>::max()), "overflow");

    mapped_file ro(p);
    ro.flush(); // nothing to write back
    ro.flush(page + 1, 10);
}

TEST_F(MappedFile, AdviseAcceptsEveryHintOnWholeAndUnalignedRanges) {
    const auto p = file("data.bin");
    const auto bytes = pattern(8 * page);
    write_file(p, bytes);
    mapped_file f(p);
    for (auto a : {access_advice::normal, access_advice::sequential, access_advice::random,
                   access_advice::will_need, access_advice::dont_need}) {
        f.advise(a);
        f.advise(page + 3, 2 * page, a);
    }
    EXPECT_TRUE(equal_bytes(f.bytes(), bytes));
    EXPECT_OUT_OF_RANGE(f.advise(8 * page + 1, 0, access_advice::random), "advise", p.string());
}

TEST_F(MappedFile, DontNeedOnCopyOnWriteDropsPrivateChanges) {
    const auto p = file("data.bin");
    const auto bytes = pattern(2 * page);
    write_file(p, bytes);
    mapped_file cow(p, map_mode::copy_on_write);
    cow.data()[5] = std::byte{0xEE};
    cow.advise(access_advice::dont_need);
    EXPECT_TRUE(equal_bytes(cow.bytes(), bytes)); // read again from the file
}

// --- views ----------------------------------------------------------------------------------

TEST_F(MappedFile, ViewsExposeExactlyTheRequestedBytesAtAnyOffset) {
    const auto p = file("data.bin");
    const auto bytes = pattern(3 * page + 123);
    write_file(p, bytes);
    const mapped_file f(p);
    const std::size_t offsets[] = {0, 1, 7, page - 1, page, page + 1, 2 * page + 7, 3 * page + 100};
    for (std::size_t off : offsets) {
        for (std::size_t len :
             {std::size_t{1}, std::size_t{10}, page, page + 3, bytes.size() - off}) {
            if (off + len > bytes.size()) continue;
            const mapped_view v = f.view(off, len);
            ASSERT_EQ(v.size(), len);
            EXPECT_EQ(v.offset(), off);
            EXPECT_EQ(v.mode(), map_mode::read_only);
            EXPECT_TRUE(
                memkit::is_aligned(reinterpret_cast<std::uintptr_t>(v.data()) - off % page, page))
                << "the view's data sits at offset % page within its page";
            EXPECT_TRUE(equal_bytes(v.bytes(), std::span(bytes).subspan(off, len)))
                << "offset " << off << " length " << len;
        }
    }
    const mapped_view empty = f.view(bytes.size(), 0);
    EXPECT_TRUE(empty.empty());
    EXPECT_EQ(empty.data(), nullptr);
}

TEST_F(MappedFile, ViewOutlivesTheFileAndWritesThrough) {
    const auto p = file("data.bin");
    write_file(p, pattern(2 * page));
    mapped_view v;
    {
        mapped_file f(p, map_mode::read_write);
        v = f.view(page - 3, 6);
    }
    ASSERT_EQ(v.size(), 6u);
    EXPECT_EQ(v.mode(), map_mode::read_write);
    std::memset(v.data(), 0x11, v.size());
    v.flush();
    v.flush(flush_mode::async);
    const auto back = read_file(p);
    for (std::size_t i = page - 3; i < page + 3; ++i) EXPECT_EQ(back[i], std::byte{0x11});
    EXPECT_EQ(back[page - 4], pattern(2 * page)[page - 4]);

    mapped_view moved = std::move(v);
    EXPECT_TRUE(v.empty()); // NOLINT(bugprone-use-after-move): moved-from state is specified
    EXPECT_EQ(v.data(), nullptr);
    EXPECT_EQ(moved.size(), 6u);
    moved.reset();
    EXPECT_TRUE(moved.empty());
}

TEST_F(MappedFile, ViewPastTheEndThrowsOutOfRange) {
    const auto p = file("data.bin");
    write_file(p, pattern(1000));
    const mapped_file f(p);
    EXPECT_OUT_OF_RANGE((void)f.view(990, 11), "memkit::mapped_file: view [990, 1001) of",
                        p.string(), "past the end (size 1000)");
    EXPECT_OUT_OF_RANGE((void)f.view(1001, 0), "view [1001, 1001)");
    EXPECT_OUT_OF_RANGE((void)f.view(1, std::numeric_limits<std::size_t>::max()), "overflow");
    const mapped_file closed;
    EXPECT_OUT_OF_RANGE((void)closed.view(0, 1), "size 0");
}

TEST_F(MappedFile, CopyOnWriteViewsArePrivateCopies) {
    const auto p = file("data.bin");
    const auto bytes = pattern(2 * page);
    write_file(p, bytes);
    mapped_file cow(p, map_mode::copy_on_write);
    mapped_view v = cow.view(100, 50);
    v.data()[0] = std::byte{0x99};
    v.flush(); // nothing to write back
    EXPECT_EQ(cow.data()[100], bytes[100]);
    EXPECT_TRUE(equal_bytes(read_file(p), bytes));
}

// --- typed spans ----------------------------------------------------------------------------

TEST_F(MappedFile, AsSpanChecksSizeAndAlignment) {
    const auto p = file("data.bin");
    mapped_file f = mapped_file::create(p, 64 * sizeof(std::uint64_t));
    auto slots = f.as_span<std::uint64_t>();
    ASSERT_EQ(slots.size(), 64u);
    EXPECT_EQ(static_cast<void*>(slots.data()), static_cast<void*>(f.data()));
    slots[3] = 0x0102030405060708u;
    const mapped_file& cf = f;
    EXPECT_EQ(cf.as_span<const std::uint64_t>()[3], 0x0102030405060708u);
    EXPECT_EQ(cf.as_span<std::uint32_t>().size(), 128u);

    const auto p2 = file("odd.bin");
    write_file(p2, pattern(4099));
    const mapped_file odd(p2);
    EXPECT_SYSTEM_ERROR((void)odd.as_span<std::uint32_t>(), make_error_code(memkit::errc::bad_size),
                        "memkit::mapped_file: as_span of", p2.string(),
                        "4099 bytes are not a multiple of the element size 4");
    EXPECT_EQ(odd.as_span<char>().size(), 4099u);
}

TEST_F(MappedFile, AsSpanOfAViewChecksItsOwnOffset) {
    const auto p = file("data.bin");
    write_file(p, pattern(page * 2));
    const mapped_file f(p);
    const mapped_view aligned = f.view(page + 8, 16);
    EXPECT_EQ(aligned.as_span<const std::uint64_t>().size(), 2u);

    const mapped_view v = f.view(page + 2, 16);
    EXPECT_SYSTEM_ERROR((void)v.as_span<const std::uint32_t>(),
                        make_error_code(memkit::errc::invalid_alignment),
                        "as_span of the view at offset " + std::to_string(page + 2), p.string(),
                        "2 bytes past a multiple of the element alignment 4");
    const mapped_view v2 = f.view(8, 12);
    EXPECT_SYSTEM_ERROR((void)v2.as_span<const std::uint64_t>(),
                        make_error_code(memkit::errc::bad_size),
                        "12 bytes are not a multiple of the element size 8");
}

// --- errors when opening --------------------------------------------------------------------

TEST_F(MappedFile, MissingFile) {
    const auto p = file("missing.bin");
    EXPECT_SYSTEM_ERROR(mapped_file f(p),
                        std::make_error_code(std::errc::no_such_file_or_directory),
                        "memkit::mapped_file: cannot open \"" + p.string() + "\" for reading",
                        "No such file or directory");
    EXPECT_SYSTEM_ERROR(mapped_file f(p, map_mode::read_write),
                        std::make_error_code(std::errc::no_such_file_or_directory),
                        "for reading and writing");
    EXPECT_SYSTEM_ERROR((void)mapped_file::create(file("no/such/dir.bin"), 10),
                        std::make_error_code(std::errc::no_such_file_or_directory), "cannot create",
                        "no/such/dir.bin");
}

TEST_F(MappedFile, Directory) {
    EXPECT_SYSTEM_ERROR(mapped_file f(dir_), std::make_error_code(std::errc::is_a_directory),
                        dir_.string(), "it is a directory");
    EXPECT_SYSTEM_ERROR(mapped_file f(dir_, map_mode::read_write),
                        std::make_error_code(std::errc::is_a_directory), dir_.string());
    EXPECT_SYSTEM_ERROR(mapped_file f(dir_, map_mode::copy_on_write),
                        std::make_error_code(std::errc::is_a_directory), dir_.string());
}

TEST_F(MappedFile, NonRegularFile) {
    const auto p = file("fifo");
    ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0) << std::strerror(errno);
    EXPECT_SYSTEM_ERROR(mapped_file f(p), std::make_error_code(std::errc::invalid_argument),
                        p.string(), "not a regular file");
}

TEST_F(MappedFile, PermissionDenied) {
    const auto p = file("secret.bin");
    write_file(p, pattern(100));
    ASSERT_EQ(::chmod(p.c_str(), 0), 0);
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    // Root ignores permission bits (CAP_DAC_OVERRIDE), so as root the check runs in a child that
    // has switched to an unprivileged user.
    const int rc = run_in_child(true, [&]() -> int {
        const int fd = ::open(p.c_str(), O_RDONLY);
        if (fd >= 0) {
            ::close(fd);
            std::fprintf(stderr, "this user can read a file with mode 000 (capabilities)\n");
            return 77;
        }
        for (map_mode m : {map_mode::read_only, map_mode::read_write, map_mode::copy_on_write}) {
            try {
                mapped_file f(p, m);
                CHILD_FAIL("no exception");
            } catch (const std::system_error& e) {
                const std::string what = e.what();
                CHILD_CHECK(e.code() == std::make_error_code(std::errc::permission_denied));
                CHILD_CHECK(what.find("cannot open \"" + p.string() + "\"") != std::string::npos);
                CHILD_CHECK(what.find("Permission denied") != std::string::npos);
            }
        }
        return 0;
    });
    if (rc == 77)
        GTEST_SKIP() << "cannot test permission checks: running with privileges that "
                        "bypass them and no unprivileged user to switch to";
    EXPECT_EQ(rc, 0);
}

TEST_F(MappedFile, FileTooLargeForTheAddressSpace) {
    // tmpfs allows sparse files far larger than the 47-bit user address space of x86-64 (and
    // the 48-bit one of most ARM64 kernels): 2^56 bytes can never be mapped.
    const fs::path shm = "/dev/shm";
    std::error_code ec;
    if (!fs::is_directory(shm, ec)) GTEST_SKIP() << "no /dev/shm to hold a huge sparse file";
    const fs::path p = shm / ("memkit_mapped_file_huge_" + std::to_string(::getpid()));
    const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) GTEST_SKIP() << "cannot create " << p << ": " << std::strerror(errno);
    const off_t huge = off_t{1} << 56;
    const bool sized = ::ftruncate(fd, huge) == 0;
    ::close(fd);
    if (!sized) {
        ::unlink(p.c_str());
        GTEST_SKIP() << "this /dev/shm cannot hold a sparse file of 2^56 bytes";
    }
    EXPECT_SYSTEM_ERROR(mapped_file f(p), std::make_error_code(std::errc::not_enough_memory),
                        p.string(), "the file (" + std::to_string(huge) + " bytes)",
                        "too large for the address space");
    ::unlink(p.c_str());

    EXPECT_SYSTEM_ERROR(
        (void)mapped_file::create(file("big.bin"), std::numeric_limits<std::size_t>::max()),
        std::make_error_code(std::errc::file_too_large), "too large for the address space");
}

// --- locking --------------------------------------------------------------------------------

TEST_F(MappedFile, LockPinsTheMapping) {
    const std::size_t size = 16 * page;
    rlimit rl{};
    ASSERT_EQ(::getrlimit(RLIMIT_MEMLOCK, &rl), 0);
    if (::geteuid() != 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 2 * size)
        GTEST_SKIP() << "RLIMIT_MEMLOCK (" << rl.rlim_cur << " bytes) is too small to lock " << size
                     << " bytes";
    const auto p = file("data.bin");
    const auto bytes = pattern(size);
    write_file(p, bytes);
    mapped_file f(p);
    f.lock();
    EXPECT_TRUE(f.locked());
    f.lock(); // already locked: no-op
    EXPECT_TRUE(equal_bytes(f.bytes(), bytes));
    f.unlock();
    EXPECT_FALSE(f.locked());
    f.unlock();
    f.lock();
    f.close(); // unmapping drops the lock
    EXPECT_FALSE(f.locked());
    EXPECT_SYSTEM_ERROR(f.lock(), make_error_code(memkit::errc::invalid_argument), "closed");
}

TEST_F(MappedFile, LockBeyondRlimitMemlockIsATypedError) {
    const auto p = file("data.bin");
    write_file(p, pattern(64 * page));
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    // In a child: lower RLIMIT_MEMLOCK, give up root's CAP_IPC_LOCK (which ignores the limit),
    // then ask for more than the limit.
    const int rc = run_in_child(false, [&]() -> int {
        rlimit small{page, page};
        CHILD_CHECK(::setrlimit(RLIMIT_MEMLOCK, &small) == 0);
        if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) return 77;
        mapped_file f(p);
        try {
            f.lock();
            CHILD_FAIL("no exception");
        } catch (const std::system_error& e) {
            const std::string what = e.what();
            CHILD_CHECK(e.code() == std::make_error_code(std::errc::not_enough_memory));
            CHILD_CHECK(what.find("cannot lock " + std::to_string(64 * page) + " bytes of \"" +
                                  p.string() + "\" in RAM") != std::string::npos);
            CHILD_CHECK(what.find("(RLIMIT_MEMLOCK is " + std::to_string(page) + " bytes)") !=
                        std::string::npos);
        }
        CHILD_CHECK(!f.locked());
        rlimit none{0, 0};
        CHILD_CHECK(::setrlimit(RLIMIT_MEMLOCK, &none) == 0);
        try {
            f.lock();
            CHILD_FAIL("no exception");
        } catch (const std::system_error& e) {
            CHILD_CHECK(e.code() == std::make_error_code(std::errc::operation_not_permitted));
            CHILD_CHECK(std::string(e.what()).find("RLIMIT_MEMLOCK is 0 bytes") !=
                        std::string::npos);
        }
        return 0;
    });
    if (rc == 77) GTEST_SKIP() << "running as root and cannot drop CAP_IPC_LOCK by switching user";
    EXPECT_EQ(rc, 0);
}

// --- truncation by someone else -------------------------------------------------------------

TEST_F(MappedFile, ReadCheckedReportsATruncatedFileInsteadOfFaulting) {
    const auto p = file("data.bin");
    const auto bytes = pattern(4 * page);
    write_file(p, bytes);
    const mapped_file f(p);
    std::vector<std::byte> buf(100);
    ASSERT_EQ(f.read_checked(2 * page, buf), std::error_code{});
    EXPECT_TRUE(equal_bytes(buf, std::span(bytes).subspan(2 * page, 100)));

    // Another descriptor (as another process would) cuts the file to one page and a half.
    const int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(page + page / 2)), 0);
    ::close(fd);

    EXPECT_EQ(f.file_size(), page + page / 2);
    EXPECT_EQ(f.size(), 4 * page); // the mapping does not know
    EXPECT_EQ(f.read_checked(2 * page, buf), std::make_error_code(std::errc::bad_address));
    EXPECT_EQ(f.read_checked(page + page / 2 - 10, buf),
              std::make_error_code(std::errc::bad_address));
    std::fill(buf.begin(), buf.end(), std::byte{0});
    ASSERT_EQ(f.read_checked(page + page / 2 - 100, buf), std::error_code{});
    EXPECT_TRUE(equal_bytes(buf, std::span(bytes).subspan(page + page / 2 - 100, 100)));
    EXPECT_EQ(f.read_checked(4 * page - 99, buf),
              std::make_error_code(std::errc::invalid_argument));
    EXPECT_EQ(f.read_checked(std::numeric_limits<std::size_t>::max(), buf),
              std::make_error_code(std::errc::invalid_argument));
    EXPECT_EQ(mapped_file{}.read_checked(0, buf),
              std::make_error_code(std::errc::bad_file_descriptor));
}

TEST_F(MappedFile, DirectAccessPastATruncatedEndRaisesSigbus) {
    // "fast" forks at the EXPECT_DEATH and runs only the statement in the child; "threadsafe"
    // would run SetUp and this body again in a fresh process, leaving its directory behind.
    const std::string style = GTEST_FLAG_GET(death_test_style);
    GTEST_FLAG_SET(death_test_style, "fast");
    const auto p = file("data.bin");
    write_file(p, pattern(4 * page));
    const mapped_file f(p);
    ASSERT_EQ(::truncate(p.c_str(), static_cast<off_t>(page)), 0);
    // The documented hazard that read_checked avoids (under ASan, its SIGBUS handler reports it).
    EXPECT_DEATH(
        {
            volatile std::byte b = f.data()[3 * page];
            (void)b;
        },
        "");
    GTEST_FLAG_SET(death_test_style, style);
}

// --- moves and close ------------------------------------------------------------------------

TEST_F(MappedFile, MoveTransfersTheMapping) {
    const auto p = file("a.bin");
    const auto q = file("b.bin");
    write_file(p, pattern(100, 1));
    write_file(q, pattern(200, 2));
    mapped_file a(p);
    const std::byte* data = a.data();
    mapped_file b(std::move(a));
    EXPECT_FALSE(a.is_open()); // NOLINT(bugprone-use-after-move): moved-from state is specified
    EXPECT_EQ(a.size(), 0u);
    EXPECT_EQ(a.data(), nullptr);
    EXPECT_EQ(b.data(), data);
    EXPECT_EQ(b.path(), p);

    mapped_file c(q, map_mode::copy_on_write);
    c = std::move(b); // closes c's mapping of q
    EXPECT_EQ(c.path(), p);
    EXPECT_EQ(c.mode(), map_mode::read_only);
    EXPECT_TRUE(equal_bytes(c.bytes(), pattern(100, 1)));
    mapped_file& alias = c;
    c = std::move(alias); // self-move leaves it intact
    EXPECT_TRUE(c.is_open());
    c.close();
    c.close();
    EXPECT_FALSE(c.is_open());
}

} // namespace
