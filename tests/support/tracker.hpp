// A test allocator for composition blocks: heap-backed, it records every block, checks that each
// comes back with the size and alignment it was allocated with, and has every optional member
// (owns, reset, stats, max_size) so that forwarding through a composition can be checked.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <new>
#include <utility>

#include "memkit/core/align.hpp"
#include "memkit/core/error.hpp"
#include "memkit/core/stats.hpp"

namespace memkit::test {

// A heap-backed allocator that records its blocks, checks that each comes back with its size
// and alignment, and reports everything an allocator can: owns, reset, stats, max_size.
template <std::size_t MaxAlign = 4096>
class tracker {
public:
    static constexpr std::size_t max_alignment = MaxAlign;
    static constexpr const char* name = "test::tracker";

    explicit tracker(std::size_t max_size = std::size_t{1} << 40) : max_size_(max_size) {}

    void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
        if (void* p = try_allocate(n, align)) return p;
        if (n == 0 || n > max_size_ || !memkit::is_pow2(align) || align > MaxAlign)
            memkit::throw_bad_request(name, n, align, max_size_, MaxAlign);
        throw memkit::out_of_memory(name, n);
    }
    void* try_allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) noexcept {
        if (n == 0 || n > max_size_ || !memkit::is_pow2(align) || align > MaxAlign) return nullptr;
        void* p = ::operator new (n, std::align_val_t{align}, std::nothrow);
        blocks_.emplace(p, std::pair{n, align});
        bytes_ += n;
        peak_ = std::max(peak_, bytes_);
        ++allocations_;
        return p;
    }
    void deallocate(void* p, std::size_t n,
                    std::size_t align = alignof(std::max_align_t)) noexcept {
        const auto it = blocks_.find(p);
        if (it == blocks_.end()) {
            ADD_FAILURE() << "tracker: unknown block";
            return;
        }
        EXPECT_EQ(it->second.first, n);
        EXPECT_EQ(it->second.second, align);
        ::operator delete (p, std::align_val_t{align});
        blocks_.erase(it);
        bytes_ -= n;
        ++deallocations_;
    }
    [[nodiscard]] bool owns(const void* p) const noexcept {
        return blocks_.contains(const_cast<void*>(p));
    }
    void reset() {
        for (const auto& [p, b] : blocks_) ::operator delete (p, std::align_val_t{b.second});
        deallocations_ += blocks_.size();
        blocks_.clear();
        bytes_ = 0;
    }
    [[nodiscard]] memkit::allocator_stats stats() const noexcept {
        return {bytes_, peak_, bytes_, allocations_, deallocations_};
    }
    [[nodiscard]] std::size_t max_size() const noexcept { return max_size_; }
    [[nodiscard]] std::size_t live() const noexcept { return blocks_.size(); }

    tracker(tracker&& o) noexcept = default;
    tracker& operator=(tracker&&) noexcept = default;
    ~tracker() { reset(); }

private:
    std::map<void*, std::pair<std::size_t, std::size_t>> blocks_;
    std::size_t max_size_;
    std::size_t bytes_ = 0;
    std::size_t peak_ = 0;
    std::uint64_t allocations_ = 0;
    std::uint64_t deallocations_ = 0;
};

} // namespace memkit::test
