// Shared helpers for memkit's tests: a violation recorder, a counting parent allocator and
// overlap checks.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <csignal>
#include <cstdlib>
#include <utility>
#include <vector>

#include "memkit/core/annotations.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/platform.hpp"

#include <sys/wait.h>

namespace memkit::test {

/// Divides the operation counts of stress tests: ThreadSanitizer runs 5-15x slower, so its build
/// runs fewer operations with the same coverage.
inline constexpr int stress_scale = has_thread_sanitizer ? 8 : 1;

/// Installs a violation handler that records instead of aborting, for the lifetime of the object.
class violation_recorder {
public:
    violation_recorder() noexcept { previous_ = set_violation_handler(&record); }
    ~violation_recorder() {
        set_violation_handler(previous_);
        last() = {};
        count() = 0;
    }
    violation_recorder(const violation_recorder&) = delete;
    violation_recorder& operator=(const violation_recorder&) = delete;

    [[nodiscard]] static violation& last() noexcept {
        static violation v{};
        return v;
    }
    [[nodiscard]] static int& count() noexcept {
        static int n = 0;
        return n;
    }

private:
    static void record(const violation& v) {
        last() = v;
        ++count();
    }
    violation_handler previous_;
};

#define MEMKIT_SKIP_WITHOUT_CHECKS()                                                    \
    do {                                                                                \
        if (!::memkit::debug_checks) GTEST_SKIP() << "debug checks are compiled out";   \
    } while (0)

/// A parent allocator over malloc that counts calls and bytes and can be told to fail.
class counting_parent {
public:
    struct counters {
        std::size_t allocations = 0, deallocations = 0, live_bytes = 0;
        std::size_t fail_after = static_cast<std::size_t>(-1);  // successful calls before failing
    };
    static constexpr const char* name = "counting_parent";

    explicit counting_parent(counters* c = nullptr) noexcept : c_(c) {}

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        throw out_of_memory(name, n);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (c_ != nullptr) {
            if (c_->allocations >= c_->fail_after) return nullptr;
            ++c_->allocations;
            c_->live_bytes += n;
        }
        void* p = nullptr;
        if (::posix_memalign(&p, align < sizeof(void*) ? sizeof(void*) : align, n) != 0)
            return nullptr;
        return p;
    }
    void deallocate(void* p, std::size_t n, std::size_t = alignof(std::max_align_t)) noexcept {
        if (c_ != nullptr) {
            ++c_->deallocations;
            c_->live_bytes -= n;
        }
        std::free(p);
    }

private:
    counters* c_;
};

/// True if no two of the [begin, begin + size) ranges overlap.
inline bool no_overlap(std::vector<std::pair<std::uintptr_t, std::size_t>> ranges) {
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i - 1].first + ranges[i - 1].second > ranges[i].first) return false;
    return true;
}

/// EXPECT_EXIT predicate for a fault on a protected page: killed by SIGSEGV, or, under
/// AddressSanitizer, its SEGV report followed by an exit with an error status or by SIGABRT
/// (ASAN_OPTIONS=abort_on_error=1, as scripts/test and the presets set it). Pair it with
/// segv_report as the message pattern.
inline bool died_of_segv(int status) {
    if (WIFSIGNALED(status))
        return WTERMSIG(status) == SIGSEGV ||
               (memkit::has_address_sanitizer && WTERMSIG(status) == SIGABRT);
    return memkit::has_address_sanitizer && WIFEXITED(status) && WEXITSTATUS(status) != 0;
}
inline const char* const segv_report =
    memkit::has_address_sanitizer ? "SEGV on unknown address" : "";

} // namespace memkit::test
