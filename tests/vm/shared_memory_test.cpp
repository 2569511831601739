// Tests of memkit::shared_memory (include/memkit/vm/shared_memory.hpp): create / open /
// open_or_create / remove, sizes and zero fill, permissions, RAII removal, move-only handles,
// mapping placement, name validation, a forked child writing what the parent reads, and every
// error path with its type, code and message.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <system_error>
#include <type_traits>

#include "memkit/core/platform.hpp"
#include "memkit/vm/shared_memory.hpp"

namespace {

using memkit::shared_memory;
using memkit::shm_errc;
using memkit::shm_error;

std::string unique_name(const char* tag) {
    static int counter = 0;
    return "/memkit-shm-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "-" +
           tag;
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

static_assert(!std::is_copy_constructible_v<shared_memory>);
static_assert(!std::is_copy_assignable_v<shared_memory>);
static_assert(std::is_nothrow_move_constructible_v<shared_memory>);
static_assert(std::is_nothrow_move_assignable_v<shared_memory>);
static_assert(std::is_base_of_v<std::system_error, shm_error>);

TEST(SharedMemory, CreateMapsAZeroFilledSegmentOfTheRequestedSize) {
    const std::string name = unique_name("create");
    memkit::shm_remover cleanup(name);
    auto s = shared_memory::create(name, 10000);
    EXPECT_TRUE(s);
    EXPECT_TRUE(s.created());
    EXPECT_EQ(s.name(), name);
    EXPECT_EQ(s.size(), 10000u);
    ASSERT_TRUE(s.is_mapped());
    EXPECT_EQ(s.bytes().size(), 10000u);
    EXPECT_TRUE(std::all_of(s.bytes().begin(), s.bytes().end(),
                            [](std::byte b) { return b == std::byte{0}; }));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(s.data()) % memkit::page_size(), 0u);
    EXPECT_GE(s.native_handle(), 0);
    EXPECT_TRUE(shared_memory::exists(name));
}

TEST(SharedMemory, OpenSeesTheSameBytesAndTheSegmentsSize) {
    const std::string name = unique_name("open");
    memkit::shm_remover cleanup(name);
    auto a = shared_memory::create(name, 4096 * 3);
    for (std::size_t i = 0; i < a.size(); ++i)
        static_cast<unsigned char*>(a.data())[i] = static_cast<unsigned char>(i * 7);
    auto b = shared_memory::open(name);
    EXPECT_FALSE(b.created());
    EXPECT_EQ(b.size(), a.size());
    EXPECT_NE(b.data(), a.data());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
    static_cast<unsigned char*>(b.data())[100] = 0xee;
    EXPECT_EQ(static_cast<unsigned char*>(a.data())[100], 0xee);
}

TEST(SharedMemory, CreateOnAnExistingNameIsFileExistsNamingIt) {
    const std::string name = unique_name("exists");
    memkit::shm_remover cleanup(name);
    auto a = shared_memory::create(name, 100);
    try {
        (void)shared_memory::create(name, 100);
        FAIL() << "create-only on an existing segment must throw";
    } catch (const shm_error& e) {
        EXPECT_EQ(e.code(), std::errc::file_exists);
        EXPECT_EQ(e.code().category(), std::system_category());
        EXPECT_EQ(e.segment(), name);
        EXPECT_TRUE(contains(e.what(), name)) << e.what();
        EXPECT_TRUE(contains(e.what(), "shared_memory::create")) << e.what();
    }
    // The failed create must not have removed the existing segment.
    EXPECT_TRUE(shared_memory::exists(name));
}

TEST(SharedMemory, OpenOfAMissingSegmentIsNoSuchFileNamingIt) {
    const std::string name = unique_name("missing");
    try {
        (void)shared_memory::open(name);
        FAIL() << "open of a missing segment must throw";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
        EXPECT_TRUE(contains(e.what(), name)) << e.what();
        EXPECT_TRUE(contains(e.what(), "shared_memory::open")) << e.what();
    }
    EXPECT_FALSE(shared_memory::exists(name));
}

TEST(SharedMemory, OpenOrCreateCreatesOnceThenOpensKeepingTheFirstSize) {
    const std::string name = unique_name("ooc");
    memkit::shm_remover cleanup(name);
    auto a = shared_memory::open_or_create(name, 8192);
    EXPECT_TRUE(a.created());
    EXPECT_EQ(a.size(), 8192u);
    auto b = shared_memory::open_or_create(name, 100);
    EXPECT_FALSE(b.created());
    EXPECT_EQ(b.size(), 8192u);
}

TEST(SharedMemory, RemoveUnlinksTheNameButNotLiveMappings) {
    const std::string name = unique_name("remove");
    memkit::shm_remover cleanup(name);
    auto a = shared_memory::create(name, 4096);
    static_cast<char*>(a.data())[0] = 'x';
    EXPECT_TRUE(shared_memory::remove(name));
    EXPECT_FALSE(shared_memory::exists(name));
    EXPECT_FALSE(shared_memory::remove(name));
    EXPECT_EQ(static_cast<char*>(a.data())[0], 'x'); // still mapped
    // The name is free again: a new segment with it is a different one.
    auto b = shared_memory::create(name, 4096);
    EXPECT_EQ(static_cast<char*>(b.data())[0], 0);
}

TEST(SharedMemory, RemoveOnDestroyUnlinksAndDefaultKeeps) {
    const std::string name = unique_name("raii");
    memkit::shm_remover cleanup(name);
    {
        auto a = shared_memory::create(name, 100);
        EXPECT_FALSE(a.remove_on_destroy());
    }
    EXPECT_TRUE(shared_memory::exists(name));
    {
        auto b = shared_memory::open(name, {.remove_on_destroy = true});
        EXPECT_TRUE(b.remove_on_destroy());
    }
    EXPECT_FALSE(shared_memory::exists(name));
    {
        auto c = shared_memory::create(name, 100, {.remove_on_destroy = true});
        c.set_remove_on_destroy(false);
    }
    EXPECT_TRUE(shared_memory::exists(name));
    {
        memkit::shm_remover r(name);
        EXPECT_EQ(r.name(), name);
    }
    EXPECT_FALSE(shared_memory::exists(name));
}

TEST(SharedMemory, PermissionsDefaultTo0600WhateverTheUmask) {
    const std::string n1 = unique_name("perm1");
    const std::string n2 = unique_name("perm2");
    memkit::shm_remover c1(n1), c2(n2);
    const mode_t old = ::umask(0);
    auto a = shared_memory::create(n1, 100);
    ::umask(077);
    auto b = shared_memory::create(n2, 100, {.permissions = 0640});
    ::umask(old);
    EXPECT_EQ(a.permissions(), 0600u);
    EXPECT_EQ(b.permissions(), 0640u);
    struct stat st {};
    ASSERT_EQ(::fstat(b.native_handle(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u);
}

// Checks that a read-write open of a 0400 segment is refused with the name in the message and
// that a read-only open works; returns 0 on success.
int check_permission_denied(const std::string& name) {
    try {
        (void)shared_memory::open(name);
        return 1;
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::permission_denied) return 2;
        if (!contains(e.what(), name) || !contains(e.what(), "shared_memory::open")) return 3;
    }
    auto ro = shared_memory::open(name, {.access = memkit::shm_access::read_only});
    return ro.access() == memkit::shm_access::read_only && ro.size() == 100 ? 0 : 4;
}

TEST(SharedMemory, PermissionDeniedNamesTheSegment) {
    const std::string name = unique_name("denied");
    memkit::shm_remover cleanup(name);
    auto a = shared_memory::create(name, 100, {.permissions = 0444});
    if (::geteuid() != 0) {
        EXPECT_EQ(check_permission_denied(name), 0);
        return;
    }
    // root bypasses file permissions: check from a child that gives up root first.
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int rc = 10;
        if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
            try {
                rc = check_permission_denied(name);
            } catch (...) {
                rc = 11;
            }
        }
        ::_exit(rc);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 10) GTEST_SKIP() << "cannot drop root privileges here";
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SharedMemory, AnEmptySegmentOpensUnmappedAndCannotBeMapped) {
    const std::string name = unique_name("empty");
    memkit::shm_remover cleanup(name);
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
    auto s = shared_memory::open(name);
    EXPECT_EQ(s.size(), 0u);
    EXPECT_FALSE(s.is_mapped());
    try {
        s.map();
        FAIL() << "an empty segment cannot be mapped";
    } catch (const shm_error& e) {
        EXPECT_EQ(e.code(), shm_errc::invalid_size);
        EXPECT_TRUE(contains(e.what(), "the segment is empty")) << e.what();
        EXPECT_TRUE(contains(e.what(), name)) << e.what();
    }
}

TEST(SharedMemory, ReadOnlyMappingCannotBeWritten) {
    const std::string name = unique_name("ro");
    memkit::shm_remover cleanup(name);
    auto w = shared_memory::create(name, 4096);
    static_cast<char*>(w.data())[1] = 'r';
    auto ro = shared_memory::open(name, {.access = memkit::shm_access::read_only});
    EXPECT_EQ(static_cast<const char*>(ro.data())[1], 'r');
    // A write through the read-only mapping faults: try it in a child.
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // Die of the fault itself rather than let a sanitizer report it.
        ::signal(SIGSEGV, SIG_DFL);
        ::signal(SIGBUS, SIG_DFL);
        static_cast<volatile char*>(ro.data())[0] = 'x';
        ::_exit(0); // not reached
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    EXPECT_TRUE(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS) << WTERMSIG(status);
    EXPECT_EQ(static_cast<const char*>(w.data())[0], 0);
}

TEST(SharedMemory, InvalidNamesAreRejectedWithTheRule) {
    const std::string too_long = "/" + std::string(shared_memory::max_name_length, 'a');
    const std::string with_nul = std::string("/ab\0cd", 6);
    const struct {
        std::string name;
        const char* rule;
    } cases[] = {
        {"", "start with '/'"},
        {"noslash", "start with '/'"},
        {"/", "at least one character"},
        {"/a/b", "must not contain '/'"},
        {too_long, "longer than 254"},
        {with_nul, "NUL"},
        {"/.", "\"/.\""},
        {"/..", "\"/.\""},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        for (int op = 0; op < 4; ++op) {
            try {
                switch (op) {
                case 0: (void)shared_memory::create(c.name, 100); break;
                case 1: (void)shared_memory::open(c.name); break;
                case 2: (void)shared_memory::open_or_create(c.name, 100); break;
                default: (void)shared_memory::remove(c.name); break;
                }
                FAIL() << "an invalid name must be rejected (op " << op << ")";
            } catch (const shm_error& e) {
                EXPECT_EQ(e.code(), shm_errc::invalid_name);
                EXPECT_EQ(e.code(), std::errc::invalid_argument);
                EXPECT_EQ(e.segment(), c.name);
                EXPECT_TRUE(contains(e.what(), c.rule)) << e.what();
            }
        }
    }
    // The longest valid name works.
    const std::string longest = "/" + std::string(shared_memory::max_name_length - 1, 'b');
    memkit::shm_remover cleanup(longest);
    EXPECT_NO_THROW(shared_memory::validate_name(longest));
    auto s = shared_memory::create(longest, 64);
    EXPECT_EQ(s.name().size(), shared_memory::max_name_length);
}

TEST(SharedMemory, ZeroSizeIsInvalidSizeAndCreatesNothing) {
    const std::string name = unique_name("zero");
    memkit::shm_remover cleanup(name);
    for (int op = 0; op < 2; ++op) {
        try {
            if (op == 0) (void)shared_memory::create(name, 0);
            else (void)shared_memory::open_or_create(name, 0);
            FAIL() << "size 0 must be rejected";
        } catch (const shm_error& e) {
            EXPECT_EQ(e.code(), shm_errc::invalid_size);
            EXPECT_EQ(e.code(), std::errc::invalid_argument);
            EXPECT_TRUE(contains(e.what(), name));
            EXPECT_TRUE(contains(e.what(), "size 0"));
        }
    }
    EXPECT_FALSE(shared_memory::exists(name));
}

TEST(SharedMemory, HugeSizeFailsAndLeavesNoSegment) {
    const std::string name = unique_name("huge");
    memkit::shm_remover cleanup(name);
    // 2^62 bytes: ftruncate or mmap refuses; the half-made segment must be unlinked.
    EXPECT_THROW((void)shared_memory::create(name, std::size_t{1} << 62), std::system_error);
    EXPECT_FALSE(shared_memory::exists(name));
}

TEST(SharedMemory, MoveTransfersOwnership) {
    const std::string name = unique_name("move");
    memkit::shm_remover cleanup(name);
    auto a = shared_memory::create(name, 4096, {.remove_on_destroy = true});
    void* data = a.data();
    shared_memory b(std::move(a));
    EXPECT_FALSE(a); // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(a.data(), nullptr);
    EXPECT_TRUE(a.name().empty());
    EXPECT_EQ(b.data(), data);
    EXPECT_TRUE(b.remove_on_destroy());
    shared_memory c;
    EXPECT_FALSE(c);
    c = std::move(b);
    EXPECT_EQ(c.data(), data);
    EXPECT_EQ(c.name(), name);
    {
        shared_memory sink = std::move(c);
        EXPECT_TRUE(shared_memory::exists(name));
    }
    EXPECT_FALSE(shared_memory::exists(name)); // the last owner removed it
}

TEST(SharedMemory, MapPlacementAnywhereHintExactly) {
    const std::string name = unique_name("place");
    memkit::shm_remover cleanup(name);
    auto s = shared_memory::create(name, 3 * 4096, {.map = false});
    EXPECT_FALSE(s.is_mapped());
    EXPECT_TRUE(s.bytes().empty());
    // Find a free range: map anonymous memory, note its address, release it.
    void* probe = ::mmap(nullptr, 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(probe, MAP_FAILED);
    ::munmap(probe, 3 * 4096);
    s.map(probe, memkit::map_placement::exactly);
    EXPECT_EQ(s.data(), probe);
    static_cast<char*>(s.data())[5] = 5;

    // The same range again, from a second handle: taken, so an error naming the address.
    auto t = shared_memory::open(name, {.map = false});
    try {
        t.map(probe, memkit::map_placement::exactly);
        FAIL() << "mapping over a used range must fail";
    } catch (const shm_error& e) {
        EXPECT_EQ(e.code(), shm_errc::address_unavailable);
        EXPECT_TRUE(contains(e.what(), "taken")) << e.what();
        EXPECT_TRUE(contains(e.what(), name)) << e.what();
    }
    EXPECT_FALSE(t.is_mapped());
    t.map(probe, memkit::map_placement::hint); // a hint accepts another address
    EXPECT_TRUE(t.is_mapped());
    EXPECT_NE(t.data(), probe);
    EXPECT_EQ(static_cast<char*>(t.data())[5], 5);
    t.map(); // remapping replaces the handle's own mapping
    EXPECT_EQ(static_cast<char*>(t.data())[5], 5);
    t.unmap();
    EXPECT_FALSE(t.is_mapped());

    shared_memory empty;
    EXPECT_THROW(empty.map(), std::system_error);
}

TEST(SharedMemory, ForkedChildWritesWhatTheParentReads) {
    const std::string name = unique_name("fork");
    memkit::shm_remover cleanup(name);
    auto s = shared_memory::create(name, 1 << 16);
    s.unmap(); // the child opens by name, as an unrelated process would
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int rc = 1;
        try {
            auto c = shared_memory::open(name);
            auto* p = static_cast<unsigned*>(c.data());
            for (unsigned i = 0; i < c.size() / sizeof(unsigned); ++i) p[i] = i * 2654435761u;
            rc = 0;
        } catch (...) {}
        ::_exit(rc);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    s.map();
    const auto* p = static_cast<const unsigned*>(s.data());
    for (unsigned i = 0; i < s.size() / sizeof(unsigned); ++i) ASSERT_EQ(p[i], i * 2654435761u);
}

TEST(SharedMemory, ErrorCategoryMessages) {
    const std::error_code ec = shm_errc::bad_magic;
    EXPECT_STREQ(ec.category().name(), "memkit.shm");
    EXPECT_FALSE(ec.message().empty());
    EXPECT_EQ(std::error_code(shm_errc::address_unavailable), std::errc::file_exists);
    EXPECT_EQ(std::error_code(shm_errc::invalid_size), std::errc::invalid_argument);
    EXPECT_NE(std::error_code(shm_errc::bad_magic), std::errc::invalid_argument);
    for (int v = 1; v <= static_cast<int>(shm_errc::heap_corrupted); ++v)
        EXPECT_NE(memkit::shm_category().message(v), memkit::shm_category().message(999));
}

} // namespace
