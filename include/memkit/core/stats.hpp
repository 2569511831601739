// memkit/core/stats.hpp - the statistics record every memkit allocator reports.
//
// `allocator_stats` is a plain value: allocators that keep statistics return it from `stats()`
// in O(1). Fields an allocator does not track stay 0 and are documented on that allocator.
//
// Thread-safety: a value type; `stats()` of a thread-safe allocator returns a consistent snapshot.
//
//   memkit::arena a;
//   a.allocate(100);
//   auto s = a.stats();   // s.bytes_in_use == 100, s.allocations == 1
#pragma once

#include <cstddef>
#include <cstdint>

namespace memkit {

struct allocator_stats {
    std::size_t bytes_in_use = 0;      ///< bytes handed out and not yet returned (as requested)
    std::size_t peak_bytes = 0;        ///< maximum of bytes_in_use since construction / reset
    std::size_t capacity = 0;          ///< bytes obtained from the parent (or the fixed buffer)
    std::uint64_t allocations = 0;     ///< successful allocate calls
    std::uint64_t deallocations = 0;   ///< deallocate calls (including bulk frees by reset())

    friend bool operator==(const allocator_stats&, const allocator_stats&) = default;
};

} // namespace memkit
