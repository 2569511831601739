#include "memkit/debug/stack_trace.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "memkit/core/platform.hpp"

// Counts C++ allocations made by the current thread, to show that capture() makes none.
namespace {
thread_local std::size_t g_news = 0;
} // namespace

// noinline: inlined into callers, GCC would pair these malloc/free calls with new/delete
// expressions and warn about a mismatch.
MEMKIT_NOINLINE void* operator new(std::size_t n) {
    ++g_news;
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
MEMKIT_NOINLINE void operator delete(void* p) noexcept { std::free(p); }
MEMKIT_NOINLINE void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

namespace st = memkit::stack_trace;

struct captured {
    std::array<void*, 64> frames{};
    std::size_t count = 0;
    unsigned line = 0; // line of the capture call
};

// noinline so that each of these is a real frame with its own name in every build mode.
MEMKIT_NOINLINE captured capture_here(std::size_t skip) {
    captured c;
    c.line = __LINE__ + 1;
    c.count = st::capture(c.frames, skip);
    return c;
}

MEMKIT_NOINLINE captured capture_here_glibc(std::size_t skip) {
    captured c;
    c.line = __LINE__ + 1;
    c.count = st::capture_with_backtrace(c.frames, skip);
    return c;
}

MEMKIT_NOINLINE captured outer_caller(std::size_t skip) {
    captured c = capture_here(skip);
    asm volatile("" ::: "memory"); // not a tail call: this frame stays
    return c;
}

bool has_debug_info() {
#if defined(NDEBUG)
    return false; // Release test builds have no -g: file:line is not asserted
#else
    return true;
#endif
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

TEST(StackTrace, CaptureStartsAtTheCallerAndSymbolizesNamesFilesAndLines) {
    const captured c = outer_caller(0);
    ASSERT_GE(c.count, 3u);
    const auto frames = st::symbolize({c.frames.data(), c.count});
    ASSERT_EQ(frames.size(), c.count);
    EXPECT_NE(frames[0].function.find("capture_here"), std::string::npos) << st::to_string(frames);
    EXPECT_NE(frames[1].function.find("outer_caller"), std::string::npos) << st::to_string(frames);
    // The test's own function is further up.
    bool found_test = false;
    for (const auto& f : frames)
        found_test = found_test || f.function.find("CaptureStartsAtTheCaller") != std::string::npos;
    EXPECT_TRUE(found_test) << st::to_string(frames);
    EXPECT_EQ(frames[0].address, c.frames[0]);
    EXPECT_FALSE(frames[0].module.empty());
    EXPECT_NE(frames[0].module_offset, 0u);
    if (has_debug_info()) {
        EXPECT_TRUE(ends_with(frames[0].file, "stack_trace_test.cpp")) << frames[0].file;
        EXPECT_EQ(frames[0].line, c.line);
    }
}

TEST(StackTrace, SkipDropsFramesAboveTheCaller) {
    const captured c = outer_caller(1);
    ASSERT_GE(c.count, 2u);
    const auto frames = st::symbolize({c.frames.data(), c.count});
    EXPECT_NE(frames[0].function.find("outer_caller"), std::string::npos) << st::to_string(frames);

    const captured deep = outer_caller(1000);
    EXPECT_EQ(deep.count, 0u);
}

TEST(StackTrace, CaptureRespectsTheBufferSize) {
    std::array<void*, 2> two{};
    EXPECT_EQ(st::capture(two), 2u);
    EXPECT_NE(two[0], nullptr);
    EXPECT_NE(two[1], nullptr);
    EXPECT_EQ(st::capture({}), 0u);
    EXPECT_EQ(st::capture_with_backtrace({}), 0u);
    std::array<void*, 1> one{};
    EXPECT_EQ(st::capture_with_backtrace(one), 1u);
}

TEST(StackTrace, BacktraceCaptureAgreesWithUnwindCapture) {
    const captured a = capture_here(0);
    const captured b = capture_here_glibc(0);
    ASSERT_GE(a.count, 2u);
    ASSERT_GE(b.count, 2u);
    EXPECT_EQ(a.count, b.count);
    const auto fa = st::symbolize({a.frames.data(), a.count});
    const auto fb = st::symbolize({b.frames.data(), b.count});
    EXPECT_NE(fb[0].function.find("capture_here_glibc"), std::string::npos) << st::to_string(fb);
    // Both continue in this test, at the same return address above frame 0.
    EXPECT_EQ(fa[1].function, fb[1].function);
    for (std::size_t i = 2; i < std::min(a.count, b.count); ++i)
        EXPECT_EQ(a.frames[i], b.frames[i]);
}

TEST(StackTrace, CaptureMakesNoCppAllocation) {
    std::array<void*, 64> frames{};
    (void)st::capture(frames); // first call: any lazy initialisation of the unwinder
    const std::size_t before = g_news;
    for (int i = 0; i < 100; ++i) ASSERT_GT(st::capture(frames), 0u);
    EXPECT_EQ(g_news, before);
}

TEST(StackTrace, WithoutAddr2lineNamesAndModulesStillResolve) {
    // getpid is exported by libc; symbolize looks up address - 1, so pass one past its start.
    const auto addr = reinterpret_cast<std::uintptr_t>(&::getpid) + 1;
    std::array<void*, 1> a{reinterpret_cast<void*>(addr)};
    const auto frames = st::symbolize(a, {.use_addr2line = false});
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_NE(frames[0].function.find("getpid"), std::string::npos) << frames[0].function;
    EXPECT_NE(frames[0].module.find("libc"), std::string::npos) << frames[0].module;
    EXPECT_TRUE(frames[0].file.empty());
    EXPECT_EQ(frames[0].line, 0u);

    // A function of the test executable itself (not exported): named from .symtab.
    const captured c = outer_caller(0);
    const auto own = st::symbolize({c.frames.data(), c.count}, {.use_addr2line = false});
    EXPECT_NE(own[0].function.find("capture_here"), std::string::npos) << st::to_string(own);
    EXPECT_NE(own[1].function.find("outer_caller"), std::string::npos) << st::to_string(own);
    EXPECT_TRUE(own[0].file.empty());
}

TEST(StackTrace, UnknownAddressesStayEmpty) {
    std::array<void*, 2> a{nullptr, reinterpret_cast<void*>(std::uintptr_t{0x10})};
    const auto frames = st::symbolize(a);
    ASSERT_EQ(frames.size(), 2u);
    for (const auto& f : frames) {
        EXPECT_TRUE(f.function.empty());
        EXPECT_TRUE(f.module.empty());
        EXPECT_EQ(f.line, 0u);
    }
    EXPECT_NE(st::to_string(frames).find("#1 0x10 in ??"), std::string::npos)
        << st::to_string(frames);
}

TEST(StackTrace, RepeatedAddressesResolveAlike) {
    const captured c = capture_here(0);
    std::vector<void*> twice{c.frames[0], c.frames[1], c.frames[0]};
    const auto frames = st::symbolize(twice);
    EXPECT_EQ(frames[0].function, frames[2].function);
    EXPECT_EQ(frames[0].line, frames[2].line);
    EXPECT_EQ(frames[0].file, frames[2].file);
}

TEST(StackTrace, DemangleAndFormat) {
    EXPECT_EQ(st::demangle("_ZN6memkit3fooEi"), "memkit::foo(int)");
    EXPECT_EQ(st::demangle("main"), "main");
    EXPECT_EQ(st::demangle(nullptr), "");

    st::frame f;
    f.address = reinterpret_cast<void*>(std::uintptr_t{0x1234});
    f.function = "f(int)";
    f.module = "/usr/lib/libx.so";
    f.module_offset = 0x34;
    f.file = "f.cpp";
    f.line = 12;
    std::vector<st::frame> v{f};
    EXPECT_EQ(st::to_string(v), "#0 0x1234 in f(int) at f.cpp:12 (libx.so+0x34)\n");
    std::ostringstream os;
    st::print(os, v);
    EXPECT_EQ(os.str(), st::to_string(v));
}

} // namespace
